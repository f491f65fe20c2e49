//! The byte stream under a connection: plain TCP or TLS over TCP. Writes are bounded by the
//! stall limit either way: on TCP by readiness (a timer only once a write would block, no
//! copy of large bodies); on TLS, whose writes go through rustls' buffers, by a timeout
//! around each write and flush.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::frames::Chunks;

type TlsRead = tokio::io::ReadHalf<TlsStream<TcpStream>>;
type TlsWrite = tokio::io::WriteHalf<TlsStream<TcpStream>>;

pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(TlsRead),
}

pub(crate) enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(TlsWrite),
}

/// Splits a plain TCP connection.
pub(crate) fn split_tcp(stream: TcpStream) -> (Reader, Writer) {
    let (r, w) = stream.into_split();
    (Reader::Tcp(r), Writer::Tcp(w))
}

/// Splits an accepted TLS connection.
pub(crate) fn split_tls(stream: TlsStream<TcpStream>) -> (Reader, Writer) {
    let (r, w) = tokio::io::split(stream);
    (Reader::Tls(r), Writer::Tls(w))
}

impl Reader {
    /// Reads what the socket already holds without waiting: `None` when a read would block.
    /// A connection uses it to take in every frame already sent before it asks the store for
    /// a group commit, so one fsync covers the whole burst.
    pub(crate) fn read_now(&mut self, buf: &mut BytesMut) -> Option<io::Result<usize>> {
        use std::future::Future;
        use tokio::io::AsyncReadExt;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut read = std::pin::pin!(self.read_buf(buf));
        match read.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_flush(cx),
            Writer::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("peer read nothing for {} ms", stall.as_millis()),
    )
}

/// Waits until the socket takes bytes again, failing with `TimedOut` after `stall`: a peer
/// that reads slowly but steadily never trips it, one that stopped reading does. Only armed
/// once a write would block, so a socket with room costs no timer.
async fn wait_writable(writer: &OwnedWriteHalf, stall: Duration) -> io::Result<()> {
    match tokio::time::timeout(stall, writer.writable()).await {
        Ok(ready) => ready,
        Err(_) => Err(stalled(stall)),
    }
}

/// A TLS write or flush, within the stall limit.
async fn within<T>(
    stall: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(stall, f)
        .await
        .unwrap_or_else(|_| Err(stalled(stall)))
}

/// Writes all of `buf` (and, on TLS, flushes it) within the stall limit.
pub(crate) async fn write_all_within(
    writer: &mut Writer,
    mut buf: &[u8],
    stall: Duration,
) -> io::Result<()> {
    let w = match writer {
        Writer::Tcp(w) => w,
        Writer::Tls(w) => {
            within(stall, w.write_all(buf)).await?;
            return within(stall, w.flush()).await;
        }
    };
    while !buf.is_empty() {
        match w.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(w, stall).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the queued chunks and then `out` within the stall limit: on TCP with vectored
/// writes (no copy of large bodies), on TLS one chunk after the other, then a flush.
pub(crate) async fn write_all_vectored(
    writer: &mut Writer,
    chunks: &mut Chunks,
    out: &mut BytesMut,
    stall: Duration,
) -> io::Result<()> {
    use bytes::Buf;
    if !out.is_empty() {
        chunks.list.push(out.split().freeze());
    }
    let mut pending: std::collections::VecDeque<Bytes> = std::mem::take(&mut chunks.list).into();
    chunks.bytes = 0;
    let w = match writer {
        Writer::Tcp(w) => w,
        Writer::Tls(w) => {
            for chunk in pending {
                within(stall, w.write_all(&chunk)).await?;
            }
            return within(stall, w.flush()).await;
        }
    };
    while !pending.is_empty() {
        let slices: Vec<io::IoSlice<'_>> = pending
            .iter()
            .take(64)
            .map(|b| io::IoSlice::new(b))
            .collect();
        let written = w.try_write_vectored(&slices);
        drop(slices);
        let mut n = match written {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_writable(w, stall).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = pending.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                pending.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn read_now_takes_what_is_there_and_never_waits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut reader, _writer) = split_tcp(server);
        let mut buf = BytesMut::with_capacity(1024);
        // Nothing sent yet: no wait, no bytes.
        assert!(reader.read_now(&mut buf).is_none());
        client.write_all(b"frame bytes").await.unwrap();
        assert_eq!(first_ready_read(&mut reader, &mut buf).await, Some(11));
        assert_eq!(&buf[..], b"frame bytes");
        assert!(reader.read_now(&mut buf).is_none());
        drop(client);
        assert_eq!(
            first_ready_read(&mut reader, &mut buf).await,
            Some(0),
            "a closed peer reads as end of stream"
        );
    }

    /// Tries `read_now` until it has something (the bytes or the close are on their way
    /// through loopback), for at most half a second.
    async fn first_ready_read(reader: &mut Reader, buf: &mut BytesMut) -> Option<usize> {
        for _ in 0..100 {
            if let Some(result) = reader.read_now(buf) {
                return Some(result.unwrap());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

//! The client side of AMQP 0-9-1 on top of `warren-amqp`'s codec.
//!
//! [`SetupConn`] is the slow, synchronous path: handshake, opening channels
//! and declaring things one RPC at a time (frames split off with
//! [`decode_frame`], methods decoded with [`Method::decode`]). Once set up, a
//! connection goes live (see `conn.rs`), where [`next_frame`] walks a read
//! buffer in place and [`peek_hot`] pulls the few fields the hot methods
//! (`basic.deliver`, `basic.ack`, `basic.nack`) need without allocating.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;
use warren_amqp::constants::{FRAME_METHOD, PROTOCOL_HEADER, REPLY_SUCCESS};
use warren_amqp::{
    decode_frame, encode_method_frame, wire, ChannelCloseOk, ChannelOpen, ConnectionClose,
    ConnectionCloseOk, ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, DecodeError,
    FieldTable, FieldValue, Method, RawFrame,
};

use crate::error::PerfError;
use crate::uri::AmqpUri;

/// Largest frame we ask for (RabbitMQ's default).
pub const CLIENT_FRAME_MAX: u32 = 131_072;
/// Most channels we ask for.
pub const CLIENT_CHANNEL_MAX: u16 = 2047;
/// Deadline for the handshake and for each setup RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The socket under a connection: plain TCP, or TLS (`amqps://`).
pub enum PerfStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for PerfStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PerfStream::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            PerfStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for PerfStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PerfStream::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            PerfStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PerfStream::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            PerfStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PerfStream::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            PerfStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A TLS client session to `uri`'s host, trusting the CA bundle of its `cacertfile`.
async fn tls_connect(uri: &AmqpUri, tcp: TcpStream) -> Result<PerfStream, PerfError> {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let path = uri
        .cacertfile
        .as_ref()
        .ok_or_else(|| PerfError::Uri("amqps:// needs ?cacertfile=FILE".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| PerfError::Uri(format!("cacertfile {path}: {e}")))?
    {
        let cert = cert.map_err(|e| PerfError::Uri(format!("cacertfile {path}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| PerfError::Uri(format!("cacertfile {path}: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PerfError::Protocol(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(uri.host.clone())
        .map_err(|e| PerfError::Uri(format!("host {}: {e}", uri.host)))?;
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(PerfError::io("TLS handshake"))?;
    Ok(PerfStream::Tls(Box::new(stream)))
}

/// A connection in its setup phase: every call is one request and its reply.
pub struct SetupConn {
    stream: PerfStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Negotiated frame_max (whole frame, bytes).
    pub frame_max: u32,
    /// Negotiated channel_max.
    pub channel_max: u16,
}

fn client_properties(name: &str) -> FieldTable {
    let mut caps = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "consumer_cancel_notify",
        "connection.blocked",
        "basic.nack",
        "exchange_exchange_bindings",
        "authentication_failure_close",
    ] {
        caps.insert(cap, FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    props.insert(
        "product",
        FieldValue::LongString(Bytes::from_static(b"warren-perf")),
    );
    props.insert(
        "version",
        FieldValue::LongString(Bytes::from_static(env!("CARGO_PKG_VERSION").as_bytes())),
    );
    props.insert(
        "platform",
        FieldValue::LongString(Bytes::from_static(b"Rust")),
    );
    props.insert(
        "connection_name",
        FieldValue::LongString(Bytes::copy_from_slice(name.as_bytes())),
    );
    props.insert("capabilities", FieldValue::Table(caps));
    props
}

impl SetupConn {
    /// Connect, authenticate (PLAIN) and open the vhost. Heartbeats are
    /// negotiated off (0) so idle connections cost the broker nothing extra.
    pub async fn open(uri: &AmqpUri, name: &str) -> Result<SetupConn, PerfError> {
        match tokio::time::timeout(RPC_TIMEOUT, Self::open_inner(uri, name)).await {
            Ok(r) => r,
            Err(_) => Err(PerfError::Timeout("connection handshake")),
        }
    }

    async fn open_inner(uri: &AmqpUri, name: &str) -> Result<SetupConn, PerfError> {
        let tcp = TcpStream::connect(uri.addr())
            .await
            .map_err(PerfError::io("connect"))?;
        tcp.set_nodelay(true)
            .map_err(PerfError::io("set TCP_NODELAY"))?;
        let stream = if uri.tls {
            tls_connect(uri, tcp).await?
        } else {
            PerfStream::Tcp(tcp)
        };
        let mut c = SetupConn {
            stream,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::with_capacity(1024),
            frame_max: 4096,
            channel_max: CLIENT_CHANNEL_MAX,
        };
        c.stream
            .write_all(&PROTOCOL_HEADER)
            .await
            .map_err(PerfError::io("send protocol header"))?;
        c.stream
            .flush()
            .await
            .map_err(PerfError::io("send protocol header"))?;
        let start = match c.next_method(0).await? {
            Method::ConnectionStart(s) => s,
            other => {
                return Err(PerfError::Protocol(format!(
                    "expected connection.start, got {}",
                    other.name()
                )))
            }
        };
        if !start
            .mechanisms
            .split(|b| *b == b' ')
            .any(|m| m == b"PLAIN")
        {
            return Err(PerfError::Protocol(
                "broker does not offer the PLAIN mechanism".into(),
            ));
        }
        let mut response = Vec::with_capacity(uri.user.len() + uri.password.len() + 2);
        response.push(0);
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        c.send(
            0,
            &Method::ConnectionStartOk(ConnectionStartOk {
                client_properties: client_properties(name),
                mechanism: "PLAIN".into(),
                response: Bytes::from(response),
                locale: "en_US".into(),
            }),
        )
        .await?;
        let tune = match c.next_method(0).await? {
            Method::ConnectionTune(t) => t,
            Method::ConnectionSecure(_) => {
                return Err(PerfError::Protocol(
                    "broker asked for a SASL challenge; only PLAIN is supported".into(),
                ))
            }
            other => {
                return Err(PerfError::Protocol(format!(
                    "expected connection.tune, got {}",
                    other.name()
                )))
            }
        };
        let frame_max = match tune.frame_max {
            0 => CLIENT_FRAME_MAX,
            n => n.min(CLIENT_FRAME_MAX),
        };
        let channel_max = match tune.channel_max {
            0 => CLIENT_CHANNEL_MAX,
            n => n.min(CLIENT_CHANNEL_MAX),
        };
        c.send(
            0,
            &Method::ConnectionTuneOk(ConnectionTuneOk {
                channel_max,
                frame_max,
                heartbeat: 0,
            }),
        )
        .await?;
        c.frame_max = frame_max;
        c.channel_max = channel_max;
        c.send(
            0,
            &Method::ConnectionOpen(ConnectionOpen {
                virtual_host: uri.vhost.clone(),
                reserved_1: String::new(),
                reserved_2: false,
            }),
        )
        .await?;
        match c.next_method(0).await? {
            Method::ConnectionOpenOk(_) => Ok(c),
            other => Err(PerfError::Protocol(format!(
                "expected connection.open-ok, got {}",
                other.name()
            ))),
        }
    }

    /// Encode and write one method frame.
    pub async fn send(&mut self, channel: u16, method: &Method) -> Result<(), PerfError> {
        self.wbuf.clear();
        encode_method_frame(&mut self.wbuf, channel, method);
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(PerfError::io("write"))?;
        self.stream.flush().await.map_err(PerfError::io("write"))
    }

    async fn read_frame(&mut self) -> Result<RawFrame, PerfError> {
        loop {
            if let Some(f) = decode_frame(&mut self.rbuf, self.frame_max.max(CLIENT_FRAME_MAX))? {
                return Ok(f);
            }
            self.rbuf.reserve(8192);
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(PerfError::io("read"))?;
            if n == 0 {
                return Err(PerfError::Eof("during setup"));
            }
        }
    }

    /// The next method on `channel` (or a connection/channel close, turned
    /// into an error after answering it). Heartbeats and frames on other
    /// channels are skipped.
    async fn next_method(&mut self, channel: u16) -> Result<Method, PerfError> {
        loop {
            let f = self.read_frame().await?;
            if f.frame_type != FRAME_METHOD {
                debug!(
                    frame_type = f.frame_type,
                    channel = f.channel,
                    "skipping frame during setup"
                );
                continue;
            }
            let m = Method::decode(&f.payload)?;
            match m {
                Method::ConnectionClose(c) if f.channel == 0 => {
                    let _ = self
                        .send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}))
                        .await;
                    return Err(PerfError::ConnectionClosed {
                        code: c.reply_code,
                        text: c.reply_text,
                        class_id: c.class_id,
                        method_id: c.method_id,
                    });
                }
                Method::ChannelClose(c) if f.channel == channel && channel != 0 => {
                    let _ = self
                        .send(channel, &Method::ChannelCloseOk(ChannelCloseOk {}))
                        .await;
                    return Err(PerfError::ChannelClosed {
                        channel,
                        code: c.reply_code,
                        text: c.reply_text,
                        class_id: c.class_id,
                        method_id: c.method_id,
                    });
                }
                m if f.channel == channel => return Ok(m),
                Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_) => {
                    debug!("connection.blocked/unblocked during setup")
                }
                m => debug!(
                    channel = f.channel,
                    method = m.name(),
                    "skipping method during setup"
                ),
            }
        }
    }

    /// Send `method` on `channel` and return the reply.
    pub async fn rpc(&mut self, channel: u16, method: Method) -> Result<Method, PerfError> {
        let name = method.name();
        let fut = async {
            self.send(channel, &method).await?;
            self.next_method(channel).await
        };
        match tokio::time::timeout(RPC_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(PerfError::Protocol(format!(
                "no reply to {name} within 30 s"
            ))),
        }
    }

    /// Open `channel`.
    pub async fn open_channel(&mut self, channel: u16) -> Result<(), PerfError> {
        if channel == 0 || channel > self.channel_max {
            return Err(PerfError::Args(format!(
                "channel {channel} exceeds the broker's channel_max {}",
                self.channel_max
            )));
        }
        match self
            .rpc(channel, Method::ChannelOpen(ChannelOpen::default()))
            .await?
        {
            Method::ChannelOpenOk(_) => Ok(()),
            other => Err(unexpected("channel.open-ok", &other)),
        }
    }

    /// Send `connection.close` and wait (bounded) for `close-ok`.
    pub async fn close(mut self) -> Result<(), PerfError> {
        self.send(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: REPLY_SUCCESS,
                reply_text: "bye".into(),
                class_id: 0,
                method_id: 0,
            }),
        )
        .await?;
        let wait = async {
            loop {
                let f = self.read_frame().await?;
                if f.frame_type == FRAME_METHOD && f.channel == 0 {
                    if let Ok(Method::ConnectionCloseOk(_)) = Method::decode(&f.payload) {
                        return Ok::<(), PerfError>(());
                    }
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), wait).await {
            Ok(r) => r,
            Err(_) => Err(PerfError::Timeout("connection.close-ok")),
        }
    }

    /// The socket and whatever was read past the last reply.
    pub fn into_parts(self) -> (PerfStream, BytesMut) {
        (self.stream, self.rbuf)
    }
}

/// "expected X, got Y".
pub fn unexpected(expected: &str, got: &Method) -> PerfError {
    PerfError::Protocol(format!("expected {expected}, got {}", got.name()))
}

pub use warren_amqp::frame::{peek_frame as next_frame, InFrame};

/// The hot methods, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot {
    /// `basic.deliver` with its delivery tag.
    Deliver(u64),
    /// `basic.ack` from the broker (a publisher confirm).
    Ack {
        /// Delivery tag.
        tag: u64,
        /// Covers every tag up to `tag`.
        multiple: bool,
    },
    /// `basic.nack` from the broker (a negative confirm).
    Nack {
        /// Delivery tag.
        tag: u64,
        /// Covers every tag up to `tag`.
        multiple: bool,
    },
    /// Anything else: decode it fully with [`Method::decode`].
    Other,
}

/// Classify a method payload, reading only what the hot methods need.
pub fn peek_hot(payload: &[u8]) -> Result<Hot, DecodeError> {
    let mut b = payload;
    let class = wire::read_u16(&mut b)?;
    let method = wire::read_u16(&mut b)?;
    match (class, method) {
        (60, 60) => {
            wire::skip_shortstr(&mut b)?;
            Ok(Hot::Deliver(wire::read_u64(&mut b)?))
        }
        (60, 80) | (60, 120) => {
            let tag = wire::read_u64(&mut b)?;
            let multiple = wire::read_u8(&mut b)? & 1 != 0;
            Ok(if method == 80 {
                Hot::Ack { tag, multiple }
            } else {
                Hot::Nack { tag, multiple }
            })
        }
        _ => Ok(Hot::Other),
    }
}

/// `body-size` of a content header payload.
pub fn header_body_size(payload: &[u8]) -> Result<u64, DecodeError> {
    let mut b = payload.get(4..).ok_or(DecodeError::Truncated)?;
    wire::read_u64(&mut b)
}

/// Encode a `connection.close` (normal shutdown) frame.
pub fn close_frame() -> Bytes {
    let mut out = BytesMut::with_capacity(32);
    encode_method_frame(
        &mut out,
        0,
        &Method::ConnectionClose(ConnectionClose {
            reply_code: REPLY_SUCCESS,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }),
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::{BasicAck, BasicDeliver, BasicNack, BasicQosOk};

    fn frame(channel: u16, m: &Method) -> BytesMut {
        let mut out = BytesMut::new();
        encode_method_frame(&mut out, channel, m);
        out
    }

    #[test]
    fn frames_in_place() {
        let mut buf = frame(3, &Method::BasicQosOk(BasicQosOk {}));
        buf.extend_from_slice(&frame(4, &Method::BasicQosOk(BasicQosOk {}))[..5]);
        let (f, used) = next_frame(&buf, 4096).unwrap().unwrap();
        assert_eq!(
            (f.kind, f.channel, f.payload),
            (FRAME_METHOD, 3, &[0, 60, 0, 11][..])
        );
        assert_eq!(next_frame(&buf[used..], 4096).unwrap(), None);
        let mut bad = frame(1, &Method::BasicQosOk(BasicQosOk {}));
        let n = bad.len();
        bad[n - 1] = 0;
        assert!(next_frame(&bad, 4096).is_err());
        assert!(next_frame(&[9, 0, 0, 0, 0, 0, 0, 0xCE], 4096).is_err());
        assert!(next_frame(&[3, 0, 0, 0, 0, 16, 0], 4096).is_err());
    }

    #[test]
    fn hot_methods() {
        let d = Method::BasicDeliver(BasicDeliver {
            consumer_tag: "ctag".into(),
            delivery_tag: 77,
            redelivered: false,
            exchange: "".into(),
            routing_key: "q".into(),
        });
        let buf = frame(1, &d);
        let (f, _) = next_frame(&buf, 0).unwrap().unwrap();
        assert_eq!(peek_hot(f.payload).unwrap(), Hot::Deliver(77));
        let buf = frame(
            1,
            &Method::BasicAck(BasicAck {
                delivery_tag: 9,
                multiple: true,
            }),
        );
        let (f, _) = next_frame(&buf, 0).unwrap().unwrap();
        assert_eq!(
            peek_hot(f.payload).unwrap(),
            Hot::Ack {
                tag: 9,
                multiple: true
            }
        );
        let buf = frame(
            1,
            &Method::BasicNack(BasicNack {
                delivery_tag: 5,
                multiple: false,
                requeue: true,
            }),
        );
        let (f, _) = next_frame(&buf, 0).unwrap().unwrap();
        assert_eq!(
            peek_hot(f.payload).unwrap(),
            Hot::Nack {
                tag: 5,
                multiple: false
            }
        );
        assert_eq!(peek_hot(&[0, 60, 0, 11]).unwrap(), Hot::Other);
        assert!(peek_hot(&[0, 60, 0, 60, 5, b'a']).is_err());
        assert!(header_body_size(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]).unwrap() == 256);
        assert!(header_body_size(&[0, 60]).is_err());
    }
}

//! A live connection: one writer task and one reader task per socket.
//!
//! The writer owns the write half. Producers hand it whole batches of encoded
//! publishes over a small bounded queue (backpressure), everything else
//! (acks, `basic.consume`, close handshakes) goes over an unbounded control
//! queue so the reader never waits on the writer. It drains whatever is
//! queued and writes it with one vectored write.
//!
//! The reader owns the read half and every channel's receive state. It reads
//! large buffers, walks the frames in place and does the consumer and
//! publisher-confirm work inline: counts deliveries, takes latency samples
//! from the body's timestamp, encodes acks (all of one read go out in one
//! control message), marks confirms and returns confirm-window permits. The
//! shared counters are updated once per read.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use warren_amqp::constants::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use warren_amqp::{
    encode_method_frame, BasicAck, ChannelCloseOk, ChannelFlowOk, ConnectionCloseOk, Method,
};

use crate::error::PerfError;
use crate::proto::{
    close_frame, header_body_size, next_frame, peek_hot, Hot, PerfStream, SetupConn,
};
use crate::stats::Stats;

/// Batches of encoded frames from a producer.
pub type Chunk = Vec<Bytes>;

/// State shared by every connection and task of a run.
pub struct Run {
    /// Counters and histograms.
    pub stats: Stats,
    /// The first error anywhere; the run stops when it is set.
    pub error: Mutex<Option<PerfError>>,
    /// `basic.consume-ok`s received.
    pub consume_ok: AtomicU64,
    /// Set when the run is winding down: EOFs and cancels are then expected.
    pub stopping: AtomicBool,
    /// Record latencies (off when consuming messages of another process).
    pub record_latency: bool,
}

impl Run {
    /// A run whose consumers record latency iff `record_latency`.
    pub fn new(record_latency: bool) -> Run {
        Run {
            stats: Stats::new(),
            error: Mutex::new(None),
            consume_ok: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            record_latency,
        }
    }

    /// Record `e` unless an error was already recorded.
    pub fn fail(&self, e: PerfError) {
        let mut slot = match self.error.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// Whether an error has been recorded.
    pub fn failed(&self) -> bool {
        match self.error.lock() {
            Ok(s) => s.is_some(),
            Err(p) => p.into_inner().is_some(),
        }
    }

    /// Take the recorded error.
    pub fn take_error(&self) -> Option<PerfError> {
        match self.error.lock() {
            Ok(mut s) => s.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }
}

/// Tracks publisher confirms of one channel with a ring of flags over the
/// window of unconfirmed delivery tags. Window permits go back to the
/// producer only as the lowest unconfirmed tag advances, which keeps every
/// published tag within the ring.
pub struct ConfirmTracker {
    base: u64,
    ring: Vec<bool>,
    mask: u64,
    permits: Arc<Semaphore>,
}

impl ConfirmTracker {
    /// A tracker for a window of `window` unconfirmed messages whose permits
    /// live in `permits`.
    pub fn new(window: u32, permits: Arc<Semaphore>) -> ConfirmTracker {
        let cap = (window.max(1) as usize).next_power_of_two();
        ConfirmTracker {
            base: 1,
            ring: vec![false; cap],
            mask: cap as u64 - 1,
            permits,
        }
    }

    /// Mark `tag` (or every tag up to it) confirmed. Returns how many tags
    /// were newly confirmed.
    pub fn confirm(&mut self, tag: u64, multiple: bool) -> Result<u64, PerfError> {
        if tag >= self.base + self.ring.len() as u64 {
            return Err(PerfError::Protocol(format!(
                "confirm for delivery tag {tag}, beyond the window (lowest unconfirmed {})",
                self.base
            )));
        }
        let mut newly = 0;
        let from = if multiple {
            self.base
        } else {
            tag.max(self.base)
        };
        if tag >= self.base {
            for t in from..=tag {
                let slot = &mut self.ring[(t & self.mask) as usize];
                if !*slot {
                    *slot = true;
                    newly += 1;
                }
            }
        }
        let start = self.base;
        while self.ring[(self.base & self.mask) as usize] {
            self.ring[(self.base & self.mask) as usize] = false;
            self.base += 1;
        }
        let advanced = (self.base - start) as usize;
        if advanced > 0 {
            self.permits.add_permits(advanced);
        }
        Ok(newly)
    }
}

/// What a channel is for.
pub enum Role {
    /// Publishes; `Some` tracks confirms.
    Producer(Option<ConfirmTracker>),
    /// Consumes.
    Consumer {
        /// Manual acks.
        manual: bool,
        /// Ack (multiple) every this many deliveries.
        ack_every: u64,
    },
}

enum Content {
    Idle,
    Header {
        deliver: bool,
    },
    Body {
        deliver: bool,
        size: u64,
        remaining: u64,
        first: bool,
    },
}

struct Chan {
    role: Role,
    content: Content,
    tag: u64,
    ts: u64,
    unacked: u64,
}

/// Per-read accumulators of the reader.
#[derive(Default)]
struct Tally {
    consumed: u64,
    bytes: u64,
    confirmed: u64,
    nacked: u64,
    returned: u64,
    consume_ok: u64,
    blocked: Option<bool>,
    close_ok: bool,
}

struct Reader {
    chans: Vec<Option<Chan>>,
    frame_max: u32,
    out: BytesMut,
    lat: Vec<u64>,
    record_latency: bool,
}

impl Reader {
    fn chan(&mut self, ch: u16) -> Option<&mut Chan> {
        self.chans.get_mut(usize::from(ch)).and_then(Option::as_mut)
    }

    /// Handle every complete frame of `buf`; returns the bytes consumed.
    fn process(
        &mut self,
        buf: &[u8],
        now_ns: u64,
        stopping: bool,
        t: &mut Tally,
    ) -> Result<usize, PerfError> {
        let mut pos = 0;
        while let Some((f, used)) = next_frame(&buf[pos..], self.frame_max)? {
            pos += used;
            match f.kind {
                FRAME_METHOD => self.method(f.channel, f.payload, stopping, t)?,
                FRAME_HEADER => {
                    let size = header_body_size(f.payload)?;
                    let record = self.record_latency;
                    let Some(c) = self.chan(f.channel) else {
                        continue;
                    };
                    let Content::Header { deliver } = c.content else {
                        return Err(PerfError::Protocol(format!(
                            "unexpected content header on channel {}",
                            f.channel
                        )));
                    };
                    c.ts = 0;
                    if size == 0 {
                        c.content = Content::Idle;
                        if deliver {
                            let (ack, lat) = complete(c, 0, now_ns, record, t);
                            self.after_delivery(f.channel, ack, lat);
                        }
                    } else {
                        c.content = Content::Body {
                            deliver,
                            size,
                            remaining: size,
                            first: true,
                        };
                    }
                }
                FRAME_BODY => {
                    let record = self.record_latency;
                    let Some(c) = self.chan(f.channel) else {
                        continue;
                    };
                    let Content::Body {
                        deliver,
                        size,
                        remaining,
                        first,
                    } = &mut c.content
                    else {
                        return Err(PerfError::Protocol(format!(
                            "unexpected body frame on channel {}",
                            f.channel
                        )));
                    };
                    let len = f.payload.len() as u64;
                    if len > *remaining {
                        return Err(PerfError::Protocol(format!(
                            "body larger than announced on channel {}",
                            f.channel
                        )));
                    }
                    let ts = if *first && f.payload.len() >= 8 {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&f.payload[..8]);
                        Some(u64::from_be_bytes(b))
                    } else {
                        None
                    };
                    *first = false;
                    *remaining -= len;
                    let (done, deliver, size) = (*remaining == 0, *deliver, *size);
                    if let Some(ts) = ts {
                        c.ts = ts;
                    }
                    if done {
                        c.content = Content::Idle;
                        if deliver {
                            let (ack, lat) = complete(c, size, now_ns, record, t);
                            self.after_delivery(f.channel, ack, lat);
                        }
                    }
                }
                _ => {} // heartbeat
            }
        }
        Ok(pos)
    }

    fn after_delivery(&mut self, ch: u16, ack: Option<(u64, bool)>, lat: Option<u64>) {
        if let Some(us) = lat {
            self.lat.push(us);
        }
        if let Some((tag, multiple)) = ack {
            encode_method_frame(
                &mut self.out,
                ch,
                &Method::BasicAck(BasicAck {
                    delivery_tag: tag,
                    multiple,
                }),
            );
        }
    }

    fn method(
        &mut self,
        ch: u16,
        payload: &[u8],
        stopping: bool,
        t: &mut Tally,
    ) -> Result<(), PerfError> {
        match peek_hot(payload)? {
            Hot::Deliver(tag) => {
                if let Some(c) = self.chan(ch) {
                    c.tag = tag;
                    c.content = Content::Header { deliver: true };
                }
                return Ok(());
            }
            hot @ (Hot::Ack { tag, multiple } | Hot::Nack { tag, multiple }) => {
                let nack = matches!(hot, Hot::Nack { .. });
                if let Some(Chan {
                    role: Role::Producer(Some(tr)),
                    ..
                }) = self.chan(ch)
                {
                    let n = tr.confirm(tag, multiple)?;
                    if nack {
                        t.nacked += n;
                    } else {
                        t.confirmed += n;
                    }
                }
                return Ok(());
            }
            Hot::Other => {}
        }
        let m = Method::decode(payload)?;
        match m {
            Method::ConnectionClose(c) => {
                encode_method_frame(
                    &mut self.out,
                    0,
                    &Method::ConnectionCloseOk(ConnectionCloseOk {}),
                );
                return Err(PerfError::ConnectionClosed {
                    code: c.reply_code,
                    text: c.reply_text,
                    class_id: c.class_id,
                    method_id: c.method_id,
                });
            }
            Method::ConnectionCloseOk(_) => t.close_ok = true,
            Method::ConnectionBlocked(_) => t.blocked = Some(true),
            Method::ConnectionUnblocked(_) => t.blocked = Some(false),
            Method::ChannelClose(c) => {
                encode_method_frame(
                    &mut self.out,
                    ch,
                    &Method::ChannelCloseOk(ChannelCloseOk {}),
                );
                return Err(PerfError::ChannelClosed {
                    channel: ch,
                    code: c.reply_code,
                    text: c.reply_text,
                    class_id: c.class_id,
                    method_id: c.method_id,
                });
            }
            Method::ChannelFlow(f) => {
                encode_method_frame(
                    &mut self.out,
                    ch,
                    &Method::ChannelFlowOk(ChannelFlowOk { active: f.active }),
                );
            }
            Method::BasicConsumeOk(_) => t.consume_ok += 1,
            Method::BasicCancel(c) if !stopping => {
                return Err(PerfError::ConsumerCancelled(c.consumer_tag))
            }
            Method::BasicReturn(_) => {
                t.returned += 1;
                if let Some(c) = self.chan(ch) {
                    c.content = Content::Header { deliver: false };
                }
            }
            Method::BasicGetOk(_) => {
                if let Some(c) = self.chan(ch) {
                    c.content = Content::Header { deliver: false };
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A delivery's content is complete: count it, and say whether to ack (tag,
/// multiple) and what latency (µs) to record.
fn complete(
    c: &mut Chan,
    size: u64,
    now_ns: u64,
    record: bool,
    t: &mut Tally,
) -> (Option<(u64, bool)>, Option<u64>) {
    t.consumed += 1;
    t.bytes += size;
    let lat = (record && c.ts != 0 && c.ts <= now_ns).then(|| (now_ns - c.ts) / 1000);
    let ack = match c.role {
        Role::Consumer {
            manual: true,
            ack_every,
        } => {
            c.unacked += 1;
            if c.unacked >= ack_every {
                c.unacked = 0;
                Some((c.tag, ack_every > 1))
            } else {
                None
            }
        }
        _ => None,
    };
    (ack, lat)
}

/// A connection after setup: the queues into its writer and the state its
/// reader publishes.
pub struct Live {
    /// Producers' batches.
    pub data_tx: mpsc::Sender<Chunk>,
    /// Control frames.
    pub ctrl_tx: mpsc::UnboundedSender<Bytes>,
    /// `connection.blocked` state.
    pub blocked: watch::Receiver<bool>,
    /// Negotiated frame_max.
    pub frame_max: u32,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// Producer batches the writer may hold before producers wait.
const DATA_QUEUE: usize = 4;
/// At most this many buffers per vectored write.
const MAX_IOV: usize = 64;
/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;

impl Live {
    /// Go live with `roles` (channel number, role) on the set-up connection.
    pub fn start(setup: SetupConn, roles: Vec<(u16, Role)>, run: Arc<Run>) -> Live {
        let frame_max = setup.frame_max;
        let (stream, leftover) = setup.into_parts();

        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (blocked_tx, blocked) = watch::channel(false);
        let max_ch = roles
            .iter()
            .map(|(c, _)| usize::from(*c))
            .max()
            .unwrap_or(0);
        let mut chans: Vec<Option<Chan>> = (0..=max_ch).map(|_| None).collect();
        for (ch, role) in roles {
            chans[usize::from(ch)] = Some(Chan {
                role,
                content: Content::Idle,
                tag: 0,
                ts: 0,
                unacked: 0,
            });
        }
        let reader = Reader {
            chans,
            frame_max,
            out: BytesMut::with_capacity(4096),
            lat: Vec::with_capacity(4096),
            record_latency: run.record_latency,
        };
        let loops = Loops {
            leftover,
            reader,
            ctrl_tx: ctrl_tx.clone(),
            ctrl_rx,
            data_rx,
            blocked_tx,
            run,
        };
        // Plain TCP keeps its owned halves (no lock between reader and writer); TLS is one
        // session, shared by the two halves.
        let (reader, writer) = match stream {
            PerfStream::Tcp(tcp) => {
                let (rd, wr) = tcp.into_split();
                loops.spawn(rd, wr)
            }
            PerfStream::Tls(tls) => {
                let (rd, wr) = tokio::io::split(*tls);
                loops.spawn(rd, wr)
            }
        };
        Live {
            data_tx,
            ctrl_tx,
            blocked,
            frame_max,
            reader,
            writer,
        }
    }

    /// Queue a control frame (already encoded).
    pub fn send_ctrl(&self, frame: Bytes) {
        let _ = self.ctrl_tx.send(frame);
    }

    /// Close politely: `connection.close`, wait (bounded) for the reader to
    /// see `close-ok`, then stop both tasks.
    pub async fn close(self) {
        let Live {
            data_tx,
            ctrl_tx,
            reader,
            writer,
            ..
        } = self;
        drop(data_tx);
        let _ = ctrl_tx.send(close_frame());
        drop(ctrl_tx);
        let mut reader = reader;
        if tokio::time::timeout(Duration::from_secs(5), &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
        let mut writer = writer;
        if tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
}

/// What the reader and writer tasks of a connection start with.
struct Loops {
    leftover: BytesMut,
    reader: Reader,
    ctrl_tx: mpsc::UnboundedSender<Bytes>,
    ctrl_rx: mpsc::UnboundedReceiver<Bytes>,
    data_rx: mpsc::Receiver<Chunk>,
    blocked_tx: watch::Sender<bool>,
    run: Arc<Run>,
}

impl Loops {
    /// Starts the reader and writer tasks on the connection's two halves.
    fn spawn<R, W>(self, rd: R, wr: W) -> (JoinHandle<()>, JoinHandle<()>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let read = tokio::spawn(read_loop(
            rd,
            self.leftover,
            self.reader,
            self.ctrl_tx,
            self.blocked_tx,
            Arc::clone(&self.run),
        ));
        let write = tokio::spawn(write_loop(wr, self.data_rx, self.ctrl_rx, self.run));
        (read, write)
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    mut buf: BytesMut,
    mut reader: Reader,
    ctrl_tx: mpsc::UnboundedSender<Bytes>,
    blocked_tx: watch::Sender<bool>,
    run: Arc<Run>,
) {
    let result = async {
        loop {
            let stopping = run.is_stopping();
            let mut tally = Tally::default();
            let now_ns = run.stats.now_ns();
            let used = reader.process(&buf, now_ns, stopping, &mut tally);
            // flush what this read produced, even when it ended in an error
            // (a close-ok must still go out)
            if !reader.out.is_empty() {
                let _ = ctrl_tx.send(reader.out.split().freeze());
            }
            let used = used?;
            buf.advance(used);
            publish(&run.stats, &tally, now_ns);
            run.stats.record_latencies(&reader.lat);
            reader.lat.clear();
            if tally.consume_ok > 0 {
                run.consume_ok.fetch_add(tally.consume_ok, Relaxed);
            }
            if let Some(b) = tally.blocked {
                let _ = blocked_tx.send(b);
            }
            if tally.close_ok {
                return Ok(());
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let n = rd.read_buf(&mut buf).await.map_err(PerfError::io("read"))?;
            if n == 0 {
                return if run.is_stopping() {
                    Ok(())
                } else {
                    Err(PerfError::Eof("while running"))
                };
            }
        }
    }
    .await;
    let _ = blocked_tx.send(false);
    if let Err(e) = result {
        if !(run.is_stopping() && matches!(e, PerfError::Io { .. } | PerfError::Eof(_))) {
            run.fail(e);
        }
    }
}

fn publish(s: &Stats, t: &Tally, now_ns: u64) {
    if t.consumed > 0 {
        s.consumed.fetch_add(t.consumed, Relaxed);
        s.consumed_bytes.fetch_add(t.bytes, Relaxed);
        s.last_consume_ns.store(now_ns, Relaxed);
    }
    if t.confirmed > 0 || t.nacked > 0 {
        s.confirmed.fetch_add(t.confirmed, Relaxed);
        s.nacked.fetch_add(t.nacked, Relaxed);
        s.last_confirm_ns.store(now_ns, Relaxed);
    }
    if t.returned > 0 {
        s.returned.fetch_add(t.returned, Relaxed);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut data: mpsc::Receiver<Chunk>,
    mut ctrl: mpsc::UnboundedReceiver<Bytes>,
    run: Arc<Run>,
) {
    let mut queue: VecDeque<Bytes> = VecDeque::with_capacity(MAX_IOV * 2);
    let mut cbuf: Vec<Bytes> = Vec::with_capacity(64);
    let mut dbuf: Vec<Chunk> = Vec::with_capacity(DATA_QUEUE);
    let mut data_open = true;
    loop {
        tokio::select! {
            biased;
            n = ctrl.recv_many(&mut cbuf, 64) => {
                if n == 0 {
                    break;
                }
            }
            n = data.recv_many(&mut dbuf, DATA_QUEUE), if data_open => {
                if n == 0 {
                    data_open = false;
                }
            }
        }
        while let Ok(b) = ctrl.try_recv() {
            cbuf.push(b);
        }
        if data_open {
            while let Ok(c) = data.try_recv() {
                dbuf.push(c);
            }
        }
        queue.extend(cbuf.drain(..));
        for c in dbuf.drain(..) {
            queue.extend(c);
        }
        if let Err(e) = write_all(&mut wr, &mut queue).await {
            if !run.is_stopping() {
                run.fail(PerfError::Io {
                    context: "write",
                    source: e,
                });
            }
            return;
        }
    }
}

/// Writes the queue out (vectored), then flushes: a no-op on TCP, what makes a TLS
/// session send its records.
async fn write_all<W: AsyncWrite + Unpin>(
    wr: &mut W,
    queue: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !queue.is_empty() {
        let mut n = if queue.len() == 1 {
            wr.write(&queue[0]).await?
        } else {
            let iov: Vec<IoSlice<'_>> = queue
                .iter()
                .take(MAX_IOV)
                .map(|b| IoSlice::new(b))
                .collect();
            wr.write_vectored(&iov).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        while queue.front().is_some_and(Bytes::is_empty) {
            queue.pop_front();
        }
    }
    wr.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::{encode_body_frames, encode_header_frame, BasicDeliver, BasicProperties};

    #[test]
    fn confirm_tracker_window() {
        let sem = Arc::new(Semaphore::new(0));
        let mut t = ConfirmTracker::new(10, sem.clone());
        assert_eq!(t.confirm(1, false).unwrap(), 1);
        assert_eq!(sem.available_permits(), 1);
        // out of order single confirm: counted, permits wait for tag 2
        assert_eq!(t.confirm(3, false).unwrap(), 1);
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(t.confirm(5, true).unwrap(), 3); // 2, 4 and 5
        assert_eq!(sem.available_permits(), 5);
        assert_eq!(t.confirm(5, true).unwrap(), 0); // duplicate
        assert_eq!(t.confirm(2, false).unwrap(), 0);
        assert!(t.confirm(6 + 16, false).is_err()); // beyond the ring
    }

    fn delivery(ch: u16, tag: u64, ts: u64, size: usize) -> BytesMut {
        let mut out = BytesMut::new();
        encode_method_frame(
            &mut out,
            ch,
            &Method::BasicDeliver(BasicDeliver {
                consumer_tag: "c".into(),
                delivery_tag: tag,
                redelivered: false,
                exchange: String::new(),
                routing_key: "q".into(),
            }),
        );
        encode_header_frame(
            &mut out,
            ch,
            60,
            size as u64,
            &BasicProperties::default().to_bytes(),
        );
        let mut body = vec![0u8; size];
        body[..8].copy_from_slice(&ts.to_be_bytes());
        encode_body_frames(&mut out, ch, &body, 4096);
        out
    }

    fn reader(manual: bool, ack_every: u64) -> Reader {
        Reader {
            chans: vec![
                None,
                Some(Chan {
                    role: Role::Consumer { manual, ack_every },
                    content: Content::Idle,
                    tag: 0,
                    ts: 0,
                    unacked: 0,
                }),
            ],
            frame_max: 4096,
            out: BytesMut::new(),
            lat: vec![],
            record_latency: true,
        }
    }

    #[test]
    fn consumer_counts_latency_and_acks_multiple() {
        let mut r = reader(true, 2);
        let mut buf = BytesMut::new();
        for tag in 1..=5 {
            buf.extend_from_slice(&delivery(1, tag, 1_000_000, 10_000)); // 3 body frames each
        }
        let whole = buf.len();
        buf.extend_from_slice(&delivery(1, 6, 1_000_000, 16)[..20]); // partial
        let mut t = Tally::default();
        let used = r.process(&buf, 3_000_000, false, &mut t).unwrap();
        assert_eq!(used, whole);
        assert_eq!(t.consumed, 5);
        assert_eq!(t.bytes, 50_000);
        assert_eq!(r.lat, vec![2000; 5]);
        // acks for tags 2 and 4, multiple
        let mut acks = vec![];
        let mut p = 0;
        while let Some((f, n)) = next_frame(&r.out[p..], 0).unwrap() {
            acks.push(peek_hot(f.payload).unwrap());
            p += n;
        }
        assert_eq!(
            acks,
            vec![
                Hot::Ack {
                    tag: 2,
                    multiple: true
                },
                Hot::Ack {
                    tag: 4,
                    multiple: true
                }
            ]
        );
    }

    #[test]
    fn blocked_unblocked_and_confirms() {
        let sem = Arc::new(Semaphore::new(0));
        let mut r = reader(false, 1);
        r.chans[1] = Some(Chan {
            role: Role::Producer(Some(ConfirmTracker::new(8, sem.clone()))),
            content: Content::Idle,
            tag: 0,
            ts: 0,
            unacked: 0,
        });
        let mut out = BytesMut::new();
        encode_method_frame(
            &mut out,
            0,
            &Method::ConnectionBlocked(warren_amqp::ConnectionBlocked {
                reason: "low on memory".into(),
            }),
        );
        let mut t = Tally::default();
        r.process(&out, 1, false, &mut t).unwrap();
        assert_eq!(t.blocked, Some(true));
        out.clear();
        encode_method_frame(
            &mut out,
            0,
            &Method::ConnectionUnblocked(warren_amqp::ConnectionUnblocked {}),
        );
        encode_method_frame(
            &mut out,
            1,
            &Method::BasicAck(BasicAck {
                delivery_tag: 3,
                multiple: true,
            }),
        );
        encode_method_frame(
            &mut out,
            1,
            &Method::BasicNack(warren_amqp::BasicNack {
                delivery_tag: 4,
                multiple: false,
                requeue: false,
            }),
        );
        let mut t = Tally::default();
        r.process(&out, 1, false, &mut t).unwrap();
        assert_eq!((t.blocked, t.confirmed, t.nacked), (Some(false), 3, 1));
        assert_eq!(sem.available_permits(), 4);
    }

    #[test]
    fn broker_errors_surface() {
        let mut r = reader(false, 1);
        let mut out = BytesMut::new();
        encode_method_frame(
            &mut out,
            1,
            &Method::ChannelClose(warren_amqp::ChannelClose {
                reply_code: 404,
                reply_text: "NOT_FOUND - no queue".into(),
                class_id: 60,
                method_id: 20,
            }),
        );
        let err = r
            .process(&out, 1, false, &mut Tally::default())
            .unwrap_err();
        assert!(
            matches!(
                err,
                PerfError::ChannelClosed {
                    channel: 1,
                    code: 404,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!r.out.is_empty(), "channel.close-ok queued");
        // body without header is a protocol error, not a panic
        let mut r = reader(false, 1);
        let mut bad = BytesMut::new();
        warren_amqp::encode_frame(&mut bad, FRAME_BODY, 1, b"0123456789abcdef");
        assert!(r.process(&bad, 1, false, &mut Tally::default()).is_err());
    }
}

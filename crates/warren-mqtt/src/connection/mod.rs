//! One MQTT connection: CONNECT (`connect.rs`), then the loop that reads packets, takes
//! deliveries from the session's queues, holds acknowledgements until the fsync covering
//! their messages, and writes everything a turn produced in one write. Publishing is in
//! `inbound.rs`, subscriptions in `subscribe.rs`, deliveries in `outbound.rs`, SCRAM
//! authentication in `auth.rs`. Teardown
//! runs from `Drop`-safe paths: queues get back every unacknowledged delivery.

mod auth;
mod connect;
mod inbound;
mod outbound;
mod subscribe;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info};
use warren_core::connections::{ConnectionControl, Registration};
use warren_core::vhost::RouteScratch;
use warren_core::{Credit, Delivery, DeliverySink, Entry, Queue, VHost};

use crate::codec::{self, reason, DecodeError, Packet, Properties, SubOptions, Version, Will};
use crate::session::{Hold, Kick};
use crate::Mqtt;

/// How many queued deliveries are handled per loop turn before the socket write.
const EVENT_BATCH: usize = 512;
/// Bytes of deliveries that may wait unwritten for one connection.
const BACKLOG_BYTES: usize = 8 * 1024 * 1024;
const DELIVERY_OVERHEAD: usize = 64;
/// Unwritten store bytes above which publishing connections pause (as AMQP's).
const STORE_BACKLOG_LIMIT: u64 = 8 * 1024 * 1024;
const THROTTLE_POLL: Duration = Duration::from_millis(2);
const READ_CHUNK: usize = 64 * 1024;
/// The read buffer of a connection that has sent only small packets.
const SMALL_READ: usize = 512;

pub(crate) enum Event {
    Deliver(Delivery),
    Cancelled,
    ForceClose(String),
    TakenOver,
}

/// The session's [`DeliverySink`], [`ConnectionControl`] and takeover handle: an inbox of
/// events for its task. A mutex-guarded deque and a `Notify` rather than a channel, so an
/// idle connection holds no buffer at all (a tokio channel allocates its first block of 32
/// slots up front, some 3 KiB here, per connection).
pub(crate) struct Sink {
    inbox: parking_lot::Mutex<Inbox>,
    wake: tokio::sync::Notify,
    pending_bytes: AtomicUsize,
    starved: AtomicBool,
}

#[derive(Default)]
struct Inbox {
    events: VecDeque<Event>,
    /// The task is gone: deliveries go straight back to their queues.
    closed: bool,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            inbox: parking_lot::Mutex::new(Inbox::default()),
            wake: tokio::sync::Notify::new(),
            pending_bytes: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
        }
    }

    fn push(&self, ev: Event) {
        let mut inbox = self.inbox.lock();
        if inbox.closed {
            drop(inbox);
            if let Event::Deliver(d) = ev {
                d.give_back();
            }
            return;
        }
        inbox.events.push_back(ev);
        drop(inbox);
        self.wake.notify_one();
    }

    /// Moves up to `max` events into `into`.
    fn take(&self, into: &mut VecDeque<Event>, max: usize) {
        let mut inbox = self.inbox.lock();
        if into.is_empty() && inbox.events.len() <= max {
            std::mem::swap(into, &mut inbox.events);
            return;
        }
        let n = inbox.events.len().min(max);
        into.extend(inbox.events.drain(..n));
    }

    /// Refuses further events and answers what was still queued.
    fn close(&self) -> VecDeque<Event> {
        let mut inbox = self.inbox.lock();
        inbox.closed = true;
        std::mem::take(&mut inbox.events)
    }
}

impl DeliverySink for Sink {
    fn deliver(&self, delivery: Delivery) {
        self.pending_bytes.fetch_add(
            delivery.msg.body.len() + DELIVERY_OVERHEAD,
            Ordering::Relaxed,
        );
        self.push(Event::Deliver(delivery));
    }

    fn has_capacity(&self) -> bool {
        let room = self.pending_bytes.load(Ordering::Relaxed) < BACKLOG_BYTES;
        if !room {
            self.starved.store(true, Ordering::Relaxed);
        }
        room
    }

    fn cancelled(&self, _channel: u16, _consumer_tag: &Arc<str>) {
        self.push(Event::Cancelled);
    }
}

impl ConnectionControl for Sink {
    fn force_close(&self, reason: String) {
        self.push(Event::ForceClose(reason));
    }
}

impl Kick for Sink {
    fn kick(&self) {
        self.push(Event::TakenOver);
    }
}

/// Why a connection ended (for the log line every close gets).
#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug in the close log
pub(crate) enum End {
    /// DISCONNECT from the client; `with_will` unless its reason was 0x00 (MQTT 5).
    Disconnected {
        with_will: bool,
    },
    Eof,
    Io(std::io::Error),
    /// The client broke the protocol: a DISCONNECT with this reason (MQTT 5) and the close.
    Violation(u8, String),
    KeepAliveTimeout,
    TakenOver,
    Forced(String),
    WriteStalled,
}

impl End {
    /// Whether the will message is published (every end but a normal DISCONNECT).
    fn publishes_will(&self) -> bool {
        !matches!(self, End::Disconnected { with_will: false })
    }
}

pub(crate) fn violation(e: DecodeError) -> End {
    End::Violation(e.reason_code(), e.to_string())
}

/// A subscription of this session.
pub(crate) struct Sub {
    /// The filter proper (without `$share/group/`).
    pub filter: String,
    pub opts: SubOptions,
    pub id: Option<u32>,
    pub group: Option<String>,
    pub queue: Arc<Queue>,
    /// The binding's arguments (needed to remove exactly this binding).
    pub args: warren_amqp::FieldTable,
    pub binding_key: String,
}

/// A delivery to the client waiting for PUBACK or PUBREC.
pub(crate) struct InFlight {
    pub queue: Option<Arc<Queue>>,
    pub entry: Option<Entry>,
    /// Whether it took a unit of the session's credit.
    pub credited: bool,
}

pub(crate) struct Conn<W> {
    mqtt: Arc<Mqtt>,
    id: u64,
    peer: SocketAddr,
    version: Version,
    v5: bool,
    client_id: String,
    user: String,
    vhost: Arc<VHost>,
    persistent: bool,
    /// MQTT 5 session expiry interval, seconds (u32::MAX: never).
    session_expiry: u32,
    keep_alive: u16,
    /// Boxed: most clients have none, and it is large.
    will: Option<Box<Will>>,
    hold: Hold,
    subs: HashMap<String, Sub>,
    /// The session's own queues: QoS 0 and QoS 1/2 subscriptions.
    own: [Option<Arc<Queue>>; 2],
    /// Shared-subscription queues this session consumes from, by name.
    consuming: HashMap<String, Arc<Queue>>,
    sink: Arc<Sink>,
    /// Keeps the registry's weak handle alive for as long as the connection is.
    _control: Arc<dyn ConnectionControl>,
    credit: Arc<Credit>,
    channel_credit: Arc<Credit>,
    inflight: HashMap<u16, InFlight>,
    next_pid: u16,
    /// Acknowledgements of the client's publishes, in order, each with the store generation
    /// it waits for (0: none).
    pending_acks: VecDeque<(u64, Packet)>,
    /// Inbound QoS 1 publishes not yet acknowledged (against Receive Maximum).
    unacked_in: usize,
    client_max_packet: usize,
    /// Logged in with SCRAM (so AUTH may re-authenticate), and a re-authentication
    /// under way.
    scram_login: bool,
    reauth: Option<Box<warren_core::access::scram::ScramServer>>,
    /// Retained QoS 1 and 2 messages of new subscriptions waiting for credit.
    retained_backlog: VecDeque<crate::codec::Publish>,
    aliases_in: HashMap<u16, String>,
    out: BytesMut,
    writer: W,
    scratch: RouteScratch,
    lagging: Vec<Arc<Queue>>,
    may_publish: Option<bool>,
    _registration: Registration,
    synced: Option<watch::Receiver<u64>>,
    /// Cached AMQP properties of plain publishes (no MQTT 5 properties), by QoS, DUP and
    /// retain; allocated by the first publish (idle and subscribe-only clients have none).
    plain_props: Option<Box<[Option<bytes::Bytes>; 12]>>,
    _slots: (
        warren_core::vhost::ConnectionSlot,
        warren_core::access::user_limits::UserSlot,
    ),
}

/// Serves one accepted MQTT stream to its end.
pub(crate) async fn serve<S>(
    mqtt: Arc<Mqtt>,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let mut inbuf = BytesMut::with_capacity(SMALL_READ);
    let sink = Arc::new(Sink::new());
    // Boxed: CONNECT's state (the login, the takeover wait) is large and over once the
    // session runs; inline, every idle connection's task would keep room for it.
    let opened = Box::pin(connect::open(
        &mqtt,
        &mut reader,
        writer,
        &mut inbuf,
        peer,
        local,
        tls,
        Arc::clone(&sink),
    ))
    .await;
    let Some(mut conn) = opened else {
        return;
    };
    mqtt.connected.fetch_add(1, Ordering::Relaxed);
    let end = conn.run(&mut reader, &mut inbuf).await;
    mqtt.connected.fetch_sub(1, Ordering::Relaxed);
    conn.finish(end).await;
}

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    async fn run<R: AsyncRead + Unpin>(&mut self, reader: &mut R, inbuf: &mut BytesMut) -> End {
        let mut batch: VecDeque<Event> = VecDeque::new();
        // 1.5 times the keep alive (section 3.1.2.10); 0 turns it off.
        let grace = Duration::from_millis(self.keep_alive as u64 * 1500);
        let mut deadline = Instant::now() + grace;
        let mut alarms = self.mqtt.broker.alarms().subscribe();
        // Whatever came with the CONNECT.
        if let Err(end) = self.on_input(inbuf, 0).await {
            return end;
        }
        loop {
            self.flush_acks();
            if let Err(end) = self.write_out().await {
                return end;
            }
            let throttled = self.throttled(&alarms);
            if throttled {
                // Unread PINGREQs are the broker's doing, not a dead client's.
                deadline = Instant::now() + grace;
            }
            let waiting_sync = self.pending_acks.front().is_some_and(|(g, _)| *g > 0);
            if waiting_sync {
                if let Some(p) = self.mqtt.broker.persistence() {
                    p.request_sync();
                }
            }
            let mut synced = self.synced.take();
            tokio::select! {
                biased;
                _ = self.sink.wake.notified() => {
                    let sink = Arc::clone(&self.sink);
                    loop {
                        sink.take(&mut batch, EVENT_BATCH);
                        if batch.is_empty() {
                            break;
                        }
                        while let Some(ev) = batch.pop_front() {
                            if let Err(end) = self.on_event(ev) {
                                batch.clear();
                                return end;
                            }
                        }
                        if self.out.len() > 256 * 1024 {
                            break;
                        }
                    }
                    if batch.capacity() > 4 * EVENT_BATCH {
                        batch = VecDeque::new();
                    }
                    // More may be waiting (a full batch): come back after the write.
                    if !sink.inbox.lock().events.is_empty() {
                        sink.wake.notify_one();
                    }
                }
                _ = wait_synced(&mut synced), if waiting_sync => {}
                read = reader.read_buf(inbuf), if !throttled => {
                    let n = match read {
                        Ok(0) => return End::Eof,
                        Err(e) => return End::Io(e),
                        Ok(n) => n,
                    };
                    deadline = Instant::now() + grace;
                    if let Err(end) = self.on_input(inbuf, n).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if self.keep_alive > 0 => {
                    return End::KeepAliveTimeout;
                }
                _ = tokio::time::sleep(THROTTLE_POLL), if throttled => {}
                _ = alarms.changed(), if throttled => {}
            }
            self.synced = synced;
            if self.sink.starved.load(Ordering::Relaxed)
                && self.sink.pending_bytes.load(Ordering::Relaxed) < BACKLOG_BYTES / 2
            {
                self.sink.starved.store(false, Ordering::Relaxed);
                self.dispatch_all();
            }
        }
    }

    /// Handles every whole packet read so far; `last_read` is how many bytes the last read
    /// brought, which decides how much room the next read gets.
    async fn on_input(&mut self, inbuf: &mut BytesMut, last_read: usize) -> Result<(), End> {
        loop {
            let packet =
                match codec::decode(inbuf, Some(self.version), self.mqtt.config.max_packet_size) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => return Err(violation(e)),
                };
            self.on_packet(packet).await?;
            if self.out.len() > 256 * 1024 {
                self.write_out().await?;
            }
        }
        // A connection that reads a little keeps a small buffer (idle clients are most of
        // them); one that fills its buffer gets a large one.
        if inbuf.capacity() - inbuf.len() < SMALL_READ / 2 {
            let want = if last_read >= 4096 { READ_CHUNK } else { 4096 };
            inbuf.reserve(want.max(inbuf.len()));
        }
        Ok(())
    }

    /// Whether reading from the client pauses: a resource alarm, acknowledgements piling up
    /// backlog, or a queue whose consumers lag behind.
    fn throttled(&mut self, alarms: &watch::Receiver<warren_core::alarms::AlarmState>) -> bool {
        if alarms.borrow().blocked() || self.pending_acks.len() >= PENDING_ACKS_LIMIT {
            return true;
        }
        self.lagging.retain(|q| q.is_lagging());
        if !self.lagging.is_empty() {
            return true;
        }
        self.mqtt
            .broker
            .persistence()
            .is_some_and(|p| p.buffered_bytes() > STORE_BACKLOG_LIMIT)
    }

    fn on_event(&mut self, ev: Event) -> Result<(), End> {
        match ev {
            Event::Deliver(d) => {
                self.sink
                    .pending_bytes
                    .fetch_sub(d.msg.body.len() + DELIVERY_OVERHEAD, Ordering::Relaxed);
                self.deliver(d);
                Ok(())
            }
            // A queue of this session was deleted (by an operator): the session cannot
            // go on as the client believes it does.
            Event::Cancelled => Err(End::Forced("a queue of this session was deleted".into())),
            Event::ForceClose(reason) => Err(End::Forced(reason)),
            Event::TakenOver => Err(End::TakenOver),
        }
    }

    async fn on_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await,
            Packet::Ack {
                kind, pid, reason, ..
            } => self.on_ack(kind, pid, reason),
            Packet::Subscribe {
                pid,
                props,
                filters,
            } => self.on_subscribe(pid, props, filters),
            Packet::Unsubscribe { pid, filters, .. } => {
                self.on_unsubscribe(pid, filters);
                Ok(())
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect { reason, props } => {
                if let Some(expiry) = props.session_expiry {
                    // Section 3.14.2.2.2: a session that was to end at the disconnect cannot
                    // be given an expiry at the disconnect.
                    if self.session_expiry == 0 && expiry != 0 {
                        return Err(End::Violation(
                            reason::PROTOCOL_ERROR,
                            "session expiry set at DISCONNECT after 0 at CONNECT".into(),
                        ));
                    }
                    self.session_expiry = expiry;
                }
                Err(End::Disconnected {
                    // Section 3.1.2.5: only a normal disconnection (0x00) deletes the will.
                    with_will: reason != reason::SUCCESS,
                })
            }
            Packet::Auth { reason, props } => self.on_auth(reason, props),
            other => Err(End::Violation(
                reason::PROTOCOL_ERROR,
                format!("unexpected packet from a client: {other:?}"),
            )),
        }
    }

    pub(crate) fn send(&mut self, packet: &Packet) {
        packet.encode(self.v5, &mut self.out);
    }

    async fn write_out(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.mqtt.config.send_timeout;
        let out = &self.out;
        let writer = &mut self.writer;
        let written = tokio::time::timeout(timeout, async {
            writer.write_all(out).await?;
            writer.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                self.out.clear();
                if self.out.capacity() > 1024 * 1024 {
                    self.out = BytesMut::new();
                }
                Ok(())
            }
            Ok(Err(e)) => Err(End::Io(e)),
            Err(_) => Err(End::WriteStalled),
        }
    }

    /// Lets every queue this session consumes from dispatch again.
    fn dispatch_all(&self) {
        for q in self.own.iter().flatten() {
            q.dispatch();
        }
        for q in self.consuming.values() {
            q.dispatch();
        }
    }

    /// Ends the connection: the DISCONNECT a violation or takeover gets (MQTT 5), the log
    /// line, the will, unacknowledged deliveries back to their queues, and the session's
    /// queues deleted if it does not outlive the connection.
    async fn finish(&mut self, end: End) {
        let disconnect_reason = match &end {
            End::Violation(code, _) => Some(*code),
            End::TakenOver => Some(reason::SESSION_TAKEN_OVER),
            End::KeepAliveTimeout => Some(reason::KEEP_ALIVE_TIMEOUT),
            End::Forced(_) => Some(reason::ADMINISTRATIVE_ACTION),
            _ => None,
        };
        if let (true, Some(code)) = (self.v5, disconnect_reason) {
            // Every DISCONNECT carries a reason string (paho-mqtt 2.1 reads a reason code
            // only from a DISCONNECT longer than two bytes).
            let text = match &end {
                End::Violation(_, text) | End::Forced(text) => text.clone(),
                End::TakenOver => {
                    "another connection with this client id took the session over".into()
                }
                End::KeepAliveTimeout => "nothing received within 1.5 times the keep alive".into(),
                _ => String::new(),
            };
            let props = Properties {
                reason_string: Some(text.chars().take(200).collect()),
                ..Default::default()
            };
            self.out.clear();
            self.send(&Packet::Disconnect {
                reason: code,
                props,
            });
            let _ = self.write_out().await;
        }
        let _ = self.writer.shutdown().await;
        match &end {
            End::Disconnected { .. } | End::Eof => {
                debug!(client_id = %self.client_id, peer = %self.peer, reason = ?end, "MQTT connection closed")
            }
            _ => {
                info!(client_id = %self.client_id, peer = %self.peer, reason = ?end, "MQTT connection closed")
            }
        }
        if end.publishes_will() {
            // Boxed: rare, and its state would otherwise be part of every connection's.
            Box::pin(self.publish_will()).await;
        }
        self.will = None;
        // Consumers go first, so nothing new arrives; then whatever was on its way and
        // everything unacknowledged goes back to its queue.
        let mut detached = Vec::new();
        for (i, q) in self.own.iter().enumerate() {
            if let Some(q) = q {
                if q.remove_consumer(self.id, i as u16, OWN_TAGS[i]) {
                    detached.push(Arc::clone(q));
                }
            }
        }
        for (name, q) in &self.consuming {
            if q.remove_consumer(self.id, SHARED_CHANNEL, name) {
                detached.push(Arc::clone(q));
            }
        }
        for ev in self.sink.close() {
            if let Event::Deliver(d) = ev {
                d.give_back();
            }
        }
        let keep_pids = self.persistent && self.session_expiry > 0;
        let mut resend = Vec::new();
        for (pid, f) in self.inflight.drain() {
            if let (Some(q), Some(e)) = (f.queue, f.entry) {
                if keep_pids {
                    resend.push(((q.name().to_string(), e.seq), pid));
                }
                q.requeue([e]);
            }
        }
        if !resend.is_empty() {
            let mut carried = self.hold.slot.carried.lock();
            // Reservations the next connection never redelivered (the message expired or
            // was removed) are dropped beyond a bound rather than kept forever.
            if carried.resend.len() + resend.len() > RESEND_BOUND {
                carried.resend.clear();
            }
            carried.resend.extend(resend);
        }
        for q in detached {
            self.vhost.delete_queue_instance(&q);
        }
        if !self.persistent || self.session_expiry == 0 {
            for q in self.own.iter().flatten() {
                self.vhost.delete_queue_instance(q);
            }
            // Its memberships end with it (a durable group queue stays for the others).
            let shared: Vec<Sub> = self
                .subs
                .drain()
                .filter_map(|(_, s)| s.group.is_some().then_some(s))
                .collect();
            for s in &shared {
                self.unbind_binding(s);
            }
            self.vhost.delete_exclusive_queues(self.id);
            self.hold.release();
            // The session ends here: nothing of it is carried to the next connection
            // (the generation stays: a delayed will compares it).
            let mut carried = self.hold.slot.carried.lock();
            carried.awaiting_release.clear();
            carried.awaiting_complete.clear();
            carried.resend.clear();
        }
        self.hold.release();
        // A session's registry entry outlives the connection only while it carries
        // something (packet ids of unfinished QoS 2 exchanges; a will waiting for its delay
        // holds the entry itself): otherwise endless fresh client ids would grow the
        // registry. Subscriptions and messages live in the queues either way.
        let carried = !self.hold.slot.carried.lock().is_empty();
        if !carried {
            self.mqtt
                .sessions
                .forget(&self.vhost.name, &self.client_id, &self.hold.slot);
        }
    }
}

/// Acknowledgements waiting for the store beyond which the client's publishes are not read
/// (a 3.1.1 client has no Receive Maximum to bound them).
const PENDING_ACKS_LIMIT: usize = 65_536;

/// At most this many packet identifiers are held for resending across reconnects: a
/// session's in-flight deliveries are bounded by its credit, far below it.
const RESEND_BOUND: usize = 4096;

pub(crate) const OWN_TAGS: [&str; 2] = ["mqtt-qos0", "mqtt-qos1"];
/// The consumer channel number of shared-subscription consumers (own queues use 0 and 1).
pub(crate) const SHARED_CHANNEL: u16 = 2;

async fn wait_synced(synced: &mut Option<watch::Receiver<u64>>) {
    match synced {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Every idle MQTT client is one of these futures: kept small (docs/benchmarks.md).
    #[test]
    fn the_connection_future_stays_small() {
        let mqtt = Mqtt::new(
            Arc::new(warren_core::Broker::new()),
            crate::MqttConfig::default(),
            None,
        )
        .unwrap();
        let (a, _b) = tokio::io::duplex(64);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let fut = serve(mqtt, a, addr, addr, false);
        let size = std::mem::size_of_val(&fut);
        println!(
            "serve future: {size} bytes; Conn: {} bytes; Properties: {}; Will: {}",
            std::mem::size_of::<Conn<tokio::io::WriteHalf<tokio::io::DuplexStream>>>(),
            std::mem::size_of::<Properties>(),
            std::mem::size_of::<Will>()
        );
        assert!(size < 4096, "{size}");
    }
}

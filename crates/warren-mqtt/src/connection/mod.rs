//! One MQTT connection: CONNECT (`connect.rs`), then the loop that reads packets, takes
//! deliveries from the session's queues, holds acknowledgements until the fsync covering
//! their messages, and writes everything a turn produced in one write. Publishing is in
//! `inbound.rs`, subscriptions in `subscribe.rs`, deliveries in `outbound.rs`. Teardown
//! runs from `Drop`-safe paths: queues get back every unacknowledged delivery.

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
use tokio::sync::{mpsc, watch};
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

pub(crate) enum Event {
    Deliver(Delivery),
    Cancelled,
    ForceClose(String),
}

/// The session's [`DeliverySink`] and [`ConnectionControl`]: hands events to its task.
pub(crate) struct Sink {
    tx: mpsc::UnboundedSender<Event>,
    pending_bytes: AtomicUsize,
    starved: AtomicBool,
}

impl DeliverySink for Sink {
    fn deliver(&self, delivery: Delivery) {
        self.pending_bytes.fetch_add(
            delivery.msg.body.len() + DELIVERY_OVERHEAD,
            Ordering::Relaxed,
        );
        if let Err(mpsc::error::SendError(Event::Deliver(d))) =
            self.tx.send(Event::Deliver(delivery))
        {
            d.give_back();
        }
    }

    fn has_capacity(&self) -> bool {
        let room = self.pending_bytes.load(Ordering::Relaxed) < BACKLOG_BYTES;
        if !room {
            self.starved.store(true, Ordering::Relaxed);
        }
        room
    }

    fn cancelled(&self, _channel: u16, _consumer_tag: &Arc<str>) {
        let _ = self.tx.send(Event::Cancelled);
    }
}

impl ConnectionControl for Sink {
    fn force_close(&self, reason: String) {
        let _ = self.tx.send(Event::ForceClose(reason));
    }
}

/// Why a connection ended (for the log line every close gets).
#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug in the close log
pub(crate) enum End {
    /// DISCONNECT from the client; `with_will` for MQTT 5's reason 0x04.
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
    will: Option<Will>,
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
    aliases_in: HashMap<u16, String>,
    out: BytesMut,
    writer: W,
    scratch: RouteScratch,
    lagging: Vec<Arc<Queue>>,
    may_publish: Option<bool>,
    _registration: Registration,
    synced: Option<watch::Receiver<u64>>,
    /// Cached AMQP properties of plain publishes (no MQTT 5 properties), by QoS, DUP and
    /// retain.
    plain_props: [Option<bytes::Bytes>; 12],
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
    let mut inbuf = BytesMut::with_capacity(4096);
    let (tx, mut events) = mpsc::unbounded_channel();
    let (kick_tx, mut kicks) = mpsc::unbounded_channel();
    let sink = Arc::new(Sink {
        tx,
        pending_bytes: AtomicUsize::new(0),
        starved: AtomicBool::new(false),
    });
    let opened = connect::open(
        &mqtt,
        &mut reader,
        writer,
        &mut inbuf,
        peer,
        local,
        tls,
        Arc::clone(&sink),
        kick_tx,
    )
    .await;
    let Some(mut conn) = opened else {
        return;
    };
    mqtt.connected.fetch_add(1, Ordering::Relaxed);
    let end = conn
        .run(&mut reader, &mut inbuf, &mut events, &mut kicks)
        .await;
    mqtt.connected.fetch_sub(1, Ordering::Relaxed);
    conn.finish(end, &mut events).await;
}

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        inbuf: &mut BytesMut,
        events: &mut mpsc::UnboundedReceiver<Event>,
        kicks: &mut mpsc::UnboundedReceiver<Kick>,
    ) -> End {
        // 1.5 times the keep alive (section 3.1.2.10); 0 turns it off.
        let grace = Duration::from_millis(self.keep_alive as u64 * 1500);
        let mut deadline = Instant::now() + grace;
        let mut alarms = self.mqtt.broker.alarms().subscribe();
        // Whatever came with the CONNECT.
        if let Err(end) = self.on_input(inbuf).await {
            return end;
        }
        loop {
            self.flush_acks();
            if let Err(end) = self.write_out().await {
                return end;
            }
            let throttled = self.throttled(&alarms);
            let waiting_sync = self.pending_acks.front().is_some_and(|(g, _)| *g > 0);
            if waiting_sync {
                if let Some(p) = self.mqtt.broker.persistence() {
                    p.request_sync();
                }
            }
            let mut synced = self.synced.take();
            tokio::select! {
                biased;
                Some(_) = kicks.recv() => return End::TakenOver,
                Some(ev) = events.recv() => {
                    if let Err(end) = self.on_event(ev) {
                        return end;
                    }
                    for _ in 0..EVENT_BATCH {
                        match events.try_recv() {
                            Ok(ev) => {
                                if let Err(end) = self.on_event(ev) {
                                    return end;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = wait_synced(&mut synced), if waiting_sync => {}
                read = reader.read_buf(inbuf), if !throttled => {
                    match read {
                        Ok(0) => return End::Eof,
                        Err(e) => return End::Io(e),
                        Ok(_) => {}
                    }
                    deadline = Instant::now() + grace;
                    if let Err(end) = self.on_input(inbuf).await {
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

    /// Handles every whole packet read so far.
    async fn on_input(&mut self, inbuf: &mut BytesMut) -> Result<(), End> {
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
        if inbuf.capacity() - inbuf.len() < 1024 {
            inbuf.reserve(READ_CHUNK);
        }
        Ok(())
    }

    /// Whether reading from the client pauses: a resource alarm, the store's unwritten
    /// backlog, or a queue whose consumers lag behind.
    fn throttled(&mut self, alarms: &watch::Receiver<warren_core::alarms::AlarmState>) -> bool {
        if alarms.borrow().blocked() {
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
            } => self.on_subscribe(pid, props, filters).await,
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
                    with_will: reason == reason::DISCONNECT_WITH_WILL,
                })
            }
            Packet::Auth { .. } => Err(End::Violation(
                reason::PROTOCOL_ERROR,
                "AUTH without an authentication method".into(),
            )),
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
                    self.out = BytesMut::with_capacity(READ_CHUNK);
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
    async fn finish(mut self, end: End, events: &mut mpsc::UnboundedReceiver<Event>) {
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
            self.publish_will().await;
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
        events.close();
        while let Ok(ev) = events.try_recv() {
            if let Event::Deliver(d) = ev {
                d.give_back();
            }
        }
        for (_, f) in self.inflight.drain() {
            if let (Some(q), Some(e)) = (f.queue, f.entry) {
                q.requeue([e]);
            }
        }
        for q in detached {
            self.vhost.delete_queue_instance(&q);
        }
        if !self.persistent || self.session_expiry == 0 {
            for q in self.own.iter().flatten() {
                self.vhost.delete_queue_instance(q);
            }
            self.vhost.delete_exclusive_queues(self.id);
            self.hold.release();
            self.mqtt.sessions.forget(&self.vhost.name, &self.client_id);
        }
        self.hold.release();
    }
}

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

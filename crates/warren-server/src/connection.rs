//! One AMQP connection: protocol header, the `connection.*` handshake (SASL PLAIN/AMQPLAIN,
//! tune, open), the frame loop that feeds channels, heartbeats both ways, deliveries arriving
//! from queues, and the output buffer that batches everything written per loop turn into one
//! socket write.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use warren_amqp::constants::*;
use warren_amqp::*;
use warren_core::alarms::AlarmState;
use warren_core::{Broker, Delivery, DeliverySink};

use crate::channel::{Channel, ChannelState, ConnCtx};
use crate::config::ServerConfig;
use crate::error::{AmqpError, Scope};
use crate::frames::Chunks;

const READ_CHUNK: usize = 64 * 1024;
/// Read size once a connection sends large frames: fewer reads and wake-ups per body. Not
/// the default, because buffers this size come from `mmap` (page faults on every new one),
/// and read buffers are renewed often: messages keep slices of the old ones.
const LARGE_READ_CHUNK: usize = 256 * 1024;
/// A frame at least this large switches a connection to [`LARGE_READ_CHUNK`].
const LARGE_FRAME: usize = 16 * 1024;
/// How many queued events (deliveries) are written per loop turn before the socket write.
const EVENT_BATCH: usize = 1024;
/// Bytes of no-ack deliveries that may wait unwritten for one connection.
const NO_ACK_BACKLOG_BYTES: usize = 16 * 1024 * 1024;
/// What a delivery counts for beyond its body (frames, bookkeeping).
const DELIVERY_OVERHEAD: usize = 128;
/// Unwritten store bytes above which publishing connections pause.
const STORE_BACKLOG_LIMIT: u64 = 64 * 1024 * 1024;
/// How often a throttled publisher checks whether the store caught up.
const THROTTLE_POLL: Duration = Duration::from_millis(2);
/// Output bytes after which a batch of deliveries is written out.
const OUT_BATCH_BYTES: usize = 256 * 1024;
/// How long we wait for `connection.close-ok` after sending `connection.close`.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);

/// What queues tell a connection, through its event queue.
pub(crate) enum ConnEvent {
    Deliver(Delivery),
    Cancelled { channel: u16, tag: Arc<str> },
}

/// The connection's [`DeliverySink`]: sends events to the connection task.
struct ConnSink {
    tx: mpsc::UnboundedSender<ConnEvent>,
    /// Body bytes of deliveries queued for this connection and not yet written.
    pending_bytes: AtomicUsize,
    /// A queue found no room here: dispatch again once the backlog is written.
    starved: AtomicBool,
}

impl DeliverySink for ConnSink {
    fn deliver(&self, delivery: Delivery) {
        self.pending_bytes.fetch_add(
            delivery.msg.body.len() + DELIVERY_OVERHEAD,
            Ordering::Relaxed,
        );
        // The receiver lives until every consumer of this connection is detached, so a
        // failed send cannot happen while a queue still dispatches to us.
        let _ = self.tx.send(ConnEvent::Deliver(delivery));
    }

    fn has_capacity(&self) -> bool {
        let room = self.pending_bytes.load(Ordering::Relaxed) < NO_ACK_BACKLOG_BYTES;
        if !room {
            self.starved.store(true, Ordering::Relaxed);
        }
        room
    }

    fn cancelled(&self, channel: u16, consumer_tag: &Arc<str>) {
        let _ = self.tx.send(ConnEvent::Cancelled {
            channel,
            tag: Arc::clone(consumer_tag),
        });
    }
}

/// Why a connection ended (for the log).
#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug in the close log
enum End {
    ClientClosed,
    Eof,
    Io(std::io::Error),
    Error(AmqpError),
    MissedHeartbeats,
    Shutdown,
    /// The peer sent something no AMQP 0-9-1 client sends; dropped without a close frame.
    Dropped(String),
}

/// A failed handshake: what to log and what (if anything) to tell the client.
struct HandshakeError {
    reason: String,
    close: Option<AmqpError>,
}

impl HandshakeError {
    fn silent(reason: impl Into<String>) -> Self {
        HandshakeError {
            reason: reason.into(),
            close: None,
        }
    }
    fn close(e: AmqpError) -> Self {
        HandshakeError {
            reason: e.text.clone(),
            close: Some(e),
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::silent(format!("i/o error: {e}"))
    }
}

struct Negotiated {
    user: String,
    vhost: Arc<warren_core::VHost>,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    consumer_cancel_notify: bool,
    connection_blocked: bool,
}

/// Writes the queued chunks and then `out`, with vectored writes (no copy of large bodies).
async fn write_all_vectored(
    writer: &mut OwnedWriteHalf,
    chunks: &mut Chunks,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    use bytes::Buf;
    if !out.is_empty() {
        chunks.list.push(out.split().freeze());
    }
    let mut pending: std::collections::VecDeque<Bytes> = std::mem::take(&mut chunks.list).into();
    chunks.bytes = 0;
    while !pending.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> = pending
            .iter()
            .take(64)
            .map(|b| std::io::IoSlice::new(b))
            .collect();
        let mut n = writer.write_vectored(&slices).await?;
        drop(slices);
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
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

/// Resolves when the store's durable generation moves (never, without a store).
async fn wait_synced(synced: &mut Option<watch::Receiver<u64>>) {
    match synced {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The store is gone (shutdown); nothing will be synced any more.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    config: Arc<ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let id = broker.next_connection_id();
    let handshake = tokio::time::timeout(
        config.handshake_timeout,
        handshake(&mut reader, &mut writer, &mut inbuf, peer, &broker, &config),
    )
    .await;
    let negotiated = match handshake {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            warn!(%peer, reason = %e.reason, "closing connection during handshake");
            if let Some(close) = e.close {
                info!(%peer, code = close.code, "connection.close sent during handshake");
                let mut out = BytesMut::new();
                write_connection_close(&mut out, &close);
                let _ = writer.write_all(&out).await;
                // Give the client a moment to read the close before the socket goes.
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), reader.read(&mut [0u8; 64])).await;
            }
            return;
        }
        Err(_) => {
            warn!(%peer, timeout = ?config.handshake_timeout, "handshake timed out; closing connection");
            return;
        }
    };
    info!(%peer, connection = id, user = %negotiated.user, vhost = %negotiated.vhost.name, "connection opened");

    let (tx, rx) = mpsc::unbounded_channel();
    let sink = Arc::new(ConnSink {
        tx,
        pending_bytes: AtomicUsize::new(0),
        starved: AtomicBool::new(false),
    });
    let ctx = ConnCtx {
        id,
        broker: Arc::clone(&broker),
        vhost: Arc::clone(&negotiated.vhost),
        user: negotiated.user,
        frame_max: negotiated.frame_max,
        out: BytesMut::with_capacity(READ_CHUNK),
        chunks: Chunks::default(),
        sink: Arc::clone(&sink) as Arc<dyn DeliverySink>,
        consumer_cancel_notify: negotiated.consumer_cancel_notify,
        is_publisher: false,
        config,
        route_buf: Vec::new(),
        lagging_queues: Vec::new(),
    };
    let mut conn = Connection {
        ctx,
        channels: HashMap::new(),
        channel_max: negotiated.channel_max,
        heartbeat: negotiated.heartbeat,
        closing_since: None,
        confirm_dirty: Vec::new(),
        durable_waiters: Vec::new(),
        synced: broker.persistence().map(|p| p.synced()),
        alarms: broker.alarms().subscribe(),
        client_knows_blocked: negotiated.connection_blocked,
        blocked: false,
        throttled: false,
        sink,
        large_frames: false,
        rx,
    };
    let end = conn
        .run(&mut reader, &mut writer, inbuf, &mut shutdown)
        .await;
    conn.teardown();
    match &end {
        End::ClientClosed | End::Eof => {
            info!(%peer, connection = id, reason = ?end, "connection closed")
        }
        End::Error(e) => {
            warn!(%peer, connection = id, code = e.code, text = %e.text, "connection closed by error")
        }
        _ => warn!(%peer, connection = id, reason = ?end, "connection closed"),
    }
    if matches!(end, End::ClientClosed | End::Error(_)) {
        // After close/close-ok the client closes the socket first (as the spec has it, and
        // as RabbitMQ waits for); closing it under a client that is still reading the
        // close-ok makes some clients report an error instead of a clean close.
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(CLOSE_OK_TIMEOUT, async {
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    let _ = writer.shutdown().await;
}

// ----- handshake -----

async fn read_exact_or_fail(
    reader: &mut OwnedReadHalf,
    buf: &mut [u8],
) -> Result<(), HandshakeError> {
    reader
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(HandshakeError::from)
}

/// Reads the next non-heartbeat frame during the handshake, expecting a method on channel 0.
async fn read_handshake_method(
    reader: &mut OwnedReadHalf,
    inbuf: &mut BytesMut,
    frame_max: u32,
) -> Result<Method, HandshakeError> {
    loop {
        match decode_frame(inbuf, frame_max) {
            Err(e) => {
                return Err(HandshakeError::close(AmqpError::connection(
                    FRAME_ERROR,
                    e.to_string(),
                )))
            }
            Ok(Some(frame)) => {
                if frame.frame_type == FRAME_HEARTBEAT {
                    continue;
                }
                if frame.frame_type != FRAME_METHOD || frame.channel != 0 {
                    return Err(HandshakeError::close(AmqpError::connection(
                        UNEXPECTED_FRAME,
                        "unexpected frame during connection handshake",
                    )));
                }
                return Method::decode(&frame.payload).map_err(|e| {
                    HandshakeError::close(AmqpError::connection(SYNTAX_ERROR, e.to_string()))
                });
            }
            Ok(None) => {
                inbuf.reserve(READ_CHUNK);
                if reader.read_buf(inbuf).await? == 0 {
                    return Err(HandshakeError::silent(
                        "client closed the socket during handshake",
                    ));
                }
            }
        }
    }
}

async fn handshake(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    inbuf: &mut BytesMut,
    peer: SocketAddr,
    broker: &Broker,
    config: &ServerConfig,
) -> Result<Negotiated, HandshakeError> {
    let mut header = [0u8; 8];
    read_exact_or_fail(reader, &mut header).await?;
    if header != PROTOCOL_HEADER {
        // The server's own header tells the client which protocol we speak.
        writer.write_all(&PROTOCOL_HEADER).await?;
        return Err(HandshakeError::silent(format!(
            "bad protocol header {header:?}"
        )));
    }
    let mut out = BytesMut::new();
    encode_method_frame(
        &mut out,
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(config),
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        }),
    );
    writer.write_all(&out).await?;

    let start_ok = match read_handshake_method(reader, inbuf, config.frame_max).await? {
        Method::ConnectionStartOk(m) => m,
        other => {
            return Err(HandshakeError::close(AmqpError::connection(
                COMMAND_INVALID,
                format!("expected connection.start-ok, got {}", other.name()),
            )))
        }
    };
    let caps = start_ok
        .client_properties
        .get("capabilities")
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default();
    let cap = |name: &str| caps.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
    let auth_failure_close = cap("authentication_failure_close");
    let consumer_cancel_notify = cap("consumer_cancel_notify");
    let connection_blocked = cap("connection.blocked");

    let credentials = match start_ok.mechanism.as_str() {
        "PLAIN" => parse_plain(&start_ok.response),
        "AMQPLAIN" => parse_amqplain(&start_ok.response),
        other => {
            // RabbitMQ closes the socket without a close frame here.
            return Err(HandshakeError::silent(format!(
                "unknown authentication mechanism '{other}'"
            )));
        }
    };
    let user = credentials.and_then(|(user, pass)| {
        broker
            .authenticate(&user, &pass, peer.ip().is_loopback())
            .map(|u| u.name)
    });
    let Some(user) = user else {
        let reason = format!(
            "Login was refused using authentication mechanism {}. For details see the broker logfile.",
            start_ok.mechanism
        );
        warn!(%peer, mechanism = %start_ok.mechanism, "authentication failed");
        return Err(if auth_failure_close {
            HandshakeError::close(AmqpError::connection(ACCESS_REFUSED, reason))
        } else {
            HandshakeError::silent(reason)
        });
    };

    out.clear();
    encode_method_frame(
        &mut out,
        0,
        &Method::ConnectionTune(ConnectionTune {
            channel_max: config.channel_max,
            frame_max: config.frame_max,
            heartbeat: config.heartbeat,
        }),
    );
    writer.write_all(&out).await?;
    let tune_ok = match read_handshake_method(reader, inbuf, config.frame_max).await? {
        Method::ConnectionTuneOk(m) => m,
        other => {
            return Err(HandshakeError::close(AmqpError::connection(
                COMMAND_INVALID,
                format!("expected connection.tune-ok, got {}", other.name()),
            )))
        }
    };
    let frame_max = if tune_ok.frame_max == 0 {
        config.frame_max
    } else {
        tune_ok.frame_max
    };
    if frame_max < FRAME_MIN_SIZE {
        return Err(HandshakeError::close(AmqpError::connection(
            NOT_ALLOWED,
            format!("frame_max={frame_max} < {FRAME_MIN_SIZE} min size"),
        )));
    }
    if frame_max > config.frame_max {
        return Err(HandshakeError::close(AmqpError::connection(
            NOT_ALLOWED,
            format!("frame_max={frame_max} > {} max size", config.frame_max),
        )));
    }
    let channel_max = if tune_ok.channel_max == 0 {
        config.channel_max
    } else {
        tune_ok.channel_max
    };
    if channel_max > config.channel_max {
        return Err(HandshakeError::close(AmqpError::connection(
            NOT_ALLOWED,
            format!(
                "channel_max={channel_max} > {} max size",
                config.channel_max
            ),
        )));
    }

    let open = match read_handshake_method(reader, inbuf, frame_max).await? {
        Method::ConnectionOpen(m) => m,
        other => {
            return Err(HandshakeError::close(AmqpError::connection(
                COMMAND_INVALID,
                format!("expected connection.open, got {}", other.name()),
            )))
        }
    };
    let Some(vhost) = broker.vhost(&open.virtual_host) else {
        return Err(HandshakeError::close(AmqpError::connection(
            NOT_ALLOWED,
            format!("vhost {} not found", open.virtual_host),
        )));
    };
    out.clear();
    encode_method_frame(
        &mut out,
        0,
        &Method::ConnectionOpenOk(ConnectionOpenOk {
            reserved_1: String::new(),
        }),
    );
    writer.write_all(&out).await?;
    Ok(Negotiated {
        user,
        vhost,
        frame_max,
        channel_max,
        heartbeat: tune_ok.heartbeat,
        consumer_cancel_notify,
        connection_blocked,
    })
}

/// SASL PLAIN: `authzid NUL authcid NUL password`.
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let pass = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((user.to_string(), pass.to_string()))
}

/// AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let mut framed = BytesMut::with_capacity(response.len() + 4);
    framed.extend_from_slice(&u32::try_from(response.len()).ok()?.to_be_bytes());
    framed.extend_from_slice(response);
    let table = FieldTable::decode(&mut &framed[..]).ok()?;
    let login = table.get("LOGIN")?.as_str()?.to_string();
    let password = table.get("PASSWORD")?.as_str()?.to_string();
    Some((login, password))
}

fn server_properties(config: &ServerConfig) -> FieldTable {
    let mut caps = FieldTable::new();
    for name in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(name, FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    props.insert("capabilities", FieldValue::Table(caps));
    props.insert(
        "cluster_name",
        FieldValue::from(config.cluster_name.as_str()),
    );
    props.insert(
        "copyright",
        FieldValue::from("Copyright (c) the Warren authors"),
    );
    props.insert(
        "information",
        FieldValue::from("Licensed under the Apache License 2.0"),
    );
    props.insert("platform", FieldValue::from("Rust"));
    props.insert("product", FieldValue::from("Warren"));
    props.insert("version", FieldValue::from(env!("CARGO_PKG_VERSION")));
    props
}

fn write_connection_close(out: &mut BytesMut, e: &AmqpError) {
    encode_method_frame(
        out,
        0,
        &Method::ConnectionClose(ConnectionClose {
            reply_code: e.code,
            reply_text: e.text.clone(),
            class_id: e.class_id,
            method_id: e.method_id,
        }),
    );
}

// ----- the open connection -----

struct Connection {
    ctx: ConnCtx,
    channels: HashMap<u16, Channel>,
    channel_max: u16,
    heartbeat: u16,
    /// Set once we sent `connection.close` and await `close-ok`.
    closing_since: Option<(Instant, AmqpError)>,
    /// Channels that may have publisher confirms to write at the end of this turn.
    confirm_dirty: Vec<u16>,
    /// Channels whose confirms wait for the store's fsync.
    durable_waiters: Vec<u16>,
    /// The store's durable generation (None without a store: everything counts as synced).
    synced: Option<watch::Receiver<u64>>,
    /// The broker's resource alarms.
    alarms: watch::Receiver<AlarmState>,
    /// The client announced the `connection.blocked` capability.
    client_knows_blocked: bool,
    /// We stopped reading this publisher's socket because of an alarm.
    blocked: bool,
    /// We pause reading this publisher because the store has more unwritten data than it
    /// should hold in memory (publishers outrunning the disk); no frame is sent for this.
    throttled: bool,
    /// Our own delivery sink (also in `ctx.sink`), for its backlog counters.
    sink: Arc<ConnSink>,
    /// The client sends large frames: read in larger chunks.
    large_frames: bool,
    rx: mpsc::UnboundedReceiver<ConnEvent>,
}

/// What handling one frame asks of the loop.
enum Next {
    Continue,
    /// The client sent `connection.close`: reply was written, stop after flushing.
    Stop(End),
}

impl Connection {
    async fn run(
        &mut self,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
        mut inbuf: BytesMut,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let hb = Duration::from_secs(u64::from(self.heartbeat));
        let tick_every = if self.heartbeat > 0 {
            hb / 2
        } else {
            Duration::from_secs(3600)
        };
        let mut ticker = tokio::time::interval(tick_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        // Frames already buffered by the handshake are handled first.
        let mut pending_input = !inbuf.is_empty();
        loop {
            let mut stop: Option<End> = None;
            if pending_input {
                pending_input = false;
                if let Next::Stop(end) = self.process_input(&mut inbuf) {
                    stop = Some(end);
                }
            } else {
                let chunk = if self.large_frames {
                    LARGE_READ_CHUNK
                } else {
                    READ_CHUNK
                };
                if inbuf.capacity() - inbuf.len() < chunk / 4 {
                    inbuf.reserve(chunk);
                }
                tokio::select! {
                    _ = self.alarms.changed() => {}
                    read = reader.read_buf(&mut inbuf), if !self.blocked && !self.throttled => match read {
                        Ok(0) => stop = Some(End::Eof),
                        Ok(_) => {
                            last_read = Instant::now();
                            if let Next::Stop(end) = self.process_input(&mut inbuf) {
                                stop = Some(end);
                            }
                        }
                        Err(e) => stop = Some(End::Io(e)),
                    },
                    event = self.rx.recv() => {
                        if let Some(event) = event {
                            self.handle_event(event);
                            for _ in 0..EVENT_BATCH {
                                // Large bodies: write what we have rather than copying
                                // megabytes into one buffer first.
                                if self.ctx.out.len() + self.ctx.chunks.bytes >= OUT_BATCH_BYTES {
                                    break;
                                }
                                match self.rx.try_recv() {
                                    Ok(event) => self.handle_event(event),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    _ = wait_synced(&mut self.synced), if !self.durable_waiters.is_empty() => {
                        let waiting = std::mem::take(&mut self.durable_waiters);
                        self.confirm_dirty.extend(waiting);
                    }
                    _ = tokio::time::sleep(THROTTLE_POLL), if self.throttled => {}
                    _ = ticker.tick() => {
                        if self.heartbeat > 0 {
                            // While blocked we do not read, so we cannot see heartbeats.
                            if self.blocked {
                                last_read = Instant::now();
                            }
                            if last_read.elapsed() > hb * 2 {
                                warn!(connection = self.ctx.id, heartbeat = self.heartbeat, "missed heartbeats from client; closing");
                                stop = Some(End::MissedHeartbeats);
                            } else if last_write.elapsed() >= tick_every {
                                encode_heartbeat(&mut self.ctx.out);
                            }
                        }
                        if let Some((since, e)) = &self.closing_since {
                            if since.elapsed() > CLOSE_OK_TIMEOUT {
                                stop = Some(End::Error(e.clone()));
                            }
                        }
                    }
                    _ = shutdown.changed() => {
                        if self.closing_since.is_none() {
                            self.start_close(AmqpError::connection(
                                CONNECTION_FORCED,
                                "broker forced connection closure with reason 'shutdown'",
                            ));
                        }
                        ticker = tokio::time::interval(Duration::from_millis(250));
                        // Do not select on a fired shutdown again.
                        *shutdown = watch::channel(true).1;
                        if self.closing_since.as_ref().is_some_and(|(s, _)| s.elapsed() > CLOSE_OK_TIMEOUT) {
                            stop = Some(End::Shutdown);
                        }
                    }
                }
            }
            self.flush_confirms();
            self.update_blocked();
            self.update_throttle();
            if !self.ctx.out.is_empty() || !self.ctx.chunks.is_empty() {
                let written = if self.ctx.chunks.is_empty() {
                    writer.write_all(&self.ctx.out).await
                } else {
                    write_all_vectored(writer, &mut self.ctx.chunks, &mut self.ctx.out).await
                };
                if let Err(e) = written {
                    return End::Io(e);
                }
                last_write = Instant::now();
                self.ctx.out.clear();
                if self.sink.starved.swap(false, Ordering::Relaxed) {
                    // A queue held back no-ack deliveries for us: there is room again.
                    for channel in self.channels.values() {
                        channel.dispatch_consumer_queues();
                    }
                }
                if self.ctx.out.capacity() > 16 * READ_CHUNK {
                    self.ctx.out = BytesMut::with_capacity(READ_CHUNK);
                }
            }
            if let Some(end) = stop {
                return end;
            }
        }
    }

    /// Blocks a publishing connection while a resource alarm is on (RabbitMQ's rule: only
    /// connections that publish are blocked; consumers keep draining), and unblocks it when
    /// the alarm clears, telling clients that asked for `connection.blocked`.
    fn update_blocked(&mut self) {
        let state = *self.alarms.borrow_and_update();
        let block = state.blocked() && self.ctx.is_publisher && self.closing_since.is_none();
        if block == self.blocked {
            return;
        }
        self.blocked = block;
        info!(
            connection = self.ctx.id,
            blocked = block,
            reason = state.reason(),
            "publisher flow control"
        );
        if !self.client_knows_blocked {
            return;
        }
        let method = if block {
            Method::ConnectionBlocked(ConnectionBlocked {
                reason: state.reason().to_string(),
            })
        } else {
            Method::ConnectionUnblocked(ConnectionUnblocked {})
        };
        encode_method_frame(&mut self.ctx.out, 0, &method);
    }

    /// Back-pressure from the store: a publisher waits while the store holds more than
    /// [`STORE_BACKLOG_LIMIT`] bytes not yet written, so memory stays bounded when publishers
    /// outrun the disk (RabbitMQ's internal credit flow does the same, silently).
    fn update_throttle(&mut self) {
        let backlog = match self.ctx.broker.persistence() {
            Some(p) if self.ctx.is_publisher => p.buffered_bytes(),
            _ => 0,
        };
        self.ctx.lagging_queues.retain(|q| q.is_lagging());
        let throttle = backlog > STORE_BACKLOG_LIMIT || !self.ctx.lagging_queues.is_empty();
        if throttle && !self.throttled {
            debug!(
                connection = self.ctx.id,
                backlog, "publisher throttled by the store"
            );
            if let Some(p) = self.ctx.broker.persistence() {
                p.request_sync();
            }
        }
        self.throttled = throttle;
    }

    fn synced_generation(&self) -> u64 {
        self.synced.as_ref().map_or(u64::MAX, |rx| *rx.borrow())
    }

    /// Writes the confirms that can go out now; channels still waiting for the store's
    /// fsync are remembered, and the store is asked to sync at once (group commit: one
    /// fsync covers every publisher waiting at that moment).
    fn flush_confirms(&mut self) {
        if self.confirm_dirty.is_empty() {
            return;
        }
        let synced = self.synced_generation();
        let mut need_sync = false;
        for ch in std::mem::take(&mut self.confirm_dirty) {
            if let Some(channel) = self.channels.get_mut(&ch) {
                channel.flush_confirms(&mut self.ctx, synced);
                if channel.awaits_durability() && !self.durable_waiters.contains(&ch) {
                    self.durable_waiters.push(ch);
                    need_sync = true;
                }
            }
        }
        if need_sync {
            if let Some(p) = self.ctx.broker.persistence() {
                p.request_sync();
            }
        }
    }

    /// Handles every complete frame in the input buffer.
    fn process_input(&mut self, inbuf: &mut BytesMut) -> Next {
        loop {
            let frame = match decode_frame(inbuf, self.ctx.frame_max) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Next::Continue,
                Err(e) => {
                    // Framing is lost: nothing after this can be parsed. Tell the client why
                    // and end the connection once that is written.
                    let err = AmqpError::connection(FRAME_ERROR, e.to_string());
                    inbuf.clear();
                    write_connection_close(&mut self.ctx.out, &err);
                    return Next::Stop(End::Error(err));
                }
            };
            if frame.payload.len() >= LARGE_FRAME {
                self.large_frames = true;
            }
            match self.handle_frame(frame) {
                Ok(Next::Continue) => {}
                Ok(stop) => return stop,
                Err(e) => {
                    if self.closing_since.is_none() {
                        self.start_close(e);
                    }
                }
            }
        }
    }

    fn start_close(&mut self, e: AmqpError) {
        warn!(connection = self.ctx.id, code = e.code, text = %e.text, class_id = e.class_id, method_id = e.method_id, "closing connection with error");
        write_connection_close(&mut self.ctx.out, &e);
        self.release_channels();
        self.closing_since = Some((Instant::now(), e));
    }

    fn handle_frame(&mut self, frame: RawFrame) -> Result<Next, AmqpError> {
        if let Some((_, err)) = &self.closing_since {
            // After connection.close only close/close-ok matter.
            if frame.frame_type == FRAME_METHOD && frame.channel == 0 {
                match Method::decode(&frame.payload) {
                    Ok(Method::ConnectionCloseOk(_)) => {
                        return Ok(Next::Stop(End::Error(err.clone())))
                    }
                    Ok(Method::ConnectionClose(_)) => {
                        encode_method_frame(&mut self.ctx.out, 0, &ConnectionCloseOk {}.into());
                        return Ok(Next::Stop(End::Error(err.clone())));
                    }
                    _ => {}
                }
            }
            return Ok(Next::Continue);
        }
        match frame.frame_type {
            FRAME_HEARTBEAT => {
                if frame.channel != 0 {
                    return Err(AmqpError::connection(
                        UNEXPECTED_FRAME,
                        format!("heartbeat frame on channel {}", frame.channel),
                    ));
                }
                Ok(Next::Continue)
            }
            FRAME_METHOD => {
                let method = match Method::decode(&frame.payload) {
                    Ok(m) => m,
                    Err(DecodeError::UnknownMethod {
                        class_id,
                        method_id,
                    }) => {
                        // RabbitMQ drops such a peer without a close frame: it cannot be
                        // speaking AMQP 0-9-1.
                        return Ok(Next::Stop(End::Dropped(format!(
                            "unknown method {class_id}.{method_id}"
                        ))));
                    }
                    Err(e) => {
                        let ids = |at: usize| {
                            frame
                                .payload
                                .get(at..at + 2)
                                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
                        };
                        return Err(AmqpError::connection(
                            FRAME_ERROR,
                            format!("cannot decode method frame: {e}"),
                        )
                        .on(ids(0), ids(2)));
                    }
                };
                if frame.channel == 0 {
                    self.connection_method(method)
                } else {
                    self.channel_method(frame.channel, method)?;
                    Ok(Next::Continue)
                }
            }
            FRAME_HEADER | FRAME_BODY => {
                self.channel_content(frame)?;
                Ok(Next::Continue)
            }
            other => Err(AmqpError::connection(
                FRAME_ERROR,
                format!("unknown frame type {other}"),
            )),
        }
    }

    fn connection_method(&mut self, method: Method) -> Result<Next, AmqpError> {
        match method {
            Method::ConnectionClose(m) => {
                info!(connection = self.ctx.id, code = m.reply_code, text = %m.reply_text, "client closed the connection");
                encode_method_frame(&mut self.ctx.out, 0, &ConnectionCloseOk {}.into());
                self.release_channels();
                Ok(Next::Stop(End::ClientClosed))
            }
            Method::ConnectionCloseOk(_) => Ok(Next::Continue),
            Method::ConnectionUpdateSecret(_) => {
                encode_method_frame(&mut self.ctx.out, 0, &ConnectionUpdateSecretOk {}.into());
                Ok(Next::Continue)
            }
            Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_) => Ok(Next::Continue),
            other => Err(AmqpError::connection(
                CHANNEL_ERROR,
                "unexpected method in connection state running",
            )
            .on(other.class_id(), other.method_id())),
        }
    }

    fn channel_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        let open_channels = self.channels.len();
        let Some(channel) = self.channels.get_mut(&ch) else {
            if let Method::ChannelOpen(_) = method {
                // As in RabbitMQ, channel_max bounds how many channels are open, not their ids.
                if open_channels >= usize::from(self.channel_max) {
                    return Err(AmqpError::connection(
                        NOT_ALLOWED,
                        format!(
                            "number of channels opened ({open_channels}) has reached the negotiated channel_max ({})",
                            self.channel_max
                        ),
                    ));
                }
                self.channels.insert(ch, Channel::new(ch));
                encode_method_frame(
                    &mut self.ctx.out,
                    ch,
                    &ChannelOpenOk {
                        reserved_1: Bytes::new(),
                    }
                    .into(),
                );
                debug!(connection = self.ctx.id, channel = ch, "channel opened");
                return Ok(());
            }
            return Err(
                AmqpError::connection(CHANNEL_ERROR, "expected 'channel.open'")
                    .on(class_id, method_id),
            );
        };
        if channel.state == ChannelState::Closing {
            match method {
                Method::ChannelCloseOk(_) => {
                    self.channels.remove(&ch);
                }
                Method::ChannelClose(_) => {
                    encode_method_frame(&mut self.ctx.out, ch, &ChannelCloseOk {}.into());
                    self.channels.remove(&ch);
                }
                _ => {}
            }
            return Ok(());
        }
        if let Some(e) = channel.content_interrupted() {
            return Err(e);
        }
        match method {
            Method::ChannelOpen(_) => Err(AmqpError::connection(
                CHANNEL_ERROR,
                "second 'channel.open' seen",
            )
            .on(class_id, method_id)),
            Method::ChannelClose(m) => {
                debug!(connection = self.ctx.id, channel = ch, code = m.reply_code, text = %m.reply_text, "client closed channel");
                channel.release(&mut self.ctx);
                encode_method_frame(&mut self.ctx.out, ch, &ChannelCloseOk {}.into());
                self.channels.remove(&ch);
                Ok(())
            }
            Method::ChannelCloseOk(_) => Ok(()),
            method => {
                let result = channel.handle_method(&mut self.ctx, method);
                self.after_channel_op(ch, result)
            }
        }
    }

    fn channel_content(&mut self, frame: RawFrame) -> Result<(), AmqpError> {
        let ch = frame.channel;
        if ch == 0 {
            return Err(AmqpError::connection(
                CHANNEL_ERROR,
                "content frame on channel 0",
            ));
        }
        let Some(channel) = self.channels.get_mut(&ch) else {
            return Err(AmqpError::connection(
                CHANNEL_ERROR,
                "expected 'channel.open'",
            ));
        };
        if channel.state == ChannelState::Closing {
            return Ok(());
        }
        let result = if frame.frame_type == FRAME_HEADER {
            channel.handle_header(&mut self.ctx, frame.payload)
        } else {
            channel.handle_body(&mut self.ctx, frame.payload)
        };
        self.after_channel_op(ch, result)
    }

    /// Turns a channel error into `channel.close`; passes connection errors up.
    fn after_channel_op(
        &mut self,
        ch: u16,
        result: Result<(), AmqpError>,
    ) -> Result<(), AmqpError> {
        if self.confirm_dirty.last() != Some(&ch) {
            self.confirm_dirty.push(ch);
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.scope == Scope::Channel => {
                let synced = self.synced_generation();
                if let Some(channel) = self.channels.get_mut(&ch) {
                    info!(connection = self.ctx.id, channel = ch, code = e.code, text = %e.text, "closing channel with error");
                    channel.flush_confirms(&mut self.ctx, synced);
                    encode_method_frame(
                        &mut self.ctx.out,
                        ch,
                        &Method::ChannelClose(ChannelClose {
                            reply_code: e.code,
                            reply_text: e.text,
                            class_id: e.class_id,
                            method_id: e.method_id,
                        }),
                    );
                    channel.release(&mut self.ctx);
                    channel.state = ChannelState::Closing;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn handle_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Deliver(d) => {
                self.sink
                    .pending_bytes
                    .fetch_sub(d.msg.body.len() + DELIVERY_OVERHEAD, Ordering::Relaxed);
                match self.channels.get_mut(&d.channel) {
                    Some(channel) => channel.deliver(&mut self.ctx, d),
                    None => d.give_back(),
                }
            }
            ConnEvent::Cancelled { channel, tag } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.consumer_cancelled(&mut self.ctx, &tag);
                }
            }
        }
    }

    fn release_channels(&mut self) {
        for channel in self.channels.values_mut() {
            if channel.state == ChannelState::Open {
                channel.release(&mut self.ctx);
            }
        }
    }

    /// Final cleanup: channels release their consumers and unacked messages, deliveries
    /// still queued for us go back to their queues, exclusive queues are deleted.
    fn teardown(&mut self) {
        self.release_channels();
        self.channels.clear();
        self.rx.close();
        while let Ok(event) = self.rx.try_recv() {
            if let ConnEvent::Deliver(d) = event {
                d.give_back();
            }
        }
        self.ctx.vhost.delete_exclusive_queues(self.ctx.id);
    }
}

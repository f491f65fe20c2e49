//! One AMQP connection after the handshake (`handshake.rs`): the I/O loop (reads, heartbeats
//! both ways, deliveries arriving from queues, the output buffer that batches everything
//! written per loop turn into one socket write) and teardown. Frames in are dispatched in
//! `connection/dispatch.rs`; flow control and confirms in `connection/flow.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use warren_amqp::constants::*;
use warren_amqp::*;
use warren_core::alarms::AlarmState;
use warren_core::connections::{ConnectionControl, Registration};
use warren_core::{Broker, Delivery, DeliverySink, FastMap};

use crate::channel::{Channel, ChannelState, ConnCtx};
use crate::config::ServerConfig;
use crate::error::{AmqpError, Scope};
use crate::frames::{Chunks, READ_CHUNK};
use crate::handshake::{handshake, ExternalLogin};
use crate::transport::{
    split_tcp, split_tls, write_all_vectored, write_all_within, Reader, Writer,
};
use warren_core::vhost::RouteScratch;

mod dispatch;
mod flow;
#[cfg(test)]
pub(crate) mod panic_tests;
mod serve;
pub(crate) use serve::serve_connection;

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
const STORE_BACKLOG_LIMIT: u64 = 8 * 1024 * 1024;
/// How often a throttled publisher checks whether the store caught up.
const THROTTLE_POLL: Duration = Duration::from_millis(2);
/// Output bytes after which a batch of deliveries is written out.
const OUT_BATCH_BYTES: usize = 256 * 1024;
/// How long we wait for `connection.close-ok` after sending `connection.close`.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);

/// What queues tell a connection, through its event queue.
pub(crate) enum ConnEvent {
    Deliver(Delivery),
    Cancelled {
        channel: u16,
        tag: Arc<str>,
    },
    /// The broker closes the connection (its user or vhost was deleted).
    ForceClose(String),
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

impl ConnectionControl for ConnSink {
    fn force_close(&self, reason: String) {
        let _ = self.tx.send(ConnEvent::ForceClose(reason));
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
    /// The peer accepted no bytes for the send timeout.
    WriteStalled,
    Shutdown,
    /// The peer sent something no AMQP 0-9-1 client sends; dropped without a close frame.
    Dropped(String),
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

// ----- handshake -----

/// How often unacked deliveries are checked against `consumer_timeout`: half of it, within
/// 250 ms and RabbitMQ's one minute (its channel tick).
fn ack_check_interval(timeout: Option<Duration>) -> Duration {
    match timeout {
        Some(t) => (t / 2).clamp(Duration::from_millis(250), Duration::from_secs(60)),
        None => Duration::from_secs(3600),
    }
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
    /// Given back to the vhost when the connection is dropped.
    _slot: warren_core::vhost::ConnectionSlot,
    /// The connection and its channels in its user's counts (user limits).
    user_slot: warren_core::access::user_limits::UserSlot,
    /// In the broker's list of open connections until the connection is dropped.
    registration: Registration,
    channels: FastMap<u16, Channel>,
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

/// Makes room for a read of about `chunk` bytes; returns the space the read is offered.
fn make_room(inbuf: &mut BytesMut, chunk: usize) -> usize {
    if inbuf.capacity() - inbuf.len() < chunk / 4 {
        inbuf.reserve(chunk);
    }
    inbuf.capacity() - inbuf.len()
}

/// Input bytes a connection takes in one loop turn while its socket keeps delivering at
/// once (see [`Connection::take_waiting_input`]).
const INPUT_BATCH_BYTES: usize = 256 * 1024;

impl Connection {
    /// After a read that filled its buffer: reads and handles what the socket already holds,
    /// up to [`INPUT_BATCH_BYTES`], before the turn ends. The turn's end is where confirms
    /// ask the store for a group commit; asking after the first 64 KiB of a burst starts a
    /// round that covers a fraction of it, and the rest waits for a second fsync. The last
    /// read may take up to one buffer past the limit.
    fn take_waiting_input(
        &mut self,
        reader: &mut Reader,
        inbuf: &mut BytesMut,
        chunk: usize,
    ) -> Option<End> {
        let mut taken = 0;
        while taken < INPUT_BATCH_BYTES {
            // An alarm or the store's backlog limit reached by the frames just handled stops
            // the reading here, as it would at the end of the turn.
            self.update_blocked();
            self.update_throttle();
            if self.blocked || self.throttled {
                break;
            }
            let offered = make_room(inbuf, chunk);
            match reader.read_now(inbuf)? {
                Ok(0) => return Some(End::Eof),
                Ok(n) => {
                    warren_core::stats::bump(&self.registration.state().stats.recv_oct, n as u64);
                    if let Next::Stop(end) = self.process_input(inbuf) {
                        return Some(end);
                    }
                    if n < offered {
                        return None;
                    }
                    taken += n;
                }
                Err(e) => return Some(End::Io(e)),
            }
        }
        None
    }

    async fn run(
        &mut self,
        reader: &mut Reader,
        writer: &mut Writer,
        mut inbuf: BytesMut,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let hb = Duration::from_secs(u64::from(self.heartbeat));
        let tick_every = if self.heartbeat > 0 {
            hb / 2
        } else {
            Duration::from_secs(3600)
        };
        // A peer that accepts no bytes for two heartbeat intervals (or the send timeout,
        // without heartbeats) is gone; its connection must not hold its acks and the
        // broker's memory hostage.
        let stall = if self.heartbeat > 0 {
            hb * 2
        } else {
            self.ctx.config.send_timeout
        };
        let mut ticker = tokio::time::interval(tick_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ack_timeout = self.ctx.config.consumer_timeout;
        let mut ack_ticker = tokio::time::interval(ack_check_interval(ack_timeout));
        ack_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                let offered = make_room(&mut inbuf, chunk);
                tokio::select! {
                    _ = self.alarms.changed() => {}
                    read = reader.read_buf(&mut inbuf), if !self.blocked && !self.throttled => match read {
                        Ok(0) => stop = Some(End::Eof),
                        Ok(n) => {
                            warren_core::stats::bump(&self.registration.state().stats.recv_oct, n as u64);
                            last_read = Instant::now();
                            if let Next::Stop(end) = self.process_input(&mut inbuf) {
                                stop = Some(end);
                            }
                            if n == offered && stop.is_none() {
                                stop = self.take_waiting_input(reader, &mut inbuf, chunk);
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
                    _ = ack_ticker.tick(), if ack_timeout.is_some() && self.closing_since.is_none() => {
                        if let Some(timeout) = ack_timeout {
                            self.check_ack_timeouts(timeout);
                        }
                    }
                    _ = ticker.tick() => {
                        if self.heartbeat > 0 {
                            // While blocked or throttled we do not read, so we cannot see
                            // heartbeats: the pause is ours, not the client's silence.
                            if self.blocked || self.throttled {
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
                let write_started = Instant::now();
                let bytes = self.ctx.out.len() + self.ctx.chunks.bytes;
                warren_core::stats::bump(&self.registration.state().stats.send_oct, bytes as u64);
                let written = if self.ctx.chunks.is_empty() {
                    write_all_within(writer, &self.ctx.out, stall).await
                } else {
                    write_all_vectored(writer, &mut self.ctx.chunks, &mut self.ctx.out, stall).await
                };
                if let Err(e) = written {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        warn!(connection = self.ctx.id, error = %e, "client stopped reading; closing");
                        return End::WriteStalled;
                    }
                    return End::Io(e);
                }
                last_write = Instant::now();
                if last_write - write_started >= tick_every {
                    // A slow reader held us in the write: we read nothing meanwhile, so the
                    // silence was ours to count, not the client's.
                    last_read = last_read.max(last_write - tick_every);
                }
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

    fn release_channels(&mut self) {
        for channel in self.channels.values_mut() {
            if channel.state == ChannelState::Open {
                channel.release(&mut self.ctx);
            }
        }
    }

    /// Final cleanup: channels release their consumers and unacked messages, deliveries
    /// still queued for us go back to their queues, exclusive queues are deleted.
    /// Releases everything the connection holds in the broker. Runs when the connection
    /// ends normally and again from `Drop`, so it also runs if the task panics or is
    /// aborted (the second run finds nothing left to release).
    fn teardown(&mut self) {
        self.release_channels();
        for channel in self.channels.values() {
            self.ctx
                .vhost
                .absorb_channel_counts(&channel.stats.counts());
        }
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

impl Drop for Connection {
    fn drop(&mut self) {
        self.teardown();
    }
}

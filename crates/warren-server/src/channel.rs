//! One AMQP channel: its state, content assembly for `basic.publish`, and the dispatch of
//! every channel method to the module of its concern: `topology` (exchange/queue methods),
//! `consume` (consumers, deliveries, get), `ack` (acknowledgements), `publish` (routing and
//! publisher confirms), `tx` (transactions). Connection-level concerns (framing, handshake,
//! writing to the socket) live in `connection.rs`; the broker model in `warren-core`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::debug;
use warren_amqp::constants::*;
use warren_amqp::properties::{self as prop, peek_user_id};
use warren_amqp::*;
use warren_core::access::{Perm, ResourceKind};
use warren_core::queue::{ConsumerSpec, Entry};
use warren_core::stats::{self, ChannelStats};
use warren_core::vhost::{PublishOutcome, RouteScratch, VHost};
use warren_core::{
    Broker, Credit, Delivery, DeliverySink, Destination, ExchangeKind, ExchangeSpec,
};
use warren_core::{FastMap, Message, Queue, QueueSpec, REPLY_TO_PREFIX, REPLY_TO_QUEUE};

mod ack;
mod consume;
mod dispatch;
mod permission;
mod publish;
mod topology;
mod tx;

use crate::config::ServerConfig;
use crate::error::{AmqpError, AmqpResult};
use crate::frames::{write_content, write_delivery, Chunks};

/// Everything a channel needs from its connection.
pub(crate) struct ConnCtx {
    pub id: u64,
    #[allow(dead_code)]
    pub broker: Arc<Broker>,
    pub vhost: Arc<VHost>,
    pub user: String,
    /// The user has the `impersonator` tag: the `user-id` property is not checked.
    pub impersonator: bool,
    pub frame_max: u32,
    pub out: BytesMut,
    /// Output queued before `out` (large bodies written without copying).
    pub chunks: Chunks,
    pub sink: Arc<dyn DeliverySink>,
    pub consumer_cancel_notify: bool,
    /// The connection has published: resource alarms block it.
    pub is_publisher: bool,
    pub config: Arc<ServerConfig>,
    /// Reused between publishes so routing does not allocate.
    pub route_scratch: RouteScratch,
    /// Queues this connection publishes to whose consumers lag: it pauses until they catch up.
    pub lagging_queues: Vec<Arc<Queue>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelState {
    Open,
    /// We sent `channel.close` and wait for `channel.close-ok`; everything else is dropped.
    Closing,
}

/// Where a channel is in receiving a content-bearing method.
enum Content {
    Idle,
    AwaitHeader(BasicPublish),
    AwaitBody {
        publish: BasicPublish,
        properties: Bytes,
        size: u64,
        body: Body,
    },
}

/// A body as it arrives: a single frame stays a zero-copy slice of the read buffer.
enum Body {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::One(b) => b.len(),
            Body::Many(b) => b.len(),
        }
    }

    fn push(&mut self, chunk: Bytes, expected: u64) {
        *self = match std::mem::replace(self, Body::Empty) {
            Body::Empty => Body::One(chunk),
            Body::One(first) => {
                // Capacity is bounded by max_message_size, checked on the header.
                let mut all = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
                all.extend_from_slice(&first);
                all.extend_from_slice(&chunk);
                Body::Many(all)
            }
            Body::Many(mut all) => {
                all.extend_from_slice(&chunk);
                Body::Many(all)
            }
        }
    }

    fn freeze(self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(b) => b.freeze(),
        }
    }
}

/// A delivery the client has not settled yet.
struct Unacked {
    tag: u64,
    queue: Arc<Queue>,
    entry: Entry,
    /// The consumer's credit to give back; `None` for `basic.get`.
    consumer_credit: Option<Arc<Credit>>,
}

struct ChannelConsumer {
    queue: Arc<Queue>,
    credit: Arc<Credit>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Discard,
}

enum TxOp {
    Publish { msg: Arc<Message>, mandatory: bool },
    Settle { entries: Vec<Unacked>, how: Settle },
}

/// Publisher-confirm bookkeeping: every publish gets the next sequence number; acks are
/// coalesced into one `multiple=true` ack per output batch.
#[derive(Default)]
struct Confirms {
    last_seq: u64,
    acked_upto: u64,
    /// Sequence numbers to nack (a queue refused them), ascending; rare.
    nacks: Vec<u64>,
    /// Publishes whose persistent message must be on disk before they are confirmed:
    /// (sequence number, store generation that covers it), ascending in both.
    durable_waits: VecDeque<(u64, u64)>,
}

pub(crate) struct Channel {
    pub id: u16,
    pub state: ChannelState,
    content: Content,
    next_delivery_tag: u64,
    unacked: VecDeque<Unacked>,
    consumers: FastMap<Arc<str>, ChannelConsumer>,
    /// Prefetch for consumers created from now on (`basic.qos` global=false).
    consumer_prefetch: u32,
    /// Prefetch shared by all consumers of the channel (`basic.qos` global=true).
    channel_credit: Arc<Credit>,
    confirms: Option<Confirms>,
    tx: Option<Vec<TxOp>>,
    /// What the uncommitted publishes of `tx` hold in memory, against `transaction_max_bytes`.
    tx_bytes: u64,
    /// For the acknowledgement timeout: the oldest unacked delivery at the last check and
    /// when that check first saw it (no timestamp per delivery on the hot path).
    ack_watch: Option<(u64, std::time::Instant)>,
    /// Permission checks that passed on this channel (RabbitMQ's permission cache).
    permission_cache: Vec<permission::Allowed>,
    /// Topic permission checks that passed: (permission, exchange, key).
    topic_cache: Vec<(Perm, String, String)>,
    /// For the empty-name shortcut of queue methods.
    last_queue: Option<String>,
    /// Direct reply-to: the routing key handed out and the consumer that receives on it.
    reply_to: Option<ReplyTo>,
    /// Counters and gauges the management API reads.
    pub stats: Arc<ChannelStats>,
}

struct ReplyTo {
    name: String,
    consumer_tag: Arc<str>,
}

fn random_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

impl Channel {
    pub fn new(id: u16, stats: Arc<ChannelStats>) -> Channel {
        Channel {
            id,
            state: ChannelState::Open,
            content: Content::Idle,
            next_delivery_tag: 1,
            unacked: VecDeque::new(),
            consumers: FastMap::default(),
            consumer_prefetch: 0,
            channel_credit: Arc::new(Credit::new(0)),
            confirms: None,
            tx: None,
            tx_bytes: 0,
            ack_watch: None,
            permission_cache: Vec::new(),
            topic_cache: Vec::new(),
            last_queue: None,
            reply_to: None,
            stats,
        }
    }

    /// The unacknowledged count changed.
    fn note_unacked(&self) {
        stats::set(
            &self.stats.messages_unacknowledged,
            self.unacked.len() as u64,
        );
    }

    fn note_consumers(&self) {
        stats::set(&self.stats.consumer_count, self.consumers.len() as u64);
    }

    fn send(&self, ctx: &mut ConnCtx, method: impl Into<Method>) {
        encode_method_frame(&mut ctx.out, self.id, &method.into());
    }

    /// The error for a method frame arriving while this channel expects content (a
    /// header or body of a `basic.publish`), if it does.
    pub fn content_interrupted(&self) -> Option<AmqpError> {
        let text = match self.content {
            Content::Idle => return None,
            Content::AwaitHeader(_) => {
                "expected content header for class 60, got non content header frame instead"
            }
            Content::AwaitBody { .. } => {
                "expected content body, got non content body frame instead"
            }
        };
        Some(AmqpError::connection(UNEXPECTED_FRAME, text).on(60, 40))
    }

    // ----- frames -----

    pub fn handle_method(&mut self, ctx: &mut ConnCtx, method: Method) -> AmqpResult<()> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        self.dispatch(ctx, method)
            .map_err(|e| e.on(class_id, method_id))
    }

    pub fn handle_header(&mut self, ctx: &mut ConnCtx, payload: Bytes) -> AmqpResult<()> {
        let publish = match std::mem::replace(&mut self.content, Content::Idle) {
            Content::AwaitHeader(publish) => publish,
            Content::AwaitBody { .. } => {
                return Err(AmqpError::connection(
                    UNEXPECTED_FRAME,
                    "expected content body, got non content body frame instead",
                )
                .on(60, 40))
            }
            Content::Idle => return Err(unexpected_non_method()),
        };
        let header = ContentHeader::decode(payload).map_err(|e| {
            AmqpError::connection(FRAME_ERROR, format!("malformed content header: {e}"))
        })?;
        if header.class_id != 60 {
            return Err(AmqpError::connection(
                UNEXPECTED_FRAME,
                format!(
                    "content header for class {} on a basic.publish",
                    header.class_id
                ),
            ));
        }
        // The headers table is kept raw and passed on; a scan (no decode) refuses what
        // RabbitMQ's full decode refuses. RabbitMQ 3.10 answers an unknown field type there
        // with a bare 541 "INTERNAL_ERROR" on 0.0 (its channel process crashes); so do we.
        if header.properties_raw.first().is_some_and(|b| b & 0x20 != 0) {
            if let Err(e) = prop::check_headers(&header.properties_raw) {
                debug!(channel = self.id, error = %e, "malformed headers table in a content header");
                let mut err = AmqpError::connection(INTERNAL_ERROR, "");
                err.text = "INTERNAL_ERROR".into();
                return Err(err);
            }
        }
        if header.body_size > ctx.config.max_message_size {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {}",
                    header.body_size, ctx.config.max_message_size
                ),
            )
            .on(60, 40));
        }
        if header.body_size == 0 {
            return self.publish_complete(ctx, publish, header.properties_raw, Bytes::new());
        }
        self.content = Content::AwaitBody {
            publish,
            properties: header.properties_raw,
            size: header.body_size,
            body: Body::Empty,
        };
        Ok(())
    }

    pub fn handle_body(&mut self, ctx: &mut ConnCtx, payload: Bytes) -> AmqpResult<()> {
        let (size, body) =
            match &mut self.content {
                Content::AwaitBody { size, body, .. } => (*size, body),
                Content::AwaitHeader(_) => return Err(AmqpError::connection(
                    UNEXPECTED_FRAME,
                    "expected content header for class 60, got non content header frame instead",
                )
                .on(60, 40)),
                Content::Idle => return Err(unexpected_non_method()),
            };
        let mut payload = payload;
        let mut total = body.len() as u64 + payload.len() as u64;
        if total > size {
            // RabbitMQ tolerates a body overrunning its header; the header's size wins.
            let keep = usize::try_from(size - body.len() as u64).unwrap_or(0);
            payload.truncate(keep);
            total = size;
        }
        let expected = size;
        body.push(payload, expected);
        if total < expected {
            return Ok(());
        }
        let Content::AwaitBody {
            publish,
            properties,
            body,
            ..
        } = std::mem::replace(&mut self.content, Content::Idle)
        else {
            return Ok(());
        };
        self.publish_complete(ctx, publish, properties, body.freeze())
    }

    // ----- closing -----

    /// Releases everything the channel holds: consumers go, unacked messages return to
    /// their queues. Called when the channel closes for any reason.
    pub fn release(&mut self, ctx: &mut ConnCtx) {
        let tags: Vec<Arc<str>> = self.consumers.keys().cloned().collect();
        for tag in tags {
            self.cancel_consumer(ctx, &tag);
        }
        // Uncommitted settlements never happened: their messages go back like any unacked.
        let mut all: Vec<Unacked> = Vec::new();
        for op in self.tx.take().into_iter().flatten() {
            if let TxOp::Settle { entries, .. } = op {
                all.extend(entries);
            }
        }
        self.tx_bytes = 0;
        all.extend(self.unacked.drain(..));
        all.sort_by_key(|u| u.tag);
        self.apply_settle(all, Settle::Requeue);
        self.content = Content::Idle;
        debug!(channel = self.id, "channel resources released");
    }
}

/// A content frame where a method frame was due.
fn unexpected_non_method() -> AmqpError {
    AmqpError::connection(
        UNEXPECTED_FRAME,
        "expected method frame, got non method frame instead",
    )
}

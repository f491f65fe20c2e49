//! One AMQP channel: content assembly for `basic.publish`, the exchange/queue/basic/tx/confirm
//! methods, consumers, unacknowledged deliveries and their delivery tags, prefetch, publisher
//! confirms and transactions. Connection-level concerns (framing, handshake, writing to the
//! socket) live in `connection.rs`; the broker model in `warren-core`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::debug;
use warren_amqp::constants::*;
use warren_amqp::properties::{self as prop, peek_user_id};
use warren_amqp::*;
use warren_core::queue::{ConsumerSpec, Entry};
use warren_core::vhost::VHost;
use warren_core::{
    Broker, Credit, Delivery, DeliverySink, Destination, ExchangeKind, ExchangeSpec,
};
use warren_core::{Message, Published, Queue, QueueSpec, REPLY_TO_PREFIX, REPLY_TO_QUEUE};

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
    pub route_buf: Vec<Arc<Queue>>,
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
    consumers: HashMap<Arc<str>, ChannelConsumer>,
    /// Prefetch for consumers created from now on (`basic.qos` global=false).
    consumer_prefetch: u32,
    /// Prefetch shared by all consumers of the channel (`basic.qos` global=true).
    channel_credit: Arc<Credit>,
    confirms: Option<Confirms>,
    tx: Option<Vec<TxOp>>,
    /// For the empty-name shortcut of queue methods.
    last_queue: Option<String>,
    /// Direct reply-to: the routing key handed out and the consumer that receives on it.
    reply_to: Option<ReplyTo>,
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
    pub fn new(id: u16) -> Channel {
        Channel {
            id,
            state: ChannelState::Open,
            content: Content::Idle,
            next_delivery_tag: 1,
            unacked: VecDeque::new(),
            consumers: HashMap::new(),
            consumer_prefetch: 0,
            channel_credit: Arc::new(Credit::new(0)),
            confirms: None,
            tx: None,
            last_queue: None,
            reply_to: None,
        }
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

    fn dispatch(&mut self, ctx: &mut ConnCtx, method: Method) -> AmqpResult<()> {
        match method {
            Method::ChannelFlow(m) => {
                // RabbitMQ refuses client-initiated flow control (it has credit flow and
                // prefetch instead); clients depend on exactly that answer.
                if !m.active {
                    return Err(AmqpError::connection(NOT_IMPLEMENTED, "active=false"));
                }
                self.send(ctx, ChannelFlowOk { active: true });
            }
            Method::ChannelFlowOk(_) => {}
            Method::AccessRequest(_) => self.send(ctx, AccessRequestOk { reserved_1: 1 }),
            Method::ExchangeDeclare(m) => self.exchange_declare(ctx, m)?,
            Method::ExchangeDelete(m) => {
                ctx.vhost.delete_exchange(&m.exchange, m.if_unused)?;
                if !m.no_wait {
                    self.send(ctx, ExchangeDeleteOk {});
                }
            }
            Method::ExchangeBind(m) => {
                ctx.vhost.bind(
                    &m.source,
                    Destination::Exchange(m.destination),
                    &m.routing_key,
                    m.arguments,
                    ctx.id,
                )?;
                if !m.no_wait {
                    self.send(ctx, ExchangeBindOk {});
                }
            }
            Method::ExchangeUnbind(m) => {
                ctx.vhost.unbind(
                    &m.source,
                    Destination::Exchange(m.destination),
                    &m.routing_key,
                    m.arguments,
                    ctx.id,
                )?;
                if !m.no_wait {
                    self.send(ctx, ExchangeUnbindOk {});
                }
            }
            Method::QueueDeclare(m) => self.queue_declare(ctx, m)?,
            Method::QueueBind(m) => {
                let queue = self.queue_name(&m.queue)?;
                let key = self.routing_key_shortcut(&m.queue, &m.routing_key);
                ctx.vhost.bind(
                    &m.exchange,
                    Destination::Queue(queue),
                    &key,
                    m.arguments,
                    ctx.id,
                )?;
                if !m.no_wait {
                    self.send(ctx, QueueBindOk {});
                }
            }
            Method::QueueUnbind(m) => {
                let queue = self.queue_name(&m.queue)?;
                let key = self.routing_key_shortcut(&m.queue, &m.routing_key);
                ctx.vhost.unbind(
                    &m.exchange,
                    Destination::Queue(queue),
                    &key,
                    m.arguments,
                    ctx.id,
                )?;
                self.send(ctx, QueueUnbindOk {});
            }
            Method::QueuePurge(m) => {
                let queue = ctx.vhost.queue(&self.queue_name(&m.queue)?, ctx.id)?;
                let message_count = queue.purge();
                if !m.no_wait {
                    self.send(ctx, QueuePurgeOk { message_count });
                }
            }
            Method::QueueDelete(m) => {
                let name = self.queue_name(&m.queue)?;
                let message_count =
                    ctx.vhost
                        .delete_queue(&name, m.if_unused, m.if_empty, ctx.id)?;
                if !m.no_wait {
                    self.send(ctx, QueueDeleteOk { message_count });
                }
            }
            Method::BasicQos(m) => {
                if m.prefetch_size != 0 {
                    return Err(AmqpError::connection(
                        NOT_IMPLEMENTED,
                        format!("prefetch_size!=0 ({})", m.prefetch_size),
                    ));
                }
                if m.global {
                    self.channel_credit.set_limit(u32::from(m.prefetch_count));
                    self.dispatch_consumer_queues();
                } else {
                    // As RabbitMQ: a per-consumer qos also lifts any channel-wide limit.
                    self.consumer_prefetch = u32::from(m.prefetch_count);
                    self.channel_credit.set_limit(0);
                    self.dispatch_consumer_queues();
                }
                self.send(ctx, BasicQosOk {});
            }
            Method::BasicConsume(m) => self.basic_consume(ctx, m)?,
            Method::BasicCancel(m) => {
                self.cancel_consumer(ctx, &m.consumer_tag);
                if !m.no_wait {
                    self.send(
                        ctx,
                        BasicCancelOk {
                            consumer_tag: m.consumer_tag,
                        },
                    );
                }
            }
            Method::BasicPublish(m) => {
                ctx.is_publisher = true;
                self.content = Content::AwaitHeader(m);
            }
            Method::BasicGet(m) => self.basic_get(ctx, m)?,
            Method::BasicAck(m) => self.settle(m.delivery_tag, m.multiple, Settle::Ack)?,
            Method::BasicReject(m) => {
                let how = if m.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(m.delivery_tag, false, how)?
            }
            Method::BasicNack(m) => {
                let how = if m.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(m.delivery_tag, m.multiple, how)?
            }
            Method::BasicRecoverAsync(m) => self.recover(m.requeue)?,
            Method::BasicRecover(m) => {
                self.recover(m.requeue)?;
                self.send(ctx, BasicRecoverOk {});
            }
            Method::TxSelect(_) => {
                if self.confirms.is_some() {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(Vec::new());
                }
                self.send(ctx, TxSelectOk {});
            }
            Method::TxCommit(_) => {
                let Some(ops) = self.tx.as_mut().map(std::mem::take) else {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        "channel is not transactional",
                    ));
                };
                let mut wrote_durable = false;
                for op in ops {
                    match op {
                        TxOp::Publish { msg, mandatory } => {
                            self.route(ctx, &msg, mandatory)?;
                            wrote_durable |= msg.needs_sync();
                        }
                        TxOp::Settle { entries, how } => {
                            wrote_durable |= entries.iter().any(|u| u.entry.logged);
                            self.apply_settle(entries, how)
                        }
                    }
                }
                if wrote_durable {
                    // commit-ok promises the committed work is safe (persistent publishes and
                    // acks of persistent messages): wait for the fsync.
                    if let Some(p) = ctx.broker.persistence() {
                        let synced = blocking(|| p.sync_now());
                        if let Err(e) = synced {
                            return Err(AmqpError::connection(
                                INTERNAL_ERROR,
                                format!("cannot make the transaction durable: {e}"),
                            ));
                        }
                    }
                }
                self.send(ctx, TxCommitOk {});
            }
            Method::TxRollback(_) => {
                let Some(ops) = self.tx.as_mut().map(std::mem::take) else {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        "channel is not transactional",
                    ));
                };
                // Settlements go back to unacked, in delivery-tag order.
                for op in ops {
                    if let TxOp::Settle { entries, .. } = op {
                        for u in entries {
                            let pos = self.unacked.partition_point(|x| x.tag < u.tag);
                            self.unacked.insert(pos, u);
                        }
                    }
                }
                self.send(ctx, TxRollbackOk {});
            }
            Method::ConfirmSelect(m) => {
                if self.tx.is_some() {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if self.confirms.is_none() {
                    self.confirms = Some(Confirms::default());
                }
                if !m.no_wait {
                    self.send(ctx, ConfirmSelectOk {});
                }
            }
            other => {
                return Err(AmqpError::connection(
                    COMMAND_INVALID,
                    format!(
                        "method {} is not valid from a client on a channel",
                        other.name()
                    ),
                ))
            }
        }
        Ok(())
    }

    // ----- exchanges and queues -----

    fn exchange_declare(&mut self, ctx: &mut ConnCtx, m: ExchangeDeclare) -> AmqpResult<()> {
        let kind = match ExchangeKind::parse(&m.kind) {
            Some(kind) => kind,
            None if m.passive => ExchangeKind::Direct,
            None => {
                return Err(AmqpError::connection(
                    COMMAND_INVALID,
                    format!("unknown exchange type '{}'", m.kind),
                ))
            }
        };
        let spec = ExchangeSpec {
            name: m.exchange,
            kind,
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: m.arguments,
        };
        ctx.vhost.declare_exchange(spec, m.passive)?;
        if !m.no_wait {
            self.send(ctx, ExchangeDeclareOk {});
        }
        Ok(())
    }

    fn queue_declare(&mut self, ctx: &mut ConnCtx, m: QueueDeclare) -> AmqpResult<()> {
        if m.passive && is_reply_to_name(&m.queue) {
            // The direct reply-to pseudo-queue "exists" for passive declares, as in RabbitMQ.
            if m.queue != REPLY_TO_QUEUE && ctx.broker.reply_target(&m.queue).is_none() {
                return Err(AmqpError::channel(
                    NOT_FOUND,
                    format!("no queue '{}' in vhost '{}'", m.queue, ctx.vhost.name),
                ));
            }
            if !m.no_wait {
                self.send(
                    ctx,
                    QueueDeclareOk {
                        queue: m.queue,
                        message_count: 0,
                        consumer_count: 0,
                    },
                );
            }
            return Ok(());
        }
        let name = if m.queue.is_empty() {
            if m.passive {
                self.queue_name("")?
            } else {
                random_name("amq.gen-")
            }
        } else {
            if !m.passive {
                warren_core::vhost::check_queue_name(&m.queue)?;
            }
            m.queue
        };
        let spec = QueueSpec {
            name,
            durable: m.durable,
            exclusive_owner: m.exclusive.then_some(ctx.id),
            auto_delete: m.auto_delete,
            arguments: m.arguments,
        };
        let declared = ctx.vhost.declare_queue(spec, m.passive, ctx.id)?;
        let queue = declared.queue.name().to_string();
        self.last_queue = Some(queue.clone());
        if !m.no_wait {
            self.send(
                ctx,
                QueueDeclareOk {
                    queue,
                    message_count: declared.counts.messages,
                    consumer_count: declared.counts.consumers,
                },
            );
        }
        Ok(())
    }

    /// The empty queue name means "the queue last declared on this channel".
    fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::channel(NOT_FOUND, "no previously declared queue"))
    }

    fn routing_key_shortcut(&self, queue: &str, key: &str) -> String {
        match (&self.last_queue, queue.is_empty() && key.is_empty()) {
            (Some(last), true) => last.clone(),
            _ => key.to_string(),
        }
    }

    // ----- consumers -----

    fn basic_consume(&mut self, ctx: &mut ConnCtx, m: BasicConsume) -> AmqpResult<()> {
        let queue = if m.queue == REPLY_TO_QUEUE {
            self.reply_to_queue(ctx, &m)?
        } else {
            ctx.vhost.queue(&self.queue_name(&m.queue)?, ctx.id)?
        };
        let priority = match m.arguments.get("x-priority") {
            None => 0,
            Some(v) => v
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .filter(|_| !matches!(v, FieldValue::Timestamp(_)))
                .ok_or_else(|| {
                    AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "invalid arg 'x-priority' for queue '{}' in vhost '{}': \"expected integer, got {}\"",
                            queue.name(),
                            ctx.vhost.name,
                            v.type_name()
                        ),
                    )
                })?,
        };
        let tag: Arc<str> = if m.consumer_tag.is_empty() {
            Arc::from(random_name("amq.ctag-"))
        } else {
            Arc::from(m.consumer_tag.as_str())
        };
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::connection(
                NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let consumer_credit = Arc::new(Credit::new(if m.no_ack {
            0
        } else {
            self.consumer_prefetch
        }));
        self.consumers.insert(
            Arc::clone(&tag),
            ChannelConsumer {
                queue: Arc::clone(&queue),
                credit: Arc::clone(&consumer_credit),
            },
        );
        let spec = ConsumerSpec {
            tag: Arc::clone(&tag),
            connection_id: ctx.id,
            channel: self.id,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority,
            sink: Arc::clone(&ctx.sink),
            consumer_credit,
            channel_credit: Arc::clone(&self.channel_credit),
        };
        if let Err(e) = queue.add_consumer(spec) {
            self.consumers.remove(&tag);
            return Err(e.into());
        }
        if m.queue == REPLY_TO_QUEUE {
            let name = format!("{REPLY_TO_PREFIX}{}", random_name(""));
            ctx.broker.register_reply_target(&name, Arc::clone(&queue));
            self.reply_to = Some(ReplyTo {
                name,
                consumer_tag: Arc::clone(&tag),
            });
        }
        // consume-ok precedes every delivery on the wire: deliveries reach the connection
        // through its event queue and are written after this frame.
        if !m.no_wait {
            self.send(
                ctx,
                BasicConsumeOk {
                    consumer_tag: tag.to_string(),
                },
            );
        }
        Ok(())
    }

    /// A private queue (not in the vhost's topology) for this channel's direct reply-to
    /// consumer; replies reach it through the broker's reply-target registry.
    fn reply_to_queue(&self, ctx: &ConnCtx, m: &BasicConsume) -> AmqpResult<Arc<Queue>> {
        if !m.no_ack {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "reply consumer cannot acknowledge",
            ));
        }
        if self.reply_to.is_some() {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "reply consumer already set",
            ));
        }
        Ok(Queue::new(
            &ctx.vhost.name,
            QueueSpec {
                name: REPLY_TO_QUEUE.to_string(),
                durable: false,
                exclusive_owner: Some(ctx.id),
                auto_delete: true,
                arguments: FieldTable::default(),
            },
            warren_core::QueueConfig::default(),
            ctx.broker.timers(),
            // Replies are never dead-lettered.
            std::sync::Weak::<VHost>::new(),
            None,
        ))
    }

    fn cancel_consumer(&mut self, ctx: &mut ConnCtx, tag: &str) {
        let Some(c) = self.consumers.remove(tag) else {
            return;
        };
        if self
            .reply_to
            .as_ref()
            .is_some_and(|r| &*r.consumer_tag == tag)
        {
            if let Some(r) = self.reply_to.take() {
                ctx.broker.unregister_reply_target(&r.name);
            }
            c.queue.mark_deleted();
            return;
        }
        if c.queue.remove_consumer(ctx.id, self.id, tag) {
            ctx.vhost.delete_queue_instance(&c.queue);
        }
    }

    /// The server cancelled one of our consumers (its queue was deleted).
    pub fn consumer_cancelled(&mut self, ctx: &mut ConnCtx, tag: &Arc<str>) {
        if self.consumers.remove(tag).is_some()
            && self.state == ChannelState::Open
            && ctx.consumer_cancel_notify
        {
            self.send(
                ctx,
                BasicCancel {
                    consumer_tag: tag.to_string(),
                    no_wait: true,
                },
            );
        }
    }

    /// Writes a delivery from a queue, or hands it back if its consumer is gone.
    pub fn deliver(&mut self, ctx: &mut ConnCtx, d: Delivery) {
        let consumer = match self.consumers.get(&d.consumer_tag) {
            Some(c) if self.state == ChannelState::Open => c,
            _ => {
                // The consumer went away while this delivery was on its way: give back the
                // channel credit it took and return the message to its queue.
                if !d.no_ack {
                    self.channel_credit.release(1);
                }
                d.give_back();
                return;
            }
        };
        let consumer_credit = (!d.no_ack).then(|| Arc::clone(&consumer.credit));
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        write_delivery(
            &mut ctx.out,
            &mut ctx.chunks,
            self.id,
            ctx.frame_max,
            &d.consumer_tag,
            tag,
            d.entry.redelivered,
            &d.msg,
        );
        if consumer_credit.is_some() {
            self.unacked.push_back(Unacked {
                tag,
                consumer_credit,
                queue: d.queue,
                entry: d.entry,
            });
        }
    }

    fn basic_get(&mut self, ctx: &mut ConnCtx, m: BasicGet) -> AmqpResult<()> {
        let queue = ctx.vhost.queue(&self.queue_name(&m.queue)?, ctx.id)?;
        let Some((entry, msg, message_count)) = queue.get(m.no_ack) else {
            self.send(
                ctx,
                BasicGetEmpty {
                    reserved_1: String::new(),
                },
            );
            return Ok(());
        };
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        self.send(
            ctx,
            BasicGetOk {
                delivery_tag: tag,
                redelivered: entry.redelivered,
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
                message_count,
            },
        );
        write_content(&mut ctx.out, &mut ctx.chunks, self.id, ctx.frame_max, &msg);
        if !m.no_ack {
            self.unacked.push_back(Unacked {
                tag,
                queue,
                entry,
                consumer_credit: None,
            });
        }
        Ok(())
    }

    // ----- acknowledgements -----

    /// Takes the deliveries an ack/nack/reject names out of the unacked list.
    fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if multiple && tag == 0 {
            return Ok(self.unacked.drain(..).collect());
        }
        let pos = self.unacked.partition_point(|u| u.tag < tag);
        if self.unacked.get(pos).map(|u| u.tag) != Some(tag) {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!("unknown delivery tag {tag}"),
            ));
        }
        if multiple {
            Ok(self.unacked.drain(..=pos).collect())
        } else {
            Ok(self.unacked.remove(pos).into_iter().collect())
        }
    }

    fn settle(&mut self, tag: u64, multiple: bool, how: Settle) -> AmqpResult<()> {
        let entries = self.take_unacked(tag, multiple)?;
        if let Some(ops) = self.tx.as_mut() {
            ops.push(TxOp::Settle { entries, how });
            return Ok(());
        }
        self.apply_settle(entries, how);
        Ok(())
    }

    fn apply_settle(&mut self, entries: Vec<Unacked>, how: Settle) {
        if entries.is_empty() {
            return;
        }
        let mut freed_credit = false;
        // Group runs of the same queue so each queue is locked once per run.
        let mut run: Vec<Entry> = Vec::new();
        let mut run_queue: Option<Arc<Queue>> = None;
        for u in entries {
            if let Some(credit) = &u.consumer_credit {
                credit.release(1);
                self.channel_credit.release(1);
                freed_credit = true;
            }
            if run_queue
                .as_ref()
                .is_some_and(|q| !Arc::ptr_eq(q, &u.queue))
            {
                if let Some(q) = run_queue.take() {
                    finish_run(&q, std::mem::take(&mut run), how);
                }
            }
            run_queue.get_or_insert(u.queue);
            run.push(u.entry);
        }
        if let Some(q) = run_queue {
            finish_run(&q, run, how);
        }
        if freed_credit {
            self.dispatch_consumer_queues();
        }
    }

    fn recover(&mut self, requeue: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "requeue=false"));
        }
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        self.apply_settle(all, Settle::Requeue);
        Ok(())
    }

    /// Lets every queue this channel consumes from dispatch again (credit was freed).
    pub(crate) fn dispatch_consumer_queues(&self) {
        let mut done: Vec<&Arc<Queue>> = Vec::new();
        for c in self.consumers.values() {
            if !done.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                c.queue.dispatch();
                done.push(&c.queue);
            }
        }
    }

    // ----- publishing -----

    fn publish_complete(
        &mut self,
        ctx: &mut ConnCtx,
        publish: BasicPublish,
        properties: Bytes,
        body: Bytes,
    ) -> AmqpResult<()> {
        let fail = |e: AmqpError| e.on(60, 40);
        if publish.immediate {
            return Err(fail(AmqpError::connection(
                NOT_IMPLEMENTED,
                "immediate=true",
            )));
        }
        ctx.vhost
            .check_publish(&publish.exchange)
            .map_err(|e| fail(e.into()))?;
        // The user-id property, when set, must name the authenticated user (as in RabbitMQ).
        if properties.len() >= 2 && properties[0..2] != [0, 0] {
            if let Some(user_id) = peek_user_id(&properties) {
                if user_id != ctx.user {
                    return Err(fail(AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "user_id property set to '{user_id}' but authenticated user was '{}'",
                            ctx.user
                        ),
                    )));
                }
            }
        }
        if let Some(expiration) = peek_expiration(&properties) {
            validate_expiration(&expiration).map_err(fail)?;
        }
        let properties = self.rewrite_reply_to(properties).map_err(fail)?;
        let msg = Arc::new(
            Message::new(publish.exchange, publish.routing_key, properties, body)
                .with_sender_selected(),
        );
        if let Some(ops) = self.tx.as_mut() {
            ops.push(TxOp::Publish {
                msg,
                mandatory: publish.mandatory,
            });
            return Ok(());
        }
        let rejected = self.route(ctx, &msg, publish.mandatory).map_err(fail)?;
        if let Some(c) = self.confirms.as_mut() {
            c.last_seq += 1;
            if rejected {
                c.nacks.push(c.last_seq);
            }
            // A persistent message written to the store is confirmed only once the fsync
            // that covers it is done (group commit).
            if msg.needs_sync() {
                if let Some(p) = ctx.broker.persistence() {
                    c.durable_waits.push_back((c.last_seq, p.generation()));
                }
            }
        }
        Ok(())
    }

    /// A request that asks for a direct reply (`reply_to = amq.rabbitmq.reply-to`) gets the
    /// channel's own reply name written into its properties instead.
    fn rewrite_reply_to(&self, properties: Bytes) -> AmqpResult<Bytes> {
        let wants_reply = properties.len() >= 2
            && u16::from_be_bytes([properties[0], properties[1]]) & prop::flags::REPLY_TO != 0
            && prop::peek_reply_to(&properties).as_deref() == Some(REPLY_TO_QUEUE);
        if !wants_reply {
            return Ok(properties);
        }
        let Some(reply_to) = &self.reply_to else {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "fast reply consumer does not exist",
            ));
        };
        let mut decoded = BasicProperties::decode(&properties).map_err(|e| {
            AmqpError::connection(FRAME_ERROR, format!("malformed content header: {e}"))
        })?;
        decoded.reply_to = Some(reply_to.name.clone());
        Ok(decoded.to_bytes())
    }

    /// Routes and enqueues a message; true when a queue refused it (`x-overflow`
    /// reject-publish), so a confirm-mode publisher gets a nack.
    fn route(
        &mut self,
        ctx: &mut ConnCtx,
        msg: &Arc<Message>,
        mandatory: bool,
    ) -> AmqpResult<bool> {
        let mut rejected = false;
        let mut queues = std::mem::take(&mut ctx.route_buf);
        if msg.exchange.is_empty() && msg.routing_key.starts_with(REPLY_TO_PREFIX) {
            // A reply to a direct reply-to request; a reply whose requester is gone is
            // dropped (or returned, when mandatory).
            queues.extend(ctx.broker.reply_target(&msg.routing_key));
        }
        let routed = if !queues.is_empty() {
            Ok(false)
        } else {
            ctx.vhost.route(msg, &mut queues)
        };
        let held_for_delay = match routed {
            Ok(held) => held,
            Err(e) => {
                ctx.route_buf = queues;
                return Err(e.into());
            }
        };
        if queues.is_empty() && !held_for_delay {
            if mandatory {
                self.send(
                    ctx,
                    BasicReturn {
                        reply_code: NO_ROUTE,
                        reply_text: "NO_ROUTE".to_string(),
                        exchange: msg.exchange.clone(),
                        routing_key: msg.routing_key.clone(),
                    },
                );
                write_content(&mut ctx.out, &mut ctx.chunks, self.id, ctx.frame_max, msg);
            }
        } else {
            for q in queues.drain(..) {
                match q.publish(Arc::clone(msg)) {
                    Published::Rejected => rejected = true,
                    Published::AcceptedLagging => {
                        if !ctx.lagging_queues.iter().any(|l| Arc::ptr_eq(l, &q)) {
                            ctx.lagging_queues.push(q);
                        }
                    }
                    Published::Accepted => {}
                }
            }
        }
        ctx.route_buf = queues;
        Ok(rejected)
    }

    /// Writes the publisher confirms accumulated since the last flush, coalesced.
    pub fn flush_confirms(&mut self, ctx: &mut ConnCtx, synced: u64) {
        let Some(c) = self.confirms.as_mut() else {
            return;
        };
        while c
            .durable_waits
            .front()
            .is_some_and(|&(_, gen)| gen <= synced)
        {
            c.durable_waits.pop_front();
        }
        // Confirms go out in order: nothing past the first publish still waiting for disk.
        let confirmable = c
            .durable_waits
            .front()
            .map_or(c.last_seq, |&(seq, _)| seq - 1);
        if confirmable <= c.acked_upto {
            return;
        }
        let mut frames: Vec<Method> = Vec::new();
        let later_nacks = c
            .nacks
            .iter()
            .position(|&n| n > confirmable)
            .unwrap_or(c.nacks.len());
        let nacks: Vec<u64> = c.nacks.drain(..later_nacks).collect();
        for nack in nacks {
            if nack > c.acked_upto + 1 {
                frames.push(ack_upto(c.acked_upto, nack - 1).into());
            }
            frames.push(
                BasicNack {
                    delivery_tag: nack,
                    multiple: false,
                    requeue: false,
                }
                .into(),
            );
            c.acked_upto = nack;
        }
        if confirmable > c.acked_upto {
            frames.push(ack_upto(c.acked_upto, confirmable).into());
            c.acked_upto = confirmable;
        }
        for f in frames {
            self.send(ctx, f);
        }
    }

    /// True while publishes wait for the store's fsync before their confirm.
    pub fn awaits_durability(&self) -> bool {
        self.confirms
            .as_ref()
            .is_some_and(|c| !c.durable_waits.is_empty())
    }

    // ----- closing -----

    /// Releases everything the channel holds: consumers go, unacked messages return to
    /// their queues. Called when the channel closes for any reason.
    pub fn release(&mut self, ctx: &mut ConnCtx) {
        let tags: Vec<Arc<str>> = self.consumers.keys().cloned().collect();
        for tag in tags {
            self.cancel_consumer(ctx, &tag);
        }
        self.tx = None;
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        self.apply_settle(all, Settle::Requeue);
        self.content = Content::Idle;
        debug!(channel = self.id, "channel resources released");
    }
}

/// Runs blocking work from the connection task: through `block_in_place` on a
/// multi-threaded runtime (other tasks move to other workers), directly on a current-thread
/// runtime, where `block_in_place` would panic.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The `expiration` property must be a non-negative integer of milliseconds; RabbitMQ
/// refuses anything else with these texts.
fn validate_expiration(expiration: &str) -> AmqpResult<()> {
    // Erlang's string:to_integer: a leading integer, then whatever is left over.
    let digits_from = usize::from(expiration.starts_with(['-', '+']));
    let digits = expiration[digits_from..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let end = digits_from + digits;
    let detail = if digits == 0 {
        "no_integer".to_string()
    } else if end < expiration.len() {
        format!("{{leftover_string,\"{}\"}}", &expiration[end..])
    } else {
        match expiration.parse::<i64>() {
            Ok(v) if v < 0 => format!("{{value_negative,{v}}}"),
            Ok(_) => return Ok(()),
            Err(_) => "no_integer".to_string(),
        }
    };
    Err(AmqpError::channel(
        PRECONDITION_FAILED,
        format!("invalid expiration '{expiration}': {detail}"),
    ))
}

/// A content frame where a method frame was due.
fn unexpected_non_method() -> AmqpError {
    AmqpError::connection(
        UNEXPECTED_FRAME,
        "expected method frame, got non method frame instead",
    )
}

fn is_reply_to_name(name: &str) -> bool {
    name == REPLY_TO_QUEUE || name.starts_with(REPLY_TO_PREFIX)
}

fn finish_run(queue: &Arc<Queue>, entries: Vec<Entry>, how: Settle) {
    match how {
        Settle::Ack => queue.settle(entries),
        Settle::Discard => queue.discard(entries),
        Settle::Requeue => queue.requeue(entries),
    }
}

/// One ack confirming every sequence number after `acked` up to `upto`.
fn ack_upto(acked: u64, upto: u64) -> BasicAck {
    BasicAck {
        delivery_tag: upto,
        multiple: upto - acked > 1,
    }
}

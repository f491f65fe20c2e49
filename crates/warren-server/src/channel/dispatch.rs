//! The method table of an open channel: each AMQP method a client may send on a channel,
//! to the operation that handles it (topology, consumers, publishing, acks, transactions).

use super::*;

impl Channel {
    pub(super) fn dispatch(&mut self, ctx: &mut ConnCtx, method: Method) -> AmqpResult<()> {
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
                // RabbitMQ 3.10: the system exchange check comes before the permission's.
                warren_core::vhost::check_exchange_deletion(&ctx.vhost.name, &m.exchange)?;
                self.check_exchange(ctx, Perm::Configure, &m.exchange)?;
                ctx.vhost.delete_exchange(&m.exchange, m.if_unused)?;
                if !m.no_wait {
                    self.send(ctx, ExchangeDeleteOk {});
                }
            }
            Method::ExchangeBind(m) => {
                self.check_exchange(ctx, Perm::Write, &m.destination)?;
                self.check_exchange(ctx, Perm::Read, &m.source)?;
                self.check_topic(ctx, Perm::Read, &m.source, &m.routing_key)?;
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
                self.check_exchange(ctx, Perm::Write, &m.destination)?;
                self.check_exchange(ctx, Perm::Read, &m.source)?;
                self.check_topic(ctx, Perm::Read, &m.source, &m.routing_key)?;
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
                self.check_queue(ctx, Perm::Write, &queue)?;
                self.check_exchange(ctx, Perm::Read, &m.exchange)?;
                self.check_topic(ctx, Perm::Read, &m.exchange, &key)?;
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
                self.check_queue(ctx, Perm::Write, &queue)?;
                self.check_exchange(ctx, Perm::Read, &m.exchange)?;
                self.check_topic(ctx, Perm::Read, &m.exchange, &key)?;
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
                let name = self.queue_name(&m.queue)?;
                self.check_queue(ctx, Perm::Read, &name)?;
                let queue = ctx.vhost.queue(&name, ctx.id)?;
                let message_count = queue.purge();
                if !m.no_wait {
                    self.send(ctx, QueuePurgeOk { message_count });
                }
            }
            Method::QueueDelete(m) => {
                let name = self.queue_name(&m.queue)?;
                self.check_queue(ctx, Perm::Configure, &name)?;
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
                    stats::set(
                        &self.stats.global_prefetch_count,
                        u64::from(m.prefetch_count),
                    );
                    self.channel_credit.set_limit(u32::from(m.prefetch_count));
                    self.dispatch_consumer_queues();
                } else {
                    // As RabbitMQ: a per-consumer qos also lifts any channel-wide limit.
                    self.consumer_prefetch = u32::from(m.prefetch_count);
                    stats::set(&self.stats.prefetch_count, u64::from(m.prefetch_count));
                    stats::set(&self.stats.global_prefetch_count, 0);
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
                stats::set(&self.stats.transactional, 1);
                self.send(ctx, TxSelectOk {});
            }
            Method::TxCommit(_) => self.tx_commit(ctx)?,
            Method::TxRollback(_) => self.tx_rollback(ctx)?,
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
                stats::set(&self.stats.confirm_mode, 1);
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
}

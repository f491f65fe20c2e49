//! `exchange.*` and `queue.*` on a channel: declares, binds, deletes, purges, with the
//! channel's shortcuts (the last declared queue stands for an empty name).

use super::*;

impl Channel {
    pub(super) fn exchange_declare(
        &mut self,
        ctx: &mut ConnCtx,
        m: ExchangeDeclare,
    ) -> AmqpResult<()> {
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
        if !m.passive {
            // RabbitMQ 3.10: passive declares check no permission.
            self.check_exchange(ctx, Perm::Configure, &m.exchange)?;
            self.check_declare_arguments(ctx, ResourceKind::Exchange, &m.exchange, &m.arguments)?;
        }
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

    pub(super) fn queue_declare(&mut self, ctx: &mut ConnCtx, m: QueueDeclare) -> AmqpResult<()> {
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
                        // RabbitMQ 3.10: always 1 for the pseudo-queue itself, whether or not
                        // anyone consumes from it.
                        consumer_count: u32::from(m.queue == REPLY_TO_QUEUE),
                        queue: m.queue,
                        message_count: 0,
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
        if !m.passive {
            // A server-named queue is checked under the name it gets, as in RabbitMQ.
            self.check_queue(ctx, Perm::Configure, &name)?;
            self.check_declare_arguments(ctx, ResourceKind::Queue, &name, &m.arguments)?;
        }
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
    pub(super) fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::channel(NOT_FOUND, "no previously declared queue"))
    }

    pub(super) fn routing_key_shortcut(&self, queue: &str, key: &str) -> String {
        match (&self.last_queue, queue.is_empty() && key.is_empty()) {
            (Some(last), true) => last.clone(),
            _ => key.to_string(),
        }
    }
}

fn is_reply_to_name(name: &str) -> bool {
    name == REPLY_TO_QUEUE || name.starts_with(REPLY_TO_PREFIX)
}

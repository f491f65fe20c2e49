//! Consumers on a channel: `basic.consume` (including direct reply-to), cancel, deliveries
//! from queues to the client, and `basic.get`.

use super::*;

impl Channel {
    pub(super) fn basic_consume(&mut self, ctx: &mut ConnCtx, m: BasicConsume) -> AmqpResult<()> {
        let queue = if m.queue == REPLY_TO_QUEUE {
            self.reply_to_queue(ctx, &m)?
        } else {
            let name = self.queue_name(&m.queue)?;
            self.check_queue(ctx, Perm::Read, &name)?;
            ctx.vhost.queue(&name, ctx.id)?
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
        if let Some(max) = ctx.config.consumer_max_per_channel {
            if self.consumers.len() >= max {
                // RabbitMQ 3.12's words and code for its consumer_max_per_channel.
                return Err(AmqpError::connection(
                    NOT_ALLOWED,
                    format!("reached maximum ({max}) of consumers per channel"),
                ));
            }
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
        self.note_consumers();
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
    pub(super) fn reply_to_queue(&self, ctx: &ConnCtx, m: &BasicConsume) -> AmqpResult<Arc<Queue>> {
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

    pub(super) fn cancel_consumer(&mut self, ctx: &mut ConnCtx, tag: &str) {
        let Some(c) = self.consumers.remove(tag) else {
            return;
        };
        self.note_consumers();
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
        let removed = self.consumers.remove(tag).is_some();
        self.note_consumers();
        if removed && self.state == ChannelState::Open && ctx.consumer_cancel_notify {
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
        stats::bump(&self.stats.redeliver, u64::from(d.entry.redelivered));
        if consumer_credit.is_some() {
            stats::bump(&self.stats.deliver, 1);
            self.unacked.push_back(Unacked {
                tag,
                consumer_credit,
                queue: d.queue,
                entry: d.entry,
            });
            self.note_unacked();
        } else {
            stats::bump(&self.stats.deliver_no_ack, 1);
        }
    }

    pub(super) fn basic_get(&mut self, ctx: &mut ConnCtx, m: BasicGet) -> AmqpResult<()> {
        let name = self.queue_name(&m.queue)?;
        self.check_queue(ctx, Perm::Read, &name)?;
        let queue = ctx.vhost.queue(&name, ctx.id)?;
        let Some((entry, msg, message_count)) = queue.get(m.no_ack) else {
            stats::bump(&self.stats.get_empty, 1);
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
                exchange: msg.exchange.to_string(),
                routing_key: msg.routing_key.to_string(),
                message_count,
            },
        );
        write_content(&mut ctx.out, &mut ctx.chunks, self.id, ctx.frame_max, &msg);
        stats::bump(&self.stats.redeliver, u64::from(entry.redelivered));
        if !m.no_ack {
            stats::bump(&self.stats.get, 1);
            self.unacked.push_back(Unacked {
                tag,
                queue,
                entry,
                consumer_credit: None,
            });
            self.note_unacked();
        } else {
            stats::bump(&self.stats.get_no_ack, 1);
        }
        Ok(())
    }
}

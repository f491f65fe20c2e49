//! Publishing: a completed `basic.publish` is checked, routed and enqueued; mandatory
//! returns; publisher confirms coalesced and held back until the fsync covering durable
//! messages.

use super::*;

impl Channel {
    pub(super) fn publish_complete(
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
        self.check_exchange(ctx, Perm::Write, &publish.exchange)
            .map_err(fail)?;
        self.check_topic(ctx, Perm::Write, &publish.exchange, &publish.routing_key)
            .map_err(fail)?;
        // Validation of the properties comes before routing, but RabbitMQ reports a missing
        // or internal exchange first: on a failure, look at the exchange before answering
        // (so a valid publish reads the topology once, when it is routed).
        let exchange_first = |e: AmqpError| match ctx.vhost.check_publish(&publish.exchange) {
            Err(x) => fail(x.into()),
            Ok(()) => fail(e),
        };
        // The user-id property, when set, must name the authenticated user (as in RabbitMQ).
        if !ctx.impersonator && properties.len() >= 2 && properties[0..2] != [0, 0] {
            if let Some(user_id) = peek_user_id(&properties) {
                if user_id != ctx.user {
                    return Err(exchange_first(AmqpError::channel(
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
            validate_expiration(&expiration).map_err(exchange_first)?;
        }
        let properties = self.rewrite_reply_to(properties).map_err(exchange_first)?;
        let msg = Arc::new(
            Message::new(publish.exchange, publish.routing_key, properties, body)
                .with_sender_selected(),
        );
        if let Some(ops) = self.tx.as_mut() {
            // Checked now, routed at commit.
            ctx.vhost
                .check_publish(&msg.exchange)
                .map_err(|e| fail(e.into()))?;
            self.tx_bytes += tx_cost(&msg);
            let max = ctx.config.transaction_max_bytes;
            if self.tx_bytes > max {
                return Err(fail(AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!(
                        "uncommitted publishes exceed transaction_max_bytes ({max} bytes): commit more often"
                    ),
                )));
            }
            ops.push(TxOp::Publish {
                msg,
                mandatory: publish.mandatory,
            });
            return Ok(());
        }
        let outcome = self.route(ctx, &msg, publish.mandatory).map_err(fail)?;
        if let Some(c) = self.confirms.as_mut() {
            c.last_seq += 1;
            if outcome.rejected {
                c.nacks.push(c.last_seq);
            }
            // A persistent message written to the store is confirmed only once the fsync
            // that covers it is done (group commit).
            if let Some(generation) = outcome.confirm_after {
                c.durable_waits.push_back((c.last_seq, generation));
            }
        }
        Ok(())
    }

    /// A request that asks for a direct reply (`reply_to = amq.rabbitmq.reply-to`) gets the
    /// channel's own reply name written into its properties instead.
    pub(super) fn rewrite_reply_to(&self, properties: Bytes) -> AmqpResult<Bytes> {
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

    /// Routes and enqueues a message (in the core, on one read of the topology), returning
    /// a mandatory message that no queue took.
    pub(super) fn route(
        &mut self,
        ctx: &mut ConnCtx,
        msg: &Arc<Message>,
        mandatory: bool,
    ) -> AmqpResult<PublishOutcome> {
        let outcome = if msg.exchange.is_empty() && msg.routing_key.starts_with(REPLY_TO_PREFIX) {
            // A reply to a direct reply-to request; a reply whose requester is gone is
            // dropped (or returned, when mandatory).
            match ctx.broker.reply_target(&msg.routing_key) {
                Some(q) => {
                    ctx.vhost
                        .publish_to(msg, q, &mut ctx.route_scratch, &mut ctx.lagging_queues)
                }
                None => PublishOutcome {
                    unroutable: true,
                    rejected: false,
                    confirm_after: None,
                },
            }
        } else {
            ctx.vhost
                .publish(msg, &mut ctx.route_scratch, &mut ctx.lagging_queues)?
        };
        stats::bump(&self.stats.publish, 1);
        if self.confirms.is_some() {
            stats::bump(&self.stats.publish_confirm, 1);
        }
        self.stats.sizes.observe(msg.body.len() as u64);
        if outcome.unroutable && !mandatory {
            stats::bump(&self.stats.drop_unroutable, 1);
        }
        if outcome.unroutable && mandatory {
            stats::bump(&self.stats.return_unroutable, 1);
            self.send(
                ctx,
                BasicReturn {
                    reply_code: NO_ROUTE,
                    reply_text: "NO_ROUTE".to_string(),
                    exchange: msg.exchange.to_string(),
                    routing_key: msg.routing_key.to_string(),
                },
            );
            write_content(&mut ctx.out, &mut ctx.chunks, self.id, ctx.frame_max, msg);
        }
        Ok(outcome)
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
            stats::bump(&self.stats.confirm, confirmable - c.acked_upto);
            c.acked_upto = confirmable;
        }
        stats::set(&self.stats.messages_unconfirmed, c.last_seq - c.acked_upto);
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

/// One ack confirming every sequence number after `acked` up to `upto`.
fn ack_upto(acked: u64, upto: u64) -> BasicAck {
    BasicAck {
        delivery_tag: upto,
        multiple: upto - acked > 1,
    }
}

/// What a buffered transactional publish holds: its body, properties and names, and a
/// fixed share for the message and the operation themselves (so even empty messages count).
pub(super) fn tx_cost(msg: &Message) -> u64 {
    const OVERHEAD: u64 = 256;
    (msg.body.len() + msg.properties_raw.len() + msg.exchange.len() + msg.routing_key.len()) as u64
        + OVERHEAD
}

//! What the client publishes: topic aliases, permissions (write on the exchange, topic
//! permissions on the routing key), routing through the core, retained messages, and the
//! QoS 1 and 2 acknowledgements, sent in order and only once the store has made the message
//! durable. Also the will message, published when a connection ends without DISCONNECT.

use warren_amqp::ShortString;
use warren_core::access::{Perm, ResourceKind};

use super::*;
use crate::codec::{AckKind, Publish};
use crate::convert;
use crate::retained::{now_secs, RetainError, RetainedMessage};
use crate::topic;

fn ack(kind: AckKind, pid: u16, reason: u8) -> Packet {
    Packet::Ack {
        kind,
        pid,
        reason,
        props: Properties::default(),
    }
}

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    pub(super) async fn on_publish(&mut self, mut p: Publish) -> Result<(), End> {
        // Topic aliases (MQTT 5): a name sets the alias, an empty name uses it.
        if let Some(alias) = p.props.topic_alias.take() {
            if alias == 0 || alias > self.mqtt.config.topic_alias_maximum {
                return Err(End::Violation(
                    reason::TOPIC_ALIAS_INVALID,
                    format!("topic alias {alias} is out of range"),
                ));
            }
            if p.topic.is_empty() {
                match self.aliases_in.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return Err(End::Violation(
                            reason::PROTOCOL_ERROR,
                            format!("topic alias {alias} was never set"),
                        ))
                    }
                }
            } else {
                self.aliases_in.insert(alias, p.topic.clone());
            }
        }
        if let Err(e) = topic::validate_name(&p.topic) {
            return Err(End::Violation(reason::TOPIC_NAME_INVALID, e.0.into()));
        }
        if !p.props.subscription_ids.is_empty() {
            return Err(End::Violation(
                reason::PROTOCOL_ERROR,
                "a subscription identifier in PUBLISH from a client".into(),
            ));
        }
        let qos = p.qos;
        let pid = p.pid.unwrap_or(0);
        if qos == 2
            && self
                .hold
                .slot
                .carried
                .lock()
                .awaiting_release
                .contains(&pid)
        {
            // A resent QoS 2 publish we already have: acknowledge it again, route it once.
            self.queue_ack(0, ack(AckKind::PubRec, pid, 0));
            return Ok(());
        }
        // Receive Maximum is MQTT 5's; a 3.1.1 client is bounded by the TCP window instead.
        if qos > 0 && self.v5 {
            let unreleased = self.hold.slot.carried.lock().awaiting_release.len();
            if self.unacked_in + unreleased >= self.mqtt.config.receive_maximum as usize {
                return Err(End::Violation(
                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                    format!(
                        "more than {} unacknowledged QoS 1 and 2 publishes",
                        self.mqtt.config.receive_maximum
                    ),
                ));
            }
        }
        let routing_key: ShortString = topic::to_routing_key(&p.topic);
        if let Err(e) = self.check_publish(&routing_key) {
            // RabbitMQ 3.10 closes the connection; MQTT 5 lets a QoS 1/2 publish be refused
            // with a reason code instead, and the session go on.
            if self.v5 && qos > 0 {
                let kind = if qos == 1 {
                    AckKind::PubAck
                } else {
                    AckKind::PubRec
                };
                info!(client_id = %self.client_id, error = %e, "MQTT publish refused");
                if qos == 1 {
                    self.unacked_in += 1;
                }
                self.queue_ack(0, ack(kind, pid, reason::NOT_AUTHORIZED));
                return Ok(());
            }
            return Err(End::Violation(reason::NOT_AUTHORIZED, e));
        }
        let mut quota_exceeded = false;
        if p.retain {
            // Boxed: retained publishes are rare, and an inline state would make every
            // connection's task larger.
            quota_exceeded = !Box::pin(self.retain(&p)).await?;
            if quota_exceeded && self.v5 && qos > 0 {
                // Refused as a whole, so that the failure code means what it says (a
                // QoS 2 exchange ends there, and a resend is a new message). A 3.1.1
                // client cannot be told: its message is routed, just not retained.
                let kind = if qos == 1 {
                    AckKind::PubAck
                } else {
                    AckKind::PubRec
                };
                if qos == 1 {
                    self.unacked_in += 1;
                }
                self.queue_ack(0, ack(kind, pid, reason::QUOTA_EXCEEDED));
                return Ok(());
            }
        }
        let raw = self.amqp_properties(&p);
        let msg = Arc::new(convert::to_message(
            &self.mqtt.config.exchange,
            routing_key,
            &p,
            raw,
        ));
        let outcome = match self
            .vhost
            .publish(&msg, &mut self.scratch, &mut self.lagging)
        {
            Ok(o) => o,
            Err(e) => return Err(End::Violation(reason::IMPLEMENTATION_SPECIFIC, e.text)),
        };
        let generation = outcome.confirm_after.unwrap_or(0);
        let code = if quota_exceeded || outcome.rejected {
            reason::QUOTA_EXCEEDED
        } else if outcome.unroutable {
            reason::NO_MATCHING_SUBSCRIBERS
        } else {
            reason::SUCCESS
        };
        match qos {
            1 => {
                self.unacked_in += 1;
                self.queue_ack(generation, ack(AckKind::PubAck, pid, code));
            }
            2 => {
                // A PUBREC with a failure reason ends the exchange (section 4.3.3): no
                // PUBREL follows, and a resend of the packet id is a new message. A 3.1.1
                // PUBREC carries no reason, so that client releases it as usual.
                if code < 0x80 || !self.v5 {
                    self.hold.slot.carried.lock().awaiting_release.insert(pid);
                }
                self.queue_ack(generation, ack(AckKind::PubRec, pid, code));
            }
            _ => {}
        }
        Ok(())
    }

    /// Retains (or clears) a retained publish; false when the store is full.
    async fn retain(&mut self, p: &Publish) -> Result<bool, End> {
        let mqtt = Arc::clone(&self.mqtt);
        let vhost = self.vhost.name.clone();
        let topic = p.topic.clone();
        let msg = (!p.payload.is_empty()).then(|| RetainedMessage {
            topic: p.topic.clone(),
            qos: p.qos,
            payload: p.payload.clone(),
            props: p.props.forwardable(),
            stored_at: now_secs(),
        });
        let done = tokio::task::spawn_blocking(move || match msg {
            Some(m) => mqtt.retained.set(&vhost, m),
            None => mqtt.retained.clear(&vhost, &topic),
        })
        .await;
        match done {
            Ok(Ok(())) => Ok(true),
            Ok(Err(RetainError::Full(what))) => {
                info!(client_id = %self.client_id, limit = what, "retained message refused: store full");
                Ok(false)
            }
            Ok(Err(RetainError::Io(e))) => Err(End::Violation(
                reason::UNSPECIFIED_ERROR,
                format!("retained store: {e}"),
            )),
            Err(_) => Err(End::Violation(
                reason::UNSPECIFIED_ERROR,
                "retained store task failed".into(),
            )),
        }
    }

    /// Write permission on the exchange (checked once per connection: permissions are
    /// read at each check in AMQP's cache too, but a refused one closes) and the topic
    /// permission on the routing key.
    fn check_publish(&mut self, routing_key: &str) -> Result<(), String> {
        let access = self.mqtt.broker.access();
        let exchange = &self.mqtt.config.exchange;
        if self.may_publish != Some(true) {
            access
                .check(
                    &self.user,
                    &self.vhost.name,
                    Perm::Write,
                    ResourceKind::Exchange,
                    exchange,
                )
                .map_err(|e| e.text)?;
            self.may_publish = Some(true);
        }
        access
            .check_topic(
                &self.user,
                &self.vhost.name,
                exchange,
                routing_key,
                Perm::Write,
            )
            .map_err(|e| e.text)
    }

    fn amqp_properties(&mut self, p: &Publish) -> bytes::Bytes {
        if p.props.is_empty() {
            let slot = p.qos as usize * 4 + (p.dup as usize) * 2 + p.retain as usize;
            let cache = self.plain_props.get_or_insert_with(Default::default);
            if let Some(raw) = &cache[slot] {
                return raw.clone();
            }
            let raw = convert::amqp_properties(p.qos, p.dup, p.retain, &p.props, &self.client_id)
                .to_bytes();
            cache[slot] = Some(raw.clone());
            return raw;
        }
        convert::amqp_properties(p.qos, p.dup, p.retain, &p.props, &self.client_id).to_bytes()
    }

    /// Queues an acknowledgement behind the ones before it (MQTT wants them in order).
    fn queue_ack(&mut self, generation: u64, packet: Packet) {
        self.pending_acks.push_back((generation, packet));
    }

    /// Sends every acknowledgement whose message is durable, in order.
    pub(super) fn flush_acks(&mut self) {
        let synced = self.synced.as_ref().map_or(u64::MAX, |s| *s.borrow());
        while let Some((generation, _)) = self.pending_acks.front() {
            if *generation > synced {
                break;
            }
            let Some((_, packet)) = self.pending_acks.pop_front() else {
                break;
            };
            if let Packet::Ack {
                kind: AckKind::PubAck,
                ..
            } = packet
            {
                self.unacked_in = self.unacked_in.saturating_sub(1);
            }
            self.send(&packet);
        }
    }

    /// PUBACK, PUBREC, PUBREL and PUBCOMP from the client.
    pub(super) fn on_ack(&mut self, kind: AckKind, pid: u16, reason: u8) -> Result<(), End> {
        match kind {
            AckKind::PubRel => {
                let known = self.hold.slot.carried.lock().awaiting_release.remove(&pid);
                let code = if known {
                    reason::SUCCESS
                } else {
                    reason::PACKET_ID_NOT_FOUND
                };
                self.queue_ack(0, ack(AckKind::PubComp, pid, code));
            }
            AckKind::PubAck => {
                if let Some(f) = self.inflight.remove(&pid) {
                    self.settle(f);
                }
            }
            AckKind::PubRec => match self.inflight.remove(&pid) {
                // An MQTT 5 client refusing the message (reason 0x80 or more) ends the
                // exchange there: no PUBREL (section 4.3.3); the message is settled, as the
                // client has decided about it.
                Some(f) if reason >= 0x80 => self.settle(f),
                Some(f) => {
                    self.settle(f);
                    self.hold.slot.carried.lock().awaiting_complete.insert(pid);
                    self.send(&ack(AckKind::PubRel, pid, 0));
                }
                None => {
                    let known = self
                        .hold
                        .slot
                        .carried
                        .lock()
                        .awaiting_complete
                        .contains(&pid);
                    let code = if known {
                        reason::SUCCESS
                    } else {
                        reason::PACKET_ID_NOT_FOUND
                    };
                    self.send(&ack(AckKind::PubRel, pid, code));
                }
            },
            AckKind::PubComp => {
                self.hold.slot.carried.lock().awaiting_complete.remove(&pid);
            }
        }
        Ok(())
    }

    /// A delivery the client has taken: the queue forgets it and the credit comes back.
    pub(super) fn settle(&mut self, f: InFlight) {
        if let (Some(q), Some(e)) = (&f.queue, f.entry) {
            q.settle(vec![e]);
        }
        if f.credited {
            self.credit.release(1);
            if !self.retained_backlog.is_empty() {
                self.drain_retained();
            }
            if let Some(q) = &f.queue {
                q.dispatch();
            }
        }
    }

    /// Publishes the will message (now, or after its MQTT 5 delay unless the session is
    /// resumed first).
    pub(super) async fn publish_will(&mut self) {
        let Some(will) = self.will.take() else {
            return;
        };
        let delay = will.props.will_delay.unwrap_or(0).min(self.session_expiry);
        let routing_key: ShortString = topic::to_routing_key(&will.topic);
        if let Err(e) = self.check_publish(&routing_key) {
            info!(client_id = %self.client_id, error = %e, "will message not published");
            return;
        }
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic.clone(),
            pid: None,
            props: Properties {
                will_delay: None,
                ..will.props.clone()
            },
            payload: will.payload.clone(),
        };
        let raw = self.amqp_properties(&publish);
        let mqtt = Arc::clone(&self.mqtt);
        let vhost = Arc::clone(&self.vhost);
        let slot = Arc::clone(&self.hold.slot);
        let generation = slot.carried.lock().generation;
        let client_id = self.client_id.clone();
        let job = async move {
            if delay > 0 {
                tokio::time::sleep(Duration::from_secs(delay as u64)).await;
                if slot.carried.lock().generation != generation {
                    debug!(%client_id, "will message dropped: the session was resumed");
                    return;
                }
            }
            if publish.retain {
                let msg = (!publish.payload.is_empty()).then(|| RetainedMessage {
                    topic: publish.topic.clone(),
                    qos: publish.qos,
                    payload: publish.payload.clone(),
                    props: publish.props.forwardable(),
                    stored_at: now_secs(),
                });
                let (m, v, t) = (Arc::clone(&mqtt), vhost.name.clone(), publish.topic.clone());
                let _ = tokio::task::spawn_blocking(move || match msg {
                    Some(msg) => m.retained.set(&v, msg),
                    None => m.retained.clear(&v, &t),
                })
                .await;
            }
            let msg = Arc::new(convert::to_message(
                &mqtt.config.exchange,
                routing_key,
                &publish,
                raw,
            ));
            let mut scratch = RouteScratch::default();
            let mut lagging = Vec::new();
            if let Err(e) = vhost.publish(&msg, &mut scratch, &mut lagging) {
                info!(%client_id, error = %e.text, "will message not routed");
            }
        };
        if delay > 0 {
            tokio::spawn(job);
        } else {
            job.await;
        }
    }
}

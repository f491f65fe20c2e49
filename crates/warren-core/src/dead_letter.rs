//! Dead-lettering: a message rejected without requeue, expired, or dropped by a length limit
//! is republished to its queue's dead-letter exchange with RabbitMQ's `x-death` history
//! (`count`, `reason`, `queue`, `time`, `exchange`, `routing-keys`, `original-expiration`)
//! and `x-first-death-*` headers, and dead-letter cycles are broken the way RabbitMQ does.

use std::sync::Arc;

use bytes::Bytes;
use warren_amqp::{BasicProperties, FieldTable, FieldValue, ShortString};

use crate::message::Message;
use crate::storage::{QueueIndex, RecordLocation};

/// The settlement of a dead-lettered message in the queue it died in: its log ack and its
/// store reference. Carried by the letter and carried out when the letter is done with
/// (dropped), after its copies were written to the target queues; the ack is then written
/// only once those copies are durable ([`QueueIndex::ack_when_durable`]). A crash in between finds
/// the message in both queues (at least once), never in neither.
#[derive(Debug)]
pub struct SourceSettle {
    log: Arc<dyn QueueIndex>,
    seq: u64,
    loc: Option<RecordLocation>,
}

impl SourceSettle {
    pub fn new(log: Arc<dyn QueueIndex>, seq: u64, loc: Option<RecordLocation>) -> SourceSettle {
        SourceSettle { log, seq, loc }
    }
}

impl Drop for SourceSettle {
    fn drop(&mut self) {
        self.log.ack_when_durable(self.seq, self.loc.take());
    }
}

/// Why a message was dead-lettered (the `reason` in `x-death`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    Rejected,
    Expired,
    MaxLen,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
        }
    }
}

/// A message on its way to a dead-letter exchange.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub msg: Arc<Message>,
    pub reason: DeathReason,
    /// The queue it died in.
    pub queue: String,
    pub exchange: String,
    /// `x-dead-letter-routing-key`, if set; else the message keeps its routing key.
    pub routing_key: Option<String>,
    /// The source queue's settlement, done when the last clone of the letter is dropped.
    pub settle: Option<Arc<SourceSettle>>,
}

impl DeadLetter {
    /// The message as it is republished: new routing, updated `x-death` headers, no
    /// `expiration` (kept as `original-expiration`, so it cannot expire again at once).
    pub fn republished(&self, now_unix_secs: u64) -> Message {
        let mut props = BasicProperties::decode(&self.msg.properties_raw).unwrap_or_default();
        let original_expiration = props.expiration.take();
        let mut headers = props.headers.take().unwrap_or_default();
        let mut deaths: Vec<FieldValue> = match headers.remove("x-death") {
            Some(FieldValue::Array(items)) => items,
            _ => Vec::new(),
        };
        let reason = self.reason.as_str();
        let same = deaths.iter().position(|d| {
            matches!(d, FieldValue::Table(t)
                if t.get("queue").and_then(|v| v.as_str()) == Some(&self.queue)
                && t.get("reason").and_then(|v| v.as_str()) == Some(reason))
        });
        let entry = match same.map(|i| deaths.remove(i)) {
            // RabbitMQ 3.10 only counts a repeated death: time, exchange and routing keys
            // stay those of the first.
            Some(FieldValue::Table(mut t)) => {
                let count = t.get("count").and_then(|v| v.as_i64()).unwrap_or(0);
                // The header may come from a client: never overflow on its value.
                t.insert("count", FieldValue::I64(count.saturating_add(1)));
                t
            }
            _ => {
                let mut t = FieldTable::default();
                t.insert("count", FieldValue::I64(1));
                t.insert("reason", longstr(reason));
                t.insert("queue", longstr(&self.queue));
                t.insert("time", FieldValue::Timestamp(now_unix_secs));
                t.insert("exchange", longstr(&self.msg.exchange));
                // The routing keys the message died with: its key and its CC keys (BCC keys
                // are never listed).
                let listed = std::iter::once(self.msg.routing_key.as_str()).chain(
                    self.msg
                        .cc
                        .iter()
                        .take(self.msg.cc_listed)
                        .map(String::as_str),
                );
                t.insert(
                    "routing-keys",
                    FieldValue::Array(listed.map(longstr).collect()),
                );
                if let Some(exp) = &original_expiration {
                    t.insert("original-expiration", longstr(exp));
                }
                t
            }
        };
        deaths.insert(0, FieldValue::Table(entry));
        for (key, value) in [
            ("x-first-death-reason", reason),
            ("x-first-death-queue", self.queue.as_str()),
            ("x-first-death-exchange", self.msg.exchange.as_str()),
        ] {
            if headers.get(key).is_none() {
                headers.insert(key, longstr(value));
            }
        }
        headers.insert("x-death", FieldValue::Array(deaths));
        // With a dead-letter routing key the message goes by that key alone, and RabbitMQ
        // drops its CC header; without one it keeps all its keys (CC and BCC).
        let (routing_key, cc, cc_listed) = match &self.routing_key {
            Some(key) => {
                headers.remove("CC");
                (ShortString::from(key.as_str()), Vec::new(), 0)
            }
            None => (
                self.msg.routing_key.clone(),
                self.msg.cc.clone(),
                self.msg.cc_listed,
            ),
        };
        props.headers = Some(headers);
        let mut msg = Message::new(
            self.exchange.as_str(),
            routing_key,
            props.to_bytes(),
            self.msg.body.clone(),
        );
        msg.cc = cc;
        msg.cc_listed = cc_listed;
        msg
    }
}

fn longstr(s: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
}

/// RabbitMQ's cycle rule: a dead-lettered message must not reach `queue` again if it already
/// died there and every death since then (inclusive) was automatic (not a rejection).
/// `x_death` is the republished message's history, newest first.
pub fn is_cycle(queue: &str, x_death: &[FieldValue]) -> bool {
    let queue_of = |d: &FieldValue| match d {
        FieldValue::Table(t) => t.get("queue").and_then(|v| v.as_str()).map(str::to_string),
        _ => None,
    };
    let Some(pos) = x_death
        .iter()
        .position(|d| queue_of(d).as_deref() == Some(queue))
    else {
        return false;
    };
    x_death[..=pos].iter().all(|d| match d {
        FieldValue::Table(t) => t.get("reason").and_then(|v| v.as_str()) != Some("rejected"),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(reason: DeathReason, msg: Message) -> DeadLetter {
        DeadLetter {
            msg: Arc::new(msg),
            reason,
            queue: "work".into(),
            exchange: "dlx".into(),
            routing_key: None,
            settle: None,
        }
    }

    #[test]
    fn a_client_supplied_count_at_the_limit_does_not_overflow() {
        let mut death = FieldTable::default();
        death.insert("count", FieldValue::I64(i64::MAX));
        death.insert("reason", longstr("rejected"));
        death.insert("queue", longstr("work"));
        let mut headers = FieldTable::default();
        headers.insert("x-death", FieldValue::Array(vec![FieldValue::Table(death)]));
        let props = BasicProperties {
            headers: Some(headers),
            ..Default::default()
        };
        let msg = Message::new("x", "k", props.to_bytes(), Bytes::new());
        let out = letter(DeathReason::Rejected, msg).republished(1);
        let h = warren_amqp::peek_headers(&out.properties_raw).expect("headers");
        let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
            panic!("no x-death")
        };
        let count = deaths[0]
            .as_table()
            .and_then(|t| t.get("count"))
            .and_then(|v| v.as_i64());
        assert_eq!(count, Some(i64::MAX));
    }

    #[test]
    fn first_death_then_count_increments() {
        let props = BasicProperties {
            expiration: Some("100".into()),
            ..Default::default()
        };
        let msg = Message::new("in", "k", props.to_bytes(), Bytes::from_static(b"x"));
        let once = letter(DeathReason::Expired, msg).republished(10);
        let p = BasicProperties::decode(&once.properties_raw).unwrap();
        assert_eq!(p.expiration, None);
        let h = p.headers.unwrap();
        assert_eq!(
            h.get("x-first-death-reason").and_then(|v| v.as_str()),
            Some("expired")
        );
        let Some(FieldValue::Array(d)) = h.get("x-death") else {
            panic!("no x-death")
        };
        let FieldValue::Table(t) = &d[0] else {
            panic!()
        };
        assert_eq!(t.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(
            t.get("original-expiration").and_then(|v| v.as_str()),
            Some("100")
        );
        assert_eq!(once.exchange, "dlx");
        assert_eq!(once.routing_key, "k");

        let twice = letter(DeathReason::Expired, once).republished(11);
        let h = BasicProperties::decode(&twice.properties_raw)
            .unwrap()
            .headers
            .unwrap();
        let Some(FieldValue::Array(d)) = h.get("x-death") else {
            panic!()
        };
        assert_eq!(d.len(), 1);
        let FieldValue::Table(t) = &d[0] else {
            panic!()
        };
        assert_eq!(t.get("count"), Some(&FieldValue::I64(2)));
    }

    #[test]
    fn cycles_only_when_fully_automatic() {
        let death = |q: &str, r: &str| {
            let mut t = FieldTable::default();
            t.insert("queue", longstr(q));
            t.insert("reason", longstr(r));
            FieldValue::Table(t)
        };
        let auto = vec![death("b", "expired"), death("a", "expired")];
        assert!(is_cycle("a", &auto));
        assert!(!is_cycle("c", &auto));
        let with_reject = vec![death("b", "rejected"), death("a", "expired")];
        assert!(!is_cycle("a", &with_reject));
    }
}

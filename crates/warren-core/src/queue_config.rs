//! A queue's behaviour settings from RabbitMQ's queue arguments (`x-message-ttl`,
//! `x-max-length`, ...), validated the way RabbitMQ validates them: a wrong type or value is
//! a 406 whose text names the argument, e.g.
//! `invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}`.

use warren_amqp::{FieldTable, FieldValue};

use crate::error::{CoreError, CoreResult};

/// What a full queue does with a new message (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

impl Overflow {
    pub fn parse(s: &str) -> Option<Overflow> {
        match s {
            "drop-head" => Some(Overflow::DropHead),
            "reject-publish" => Some(Overflow::RejectPublish),
            "reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
            _ => None,
        }
    }
}

/// The settings that change how a queue behaves. All times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueConfig {
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
}

/// Arguments RabbitMQ accepts on classic queues and Warren honours.
pub const QUEUE_ARGS: &[&str] = &[
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-overflow",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-priority",
    "x-single-active-consumer",
    "x-queue-mode",
    "x-queue-type",
    "x-queue-master-locator",
];

/// Arguments of queue types Warren does not have (quorum, stream): refused, not ignored.
pub const UNSUPPORTED_QUEUE_ARGS: &[&str] = &[
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-delivery-limit",
    "x-quorum-initial-group-size",
    "x-initial-cluster-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
];

struct ArgError<'a> {
    queue: &'a str,
    vhost: &'a str,
}

impl ArgError<'_> {
    fn invalid(&self, key: &str, detail: impl std::fmt::Display) -> CoreError {
        CoreError::precondition(format!(
            "invalid arg '{key}' for queue '{}' in vhost '{}': {detail}",
            self.queue, self.vhost
        ))
    }

    fn int(&self, key: &str, v: &FieldValue) -> CoreResult<i64> {
        match v {
            FieldValue::I8(_)
            | FieldValue::U8(_)
            | FieldValue::I16(_)
            | FieldValue::U16(_)
            | FieldValue::I32(_)
            | FieldValue::U32(_)
            | FieldValue::I64(_) => Ok(v.as_i64().unwrap_or(0)),
            other => Err(self.invalid(
                key,
                format!("\"expected integer, got {}\"", other.type_name()),
            )),
        }
    }

    fn non_negative(&self, key: &str, v: &FieldValue) -> CoreResult<u64> {
        let n = self.int(key, v)?;
        u64::try_from(n).map_err(|_| self.invalid(key, format!("{{value_negative,{n}}}")))
    }

    fn positive(&self, key: &str, v: &FieldValue) -> CoreResult<u64> {
        let n = self.non_negative(key, v)?;
        if n == 0 {
            return Err(self.invalid(key, "{value_zero,0}"));
        }
        Ok(n)
    }

    fn string<'v>(&self, key: &str, v: &'v FieldValue) -> CoreResult<&'v str> {
        v.as_str()
            .ok_or_else(|| self.invalid(key, format!("{{unacceptable_type,{}}}", v.type_name())))
    }

    /// The dead-letter arguments have their own sentence in RabbitMQ.
    fn dlx_string<'v>(&self, key: &str, v: &'v FieldValue) -> CoreResult<&'v str> {
        v.as_str().ok_or_else(|| {
            CoreError::precondition(format!(
                "invalid type '{}' for arg '{key}' in queue '{}' in vhost '{}'",
                v.type_name(),
                self.queue,
                self.vhost
            ))
        })
    }

    fn boolean(&self, key: &str, v: &FieldValue) -> CoreResult<bool> {
        match v {
            FieldValue::Bool(b) => Ok(*b),
            other => Err(self.invalid(key, format!("{{unacceptable_type,{}}}", other.type_name()))),
        }
    }
}

impl QueueConfig {
    /// Parses and validates `queue.declare` arguments.
    pub fn from_arguments(args: &FieldTable, queue: &str, vhost: &str) -> CoreResult<QueueConfig> {
        let e = ArgError { queue, vhost };
        let mut c = QueueConfig::default();
        for (key, value) in args.iter() {
            match key.as_str() {
                "x-message-ttl" => c.message_ttl = Some(e.non_negative(key, value)?),
                "x-expires" => c.expires = Some(e.positive(key, value)?),
                "x-max-length" => c.max_length = Some(e.non_negative(key, value)?),
                "x-max-length-bytes" => c.max_length_bytes = Some(e.non_negative(key, value)?),
                "x-overflow" => {
                    let s = e.string(key, value)?;
                    c.overflow =
                        Overflow::parse(s).ok_or_else(|| e.invalid(key, "invalid_overflow"))?;
                }
                "x-dead-letter-exchange" => {
                    c.dead_letter_exchange = Some(e.dlx_string(key, value)?.to_string())
                }
                "x-dead-letter-routing-key" => {
                    c.dead_letter_routing_key = Some(e.dlx_string(key, value)?.to_string())
                }
                "x-max-priority" => {
                    let n = e.non_negative(key, value)?;
                    if n > 255 {
                        return Err(e.invalid(key, format!("{{max_value_exceeded,{n}}}")));
                    }
                    // Priority 0 means a single level: no priorities, as in RabbitMQ.
                    c.max_priority = u8::try_from(n).ok().filter(|&p| p > 0);
                }
                "x-single-active-consumer" => c.single_active_consumer = e.boolean(key, value)?,
                "x-queue-type" => match e.string(key, value)? {
                    "classic" => {}
                    known @ ("quorum" | "stream") => {
                        return Err(e.invalid(
                            key,
                            format!("\"queue type '{known}' is not supported by Warren yet\""),
                        ))
                    }
                    other => {
                        return Err(e.invalid(key, format!("\"unsupported queue type '{other}'\"")))
                    }
                },
                "x-queue-mode" => match e.string(key, value)? {
                    "default" | "lazy" => {}
                    other => {
                        return Err(e.invalid(key, format!("\"unsupported queue mode '{other}'\"")))
                    }
                },
                "x-queue-master-locator" => {
                    // A placement hint for mirrored queues; meaningless on one node.
                    e.string(key, value)?;
                }
                k if UNSUPPORTED_QUEUE_ARGS.contains(&k) => {
                    return Err(CoreError::precondition(format!(
                        "queue argument '{k}' belongs to a queue type Warren does not support yet"
                    )));
                }
                _ => {}
            }
        }
        if c.dead_letter_routing_key.is_some() && c.dead_letter_exchange.is_none() {
            return Err(e.invalid(
                "x-dead-letter-routing-key",
                "routing_key_but_no_dlx_defined",
            ));
        }
        Ok(c)
    }

    /// True when the queue keeps priority levels.
    pub fn levels(&self) -> usize {
        usize::from(self.max_priority.unwrap_or(0)) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(*k, v.clone());
        }
        t
    }

    fn err(pairs: &[(&str, FieldValue)]) -> String {
        QueueConfig::from_arguments(&args(pairs), "q", "/")
            .unwrap_err()
            .text
    }

    #[test]
    fn rabbitmq_texts_for_bad_values() {
        assert_eq!(
            err(&[("x-max-length", FieldValue::LongString("5".into()))]),
            "invalid arg 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            err(&[("x-message-ttl", FieldValue::I32(-1))]),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            err(&[("x-expires", FieldValue::I32(0))]),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            err(&[("x-max-priority", FieldValue::I32(300))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,300}"
        );
        assert_eq!(
            err(&[("x-overflow", FieldValue::LongString("nope".into()))]),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
    }

    #[test]
    fn parses_everything() {
        let c = QueueConfig::from_arguments(
            &args(&[
                ("x-message-ttl", FieldValue::I64(1000)),
                ("x-expires", FieldValue::U16(5)),
                ("x-max-length", FieldValue::I32(3)),
                (
                    "x-overflow",
                    FieldValue::LongString("reject-publish".into()),
                ),
                (
                    "x-dead-letter-exchange",
                    FieldValue::LongString("dlx".into()),
                ),
                ("x-max-priority", FieldValue::U8(10)),
                ("x-single-active-consumer", FieldValue::Bool(true)),
            ]),
            "q",
            "/",
        )
        .unwrap();
        assert_eq!(c.message_ttl, Some(1000));
        assert_eq!(c.expires, Some(5));
        assert_eq!(c.max_length, Some(3));
        assert_eq!(c.overflow, Overflow::RejectPublish);
        assert_eq!(c.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(c.levels(), 11);
        assert!(c.single_active_consumer);
    }

    #[test]
    fn quorum_only_arguments_are_refused() {
        let e = QueueConfig::from_arguments(
            &args(&[("x-delivery-limit", FieldValue::I32(3))]),
            "q",
            "/",
        );
        assert!(e.is_err());
    }
}

//! Policies: operator-set configuration for queues and exchanges chosen by a regular
//! expression over their names, as in RabbitMQ. The highest-priority matching policy
//! applies; queue arguments take precedence, except that for `max-length`,
//! `max-length-bytes`, `message-ttl` and `expires` the lower of the two values wins (RabbitMQ's
//! merge rule for classic queues).

use regex::Regex;
use warren_amqp::FieldTable;

use crate::error::{CoreError, CoreResult};
use crate::queue_config::QueueConfig;

/// What kind of object a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    All,
}

impl ApplyTo {
    pub fn parse(s: &str) -> Option<ApplyTo> {
        match s {
            "queues" => Some(ApplyTo::Queues),
            "exchanges" => Some(ApplyTo::Exchanges),
            "all" => Some(ApplyTo::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }
}

/// Policy keys Warren knows, with the queue argument each stands for (`None`: an exchange
/// key).
const KEYS: &[(&str, Option<&str>)] = &[
    ("message-ttl", Some("x-message-ttl")),
    ("expires", Some("x-expires")),
    ("max-length", Some("x-max-length")),
    ("max-length-bytes", Some("x-max-length-bytes")),
    ("overflow", Some("x-overflow")),
    ("dead-letter-exchange", Some("x-dead-letter-exchange")),
    ("dead-letter-routing-key", Some("x-dead-letter-routing-key")),
    ("queue-mode", Some("x-queue-mode")),
    ("alternate-exchange", None),
];

/// Keys whose policy and argument values merge to the lower one.
const MIN_MERGED: &[&str] = &[
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
];

/// One policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub pattern: String,
    regex: Regex,
    pub apply_to: ApplyTo,
    pub priority: i32,
    /// The definition as given (policy keys, not `x-` arguments).
    pub definition: FieldTable,
}

impl Policy {
    /// Validates and builds a policy (what `set_policy` accepts).
    pub fn new(
        name: &str,
        pattern: &str,
        definition: FieldTable,
        apply_to: ApplyTo,
        priority: i32,
    ) -> CoreResult<Policy> {
        let regex = Regex::new(pattern).map_err(|e| {
            CoreError::precondition(format!("invalid policy pattern '{pattern}': {e}"))
        })?;
        if definition.is_empty() {
            return Err(CoreError::precondition("policy definition is empty"));
        }
        for (key, value) in definition.iter() {
            match KEYS.iter().find(|(k, _)| k == key) {
                None => {
                    return Err(CoreError::precondition(format!(
                    "Validation failed: [{{<<\"{key}\">>,...}}] are not recognised policy settings"
                )))
                }
                Some((_, None)) => {
                    if value.as_str().is_none() {
                        return Err(CoreError::precondition(format!(
                            "Validation failed: {key} must be a string"
                        )));
                    }
                }
                Some((_, Some(_))) => {}
            }
        }
        // Queue keys validate exactly as the queue arguments they stand for.
        QueueConfig::from_arguments(&queue_arguments(&definition), &format!("policy {name}"), "")
            .map_err(|e| CoreError::precondition(format!("Validation failed: {}", e.text)))?;
        Ok(Policy {
            name: name.to_string(),
            pattern: pattern.to_string(),
            regex,
            apply_to,
            priority,
            definition,
        })
    }

    fn applies(&self, name: &str, to_queue: bool) -> bool {
        let kind_ok = match self.apply_to {
            ApplyTo::All => true,
            ApplyTo::Queues => to_queue,
            ApplyTo::Exchanges => !to_queue,
        };
        kind_ok && self.regex.is_match(name)
    }

    /// The alternate exchange this policy sets, if any.
    pub fn alternate_exchange(&self) -> Option<String> {
        self.definition
            .get("alternate-exchange")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

/// The policy keys of a definition as queue arguments.
fn queue_arguments(definition: &FieldTable) -> FieldTable {
    let mut args = FieldTable::default();
    for (key, value) in definition.iter() {
        if let Some((_, Some(arg))) = KEYS.iter().find(|(k, _)| k == key) {
            args.insert(*arg, value.clone());
        }
    }
    args
}

/// The highest-priority policy among `policies` that applies to `name`.
pub fn effective<'a>(policies: &'a [Policy], name: &str, to_queue: bool) -> Option<&'a Policy> {
    policies
        .iter()
        .filter(|p| p.applies(name, to_queue))
        .max_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| b.name.cmp(&a.name))
        })
}

/// A queue's configuration from its arguments merged with its policy.
pub fn queue_config(
    arguments: &FieldTable,
    policy: Option<&Policy>,
    queue: &str,
    vhost: &str,
) -> CoreResult<QueueConfig> {
    let Some(policy) = policy else {
        return QueueConfig::from_arguments(arguments, queue, vhost);
    };
    let mut merged = queue_arguments(&policy.definition);
    for (key, value) in arguments.iter() {
        let lower = match (MIN_MERGED.contains(&key.as_str()), merged.get(key)) {
            (true, Some(from_policy)) => match (value.as_i64(), from_policy.as_i64()) {
                (Some(a), Some(b)) if b < a => from_policy.clone(),
                _ => value.clone(),
            },
            _ => value.clone(),
        };
        merged.insert(key.clone(), lower);
    }
    QueueConfig::from_arguments(&merged, queue, vhost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::FieldValue;

    fn def(pairs: &[(&str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(*k, v.clone());
        }
        t
    }

    #[test]
    fn highest_priority_wins_and_apply_to_filters() {
        let a = Policy::new(
            "a",
            "^q",
            def(&[("message-ttl", FieldValue::I64(5))]),
            ApplyTo::Queues,
            1,
        )
        .unwrap();
        let b = Policy::new(
            "b",
            "^q",
            def(&[("max-length", FieldValue::I64(5))]),
            ApplyTo::All,
            2,
        )
        .unwrap();
        let c = Policy::new(
            "c",
            ".*",
            def(&[("alternate-exchange", FieldValue::LongString("ae".into()))]),
            ApplyTo::Exchanges,
            9,
        )
        .unwrap();
        let all = vec![a, b, c];
        assert_eq!(effective(&all, "q1", true).unwrap().name, "b");
        assert_eq!(effective(&all, "x", false).unwrap().name, "c");
        assert!(effective(&all, "x", true).is_none());
    }

    #[test]
    fn arguments_win_but_limits_take_the_lower() {
        let p = Policy::new(
            "p",
            ".*",
            def(&[
                ("max-length", FieldValue::I64(10)),
                (
                    "dead-letter-exchange",
                    FieldValue::LongString("from-policy".into()),
                ),
                ("message-ttl", FieldValue::I64(100)),
            ]),
            ApplyTo::Queues,
            0,
        )
        .unwrap();
        let args = def(&[
            ("x-max-length", FieldValue::I32(20)),
            (
                "x-dead-letter-exchange",
                FieldValue::LongString("from-arg".into()),
            ),
            ("x-message-ttl", FieldValue::I32(50)),
        ]);
        let c = queue_config(&args, Some(&p), "q", "/").unwrap();
        assert_eq!(c.max_length, Some(10));
        assert_eq!(c.message_ttl, Some(50));
        assert_eq!(c.dead_letter_exchange.as_deref(), Some("from-arg"));
    }

    #[test]
    fn bad_definitions_are_refused() {
        assert!(Policy::new(
            "p",
            ".*",
            def(&[("max-priority", FieldValue::I64(5))]),
            ApplyTo::All,
            0
        )
        .is_err());
        assert!(Policy::new(
            "p",
            "(",
            def(&[("max-length", FieldValue::I64(5))]),
            ApplyTo::All,
            0
        )
        .is_err());
        assert!(Policy::new(
            "p",
            ".*",
            def(&[("max-length", FieldValue::I64(-5))]),
            ApplyTo::All,
            0
        )
        .is_err());
    }
}

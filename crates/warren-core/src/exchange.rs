//! Exchanges: their declared properties, their bindings, and the per-type index that answers
//! "where does a message with this routing key (and these headers) go?" without scanning every
//! binding (direct: hash map; fanout: list; topic: word trie; headers: evaluated per binding;
//! `x-consistent-hash`: a weighted hash ring). An `x-delayed-message` exchange routes like its
//! `x-delayed-type` once a message's `x-delay` has passed (see [`crate::delayed`]).

use std::collections::HashMap;
use std::fmt;

use std::sync::Arc;

use bytes::BytesMut;
use warren_amqp::{BasicProperties, FieldTable, FieldValue};

use crate::delayed::DelayedMessages;
use crate::error::{CoreError, CoreResult};
use crate::routing::consistent_hash::{parse_weight, HashRing};
use crate::routing::headers::{headers_match, parse_x_match};
use crate::routing::topic::TopicIndex;

/// The routing algorithm of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    /// RabbitMQ's `rabbitmq_consistent_hash_exchange` plugin.
    ConsistentHash,
    /// RabbitMQ's `rabbitmq_delayed_message_exchange` plugin.
    DelayedMessage,
}

impl ExchangeKind {
    /// Parses the AMQP type name; `None` for a type Warren does not have (503 in AMQP).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(Self::Direct),
            "fanout" => Some(Self::Fanout),
            "topic" => Some(Self::Topic),
            "headers" => Some(Self::Headers),
            "x-consistent-hash" => Some(Self::ConsistentHash),
            "x-delayed-message" => Some(Self::DelayedMessage),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
            Self::ConsistentHash => "x-consistent-hash",
            Self::DelayedMessage => "x-delayed-message",
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client asked for in `exchange.declare`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// Where a binding sends messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Queue(String),
    Exchange(String),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }
}

/// One binding from this exchange. Its identity is all three fields, as in RabbitMQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// What a consistent-hash exchange hashes (its `hash-header` / `hash-property` argument).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HashOn {
    RoutingKey,
    Header(String),
    MessageId,
    CorrelationId,
    Timestamp,
}

#[derive(Debug)]
enum RouteIndex {
    Direct(HashMap<String, Vec<Destination>>),
    Fanout(Vec<Destination>),
    Topic(TopicIndex<Destination>),
    /// Headers bindings are evaluated one by one from `Exchange::bindings`.
    Headers,
    ConsistentHash(HashRing<Destination>, HashOn),
}

/// An exchange with its bindings.
pub struct Exchange {
    pub spec: ExchangeSpec,
    /// The `alternate-exchange` argument, if any.
    pub alternate: Option<String>,
    /// The `alternate-exchange` of the exchange's policy; the argument wins over it.
    pub policy_alternate: Option<String>,
    /// How bindings route: the exchange's own type, or `x-delayed-type` for a delayed one.
    pub routing_kind: ExchangeKind,
    /// Messages waiting for their `x-delay` (delayed-message exchanges only).
    pub delayed: Option<Arc<DelayedMessages>>,
    bindings: Vec<Binding>,
    index: RouteIndex,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// Builds an exchange of vhost `vhost` (named in error texts).
    pub fn new(spec: ExchangeSpec, vhost: &str) -> CoreResult<Exchange> {
        let alternate = match spec.arguments.get("alternate-exchange") {
            None => None,
            Some(v) => match v.as_str() {
                Some(name) => Some(name.to_string()),
                None => {
                    return Err(CoreError::precondition(format!(
                        "invalid type '{}' for arg 'alternate-exchange' in exchange '{}' in vhost '{vhost}'",
                        v.type_name(),
                        spec.name,
                    )))
                }
            },
        };
        let routing_kind = if spec.kind == ExchangeKind::DelayedMessage {
            spec.arguments
                .get("x-delayed-type")
                .and_then(|v| v.as_str())
                .and_then(ExchangeKind::parse)
                .filter(|k| *k != ExchangeKind::DelayedMessage)
                .ok_or_else(|| {
                    CoreError::precondition(
                        "Invalid argument, 'x-delayed-type' must be an existing exchange type",
                    )
                })?
        } else {
            spec.kind
        };
        let index = match routing_kind {
            ExchangeKind::Direct => RouteIndex::Direct(HashMap::new()),
            ExchangeKind::Fanout => RouteIndex::Fanout(Vec::new()),
            ExchangeKind::Topic => RouteIndex::Topic(TopicIndex::new()),
            ExchangeKind::Headers => RouteIndex::Headers,
            ExchangeKind::ConsistentHash | ExchangeKind::DelayedMessage => {
                RouteIndex::ConsistentHash(HashRing::new(), hash_on(&spec.arguments)?)
            }
        };
        let delayed =
            (spec.kind == ExchangeKind::DelayedMessage).then(|| DelayedMessages::new(&spec.name));
        Ok(Exchange {
            spec,
            alternate,
            policy_alternate: None,
            routing_kind,
            delayed,
            bindings: Vec::new(),
            index,
        })
    }

    /// The alternate exchange in force: the argument, else the policy's.
    pub fn effective_alternate(&self) -> Option<&str> {
        self.alternate
            .as_deref()
            .or(self.policy_alternate.as_deref())
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.is_empty()
    }

    /// Validates a binding for this exchange's type; false when an identical one exists
    /// already. Changes nothing (`bind` does the same checks).
    pub fn check_binding(&self, binding: &Binding) -> CoreResult<bool> {
        match self.routing_kind {
            ExchangeKind::Headers => {
                parse_x_match(&binding.arguments).map_err(CoreError::precondition)?;
            }
            ExchangeKind::ConsistentHash => {
                parse_weight(&binding.routing_key).map_err(CoreError::precondition)?;
            }
            _ => {}
        }
        Ok(!self.bindings.contains(binding))
    }

    /// Adds a binding; false when an identical one exists already (binding is idempotent).
    pub fn bind(&mut self, binding: Binding) -> CoreResult<bool> {
        if !self.check_binding(&binding)? {
            return Ok(false);
        }
        let first_for_key = !self
            .bindings
            .iter()
            .any(|b| b.destination == binding.destination && b.routing_key == binding.routing_key);
        if first_for_key {
            match &mut self.index {
                RouteIndex::Direct(map) => map
                    .entry(binding.routing_key.clone())
                    .or_default()
                    .push(binding.destination.clone()),
                RouteIndex::Fanout(list) => {
                    if !list.contains(&binding.destination) {
                        list.push(binding.destination.clone())
                    }
                }
                RouteIndex::Topic(trie) => {
                    trie.insert(&binding.routing_key, binding.destination.clone());
                }
                RouteIndex::Headers | RouteIndex::ConsistentHash(..) => {}
            }
        }
        self.bindings.push(binding);
        self.rebuild_ring();
        Ok(true)
    }

    /// Removes a binding; false when there was no such binding.
    pub fn unbind(&mut self, binding: &Binding) -> bool {
        let Some(pos) = self.bindings.iter().position(|b| b == binding) else {
            return false;
        };
        self.bindings.remove(pos);
        self.unindex_if_last(&binding.destination, &binding.routing_key);
        self.rebuild_ring();
        true
    }

    /// Removes every binding to `destination` (it was deleted); returns how many went.
    pub fn remove_destination(&mut self, destination: &Destination) -> usize {
        let before = self.bindings.len();
        let mut removed_keys = Vec::new();
        self.bindings.retain(|b| {
            if &b.destination == destination {
                removed_keys.push(b.routing_key.clone());
                false
            } else {
                true
            }
        });
        for key in removed_keys {
            self.unindex_if_last(destination, &key);
        }
        self.rebuild_ring();
        before - self.bindings.len()
    }

    /// A consistent-hash ring holds each destination once, with the weight of its first
    /// binding: RabbitMQ's plugin ignores further bindings to the same destination.
    fn rebuild_ring(&mut self) {
        let RouteIndex::ConsistentHash(ring, _) = &mut self.index else {
            return;
        };
        let mut fresh = HashRing::new();
        let mut seen: Vec<&Destination> = Vec::new();
        for b in &self.bindings {
            if seen.contains(&&b.destination) {
                continue;
            }
            seen.push(&b.destination);
            if let Ok(weight) = parse_weight(&b.routing_key) {
                fresh.add(b.destination.clone(), weight);
            }
        }
        *ring = fresh;
    }

    fn unindex_if_last(&mut self, destination: &Destination, routing_key: &str) {
        let still_bound = self.bindings.iter().any(|b| {
            &b.destination == destination
                && (self.spec.kind == ExchangeKind::Fanout || b.routing_key == routing_key)
        });
        if still_bound {
            return;
        }
        match &mut self.index {
            RouteIndex::Direct(map) => {
                if let Some(list) = map.get_mut(routing_key) {
                    list.retain(|d| d != destination);
                    if list.is_empty() {
                        map.remove(routing_key);
                    }
                }
            }
            RouteIndex::Fanout(list) => list.retain(|d| d != destination),
            RouteIndex::Topic(trie) => {
                trie.remove(routing_key, destination);
            }
            RouteIndex::Headers | RouteIndex::ConsistentHash(..) => {}
        }
    }

    /// Appends the destinations this exchange itself picks for a message. `headers` is asked
    /// for only by exchanges that route on headers, so the others never parse properties.
    pub fn route(
        &self,
        routing_key: &str,
        properties_raw: &[u8],
        headers: &mut dyn FnMut() -> Option<FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        match &self.index {
            RouteIndex::Direct(map) => {
                if let Some(list) = map.get(routing_key) {
                    out.extend(list.iter().cloned());
                }
            }
            RouteIndex::Fanout(list) => out.extend(list.iter().cloned()),
            RouteIndex::Topic(trie) => trie.matches(routing_key, out),
            RouteIndex::Headers => {
                if self.bindings.is_empty() {
                    return;
                }
                let message_headers = headers();
                for b in &self.bindings {
                    if headers_match(&b.arguments, message_headers.as_ref())
                        && !out.contains(&b.destination)
                    {
                        out.push(b.destination.clone());
                    }
                }
            }
            RouteIndex::ConsistentHash(ring, on) => {
                let key = hash_key(on, routing_key, properties_raw, headers);
                if let Some(d) = ring.pick(&key) {
                    if !out.contains(d) {
                        out.push(d.clone());
                    }
                }
            }
        }
    }
}

fn hash_on(args: &FieldTable) -> CoreResult<HashOn> {
    let header = args.get("hash-header").and_then(|v| v.as_str());
    let property = args.get("hash-property").and_then(|v| v.as_str());
    match (header, property) {
        (Some(_), Some(_)) => Err(CoreError::precondition(
            "hash-header and hash-property are mutually exclusive",
        )),
        (Some(h), None) => Ok(HashOn::Header(h.to_string())),
        (None, Some("message_id")) => Ok(HashOn::MessageId),
        (None, Some("correlation_id")) => Ok(HashOn::CorrelationId),
        (None, Some("timestamp")) => Ok(HashOn::Timestamp),
        (None, Some(other)) => Err(CoreError::precondition(format!(
            "Unsupported property: {other}"
        ))),
        (None, None) => Ok(HashOn::RoutingKey),
    }
}

/// The bytes a consistent-hash exchange hashes. A missing header or property hashes as
/// empty, so such messages all go to one (arbitrary but stable) destination, as the
/// plugin documents. Header values hash with their type, as RabbitMQ's do.
fn hash_key(
    on: &HashOn,
    routing_key: &str,
    properties_raw: &[u8],
    headers: &mut dyn FnMut() -> Option<FieldTable>,
) -> Vec<u8> {
    match on {
        HashOn::RoutingKey => routing_key.as_bytes().to_vec(),
        HashOn::Header(name) => {
            let mut buf = BytesMut::new();
            if let Some(v) = headers().and_then(|h| h.get(name).cloned()) {
                v.encode(&mut buf);
            }
            buf.to_vec()
        }
        other => {
            let props = BasicProperties::decode(properties_raw).unwrap_or_default();
            let value = match other {
                HashOn::MessageId => props.message_id,
                HashOn::CorrelationId => props.correlation_id,
                _ => props.timestamp.map(|t| t.to_string()),
            };
            value.map(String::into_bytes).unwrap_or_default()
        }
    }
}

/// The `x-delay` header of a message for a delayed-message exchange, in milliseconds, when
/// positive.
pub fn delay_of(headers: Option<&FieldTable>) -> Option<u64> {
    let v = headers?.get("x-delay")?;
    let ms = match v {
        FieldValue::F32(f) => *f as i64,
        FieldValue::F64(f) => *f as i64,
        other => other.as_i64()?,
    };
    u64::try_from(ms).ok().filter(|&ms| ms > 0)
}

//! Exchanges: their declared properties, their bindings, and the per-type index that answers
//! "where does a message with this routing key (and these headers) go?" without scanning every
//! binding (direct: hash map; fanout: list; topic: word trie; headers: evaluated per binding;
//! `x-consistent-hash`: a weighted hash ring). An `x-delayed-message` exchange routes like its
//! `x-delayed-type` once a message's `x-delay` has passed (see [`crate::delayed`]).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;

use bytes::BytesMut;
use warren_amqp::{BasicProperties, FieldTable, FieldValue};

use crate::delayed::DelayedMessages;
use crate::error::{CoreError, CoreResult};
use crate::queue::Queue;
use crate::routing::consistent_hash::{parse_weight, HashRing};
use crate::routing::headers::{headers_match, parse_x_match};
use crate::routing::topic::TopicIndex;
use crate::FastMap;

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

/// A binding's destination resolved for routing: the queue itself (no lookup by name, no
/// name copied per message), or the name of an exchange to route on through. Equal and
/// hashed by kind and name, exactly as the [`Destination`] it resolves (a consistent-hash
/// ring places it where it placed the name).
#[derive(Clone)]
pub enum Target {
    Queue(Arc<Queue>),
    Exchange(Arc<str>),
}

/// The key a [`Target`] is compared and hashed by: derives the same `Hash` as
/// [`Destination`] (same variants in the same order, `&str` hashing as `String`).
#[derive(PartialEq, Eq, Hash)]
enum TargetKey<'a> {
    Queue(&'a str),
    Exchange(&'a str),
}

impl Target {
    fn key(&self) -> TargetKey<'_> {
        match self {
            Target::Queue(q) => TargetKey::Queue(q.name()),
            Target::Exchange(x) => TargetKey::Exchange(x),
        }
    }

    /// True when this resolves `d`.
    pub fn is(&self, d: &Destination) -> bool {
        match (self, d) {
            (Target::Queue(q), Destination::Queue(n)) => q.name() == n,
            (Target::Exchange(x), Destination::Exchange(n)) => **x == **n,
            _ => false,
        }
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Target::Queue(a), Target::Queue(b)) => Arc::ptr_eq(a, b) || a.name() == b.name(),
            _ => self.key() == other.key(),
        }
    }
}

impl Eq for Target {}

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Queue(q) => write!(f, "Queue({})", q.name()),
            Target::Exchange(x) => write!(f, "Exchange({x})"),
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
    Direct(FastMap<String, Vec<Target>>),
    Fanout(Vec<Target>),
    /// The trie, and the targets of routing keys seen since the bindings last changed.
    Topic(TopicIndex<Target>, TopicCache),
    /// Headers bindings are evaluated one by one from `Exchange::bindings`.
    Headers,
    ConsistentHash(HashRing<Target>, HashOn),
}

/// Routing keys a topic exchange has matched, with their targets: a publisher that reuses
/// its keys (the usual case) pays one hash lookup instead of a trie walk. Emptied whenever
/// a binding changes, and when full (a publisher cycling through endless distinct keys
/// cannot grow it past [`TOPIC_CACHE_KEYS`]).
#[derive(Debug, Default)]
struct TopicCache(RwLock<FastMap<Box<str>, Arc<[Target]>>>);

/// Keys a topic exchange's cache holds at most.
pub const TOPIC_CACHE_KEYS: usize = 4096;

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
    /// Message counters (management API).
    pub stats: Arc<crate::stats::ExchangeStats>,
    bindings: Vec<Binding>,
    /// `targets[i]` is `bindings[i].destination` resolved.
    targets: Vec<Target>,
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
            ExchangeKind::Direct => RouteIndex::Direct(FastMap::default()),
            ExchangeKind::Fanout => RouteIndex::Fanout(Vec::new()),
            ExchangeKind::Topic => RouteIndex::Topic(TopicIndex::new(), TopicCache::default()),
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
            stats: Arc::default(),
            bindings: Vec::new(),
            targets: Vec::new(),
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

    /// Routing keys a topic exchange has cached (0 for other types).
    pub fn cached_topic_keys(&self) -> usize {
        match &self.index {
            RouteIndex::Topic(_, cache) => cache.len(),
            _ => 0,
        }
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

    /// Adds a binding to `target` (its destination resolved); false when an identical one
    /// exists already (binding is idempotent).
    pub fn bind(&mut self, binding: Binding, target: Target) -> CoreResult<bool> {
        debug_assert!(target.is(&binding.destination));
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
                    .push(target.clone()),
                RouteIndex::Fanout(list) => {
                    if !list.contains(&target) {
                        list.push(target.clone())
                    }
                }
                RouteIndex::Topic(trie, cache) => {
                    trie.insert(&binding.routing_key, target.clone());
                    cache.clear();
                }
                RouteIndex::Headers | RouteIndex::ConsistentHash(..) => {}
            }
        }
        self.bindings.push(binding);
        self.targets.push(target);
        self.rebuild_ring();
        Ok(true)
    }

    /// Removes a binding; false when there was no such binding.
    pub fn unbind(&mut self, binding: &Binding) -> bool {
        let Some(pos) = self.bindings.iter().position(|b| b == binding) else {
            return false;
        };
        self.bindings.remove(pos);
        let target = self.targets.remove(pos);
        self.unindex_if_last(&target, &binding.routing_key);
        self.rebuild_ring();
        true
    }

    /// Removes every binding to `destination` (it was deleted); returns how many went.
    pub fn remove_destination(&mut self, destination: &Destination) -> usize {
        let before = self.bindings.len();
        let mut removed = Vec::new();
        let mut i = 0;
        while i < self.bindings.len() {
            if &self.bindings[i].destination == destination {
                let b = self.bindings.remove(i);
                removed.push((self.targets.remove(i), b.routing_key));
            } else {
                i += 1;
            }
        }
        for (target, key) in removed {
            self.unindex_if_last(&target, &key);
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
        for (b, t) in self.bindings.iter().zip(&self.targets) {
            if seen.contains(&&b.destination) {
                continue;
            }
            seen.push(&b.destination);
            if let Ok(weight) = parse_weight(&b.routing_key) {
                fresh.add(t.clone(), weight);
            }
        }
        *ring = fresh;
    }

    fn unindex_if_last(&mut self, target: &Target, routing_key: &str) {
        let still_bound = self.bindings.iter().any(|b| {
            target.is(&b.destination)
                && (self.spec.kind == ExchangeKind::Fanout || b.routing_key == routing_key)
        });
        if still_bound {
            return;
        }
        match &mut self.index {
            RouteIndex::Direct(map) => {
                if let Some(list) = map.get_mut(routing_key) {
                    list.retain(|d| d != target);
                    if list.is_empty() {
                        map.remove(routing_key);
                    }
                }
            }
            RouteIndex::Fanout(list) => list.retain(|d| d != target),
            RouteIndex::Topic(trie, cache) => {
                trie.remove(routing_key, target);
                cache.clear();
            }
            RouteIndex::Headers | RouteIndex::ConsistentHash(..) => {}
        }
    }

    /// Appends the targets this exchange itself picks for a message. `headers` is asked
    /// for only by exchanges that route on headers, so the others never parse properties.
    pub fn route(&self, routing_key: &str, headers: &mut LazyHeaders<'_>, out: &mut Vec<Target>) {
        match &self.index {
            RouteIndex::Direct(map) => {
                if let Some(list) = map.get(routing_key) {
                    out.extend(list.iter().cloned());
                }
            }
            RouteIndex::Fanout(list) => out.extend(list.iter().cloned()),
            RouteIndex::Topic(trie, cache) => cache.route(trie, routing_key, out),
            RouteIndex::Headers => {
                if self.bindings.is_empty() {
                    return;
                }
                let message_headers = headers.get();
                for (b, t) in self.bindings.iter().zip(&self.targets) {
                    if headers_match(&b.arguments, message_headers) && !out.contains(t) {
                        out.push(t.clone());
                    }
                }
            }
            RouteIndex::ConsistentHash(ring, on) => {
                let key = hash_key(on, routing_key, headers);
                if let Some(d) = ring.pick(&key) {
                    if !out.contains(d) {
                        out.push(d.clone());
                    }
                }
            }
        }
    }
}

impl TopicCache {
    fn len(&self) -> usize {
        self.0.read().len()
    }

    fn clear(&self) {
        self.0.write().clear();
    }

    /// The targets of `routing_key`: from the cache, or matched in `trie` and remembered.
    fn route(&self, trie: &TopicIndex<Target>, routing_key: &str, out: &mut Vec<Target>) {
        if let Some(hit) = self.0.read().get(routing_key) {
            out.extend(hit.iter().cloned());
            return;
        }
        let start = out.len();
        trie.matches(routing_key, out);
        let matched: Arc<[Target]> = out[start..].into();
        let mut cache = self.0.write();
        if cache.len() >= TOPIC_CACHE_KEYS {
            cache.clear();
        }
        cache.insert(routing_key.into(), matched);
    }
}

/// A message's `headers` property, parsed from its raw properties at most once per
/// message and only when an exchange on its way needs it.
pub struct LazyHeaders<'a> {
    pub properties_raw: &'a [u8],
    parsed: Option<Option<FieldTable>>,
}

impl<'a> LazyHeaders<'a> {
    pub fn new(properties_raw: &'a [u8]) -> Self {
        LazyHeaders {
            properties_raw,
            parsed: None,
        }
    }

    pub fn get(&mut self) -> Option<&FieldTable> {
        let raw = self.properties_raw;
        self.parsed
            .get_or_insert_with(|| warren_amqp::peek_headers(raw))
            .as_ref()
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
fn hash_key(on: &HashOn, routing_key: &str, headers: &mut LazyHeaders<'_>) -> Vec<u8> {
    match on {
        HashOn::RoutingKey => routing_key.as_bytes().to_vec(),
        HashOn::Header(name) => {
            let mut buf = BytesMut::new();
            if let Some(v) = headers.get().and_then(|h| h.get(name)) {
                v.encode(&mut buf);
            }
            buf.to_vec()
        }
        other => {
            let props = BasicProperties::decode(headers.properties_raw).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::DefaultHasher;

    fn hash_of(v: &impl Hash) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    /// A consistent-hash ring seeds each destination from its hash: a resolved target must
    /// hash as the name it resolves did, or rings would move messages around.
    #[test]
    fn targets_hash_as_their_destinations() {
        let x = Target::Exchange("ex".into());
        assert_eq!(hash_of(&x), hash_of(&Destination::Exchange("ex".into())));
        assert_eq!(
            hash_of(&TargetKey::Queue("q")),
            hash_of(&Destination::Queue("q".into()))
        );
        assert!(x.is(&Destination::Exchange("ex".into())));
        assert!(!x.is(&Destination::Queue("ex".into())));
    }
}

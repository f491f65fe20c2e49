//! Exchanges: their declared properties, their bindings, and the per-type index that answers
//! "where does a message with this routing key (and these headers) go?" without scanning every
//! binding (direct: hash map; fanout: list; topic: word trie; headers: evaluated per binding).

use std::collections::HashMap;
use std::fmt;

use warren_amqp::FieldTable;

use crate::error::{CoreError, CoreResult};
use crate::routing::headers::{headers_match, parse_x_match};
use crate::routing::topic::TopicIndex;

/// The routing algorithm of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// Parses the AMQP type name; `None` for a type Warren does not have (503 in AMQP).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(Self::Direct),
            "fanout" => Some(Self::Fanout),
            "topic" => Some(Self::Topic),
            "headers" => Some(Self::Headers),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
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

#[derive(Debug)]
enum RouteIndex {
    Direct(HashMap<String, Vec<Destination>>),
    Fanout(Vec<Destination>),
    Topic(TopicIndex<Destination>),
    /// Headers bindings are evaluated one by one from `Exchange::bindings`.
    Headers,
}

/// An exchange with its bindings.
#[derive(Debug)]
pub struct Exchange {
    pub spec: ExchangeSpec,
    /// The `alternate-exchange` argument, if any.
    pub alternate: Option<String>,
    bindings: Vec<Binding>,
    index: RouteIndex,
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
        let index = match spec.kind {
            ExchangeKind::Direct => RouteIndex::Direct(HashMap::new()),
            ExchangeKind::Fanout => RouteIndex::Fanout(Vec::new()),
            ExchangeKind::Topic => RouteIndex::Topic(TopicIndex::new()),
            ExchangeKind::Headers => RouteIndex::Headers,
        };
        Ok(Exchange {
            spec,
            alternate,
            bindings: Vec::new(),
            index,
        })
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

    /// Adds a binding; false when an identical one exists already (binding is idempotent).
    pub fn bind(&mut self, binding: Binding) -> CoreResult<bool> {
        if self.spec.kind == ExchangeKind::Headers {
            parse_x_match(&binding.arguments).map_err(CoreError::precondition)?;
        }
        if self.bindings.contains(&binding) {
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
                RouteIndex::Headers => {}
            }
        }
        self.bindings.push(binding);
        Ok(true)
    }

    /// Removes a binding; false when there was no such binding.
    pub fn unbind(&mut self, binding: &Binding) -> bool {
        let Some(pos) = self.bindings.iter().position(|b| b == binding) else {
            return false;
        };
        self.bindings.remove(pos);
        self.unindex_if_last(&binding.destination, &binding.routing_key);
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
        before - self.bindings.len()
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
            RouteIndex::Headers => {}
        }
    }

    /// Appends the destinations this exchange itself picks for a message. `headers` is asked
    /// for only by a headers exchange, so other types never parse message properties.
    pub fn route(
        &self,
        routing_key: &str,
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
        }
    }
}

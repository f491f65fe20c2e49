//! Reading a vhost's topology for the management API and metrics: its exchanges, queues
//! and bindings as they are at one moment, with the policy in force on each. Each listing
//! takes the topology read lock once and copies out what it reports.

use std::sync::Arc;

use warren_amqp::FieldTable;

use super::VHost;
use crate::exchange::{Destination, ExchangeSpec};
use crate::policy;
use crate::queue::Queue;
use crate::stats::{ExchangeStats, MessageCounts};

/// An exchange as listed.
#[derive(Clone)]
pub struct ExchangeView {
    pub spec: ExchangeSpec,
    /// The name of the policy in force on it.
    pub policy: Option<String>,
    pub stats: Arc<ExchangeStats>,
}

/// A binding as listed (the default exchange's implicit bindings included when asked).
#[derive(Debug, Clone, PartialEq)]
pub struct BindingView {
    pub source: String,
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl VHost {
    /// Every exchange, the default one (named "") included.
    pub fn exchanges(&self) -> Vec<ExchangeView> {
        let policies = self.policies.read();
        self.topology
            .read()
            .exchanges
            .values()
            .map(|x| ExchangeView {
                spec: x.spec.clone(),
                policy: policy::effective(&policies, x.name(), false).map(|p| p.name.clone()),
                stats: Arc::clone(&x.stats),
            })
            .collect()
    }

    pub fn exchange_view(&self, name: &str) -> Option<ExchangeView> {
        let policies = self.policies.read();
        self.topology
            .read()
            .exchanges
            .get(name)
            .map(|x| ExchangeView {
                spec: x.spec.clone(),
                policy: policy::effective(&policies, x.name(), false).map(|p| p.name.clone()),
                stats: Arc::clone(&x.stats),
            })
    }

    /// A closed channel's counters join the vhost's (its message statistics outlive the
    /// channels that made them, as RabbitMQ's do).
    pub fn absorb_channel_counts(&self, counts: &MessageCounts) {
        self.retired_counts.lock().add(counts);
    }

    /// The counters of every channel of this vhost that has closed.
    pub fn retired_counts(&self) -> MessageCounts {
        *self.retired_counts.lock()
    }

    /// Every queue.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.topology.read().queues.values().cloned().collect()
    }

    /// A queue by name, whoever owns it (the management API sees exclusive queues too).
    pub fn find_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.topology.read().queues.get(name).cloned()
    }

    pub fn queue_count(&self) -> usize {
        self.topology.read().queues.len()
    }

    pub fn exchange_count(&self) -> usize {
        self.topology.read().exchanges.len()
    }

    /// The name of the policy in force on a queue.
    pub fn queue_policy(&self, name: &str) -> Option<String> {
        policy::effective(&self.policies.read(), name, true).map(|p| p.name.clone())
    }

    /// Every binding: first, as RabbitMQ lists them, the default exchange's implicit
    /// binding of each queue (when `with_default`), then the explicit ones.
    pub fn bindings(&self, with_default: bool) -> Vec<BindingView> {
        let topo = self.topology.read();
        let mut out = Vec::new();
        if with_default {
            for name in topo.queues.keys() {
                out.push(BindingView {
                    source: String::new(),
                    destination: Destination::Queue(name.clone()),
                    routing_key: name.clone(),
                    arguments: FieldTable::default(),
                });
            }
        }
        for x in topo.exchanges.values() {
            for b in x.bindings() {
                out.push(BindingView {
                    source: x.name().to_string(),
                    destination: b.destination.clone(),
                    routing_key: b.routing_key.clone(),
                    arguments: b.arguments.clone(),
                });
            }
        }
        out
    }
}

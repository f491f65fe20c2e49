//! A vhost's durable side: the store access its queues and delayed exchanges get, the
//! write-ahead of definition changes (what each change, with its cascades, does to the
//! definitions log), and recovery of the saved definitions and messages after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::{resolve, Removed, Topology, VHost};
use crate::delayed::{DelayedRouter, DelayedStorage};
use crate::error::{CoreError, CoreResult};
use crate::exchange::{Binding, Destination, Exchange};
use crate::persist::{self, SavedBinding, SavedExchange, SavedQueue, SavedVHost};
use crate::policy::{self, Policy};
use crate::queue::{DeadLetterRouter, Queue, QueueStorage};
use crate::storage::DefinitionChange;

impl VHost {
    /// Store access for a new queue: paging for all, a log for durable ones.
    pub(super) fn queue_storage(&self, logged: bool) -> CoreResult<Option<QueueStorage>> {
        let Some(p) = &self.persistence else {
            return Ok(None);
        };
        let log = if logged {
            Some(p.new_queue_log().map_err(|e| {
                CoreError::new(
                    crate::error::ErrorKind::InternalError,
                    format!("cannot create the queue's log: {e}"),
                )
            })?)
        } else {
            None
        };
        Ok(Some(QueueStorage {
            store: p.store.clone(),
            log,
            page_threshold: p.page_threshold,
        }))
    }

    /// A delayed-message exchange routes its due messages through this vhost.
    pub(super) fn attach_delayed(&self, x: &Exchange) {
        if let Some(d) = &x.delayed {
            let router: Weak<dyn DelayedRouter> = self.me.clone();
            d.attach(router, Arc::clone(&self.timers));
        }
    }

    /// Makes definition changes durable before they are applied (see the module doc).
    pub(super) fn write_ahead(&self, changes: Vec<DefinitionChange>) -> CoreResult<()> {
        if self.is_deleted() {
            // A connection not yet closed after `delete_vhost` must not bring it back.
            return Err(CoreError::not_found(format!(
                "vhost '{}' is deleted",
                self.name
            )));
        }
        match &self.persistence {
            Some(p) => p.apply(changes),
            None => Ok(()),
        }
    }

    /// Whether a binding is (to be) in the definitions log: both of its ends are durable.
    pub(super) fn binding_is_saved(&self, topo: &Topology, source: &Exchange, b: &Binding) -> bool {
        self.persistence.is_some()
            && source.spec.durable
            && match &b.destination {
                Destination::Queue(q) => topo.queues.get(q).is_some_and(|q| q.log_id().is_some()),
                Destination::Exchange(e) => topo.exchanges.get(e).is_some_and(|x| x.spec.durable),
            }
    }

    /// The definitions-log deletes that removing a queue or an exchange causes, worked out
    /// without changing anything: the object, every saved binding to it (and, for an
    /// exchange, from it), and the auto-delete exchanges this leaves without bindings, in
    /// cascade, as `remove_bindings_to` will do it.
    pub(super) fn removal_changes(
        &self,
        topo: &Topology,
        removed: Removed<'_>,
    ) -> Vec<DefinitionChange> {
        if self.persistence.is_none() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        let mut gone: Vec<&str> = Vec::new();
        let mut dests: Vec<Destination> = Vec::new();
        match removed {
            Removed::Queue(q) => {
                if q.log_id().is_some() {
                    changes.push(persist::delete_queue(&self.name, q.name()));
                }
                dests.push(Destination::Queue(q.name().to_string()));
            }
            Removed::Exchange(name) => {
                let Some(x) = topo.exchanges.get(name) else {
                    return changes;
                };
                self.exchange_gone(topo, x, &mut changes);
                gone.push(x.name());
                dests.push(Destination::Exchange(name.to_string()));
            }
        }
        let mut removed_count: HashMap<&str, usize> = HashMap::new();
        while let Some(d) = dests.pop() {
            for x in topo.exchanges.values() {
                if gone.contains(&x.name()) {
                    continue;
                }
                let mut n = 0;
                for b in x.bindings().iter().filter(|b| b.destination == d) {
                    n += 1;
                    if self.binding_is_saved(topo, x, b) {
                        changes.push(persist::delete_binding(&self.name, x.name(), b));
                    }
                }
                if n == 0 {
                    continue;
                }
                let count = removed_count.entry(x.name()).or_default();
                *count += n;
                if x.spec.auto_delete && *count == x.bindings().len() {
                    gone.push(x.name());
                    if x.spec.durable {
                        changes.push(persist::delete_exchange(&self.name, x.name()));
                    }
                    dests.push(Destination::Exchange(x.name().to_string()));
                }
            }
        }
        changes
    }

    /// The deletes for an exchange and its own saved bindings.
    pub(super) fn exchange_gone(
        &self,
        topo: &Topology,
        x: &Exchange,
        changes: &mut Vec<DefinitionChange>,
    ) {
        if !x.spec.durable {
            return;
        }
        changes.push(persist::delete_exchange(&self.name, x.name()));
        for b in x.bindings() {
            if self.binding_is_saved(topo, x, b) {
                changes.push(persist::delete_binding(&self.name, x.name(), b));
            }
        }
    }

    /// Everything durable in this vhost, for the metadata snapshot.
    pub fn saved(&self) -> SavedVHost {
        let topo = self.topology.read();
        let durable_exchange =
            |name: &str| topo.exchanges.get(name).is_some_and(|x| x.spec.durable);
        let mut saved = SavedVHost {
            name: self.name.clone(),
            policies: self.policies.read().clone(),
            limits: *self.limits.read(),
            ..Default::default()
        };
        for x in topo.exchanges.values() {
            let predeclared = x.name().is_empty() || x.name().starts_with("amq.");
            if x.spec.durable && !predeclared {
                saved.exchanges.push(SavedExchange {
                    spec: x.spec.clone(),
                    delayed_log: x.delayed.as_ref().and_then(|d| d.log_id()),
                });
            }
            if !x.spec.durable {
                continue;
            }
            for b in x.bindings() {
                let durable_dest = match &b.destination {
                    Destination::Queue(q) => {
                        topo.queues.get(q).is_some_and(|q| q.log_id().is_some())
                    }
                    Destination::Exchange(e) => durable_exchange(e),
                };
                if durable_dest {
                    saved.bindings.push(SavedBinding {
                        source: x.name().to_string(),
                        destination: b.destination.clone(),
                        routing_key: b.routing_key.clone(),
                        arguments: b.arguments.clone(),
                    });
                }
            }
        }
        for q in topo.queues.values() {
            if let Some(id) = q.log_id() {
                saved.queues.push(SavedQueue {
                    id,
                    spec: q.spec.clone(),
                });
            }
        }
        saved
    }

    /// Recreates saved durable state after a restart (exchanges, queues with their
    /// messages, bindings, policies), without saving it again.
    pub fn restore(&self, saved: SavedVHost) {
        let Some(p) = &self.persistence else { return };
        self.set_meta(saved.meta);
        *self.policies.write() = saved.policies;
        *self.limits.write() = saved.limits;
        {
            let mut topo = self.topology.write();
            for sx in saved.exchanges {
                match Exchange::new(sx.spec, &self.name) {
                    Ok(x) => {
                        self.attach_delayed(&x);
                        if let (Some(delayed), Some(id)) = (&x.delayed, sx.delayed_log) {
                            p.note_queue_id(id);
                            match p
                                .store
                                .queue_index(id)
                                .and_then(|log| Ok((log.recover()?, log)))
                            {
                                Ok((recovered, log)) => {
                                    delayed.attach_storage(DelayedStorage {
                                        store: p.store.clone(),
                                        log,
                                    });
                                    delayed.restore(recovered, &self.timers);
                                }
                                Err(e) => {
                                    tracing::error!(vhost = %self.name, exchange = %x.name(), error = %e, "cannot recover delayed messages")
                                }
                            }
                        }
                        topo.exchanges.insert(x.spec.name.clone(), x);
                    }
                    Err(e) => {
                        tracing::warn!(vhost = %self.name, error = %e.text, "saved exchange skipped")
                    }
                }
            }
        }
        for sq in saved.queues {
            p.note_queue_id(sq.id);
            let log = match p.store.queue_index(sq.id) {
                Ok(log) => log,
                Err(e) => {
                    tracing::error!(vhost = %self.name, queue = %sq.spec.name, error = %e, "cannot open the queue's log; queue skipped");
                    continue;
                }
            };
            let recovered = match log.recover() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(vhost = %self.name, queue = %sq.spec.name, error = %e, "cannot read the queue's log; its messages are lost");
                    Vec::new()
                }
            };
            let policies = self.policies.read().clone();
            let config = policy::queue_config(
                &sq.spec.arguments,
                policy::effective(&policies, &sq.spec.name, true),
                &sq.spec.name,
                &self.name,
            )
            .unwrap_or_default();
            let storage = QueueStorage {
                store: p.store.clone(),
                log: Some(log),
                page_threshold: p.page_threshold,
            };
            let router: Weak<dyn DeadLetterRouter> = self.me.clone();
            let count = recovered.len();
            let queue = Queue::new(
                &self.name,
                sq.spec,
                config,
                Arc::clone(&self.timers),
                router,
                Some(storage),
            );
            queue.restore(recovered);
            tracing::info!(vhost = %self.name, queue = %queue.name(), messages = count, "queue recovered");
            self.topology
                .write()
                .queues
                .insert(queue.spec.name.clone(), queue);
        }
        let mut guard = self.topology.write();
        let topo = &mut *guard;
        for b in saved.bindings {
            let target = resolve(&topo.queues, &topo.exchanges, &b.destination);
            if let (Some(target), Some(x)) = (target, topo.exchanges.get_mut(&b.source)) {
                let binding = Binding {
                    destination: b.destination,
                    routing_key: b.routing_key,
                    arguments: b.arguments,
                };
                let _ = x.bind(binding, target);
            }
        }
        let policies = self.policies.read().clone();
        for x in topo.exchanges.values_mut() {
            x.policy_alternate =
                policy::effective(&policies, x.name(), false).and_then(Policy::alternate_exchange);
        }
    }

    /// Ids of the logs this vhost uses (durable queues and delayed-message exchanges).
    pub fn queue_log_ids(&self) -> Vec<u64> {
        let topo = self.topology.read();
        let queues = topo.queues.values().filter_map(|q| q.log_id());
        let exchanges = topo
            .exchanges
            .values()
            .filter_map(|x| x.delayed.as_ref().and_then(|d| d.log_id()));
        queues.chain(exchanges).collect()
    }
}

//! A virtual host: its exchanges, queues and bindings (the topology), and routing of a
//! published message through exchanges (including exchange-to-exchange bindings and
//! alternate exchanges) to the set of queues that receive it.
//!
//! The topology sits behind one read-write lock: publishing only reads it, while declares,
//! binds and deletes (rare) write it. That keeps every topology change atomic and simple.
//!
//! Changes to durable definitions are written ahead: under the vhost's `definitions` mutex
//! (which every topology change holds, so what was checked stays true), a change is checked
//! against the topology under the read lock, made durable in the store's definitions log
//! (one record per object, one fdatasync) with no topology lock held, and only then applied
//! under the write lock. A change that cannot be made durable fails with 541 and leaves the
//! vhost as it was; publishers are never stalled behind a definitions fsync.

use crate::FastMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use warren_amqp::{FieldTable, FieldValue};

use crate::delayed::DelayedStorage;
use crate::error::{CoreError, CoreResult};
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind, ExchangeSpec, Target};
use crate::limits::VHostLimits;
use crate::persist::{self, Persistence, SavedExchange, SavedQueue};
use crate::policy::{self, Policy};
use crate::queue::{DeadLetterRouter, Queue, QueueCounts, QueueSpec};
use crate::queue_config::{QueueConfig, QUEUE_ARGS, UNSUPPORTED_QUEUE_ARGS};
use crate::timers::Timers;

mod durability;
mod inspect;
mod lifecycle;
mod publish;
mod routers;
#[cfg(test)]
mod tests;

pub use inspect::{BindingView, ExchangeView};
pub use publish::{PublishOutcome, RouteScratch};

/// How many dead letters one routing pass may produce in a chain (a length-limited DLX target
/// dropping into another...): a bound, not an expected size.
const MAX_DEAD_LETTER_CHAIN: usize = 100_000;

/// The exchanges every vhost has from the start.
const PREDECLARED: &[(&str, ExchangeKind)] = &[
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

#[derive(Default)]
struct Topology {
    exchanges: FastMap<String, Exchange>,
    queues: FastMap<String, Arc<Queue>>,
}

/// One virtual host.
pub struct VHost {
    pub name: String,
    topology: RwLock<Topology>,
    /// Held by every change of the topology or the policies (see the module doc).
    definitions: Mutex<()>,
    policies: RwLock<Vec<Policy>>,
    limits: RwLock<VHostLimits>,
    /// Open connections (what `max-connections` limits).
    connections: AtomicU64,
    timers: Arc<Timers>,
    persistence: Option<Arc<Persistence>>,
    me: Weak<VHost>,
    meta: RwLock<crate::persist::VHostMeta>,
    /// Set by `delete_everything`: every later change is refused.
    deleted: AtomicBool,
    /// Message counters of the vhost's channels that have closed (management API).
    retired_counts: Mutex<crate::stats::MessageCounts>,
}

/// A connection's place in its vhost's `max-connections`; given back on drop.
pub struct ConnectionSlot {
    vhost: Arc<VHost>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.vhost.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The outcome of `queue.declare`.
#[derive(Clone)]
pub struct DeclaredQueue {
    pub queue: Arc<Queue>,
    pub counts: QueueCounts,
    /// False when the queue existed already.
    pub created: bool,
}

impl VHost {
    /// A vhost in an `Arc`, as queues need a weak handle back to it for dead-lettering.
    pub fn new(
        name: &str,
        timers: Arc<Timers>,
        persistence: Option<Arc<Persistence>>,
    ) -> Arc<VHost> {
        Arc::new_cyclic(|me| VHost::build(name, timers, persistence, me.clone()))
    }

    fn build(
        name: &str,
        timers: Arc<Timers>,
        persistence: Option<Arc<Persistence>>,
        me: Weak<VHost>,
    ) -> VHost {
        let mut topology = Topology::default();
        let mut add = |name: &str, kind| {
            let spec = ExchangeSpec {
                name: name.to_string(),
                kind,
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            };
            if let Ok(x) = Exchange::new(spec, name) {
                topology.exchanges.insert(name.to_string(), x);
            }
        };
        // The default exchange is a direct exchange whose bindings are implicit.
        add("", ExchangeKind::Direct);
        for (n, k) in PREDECLARED {
            add(n, *k);
        }
        VHost {
            name: name.to_string(),
            topology: RwLock::new(topology),
            definitions: Mutex::new(()),
            policies: RwLock::new(Vec::new()),
            limits: RwLock::new(VHostLimits::default()),
            connections: AtomicU64::new(0),
            timers,
            persistence,
            me,
            meta: RwLock::new(Default::default()),
            deleted: AtomicBool::new(false),
            retired_counts: Mutex::new(Default::default()),
        }
    }

    fn no_exchange(&self, name: &str) -> CoreError {
        CoreError::not_found(format!("no exchange '{name}' in vhost '{}'", self.name))
    }

    fn no_queue(&self, name: &str) -> CoreError {
        CoreError::not_found(format!("no queue '{name}' in vhost '{}'", self.name))
    }

    // ----- exchanges -----

    /// `exchange.declare`. Passive checks existence only.
    pub fn declare_exchange(&self, spec: ExchangeSpec, passive: bool) -> CoreResult<()> {
        if spec.name.is_empty() {
            return Err(CoreError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        let _defs = self.definitions.lock();
        if let Some(existing) = self.topology.read().exchanges.get(&spec.name) {
            if passive {
                return Ok(());
            }
            return self.check_exchange_equivalent(&existing.spec, &spec);
        }
        if passive {
            return Err(self.no_exchange(&spec.name));
        }
        if spec.name.starts_with("amq.") {
            return Err(CoreError::access_refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        }
        let mut exchange = Exchange::new(spec, &self.name)?;
        self.attach_delayed(&exchange);
        exchange.policy_alternate =
            policy::effective(&self.policies.read(), exchange.name(), false)
                .and_then(Policy::alternate_exchange);
        let durable = exchange.spec.durable;
        if durable {
            if let (Some(delayed), Some(p)) = (&exchange.delayed, &self.persistence) {
                let log = p.new_queue_log().map_err(|e| {
                    CoreError::new(
                        crate::error::ErrorKind::InternalError,
                        format!("cannot create the exchange's log: {e}"),
                    )
                })?;
                delayed.attach_storage(DelayedStorage {
                    store: p.store.clone(),
                    log,
                });
            }
        }
        if durable {
            let saved = SavedExchange {
                spec: exchange.spec.clone(),
                delayed_log: exchange.delayed.as_ref().and_then(|d| d.log_id()),
            };
            if let Err(e) = self.write_ahead(vec![persist::put_exchange(&self.name, &saved)]) {
                if let (Some(id), Some(p)) = (saved.delayed_log, &self.persistence) {
                    let _ = p.store.remove_queue_index(id);
                }
                return Err(e);
            }
        }
        self.topology
            .write()
            .exchanges
            .insert(exchange.spec.name.clone(), exchange);
        Ok(())
    }

    fn check_exchange_equivalent(
        &self,
        have: &ExchangeSpec,
        want: &ExchangeSpec,
    ) -> CoreResult<()> {
        let differ = |arg: &str, received: String, current: String| {
            Err(CoreError::precondition(format!(
                "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{received}' but current is '{current}'",
                have.name, self.name
            )))
        };
        if have.kind != want.kind {
            return differ("type", want.kind.to_string(), have.kind.to_string());
        }
        if have.durable != want.durable {
            return differ(
                "durable",
                want.durable.to_string(),
                have.durable.to_string(),
            );
        }
        if have.auto_delete != want.auto_delete {
            return differ(
                "auto_delete",
                want.auto_delete.to_string(),
                have.auto_delete.to_string(),
            );
        }
        if have.internal != want.internal {
            return differ(
                "internal",
                want.internal.to_string(),
                have.internal.to_string(),
            );
        }
        check_args_equivalent(
            &have.arguments,
            &want.arguments,
            &["alternate-exchange"],
            &format!("exchange '{}' in vhost '{}'", have.name, self.name),
        )
    }

    /// `exchange.delete`. Deleting an exchange that does not exist succeeds, as in RabbitMQ.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> CoreResult<()> {
        check_exchange_deletion(&self.name, name)?;
        let _defs = self.definitions.lock();
        let changes = {
            let topo = self.topology.read();
            let Some(x) = topo.exchanges.get(name) else {
                return Ok(());
            };
            if if_unused && x.has_bindings() {
                return Err(CoreError::precondition(format!(
                    "exchange '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            self.removal_changes(&topo, Removed::Exchange(name))
        };
        self.write_ahead(changes)?;
        remove_exchange(&mut self.topology.write(), name);
        Ok(())
    }

    pub fn exchange_exists(&self, name: &str) -> bool {
        self.topology.read().exchanges.contains_key(name)
    }

    /// The type of an exchange, if it exists (topic permissions apply to topic exchanges).
    pub fn exchange_kind(&self, name: &str) -> Option<ExchangeKind> {
        self.topology
            .read()
            .exchanges
            .get(name)
            .map(|x| x.spec.kind)
    }

    // ----- queues -----

    /// `queue.declare`. `connection_id` is the declaring connection (exclusive ownership).
    /// Client-chosen names are checked with [`check_queue_name`] first; server-generated
    /// `amq.gen-` names are not.
    pub fn declare_queue(
        &self,
        spec: QueueSpec,
        passive: bool,
        connection_id: u64,
    ) -> CoreResult<DeclaredQueue> {
        crate::stats::count(&crate::stats::CHURN.queue_declared);
        let _defs = self.definitions.lock();
        let existing = self.topology.read().queues.get(&spec.name).cloned();
        if let Some(q) = existing {
            self.check_exclusive(&q, connection_id)?;
            if !passive {
                if spec.exclusive_owner.is_some() != q.spec.exclusive_owner.is_some() {
                    return Err(self.locked(&spec.name));
                }
                self.check_queue_equivalent(&q.spec, &spec)?;
            }
            // RabbitMQ 3.10: any declare, passive included, counts as use for x-expires.
            q.touch();
            return Ok(DeclaredQueue {
                counts: q.counts(),
                queue: q,
                created: false,
            });
        }
        if passive {
            return Err(self.no_queue(&spec.name));
        }
        if let Some(max) = self.limits.read().max_queues {
            let count = self.topology.read().queues.len() as u64;
            if count >= max {
                // RabbitMQ 3.10: 406 on the channel, with this text.
                return Err(CoreError::precondition(format!(
                    "cannot declare queue '{}': queue limit in vhost '{}' ({max}) is reached",
                    spec.name, self.name
                )));
            }
        }
        // Arguments are validated on their own first, so a bad argument is reported as such.
        QueueConfig::from_arguments(&spec.arguments, &spec.name, &self.name)?;
        let config = {
            let policies = self.policies.read();
            let p = policy::effective(&policies, &spec.name, true);
            policy::queue_config(&spec.arguments, p, &spec.name, &self.name)?
        };
        let logged = spec.durable && spec.exclusive_owner.is_none();
        let storage = self.queue_storage(logged)?;
        let router: Weak<dyn DeadLetterRouter> = self.me.clone();
        let queue = Queue::new(
            &self.name,
            spec,
            config,
            Arc::clone(&self.timers),
            router,
            storage,
        );
        if let Some(id) = queue.log_id() {
            let saved = SavedQueue {
                id,
                spec: queue.spec.clone(),
            };
            if let Err(e) = self.write_ahead(vec![persist::put_queue(&self.name, &saved)]) {
                if let Some(p) = &self.persistence {
                    let _ = p.store.remove_queue_index(id);
                }
                return Err(e);
            }
        }
        self.topology
            .write()
            .queues
            .insert(queue.spec.name.clone(), Arc::clone(&queue));
        crate::stats::count(&crate::stats::CHURN.queue_created);
        Ok(DeclaredQueue {
            counts: queue.counts(),
            queue,
            created: true,
        })
    }

    fn locked(&self, name: &str) -> CoreError {
        CoreError::locked(format!(
            "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
            self.name
        ))
    }

    fn check_exclusive(&self, q: &Queue, connection_id: u64) -> CoreResult<()> {
        match q.spec.exclusive_owner {
            Some(owner) if owner != connection_id => Err(self.locked(q.name())),
            _ => Ok(()),
        }
    }

    fn check_queue_equivalent(&self, have: &QueueSpec, want: &QueueSpec) -> CoreResult<()> {
        let differ = |arg: &str, received: bool, current: bool| {
            Err(CoreError::precondition(format!(
                "inequivalent arg '{arg}' for queue '{}' in vhost '{}': received '{received}' but current is '{current}'",
                have.name, self.name
            )))
        };
        if have.durable != want.durable {
            return differ("durable", want.durable, have.durable);
        }
        if have.auto_delete != want.auto_delete {
            return differ("auto_delete", want.auto_delete, have.auto_delete);
        }
        // RabbitMQ 3.10: no x-queue-type is the default type, so it equals "classic".
        let with_type = |args: &FieldTable| {
            let mut args = args.clone();
            if args.get("x-queue-type").is_none() {
                args.insert("x-queue-type", FieldValue::LongString("classic".into()));
            }
            args
        };
        check_args_equivalent(
            &with_type(&have.arguments),
            &with_type(&want.arguments),
            // RabbitMQ compares exactly the arguments it knows; so do we.
            QUEUE_ARGS.iter().chain(UNSUPPORTED_QUEUE_ARGS),
            &format!("queue '{}' in vhost '{}'", have.name, self.name),
        )
    }

    /// Looks a queue up for use by `connection_id` (consume, get, purge, bind...).
    pub fn queue(&self, name: &str, connection_id: u64) -> CoreResult<Arc<Queue>> {
        let topo = self.topology.read();
        let q = topo.queues.get(name).ok_or_else(|| self.no_queue(name))?;
        self.check_exclusive(q, connection_id)?;
        Ok(Arc::clone(q))
    }

    /// `queue.delete`; a missing queue deletes fine with count 0, as in RabbitMQ.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        connection_id: u64,
    ) -> CoreResult<u32> {
        let _defs = self.definitions.lock();
        let Some(q) = self.topology.read().queues.get(name).cloned() else {
            return Ok(0);
        };
        self.check_exclusive(&q, connection_id)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(CoreError::precondition(format!(
                "queue '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(CoreError::precondition(format!(
                "queue '{name}' in vhost '{}' not empty",
                self.name
            )));
        }
        let changes = self.removal_changes(&self.topology.read(), Removed::Queue(&q));
        self.write_ahead(changes)?;
        let count = remove_queue(&mut self.topology.write(), &q);
        Ok(count)
    }

    /// Deletes `queue` if it is still the one registered under its name (auto-delete after
    /// the last consumer left).
    /// If the deletion cannot be made durable, the queue stays (logged): memory and disk
    /// agree, and the next trigger tries again.
    pub fn delete_queue_instance(&self, queue: &Arc<Queue>) {
        let _defs = self.definitions.lock();
        let changes = {
            let topo = self.topology.read();
            let current = topo
                .queues
                .get(queue.name())
                .is_some_and(|q| Arc::ptr_eq(q, queue));
            if !current {
                return;
            }
            self.removal_changes(&topo, Removed::Queue(queue))
        };
        if self.write_ahead(changes).is_err() {
            tracing::error!(vhost = %self.name, queue = %queue.name(), "queue not deleted: its deletion cannot be made durable");
            return;
        }
        remove_queue(&mut self.topology.write(), queue);
    }

    /// Removes every exclusive queue owned by a closing connection.
    pub fn delete_exclusive_queues(&self, connection_id: u64) {
        let _defs = self.definitions.lock();
        let owned: Vec<Arc<Queue>> = self
            .topology
            .read()
            .queues
            .values()
            .filter(|q| q.spec.exclusive_owner == Some(connection_id))
            .cloned()
            .collect();
        for q in owned {
            // Exclusive queues are never saved, but removing their bindings can auto-delete
            // a durable exchange. Their owner is gone: they go even if that cannot be saved
            // (the exchange then comes back after a restart, logged).
            let changes = self.removal_changes(&self.topology.read(), Removed::Queue(&q));
            if self.write_ahead(changes).is_err() {
                tracing::error!(vhost = %self.name, queue = %q.name(), "an auto-deleted exchange will come back after a restart: its deletion cannot be made durable");
            }
            remove_queue(&mut self.topology.write(), &q);
        }
    }

    pub fn queue_names(&self) -> Vec<String> {
        self.topology.read().queues.keys().cloned().collect()
    }

    // ----- bindings -----

    /// `queue.bind` (destination a queue) or `exchange.bind` (destination an exchange).
    pub fn bind(
        &self,
        source: &str,
        destination: Destination,
        routing_key: &str,
        arguments: FieldTable,
        connection_id: u64,
    ) -> CoreResult<()> {
        let _defs = self.definitions.lock();
        let binding = Binding {
            destination,
            routing_key: routing_key.to_string(),
            arguments,
        };
        let changes = {
            let topo = self.topology.read();
            self.check_binding_ends(&topo, source, &binding.destination, connection_id)?;
            let x = topo
                .exchanges
                .get(source)
                .ok_or_else(|| self.no_exchange(source))?;
            if !x.check_binding(&binding)? {
                return Ok(());
            }
            if self.binding_is_saved(&topo, x, &binding) {
                vec![persist::put_binding(&self.name, source, &binding)]
            } else {
                Vec::new()
            }
        };
        self.write_ahead(changes)?;
        let mut guard = self.topology.write();
        let topo = &mut *guard;
        if let (Some(target), Some(x)) = (
            resolve(&topo.queues, &topo.exchanges, &binding.destination),
            topo.exchanges.get_mut(source),
        ) {
            x.bind(binding, target)?;
        }
        Ok(())
    }

    /// `queue.unbind` / `exchange.unbind`. A binding, queue or exchange that does not exist
    /// unbinds fine, as in RabbitMQ.
    pub fn unbind(
        &self,
        source: &str,
        destination: Destination,
        routing_key: &str,
        arguments: FieldTable,
        connection_id: u64,
    ) -> CoreResult<()> {
        if source.is_empty() || destination == Destination::Exchange(String::new()) {
            return Err(CoreError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        let _defs = self.definitions.lock();
        let binding = Binding {
            destination,
            routing_key: routing_key.to_string(),
            arguments,
        };
        let changes = {
            let topo = self.topology.read();
            if let Destination::Queue(q) = &binding.destination {
                if let Some(queue) = topo.queues.get(q) {
                    self.check_exclusive(queue, connection_id)?;
                }
            }
            // Unbinding is idempotent in RabbitMQ: a missing queue, exchange or binding is fine.
            let Some(x) = topo.exchanges.get(source) else {
                return Ok(());
            };
            if !x.bindings().contains(&binding) {
                return Ok(());
            }
            let mut changes = Vec::new();
            if self.binding_is_saved(&topo, x, &binding) {
                changes.push(persist::delete_binding(&self.name, source, &binding));
            }
            if x.spec.auto_delete && x.bindings().len() == 1 {
                changes.extend(self.removal_changes(&topo, Removed::Exchange(source)));
            }
            changes
        };
        self.write_ahead(changes)?;
        let mut topo = self.topology.write();
        if let Some(x) = topo.exchanges.get_mut(source) {
            if x.unbind(&binding) && x.spec.auto_delete && !x.has_bindings() {
                remove_exchange(&mut topo, source);
            }
        }
        Ok(())
    }

    fn check_binding_ends(
        &self,
        topo: &Topology,
        source: &str,
        destination: &Destination,
        connection_id: u64,
    ) -> CoreResult<()> {
        if source.is_empty() || destination == &Destination::Exchange(String::new()) {
            return Err(CoreError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if !topo.exchanges.contains_key(source) {
            return Err(self.no_exchange(source));
        }
        match destination {
            Destination::Queue(q) => {
                let queue = topo.queues.get(q).ok_or_else(|| self.no_queue(q))?;
                self.check_exclusive(queue, connection_id)?;
            }
            Destination::Exchange(x) => {
                if !topo.exchanges.contains_key(x) {
                    return Err(self.no_exchange(x));
                }
            }
        }
        Ok(())
    }

    // ----- limits and connections -----

    pub fn limits(&self) -> VHostLimits {
        *self.limits.read()
    }

    /// `set_vhost_limits`: replaces the vhost's limits (durably). Lowering a limit below
    /// what is open or declared closes nothing, as in RabbitMQ; it only refuses new ones.
    pub fn set_limits(&self, limits: VHostLimits) -> CoreResult<()> {
        let _defs = self.definitions.lock();
        self.write_ahead(vec![persist::put_limits(&self.name, &limits)])?;
        *self.limits.write() = limits;
        Ok(())
    }

    /// A connection opens in this vhost (`connection.open`): refused once `max-connections`
    /// are open. The slot is given back when it is dropped.
    pub fn open_connection(self: &Arc<Self>, user: &str) -> CoreResult<ConnectionSlot> {
        let max = self.limits.read().max_connections;
        let taken =
            self.connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match max {
                    Some(max) if n >= max => None,
                    _ => Some(n + 1),
                });
        match (taken, max) {
            (Ok(_), _) => Ok(ConnectionSlot {
                vhost: Arc::clone(self),
            }),
            (Err(_), max) => Err(CoreError::new(
                crate::error::ErrorKind::NotAllowed,
                format!(
                    "access to vhost '{}' refused for user '{user}': connection limit ({}) is reached",
                    self.name,
                    max.unwrap_or(0)
                ),
            )),
        }
    }

    /// Connections open in this vhost.
    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    // ----- policies -----

    /// Adds or replaces a policy and applies it to every matching queue and exchange.
    pub fn set_policy(&self, policy: Policy) -> CoreResult<()> {
        let _defs = self.definitions.lock();
        self.write_ahead(vec![persist::put_policy(&self.name, &policy)])?;
        {
            let mut policies = self.policies.write();
            policies.retain(|p| p.name != policy.name);
            policies.push(policy);
        }
        self.apply_policies();
        Ok(())
    }

    /// Removes a policy; false if there was none of that name.
    pub fn clear_policy(&self, name: &str) -> CoreResult<bool> {
        let _defs = self.definitions.lock();
        if !self.policies.read().iter().any(|p| p.name == name) {
            return Ok(false);
        }
        self.write_ahead(vec![persist::delete_policy(&self.name, name)])?;
        self.policies.write().retain(|p| p.name != name);
        self.apply_policies();
        Ok(true)
    }

    pub fn policies(&self) -> Vec<Policy> {
        self.policies.read().clone()
    }

    fn apply_policies(&self) {
        let policies = self.policies.read().clone();
        let queues: Vec<Arc<Queue>> = {
            let mut topo = self.topology.write();
            for x in topo.exchanges.values_mut() {
                x.policy_alternate = policy::effective(&policies, x.name(), false)
                    .and_then(Policy::alternate_exchange);
            }
            topo.queues.values().cloned().collect()
        };
        for q in queues {
            let p = policy::effective(&policies, q.name(), true);
            match policy::queue_config(&q.spec.arguments, p, q.name(), &self.name) {
                Ok(config) => q.set_config(config),
                Err(e) => {
                    tracing::warn!(vhost = %self.name, queue = %q.name(), error = %e.text, "policy not applied")
                }
            }
        }
    }
}

/// What a removal starts from (see `VHost::removal_changes`).
enum Removed<'a> {
    Queue(&'a Arc<Queue>),
    Exchange(&'a str),
}

/// Refuses to delete the default exchange and the `amq.` ones (403, RabbitMQ's texts).
pub fn check_exchange_deletion(vhost: &str, name: &str) -> CoreResult<()> {
    if name.is_empty() {
        return Err(CoreError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    if name.starts_with("amq.") {
        return Err(CoreError::access_refused(format!(
            "deletion of system exchange '{name}' in vhost '{vhost}' not allowed"
        )));
    }
    Ok(())
}

/// Refuses client-chosen queue names in the reserved `amq.` namespace (403).
pub fn check_queue_name(name: &str) -> CoreResult<()> {
    if name.starts_with("amq.") {
        return Err(CoreError::access_refused(format!(
            "queue name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    Ok(())
}

/// Removes a queue and its bindings, cancels its consumers; returns its message count.
fn remove_queue(topo: &mut Topology, queue: &Arc<Queue>) -> u32 {
    if topo.queues.remove(queue.name()).is_some() {
        crate::stats::count(&crate::stats::CHURN.queue_deleted);
    }
    let dest = Destination::Queue(queue.name().to_string());
    remove_bindings_to(topo, &dest);
    queue.mark_deleted()
}

/// A binding's destination as routing holds it; `None` when it does not exist.
fn resolve(
    queues: &FastMap<String, Arc<Queue>>,
    exchanges: &FastMap<String, Exchange>,
    destination: &Destination,
) -> Option<Target> {
    match destination {
        Destination::Queue(name) => queues.get(name).cloned().map(Target::Queue),
        Destination::Exchange(name) => exchanges
            .contains_key(name)
            .then(|| Target::Exchange(name.as_str().into())),
    }
}

fn remove_exchange(topo: &mut Topology, name: &str) {
    topo.exchanges.remove(name);
    remove_bindings_to(topo, &Destination::Exchange(name.to_string()));
}

/// Removes every binding to `dest`, then deletes auto-delete exchanges left without bindings
/// (which may cascade).
fn remove_bindings_to(topo: &mut Topology, dest: &Destination) {
    let mut emptied = Vec::new();
    for x in topo.exchanges.values_mut() {
        if x.remove_destination(dest) > 0 && x.spec.auto_delete && !x.has_bindings() {
            emptied.push(x.spec.name.clone());
        }
    }
    for name in emptied {
        remove_exchange(topo, &name);
    }
}

fn check_args_equivalent<'a>(
    have: &FieldTable,
    want: &FieldTable,
    keys: impl IntoIterator<Item = &'a &'a str>,
    what: &str,
) -> CoreResult<()> {
    for key in keys {
        let (h, w) = (have.get(key), want.get(key));
        if !args_equal(h, w) {
            return Err(CoreError::precondition(format!(
                "inequivalent arg '{key}' for {what}: received {} but current is {}",
                describe_arg(w),
                describe_arg(h)
            )));
        }
    }
    Ok(())
}

fn args_equal(a: Option<&FieldValue>, b: Option<&FieldValue>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || (a.as_i64().is_some() && a.as_i64() == b.as_i64()),
        (None, None) => true,
        _ => false,
    }
}

/// RabbitMQ's wording for an argument value in an "inequivalent arg" message.
fn describe_arg(v: Option<&FieldValue>) -> String {
    let Some(v) = v else {
        return "none".to_string();
    };
    let shown = match (v.as_str(), v.as_i64(), v) {
        (Some(s), _, _) => s.to_string(),
        (_, Some(i), _) => i.to_string(),
        (_, _, FieldValue::Bool(b)) => b.to_string(),
        (_, _, other) => format!("{other:?}"),
    };
    format!("the value '{shown}' of type '{}'", v.type_name())
}

//! The broker as a whole: its virtual hosts, users and permissions. One `Broker` is shared by every
//! front-end connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::access::AccessControl;
use crate::alarms::{resident_bytes, total_memory_bytes, Alarms};
use crate::connections::Connections;
use crate::error::{CoreError, CoreResult};
use crate::parameters::GlobalParameters;
use crate::persist::{Persistence, VHostMeta};
use crate::queue::Queue;
use crate::timers::Timers;
use crate::vhost::VHost;

/// The pseudo-queue name of RabbitMQ's direct reply-to.
pub const REPLY_TO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// Prefix of the per-channel routing keys that direct reply-to hands out.
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// Access settings of a broker with a store: the user created at first start (no user saved
/// yet) with every permission on `/` (RabbitMQ's `default_user` / `default_pass`,
/// `guest`/`guest` unless configured), and who may log in only from loopback (RabbitMQ's
/// `loopback_users`, `guest` by default).
#[derive(Debug, Clone)]
pub struct AccessDefaults {
    pub user: String,
    pub password: String,
    pub loopback_users: Vec<String>,
    /// False when boot-time definitions bring their own users: as RabbitMQ, a blank node
    /// that imports definitions at boot creates no default user.
    pub create_default_user: bool,
}

impl Default for AccessDefaults {
    fn default() -> Self {
        AccessDefaults {
            user: "guest".into(),
            password: "guest".into(),
            loopback_users: vec!["guest".into()],
            create_default_user: true,
        }
    }
}

pub struct Broker {
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    access: AccessControl,
    connections: Arc<Connections>,
    next_connection_id: AtomicU64,
    /// Direct reply-to targets: full `amq.rabbitmq.reply-to.<token>` name to the private,
    /// unlisted queue that feeds the requesting channel's no-ack consumer.
    reply_targets: RwLock<HashMap<String, Arc<Queue>>>,
    timers: Arc<Timers>,
    persistence: Option<Arc<Persistence>>,
    alarms: Alarms,
    parameters: GlobalParameters,
    started_at: std::time::Instant,
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

impl Broker {
    /// A broker with the default vhost `/` and the user `guest`/`guest` (loopback only), as
    /// RabbitMQ starts.
    pub fn new() -> Broker {
        let broker = Self::build(None);
        broker.add_default_vhost();
        broker
            .access
            .create_default_user("guest", "guest", "/")
            .expect("an in-memory registry cannot fail to save");
        broker
    }

    fn build(persistence: Option<Arc<Persistence>>) -> Broker {
        Broker {
            vhosts: RwLock::new(HashMap::new()),
            access: AccessControl::load(persistence.clone()),
            parameters: GlobalParameters::load(persistence.clone()),
            started_at: std::time::Instant::now(),
            connections: Arc::new(Connections::default()),
            next_connection_id: AtomicU64::new(1),
            reply_targets: RwLock::new(HashMap::new()),
            timers: Timers::new(),
            persistence,
            // RabbitMQ's defaults: 40% of RAM, 50 MB of free disk.
            alarms: Alarms::new(
                total_memory_bytes().map_or(u64::MAX, |t| t / 10 * 4),
                50_000_000,
            ),
        }
    }

    /// `/`, as RabbitMQ creates it at its first start.
    fn add_default_vhost(&self) {
        self.add_vhost("/").set_meta(VHostMeta {
            description: "Default virtual host".into(),
            ..Default::default()
        });
    }

    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        Arc::clone(
            self.vhosts
                .write()
                .entry(name.to_string())
                .or_insert_with(|| {
                    VHost::new(name, Arc::clone(&self.timers), self.persistence.clone())
                }),
        )
    }

    /// A broker backed by a store: durable state is recovered from it (metadata, then every
    /// durable queue's log), logs no queue refers to any more are removed, and unreferenced
    /// segments are collected before the broker takes traffic.
    pub fn with_persistence(persistence: Arc<Persistence>) -> Result<Arc<Broker>, String> {
        Self::with_persistence_and_access(persistence, &AccessDefaults::default())
    }

    /// As [`Broker::with_persistence`], with `defaults`' loopback users, and its default user
    /// created if no user is saved yet.
    pub fn with_persistence_and_access(
        persistence: Arc<Persistence>,
        defaults: &AccessDefaults,
    ) -> Result<Arc<Broker>, String> {
        let saved = persistence.load()?;
        let broker = Arc::new(Self::build(Some(Arc::clone(&persistence))));
        if saved.is_empty() {
            broker.add_default_vhost();
        }
        for v in saved {
            let vhost = broker.add_vhost(&v.name);
            vhost.restore(v);
        }
        let in_use: Vec<u64> = broker
            .vhosts
            .read()
            .values()
            .flat_map(|v| v.queue_log_ids())
            .collect();
        match persistence.store.queue_index_ids() {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !in_use.contains(id)) {
                    tracing::info!(
                        queue_log = id,
                        "removing the log of a queue that no longer exists"
                    );
                    let _ = persistence.store.remove_queue_index(id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list queue logs"),
        }
        persistence.store.recovery_done();
        let vhosts: Vec<_> = broker
            .vhosts
            .read()
            .values()
            .map(|v| crate::persist::put_vhost(&v.name, &v.meta()))
            .collect();
        persistence
            .apply(vhosts)
            .map_err(|e| format!("cannot write the definitions log: {}", e.text))?;
        broker
            .access
            .set_loopback_users(defaults.loopback_users.clone());
        if defaults.create_default_user {
            broker
                .access
                .create_default_user(&defaults.user, &defaults.password, "/")
                .map_err(|e| format!("cannot create the default user: {e}"))?;
        }
        Ok(broker)
    }

    pub fn persistence(&self) -> Option<&Arc<Persistence>> {
        self.persistence.as_ref()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Users and permissions.
    pub fn access(&self) -> &AccessControl {
        &self.access
    }

    /// Global runtime parameters (`cluster_name`, ...).
    pub fn parameters(&self) -> &GlobalParameters {
        &self.parameters
    }

    /// How long ago the broker was built.
    pub fn uptime(&self) -> std::time::Duration {
        self.started_at.elapsed()
    }

    /// The open connections of every front end.
    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// Every vhost, by name.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<_> = self.vhosts.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// `add_vhost`: creates the vhost, durably; an existing one is left as it is (as
    /// RabbitMQ does). Only the classic queue type exists here, so a default queue type
    /// other than `classic` is refused.
    pub fn create_vhost(&self, name: &str, meta: VHostMeta) -> CoreResult<()> {
        if let Some(t) = &meta.default_queue_type {
            if t != "classic" {
                return Err(CoreError::precondition(format!(
                    "invalid_queue_type: '{t}' (this broker has classic queues only)"
                )));
            }
        }
        if name.is_empty() {
            return Err(CoreError::precondition("vhost name cannot be empty"));
        }
        let mut vhosts = self.vhosts.write();
        if vhosts.contains_key(name) {
            return Ok(());
        }
        if let Some(p) = &self.persistence {
            p.apply(vec![crate::persist::put_vhost(name, &meta)])?;
        }
        let vhost = VHost::new(name, Arc::clone(&self.timers), self.persistence.clone());
        vhost.set_meta(meta);
        vhosts.insert(name.to_string(), vhost);
        Ok(())
    }

    /// Replaces an existing vhost's description, tags and default queue type (durably).
    pub fn update_vhost(&self, name: &str, meta: VHostMeta) -> CoreResult<()> {
        if let Some(t) = &meta.default_queue_type {
            if t != "classic" {
                return Err(CoreError::precondition(format!(
                    "invalid_queue_type: '{t}' (this broker has classic queues only)"
                )));
            }
        }
        let vhost = self
            .vhost(name)
            .ok_or_else(|| CoreError::not_found(format!("Virtual host '{name}' does not exist")))?;
        if let Some(p) = &self.persistence {
            p.apply(vec![crate::persist::put_vhost(name, &meta)])?;
        }
        vhost.set_meta(meta);
        Ok(())
    }

    /// `delete_vhost`: everything in it goes (durably first), so do the permissions on it,
    /// and its connections are closed as RabbitMQ closes them (320 "vhost 'v' is deleted").
    pub fn delete_vhost(&self, name: &str) -> CoreResult<()> {
        let vhost = self
            .vhost(name)
            .ok_or_else(|| CoreError::not_found(format!("Virtual host '{name}' does not exist")))?;
        vhost.delete_everything()?;
        self.vhosts.write().remove(name);
        if let Err(e) = self.access.remove_vhost(name) {
            tracing::error!(vhost = name, error = %e, "permissions of a deleted vhost could not be removed durably");
        }
        self.connections
            .close_where(|_, v| v == name, &format!("vhost '{name}' is deleted"));
        Ok(())
    }

    /// Closes a deleted user's connections, as RabbitMQ does (320 "user 'u' is deleted").
    pub fn close_user_connections(&self, user: &str) -> usize {
        self.connections
            .close_where(|u, _| u == user, &format!("user '{user}' is deleted"))
    }

    /// Registers a direct reply-to target under its full name.
    pub fn register_reply_target(&self, name: &str, queue: Arc<Queue>) {
        self.reply_targets.write().insert(name.to_string(), queue);
    }

    pub fn unregister_reply_target(&self, name: &str) {
        self.reply_targets.write().remove(name);
    }

    /// The queue behind a direct reply-to routing key, if its consumer still exists.
    pub fn reply_target(&self, name: &str) -> Option<Arc<Queue>> {
        self.reply_targets.read().get(name).cloned()
    }

    pub fn timers(&self) -> Arc<Timers> {
        Arc::clone(&self.timers)
    }

    /// Runs every timer that is due (message expiry, `x-expires`, delayed messages).
    pub fn run_due_timers(&self) {
        for target in self.timers.take_due(crate::clock::now_ms()) {
            target.fire();
        }
    }

    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// Measures memory and disk and updates the resource alarms.
    pub fn check_resources(&self) {
        let (disk_free, failed) = match &self.persistence {
            Some(p) => (p.store.disk_free_bytes(), p.store.is_failed()),
            None => (None, false),
        };
        self.alarms.update(resident_bytes(), disk_free, failed);
    }

    /// Starts the housekeeping thread that runs queue timers and checks the resource alarms
    /// (every 250 ms). It ends by itself once the broker is dropped.
    pub fn start_housekeeping(self: &Arc<Self>) -> std::io::Result<()> {
        let broker = Arc::downgrade(self);
        let timers = Arc::clone(&self.timers);
        let check_every = std::time::Duration::from_millis(250);
        std::thread::Builder::new()
            .name("warren-timers".into())
            .spawn(move || {
                let mut last_check: Option<std::time::Instant> = None;
                loop {
                    timers.wait(crate::clock::now_ms(), check_every);
                    let Some(broker) = broker.upgrade() else {
                        return;
                    };
                    broker.run_due_timers();
                    if last_check.is_none_or(|t| t.elapsed() >= check_every) {
                        broker.check_resources();
                        last_check = Some(std::time::Instant::now());
                    }
                }
            })?;
        Ok(())
    }

    /// A process-unique id for a new connection (exclusive queue ownership, consumer identity).
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

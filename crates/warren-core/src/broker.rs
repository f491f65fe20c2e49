//! The broker as a whole: its virtual hosts and users. One `Broker` is shared by every
//! front-end connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::alarms::{resident_bytes, total_memory_bytes, Alarms};
use crate::persist::Persistence;
use crate::queue::Queue;
use crate::timers::Timers;
use crate::vhost::VHost;

/// The pseudo-queue name of RabbitMQ's direct reply-to.
pub const REPLY_TO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// Prefix of the per-channel routing keys that direct reply-to hands out.
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// A user who may log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
    /// Like RabbitMQ's `loopback_users`: may connect only from a loopback address.
    pub loopback_only: bool,
}

pub struct Broker {
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    users: RwLock<HashMap<String, User>>,
    next_connection_id: AtomicU64,
    /// Direct reply-to targets: full `amq.rabbitmq.reply-to.<token>` name to the private,
    /// unlisted queue that feeds the requesting channel's no-ack consumer.
    reply_targets: RwLock<HashMap<String, Arc<Queue>>>,
    timers: Arc<Timers>,
    persistence: Option<Arc<Persistence>>,
    alarms: Alarms,
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
        Self::build(None)
    }

    fn build(persistence: Option<Arc<Persistence>>) -> Broker {
        let broker = Broker {
            vhosts: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            next_connection_id: AtomicU64::new(1),
            reply_targets: RwLock::new(HashMap::new()),
            timers: Timers::new(),
            persistence,
            // RabbitMQ's defaults: 40% of RAM, 50 MB of free disk.
            alarms: Alarms::new(
                total_memory_bytes().map_or(u64::MAX, |t| t / 10 * 4),
                50_000_000,
            ),
        };
        broker.add_vhost("/");
        broker.add_user(User {
            name: "guest".into(),
            password: "guest".into(),
            loopback_only: true,
        });
        broker
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
        let saved = persistence.load()?;
        let broker = Arc::new(Self::build(Some(Arc::clone(&persistence))));
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
            .keys()
            .map(|v| crate::persist::put_vhost(v))
            .collect();
        persistence
            .apply(vhosts)
            .map_err(|e| format!("cannot write the definitions log: {}", e.text))?;
        Ok(broker)
    }

    pub fn persistence(&self) -> Option<&Arc<Persistence>> {
        self.persistence.as_ref()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    pub fn add_user(&self, user: User) {
        self.users.write().insert(user.name.clone(), user);
    }

    /// Checks a username and password; `from_loopback` says where the client connects from.
    pub fn authenticate(&self, name: &str, password: &str, from_loopback: bool) -> Option<User> {
        let users = self.users.read();
        let user = users.get(name)?;
        if user.password != password || (user.loopback_only && !from_loopback) {
            return None;
        }
        Some(user.clone())
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

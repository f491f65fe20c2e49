//! What every handler shares: the broker, the node's identity, the listeners to report, the
//! message rates, and the identity Warren reports to tools (see `docs/compatibility.md`:
//! the RabbitMQ release whose API it implements, and its own name and version).

use std::sync::Arc;

use parking_lot::RwLock;
use warren_core::Broker;

use crate::sampler::Rates;

/// The RabbitMQ release whose management API (paths, bodies, fields) Warren implements and
/// reports as `rabbitmq_version`: the one its behaviour is checked against.
pub const RABBITMQ_API_VERSION: &str = "3.10.8";
pub const PRODUCT_NAME: &str = "Warren";

/// A listener as `/api/overview` lists it.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// RabbitMQ's protocol names: `amqp`, `amqp/ssl`, `http`, `https`.
    pub protocol: String,
    pub ip: String,
    pub port: u16,
}

/// How the management API is set up.
#[derive(Debug, Clone)]
pub struct ManagementOptions {
    /// RabbitMQ's node name form, `rabbit@<host>`.
    pub node: String,
    /// Warren's version, reported as `product_version`.
    pub product_version: String,
    /// How often message rates are sampled (RabbitMQ's `collect_statistics_interval`).
    pub stats_interval: std::time::Duration,
}

impl ManagementOptions {
    pub fn new(product_version: &str) -> ManagementOptions {
        ManagementOptions {
            node: format!("rabbit@{}", hostname()),
            product_version: product_version.to_string(),
            stats_interval: std::time::Duration::from_secs(5),
        }
    }
}

/// The machine's short host name, as Erlang puts it in a node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().split('.').next().unwrap_or("").to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

pub struct ApiState {
    pub broker: Arc<Broker>,
    pub options: ManagementOptions,
    pub listeners: RwLock<Vec<ListenerInfo>>,
    pub rates: Arc<Rates>,
}

impl ApiState {
    pub fn new(broker: Arc<Broker>, options: ManagementOptions) -> Arc<ApiState> {
        let rates = Arc::new(Rates::new(options.stats_interval));
        Arc::new(ApiState {
            broker,
            options,
            listeners: RwLock::new(Vec::new()),
            rates,
        })
    }

    pub fn node(&self) -> &str {
        &self.options.node
    }

    /// The cluster name: the `cluster_name` global parameter, else the node name (RabbitMQ's
    /// default).
    pub fn cluster_name(&self) -> String {
        self.broker
            .parameters()
            .get("cluster_name")
            .and_then(|json| serde_json::from_str::<String>(&json).ok())
            .unwrap_or_else(|| self.options.node.clone())
    }

    pub fn add_listener(&self, listener: ListenerInfo) {
        self.listeners.write().push(listener);
    }
}

/// Open file descriptors and their limit, from /proc (Linux).
pub fn file_descriptors() -> (Option<u64>, Option<u64>) {
    let used = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let total = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        });
    (used, total)
}

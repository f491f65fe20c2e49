//! What a scrape reports, with RabbitMQ's metric names, types and labels
//! (`rabbitmq_prometheus` in RabbitMQ 3.10, plus the message-size histogram of 4.x), read
//! from the broker's live counters: the node's totals, every queue's depth (summed on the
//! aggregated endpoint, per queue on the per-object one), the global message counters
//! and the resource gauges. Metrics that describe the Erlang VM are left out.

use warren_core::stats::{get, SIZE_BUCKETS};

use super::exposition::{Exposition, Kind};
use crate::state::{ApiState, PRODUCT_NAME, RABBITMQ_API_VERSION};

/// The endpoint a scrape came to (`rabbitmq_endpoint` of `rabbitmq_identity_info`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Aggregated,
    PerObject,
    Detailed,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Aggregated => "aggregated",
            Endpoint::PerObject => "per-object",
            Endpoint::Detailed => "detailed",
        }
    }
}

/// The protocol label of the global counters (RabbitMQ's names).
const AMQP: &str = "amqp091";
/// The queue type label: every Warren queue is a classic queue.
const CLASSIC: &str = "rabbit_classic_queue";

/// One queue's numbers, read once per scrape.
struct QueueRow {
    vhost: String,
    name: String,
    ready: u64,
    unacked: u64,
    ready_bytes: u64,
    unacked_bytes: u64,
    consumers: u64,
    published: u64,
}

fn queue_rows(state: &ApiState, vhost: Option<&str>) -> Vec<QueueRow> {
    let mut rows = Vec::new();
    for v in state.broker.vhosts() {
        if vhost.is_some_and(|only| only != v.name) {
            continue;
        }
        for q in v.queues() {
            let s = q.snapshot();
            rows.push(QueueRow {
                vhost: v.name.clone(),
                name: q.name().to_string(),
                ready: s.ready,
                unacked: s.unacked,
                ready_bytes: s.ready_bytes,
                unacked_bytes: s.unacked_bytes,
                consumers: u64::from(s.consumers),
                published: s.stats.publish,
            });
        }
    }
    rows
}

pub fn identity(e: &mut Exposition, state: &ApiState, endpoint: Endpoint) {
    let node = state.node().to_string();
    let cluster = state.cluster_name();
    e.family(
        "identity_info",
        Kind::Untyped,
        "RabbitMQ node & cluster identity info",
    );
    e.sample(
        "identity_info",
        &[
            ("rabbitmq_node", &node),
            ("rabbitmq_cluster", &cluster),
            ("rabbitmq_cluster_permanent_id", &cluster_id(&cluster)),
            ("rabbitmq_endpoint", endpoint.label()),
        ],
        1,
    );
    e.family(
        "build_info",
        Kind::Untyped,
        "RabbitMQ & Erlang/OTP version info",
    );
    e.sample(
        "build_info",
        &[
            ("rabbitmq_version", RABBITMQ_API_VERSION),
            ("prometheus_plugin_version", RABBITMQ_API_VERSION),
            ("product_name", PRODUCT_NAME),
            ("product_version", &state.options.product_version),
        ],
        1,
    );
}

/// A stable id for the cluster (RabbitMQ draws one at first boot; Warren derives it from
/// the cluster name, which is what tells clusters apart here).
fn cluster_id(cluster: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(cluster.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "rabbitmq-cluster-id-{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `/metrics` and `/metrics/per-object`.
pub fn core(e: &mut Exposition, state: &ApiState, per_object: bool) {
    let broker = &state.broker;
    let connections = broker.connections().list();
    let channels: usize = connections.iter().map(|c| c.state.channels().len()).sum();
    let rows = queue_rows(state, None);
    let consumers: u64 = rows.iter().map(|r| r.consumers).sum();
    e.single(
        "connections",
        Kind::Gauge,
        "Connections currently open",
        connections.len(),
    );
    e.single("channels", Kind::Gauge, "Channels currently open", channels);
    e.single("queues", Kind::Gauge, "Queues available", rows.len());
    e.single(
        "consumers",
        Kind::Gauge,
        "Consumers currently connected",
        consumers,
    );
    churn(e);
    super::channels::live_channels(e, &connections);
    queues(e, &rows, per_object, "");
    global(e, state);
    resources(e, state);
    super::io::persister(e, state);
}

fn churn(e: &mut Exposition) {
    let c = &warren_core::stats::CHURN;
    for (name, help, counter) in [
        (
            "connections_opened_total",
            "Total number of connections opened",
            &c.connection_created,
        ),
        (
            "connections_closed_total",
            "Total number of connections closed or terminated",
            &c.connection_closed,
        ),
        (
            "channels_opened_total",
            "Total number of channels opened",
            &c.channel_created,
        ),
        (
            "channels_closed_total",
            "Total number of channels closed",
            &c.channel_closed,
        ),
        (
            "queues_declared_total",
            "Total number of queues declared",
            &c.queue_declared,
        ),
        (
            "queues_created_total",
            "Total number of queues created",
            &c.queue_created,
        ),
        (
            "queues_deleted_total",
            "Total number of queues deleted",
            &c.queue_deleted,
        ),
    ] {
        e.single(name, Kind::Counter, help, get(counter));
    }
}

/// Queue gauges: one sample per queue (labels `vhost`, `queue`) or their sum.
fn queues(e: &mut Exposition, rows: &[QueueRow], per_object: bool, only: &str) {
    type Pick = fn(&QueueRow) -> u64;
    let families: [(&str, &str, &str, Pick); 7] = [
        (
            "queue_messages_ready",
            "queue_coarse_metrics",
            "Messages ready to be delivered to consumers",
            |r| r.ready,
        ),
        (
            "queue_messages_unacked",
            "queue_coarse_metrics",
            "Messages delivered to consumers but not yet acknowledged",
            |r| r.unacked,
        ),
        (
            "queue_messages",
            "queue_coarse_metrics",
            "Sum of ready and unacknowledged messages - total queue depth",
            |r| r.ready + r.unacked,
        ),
        (
            "queue_consumers",
            "queue_consumer_count",
            "Consumers on a queue",
            |r| r.consumers,
        ),
        (
            "queue_messages_ready_bytes",
            "queue_metrics",
            "Size in bytes of ready messages",
            |r| r.ready_bytes,
        ),
        (
            "queue_messages_unacked_bytes",
            "queue_metrics",
            "Size in bytes of all unacknowledged messages",
            |r| r.unacked_bytes,
        ),
        (
            "queue_messages_bytes",
            "queue_metrics",
            "Size in bytes of ready and unacknowledged messages",
            |r| r.ready_bytes + r.unacked_bytes,
        ),
    ];
    for (name, family, help, pick) in families {
        if !only.is_empty() && family != only {
            continue;
        }
        queue_family(e, rows, per_object, name, Kind::Gauge, help, pick);
    }
    if only.is_empty() {
        queue_family(
            e,
            rows,
            per_object,
            "queue_messages_published_total",
            Kind::Counter,
            "Total number of messages published to queues",
            |r| r.published,
        );
    }
}

fn queue_family(
    e: &mut Exposition,
    rows: &[QueueRow],
    per_object: bool,
    name: &str,
    kind: Kind,
    help: &str,
    pick: fn(&QueueRow) -> u64,
) {
    e.family(name, kind, help);
    if per_object {
        for r in rows {
            e.sample(name, &[("vhost", &r.vhost), ("queue", &r.name)], pick(r));
        }
    } else {
        e.sample(name, &[], rows.iter().map(pick).sum::<u64>());
    }
}

/// RabbitMQ's `rabbit_global_counters`: every message the broker received and delivered,
/// whatever channel did it.
fn global(e: &mut Exposition, state: &ApiState) {
    let g = state.broker.connections().global_counts();
    let m = g.messages;
    let proto = [("protocol", AMQP)];
    let routed = m
        .publish
        .saturating_sub(m.drop_unroutable + m.return_unroutable);
    for (name, help, value) in [
        ("global_messages_received_total", "Total number of messages received from publishers", m.publish),
        ("global_messages_received_confirm_total", "Total number of messages received from publishers expecting confirmations", m.publish_confirm),
        ("global_messages_routed_total", "Total number of messages routed to queues or streams", routed),
        ("global_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", m.drop_unroutable),
        ("global_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", m.return_unroutable),
        ("global_messages_confirmed_total", "Total number of messages confirmed to publishers", m.confirm),
    ] {
        e.family(name, Kind::Counter, help);
        e.sample(name, &proto, value);
    }
    let typed = [("protocol", AMQP), ("queue_type", CLASSIC)];
    for (name, help, value) in [
        ("global_messages_delivered_total", "Total number of messages delivered to consumers", m.deliver + m.deliver_no_ack + m.get + m.get_no_ack),
        ("global_messages_delivered_consume_manual_ack_total", "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", m.deliver),
        ("global_messages_delivered_consume_auto_ack_total", "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", m.deliver_no_ack),
        ("global_messages_delivered_get_manual_ack_total", "Total number of messages delivered to consumers using basic.get with manual acknowledgment", m.get),
        ("global_messages_delivered_get_auto_ack_total", "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", m.get_no_ack),
        ("global_messages_get_empty_total", "Total number of times basic.get operations fetched no message", m.get_empty),
        ("global_messages_redelivered_total", "Total number of messages redelivered to consumers", m.redeliver),
        ("global_messages_acknowledged_total", "Total number of message acknowledgements received from consumers", m.ack),
    ] {
        e.family(name, Kind::Counter, help);
        e.sample(name, &typed, value);
    }
    e.family(
        "global_publishers",
        Kind::Gauge,
        "Current number of publishers",
    );
    e.sample("global_publishers", &proto, g.publishers);
    e.family(
        "global_consumers",
        Kind::Gauge,
        "Current number of consumers",
    );
    e.sample("global_consumers", &proto, g.consumers);
    e.family(
        "message_size_bytes",
        Kind::Histogram,
        "Size of messages received from publishers",
    );
    let mut cumulative = 0;
    for (i, count) in g.sizes.buckets.iter().enumerate() {
        cumulative += count;
        let le = SIZE_BUCKETS
            .get(i)
            .map_or("+Inf".to_string(), |b| b.to_string());
        e.sample(
            "message_size_bytes_bucket",
            &[("protocol", AMQP), ("le", &le)],
            cumulative,
        );
    }
    e.sample("message_size_bytes_sum", &proto, g.sizes.sum);
    e.sample("message_size_bytes_count", &proto, cumulative);
}

fn resources(e: &mut Exposition, state: &ApiState) {
    let broker = &state.broker;
    let alarms = broker.alarms().state();
    let (fd_used, fd_total) = crate::state::file_descriptors();
    if let Some(rss) = warren_core::alarms::resident_bytes() {
        e.single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Memory used in bytes",
            rss,
        );
    }
    e.single(
        "resident_memory_limit_bytes",
        Kind::Gauge,
        "Memory high watermark in bytes",
        broker.alarms().memory_high_watermark(),
    );
    if let Some(free) = broker.persistence().and_then(|p| p.disk_free_bytes()) {
        e.single(
            "disk_space_available_bytes",
            Kind::Gauge,
            "Disk space available in bytes",
            free,
        );
    }
    e.single(
        "disk_space_available_limit_bytes",
        Kind::Gauge,
        "Free disk space low watermark in bytes",
        broker.alarms().disk_free_limit(),
    );
    if let Some(used) = fd_used {
        e.single(
            "process_open_fds",
            Kind::Gauge,
            "Open file descriptors",
            used,
        );
    }
    if let Some(total) = fd_total {
        e.single(
            "process_max_fds",
            Kind::Gauge,
            "Open file descriptors limit",
            total,
        );
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(broker.uptime());
    e.raw_single(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        started.as_secs(),
    );
    // The node's uptime (RabbitMQ names it after the Erlang VM that is its process).
    e.single(
        "erlang_uptime_seconds",
        Kind::Gauge,
        "Node uptime",
        broker.uptime().as_secs_f64(),
    );
    e.single(
        "alarms_memory_used_watermark",
        Kind::Untyped,
        "is 1 if VM memory watermark alarm is in effect",
        u8::from(alarms.memory),
    );
    e.single(
        "alarms_free_disk_space_watermark",
        Kind::Untyped,
        "is 1 if free disk space watermark alarm is in effect",
        u8::from(alarms.disk),
    );
    e.single(
        "alarms_file_descriptor_limit",
        Kind::Untyped,
        "is 1 if file descriptor limit alarm is in effect",
        0,
    );
}

/// `/metrics/detailed`: the families asked for (RabbitMQ's names), queues of one vhost
/// when `vhost` is given, always per object.
pub fn detailed(e: &mut Exposition, state: &ApiState, families: &[String], vhost: Option<&str>) {
    let rows = if families.iter().any(|f| {
        f.starts_with("queue_coarse") || f == "queue_consumer_count" || f == "queue_metrics"
    }) {
        queue_rows(state, vhost)
    } else {
        Vec::new()
    };
    for family in families {
        match family.as_str() {
            "queue_coarse_metrics" | "queue_consumer_count" | "queue_metrics" => {
                queues(e, &rows, true, family)
            }
            "connection_churn_metrics" => churn(e),
            "node_persister_metrics" => super::io::persister(e, state),
            _ => {}
        }
    }
}

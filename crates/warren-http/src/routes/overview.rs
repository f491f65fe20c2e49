//! `/api/overview`, `/api/cluster-name`, `/api/nodes`, `/api/whoami` and the small
//! informational endpoints, with Warren's identity in the fields tools parse.

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_core::access::password::PasswordHash;

use super::{body_json, no_content, visible_vhosts, Routes, St};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::sampler::{self, f, Key, DELIVERY_FIELDS, TOTALS_FIELDS};
use crate::state::{ApiState, PRODUCT_NAME, RABBITMQ_API_VERSION};

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/overview", get(overview))
        .route("/cluster-name", get(cluster_name).put(set_cluster_name))
        .route("/nodes", get(nodes))
        .route("/nodes/{node}", get(node))
        .route("/whoami", get(whoami))
        .route("/extensions", get(|| async { Json(json!([])) }))
        .route("/feature-flags", get(|| async { Json(json!([])) }))
        .route("/auth/hash_password/{password}", get(hash_password))
}

/// What the UI's login page asks before there is a user (no authentication).
pub(super) fn public_routes() -> Routes {
    Router::new().route(
        "/auth",
        get(|| async { Json(json!({"oauth_enabled": false})) }),
    )
}

fn exchange_types() -> Value {
    let kinds = [
        (
            "direct",
            "AMQP direct exchange, as per the AMQP specification",
        ),
        (
            "fanout",
            "AMQP fanout exchange, as per the AMQP specification",
        ),
        (
            "headers",
            "AMQP headers exchange, as per the AMQP specification",
        ),
        (
            "topic",
            "AMQP topic exchange, as per the AMQP specification",
        ),
        ("x-consistent-hash", "Consistent Hashing Exchange"),
        ("x-delayed-message", "Delayed Message Exchange"),
    ];
    Value::Array(
        kinds
            .iter()
            .map(|(name, description)| {
                json!({"name": name, "description": description, "enabled": true})
            })
            .collect(),
    )
}

pub(crate) fn listeners_json(state: &ApiState) -> Value {
    Value::Array(
        state
            .listeners
            .read()
            .iter()
            .map(|l| {
                json!({
                    "node": state.node(),
                    "protocol": l.protocol,
                    "ip_address": l.ip,
                    "port": l.port,
                    "socket_opts": {},
                })
            })
            .collect(),
    )
}

async fn overview(State(state): St, Extension(caller): Extension<Caller>) -> Json<Value> {
    let points = sampler::collect(&state.broker);
    let vhosts: Vec<String> = visible_vhosts(&state, &caller)
        .iter()
        .map(|v| v.name.clone())
        .collect();
    let mut total = [0u64; sampler::FIELDS.len()];
    let mut rates = [0f64; sampler::FIELDS.len()];
    for (key, point) in &points {
        if let Key::VHost(name) = key {
            if vhosts.contains(name) {
                sampler::add(&mut total, point);
                let r = state.rates.rates(key);
                for (a, b) in rates.iter_mut().zip(r) {
                    *a += b;
                }
            }
        }
    }
    let mut object_totals =
        json!({"connections": 0, "channels": 0, "queues": 0, "exchanges": 0, "consumers": 0});
    let (mut connections, mut channels) = (0usize, 0usize);
    for c in state.broker.connections().list() {
        if vhosts.contains(&c.info.vhost) && (caller.is_monitor() || c.info.user == caller.name()) {
            connections += 1;
            channels += c.state.channels().len();
        }
    }
    let (mut queues, mut exchanges, mut consumers) = (0usize, 0usize, 0u64);
    for name in &vhosts {
        if let Some(v) = state.broker.vhost(name) {
            exchanges += v.exchange_count();
            for q in v.queues() {
                queues += 1;
                consumers += u64::from(q.snapshot().consumers);
            }
        }
    }
    object_totals["connections"] = json!(connections);
    object_totals["channels"] = json!(channels);
    object_totals["queues"] = json!(queues);
    object_totals["exchanges"] = json!(exchanges);
    object_totals["consumers"] = json!(consumers);
    let mut message_stats = sampler::with_details(&total, &rates, &DELIVERY_FIELDS);
    message_stats.extend(sampler::with_details(&total, &rates, &[f::DROP_UNROUTABLE]));
    let mut out = json!({
        "management_version": RABBITMQ_API_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(),
        "product_version": state.options.product_version,
        "product_name": PRODUCT_NAME,
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "cluster_name": state.cluster_name(),
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": message_stats,
        "churn_rates": state.rates.churn_json(),
        "queue_totals": sampler::with_details(&total, &rates, &TOTALS_FIELDS),
        "object_totals": object_totals,
        "statistics_db_event_queue": 0,
        "node": state.node(),
        "listeners": listeners_json(&state),
        "contexts": contexts(&state),
    });
    // RabbitMQ 3.10: only monitors see the node, its listeners and contexts.
    if !caller.is_monitor() {
        if let Value::Object(m) = &mut out {
            for key in ["node", "listeners", "contexts"] {
                m.remove(key);
            }
        }
    }
    Json(out)
}

fn contexts(state: &ApiState) -> Value {
    Value::Array(
        state
            .listeners
            .read()
            .iter()
            .filter(|l| l.protocol.starts_with("http"))
            .map(|l| {
                json!({"node": state.node(), "description": "RabbitMQ Management", "path": "/", "ip": l.ip, "port": l.port.to_string()})
            })
            .collect(),
    )
}

async fn cluster_name(State(state): St) -> Json<Value> {
    Json(json!({"name": state.cluster_name()}))
}

async fn set_cluster_name(
    State(state): St,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    state
        .broker
        .parameters()
        .set("cluster_name", &Value::String(name.to_string()).to_string())?;
    Ok(no_content())
}

pub(crate) fn node_json(state: &ApiState) -> Value {
    let broker = &state.broker;
    let alarms = broker.alarms().state();
    let disk_free = broker.persistence().and_then(|p| p.disk_free_bytes());
    let (fd_used, fd_total) = crate::state::file_descriptors();
    let processors = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut node = json!({
        "name": state.node(),
        "type": "disc",
        "running": true,
        "os_pid": std::process::id().to_string(),
        "mem_used": warren_core::alarms::resident_bytes(),
        "mem_limit": broker.alarms().memory_high_watermark(),
        "mem_alarm": alarms.memory,
        "disk_free": disk_free,
        "disk_free_limit": broker.alarms().disk_free_limit(),
        "disk_free_alarm": alarms.disk,
        "fd_used": fd_used,
        "fd_total": fd_total,
        "sockets_used": broker.connections().count(),
        "uptime": u64::try_from(broker.uptime().as_millis()).unwrap_or(u64::MAX),
        "processors": processors,
        "rates_mode": "basic",
        "enabled_plugins": ["rabbitmq_management"],
        "being_drained": false,
        "applications": [],
        "partitions": [],
        "cluster_links": [],
        "exchange_types": exchange_types(),
        "auth_mechanisms": [
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
        ],
        "contexts": contexts(state),
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": state.options.product_version,
    });
    if let Value::Object(m) = &mut node {
        m.extend(state.rates.io_json(sampler::io_stats(broker)));
    }
    node
}

async fn nodes(State(state): St, Extension(caller): Extension<Caller>) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    Ok(Json(json!([node_json(&state)])))
}

async fn node(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    if name != state.node() {
        return Err(ApiError::not_found());
    }
    Ok(Json(node_json(&state)))
}

async fn whoami(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({"name": caller.name(), "tags": caller.user.tags}))
}

async fn hash_password(Path(password): Path<String>) -> Json<Value> {
    Json(json!({"ok": PasswordHash::new(&password).to_base64()}))
}

//! Health checks (`/api/health/checks/...`) and `aliveness-test`: 200 `{"status":"ok"}`
//! when healthy, 503 with `{"status":"failed","reason":...}` and the details RabbitMQ adds
//! (the alarms, the missing port or protocol) when not.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_core::{Message, QueueSpec};

use super::{usable_vhost, Routes, St};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::ApiState;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/health/checks/alarms", get(alarms))
        .route("/health/checks/local-alarms", get(local_alarms))
        .route("/health/checks/port-listener/{port}", get(port_listener))
        .route(
            "/health/checks/protocol-listener/{protocol}",
            get(protocol_listener),
        )
        .route("/health/checks/virtual-hosts", get(ok))
        .route("/health/checks/node-is-quorum-critical", get(ok))
        .route("/health/checks/node-is-mirror-sync-critical", get(ok))
        .route("/aliveness-test/{vhost}", get(aliveness))
}

async fn ok() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

fn failed(body: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

fn alarm_list(state: &ApiState) -> Vec<Value> {
    let a = state.broker.alarms().state();
    let mut out = Vec::new();
    if a.memory {
        out.push(json!({"node": state.node(), "resource": "memory"}));
    }
    if a.disk {
        out.push(json!({"node": state.node(), "resource": "disk"}));
    }
    out
}

async fn alarms(State(state): St) -> Response {
    let list = alarm_list(&state);
    if list.is_empty() {
        return Json(json!({"status": "ok"})).into_response();
    }
    failed(
        json!({"status": "failed", "reason": "resource alarm(s) in effect in the cluster", "alarms": list}),
    )
}

async fn local_alarms(State(state): St) -> Response {
    let list = alarm_list(&state);
    if list.is_empty() {
        return Json(json!({"status": "ok"})).into_response();
    }
    failed(
        json!({"status": "failed", "reason": "resource alarm(s) in effect on the node", "alarms": list}),
    )
}

async fn port_listener(State(state): St, Path(port): Path<String>) -> Response {
    let ports: Vec<u16> = state.listeners.read().iter().map(|l| l.port).collect();
    match port.parse::<u16>() {
        Ok(p) if ports.contains(&p) => Json(json!({"status": "ok", "port": p})).into_response(),
        _ => failed(json!({
            "status": "failed",
            "reason": format!("No active listener on port {port}"),
            "missing": port.parse::<u64>().map(Value::from).unwrap_or(Value::String(port.clone())),
            "ports": ports,
        })),
    }
}

async fn protocol_listener(State(state): St, Path(protocol): Path<String>) -> Response {
    let protocols: Vec<String> = state
        .listeners
        .read()
        .iter()
        .map(|l| l.protocol.clone())
        .collect();
    // RabbitMQ accepts its aliases: amqp091/amqp0.9.1 for amqp, http for the API, ...
    let wanted = match protocol.as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" => "amqp",
        "amqps" => "amqp/ssl",
        "management" => "http",
        other => other,
    };
    if protocols.iter().any(|p| p == wanted) {
        return Json(json!({"status": "ok", "protocol": protocol})).into_response();
    }
    failed(json!({
        "status": "failed",
        "reason": format!("No active listener for protocol {protocol}"),
        "missing": protocol,
        "protocols": protocols,
    }))
}

/// Declares the queue `aliveness-test`, publishes a message to it and gets it back.
async fn aliveness(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let spec = QueueSpec {
        name: "aliveness-test".into(),
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: Default::default(),
    };
    let declared = v.declare_queue(spec, false, 0)?;
    let msg = std::sync::Arc::new(Message::new(
        String::new(),
        "aliveness-test",
        Bytes::from_static(&[0, 0]),
        Bytes::from_static(b"test_message"),
    ));
    let mut scratch = Default::default();
    v.publish(&msg, &mut scratch, &mut Vec::new())?;
    match declared.queue.get(true) {
        Some((_, got, _)) if got.body.as_ref() == b"test_message" => {
            Ok(Json(json!({"status": "ok"})).into_response())
        }
        _ => Ok(failed(
            json!({"status": "failed", "reason": "aliveness test message not received"}),
        )),
    }
}

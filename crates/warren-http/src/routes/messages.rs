//! Messages over HTTP, RabbitMQ's testing tools: publish to an exchange (answering
//! `{"routed": bool}` once a persistent message is as durable as a publisher confirm would
//! make it), get from a queue with one of RabbitMQ's four ack modes, and move a queue's
//! messages to another queue (what RabbitMQ's UI does with a dynamic shovel).

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use warren_amqp::BasicProperties;
use warren_core::access::{Perm, ResourceKind};
use warren_core::stats::MessageCounts;
use warren_core::Message;

use super::exchanges::path_exchange;
use super::queues::find;
use super::{body_json, usable_vhost, Routes, St};
use crate::auth::{require_resource, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_table, table_to_json};

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/exchanges/{vhost}/{name}/publish", post(publish))
        .route("/queues/{vhost}/{name}/get", post(get))
        .route("/queues/{vhost}/{name}/move", post(move_messages))
}

/// Counts a publish or get over HTTP in its vhost's and the broker's message statistics, as
/// RabbitMQ's internal channel does.
fn count_in_stats(
    state: &crate::state::ApiState,
    vhost: &warren_core::VHost,
    counts: MessageCounts,
) {
    vhost.absorb_channel_counts(&counts);
    state.broker.connections().count_unchannelled(&counts);
}

/// How many messages a move holds unacknowledged at once.
const MOVE_BATCH: usize = 1000;

/// Waits until the store has synced `generation` (the point a publisher confirm goes).
async fn durable(state: &crate::state::ApiState, generation: Option<u64>) -> ApiResult<()> {
    let (Some(generation), Some(p)) = (generation, state.broker.persistence()) else {
        return Ok(());
    };
    let mut synced = p.synced();
    p.request_sync();
    while *synced.borrow_and_update() < generation {
        if synced.changed().await.is_err() {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the store stopped before the message was durable",
            ));
        }
    }
    Ok(())
}

fn text(props: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!(
            "property {key} must be a string"
        ))),
    }
}

fn number(props: &Map<String, Value>, key: &str) -> ApiResult<Option<u64>> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("property {key} must be a number"))),
    }
}

fn properties_from_json(props: &Value) -> ApiResult<BasicProperties> {
    let empty = Map::new();
    let props = match props {
        Value::Object(m) => m,
        Value::Null => &empty,
        Value::Array(a) if a.is_empty() => &empty,
        _ => return Err(ApiError::bad_request("properties must be an object")),
    };
    let headers = match props.get("headers") {
        None | Some(Value::Null) => None,
        Some(h) => Some(
            json_to_table(h).ok_or_else(|| ApiError::bad_request("headers must be an object"))?,
        ),
    };
    let small = |key: &str| -> ApiResult<Option<u8>> {
        number(props, key)?
            .map(|n| {
                u8::try_from(n).map_err(|_| ApiError::bad_request(format!("{key} out of range")))
            })
            .transpose()
    };
    Ok(BasicProperties {
        content_type: text(props, "content_type")?,
        content_encoding: text(props, "content_encoding")?,
        headers,
        delivery_mode: small("delivery_mode")?,
        priority: small("priority")?,
        correlation_id: text(props, "correlation_id")?,
        reply_to: text(props, "reply_to")?,
        expiration: text(props, "expiration")?,
        message_id: text(props, "message_id")?,
        timestamp: number(props, "timestamp")?,
        kind: text(props, "type")?,
        user_id: text(props, "user_id")?,
        app_id: text(props, "app_id")?,
        cluster_id: text(props, "cluster_id")?,
    })
}

fn properties_to_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put("content_type", p.content_type.clone().map(Value::from));
    put(
        "content_encoding",
        p.content_encoding.clone().map(Value::from),
    );
    put("headers", p.headers.as_ref().map(table_to_json));
    put("delivery_mode", p.delivery_mode.map(Value::from));
    put("priority", p.priority.map(Value::from));
    put("correlation_id", p.correlation_id.clone().map(Value::from));
    put("reply_to", p.reply_to.clone().map(Value::from));
    put("expiration", p.expiration.clone().map(Value::from));
    put("message_id", p.message_id.clone().map(Value::from));
    put("timestamp", p.timestamp.map(Value::from));
    put("type", p.kind.clone().map(Value::from));
    put("user_id", p.user_id.clone().map(Value::from));
    put("app_id", p.app_id.clone().map(Value::from));
    put("cluster_id", p.cluster_id.clone().map(Value::from));
    Value::Object(m)
}

async fn publish(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let body = body_json(&body)?;
    let exchange = path_exchange(&name).to_string();
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Write,
        ResourceKind::Exchange,
        &exchange,
    )?;
    let routing_key = body
        .get("routing_key")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("routing_key is required"))?
        .to_string();
    let payload = body
        .get("payload")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("payload is required"))?;
    let payload = match body.get("payload_encoding").and_then(Value::as_str) {
        Some("string") | None => Bytes::copy_from_slice(payload.as_bytes()),
        Some("base64") => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
        ),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "payload_encoding must be string or base64, not {other}"
            )))
        }
    };
    let properties = properties_from_json(body.get("properties").unwrap_or(&Value::Null))?;
    if let Some(user_id) = &properties.user_id {
        if user_id != caller.name() && !caller.user.has_tag("impersonator") {
            return Err(ApiError::bad_request(format!(
                "user_id property set to '{user_id}' but authenticated user was '{}'",
                caller.name()
            )));
        }
    }
    if let Some(expiration) = &properties.expiration {
        if expiration.parse::<u64>().is_err() {
            return Err(ApiError::bad_request(format!(
                "invalid expiration '{expiration}'"
            )));
        }
    }
    let msg = Arc::new(
        Message::new(exchange, routing_key, properties.to_bytes(), payload).with_sender_selected(),
    );
    let outcome = v
        .publish(&msg, &mut Default::default(), &mut Vec::new())
        .map_err(|e| match e.kind {
            // RabbitMQ 3.10: the channel's error, as a 400.
            warren_core::ErrorKind::NotFound => {
                ApiError::bad_request(format!("404 NOT_FOUND - {}", e.text))
            }
            _ => e.into(),
        })?;
    count_in_stats(
        &state,
        &v,
        MessageCounts {
            publish: 1,
            drop_unroutable: u64::from(outcome.unroutable),
            ..Default::default()
        },
    );
    durable(&state, outcome.confirm_after).await?;
    Ok(Json(
        json!({"routed": !outcome.unroutable && !outcome.rejected}),
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum AckMode {
    AckRequeue,
    Ack,
    RejectRequeue,
    Reject,
}

async fn get(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let body = body_json(&body)?;
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Read,
        ResourceKind::Queue,
        &name,
    )?;
    let queue = find(&v, &name)?;
    let count = body
        .get("count")
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| ApiError::bad_request("count is required"))?;
    // RabbitMQ 3.10 accepts exactly these four (rabbit_mgmt_wm_queue_get).
    let mode = match body.get("ackmode").and_then(Value::as_str) {
        Some("ack_requeue_true") => AckMode::AckRequeue,
        Some("ack_requeue_false") => AckMode::Ack,
        Some("reject_requeue_true") => AckMode::RejectRequeue,
        Some("reject_requeue_false") => AckMode::Reject,
        _ => return Err(ApiError::bad_request("ackmode must be one of ack_requeue_true, ack_requeue_false, reject_requeue_true, reject_requeue_false")),
    };
    let encoding = body
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("auto");
    if encoding != "auto" && encoding != "base64" {
        return Err(ApiError::bad_request("encoding must be auto or base64"));
    }
    let truncate = body.get("truncate").and_then(Value::as_u64);
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for _ in 0..count {
        let Some((entry, msg, remaining)) = queue.get(false) else {
            break;
        };
        let mut payload = msg.body.clone();
        let payload_bytes = payload.len();
        if let Some(t) = truncate {
            payload.truncate(usize::try_from(t).unwrap_or(usize::MAX));
        }
        let (payload, payload_encoding) = match (encoding, std::str::from_utf8(&payload)) {
            ("auto", Ok(s)) => (s.to_string(), "string"),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(&payload),
                "base64",
            ),
        };
        let properties = BasicProperties::decode(&msg.properties_raw)
            .map(|p| properties_to_json(&p))
            .unwrap_or_else(|_| json!({}));
        out.push(json!({
            "payload_bytes": payload_bytes,
            "redelivered": entry.redelivered,
            "exchange": msg.exchange.as_str(),
            "routing_key": msg.routing_key.as_str(),
            "message_count": remaining,
            "properties": properties,
            "payload": payload,
            "payload_encoding": payload_encoding,
        }));
        taken.push(entry);
    }
    let got = taken.len() as u64;
    count_in_stats(
        &state,
        &v,
        MessageCounts {
            get: got,
            get_empty: u64::from(got == 0),
            ack: if mode == AckMode::Ack { got } else { 0 },
            ..Default::default()
        },
    );
    // Settled together, once every message is taken (so a requeue does not hand the same
    // message out again within one request).
    match mode {
        AckMode::AckRequeue | AckMode::RejectRequeue => queue.requeue(taken),
        AckMode::Ack => queue.settle(taken),
        AckMode::Reject => queue.discard(taken),
    }
    Ok(Json(Value::Array(out)))
}

/// `POST /api/queues/{vhost}/{name}/move` with `{"destination": queue}`: moves the messages
/// that are ready now to `destination` through the default exchange (as RabbitMQ's
/// shovel-based "move messages" does), answering `{"moved": n}`. Each batch is taken
/// unacknowledged, published, made as durable as a confirm would make it, and only then
/// acknowledged at the source: a crash in between leaves a message in both queues, never
/// in neither. A message the destination refuses (`x-overflow: reject-publish`) stays in
/// the source and ends the move.
async fn move_messages(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let body = body_json(&body)?;
    let destination = body
        .get("destination")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ApiError::bad_request("destination is required"))?
        .to_string();
    if destination == name {
        return Err(ApiError::bad_request(
            "destination must be another queue than the source",
        ));
    }
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Read,
        ResourceKind::Queue,
        &name,
    )?;
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Write,
        ResourceKind::Exchange,
        "amq.default",
    )?;
    let source = find(&v, &name)?;
    find(&v, &destination)?;
    // Only what is there now: messages published during the move stay where they are.
    let mut left = source.message_count() as usize;
    let mut moved = 0u64;
    while left > 0 {
        let mut taken = Vec::new();
        let mut confirm_after = None;
        let mut refused = None;
        while taken.len() < MOVE_BATCH.min(left) {
            let Some((entry, msg, _)) = source.get(false) else {
                left = 0;
                break;
            };
            let copy = Arc::new(
                Message::new(
                    "",
                    destination.as_str(),
                    msg.properties_raw.clone(),
                    msg.body.clone(),
                )
                .with_sender_selected(),
            );
            let outcome = match v.publish(&copy, &mut Default::default(), &mut Vec::new()) {
                Ok(o) => o,
                Err(e) => {
                    // Not yet durable elsewhere: back to the source, nothing settled.
                    source.requeue(taken.into_iter().chain([entry]));
                    return Err(e.into());
                }
            };
            if outcome.unroutable || outcome.rejected {
                refused = Some(entry);
                break;
            }
            confirm_after = confirm_after.max(outcome.confirm_after);
            taken.push(entry);
        }
        left = left.saturating_sub(taken.len());
        if let Err(e) = durable(&state, confirm_after).await {
            source.requeue(taken);
            return Err(e);
        }
        moved += taken.len() as u64;
        source.settle(taken);
        if let Some(entry) = refused {
            source.requeue([entry]);
            break;
        }
    }
    Ok(Json(json!({ "moved": moved })))
}

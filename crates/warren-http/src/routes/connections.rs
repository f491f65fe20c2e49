//! Connections, channels and consumers: listing (paged), one by name, closing. Monitors
//! and administrators see every connection; other management users see their own.

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use warren_core::connections::ConnectionSnapshot;
use warren_core::queue::ConsumerInfo;
use warren_core::stats::get as read;

use super::{listed_vhosts, no_content, Params, Routes, St};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::table_to_json;
use crate::query::ListQuery;
use crate::sampler::{self, f, Key, DELIVERY_FIELDS};
use crate::state::ApiState;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/connections", get(list_connections))
        .route(
            "/connections/{name}",
            get(get_connection).delete(close_connection),
        )
        .route("/connections/{name}/channels", get(connection_channels))
        .route(
            "/connections/username/{user}",
            get(user_connections).delete(close_user_connections),
        )
        .route("/vhosts/{vhost}/connections", get(vhost_connections))
        .route("/channels", get(list_channels))
        .route("/channels/{name}", get(get_channel))
        .route("/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/consumers", get(list_consumers))
        .route("/consumers/{vhost}", get(vhost_consumers))
}

/// The connections the caller may see, optionally of one vhost or user.
fn visible(
    state: &ApiState,
    caller: &Caller,
    vhost: Option<&str>,
    user: Option<&str>,
) -> Vec<ConnectionSnapshot> {
    let mut all = state.broker.connections().list();
    all.retain(|c| {
        (caller.is_monitor() || c.info.user == caller.name())
            && vhost.is_none_or(|v| c.info.vhost == v)
            && user.is_none_or(|u| c.info.user == u)
    });
    all
}

fn connection_json(state: &ApiState, c: &ConnectionSnapshot, stats: bool) -> Value {
    let i = &c.info;
    let mut v = json!({
        "name": i.name,
        "node": state.node(),
        "type": "network",
        "vhost": i.vhost,
        "user": i.user,
        "user_who_performed_action": i.user,
        "protocol": i.protocol,
        "host": i.host,
        "port": i.port,
        "peer_host": i.peer_host,
        "peer_port": i.peer_port,
        "ssl": i.ssl,
        "auth_mechanism": i.auth_mechanism,
        "timeout": i.timeout,
        "frame_max": i.frame_max,
        "channel_max": i.channel_max,
        "channels": c.state.channels().len(),
        "state": "running",
        "connected_at": i.connected_at,
        "client_properties": table_to_json(&i.client_properties),
    });
    // RabbitMQ 3.10: a client's `connection_name` property is shown as
    // `user_provided_name`, and the field is absent when the client gave none.
    if let Some(given) = v["client_properties"]["connection_name"].as_str() {
        let given = given.to_string();
        v["user_provided_name"] = Value::String(given);
    }
    if stats {
        let point = sampler::connection_point(&c.state);
        let rates = state.rates.rates(&Key::Connection(c.id));
        if let Value::Object(m) = &mut v {
            m.extend(sampler::with_details(
                &point,
                &rates,
                &[f::RECV_OCT, f::SEND_OCT],
            ));
        }
    }
    v
}

fn list(state: &ApiState, items: Vec<ConnectionSnapshot>, q: &Params) -> ApiResult<Json<Value>> {
    let query = ListQuery::parse(q)?;
    let page = query.respond_lazy(
        items,
        |c| c.info.name.clone(),
        |a, b| (&a.info.vhost, &a.info.name).cmp(&(&b.info.vhost, &b.info.name)),
        |c| connection_json(state, c, query.stats()),
    )?;
    Ok(Json(page))
}

async fn list_connections(
    State(state): St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list(&state, visible(&state, &caller, None, None), &q)
}

async fn vhost_connections(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vhost): Path<String>,
    q: Params,
) -> ApiResult<Json<Value>> {
    listed_vhosts(&state, &caller, Some(&vhost))?;
    list(&state, visible(&state, &caller, Some(&vhost), None), &q)
}

async fn user_connections(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    q: Params,
) -> ApiResult<Json<Value>> {
    if user != caller.name() {
        caller.require_monitor()?;
    }
    list(&state, visible(&state, &caller, None, Some(&user)), &q)
}

fn find(state: &ApiState, caller: &Caller, name: &str) -> ApiResult<ConnectionSnapshot> {
    visible(state, caller, None, None)
        .into_iter()
        .find(|c| c.info.name == name)
        .ok_or_else(ApiError::not_found)
}

async fn get_connection(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find(&state, &caller, &name)?;
    Ok(Json(connection_json(&state, &c, true)))
}

/// The reason a client sees: the `X-Reason` header, else RabbitMQ's default text.
fn reason(headers: &HeaderMap) -> String {
    headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .to_string()
}

async fn close_connection(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let c = find(&state, &caller, &name)?;
    if c.info.user != caller.name() {
        caller.require_admin()?;
    }
    let why = reason(&headers);
    tracing::info!(connection = %name, by = %caller.name(), reason = %why, "closing connection (management API)");
    state
        .broker
        .connections()
        .close_matching(|i| i.name == name, &why);
    Ok(no_content())
}

async fn close_user_connections(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if user != caller.name() {
        caller.require_admin()?;
    }
    let why = reason(&headers);
    let n = state
        .broker
        .connections()
        .close_matching(|i| i.user == user, &why);
    tracing::info!(%user, closed = n, by = %caller.name(), reason = %why, "closing a user's connections (management API)");
    Ok(no_content())
}

// ----- channels -----

fn channel_name(c: &ConnectionSnapshot, number: u16) -> String {
    format!("{} ({number})", c.info.name)
}

fn channels_of(state: &ApiState, c: &ConnectionSnapshot, stats: bool) -> Vec<Value> {
    let mut channels = c.state.channels();
    channels.sort_by_key(|(n, _)| *n);
    channels
        .iter()
        .map(|(number, s)| {
            let mut v = json!({
                "name": channel_name(c, *number),
                "number": number,
                "node": state.node(),
                "vhost": c.info.vhost,
                "user": c.info.user,
                "user_who_performed_action": c.info.user,
                "connection_details": {
                    "name": c.info.name,
                    "peer_host": c.info.peer_host,
                    "peer_port": c.info.peer_port,
                },
                "state": "running",
                "consumer_count": read(&s.consumer_count),
                "confirm": read(&s.confirm_mode) == 1,
                "transactional": read(&s.transactional) == 1,
                "prefetch_count": read(&s.prefetch_count),
                "global_prefetch_count": read(&s.global_prefetch_count),
                "messages_unacknowledged": read(&s.messages_unacknowledged),
                "messages_unconfirmed": read(&s.messages_unconfirmed),
                "messages_uncommitted": read(&s.messages_uncommitted),
                "acks_uncommitted": read(&s.acks_uncommitted),
            });
            if stats {
                let point = sampler::channel_point(s);
                let rates = state.rates.rates(&Key::Channel(c.id, *number));
                let mut ms: Map<String, Value> =
                    sampler::with_details(&point, &rates, &DELIVERY_FIELDS);
                ms.extend(sampler::with_details(&point, &rates, &[f::DROP_UNROUTABLE]));
                v["message_stats"] = Value::Object(ms);
            }
            v
        })
        .collect()
}

fn channel_list(
    state: &ApiState,
    conns: Vec<ConnectionSnapshot>,
    q: &Params,
) -> ApiResult<Json<Value>> {
    let query = ListQuery::parse(q)?;
    let items = conns
        .iter()
        .flat_map(|c| channels_of(state, c, query.stats()))
        .collect();
    Ok(Json(query.respond(items, &["name"])?))
}

async fn list_channels(
    State(state): St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Value>> {
    channel_list(&state, visible(&state, &caller, None, None), &q)
}

async fn vhost_channels(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vhost): Path<String>,
    q: Params,
) -> ApiResult<Json<Value>> {
    listed_vhosts(&state, &caller, Some(&vhost))?;
    channel_list(&state, visible(&state, &caller, Some(&vhost), None), &q)
}

async fn connection_channels(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Params,
) -> ApiResult<Json<Value>> {
    let c = find(&state, &caller, &name)?;
    channel_list(&state, vec![c], &q)
}

async fn get_channel(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    visible(&state, &caller, None, None)
        .iter()
        .flat_map(|c| channels_of(&state, c, true))
        .find(|ch| ch["name"] == name.as_str())
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

// ----- consumers -----

/// Open connections by id, to describe consumers' channels.
pub(super) fn connections_by_id(state: &ApiState) -> HashMap<u64, ConnectionSnapshot> {
    state
        .broker
        .connections()
        .list()
        .into_iter()
        .map(|c| (c.id, c))
        .collect()
}

/// One consumer as `/api/consumers` and a queue's `consumer_details` show it.
pub(super) fn consumer_json(
    state: &ApiState,
    conns: &HashMap<u64, ConnectionSnapshot>,
    vhost: &str,
    queue: &str,
    c: &ConsumerInfo,
) -> Value {
    let details = conns.get(&c.connection_id).map_or(json!({}), |conn| {
        json!({
            "name": channel_name(conn, c.channel),
            "number": c.channel,
            "connection_name": conn.info.name,
            "peer_host": conn.info.peer_host,
            "peer_port": conn.info.peer_port,
            "user": conn.info.user,
            "node": state.node(),
        })
    });
    let mut arguments = Map::new();
    if c.priority != 0 {
        arguments.insert("x-priority".into(), json!(c.priority));
    }
    json!({
        "consumer_tag": &*c.tag,
        "exclusive": c.exclusive,
        "ack_required": !c.no_ack,
        "prefetch_count": c.prefetch,
        "active": c.active,
        "activity_status": if c.active { "up" } else { "waiting" },
        "arguments": arguments,
        "queue": {"name": queue, "vhost": vhost},
        "channel_details": details,
    })
}

fn consumers(state: &ApiState, caller: &Caller, vhost: Option<&str>) -> ApiResult<Vec<Value>> {
    let vhosts = listed_vhosts(state, caller, vhost)?;
    let conns = connections_by_id(state);
    let mut out = Vec::new();
    for v in vhosts {
        for q in v.queues() {
            for c in q.consumer_list() {
                out.push(consumer_json(state, &conns, &v.name, q.name(), &c));
            }
        }
    }
    Ok(out)
}

async fn list_consumers(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(consumers(&state, &caller, None)?)))
}

async fn vhost_consumers(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(consumers(
        &state,
        &caller,
        Some(&vhost),
    )?)))
}

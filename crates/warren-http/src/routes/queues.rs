//! Queues: list (all, per vhost; paged, with message counts and rates), one (with its
//! consumers), declare (PUT), delete (`if-empty`, `if-unused`), purge (DELETE .../contents)
//! and the bindings a queue is the destination of.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use warren_core::access::{Perm, ResourceKind};
use warren_core::{Destination, Queue, QueueSpec, VHost};

use super::bindings::binding_json;
use super::{body_json, listed_vhosts, no_content, put_answer, usable_vhost, Params, Routes, St};
use crate::auth::{require_resource, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{bool_field, json_to_table, table_to_json};
use crate::query::ListQuery;
use crate::sampler::{self, f, Key, QUEUE_FIELDS};
use crate::state::ApiState;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/queues", get(list_all))
        .route("/queues/{vhost}", get(list_vhost))
        .route(
            "/queues/{vhost}/{name}",
            get(get_one).put(declare).delete(delete_queue),
        )
        .route("/queues/{vhost}/{name}/bindings", get(bindings))
        .route("/queues/{vhost}/{name}/contents", delete(purge))
}

fn policy_definition(v: &VHost, policy: &Option<String>) -> Value {
    policy
        .as_ref()
        .and_then(|name| v.policies().into_iter().find(|p| &p.name == name))
        .map_or_else(|| json!({}), |p| table_to_json(&p.definition))
}

pub(super) fn queue_json(state: &ApiState, v: &VHost, q: &Arc<Queue>, query: &ListQuery) -> Value {
    let s = q.snapshot();
    let policy = v.queue_policy(q.name());
    let mut m = Map::new();
    m.insert("name".into(), json!(q.name()));
    m.insert("vhost".into(), json!(v.name));
    m.insert("type".into(), json!("classic"));
    m.insert("durable".into(), json!(q.spec.durable));
    m.insert("auto_delete".into(), json!(q.spec.auto_delete));
    m.insert("exclusive".into(), json!(q.spec.exclusive_owner.is_some()));
    m.insert("arguments".into(), table_to_json(&q.spec.arguments));
    m.insert("node".into(), json!(state.node()));
    m.insert("state".into(), json!("running"));
    m.insert(
        "effective_policy_definition".into(),
        policy_definition(v, &policy),
    );
    m.insert("policy".into(), json!(policy));
    m.insert("operator_policy".into(), Value::Null);
    m.insert("exclusive_consumer_tag".into(), Value::Null);
    m.insert("consumers".into(), json!(s.consumers));
    if query.queue_totals() {
        let point = sampler::queue_point(&s);
        let rates = state
            .rates
            .rates(&Key::Queue(v.name.clone(), q.name().to_string()));
        m.extend(sampler::with_details(
            &point,
            &rates,
            &[f::MESSAGES, f::MESSAGES_READY, f::MESSAGES_UNACKED],
        ));
        m.insert(
            "message_bytes".into(),
            json!(s.ready_bytes + s.unacked_bytes),
        );
        m.insert("message_bytes_ready".into(), json!(s.ready_bytes));
        m.insert(
            "message_bytes_unacknowledged".into(),
            json!(s.unacked_bytes),
        );
        m.insert("message_bytes_ram".into(), json!(s.ready_bytes_ram));
        if query.stats() {
            m.insert(
                "message_stats".into(),
                Value::Object(sampler::with_details(&point, &rates, &QUEUE_FIELDS)),
            );
        }
    }
    Value::Object(m)
}

fn list(
    state: &ApiState,
    caller: &Caller,
    vhost: Option<&str>,
    q: &Params,
) -> ApiResult<Json<Value>> {
    let query = ListQuery::parse(q)?;
    let mut items = Vec::new();
    for v in listed_vhosts(state, caller, vhost)? {
        for queue in v.queues() {
            items.push((Arc::clone(&v), queue));
        }
    }
    let page = query.respond_lazy(
        items,
        |(_, q)| q.name().to_string(),
        |(va, a), (vb, b)| (&va.name, a.name()).cmp(&(&vb.name, b.name())),
        |(v, queue)| queue_json(state, v, queue, &query),
    )?;
    Ok(Json(page))
}

async fn list_all(
    State(state): St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list(&state, &caller, None, &q)
}

async fn list_vhost(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vhost): Path<String>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list(&state, &caller, Some(&vhost), &q)
}

pub(super) fn find(v: &VHost, name: &str) -> ApiResult<Arc<Queue>> {
    v.find_queue(name).ok_or_else(ApiError::not_found)
}

async fn get_one(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let q = find(&v, &name)?;
    let mut out = queue_json(&state, &v, &q, &ListQuery::default());
    let conns = super::connections::connections_by_id(&state);
    let consumers: Vec<Value> = q
        .consumer_list()
        .iter()
        .map(|c| super::connections::consumer_json(&state, &conns, &v.name, q.name(), c))
        .collect();
    out["consumer_details"] = Value::Array(consumers);
    Ok(Json(out))
}

async fn declare(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let body = body_json(&body)?;
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Configure,
        ResourceKind::Queue,
        &name,
    )?;
    if bool_field(&body, "exclusive") == Some(true) {
        // An exclusive queue belongs to the connection that declared it; an HTTP request
        // has none that would outlive it.
        return Err(ApiError::bad_request(
            "exclusive queues cannot be declared over HTTP: declare them on the connection that owns them",
        ));
    }
    if name.is_empty() || name.starts_with("amq.") {
        return Err(ApiError::bad_request(format!(
            "queue name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    warren_core::vhost::check_queue_name(&name)?;
    let arguments = json_to_table(body.get("arguments").unwrap_or(&Value::Null))
        .ok_or_else(|| ApiError::bad_request("arguments must be an object"))?;
    let spec = QueueSpec {
        name: name.clone(),
        durable: bool_field(&body, "durable").unwrap_or(true),
        exclusive_owner: None,
        auto_delete: bool_field(&body, "auto_delete").unwrap_or(false),
        arguments,
    };
    let declared = v.declare_queue(spec, false, 0)?;
    Ok(put_answer(declared.created))
}

async fn delete_queue(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
    q: Params,
) -> ApiResult<Response> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Configure,
        ResourceKind::Queue,
        &name,
    )?;
    let queue = find(&v, &name)?;
    let flag = |k: &str| q.get(k).is_some_and(|s| s == "true");
    // The management API may delete an exclusive queue, as RabbitMQ's does.
    let owner = queue.spec.exclusive_owner.unwrap_or(0);
    v.delete_queue(&name, flag("if-unused"), flag("if-empty"), owner)?;
    Ok(no_content())
}

async fn purge(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Read,
        ResourceKind::Queue,
        &name,
    )?;
    let queue = find(&v, &name)?;
    queue.purge();
    Ok(no_content())
}

async fn bindings(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    find(&v, &name)?;
    let dest = Destination::Queue(name.clone());
    let mut list: Vec<_> = v
        .bindings(true)
        .into_iter()
        .filter(|b| b.destination == dest)
        .collect();
    list.sort_by(|a, b| {
        (!a.source.is_empty(), &a.source, &a.routing_key).cmp(&(
            !b.source.is_empty(),
            &b.source,
            &b.routing_key,
        ))
    });
    Ok(Json(Value::Array(
        list.iter().map(|b| binding_json(&vhost, b)).collect(),
    )))
}

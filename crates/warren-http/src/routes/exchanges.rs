//! Exchanges: list (all, per vhost; paged), one, declare (PUT), delete, and the bindings
//! they are the source or destination of. The default exchange is named "" in lists and
//! `amq.default` in paths, as in RabbitMQ.

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_core::access::{Perm, ResourceKind};
use warren_core::vhost::ExchangeView;
use warren_core::{Destination, ExchangeKind, ExchangeSpec};

use super::bindings::binding_json;
use super::{body_json, listed_vhosts, no_content, put_answer, usable_vhost, Params, Routes, St};
use crate::auth::{require_resource, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{bool_field, json_to_table, table_to_json};
use crate::query::ListQuery;
use crate::sampler::{self, Key, EXCHANGE_FIELDS};
use crate::state::ApiState;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/exchanges", get(list_all))
        .route("/exchanges/{vhost}", get(list_vhost))
        .route(
            "/exchanges/{vhost}/{name}",
            get(get_one).put(declare).delete(delete),
        )
        .route(
            "/exchanges/{vhost}/{name}/bindings/source",
            get(bindings_source),
        )
        .route(
            "/exchanges/{vhost}/{name}/bindings/destination",
            get(bindings_destination),
        )
}

/// A path's exchange name: `amq.default` is the default exchange.
pub(super) fn path_exchange(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

pub(super) fn exchange_json(state: &ApiState, vhost: &str, x: &ExchangeView, stats: bool) -> Value {
    let mut v = json!({
        "name": x.spec.name,
        "vhost": vhost,
        "type": x.spec.kind.as_str(),
        "durable": x.spec.durable,
        "auto_delete": x.spec.auto_delete,
        "internal": x.spec.internal,
        "arguments": table_to_json(&x.spec.arguments),
        "user_who_performed_action": "rmq-internal",
    });
    if let Some(p) = &x.policy {
        v["policy"] = json!(p);
    }
    if stats {
        let point = sampler::exchange_point(x);
        let rates = state
            .rates
            .rates(&Key::Exchange(vhost.to_string(), x.spec.name.clone()));
        v["message_stats"] = Value::Object(sampler::with_details(&point, &rates, &EXCHANGE_FIELDS));
    }
    v
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
        for x in v.exchanges() {
            items.push((v.name.clone(), x));
        }
    }
    let page = query.respond_lazy(
        items,
        |(_, x)| x.spec.name.clone(),
        |(va, a), (vb, b)| (va, &a.spec.name).cmp(&(vb, &b.spec.name)),
        |(v, x)| exchange_json(state, v, x, query.stats()),
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

async fn get_one(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let x = v
        .exchange_view(path_exchange(&name))
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(exchange_json(&state, &vhost, &x, true)))
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
        ResourceKind::Exchange,
        &name,
    )?;
    let kind_name = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("[{key_missing,type}]"))?;
    let kind = ExchangeKind::parse(kind_name)
        .ok_or_else(|| ApiError::bad_request(format!("unknown exchange type '{kind_name}'")))?;
    let arguments = json_to_table(body.get("arguments").unwrap_or(&Value::Null))
        .ok_or_else(|| ApiError::bad_request("arguments must be an object"))?;
    let spec = ExchangeSpec {
        name: name.clone(),
        kind,
        durable: bool_field(&body, "durable").unwrap_or(true),
        auto_delete: bool_field(&body, "auto_delete").unwrap_or(false),
        internal: bool_field(&body, "internal").unwrap_or(false),
        arguments,
    };
    let existed = v.exchange_exists(&name);
    v.declare_exchange(spec, false)?;
    Ok(put_answer(!existed))
}

async fn delete(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
    q: Params,
) -> ApiResult<Response> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let name = path_exchange(&name).to_string();
    require_resource(
        &state,
        &caller,
        &vhost,
        Perm::Configure,
        ResourceKind::Exchange,
        &name,
    )?;
    if !v.exchange_exists(&name) {
        return Err(ApiError::not_found());
    }
    let if_unused = q.get("if-unused").is_some_and(|s| s == "true");
    v.delete_exchange(&name, if_unused)?;
    Ok(no_content())
}

async fn bindings_source(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    let name = path_exchange(&name);
    if !v.exchange_exists(name) {
        return Err(ApiError::not_found());
    }
    let items = v
        .bindings(name.is_empty())
        .iter()
        .filter(|b| b.source == name)
        .map(|b| binding_json(&vhost, b))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn bindings_destination(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = usable_vhost(&state, &caller, &vhost)?;
    if !v.exchange_exists(&name) {
        return Err(ApiError::not_found());
    }
    let dest = Destination::Exchange(name.clone());
    let items = v
        .bindings(false)
        .iter()
        .filter(|b| b.destination == dest)
        .map(|b| binding_json(&vhost, b))
        .collect();
    Ok(Json(Value::Array(items)))
}

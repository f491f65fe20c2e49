//! Virtual hosts and their limits. Creating a vhost grants its creator full permissions
//! on it, as RabbitMQ 3.10's management plugin does.

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_core::limits::VHostLimits;
use warren_core::persist::VHostMeta;
use warren_core::VHost;

use super::users::parse_tags;
use super::{body_json, no_content, put_answer, vhost, Params, Routes, St};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_value, table_to_json};
use crate::query::ListQuery;
use crate::sampler::{self, f, Key, DELIVERY_FIELDS, TOTALS_FIELDS};
use crate::state::ApiState;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/vhosts", get(list))
        .route(
            "/vhosts/{vhost}",
            get(get_one).put(put_vhost).delete(delete_vhost),
        )
        .route("/vhost-limits", get(all_limits))
        .route("/vhost-limits/{vhost}", get(one_limits))
        .route(
            "/vhost-limits/{vhost}/{kind}",
            put(set_limit).delete(clear_limit),
        )
}

/// The vhosts a caller lists: monitors all, others those they have permissions in.
fn listable(state: &ApiState, caller: &Caller, v: &VHost) -> bool {
    caller.is_monitor() || crate::auth::can_see_vhost(state, caller, &v.name)
}

fn vhost_json(state: &ApiState, v: &VHost, stats: bool) -> Value {
    let meta = v.meta();
    let queue_type = meta
        .default_queue_type
        .clone()
        .unwrap_or_else(|| "classic".into());
    let mut out = json!({
        "name": v.name,
        "description": meta.description,
        "tags": meta.tags,
        "default_queue_type": queue_type,
        "metadata": {
            "description": meta.description,
            "tags": meta.tags,
            "default_queue_type": queue_type,
        },
        "tracing": false,
        "cluster_state": {state.node(): "running"},
    });
    if stats {
        let mut point = [0u64; sampler::FIELDS.len()];
        for q in v.queues() {
            let p = sampler::queue_point(&q.snapshot());
            for i in TOTALS_FIELDS {
                point[i] += p[i];
            }
        }
        let counts = sampler::counts_point(&v.retired_counts());
        for i in DELIVERY_FIELDS {
            point[i] += counts[i];
        }
        for c in state.broker.connections().list() {
            if c.info.vhost == v.name {
                let cp = sampler::connection_point(&c.state);
                point[f::RECV_OCT] += cp[f::RECV_OCT];
                point[f::SEND_OCT] += cp[f::SEND_OCT];
                for (_, ch) in c.state.channels() {
                    let p = sampler::channel_point(&ch);
                    for i in DELIVERY_FIELDS {
                        point[i] += p[i];
                    }
                }
            }
        }
        let rates = state.rates.rates(&Key::VHost(v.name.clone()));
        if let Value::Object(m) = &mut out {
            m.extend(sampler::with_details(&point, &rates, &TOTALS_FIELDS));
            m.insert(
                "message_stats".into(),
                Value::Object(sampler::with_details(&point, &rates, &DELIVERY_FIELDS)),
            );
            m.extend(sampler::with_details(
                &point,
                &rates,
                &[f::RECV_OCT, f::SEND_OCT],
            ));
        }
    }
    out
}

async fn list(
    State(state): St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Value>> {
    let query = ListQuery::parse(&q)?;
    let items = state
        .broker
        .vhosts()
        .iter()
        .filter(|v| listable(&state, &caller, v))
        .map(|v| vhost_json(&state, v, query.stats()))
        .collect();
    Ok(Json(query.respond(items, &["name"])?))
}

async fn get_one(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = vhost(&state, &name)?;
    if !listable(&state, &caller, &v) {
        return Err(ApiError::unauthorized(
            "User not authorised to access virtual host",
        ));
    }
    Ok(Json(vhost_json(&state, &v, true)))
}

async fn put_vhost(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    let metadata = body.get("metadata");
    let field = |key: &str| body.get(key).or_else(|| metadata.and_then(|m| m.get(key)));
    let meta = VHostMeta {
        description: field("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        tags: parse_tags(field("tags"))?,
        default_queue_type: field("default_queue_type")
            .and_then(Value::as_str)
            .filter(|t| *t != "undefined")
            .map(str::to_string),
    };
    if state.broker.vhost(&name).is_some() {
        state.broker.update_vhost(&name, meta)?;
        return Ok(put_answer(false));
    }
    state.broker.create_vhost(&name, meta)?;
    // RabbitMQ 3.10: the user who creates a vhost over HTTP gets every permission on it.
    state
        .broker
        .access()
        .set_permissions(caller.name(), &name, ".*", ".*", ".*")?;
    tracing::info!(vhost = %name, by = %caller.name(), "vhost created (management API)");
    Ok(put_answer(true))
}

async fn delete_vhost(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    vhost(&state, &name)?;
    state.broker.delete_vhost(&name)?;
    tracing::info!(vhost = %name, by = %caller.name(), "vhost deleted (management API)");
    Ok(no_content())
}

fn limits_json(v: &VHost) -> Value {
    json!({"vhost": v.name, "value": table_to_json(&v.limits().to_definition())})
}

async fn all_limits(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    let items = state
        .broker
        .vhosts()
        .iter()
        .filter(|v| !v.limits().is_empty())
        .map(|v| limits_json(v))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn one_limits(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = vhost(&state, &name)?;
    if !listable(&state, &caller, &v) {
        return Err(ApiError::unauthorized(
            "User not authorised to access virtual host",
        ));
    }
    let items = if v.limits().is_empty() {
        vec![]
    } else {
        vec![limits_json(&v)]
    };
    Ok(Json(Value::Array(items)))
}

pub(crate) fn validation(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Validation failed\n\n{e}\n"))
}

fn change_limit(state: &ApiState, name: &str, kind: &str, value: Option<&Value>) -> ApiResult<()> {
    let v = vhost(state, name)?;
    let mut definition = v.limits().to_definition();
    definition.remove(kind);
    if let Some(value) = value {
        definition.insert(kind, json_to_value(value));
    }
    let limits = VHostLimits::from_definition(&definition).map_err(validation)?;
    v.set_limits(limits)?;
    Ok(())
}

async fn set_limit(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((name, kind)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    let value = body
        .get("value")
        .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))?;
    change_limit(&state, &name, &kind, Some(value))?;
    Ok(no_content())
}

async fn clear_limit(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((name, kind)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    change_limit(&state, &name, &kind, None)?;
    Ok(no_content())
}

//! Runtime parameters: the `vhost-limits` component (what RabbitMQ stores vhost limits
//! as) and global parameters (stored as given; `cluster_name` among them). Warren has no
//! other component (no shovel, no federation): setting one is refused with RabbitMQ's error
//! for an unknown component, so nothing is stored and ignored.

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_core::limits::VHostLimits;

use super::vhosts::validation;
use super::{body_json, no_content, put_answer, vhost, visible_vhosts, Routes, St};
use crate::auth::{can_see_vhost, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_table, table_to_json};
use crate::state::ApiState;

const LIMITS: &str = "vhost-limits";

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/parameters", get(list_all))
        .route("/parameters/{component}", get(list_component))
        .route("/parameters/{component}/{vhost}", get(list_component_vhost))
        .route(
            "/parameters/{component}/{vhost}/{name}",
            get(get_one).put(put_one).delete(delete_one),
        )
        .route("/global-parameters", get(list_global))
        .route(
            "/global-parameters/{name}",
            get(get_global).put(put_global).delete(delete_global),
        )
}

fn unknown_component(component: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Validation failed\n\ncomponent {component} not found\n"
    ))
}

fn limits_parameters(state: &ApiState, caller: &Caller, vh: Option<&str>) -> Vec<Value> {
    visible_vhosts(state, caller)
        .iter()
        .filter(|v| vh.is_none_or(|n| v.name == n))
        .filter(|v| !v.limits().is_empty())
        .map(|v| {
            json!({
                "value": table_to_json(&v.limits().to_definition()),
                "vhost": v.name,
                "component": LIMITS,
                "name": "limits",
            })
        })
        .collect()
}

async fn list_all(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_policymaker()?;
    Ok(Json(Value::Array(limits_parameters(&state, &caller, None))))
}

async fn list_component(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(component): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_policymaker()?;
    if component != LIMITS {
        return Ok(Json(json!([])));
    }
    Ok(Json(Value::Array(limits_parameters(&state, &caller, None))))
}

async fn list_component_vhost(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((component, vh)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_policymaker()?;
    vhost(&state, &vh)?;
    if component != LIMITS {
        return Ok(Json(json!([])));
    }
    Ok(Json(Value::Array(limits_parameters(
        &state,
        &caller,
        Some(&vh),
    ))))
}

fn require_parameter_access(state: &ApiState, caller: &Caller, vh: &str) -> ApiResult<()> {
    vhost(state, vh)?;
    if !caller.is_policymaker() || !can_see_vhost(state, caller, vh) {
        return Err(ApiError::unauthorized(
            "User not authorised to access object",
        ));
    }
    Ok(())
}

async fn get_one(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((component, vh, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    require_parameter_access(&state, &caller, &vh)?;
    if component != LIMITS || name != "limits" {
        return Err(ApiError::not_found());
    }
    limits_parameters(&state, &caller, Some(&vh))
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

async fn put_one(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((component, vh, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    if component != LIMITS {
        return Err(unknown_component(&component));
    }
    require_parameter_access(&state, &caller, &vh)?;
    if name != "limits" {
        return Err(validation(format!(
            "vhost-limits parameters are named 'limits', not '{name}'"
        )));
    }
    let body = body_json(&body)?;
    let value = body
        .get("value")
        .and_then(|v| v.is_object().then(|| json_to_table(v)).flatten())
        .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))?;
    let limits = VHostLimits::from_definition(&value).map_err(validation)?;
    let v = vhost(&state, &vh)?;
    let existed = !v.limits().is_empty();
    v.set_limits(limits)?;
    Ok(put_answer(!existed))
}

async fn delete_one(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((component, vh, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    require_parameter_access(&state, &caller, &vh)?;
    let v = vhost(&state, &vh)?;
    if component != LIMITS || name != "limits" || v.limits().is_empty() {
        return Err(ApiError::not_found());
    }
    v.set_limits(VHostLimits::default())?;
    Ok(no_content())
}

// ----- global parameters -----

pub(crate) fn global_parameters(state: &ApiState) -> Vec<Value> {
    state
        .broker
        .parameters()
        .list()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("internal"))
        .map(|(name, text)| {
            let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
            json!({"name": name, "value": value})
        })
        .collect()
}

async fn list_global(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(Value::Array(global_parameters(&state))))
}

async fn get_global(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let text = state
        .broker
        .parameters()
        .get(&name)
        .ok_or_else(ApiError::not_found)?;
    let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
    Ok(Json(json!({"name": name, "value": value})))
}

async fn put_global(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    let value = body
        .get("value")
        .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))?;
    if name == "cluster_name" && !value.is_string() {
        return Err(validation("cluster_name must be a string"));
    }
    let existed = state.broker.parameters().get(&name).is_some();
    state.broker.parameters().set(&name, &value.to_string())?;
    Ok(put_answer(!existed))
}

async fn delete_global(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if !state.broker.parameters().clear(&name)? {
        return Err(ApiError::not_found());
    }
    Ok(no_content())
}

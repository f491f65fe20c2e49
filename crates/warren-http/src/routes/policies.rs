//! Policies (the `policymaker` tag and permissions in the vhost), and operator policies,
//! which Warren does not implement: they list as none and are refused when set, rather
//! than stored and not applied.

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_core::policy::{ApplyTo, Policy};

use super::{body_json, no_content, put_answer, vhost, visible_vhosts, Routes, St};
use crate::auth::{can_see_vhost, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_table, table_to_json};
use crate::state::ApiState;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/policies", get(list_all))
        .route("/policies/{vhost}", get(list_vhost))
        .route(
            "/policies/{vhost}/{name}",
            get(get_one).put(put_policy).delete(delete_policy),
        )
        .route("/operator-policies", get(no_operator_policies))
        .route("/operator-policies/{vhost}", get(no_operator_policies))
        .route(
            "/operator-policies/{vhost}/{name}",
            get(no_operator_policy)
                .put(refuse_operator_policy)
                .delete(no_operator_policy),
        )
}

pub(crate) fn policy_json(vhost: &str, p: &Policy) -> Value {
    json!({
        "vhost": vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to.as_str(),
        "definition": table_to_json(&p.definition),
        "priority": p.priority,
    })
}

fn policies_of(state: &ApiState, caller: &Caller, vhost: Option<&str>) -> ApiResult<Vec<Value>> {
    let vhosts = match vhost {
        Some(name) => {
            let v = super::vhost(state, name)?;
            if !can_see_vhost(state, caller, name) {
                return Err(ApiError::unauthorized(
                    "User not authorised to access virtual host",
                ));
            }
            vec![v]
        }
        None => visible_vhosts(state, caller),
    };
    let mut out = Vec::new();
    for v in vhosts {
        let mut list = v.policies();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(list.iter().map(|p| policy_json(&v.name, p)));
    }
    Ok(out)
}

async fn list_all(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(policies_of(&state, &caller, None)?)))
}

async fn list_vhost(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vh): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(policies_of(&state, &caller, Some(&vh))?)))
}

async fn get_one(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = vhost(&state, &vh)?;
    if !can_see_vhost(&state, &caller, &vh) {
        return Err(ApiError::unauthorized(
            "User not authorised to access virtual host",
        ));
    }
    let p = v
        .policies()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(policy_json(&vh, &p)))
}

/// A policymaker with permissions in the vhost (RabbitMQ's words when not).
fn require_policy_access(state: &ApiState, caller: &Caller, vh: &str) -> ApiResult<()> {
    vhost(state, vh)?;
    if !caller.is_policymaker() || !can_see_vhost(state, caller, vh) {
        return Err(ApiError::unauthorized(
            "User not authorised to access object",
        ));
    }
    Ok(())
}

/// A policy from its JSON definition (the HTTP body or a definitions file).
pub(crate) fn policy_from_json(name: &str, body: &Value) -> ApiResult<Policy> {
    let pattern = body
        .get("pattern")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("[{key_missing,pattern}]"))?;
    let definition = body
        .get("definition")
        .and_then(|d| d.is_object().then(|| json_to_table(d)).flatten())
        .ok_or_else(|| ApiError::bad_request("[{key_missing,definition}]"))?;
    let apply_to = match body.get("apply-to").and_then(Value::as_str) {
        None => ApplyTo::All,
        // Every Warren queue is a classic queue.
        Some("classic_queues") => ApplyTo::Queues,
        Some(s) => ApplyTo::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Validation failed\n\n'{s}' is not a valid apply-to value (this broker has classic queues only)\n"
            ))
        })?,
    };
    let priority = match body.get("priority") {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_i64()
            .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| ApiError::bad_request("priority must be an integer"))?,
    };
    Ok(Policy::new(name, pattern, definition, apply_to, priority)?)
}

async fn put_policy(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    require_policy_access(&state, &caller, &vh)?;
    let body = body_json(&body)?;
    let policy = policy_from_json(&name, &body)?;
    let v = vhost(&state, &vh)?;
    let existed = v.policies().iter().any(|p| p.name == name);
    v.set_policy(policy)?;
    Ok(put_answer(!existed))
}

async fn delete_policy(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    require_policy_access(&state, &caller, &vh)?;
    if !vhost(&state, &vh)?.clear_policy(&name)? {
        return Err(ApiError::not_found());
    }
    Ok(no_content())
}

async fn no_operator_policies() -> Json<Value> {
    Json(json!([]))
}

async fn no_operator_policy() -> ApiError {
    ApiError::not_found()
}

async fn refuse_operator_policy() -> ApiError {
    ApiError::bad_request(
        "Validation failed\n\noperator policies are not supported by this broker (use policies)\n",
    )
}

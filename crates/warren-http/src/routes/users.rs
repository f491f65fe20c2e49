//! Users, permissions, topic permissions and user limits. Changing any of them takes the
//! `administrator` tag; reading others' takes it too, as in RabbitMQ.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_amqp::FieldTable;
use warren_core::access::password::PasswordHash;
use warren_core::access::topics::TopicPermission;
use warren_core::access::user_limits::UserLimits;
use warren_core::access::{AccessError, Permissions, UserRecord};

use super::{body_json, no_content, put_answer, vhost, Params, Routes, St};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_value, table_to_json};
use crate::query::ListQuery;
use crate::state::ApiState;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/users", get(list_users))
        .route("/users/without-permissions", get(without_permissions))
        .route("/users/bulk-delete", post(bulk_delete))
        .route(
            "/users/{user}",
            get(get_user).put(put_user).delete(delete_user),
        )
        .route("/users/{user}/permissions", get(user_permissions))
        .route(
            "/users/{user}/topic-permissions",
            get(user_topic_permissions),
        )
        .route("/permissions", get(all_permissions))
        .route(
            "/permissions/{vhost}/{user}",
            get(get_permission)
                .put(set_permission)
                .delete(clear_permission),
        )
        .route("/vhosts/{vhost}/permissions", get(vhost_permissions))
        .route("/topic-permissions", get(all_topic_permissions))
        .route(
            "/topic-permissions/{vhost}/{user}",
            get(get_topic_permission)
                .put(set_topic_permission)
                .delete(clear_topic_permission),
        )
        .route(
            "/vhosts/{vhost}/topic-permissions",
            get(vhost_topic_permissions),
        )
        .route("/user-limits", get(all_user_limits))
        .route("/user-limits/{user}", get(one_user_limits))
        .route(
            "/user-limits/{user}/{kind}",
            put(set_user_limit).delete(clear_user_limit),
        )
}

pub(crate) fn user_json(u: &UserRecord) -> Value {
    let (hash, algorithm) = match &u.hash {
        Some(h) => (h.to_base64(), h.algorithm.name()),
        None => (String::new(), "rabbit_password_hashing_sha256"),
    };
    json!({
        "name": u.name,
        "password_hash": hash,
        "hashing_algorithm": algorithm,
        "tags": u.tags,
        "limits": table_to_json(&u.limits.to_definition()),
    })
}

/// Tags as RabbitMQ takes them: a comma-separated string or a list of strings.
pub(crate) fn parse_tags(v: Option<&Value>) -> ApiResult<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("tags must be strings"))
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request("tags must be a string or a list")),
    }
}

/// The password of a user definition: `password`, or `password_hash` (with an optional
/// `hashing_algorithm`; an empty hash disables password login). `None`: neither is given.
pub(crate) fn password_of(body: &Value) -> ApiResult<Option<Option<PasswordHash>>> {
    if let Some(p) = body.get("password").and_then(Value::as_str) {
        return Ok(Some(Some(PasswordHash::new(p))));
    }
    match body.get("password_hash").and_then(Value::as_str) {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(hash) => {
            let algorithm = body
                .get("hashing_algorithm")
                .and_then(Value::as_str)
                .unwrap_or("rabbit_password_hashing_sha256");
            PasswordHash::from_base64(algorithm, hash)
                .map(|h| Some(Some(h)))
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

async fn list_users(
    State(state): St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let query = ListQuery::parse(&q)?;
    let items = state
        .broker
        .access()
        .users()
        .iter()
        .map(|u| user_json(u))
        .collect();
    Ok(Json(query.respond(items, &["name"])?))
}

async fn without_permissions(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let access = state.broker.access();
    let items = access
        .users()
        .iter()
        .filter(|u| access.user_permissions(&u.name).is_empty())
        .map(|u| user_json(u))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn bulk_delete(
    State(state): St,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    let users = body
        .get("users")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("users must be a list"))?;
    for u in users.iter().filter_map(Value::as_str) {
        match state.broker.access().delete_user(u) {
            Ok(()) | Err(AccessError::NoSuchUser(_)) => {}
            Err(e) => return Err(e.into()),
        }
        state.broker.close_user_connections(u);
    }
    Ok(no_content())
}

async fn get_user(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let u = state
        .broker
        .access()
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&u)))
}

async fn put_user(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    if body.get("tags").is_none() {
        return Err(ApiError::bad_request("tags_not_present"));
    }
    let tags = parse_tags(body.get("tags"))?;
    let password = password_of(&body)?;
    let created = state.broker.access().put_user(&user, password, tags)?;
    tracing::info!(%user, by = %caller.name(), created, "user set (management API)");
    Ok(put_answer(created))
}

async fn delete_user(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    state.broker.access().delete_user(&user)?;
    state.broker.close_user_connections(&user);
    tracing::info!(%user, by = %caller.name(), "user deleted (management API)");
    Ok(no_content())
}

// ----- permissions -----

fn permission_json(vhost: &str, user: &str, p: &Permissions) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "configure": p.configure.source(),
        "write": p.write.source(),
        "read": p.read.source(),
    })
}

fn every_permission(state: &ApiState) -> Vec<Value> {
    let access = state.broker.access();
    let mut out = Vec::new();
    for v in state.broker.vhosts() {
        for (user, p) in access.vhost_permissions(&v.name) {
            out.push(permission_json(&v.name, &user, &p));
        }
    }
    out
}

async fn all_permissions(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(Value::Array(every_permission(&state))))
}

async fn vhost_permissions(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vh): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    vhost(&state, &vh)?;
    let items = state
        .broker
        .access()
        .vhost_permissions(&vh)
        .iter()
        .map(|(u, p)| permission_json(&vh, u, p))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn user_permissions(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    state
        .broker
        .access()
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    let items = state
        .broker
        .access()
        .user_permissions(&user)
        .iter()
        .map(|(v, p)| permission_json(v, &user, p))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn get_permission(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let p = state
        .broker
        .access()
        .permissions(&vh, &user)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&vh, &user, &p)))
}

fn expression<'a>(body: &'a Value, key: &str) -> ApiResult<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("[{{key_missing,{key}}}]")))
}

async fn set_permission(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    vhost(&state, &vh)?;
    let access = state.broker.access();
    if access.user(&user).is_none() {
        return Err(ApiError::bad_request(format!(
            "user '{user}' does not exist"
        )));
    }
    let existed = access.permissions(&vh, &user).is_some();
    access.set_permissions(
        &user,
        &vh,
        expression(&body, "configure")?,
        expression(&body, "write")?,
        expression(&body, "read")?,
    )?;
    Ok(put_answer(!existed))
}

async fn clear_permission(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let access = state.broker.access();
    if access.permissions(&vh, &user).is_none() {
        return Err(ApiError::not_found());
    }
    access.clear_permissions(&user, &vh)?;
    Ok(no_content())
}

// ----- topic permissions -----

fn topic_json(vhost: &str, user: &str, t: &TopicPermission) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "exchange": t.exchange,
        "write": t.write_source,
        "read": t.read_source,
    })
}

fn topics_of_vhost(state: &ApiState, vh: &str) -> Vec<Value> {
    state
        .broker
        .access()
        .vhost_topic_permissions(vh)
        .iter()
        .map(|(u, t)| topic_json(vh, u, t))
        .collect()
}

async fn all_topic_permissions(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let items = state
        .broker
        .vhosts()
        .iter()
        .flat_map(|v| topics_of_vhost(&state, &v.name))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn vhost_topic_permissions(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(vh): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    vhost(&state, &vh)?;
    Ok(Json(Value::Array(topics_of_vhost(&state, &vh))))
}

async fn user_topic_permissions(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    state
        .broker
        .access()
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    let items = state
        .broker
        .access()
        .user_topic_permissions(&user)
        .iter()
        .map(|(v, t)| topic_json(v, &user, t))
        .collect();
    Ok(Json(Value::Array(items)))
}

fn topics_of(state: &ApiState, vh: &str, user: &str) -> Vec<Arc<TopicPermission>> {
    state
        .broker
        .access()
        .vhost_topic_permissions(vh)
        .into_iter()
        .filter(|(u, _)| u == user)
        .map(|(_, t)| t)
        .collect()
}

async fn get_topic_permission(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let list = topics_of(&state, &vh, &user);
    if list.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(
        list.iter().map(|t| topic_json(&vh, &user, t)).collect(),
    )))
}

async fn set_topic_permission(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    vhost(&state, &vh)?;
    if state.broker.access().user(&user).is_none() {
        return Err(ApiError::bad_request(format!(
            "user '{user}' does not exist"
        )));
    }
    let exchange = expression(&body, "exchange")?;
    let existed = topics_of(&state, &vh, &user)
        .iter()
        .any(|t| t.exchange == exchange);
    state.broker.access().set_topic_permissions(
        &user,
        &vh,
        exchange,
        expression(&body, "write")?,
        expression(&body, "read")?,
    )?;
    Ok(put_answer(!existed))
}

async fn clear_topic_permission(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vh, user)): Path<(String, String)>,
    q: Params,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if topics_of(&state, &vh, &user).is_empty() {
        return Err(ApiError::not_found());
    }
    let exchange = q.get("exchange").map(String::as_str);
    state
        .broker
        .access()
        .clear_topic_permissions(&user, &vh, exchange)?;
    Ok(no_content())
}

// ----- user limits -----

fn limits_json(u: &UserRecord) -> Value {
    json!({"user": u.name, "value": table_to_json(&u.limits.to_definition())})
}

async fn all_user_limits(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let items = state
        .broker
        .access()
        .users()
        .iter()
        .filter(|u| !u.limits.to_definition().is_empty())
        .map(|u| limits_json(u))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn one_user_limits(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let u = state
        .broker
        .access()
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    let items = if u.limits.to_definition().is_empty() {
        vec![]
    } else {
        vec![limits_json(&u)]
    };
    Ok(Json(Value::Array(items)))
}

fn change_limit(state: &ApiState, user: &str, kind: &str, value: Option<&Value>) -> ApiResult<()> {
    let u = state
        .broker
        .access()
        .user(user)
        .ok_or_else(|| ApiError::bad_request_terms(&["no_such_user", user]))?;
    let mut definition: FieldTable = u.limits.to_definition();
    definition.remove(kind);
    if let Some(v) = value {
        definition.insert(kind, json_to_value(v));
    }
    let limits = UserLimits::from_definition(&definition).map_err(ApiError::bad_request)?;
    state.broker.access().set_user_limits(user, limits)?;
    Ok(())
}

async fn set_user_limit(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((user, kind)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let body = body_json(&body)?;
    let value = body
        .get("value")
        .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))?;
    change_limit(&state, &user, &kind, Some(value))?;
    Ok(no_content())
}

async fn clear_user_limit(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((user, kind)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    change_limit(&state, &user, &kind, None)?;
    Ok(no_content())
}

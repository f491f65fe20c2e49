//! The API's routes, one module per area (RabbitMQ's paths under `/api`), and the helpers
//! they share: request bodies, the usual answers, vhost lookup and visibility.

mod bindings;
mod connections;
mod definitions_http;
mod exchanges;
mod health;
mod messages;
mod overview;
mod parameters;
mod policies;
pub(crate) use policies::policy_from_json;
mod queues;
mod users;
mod vhosts;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use serde_json::Value;
use warren_core::VHost;

use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

pub(crate) type St = State<Arc<ApiState>>;
pub(crate) type Params = Query<HashMap<String, String>>;
pub(crate) type Routes = Router<Arc<ApiState>>;

pub fn api(state: Arc<ApiState>) -> Routes {
    let authenticated = Router::new()
        .merge(overview::routes())
        .merge(health::routes())
        .merge(connections::routes())
        .merge(exchanges::routes())
        .merge(queues::routes())
        .merge(messages::routes())
        .merge(bindings::routes())
        .merge(vhosts::routes())
        .merge(users::routes())
        .merge(policies::routes())
        .merge(parameters::routes())
        .merge(definitions_http::routes())
        .route_layer(middleware::from_fn_with_state(state, auth::authenticate));
    Router::new()
        .nest("/api", authenticated.merge(overview::public_routes()))
        .fallback(crate::ui::fallback)
}

/// A JSON request body; an empty body is `{}`. Malformed JSON is RabbitMQ's 400.
pub(crate) fn body_json(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::bad_request("not_json"))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("not_json_object"));
    }
    Ok(v)
}

pub(crate) fn created() -> Response {
    StatusCode::CREATED.into_response()
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// 201 when the object was made, 204 when it existed (RabbitMQ's answers to PUT).
pub(crate) fn put_answer(was_new: bool) -> Response {
    if was_new {
        created()
    } else {
        no_content()
    }
}

pub(crate) fn vhost(state: &ApiState, name: &str) -> ApiResult<Arc<VHost>> {
    state.broker.vhost(name).ok_or_else(ApiError::not_found)
}

/// The vhost, if the caller may use it (see [`auth::require_vhost`]).
pub(crate) fn usable_vhost(state: &ApiState, caller: &Caller, name: &str) -> ApiResult<Arc<VHost>> {
    auth::require_vhost(state, caller, name)?;
    vhost(state, name)
}

/// The vhosts whose objects the caller sees in lists: all for monitors, else those it has
/// permissions in.
pub(crate) fn visible_vhosts(state: &ApiState, caller: &Caller) -> Vec<Arc<VHost>> {
    let mut all = state.broker.vhosts();
    all.retain(|v| auth::can_see_vhost(state, caller, &v.name));
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// The vhosts a list shows: one (when given, and visible) or every visible one.
pub(crate) fn listed_vhosts(
    state: &ApiState,
    caller: &Caller,
    only: Option<&str>,
) -> ApiResult<Vec<Arc<VHost>>> {
    match only {
        Some(name) => {
            let v = vhost(state, name)?;
            if !auth::can_see_vhost(state, caller, name) {
                return Err(ApiError::unauthorized(
                    "User not authorised to access virtual host",
                ));
            }
            Ok(vec![v])
        }
        None => Ok(visible_vhosts(state, caller)),
    }
}

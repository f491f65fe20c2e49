//! `/api/definitions` and `/api/definitions/{vhost}`: export (GET) and import (POST) of
//! RabbitMQ's definitions format; administrators only.

use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;

use super::{body_json, no_content, vhost, Params, Routes, St};
use crate::auth::Caller;
use crate::definitions::{self, Existing};
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/definitions", get(export).post(import))
        .route("/definitions/{vhost}", get(export_vhost).post(import_vhost))
}

fn download(body: serde_json::Value, q: &Params) -> Response {
    let mut response = Json(body).into_response();
    if let Some(name) = q.get("download").filter(|n| !n.contains(['"', '\r', '\n'])) {
        if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}

async fn export(
    State(state): St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Response> {
    caller.require_admin()?;
    Ok(download(
        definitions::export(&state.broker, &state.options.product_version),
        &q,
    ))
}

async fn export_vhost(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Params,
) -> ApiResult<Response> {
    caller.require_admin()?;
    vhost(&state, &name)?;
    let body = definitions::export_vhost(&state.broker, &name, &state.options.product_version)
        .ok_or_else(ApiError::not_found)?;
    Ok(download(body, &q))
}

async fn import(
    State(state): St,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let defs = body_json(&body)?;
    let before: Vec<String> = state
        .broker
        .vhosts()
        .iter()
        .map(|v| v.name.clone())
        .collect();
    let report = tokio::task::block_in_place(|| {
        definitions::import(&state.broker, &defs, None, Existing::Update)
    })
    .map_err(|e| ApiError::bad_request(e.0))?;
    // RabbitMQ 3.10: the importing user gets every permission on the vhosts it created.
    for v in state.broker.vhosts() {
        let access = state.broker.access();
        if !before.contains(&v.name) && access.permissions(&v.name, caller.name()).is_none() {
            access.set_permissions(caller.name(), &v.name, ".*", ".*", ".*")?;
        }
    }
    tracing::info!(applied = report.applied, skipped = report.skipped, by = %caller.name(), "definitions imported (management API)");
    Ok(no_content())
}

async fn import_vhost(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    vhost(&state, &name)?;
    let defs = body_json(&body)?;
    let report = tokio::task::block_in_place(|| {
        definitions::import(&state.broker, &defs, Some(&name), Existing::Update)
    })
    .map_err(|e| ApiError::bad_request(e.0))?;
    tracing::info!(vhost = %name, applied = report.applied, skipped = report.skipped, "definitions imported (management API)");
    Ok(no_content())
}

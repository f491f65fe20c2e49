//! Bindings: list (all, per vhost, between two objects), create (POST, answering with the
//! new binding's `properties_key` in `Location`), and delete by `properties_key`, the
//! identifier RabbitMQ's tools use to name one binding in a URL.

use axum::extract::{Extension, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warren_core::access::{Perm, ResourceKind};
use warren_core::vhost::BindingView;
use warren_core::Destination;

use super::exchanges::path_exchange;
use super::{body_json, listed_vhosts, no_content, usable_vhost, Params, Routes, St};
use crate::auth::{require_resource, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_table, table_to_json};
use crate::query::ListQuery;

pub(super) fn routes() -> Routes {
    Router::new()
        .route("/bindings", get(list_all))
        .route("/bindings/{vhost}", get(list_vhost))
        .route(
            "/bindings/{vhost}/e/{source}/q/{destination}",
            get(between_queue).post(create_queue),
        )
        .route(
            "/bindings/{vhost}/e/{source}/e/{destination}",
            get(between_exchange).post(create_exchange),
        )
        .route(
            "/bindings/{vhost}/e/{source}/q/{destination}/{props}",
            get(one_queue).delete(delete_queue),
        )
        .route(
            "/bindings/{vhost}/e/{source}/e/{destination}/{props}",
            get(one_exchange).delete(delete_exchange),
        )
}

/// The unreserved characters of RFC 3986 stay; everything else is `%XX`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unquote(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Names one binding among those between the same two objects: the quoted routing key
/// (`~` when it is empty) and, when there are arguments, `~` and a hash of them.
pub(super) fn properties_key(b: &BindingView) -> String {
    let key = if b.routing_key.is_empty() {
        "~".to_string()
    } else {
        quote(&b.routing_key)
    };
    if b.arguments.is_empty() {
        return key;
    }
    let mut encoded = BytesMut::new();
    b.arguments.encode(&mut encoded);
    let hash = Sha256::digest(&encoded);
    let tail = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash[..16]);
    format!("{key}~{tail}")
}

pub(super) fn binding_json(vhost: &str, b: &BindingView) -> Value {
    let (destination, kind) = match &b.destination {
        Destination::Queue(q) => (q, "queue"),
        Destination::Exchange(x) => (x, "exchange"),
    };
    json!({
        "source": b.source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": kind,
        "routing_key": b.routing_key,
        "arguments": table_to_json(&b.arguments),
        "properties_key": properties_key(b),
    })
}

fn list(
    state: &crate::state::ApiState,
    caller: &Caller,
    vhost: Option<&str>,
    q: &Params,
) -> ApiResult<Json<Value>> {
    let query = ListQuery::parse(q)?;
    let mut items = Vec::new();
    for v in listed_vhosts(state, caller, vhost)? {
        let mut bindings = v.bindings(true);
        sort_bindings(&mut bindings);
        items.extend(bindings.iter().map(|b| binding_json(&v.name, b)));
    }
    if query.page.is_none() && query.sort.is_none() && query.name.is_none() {
        return Ok(Json(Value::Array(items)));
    }
    Ok(Json(
        query.respond(items, &["vhost", "source", "destination"])?,
    ))
}

/// The default exchange's bindings first, then by source, destination, key.
fn sort_bindings(bindings: &mut [BindingView]) {
    bindings.sort_by(|a, b| {
        (
            !a.source.is_empty(),
            &a.source,
            a.destination.name(),
            &a.routing_key,
        )
            .cmp(&(
                !b.source.is_empty(),
                &b.source,
                b.destination.name(),
                &b.routing_key,
            ))
    });
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

fn destination(kind: &str, name: &str) -> Destination {
    if kind == "q" {
        Destination::Queue(name.to_string())
    } else {
        Destination::Exchange(name.to_string())
    }
}

fn between(
    state: &crate::state::ApiState,
    caller: &Caller,
    vhost: &str,
    source: &str,
    dest: &Destination,
) -> ApiResult<Vec<BindingView>> {
    let v = usable_vhost(state, caller, vhost)?;
    let source = path_exchange(source);
    let dest_exists = match dest {
        Destination::Queue(q) => v.find_queue(q).is_some(),
        Destination::Exchange(x) => v.exchange_exists(x),
    };
    if !v.exchange_exists(source) || !dest_exists {
        return Err(ApiError::not_found());
    }
    let mut out: Vec<BindingView> = v
        .bindings(source.is_empty())
        .into_iter()
        .filter(|b| b.source == source && &b.destination == dest)
        .collect();
    sort_bindings(&mut out);
    Ok(out)
}

async fn between_queue(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let list = between(&state, &caller, &vhost, &source, &destination("q", &dest))?;
    Ok(Json(Value::Array(
        list.iter().map(|b| binding_json(&vhost, b)).collect(),
    )))
}

async fn between_exchange(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let list = between(&state, &caller, &vhost, &source, &destination("e", &dest))?;
    Ok(Json(Value::Array(
        list.iter().map(|b| binding_json(&vhost, b)).collect(),
    )))
}

fn create(
    state: &crate::state::ApiState,
    caller: &Caller,
    vhost: &str,
    source: &str,
    dest: Destination,
    body: &Bytes,
) -> ApiResult<Response> {
    let v = usable_vhost(state, caller, vhost)?;
    let body = body_json(body)?;
    let routing_key = body
        .get("routing_key")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let arguments = json_to_table(body.get("arguments").unwrap_or(&Value::Null))
        .ok_or_else(|| ApiError::bad_request("arguments must be an object"))?;
    let source = path_exchange(source);
    let (kind, dest_kind) = match &dest {
        Destination::Queue(_) => ("q", ResourceKind::Queue),
        Destination::Exchange(_) => ("e", ResourceKind::Exchange),
    };
    require_resource(state, caller, vhost, Perm::Write, dest_kind, dest.name())?;
    require_resource(
        state,
        caller,
        vhost,
        Perm::Read,
        ResourceKind::Exchange,
        source,
    )?;
    let exists = match &dest {
        Destination::Queue(q) => v.find_queue(q).is_some(),
        Destination::Exchange(x) => v.exchange_exists(x),
    };
    if !v.exchange_exists(source) || !exists {
        return Err(ApiError::not_found());
    }
    let view = BindingView {
        source: source.to_string(),
        destination: dest.clone(),
        routing_key: routing_key.clone(),
        arguments: arguments.clone(),
    };
    let owner = match &dest {
        Destination::Queue(q) => v
            .find_queue(q)
            .and_then(|q| q.spec.exclusive_owner)
            .unwrap_or(0),
        Destination::Exchange(_) => 0,
    };
    v.bind(source, dest.clone(), &routing_key, arguments, owner)?;
    let location = format!(
        "/api/bindings/{}/e/{}/{kind}/{}/{}",
        quote(vhost),
        quote(source),
        quote(dest.name()),
        properties_key(&view)
    );
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

async fn create_queue(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    create(
        &state,
        &caller,
        &vhost,
        &source,
        destination("q", &dest),
        &body,
    )
}

async fn create_exchange(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    create(
        &state,
        &caller,
        &vhost,
        &source,
        destination("e", &dest),
        &body,
    )
}

fn find_one(
    state: &crate::state::ApiState,
    caller: &Caller,
    vhost: &str,
    source: &str,
    dest: &Destination,
    props: &str,
) -> ApiResult<BindingView> {
    between(state, caller, vhost, source, dest)?
        .into_iter()
        .find(|b| {
            // The key arrives encoded twice (`a.%2523`, as tools quote it), or once.
            let key = properties_key(b);
            key == props || unquote(&key) == props
        })
        .ok_or_else(ApiError::not_found)
}

async fn one_queue(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest, props)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let b = find_one(
        &state,
        &caller,
        &vhost,
        &source,
        &destination("q", &dest),
        &props,
    )?;
    Ok(Json(binding_json(&vhost, &b)))
}

async fn one_exchange(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest, props)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let b = find_one(
        &state,
        &caller,
        &vhost,
        &source,
        &destination("e", &dest),
        &props,
    )?;
    Ok(Json(binding_json(&vhost, &b)))
}

fn delete(
    state: &crate::state::ApiState,
    caller: &Caller,
    vhost: &str,
    source: &str,
    dest: Destination,
    props: &str,
) -> ApiResult<Response> {
    let b = find_one(state, caller, vhost, source, &dest, props)?;
    let dest_kind = match &dest {
        Destination::Queue(_) => ResourceKind::Queue,
        Destination::Exchange(_) => ResourceKind::Exchange,
    };
    require_resource(state, caller, vhost, Perm::Write, dest_kind, dest.name())?;
    require_resource(
        state,
        caller,
        vhost,
        Perm::Read,
        ResourceKind::Exchange,
        &b.source,
    )?;
    let v = usable_vhost(state, caller, vhost)?;
    let owner = match &dest {
        Destination::Queue(q) => v
            .find_queue(q)
            .and_then(|q| q.spec.exclusive_owner)
            .unwrap_or(0),
        Destination::Exchange(_) => 0,
    };
    v.unbind(&b.source, b.destination, &b.routing_key, b.arguments, owner)?;
    Ok(no_content())
}

async fn delete_queue(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest, props)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    delete(
        &state,
        &caller,
        &vhost,
        &source,
        destination("q", &dest),
        &props,
    )
}

async fn delete_exchange(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((vhost, source, dest, props)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    delete(
        &state,
        &caller,
        &vhost,
        &source,
        destination("e", &dest),
        &props,
    )
}

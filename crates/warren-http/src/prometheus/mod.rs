//! The Prometheus endpoint, RabbitMQ's `rabbitmq_prometheus` on its own listener (15692):
//! `/metrics` (aggregated: queue gauges summed), `/metrics/per-object` (one sample per
//! queue) and `/metrics/detailed?family=..&vhost=..` (the named families, prefixed
//! `rabbitmq_detailed_`). No authentication, as in RabbitMQ. A scrape reads the counters
//! on a blocking thread so that building a large answer never holds up the runtime's
//! workers, which carry the publishers.

mod channels;
mod collect;
pub mod exposition;
mod io;

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::ApiState;
use collect::Endpoint;
use exposition::Exposition;

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics endpoints as one router.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .route("/metrics/detailed", get(detailed))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .with_state(state)
}

async fn render(
    state: Arc<ApiState>,
    build: impl FnOnce(&ApiState) -> String + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || build(&state)).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn aggregated(State(state): State<Arc<ApiState>>) -> Response {
    render(state, |s| scrape(s, Endpoint::Aggregated)).await
}

async fn per_object(State(state): State<Arc<ApiState>>) -> Response {
    render(state, |s| scrape(s, Endpoint::PerObject)).await
}

fn scrape(state: &ApiState, endpoint: Endpoint) -> String {
    let mut e = Exposition::new("rabbitmq_");
    collect::identity(&mut e, state, endpoint);
    collect::core(&mut e, state, endpoint == Endpoint::PerObject);
    e.finish()
}

/// `family` may repeat; `vhost` limits the queue families to one vhost.
async fn detailed(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Response {
    let mut families = Vec::new();
    let mut vhost = None;
    for (key, value) in form_pairs(query.as_deref().unwrap_or("")) {
        match key.as_str() {
            "family" => families.push(value),
            "vhost" => vhost = Some(value),
            _ => {}
        }
    }
    render(state, move |s| {
        let mut identity = Exposition::new("rabbitmq_");
        collect::identity(&mut identity, s, Endpoint::Detailed);
        let mut e = Exposition::new("rabbitmq_detailed_");
        collect::detailed(&mut e, s, &families, vhost.as_deref());
        identity.finish() + &e.finish()
    })
    .await
}

/// `a=1&b=%2F` as decoded pairs (`+` is a space), repeated keys kept.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_repeat_and_decode() {
        assert_eq!(
            form_pairs("family=queue_metrics&family=queue_coarse_metrics&vhost=%2F&x=a+b"),
            vec![
                ("family".into(), "queue_metrics".into()),
                ("family".into(), "queue_coarse_metrics".into()),
                ("vhost".into(), "/".into()),
                ("x".into(), "a b".into()),
            ]
        );
    }
}

//! Warren's management HTTP API: RabbitMQ's `/api`, so that `rabbitmqadmin`, the Terraform
//! provider (rabbit-hole), Kubernetes operators and monitoring scripts work unchanged. Built
//! on axum (routing, extractors) over hyper (HTTP/1.1), with every request authenticated
//! (HTTP Basic, [`auth`]) against the broker's users and RabbitMQ's management tags.
//!
//! Layout: [`auth`] (who is calling, what tags allow), [`query`] (list parameters and
//! paging), [`json`] (field tables and JSON), [`sampler`] (message rates), [`routes`] (one
//! module per area of the API), [`definitions`] (RabbitMQ's `definitions.json`, also used
//! by `warren ctl` and `--load-definitions`), [`ui`] (the embedded web UI, served outside
//! `/api`), and here the listener and the router.

pub mod auth;
pub mod definitions;
pub mod error;
pub mod json;
pub mod prometheus;
pub mod query;
mod routes;
pub mod sampler;
pub mod state;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Uri;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, info, warn};

pub use state::{ApiState, ListenerInfo, ManagementOptions};

/// RabbitMQ's `management.http.max_body_size` default (20 MB).
const MAX_BODY: usize = 20 * 1024 * 1024;
/// A client gets this long to send its request headers (slow clients cannot hold
/// connections open for free).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where TLS comes from: called per connection, so reloaded certificates take effect for
/// the next connection.
pub type TlsSource = Arc<dyn Fn() -> tokio_rustls::TlsAcceptor + Send + Sync>;

/// The whole API as one router.
pub fn router(state: Arc<ApiState>) -> Router {
    routes::api(Arc::clone(&state))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Runs one API request in-process as the local operator (`warren ctl` over the control
/// socket): the status and the JSON body (`Null` when there is none).
pub async fn call_as_operator(
    state: &Arc<ApiState>,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = builder
        .body(axum::body::Body::from(body))
        .map_err(|e| format!("bad request: {e}"))?;
    request.extensions_mut().insert(auth::LocalOperator);
    normalize_path(&mut request);
    let response = router(Arc::clone(state))
        .oneshot(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY * 8)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    };
    Ok((status, json))
}

/// Starts the message-rate sampler (once per broker, whatever the number of listeners).
pub fn start_sampler(state: &Arc<ApiState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(sampler::run(
        Arc::clone(&state.broker),
        Arc::clone(&state.rates),
    ))
}

/// Serves the API on `listener` (over TLS when `tls` is given) until `shutdown` turns
/// true.
pub async fn serve(
    state: Arc<ApiState>,
    listener: TcpListener,
    tls: Option<TlsSource>,
    shutdown: watch::Receiver<bool>,
) {
    serve_router(router(state), listener, tls, shutdown).await
}

/// Serves the Prometheus endpoint on `listener` until `shutdown` turns true.
pub async fn serve_metrics(
    state: Arc<ApiState>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) {
    serve_router(prometheus::router(state), listener, None, shutdown).await
}

async fn serve_router(
    app: Router,
    listener: TcpListener,
    tls: Option<TlsSource>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_connection(TokioIo::new(stream), peer, app).await,
                Some(tls) => {
                    let accept = tls().accept(stream);
                    match tokio::time::timeout(HEADER_TIMEOUT, accept).await {
                        Ok(Ok(s)) => serve_connection(TokioIo::new(s), peer, app).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "HTTPS handshake failed"),
                        Err(_) => debug!(%peer, "HTTPS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(io: I, peer: SocketAddr, app: Router)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = app.map_request(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request: Request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(auth::Peer(peer));
        normalize_path(&mut request);
        request
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, TowerToHyperService::new(service))
        .await;
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// `/api/users/` is `/api/users` (rabbit-hole asks with the slash).
fn normalize_path(request: &mut Request) {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match request.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rebuilt.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
}

/// Binds the listener (synchronously reporting a taken port) and logs it.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    if let Ok(local) = listener.local_addr() {
        info!(%local, "management API listening");
    }
    Ok(listener)
}

//! Starting the management HTTP API beside the AMQP listeners: its listeners (plain and
//! TLS), the message-rate sampler, and the definitions file loaded at boot.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;
use warren_core::Broker;
use warren_http::{ApiState, ListenerInfo, ManagementOptions};

use crate::settings::ManagementSettings;

/// Reads a definitions file; whether it brings users of its own (then no default user is
/// created on a blank node, as in RabbitMQ).
pub fn read_definitions(path: &std::path::Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read definitions file {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("invalid definitions file {}: {e}", path.display()))
}

pub fn defines_users(defs: &serde_json::Value) -> bool {
    defs.get("users")
        .and_then(|u| u.as_array())
        .is_some_and(|u| !u.is_empty())
}

/// Imports boot-time definitions, leaving existing objects as they are.
pub fn load_definitions(broker: &Broker, defs: &serde_json::Value) -> Result<(), String> {
    let report = warren_http::definitions::import(
        broker,
        defs,
        None,
        warren_http::definitions::Existing::Keep,
    )
    .map_err(|e| format!("cannot load definitions: {e}"))?;
    info!(
        applied = report.applied,
        kept = report.skipped,
        "definitions loaded at boot"
    );
    Ok(())
}

/// The API's shared state: served over HTTP when listeners are configured, and over the
/// control socket to `warren ctl` in any case.
pub fn api_state(broker: &Arc<Broker>, settings: &ManagementSettings) -> Arc<ApiState> {
    let mut options = ManagementOptions::new(env!("CARGO_PKG_VERSION"));
    options.stats_interval = settings.stats_interval;
    if let Some(n) = &settings.node_name {
        options.node = n.clone();
    }
    ApiState::new(Arc::clone(broker), options)
}

/// Starts the message-rate sampler, binds the API's listeners and serves them until
/// `shutdown`. `amqp` lists the AMQP listeners for `/api/overview` and the listener
/// health checks.
pub async fn start(
    state: &Arc<ApiState>,
    settings: &ManagementSettings,
    tls: Option<warren_server::tls::Tls>,
    amqp: Vec<ListenerInfo>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    for l in amqp {
        state.add_listener(l);
    }
    warren_http::start_sampler(state);
    let mut bound: Vec<(TcpListener, bool)> = Vec::new();
    for (addrs, secure) in [(&settings.listen, false), (&settings.tls_listen, true)] {
        for addr in addrs {
            let listener = TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| format!("cannot listen on {addr} (management API): {e}"))?;
            bound.push((listener, secure));
        }
    }
    for (listener, secure) in &bound {
        if let Ok(local) = listener.local_addr() {
            let (protocol, label) = if *secure {
                ("https", "HTTPS")
            } else {
                ("http", "HTTP")
            };
            state.add_listener(ListenerInfo {
                protocol: protocol.into(),
                ip: local.ip().to_string(),
                port: local.port(),
            });
            println!("warren: listening for {label} on {local}");
            info!(%local, protocol, "management API listening");
        }
    }
    for addr in &settings.prometheus_listen {
        let listener = TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("cannot listen on {addr} (Prometheus): {e}"))?;
        if let Ok(local) = listener.local_addr() {
            // RabbitMQ 3.10 lists the Prometheus listener as `http/prometheus`.
            state.add_listener(ListenerInfo {
                protocol: "http/prometheus".into(),
                ip: local.ip().to_string(),
                port: local.port(),
            });
            println!("warren: listening for Prometheus on {local}");
            info!(%local, "Prometheus metrics listening");
        }
        tokio::spawn(warren_http::serve_metrics(
            Arc::clone(state),
            listener,
            shutdown.clone(),
        ));
    }
    for (listener, secure) in bound {
        let source: Option<warren_http::TlsSource> = match (&tls, secure) {
            (Some(tls), true) => {
                let tls = tls.clone();
                Some(Arc::new(move || tls.acceptor()))
            }
            _ => None,
        };
        tokio::spawn(warren_http::serve(
            Arc::clone(state),
            listener,
            source,
            shutdown.clone(),
        ));
    }
    Ok(())
}

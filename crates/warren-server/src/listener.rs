//! Accept loop: one task per accepted TCP connection, and a shutdown signal that stops
//! accepting and asks every open connection to close (`connection.close` 320).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};
use warren_core::Broker;

use crate::config::ServerConfig;
use crate::connection::serve_connection;

/// Becomes `true` when the server should shut down.
pub type ShutdownSignal = watch::Receiver<bool>;

/// Serves AMQP on every listener until `shutdown` fires, then closes open connections
/// (waiting a few seconds for them to finish) and returns.
pub async fn serve(
    broker: Arc<Broker>,
    config: ServerConfig,
    listeners: Vec<TcpListener>,
    mut shutdown: ShutdownSignal,
) {
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        let tx = accepted_tx.clone();
        acceptors.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(pair) => {
                        if tx.send(pair).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    drop(accepted_tx);
    loop {
        tokio::select! {
            accepted = accepted_rx.recv() => {
                let Some((stream, peer)) = accepted else { break };
                let broker = Arc::clone(&broker);
                let config = Arc::clone(&config);
                let shutdown = shutdown.clone();
                connections.spawn(serve_connection(stream, peer, broker, config, shutdown));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    acceptors.abort_all();
    info!(
        open = connections.len(),
        "shutting down: closing connections"
    );
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
}

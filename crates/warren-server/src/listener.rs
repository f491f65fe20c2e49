//! Accept loop: one task per accepted TCP connection, at most `connection_max` at once, and
//! a shutdown signal that stops accepting and asks every open connection to close
//! (`connection.close` 320).

use std::sync::Arc;
use std::time::Duration;

use crate::tls::Tls;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};
use warren_core::Broker;

use crate::config::ServerConfig;
use crate::connection::serve_connection;

/// Becomes `true` when the server should shut down.
pub type ShutdownSignal = watch::Receiver<bool>;

/// A bound socket to serve AMQP on: plain, or AMQPS with these (reloadable) certificates.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<Tls>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Listener { tcp, tls: None }
    }
}

/// Serves AMQP on every listener until `shutdown` fires, then closes open connections
/// (waiting a few seconds for them to finish) and returns.
pub async fn serve(
    broker: Arc<Broker>,
    config: ServerConfig,
    listeners: Vec<Listener>,
    mut shutdown: ShutdownSignal,
) {
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    // One permit per open connection, shared by all listeners; held by the connection's
    // task until it ends, however it ends.
    let slots = config
        .connection_max
        .map(|max| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))));
    for Listener { tcp: listener, tls } in listeners {
        let tx = accepted_tx.clone();
        let slots = slots.clone();
        acceptors.spawn(async move {
            loop {
                let permit = match &slots {
                    Some(slots) => Some(take_slot(slots).await),
                    None => None,
                };
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        if tx.send((stream, peer, tls.clone(), permit)).await.is_err() {
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
                let Some((stream, peer, tls, permit)) = accepted else { break };
                let broker = Arc::clone(&broker);
                let config = Arc::clone(&config);
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    serve_connection(stream, peer, tls, broker, config, shutdown).await;
                    drop(permit);
                });
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

/// Waits for a free connection slot. Like RabbitMQ (whose acceptor stops accepting at
/// `connection_max`), a connection over the limit is not refused: it stays in the kernel's
/// listen backlog, and the client's handshake times out unless a slot frees up first.
async fn take_slot(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    match Arc::clone(slots).try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            warn!("connection_max reached: not accepting connections until one closes");
            // The semaphore is never closed, so acquiring only waits.
            Arc::clone(slots)
                .acquire_owned()
                .await
                .expect("connection slots are never closed")
        }
    }
}

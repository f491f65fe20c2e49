//! Warren as a library: an embeddable broker. [`Embedded::start`] runs a whole Warren
//! in-process on an ephemeral loopback port, with no store (everything in memory) or with a
//! data directory of its own, and stops it when the handle is dropped; an application's
//! tests then need no broker installed or running. Any AMQP 0-9-1 client connects to
//! [`Embedded::url`]. (For tests in other languages, the binary does the same with
//! `warren --listen 127.0.0.1:0`, which prints the address it took.)
//!
//! ```
//! let broker = warren::Embedded::start().expect("broker");
//! // connect any AMQP 0-9-1 client to broker.url(), e.g. amqp://guest:guest@127.0.0.1:PORT/%2f
//! assert!(broker.url().starts_with("amqp://guest:guest@127.0.0.1:"));
//! drop(broker); // closes its connections and stops it
//! ```
//!
//! The broker runs on a small tokio runtime of its own, on its own threads, so it can be
//! started from synchronous tests and from inside another runtime alike (dropping it waits
//! for its connections to close, up to 5 s: from async code, drop it where blocking is
//! allowed, e.g. `tokio::task::block_in_place`, or after closing the clients). With a data
//! directory it also serves the control socket, so `warren ctl --data-dir DIR` works on it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use warren_core::Broker;

pub mod control;
pub mod control_access;

/// How to start an embedded broker.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Where to keep durable state; `None` keeps everything in memory (durable queues and
    /// persistent messages then last as long as the broker).
    pub data_dir: Option<PathBuf>,
    /// The listening address; port 0 takes a free one.
    pub listen: String,
    /// fsync the store (with `data_dir`).
    pub fsync: bool,
    /// Worker threads of the broker's runtime.
    pub worker_threads: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            data_dir: None,
            listen: "127.0.0.1:0".into(),
            fsync: true,
            worker_threads: 2,
        }
    }
}

/// A running in-process broker; dropping it stops it (connections are closed with
/// `CONNECTION_FORCED`, as at SIGTERM) and waits for it to finish.
pub struct Embedded {
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    broker: Arc<Broker>,
}

impl Embedded {
    /// An in-memory broker on a free loopback port.
    pub fn start() -> Result<Embedded, String> {
        Self::start_with(EmbeddedOptions::default())
    }

    /// A broker with the given options.
    pub fn start_with(opts: EmbeddedOptions) -> Result<Embedded, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.worker_threads.max(1))
            .thread_name("warren-embedded")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the broker's runtime: {e}"))?;
        let broker = match &opts.data_dir {
            // The in-memory store behind the same traits: durable queues, persistent
            // messages, confirms and dead-letter settlements take the disk broker's paths.
            // Bodies are never paged (paging to memory saves nothing), so a persistent
            // message in a durable queue is held twice: as the message and as its record.
            None => {
                let store = warren_core::storage::MemoryStore::new();
                let persistence = warren_core::persist::Persistence::new(store, usize::MAX);
                Broker::with_persistence(persistence)
                    .map_err(|e| format!("cannot start the in-memory broker: {e}"))?
            }
            Some(dir) => {
                let store_dir = dir.join("store");
                let store_options = warren_store::StoreOptions {
                    fsync: opts.fsync,
                    ..Default::default()
                };
                let store = warren_store::Store::open(&store_dir, store_options).map_err(|e| {
                    format!("cannot open the store in {}: {e}", store_dir.display())
                })?;
                let persistence = warren_core::persist::Persistence::new(Arc::new(store), 16 << 20);
                Broker::with_persistence(persistence)
                    .map_err(|e| format!("cannot recover from {}: {e}", store_dir.display()))?
            }
        };
        broker
            .start_housekeeping()
            .map_err(|e| format!("cannot start the housekeeping thread: {e}"))?;
        // Bound here, synchronously, so that `start` works from plain code and from inside
        // any async runtime alike (no `block_on` on the caller's thread).
        let listener = std::net::TcpListener::bind(opts.listen.as_str())
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        // With a data directory, `warren ctl --data-dir DIR` administers it as it would
        // the binary.
        let control = match &opts.data_dir {
            Some(dir) => Some(
                control::bind_std(dir)
                    .map_err(|e| format!("cannot create the control socket: {e}"))?,
            ),
            None => None,
        };
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let served = Arc::clone(&broker);
        let control_dir = opts.data_dir.clone();
        let thread = std::thread::Builder::new()
            .name("warren-embedded-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "embedded broker cannot use its listener");
                            return;
                        }
                    };
                    let control = control.and_then(|c| {
                        let socket = tokio::net::UnixListener::from_std(c).ok()?;
                        let broker = Arc::clone(&served);
                        let api = warren_http::ApiState::new(
                            Arc::clone(&broker),
                            warren_http::ManagementOptions::new(env!("CARGO_PKG_VERSION")),
                        );
                        if let Ok(local) = listener.local_addr() {
                            api.add_listener(warren_http::ListenerInfo {
                                protocol: "amqp".into(),
                                ip: local.ip().to_string(),
                                port: local.port(),
                            });
                        }
                        Some(tokio::spawn(control::serve(broker, api, socket)))
                    });
                    warren_server::serve(
                        served,
                        warren_server::ServerConfig::default(),
                        vec![listener.into()],
                        shutdown_rx,
                    )
                    .await;
                    if let Some(c) = control {
                        c.abort();
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(5));
                if let Some(dir) = control_dir {
                    let _ = std::fs::remove_file(control::socket_path(&dir));
                }
            })
            .map_err(|e| format!("cannot start the broker thread: {e}"))?;
        Ok(Embedded {
            addr,
            shutdown,
            thread: Some(thread),
            broker,
        })
    }

    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `amqp://guest:guest@ADDR/%2f`: the default user, from loopback, on the default vhost.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// The broker itself (for inspection in tests: vhosts, queues, counts).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("embedded broker thread panicked");
            }
        }
        if let Some(p) = self.broker.persistence() {
            if let Err(e) = p.sync_now() {
                tracing::error!(error = %e, "final sync of the embedded broker's store failed");
            }
        }
    }
}

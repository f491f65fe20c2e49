//! The front end's configuration and shared state (what the listeners serve with).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warren_core::Broker;

pub use crate::listener::{serve_tcp, serve_websocket, TlsProvider};
use crate::retained::{RetainedLimits, RetainedStore};
use crate::session::Sessions;

/// What the MQTT front end is configured with.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The exchange topics are routing keys of (RabbitMQ's `mqtt.exchange`).
    pub exchange: String,
    /// The vhost of a user name without `vhost:` (RabbitMQ's `mqtt.vhost`).
    pub default_vhost: String,
    /// Credentials for a CONNECT without a user name (RabbitMQ's `mqtt.allow_anonymous`
    /// with `default_user`/`default_pass`); `None` refuses such clients.
    pub anonymous: Option<(String, String)>,
    /// Largest packet accepted after CONNECT (and advertised to MQTT 5 clients).
    pub max_packet_size: usize,
    /// Largest CONNECT accepted, before the client is authenticated.
    pub max_connect_size: usize,
    /// QoS 1 and 2 publishes a client may have unacknowledged (MQTT 5 Receive Maximum).
    pub receive_maximum: u16,
    /// QoS 1 and 2 deliveries a session may have unacknowledged (RabbitMQ's
    /// `mqtt.prefetch`), capped further by the client's own Receive Maximum.
    pub max_inflight: u16,
    pub max_subscriptions: usize,
    /// Connected MQTT clients at most.
    pub max_sessions: usize,
    pub topic_alias_maximum: u16,
    /// Longest keep alive an MQTT 5 client gets (a longer one, or none, is replaced and
    /// announced as Server Keep Alive); `None` takes the client's.
    pub max_keep_alive: Option<u16>,
    /// Longest session expiry interval an MQTT 5 client gets (announced in CONNACK when
    /// shortened); `None` takes the client's.
    pub max_session_expiry: Option<u32>,
    pub retained: RetainedLimits,
    /// MQTT 5 enhanced authentication with SCRAM-SHA-256 offered.
    pub scram: bool,
    /// Time allowed from accept to a complete CONNECT.
    pub connect_timeout: Duration,
    /// Time a peer that accepts no bytes may hold a write before it is closed.
    pub send_timeout: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            exchange: "amq.topic".into(),
            default_vhost: "/".into(),
            anonymous: None,
            max_packet_size: 16 * 1024 * 1024,
            max_connect_size: 64 * 1024,
            receive_maximum: 1024,
            max_inflight: 256,
            max_subscriptions: 1024,
            max_sessions: 1_000_000,
            topic_alias_maximum: 64,
            max_keep_alive: None,
            max_session_expiry: None,
            retained: RetainedLimits {
                max_messages: 100_000,
                max_bytes: 256 * 1024 * 1024,
            },
            scram: true,
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// The MQTT front end's shared state: the broker it drives, sessions, retained messages.
pub struct Mqtt {
    pub broker: Arc<Broker>,
    pub config: MqttConfig,
    pub sessions: Sessions,
    pub retained: RetainedStore,
    pub(crate) connected: std::sync::atomic::AtomicUsize,
}

impl Mqtt {
    /// The front end; with `data_dir`, retained messages are kept in
    /// `<data_dir>/mqtt-retained.log`.
    pub fn new(
        broker: Arc<Broker>,
        config: MqttConfig,
        data_dir: Option<&Path>,
    ) -> std::io::Result<Arc<Mqtt>> {
        let retained = match data_dir {
            Some(dir) => RetainedStore::open(&dir.join("mqtt-retained.log"), config.retained)?,
            None => RetainedStore::in_memory(config.retained),
        };
        Ok(Arc::new(Mqtt {
            broker,
            config,
            sessions: Sessions::default(),
            retained,
            connected: Default::default(),
        }))
    }

    /// MQTT clients connected now.
    pub fn connected(&self) -> usize {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }
}

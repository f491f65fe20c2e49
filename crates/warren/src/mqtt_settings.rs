//! The MQTT front end's settings: `--mqtt-*` flags, `WARREN_MQTT_*` variables and the same
//! keys in the config file, resolved into `warren_mqtt::MqttConfig` and listener lists.

use serde::Deserialize;

pub const DEFAULT_MQTT_LISTEN: &str = "0.0.0.0:1883";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct MqttArgs {
    /// Address to serve MQTT on (repeatable; default 0.0.0.0:1883; `none`: off).
    #[arg(
        long = "mqtt-listen",
        env = "WARREN_MQTT_LISTEN",
        value_delimiter = ','
    )]
    pub mqtt_listen: Vec<String>,
    /// Address to serve MQTT over TLS on (repeatable; needs --tls-cert and --tls-key).
    #[arg(
        long = "mqtt-tls-listen",
        env = "WARREN_MQTT_TLS_LISTEN",
        value_delimiter = ','
    )]
    pub mqtt_tls_listen: Vec<String>,
    /// Address to serve MQTT over WebSocket on, path /ws (repeatable; RabbitMQ's Web MQTT
    /// uses 15675).
    #[arg(
        long = "mqtt-ws-listen",
        env = "WARREN_MQTT_WS_LISTEN",
        value_delimiter = ','
    )]
    pub mqtt_ws_listen: Vec<String>,
    /// Address to serve MQTT over secure WebSocket on (needs --tls-cert and --tls-key).
    #[arg(
        long = "mqtt-wss-listen",
        env = "WARREN_MQTT_WSS_LISTEN",
        value_delimiter = ','
    )]
    pub mqtt_wss_listen: Vec<String>,
    /// The vhost of MQTT users who do not name one as `vhost:user` (default /).
    #[arg(long, env = "WARREN_MQTT_VHOST")]
    pub mqtt_vhost: Option<String>,
    /// The topic exchange MQTT topics route through (default amq.topic).
    #[arg(long, env = "WARREN_MQTT_EXCHANGE")]
    pub mqtt_exchange: Option<String>,
    /// Let MQTT clients without credentials in, as --mqtt-default-user (RabbitMQ's
    /// mqtt.allow_anonymous; default true: they log in as the default user, loopback rules
    /// included, so only local clients get in while that user is guest).
    #[arg(long, env = "WARREN_MQTT_ALLOW_ANONYMOUS")]
    pub mqtt_allow_anonymous: Option<bool>,
    /// Offer MQTT 5 enhanced authentication with SCRAM-SHA-256 (authentication method
    /// `SCRAM-SHA-256`, for users whose password was set on this broker; default true).
    #[arg(long, env = "WARREN_MQTT_SCRAM")]
    pub mqtt_scram: Option<bool>,
    /// User that MQTT clients without credentials log in as (with --mqtt-default-pass;
    /// default: --default-user and --default-pass).
    #[arg(long, env = "WARREN_MQTT_DEFAULT_USER")]
    pub mqtt_default_user: Option<String>,
    #[arg(long, env = "WARREN_MQTT_DEFAULT_PASS")]
    pub mqtt_default_pass: Option<String>,
    /// Largest MQTT packet accepted, bytes (default 16777216).
    #[arg(long, env = "WARREN_MQTT_MAX_PACKET_SIZE")]
    pub mqtt_max_packet_size: Option<usize>,
    /// QoS 1/2 deliveries a session may have unacknowledged (RabbitMQ's mqtt.prefetch;
    /// default 256).
    #[arg(long, env = "WARREN_MQTT_PREFETCH")]
    pub mqtt_prefetch: Option<u16>,
    /// Connected MQTT clients at most (default 1000000).
    #[arg(long, env = "WARREN_MQTT_MAX_CONNECTIONS")]
    pub mqtt_max_connections: Option<usize>,
    /// Subscriptions per MQTT session at most (default 1024).
    #[arg(long, env = "WARREN_MQTT_MAX_SUBSCRIPTIONS")]
    pub mqtt_max_subscriptions: Option<usize>,
    /// Longest keep alive (seconds) an MQTT 5 client gets: a longer one, or 0, is replaced
    /// and announced as Server Keep Alive (default: the client's).
    #[arg(long, env = "WARREN_MQTT_MAX_KEEP_ALIVE")]
    pub mqtt_max_keep_alive: Option<u16>,
    /// Longest session expiry interval (seconds) an MQTT 5 client gets, announced in
    /// CONNACK when shortened (default: the client's).
    #[arg(long, env = "WARREN_MQTT_MAX_SESSION_EXPIRY")]
    pub mqtt_max_session_expiry: Option<u32>,
    /// Retained messages kept at most (default 100000).
    #[arg(long, env = "WARREN_MQTT_RETAINED_MAX_MESSAGES")]
    pub mqtt_retained_max_messages: Option<usize>,
    /// Bytes of retained messages kept at most (default 268435456).
    #[arg(long, env = "WARREN_MQTT_RETAINED_MAX_BYTES")]
    pub mqtt_retained_max_bytes: Option<usize>,
}

/// The same keys in the config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct MqttFile {
    pub mqtt_max_keep_alive: Option<u16>,
    pub mqtt_max_session_expiry: Option<u32>,
    pub mqtt_allow_anonymous: Option<bool>,
    pub mqtt_scram: Option<bool>,
    pub mqtt_listen: Option<Vec<String>>,
    pub mqtt_tls_listen: Option<Vec<String>>,
    pub mqtt_ws_listen: Option<Vec<String>>,
    pub mqtt_wss_listen: Option<Vec<String>>,
    pub mqtt_vhost: Option<String>,
    pub mqtt_exchange: Option<String>,
    pub mqtt_default_user: Option<String>,
    pub mqtt_default_pass: Option<String>,
    pub mqtt_max_packet_size: Option<usize>,
    pub mqtt_prefetch: Option<u16>,
    pub mqtt_max_connections: Option<usize>,
    pub mqtt_max_subscriptions: Option<usize>,
    pub mqtt_retained_max_messages: Option<usize>,
    pub mqtt_retained_max_bytes: Option<usize>,
}

pub struct MqttSettings {
    pub listen: Vec<String>,
    pub tls_listen: Vec<String>,
    pub ws_listen: Vec<String>,
    pub wss_listen: Vec<String>,
    pub config: warren_mqtt::MqttConfig,
}

impl MqttSettings {
    pub fn needs_tls(&self) -> bool {
        !self.tls_listen.is_empty() || !self.wss_listen.is_empty()
    }
}

/// `default_login` is the broker's default user and password, which anonymous MQTT
/// clients use unless --mqtt-default-user says otherwise.
pub fn resolve(
    cli: &MqttArgs,
    file: MqttFile,
    default_login: (&str, &str),
) -> Result<warren_mqtt::MqttConfig, String> {
    let cli = cli.clone();
    let mut config = warren_mqtt::MqttConfig::default();
    if let Some(v) = cli.mqtt_vhost.or(file.mqtt_vhost) {
        config.default_vhost = v;
    }
    if let Some(x) = cli.mqtt_exchange.or(file.mqtt_exchange) {
        config.exchange = x;
    }
    config.anonymous = match (
        cli.mqtt_default_user.or(file.mqtt_default_user),
        cli.mqtt_default_pass.or(file.mqtt_default_pass),
    ) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => Some((default_login.0.to_string(), default_login.1.to_string())),
        _ => return Err("--mqtt-default-user and --mqtt-default-pass go together".into()),
    };
    if !cli
        .mqtt_allow_anonymous
        .or(file.mqtt_allow_anonymous)
        .unwrap_or(true)
    {
        config.anonymous = None;
    }
    config.scram = cli.mqtt_scram.or(file.mqtt_scram).unwrap_or(true);
    if let Some(n) = cli.mqtt_max_packet_size.or(file.mqtt_max_packet_size) {
        if !(1024..=warren_mqtt::codec::MAX_REMAINING_LENGTH).contains(&n) {
            return Err(format!(
                "mqtt_max_packet_size {n}: between 1024 and {}",
                warren_mqtt::codec::MAX_REMAINING_LENGTH
            ));
        }
        config.max_packet_size = n;
    }
    if let Some(n) = cli.mqtt_prefetch.or(file.mqtt_prefetch) {
        if n == 0 {
            return Err("mqtt_prefetch must be at least 1".into());
        }
        config.max_inflight = n;
    }
    config.max_keep_alive = cli
        .mqtt_max_keep_alive
        .or(file.mqtt_max_keep_alive)
        .filter(|&k| k > 0);
    config.max_session_expiry = cli.mqtt_max_session_expiry.or(file.mqtt_max_session_expiry);
    if let Some(n) = cli.mqtt_max_connections.or(file.mqtt_max_connections) {
        config.max_sessions = n;
    }
    if let Some(n) = cli.mqtt_max_subscriptions.or(file.mqtt_max_subscriptions) {
        config.max_subscriptions = n;
    }
    if let Some(n) = cli
        .mqtt_retained_max_messages
        .or(file.mqtt_retained_max_messages)
    {
        config.retained.max_messages = n;
    }
    if let Some(n) = cli.mqtt_retained_max_bytes.or(file.mqtt_retained_max_bytes) {
        config.retained.max_bytes = n;
    }
    Ok(config)
}

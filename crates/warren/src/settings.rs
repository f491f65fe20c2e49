//! Warren's settings: command-line flags, `WARREN_*` environment variables and an optional
//! TOML config file, in that order of precedence, over built-in defaults. Documented in
//! `docs/configuration.md`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use warren_server::ServerConfig;

/// Warren: an AMQP 0-9-1 message broker. With no subcommand it runs the broker.
#[derive(Parser, Debug)]
#[command(name = "warren", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML config file.
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve AMQP on (repeatable; comma-separated in the environment).
    #[arg(long = "listen", env = "WARREN_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Address to serve AMQPS (AMQP over TLS) on (repeatable; needs --tls-cert and --tls-key).
    #[arg(long = "tls-listen", env = "WARREN_TLS_LISTEN", value_delimiter = ',')]
    pub tls_listen: Vec<String>,
    /// The server's certificate chain (PEM).
    #[arg(long, env = "WARREN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "WARREN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates that client certificates must chain to (PEM).
    #[arg(long, env = "WARREN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Ask TLS clients for a certificate and verify any they present.
    #[arg(long, env = "WARREN_TLS_VERIFY_PEER")]
    pub tls_verify_peer: Option<bool>,
    /// Refuse TLS clients without a certificate (with --tls-verify-peer true).
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT")]
    pub tls_fail_if_no_peer_cert: Option<bool>,
    /// The user name SASL EXTERNAL takes from a client certificate: `distinguished_name`
    /// (default) or `common_name` (RabbitMQ's ssl_cert_login_from).
    #[arg(long, env = "WARREN_TLS_LOGIN_FROM")]
    pub tls_login_from: Option<String>,
    /// Directory for Warren's data (also where `warren ctl` finds the running broker).
    #[arg(long, env = "WARREN_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax: `info`, `warren_server=debug`, ...).
    #[arg(long, env = "WARREN_LOG")]
    pub log: Option<String>,
    /// Largest frame offered to clients, in bytes.
    #[arg(long, env = "WARREN_FRAME_MAX")]
    pub frame_max: Option<u32>,
    /// Highest channel number offered to clients.
    #[arg(long, env = "WARREN_CHANNEL_MAX")]
    pub channel_max: Option<u16>,
    /// Heartbeat interval offered to clients, in seconds (0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT")]
    pub heartbeat: Option<u16>,
    /// Largest message body accepted, in bytes.
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<u64>,
    /// Seconds a client has to complete the AMQP handshake.
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<u64>,
    /// Seconds a connection without heartbeats may go without its peer reading anything.
    #[arg(long, env = "WARREN_SEND_TIMEOUT")]
    pub send_timeout: Option<u64>,
    /// Open connections accepted at once (default unlimited); more wait to be accepted.
    #[arg(long, env = "WARREN_CONNECTION_MAX")]
    pub connection_max: Option<usize>,
    /// Consumers one channel may hold (default unlimited).
    #[arg(long, env = "WARREN_CONSUMER_MAX_PER_CHANNEL")]
    pub consumer_max_per_channel: Option<usize>,
    /// Bytes of uncommitted publishes one transactional channel may buffer.
    #[arg(long, env = "WARREN_TRANSACTION_MAX_BYTES")]
    pub transaction_max_bytes: Option<u64>,
    /// User created at the first start, with every permission on `/` (default guest).
    #[arg(long, env = "WARREN_DEFAULT_USER")]
    pub default_user: Option<String>,
    /// That user's password (default guest).
    #[arg(long, env = "WARREN_DEFAULT_PASS")]
    pub default_pass: Option<String>,
    /// Users who may log in only from loopback (comma-separated; `none` for nobody).
    #[arg(long, env = "WARREN_LOOPBACK_USERS", value_delimiter = ',')]
    pub loopback_users: Option<Vec<String>>,
    /// Milliseconds a delivery may stay unacknowledged before its channel is closed (0: never).
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT")]
    pub consumer_timeout: Option<u64>,
    /// Bytes of ready messages a queue keeps in memory; beyond, bodies live on disk only.
    #[arg(long, env = "WARREN_QUEUE_MEMORY_LIMIT")]
    pub queue_memory_limit: Option<usize>,
    /// fsync the store (default true). `--fsync false` only for benchmarks: a crash may
    /// then lose confirmed messages.
    #[arg(long, env = "WARREN_FSYNC")]
    pub fsync: Option<bool>,
    /// Memory alarm threshold: a fraction of RAM (`0.4`, the default) or bytes (`1073741824`).
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK")]
    pub memory_high_watermark: Option<String>,
    /// Disk alarm threshold: free bytes under the data directory (default 50000000).
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT")]
    pub disk_free_limit: Option<u64>,
    /// Address of the management HTTP API (repeatable; default 0.0.0.0:15672; `none`: off).
    #[arg(
        long = "management-listen",
        env = "WARREN_MANAGEMENT_LISTEN",
        value_delimiter = ','
    )]
    pub management_listen: Vec<String>,
    /// Address of the management API over HTTPS (repeatable; needs --tls-cert and --tls-key).
    #[arg(
        long = "management-tls-listen",
        env = "WARREN_MANAGEMENT_TLS_LISTEN",
        value_delimiter = ','
    )]
    pub management_tls_listen: Vec<String>,
    /// Address of the Prometheus metrics endpoint (repeatable; default 0.0.0.0:15692;
    /// `none`: off).
    #[arg(
        long = "prometheus-listen",
        env = "WARREN_PROMETHEUS_LISTEN",
        value_delimiter = ','
    )]
    pub prometheus_listen: Vec<String>,
    /// Milliseconds between samples of message rates (RabbitMQ's
    /// collect_statistics_interval; default 5000).
    #[arg(long, env = "WARREN_STATS_INTERVAL")]
    pub stats_interval: Option<u64>,
    /// A RabbitMQ definitions file to import at boot; existing objects are left as they are.
    #[arg(long, env = "WARREN_LOAD_DEFINITIONS")]
    pub load_definitions: Option<PathBuf>,
    /// The node name reported to tools (default rabbit@<hostname>).
    #[arg(long, env = "WARREN_NODE_NAME")]
    pub node_name: Option<String>,
    #[command(flatten)]
    pub mqtt: crate::mqtt_settings::MqttArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Administer a running broker (like rabbitmqctl), through its control socket in the data
    /// directory.
    Ctl(crate::ctl::CtlArgs),
    /// Load generator for any AMQP 0-9-1 broker (RabbitMQ's PerfTest in spirit).
    Perf(warren_perf::PerfArgs),
}

/// The config file's shape: every key optional, names as the long flags with `_`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Vec<String>>,
    pub tls_listen: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_verify_peer: Option<bool>,
    pub tls_fail_if_no_peer_cert: Option<bool>,
    pub tls_login_from: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log: Option<String>,
    pub frame_max: Option<u32>,
    pub channel_max: Option<u16>,
    pub heartbeat: Option<u16>,
    pub max_message_size: Option<u64>,
    pub handshake_timeout: Option<u64>,
    pub send_timeout: Option<u64>,
    pub connection_max: Option<usize>,
    pub consumer_max_per_channel: Option<usize>,
    pub transaction_max_bytes: Option<u64>,
    pub consumer_timeout: Option<u64>,
    pub default_user: Option<String>,
    pub default_pass: Option<String>,
    pub loopback_users: Option<Vec<String>>,
    pub queue_memory_limit: Option<usize>,
    pub fsync: Option<bool>,
    pub memory_high_watermark: Option<String>,
    pub disk_free_limit: Option<u64>,
    pub management_listen: Option<Vec<String>>,
    pub management_tls_listen: Option<Vec<String>>,
    pub prometheus_listen: Option<Vec<String>>,
    pub stats_interval: Option<u64>,
    pub load_definitions: Option<PathBuf>,
    pub node_name: Option<String>,
}

/// The management API's settings.
pub struct ManagementSettings {
    /// Plain HTTP listeners (none: the API is off).
    pub listen: Vec<String>,
    pub tls_listen: Vec<String>,
    /// Prometheus `/metrics` listeners (none: off).
    pub prometheus_listen: Vec<String>,
    pub stats_interval: Duration,
    pub load_definitions: Option<PathBuf>,
    pub node_name: Option<String>,
}

pub struct Settings {
    pub listen: Vec<String>,
    pub tls_listen: Vec<String>,
    /// Certificates and client checks of the TLS listeners (`None` without a certificate).
    pub tls: Option<warren_server::tls::TlsSettings>,
    pub access: warren_core::AccessDefaults,
    pub data_dir: PathBuf,
    pub log: String,
    pub server: ServerConfig,
    pub queue_memory_limit: usize,
    pub fsync: bool,
    /// Bytes; `None` keeps the broker's default (40% of RAM).
    pub memory_high_watermark: Option<u64>,
    pub disk_free_limit: Option<u64>,
    pub management: ManagementSettings,
    pub mqtt: crate::mqtt_settings::MqttSettings,
}

pub const DEFAULT_MANAGEMENT_LISTEN: &str = "0.0.0.0:15672";
pub const DEFAULT_PROMETHEUS_LISTEN: &str = "0.0.0.0:15692";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5672";
pub const DEFAULT_DATA_DIR: &str = "warren-data";
/// Per-queue bytes of ready messages held in memory before paging to disk.
pub const DEFAULT_QUEUE_MEMORY_LIMIT: usize = 16 * 1024 * 1024;
/// RabbitMQ caps max_message_size at 512 MiB; so do we.
const MAX_MESSAGE_SIZE_LIMIT: u64 = 512 * 1024 * 1024;

impl Settings {
    pub fn resolve(cli: &Cli) -> Result<Settings, String> {
        let cli = Cli {
            command: None,
            config: cli.config.clone(),
            listen: cli.listen.clone(),
            tls_listen: cli.tls_listen.clone(),
            tls_cert: cli.tls_cert.clone(),
            tls_key: cli.tls_key.clone(),
            tls_ca: cli.tls_ca.clone(),
            tls_verify_peer: cli.tls_verify_peer,
            tls_fail_if_no_peer_cert: cli.tls_fail_if_no_peer_cert,
            tls_login_from: cli.tls_login_from.clone(),
            data_dir: cli.data_dir.clone(),
            log: cli.log.clone(),
            frame_max: cli.frame_max,
            channel_max: cli.channel_max,
            heartbeat: cli.heartbeat,
            max_message_size: cli.max_message_size,
            handshake_timeout: cli.handshake_timeout,
            send_timeout: cli.send_timeout,
            connection_max: cli.connection_max,
            consumer_max_per_channel: cli.consumer_max_per_channel,
            transaction_max_bytes: cli.transaction_max_bytes,
            consumer_timeout: cli.consumer_timeout,
            default_user: cli.default_user.clone(),
            default_pass: cli.default_pass.clone(),
            loopback_users: cli.loopback_users.clone(),
            queue_memory_limit: cli.queue_memory_limit,
            fsync: cli.fsync,
            memory_high_watermark: cli.memory_high_watermark.clone(),
            disk_free_limit: cli.disk_free_limit,
            management_listen: cli.management_listen.clone(),
            management_tls_listen: cli.management_tls_listen.clone(),
            prometheus_listen: cli.prometheus_listen.clone(),
            stats_interval: cli.stats_interval,
            load_definitions: cli.load_definitions.clone(),
            node_name: cli.node_name.clone(),
            mqtt: cli.mqtt.clone(),
        };
        let (file, mqtt_file) = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                parse_config(&text)
                    .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
            }
            None => Default::default(),
        };
        let defaults = ServerConfig::default();
        let listen = if !cli.listen.is_empty() {
            cli.listen
        } else {
            file.listen
                .unwrap_or_else(|| vec![DEFAULT_LISTEN.to_string()])
        };
        if listen.is_empty() {
            return Err("at least one listen address is needed".into());
        }
        let frame_max = cli
            .frame_max
            .or(file.frame_max)
            .unwrap_or(defaults.frame_max);
        if frame_max < 4096 {
            return Err(format!(
                "frame_max {frame_max} is below the AMQP minimum of 4096"
            ));
        }
        let max_message_size = cli
            .max_message_size
            .or(file.max_message_size)
            .unwrap_or(defaults.max_message_size);
        if max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(format!(
                "max_message_size {max_message_size} exceeds the limit of {MAX_MESSAGE_SIZE_LIMIT}"
            ));
        }
        let server = ServerConfig {
            frame_max,
            channel_max: cli
                .channel_max
                .or(file.channel_max)
                .unwrap_or(defaults.channel_max)
                .max(1),
            heartbeat: cli
                .heartbeat
                .or(file.heartbeat)
                .unwrap_or(defaults.heartbeat),
            max_message_size,
            handshake_timeout: cli
                .handshake_timeout
                .or(file.handshake_timeout)
                .map(Duration::from_secs)
                .unwrap_or(defaults.handshake_timeout),
            send_timeout: cli
                .send_timeout
                .or(file.send_timeout)
                .map(Duration::from_secs)
                .unwrap_or(defaults.send_timeout),
            cluster_name: defaults.cluster_name,
            connection_max: cli.connection_max.or(file.connection_max),
            consumer_max_per_channel: cli
                .consumer_max_per_channel
                .or(file.consumer_max_per_channel),
            transaction_max_bytes: cli
                .transaction_max_bytes
                .or(file.transaction_max_bytes)
                .unwrap_or(defaults.transaction_max_bytes),
            consumer_timeout: match cli.consumer_timeout.or(file.consumer_timeout) {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => defaults.consumer_timeout,
            },
        };
        if server.connection_max == Some(0) {
            return Err("connection_max 0 would accept no connection at all".into());
        }
        let defaults_access = warren_core::AccessDefaults::default();
        let loopback_users = match cli.loopback_users.or(file.loopback_users) {
            Some(users) if users.iter().any(|u| u == "none") => Vec::new(),
            Some(users) => users,
            None => defaults_access.loopback_users,
        };
        let access = warren_core::AccessDefaults {
            user: cli
                .default_user
                .or(file.default_user)
                .unwrap_or(defaults_access.user),
            password: cli
                .default_pass
                .or(file.default_pass)
                .unwrap_or(defaults_access.password),
            loopback_users,
            create_default_user: true,
        };
        let tls_listen = if !cli.tls_listen.is_empty() {
            cli.tls_listen
        } else {
            file.tls_listen.unwrap_or_default()
        };
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(warren_server::tls::TlsSettings {
                cert,
                key,
                ca: cli.tls_ca.or(file.tls_ca),
                verify_peer: cli
                    .tls_verify_peer
                    .or(file.tls_verify_peer)
                    .unwrap_or(false),
                fail_if_no_peer_cert: cli
                    .tls_fail_if_no_peer_cert
                    .or(file.tls_fail_if_no_peer_cert)
                    .unwrap_or(false),
                login_from: match cli.tls_login_from.or(file.tls_login_from) {
                    None => Default::default(),
                    Some(v) => {
                        warren_server::tls::identity::LoginFrom::parse(&v).ok_or_else(|| {
                            format!(
                                "tls_login_from '{v}': expected distinguished_name or common_name"
                            )
                        })?
                    }
                },
            }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        if !tls_listen.is_empty() && tls.is_none() {
            return Err("--tls-listen needs --tls-cert and --tls-key".into());
        }
        let addresses = |given: Vec<String>, file: Option<Vec<String>>, default: &[&str]| {
            let list = if !given.is_empty() {
                given
            } else {
                file.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
            };
            list.into_iter().filter(|a| a != "none").collect::<Vec<_>>()
        };
        let management = ManagementSettings {
            listen: addresses(
                cli.management_listen,
                file.management_listen,
                &[DEFAULT_MANAGEMENT_LISTEN],
            ),
            tls_listen: addresses(cli.management_tls_listen, file.management_tls_listen, &[]),
            prometheus_listen: addresses(
                cli.prometheus_listen,
                file.prometheus_listen,
                &[DEFAULT_PROMETHEUS_LISTEN],
            ),
            stats_interval: Duration::from_millis(
                cli.stats_interval
                    .or(file.stats_interval)
                    .unwrap_or(5000)
                    .max(100),
            ),
            load_definitions: cli.load_definitions.or(file.load_definitions),
            node_name: cli.node_name.or(file.node_name),
        };
        let mqtt = crate::mqtt_settings::MqttSettings {
            listen: addresses(
                cli.mqtt.mqtt_listen.clone(),
                mqtt_file.mqtt_listen.clone(),
                &[crate::mqtt_settings::DEFAULT_MQTT_LISTEN],
            ),
            tls_listen: addresses(
                cli.mqtt.mqtt_tls_listen.clone(),
                mqtt_file.mqtt_tls_listen.clone(),
                &[],
            ),
            ws_listen: addresses(
                cli.mqtt.mqtt_ws_listen.clone(),
                mqtt_file.mqtt_ws_listen.clone(),
                &[],
            ),
            wss_listen: addresses(
                cli.mqtt.mqtt_wss_listen.clone(),
                mqtt_file.mqtt_wss_listen.clone(),
                &[],
            ),
            config: crate::mqtt_settings::resolve(
                &cli.mqtt,
                mqtt_file,
                (&access.user, &access.password),
            )?,
        };
        if mqtt.needs_tls() && tls.is_none() {
            return Err(
                "--mqtt-tls-listen and --mqtt-wss-listen need --tls-cert and --tls-key".into(),
            );
        }
        if !management.tls_listen.is_empty() && tls.is_none() {
            return Err("--management-tls-listen needs --tls-cert and --tls-key".into());
        }
        Ok(Settings {
            access,
            tls_listen,
            tls,
            listen,
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            log: cli.log.or(file.log).unwrap_or_else(|| "info".to_string()),
            server,
            queue_memory_limit: cli
                .queue_memory_limit
                .or(file.queue_memory_limit)
                .unwrap_or(DEFAULT_QUEUE_MEMORY_LIMIT),
            fsync: cli.fsync.or(file.fsync).unwrap_or(true),
            memory_high_watermark: match cli.memory_high_watermark.or(file.memory_high_watermark) {
                Some(v) => Some(parse_watermark(&v)?),
                None => None,
            },
            disk_free_limit: cli.disk_free_limit.or(file.disk_free_limit),
            management,
            mqtt,
        })
    }
}

/// The config file: the `mqtt_*` keys go to the MQTT front end's settings, the rest to
/// the broker's; both refuse a key they do not know.
fn parse_config(
    text: &str,
) -> Result<(FileConfig, crate::mqtt_settings::MqttFile), toml::de::Error> {
    let mut table: toml::Table = toml::from_str(text)?;
    let mqtt_keys: Vec<String> = table
        .keys()
        .filter(|k| k.starts_with("mqtt_"))
        .cloned()
        .collect();
    let mqtt: toml::Table = mqtt_keys
        .iter()
        .filter_map(|k| table.remove_entry(k))
        .collect();
    Ok((
        toml::Value::Table(table).try_into()?,
        toml::Value::Table(mqtt).try_into()?,
    ))
}

/// A memory watermark: a fraction of physical RAM (`0.4`) or a number of bytes.
pub fn parse_watermark(value: &str) -> Result<u64, String> {
    let value = value.trim();
    if value.contains('.') {
        let fraction: f64 = value
            .parse()
            .map_err(|_| format!("invalid memory watermark '{value}'"))?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(format!(
                "memory watermark fraction {fraction} is not between 0 and 1"
            ));
        }
        let total = warren_core::alarms::total_memory_bytes()
            .ok_or("cannot read the machine's memory size for a relative watermark")?;
        return Ok((total as f64 * fraction) as u64);
    }
    value.parse().map_err(|_| {
        format!("invalid memory watermark '{value}': give a fraction like 0.4 or bytes")
    })
}

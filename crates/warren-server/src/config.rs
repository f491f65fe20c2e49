//! Limits and defaults of the AMQP front end (what `connection.tune` offers and what a
//! connection may do).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame offered in `connection.tune` (RabbitMQ's default: 128 KiB).
    pub frame_max: u32,
    /// Highest channel number offered in `connection.tune` (RabbitMQ's default: 2047).
    pub channel_max: u16,
    /// Heartbeat interval offered, in seconds (RabbitMQ's default: 60).
    pub heartbeat: u16,
    /// Largest message body accepted (RabbitMQ's default: 128 MiB).
    pub max_message_size: u64,
    /// Time allowed from TCP accept to `connection.open` (RabbitMQ's default: 10 s).
    pub handshake_timeout: Duration,
    /// Without heartbeats, a connection whose peer accepts no bytes for this long is
    /// closed (RabbitMQ's `tcp_listen_options.send_timeout`: 15 s). With heartbeats, two
    /// heartbeat intervals.
    pub send_timeout: Duration,
    /// Cluster name reported in the server properties.
    pub cluster_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(15),
            cluster_name: "warren".to_string(),
        }
    }
}

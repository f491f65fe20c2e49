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
    /// Open AMQP connections the broker accepts at once, over all listeners (RabbitMQ's
    /// `connection_max`, default unlimited). Beyond it, new TCP connections wait in the
    /// listen backlog until one closes.
    pub connection_max: Option<usize>,
    /// Consumers one channel may hold (RabbitMQ 3.12's `consumer_max_per_channel`, default
    /// unlimited). One more is a 530 NOT_ALLOWED connection error.
    pub consumer_max_per_channel: Option<usize>,
    /// Bytes of uncommitted publishes one transactional channel may buffer. RabbitMQ has no
    /// such limit; without one a client could grow broker memory without bound. Beyond it,
    /// the channel is closed with 406 PRECONDITION_FAILED and the transaction discarded.
    pub transaction_max_bytes: u64,
    /// A delivery not acknowledged for this long closes its channel with 406 (RabbitMQ's
    /// `consumer_timeout`, 30 minutes by default); `None` disables the check.
    pub consumer_timeout: Option<Duration>,
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
            connection_max: None,
            consumer_max_per_channel: None,
            transaction_max_bytes: 256 * 1024 * 1024,
            consumer_timeout: Some(Duration::from_millis(1_800_000)),
        }
    }
}

//! Warren's broker model: virtual hosts, exchanges and their routing, queues, bindings and
//! consumers. It knows nothing about sockets or AMQP framing; the network front end
//! (`warren-server`) drives it with plain method calls, which keeps it testable without I/O and
//! reusable by other protocols later (MQTT, STOMP).

pub mod access;
pub mod alarms;
pub mod broker;
pub mod clock;
pub mod connections;
pub mod credit;
pub mod dead_letter;
pub mod delayed;
pub mod error;
pub mod exchange;
pub mod limits;
pub mod message;
pub mod parameters;
pub mod persist;
pub mod policy;
pub mod queue;
pub mod queue_config;
pub mod routing;
pub mod stats;
pub mod storage;
pub mod timers;
pub mod vhost;

/// The hash map of the per-message paths (channels, consumers, exchanges, queues, routes):
/// foldhash, seeded per process, instead of SipHash, which cost ~7% of the broker's CPU in s1.
/// Keys that a client chooses stay behind a random seed, so collisions cannot be planned.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use broker::{AccessDefaults, Broker, REPLY_TO_PREFIX, REPLY_TO_QUEUE};
pub use credit::Credit;
pub use error::{CoreError, ErrorKind};
pub use exchange::{Destination, ExchangeKind, ExchangeSpec};
pub use message::Message;
pub use queue::{
    Consumer, ConsumerSpec, Delivery, DeliverySink, Entry, Published, Queue, QueueSpec,
};
pub use queue_config::QueueConfig;
pub use vhost::VHost;

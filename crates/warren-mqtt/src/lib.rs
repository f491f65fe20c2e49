//! Warren's MQTT front end: MQTT 3.1, 3.1.1 and 5.0 clients on the same core as AMQP,
//! RabbitMQ's way. A topic is a routing key on `amq.topic` (`/` and `.` swapped, `+` as
//! `*`); a session's subscriptions are bindings of its queues
//! (`mqtt-subscription-<client id>qos0` and `…qos1`, durable for a persistent session), so
//! AMQP publishers reach MQTT subscribers and AMQP queues bound to `amq.topic` receive MQTT
//! publishes, and the management API lists it all. Depends on `warren-core` only, as the
//! front-end interface in docs/architecture.md describes; TLS acceptors come from the binary.

pub mod codec;
pub mod topic;

#[cfg(feature = "server")]
mod connection;
#[cfg(feature = "server")]
pub mod convert;
#[cfg(feature = "server")]
pub mod listener;
#[cfg(feature = "server")]
pub mod retained;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod session;

#[cfg(feature = "server")]
pub use server::*;

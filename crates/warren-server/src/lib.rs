//! Warren's AMQP 0-9-1 network front end: TCP listeners, the connection state machine
//! (handshake, heartbeats, framing, output batching) and the channel state machine (every
//! class and method), glued to the broker model in `warren-core`.

mod channel;
pub mod config;
mod connection;
mod error;
mod frames;
mod handshake;
mod listener;
pub mod tls;
mod transport;

pub use config::ServerConfig;
pub use listener::{serve, Listener, ShutdownSignal};

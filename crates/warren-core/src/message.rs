//! A published message as the broker holds it: routing information, the content header's
//! properties kept raw (parsed lazily, written back unchanged on delivery) and the body as a
//! shared `Bytes`, so fan-out to many queues never copies the body.

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    /// Property flags and fields exactly as the publisher encoded them.
    pub properties_raw: Bytes,
    pub body: Bytes,
}

impl Message {
    /// Bytes this message accounts for in a queue (body plus raw properties).
    pub fn size(&self) -> usize {
        self.body.len() + self.properties_raw.len()
    }
}

//! A published message as the broker holds it: routing information, the content header's
//! properties kept raw (parsed lazily, written back unchanged on delivery) and the body as a
//! shared `Bytes`, so fan-out to many queues never copies the body. A persistent message is
//! written to the store once, however many durable queues hold it (`stored`), and the
//! message's handle on that record keeps it alive until every queue has taken its own
//! reference (ownership, not timing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::storage::StoredRecord;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use warren_amqp::properties::peek_delivery_mode;
use warren_amqp::ShortString;

#[derive(Debug)]
pub struct Message {
    pub exchange: ShortString,
    pub routing_key: ShortString,
    /// Property flags and fields exactly as the publisher encoded them.
    pub properties_raw: Bytes,
    pub body: Bytes,
    /// `delivery-mode` = 2.
    pub persistent: bool,
    /// The store's record of this message, once written (a counted reference).
    pub stored: OnceLock<StoredRecord>,
    /// Some durable log (a queue's, a delayed exchange's) recorded this message: a publisher
    /// confirm or `tx.commit-ok` must wait for the fsync that covers it.
    logged: AtomicBool,
    /// Extra routing keys from RabbitMQ's sender-selected distribution: the `CC` header's
    /// keys, then the `BCC` header's (that header is removed before delivery).
    pub cc: Vec<String>,
    /// How many of `cc` came from `CC` (and are listed in `x-death`).
    pub cc_listed: usize,
}

/// Record format version (first byte of every stored message).
const RECORD_V1: u8 = 1;

impl Message {
    pub fn new(
        exchange: impl Into<ShortString>,
        routing_key: impl Into<ShortString>,
        properties_raw: Bytes,
        body: Bytes,
    ) -> Message {
        // The delivery-mode flag is bit 12: 0x10 of the first flag byte.
        let persistent = properties_raw.first().is_some_and(|b| b & 0x10 != 0)
            && peek_delivery_mode(&properties_raw) == Some(2);
        Message {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            properties_raw,
            body,
            persistent,
            stored: OnceLock::new(),
            logged: AtomicBool::new(false),
            cc: Vec::new(),
            cc_listed: 0,
        }
    }

    /// Applies sender-selected distribution: `CC` and `BCC` headers (arrays of strings) add
    /// routing keys; `BCC` is removed from the message so no consumer sees it.
    pub fn with_sender_selected(mut self) -> Message {
        // The headers flag is bit 13: 0x20 of the first flag byte.
        if self.properties_raw.first().is_none_or(|b| b & 0x20 == 0) {
            return self;
        }
        // Most messages with headers have no CC/BCC: look for the encoded keys (a length
        // byte then the name) before paying for a full decode of the table.
        let raw = &self.properties_raw[..];
        let mentions = |key: &[u8]| raw.windows(key.len()).any(|w| w == key);
        if !mentions(b"\x02CC") && !mentions(b"\x03BCC") {
            return self;
        }
        let Some(headers) = warren_amqp::peek_headers(&self.properties_raw) else {
            return self;
        };
        let keys = |name: &str| -> Vec<String> {
            match headers.get(name) {
                Some(warren_amqp::FieldValue::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let cc = keys("CC");
        let bcc = keys("BCC");
        if headers.get("BCC").is_some() {
            if let Ok(mut props) = warren_amqp::BasicProperties::decode(&self.properties_raw) {
                if let Some(h) = props.headers.as_mut() {
                    h.remove("BCC");
                }
                self.properties_raw = props.to_bytes();
            }
        }
        self.cc_listed = cc.len();
        self.cc = cc;
        self.cc.extend(bcc);
        self
    }

    /// Notes that a durable log recorded this message (see [`Message::needs_sync`]).
    pub fn mark_logged(&self) {
        self.logged.store(true, Ordering::Release);
    }

    /// Whether the publish wrote this message to a durable log, so that its confirm must
    /// wait for the store's fsync: true on every path that did (plain and fanned-out queues,
    /// exchange-to-exchange, alternate exchanges, CC/BCC, delayed exchanges holding it).
    pub fn needs_sync(&self) -> bool {
        self.persistent && self.logged.load(Ordering::Acquire)
    }

    /// Bytes this message accounts for in a queue (body plus raw properties).
    pub fn size(&self) -> usize {
        self.body.len() + self.properties_raw.len()
    }

    /// The store record: `[v1][exchange: u8 len][routing key: u8 len][properties: u32 len][body]`.
    pub fn encode_record(&self) -> BytesMut {
        let head = RecordHead::of(self);
        let mut out = BytesMut::with_capacity(head.len + self.size());
        for part in self.record_parts(&head) {
            out.put_slice(part);
        }
        out
    }

    /// The record as three slices (head, properties, body), for a store that copies them
    /// straight into its write buffer instead of through an encoded copy.
    pub fn record_parts<'a>(&'a self, head: &'a RecordHead) -> [&'a [u8]; 3] {
        [
            &head.bytes[..head.len],
            &self.properties_raw[..],
            &self.body[..],
        ]
    }

    /// Reads a record back (the store has already checked its checksum). The body and
    /// properties are slices of `record`, not copies. `stored` is the record's reference when
    /// `record` is a plain message record that queues may share.
    pub fn decode_record(record: Bytes, stored: Option<StoredRecord>) -> Option<Message> {
        let mut buf = &record[..];
        if buf.remaining() < 2 || buf.get_u8() != RECORD_V1 {
            return None;
        }
        let ex_len = usize::from(buf.get_u8());
        let exchange = take_str(&mut buf, ex_len)?;
        if buf.remaining() < 1 {
            return None;
        }
        let rk_len = usize::from(buf.get_u8());
        let routing_key = take_str(&mut buf, rk_len)?;
        if buf.remaining() < 4 {
            return None;
        }
        let props_len = buf.get_u32() as usize;
        if buf.remaining() < props_len {
            return None;
        }
        let props_start = record.len() - buf.remaining();
        let properties_raw = record.slice(props_start..props_start + props_len);
        let body = record.slice(props_start + props_len..);
        let msg = Message::new(exchange, routing_key, properties_raw, body);
        if let Some(r) = stored {
            let _ = msg.stored.set(r);
        }
        Some(msg)
    }
}

/// Short strings are at most 255 bytes on the wire, so they are in the record too.
/// The bytes of a store record before its properties, built on the stack.
pub struct RecordHead {
    bytes: [u8; RECORD_HEAD_MAX],
    len: usize,
}

/// Version, two names of at most 255 bytes with their lengths, the properties' length.
const RECORD_HEAD_MAX: usize = 1 + 2 * (1 + 255) + 4;

impl RecordHead {
    pub fn of(msg: &Message) -> RecordHead {
        let ex = short(&msg.exchange);
        let rk = short(&msg.routing_key);
        let mut bytes = [0u8; RECORD_HEAD_MAX];
        let mut at = 0;
        for part in [
            &[RECORD_V1, ex.len() as u8][..],
            ex,
            &[rk.len() as u8],
            rk,
            &(msg.properties_raw.len() as u32).to_be_bytes(),
        ] {
            bytes[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        RecordHead { bytes, len: at }
    }
}

fn short(s: &str) -> &[u8] {
    let b = s.as_bytes();
    &b[..b.len().min(255)]
}

fn take_str(buf: &mut &[u8], n: usize) -> Option<ShortString> {
    if buf.remaining() < n {
        return None;
    }
    let s = ShortString::from_utf8(&buf[..n]).ok()?;
    buf.advance(n);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::BasicProperties;

    #[test]
    fn sender_selected_distribution_reads_cc_and_strips_bcc() {
        use warren_amqp::{FieldTable, FieldValue};
        let keys = |ks: &[&str]| {
            FieldValue::Array(
                ks.iter()
                    .map(|k| FieldValue::LongString(k.to_string().into()))
                    .collect(),
            )
        };
        let mut headers = FieldTable::default();
        headers.insert("app", FieldValue::LongString("x".into()));
        let plain = BasicProperties {
            headers: Some(headers.clone()),
            ..Default::default()
        }
        .to_bytes();
        let m =
            Message::new(String::new(), "k", plain.clone(), Bytes::new()).with_sender_selected();
        assert!(m.cc.is_empty());
        assert_eq!(m.properties_raw, plain, "untouched without CC/BCC");

        headers.insert("CC", keys(&["a", "b"]));
        headers.insert("BCC", keys(&["c"]));
        let props = BasicProperties {
            headers: Some(headers),
            ..Default::default()
        }
        .to_bytes();
        let m = Message::new(String::new(), "k", props, Bytes::new()).with_sender_selected();
        assert_eq!(m.cc, vec!["a", "b", "c"]);
        assert_eq!(m.cc_listed, 2);
        let h = warren_amqp::peek_headers(&m.properties_raw).unwrap();
        assert!(h.get("BCC").is_none() && h.get("CC").is_some());
    }

    #[test]
    fn record_round_trip_and_persistence_flag() {
        let props = BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        }
        .to_bytes();
        let m = Message::new("x", "k", props, Bytes::from_static(b"body"));
        assert!(m.persistent);
        let rec = m.encode_record().freeze();
        let back = Message::decode_record(rec, None).unwrap();
        assert_eq!(back.exchange, "x");
        assert_eq!(back.routing_key, "k");
        assert_eq!(back.properties_raw, m.properties_raw);
        assert_eq!(back.body, m.body);
        assert!(back.persistent);
        let transient = Message::new(String::new(), "q", Bytes::new(), Bytes::new());
        assert!(!transient.persistent);
        assert!(Message::decode_record(Bytes::from_static(b"\x02junk"), None).is_none());
    }

    #[test]
    fn the_record_layout_is_the_one_on_disk() {
        // Records written by earlier versions must keep reading back: the bytes are fixed.
        let m = Message::new(
            "ex",
            "rk",
            Bytes::from_static(b"P"),
            Bytes::from_static(b"body"),
        );
        let want = b"\x01\x02ex\x02rk\x00\x00\x00\x01Pbody";
        assert_eq!(&m.encode_record()[..], &want[..]);
        let head = RecordHead::of(&m);
        assert_eq!(m.record_parts(&head).concat(), want);
        // Names longer than a short string are cut at 255 bytes, as AMQP can carry them.
        let long = "k".repeat(300);
        let m = Message::new(long.as_str(), long.as_str(), Bytes::new(), Bytes::new());
        let back = Message::decode_record(m.encode_record().freeze(), None).unwrap();
        assert_eq!(back.routing_key.len(), 255);
        assert_eq!(back.exchange.len(), 255);
    }
}

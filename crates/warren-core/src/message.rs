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
/// A record whose exchange or routing key is longer than 255 bytes: u16 name lengths.
const RECORD_V2: u8 = 2;

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

    /// The store record: `[1][exchange: u8 len][routing key: u8 len][properties: u32 len][body]`,
    /// or, when a name is longer than 255 bytes (an MQTT topic can be), the same with
    /// version 2 and both name lengths as u16.
    pub fn encode_record(&self) -> BytesMut {
        self.with_record_parts(|parts| {
            let mut out = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
            for part in parts {
                out.put_slice(part);
            }
            out
        })
    }

    /// Calls `f` with the record as slices of this message and of a few length bytes on the
    /// stack, for a store that copies them straight into its write buffer (one copy per
    /// message instead of two).
    pub fn with_record_parts<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let ex = record_name(&self.exchange);
        let rk = record_name(&self.routing_key);
        let wide = ex.len() > 255 || rk.len() > 255;
        let version = [if wide { RECORD_V2 } else { RECORD_V1 }];
        let ex_len = NameLen::of(ex, wide);
        let rk_len = NameLen::of(rk, wide);
        let props_len = (self.properties_raw.len() as u32).to_be_bytes();
        f(&[
            &version,
            ex_len.bytes(),
            ex,
            rk_len.bytes(),
            rk,
            &props_len,
            &self.properties_raw,
            &self.body,
        ])
    }

    /// Reads a record back (the store has already checked its checksum). The body and
    /// properties are slices of `record`, not copies. `stored` is the record's reference when
    /// `record` is a plain message record that queues may share.
    pub fn decode_record(record: Bytes, stored: Option<StoredRecord>) -> Option<Message> {
        let mut buf = &record[..];
        if buf.remaining() < 1 {
            return None;
        }
        let wide = match buf.get_u8() {
            RECORD_V1 => false,
            RECORD_V2 => true,
            _ => return None,
        };
        let exchange = take_name(&mut buf, wide)?;
        let routing_key = take_name(&mut buf, wide)?;
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

/// A name as the record holds it: whole, unless it is longer than a u16 length can say (no
/// front end makes one: MQTT topics stop at 65535 bytes), then cut at a character boundary so
/// that it still reads back as UTF-8.
fn record_name(s: &str) -> &[u8] {
    let mut n = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s.as_bytes()[..n]
}

/// A name's length as the record writes it: one byte in version 1, two (big endian) in
/// version 2, the mirror of [`take_name`].
struct NameLen {
    bytes: [u8; 2],
    wide: bool,
}

impl NameLen {
    fn of(name: &[u8], wide: bool) -> NameLen {
        let bytes = if wide {
            (name.len() as u16).to_be_bytes()
        } else {
            [name.len() as u8, 0]
        };
        NameLen { bytes, wide }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..if self.wide { 2 } else { 1 }]
    }
}

fn take_name(buf: &mut &[u8], wide: bool) -> Option<ShortString> {
    let n = if wide {
        if buf.remaining() < 2 {
            return None;
        }
        usize::from(buf.get_u16())
    } else {
        if buf.remaining() < 1 {
            return None;
        }
        usize::from(buf.get_u8())
    };
    take_str(buf, n)
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
        assert_eq!(m.with_record_parts(|parts| parts.concat()), want);
        let m = Message::new(
            "e".repeat(255).as_str(),
            "k".repeat(255).as_str(),
            Bytes::new(),
            Bytes::new(),
        );
        assert_eq!(
            m.encode_record()[0],
            RECORD_V1,
            "255-byte names still fit version 1"
        );
    }

    #[test]
    fn names_longer_than_a_short_string_survive_the_record() {
        // An MQTT topic becomes the routing key and may be longer than 255 bytes; cutting it
        // at byte 255 once split a character, and the record then failed to read back.
        let topic = format!("{}é.tail", "t".repeat(254));
        let m = Message::new(
            "amq.topic",
            topic.as_str(),
            Bytes::from_static(b"P"),
            Bytes::from_static(b"body"),
        );
        let rec = m.encode_record();
        assert_eq!(rec[0], RECORD_V2);
        let back = Message::decode_record(rec.freeze(), None).unwrap();
        assert_eq!(back.routing_key, topic.as_str());
        assert_eq!(back.exchange, "amq.topic");
        assert_eq!(&back.properties_raw[..], b"P");
        assert_eq!(&back.body[..], b"body");
        // Beyond what a u16 can say (no front end produces it), the cut lands on a
        // character boundary.
        let huge = "é".repeat(40_000);
        let m = Message::new("x", huge.as_str(), Bytes::new(), Bytes::new());
        let back = Message::decode_record(m.encode_record().freeze(), None).unwrap();
        assert_eq!(back.routing_key.len(), 65_534);
        assert!(huge.starts_with(back.routing_key.as_str()));
        // Truncated records of either version are refused, not misread.
        let rec = m.encode_record();
        for cut in [1, 2, 3, 10] {
            assert!(Message::decode_record(Bytes::copy_from_slice(&rec[..cut]), None).is_none());
        }
    }
}

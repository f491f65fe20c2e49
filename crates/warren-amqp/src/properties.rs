//! Content header frames and the `basic` class content properties.
//!
//! The broker keeps properties raw (as received) and only looks inside with
//! the cheap `peek_*` functions; [`BasicProperties`] is the full decoded form.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::table::FieldTable;
use crate::wire;

/// A content header frame payload, properties kept raw.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    /// Class of the content (60 for basic).
    pub class_id: u16,
    /// Unused, must be 0.
    pub weight: u16,
    /// Total size of the body that follows in body frames.
    pub body_size: u64,
    /// Property flags + property fields, as received.
    pub properties_raw: Bytes,
}

impl ContentHeader {
    /// Parse a header frame payload; `properties_raw` is a zero-copy slice.
    /// The payload must hold at least the 12 fixed bytes plus the 2-byte
    /// property flags.
    pub fn decode(payload: Bytes) -> Result<ContentHeader, DecodeError> {
        if payload.len() < 14 {
            return Err(DecodeError::Truncated);
        }
        let mut buf = &payload[..];
        let class_id = wire::read_u16(&mut buf)?;
        let weight = wire::read_u16(&mut buf)?;
        let body_size = wire::read_u64(&mut buf)?;
        let properties_raw = payload.slice(12..);
        Ok(ContentHeader {
            class_id,
            weight,
            body_size,
            properties_raw,
        })
    }

    /// Encode the payload (without frame header).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.class_id);
        out.put_u16(self.weight);
        out.put_u64(self.body_size);
        out.put_slice(&self.properties_raw);
    }
}

/// Flag bit of each basic property, in spec order.
pub mod flags {
    /// `content-type`
    pub const CONTENT_TYPE: u16 = 1 << 15;
    /// `content-encoding`
    pub const CONTENT_ENCODING: u16 = 1 << 14;
    /// `headers`
    pub const HEADERS: u16 = 1 << 13;
    /// `delivery-mode`
    pub const DELIVERY_MODE: u16 = 1 << 12;
    /// `priority`
    pub const PRIORITY: u16 = 1 << 11;
    /// `correlation-id`
    pub const CORRELATION_ID: u16 = 1 << 10;
    /// `reply-to`
    pub const REPLY_TO: u16 = 1 << 9;
    /// `expiration`
    pub const EXPIRATION: u16 = 1 << 8;
    /// `message-id`
    pub const MESSAGE_ID: u16 = 1 << 7;
    /// `timestamp`
    pub const TIMESTAMP: u16 = 1 << 6;
    /// `type`
    pub const TYPE: u16 = 1 << 5;
    /// `user-id`
    pub const USER_ID: u16 = 1 << 4;
    /// `app-id`
    pub const APP_ID: u16 = 1 << 3;
    /// `cluster-id` (named `reserved` in the 0-9-1 XML)
    pub const CLUSTER_ID: u16 = 1 << 2;
    /// Continuation: another flags word follows (rejected).
    pub const CONTINUATION: u16 = 1;
}

/// The 14 basic properties, in spec order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    /// MIME content type.
    pub content_type: Option<String>,
    /// MIME content encoding.
    pub content_encoding: Option<String>,
    /// Application headers.
    pub headers: Option<FieldTable>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Message priority.
    pub priority: Option<u8>,
    /// Application correlation id.
    pub correlation_id: Option<String>,
    /// Address to reply to.
    pub reply_to: Option<String>,
    /// Per-message TTL in milliseconds, as a decimal string.
    pub expiration: Option<String>,
    /// Application message id.
    pub message_id: Option<String>,
    /// Message timestamp (seconds).
    pub timestamp: Option<u64>,
    /// Message type name (`type`).
    pub kind: Option<String>,
    /// Creating user id.
    pub user_id: Option<String>,
    /// Creating application id.
    pub app_id: Option<String>,
    /// Cluster id (deprecated).
    pub cluster_id: Option<String>,
}

fn read_flags(buf: &mut &[u8]) -> Result<u16, DecodeError> {
    let f = wire::read_u16(buf)?;
    if f & flags::CONTINUATION != 0 {
        return Err(DecodeError::BadPropertyFlags);
    }
    Ok(f)
}

impl BasicProperties {
    /// Decode property flags followed by the present fields. Bytes after the
    /// last present field are ignored.
    pub fn decode(raw: &[u8]) -> Result<BasicProperties, DecodeError> {
        let mut buf = raw;
        let buf = &mut buf;
        let f = read_flags(buf)?;
        let has = |bit: u16| f & bit != 0;
        fn s(buf: &mut &[u8], on: bool) -> Result<Option<String>, DecodeError> {
            if on {
                wire::read_shortstr(buf).map(Some)
            } else {
                Ok(None)
            }
        }
        let content_type = s(buf, has(flags::CONTENT_TYPE))?;
        let content_encoding = s(buf, has(flags::CONTENT_ENCODING))?;
        let headers = if has(flags::HEADERS) {
            Some(FieldTable::decode(buf)?)
        } else {
            None
        };
        let delivery_mode = if has(flags::DELIVERY_MODE) {
            Some(wire::read_u8(buf)?)
        } else {
            None
        };
        let priority = if has(flags::PRIORITY) {
            Some(wire::read_u8(buf)?)
        } else {
            None
        };
        let correlation_id = s(buf, has(flags::CORRELATION_ID))?;
        let reply_to = s(buf, has(flags::REPLY_TO))?;
        let expiration = s(buf, has(flags::EXPIRATION))?;
        let message_id = s(buf, has(flags::MESSAGE_ID))?;
        let timestamp = if has(flags::TIMESTAMP) {
            Some(wire::read_u64(buf)?)
        } else {
            None
        };
        let kind = s(buf, has(flags::TYPE))?;
        let user_id = s(buf, has(flags::USER_ID))?;
        let app_id = s(buf, has(flags::APP_ID))?;
        let cluster_id = s(buf, has(flags::CLUSTER_ID))?;
        Ok(BasicProperties {
            content_type,
            content_encoding,
            headers,
            delivery_mode,
            priority,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            timestamp,
            kind,
            user_id,
            app_id,
            cluster_id,
        })
    }

    /// The property flags word for the fields that are set.
    pub fn flags(&self) -> u16 {
        let mut f = 0;
        let mut set = |on: bool, bit: u16| {
            if on {
                f |= bit;
            }
        };
        set(self.content_type.is_some(), flags::CONTENT_TYPE);
        set(self.content_encoding.is_some(), flags::CONTENT_ENCODING);
        set(self.headers.is_some(), flags::HEADERS);
        set(self.delivery_mode.is_some(), flags::DELIVERY_MODE);
        set(self.priority.is_some(), flags::PRIORITY);
        set(self.correlation_id.is_some(), flags::CORRELATION_ID);
        set(self.reply_to.is_some(), flags::REPLY_TO);
        set(self.expiration.is_some(), flags::EXPIRATION);
        set(self.message_id.is_some(), flags::MESSAGE_ID);
        set(self.timestamp.is_some(), flags::TIMESTAMP);
        set(self.kind.is_some(), flags::TYPE);
        set(self.user_id.is_some(), flags::USER_ID);
        set(self.app_id.is_some(), flags::APP_ID);
        set(self.cluster_id.is_some(), flags::CLUSTER_ID);
        f
    }

    /// Encode property flags followed by the present fields.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.flags());
        let s = |out: &mut BytesMut, v: &Option<String>| {
            if let Some(v) = v {
                wire::write_shortstr(out, v);
            }
        };
        s(out, &self.content_type);
        s(out, &self.content_encoding);
        if let Some(h) = &self.headers {
            h.encode(out);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        s(out, &self.correlation_id);
        s(out, &self.reply_to);
        s(out, &self.expiration);
        s(out, &self.message_id);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        s(out, &self.kind);
        s(out, &self.user_id);
        s(out, &self.app_id);
        s(out, &self.cluster_id);
    }

    /// Encode into a fresh buffer (suitable as `properties_raw`).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        self.encode(&mut out);
        out.freeze()
    }
}

/// Skip the fields whose flag bits are above `target` and return the flags
/// and a cursor positioned at `target`'s field, or `None` if it is absent or
/// the input is malformed.
fn seek(raw: &[u8], target: u16) -> Option<&[u8]> {
    let mut buf = raw;
    let f = read_flags(&mut buf).ok()?;
    if f & target == 0 {
        return None;
    }
    let mut bit = flags::CONTENT_TYPE;
    while bit > target {
        if f & bit != 0 {
            let skipped = match bit {
                flags::HEADERS => wire::skip_longstr(&mut buf),
                flags::DELIVERY_MODE | flags::PRIORITY => wire::read_u8(&mut buf).map(|_| ()),
                flags::TIMESTAMP => wire::read_u64(&mut buf).map(|_| ()),
                _ => wire::skip_shortstr(&mut buf),
            };
            skipped.ok()?;
        }
        bit >>= 1;
    }
    Some(buf)
}

/// `delivery-mode` without decoding the other properties.
pub fn peek_delivery_mode(raw: &[u8]) -> Option<u8> {
    wire::read_u8(&mut seek(raw, flags::DELIVERY_MODE)?).ok()
}

/// `priority` without decoding the other properties.
pub fn peek_priority(raw: &[u8]) -> Option<u8> {
    wire::read_u8(&mut seek(raw, flags::PRIORITY)?).ok()
}

/// `expiration` without decoding the other properties.
pub fn peek_expiration(raw: &[u8]) -> Option<String> {
    wire::read_shortstr(&mut seek(raw, flags::EXPIRATION)?).ok()
}

/// `headers` without decoding the other properties.
pub fn peek_headers(raw: &[u8]) -> Option<FieldTable> {
    FieldTable::decode(&mut seek(raw, flags::HEADERS)?).ok()
}

/// Checks the `headers` table, if present, with [`crate::table::scan_table`] (no
/// allocation): `Ok` when there is none or it is well formed.
pub fn check_headers(raw: &[u8]) -> Result<(), DecodeError> {
    match seek(raw, flags::HEADERS) {
        Some(mut at) => crate::table::scan_table(&mut at),
        None => Ok(()),
    }
}

/// `timestamp` without decoding the other properties.
pub fn peek_timestamp(raw: &[u8]) -> Option<u64> {
    wire::read_u64(&mut seek(raw, flags::TIMESTAMP)?).ok()
}

/// `reply-to` without decoding the other properties.
pub fn peek_reply_to(raw: &[u8]) -> Option<String> {
    wire::read_shortstr(&mut seek(raw, flags::REPLY_TO)?).ok()
}

/// `user-id` without decoding the other properties.
pub fn peek_user_id(raw: &[u8]) -> Option<String> {
    wire::read_shortstr(&mut seek(raw, flags::USER_ID)?).ok()
}

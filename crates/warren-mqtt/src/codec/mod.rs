//! The MQTT wire format, 3.1, 3.1.1 and 5.0: the fixed header with its variable-length
//! remaining length, every control packet, and (for 5.0) properties and reason codes. No
//! I/O: `decode` takes what has been read and answers a packet and its length, or that more
//! bytes are needed; `Packet::encode` appends to an output buffer.

mod properties;
#[cfg(test)]
mod tests;

pub use properties::{allowed, Allowed, Properties};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol level a client asked for in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1 (`MQIsdp`, level 3), served as 3.1.1.
    V3_1,
    V3_1_1,
    V5,
}

impl Version {
    pub fn is_v5(self) -> bool {
        self == Version::V5
    }

    /// As RabbitMQ names it in the connection list.
    pub fn label(self) -> &'static str {
        match self {
            Version::V3_1 => "MQTT 3.1",
            Version::V3_1_1 => "MQTT 3.1.1",
            Version::V5 => "MQTT 5.0",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a valid packet (MQTT 5 reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A valid packet where the protocol forbids it, or a forbidden value (0x82).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The remaining length is over the limit (0x95).
    #[error("packet of {0} bytes is over the maximum packet size")]
    TooLarge(usize),
    /// CONNECT with a protocol name or level the broker does not speak.
    #[error("unsupported protocol {0}")]
    UnsupportedProtocol(String),
}

impl DecodeError {
    /// The MQTT 5 reason code a DISCONNECT (or CONNACK) carries for this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::Protocol(_) => reason::PROTOCOL_ERROR,
            DecodeError::TooLarge(_) => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

/// MQTT 5 reason codes (section 2.4) used by the broker.
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const GRANTED_QOS_1: u8 = 0x01;
    pub const GRANTED_QOS_2: u8 = 0x02;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const SERVER_BUSY: u8 = 0x89;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_IN_USE: u8 = 0x91;
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    pub const SUBSCRIPTION_IDS_NOT_SUPPORTED: u8 = 0xA1;
}

/// MQTT 3.1.1 CONNACK return codes.
pub mod v3_return {
    pub const ACCEPTED: u8 = 0;
    pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 1;
    pub const IDENTIFIER_REJECTED: u8 = 2;
    pub const SERVER_UNAVAILABLE: u8 = 3;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 4;
    pub const NOT_AUTHORIZED: u8 = 5;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub props: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    /// Clean session (3.1.1) or clean start (5.0).
    pub clean: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub props: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub pid: Option<u16>,
    pub props: Properties,
    pub payload: Bytes,
}

/// Subscription options (the byte after each filter in SUBSCRIBE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubOptions {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained messages on subscribe; 1: only for a new subscription; 2: never.
    pub retain_handling: u8,
}

impl SubOptions {
    pub fn to_byte(self) -> u8 {
        self.qos
            | (self.no_local as u8) << 2
            | (self.retain_as_published as u8) << 3
            | self.retain_handling << 4
    }
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: a packet identifier and (5.0) a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck {
        session_present: bool,
        code: u8,
        props: Properties,
    },
    Publish(Publish),
    Ack {
        kind: AckKind,
        pid: u16,
        reason: u8,
        props: Properties,
    },
    Subscribe {
        pid: u16,
        props: Properties,
        filters: Vec<(String, SubOptions)>,
    },
    SubAck {
        pid: u16,
        props: Properties,
        codes: Vec<u8>,
    },
    Unsubscribe {
        pid: u16,
        props: Properties,
        filters: Vec<String>,
    },
    UnsubAck {
        pid: u16,
        props: Properties,
        codes: Vec<u8>,
    },
    PingReq,
    PingResp,
    Disconnect {
        reason: u8,
        props: Properties,
    },
    Auth {
        reason: u8,
        props: Properties,
    },
}

/// A reader over one packet's bytes.
pub struct Cursor {
    buf: Bytes,
}

impl Cursor {
    pub fn new(buf: Bytes) -> Cursor {
        Cursor { buf }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Malformed(format!(
                "{n} bytes expected, {} left",
                self.buf.len()
            )));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= ((b & 0x7F) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed(
            "variable byte integer over 4 bytes".into(),
        ))
    }

    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    pub fn sub(&mut self, n: usize) -> Result<Cursor, DecodeError> {
        Ok(Cursor::new(self.bytes(n)?))
    }

    pub fn binary(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u16()? as usize;
        Ok(self.bytes(n)?.to_vec())
    }

    /// A UTF-8 string as MQTT restricts it: valid UTF-8 and no U+0000.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        let raw = self.bytes(n)?;
        let s = std::str::from_utf8(&raw)
            .map_err(|_| DecodeError::Malformed("string is not valid UTF-8".into()))?;
        if s.contains('\0') {
            return Err(DecodeError::Malformed("string contains U+0000".into()));
        }
        Ok(s.to_string())
    }

    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }
}

pub fn put_varint(out: &mut BytesMut, mut v: u32) {
    loop {
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if v == 0 {
            return;
        }
    }
}

pub fn put_string(out: &mut BytesMut, s: &str) {
    put_binary(out, s.as_bytes());
}

pub fn put_binary(out: &mut BytesMut, b: &[u8]) {
    // Every string the broker writes comes from a decoded packet or is its own; longer than
    // 65,535 bytes cannot be encoded, so it is cut (never happens for decoded input).
    let n = b.len().min(u16::MAX as usize);
    out.put_u16(n as u16);
    out.put_slice(&b[..n]);
}

/// The largest remaining length MQTT can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Looks for a whole packet at the front of `buf`: `Ok(None)` while more bytes are needed.
/// `version` is `None` before CONNECT (only CONNECT is accepted then). A packet whose total
/// size exceeds `max_size` is refused as soon as its length is known.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<Version>,
    max_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut remaining = 0usize;
    let mut header_len = 1;
    loop {
        let Some(&b) = buf.get(header_len) else {
            if header_len > 4 {
                return Err(DecodeError::Malformed(
                    "remaining length over 4 bytes".into(),
                ));
            }
            return Ok(None);
        };
        remaining |= ((b & 0x7F) as usize) << (7 * (header_len - 1));
        header_len += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header_len > 4 {
            return Err(DecodeError::Malformed(
                "remaining length over 4 bytes".into(),
            ));
        }
    }
    let total = header_len + remaining;
    if total > max_size {
        return Err(DecodeError::TooLarge(total));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let first = buf[0];
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header_len);
    let mut c = Cursor::new(frame);
    let packet = decode_body(first, &mut c, version)?;
    if !c.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} bytes after the end of the packet",
            c.remaining()
        )));
    }
    Ok(Some(packet))
}

fn fixed_flags(first: u8, expected: u8, name: &str) -> Result<(), DecodeError> {
    if first & 0x0F != expected {
        return Err(DecodeError::Malformed(format!(
            "{name} with reserved flags 0x{:x}",
            first & 0x0F
        )));
    }
    Ok(())
}

/// A packet identifier where one is required: 0 is not one (section 2.2.1).
fn packet_id(c: &mut Cursor) -> Result<u16, DecodeError> {
    match c.u16()? {
        0 => Err(DecodeError::Malformed("packet identifier 0".into())),
        pid => Ok(pid),
    }
}

/// MQTT 5's optional tail of acks, DISCONNECT and AUTH: a reason code (success when
/// absent) and properties (none when absent).
fn reason_and_properties(
    c: &mut Cursor,
    allowed: Allowed,
) -> Result<(u8, Properties), DecodeError> {
    if c.is_empty() {
        return Ok((reason::SUCCESS, Properties::default()));
    }
    let r = c.u8()?;
    let p = if c.is_empty() {
        Properties::default()
    } else {
        Properties::decode(c, allowed)?
    };
    Ok((r, p))
}

fn decode_body(first: u8, c: &mut Cursor, version: Option<Version>) -> Result<Packet, DecodeError> {
    let kind = first >> 4;
    let Some(v) = version else {
        if kind != 1 {
            return Err(DecodeError::Protocol(format!(
                "packet type {kind} before CONNECT"
            )));
        }
        fixed_flags(first, 0, "CONNECT")?;
        return decode_connect(c).map(|c| Packet::Connect(Box::new(c)));
    };
    let v5 = v.is_v5();
    let props = |c: &mut Cursor, allowed: Allowed| -> Result<Properties, DecodeError> {
        if v5 {
            Properties::decode(c, allowed)
        } else {
            Ok(Properties::default())
        }
    };
    match kind {
        1 => Err(DecodeError::Protocol("a second CONNECT".into())),
        3 => {
            let qos = (first >> 1) & 3;
            if qos == 3 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 3".into()));
            }
            let dup = first & 0x08 != 0;
            if qos == 0 && dup {
                return Err(DecodeError::Malformed("PUBLISH QoS 0 with DUP set".into()));
            }
            let topic = c.string()?;
            let pid = if qos > 0 { Some(packet_id(c)?) } else { None };
            let props = props(c, allowed::PUBLISH)?;
            Ok(Packet::Publish(Publish {
                dup,
                qos,
                retain: first & 1 != 0,
                topic,
                pid,
                props,
                payload: c.rest(),
            }))
        }
        4..=7 => {
            let ack = match kind {
                4 => AckKind::PubAck,
                5 => AckKind::PubRec,
                6 => AckKind::PubRel,
                _ => AckKind::PubComp,
            };
            fixed_flags(first, if ack == AckKind::PubRel { 2 } else { 0 }, "ack")?;
            let pid = c.u16()?;
            let (reason, props) = if v5 {
                reason_and_properties(c, allowed::ACK)?
            } else {
                (reason::SUCCESS, Properties::default())
            };
            Ok(Packet::Ack {
                kind: ack,
                pid,
                reason,
                props,
            })
        }
        8 => {
            fixed_flags(first, 2, "SUBSCRIBE")?;
            let pid = packet_id(c)?;
            let props = props(c, allowed::SUBSCRIBE)?;
            let mut filters = Vec::new();
            while !c.is_empty() {
                let filter = c.string()?;
                let o = c.u8()?;
                let reserved = if v5 { o & 0xC0 } else { o & 0xFC };
                if reserved != 0 || o & 3 == 3 || (o >> 4) & 3 == 3 {
                    return Err(DecodeError::Malformed(format!(
                        "subscription options 0x{o:02x}"
                    )));
                }
                filters.push((
                    filter,
                    SubOptions {
                        qos: o & 3,
                        no_local: v5 && o & 4 != 0,
                        retain_as_published: v5 && o & 8 != 0,
                        retain_handling: if v5 { (o >> 4) & 3 } else { 0 },
                    },
                ));
            }
            if filters.is_empty() {
                return Err(DecodeError::Protocol("SUBSCRIBE without a filter".into()));
            }
            Ok(Packet::Subscribe {
                pid,
                props,
                filters,
            })
        }
        10 => {
            fixed_flags(first, 2, "UNSUBSCRIBE")?;
            let pid = packet_id(c)?;
            let props = props(c, allowed::UNSUBSCRIBE)?;
            let mut filters = Vec::new();
            while !c.is_empty() {
                filters.push(c.string()?);
            }
            if filters.is_empty() {
                return Err(DecodeError::Protocol("UNSUBSCRIBE without a filter".into()));
            }
            Ok(Packet::Unsubscribe {
                pid,
                props,
                filters,
            })
        }
        12 => {
            fixed_flags(first, 0, "PINGREQ")?;
            Ok(Packet::PingReq)
        }
        14 => {
            fixed_flags(first, 0, "DISCONNECT")?;
            let (reason, props) = if v5 {
                reason_and_properties(c, allowed::DISCONNECT)?
            } else {
                (reason::SUCCESS, Properties::default())
            };
            Ok(Packet::Disconnect { reason, props })
        }
        15 if v5 => {
            fixed_flags(first, 0, "AUTH")?;
            let (reason, props) = reason_and_properties(c, allowed::AUTH)?;
            Ok(Packet::Auth { reason, props })
        }
        2 | 9 | 11 | 13 => Err(DecodeError::Protocol(format!(
            "packet type {kind} is sent by servers only"
        ))),
        _ => Err(DecodeError::Malformed(format!("packet type {kind}"))),
    }
}

fn decode_connect(c: &mut Cursor) -> Result<Connect, DecodeError> {
    let name = c.string()?;
    let level = c.u8()?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) => Version::V3_1_1,
        ("MQTT", 5) => Version::V5,
        ("MQIsdp", 3) => Version::V3_1,
        _ => {
            return Err(DecodeError::UnsupportedProtocol(format!(
                "{name} level {level}"
            )))
        }
    };
    let flags = c.u8()?;
    if flags & 1 != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set".into()));
    }
    let keep_alive = c.u16()?;
    let props = if version.is_v5() {
        Properties::decode(c, allowed::CONNECT)?
    } else {
        Properties::default()
    };
    let client_id = c.string()?;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 3;
    let will_retain = flags & 0x20 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain without a will".into(),
        ));
    }
    if will_qos == 3 {
        return Err(DecodeError::Malformed("will QoS 3".into()));
    }
    let will = if will_flag {
        let props = if version.is_v5() {
            Properties::decode(c, allowed::WILL)?
        } else {
            Properties::default()
        };
        let topic = c.string()?;
        let payload = Bytes::from(c.binary()?);
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            props,
        })
    } else {
        None
    };
    let username = if flags & 0x80 != 0 {
        Some(c.string()?)
    } else {
        None
    };
    if flags & 0x40 != 0 && username.is_none() && version != Version::V5 {
        return Err(DecodeError::Malformed(
            "password without a user name".into(),
        ));
    }
    let password = if flags & 0x40 != 0 {
        Some(c.binary()?)
    } else {
        None
    };
    Ok(Connect {
        version,
        clean: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        props,
    })
}

impl Packet {
    /// Appends the packet in the given protocol version's form.
    pub fn encode(&self, v5: bool, out: &mut BytesMut) {
        if let Packet::Publish(p) = self {
            // The one packet on the delivery path: written in place, the payload copied
            // once, into `out`.
            encode_publish(p, v5, out);
            return;
        }
        let mut body = BytesMut::new();
        let first: u8 = match self {
            Packet::Connect(c) => {
                encode_connect(c, &mut body);
                0x10
            }
            Packet::ConnAck {
                session_present,
                code,
                props,
            } => {
                body.put_u8(*session_present as u8);
                body.put_u8(*code);
                if v5 {
                    props.encode(&mut body);
                }
                0x20
            }
            Packet::Publish(_) => unreachable!("encoded by encode_publish above"),
            Packet::Ack {
                kind,
                pid,
                reason,
                props,
            } => {
                body.put_u16(*pid);
                if v5 && (*reason != reason::SUCCESS || !props.is_empty()) {
                    body.put_u8(*reason);
                    if !props.is_empty() {
                        props.encode(&mut body);
                    }
                }
                match kind {
                    AckKind::PubAck => 0x40,
                    AckKind::PubRec => 0x50,
                    AckKind::PubRel => 0x62,
                    AckKind::PubComp => 0x70,
                }
            }
            Packet::Subscribe {
                pid,
                props,
                filters,
            } => {
                body.put_u16(*pid);
                if v5 {
                    props.encode(&mut body);
                }
                for (f, o) in filters {
                    put_string(&mut body, f);
                    body.put_u8(o.to_byte());
                }
                0x82
            }
            Packet::SubAck { pid, props, codes } | Packet::UnsubAck { pid, props, codes } => {
                body.put_u16(*pid);
                let is_sub = matches!(self, Packet::SubAck { .. });
                if v5 {
                    props.encode(&mut body);
                }
                if is_sub || v5 {
                    body.put_slice(codes);
                }
                if is_sub {
                    0x90
                } else {
                    0xB0
                }
            }
            Packet::Unsubscribe {
                pid,
                props,
                filters,
            } => {
                body.put_u16(*pid);
                if v5 {
                    props.encode(&mut body);
                }
                for f in filters {
                    put_string(&mut body, f);
                }
                0xA2
            }
            Packet::PingReq => 0xC0,
            Packet::PingResp => 0xD0,
            Packet::Disconnect { reason, props } => {
                if v5 && (*reason != reason::SUCCESS || !props.is_empty()) {
                    body.put_u8(*reason);
                    props.encode(&mut body);
                }
                0xE0
            }
            Packet::Auth { reason, props } => {
                body.put_u8(*reason);
                props.encode(&mut body);
                0xF0
            }
        };
        out.reserve(body.len() + 5);
        out.put_u8(first);
        put_varint(out, body.len() as u32);
        out.put_slice(&body);
    }
}

fn encode_publish(p: &Publish, v5: bool, out: &mut BytesMut) {
    let props = (v5 && !p.props.is_empty()).then(|| {
        let mut b = BytesMut::new();
        p.props.encode(&mut b);
        b
    });
    let props_len = match (&props, v5) {
        (Some(b), _) => b.len(),
        (None, true) => 1,
        (None, false) => 0,
    };
    let topic_len = p.topic.len().min(u16::MAX as usize);
    let len = 2 + topic_len + if p.pid.is_some() { 2 } else { 0 } + props_len + p.payload.len();
    out.reserve(len + 5);
    out.put_u8(0x30 | (p.dup as u8) << 3 | p.qos << 1 | p.retain as u8);
    put_varint(out, len as u32);
    put_string(out, &p.topic);
    if let Some(pid) = p.pid {
        out.put_u16(pid);
    }
    match props {
        Some(b) => out.put_slice(&b),
        None if v5 => out.put_u8(0),
        None => {}
    }
    out.put_slice(&p.payload);
}

fn encode_connect(c: &Connect, body: &mut BytesMut) {
    let (name, level) = match c.version {
        Version::V3_1 => ("MQIsdp", 3),
        Version::V3_1_1 => ("MQTT", 4),
        Version::V5 => ("MQTT", 5),
    };
    put_string(body, name);
    body.put_u8(level);
    let mut flags = (c.clean as u8) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | w.qos << 3 | (w.retain as u8) << 5;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    body.put_u8(flags);
    body.put_u16(c.keep_alive);
    if c.version.is_v5() {
        c.props.encode(body);
    }
    put_string(body, &c.client_id);
    if let Some(w) = &c.will {
        if c.version.is_v5() {
            w.props.encode(body);
        }
        put_string(body, &w.topic);
        put_binary(body, &w.payload);
    }
    if let Some(u) = &c.username {
        put_string(body, u);
    }
    if let Some(p) = &c.password {
        put_binary(body, p);
    }
}

//! MQTT 5 properties: the identifier-tagged fields that follow the variable header of most
//! packets. One struct for every packet kind; the decoder refuses a property twice where the
//! spec allows it once, and an identifier the spec does not define or does not allow in the
//! packet at hand (section 2.2.2.2: all malformed).

use bytes::{BufMut, BytesMut};

use super::{put_binary, put_string, put_varint, Cursor, DecodeError};

/// Every MQTT 5 property; a packet uses the ones the spec allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_utf8: Option<bool>,
    pub message_expiry: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub subscription_ids: Vec<u32>,
    pub session_expiry: Option<u32>,
    pub assigned_client_id: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub auth_method: Option<String>,
    pub auth_data: Option<Vec<u8>>,
    pub request_problem_info: Option<bool>,
    pub will_delay: Option<u32>,
    pub request_response_info: Option<bool>,
    pub response_info: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<bool>,
    pub user: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_available: Option<bool>,
    pub subscription_ids_available: Option<bool>,
    pub shared_available: Option<bool>,
}

/// The properties a packet may carry, one bit per identifier (all are below 64).
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    ids: u64,
    packet: &'static str,
}

impl Allowed {
    const fn new(packet: &'static str, ids: &[u8]) -> Allowed {
        let mut bits = 0u64;
        let mut i = 0;
        while i < ids.len() {
            bits |= 1 << ids[i];
            i += 1;
        }
        Allowed { ids: bits, packet }
    }

    fn permits(self, id: u32) -> bool {
        id < 64 && self.ids & (1 << id) != 0
    }
}

/// What a client may send in each packet (MQTT 5 section 2.2.2.2's table).
pub mod allowed {
    use super::Allowed;

    pub const CONNECT: Allowed = Allowed::new(
        "CONNECT",
        &[0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27],
    );
    pub const WILL: Allowed = Allowed::new(
        "the will properties",
        &[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26],
    );
    pub const PUBLISH: Allowed =
        Allowed::new("PUBLISH", &[0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26]);
    pub const ACK: Allowed = Allowed::new("an acknowledgement", &[0x1F, 0x26]);
    pub const SUBSCRIBE: Allowed = Allowed::new("SUBSCRIBE", &[0x0B, 0x26]);
    pub const UNSUBSCRIBE: Allowed = Allowed::new("UNSUBSCRIBE", &[0x26]);
    pub const DISCONNECT: Allowed = Allowed::new("DISCONNECT", &[0x11, 0x1C, 0x1F, 0x26]);
    pub const AUTH: Allowed = Allowed::new("AUTH", &[0x15, 0x16, 0x1F, 0x26]);
}

fn once<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol(format!(
            "property 0x{id:02x} given twice"
        )));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(c: &mut Cursor, id: u8) -> Result<bool, DecodeError> {
    match c.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(DecodeError::Protocol(format!(
            "property 0x{id:02x} must be 0 or 1, got {v}"
        ))),
    }
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// What a message carries on to its receivers (section 3.3.2.3): a retained message
    /// keeps these and nothing else of its PUBLISH.
    pub fn forwardable(&self) -> Properties {
        Properties {
            payload_format_utf8: self.payload_format_utf8,
            message_expiry: self.message_expiry,
            content_type: self.content_type.clone(),
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user: self.user.clone(),
            ..Properties::default()
        }
    }

    /// Reads a property length and the properties it covers, each one `allowed` there.
    pub fn decode(c: &mut Cursor, allowed: Allowed) -> Result<Properties, DecodeError> {
        let len = c.varint()? as usize;
        let mut inner = c.sub(len)?;
        let mut p = Properties::default();
        while !inner.is_empty() {
            let id = inner.varint()?;
            if !allowed.permits(id) {
                return Err(DecodeError::Malformed(format!(
                    "property 0x{id:02x} is not allowed in {}",
                    allowed.packet
                )));
            }
            let id8 = id as u8;
            match id {
                0x01 => once(&mut p.payload_format_utf8, flag(&mut inner, id8)?, id8)?,
                0x02 => once(&mut p.message_expiry, inner.u32()?, id8)?,
                0x03 => once(&mut p.content_type, inner.string()?, id8)?,
                0x08 => once(&mut p.response_topic, inner.string()?, id8)?,
                0x09 => once(&mut p.correlation_data, inner.binary()?, id8)?,
                0x0B => {
                    let v = inner.varint()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol("subscription identifier 0".into()));
                    }
                    p.subscription_ids.push(v);
                }
                0x11 => once(&mut p.session_expiry, inner.u32()?, id8)?,
                0x12 => once(&mut p.assigned_client_id, inner.string()?, id8)?,
                0x13 => once(&mut p.server_keep_alive, inner.u16()?, id8)?,
                0x15 => once(&mut p.auth_method, inner.string()?, id8)?,
                0x16 => once(&mut p.auth_data, inner.binary()?, id8)?,
                0x17 => once(&mut p.request_problem_info, flag(&mut inner, id8)?, id8)?,
                0x18 => once(&mut p.will_delay, inner.u32()?, id8)?,
                0x19 => once(&mut p.request_response_info, flag(&mut inner, id8)?, id8)?,
                0x1A => once(&mut p.response_info, inner.string()?, id8)?,
                0x1C => once(&mut p.server_reference, inner.string()?, id8)?,
                0x1F => once(&mut p.reason_string, inner.string()?, id8)?,
                0x21 => {
                    let v = inner.u16()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol("receive maximum 0".into()));
                    }
                    once(&mut p.receive_maximum, v, id8)?
                }
                0x22 => once(&mut p.topic_alias_maximum, inner.u16()?, id8)?,
                0x23 => once(&mut p.topic_alias, inner.u16()?, id8)?,
                0x24 => once(&mut p.maximum_qos, inner.u8()?, id8)?,
                0x25 => once(&mut p.retain_available, flag(&mut inner, id8)?, id8)?,
                0x26 => {
                    let k = inner.string()?;
                    let v = inner.string()?;
                    p.user.push((k, v));
                }
                0x27 => {
                    let v = inner.u32()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol("maximum packet size 0".into()));
                    }
                    once(&mut p.maximum_packet_size, v, id8)?
                }
                0x28 => once(&mut p.wildcard_available, flag(&mut inner, id8)?, id8)?,
                0x29 => once(
                    &mut p.subscription_ids_available,
                    flag(&mut inner, id8)?,
                    id8,
                )?,
                0x2A => once(&mut p.shared_available, flag(&mut inner, id8)?, id8)?,
                other => {
                    return Err(DecodeError::Malformed(format!(
                        "unknown property identifier 0x{other:02x}"
                    )))
                }
            }
        }
        Ok(p)
    }

    /// Writes the property length and the properties.
    pub fn encode(&self, out: &mut BytesMut) {
        if self.is_empty() {
            out.put_u8(0);
            return;
        }
        let mut body = BytesMut::new();
        self.encode_body(&mut body);
        put_varint(out, body.len() as u32);
        out.put_slice(&body);
    }

    fn encode_body(&self, b: &mut BytesMut) {
        let byte = |b: &mut BytesMut, id: u8, v: u8| {
            b.put_u8(id);
            b.put_u8(v);
        };
        if let Some(v) = self.payload_format_utf8 {
            byte(b, 0x01, v as u8);
        }
        if let Some(v) = self.message_expiry {
            b.put_u8(0x02);
            b.put_u32(v);
        }
        if let Some(v) = &self.content_type {
            b.put_u8(0x03);
            put_string(b, v);
        }
        if let Some(v) = &self.response_topic {
            b.put_u8(0x08);
            put_string(b, v);
        }
        if let Some(v) = &self.correlation_data {
            b.put_u8(0x09);
            put_binary(b, v);
        }
        for id in &self.subscription_ids {
            b.put_u8(0x0B);
            put_varint(b, *id);
        }
        if let Some(v) = self.session_expiry {
            b.put_u8(0x11);
            b.put_u32(v);
        }
        if let Some(v) = &self.assigned_client_id {
            b.put_u8(0x12);
            put_string(b, v);
        }
        if let Some(v) = self.server_keep_alive {
            b.put_u8(0x13);
            b.put_u16(v);
        }
        if let Some(v) = &self.auth_method {
            b.put_u8(0x15);
            put_string(b, v);
        }
        if let Some(v) = &self.auth_data {
            b.put_u8(0x16);
            put_binary(b, v);
        }
        if let Some(v) = self.request_problem_info {
            byte(b, 0x17, v as u8);
        }
        if let Some(v) = self.will_delay {
            b.put_u8(0x18);
            b.put_u32(v);
        }
        if let Some(v) = self.request_response_info {
            byte(b, 0x19, v as u8);
        }
        if let Some(v) = &self.response_info {
            b.put_u8(0x1A);
            put_string(b, v);
        }
        if let Some(v) = &self.server_reference {
            b.put_u8(0x1C);
            put_string(b, v);
        }
        if let Some(v) = &self.reason_string {
            b.put_u8(0x1F);
            put_string(b, v);
        }
        if let Some(v) = self.receive_maximum {
            b.put_u8(0x21);
            b.put_u16(v);
        }
        if let Some(v) = self.topic_alias_maximum {
            b.put_u8(0x22);
            b.put_u16(v);
        }
        if let Some(v) = self.topic_alias {
            b.put_u8(0x23);
            b.put_u16(v);
        }
        if let Some(v) = self.maximum_qos {
            byte(b, 0x24, v);
        }
        if let Some(v) = self.retain_available {
            byte(b, 0x25, v as u8);
        }
        for (k, v) in &self.user {
            b.put_u8(0x26);
            put_string(b, k);
            put_string(b, v);
        }
        if let Some(v) = self.maximum_packet_size {
            b.put_u8(0x27);
            b.put_u32(v);
        }
        if let Some(v) = self.wildcard_available {
            byte(b, 0x28, v as u8);
        }
        if let Some(v) = self.subscription_ids_available {
            byte(b, 0x29, v as u8);
        }
        if let Some(v) = self.shared_available {
            byte(b, 0x2A, v as u8);
        }
    }
}

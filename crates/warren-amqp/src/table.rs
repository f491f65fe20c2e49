//! AMQP field tables and field values, using RabbitMQ's type letters.
//!
//! Tables keep their entries in wire order so decode-then-encode is
//! byte-identical. Decoding limits nesting depth ([`MAX_DEPTH`]) so hostile
//! input cannot overflow the stack.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::wire;

/// Maximum nesting of tables/arrays accepted by the decoder.
pub const MAX_DEPTH: usize = 64;

/// One value in a field table or array.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: value / 10^scale
    Decimal {
        /// Number of decimal digits.
        scale: u8,
        /// Unscaled value.
        value: u32,
    },
    /// `S`
    LongString(Bytes),
    /// `x`
    ByteArray(Bytes),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
}

/// An order-preserving field table; keys are short strings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(String, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Set `key`, replacing an existing entry in place or appending.
    pub fn insert(&mut self, key: impl Into<String>, v: FieldValue) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = v,
            None => self.0.push((key, v)),
        }
    }

    /// Remove every entry named `key`, returning the first removed value.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let pos = self.0.iter().position(|(k, _)| k == key)?;
        let (_, v) = self.0.remove(pos);
        self.0.retain(|(k, _)| k != key);
        Some(v)
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, FieldValue)> {
        self.0.iter()
    }

    /// Decode a table including its u32 length prefix.
    pub fn decode(buf: &mut &[u8]) -> Result<FieldTable, DecodeError> {
        decode_table(buf, 0)
    }

    /// Encode the table including its u32 length prefix.
    pub fn encode(&self, out: &mut BytesMut) {
        let at = wire::begin_u32_len(out);
        for (k, v) in &self.0 {
            wire::write_shortstr(out, k);
            v.encode(out);
        }
        wire::patch_u32_len(out, at);
    }

    /// Encoded size in bytes, including the length prefix.
    pub fn encoded_len(&self) -> usize {
        4 + self
            .0
            .iter()
            .map(|(k, v)| 1 + k.len().min(255) + v.encoded_len())
            .sum::<usize>()
    }
}

impl FromIterator<(String, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (String, FieldValue)>>(iter: I) -> Self {
        FieldTable(iter.into_iter().collect())
    }
}

fn decode_table(buf: &mut &[u8], depth: usize) -> Result<FieldTable, DecodeError> {
    if depth >= MAX_DEPTH {
        return Err(DecodeError::Other("field table nesting too deep"));
    }
    let mut body = wire::read_longstr_bytes(buf)?;
    let mut entries = Vec::new();
    while !body.is_empty() {
        let key = wire::read_shortstr(&mut body)?;
        let value = FieldValue::decode_depth(&mut body, depth + 1)?;
        entries.push((key, value));
    }
    Ok(FieldTable(entries))
}

fn decode_array(buf: &mut &[u8], depth: usize) -> Result<Vec<FieldValue>, DecodeError> {
    if depth >= MAX_DEPTH {
        return Err(DecodeError::Other("field array nesting too deep"));
    }
    let mut body = wire::read_longstr_bytes(buf)?;
    let mut items = Vec::new();
    while !body.is_empty() {
        items.push(FieldValue::decode_depth(&mut body, depth + 1)?);
    }
    Ok(items)
}

/// Checks that `buf` starts with a well-formed field table (every type tag known, every
/// length in bounds, nesting within [`MAX_DEPTH`]) without building it: what a broker that
/// passes tables on raw needs to refuse what a full decode would. Advances `buf` past it.
pub fn scan_table(buf: &mut &[u8]) -> Result<(), DecodeError> {
    scan_table_depth(buf, 0)
}

fn scan_table_depth(buf: &mut &[u8], depth: usize) -> Result<(), DecodeError> {
    if depth >= MAX_DEPTH {
        return Err(DecodeError::Other("field table nesting too deep"));
    }
    let mut body = wire::read_longstr_bytes(buf)?;
    while !body.is_empty() {
        let n = usize::from(wire::read_u8(&mut body)?);
        body = body.get(n..).ok_or(DecodeError::Truncated)?;
        scan_value(&mut body, depth + 1)?;
    }
    Ok(())
}

fn scan_value(buf: &mut &[u8], depth: usize) -> Result<(), DecodeError> {
    let skip = |buf: &mut &[u8], n: usize| -> Result<(), DecodeError> {
        *buf = buf.get(n..).ok_or(DecodeError::Truncated)?;
        Ok(())
    };
    match wire::read_u8(buf)? {
        b't' | b'b' | b'B' => skip(buf, 1),
        b's' | b'u' => skip(buf, 2),
        b'I' | b'i' | b'f' => skip(buf, 4),
        b'l' | b'd' | b'T' => skip(buf, 8),
        b'D' => skip(buf, 5),
        b'S' | b'x' => wire::read_longstr_bytes(buf).map(|_| ()),
        b'V' => Ok(()),
        b'F' => scan_table_depth(buf, depth),
        b'A' => {
            if depth >= MAX_DEPTH {
                return Err(DecodeError::Other("field array nesting too deep"));
            }
            let mut body = wire::read_longstr_bytes(buf)?;
            while !body.is_empty() {
                scan_value(&mut body, depth + 1)?;
            }
            Ok(())
        }
        other => Err(DecodeError::BadFieldType(other)),
    }
}

impl FieldValue {
    /// Decode one tagged value (type octet followed by the value).
    pub fn decode(buf: &mut &[u8]) -> Result<FieldValue, DecodeError> {
        FieldValue::decode_depth(buf, 0)
    }

    fn decode_depth(buf: &mut &[u8], depth: usize) -> Result<FieldValue, DecodeError> {
        let tag = wire::read_u8(buf)?;
        Ok(match tag {
            b't' => FieldValue::Bool(wire::read_u8(buf)? != 0),
            b'b' => FieldValue::I8(wire::read_u8(buf)? as i8),
            b'B' => FieldValue::U8(wire::read_u8(buf)?),
            b's' => FieldValue::I16(wire::read_u16(buf)? as i16),
            b'u' => FieldValue::U16(wire::read_u16(buf)?),
            b'I' => FieldValue::I32(wire::read_u32(buf)? as i32),
            b'i' => FieldValue::U32(wire::read_u32(buf)?),
            b'l' => FieldValue::I64(wire::read_u64(buf)? as i64),
            b'f' => FieldValue::F32(f32::from_bits(wire::read_u32(buf)?)),
            b'd' => FieldValue::F64(f64::from_bits(wire::read_u64(buf)?)),
            b'D' => {
                let scale = wire::read_u8(buf)?;
                let value = wire::read_u32(buf)?;
                FieldValue::Decimal { scale, value }
            }
            b'S' => FieldValue::LongString(wire::read_longstr(buf)?),
            b'x' => FieldValue::ByteArray(wire::read_longstr(buf)?),
            b'A' => FieldValue::Array(decode_array(buf, depth)?),
            b'T' => FieldValue::Timestamp(wire::read_u64(buf)?),
            b'F' => FieldValue::Table(decode_table(buf, depth)?),
            b'V' => FieldValue::Void,
            other => return Err(DecodeError::BadFieldType(other)),
        })
    }

    /// The type tag octet for this value.
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal { .. } => b'D',
            FieldValue::LongString(_) => b'S',
            FieldValue::ByteArray(_) => b'x',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
        }
    }

    /// Encode the type tag followed by the value.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.tag());
        match self {
            FieldValue::Bool(b) => out.put_u8(u8::from(*b)),
            FieldValue::I8(v) => out.put_i8(*v),
            FieldValue::U8(v) => out.put_u8(*v),
            FieldValue::I16(v) => out.put_i16(*v),
            FieldValue::U16(v) => out.put_u16(*v),
            FieldValue::I32(v) => out.put_i32(*v),
            FieldValue::U32(v) => out.put_u32(*v),
            FieldValue::I64(v) => out.put_i64(*v),
            FieldValue::F32(v) => out.put_u32(v.to_bits()),
            FieldValue::F64(v) => out.put_u64(v.to_bits()),
            FieldValue::Decimal { scale, value } => {
                out.put_u8(*scale);
                out.put_u32(*value);
            }
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => wire::write_longstr(out, b),
            FieldValue::Array(items) => {
                let at = wire::begin_u32_len(out);
                for item in items {
                    item.encode(out);
                }
                wire::patch_u32_len(out, at);
            }
            FieldValue::Timestamp(v) => out.put_u64(*v),
            FieldValue::Table(t) => t.encode(out),
            FieldValue::Void => {}
        }
    }

    /// Encoded size in bytes, including the type tag.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            FieldValue::Bool(_) | FieldValue::I8(_) | FieldValue::U8(_) => 1,
            FieldValue::I16(_) | FieldValue::U16(_) => 2,
            FieldValue::I32(_) | FieldValue::U32(_) | FieldValue::F32(_) => 4,
            FieldValue::I64(_) | FieldValue::F64(_) | FieldValue::Timestamp(_) => 8,
            FieldValue::Decimal { .. } => 5,
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => 4 + b.len(),
            FieldValue::Array(items) => 4 + items.iter().map(|i| i.encoded_len()).sum::<usize>(),
            FieldValue::Table(t) => t.encoded_len(),
            FieldValue::Void => 0,
        }
    }

    /// The long string as `&str`, if this is a valid UTF-8 `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Any integer type widened to i64.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v.into(),
            FieldValue::U8(v) => v.into(),
            FieldValue::I16(v) => v.into(),
            FieldValue::U16(v) => v.into(),
            FieldValue::I32(v) => v.into(),
            FieldValue::U32(v) => v.into(),
            FieldValue::I64(v) => v,
            _ => return None,
        })
    }

    /// The boolean, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The nested table, if this is a `Table`.
    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            FieldValue::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The array items, if this is an `Array`.
    pub fn as_array(&self) -> Option<&[FieldValue]> {
        match self {
            FieldValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// RabbitMQ's name for the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "bool",
            FieldValue::I8(_) => "byte",
            FieldValue::U8(_) => "unsignedbyte",
            FieldValue::I16(_) => "short",
            FieldValue::U16(_) => "unsignedshort",
            FieldValue::I32(_) => "signedint",
            FieldValue::U32(_) => "unsignedint",
            FieldValue::I64(_) => "long",
            FieldValue::F32(_) => "float",
            FieldValue::F64(_) => "double",
            FieldValue::Decimal { .. } => "decimal",
            FieldValue::LongString(_) => "longstr",
            FieldValue::ByteArray(_) => "binary",
            FieldValue::Array(_) => "array",
            FieldValue::Timestamp(_) => "timestamp",
            FieldValue::Table(_) => "table",
            FieldValue::Void => "void",
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::LongString(Bytes::from(s))
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

impl From<FieldTable> for FieldValue {
    fn from(t: FieldTable) -> Self {
        FieldValue::Table(t)
    }
}

//! Low-level big-endian readers and writers for AMQP primitive types.
//!
//! Readers take `&mut &[u8]` and advance it past what they consumed; they
//! never panic, returning [`DecodeError::Truncated`] when input runs out.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// Take exactly `n` bytes off the front of `buf`.
#[inline]
pub fn read_bytes<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if buf.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[inline]
fn read_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    let bytes = read_bytes(buf, N)?;
    let mut arr = [0u8; N];
    arr.copy_from_slice(bytes);
    Ok(arr)
}

/// Read an octet.
#[inline]
pub fn read_u8(buf: &mut &[u8]) -> Result<u8, DecodeError> {
    Ok(read_array::<1>(buf)?[0])
}

/// Read a big-endian u16.
#[inline]
pub fn read_u16(buf: &mut &[u8]) -> Result<u16, DecodeError> {
    Ok(u16::from_be_bytes(read_array(buf)?))
}

/// Read a big-endian u32.
#[inline]
pub fn read_u32(buf: &mut &[u8]) -> Result<u32, DecodeError> {
    Ok(u32::from_be_bytes(read_array(buf)?))
}

/// Read a big-endian u64.
#[inline]
pub fn read_u64(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(read_array(buf)?))
}

/// Read the raw bytes of a short string (u8 length prefix), unvalidated.
#[inline]
pub fn read_shortstr_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = read_u8(buf)? as usize;
    read_bytes(buf, len)
}

/// A short string held inline up to 24 bytes (heap-allocated beyond): the exchange and
/// routing key that come with every published message, so that taking them costs no
/// allocation.
pub type ShortString = compact_str::CompactString;

/// Read a short string into a [`ShortString`]; it must be valid UTF-8.
pub fn read_shortstr_inline(buf: &mut &[u8]) -> Result<ShortString, DecodeError> {
    let raw = read_shortstr_bytes(buf)?;
    ShortString::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)
}

/// Read a short string; it must be valid UTF-8.
pub fn read_shortstr(buf: &mut &[u8]) -> Result<String, DecodeError> {
    let raw = read_shortstr_bytes(buf)?;
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| DecodeError::InvalidUtf8)
}

/// Read the raw bytes of a long string (u32 length prefix).
#[inline]
pub fn read_longstr_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = read_u32(buf)? as usize;
    read_bytes(buf, len)
}

/// Read a long string (arbitrary bytes), copying it into a `Bytes`.
pub fn read_longstr(buf: &mut &[u8]) -> Result<Bytes, DecodeError> {
    read_longstr_bytes(buf).map(Bytes::copy_from_slice)
}

/// Skip a short string without validating it.
#[inline]
pub fn skip_shortstr(buf: &mut &[u8]) -> Result<(), DecodeError> {
    read_shortstr_bytes(buf).map(|_| ())
}

/// Skip a long string (or anything with a u32 length prefix, e.g. a table).
#[inline]
pub fn skip_longstr(buf: &mut &[u8]) -> Result<(), DecodeError> {
    read_longstr_bytes(buf).map(|_| ())
}

/// Longest prefix of `s` that fits in `max` bytes and ends on a char boundary.
pub fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut n = max;
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// Write a short string. Strings longer than 255 bytes are truncated at a
/// char boundary rather than panicking.
pub fn write_shortstr(out: &mut BytesMut, s: &str) {
    let s = truncate_at_char_boundary(s, 255);
    out.put_u8(s.len() as u8);
    out.put_slice(s.as_bytes());
}

/// Write a long string (u32 length prefix). Anything beyond `u32::MAX`
/// bytes is truncated.
pub fn write_longstr(out: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(u32::MAX as usize)];
    out.put_u32(s.len() as u32);
    out.put_slice(s);
}

/// Reserve a u32 length slot; returns its offset for [`patch_u32_len`].
#[inline]
pub fn begin_u32_len(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_u32(0);
    at
}

/// Fill the slot reserved by [`begin_u32_len`] with the number of bytes
/// written after it.
#[inline]
pub fn patch_u32_len(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortstr_truncates_on_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let mut out = BytesMut::new();
        write_shortstr(&mut out, &s);
        assert_eq!(out[0], 254);
        let mut buf = &out[..];
        assert_eq!(read_shortstr(&mut buf).unwrap(), "é".repeat(127));
        assert!(buf.is_empty());
    }

    #[test]
    fn readers_report_truncation() {
        let mut b: &[u8] = &[1, 2, 3];
        assert_eq!(read_u32(&mut b), Err(DecodeError::Truncated));
        let mut b: &[u8] = &[5, b'a'];
        assert_eq!(read_shortstr(&mut b), Err(DecodeError::Truncated));
        let mut b: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0];
        assert_eq!(read_longstr(&mut b), Err(DecodeError::Truncated));
        let mut b: &[u8] = &[2, 0xff, 0xfe];
        assert_eq!(read_shortstr(&mut b), Err(DecodeError::InvalidUtf8));
    }
}

//! The on-disk layout of segment files: their names, their 16-byte header, and how a
//! record is framed and checked.
//!
//! A segment file is `[header 16 B][record]*`; the header is `b"WRNSEG02"`, the segment id
//! (u32 LE) and the CRC32C of those 12 bytes. A record is `[len u32 LE][check u32 LE]
//! [payload]`, the check being the CRC32C of the payload XOR a value derived from the
//! segment id ([`seed`]); its `Location.offset` is the offset of the record's first byte, so
//! the first record of every segment is at offset 16 and offset 0 is never valid.
//!
//! The seed is there because segment files are recycled (see `recycle`): a record left in a
//! reused file by its previous segment fails the check under the new id, even where the same
//! payload length puts it at exactly the offset a location names (a write lost to an I/O
//! error, say). Files of the older layout (`WRNSEG01`, plain CRC32C) are still read.

use std::fs::File;

use bytes::Bytes;

use crate::error::StoreError;
use crate::io_stats::IoCounters;
use crate::Location;

/// Bytes of the segment file header.
pub(crate) const SEG_HEADER_LEN: u64 = 16;
/// Bytes of a record header (`len` + `crc32c`).
pub(crate) const REC_HEADER_LEN: u64 = 8;
const SEG_MAGIC: &[u8; 8] = b"WRNSEG02";
/// Segments written before records were seeded with their segment id.
const SEG_MAGIC_V1: &[u8; 8] = b"WRNSEG01";

/// How a segment's records are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordCheck {
    /// CRC32C of the payload XOR [`seed`] of the segment id (`WRNSEG02`).
    Seeded,
    /// CRC32C of the payload (`WRNSEG01`).
    Plain,
    /// The header is unreadable: either passes.
    Either,
}

/// What a record's CRC is XORed with in segment `id`: distinct for distinct ids (an odd
/// multiplier and an offset are bijections on u32).
pub(crate) fn seed(id: u32) -> u32 {
    id.wrapping_mul(0x9E37_79B1).wrapping_add(0x7F4A_7C15)
}

/// The check of a segment file, from its first 16 bytes.
pub(crate) fn check_of_header(h: &[u8]) -> RecordCheck {
    if h.len() < SEG_HEADER_LEN as usize
        || crc32c::crc32c(&h[..12]) != u32::from_le_bytes([h[12], h[13], h[14], h[15]])
    {
        return RecordCheck::Either;
    }
    match &h[..8] {
        m if m == SEG_MAGIC => RecordCheck::Seeded,
        m if m == SEG_MAGIC_V1 => RecordCheck::Plain,
        _ => RecordCheck::Either,
    }
}

pub(crate) fn segment_file_name(id: u32) -> String {
    format!("{id:08}.seg")
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<u32> {
    crate::numbered_name(name, ".seg")
}

pub(crate) fn segment_header(id: u32) -> [u8; SEG_HEADER_LEN as usize] {
    let mut h = [0u8; SEG_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEG_MAGIC);
    h[8..12].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a record read back (header + payload) against the location it was read for.
pub(crate) fn decode_record(
    buf: Vec<u8>,
    loc: Location,
    check: RecordCheck,
) -> Result<Bytes, StoreError> {
    debug_assert_eq!(buf.len() as u64, REC_HEADER_LEN + u64::from(loc.len));
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len != loc.len {
        return Err(StoreError::corrupt(format!(
            "record at {loc:?}: length field {len} does not match the location"
        )));
    }
    let payload = &buf[REC_HEADER_LEN as usize..];
    let sum = crc32c::crc32c(payload);
    let seeded = sum ^ seed(loc.segment) == crc;
    let ok = match check {
        RecordCheck::Seeded => seeded,
        RecordCheck::Plain => sum == crc,
        RecordCheck::Either => seeded || sum == crc,
    };
    if !ok {
        return Err(StoreError::corrupt(format!(
            "record at {loc:?}: checksum mismatch"
        )));
    }
    Ok(Bytes::from(buf).slice(REC_HEADER_LEN as usize..))
}

/// Reads one record from a segment file. A short read (truncated file) is `Corrupt`.
pub(crate) fn read_from_file(
    file: &File,
    loc: Location,
    check: RecordCheck,
    io: &IoCounters,
) -> Result<Bytes, StoreError> {
    let mut buf = vec![0u8; (REC_HEADER_LEN + u64::from(loc.len)) as usize];
    match io.read_exact_at(file, &mut buf, u64::from(loc.offset)) {
        Ok(()) => decode_record(buf, loc, check),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(StoreError::corrupt(
            format!("record at {loc:?}: beyond the end of the segment file"),
        )),
        Err(e) => Err(StoreError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_segments_keep_their_plain_checksum() {
        let mut v1 = segment_header(5);
        v1[..8].copy_from_slice(SEG_MAGIC_V1);
        let crc = crc32c::crc32c(&v1[..12]);
        v1[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_of_header(&v1), RecordCheck::Plain);
        assert_eq!(check_of_header(&segment_header(5)), RecordCheck::Seeded);
        let mut damaged = segment_header(5);
        damaged[9] ^= 1;
        assert_eq!(check_of_header(&damaged), RecordCheck::Either);

        let payload = b"hello";
        let loc = Location {
            segment: 5,
            offset: 16,
            len: 5,
        };
        let record = |crc: u32| {
            let mut r = 5u32.to_le_bytes().to_vec();
            r.extend_from_slice(&crc.to_le_bytes());
            r.extend_from_slice(payload);
            r
        };
        let plain = crc32c::crc32c(payload);
        let seeded = plain ^ seed(5);
        assert!(decode_record(record(plain), loc, RecordCheck::Plain).is_ok());
        assert!(decode_record(record(plain), loc, RecordCheck::Seeded).is_err());
        assert!(decode_record(record(seeded), loc, RecordCheck::Seeded).is_ok());
        assert!(decode_record(record(seeded), loc, RecordCheck::Plain).is_err());
        assert!(decode_record(record(plain), loc, RecordCheck::Either).is_ok());
        assert!(decode_record(record(seeded), loc, RecordCheck::Either).is_ok());
        assert_ne!(seed(1), seed(2));
    }
}

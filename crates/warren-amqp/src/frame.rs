//! Frame splitting and frame encoding.
//!
//! A frame is `type:u8 channel:u16 size:u32 payload[size] 0xCE`. Decoding is
//! zero-copy: the payload of a [`RawFrame`] is a slice of the input buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::constants::{FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::methods::Method;

/// Size of the frame header (type, channel, size).
pub const FRAME_HEADER_SIZE: usize = 7;

/// One frame, payload not yet interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// One of the `FRAME_*` type constants.
    pub frame_type: u8,
    /// Channel number (0 for connection-level frames).
    pub channel: u16,
    /// The payload, without header or end octet.
    pub payload: Bytes,
}

impl RawFrame {
    /// Encode this frame (header, payload, end octet).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_frame(out, self.frame_type, self.channel, &self.payload);
    }
}

/// Framing-level errors; all are connection errors (`FRAME_ERROR`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The whole frame (payload + 8) would exceed the negotiated frame_max.
    /// `size` is the whole-frame size, saturated at `u32::MAX`.
    #[error("frame size {size} exceeds frame_max {max}")]
    TooLarge {
        /// Whole-frame size announced by the header.
        size: u32,
        /// The limit in force.
        max: u32,
    },
    /// The octet after the payload was not 0xCE.
    #[error("bad frame end octet {0:#04x}")]
    BadFrameEnd(u8),
    /// The frame type is not method/header/body/heartbeat.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
}

/// One frame seen in place in a read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFrame<'a> {
    /// Frame type.
    pub kind: u8,
    /// Channel number.
    pub channel: u16,
    /// Payload (without header and end octet).
    pub payload: &'a [u8],
}

/// The first complete frame of `buf` and its whole length, without copying;
/// `Ok(None)` if `buf` holds only part of one. Same checks as
/// [`decode_frame`] (which is built on it): known type, size within `frame_max` (0 = unlimited),
/// end octet.
pub fn peek_frame(buf: &[u8], frame_max: u32) -> Result<Option<(InFrame<'_>, usize)>, FrameError> {
    if buf.len() < FRAME_HEADER_SIZE {
        return Ok(None);
    }
    let kind = buf[0];
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::UnknownType(kind));
    }
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    let total = u64::from(size) + 8;
    if frame_max != 0 && total > u64::from(frame_max) {
        return Err(FrameError::TooLarge {
            size: u32::try_from(total).unwrap_or(u32::MAX),
            max: frame_max,
        });
    }
    let total = usize::try_from(total).map_err(|_| FrameError::TooLarge {
        size: u32::MAX,
        max: frame_max,
    })?;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(FrameError::BadFrameEnd(buf[total - 1]));
    }
    Ok(Some((
        InFrame {
            kind,
            channel,
            payload: &buf[FRAME_HEADER_SIZE..total - 1],
        },
        total,
    )))
}

/// Split one complete frame off the front of `buf`.
///
/// Returns `Ok(None)` (consuming nothing) if more bytes are needed.
/// `frame_max` limits the whole frame (7 header bytes + payload + 1 end
/// byte); 0 means unlimited. The type and size are checked as soon as the
/// 7-byte header is available, before waiting for the payload.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<RawFrame>, FrameError> {
    let Some((f, total)) = peek_frame(buf, frame_max)? else {
        return Ok(None);
    };
    let (frame_type, channel) = (f.kind, f.channel);
    let mut frame = buf.split_to(total);
    frame.truncate(total - 1);
    frame.advance(FRAME_HEADER_SIZE);
    Ok(Some(RawFrame {
        frame_type,
        channel,
        payload: frame.freeze(),
    }))
}

/// Encode a frame with an arbitrary payload.
pub fn encode_frame(out: &mut BytesMut, frame_type: u8, channel: u16, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.put_u8(FRAME_END);
}

/// Encode a method frame: the header is reserved, the method encoded in
/// place and the size patched afterwards.
pub fn encode_method_frame(out: &mut BytesMut, channel: u16, method: &Method) {
    let start = out.len();
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(0);
    method.encode(out);
    let size = (out.len() - start - FRAME_HEADER_SIZE) as u32;
    out[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Encode a content header frame. `properties_raw` is the property flags
/// plus property fields, exactly as received (or from
/// [`BasicProperties::to_bytes`](crate::BasicProperties::to_bytes)).
pub fn encode_header_frame(
    out: &mut BytesMut,
    channel: u16,
    class_id: u16,
    body_size: u64,
    properties_raw: &[u8],
) {
    out.reserve(properties_raw.len() + 12 + 8);
    out.put_u8(FRAME_HEADER);
    out.put_u16(channel);
    out.put_u32((12 + properties_raw.len()) as u32);
    out.put_u16(class_id);
    out.put_u16(0); // weight
    out.put_u64(body_size);
    out.put_slice(properties_raw);
    out.put_u8(FRAME_END);
}

/// Largest body payload per frame for a given frame_max (0 = unlimited).
pub fn max_body_payload(frame_max: u32) -> usize {
    if frame_max == 0 {
        u32::MAX as usize
    } else {
        (frame_max.saturating_sub(8) as usize).max(1)
    }
}

/// Split `body` into body frames of at most `frame_max` bytes each
/// (payload <= frame_max - 8; 0 = unlimited). An empty body yields no frames.
pub fn encode_body_frames(out: &mut BytesMut, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = max_body_payload(frame_max);
    let frames = body.len().div_ceil(chunk);
    out.reserve(body.len() + frames * 8);
    for piece in body.chunks(chunk) {
        encode_frame(out, FRAME_BODY, channel, piece);
    }
}

/// Encode a heartbeat frame (always on channel 0).
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

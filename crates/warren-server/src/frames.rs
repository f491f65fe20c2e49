//! Encoders for the frames Warren writes on the hot path, straight into the connection's
//! output buffer without building method structs (no per-delivery allocation). Large bodies
//! are not copied at all: their frames point into the message's shared `Bytes` and go out
//! with a vectored write ([`Chunks`]).

use bytes::{BufMut, Bytes, BytesMut};
use warren_amqp::constants::{FRAME_BODY, FRAME_END, FRAME_METHOD};
use warren_amqp::wire::write_shortstr;
use warren_amqp::{encode_body_frames, encode_header_frame, max_body_payload};
use warren_core::Message;

/// Bytes read from a socket at a time (handshake and connection alike), and the initial
/// size of a connection's output buffer.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Bodies at least this large are written from the message's own buffer (writev) instead
/// of being copied into the output buffer.
const SHARED_BODY_MIN: usize = 16 * 1024;

/// Output queued ahead of the connection's buffer: earlier parts of the buffer, frozen, and
/// large bodies, in wire order. The buffer itself always comes after them.
#[derive(Default)]
pub struct Chunks {
    pub list: Vec<Bytes>,
    pub bytes: usize,
}

impl Chunks {
    /// Moves what `out` holds so far into the list, then appends `shared`.
    fn push_after(&mut self, out: &mut BytesMut, shared: Bytes) {
        if !out.is_empty() {
            let head = out.split().freeze();
            self.bytes += head.len();
            self.list.push(head);
        }
        self.bytes += shared.len();
        self.list.push(shared);
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

const CLASS_BASIC: u16 = 60;
const METHOD_DELIVER: u16 = 60;

/// Writes `basic.deliver` plus the message's content header and body frames.
#[allow(clippy::too_many_arguments)]
pub fn write_delivery(
    out: &mut BytesMut,
    chunks: &mut Chunks,
    channel: u16,
    frame_max: u32,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    msg: &Message,
) {
    let start = out.len();
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(0);
    out.put_u16(CLASS_BASIC);
    out.put_u16(METHOD_DELIVER);
    write_shortstr(out, consumer_tag);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    write_shortstr(out, &msg.exchange);
    write_shortstr(out, &msg.routing_key);
    let size = out.len() - start - 7;
    out[start + 3..start + 7].copy_from_slice(&(size as u32).to_be_bytes());
    out.put_u8(FRAME_END);
    write_content(out, chunks, channel, frame_max, msg);
}

/// Writes a message's content header and body frames.
pub fn write_content(
    out: &mut BytesMut,
    chunks: &mut Chunks,
    channel: u16,
    frame_max: u32,
    msg: &Message,
) {
    encode_header_frame(
        out,
        channel,
        CLASS_BASIC,
        msg.body.len() as u64,
        &msg.properties_raw,
    );
    if msg.body.len() < SHARED_BODY_MIN {
        encode_body_frames(out, channel, &msg.body, frame_max);
        return;
    }
    let piece = max_body_payload(frame_max);
    let mut at = 0;
    while at < msg.body.len() {
        let end = (at + piece).min(msg.body.len());
        out.put_u8(FRAME_BODY);
        out.put_u16(channel);
        out.put_u32((end - at) as u32);
        chunks.push_after(out, msg.body.slice(at..end));
        out.put_u8(FRAME_END);
        at = end;
    }
}

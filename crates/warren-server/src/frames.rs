//! Encoders for the frames Warren writes on the hot path, straight into the connection's
//! output buffer without building method structs (no per-delivery allocation).

use bytes::{BufMut, BytesMut};
use warren_amqp::constants::{FRAME_END, FRAME_METHOD};
use warren_amqp::wire::write_shortstr;
use warren_amqp::{encode_body_frames, encode_header_frame};
use warren_core::Message;

const CLASS_BASIC: u16 = 60;
const METHOD_DELIVER: u16 = 60;

/// Writes `basic.deliver` plus the message's content header and body frames.
#[allow(clippy::too_many_arguments)]
pub fn write_delivery(
    out: &mut BytesMut,
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
    write_content(out, channel, frame_max, msg);
}

/// Writes a message's content header and body frames.
pub fn write_content(out: &mut BytesMut, channel: u16, frame_max: u32, msg: &Message) {
    encode_header_frame(
        out,
        channel,
        CLASS_BASIC,
        msg.body.len() as u64,
        &msg.properties_raw,
    );
    encode_body_frames(out, channel, &msg.body, frame_max);
}

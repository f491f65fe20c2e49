//! Protocol constants: frame types, frame limits and reply codes.
//!
//! Values come from the `<constant>` elements of the 0-9-1 spec (plus
//! `NO_ROUTE`, which the spec XML omits but RabbitMQ uses).

/// The protocol header a client sends first: `AMQP` 0 0 9 1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// Method frame type.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame type.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame type.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame type.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that terminates every frame.
pub const FRAME_END: u8 = 0xCE;
/// Smallest frame_max a peer may negotiate (whole-frame bytes).
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Bytes of framing around a payload: 7 header bytes + 1 end byte.
pub const FRAME_OVERHEAD: u32 = 8;

/// Normal completion.
pub const REPLY_SUCCESS: u16 = 200;
/// Soft error: content too large.
pub const CONTENT_TOO_LARGE: u16 = 311;
/// Soft error: mandatory message could not be routed.
pub const NO_ROUTE: u16 = 312;
/// Soft error: immediate message had no consumers.
pub const NO_CONSUMERS: u16 = 313;
/// Hard error: connection closed by operator.
pub const CONNECTION_FORCED: u16 = 320;
/// Hard error: unknown virtual host path.
pub const INVALID_PATH: u16 = 402;
/// Soft error: access refused.
pub const ACCESS_REFUSED: u16 = 403;
/// Soft error: entity not found.
pub const NOT_FOUND: u16 = 404;
/// Soft error: exclusive resource locked.
pub const RESOURCE_LOCKED: u16 = 405;
/// Soft error: precondition failed (e.g. inequivalent declare).
pub const PRECONDITION_FAILED: u16 = 406;
/// Hard error: malformed frame.
pub const FRAME_ERROR: u16 = 501;
/// Hard error: malformed method arguments.
pub const SYNTAX_ERROR: u16 = 502;
/// Hard error: method not valid in this state.
pub const COMMAND_INVALID: u16 = 503;
/// Hard error: channel misuse.
pub const CHANNEL_ERROR: u16 = 504;
/// Hard error: frame not expected here.
pub const UNEXPECTED_FRAME: u16 = 505;
/// Hard error: server resource exhausted.
pub const RESOURCE_ERROR: u16 = 506;
/// Hard error: not allowed.
pub const NOT_ALLOWED: u16 = 530;
/// Hard error: functionality not implemented.
pub const NOT_IMPLEMENTED: u16 = 540;
/// Hard error: internal error.
pub const INTERNAL_ERROR: u16 = 541;

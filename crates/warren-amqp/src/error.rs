//! Decoding errors shared by all the codecs in this crate.

/// Why a method, table or property list could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a field needs (including length prefixes that point
    /// past the end of the input).
    #[error("truncated input")]
    Truncated,
    /// The class-id / method-id pair is not a known method.
    #[error("unknown method {class_id}.{method_id}")]
    UnknownMethod {
        /// The class id read from the payload.
        class_id: u16,
        /// The method id read from the payload.
        method_id: u16,
    },
    /// A field table or array contained an unknown type tag.
    #[error("unknown field value type {0:#04x}")]
    BadFieldType(u8),
    /// A short string (or table key) was not valid UTF-8.
    #[error("invalid UTF-8 in short string")]
    InvalidUtf8,
    /// Bytes left after the last argument (from `Method::decode_strict`; the
    /// lenient `Method::decode` ignores them).
    #[error("trailing bytes after method arguments")]
    TrailingBytes,
    /// Property flags with the continuation bit set.
    #[error("bad property flags")]
    BadPropertyFlags,
    /// Anything else (e.g. nesting too deep).
    #[error("{0}")]
    Other(&'static str),
}

//! Warren's AMQP 0-9-1 wire format: frames, methods, field tables and
//! content properties.
//!
//! This crate is a pure codec: no I/O and no async. Every decoder is
//! bounds-checked and never allocates more than the input could justify, so
//! hostile bytes produce a [`DecodeError`] / [`FrameError`] instead of a panic.

pub mod constants;
pub mod error;
pub mod frame;
pub mod methods;
pub mod properties;
pub mod table;
pub mod wire;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use error::DecodeError;
pub use frame::*;
pub use methods::*;
pub use properties::{
    peek_delivery_mode, peek_expiration, peek_headers, peek_priority, BasicProperties,
    ContentHeader,
};
pub use table::{FieldTable, FieldValue};
pub use wire::ShortString;

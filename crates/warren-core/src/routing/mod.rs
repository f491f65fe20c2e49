//! Exchange routing data structures.
//!
//! These are the pure, synchronous lookups behind the exchange types that
//! need more than a hash map: [`topic::TopicIndex`] finds the destinations
//! whose binding pattern matches a topic routing key,
//! [`headers::headers_match`] decides whether a message's headers satisfy a
//! headers-exchange binding, and [`consistent_hash::HashRing`] picks the one
//! destination of an `x-consistent-hash` exchange. Both reproduce RabbitMQ's semantics exactly,
//! including the corner cases clients can observe. Direct and fanout
//! exchanges need no special structure and are not handled here.

pub mod consistent_hash;
pub mod headers;
pub mod topic;

pub use headers::{headers_match, headers_match_sorted, parse_x_match, SortedHeaders, XMatch};
pub use topic::TopicIndex;

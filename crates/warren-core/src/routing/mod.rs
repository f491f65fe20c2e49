//! Exchange routing data structures.
//!
//! These are the pure, synchronous lookups behind the exchange types that
//! need more than a hash map: [`topic::TopicIndex`] finds the destinations
//! whose binding pattern matches a topic routing key, and
//! [`headers::headers_match`] decides whether a message's headers satisfy a
//! headers-exchange binding. Both reproduce RabbitMQ's semantics exactly,
//! including the corner cases clients can observe. Direct and fanout
//! exchanges need no special structure and are not handled here.

pub mod headers;
pub mod topic;

pub use headers::{headers_match, headers_match_sorted, parse_x_match, SortedHeaders, XMatch};
pub use topic::TopicIndex;

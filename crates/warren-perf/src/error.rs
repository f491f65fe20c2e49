//! Typed errors of a perf run: bad arguments, network failures, protocol
//! violations and the broker closing a connection or channel on us.

use warren_amqp::{DecodeError, FrameError};

/// Why a perf run failed.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The command line does not describe a runnable test.
    #[error("invalid arguments: {0}")]
    Args(String),
    /// The `--uri` could not be parsed.
    #[error("invalid URI: {0}")]
    Uri(String),
    /// A file named on the command line could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A socket operation failed.
    #[error("I/O error ({context}): {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The broker closed the TCP connection without a `connection.close`.
    #[error("connection closed by the broker ({0})")]
    Eof(&'static str),
    /// The broker sent bytes that are not valid AMQP framing.
    #[error("framing error from the broker: {0}")]
    Frame(#[from] FrameError),
    /// The broker sent a method we could not decode.
    #[error("cannot decode a method from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// The broker sent something valid but unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker closed the connection (`connection.close`).
    #[error(
        "connection closed by the broker: {code} {text} (class {class_id}, method {method_id})"
    )]
    ConnectionClosed {
        /// Reply code (e.g. 403, 530, 541).
        code: u16,
        /// Reply text.
        text: String,
        /// Class of the method that caused it (0 if none).
        class_id: u16,
        /// Method that caused it (0 if none).
        method_id: u16,
    },
    /// The broker closed a channel (`channel.close`).
    #[error("channel {channel} closed by the broker: {code} {text} (class {class_id}, method {method_id})")]
    ChannelClosed {
        /// The channel number.
        channel: u16,
        /// Reply code (e.g. 404, 406).
        code: u16,
        /// Reply text.
        text: String,
        /// Class of the method that caused it (0 if none).
        class_id: u16,
        /// Method that caused it (0 if none).
        method_id: u16,
    },
    /// The broker cancelled one of our consumers (`basic.cancel`).
    #[error("consumer {0} cancelled by the broker (queue deleted?)")]
    ConsumerCancelled(String),
    /// `--connections-only`: opening a connection failed.
    #[error("opened {opened} connection(s), then: {source}")]
    ConnectionsFailed {
        /// Connections opened before the failure.
        opened: u32,
        /// Why the next one failed.
        source: Box<PerfError>,
    },
    /// A step took longer than its deadline.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl PerfError {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> PerfError {
        move |source| PerfError::Io { context, source }
    }
}

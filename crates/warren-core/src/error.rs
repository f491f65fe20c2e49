//! Typed errors of the broker model. Each carries the AMQP-independent kind of failure; the
//! front end maps a kind to its protocol's reply code (RabbitMQ's codes for AMQP) and decides
//! whether it closes a channel or a connection.

use thiserror::Error;

/// What went wrong, in the terms RabbitMQ uses for its reply codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 403
    AccessRefused,
    /// 404
    NotFound,
    /// 405
    ResourceLocked,
    /// 406
    PreconditionFailed,
    /// 503 (a connection error in AMQP)
    CommandInvalid,
    /// 530 (a connection error in AMQP)
    NotAllowed,
    /// 540 (a connection error in AMQP)
    NotImplemented,
    /// 541 (a connection error in AMQP)
    InternalError,
}

/// An error from the broker model with the text RabbitMQ would put after its reply code name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind:?}: {text}")]
pub struct CoreError {
    pub kind: ErrorKind,
    pub text: String,
}

impl CoreError {
    pub fn new(kind: ErrorKind, text: impl Into<String>) -> Self {
        CoreError {
            kind,
            text: text.into(),
        }
    }
    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, text)
    }
    pub fn access_refused(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::AccessRefused, text)
    }
    pub fn precondition(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::PreconditionFailed, text)
    }
    pub fn locked(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceLocked, text)
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

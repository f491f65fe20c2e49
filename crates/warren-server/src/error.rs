//! Protocol errors raised while handling a frame: a channel error closes only its channel
//! (`channel.close`), a connection error the whole connection (`connection.close`), each with
//! RabbitMQ's reply code and text format (`"NOT_FOUND - no queue 'q' in vhost '/'"`).

use warren_amqp::constants::*;
use warren_core::{CoreError, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Channel,
    Connection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub scope: Scope,
    pub code: u16,
    pub text: String,
    /// The method that failed (0, 0 when none).
    pub class_id: u16,
    pub method_id: u16,
}

/// RabbitMQ's upper-case name of a reply code, used as the reply text's prefix.
pub fn code_name(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "OK",
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        NO_CONSUMERS => "NO_CONSUMERS",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        INTERNAL_ERROR => "INTERNAL_ERROR",
        _ => "ERROR",
    }
}

impl AmqpError {
    pub fn new(scope: Scope, code: u16, detail: impl AsRef<str>) -> Self {
        AmqpError {
            scope,
            code,
            text: format!("{} - {}", code_name(code), detail.as_ref()),
            class_id: 0,
            method_id: 0,
        }
    }

    pub fn channel(code: u16, detail: impl AsRef<str>) -> Self {
        Self::new(Scope::Channel, code, detail)
    }

    pub fn connection(code: u16, detail: impl AsRef<str>) -> Self {
        Self::new(Scope::Connection, code, detail)
    }

    /// Names the method that failed, unless one is named already.
    pub fn on(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 && self.method_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }
}

impl From<CoreError> for AmqpError {
    fn from(e: CoreError) -> Self {
        let (scope, code) = match e.kind {
            ErrorKind::AccessRefused => (Scope::Channel, ACCESS_REFUSED),
            ErrorKind::NotFound => (Scope::Channel, NOT_FOUND),
            ErrorKind::ResourceLocked => (Scope::Channel, RESOURCE_LOCKED),
            ErrorKind::PreconditionFailed => (Scope::Channel, PRECONDITION_FAILED),
            ErrorKind::CommandInvalid => (Scope::Connection, COMMAND_INVALID),
            ErrorKind::NotAllowed => (Scope::Connection, NOT_ALLOWED),
            ErrorKind::NotImplemented => (Scope::Connection, NOT_IMPLEMENTED),
            ErrorKind::InternalError => (Scope::Connection, INTERNAL_ERROR),
        };
        AmqpError::new(scope, code, e.text)
    }
}

pub type AmqpResult<T> = Result<T, AmqpError>;

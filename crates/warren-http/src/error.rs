//! The API's errors as RabbitMQ's management plugin sends them: a status code and a JSON
//! body `{"error": ..., "reason": ...}`. Broker errors map to the codes RabbitMQ uses for
//! the same AMQP error (406 PRECONDITION_FAILED becomes 400, 403 stays 403, 404 is 404).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use warren_core::access::AccessError;
use warren_core::{CoreError, ErrorKind};

#[derive(Debug, thiserror::Error)]
#[error("{status}: {error}: {reason}")]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub reason: String,
    /// RabbitMQ sends some reasons as an Erlang term turned list (`["no_such_user","u"]`):
    /// then this is sent instead of `reason`.
    pub reason_terms: Option<Vec<String>>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, error: &str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.to_string(),
            reason: reason.into(),
            reason_terms: None,
        }
    }

    /// A 400 whose reason RabbitMQ 3.10 sends as a list of terms.
    pub fn bad_request_terms(terms: &[&str]) -> ApiError {
        let mut e = ApiError::bad_request(terms.join(" "));
        e.reason_terms = Some(terms.iter().map(|t| t.to_string()).collect());
        e
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// RabbitMQ's body for a missing object.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// A failed login (RabbitMQ spells this one with a z, and asks for credentials).
    pub fn login_failed() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed")
    }

    /// No credentials at all: RabbitMQ answers 401 with an empty body.
    pub fn no_credentials() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "", "")
    }

    /// The caller may not do this. RabbitMQ 3.10: 401 (never 403), spelled with an s.
    pub fn unauthorized(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = if self.error.is_empty() {
            self.status.into_response()
        } else {
            let reason = match self.reason_terms {
                Some(terms) => json!(terms),
                None => json!(self.reason),
            };
            let body = json!({"error": self.error, "reason": reason});
            (self.status, axum::Json(body)).into_response()
        };
        if self.status == StatusCode::UNAUTHORIZED && self.error != "not_authorised" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        match e.kind {
            ErrorKind::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.text),
            // RabbitMQ 3.10 answers an AMQP 403 (a system exchange, a permission) this way.
            ErrorKind::AccessRefused => ApiError::unauthorized("Access refused."),
            ErrorKind::InternalError => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.text)
            }
            _ => ApiError::bad_request(e.text),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        match e {
            AccessError::NoSuchUser(_) | AccessError::NoSuchVhost(_) => ApiError::not_found(),
            AccessError::NotDurable(e) => e.into(),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

//! HTTP Basic authentication on every request against the broker's users, and RabbitMQ's
//! management tags: who may use the API at all, and what each caller may see and change.
//!
//! - `management`: the vhosts it has permissions in, their objects, its own connections;
//! - `policymaker`: management, plus policies and parameters in those vhosts;
//! - `monitoring`: management, plus every vhost, every connection and channel, the node;
//! - `administrator`: all of it, plus users, vhosts and permissions.
//!
//! Resource permissions (configure/write/read) still apply to every tag, as in RabbitMQ.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use warren_core::access::{Perm, ResourceKind, UserRecord};

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// The authenticated user of a request.
#[derive(Clone)]
pub struct Caller {
    pub user: Arc<UserRecord>,
    /// The local operator (`warren ctl` over the control socket, which only the broker's
    /// own OS user can open): like rabbitmqctl, it is not subject to permissions.
    pub trusted: bool,
}

/// Marks a request made by the local operator (see [`Caller::trusted`]); set only by the
/// control socket, never from the network.
#[derive(Clone, Copy)]
pub struct LocalOperator;

impl Caller {
    fn local_operator() -> Caller {
        Caller {
            user: Arc::new(UserRecord {
                name: "local-operator".into(),
                hash: None,
                tags: vec!["administrator".into()],
                limits: Default::default(),
            }),
            trusted: true,
        }
    }

    pub fn name(&self) -> &str {
        &self.user.name
    }

    pub fn is_admin(&self) -> bool {
        self.user.has_tag("administrator")
    }

    /// `monitoring` or `administrator`: sees every vhost and connection.
    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.user.has_tag("monitoring")
    }

    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.user.has_tag("policymaker")
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::unauthorized("Not administrator user"))
        }
    }

    pub fn require_monitor(&self) -> ApiResult<()> {
        if self.is_monitor() {
            Ok(())
        } else {
            Err(ApiError::unauthorized("Not monitor user"))
        }
    }

    pub fn require_policymaker(&self) -> ApiResult<()> {
        if self.is_policymaker() {
            Ok(())
        } else {
            Err(ApiError::unauthorized("Not policymaker user"))
        }
    }
}

/// The caller sees `vhost`'s queues, exchanges and bindings in lists: it has permissions
/// there. RabbitMQ 3.10: a monitor without permissions lists the vhost itself but none of
/// its objects.
pub fn can_see_vhost(state: &ApiState, caller: &Caller, vhost: &str) -> bool {
    caller.trusted
        || state
            .broker
            .access()
            .permissions(vhost, caller.name())
            .is_some()
}

/// 404 for a vhost that does not exist; 401 "Not authorised to access this vhost" when the
/// caller has no access to it (RabbitMQ's answer for both a management user and a
/// policymaker without permissions there).
pub fn require_vhost(state: &ApiState, caller: &Caller, vhost: &str) -> ApiResult<()> {
    if state.broker.vhost(vhost).is_none() {
        return Err(ApiError::not_found());
    }
    // RabbitMQ 3.10: administrators too need permissions in a vhost to use it.
    let has_permissions = state
        .broker
        .access()
        .permissions(vhost, caller.name())
        .is_some();
    if has_permissions || caller.trusted {
        return Ok(());
    }
    Err(ApiError::unauthorized(
        "User not authorised to access virtual host",
    ))
}

/// A resource permission (configure/write/read on a queue or exchange), as on AMQP.
pub fn require_resource(
    state: &ApiState,
    caller: &Caller,
    vhost: &str,
    perm: Perm,
    kind: ResourceKind,
    name: &str,
) -> ApiResult<()> {
    if caller.trusted {
        return Ok(());
    }
    // The default exchange is checked under RabbitMQ's name for it.
    let name = if kind == ResourceKind::Exchange && name.is_empty() {
        "amq.default"
    } else {
        name
    };
    state
        .broker
        .access()
        .check(caller.name(), vhost, perm, kind, name)
        .map_err(|e| {
            tracing::info!(user = %caller.name(), reason = %e.text, "HTTP request refused");
            ApiError::unauthorized("Access refused.")
        })
}

/// The peer address of a request, set by the accept loop.
#[derive(Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Authenticates the request and stores the [`Caller`] for the handlers.
pub async fn authenticate(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.extensions().get::<LocalOperator>().is_some() {
        request.extensions_mut().insert(Caller::local_operator());
        return Ok(next.run(request).await);
    }
    let from_loopback = request
        .extensions()
        .get::<Peer>()
        .is_some_and(|p| p.0.ip().is_loopback());
    let (name, password) = basic_credentials(&request).ok_or_else(ApiError::no_credentials)?;
    let user = state
        .broker
        .access()
        .authenticate(&name, &password, from_loopback)
        .map_err(|why| {
            tracing::warn!(user = %name, reason = %why, "HTTP access refused");
            ApiError::login_failed()
        })?;
    let management = ["management", "policymaker", "monitoring", "administrator"];
    if !management.iter().any(|t| user.has_tag(t)) {
        tracing::warn!(user = %name, "HTTP access refused: not a management user");
        return Err(ApiError::unauthorized("Not management user"));
    }
    request.extensions_mut().insert(Caller {
        user,
        trusted: false,
    });
    Ok(next.run(request).await)
}

fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

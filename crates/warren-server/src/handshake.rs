//! The opening of an AMQP connection: the protocol header, SASL (PLAIN and AMQPLAIN) against
//! the broker's users, `connection.tune` / `tune-ok` limits and `connection.open` of a vhost,
//! with RabbitMQ's answers for each way it can fail.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::transport::{Reader, Writer};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::warn;
use warren_amqp::constants::*;
use warren_amqp::*;
use warren_core::Broker;

use crate::config::ServerConfig;
use crate::error::AmqpError;
use crate::frames::READ_CHUNK;

/// A failed handshake: what to log and what (if anything) to tell the client.
pub(crate) struct HandshakeError {
    pub(crate) reason: String,
    pub(crate) close: Option<AmqpError>,
}

impl HandshakeError {
    fn silent(reason: impl Into<String>) -> Self {
        HandshakeError {
            reason: reason.into(),
            close: None,
        }
    }
    fn close(e: AmqpError) -> Self {
        HandshakeError {
            reason: e.text.clone(),
            close: Some(e),
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::silent(format!("i/o error: {e}"))
    }
}

/// SASL EXTERNAL on a TLS connection that verifies client certificates: the user name the
/// client's certificate gives (`None` without a certificate, an error if it names none).
pub(crate) struct ExternalLogin {
    pub(crate) user: Option<Result<String, String>>,
}

pub(crate) struct Negotiated {
    pub(crate) user: Arc<warren_core::access::UserRecord>,
    pub(crate) vhost: Arc<warren_core::VHost>,
    /// The connection's place in the vhost's `max-connections`, held until it ends.
    pub(crate) slot: warren_core::vhost::ConnectionSlot,
    /// The connection's place in its user's `max-connections`.
    pub(crate) user_slot: warren_core::access::user_limits::UserSlot,
    pub(crate) frame_max: u32,
    pub(crate) channel_max: u16,
    pub(crate) heartbeat: u16,
    pub(crate) consumer_cancel_notify: bool,
    pub(crate) connection_blocked: bool,
    /// What the client said of itself (listed by the management API).
    pub(crate) client_properties: warren_amqp::FieldTable,
    pub(crate) mechanism: String,
}

pub(crate) async fn read_exact_or_fail(
    reader: &mut Reader,
    buf: &mut [u8],
) -> Result<(), HandshakeError> {
    reader
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(HandshakeError::from)
}

/// Reads the next non-heartbeat frame during the handshake, expecting a method on channel 0.
pub(crate) async fn read_handshake_method(
    reader: &mut Reader,
    inbuf: &mut BytesMut,
    frame_max: u32,
) -> Result<Method, HandshakeError> {
    loop {
        match decode_frame(inbuf, frame_max) {
            Err(e) => {
                return Err(HandshakeError::close(AmqpError::connection(
                    FRAME_ERROR,
                    e.to_string(),
                )))
            }
            Ok(Some(frame)) => {
                if frame.frame_type == FRAME_HEARTBEAT {
                    continue;
                }
                if frame.frame_type != FRAME_METHOD || frame.channel != 0 {
                    return Err(HandshakeError::close(AmqpError::connection(
                        UNEXPECTED_FRAME,
                        "unexpected frame during connection handshake",
                    )));
                }
                return Method::decode(&frame.payload).map_err(|e| {
                    HandshakeError::close(AmqpError::connection(SYNTAX_ERROR, e.to_string()))
                });
            }
            Ok(None) => {
                inbuf.reserve(READ_CHUNK);
                if reader.read_buf(inbuf).await? == 0 {
                    return Err(HandshakeError::silent(
                        "client closed the socket during handshake",
                    ));
                }
            }
        }
    }
}

/// Writes and flushes (TLS holds written bytes until a flush).
async fn send(writer: &mut Writer, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

pub(crate) async fn handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    inbuf: &mut BytesMut,
    peer: SocketAddr,
    external: Option<&ExternalLogin>,
    broker: &Arc<Broker>,
    config: &ServerConfig,
) -> Result<Negotiated, HandshakeError> {
    let mut header = [0u8; 8];
    read_exact_or_fail(reader, &mut header).await?;
    if header != PROTOCOL_HEADER {
        // The server's own header tells the client which protocol we speak.
        send(writer, &PROTOCOL_HEADER).await?;
        return Err(HandshakeError::silent(format!(
            "bad protocol header {header:?}"
        )));
    }
    let mut out = BytesMut::new();
    encode_method_frame(
        &mut out,
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(config),
            // RabbitMQ 3.10 with EXTERNAL enabled offers it first, on TLS connections only.
            mechanisms: Bytes::from_static(if external.is_some() {
                b"EXTERNAL PLAIN AMQPLAIN"
            } else {
                b"PLAIN AMQPLAIN"
            }),
            locales: Bytes::from_static(b"en_US"),
        }),
    );
    send(writer, &out).await?;

    let start_ok = match read_handshake_method(reader, inbuf, config.frame_max).await? {
        Method::ConnectionStartOk(m) => m,
        other => {
            // RabbitMQ 3.10: any other method here gets the socket closed, no close frame.
            return Err(HandshakeError::silent(format!(
                "expected connection.start-ok, got {}",
                other.name()
            )));
        }
    };
    let caps = start_ok
        .client_properties
        .get("capabilities")
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default();
    let cap = |name: &str| caps.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
    let auth_failure_close = cap("authentication_failure_close");
    let consumer_cancel_notify = cap("consumer_cancel_notify");
    let connection_blocked = cap("connection.blocked");

    let from_loopback = peer.ip().is_loopback();
    let login = match (start_ok.mechanism.as_str(), external) {
        ("PLAIN" | "AMQPLAIN", _) => {
            let credentials = if start_ok.mechanism == "PLAIN" {
                parse_plain(&start_ok.response)
            } else {
                parse_amqplain(&start_ok.response)
            };
            match credentials {
                // One hash per attempt, off the I/O threads, so a client hammering wrong
                // passwords does not hold up other connections.
                Some((name, password)) => {
                    let access_broker = Arc::clone(broker);
                    let checked = tokio::task::spawn_blocking(move || {
                        let result =
                            access_broker
                                .access()
                                .authenticate(&name, &password, from_loopback);
                        (name, result)
                    })
                    .await;
                    match checked {
                        Ok((name, Ok(user))) => Ok((name, user)),
                        Ok((name, Err(why))) => Err((Some(name), why.to_string())),
                        Err(e) => Err((None, format!("login check failed: {e}"))),
                    }
                }
                None => Err((None, "malformed credentials".to_string())),
            }
        }
        // The user named by the verified client certificate (RabbitMQ's
        // rabbitmq_auth_mechanism_ssl): it must exist; no password is involved.
        ("EXTERNAL", Some(external)) => match &external.user {
            Some(Ok(name)) => match broker.access().authenticate_external(name, from_loopback) {
                Ok(user) => Ok((name.clone(), user)),
                Err(why) => Err((Some(name.clone()), why.to_string())),
            },
            Some(Err(why)) => Err((None, why.clone())),
            None => Err((
                None,
                "connection peer presented no TLS (x.509) certificate".to_string(),
            )),
        },
        (other, _) => {
            // RabbitMQ closes the socket without a close frame here.
            return Err(HandshakeError::silent(format!(
                "unknown authentication mechanism '{other}'"
            )));
        }
    };
    let user = match login {
        Ok((_, user)) => user,
        Err((name, why)) => {
            let reason = format!(
                "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                start_ok.mechanism
            );
            warn!(%peer, mechanism = %start_ok.mechanism, user = name.as_deref().unwrap_or(""), reason = %why, "authentication failed");
            return Err(if auth_failure_close {
                HandshakeError::close(AmqpError::connection(ACCESS_REFUSED, reason))
            } else {
                HandshakeError::silent(reason)
            });
        }
    };

    out.clear();
    encode_method_frame(
        &mut out,
        0,
        &Method::ConnectionTune(ConnectionTune {
            channel_max: config.channel_max,
            frame_max: config.frame_max,
            heartbeat: config.heartbeat,
        }),
    );
    send(writer, &out).await?;
    let tune_ok = match read_handshake_method(reader, inbuf, config.frame_max).await? {
        Method::ConnectionTuneOk(m) => m,
        other => {
            return Err(HandshakeError::silent(format!(
                "expected connection.tune-ok, got {}",
                other.name()
            )))
        }
    };
    // RabbitMQ 3.10 (raw frames against a local node): a tune-ok outside the offer, below
    // the minimum, or zero (RabbitMQ does not read 0 as "no limit") gets the socket closed
    // without a close frame; the reason is only logged.
    let frame_max = tune_ok.frame_max;
    if frame_max < FRAME_MIN_SIZE {
        return Err(HandshakeError::silent(format!(
            "tune-ok frame_max={frame_max} < {FRAME_MIN_SIZE} min size"
        )));
    }
    if frame_max > config.frame_max {
        return Err(HandshakeError::silent(format!(
            "tune-ok frame_max={frame_max} > {} max size",
            config.frame_max
        )));
    }
    let channel_max = tune_ok.channel_max;
    if channel_max == 0 || channel_max > config.channel_max {
        return Err(HandshakeError::silent(format!(
            "tune-ok channel_max={channel_max} outside 1..={}",
            config.channel_max
        )));
    }

    let open = match read_handshake_method(reader, inbuf, frame_max).await? {
        Method::ConnectionOpen(m) => m,
        other => {
            return Err(HandshakeError::close(AmqpError::connection(
                COMMAND_INVALID,
                format!("expected connection.open, got {}", other.name()),
            )))
        }
    };
    // The close names connection.open (10, 40) as the method that failed, as RabbitMQ's does.
    let Some(vhost) = broker.vhost(&open.virtual_host) else {
        return Err(HandshakeError::close(
            AmqpError::connection(
                NOT_ALLOWED,
                format!("vhost {} not found", open.virtual_host),
            )
            .on(10, 40),
        ));
    };
    if broker
        .access()
        .permissions(&vhost.name, &user.name)
        .is_none()
    {
        return Err(HandshakeError::close(
            AmqpError::connection(
                NOT_ALLOWED,
                format!(
                    "access to vhost '{}' refused for user '{}'",
                    vhost.name, user.name
                ),
            )
            .on(10, 40),
        ));
    }
    let slot = vhost
        .open_connection(&user.name)
        .map_err(|e| HandshakeError::close(AmqpError::from(e).on(10, 40)))?;
    let user_slot = broker
        .access()
        .open_user_connection(&user.name)
        .map_err(|e| HandshakeError::close(AmqpError::from(e).on(10, 40)))?;
    out.clear();
    encode_method_frame(
        &mut out,
        0,
        &Method::ConnectionOpenOk(ConnectionOpenOk {
            reserved_1: String::new(),
        }),
    );
    send(writer, &out).await?;
    Ok(Negotiated {
        user,
        vhost,
        slot,
        user_slot,
        frame_max,
        channel_max,
        heartbeat: tune_ok.heartbeat,
        consumer_cancel_notify,
        connection_blocked,
        client_properties: start_ok.client_properties,
        mechanism: start_ok.mechanism,
    })
}

/// SASL PLAIN: `authzid NUL authcid NUL password`.
pub(crate) fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let pass = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((user.to_string(), pass.to_string()))
}

/// AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
pub(crate) fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let mut framed = BytesMut::with_capacity(response.len() + 4);
    framed.extend_from_slice(&u32::try_from(response.len()).ok()?.to_be_bytes());
    framed.extend_from_slice(response);
    let table = FieldTable::decode(&mut &framed[..]).ok()?;
    let login = table.get("LOGIN")?.as_str()?.to_string();
    let password = table.get("PASSWORD")?.as_str()?.to_string();
    Some((login, password))
}

pub(crate) fn server_properties(config: &ServerConfig) -> FieldTable {
    let mut caps = FieldTable::new();
    for name in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(name, FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    props.insert("capabilities", FieldValue::Table(caps));
    props.insert(
        "cluster_name",
        FieldValue::from(config.cluster_name.as_str()),
    );
    props.insert(
        "copyright",
        FieldValue::from("Copyright (c) the Warren authors"),
    );
    props.insert(
        "information",
        FieldValue::from("Licensed under the Apache License 2.0"),
    );
    props.insert("platform", FieldValue::from("Rust"));
    props.insert("product", FieldValue::from("Warren"));
    props.insert("version", FieldValue::from(env!("CARGO_PKG_VERSION")));
    props
}

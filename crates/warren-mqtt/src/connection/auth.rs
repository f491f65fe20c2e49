//! MQTT 5 enhanced authentication (section 4.12) with SCRAM-SHA-256, the method enabled by
//! `--mqtt-scram` (on by default): the CONNECT names the method and carries the client's
//! first message, the server answers with AUTH 0x18, the client proves its password with
//! AUTH 0x18, and the CONNACK carries the server's final message. A connection that logged
//! in so may re-authenticate (AUTH 0x19) as the same user at any time. The SCRAM mechanics
//! are the core's (`warren_core::access::scram`); this is their MQTT transport.

use warren_core::access::scram::{ScramError, ScramServer};

use super::connect::{refuse, Refusal};
use super::*;
use crate::codec::{v3_return, Connect};

pub(crate) const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// MQTT 5 reason codes of AUTH (section 3.15.2.1).
const CONTINUE_AUTHENTICATION: u8 = 0x18;
const REAUTHENTICATE: u8 = 0x19;

/// A login proven by SCRAM: the name the client gave (perhaps `vhost:user`) and the
/// server's final message for the CONNACK.
pub(crate) struct Proven {
    pub login: String,
    pub server_final: Vec<u8>,
}

fn auth_packet(reason: u8, data: String) -> Packet {
    Packet::Auth {
        reason,
        props: Properties {
            auth_method: Some(SCRAM_SHA_256.into()),
            auth_data: Some(data.into_bytes()),
            ..Default::default()
        },
    }
}

fn utf8(data: Option<&Vec<u8>>) -> Result<&str, ScramError> {
    std::str::from_utf8(data.map_or(&[][..], |d| d.as_slice()))
        .map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// Starts an exchange from the client's first message; answers it and the AUTH to send.
fn begin(mqtt: &Mqtt, client_first: Option<&Vec<u8>>) -> Result<(ScramServer, Packet), ScramError> {
    let access = mqtt.broker.access();
    let (server, first) = ScramServer::start(utf8(client_first)?, |login| {
        // `vhost:user` chooses the vhost as a CONNECT user name does; the keys are the user's.
        let user = login.split_once(':').map_or(login, |(_, u)| u);
        access.scram_keys(user)
    })?;
    Ok((server, auth_packet(CONTINUE_AUTHENTICATION, first)))
}

fn scram_refusal(e: ScramError) -> Refusal {
    let code = match e {
        ScramError::BadProof(_) => reason::BAD_USER_NAME_OR_PASSWORD,
        _ => reason::NOT_AUTHORIZED,
    };
    refuse(v3_return::NOT_AUTHORIZED, code, e.to_string())
}

/// Runs the exchange a CONNECT with an authentication method starts, before the CONNACK.
pub(crate) async fn before_connack<R, W>(
    mqtt: &Mqtt,
    connect: &Connect,
    reader: &mut R,
    writer: &mut W,
    inbuf: &mut BytesMut,
) -> Result<Proven, Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let method = connect.props.auth_method.as_deref().unwrap_or_default();
    if !mqtt.config.scram || method != SCRAM_SHA_256 {
        return Err(refuse(
            v3_return::NOT_AUTHORIZED,
            reason::BAD_AUTHENTICATION_METHOD,
            format!("authentication method '{method}' is not offered"),
        ));
    }
    let (server, challenge) =
        begin(mqtt, connect.props.auth_data.as_ref()).map_err(scram_refusal)?;
    let mut out = BytesMut::new();
    challenge.encode(true, &mut out);
    let io = |e: std::io::Error| {
        refuse(
            v3_return::NOT_AUTHORIZED,
            reason::UNSPECIFIED_ERROR,
            format!("authentication: {e}"),
        )
    };
    writer.write_all(&out).await.map_err(io)?;
    writer.flush().await.map_err(io)?;
    // The client's answer, within what is left of the connect timeout's kind of bound.
    let answer = tokio::time::timeout(mqtt.config.connect_timeout, async {
        loop {
            match codec::decode(inbuf, Some(connect.version), mqtt.config.max_connect_size) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            match reader.read_buf(inbuf).await {
                Ok(0) => return Err("connection closed during authentication".to_string()),
                Err(e) => return Err(e.to_string()),
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| {
        refuse(
            v3_return::NOT_AUTHORIZED,
            reason::NOT_AUTHORIZED,
            "no AUTH answer in time",
        )
    })?
    .map_err(|e| refuse(v3_return::NOT_AUTHORIZED, reason::PROTOCOL_ERROR, e))?;
    let Packet::Auth { reason: r, props } = answer else {
        return Err(refuse(
            v3_return::NOT_AUTHORIZED,
            reason::PROTOCOL_ERROR,
            "expected AUTH during authentication",
        ));
    };
    if r != CONTINUE_AUTHENTICATION || props.auth_method.as_deref() != Some(SCRAM_SHA_256) {
        return Err(refuse(
            v3_return::NOT_AUTHORIZED,
            reason::PROTOCOL_ERROR,
            "AUTH without continue-authentication or with another method",
        ));
    }
    let (login, server_final) = utf8(props.auth_data.as_ref())
        .and_then(|m| server.finish(m))
        .map_err(scram_refusal)?;
    Ok(Proven {
        login,
        server_final: server_final.into_bytes(),
    })
}

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    /// AUTH after CONNECT: re-authentication of a SCRAM connection (section 4.12.1).
    pub(super) fn on_auth(&mut self, r: u8, props: Properties) -> Result<(), End> {
        if !self.scram_login {
            // Section 3.15: AUTH needs a CONNECT that named a method.
            return Err(End::Violation(
                reason::PROTOCOL_ERROR,
                "AUTH without an authentication method".into(),
            ));
        }
        if props.auth_method.as_deref() != Some(SCRAM_SHA_256) {
            return Err(End::Violation(
                reason::PROTOCOL_ERROR,
                "AUTH with another authentication method".into(),
            ));
        }
        let denied = |e: ScramError| {
            let code = match e {
                ScramError::BadProof(_) => reason::BAD_USER_NAME_OR_PASSWORD,
                _ => reason::NOT_AUTHORIZED,
            };
            End::Violation(code, format!("re-authentication failed: {e}"))
        };
        match (r, self.reauth.take()) {
            (REAUTHENTICATE, None) => {
                let (server, challenge) =
                    begin(&self.mqtt, props.auth_data.as_ref()).map_err(denied)?;
                self.reauth = Some(Box::new(server));
                self.send(&challenge);
                Ok(())
            }
            (CONTINUE_AUTHENTICATION, Some(server)) => {
                let (login, server_final) = utf8(props.auth_data.as_ref())
                    .and_then(|m| server.finish(m))
                    .map_err(denied)?;
                let user = login.split_once(':').map_or(login.as_str(), |(_, u)| u);
                if user != self.user {
                    return Err(End::Violation(
                        reason::NOT_AUTHORIZED,
                        format!("re-authentication as '{user}', not '{}'", self.user),
                    ));
                }
                self.send(&Packet::Auth {
                    reason: reason::SUCCESS,
                    props: Properties {
                        auth_method: Some(SCRAM_SHA_256.into()),
                        auth_data: Some(server_final.into_bytes()),
                        ..Default::default()
                    },
                });
                Ok(())
            }
            _ => Err(End::Violation(
                reason::PROTOCOL_ERROR,
                "AUTH out of order".into(),
            )),
        }
    }
}

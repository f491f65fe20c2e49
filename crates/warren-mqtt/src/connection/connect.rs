//! CONNECT: the protocol level, the login (a `vhost:user` name or the default vhost, as
//! RabbitMQ's MQTT plugin does), client-id rules, taking the session over from an older
//! connection, opening or resuming the session's queues, and CONNACK.

use warren_amqp::{FieldTable, FieldValue};
use warren_core::access::user_limits::UserSlot;
use warren_core::connections::ConnectionInfo;
use warren_core::vhost::ConnectionSlot;
use warren_core::{ConsumerSpec, Destination};

use super::auth;
use super::*;
use crate::codec::{v3_return, Connect};

/// Client ids longer than this are refused (they name queues, which hold 255 bytes).
const MAX_CLIENT_ID: usize = 200;

pub(super) struct Refusal {
    v3: u8,
    v5: u8,
    why: String,
}

pub(super) fn refuse(v3: u8, v5: u8, why: impl Into<String>) -> Refusal {
    Refusal {
        v3,
        v5,
        why: why.into(),
    }
}

/// The session queue names RabbitMQ gives a client's QoS 0 and QoS 1 subscriptions.
pub(crate) fn own_queue_name(client_id: &str, qos_class: usize) -> String {
    format!("mqtt-subscription-{client_id}qos{qos_class}")
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn open<R, W>(
    mqtt: &Arc<Mqtt>,
    reader: &mut R,
    mut writer: W,
    inbuf: &mut BytesMut,
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
    sink: Arc<Sink>,
) -> Option<Conn<W>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    let read = tokio::time::timeout(mqtt.config.connect_timeout, async {
        loop {
            match codec::decode(inbuf, None, mqtt.config.max_connect_size) {
                Ok(Some(Packet::Connect(c))) => return Ok(*c),
                Ok(Some(_)) => unreachable!("decode answers only CONNECT before CONNECT"),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            match reader.read_buf(inbuf).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            }
        }
    })
    .await;
    let connect = match read {
        Ok(Ok(c)) => c,
        Ok(Err(Some(DecodeError::UnsupportedProtocol(what)))) => {
            info!(%peer, protocol = %what, "MQTT CONNECT refused: unsupported protocol");
            // Section 3.1.2.2: CONNACK 0x01 (3.1.1's form, which every version reads).
            let mut out = BytesMut::new();
            Packet::ConnAck {
                session_present: false,
                code: v3_return::UNACCEPTABLE_PROTOCOL_VERSION,
                props: Properties::default(),
            }
            .encode(false, &mut out);
            let _ = writer.write_all(&out).await;
            return None;
        }
        Ok(Err(Some(e))) => {
            info!(%peer, error = %e, "MQTT connection closed before CONNECT");
            return None;
        }
        Ok(Err(None)) => {
            debug!(%peer, "MQTT connection closed before CONNECT");
            return None;
        }
        Err(_) => {
            info!(%peer, "MQTT connection closed: no CONNECT in time");
            return None;
        }
    };
    let v5 = connect.version.is_v5();
    let proven = if connect.props.auth_method.is_some() {
        super::auth::before_connack(mqtt, &connect, reader, &mut writer, inbuf)
            .await
            .map(Some)
    } else {
        Ok(None)
    };
    let accepted = match proven {
        Ok(proven) => accept(mqtt, connect, proven, writer, peer, local, tls, sink).await,
        Err(r) => Err((r, writer)),
    };
    match accepted {
        Ok(conn) => Some(conn),
        Err((r, mut writer)) => {
            info!(%peer, reason = %r.why, "MQTT CONNECT refused");
            let mut out = BytesMut::new();
            Packet::ConnAck {
                session_present: false,
                code: if v5 { r.v5 } else { r.v3 },
                props: Properties {
                    reason_string: v5.then(|| r.why.clone()),
                    ..Default::default()
                },
            }
            .encode(v5, &mut out);
            let _ = writer.write_all(&out).await;
            let _ = writer.shutdown().await;
            None
        }
    }
}

/// A client that passed the login and the client-id rules.
struct Login {
    vhost: Arc<VHost>,
    user: String,
    client_id: String,
    assigned: Option<String>,
    slots: (ConnectionSlot, UserSlot),
}

/// `proven`: the login a SCRAM exchange proved, instead of the CONNECT's password.
async fn login(
    mqtt: &Arc<Mqtt>,
    connect: &Connect,
    proven: Option<&auth::Proven>,
    peer: SocketAddr,
) -> Result<Login, Refusal> {
    let v5 = connect.version.is_v5();
    let broker = &mqtt.broker;
    if mqtt.connected() >= mqtt.config.max_sessions {
        return Err(refuse(
            v3_return::SERVER_UNAVAILABLE,
            reason::QUOTA_EXCEEDED,
            format!(
                "the broker serves at most {} MQTT clients",
                mqtt.config.max_sessions
            ),
        ));
    }
    // Login: `vhost:user` picks the vhost, as in RabbitMQ.
    let (login, password) = match (&connect.username, &connect.password) {
        _ if proven.is_some() => (proven.map(|p| p.login.clone()).unwrap_or_default(), None),
        (Some(u), Some(p)) => (u.clone(), Some(String::from_utf8_lossy(p).into_owned())),
        (None, None) => match &mqtt.config.anonymous {
            Some((u, p)) => (u.clone(), Some(p.clone())),
            None => {
                return Err(refuse(
                    v3_return::NOT_AUTHORIZED,
                    reason::NOT_AUTHORIZED,
                    "anonymous MQTT connections are not allowed",
                ))
            }
        },
        _ => {
            return Err(refuse(
                v3_return::BAD_USER_NAME_OR_PASSWORD,
                reason::BAD_USER_NAME_OR_PASSWORD,
                "a user name needs a password",
            ))
        }
    };
    let (vhost_name, user_name) = match login.split_once(':') {
        Some((v, u)) if !v.is_empty() => (v.to_string(), u.to_string()),
        _ => (mqtt.config.default_vhost.clone(), login.clone()),
    };
    let from_loopback = peer.ip().is_loopback();
    let user = {
        let broker = Arc::clone(broker);
        let name = user_name.clone();
        tokio::task::spawn_blocking(move || {
            let access = broker.access();
            match &password {
                Some(password) => access.authenticate(&name, password, from_loopback),
                None => access.authenticate_external(&name, from_loopback),
            }
            .map(|u| u.name.clone())
            .map_err(|e| format!("{e:?}"))
        })
        .await
        .map_err(|_| refuse(3, reason::UNSPECIFIED_ERROR, "login task failed"))?
    };
    let user = user.map_err(|e| {
        refuse(
            v3_return::BAD_USER_NAME_OR_PASSWORD,
            reason::BAD_USER_NAME_OR_PASSWORD,
            format!("login of user '{user_name}' refused: {e}"),
        )
    })?;
    let vhost = broker.vhost(&vhost_name).ok_or_else(|| {
        refuse(
            v3_return::NOT_AUTHORIZED,
            reason::NOT_AUTHORIZED,
            format!("vhost {vhost_name} not found"),
        )
    })?;
    if broker.access().permissions(&vhost.name, &user).is_none() {
        return Err(refuse(
            v3_return::NOT_AUTHORIZED,
            reason::NOT_AUTHORIZED,
            format!("access to vhost '{}' refused for user '{user}'", vhost.name),
        ));
    }
    let limit = |e: warren_core::CoreError| {
        refuse(
            v3_return::SERVER_UNAVAILABLE,
            reason::QUOTA_EXCEEDED,
            e.text,
        )
    };
    let vhost_slot = vhost.open_connection(&user).map_err(limit)?;
    let user_slot = broker.access().open_user_connection(&user).map_err(limit)?;
    // Client id: an empty one is assigned (3.1.1 only with a clean session).
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if !v5 && !connect.clean {
            return Err(refuse(
                v3_return::IDENTIFIER_REJECTED,
                reason::CLIENT_ID_NOT_VALID,
                "an empty client id needs a clean session",
            ));
        }
        let id = format!("warren-{:016x}", rand::random::<u64>());
        assigned = Some(id.clone());
        id
    } else {
        connect.client_id.clone()
    };
    if client_id.len() > MAX_CLIENT_ID {
        return Err(refuse(
            v3_return::IDENTIFIER_REJECTED,
            reason::CLIENT_ID_NOT_VALID,
            format!("client id over {MAX_CLIENT_ID} bytes"),
        ));
    }
    if let Some(w) = &connect.will {
        crate::topic::validate_name(&w.topic).map_err(|e| {
            refuse(
                v3_return::NOT_AUTHORIZED,
                reason::TOPIC_NAME_INVALID,
                format!("will topic: {}", e.0),
            )
        })?;
    }
    Ok(Login {
        vhost,
        user,
        client_id,
        assigned,
        slots: (vhost_slot, user_slot),
    })
}

#[allow(clippy::too_many_arguments)]
async fn accept<W: AsyncWrite + Unpin + Send>(
    mqtt: &Arc<Mqtt>,
    connect: Connect,
    proven: Option<auth::Proven>,
    writer: W,
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
    sink: Arc<Sink>,
) -> Result<Conn<W>, (Refusal, W)> {
    let v5 = connect.version.is_v5();
    let broker = &mqtt.broker;
    let login = match login(mqtt, &connect, proven.as_ref(), peer).await {
        Ok(l) => l,
        Err(r) => return Err((r, writer)),
    };
    let Login {
        vhost,
        user,
        client_id,
        assigned,
        slots,
    } = login;
    // MQTT 5 lets the server shorten what the client asked for, and say so in CONNACK.
    let asked_expiry = connect.props.session_expiry.unwrap_or(0);
    let expiry_cap = mqtt
        .config
        .max_session_expiry
        .filter(|&max| v5 && asked_expiry > max);
    let keep_alive_cap = mqtt
        .config
        .max_keep_alive
        .filter(|&max| v5 && (connect.keep_alive == 0 || connect.keep_alive > max));
    let keep_alive = keep_alive_cap.unwrap_or(connect.keep_alive);
    let (session_expiry, persistent) = if v5 {
        let e = expiry_cap.unwrap_or(asked_expiry);
        (e, e > 0)
    } else {
        (if connect.clean { 0 } else { u32::MAX }, !connect.clean)
    };
    let id = broker.next_connection_id();
    let kick: Arc<dyn Kick> = sink.clone();
    let (hold, took_over) = mqtt.sessions.take(&vhost.name, &client_id, id, kick).await;
    if took_over {
        info!(%client_id, %peer, "MQTT session taken over by a new connection");
    }
    let info = ConnectionInfo {
        name: format!("{peer} -> {local}"),
        protocol: connect.version.label().into(),
        user: user.clone(),
        vhost: vhost.name.clone(),
        peer_host: peer.ip().to_string(),
        peer_port: peer.port(),
        host: local.ip().to_string(),
        port: local.port(),
        ssl: tls,
        auth_mechanism: if proven.is_some() {
            auth::SCRAM_SHA_256.into()
        } else {
            "PLAIN".into()
        },
        connected_at: warren_core::clock::unix_millis(),
        client_properties: {
            let mut t = FieldTable::new();
            t.insert(
                "client_id",
                FieldValue::LongString(bytes::Bytes::copy_from_slice(client_id.as_bytes())),
            );
            t
        },
        frame_max: mqtt.config.max_packet_size as u32,
        channel_max: 1,
        timeout: keep_alive,
    };
    let control: Arc<dyn ConnectionControl> = sink.clone();
    let registration =
        broker
            .connections()
            .register(id, info, Arc::downgrade(&control), Arc::downgrade(&vhost));
    let client_receive_max = connect.props.receive_maximum.unwrap_or(u16::MAX);
    let inflight_limit = mqtt.config.max_inflight.min(client_receive_max).max(1);
    let mut conn = Conn {
        mqtt: Arc::clone(mqtt),
        id,
        peer,
        version: connect.version,
        v5,
        client_id,
        user,
        vhost,
        persistent,
        session_expiry,
        keep_alive,
        will: connect.will.clone().map(Box::new),
        hold,
        subs: HashMap::new(),
        own: [None, None],
        consuming: HashMap::new(),
        sink,
        _control: control,
        credit: Arc::new(Credit::new(inflight_limit as u32)),
        channel_credit: Arc::new(Credit::new(0)),
        inflight: HashMap::new(),
        next_pid: 1,
        pending_acks: VecDeque::new(),
        unacked_in: 0,
        client_max_packet: connect
            .props
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize),
        scram_login: proven.is_some(),
        reauth: None,
        retained_backlog: VecDeque::new(),
        aliases_in: HashMap::new(),
        out: BytesMut::new(),
        writer,
        scratch: RouteScratch::default(),
        lagging: Vec::new(),
        may_publish: None,
        _registration: registration,
        synced: broker.persistence().map(|p| p.synced()),
        plain_props: None,
        _slots: slots,
    };
    let session_present = match conn.resume(connect.clean) {
        Ok(present) => present,
        Err(r) => return Err((r, conn.writer)),
    };
    let mut props = Properties::default();
    if v5 {
        props.receive_maximum = Some(mqtt.config.receive_maximum);
        props.retain_available = Some(true);
        props.maximum_packet_size = Some(mqtt.config.max_packet_size as u32);
        props.topic_alias_maximum = Some(mqtt.config.topic_alias_maximum);
        props.wildcard_available = Some(true);
        props.subscription_ids_available = Some(true);
        props.shared_available = Some(true);
        props.assigned_client_id = assigned;
        props.server_keep_alive = keep_alive_cap;
        props.session_expiry = expiry_cap;
        if let Some(p) = proven {
            props.auth_method = Some(auth::SCRAM_SHA_256.into());
            props.auth_data = Some(p.server_final);
        }
    }
    conn.send(&Packet::ConnAck {
        session_present,
        code: 0,
        props,
    });
    // QoS 2 deliveries released before the last connection ended: PUBREL again.
    let awaiting: Vec<u16> = conn
        .hold
        .slot
        .carried
        .lock()
        .awaiting_complete
        .iter()
        .copied()
        .collect();
    for pid in awaiting {
        conn.send(&Packet::Ack {
            kind: codec::AckKind::PubRel,
            pid,
            reason: 0,
            props: Properties::default(),
        });
    }
    conn.attach_consumers();
    Ok(conn)
}

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    /// Opens the session: a clean start drops whatever the client id had; otherwise the
    /// session's queues, if they exist, are resumed with the subscriptions their bindings
    /// record. Answers whether a session was present.
    fn resume(&mut self, clean: bool) -> Result<bool, Refusal> {
        let names = [
            own_queue_name(&self.client_id, 0),
            own_queue_name(&self.client_id, 1),
        ];
        if clean {
            for name in &names {
                if let Some(q) = self.vhost.find_queue(name) {
                    self.vhost.delete_queue_instance(&q);
                }
            }
            self.leave_share_groups();
            let mut carried = self.hold.slot.carried.lock();
            let generation = carried.generation;
            *carried = crate::session::Carried {
                generation,
                ..Default::default()
            };
            return Ok(false);
        }
        let mut present = false;
        for (i, name) in names.iter().enumerate() {
            if let Some(q) = self.vhost.find_queue(name) {
                if q.spec.exclusive_owner.is_some() {
                    // A clean session's queue of a connection that is still going away.
                    self.vhost.delete_queue_instance(&q);
                    continue;
                }
                present = true;
                self.own[i] = Some(q);
            }
        }
        let exchange = self.mqtt.config.exchange.clone();
        for b in self.vhost.bindings(false) {
            if b.source != exchange {
                continue;
            }
            let Destination::Queue(dest) = &b.destination else {
                continue;
            };
            if let Some(i) = names.iter().position(|n| n == dest) {
                if let Some(sub) = subscribe::sub_from_binding(&b, self.own[i].clone()) {
                    self.subs.insert(sub.filter.clone(), sub);
                }
                continue;
            }
            // The session's memberships of share groups (their queues are the groups').
            let Some(group) = subscribe::share_membership(&b, &self.client_id) else {
                continue;
            };
            let Some(q) = self.vhost.find_queue(dest) else {
                continue;
            };
            if let Some(sub) = subscribe::sub_from_binding(&b, Some(Arc::clone(&q))) {
                present = true;
                self.consuming.insert(dest.clone(), q);
                self.subs
                    .insert(format!("$share/{group}/{}", sub.filter), sub);
            }
        }
        let carried = !self.hold.slot.carried.lock().is_empty();
        Ok(present || carried)
    }

    /// Removes every share-group membership the client id's earlier sessions left bound.
    fn leave_share_groups(&mut self) {
        let exchange = self.mqtt.config.exchange.clone();
        for b in self.vhost.bindings(false) {
            if b.source == exchange && subscribe::share_membership(&b, &self.client_id).is_some() {
                let _ = self.vhost.unbind(
                    &exchange,
                    b.destination.clone(),
                    &b.routing_key,
                    b.arguments.clone(),
                    self.id,
                );
            }
        }
    }

    /// Starts consuming from the session's own queues and its share groups' queues.
    pub(crate) fn attach_consumers(&mut self) {
        for (i, tag) in OWN_TAGS.iter().enumerate() {
            if let Some(q) = self.own[i].clone() {
                self.consume(&q, i as u16, tag, i == 0);
            }
        }
        let shared: Vec<(String, Arc<Queue>, bool)> = self
            .consuming
            .iter()
            .map(|(name, q)| {
                let at_most_once = self
                    .subs
                    .values()
                    .filter(|s| s.queue.name() == name)
                    .all(|s| s.opts.qos == 0);
                (name.clone(), Arc::clone(q), at_most_once)
            })
            .collect();
        for (name, q, at_most_once) in shared {
            self.consume(&q, SHARED_CHANNEL, &name, at_most_once);
        }
    }

    pub(crate) fn consume(&mut self, q: &Arc<Queue>, channel: u16, tag: &str, no_ack: bool) {
        let sink: Arc<dyn DeliverySink> = self.sink.clone();
        let spec = ConsumerSpec {
            tag: Arc::from(tag),
            connection_id: self.id,
            channel,
            no_ack,
            exclusive: false,
            priority: 0,
            sink,
            consumer_credit: Arc::clone(&self.credit),
            channel_credit: Arc::clone(&self.channel_credit),
        };
        if let Err(e) = q.add_consumer(spec) {
            info!(client_id = %self.client_id, queue = q.name(), error = %e.text, "MQTT consumer not attached");
        }
    }
}

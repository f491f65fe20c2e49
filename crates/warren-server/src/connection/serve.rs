//! One accepted connection from start to end: the TLS handshake when the listener is
//! AMQPS, the AMQP handshake, registration with the broker, the event loop, teardown, and
//! the close of the socket as RabbitMQ does it.

use super::*;

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<crate::tls::Tls>,
    broker: Arc<Broker>,
    config: Arc<ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let reader_local_addr = stream.local_addr().ok();
    let is_tls = tls.is_some();
    let mut external = None;
    let (mut reader, mut writer) = match tls {
        None => split_tcp(stream),
        Some(tls) => {
            let accept = tls.acceptor().accept(stream);
            match tokio::time::timeout(config.handshake_timeout, accept).await {
                Ok(Ok(tls_stream)) => {
                    if tls.offers_external() {
                        let user = tls_stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|der| crate::tls::identity::user_name(der, tls.login_from()));
                        external = Some(ExternalLogin { user });
                    }
                    split_tls(tls_stream)
                }
                Ok(Err(e)) => {
                    warn!(%peer, error = %e, "TLS handshake failed; closing connection");
                    return;
                }
                Err(_) => {
                    warn!(%peer, timeout = ?config.handshake_timeout, "TLS handshake timed out; closing connection");
                    return;
                }
            }
        }
    };
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let id = broker.next_connection_id();
    let handshake = tokio::time::timeout(
        config.handshake_timeout,
        handshake(
            &mut reader,
            &mut writer,
            &mut inbuf,
            peer,
            external.as_ref(),
            &broker,
            &config,
        ),
    )
    .await;
    let mut negotiated = match handshake {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            warn!(%peer, reason = %e.reason, "closing connection during handshake");
            if let Some(close) = e.close {
                info!(%peer, code = close.code, "connection.close sent during handshake");
                let mut out = BytesMut::new();
                write_connection_close(&mut out, &close);
                let _ = writer.write_all(&out).await;
                let _ = writer.flush().await;
                // Give the client a moment to read the close before the socket goes.
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), reader.read(&mut [0u8; 64])).await;
            }
            return;
        }
        Err(_) => {
            warn!(%peer, timeout = ?config.handshake_timeout, "handshake timed out; closing connection");
            return;
        }
    };
    info!(%peer, connection = id, user = %negotiated.user.name, vhost = %negotiated.vhost.name, "connection opened");

    let (tx, rx) = mpsc::unbounded_channel();
    let sink = Arc::new(ConnSink {
        tx,
        pending_bytes: AtomicUsize::new(0),
        starved: AtomicBool::new(false),
    });
    let control: Arc<dyn ConnectionControl> = Arc::clone(&sink) as Arc<dyn ConnectionControl>;
    let local = reader_local_addr.unwrap_or(peer);
    let info = warren_core::connections::ConnectionInfo {
        name: format!("{peer} -> {local}"),
        protocol: "AMQP 0-9-1".into(),
        user: negotiated.user.name.clone(),
        vhost: negotiated.vhost.name.clone(),
        peer_host: peer.ip().to_string(),
        peer_port: peer.port(),
        host: local.ip().to_string(),
        port: local.port(),
        ssl: is_tls,
        auth_mechanism: negotiated.mechanism.clone(),
        connected_at: warren_core::clock::unix_millis(),
        client_properties: std::mem::take(&mut negotiated.client_properties),
        frame_max: negotiated.frame_max,
        channel_max: negotiated.channel_max,
        timeout: negotiated.heartbeat,
    };
    let registration = broker.connections().register(
        id,
        info,
        Arc::downgrade(&control),
        Arc::downgrade(&negotiated.vhost),
    );
    let ctx = ConnCtx {
        id,
        broker: Arc::clone(&broker),
        vhost: Arc::clone(&negotiated.vhost),
        user: negotiated.user.name.clone(),
        // RabbitMQ: an impersonator may publish with another user's user-id.
        impersonator: negotiated.user.has_tag("impersonator"),
        frame_max: negotiated.frame_max,
        out: BytesMut::with_capacity(READ_CHUNK),
        chunks: Chunks::default(),
        sink: Arc::clone(&sink) as Arc<dyn DeliverySink>,
        consumer_cancel_notify: negotiated.consumer_cancel_notify,
        is_publisher: false,
        config,
        route_scratch: RouteScratch::default(),
        lagging_queues: Vec::new(),
    };
    let mut conn = Connection {
        ctx,
        channels: warren_core::FastMap::default(),
        channel_max: negotiated.channel_max,
        heartbeat: negotiated.heartbeat,
        closing_since: None,
        confirm_dirty: Vec::new(),
        durable_waiters: Vec::new(),
        synced: broker.persistence().map(|p| p.synced()),
        alarms: broker.alarms().subscribe(),
        client_knows_blocked: negotiated.connection_blocked,
        blocked: false,
        throttled: false,
        sink,
        large_frames: false,
        rx,
        _slot: negotiated.slot,
        user_slot: negotiated.user_slot,
        registration,
    };
    let end = conn
        .run(&mut reader, &mut writer, inbuf, &mut shutdown)
        .await;
    conn.teardown();
    match &end {
        End::ClientClosed | End::Eof => {
            info!(%peer, connection = id, reason = ?end, "connection closed")
        }
        End::Error(e) => {
            warn!(%peer, connection = id, code = e.code, text = %e.text, "connection closed by error")
        }
        _ => warn!(%peer, connection = id, reason = ?end, "connection closed"),
    }
    if matches!(end, End::ClientClosed) {
        // After the client's close and our close-ok the client closes the socket first (as
        // the spec has it, and as RabbitMQ waits for); closing it under a client that is
        // still reading the close-ok makes some clients report an error instead of a clean
        // close. After our close and the client's close-ok (End::Error) there is nothing
        // left to read: RabbitMQ 3.10 closes the socket at once, and so do we.
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(CLOSE_OK_TIMEOUT, async {
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    let _ = writer.shutdown().await;
}

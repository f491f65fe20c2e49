//! Accept loops: MQTT over TCP, over TLS (the acceptor comes from the binary, which owns
//! certificates and their reload), and over WebSocket (RabbitMQ's Web MQTT: binary frames
//! on the `/ws` path, subprotocol `mqtt`), each connection on its own task.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tracing::{debug, info, warn};

use crate::connection::serve;
use crate::Mqtt;

/// Gives the current TLS acceptor (certificates may be reloaded between connections).
pub type TlsProvider = Arc<dyn Fn() -> tokio_rustls::TlsAcceptor + Send + Sync>;

/// The WebSocket path, as RabbitMQ's Web MQTT plugin serves it.
pub const WS_PATH: &str = "/ws";

async fn accept_loop<F>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream, SocketAddr, SocketAddr) -> Served,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(peer);
                tokio::spawn(handle(stream, peer, local));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection's whole life, boxed: plain and TLS connections are different futures, and
/// an idle client's task should hold only its own kind (inline, every task would keep room
/// for the largest, a TLS handshake included).
type Served = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The TLS handshake, within the connect timeout; `None` (logged) when it fails.
async fn accept_tls(
    mqtt: &Mqtt,
    tls: &TlsProvider,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tls();
    match tokio::time::timeout(mqtt.config.connect_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            info!(%peer, error = %e, "MQTT TLS handshake failed");
            None
        }
        Err(_) => {
            info!(%peer, "MQTT TLS handshake timed out");
            None
        }
    }
}

/// Serves MQTT (or MQTT over TLS, with `tls`) on `listener` until the runtime stops.
pub async fn serve_tcp(mqtt: Arc<Mqtt>, listener: TcpListener, tls: Option<TlsProvider>) {
    accept_loop(listener, move |stream, peer, local| -> Served {
        let mqtt = Arc::clone(&mqtt);
        match tls.clone() {
            None => Box::pin(serve(mqtt, stream, peer, local, false)),
            Some(tls) => Box::pin(async move {
                if let Some(stream) = accept_tls(&mqtt, &tls, stream, peer).await {
                    serve(mqtt, stream, peer, local, true).await
                }
            }),
        }
    })
    .await
}

/// Serves MQTT over WebSocket (or secure WebSocket, with `tls`) on `listener`.
pub async fn serve_websocket(mqtt: Arc<Mqtt>, listener: TcpListener, tls: Option<TlsProvider>) {
    accept_loop(listener, move |stream, peer, local| -> Served {
        let mqtt = Arc::clone(&mqtt);
        match tls.clone() {
            None => Box::pin(websocket(mqtt, stream, peer, local, false)),
            Some(tls) => Box::pin(async move {
                if let Some(stream) = accept_tls(&mqtt, &tls, stream, peer).await {
                    websocket(mqtt, stream, peer, local, true).await
                }
            }),
        }
    })
    .await
}

#[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
fn check_upgrade(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() != WS_PATH {
        let mut refusal = ErrorResponse::new(Some(format!("MQTT is served on {WS_PATH}")));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let offers_mqtt = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
    if offers_mqtt {
        resp.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    }
    Ok(resp)
}

/// One WebSocket connection: the handshake, then a bridge between its binary frames and a
/// byte pipe that the MQTT connection reads and writes like a socket.
async fn websocket<S>(mqtt: Arc<Mqtt>, stream: S, peer: SocketAddr, local: SocketAddr, tls: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade = tokio::time::timeout(
        mqtt.config.connect_timeout,
        tokio_tungstenite::accept_hdr_async(stream, check_upgrade),
    )
    .await;
    let ws = match upgrade {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            info!(%peer, error = %e, "MQTT WebSocket upgrade refused");
            return;
        }
        Err(_) => {
            info!(%peer, "MQTT WebSocket upgrade timed out");
            return;
        }
    };
    let (mqtt_side, bridge_side) = tokio::io::duplex(256 * 1024);
    let bridge = tokio::spawn(async move {
        let (mut ws_tx, mut ws_rx) = ws.split();
        let (mut pipe_rx, mut pipe_tx) = tokio::io::split(bridge_side);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                frame = ws_rx.next() => match frame {
                    Some(Ok(WsMessage::Binary(data))) => {
                        if pipe_tx.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) | None => break,
                    Some(Ok(WsMessage::Text(_))) => {
                        debug!(%peer, "text frame on MQTT WebSocket; closing");
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        debug!(%peer, error = %e, "WebSocket read failed");
                        break;
                    }
                },
                n = pipe_rx.read(&mut buf) => match n {
                    Ok(0) | Err(_) => {
                        let _ = ws_tx.close().await;
                        break;
                    }
                    Ok(n) => {
                        let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                        if ws_tx.send(WsMessage::Binary(data)).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
    });
    serve(mqtt, mqtt_side, peer, local, tls).await;
    let _ = bridge.await;
}

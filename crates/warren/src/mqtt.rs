//! Starts the MQTT front end: binds its TCP, TLS and WebSocket listeners (printing each
//! listening line as the AMQP ones are) and serves them on the broker's runtime.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::info;
use warren_core::Broker;

use crate::mqtt_settings::MqttSettings;

/// Binds every MQTT listener and starts serving; answers what the management API lists.
pub async fn start(
    broker: &Arc<Broker>,
    settings: &MqttSettings,
    data_dir: &Path,
    tls: Option<warren_server::tls::Tls>,
) -> Result<Vec<warren_http::ListenerInfo>, String> {
    let all_empty = settings.listen.is_empty()
        && settings.tls_listen.is_empty()
        && settings.ws_listen.is_empty()
        && settings.wss_listen.is_empty();
    if all_empty {
        return Ok(Vec::new());
    }
    let mqtt = warren_mqtt::Mqtt::new(Arc::clone(broker), settings.config.clone(), Some(data_dir))
        .map_err(|e| format!("cannot open the MQTT retained message store: {e}"))?;
    let provider: Option<warren_mqtt::TlsProvider> = tls.map(|t| {
        let p: warren_mqtt::TlsProvider = Arc::new(move || t.acceptor());
        p
    });
    let mut infos = Vec::new();
    let groups: [(&Vec<String>, &str, &str, bool, bool); 4] = [
        (&settings.listen, "MQTT", "mqtt", false, false),
        (&settings.tls_listen, "MQTTS", "mqtt/ssl", true, false),
        (
            &settings.ws_listen,
            "MQTT over WebSocket",
            "http/web-mqtt",
            false,
            true,
        ),
        (
            &settings.wss_listen,
            "MQTT over secure WebSocket",
            "https/web-mqtt",
            true,
            true,
        ),
    ];
    for (addrs, label, protocol, secure, ws) in groups {
        for addr in addrs {
            let listener = TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = listener
                .local_addr()
                .map_err(|e| format!("cannot read the address of {addr}: {e}"))?;
            println!("warren: listening for {label} on {local}");
            info!(%local, protocol = label, "listening");
            infos.push(warren_http::ListenerInfo {
                protocol: protocol.into(),
                ip: local.ip().to_string(),
                port: local.port(),
            });
            let tls = if secure { provider.clone() } else { None };
            let mqtt = Arc::clone(&mqtt);
            if ws {
                tokio::spawn(warren_mqtt::serve_websocket(mqtt, listener, tls));
            } else {
                tokio::spawn(warren_mqtt::serve_tcp(mqtt, listener, tls));
            }
        }
    }
    Ok(infos)
}

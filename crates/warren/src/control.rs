//! The control socket: a Unix socket in the data directory (`warren.sock`) over which
//! `warren ctl` administers the running broker without a password. One JSON request per
//! line, one JSON answer per line; the `api` command runs a management API request as the
//! local operator. Only local users who can reach the data
//! directory can use it (the socket is created with mode 0600).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};
use warren_amqp::{FieldTable, FieldValue};
use warren_core::limits::VHostLimits;
use warren_core::policy::{ApplyTo, Policy};
use warren_core::Broker;

pub const SOCKET_NAME: &str = "warren.sock";

/// The AMQPS listeners' certificates, for `reload_tls` (set once by the binary).
static TLS: std::sync::OnceLock<warren_server::tls::Tls> = std::sync::OnceLock::new();

pub fn set_tls(tls: warren_server::tls::Tls) {
    let _ = TLS.set(tls);
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Creates the control socket (replacing one a crashed run left behind).
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    UnixListener::from_std(bind_std(data_dir)?)
}

/// [`bind`] outside a runtime: the listener is made non-blocking, for
/// `UnixListener::from_std` inside one.
pub fn bind_std(data_dir: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    info!(path = %path.display(), "control socket ready");
    Ok(listener)
}

/// Serves the control socket until the task is dropped. `api` answers the `api` command:
/// a management API request run in-process as the local operator (what `warren ctl`'s
/// list, status and health-check verbs use).
pub async fn serve(
    broker: Arc<Broker>,
    api: Arc<warren_http::ApiState>,
    listener: UnixListener,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let broker = Arc::clone(&broker);
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &broker, &api).await {
                warn!(error = %e, "control connection failed");
            }
        });
    }
}

/// `{"cmd": "api", "method": "GET", "path": "/api/queues", "headers": [[k, v]], "body": ..}`
/// answered with `{"status": 200, "body": ...}`.
async fn api_call(api: &Arc<warren_http::ApiState>, request: &Value) -> Result<Value, String> {
    let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or_default();
    let headers: Vec<(String, String)> = request
        .get("headers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|h| {
                    Some((
                        h.get(0)?.as_str()?.to_string(),
                        h.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let (status, body) = warren_http::call_as_operator(
        api,
        text("method"),
        text("path"),
        &headers,
        request.get("body").cloned(),
    )
    .await?;
    Ok(json!({ "status": status, "body": body }))
}

async fn handle(
    stream: UnixStream,
    broker: &Broker,
    api: &Arc<warren_http::ApiState>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(request) if request.get("cmd").and_then(Value::as_str) == Some("api") => {
                api_call(api, &request).await
            }
            Ok(request) => execute(broker, &request),
            Err(e) => Err(format!("invalid request: {e}")),
        };
        let reply = match answer {
            Ok(mut v) => {
                v["ok"] = json!(true);
                v
            }
            Err(e) => json!({ "ok": false, "error": e }),
        };
        write.write_all(format!("{reply}\n").as_bytes()).await?;
    }
    Ok(())
}

fn execute(broker: &Broker, request: &Value) -> Result<Value, String> {
    let text = |key: &str| {
        request
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match text("cmd").as_str() {
        "set_memory_high_watermark" | "set_disk_free_limit" => {
            let bytes = request
                .get("bytes")
                .and_then(Value::as_u64)
                .ok_or("bytes missing")?;
            if text("cmd") == "set_disk_free_limit" {
                broker.alarms().set_disk_free_limit(bytes);
            } else {
                broker.alarms().set_memory_high_watermark(bytes);
            }
            broker.check_resources();
            info!(command = %text("cmd"), bytes, "alarm threshold changed");
            return Ok(json!({}));
        }
        "reload_tls" => {
            let tls = TLS.get().ok_or("no TLS listener is configured")?;
            tls.reload().map_err(|e| {
                format!("TLS reload failed (the previous certificates stay in use): {e}")
            })?;
            info!("TLS certificates reloaded");
            return Ok(json!({}));
        }
        _ => {}
    }
    if let Some(result) = crate::control_access::execute(broker, &text("cmd"), request) {
        return result;
    }
    let vhost_name = request.get("vhost").and_then(Value::as_str).unwrap_or("/");
    let vhost = broker
        .vhost(vhost_name)
        .ok_or_else(|| format!("no vhost '{vhost_name}'"))?;
    match text("cmd").as_str() {
        "set_policy" => {
            let apply_to = ApplyTo::parse(
                request
                    .get("apply_to")
                    .and_then(Value::as_str)
                    .unwrap_or("all"),
            )
            .ok_or("apply_to must be queues, exchanges or all")?;
            let priority = request.get("priority").and_then(Value::as_i64).unwrap_or(0);
            let priority = i32::try_from(priority).map_err(|_| "priority out of range")?;
            let definition = match request.get("definition") {
                Some(Value::Object(map)) => definition_table(map)?,
                _ => return Err("definition must be a JSON object".into()),
            };
            let name = text("name");
            let policy = Policy::new(&name, &text("pattern"), definition, apply_to, priority)
                .map_err(|e| e.text)?;
            vhost.set_policy(policy).map_err(|e| e.text)?;
            info!(vhost = vhost_name, policy = %name, "policy set");
            Ok(json!({}))
        }
        "clear_policy" => {
            let name = text("name");
            if vhost.clear_policy(&name).map_err(|e| e.text)? {
                info!(vhost = vhost_name, policy = %name, "policy cleared");
                Ok(json!({}))
            } else {
                Err(format!(
                    "Parameter does not exist: policy '{name}' in vhost '{vhost_name}'"
                ))
            }
        }
        "set_vhost_limits" => {
            let definition = match request.get("definition") {
                Some(Value::Object(map)) => definition_table(map)?,
                _ => return Err("definition must be a JSON object".into()),
            };
            let limits = VHostLimits::from_definition(&definition)?;
            vhost.set_limits(limits).map_err(|e| e.text)?;
            info!(vhost = vhost_name, ?limits, "vhost limits set");
            Ok(json!({}))
        }
        "clear_vhost_limits" => {
            vhost
                .set_limits(VHostLimits::default())
                .map_err(|e| e.text)?;
            info!(vhost = vhost_name, "vhost limits cleared");
            Ok(json!({}))
        }
        "list_vhost_limits" => {
            let limits = definition_json(&vhost.limits().to_definition());
            Ok(json!({ "limits": [{ "vhost": vhost_name, "limits": limits }] }))
        }
        "list_policies" => {
            let list: Vec<Value> = vhost
                .policies()
                .iter()
                .map(|p| {
                    json!({
                        "vhost": vhost_name,
                        "name": p.name,
                        "pattern": p.pattern,
                        "apply_to": p.apply_to.as_str(),
                        "definition": definition_json(&p.definition),
                        "priority": p.priority,
                    })
                })
                .collect();
            Ok(json!({ "policies": list }))
        }
        other => Err(format!("unknown command '{other}'")),
    }
}

pub(crate) fn definition_table(map: &serde_json::Map<String, Value>) -> Result<FieldTable, String> {
    let mut table = FieldTable::default();
    for (key, value) in map {
        let v = match value {
            Value::String(s) => FieldValue::LongString(s.clone().into()),
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => FieldValue::I64(i),
                None => return Err(format!("{key}: expected an integer")),
            },
            _ => return Err(format!("{key}: unsupported value {value}")),
        };
        table.insert(key.clone(), v);
    }
    Ok(table)
}

pub(crate) fn definition_json(table: &FieldTable) -> Value {
    let mut map = serde_json::Map::new();
    for (key, value) in table.iter() {
        let v = match (value.as_str(), value.as_i64(), value.as_bool()) {
            (Some(s), _, _) => json!(s),
            (_, Some(i), _) => json!(i),
            (_, _, Some(b)) => json!(b),
            _ => Value::Null,
        };
        map.insert(key.clone(), v);
    }
    Value::Object(map)
}

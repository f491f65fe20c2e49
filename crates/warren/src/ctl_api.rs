//! `warren ctl`'s read verbs (rabbitmqctl's `list_*`, `status`, `purge_queue`,
//! `delete_queue`, `close_connection`, definitions, and rabbitmq-diagnostics' checks),
//! done as management API requests: over the local control socket as the local operator (no
//! password, as rabbitmqctl), or with `--uri http://user:pass@host:port` over HTTP to a
//! remote broker. Output as rabbitmqctl's: an info line, a header row and tab-separated
//! rows, or `--formatter json`.

use std::path::Path;

use serde_json::{json, Value};

use crate::ctl::{call, CtlError};
use crate::ctl_remote::Remote;

#[derive(clap::Subcommand, Debug)]
pub enum ApiCommand {
    /// `list_queues [-p VHOST] [ITEM ...]` (default: name messages).
    #[command(name = "list_queues")]
    ListQueues {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        items: Vec<String>,
    },
    /// `list_exchanges [-p VHOST] [ITEM ...]` (default: name type).
    #[command(name = "list_exchanges")]
    ListExchanges {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        items: Vec<String>,
    },
    /// `list_bindings [-p VHOST] [ITEM ...]`.
    #[command(name = "list_bindings")]
    ListBindings {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        items: Vec<String>,
    },
    /// `list_connections [ITEM ...]` (default: user peer_host peer_port state).
    #[command(name = "list_connections")]
    ListConnections { items: Vec<String> },
    /// `list_channels [ITEM ...]` (default: pid user consumer_count messages_unacknowledged;
    /// `pid` is the channel's name).
    #[command(name = "list_channels")]
    ListChannels { items: Vec<String> },
    /// `list_consumers [-p VHOST] [ITEM ...]`.
    #[command(name = "list_consumers")]
    ListConsumers {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        items: Vec<String>,
    },
    /// The node's status: versions, memory, disk, alarms, listeners, totals.
    #[command(name = "status")]
    Status,
    #[command(name = "purge_queue")]
    PurgeQueue {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        name: String,
    },
    /// `delete_queue [-p VHOST] NAME [--if-empty] [--if-unused]`.
    #[command(name = "delete_queue")]
    DeleteQueue {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        #[arg(short = 'e', long = "if-empty")]
        if_empty: bool,
        #[arg(short = 'u', long = "if-unused")]
        if_unused: bool,
        name: String,
    },
    /// `close_connection NAME REASON` (the name as list_connections shows it).
    #[command(name = "close_connection")]
    CloseConnection { name: String, reason: String },
    /// `close_all_connections [-p VHOST | --global] REASON`.
    #[command(name = "close_all_connections")]
    CloseAllConnections {
        #[arg(short = 'p', long = "vhost")]
        vhost: Option<String>,
        #[arg(long)]
        global: bool,
        reason: String,
    },
    #[command(name = "export_definitions")]
    ExportDefinitions {
        /// A file, or `-` for standard output.
        path: String,
    },
    #[command(name = "import_definitions")]
    ImportDefinitions {
        /// A file, or `-` for standard input.
        path: String,
    },
    #[command(name = "ping")]
    Ping,
    #[command(name = "check_running")]
    CheckRunning,
    #[command(name = "check_alarms")]
    CheckAlarms,
    #[command(name = "check_local_alarms")]
    CheckLocalAlarms,
    #[command(name = "check_port_listener")]
    CheckPortListener { port: u16 },
    #[command(name = "check_protocol_listener")]
    CheckProtocolListener { protocol: String },
    #[command(name = "check_virtual_hosts")]
    CheckVirtualHosts,
    /// The node's listeners.
    #[command(name = "listeners")]
    Listeners,
}

/// How output is shaped (rabbitmqctl's global options).
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub json: bool,
    pub silent: bool,
    pub no_headers: bool,
}

/// rabbitmq-diagnostics' exit status for a failed check (EX_UNAVAILABLE).
const CHECK_FAILED: u8 = 69;

enum Via<'a> {
    Socket(&'a Path),
    Http(Remote),
}

impl Via<'_> {
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(u16, Value), CtlError> {
        match self {
            Via::Socket(dir) => {
                let reply = call(
                    dir,
                    &json!({"cmd": "api", "method": method, "path": path, "headers": headers, "body": body}),
                )?;
                if reply.get("ok").and_then(Value::as_bool) != Some(true) {
                    let e = reply
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error");
                    return Err(e.to_string().into());
                }
                let status = reply.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
                Ok((status, reply.get("body").cloned().unwrap_or(Value::Null)))
            }
            Via::Http(remote) => remote
                .request(method, path, headers, body)
                .map_err(CtlError::from),
        }
    }

    /// A request that must succeed (2xx): its body.
    fn ok(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let (status, body) = self.request(method, path, headers, body)?;
        if !(200..300).contains(&status) {
            let reason = body
                .get("reason")
                .map(|r| r.as_str().map(str::to_string).unwrap_or(r.to_string()));
            return Err(reason.unwrap_or_else(|| format!("HTTP {status}")).into());
        }
        Ok(body)
    }
}

/// Percent-encodes a path segment (every byte but letters and digits).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An item of a listed object, by rabbitmqctl's item name.
fn item(kind: &str, obj: &Value, name: &str) -> Value {
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(obj, |v, k| v.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    match (kind, name) {
        ("bindings", "source_name") => at(&["source"]),
        ("bindings", "source_kind") => json!("exchange"),
        ("bindings", "destination_name") => at(&["destination"]),
        ("bindings", "destination_kind") => at(&["destination_type"]),
        ("channels", "pid") => at(&["name"]),
        ("channels", "connection") => at(&["connection_details", "name"]),
        ("consumers", "queue_name") => at(&["queue", "name"]),
        ("consumers", "channel_pid") => at(&["channel_details", "name"]),
        ("connections", "pid") => at(&["name"]),
        _ => at(&[name]),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_list(
    out: &Output,
    title: &str,
    kind: &str,
    list: &Value,
    items: &[String],
    defaults: &[&str],
) {
    let items: Vec<String> = if items.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        items.to_vec()
    };
    let rows: Vec<Vec<Value>> = list
        .as_array()
        .map(|l| {
            l.iter()
                .map(|o| items.iter().map(|i| item(kind, o, i)).collect())
                .collect()
        })
        .unwrap_or_default();
    if out.json {
        let objects: Vec<Value> = rows
            .iter()
            .map(|r| Value::Object(items.iter().cloned().zip(r.iter().cloned()).collect()))
            .collect();
        println!("{}", Value::Array(objects));
        return;
    }
    if !out.silent {
        println!("{title}");
    }
    if !out.no_headers {
        println!("{}", items.join("\t"));
    }
    for r in rows {
        println!("{}", r.iter().map(cell).collect::<Vec<_>>().join("\t"));
    }
}

fn check(
    out: &Output,
    passed: bool,
    ok_text: String,
    failed_text: String,
    body: &Value,
) -> Result<(), CtlError> {
    if out.json {
        println!("{body}");
    } else if passed {
        println!("{ok_text}");
    } else {
        println!("{failed_text}");
    }
    if passed {
        Ok(())
    } else {
        Err(CtlError {
            message: String::new(),
            exit: CHECK_FAILED,
        })
    }
}

/// Runs one API verb against the broker at `data_dir`, or at `uri` when given.
pub fn run(
    command: &ApiCommand,
    data_dir: &Path,
    uri: Option<&str>,
    out: &Output,
) -> Result<(), CtlError> {
    let via = match uri {
        Some(u) => Via::Http(Remote::parse(u)?),
        None => Via::Socket(data_dir),
    };
    let node = || -> Result<String, CtlError> {
        Ok(via.ok("GET", "/api/overview", &[], None)?["node"]
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    match command {
        ApiCommand::ListQueues { vhost, items } => {
            let list = via.ok("GET", &format!("/api/queues/{}", seg(vhost)), &[], None)?;
            print_list(
                out,
                &format!("Listing queues for vhost {vhost} ..."),
                "queues",
                &list,
                items,
                &["name", "messages"],
            );
        }
        ApiCommand::ListExchanges { vhost, items } => {
            let list = via.ok("GET", &format!("/api/exchanges/{}", seg(vhost)), &[], None)?;
            print_list(
                out,
                &format!("Listing exchanges for vhost {vhost} ..."),
                "exchanges",
                &list,
                items,
                &["name", "type"],
            );
        }
        ApiCommand::ListBindings { vhost, items } => {
            let list = via.ok("GET", &format!("/api/bindings/{}", seg(vhost)), &[], None)?;
            let defaults = [
                "source_name",
                "source_kind",
                "destination_name",
                "destination_kind",
                "routing_key",
                "arguments",
            ];
            print_list(
                out,
                &format!("Listing bindings for vhost {vhost}..."),
                "bindings",
                &list,
                items,
                &defaults,
            );
        }
        ApiCommand::ListConnections { items } => {
            let list = via.ok("GET", "/api/connections", &[], None)?;
            print_list(
                out,
                "Listing connections ...",
                "connections",
                &list,
                items,
                &["user", "peer_host", "peer_port", "state"],
            );
        }
        ApiCommand::ListChannels { items } => {
            let list = via.ok("GET", "/api/channels", &[], None)?;
            let defaults = ["pid", "user", "consumer_count", "messages_unacknowledged"];
            print_list(
                out,
                "Listing channels ...",
                "channels",
                &list,
                items,
                &defaults,
            );
        }
        ApiCommand::ListConsumers { vhost, items } => {
            let list = via.ok("GET", &format!("/api/consumers/{}", seg(vhost)), &[], None)?;
            let defaults = [
                "queue_name",
                "channel_pid",
                "consumer_tag",
                "ack_required",
                "prefetch_count",
                "active",
                "arguments",
            ];
            print_list(
                out,
                &format!("Listing consumers in vhost {vhost} ..."),
                "consumers",
                &list,
                items,
                &defaults,
            );
        }
        ApiCommand::Status => status(&via, out)?,
        ApiCommand::PurgeQueue { vhost, name } => {
            if !out.silent && !out.json {
                println!("Purging queue '{name}' in vhost '{vhost}' ...");
            }
            via.ok(
                "DELETE",
                &format!("/api/queues/{}/{}/contents", seg(vhost), seg(name)),
                &[],
                None,
            )?;
        }
        ApiCommand::DeleteQueue {
            vhost,
            if_empty,
            if_unused,
            name,
        } => {
            let path = format!("/api/queues/{}/{}", seg(vhost), seg(name));
            let ready = via.ok("GET", &path, &[], None)?["messages_ready"]
                .as_u64()
                .unwrap_or(0);
            let query = format!("?if-empty={if_empty}&if-unused={if_unused}");
            if !out.silent && !out.json {
                println!("Deleting queue '{name}' on vhost '{vhost}' ...");
            }
            via.ok("DELETE", &format!("{path}{query}"), &[], None)?;
            println!("Queue was successfully deleted with {ready} ready messages");
        }
        ApiCommand::CloseConnection { name, reason } => {
            if !out.silent && !out.json {
                println!("Closing connection {name}, reason: {reason}...");
            }
            via.ok(
                "DELETE",
                &format!("/api/connections/{}", seg(name)),
                &[("X-Reason", reason)],
                None,
            )?;
        }
        ApiCommand::CloseAllConnections {
            vhost,
            global,
            reason,
        } => {
            let path = match (vhost, global) {
                (Some(v), false) => format!("/api/vhosts/{}/connections", seg(v)),
                _ => "/api/connections".to_string(),
            };
            let list = via.ok("GET", &path, &[], None)?;
            let names: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect();
            if !out.silent && !out.json {
                println!(
                    "Closing all {} connections because of '{reason}' ...",
                    names.len()
                );
            }
            for n in names {
                via.ok(
                    "DELETE",
                    &format!("/api/connections/{}", seg(&n)),
                    &[("X-Reason", reason)],
                    None,
                )?;
            }
        }
        ApiCommand::ExportDefinitions { path } => {
            let defs = via.ok("GET", "/api/definitions", &[], None)?;
            let text = serde_json::to_string_pretty(&defs).map_err(|e| e.to_string())?;
            if path == "-" {
                println!("{text}");
            } else {
                if !out.silent {
                    println!("Exporting definitions in JSON to a file at \"{path}\" ...");
                }
                std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}"))?;
            }
        }
        ApiCommand::ImportDefinitions { path } => {
            let text = if path == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| format!("cannot read standard input: {e}"))?
            } else {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
            };
            let defs: Value = serde_json::from_str(&text)
                .map_err(|e| format!("invalid definitions in {path}: {e}"))?;
            if !out.silent {
                println!("Importing definitions in JSON from a file at \"{path}\" ...");
            }
            via.ok("POST", "/api/definitions", &[], Some(defs))?;
        }
        ApiCommand::Ping => {
            let n = node()?;
            if !out.silent {
                println!("Will ping {n}. This only checks if the broker answers.");
            }
            println!("Ping succeeded");
        }
        ApiCommand::CheckRunning => {
            let n = node()?;
            println!("RabbitMQ on node {n} is fully booted and running");
        }
        ApiCommand::CheckAlarms | ApiCommand::CheckLocalAlarms => {
            let path = if matches!(command, ApiCommand::CheckAlarms) {
                "alarms"
            } else {
                "local-alarms"
            };
            let (status, body) =
                via.request("GET", &format!("/api/health/checks/{path}"), &[], None)?;
            let n = node()?;
            let alarms: Vec<String> = body["alarms"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} on node {}", cell(&a["resource"]), cell(&a["node"])))
                .collect();
            check(
                out,
                status == 200,
                format!("Node {n} reported no alarms, local or clusterwide"),
                format!("Resource alarms in effect: {}", alarms.join("; ")),
                &body,
            )?;
        }
        ApiCommand::CheckPortListener { port } => {
            let (status, body) = via.request(
                "GET",
                &format!("/api/health/checks/port-listener/{port}"),
                &[],
                None,
            )?;
            let n = node()?;
            check(out, status == 200, format!("A listener for port {port} is running on node {n}."), format!("No listener for port {port} is active on node {n}. Found listeners that use the following ports: {}", body["ports"]), &body)?;
        }
        ApiCommand::CheckProtocolListener { protocol } => {
            let (status, body) = via.request(
                "GET",
                &format!("/api/health/checks/protocol-listener/{}", seg(protocol)),
                &[],
                None,
            )?;
            let n = node()?;
            check(out, status == 200, format!("A listener for protocol {protocol} is running on node {n}."), format!("No listener for protocol {protocol} is active on node {n}. Found listeners for the following protocols: {}", body["protocols"]), &body)?;
        }
        ApiCommand::CheckVirtualHosts => {
            let (status, body) =
                via.request("GET", "/api/health/checks/virtual-hosts", &[], None)?;
            let n = node()?;
            check(
                out,
                status == 200,
                format!("Node {n} reported all vhosts as running"),
                "Some virtual hosts are down".into(),
                &body,
            )?;
        }
        ApiCommand::Listeners => {
            let overview = via.ok("GET", "/api/overview", &[], None)?;
            let listeners = overview["listeners"].clone();
            if out.json {
                println!("{listeners}");
                return Ok(());
            }
            if !out.silent {
                println!(
                    "Asking node {} to report its protocol listeners ...",
                    cell(&overview["node"])
                );
            }
            for l in listeners.as_array().into_iter().flatten() {
                let protocol = cell(&l["protocol"]);
                let purpose = match protocol.as_str() {
                    "amqp" => "AMQP 0-9-1 and AMQP 1.0",
                    "amqp/ssl" => "AMQP 0-9-1 and AMQP 1.0 over TLS",
                    "http" => "HTTP API",
                    "https" => "HTTP API over TLS (HTTPS)",
                    _ => "",
                };
                println!(
                    "Interface: {}, port: {}, protocol: {protocol}, purpose: {purpose}",
                    cell(&l["ip_address"]),
                    cell(&l["port"])
                );
            }
        }
    }
    Ok(())
}

fn status(via: &Via<'_>, out: &Output) -> Result<(), CtlError> {
    let overview = via.ok("GET", "/api/overview", &[], None)?;
    let node = via.ok(
        "GET",
        &format!(
            "/api/nodes/{}",
            seg(overview["node"].as_str().unwrap_or(""))
        ),
        &[],
        None,
    )?;
    if out.json {
        println!("{}", json!({"overview": overview, "node": node}));
        return Ok(());
    }
    let mib = |v: &Value| {
        v.as_u64().map_or("unknown".to_string(), |b| {
            format!("{:.4} gb", b as f64 / 1e9)
        })
    };
    println!("Status of node {} ...", cell(&overview["node"]));
    println!(
        "Runtime\n\nOS PID: {}\nUptime (seconds): {}",
        cell(&node["os_pid"]),
        node["uptime"].as_u64().unwrap_or(0) / 1000
    );
    println!(
        "Product name: {}\nProduct version: {}\nRabbitMQ version: {}",
        cell(&overview["product_name"]),
        cell(&overview["product_version"]),
        cell(&overview["rabbitmq_version"])
    );
    println!("\nAlarms\n");
    match (
        node["mem_alarm"].as_bool(),
        node["disk_free_alarm"].as_bool(),
    ) {
        (Some(false), Some(false)) => println!("(none)"),
        (m, d) => {
            if m == Some(true) {
                println!("memory");
            }
            if d == Some(true) {
                println!("disk");
            }
        }
    }
    println!("\nMemory\n\nTotal memory used: {}\nCalculation strategy: rss\nMemory high watermark setting: {}", mib(&node["mem_used"]), mib(&node["mem_limit"]));
    println!(
        "\nFree Bytes\n\nDisk free: {}\nDisk free limit: {}",
        mib(&node["disk_free"]),
        mib(&node["disk_free_limit"])
    );
    println!(
        "\nFile Descriptors\n\nTotal: {}, limit: {}",
        cell(&node["fd_used"]),
        cell(&node["fd_total"])
    );
    println!("\nListeners\n");
    for l in overview["listeners"].as_array().into_iter().flatten() {
        println!(
            "Interface: {}, port: {}, protocol: {}",
            cell(&l["ip_address"]),
            cell(&l["port"]),
            cell(&l["protocol"])
        );
    }
    let totals = &overview["object_totals"];
    println!(
        "\nTotals\n\nConnection count: {}\nQueue count: {}\nVirtual host count: {}",
        cell(&totals["connections"]),
        cell(&totals["queues"]),
        via.ok("GET", "/api/vhosts", &[], None)?
            .as_array()
            .map_or(0, Vec::len)
    );
    Ok(())
}

//! `warren ctl`: administers a running broker through its control socket, with
//! rabbitmqctl's command names and argument order (policies, vhost limits, users and
//! permissions).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use warren::control::socket_path;

#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    #[command(subcommand)]
    pub command: CtlCommand,
    /// A remote broker's management API, `http://user:password@host:port` (the list,
    /// status, definitions and check verbs); without it ctl uses the local control socket.
    #[arg(long, global = true, env = "WARREN_CTL_URI")]
    pub uri: Option<String>,
    /// `json` for machine-readable output (rabbitmqctl's --formatter).
    #[arg(long, global = true)]
    pub formatter: Option<String>,
    /// No info line (rabbitmqctl's --quiet).
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,
    /// No info line and no table headers (rabbitmqctl's --silent).
    #[arg(short = 's', long = "silent", global = true)]
    pub silent: bool,
    #[arg(long = "no-table-headers", global = true)]
    pub no_table_headers: bool,
}

/// Why a ctl command failed, and the exit status to leave with.
#[derive(Debug)]
pub struct CtlError {
    pub message: String,
    pub exit: u8,
}

impl From<String> for CtlError {
    fn from(message: String) -> CtlError {
        CtlError { message, exit: 1 }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// Sets a policy: `set_policy [-p VHOST] [--priority N] [--apply-to queues|exchanges|all]
    /// NAME PATTERN DEFINITION-JSON`.
    #[command(name = "set_policy")]
    SetPolicy {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        #[arg(long = "apply-to", default_value = "all")]
        apply_to: String,
        name: String,
        pattern: String,
        definition: String,
    },
    /// Removes a policy.
    #[command(name = "clear_policy")]
    ClearPolicy {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        name: String,
    },
    /// Sets the memory alarm threshold: `set_vm_memory_high_watermark 0.4` (fraction of
    /// RAM) or `set_vm_memory_high_watermark absolute BYTES`.
    #[command(name = "set_vm_memory_high_watermark")]
    SetVmMemoryHighWatermark {
        /// A fraction, or the word `absolute` followed by bytes.
        values: Vec<String>,
    },
    /// Sets the disk alarm threshold in bytes of free space.
    #[command(name = "set_disk_free_limit")]
    SetDiskFreeLimit { bytes: u64 },
    /// Sets a vhost's limits: `set_vhost_limits [-p VHOST] '{"max-connections": N,
    /// "max-queues": N}'` (a negative value removes that limit).
    #[command(name = "set_vhost_limits")]
    SetVhostLimits {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        definition: String,
    },
    /// Removes every limit of a vhost.
    #[command(name = "clear_vhost_limits")]
    ClearVhostLimits {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// Shows a vhost's limits.
    #[command(name = "list_vhost_limits")]
    ListVhostLimits {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// Lists the policies of a vhost.
    #[command(name = "list_policies")]
    ListPolicies {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// Adds a user (no permissions yet): `add_user USER PASSWORD`.
    #[command(name = "add_user")]
    AddUser { user: String, password: String },
    /// Deletes a user, its permissions, and closes its connections.
    #[command(name = "delete_user")]
    DeleteUser { user: String },
    #[command(name = "change_password")]
    ChangePassword { user: String, password: String },
    /// Removes a user's password: it can then log in only by certificate.
    #[command(name = "clear_password")]
    ClearPassword { user: String },
    /// Checks a user name and password.
    #[command(name = "authenticate_user")]
    AuthenticateUser { user: String, password: String },
    /// Replaces a user's tags: `set_user_tags USER [TAG ...]`.
    #[command(name = "set_user_tags")]
    SetUserTags { user: String, tags: Vec<String> },
    #[command(name = "list_users")]
    ListUsers,
    /// `set_permissions [-p VHOST] USER CONFIGURE WRITE READ` (regular expressions).
    #[command(name = "set_permissions")]
    SetPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    #[command(name = "clear_permissions")]
    ClearPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
    },
    /// The permissions of every user in a vhost.
    #[command(name = "list_permissions")]
    ListPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// A user's permissions in every vhost.
    #[command(name = "list_user_permissions")]
    ListUserPermissions { user: String },
    /// `set_topic_permissions [-p VHOST] USER EXCHANGE WRITE READ` (expressions on routing
    /// keys; `{username}` and `{vhost}` are replaced).
    #[command(name = "set_topic_permissions")]
    SetTopicPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
        exchange: String,
        write: String,
        read: String,
    },
    /// `clear_topic_permissions [-p VHOST] USER [EXCHANGE]`.
    #[command(name = "clear_topic_permissions")]
    ClearTopicPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
        exchange: Option<String>,
    },
    #[command(name = "list_topic_permissions")]
    ListTopicPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    #[command(name = "list_user_topic_permissions")]
    ListUserTopicPermissions { user: String },
    /// `set_user_limits USER '{"max-connections": N, "max-channels": N}'` (negative: none).
    #[command(name = "set_user_limits")]
    SetUserLimits { user: String, definition: String },
    /// `clear_user_limits USER max-connections|max-channels|all`.
    #[command(name = "clear_user_limits")]
    ClearUserLimits { user: String, limit: String },
    /// `list_user_limits [--user USER]` (default: guest, as rabbitmqctl's current user).
    #[command(name = "list_user_limits")]
    ListUserLimits {
        #[arg(long, default_value = "guest")]
        user: String,
    },
    /// Rereads the TLS certificate, key and CA files (new connections use them).
    #[command(name = "reload_tls")]
    ReloadTls,
    /// `add_vhost [--description D] [--tags T1,T2] [--default-queue-type classic] VHOST`.
    #[command(name = "add_vhost")]
    AddVhost {
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        tags: Option<String>,
        #[arg(long = "default-queue-type")]
        default_queue_type: Option<String>,
        name: String,
    },
    /// Deletes a vhost and everything in it, and closes its connections.
    #[command(name = "delete_vhost")]
    DeleteVhost { name: String },
    /// `list_vhosts [COLUMN ...]`: name (the default), description, tags, default_queue_type.
    #[command(name = "list_vhosts")]
    ListVhosts { columns: Vec<String> },
    #[command(flatten)]
    Api(crate::ctl_api::ApiCommand),
}

/// Runs a ctl command; the error says what to print and the exit status.
pub fn run(args: &CtlArgs, data_dir: &Path) -> Result<(), CtlError> {
    let out = crate::ctl_api::Output {
        json: match args.formatter.as_deref() {
            None | Some("table") => false,
            Some("json") => true,
            Some(other) => {
                return Err(format!("unsupported formatter '{other}' (json or table)").into())
            }
        },
        silent: args.silent || args.quiet,
        no_headers: args.no_table_headers || args.silent,
    };
    if let CtlCommand::Api(command) = &args.command {
        return crate::ctl_api::run(command, data_dir, args.uri.as_deref(), &out);
    }
    if args.uri.is_some() {
        return Err("--uri works with the list, status, definitions and check verbs; this one needs the local control socket".to_string().into());
    }
    run_local(args, data_dir).map_err(CtlError::from)
}

fn run_local(args: &CtlArgs, data_dir: &Path) -> Result<(), String> {
    let request = match &args.command {
        CtlCommand::SetPolicy {
            vhost,
            priority,
            apply_to,
            name,
            pattern,
            definition,
        } => {
            let definition: Value = serde_json::from_str(definition)
                .map_err(|e| format!("the definition is not valid JSON: {e}"))?;
            json!({
                "cmd": "set_policy", "vhost": vhost, "name": name, "pattern": pattern,
                "definition": definition, "apply_to": apply_to, "priority": priority,
            })
        }
        CtlCommand::ClearPolicy { vhost, name } => {
            json!({ "cmd": "clear_policy", "vhost": vhost, "name": name })
        }
        CtlCommand::ListPolicies { vhost } => json!({ "cmd": "list_policies", "vhost": vhost }),
        CtlCommand::SetVhostLimits { vhost, definition } => {
            let definition: Value = serde_json::from_str(definition)
                .map_err(|e| format!("the definition is not valid JSON: {e}"))?;
            json!({ "cmd": "set_vhost_limits", "vhost": vhost, "definition": definition })
        }
        CtlCommand::ClearVhostLimits { vhost } => {
            json!({ "cmd": "clear_vhost_limits", "vhost": vhost })
        }
        CtlCommand::ListVhostLimits { vhost } => {
            json!({ "cmd": "list_vhost_limits", "vhost": vhost })
        }
        CtlCommand::SetVmMemoryHighWatermark { values } => {
            let bytes = match values.as_slice() {
                [fraction] => crate::settings::parse_watermark(fraction)?,
                [word, bytes] if word == "absolute" => crate::settings::parse_watermark(bytes)?,
                _ => {
                    return Err(
                        "usage: set_vm_memory_high_watermark FRACTION | absolute BYTES".into(),
                    )
                }
            };
            json!({ "cmd": "set_memory_high_watermark", "bytes": bytes })
        }
        CtlCommand::SetDiskFreeLimit { bytes } => {
            json!({ "cmd": "set_disk_free_limit", "bytes": bytes })
        }
        CtlCommand::AddUser { user, password } => {
            json!({ "cmd": "add_user", "user": user, "password": password })
        }
        CtlCommand::DeleteUser { user } => json!({ "cmd": "delete_user", "user": user }),
        CtlCommand::ChangePassword { user, password } => {
            json!({ "cmd": "change_password", "user": user, "password": password })
        }
        CtlCommand::ClearPassword { user } => json!({ "cmd": "clear_password", "user": user }),
        CtlCommand::AuthenticateUser { user, password } => {
            json!({ "cmd": "authenticate_user", "user": user, "password": password })
        }
        CtlCommand::SetUserTags { user, tags } => {
            json!({ "cmd": "set_user_tags", "user": user, "tags": tags })
        }
        CtlCommand::ListUsers => json!({ "cmd": "list_users" }),
        CtlCommand::SetPermissions {
            vhost,
            user,
            configure,
            write,
            read,
        } => json!({
            "cmd": "set_permissions", "vhost": vhost, "user": user,
            "configure": configure, "write": write, "read": read,
        }),
        CtlCommand::ClearPermissions { vhost, user } => {
            json!({ "cmd": "clear_permissions", "vhost": vhost, "user": user })
        }
        CtlCommand::ListPermissions { vhost } => {
            json!({ "cmd": "list_permissions", "vhost": vhost })
        }
        CtlCommand::ListUserPermissions { user } => {
            json!({ "cmd": "list_user_permissions", "user": user })
        }
        CtlCommand::AddVhost {
            description,
            tags,
            default_queue_type,
            name,
        } => json!({
            "cmd": "add_vhost", "name": name, "description": description,
            "tags": tags, "default_queue_type": default_queue_type,
        }),
        CtlCommand::SetTopicPermissions {
            vhost,
            user,
            exchange,
            write,
            read,
        } => json!({
            "cmd": "set_topic_permissions", "vhost": vhost, "user": user,
            "exchange": exchange, "write": write, "read": read,
        }),
        CtlCommand::ClearTopicPermissions {
            vhost,
            user,
            exchange,
        } => json!({
            "cmd": "clear_topic_permissions", "vhost": vhost, "user": user, "exchange": exchange,
        }),
        CtlCommand::ListTopicPermissions { vhost } => {
            json!({ "cmd": "list_topic_permissions", "vhost": vhost })
        }
        CtlCommand::ListUserTopicPermissions { user } => {
            json!({ "cmd": "list_user_topic_permissions", "user": user })
        }
        CtlCommand::SetUserLimits { user, definition } => {
            let definition: Value = serde_json::from_str(definition)
                .map_err(|e| format!("the definition is not valid JSON: {e}"))?;
            json!({ "cmd": "set_user_limits", "user": user, "definition": definition })
        }
        CtlCommand::ClearUserLimits { user, limit } => {
            json!({ "cmd": "clear_user_limits", "user": user, "limit": limit })
        }
        CtlCommand::ListUserLimits { user } => json!({ "cmd": "list_user_limits", "user": user }),
        CtlCommand::ReloadTls => json!({ "cmd": "reload_tls" }),
        CtlCommand::DeleteVhost { name } => json!({ "cmd": "delete_vhost", "name": name }),
        CtlCommand::ListVhosts { .. } => json!({ "cmd": "list_vhosts" }),
        CtlCommand::Api(_) => return Err("not a control-socket command".into()),
    };
    let reply = call(data_dir, &request)?;
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        let error = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(error.to_string());
    }
    if let Some(list) = reply.get("limits").and_then(Value::as_array) {
        println!("vhost\tlimits");
        for l in list {
            let vhost = l.get("vhost").and_then(Value::as_str).unwrap_or_default();
            let limits = l.get("limits").cloned().unwrap_or(Value::Null);
            println!("{vhost}\t{limits}");
        }
    }
    if matches!(args.command, CtlCommand::AuthenticateUser { .. }) {
        println!("Success");
    }
    if let Some(list) = reply.get("users").and_then(Value::as_array) {
        // rabbitmqctl's columns: tags as `[a, b]`.
        println!("user\ttags");
        for u in list {
            let name = u.get("user").and_then(Value::as_str).unwrap_or_default();
            let tags: Vec<&str> = u
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!("{name}\t[{}]", tags.join(", "));
        }
    }
    if let Some(list) = reply.get("permissions").and_then(Value::as_array) {
        let first = if matches!(args.command, CtlCommand::ListUserPermissions { .. }) {
            "vhost"
        } else {
            "user"
        };
        println!("{first}\tconfigure\twrite\tread");
        for p in list {
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
            println!(
                "{}\t{}\t{}\t{}",
                s(first),
                s("configure"),
                s("write"),
                s("read")
            );
        }
    }
    if let (Some(list), CtlCommand::ListVhosts { columns }) =
        (reply.get("vhosts").and_then(Value::as_array), &args.command)
    {
        print_vhosts(list, columns)?;
    }
    if let Some(limits) = reply.get("user_limits") {
        // rabbitmqctl prints the limits as compact JSON.
        println!("{limits}");
    }
    if let Some(list) = reply.get("topic_permissions").and_then(Value::as_array) {
        // RabbitMQ 3.10 prints list_user_topic_permissions without a header line.
        let first = if matches!(args.command, CtlCommand::ListUserTopicPermissions { .. }) {
            "vhost"
        } else {
            println!("user\texchange\twrite\tread");
            "user"
        };
        for t in list {
            let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or_default();
            println!(
                "{}\t{}\t{}\t{}",
                s(first),
                s("exchange"),
                s("write"),
                s("read")
            );
        }
    }
    if let Some(list) = reply.get("policies").and_then(Value::as_array) {
        println!("vhost\tname\tpattern\tapply-to\tdefinition\tpriority");
        for p in list {
            let s = |k: &str| {
                p.get(k)
                    .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
                    .unwrap_or_default()
            };
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                s("vhost"),
                s("name"),
                s("pattern"),
                s("apply_to"),
                s("definition"),
                s("priority")
            );
        }
    }
    Ok(())
}

/// rabbitmqctl's `list_vhosts` table: tags as `a,b`, or `[]` when there are none.
fn print_vhosts(list: &[Value], columns: &[String]) -> Result<(), String> {
    let columns: Vec<&str> = if columns.is_empty() {
        vec!["name"]
    } else {
        columns.iter().map(String::as_str).collect()
    };
    for c in &columns {
        if !["name", "description", "tags", "default_queue_type"].contains(c) {
            return Err(format!("unknown column '{c}'"));
        }
    }
    println!("{}", columns.join("\t"));
    for v in list {
        let cells: Vec<String> = columns
            .iter()
            .map(|&c| match (c, v.get(c)) {
                ("tags", Some(Value::Array(tags))) if tags.is_empty() => "[]".to_string(),
                ("tags", Some(Value::Array(tags))) => tags
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                ("default_queue_type", Some(Value::Null) | None) => "undefined".to_string(),
                (_, Some(Value::String(s))) => s.clone(),
                (_, other) => other.map(Value::to_string).unwrap_or_default(),
            })
            .collect();
        println!("{}", cells.join("\t"));
    }
    Ok(())
}

pub(crate) fn call(data_dir: &Path, request: &Value) -> Result<Value, String> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "cannot reach a running warren at {} ({e}); is it running with this --data-dir?",
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    writer
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer from warren: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("bad answer from warren: {e}"))
}

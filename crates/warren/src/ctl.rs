//! `warren ctl`: administers a running broker through its control socket, with
//! rabbitmqctl's command names and argument order (`set_policy`, `clear_policy`,
//! `list_policies`, `set_vhost_limits`, `clear_vhost_limits`, `list_vhost_limits`).

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
}

/// Runs a ctl command; the error is what to print.
pub fn run(args: &CtlArgs, data_dir: &Path) -> Result<(), String> {
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

fn call(data_dir: &Path, request: &Value) -> Result<Value, String> {
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

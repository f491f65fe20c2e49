//! RabbitMQ's definitions file (`definitions.json`): export of users, vhosts,
//! permissions, topic permissions, parameters, global parameters, policies, queues,
//! exchanges and bindings, and import of the same, whole-broker or for one vhost. Used by
//! the HTTP API (`/api/definitions`), `warren ctl export_definitions|import_definitions`
//! and `--load-definitions` at boot (which leaves existing objects as they are).
//!
//! What is exported, as RabbitMQ 3.10 does: durable, non-exclusive queues; durable
//! exchanges other than the default and `amq.*` ones; explicit bindings between exported
//! (or `amq.*`) objects.

use serde_json::{json, Value};
use warren_core::access::password::PasswordHash;
use warren_core::limits::VHostLimits;
use warren_core::persist::VHostMeta;
use warren_core::vhost::BindingView;
use warren_core::{Broker, Destination, ExchangeKind, ExchangeSpec, QueueSpec, VHost};

use crate::json::{json_to_table, table_to_json};
use crate::state::{PRODUCT_NAME, RABBITMQ_API_VERSION};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

fn err(msg: impl Into<String>) -> ImportError {
    ImportError(msg.into())
}

/// How an import treats objects that exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace them (the HTTP API and `import_definitions`, as RabbitMQ).
    Update,
    /// Leave them as they are (`--load-definitions` at boot, as RabbitMQ's
    /// `load_definitions`).
    Keep,
}

fn exported_queues(v: &VHost, with_vhost: bool) -> Vec<Value> {
    let mut queues: Vec<_> = v
        .queues()
        .into_iter()
        .filter(|q| q.spec.durable && q.spec.exclusive_owner.is_none())
        .collect();
    queues.sort_by(|a, b| a.name().cmp(b.name()));
    queues
        .iter()
        .map(|q| {
            let mut o = json!({
                "name": q.name(),
                "durable": q.spec.durable,
                "auto_delete": q.spec.auto_delete,
                "type": "classic",
                "arguments": table_to_json(&q.spec.arguments),
            });
            if with_vhost {
                o["vhost"] = json!(v.name);
            }
            o
        })
        .collect()
}

fn is_system_exchange(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

fn exported_exchanges(v: &VHost, with_vhost: bool) -> Vec<Value> {
    let mut xs: Vec<_> = v
        .exchanges()
        .into_iter()
        .filter(|x| x.spec.durable && !is_system_exchange(&x.spec.name))
        .collect();
    xs.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    xs.iter()
        .map(|x| {
            let mut o = json!({
                "name": x.spec.name,
                "type": x.spec.kind.as_str(),
                "durable": x.spec.durable,
                "auto_delete": x.spec.auto_delete,
                "internal": x.spec.internal,
                "arguments": table_to_json(&x.spec.arguments),
            });
            if with_vhost {
                o["vhost"] = json!(v.name);
            }
            o
        })
        .collect()
}

fn exported_bindings(v: &VHost, with_vhost: bool) -> Vec<Value> {
    let durable_queue = |name: &str| {
        v.find_queue(name)
            .is_some_and(|q| q.spec.durable && q.spec.exclusive_owner.is_none())
    };
    let durable_exchange = |name: &str| {
        name.starts_with("amq.") || v.exchange_view(name).is_some_and(|x| x.spec.durable)
    };
    let mut list: Vec<BindingView> = v
        .bindings(false)
        .into_iter()
        .filter(|b| durable_exchange(&b.source))
        .filter(|b| match &b.destination {
            Destination::Queue(q) => durable_queue(q),
            Destination::Exchange(x) => durable_exchange(x),
        })
        .collect();
    list.sort_by(|a, b| {
        (&a.source, a.destination.name(), &a.routing_key).cmp(&(
            &b.source,
            b.destination.name(),
            &b.routing_key,
        ))
    });
    list.iter()
        .map(|b| {
            let (dest, kind) = match &b.destination {
                Destination::Queue(q) => (q, "queue"),
                Destination::Exchange(x) => (x, "exchange"),
            };
            let mut o = json!({
                "source": b.source,
                "destination": dest,
                "destination_type": kind,
                "routing_key": b.routing_key,
                "arguments": table_to_json(&b.arguments),
            });
            if with_vhost {
                o["vhost"] = json!(v.name);
            }
            o
        })
        .collect()
}

fn exported_policies(v: &VHost, with_vhost: bool) -> Vec<Value> {
    let mut list = v.policies();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list.iter()
        .map(|p| {
            let mut o = json!({
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to.as_str(),
                "definition": table_to_json(&p.definition),
                "priority": p.priority,
            });
            if with_vhost {
                o["vhost"] = json!(v.name);
            }
            o
        })
        .collect()
}

fn exported_parameters(v: &VHost, with_vhost: bool) -> Vec<Value> {
    if v.limits().is_empty() {
        return Vec::new();
    }
    let mut o = json!({
        "component": "vhost-limits",
        "name": "limits",
        "value": table_to_json(&v.limits().to_definition()),
    });
    if with_vhost {
        o["vhost"] = json!(v.name);
    }
    vec![o]
}

/// The whole broker's definitions (RabbitMQ's "cluster" format).
pub fn export(broker: &Broker, product_version: &str) -> Value {
    let access = broker.access();
    let users: Vec<Value> = access
        .users()
        .iter()
        .map(|u| {
            let (hash, algorithm) = match &u.hash {
                Some(h) => (h.to_base64(), h.algorithm.name()),
                None => (String::new(), "rabbit_password_hashing_sha256"),
            };
            json!({
                "name": u.name,
                "password_hash": hash,
                "hashing_algorithm": algorithm,
                "tags": u.tags,
                "limits": table_to_json(&u.limits.to_definition()),
            })
        })
        .collect();
    let vhosts = broker.vhosts();
    let mut out = json!({
        "rabbit_version": RABBITMQ_API_VERSION,
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": product_version,
        "users": users,
        "vhosts": vhosts.iter().map(|v| {
            let meta = v.meta();
            json!({
                "name": v.name,
                "description": meta.description,
                "tags": meta.tags,
                "metadata": {"description": meta.description, "tags": meta.tags},
            })
        }).collect::<Vec<_>>(),
        "permissions": vhosts.iter().flat_map(|v| access.vhost_permissions(&v.name).into_iter().map(|(u, p)| json!({
            "user": u, "vhost": v.name,
            "configure": p.configure.source(), "write": p.write.source(), "read": p.read.source(),
        }))).collect::<Vec<_>>(),
        "topic_permissions": vhosts.iter().flat_map(|v| access.vhost_topic_permissions(&v.name).into_iter().map(|(u, t)| json!({
            "user": u, "vhost": v.name, "exchange": t.exchange,
            "write": t.write_source, "read": t.read_source,
        }))).collect::<Vec<_>>(),
        "parameters": vhosts.iter().flat_map(|v| exported_parameters(v, true)).collect::<Vec<_>>(),
        "global_parameters": broker.parameters().list().into_iter()
            .filter(|(n, _)| !n.starts_with("internal"))
            .map(|(n, text)| json!({"name": n, "value": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)}))
            .collect::<Vec<_>>(),
        "policies": vhosts.iter().flat_map(|v| exported_policies(v, true)).collect::<Vec<_>>(),
        "queues": vhosts.iter().flat_map(|v| exported_queues(v, true)).collect::<Vec<_>>(),
        "exchanges": vhosts.iter().flat_map(|v| exported_exchanges(v, true)).collect::<Vec<_>>(),
        "bindings": vhosts.iter().flat_map(|v| exported_bindings(v, true)).collect::<Vec<_>>(),
    });
    if let Some(name) = broker.parameters().get("cluster_name") {
        if let Ok(Value::String(n)) = serde_json::from_str::<Value>(&name) {
            out["original_cluster_name"] = json!(n);
        }
    }
    out
}

/// One vhost's definitions (RabbitMQ's single-vhost format: no `vhost` keys).
pub fn export_vhost(broker: &Broker, vhost: &str, product_version: &str) -> Option<Value> {
    let v = broker.vhost(vhost)?;
    let meta = v.meta();
    Some(json!({
        "rabbit_version": RABBITMQ_API_VERSION,
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": product_version,
        "rabbitmq_definition_format": "single_virtual_host",
        "original_vhost_name": vhost,
        "explanation": format!("Definitions of virtual host '{vhost}'"),
        "metadata": {"description": meta.description, "tags": meta.tags},
        "description": meta.description,
        "limits": table_to_json(&v.limits().to_definition()),
        "parameters": exported_parameters(&v, false),
        "policies": exported_policies(&v, false),
        "queues": exported_queues(&v, false),
        "exchanges": exported_exchanges(&v, false),
        "bindings": exported_bindings(&v, false),
    }))
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub applied: usize,
    /// Objects skipped: `amq.*` queues and exchanges, or existing ones kept.
    pub skipped: usize,
}

fn list<'a>(defs: &'a Value, key: &str) -> Result<&'a [Value], ImportError> {
    match defs.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(err(format!("'{key}' must be a list"))),
    }
}

fn text<'a>(item: &'a Value, key: &str, what: &str) -> Result<&'a str, ImportError> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{what}: '{key}' is missing or not a string")))
}

fn flag(item: &Value, key: &str, default: bool) -> bool {
    match item.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => default,
    }
}

fn tags_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Checks what can be checked before anything changes, so an import Warren cannot honour
/// fails whole: components and queue types it does not have.
fn precheck(defs: &Value) -> Result<(), ImportError> {
    if !defs.is_object() {
        return Err(err("definitions must be a JSON object"));
    }
    for p in list(defs, "parameters")? {
        let component = text(p, "component", "parameter")?;
        if component != "vhost-limits" {
            return Err(err(format!(
                "Validation failed\n\ncomponent {component} not found\n"
            )));
        }
    }
    for q in list(defs, "queues")? {
        let by_field = q.get("type").and_then(Value::as_str);
        let by_argument = q
            .get("arguments")
            .and_then(|a| a.get("x-queue-type"))
            .and_then(Value::as_str);
        if let Some(t) = by_field.or(by_argument).filter(|t| *t != "classic") {
            let name = q.get("name").and_then(Value::as_str).unwrap_or("");
            return Err(err(format!(
                "queue '{name}' is of type '{t}': this broker has classic queues only"
            )));
        }
    }
    Ok(())
}

/// Imports definitions: the whole-broker format, or one vhost's items into `into_vhost`.
pub fn import(
    broker: &Broker,
    defs: &Value,
    into_vhost: Option<&str>,
    existing: Existing,
) -> Result<ImportReport, ImportError> {
    precheck(defs)?;
    let mut report = ImportReport::default();
    let keep = existing == Existing::Keep;
    let vhost_of = |item: &Value, what: &str| -> Result<String, ImportError> {
        match into_vhost {
            Some(v) => Ok(v.to_string()),
            None => text(item, "vhost", what).map(str::to_string),
        }
    };
    let access = broker.access();
    if into_vhost.is_none() {
        for u in list(defs, "users")? {
            let name = text(u, "name", "user")?;
            if keep && access.user(name).is_some() {
                report.skipped += 1;
                continue;
            }
            let hash = match (
                u.get("password_hash").and_then(Value::as_str),
                u.get("password").and_then(Value::as_str),
            ) {
                (Some(""), _) => Some(None),
                (Some(h), _) => {
                    let algorithm = u
                        .get("hashing_algorithm")
                        .and_then(Value::as_str)
                        .unwrap_or("rabbit_password_hashing_sha256");
                    Some(Some(
                        PasswordHash::from_base64(algorithm, h)
                            .map_err(|e| err(format!("user '{name}': {e}")))?,
                    ))
                }
                (None, Some(p)) => Some(Some(PasswordHash::new(p))),
                (None, None) => None,
            };
            access
                .put_user(name, hash, tags_of(u.get("tags")))
                .map_err(|e| err(format!("user '{name}': {e}")))?;
            if let Some(limits) = u
                .get("limits")
                .and_then(json_to_table)
                .filter(|l| !l.is_empty())
            {
                let limits = warren_core::access::user_limits::UserLimits::from_definition(&limits)
                    .map_err(|e| err(format!("user '{name}': {e}")))?;
                access
                    .set_user_limits(name, limits)
                    .map_err(|e| err(format!("user '{name}': {e}")))?;
            }
            report.applied += 1;
        }
        for v in list(defs, "vhosts")? {
            let name = text(v, "name", "vhost")?;
            let metadata = v.get("metadata");
            let field = |k: &str| v.get(k).or_else(|| metadata.and_then(|m| m.get(k)));
            let meta = VHostMeta {
                description: field("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                tags: tags_of(field("tags")),
                default_queue_type: field("default_queue_type")
                    .and_then(Value::as_str)
                    .filter(|t| *t != "undefined")
                    .map(str::to_string),
            };
            if broker.vhost(name).is_some() {
                if keep {
                    report.skipped += 1;
                    continue;
                }
                broker.update_vhost(name, meta).map_err(|e| err(e.text))?;
            } else {
                broker.create_vhost(name, meta).map_err(|e| err(e.text))?;
            }
            if let Some(limits) = v
                .get("limits")
                .and_then(json_to_table)
                .filter(|l| !l.is_empty())
            {
                set_limits(broker, name, &limits)?;
            }
            report.applied += 1;
        }
        for p in list(defs, "permissions")? {
            let (user, vhost) = (
                text(p, "user", "permission")?,
                text(p, "vhost", "permission")?,
            );
            if keep && access.permissions(vhost, user).is_some() {
                report.skipped += 1;
                continue;
            }
            require_vhost(broker, vhost)?;
            access
                .set_permissions(
                    user,
                    vhost,
                    text(p, "configure", "permission")?,
                    text(p, "write", "permission")?,
                    text(p, "read", "permission")?,
                )
                .map_err(|e| err(format!("permissions of '{user}' in '{vhost}': {e}")))?;
            report.applied += 1;
        }
        for t in list(defs, "topic_permissions")? {
            let (user, vhost) = (
                text(t, "user", "topic permission")?,
                text(t, "vhost", "topic permission")?,
            );
            require_vhost(broker, vhost)?;
            access
                .set_topic_permissions(
                    user,
                    vhost,
                    text(t, "exchange", "topic permission")?,
                    text(t, "write", "topic permission")?,
                    text(t, "read", "topic permission")?,
                )
                .map_err(|e| err(format!("topic permissions of '{user}' in '{vhost}': {e}")))?;
            report.applied += 1;
        }
        for g in list(defs, "global_parameters")? {
            let name = text(g, "name", "global parameter")?;
            if name.starts_with("internal") || (keep && broker.parameters().get(name).is_some()) {
                report.skipped += 1;
                continue;
            }
            let value = g.get("value").cloned().unwrap_or(Value::Null);
            broker
                .parameters()
                .set(name, &value.to_string())
                .map_err(|e| err(e.text))?;
            report.applied += 1;
        }
    }
    for p in list(defs, "parameters")? {
        let vhost = vhost_of(p, "parameter")?;
        let value = p
            .get("value")
            .and_then(json_to_table)
            .ok_or_else(|| err("vhost-limits parameter: 'value' must be an object"))?;
        if keep && !require_vhost(broker, &vhost)?.limits().is_empty() {
            report.skipped += 1;
            continue;
        }
        set_limits(broker, &vhost, &value)?;
        report.applied += 1;
    }
    if let (Some(v), Some(limits)) = (into_vhost, defs.get("limits").and_then(json_to_table)) {
        if !limits.is_empty() {
            set_limits(broker, v, &limits)?;
        }
    }
    for p in list(defs, "policies")? {
        let vhost = vhost_of(p, "policy")?;
        let v = require_vhost(broker, &vhost)?;
        let name = text(p, "name", "policy")?;
        if keep && v.policies().iter().any(|x| x.name == name) {
            report.skipped += 1;
            continue;
        }
        let policy = crate::routes::policy_from_json(name, p)
            .map_err(|e| err(format!("policy '{name}' in '{vhost}': {}", e.reason)))?;
        v.set_policy(policy).map_err(|e| err(e.text))?;
        report.applied += 1;
    }
    for x in list(defs, "exchanges")? {
        let vhost = vhost_of(x, "exchange")?;
        let v = require_vhost(broker, &vhost)?;
        let name = text(x, "name", "exchange")?;
        if is_system_exchange(name) {
            tracing::warn!(exchange = name, vhost = %vhost, "definitions: system exchange skipped");
            report.skipped += 1;
            continue;
        }
        if keep && v.exchange_exists(name) {
            report.skipped += 1;
            continue;
        }
        let kind_name = text(x, "type", "exchange")?;
        let kind = ExchangeKind::parse(kind_name).ok_or_else(|| {
            err(format!(
                "exchange '{name}': unknown exchange type '{kind_name}'"
            ))
        })?;
        let spec = ExchangeSpec {
            name: name.to_string(),
            kind,
            durable: flag(x, "durable", true),
            auto_delete: flag(x, "auto_delete", false),
            internal: flag(x, "internal", false),
            arguments: x
                .get("arguments")
                .and_then(json_to_table)
                .unwrap_or_default(),
        };
        v.declare_exchange(spec, false)
            .map_err(|e| err(format!("exchange '{name}' in '{vhost}': {}", e.text)))?;
        report.applied += 1;
    }
    for q in list(defs, "queues")? {
        let vhost = vhost_of(q, "queue")?;
        let v = require_vhost(broker, &vhost)?;
        let name = text(q, "name", "queue")?;
        if name.starts_with("amq.") {
            tracing::warn!(queue = name, vhost = %vhost, "definitions: amq.* queue skipped");
            report.skipped += 1;
            continue;
        }
        if keep && v.find_queue(name).is_some() {
            report.skipped += 1;
            continue;
        }
        let spec = QueueSpec {
            name: name.to_string(),
            durable: flag(q, "durable", true),
            exclusive_owner: None,
            auto_delete: flag(q, "auto_delete", false),
            arguments: q
                .get("arguments")
                .and_then(json_to_table)
                .unwrap_or_default(),
        };
        v.declare_queue(spec, false, 0)
            .map_err(|e| err(format!("queue '{name}' in '{vhost}': {}", e.text)))?;
        report.applied += 1;
    }
    for b in list(defs, "bindings")? {
        let vhost = vhost_of(b, "binding")?;
        let v = require_vhost(broker, &vhost)?;
        let source = text(b, "source", "binding")?;
        let dest_name = text(b, "destination", "binding")?.to_string();
        let destination = match b.get("destination_type").and_then(Value::as_str) {
            Some("queue") => Destination::Queue(dest_name),
            Some("exchange") => Destination::Exchange(dest_name),
            other => return Err(err(format!("binding: unknown destination_type {other:?}"))),
        };
        let key = b.get("routing_key").and_then(Value::as_str).unwrap_or("");
        let arguments = b
            .get("arguments")
            .and_then(json_to_table)
            .unwrap_or_default();
        v.bind(source, destination, key, arguments, 0)
            .map_err(|e| err(format!("binding from '{source}' in '{vhost}': {}", e.text)))?;
        report.applied += 1;
    }
    Ok(report)
}

fn require_vhost(broker: &Broker, name: &str) -> Result<std::sync::Arc<VHost>, ImportError> {
    broker
        .vhost(name)
        .ok_or_else(|| err(format!("vhost '{name}' does not exist")))
}

fn set_limits(
    broker: &Broker,
    vhost: &str,
    limits: &warren_amqp::FieldTable,
) -> Result<(), ImportError> {
    let v = require_vhost(broker, vhost)?;
    let limits = VHostLimits::from_definition(limits)
        .map_err(|e| err(format!("limits of '{vhost}': {e}")))?;
    v.set_limits(limits).map_err(|e| err(e.text))
}

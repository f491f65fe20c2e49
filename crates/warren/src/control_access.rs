//! Control-socket commands for users, vhosts and permissions (rabbitmqctl's `add_user`,
//! `add_vhost`, `set_permissions`, ...), on the core's operations, which the management
//! API will share.

use serde_json::{json, Value};
use tracing::info;
use warren_core::Broker;

/// Runs `cmd` if it is an access command; `None` if it is not one.
pub fn execute(broker: &Broker, cmd: &str, request: &Value) -> Option<Result<Value, String>> {
    let text = |key: &str| {
        request
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let access = broker.access();
    let user = text("user");
    let done = |r: Result<(), warren_core::access::AccessError>| {
        r.map(|()| json!({})).map_err(|e| e.to_string())
    };
    let result = match cmd {
        "add_user" => {
            if user.is_empty() {
                return Some(Err("user cannot be an empty string".into()));
            }
            let r = access.add_user(&user, Some(&text("password")));
            if r.is_ok() {
                info!(%user, "user added");
            }
            done(r)
        }
        "delete_user" => {
            let r = access.delete_user(&user);
            if r.is_ok() {
                info!(%user, "user deleted");
                broker.close_user_connections(&user);
            }
            done(r)
        }
        "change_password" => done(access.change_password(&user, &text("password"))),
        "clear_password" => done(access.clear_password(&user)),
        "authenticate_user" => match access.authenticate(&user, &text("password"), true) {
            Ok(_) => Ok(json!({})),
            Err(why) => Err(format!(
                "Error: failed to authenticate user \"{user}\"\nuser '{user}' - {why}"
            )),
        },
        "set_user_tags" => {
            let tags = request
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            done(access.set_user_tags(&user, tags))
        }
        "list_users" => {
            let users: Vec<Value> = access
                .users()
                .iter()
                .map(|u| json!({ "user": u.name, "tags": u.tags }))
                .collect();
            Ok(json!({ "users": users }))
        }
        "set_permissions" | "clear_permissions" | "list_permissions" => {
            let vhost = request.get("vhost").and_then(Value::as_str).unwrap_or("/");
            if broker.vhost(vhost).is_none() {
                return Some(Err(format!("Virtual host {vhost} does not exist")));
            }
            match cmd {
                "set_permissions" => {
                    let r = access.set_permissions(
                        &user,
                        vhost,
                        &text("configure"),
                        &text("write"),
                        &text("read"),
                    );
                    if r.is_ok() {
                        info!(%user, vhost, "permissions set");
                    }
                    done(r)
                }
                "clear_permissions" => done(access.clear_permissions(&user, vhost)),
                _ => {
                    let list: Vec<Value> = access
                        .vhost_permissions(vhost)
                        .iter()
                        .map(|(u, p)| permission_json("user", u, p))
                        .collect();
                    Ok(json!({ "permissions": list }))
                }
            }
        }
        "add_vhost" => {
            let name = text("name");
            let meta = warren_core::persist::VHostMeta {
                description: text("description"),
                tags: request
                    .get("tags")
                    .and_then(Value::as_str)
                    .map(|t| {
                        t.split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                default_queue_type: request
                    .get("default_queue_type")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            let r = broker.create_vhost(&name, meta);
            if r.is_ok() {
                info!(vhost = %name, "vhost added");
            }
            r.map(|()| json!({})).map_err(|e| e.text)
        }
        "delete_vhost" => {
            let name = text("name");
            let r = broker.delete_vhost(&name);
            if r.is_ok() {
                info!(vhost = %name, "vhost deleted");
            }
            r.map(|()| json!({})).map_err(|e| e.text)
        }
        "list_vhosts" => {
            let list: Vec<Value> = broker
                .vhosts()
                .iter()
                .map(|v| {
                    let meta = v.meta();
                    json!({
                        "name": v.name,
                        "description": meta.description,
                        "tags": meta.tags,
                        "default_queue_type": meta.default_queue_type,
                    })
                })
                .collect();
            Ok(json!({ "vhosts": list }))
        }
        "set_topic_permissions" | "clear_topic_permissions" | "list_topic_permissions" => {
            let vhost = request.get("vhost").and_then(Value::as_str).unwrap_or("/");
            if broker.vhost(vhost).is_none() {
                return Some(Err(format!("Virtual host {vhost} does not exist")));
            }
            match cmd {
                "set_topic_permissions" => done(access.set_topic_permissions(
                    &user,
                    vhost,
                    &text("exchange"),
                    &text("write"),
                    &text("read"),
                )),
                "clear_topic_permissions" => {
                    let exchange = request.get("exchange").and_then(Value::as_str);
                    done(access.clear_topic_permissions(&user, vhost, exchange))
                }
                _ => {
                    let list: Vec<Value> = access
                        .vhost_topic_permissions(vhost)
                        .iter()
                        .map(|(u, t)| topic_json("user", u, t))
                        .collect();
                    Ok(json!({ "topic_permissions": list }))
                }
            }
        }
        "list_user_topic_permissions" => {
            if access.user(&user).is_none() {
                return Some(Err(format!("User \"{user}\" does not exist")));
            }
            let list: Vec<Value> = access
                .user_topic_permissions(&user)
                .iter()
                .map(|(v, t)| topic_json("vhost", v, t))
                .collect();
            Ok(json!({ "topic_permissions": list }))
        }
        "set_user_limits" | "clear_user_limits" | "list_user_limits" => {
            let Some(record) = access.user(&user) else {
                return Some(Err(format!("User \"{user}\" does not exist")));
            };
            let mut limits = record.limits;
            match cmd {
                "set_user_limits" => {
                    let definition = match request.get("definition") {
                        Some(Value::Object(map)) => crate::control::definition_table(map),
                        _ => Err("definition must be a JSON object".to_string()),
                    };
                    let parsed = definition.and_then(|d| {
                        warren_core::access::user_limits::UserLimits::from_definition(&d)
                    });
                    match parsed {
                        // Keys not given keep their value, as in RabbitMQ.
                        Ok(new) => {
                            let given = request.get("definition").and_then(Value::as_object);
                            let has = |k: &str| given.is_some_and(|g| g.contains_key(k));
                            if has("max-connections") {
                                limits.max_connections = new.max_connections;
                            }
                            if has("max-channels") {
                                limits.max_channels = new.max_channels;
                            }
                            done(access.set_user_limits(&user, limits))
                        }
                        Err(e) => Err(e),
                    }
                }
                "clear_user_limits" => {
                    match text("limit").as_str() {
                        "all" => limits = Default::default(),
                        "max-connections" => limits.max_connections = None,
                        "max-channels" => limits.max_channels = None,
                        other => return Some(Err(format!("unknown limit '{other}'"))),
                    }
                    done(access.set_user_limits(&user, limits))
                }
                _ => Ok(json!({
                    "user_limits": crate::control::definition_json(&limits.to_definition())
                })),
            }
        }
        "list_user_permissions" => {
            if access.user(&user).is_none() {
                return Some(Err(format!("User \"{user}\" does not exist")));
            }
            let list: Vec<Value> = access
                .user_permissions(&user)
                .iter()
                .map(|(v, p)| permission_json("vhost", v, p))
                .collect();
            Ok(json!({ "permissions": list }))
        }
        _ => return None,
    };
    Some(result)
}

fn permission_json(key: &str, name: &str, p: &warren_core::access::Permissions) -> Value {
    json!({
        key: name,
        "configure": p.configure.source(),
        "write": p.write.source(),
        "read": p.read.source(),
    })
}

fn topic_json(key: &str, name: &str, t: &warren_core::access::topics::TopicPermission) -> Value {
    json!({
        key: name,
        "exchange": t.exchange,
        "write": t.write_source,
        "read": t.read_source,
    })
}

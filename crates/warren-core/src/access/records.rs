//! Users and permissions in the definitions log: one record per user (kind `u`, key: name)
//! with its password hash and tags, one per user and vhost (kind `P`, key: vhost, user) with
//! the three permission expressions. Written ahead of every change, like every definition.

use warren_amqp::{FieldTable, FieldValue};

use super::password::PasswordHash;
use super::permissions::Permissions;
use super::scram::ScramKeys;
use super::topics::TopicPermission;
use super::UserRecord;
use crate::persist::{
    encoded, key, s, table, Persistence, KEY_PERMISSIONS, KEY_TOPIC_PERMISSIONS, KEY_USER,
};
use crate::storage::DefinitionChange;

pub(super) fn put_user(user: &UserRecord) -> DefinitionChange {
    let mut fields = vec![(
        "tags",
        FieldValue::Array(user.tags.iter().map(|t| s(t)).collect()),
    )];
    let limits = user.limits.to_definition();
    if !limits.is_empty() {
        fields.push(("limits", FieldValue::Table(limits)));
    }
    if let Some(hash) = &user.hash {
        fields.push(("password_hash", s(&hash.to_base64())));
        fields.push(("hashing_algorithm", s(hash.algorithm.name())));
        if let Some(keys) = hash.scram() {
            fields.push(("scram_sha256", s(&keys.to_text())));
        }
    }
    (
        key(KEY_USER, &[user.name.as_bytes()]),
        Some(encoded(table(fields))),
    )
}

pub(super) fn delete_user(name: &str) -> DefinitionChange {
    (key(KEY_USER, &[name.as_bytes()]), None)
}

pub(super) fn put_permissions(vhost: &str, user: &str, p: &Permissions) -> DefinitionChange {
    (
        key(KEY_PERMISSIONS, &[vhost.as_bytes(), user.as_bytes()]),
        Some(encoded(table(vec![
            ("configure", s(p.configure.source())),
            ("write", s(p.write.source())),
            ("read", s(p.read.source())),
        ]))),
    )
}

pub(super) fn delete_permissions(vhost: &str, user: &str) -> DefinitionChange {
    (
        key(KEY_PERMISSIONS, &[vhost.as_bytes(), user.as_bytes()]),
        None,
    )
}

pub(super) fn put_topic_permission(
    vhost: &str,
    user: &str,
    t: &TopicPermission,
) -> DefinitionChange {
    (
        key(
            KEY_TOPIC_PERMISSIONS,
            &[vhost.as_bytes(), user.as_bytes(), t.exchange.as_bytes()],
        ),
        Some(encoded(table(vec![
            ("write", s(&t.write_source)),
            ("read", s(&t.read_source)),
        ]))),
    )
}

pub(super) fn delete_topic_permission(vhost: &str, user: &str, exchange: &str) -> DefinitionChange {
    (
        key(
            KEY_TOPIC_PERMISSIONS,
            &[vhost.as_bytes(), user.as_bytes(), exchange.as_bytes()],
        ),
        None,
    )
}

/// What `load` returns: users, (vhost, user, permissions), (vhost, user, topic permission).
pub(super) type Saved = (
    Vec<UserRecord>,
    Vec<(String, String, Permissions)>,
    Vec<(String, String, TopicPermission)>,
);

fn text(t: &FieldTable, name: &str) -> Option<String> {
    match t.get(name)? {
        FieldValue::LongString(b) => String::from_utf8(b.to_vec()).ok(),
        other => other.as_str().map(str::to_string),
    }
}

/// The saved users, permissions and topic permissions.
pub(super) fn load(p: &Persistence) -> Saved {
    let mut users = Vec::new();
    for (parts, value) in p.records(KEY_USER) {
        let [name] = parts.as_slice() else { continue };
        let hash = match (
            text(&value, "hashing_algorithm"),
            text(&value, "password_hash"),
        ) {
            (Some(algorithm), Some(hash)) => match PasswordHash::from_base64(&algorithm, &hash) {
                Ok(h) => Some(
                    match text(&value, "scram_sha256").and_then(|t| ScramKeys::from_text(&t)) {
                        Some(keys) => h.with_scram(keys),
                        None => h,
                    },
                ),
                Err(e) => {
                    tracing::warn!(user = %name, error = %e, "saved password hash unreadable; the user cannot log in with a password");
                    None
                }
            },
            _ => None,
        };
        let tags = match value.get("tags") {
            Some(FieldValue::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    FieldValue::LongString(b) => String::from_utf8(b.to_vec()).ok(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let limits = value
            .get("limits")
            .and_then(FieldValue::as_table)
            .and_then(|t| super::user_limits::UserLimits::from_definition(t).ok())
            .unwrap_or_default();
        users.push(UserRecord {
            name: name.clone(),
            hash,
            tags,
            limits,
        });
    }
    let mut permissions = Vec::new();
    for (parts, value) in p.records(KEY_PERMISSIONS) {
        let [vhost, user] = parts.as_slice() else {
            continue;
        };
        let field = |n: &str| text(&value, n).unwrap_or_default();
        match Permissions::new(&field("configure"), &field("write"), &field("read")) {
            Ok(perms) => permissions.push((vhost.clone(), user.clone(), perms)),
            Err(e) => {
                tracing::warn!(%vhost, %user, error = %e, "saved permissions do not compile; skipped")
            }
        }
    }
    let mut topics = Vec::new();
    for (parts, value) in p.records(KEY_TOPIC_PERMISSIONS) {
        let [vhost, user, exchange] = parts.as_slice() else {
            continue;
        };
        let field = |n: &str| text(&value, n).unwrap_or_default();
        match TopicPermission::new(vhost, user, exchange, &field("write"), &field("read")) {
            Ok(t) => topics.push((vhost.clone(), user.clone(), t)),
            Err(e) => {
                tracing::warn!(%vhost, %user, %exchange, error = %e, "saved topic permissions do not compile; skipped")
            }
        }
    }
    (users, permissions, topics)
}

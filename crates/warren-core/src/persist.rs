//! The broker's link to its store: durable definitions (vhosts, durable exchanges and queues,
//! their bindings, policies) written ahead of every change as per-object records in the
//! store's definitions log, and recovery after a restart or crash (definitions first, then
//! each durable queue's log).
//!
//! One record per object, keyed by kind and name (length-prefixed parts, so any name is a
//! key), valued by an AMQP field table: the codec is already here and it is self-describing.
//! A change is one batch, appended and fdatasynced before the change is made in memory, so a
//! change that cannot be made durable fails (541) and leaves the broker as it was; declaring
//! one more queue among 10,000 writes one record. A data directory of the older layout (one
//! `metadata.bin` snapshot) is read once and moved into the log. (The export format for
//! operators, RabbitMQ's `definitions.json`, belongs to the management API.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use warren_amqp::{FieldTable, FieldValue};

use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::exchange::{Binding, Destination, ExchangeKind, ExchangeSpec};
use crate::limits::VHostLimits;
use crate::policy::{ApplyTo, Policy};
use crate::queue::QueueSpec;
use crate::storage::{DefinitionChange, MessageStore, QueueIndex, StorageError};

const SNAPSHOT_VERSION: i64 = 1;

/// Store access shared by the broker and its vhosts. Front ends see only what a publish
/// needs to know (the generation that covers it, when it is durable, how much is buffered),
/// never the store's own types.
pub struct Persistence {
    pub(crate) store: Arc<dyn MessageStore>,
    /// Ready bytes a queue keeps in memory before paging to the store.
    pub page_threshold: usize,
    next_queue_id: AtomicU64,
}

/// A durable queue as the snapshot records it.
pub struct SavedQueue {
    pub id: u64,
    pub spec: QueueSpec,
}

/// One binding as the snapshot records it.
pub struct SavedBinding {
    pub source: String,
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// A durable exchange as the snapshot records it.
pub struct SavedExchange {
    pub spec: ExchangeSpec,
    /// The log of held messages (durable delayed-message exchanges).
    pub delayed_log: Option<u64>,
}

/// What describes a vhost (RabbitMQ's `add_vhost --description --tags
/// --default-queue-type`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VHostMeta {
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
}

/// Everything durable in one vhost.
#[derive(Default)]
pub struct SavedVHost {
    pub name: String,
    pub meta: VHostMeta,
    pub exchanges: Vec<SavedExchange>,
    pub queues: Vec<SavedQueue>,
    pub bindings: Vec<SavedBinding>,
    pub policies: Vec<Policy>,
    pub limits: VHostLimits,
}

impl Persistence {
    pub fn new(store: Arc<dyn MessageStore>, page_threshold: usize) -> Arc<Persistence> {
        Arc::new(Persistence {
            store,
            page_threshold,
            next_queue_id: AtomicU64::new(1),
        })
    }

    /// Generation of everything written so far: a confirm for a publish whose message
    /// `needs_sync` waits until [`Persistence::synced`] reaches the value taken after it.
    pub fn generation(&self) -> u64 {
        self.store.generation()
    }

    /// Watch of the highest durable generation.
    pub fn synced(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.synced()
    }

    /// Asks for the next group commit to start now.
    pub fn request_sync(&self) {
        self.store.request_sync();
    }

    /// Makes everything written so far durable, blocking (tx.commit).
    pub fn sync_now(&self) -> Result<(), StorageError> {
        self.store.sync_now()
    }

    /// Free bytes on the store's disk, when the store can tell.
    pub fn disk_free_bytes(&self) -> Option<u64> {
        self.store.disk_free_bytes()
    }

    /// The store's file operations so far.
    pub fn io_stats(&self) -> crate::storage::IoStats {
        self.store.io_stats()
    }

    /// Message bytes the store holds in memory because they are not durable yet.
    pub fn buffered_bytes(&self) -> u64 {
        self.store.buffered_bytes()
    }

    /// A fresh log for a new durable queue.
    pub fn new_queue_log(&self) -> Result<Arc<dyn QueueIndex>, StorageError> {
        let id = self.next_queue_id.fetch_add(1, Ordering::Relaxed);
        self.store.queue_index(id)
    }

    pub(crate) fn note_queue_id(&self, id: u64) {
        self.next_queue_id.fetch_max(id + 1, Ordering::Relaxed);
    }

    /// Makes a batch of definition changes durable, before the caller makes them in memory.
    /// A failure is RabbitMQ's internal error (541), and nothing of the batch is applied.
    pub fn apply(&self, changes: Vec<DefinitionChange>) -> CoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.store.apply_definitions(changes).map_err(|e| {
            tracing::error!(error = %e, "cannot make a definition change durable; the change is refused");
            CoreError::new(
                ErrorKind::InternalError,
                format!("cannot make the change durable: {e}"),
            )
        })
    }

    /// The saved definitions. A directory of the older layout (`metadata.bin`) is moved
    /// into the definitions log on the way.
    pub fn load(&self) -> Result<Vec<SavedVHost>, String> {
        let entries = self.store.definitions();
        // An empty log with a metadata.bin beside it is a move from the older layout that
        // did not finish (every finished one leaves at least the vhost records).
        if !entries.is_empty() {
            let vhosts = decode_entries(entries);
            self.note_ids(&vhosts);
            return Ok(vhosts);
        }
        let Some(bytes) = self.store.legacy_definitions().map_err(|e| e.to_string())? else {
            return Ok(Vec::new());
        };
        let table = FieldTable::decode(&mut &bytes[..]).map_err(|e| e.to_string())?;
        let vhosts = decode_snapshot(&table)?;
        self.note_ids(&vhosts);
        let changes: Vec<DefinitionChange> = vhosts.iter().flat_map(full_state).collect();
        self.store
            .apply_definitions(changes)
            .and_then(|()| self.store.remove_legacy_definitions())
            .map_err(|e| format!("cannot move metadata.bin into the definitions log: {e}"))?;
        tracing::info!("definitions moved from metadata.bin into metadata.log");
        Ok(vhosts)
    }

    /// The records of one kind (`KEY_USER`, ...) as (key parts, value) pairs; a record that
    /// does not decode is skipped with a warning.
    pub(crate) fn records(&self, kind: u8) -> Vec<(Vec<String>, FieldTable)> {
        let mut out = Vec::new();
        for (k, v) in self.store.definitions() {
            let Some((found, parts)) = key_parts(&k) else {
                continue;
            };
            if found != kind {
                continue;
            }
            let parts: Option<Vec<String>> = parts
                .iter()
                .map(|p| std::str::from_utf8(p).ok().map(str::to_string))
                .collect();
            match (parts, FieldTable::decode(&mut &v[..])) {
                (Some(parts), Ok(value)) => out.push((parts, value)),
                _ => {
                    tracing::warn!(kind = %(kind as char), "undecodable definitions record skipped")
                }
            }
        }
        out
    }

    fn note_ids(&self, vhosts: &[SavedVHost]) {
        for v in vhosts {
            for q in &v.queues {
                self.note_queue_id(q.id);
            }
            for x in &v.exchanges {
                if let Some(id) = x.delayed_log {
                    self.note_queue_id(id);
                }
            }
        }
    }
}

// ----- keys and values of the definitions log -----

const KEY_VHOST: u8 = b'v';
const KEY_EXCHANGE: u8 = b'x';
const KEY_QUEUE: u8 = b'q';
const KEY_BINDING: u8 = b'b';
const KEY_POLICY: u8 = b'p';
const KEY_LIMITS: u8 = b'l';
/// Users and permissions, written by `access`: not part of any vhost's state.
pub(crate) const KEY_USER: u8 = b'u';
pub(crate) const KEY_PERMISSIONS: u8 = b'P';
pub(crate) const KEY_TOPIC_PERMISSIONS: u8 = b'T';
/// Global runtime parameters, written by `parameters`.
pub(crate) const KEY_GLOBAL_PARAMETER: u8 = b'G';

pub(crate) fn key(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![kind];
    for p in parts {
        k.extend_from_slice(&(p.len() as u32).to_le_bytes());
        k.extend_from_slice(p);
    }
    k
}

pub(crate) fn key_parts(k: &[u8]) -> Option<(u8, Vec<&[u8]>)> {
    let (&kind, mut rest) = k.split_first()?;
    let mut parts = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return None;
        }
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let body = rest.get(4..4 + n)?;
        parts.push(body);
        rest = &rest[4 + n..];
    }
    Some((kind, parts))
}

pub(crate) fn encoded(t: FieldValue) -> Vec<u8> {
    let mut out = BytesMut::new();
    if let FieldValue::Table(t) = t {
        t.encode(&mut out);
    }
    out.to_vec()
}

/// The record of a vhost, with its description.
pub fn put_vhost(vhost: &str, meta: &VHostMeta) -> DefinitionChange {
    let mut fields = vec![
        ("description", s(&meta.description)),
        (
            "tags",
            FieldValue::Array(meta.tags.iter().map(|t| s(t)).collect()),
        ),
    ];
    if let Some(t) = &meta.default_queue_type {
        fields.push(("default_queue_type", s(t)));
    }
    (
        key(KEY_VHOST, &[vhost.as_bytes()]),
        Some(encoded(table(fields))),
    )
}

pub fn delete_vhost(vhost: &str) -> DefinitionChange {
    (key(KEY_VHOST, &[vhost.as_bytes()]), None)
}

/// The record of a durable exchange.
pub fn put_exchange(vhost: &str, x: &SavedExchange) -> DefinitionChange {
    let k = key(KEY_EXCHANGE, &[vhost.as_bytes(), x.spec.name.as_bytes()]);
    (k, Some(encoded(exchange_value(x))))
}

pub fn delete_exchange(vhost: &str, name: &str) -> DefinitionChange {
    (
        key(KEY_EXCHANGE, &[vhost.as_bytes(), name.as_bytes()]),
        None,
    )
}

/// The record of a durable queue.
pub fn put_queue(vhost: &str, q: &SavedQueue) -> DefinitionChange {
    let k = key(KEY_QUEUE, &[vhost.as_bytes(), q.spec.name.as_bytes()]);
    (k, Some(encoded(queue_value(q))))
}

pub fn delete_queue(vhost: &str, name: &str) -> DefinitionChange {
    (key(KEY_QUEUE, &[vhost.as_bytes(), name.as_bytes()]), None)
}

fn binding_key(vhost: &str, source: &str, b: &Binding) -> Vec<u8> {
    let (kind, name): (&[u8], &str) = match &b.destination {
        Destination::Queue(n) => (b"q", n),
        Destination::Exchange(n) => (b"x", n),
    };
    let mut args = BytesMut::new();
    b.arguments.encode(&mut args);
    key(
        KEY_BINDING,
        &[
            vhost.as_bytes(),
            source.as_bytes(),
            kind,
            name.as_bytes(),
            b.routing_key.as_bytes(),
            &args,
        ],
    )
}

/// The record of a binding between two durable ends.
pub fn put_binding(vhost: &str, source: &str, b: &Binding) -> DefinitionChange {
    let saved = SavedBinding {
        source: source.to_string(),
        destination: b.destination.clone(),
        routing_key: b.routing_key.clone(),
        arguments: b.arguments.clone(),
    };
    (
        binding_key(vhost, source, b),
        Some(encoded(binding_value(&saved))),
    )
}

pub fn delete_binding(vhost: &str, source: &str, b: &Binding) -> DefinitionChange {
    (binding_key(vhost, source, b), None)
}

pub fn put_policy(vhost: &str, p: &Policy) -> DefinitionChange {
    let k = key(KEY_POLICY, &[vhost.as_bytes(), p.name.as_bytes()]);
    (k, Some(encoded(policy_value(p))))
}

pub fn delete_policy(vhost: &str, name: &str) -> DefinitionChange {
    (key(KEY_POLICY, &[vhost.as_bytes(), name.as_bytes()]), None)
}

/// A vhost's limits; no limits at all removes the record.
pub fn put_limits(vhost: &str, limits: &VHostLimits) -> DefinitionChange {
    let k = key(KEY_LIMITS, &[vhost.as_bytes()]);
    if limits.is_empty() {
        return (k, None);
    }
    (k, Some(encoded(FieldValue::Table(limits.to_definition()))))
}

/// Every record of one vhost's saved state.
fn full_state(v: &SavedVHost) -> Vec<DefinitionChange> {
    let mut out = vec![put_vhost(&v.name, &v.meta)];
    out.extend(v.exchanges.iter().map(|x| put_exchange(&v.name, x)));
    out.extend(v.queues.iter().map(|q| put_queue(&v.name, q)));
    out.extend(v.bindings.iter().map(|b| {
        let binding = Binding {
            destination: b.destination.clone(),
            routing_key: b.routing_key.clone(),
            arguments: b.arguments.clone(),
        };
        put_binding(&v.name, &b.source, &binding)
    }));
    out.extend(v.policies.iter().map(|p| put_policy(&v.name, p)));
    if !v.limits.is_empty() {
        out.push(put_limits(&v.name, &v.limits));
    }
    out
}

/// Groups the records of the definitions log back into vhosts (a record that does not
/// decode is skipped with a warning).
fn decode_entries(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<SavedVHost> {
    let mut by_vhost: std::collections::BTreeMap<String, FieldTable> = Default::default();
    let mut lists: std::collections::BTreeMap<String, [Vec<FieldValue>; 4]> = Default::default();
    let mut limits: std::collections::BTreeMap<String, FieldTable> = Default::default();
    let mut metas: std::collections::BTreeMap<String, FieldTable> = Default::default();
    for (k, v) in entries {
        let Some((kind, parts)) = key_parts(&k) else {
            tracing::warn!("undecodable definitions key skipped");
            continue;
        };
        if matches!(
            kind,
            KEY_USER | KEY_PERMISSIONS | KEY_TOPIC_PERMISSIONS | KEY_GLOBAL_PARAMETER
        ) {
            continue;
        }
        let Some(vhost) = parts.first().and_then(|p| std::str::from_utf8(p).ok()) else {
            continue;
        };
        let Ok(value) = FieldTable::decode(&mut &v[..]) else {
            tracing::warn!(vhost, "undecodable definitions record skipped");
            continue;
        };
        by_vhost.entry(vhost.to_string()).or_default();
        let slot = match kind {
            KEY_VHOST => {
                metas.insert(vhost.to_string(), value);
                continue;
            }
            KEY_EXCHANGE => 0,
            KEY_QUEUE => 1,
            KEY_BINDING => 2,
            KEY_POLICY => 3,
            KEY_LIMITS => {
                limits.insert(vhost.to_string(), value);
                continue;
            }
            _ => continue,
        };
        lists.entry(vhost.to_string()).or_default()[slot].push(FieldValue::Table(value));
    }
    let mut root = FieldTable::default();
    root.insert("version", FieldValue::I64(SNAPSHOT_VERSION));
    let vhosts: Vec<FieldValue> = by_vhost
        .into_keys()
        .map(|name| {
            let [x, q, b, p] = lists.remove(&name).unwrap_or_default();
            let l = limits.remove(&name).unwrap_or_default();
            let m = metas.remove(&name).unwrap_or_default();
            table(vec![
                ("meta", FieldValue::Table(m)),
                ("limits", FieldValue::Table(l)),
                ("name", s(&name)),
                ("exchanges", FieldValue::Array(x)),
                ("queues", FieldValue::Array(q)),
                ("bindings", FieldValue::Array(b)),
                ("policies", FieldValue::Array(p)),
            ])
        })
        .collect();
    root.insert("vhosts", FieldValue::Array(vhosts));
    decode_snapshot(&root).unwrap_or_default()
}

pub(crate) fn s(v: &str) -> FieldValue {
    FieldValue::LongString(bytes::Bytes::copy_from_slice(v.as_bytes()))
}

pub(crate) fn table(pairs: Vec<(&str, FieldValue)>) -> FieldValue {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(k, v);
    }
    FieldValue::Table(t)
}

fn exchange_value(sx: &SavedExchange) -> FieldValue {
    let x = &sx.spec;
    let mut fields = vec![
        ("name", s(&x.name)),
        ("type", s(x.kind.as_str())),
        ("auto_delete", FieldValue::Bool(x.auto_delete)),
        ("internal", FieldValue::Bool(x.internal)),
        ("arguments", FieldValue::Table(x.arguments.clone())),
    ];
    if let Some(id) = sx.delayed_log {
        fields.push(("delayed_log", FieldValue::I64(id as i64)));
    }
    table(fields)
}

fn queue_value(q: &SavedQueue) -> FieldValue {
    table(vec![
        ("name", s(&q.spec.name)),
        ("id", FieldValue::I64(q.id as i64)),
        ("auto_delete", FieldValue::Bool(q.spec.auto_delete)),
        ("arguments", FieldValue::Table(q.spec.arguments.clone())),
    ])
}

fn binding_value(b: &SavedBinding) -> FieldValue {
    let (kind, name) = match &b.destination {
        Destination::Queue(n) => ("queue", n),
        Destination::Exchange(n) => ("exchange", n),
    };
    table(vec![
        ("source", s(&b.source)),
        ("destination", s(name)),
        ("destination_type", s(kind)),
        ("routing_key", s(&b.routing_key)),
        ("arguments", FieldValue::Table(b.arguments.clone())),
    ])
}

fn policy_value(p: &Policy) -> FieldValue {
    table(vec![
        ("name", s(&p.name)),
        ("pattern", s(&p.pattern)),
        ("apply_to", s(p.apply_to.as_str())),
        ("priority", FieldValue::I64(i64::from(p.priority))),
        ("definition", FieldValue::Table(p.definition.clone())),
    ])
}

fn decode_snapshot(root: &FieldTable) -> Result<Vec<SavedVHost>, String> {
    let version = root.get("version").and_then(FieldValue::as_i64);
    if version != Some(SNAPSHOT_VERSION) {
        return Err(format!("unknown metadata version {version:?}"));
    }
    let list = |t: &FieldTable, key: &str| -> Vec<FieldTable> {
        match t.get(key) {
            Some(FieldValue::Array(items)) => {
                items.iter().filter_map(|i| i.as_table().cloned()).collect()
            }
            _ => Vec::new(),
        }
    };
    let text = |t: &FieldTable, key: &str| -> String {
        t.get(key)
            .and_then(FieldValue::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let flag =
        |t: &FieldTable, key: &str| t.get(key).and_then(FieldValue::as_bool).unwrap_or(false);
    let args = |t: &FieldTable| {
        t.get("arguments")
            .and_then(FieldValue::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for v in list(root, "vhosts") {
        let mut saved = SavedVHost {
            name: text(&v, "name"),
            ..Default::default()
        };
        if let Some(m) = v.get("meta").and_then(FieldValue::as_table) {
            saved.meta = VHostMeta {
                description: text(m, "description"),
                tags: list_of_text(m, "tags"),
                default_queue_type: m
                    .get("default_queue_type")
                    .and_then(FieldValue::as_str)
                    .map(str::to_string),
            };
        }
        if let Some(l) = v.get("limits").and_then(FieldValue::as_table) {
            match VHostLimits::from_definition(l) {
                Ok(l) => saved.limits = l,
                Err(e) => tracing::warn!(vhost = %saved.name, error = %e, "saved limits skipped"),
            }
        }
        for x in list(&v, "exchanges") {
            let Some(kind) = ExchangeKind::parse(&text(&x, "type")) else {
                continue;
            };
            saved.exchanges.push(SavedExchange {
                spec: ExchangeSpec {
                    name: text(&x, "name"),
                    kind,
                    durable: true,
                    auto_delete: flag(&x, "auto_delete"),
                    internal: flag(&x, "internal"),
                    arguments: args(&x),
                },
                delayed_log: x
                    .get("delayed_log")
                    .and_then(FieldValue::as_i64)
                    .and_then(|i| u64::try_from(i).ok()),
            });
        }
        for q in list(&v, "queues") {
            let id = q
                .get("id")
                .and_then(FieldValue::as_i64)
                .and_then(|i| u64::try_from(i).ok());
            let Some(id) = id else { continue };
            saved.queues.push(SavedQueue {
                id,
                spec: QueueSpec {
                    name: text(&q, "name"),
                    durable: true,
                    exclusive_owner: None,
                    auto_delete: flag(&q, "auto_delete"),
                    arguments: args(&q),
                },
            });
        }
        for b in list(&v, "bindings") {
            let name = text(&b, "destination");
            let destination = if text(&b, "destination_type") == "exchange" {
                Destination::Exchange(name)
            } else {
                Destination::Queue(name)
            };
            saved.bindings.push(SavedBinding {
                source: text(&b, "source"),
                destination,
                routing_key: text(&b, "routing_key"),
                arguments: args(&b),
            });
        }
        for p in list(&v, "policies") {
            let definition = p
                .get("definition")
                .and_then(FieldValue::as_table)
                .cloned()
                .unwrap_or_default();
            let apply_to = ApplyTo::parse(&text(&p, "apply_to")).unwrap_or(ApplyTo::All);
            let priority = p.get("priority").and_then(FieldValue::as_i64).unwrap_or(0);
            match Policy::new(
                &text(&p, "name"),
                &text(&p, "pattern"),
                definition,
                apply_to,
                priority as i32,
            ) {
                Ok(policy) => saved.policies.push(policy),
                Err(e) => tracing::warn!(error = %e.text, "saved policy no longer valid; skipped"),
            }
        }
        out.push(saved);
    }
    Ok(out)
}

fn list_of_text(t: &FieldTable, key: &str) -> Vec<String> {
    match t.get(key) {
        Some(FieldValue::Array(items)) => items
            .iter()
            .filter_map(FieldValue::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

//! The broker's link to its store: durable metadata (vhosts, durable exchanges and queues,
//! their bindings, policies) saved as one atomically replaced snapshot on every change, and
//! recovery after a restart or crash (metadata first, then each durable queue's log).
//!
//! The snapshot is encoded as an AMQP field table: the codec is already here, it is
//! self-describing and versioned by a `version` key, and it never needs a schema migration
//! tool to read. (The export format for operators, RabbitMQ's `definitions.json`, belongs to
//! the management API.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::BytesMut;
use parking_lot::Mutex;
use warren_amqp::{FieldTable, FieldValue};
use warren_store::{QueueLog, Store, StoreError};

use crate::broker::Broker;
use crate::exchange::{Destination, ExchangeKind, ExchangeSpec};
use crate::policy::{ApplyTo, Policy};
use crate::queue::QueueSpec;

const SNAPSHOT_VERSION: i64 = 1;

/// Store access shared by the broker and its vhosts.
pub struct Persistence {
    pub store: Store,
    /// Ready bytes a queue keeps in memory before paging to the store.
    pub page_threshold: usize,
    next_queue_id: AtomicU64,
    broker: OnceLock<Weak<Broker>>,
    /// Serialises saves, so the last one written is the latest state.
    save_lock: Mutex<()>,
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

/// Everything durable in one vhost.
#[derive(Default)]
pub struct SavedVHost {
    pub name: String,
    pub exchanges: Vec<SavedExchange>,
    pub queues: Vec<SavedQueue>,
    pub bindings: Vec<SavedBinding>,
    pub policies: Vec<Policy>,
}

impl Persistence {
    pub fn new(store: Store, page_threshold: usize) -> Arc<Persistence> {
        Arc::new(Persistence {
            store,
            page_threshold,
            next_queue_id: AtomicU64::new(1),
            broker: OnceLock::new(),
            save_lock: Mutex::new(()),
        })
    }

    pub(crate) fn attach(&self, broker: Weak<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// A fresh log for a new durable queue.
    pub fn new_queue_log(&self) -> Result<QueueLog, StoreError> {
        let id = self.next_queue_id.fetch_add(1, Ordering::Relaxed);
        self.store.queue_log(id)
    }

    pub(crate) fn note_queue_id(&self, id: u64) {
        self.next_queue_id.fetch_max(id + 1, Ordering::Relaxed);
    }

    /// Saves the durable metadata of the whole broker now (synchronous, fsynced).
    pub fn save(&self) {
        let Some(broker) = self.broker.get().and_then(Weak::upgrade) else {
            return;
        };
        let _guard = self.save_lock.lock();
        let snapshot = encode_snapshot(
            &broker.durable_snapshot(),
            self.next_queue_id.load(Ordering::Relaxed),
        );
        if let Err(e) = self.store.save_metadata(&snapshot) {
            tracing::error!(error = %e, "cannot save durable metadata");
        }
    }

    /// The saved metadata, if any.
    pub fn load(&self) -> Result<Vec<SavedVHost>, String> {
        let Some(bytes) = self.store.load_metadata().map_err(|e| e.to_string())? else {
            return Ok(Vec::new());
        };
        let table = FieldTable::decode(&mut &bytes[..]).map_err(|e| e.to_string())?;
        if let Some(next) = table.get("next_queue_id").and_then(FieldValue::as_i64) {
            self.note_queue_id(u64::try_from(next).unwrap_or(1).saturating_sub(1));
        }
        decode_snapshot(&table)
    }
}

fn s(v: &str) -> FieldValue {
    FieldValue::LongString(bytes::Bytes::copy_from_slice(v.as_bytes()))
}

fn table(pairs: Vec<(&str, FieldValue)>) -> FieldValue {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(k, v);
    }
    FieldValue::Table(t)
}

fn encode_snapshot(vhosts: &[SavedVHost], next_queue_id: u64) -> Vec<u8> {
    let vhosts: Vec<FieldValue> = vhosts
        .iter()
        .map(|v| {
            let exchanges = v
                .exchanges
                .iter()
                .map(|sx| {
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
                })
                .collect();
            let queues = v
                .queues
                .iter()
                .map(|q| {
                    table(vec![
                        ("name", s(&q.spec.name)),
                        ("id", FieldValue::I64(q.id as i64)),
                        ("auto_delete", FieldValue::Bool(q.spec.auto_delete)),
                        ("arguments", FieldValue::Table(q.spec.arguments.clone())),
                    ])
                })
                .collect();
            let bindings = v
                .bindings
                .iter()
                .map(|b| {
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
                })
                .collect();
            let policies = v
                .policies
                .iter()
                .map(|p| {
                    table(vec![
                        ("name", s(&p.name)),
                        ("pattern", s(&p.pattern)),
                        ("apply_to", s(p.apply_to.as_str())),
                        ("priority", FieldValue::I64(i64::from(p.priority))),
                        ("definition", FieldValue::Table(p.definition.clone())),
                    ])
                })
                .collect();
            table(vec![
                ("name", s(&v.name)),
                ("exchanges", FieldValue::Array(exchanges)),
                ("queues", FieldValue::Array(queues)),
                ("bindings", FieldValue::Array(bindings)),
                ("policies", FieldValue::Array(policies)),
            ])
        })
        .collect();
    let mut root = FieldTable::default();
    root.insert("version", FieldValue::I64(SNAPSHOT_VERSION));
    root.insert("next_queue_id", FieldValue::I64(next_queue_id as i64));
    root.insert("vhosts", FieldValue::Array(vhosts));
    let mut out = BytesMut::new();
    root.encode(&mut out);
    out.to_vec()
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

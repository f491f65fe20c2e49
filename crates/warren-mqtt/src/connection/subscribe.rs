//! SUBSCRIBE and UNSUBSCRIBE: each subscription is a binding of `amq.topic` to one of the
//! session's queues (QoS 0 subscriptions to `…qos0`, QoS 1 and 2 to `…qos1`, as RabbitMQ
//! names them), with the MQTT filter and options in the binding's arguments so that a
//! resumed session, even after a restart, knows them again. A shared subscription
//! (`$share/group/filter`) is a queue of its group's, consumed by every member. Retained
//! messages follow the SUBACK.

use warren_amqp::{FieldTable, FieldValue};
use warren_core::access::{Perm, ResourceKind};
use warren_core::vhost::BindingView;
use warren_core::{Destination, QueueSpec};

use super::connect::own_queue_name;
use super::*;
use crate::codec::Publish;
use crate::topic;

const FILTER_ARG: &str = "x-mqtt-filter";
const QOS_ARG: &str = "x-mqtt-qos";
const NO_LOCAL_ARG: &str = "x-mqtt-no-local";
const RAP_ARG: &str = "x-mqtt-retain-as-published";
const RH_ARG: &str = "x-mqtt-retain-handling";
const ID_ARG: &str = "x-mqtt-subscription-id";
/// A shared subscription's binding names its group and its member (the client id): each
/// member binds the group's queue on its own, so one member leaving leaves the others'
/// bindings, and a resumed session finds its memberships again.
const GROUP_ARG: &str = "x-mqtt-share-group";
const MEMBER_ARG: &str = "x-mqtt-share-member";

fn text(s: &str) -> FieldValue {
    FieldValue::LongString(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn binding_args(
    filter: &str,
    opts: SubOptions,
    id: Option<u32>,
    share: Option<(&str, &str)>,
) -> FieldTable {
    let mut t = FieldTable::new();
    t.insert(FILTER_ARG, text(filter));
    if let Some((group, member)) = share {
        t.insert(GROUP_ARG, text(group));
        t.insert(MEMBER_ARG, text(member));
    }
    t.insert(QOS_ARG, FieldValue::I8(opts.qos as i8));
    if opts.no_local {
        t.insert(NO_LOCAL_ARG, FieldValue::Bool(true));
    }
    if opts.retain_as_published {
        t.insert(RAP_ARG, FieldValue::Bool(true));
    }
    if opts.retain_handling != 0 {
        t.insert(RH_ARG, FieldValue::I8(opts.retain_handling as i8));
    }
    if let Some(id) = id {
        t.insert(ID_ARG, FieldValue::I64(id as i64));
    }
    t
}

/// Whether a binding is `client_id`'s membership of a share group (and which group).
pub(crate) fn share_membership(b: &BindingView, client_id: &str) -> Option<String> {
    let arg = |k: &str| match b.arguments.get(k)? {
        FieldValue::LongString(v) => std::str::from_utf8(v).ok().map(str::to_string),
        _ => None,
    };
    (arg(MEMBER_ARG)? == client_id)
        .then(|| arg(GROUP_ARG))
        .flatten()
}

/// The subscription a binding of a resumed session's queue records.
pub(crate) fn sub_from_binding(b: &BindingView, queue: Option<Arc<Queue>>) -> Option<Sub> {
    let queue = queue?;
    let filter = match b.arguments.get(FILTER_ARG)? {
        FieldValue::LongString(f) => std::str::from_utf8(f).ok()?.to_string(),
        _ => return None,
    };
    let group = match b.arguments.get(GROUP_ARG) {
        Some(FieldValue::LongString(g)) => Some(std::str::from_utf8(g).ok()?.to_string()),
        _ => None,
    };
    let int = |k: &str| match b.arguments.get(k) {
        Some(FieldValue::I8(v)) => Some(*v as i64),
        Some(FieldValue::I64(v)) => Some(*v),
        _ => None,
    };
    let flag = |k: &str| matches!(b.arguments.get(k), Some(FieldValue::Bool(true)));
    Some(Sub {
        opts: SubOptions {
            qos: int(QOS_ARG).unwrap_or(0).clamp(0, 2) as u8,
            no_local: flag(NO_LOCAL_ARG),
            retain_as_published: flag(RAP_ARG),
            retain_handling: int(RH_ARG).unwrap_or(0).clamp(0, 2) as u8,
        },
        id: int(ID_ARG).map(|v| v as u32),
        group,
        queue,
        args: b.arguments.clone(),
        binding_key: b.routing_key.clone(),
        filter,
    })
}

/// The queue of a share group's subscription to a filter. A group name has no `/`, so
/// `/` after it keeps (`a-b`, `c`) and (`a`, `b-c`) apart.
pub(crate) fn shared_queue_name(group: &str, filter: &str) -> String {
    format!(
        "mqtt-shared-{group}/{}",
        topic::filter_to_binding_key(filter)
    )
}

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    pub(super) fn on_subscribe(
        &mut self,
        pid: u16,
        props: Properties,
        filters: Vec<(String, SubOptions)>,
    ) -> Result<(), End> {
        if props.subscription_ids.len() > 1 {
            return Err(End::Violation(
                reason::PROTOCOL_ERROR,
                "more than one subscription identifier".into(),
            ));
        }
        if filters
            .iter()
            .any(|(f, o)| o.no_local && f.starts_with("$share/"))
        {
            // Section 3.8.3.1: a Protocol Error, which closes the connection.
            return Err(End::Violation(
                reason::PROTOCOL_ERROR,
                "no local on a shared subscription".into(),
            ));
        }
        let id = props.subscription_ids.first().copied();
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained: Vec<(SubOptions, String)> = Vec::new();
        for (full, opts) in filters {
            match self.subscribe_one(&full, opts, id) {
                Ok(is_new) => {
                    codes.push(opts.qos);
                    let shared = full.starts_with("$share/");
                    let send = match opts.retain_handling {
                        0 => true,
                        1 => is_new,
                        _ => false,
                    };
                    if send && !shared {
                        retained.push((opts, full));
                    }
                }
                Err((code, why)) => {
                    info!(client_id = %self.client_id, filter = %full, reason = %why, "MQTT subscription refused");
                    codes.push(if self.v5 { code } else { 0x80 });
                }
            }
        }
        self.send(&Packet::SubAck {
            pid,
            props: Properties::default(),
            codes,
        });
        for (opts, filter) in retained {
            self.send_retained(&filter, opts, id);
        }
        Ok(())
    }

    /// One filter of a SUBSCRIBE; answers whether the subscription is new.
    fn subscribe_one(
        &mut self,
        full: &str,
        opts: SubOptions,
        id: Option<u32>,
    ) -> Result<bool, (u8, String)> {
        let (group, filter) = topic::parse_shared(full)
            .map_err(|e| (reason::TOPIC_FILTER_INVALID, e.0.to_string()))?;
        topic::validate_filter(filter)
            .map_err(|e| (reason::TOPIC_FILTER_INVALID, e.0.to_string()))?;
        let existing = self.subs.contains_key(full);
        if !existing && self.subs.len() >= self.mqtt.config.max_subscriptions {
            return Err((
                reason::QUOTA_EXCEEDED,
                format!(
                    "at most {} subscriptions per session",
                    self.mqtt.config.max_subscriptions
                ),
            ));
        }
        let binding_key = topic::filter_to_binding_key(filter);
        let exchange = self.mqtt.config.exchange.clone();
        let access = self.mqtt.broker.access();
        let refused = |e: warren_core::CoreError| (reason::NOT_AUTHORIZED, e.text);
        access
            .check(
                &self.user,
                &self.vhost.name,
                Perm::Read,
                ResourceKind::Exchange,
                &exchange,
            )
            .map_err(refused)?;
        access
            .check_topic(
                &self.user,
                &self.vhost.name,
                &exchange,
                &binding_key,
                Perm::Read,
            )
            .map_err(refused)?;
        let queue = match group {
            None => self.own_queue(if opts.qos == 0 { 0 } else { 1 })?,
            Some(g) => self.shared_queue(g, filter, opts.qos)?,
        };
        let args = binding_args(
            filter,
            opts,
            id,
            group.map(|g| (g, self.client_id.as_str())),
        );
        if let Some(old) = self.subs.remove(full) {
            if Arc::ptr_eq(&old.queue, &queue) {
                // The same queue: only the binding's options change; its consumer (a
                // share group's, or the session's own) and its messages stay.
                self.unbind_binding(&old);
            } else {
                self.unbind(&old);
            }
        }
        self.vhost
            .bind(
                &exchange,
                Destination::Queue(queue.name().to_string()),
                &binding_key,
                args.clone(),
                self.id,
            )
            .map_err(|e| (reason::UNSPECIFIED_ERROR, e.text))?;
        self.subs.insert(
            full.to_string(),
            Sub {
                filter: filter.to_string(),
                opts,
                id,
                group: group.map(str::to_string),
                queue,
                args,
                binding_key,
            },
        );
        Ok(!existing)
    }

    /// What declaring, binding and consuming from one of the session's queues takes:
    /// configure, write and read on it, as for an AMQP client doing the same.
    fn check_queue_access(&self, name: &str) -> Result<(), (u8, String)> {
        let access = self.mqtt.broker.access();
        for perm in [Perm::Configure, Perm::Write, Perm::Read] {
            access
                .check(
                    &self.user,
                    &self.vhost.name,
                    perm,
                    ResourceKind::Queue,
                    name,
                )
                .map_err(|e| (reason::NOT_AUTHORIZED, e.text))?;
        }
        Ok(())
    }

    /// The session's queue for QoS 0 (`class` 0) or QoS 1/2 subscriptions, declared on
    /// first use: durable for a persistent session (with the MQTT 5 session expiry as its
    /// `x-expires`), exclusive to this connection otherwise.
    fn own_queue(&mut self, class: usize) -> Result<Arc<Queue>, (u8, String)> {
        if let Some(q) = &self.own[class] {
            return Ok(Arc::clone(q));
        }
        let name = own_queue_name(&self.client_id, class);
        self.check_queue_access(&name)?;
        let mut arguments = FieldTable::new();
        if self.persistent && self.session_expiry != u32::MAX {
            arguments.insert(
                "x-expires",
                FieldValue::I64(self.session_expiry as i64 * 1000),
            );
        }
        let spec = QueueSpec {
            name,
            durable: self.persistent,
            exclusive_owner: (!self.persistent).then_some(self.id),
            auto_delete: false,
            arguments,
        };
        let q = self
            .vhost
            .declare_queue(spec, false, self.id)
            .map_err(|e| (reason::UNSPECIFIED_ERROR, e.text))?
            .queue;
        self.own[class] = Some(Arc::clone(&q));
        self.consume(&q, class as u16, OWN_TAGS[class], class == 0);
        Ok(q)
    }

    fn shared_queue(
        &mut self,
        group: &str,
        filter: &str,
        qos: u8,
    ) -> Result<Arc<Queue>, (u8, String)> {
        let name = shared_queue_name(group, filter);
        if let Some(q) = self.consuming.get(&name) {
            return Ok(Arc::clone(q));
        }
        self.check_queue_access(&name)?;
        // A durable group queue that every member's session has left goes as a session
        // does: after the (first member's) session expiry, unused.
        let mut arguments = FieldTable::new();
        if self.persistent && self.session_expiry != u32::MAX {
            arguments.insert(
                "x-expires",
                FieldValue::I64(self.session_expiry.max(1) as i64 * 1000),
            );
        }
        let spec = QueueSpec {
            name: name.clone(),
            durable: self.persistent,
            exclusive_owner: None,
            auto_delete: !self.persistent,
            arguments,
        };
        let q = match self.vhost.declare_queue(spec.clone(), false, self.id) {
            Ok(d) => d.queue,
            // Declared by a member with the other durability: share it as it is.
            Err(_) => self
                .vhost
                .find_queue(&spec.name)
                .ok_or((reason::UNSPECIFIED_ERROR, format!("queue {name} is gone")))?,
        };
        self.consuming.insert(name.clone(), Arc::clone(&q));
        self.consume(&q, SHARED_CHANNEL, &name, qos == 0);
        Ok(q)
    }

    pub(super) fn unbind_binding(&mut self, sub: &Sub) {
        let exchange = self.mqtt.config.exchange.clone();
        let _ = self.vhost.unbind(
            &exchange,
            Destination::Queue(sub.queue.name().to_string()),
            &sub.binding_key,
            sub.args.clone(),
            self.id,
        );
    }

    /// Removes a subscription's binding, and a share group's queue consumer once no
    /// subscription of this session uses it.
    fn unbind(&mut self, sub: &Sub) {
        self.unbind_binding(sub);
        if sub.group.is_some() {
            let name = sub.queue.name().to_string();
            let still_used = self.subs.values().any(|s| s.queue.name() == name);
            if !still_used {
                if let Some(q) = self.consuming.remove(&name) {
                    if q.remove_consumer(self.id, SHARED_CHANNEL, &name) || q.consumer_count() == 0
                    {
                        self.vhost.delete_queue_instance(&q);
                    }
                }
            }
        }
    }

    pub(super) fn on_unsubscribe(&mut self, pid: u16, filters: Vec<String>) {
        let mut codes = Vec::with_capacity(filters.len());
        for f in filters {
            match self.subs.remove(&f) {
                Some(sub) => {
                    self.unbind(&sub);
                    codes.push(reason::SUCCESS);
                }
                None => codes.push(reason::NO_SUBSCRIPTION_EXISTED),
            }
        }
        self.send(&Packet::UnsubAck {
            pid,
            props: Properties::default(),
            codes,
        });
    }

    /// Sends the retained messages a new subscription matches, retain flag set: QoS 0 at
    /// once, QoS 1 and 2 as the session's credit (the client's Receive Maximum) allows,
    /// the rest as acknowledgements free it.
    fn send_retained(&mut self, filter: &str, opts: SubOptions, id: Option<u32>) {
        for m in self.mqtt.retained.matching(&self.vhost.name, filter) {
            let qos = m.qos.min(opts.qos);
            let mut props = if self.v5 {
                m.props.clone()
            } else {
                Properties::default()
            };
            props.topic_alias = None;
            props.subscription_ids = id.into_iter().collect();
            if let Some(expiry) = m.props.message_expiry {
                let waited = crate::retained::now_secs().saturating_sub(m.stored_at);
                props.message_expiry = Some((expiry as u64).saturating_sub(waited).max(1) as u32);
            }
            let publish = Publish {
                dup: false,
                qos,
                retain: true,
                topic: m.topic.clone(),
                pid: None,
                props,
                payload: m.payload.clone(),
            };
            if qos == 0 {
                self.send_bounded(&Packet::Publish(publish));
            } else if self.retained_backlog.len() < self.mqtt.config.retained.max_messages {
                // As bounded as the store, however often a client subscribes without
                // acknowledging.
                self.retained_backlog.push_back(publish);
            }
        }
        self.drain_retained();
    }

    /// Sends waiting QoS 1 and 2 retained messages while the credit lasts.
    pub(super) fn drain_retained(&mut self) {
        while !self.retained_backlog.is_empty() && self.credit.try_acquire() {
            let Some(pid) = self.take_pid() else {
                self.credit.release(1);
                return;
            };
            let Some(mut publish) = self.retained_backlog.pop_front() else {
                self.credit.release(1);
                return;
            };
            publish.pid = Some(pid);
            if self.send_bounded(&Packet::Publish(publish)) {
                self.inflight.insert(
                    pid,
                    InFlight {
                        queue: None,
                        entry: None,
                        credited: true,
                    },
                );
            } else {
                self.credit.release(1);
            }
        }
    }
}

//! Publishing into a vhost: one read of the topology checks the exchange and routes the
//! message through it (on through exchange-to-exchange bindings and alternate exchanges)
//! to the set of queues that receive it; the lock is released and the message is enqueued
//! in each. The outcome tells the front end all it needs: whether the message was
//! unroutable (mandatory returns), whether a queue refused it (nack), and the store
//! generation a confirm must wait for. Bindings hold their queues, not names, so routing
//! looks nothing up by name and copies no name.

use std::sync::Arc;

use super::{Topology, VHost};
use crate::error::{CoreError, CoreResult};
use crate::exchange::{delay_of, Exchange, LazyHeaders, Target};
use crate::message::Message;
use crate::queue::{Published, Queue};

/// Buffers a front end keeps per session and lends to every publish, so that routing
/// allocates nothing once they have grown to the session's fan-out.
#[derive(Default)]
pub struct RouteScratch {
    queues: Vec<Arc<Queue>>,
    targets: Vec<Target>,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOutcome {
    /// No queue took the message and no delayed exchange held it (a mandatory publish is
    /// returned).
    pub unroutable: bool,
    /// A queue refused it (`x-overflow: reject-publish`): a confirm-mode publisher gets a
    /// nack.
    pub rejected: bool,
    /// A durable log recorded the message: a confirm (or `commit-ok`) may go once the
    /// store's synced generation reaches this one.
    pub confirm_after: Option<u64>,
}

impl VHost {
    /// `basic.publish`: checks that the exchange exists and is not internal, routes and
    /// enqueues. Queues whose no-ack consumers lag behind are added to `lagging` (the front
    /// end pauses the publisher until they catch up).
    pub fn publish(
        &self,
        msg: &Arc<Message>,
        scratch: &mut RouteScratch,
        lagging: &mut Vec<Arc<Queue>>,
    ) -> CoreResult<PublishOutcome> {
        let held = self.route_in(&self.topology.read(), msg, Via::Client, scratch)?;
        Ok(self.enqueue(msg, held, scratch, lagging))
    }

    /// Publishes to one queue chosen by the front end (a direct reply-to).
    pub fn publish_to(
        &self,
        msg: &Arc<Message>,
        queue: Arc<Queue>,
        scratch: &mut RouteScratch,
        lagging: &mut Vec<Arc<Queue>>,
    ) -> PublishOutcome {
        scratch.queues.push(queue);
        self.enqueue(msg, false, scratch, lagging)
    }

    /// Checks that a client may publish to `exchange`: it exists and is not internal (a
    /// publish inside a transaction is checked when it is made, and routed at commit).
    pub fn check_publish(&self, exchange: &str) -> CoreResult<()> {
        self.client_exchange(&self.topology.read(), exchange)
            .map(|_| ())
    }

    /// The exchange a client publishes to: it must exist and not be internal.
    fn client_exchange<'t>(&self, topo: &'t Topology, name: &str) -> CoreResult<&'t Exchange> {
        let x = topo
            .exchanges
            .get(name)
            .ok_or_else(|| self.no_exchange(name))?;
        if x.spec.internal {
            return Err(CoreError::access_refused(format!(
                "cannot publish to internal exchange '{name}' in vhost '{}'",
                self.name
            )));
        }
        Ok(x)
    }

    /// Routes a message and appends each receiving queue once, without enqueueing. Returns
    /// true when a delayed-message exchange took the message to hold it for its `x-delay`.
    pub fn route(&self, msg: &Arc<Message>, out: &mut Vec<Arc<Queue>>) -> CoreResult<bool> {
        let mut scratch = RouteScratch {
            queues: std::mem::take(out),
            targets: Vec::new(),
        };
        let held = self.route_in(&self.topology.read(), msg, Via::Broker, &mut scratch);
        *out = scratch.queues;
        held
    }

    /// Routes and enqueues a message that a delayed-message exchange held and that is now
    /// due (past the delay, routed as the exchange's `x-delayed-type`).
    pub(super) fn route_delayed(&self, exchange: &str, msg: Arc<Message>) {
        let mut scratch = RouteScratch::default();
        let routed = self.route_in(
            &self.topology.read(),
            &msg,
            Via::DelayPassed(exchange),
            &mut scratch,
        );
        if routed.is_ok() {
            self.enqueue(&msg, false, &mut scratch, &mut Vec::new());
        }
    }

    fn enqueue(
        &self,
        msg: &Arc<Message>,
        held: bool,
        scratch: &mut RouteScratch,
        lagging: &mut Vec<Arc<Queue>>,
    ) -> PublishOutcome {
        let unroutable = scratch.queues.is_empty() && !held;
        let mut rejected = false;
        for q in scratch.queues.drain(..) {
            match q.publish(Arc::clone(msg)) {
                Published::Rejected => rejected = true,
                Published::AcceptedLagging => {
                    if !lagging.iter().any(|l| Arc::ptr_eq(l, &q)) {
                        lagging.push(q);
                    }
                }
                Published::Accepted => {}
            }
        }
        let confirm_after = match &self.persistence {
            Some(p) if msg.needs_sync() => Some(p.generation()),
            _ => None,
        };
        PublishOutcome {
            unroutable,
            rejected,
            confirm_after,
        }
    }

    /// Routes `msg` on the topology `topo` into `scratch.queues` (each queue once). True
    /// when a delayed-message exchange held it.
    fn route_in(
        &self,
        topo: &Topology,
        msg: &Arc<Message>,
        via: Via<'_>,
        scratch: &mut RouteScratch,
    ) -> CoreResult<bool> {
        let exchange = msg.exchange.as_str();
        // The routing key, then the keys of CC/BCC (sender-selected distribution).
        let keys =
            std::iter::once(msg.routing_key.as_str()).chain(msg.cc.iter().map(String::as_str));
        let out = &mut scratch.queues;
        if exchange.is_empty() {
            for key in keys {
                if let Some(q) = topo.queues.get(key) {
                    push_once(out, Arc::clone(q));
                }
            }
            if let (Via::Client, Some(x)) = (via, topo.exchanges.get("")) {
                x.stats.publish_in.add(1);
                if !out.is_empty() {
                    x.stats.publish_out.add(1);
                }
            }
            return Ok(false);
        }
        let first = match via {
            Via::Client => self.client_exchange(topo, exchange)?,
            _ => topo
                .exchanges
                .get(exchange)
                .ok_or_else(|| self.no_exchange(exchange))?,
        };
        let counted = matches!(via, Via::Client);
        if counted {
            first.stats.publish_in.add(1);
        }
        let mut headers = LazyHeaders::new(&msg.properties_raw);
        if let Some(delayed) = &first.delayed {
            if !matches!(via, Via::DelayPassed(x) if x == first.name()) {
                if let Some(ms) = delay_of(headers.get()) {
                    delayed.hold(Arc::clone(msg), ms, &self.timers);
                    return Ok(true);
                }
            }
        }
        // Exchanges still to route through for this key, and those already visited (both
        // stay unallocated unless bindings lead on to other exchanges or to an alternate).
        let mut pending: Vec<&Exchange> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for routing_key in keys {
            pending.clear();
            seen.clear();
            let mut x = first;
            loop {
                let targets = &mut scratch.targets;
                targets.clear();
                x.route(routing_key, &mut headers, targets);
                if targets.is_empty() {
                    if let Some(ae) = x.effective_alternate().and_then(|n| topo.exchanges.get(n)) {
                        if !visited(first, &seen, ae.name()) {
                            seen.push(ae.name());
                            pending.push(ae);
                        }
                    }
                }
                for t in targets.drain(..) {
                    match t {
                        Target::Queue(q) => push_once(out, q),
                        Target::Exchange(name) => {
                            if let Some(next) = topo.exchanges.get(&*name) {
                                if !visited(first, &seen, next.name()) {
                                    seen.push(next.name());
                                    pending.push(next);
                                }
                            }
                        }
                    }
                }
                match pending.pop() {
                    Some(next) => x = next,
                    None => break,
                }
            }
        }
        if counted && !scratch.queues.is_empty() {
            first.stats.publish_out.add(1);
        }
        Ok(false)
    }
}

fn push_once(out: &mut Vec<Arc<Queue>>, q: Arc<Queue>) {
    if !out.iter().any(|o| Arc::ptr_eq(o, &q)) {
        out.push(q);
    }
}

/// Where a message to route comes from.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// A client's publish: internal exchanges refuse it.
    Client,
    /// The broker itself (dead letters): internal exchanges take it.
    Broker,
    /// A delayed-message exchange whose delay has passed: that exchange routes it on
    /// instead of holding it again.
    DelayPassed(&'a str),
}

fn visited(first: &Exchange, seen: &[&str], name: &str) -> bool {
    name == first.name() || seen.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Destination, ExchangeKind, ExchangeSpec, TOPIC_CACHE_KEYS};
    use crate::persist::Persistence;
    use crate::queue::QueueSpec;
    use crate::storage::MemoryStore;
    use crate::timers::Timers;
    use crate::ErrorKind;
    use bytes::Bytes;
    use warren_amqp::BasicProperties;
    use warren_amqp::FieldTable;

    fn vhost() -> Arc<VHost> {
        let persistence = Persistence::new(MemoryStore::new(), usize::MAX);
        VHost::new("/", Timers::new(), Some(persistence))
    }

    fn queue(v: &VHost, name: &str, durable: bool) {
        let spec = QueueSpec {
            name: name.into(),
            durable,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::default(),
        };
        v.declare_queue(spec, false, 1).unwrap();
    }

    fn exchange(v: &VHost, name: &str, kind: ExchangeKind, internal: bool) {
        let spec = ExchangeSpec {
            name: name.into(),
            kind,
            durable: false,
            auto_delete: false,
            internal,
            arguments: FieldTable::default(),
        };
        v.declare_exchange(spec, false).unwrap();
    }

    fn bind(v: &VHost, x: &str, q: &str, key: &str) {
        v.bind(
            x,
            Destination::Queue(q.into()),
            key,
            FieldTable::default(),
            1,
        )
        .unwrap();
    }

    fn unbind(v: &VHost, x: &str, q: &str, key: &str) {
        v.unbind(
            x,
            Destination::Queue(q.into()),
            key,
            FieldTable::default(),
            1,
        )
        .unwrap();
    }

    fn message(x: &str, key: &str, persistent: bool) -> Arc<Message> {
        let props = BasicProperties {
            delivery_mode: Some(if persistent { 2 } else { 1 }),
            ..Default::default()
        };
        Arc::new(Message::new(x, key, props.to_bytes(), Bytes::new()))
    }

    /// Publishes and returns the names of the queues that got the message (by their depth).
    fn publish(v: &VHost, x: &str, key: &str) -> PublishOutcome {
        v.publish(
            &message(x, key, false),
            &mut RouteScratch::default(),
            &mut Vec::new(),
        )
        .unwrap()
    }

    fn depth(v: &VHost, q: &str) -> u32 {
        v.queue(q, 1).unwrap().message_count()
    }

    #[test]
    fn topic_cache_follows_every_binding_change() {
        let v = vhost();
        exchange(&v, "t", ExchangeKind::Topic, false);
        queue(&v, "q1", false);
        queue(&v, "q2", false);
        bind(&v, "t", "q1", "a.*");
        assert!(!publish(&v, "t", "a.b").unroutable);
        assert_eq!((depth(&v, "q1"), depth(&v, "q2")), (1, 0));
        // A new binding must be seen by a key already cached.
        bind(&v, "t", "q2", "#");
        publish(&v, "t", "a.b");
        assert_eq!((depth(&v, "q1"), depth(&v, "q2")), (2, 1));
        unbind(&v, "t", "q1", "a.*");
        publish(&v, "t", "a.b");
        assert_eq!((depth(&v, "q1"), depth(&v, "q2")), (2, 2));
        // A deleted queue leaves the cache with its bindings; its namesake is a new queue
        // that gets messages only through its own bindings.
        v.delete_queue("q2", false, false, 1).unwrap();
        assert!(publish(&v, "t", "a.b").unroutable);
        queue(&v, "q2", false);
        assert!(publish(&v, "t", "a.b").unroutable);
        bind(&v, "t", "q2", "a.b");
        publish(&v, "t", "a.b");
        assert_eq!(depth(&v, "q2"), 1);
    }

    #[test]
    fn topic_cache_is_bounded() {
        let v = vhost();
        exchange(&v, "t", ExchangeKind::Topic, false);
        queue(&v, "q", false);
        bind(&v, "t", "q", "#");
        for i in 0..(TOPIC_CACHE_KEYS + 100) {
            publish(&v, "t", &format!("k.{i}"));
        }
        let cached = v.topology.read().exchanges["t"].cached_topic_keys();
        assert!(cached > 0 && cached <= TOPIC_CACHE_KEYS, "{cached}");
        assert_eq!(depth(&v, "q") as usize, TOPIC_CACHE_KEYS + 100);
    }

    #[test]
    fn outcome_names_what_the_front_end_must_do() {
        let v = vhost();
        exchange(&v, "x", ExchangeKind::Direct, false);
        exchange(&v, "hidden", ExchangeKind::Direct, true);
        queue(&v, "durable", true);
        bind(&v, "x", "durable", "k");
        let (mut scratch, mut lagging) = (RouteScratch::default(), Vec::new());
        let out = v
            .publish(&message("x", "k", true), &mut scratch, &mut lagging)
            .unwrap();
        assert!(!out.unroutable && !out.rejected);
        assert!(
            out.confirm_after.is_some(),
            "logged: the confirm waits for the store"
        );
        let out = v
            .publish(&message("x", "k", false), &mut scratch, &mut lagging)
            .unwrap();
        assert_eq!(
            out.confirm_after, None,
            "a transient message waits for nothing"
        );
        assert!(publish(&v, "x", "nothing-bound").unroutable);
        let e = v
            .publish(&message("hidden", "k", false), &mut scratch, &mut lagging)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessRefused);
        let e = v
            .publish(&message("missing", "k", false), &mut scratch, &mut lagging)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
    }
}

//! Unit tests of a vhost's topology: declares, bindings, routing, deletes.

use super::*;
use crate::message::Message;
use crate::ErrorKind;

fn qspec(name: &str) -> QueueSpec {
    QueueSpec {
        name: name.into(),
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: FieldTable::default(),
    }
}

fn xspec(name: &str, kind: ExchangeKind) -> ExchangeSpec {
    ExchangeSpec {
        name: name.into(),
        kind,
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::default(),
    }
}

fn vhost() -> Arc<VHost> {
    VHost::new("/", Timers::new(), None)
}

fn routed(v: &VHost, x: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let msg = Arc::new(Message::new(
        x,
        key,
        warren_amqp::BasicProperties::default().to_bytes(),
        bytes::Bytes::new(),
    ));
    v.route(&msg, &mut out).unwrap();
    let mut names: Vec<String> = out.iter().map(|q| q.name().to_string()).collect();
    names.sort();
    names
}

#[test]
fn default_exchange_routes_by_queue_name() {
    let v = vhost();
    v.declare_queue(qspec("q1"), false, 1).unwrap();
    assert_eq!(routed(&v, "", "q1"), vec!["q1"]);
    assert!(routed(&v, "", "nope").is_empty());
}

#[test]
fn exchange_to_exchange_with_cycle_and_alternate() {
    let v = vhost();
    v.declare_exchange(xspec("a", ExchangeKind::Fanout), false)
        .unwrap();
    v.declare_exchange(xspec("b", ExchangeKind::Fanout), false)
        .unwrap();
    v.declare_queue(qspec("q"), false, 1).unwrap();
    v.bind(
        "a",
        Destination::Exchange("b".into()),
        "",
        FieldTable::default(),
        1,
    )
    .unwrap();
    v.bind(
        "b",
        Destination::Exchange("a".into()),
        "",
        FieldTable::default(),
        1,
    )
    .unwrap();
    v.bind(
        "b",
        Destination::Queue("q".into()),
        "",
        FieldTable::default(),
        1,
    )
    .unwrap();
    assert_eq!(routed(&v, "a", "k"), vec!["q"]);

    let mut args = FieldTable::default();
    args.insert("alternate-exchange", FieldValue::LongString("b".into()));
    let mut d = xspec("d", ExchangeKind::Direct);
    d.arguments = args;
    v.declare_exchange(d, false).unwrap();
    assert_eq!(routed(&v, "d", "unbound"), vec!["q"]);
}

#[test]
fn redeclare_mismatch_and_reserved_names() {
    let v = vhost();
    v.declare_exchange(xspec("x", ExchangeKind::Direct), false)
        .unwrap();
    let e = v
        .declare_exchange(xspec("x", ExchangeKind::Fanout), false)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PreconditionFailed);
    let e = v
        .declare_exchange(xspec("amq.x", ExchangeKind::Fanout), false)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessRefused);
    let e = check_queue_name("amq.q").unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessRefused);
    assert!(check_queue_name("amqp.q").is_ok());
}

#[test]
fn exclusive_queue_is_locked_and_removed_with_owner() {
    let v = vhost();
    let mut s = qspec("ex");
    s.exclusive_owner = Some(7);
    v.declare_queue(s, false, 7).unwrap();
    assert_eq!(
        v.queue("ex", 8).err().unwrap().kind,
        ErrorKind::ResourceLocked
    );
    assert!(v.queue("ex", 7).is_ok());
    v.delete_exclusive_queues(7);
    assert_eq!(v.queue("ex", 7).err().unwrap().kind, ErrorKind::NotFound);
}

#[test]
fn auto_delete_exchange_goes_with_last_binding() {
    let v = vhost();
    let mut s = xspec("ad", ExchangeKind::Direct);
    s.auto_delete = true;
    v.declare_exchange(s, false).unwrap();
    v.declare_queue(qspec("q"), false, 1).unwrap();
    v.bind(
        "ad",
        Destination::Queue("q".into()),
        "k",
        FieldTable::default(),
        1,
    )
    .unwrap();
    v.delete_queue("q", false, false, 1).unwrap();
    assert!(!v.exchange_exists("ad"));
}

#[test]
fn unsupported_queue_arguments_are_refused() {
    let v = vhost();
    let mut s = qspec("quorum-only");
    s.arguments.insert("x-delivery-limit", FieldValue::I32(10));
    assert_eq!(
        v.declare_queue(s, false, 1).err().unwrap().kind,
        ErrorKind::PreconditionFailed
    );
    let mut s = qspec("quorum");
    s.arguments
        .insert("x-queue-type", FieldValue::LongString("quorum".into()));
    assert_eq!(
        v.declare_queue(s, false, 1).err().unwrap().kind,
        ErrorKind::PreconditionFailed
    );
}

/// Limits are definitions: written ahead, and back after a restart.
#[test]
fn limits_are_saved_and_recovered() {
    use crate::limits::VHostLimits;
    use crate::persist::Persistence;
    let store = crate::storage::MemoryStore::new();
    let p = Persistence::new(store.clone(), usize::MAX);
    let v = VHost::new("/", Timers::new(), Some(Arc::clone(&p)));
    let limits = VHostLimits {
        max_connections: Some(3),
        max_queues: None,
    };
    v.set_limits(limits).unwrap();
    let again = Persistence::new(store, usize::MAX);
    let saved = again.load().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].limits, limits);
    v.set_limits(VHostLimits::default()).unwrap();
    // (The vhost's own record is the broker's to write; here only the limits were saved.)
    assert!(again.load().unwrap().iter().all(|v| v.limits.is_empty()));
}

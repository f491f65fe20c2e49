//! Unit tests of queues: dispatch, credit, priorities, TTL, limits, dead-lettering,
//! paging and recovery over the in-memory store.

use super::*;
use bytes::Bytes;
use warren_amqp::BasicProperties;

#[derive(Default)]
struct Collect {
    got: Mutex<Vec<(Arc<str>, Entry)>>,
    cancelled: Mutex<Vec<Arc<str>>>,
}
impl DeliverySink for Collect {
    fn deliver(&self, d: Delivery) {
        let mut entry = d.entry;
        entry.msg = Some(d.msg);
        self.got.lock().push((d.consumer_tag, entry));
    }
    fn cancelled(&self, _channel: u16, tag: &Arc<str>) {
        self.cancelled.lock().push(Arc::clone(tag));
    }
}

fn msg_with(body: &'static str, props: BasicProperties) -> Arc<Message> {
    Arc::new(Message::new(
        String::new(),
        "q",
        props.to_bytes(),
        Bytes::from_static(body.as_bytes()),
    ))
}

fn body_of(e: &Entry) -> Bytes {
    e.msg.as_ref().map(|m| m.body.clone()).unwrap_or_default()
}

fn msg(body: &'static str) -> Arc<Message> {
    msg_with(body, BasicProperties::default())
}

#[derive(Default)]
struct DeadSink(Mutex<Vec<DeadLetter>>);
impl DeadLetterRouter for DeadSink {
    fn route_dead_letters(&self, letters: Vec<DeadLetter>) {
        self.0.lock().extend(letters);
    }
}

fn queue_with(auto_delete: bool, config: QueueConfig) -> Arc<Queue> {
    queue_dl(auto_delete, config, &Arc::new(DeadSink::default()))
}

fn queue_dl(auto_delete: bool, config: QueueConfig, dl: &Arc<DeadSink>) -> Arc<Queue> {
    let router: Arc<dyn DeadLetterRouter> = dl.clone();
    Queue::new(
        "/",
        QueueSpec {
            name: "q".into(),
            durable: false,
            exclusive_owner: None,
            auto_delete,
            arguments: FieldTable::default(),
        },
        config,
        Timers::new(),
        Arc::downgrade(&router),
        None,
    )
}

fn queue(auto_delete: bool) -> Arc<Queue> {
    queue_with(auto_delete, QueueConfig::default())
}

fn consumer(tag: &str, sink: &Arc<Collect>, prefetch: u32, exclusive: bool) -> ConsumerSpec {
    ConsumerSpec {
        tag: Arc::from(tag),
        connection_id: 1,
        channel: 1,
        no_ack: false,
        exclusive,
        priority: 0,
        sink: sink.clone(),
        consumer_credit: Arc::new(Credit::new(prefetch)),
        channel_credit: Arc::new(Credit::new(0)),
    }
}

fn bodies(sink: &Collect) -> Vec<Bytes> {
    sink.got.lock().iter().map(|(_, e)| body_of(e)).collect()
}

#[test]
fn prefetch_limits_deliveries_and_requeue_restores_order() {
    let q = queue(false);
    let sink = Arc::new(Collect::default());
    for b in ["a", "b", "c", "d"] {
        q.publish(msg(b));
    }
    let spec = consumer("c1", &sink, 2, false);
    let credit = spec.consumer_credit.clone();
    q.add_consumer(spec).unwrap();
    assert_eq!(sink.got.lock().len(), 2);
    assert_eq!(q.message_count(), 2);
    let entries: Vec<Entry> = sink.got.lock().drain(..).map(|(_, e)| e).collect();
    credit.release(2);
    q.requeue(entries);
    let got = sink.got.lock();
    let seen: Vec<_> = got
        .iter()
        .map(|(_, e)| (body_of(e), e.redelivered))
        .collect();
    assert_eq!(
        seen,
        vec![(Bytes::from("a"), true), (Bytes::from("b"), true)]
    );
    assert_eq!(q.message_count(), 2);
}

#[test]
fn round_robin_between_consumers() {
    let q = queue(false);
    let sink = Arc::new(Collect::default());
    q.add_consumer(consumer("a", &sink, 0, false)).unwrap();
    q.add_consumer(consumer("b", &sink, 0, false)).unwrap();
    for _ in 0..4 {
        q.publish(msg("x"));
    }
    let tags: Vec<String> = sink.got.lock().iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(tags, vec!["a", "b", "a", "b"]);
}

#[test]
fn consumer_priority_wins_while_it_has_credit() {
    let q = queue(false);
    let sink = Arc::new(Collect::default());
    q.add_consumer(consumer("low", &sink, 0, false)).unwrap();
    let mut high = consumer("high", &sink, 2, false);
    high.priority = 5;
    q.add_consumer(high).unwrap();
    for _ in 0..4 {
        q.publish(msg("x"));
    }
    let tags: Vec<String> = sink.got.lock().iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(tags, vec!["high", "high", "low", "low"]);
}

#[test]
fn single_active_consumer_fails_over_in_order() {
    let q = queue_with(
        false,
        QueueConfig {
            single_active_consumer: true,
            ..Default::default()
        },
    );
    let sink = Arc::new(Collect::default());
    q.add_consumer(consumer("a", &sink, 0, false)).unwrap();
    q.add_consumer(consumer("b", &sink, 0, false)).unwrap();
    q.publish(msg("1"));
    q.publish(msg("2"));
    assert!(!q.remove_consumer(1, 1, "a"));
    q.publish(msg("3"));
    let tags: Vec<String> = sink.got.lock().iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(tags, vec!["a", "a", "b"]);
}

#[test]
fn priorities_deliver_highest_first_fifo_within() {
    let q = queue_with(
        false,
        QueueConfig {
            max_priority: Some(10),
            ..Default::default()
        },
    );
    for (b, p) in [("p1", 1), ("p9a", 9), ("p0", 0), ("p9b", 9), ("p20", 20)] {
        q.publish(msg_with(
            b,
            BasicProperties {
                priority: Some(p),
                ..Default::default()
            },
        ));
    }
    let sink = Arc::new(Collect::default());
    q.add_consumer(consumer("c", &sink, 0, false)).unwrap();
    // Priorities above the maximum count as the maximum, as in RabbitMQ.
    assert_eq!(bodies(&sink), vec!["p20", "p9a", "p9b", "p1", "p0"]);
}

#[test]
fn max_length_drop_head_dead_letters_and_reject_publish_refuses() {
    let dl = Arc::new(DeadSink::default());
    let cfg = QueueConfig {
        max_length: Some(2),
        dead_letter_exchange: Some("dlx".into()),
        ..Default::default()
    };
    let q = queue_dl(false, cfg, &dl);
    q.publish(msg("a"));
    q.publish(msg("b"));
    assert!(dl.0.lock().is_empty());
    assert_eq!(q.publish(msg("c")), Published::Accepted);
    {
        let dead = dl.0.lock();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].msg.body, Bytes::from("a"));
        assert_eq!(dead[0].reason, DeathReason::MaxLen);
    }
    assert_eq!(q.message_count(), 2);

    let r = queue_with(
        false,
        QueueConfig {
            max_length: Some(1),
            overflow: Overflow::RejectPublish,
            ..Default::default()
        },
    );
    assert_eq!(r.publish(msg("a")), Published::Accepted);
    assert_eq!(r.publish(msg("b")), Published::Rejected);
    assert_eq!(r.message_count(), 1);
}

#[test]
fn ttl_expires_at_head_and_zero_expiration_goes_to_waiting_consumer() {
    let dl = Arc::new(DeadSink::default());
    let cfg = QueueConfig {
        dead_letter_exchange: Some("dlx".into()),
        ..Default::default()
    };
    let q = queue_dl(false, cfg, &dl);
    let zero = BasicProperties {
        expiration: Some("0".into()),
        ..Default::default()
    };
    q.publish(msg_with("gone", zero.clone()));
    assert_eq!(dl.0.lock().len(), 1, "nobody could take it at once");
    assert_eq!(q.message_count(), 0);
    let sink = Arc::new(Collect::default());
    q.add_consumer(consumer("c", &sink, 0, false)).unwrap();
    q.publish(msg_with("taken", zero));
    assert_eq!(dl.0.lock().len(), 1);
    assert_eq!(bodies(&sink), vec!["taken"]);
}

#[test]
fn paging_and_recovery_keep_order_and_content() {
    let memory = crate::storage::MemoryStore::new();
    let store: Arc<dyn MessageStore> = memory.clone();
    let q = stored_queue(&store, Some(store.queue_index(7).unwrap()), 64);
    let persistent = BasicProperties {
        delivery_mode: Some(2),
        ..Default::default()
    };
    let bodies: Vec<String> = (0..50).map(|i| format!("message-{i:03}")).collect();
    for b in &bodies {
        let m = Message::new(
            String::new(),
            "dq",
            persistent.to_bytes(),
            Bytes::from(b.clone()),
        );
        q.publish(Arc::new(m));
    }
    // A transient message in a durable queue is paged but not logged.
    q.publish(msg("transient"));
    assert!(q.ready_bytes() > 64, "everything is counted");
    assert!(
        q.state.lock().ready.mem_bytes <= 64,
        "beyond the threshold bodies are on disk only"
    );
    let (first, first_msg, _) = q.get(false).unwrap();
    assert_eq!(first_msg.body, Bytes::from("message-000"));
    store.sync_now().unwrap();

    // "Restart": a new queue over the same log sees the 50 persistent messages, the
    // delivered one marked redelivered, and not the transient one.
    let log = store.queue_index(7).unwrap();
    let recovered = log.recover().unwrap();
    assert_eq!(recovered.len(), 50);
    let r = stored_queue(&store, Some(log), 64);
    r.restore(recovered);
    let mut seen = Vec::new();
    while let Some((e, m, _)) = r.get(true) {
        if seen.is_empty() {
            assert!(e.redelivered, "it was delivered before the restart");
        } else {
            assert!(!e.redelivered);
        }
        seen.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    assert_eq!(seen, bodies);
    drop(first);
}

#[derive(Default)]
struct Keep(Mutex<Vec<Delivery>>);
impl DeliverySink for Keep {
    fn deliver(&self, d: Delivery) {
        self.0.lock().push(d);
    }
    fn cancelled(&self, _channel: u16, _tag: &Arc<str>) {}
}

#[test]
fn undelivered_no_ack_deliveries_come_back_intact() {
    let memory = crate::storage::MemoryStore::new();
    let store: Arc<dyn MessageStore> = memory.clone();
    let q = stored_queue(&store, Some(store.queue_index(1).unwrap()), 16);
    let persistent = BasicProperties {
        delivery_mode: Some(2),
        ..Default::default()
    };
    for i in 0..5 {
        let m = Message::new(
            String::new(),
            "dq",
            persistent.to_bytes(),
            Bytes::from(format!("m{i}-with-a-long-enough-body")),
        );
        q.publish(Arc::new(m));
    }
    let keep = Arc::new(Keep::default());
    let mut spec = consumer("c", &Arc::new(Collect::default()), 0, false);
    spec.no_ack = true;
    spec.sink = keep.clone();
    q.add_consumer(spec).unwrap();
    assert!(!q.remove_consumer(1, 1, "c"));
    // The connection never wrote them: they go back, settled records or not.
    for d in keep.0.lock().drain(..) {
        d.give_back();
    }
    store.sync_now().unwrap();
    let mut seen = Vec::new();
    while let Some((_, m, _)) = q.get(true) {
        seen.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    let expected: Vec<String> = (0..5)
        .map(|i| format!("m{i}-with-a-long-enough-body"))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(q.unacked_count(), 0);
    assert_eq!(
        memory.record_count(),
        0,
        "every record reference was released"
    );
}

#[test]
fn exclusive_consumer_blocks_others() {
    let q = queue(false);
    let sink = Arc::new(Collect::default());
    q.add_consumer(consumer("a", &sink, 0, true)).unwrap();
    let err = q.add_consumer(consumer("b", &sink, 0, false)).unwrap_err();
    assert_eq!(err.kind, crate::ErrorKind::AccessRefused);
}

#[test]
fn auto_delete_after_last_consumer_and_cancel_on_delete() {
    let q = queue(true);
    let sink = Arc::new(Collect::default());
    q.add_consumer(consumer("a", &sink, 0, false)).unwrap();
    q.add_consumer(consumer("b", &sink, 0, false)).unwrap();
    assert!(!q.remove_consumer(1, 1, "a"));
    q.mark_deleted();
    assert_eq!(sink.cancelled.lock().len(), 1);
    assert!(q.is_deleted());
}

#[test]
fn get_counts_remaining() {
    let q = queue(false);
    q.publish(msg("a"));
    q.publish(msg("b"));
    let Some((e, msg, left)) = q.get(false) else {
        panic!("empty")
    };
    assert_eq!(msg.body, Bytes::from("a"));
    assert_eq!(left, 1);
    assert_eq!(q.unacked_count(), 1);
    q.settle(vec![e]);
    assert_eq!(q.unacked_count(), 0);
    assert_eq!(q.purge(), 1);
    assert!(q.get(true).is_none());
}

/// A sink whose connection writes nothing yet: it has room for `room` deliveries.
struct Bounded {
    kept: Mutex<Vec<Delivery>>,
    room: usize,
}
impl DeliverySink for Bounded {
    fn deliver(&self, d: Delivery) {
        self.kept.lock().push(d);
    }
    fn has_capacity(&self) -> bool {
        self.kept.lock().len() < self.room
    }
    fn cancelled(&self, _channel: u16, _tag: &Arc<str>) {}
}

/// A durable queue `dq` over `store` (with `log` as its index when given), paging past
/// `threshold` bytes.
fn stored_queue(
    store: &Arc<dyn MessageStore>,
    log: Option<Arc<dyn QueueIndex>>,
    threshold: usize,
) -> Arc<Queue> {
    let router: Arc<dyn DeadLetterRouter> = Arc::new(DeadSink::default());
    let storage = QueueStorage {
        store: Arc::clone(store),
        log,
        page_threshold: threshold,
    };
    let spec = QueueSpec {
        name: "dq".into(),
        durable: true,
        exclusive_owner: None,
        auto_delete: false,
        arguments: FieldTable::default(),
    };
    Queue::new(
        "/",
        spec,
        QueueConfig::default(),
        Timers::new(),
        Arc::downgrade(&router),
        Some(storage),
    )
}

/// Prefetch 0 (unlimited) with manual acks: the sink's capacity bounds what is handed over
/// at once, and unacked entries beyond the queue's memory budget keep only their store
/// location; everything is back to nothing once they are acked.
#[test]
fn unlimited_prefetch_consumer_cannot_pin_the_backlog_in_memory() {
    let memory = crate::storage::MemoryStore::new();
    let q = stored_queue(&(memory.clone() as Arc<dyn MessageStore>), None, 1000);
    let sink = Arc::new(Bounded {
        kept: Mutex::new(Vec::new()),
        room: 30,
    });
    let mut spec = consumer("c", &Arc::new(Collect::default()), 0, false);
    spec.sink = sink.clone();
    q.add_consumer(spec).unwrap();
    let body: &'static str = Box::leak("x".repeat(100).into_boxed_str());
    for _ in 0..50 {
        q.publish(msg(body));
    }
    assert_eq!(
        sink.kept.lock().len(),
        30,
        "the sink's capacity bounds the hand-over"
    );
    assert_eq!(q.message_count(), 20, "the rest waits in the queue");
    let deliveries: Vec<Delivery> = std::mem::take(&mut *sink.kept.lock());
    let held_in_memory = deliveries.iter().filter(|d| d.entry.msg.is_some()).count();
    assert!(
        held_in_memory * 100 <= 1000,
        "{held_in_memory} unacked bodies held beyond the 1000-byte budget"
    );
    assert!(deliveries
        .iter()
        .all(|d| d.entry.msg.is_some() || d.entry.loc.is_some()));
    // The connection wrote them (the delivery's message goes); the channel keeps entries.
    let entries: Vec<Entry> = deliveries.into_iter().map(|d| d.entry).collect();
    q.settle(entries);
    q.dispatch();
    let rest: Vec<Entry> = std::mem::take(&mut *sink.kept.lock())
        .into_iter()
        .map(|d| d.entry)
        .collect();
    assert_eq!(rest.len(), 20);
    q.settle(rest);
    assert_eq!(q.unacked_count(), 0);
    assert_eq!(q.state.lock().unacked_mem, 0);
    assert_eq!(
        memory.record_count(),
        0,
        "paged records are released on ack"
    );
}

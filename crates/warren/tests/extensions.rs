//! RabbitMQ's queue and routing extensions: message TTL (queue and per message), queue expiry,
//! length limits and overflow behaviours, dead-lettering with the `x-death` header, priority
//! queues, single active consumer, consumer priorities, argument validation, exchange-to-exchange
//! bindings and alternate exchanges, the consistent-hash exchange, policies and direct reply-to.
//!
//! Every assertion was first checked against RabbitMQ 3.10 (`WARREN_TEST_URL=...`), so these
//! tests describe RabbitMQ's real behaviour.
mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::{
    options::*,
    types::{AMQPValue, FieldArray, FieldTable, LongString},
    BasicProperties, Confirmation, ExchangeKind,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ------------------------------------------------------------------------------ helpers

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn long(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

fn int(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn boolean(v: bool) -> AMQPValue {
    AMQPValue::Boolean(v)
}

async fn try_declare(
    ch: &lapin::Channel,
    name: &str,
    opts: QueueDeclareOptions,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    within("queue.declare", ch.queue_declare(name.into(), opts, args)).await
}

/// Declares a fresh non-durable queue with `args`; returns its name.
async fn declare_with(ch: &lapin::Channel, prefix: &str, args: &[(&str, AMQPValue)]) -> String {
    let name = unique(prefix);
    try_declare(ch, &name, QueueDeclareOptions::default(), table(args))
        .await
        .unwrap_or_else(|e| panic!("declare {name} with {args:?}: {e:?}"));
    name
}

/// Ready message count by passive declare.
async fn ready_count(ch: &lapin::Channel, q: &str) -> u32 {
    try_declare(
        ch,
        q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare {q}: {e:?}"))
    .message_count()
}

async fn declare_exchange(ch: &lapin::Channel, name: &str, kind: ExchangeKind, args: FieldTable) {
    within(
        "exchange.declare",
        ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args),
    )
    .await
    .unwrap_or_else(|e| panic!("declare exchange {name}: {e:?}"));
}

async fn new_exchange(ch: &lapin::Channel, prefix: &str, kind: ExchangeKind) -> String {
    let name = unique(prefix);
    declare_exchange(ch, &name, kind, FieldTable::default()).await;
    name
}

async fn bind(ch: &lapin::Channel, q: &str, x: &str, key: &str) {
    bind_args(ch, q, x, key, FieldTable::default()).await
}

async fn publish_with(
    ch: &lapin::Channel,
    x: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    within(
        "basic.publish",
        ch.basic_publish(
            x.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        ),
    )
    .await
    .expect("basic.publish");
}

/// Publishes on a channel in confirm mode and waits for the broker's ack or nack.
async fn publish_confirmed(
    ch: &lapin::Channel,
    x: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Confirmation {
    let pc = within(
        "basic.publish",
        ch.basic_publish(
            x.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        ),
    )
    .await
    .expect("basic.publish");
    within("publisher confirm", pc).await.expect("confirm")
}

fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

/// basic.get without auto-ack (the caller acks, nacks or rejects).
async fn get_msg(ch: &lapin::Channel, q: &str) -> Option<lapin::message::Delivery> {
    within(
        "basic.get",
        ch.basic_get(q.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .map(|m| m.delivery)
}

async fn get_auto(ch: &lapin::Channel, q: &str) -> Option<lapin::message::Delivery> {
    within(
        "basic.get",
        ch.basic_get(q.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .map(|m| m.delivery)
}

async fn consume_with(
    ch: &lapin::Channel,
    q: &str,
    no_ack: bool,
    args: FieldTable,
) -> lapin::Consumer {
    within(
        "basic.consume",
        ch.basic_consume(
            q.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            args,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("consume {q}: {e:?}"))
}

async fn consume(ch: &lapin::Channel, q: &str) -> lapin::Consumer {
    consume_with(ch, q, false, FieldTable::default()).await
}

/// Collects deliveries until none arrives for `quiet_ms`.
async fn drain(consumer: &mut lapin::Consumer, quiet_ms: u64) -> Vec<lapin::message::Delivery> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(quiet_ms), consumer.next()).await
    {
        out.push(d);
    }
    out
}

fn body(d: &lapin::message::Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

fn bodies(ds: &[lapin::message::Delivery]) -> Vec<String> {
    ds.iter().map(body).collect()
}

/// Takes every ready message from `q` with auto-ack basic.get, in order.
async fn get_all(ch: &lapin::Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(d) = get_auto(ch, q).await {
        out.push(body(&d));
        assert!(out.len() < 10_000, "runaway queue {q}");
    }
    out
}

/// Waits (bounded) until `q` holds `n` ready messages; returns how long that took.
async fn wait_count(ch: &lapin::Channel, q: &str, n: u32, bound: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let c = ready_count(ch, q).await;
        if c == n {
            return start.elapsed();
        }
        if start.elapsed() > bound {
            panic!("queue {q} still has {c} ready messages after {bound:?}, expected {n}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn headers(d: &lapin::message::Delivery) -> FieldTable {
    d.properties.headers().clone().unwrap_or_default()
}

fn header<'a>(t: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    t.inner().get(key)
}

fn header_str(t: &FieldTable, key: &str) -> String {
    match header(t, key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("header {key}: expected a longstr, got {other:?} in {t:?}"),
    }
}

/// The `x-death` array of a dead-lettered message, one table per (queue, reason).
fn x_death(d: &lapin::message::Delivery) -> Vec<FieldTable> {
    match header(&headers(d), "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death element is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("expected an x-death array, got {other:?}"),
    }
}

fn death_count(t: &FieldTable) -> i64 {
    match header(t, "count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-death count: expected a signed 64-bit long, got {other:?}"),
    }
}

fn routing_keys(t: &FieldTable) -> Vec<String> {
    match header(t, "routing-keys") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => panic!("routing key is not a longstr: {other:?}"),
            })
            .collect(),
        other => panic!("x-death routing-keys: expected an array, got {other:?}"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Checks one x-death entry field by field, as RabbitMQ 3.10 writes it: exactly the keys
/// count, exchange, queue, reason, routing-keys, time (plus original-expiration when the message
/// carried an expiration), with their AMQP types.
#[track_caller]
fn check_death(
    t: &FieldTable,
    count: i64,
    reason: &str,
    queue: &str,
    exchange: &str,
    keys: &[&str],
    original_expiration: Option<&str>,
) {
    assert_eq!(death_count(t), count, "count in {t:?}");
    assert_eq!(header_str(t, "reason"), reason, "reason in {t:?}");
    assert_eq!(header_str(t, "queue"), queue, "queue in {t:?}");
    assert_eq!(header_str(t, "exchange"), exchange, "exchange in {t:?}");
    assert_eq!(routing_keys(t), keys, "routing-keys in {t:?}");
    match header(t, "time") {
        Some(AMQPValue::Timestamp(ts)) => {
            let now = now_secs();
            assert!(
                *ts + 60 >= now && *ts <= now + 60,
                "time {ts} is not near now {now}"
            );
        }
        other => panic!("x-death time: expected a timestamp, got {other:?}"),
    }
    match original_expiration {
        Some(e) => assert_eq!(header_str(t, "original-expiration"), e),
        None => assert!(
            header(t, "original-expiration").is_none(),
            "unexpected original-expiration in {t:?}"
        ),
    }
    let mut keys_present: Vec<&str> = t.inner().keys().map(|k| k.as_str()).collect();
    keys_present.sort_unstable();
    let mut expected = vec![
        "count",
        "exchange",
        "queue",
        "reason",
        "routing-keys",
        "time",
    ];
    if original_expiration.is_some() {
        expected.push("original-expiration");
    }
    expected.sort_unstable();
    assert_eq!(keys_present, expected, "x-death entry keys");
}

#[track_caller]
fn check_first_death(d: &lapin::message::Delivery, reason: &str, queue: &str, exchange: &str) {
    let h = headers(d);
    assert_eq!(header_str(&h, "x-first-death-reason"), reason);
    assert_eq!(header_str(&h, "x-first-death-queue"), queue);
    assert_eq!(header_str(&h, "x-first-death-exchange"), exchange);
}

/// A fanout dead-letter exchange with one bound queue; returns (exchange, queue).
async fn dlx_pair(ch: &lapin::Channel, prefix: &str) -> (String, String) {
    let x = new_exchange(ch, &format!("{prefix}-dlx"), ExchangeKind::Fanout).await;
    let q = declare_with(ch, &format!("{prefix}-dlq"), &[]).await;
    bind(ch, &q, &x, "").await;
    (x, q)
}

/// Next message from `q` via basic.get, waiting (bounded) for one to arrive.
async fn wait_get(ch: &lapin::Channel, q: &str) -> lapin::message::Delivery {
    let start = Instant::now();
    loop {
        if let Some(d) = get_auto(ch, q).await {
            return d;
        }
        if start.elapsed() > WAIT {
            panic!("no message arrived in {q} within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ------------------------------------------------------------------------ x-message-ttl

#[tokio::test]
async fn queue_ttl_expired_messages_are_never_delivered() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "ttl-never", &[("x-message-ttl", int(150))]).await;
    publish(&ch, "", &q, b"old").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&ch, "", &q, b"new").await;
    let mut consumer = consume(&ch, &q).await;
    let got = drain(&mut consumer, 300).await;
    assert_eq!(bodies(&got), ["new"]);
}

#[tokio::test]
async fn queue_ttl_expires_without_any_consumer_or_get() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "ttl-idle", &[("x-message-ttl", int(200))]).await;
    let start = Instant::now();
    for i in 0..3 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    // (Counts are checked by polling: RabbitMQ's declare-ok may overtake a publish.)
    wait_count(&ch, &q, 3, Duration::from_millis(150)).await;
    wait_count(&ch, &q, 0, Duration::from_secs(2)).await;
    assert!(
        start.elapsed() >= Duration::from_millis(180),
        "expired too early: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn queue_ttl_zero_delivers_only_to_a_waiting_consumer() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "ttl-zero", &[("x-message-ttl", int(0))]).await;
    publish(&ch, "", &q, b"dropped").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ready_count(&ch, &q).await, 0);
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, "", &q, b"taken").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body(&d), "taken");
}

#[tokio::test]
async fn per_message_expiration_expires_without_consumer() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "exp-msg", &[]).await;
    publish_with(&ch, "", &q, b"short", expiring("150")).await;
    publish_with(&ch, "", &q, b"long", expiring("60000")).await;
    publish(&ch, "", &q, b"forever").await;
    wait_count(&ch, &q, 3, Duration::from_millis(100)).await;
    // "short" is at the head, so it is dropped by the queue's own timer.
    wait_count(&ch, &q, 2, Duration::from_secs(2)).await;
    let got = get_all(&ch, &q).await;
    assert_eq!(got, ["long", "forever"]);
}

#[tokio::test]
async fn per_message_expiration_behind_a_live_message_waits_for_the_head() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "exp-behind", &[]).await;
    publish_with(&ch, "", &q, b"long", expiring("60000")).await;
    publish_with(&ch, "", &q, b"short", expiring("100")).await;
    wait_count(&ch, &q, 2, Duration::from_millis(100)).await;
    // RabbitMQ only expires messages at the head of the queue: the expired "short" still
    // counts as ready while "long" is in front of it...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_count(&ch, &q).await, 2);
    // ...but it is never delivered.
    assert_eq!(get_all(&ch, &q).await, ["long"]);
    assert_eq!(ready_count(&ch, &q).await, 0);
}

#[tokio::test]
async fn invalid_per_message_expiration_closes_the_channel() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    for (value, why) in [
        ("abc", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", "{leftover_string,\".5\"}"),
    ] {
        let ch = within("channel", conn.create_channel()).await.unwrap();
        let q = declare_with(&ch, "exp-bad", &[]).await;
        let mut watch = watch_channel(&ch).await;
        publish_with(&ch, "", &q, b"m", expiring(value)).await;
        assert_eq!(
            channel_close_reason(&mut watch).await,
            (
                406,
                format!("PRECONDITION_FAILED - invalid expiration '{value}': {why}")
            ),
            "expiration {value:?}"
        );
    }
}

#[tokio::test]
async fn per_message_expiration_keeps_its_property_on_delivery() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "exp-prop", &[]).await;
    publish_with(&ch, "", &q, b"a", expiring("60000")).await;
    let d = wait_get(&ch, &q).await;
    assert_eq!(
        d.properties.expiration().as_ref().map(|s| s.as_str()),
        Some("60000")
    );
}

#[tokio::test]
async fn per_message_expiration_zero_without_consumer_is_dropped() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "exp-zero", &[]).await;
    publish_with(&ch, "", &q, b"gone", expiring("0")).await;
    publish(&ch, "", &q, b"kept").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get_all(&ch, &q).await, ["kept"]);
}

#[tokio::test]
async fn per_message_expiration_zero_reaches_a_waiting_consumer() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "exp-zero-c", &[]).await;
    let mut consumer = consume(&ch, &q).await;
    publish_with(&ch, "", &q, b"now", expiring("0")).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body(&d), "now");
}

#[tokio::test]
async fn per_message_expiration_zero_dropped_when_consumer_has_no_credit() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "exp-zero-full", &[]).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, "", &q, b"first").await;
    let first = next_delivery(&mut consumer).await;
    assert_eq!(body(&first), "first");
    // The only consumer is at its prefetch limit: the "0" message cannot be taken right now.
    publish_with(&ch, "", &q, b"zero", expiring("0")).await;
    publish(&ch, "", &q, b"after").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.ack(BasicAckOptions::default()).await.unwrap();
    let next = next_delivery(&mut consumer).await;
    assert_eq!(body(&next), "after");
}

#[tokio::test]
async fn lower_of_queue_ttl_and_message_expiration_applies() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // Queue TTL 200 ms; message expiration longer than that: the queue's wins.
    let q = declare_with(&ch, "ttl-min-a", &[("x-message-ttl", int(200))]).await;
    let start = Instant::now();
    publish_with(&ch, "", &q, b"a", expiring("60000")).await;
    wait_count(&ch, &q, 1, Duration::from_millis(150)).await;
    wait_count(&ch, &q, 0, Duration::from_secs(2)).await;
    assert!(
        start.elapsed() >= Duration::from_millis(180),
        "{:?}",
        start.elapsed()
    );

    // Queue TTL 60 s; message expiration 150 ms: the message's wins.
    let q2 = declare_with(&ch, "ttl-min-b", &[("x-message-ttl", int(60_000))]).await;
    publish_with(&ch, "", &q2, b"b", expiring("150")).await;
    wait_count(&ch, &q2, 0, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn requeued_message_keeps_its_original_expiry() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "ttl-requeue", &[("x-message-ttl", int(500))]).await;
    publish(&ch, "", &q, b"b").await;
    let start_b = Instant::now();
    let held = get_msg(&ch, &q).await.expect("b is ready");
    assert_eq!(body(&held), "b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.nack(BasicNackOptions {
        requeue: true,
        multiple: false,
    })
    .await
    .unwrap();
    wait_count(&ch, &q, 1, Duration::from_millis(100)).await;
    // It expires 500 ms after it was published, not 500 ms after the requeue.
    wait_count(&ch, &q, 0, Duration::from_secs(2)).await;
    let lived = start_b.elapsed();
    assert!(
        lived >= Duration::from_millis(450) && lived < Duration::from_millis(750),
        "lived {lived:?}"
    );
}

#[tokio::test]
async fn requeued_message_past_its_expiry_is_dropped_not_redelivered() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "ttl-requeue-late").await;
    let q = declare_with(
        &ch,
        "ttl-requeue-late",
        &[
            ("x-message-ttl", int(150)),
            ("x-dead-letter-exchange", text(&dlx)),
        ],
    )
    .await;
    publish(&ch, "", &q, b"late").await;
    let held = get_msg(&ch, &q).await.expect("ready");
    // Unacked messages do not expire while held...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_count(&ch, &dlq).await, 0, "no expiry while unacked");
    held.nack(BasicNackOptions {
        requeue: true,
        multiple: false,
    })
    .await
    .unwrap();
    // ...but once back in the queue it is already past its expiry: dead-lettered as expired.
    let d = wait_get(&ch, &dlq).await;
    assert_eq!(body(&d), "late");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    check_death(&deaths[0], 1, "expired", &q, "", &[&q], None);
    assert_eq!(ready_count(&ch, &q).await, 0);
}

// ---------------------------------------------------------------------------- x-expires

async fn queue_exists(conn: &lapin::Connection, q: &str) -> Result<(), (u16, String)> {
    let ch = within("channel", conn.create_channel()).await.unwrap();
    let res = try_declare(
        &ch,
        q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    match res {
        Ok(_) => {
            let _ = ch.close(200, "bye".into()).await;
            Ok(())
        }
        Err(e) => Err((
            reply_code(&e).unwrap_or(0),
            reply_text(&e).unwrap_or_default(),
        )),
    }
}

#[tokio::test]
async fn unused_queue_is_deleted_after_x_expires() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "expires", &[("x-expires", int(200))]).await;
    publish(&ch, "", &q, b"messages do not keep it alive").await;
    // A single check before the period is over (every declare, passive or not, renews it).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(queue_exists(&conn, &q).await, Ok(()));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        queue_exists(&conn, &q).await,
        Err((404, format!("NOT_FOUND - no queue '{q}' in vhost '/'")))
    );
}

#[tokio::test]
async fn queue_with_a_consumer_is_not_expired() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "expires-used", &[("x-expires", int(200))]).await;
    let consumer = consume(&ch, &q).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(queue_exists(&conn, &q).await, Ok(()));
    // Once the consumer is gone the period starts again.
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(queue_exists(&conn, &q).await.map_err(|e| e.0), Err(404));
}

#[tokio::test]
async fn redeclare_renews_x_expires() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "expires-renew", &[("x-expires", int(300))]).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        try_declare(
            &ch,
            &q,
            QueueDeclareOptions::default(),
            table(&[("x-expires", int(300))]),
        )
        .await
        .expect("redeclare");
    }
    assert_eq!(queue_exists(&conn, &q).await, Ok(()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(queue_exists(&conn, &q).await.map_err(|e| e.0), Err(404));
}

// ---------------------------------------------------------------- max-length / overflow

async fn publish_numbered(ch: &lapin::Channel, q: &str, n: usize) {
    for i in 0..n {
        publish(ch, "", q, format!("m{i}").as_bytes()).await;
    }
}

#[tokio::test]
async fn max_length_drop_head_keeps_the_newest() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "maxlen", &[("x-max-length", int(3))]).await;
    publish_numbered(&ch, &q, 5).await;
    wait_count(&ch, &q, 3, Duration::from_secs(1)).await;
    assert_eq!(get_all(&ch, &q).await, ["m2", "m3", "m4"]);
}

#[tokio::test]
async fn max_length_zero_keeps_nothing() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "maxlen0", &[("x-max-length", int(0))]).await;
    publish_numbered(&ch, &q, 3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get_all(&ch, &q).await, Vec::<String>::new());
}

#[tokio::test]
async fn max_length_bytes_counts_body_bytes() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "maxbytes", &[("x-max-length-bytes", int(10))]).await;
    // 4-byte bodies (headers do not count): 3 would be 12 bytes, so only 2 fit.
    for b in ["aaaa", "bbbb", "cccc", "dddd"] {
        publish_with(
            &ch,
            "",
            &q,
            b.as_bytes(),
            BasicProperties::default().with_headers(table(&[("big", text(&"h".repeat(100)))])),
        )
        .await;
    }
    wait_count(&ch, &q, 2, Duration::from_secs(1)).await;
    assert_eq!(get_all(&ch, &q).await, ["cccc", "dddd"]);
}

#[tokio::test]
async fn max_length_reject_publish_nacks_and_keeps_the_oldest() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(
        &ch,
        "maxlen-reject",
        &[
            ("x-max-length", int(2)),
            ("x-overflow", text("reject-publish")),
        ],
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut results = Vec::new();
    for i in 0..4 {
        let c = publish_confirmed(
            &ch,
            "",
            &q,
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
        results.push(c.is_ack());
    }
    assert_eq!(results, [true, true, false, false]);
    assert_eq!(ready_count(&ch, &q).await, 2);
    // Room again after one is consumed.
    assert_eq!(body(&get_auto(&ch, &q).await.unwrap()), "m0");
    assert!(
        publish_confirmed(&ch, "", &q, b"m4", BasicProperties::default())
            .await
            .is_ack()
    );
    assert_eq!(get_all(&ch, &q).await, ["m1", "m4"]);
}

#[tokio::test]
async fn max_length_reject_publish_does_not_dead_letter() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "maxlen-reject-nodl").await;
    let q = declare_with(
        &ch,
        "maxlen-reject-nodl",
        &[
            ("x-max-length", int(1)),
            ("x-overflow", text("reject-publish")),
            ("x-dead-letter-exchange", text(&dlx)),
        ],
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert!(
        publish_confirmed(&ch, "", &q, b"in", BasicProperties::default())
            .await
            .is_ack()
    );
    assert!(
        publish_confirmed(&ch, "", &q, b"out", BasicProperties::default())
            .await
            .is_nack()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ready_count(&ch, &dlq).await, 0);
}

#[tokio::test]
async fn max_length_reject_publish_dlx_nacks_and_dead_letters() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "maxlen-rdlx").await;
    let q = declare_with(
        &ch,
        "maxlen-rdlx",
        &[
            ("x-max-length", int(1)),
            ("x-overflow", text("reject-publish-dlx")),
            ("x-dead-letter-exchange", text(&dlx)),
        ],
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert!(
        publish_confirmed(&ch, "", &q, b"in", BasicProperties::default())
            .await
            .is_ack()
    );
    assert!(
        publish_confirmed(&ch, "", &q, b"out", BasicProperties::default())
            .await
            .is_nack()
    );
    let d = wait_get(&ch, &dlq).await;
    assert_eq!(body(&d), "out");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    check_death(&deaths[0], 1, "maxlen", &q, "", &[&q], None);
    check_first_death(&d, "maxlen", &q, "");
    assert_eq!(get_all(&ch, &q).await, ["in"]);
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_the_oldest() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "maxlen-dl").await;
    let q = declare_with(
        &ch,
        "maxlen-dl",
        &[
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", text(&dlx)),
        ],
    )
    .await;
    publish_numbered(&ch, &q, 3).await;
    let d = wait_get(&ch, &dlq).await;
    assert_eq!(body(&d), "m0");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    check_death(&deaths[0], 1, "maxlen", &q, "", &[&q], None);
    check_first_death(&d, "maxlen", &q, "");
    assert_eq!(get_all(&ch, &q).await, ["m1", "m2"]);
}

// ------------------------------------------------------------------------ dead-lettering

#[tokio::test]
async fn reject_without_requeue_dead_letters_with_x_death() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "dl-reject").await;
    let src = new_exchange(&ch, "dl-reject-src", ExchangeKind::Direct).await;
    let q = declare_with(&ch, "dl-reject", &[("x-dead-letter-exchange", text(&dlx))]).await;
    bind(&ch, &q, &src, "rk").await;
    publish_with(
        &ch,
        &src,
        "rk",
        b"bad",
        BasicProperties::default()
            .with_headers(table(&[("mine", text("kept"))]))
            .with_message_id("id-1".into()),
    )
    .await;
    let m = loop {
        if let Some(m) = get_msg(&ch, &q).await {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    m.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let d = wait_get(&ch, &dlq).await;
    assert_eq!(body(&d), "bad");
    assert_eq!(d.routing_key.as_str(), "rk", "original routing key kept");
    assert_eq!(d.exchange.as_str(), dlx);
    assert_eq!(
        d.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("id-1")
    );
    let h = headers(&d);
    assert_eq!(header_str(&h, "mine"), "kept");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    check_death(&deaths[0], 1, "rejected", &q, &src, &["rk"], None);
    check_first_death(&d, "rejected", &q, &src);
    assert_eq!(ready_count(&ch, &q).await, 0);
}

#[tokio::test]
async fn nack_without_requeue_dead_letters_every_message_of_a_multiple_nack() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "dl-nack").await;
    let q = declare_with(&ch, "dl-nack", &[("x-dead-letter-exchange", text(&dlx))]).await;
    publish_numbered(&ch, &q, 3).await;
    let mut consumer = consume(&ch, &q).await;
    let got = drain(&mut consumer, 200).await;
    assert_eq!(got.len(), 3);
    got[2]
        .nack(BasicNackOptions {
            requeue: false,
            multiple: true,
        })
        .await
        .unwrap();
    wait_count(&ch, &dlq, 3, Duration::from_secs(1)).await;
    let d = wait_get(&ch, &dlq).await;
    assert_eq!(body(&d), "m0");
    check_death(&x_death(&d)[0], 1, "rejected", &q, "", &[&q], None);
    // A requeue=true nack never dead-letters.
    publish(&ch, "", &q, b"again").await;
    let again = next_delivery(&mut consumer).await;
    again
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    let redelivered = next_delivery(&mut consumer).await;
    assert!(redelivered.redelivered);
    assert_eq!(ready_count(&ch, &dlq).await, 2);
}

#[tokio::test]
async fn expired_message_dead_letters_with_original_expiration() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "dl-exp").await;
    let q = declare_with(&ch, "dl-exp", &[("x-dead-letter-exchange", text(&dlx))]).await;
    publish_with(&ch, "", &q, b"per-message", expiring("100")).await;
    let d = wait_get(&ch, &dlq).await;
    assert_eq!(body(&d), "per-message");
    // The expiration property is removed and remembered in x-death.
    assert_eq!(d.properties.expiration(), &None);
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    check_death(&deaths[0], 1, "expired", &q, "", &[&q], Some("100"));
    check_first_death(&d, "expired", &q, "");
}

#[tokio::test]
async fn queue_ttl_expiry_dead_letters_without_original_expiration() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "dl-qttl").await;
    let q = declare_with(
        &ch,
        "dl-qttl",
        &[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-message-ttl", int(100)),
        ],
    )
    .await;
    publish(&ch, "", &q, b"queue-ttl").await;
    let d = wait_get(&ch, &dlq).await;
    let deaths = x_death(&d);
    check_death(&deaths[0], 1, "expired", &q, "", &[&q], None);
}

#[tokio::test]
async fn dead_letter_routing_key_replaces_the_key_but_x_death_keeps_the_original() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let dlx = new_exchange(&ch, "dl-rk-x", ExchangeKind::Direct).await;
    let by_new = declare_with(&ch, "dl-rk-new", &[]).await;
    let by_old = declare_with(&ch, "dl-rk-old", &[]).await;
    bind(&ch, &by_new, &dlx, "new-key").await;
    bind(&ch, &by_old, &dlx, "old-key").await;
    let src = new_exchange(&ch, "dl-rk-src", ExchangeKind::Direct).await;
    let q = declare_with(
        &ch,
        "dl-rk",
        &[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-dead-letter-routing-key", text("new-key")),
            ("x-message-ttl", int(50)),
        ],
    )
    .await;
    bind(&ch, &q, &src, "old-key").await;
    publish(&ch, &src, "old-key", b"m").await;
    let d = wait_get(&ch, &by_new).await;
    assert_eq!(d.routing_key.as_str(), "new-key");
    check_death(&x_death(&d)[0], 1, "expired", &q, &src, &["old-key"], None);
    assert_eq!(ready_count(&ch, &by_old).await, 0);
}

#[tokio::test]
async fn dead_lettering_keeps_the_original_key_and_cc_when_no_dl_routing_key() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let dlx = new_exchange(&ch, "dl-cc-x", ExchangeKind::Direct).await;
    let a = declare_with(&ch, "dl-cc-a", &[]).await;
    let b = declare_with(&ch, "dl-cc-b", &[]).await;
    bind(&ch, &a, &dlx, "key-a").await;
    bind(&ch, &b, &dlx, "key-b").await;
    let src = new_exchange(&ch, "dl-cc-src", ExchangeKind::Direct).await;
    let q = declare_with(
        &ch,
        "dl-cc",
        &[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-message-ttl", int(50)),
        ],
    )
    .await;
    bind(&ch, &q, &src, "key-a").await;
    publish_with(
        &ch,
        &src,
        "key-a",
        b"m",
        BasicProperties::default().with_headers(table(&[(
            "CC",
            AMQPValue::FieldArray(FieldArray::from(vec![text("key-b")])),
        )])),
    )
    .await;
    // Dead-lettered with the original key and the CC key: lands in both.
    let da = wait_get(&ch, &a).await;
    let db = wait_get(&ch, &b).await;
    for d in [&da, &db] {
        assert_eq!(d.routing_key.as_str(), "key-a");
        check_death(
            &x_death(d)[0],
            1,
            "expired",
            &q,
            &src,
            &["key-a", "key-b"],
            None,
        );
    }
}

/// Sets up `src` (direct) -> queue (TTL 50 ms, DLX `dlx` direct, optional DL routing key) and
/// three queues bound to `dlx` with key-a, key-b, key-c; returns (src, queue, [a, b, c]).
async fn cc_dead_letter_setup(
    ch: &lapin::Channel,
    prefix: &str,
    dl_routing_key: Option<&str>,
) -> (String, String, Vec<String>) {
    let dlx = new_exchange(ch, &format!("{prefix}-x"), ExchangeKind::Direct).await;
    let mut targets = Vec::new();
    for key in ["key-a", "key-b", "key-c"] {
        let t = declare_with(ch, &format!("{prefix}-{key}"), &[]).await;
        bind(ch, &t, &dlx, key).await;
        targets.push(t);
    }
    let src = new_exchange(ch, &format!("{prefix}-src"), ExchangeKind::Direct).await;
    let mut args = vec![
        ("x-dead-letter-exchange", text(&dlx)),
        ("x-message-ttl", int(50)),
    ];
    if let Some(k) = dl_routing_key {
        args.push(("x-dead-letter-routing-key", text(k)));
    }
    let q = declare_with(ch, prefix, &args).await;
    bind(ch, &q, &src, "key-a").await;
    (src, q, targets)
}

fn string_array(keys: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(
        keys.iter().map(|k| text(k)).collect::<Vec<_>>(),
    ))
}

#[tokio::test]
async fn dead_lettering_reroutes_by_bcc_keys_without_listing_them() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (src, q, targets) = cc_dead_letter_setup(&ch, "dl-bcc", None).await;
    publish_with(
        &ch,
        &src,
        "key-a",
        b"m",
        BasicProperties::default().with_headers(table(&[("BCC", string_array(&["key-c"]))])),
    )
    .await;
    // The BCC header is never delivered and its keys are not listed in x-death, yet they are
    // still routing keys of the message: dead-lettering routes by them too.
    let da = wait_get(&ch, &targets[0]).await;
    let dc = wait_get(&ch, &targets[2]).await;
    for d in [&da, &dc] {
        assert_eq!(d.routing_key.as_str(), "key-a");
        assert!(header(&headers(d), "BCC").is_none());
        check_death(&x_death(d)[0], 1, "expired", &q, &src, &["key-a"], None);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ready_count(&ch, &targets[1]).await, 0);
}

#[tokio::test]
async fn dead_letter_routing_key_drops_the_cc_header() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (src, q, targets) = cc_dead_letter_setup(&ch, "dl-cc-rk", Some("key-c")).await;
    publish_with(
        &ch,
        &src,
        "key-a",
        b"m",
        BasicProperties::default().with_headers(table(&[("CC", string_array(&["key-b"]))])),
    )
    .await;
    let d = wait_get(&ch, &targets[2]).await;
    assert_eq!(d.routing_key.as_str(), "key-c");
    assert!(
        header(&headers(&d), "CC").is_none(),
        "CC removed when a dead-letter routing key is used: {:?}",
        headers(&d)
    );
    check_death(
        &x_death(&d)[0],
        1,
        "expired",
        &q,
        &src,
        &["key-a", "key-b"],
        None,
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ready_count(&ch, &targets[0]).await, 0);
    assert_eq!(ready_count(&ch, &targets[1]).await, 0);
}

#[tokio::test]
async fn repeated_death_keeps_the_first_time_exchange_and_keys() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // Self-loop by rejection; the message first arrives through `src` with key "first", then
    // comes back through the default exchange under the queue's name.
    let q = unique("dl-keep-first");
    try_declare(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        table(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&q)),
        ]),
    )
    .await
    .unwrap();
    let src = new_exchange(&ch, "dl-keep-first-src", ExchangeKind::Direct).await;
    bind(&ch, &q, &src, "first").await;
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, &src, "first", b"m").await;
    reject_next(&mut consumer).await;
    let second = next_delivery(&mut consumer).await;
    let first_time = header(&x_death(&second)[0], "time").cloned();
    let Some(AMQPValue::Timestamp(t1)) = first_time else {
        panic!("no time: {first_time:?}")
    };
    check_death(
        &x_death(&second)[0],
        1,
        "rejected",
        &q,
        &src,
        &["first"],
        None,
    );
    // Let the wall clock move to a later second before the second death.
    while now_secs() <= t1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let third = next_delivery(&mut consumer).await;
    assert_eq!(third.exchange.as_str(), "");
    assert_eq!(third.routing_key.as_str(), q);
    let deaths = x_death(&third);
    assert_eq!(deaths.len(), 1);
    // Only the count changes: time, exchange and routing-keys are those of the first death.
    check_death(&deaths[0], 2, "rejected", &q, &src, &["first"], None);
    assert_eq!(header(&deaths[0], "time"), Some(&AMQPValue::Timestamp(t1)));
}

#[tokio::test]
async fn dead_letter_to_default_exchange_by_queue_name() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let dlq = declare_with(&ch, "dl-default-target", &[]).await;
    let q = declare_with(
        &ch,
        "dl-default",
        &[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&dlq)),
        ],
    )
    .await;
    publish(&ch, "", &q, b"m").await;
    let m = loop {
        if let Some(m) = get_msg(&ch, &q).await {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    m.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let d = wait_get(&ch, &dlq).await;
    assert_eq!(d.routing_key.as_str(), dlq);
    assert_eq!(d.exchange.as_str(), "");
    check_death(&x_death(&d)[0], 1, "rejected", &q, "", &[&q], None);
}

#[tokio::test]
async fn missing_dead_letter_exchange_drops_silently() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(
        &ch,
        "dl-missing",
        &[("x-dead-letter-exchange", text(&unique("no-such-x")))],
    )
    .await;
    publish(&ch, "", &q, b"m").await;
    let m = loop {
        if let Some(m) = get_msg(&ch, &q).await {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    m.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ready_count(&ch, &q).await, 0);
    // The channel is still fine.
    publish(&ch, "", &q, b"n").await;
    wait_count(&ch, &q, 1, Duration::from_secs(1)).await;
}

/// Waits for the broker to close the channel watched by `watch` (see `watch_channel`);
/// returns the reply code and text.
async fn channel_close_reason(watch: &mut lapin::Consumer) -> (u16, String) {
    loop {
        match within("channel.close from broker", watch.next()).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return (
                    reply_code(&e).unwrap_or_else(|| panic!("not a protocol error: {e:?}")),
                    reply_text(&e).unwrap_or_default(),
                )
            }
            None => panic!("consumer ended without an error"),
        }
    }
}

/// Waits for the next delivery on `consumer` and rejects it without requeue.
async fn reject_next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    let d = next_delivery(consumer).await;
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    d
}

#[tokio::test]
async fn rejection_cycle_back_to_the_same_queue_loops_and_counts() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // The queue dead-letters to the default exchange under its own name: a cycle with a
    // rejection in it is not detected as a cycle, so the message keeps coming back.
    let q = unique("dl-self-reject");
    try_declare(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        table(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&q)),
        ]),
    )
    .await
    .unwrap();
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, "", &q, b"boomerang").await;
    let first = reject_next(&mut consumer).await;
    assert!(first.properties.headers().is_none() || x_death_opt(&first).is_none());
    for n in 1..=3 {
        let d = reject_next(&mut consumer).await;
        assert_eq!(body(&d), "boomerang");
        assert!(!d.redelivered, "a dead-lettered message is a new delivery");
        let deaths = x_death(&d);
        assert_eq!(deaths.len(), 1, "one entry per (queue, reason)");
        check_death(&deaths[0], n, "rejected", &q, "", &[&q], None);
        check_first_death(&d, "rejected", &q, "");
    }
}

fn x_death_opt(d: &lapin::message::Delivery) -> Option<AMQPValue> {
    header(&headers(d), "x-death").cloned()
}

#[tokio::test]
async fn expiry_cycle_back_to_the_same_queue_is_dropped() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let watch = declare_with(&ch, "dl-self-exp-watch", &[]).await;
    let dlx = new_exchange(&ch, "dl-self-exp-x", ExchangeKind::Fanout).await;
    let q = declare_with(
        &ch,
        "dl-self-exp",
        &[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-message-ttl", int(50)),
        ],
    )
    .await;
    bind(&ch, &q, &dlx, "").await;
    bind(&ch, &watch, &dlx, "").await;
    publish(&ch, "", &q, b"cycle").await;
    // The dead-lettered copy still reaches the other queue bound to the DLX...
    let d = wait_get(&ch, &watch).await;
    check_death(&x_death(&d)[0], 1, "expired", &q, "", &[&q], None);
    // ...but not the queue it died in: no loop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_count(&ch, &q).await, 0);
    assert_eq!(ready_count(&ch, &watch).await, 0);
}

#[tokio::test]
async fn two_queue_expiry_cycle_is_dropped_on_the_way_back() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let a = unique("dl-cyc-a");
    let b = unique("dl-cyc-b");
    let watch = declare_with(&ch, "dl-cyc-watch", &[]).await;
    let to_b = new_exchange(&ch, "dl-cyc-to-b", ExchangeKind::Fanout).await;
    let to_a = new_exchange(&ch, "dl-cyc-to-a", ExchangeKind::Fanout).await;
    for (name, dlx) in [(&a, &to_b), (&b, &to_a)] {
        try_declare(
            &ch,
            name,
            QueueDeclareOptions::default(),
            table(&[
                ("x-dead-letter-exchange", text(dlx)),
                ("x-message-ttl", int(50)),
            ]),
        )
        .await
        .unwrap();
    }
    bind(&ch, &b, &to_b, "").await;
    bind(&ch, &a, &to_a, "").await;
    bind(&ch, &watch, &to_a, "").await;
    publish(&ch, "", &a, b"ping-pong").await;
    // a --expired--> b --expired--> (a: cycle, dropped) and watch.
    let d = wait_get(&ch, &watch).await;
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 2);
    check_death(&deaths[0], 1, "expired", &b, &to_b, &[&a], None);
    check_death(&deaths[1], 1, "expired", &a, "", &[&a], None);
    check_first_death(&d, "expired", &a, "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_count(&ch, &a).await, 0);
    assert_eq!(ready_count(&ch, &b).await, 0);
    assert_eq!(ready_count(&ch, &watch).await, 0);
}

#[tokio::test]
async fn retry_loop_through_a_ttl_queue_counts_each_pass() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let work_x = new_exchange(&ch, "retry-work-x", ExchangeKind::Direct).await;
    let retry_x = new_exchange(&ch, "retry-retry-x", ExchangeKind::Direct).await;
    let work = declare_with(
        &ch,
        "retry-work",
        &[("x-dead-letter-exchange", text(&retry_x))],
    )
    .await;
    let retry = declare_with(
        &ch,
        "retry-wait",
        &[
            ("x-message-ttl", int(100)),
            ("x-dead-letter-exchange", text(&work_x)),
        ],
    )
    .await;
    bind(&ch, &work, &work_x, "job").await;
    bind(&ch, &retry, &retry_x, "job").await;
    let mut consumer = consume(&ch, &work).await;
    publish(&ch, &work_x, "job", b"task").await;
    let first = reject_next(&mut consumer).await;
    assert!(x_death_opt(&first).is_none());
    for n in 1..=3 {
        let d = reject_next(&mut consumer).await;
        assert_eq!(body(&d), "task");
        assert_eq!(d.routing_key.as_str(), "job");
        assert_eq!(d.exchange.as_str(), work_x);
        let deaths = x_death(&d);
        assert_eq!(deaths.len(), 2, "{deaths:?}");
        // Most recent death first: it just expired in the retry queue.
        check_death(&deaths[0], n, "expired", &retry, &retry_x, &["job"], None);
        check_death(&deaths[1], n, "rejected", &work, &work_x, &["job"], None);
        check_first_death(&d, "rejected", &work, &work_x);
    }
}

// ------------------------------------------------------------------------ x-max-priority

fn prio(p: u8) -> BasicProperties {
    BasicProperties::default().with_priority(p)
}

#[tokio::test]
async fn priority_queue_delivers_highest_first_fifo_within_a_priority() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "prio", &[("x-max-priority", int(10))]).await;
    let msgs = [
        ("low-1", Some(1)),
        ("none-1", None),
        ("high-1", Some(9)),
        ("mid-1", Some(5)),
        ("high-2", Some(9)),
        ("low-2", Some(1)),
        ("none-2", None),
        ("mid-2", Some(5)),
    ];
    for (b, p) in msgs {
        let props = match p {
            Some(p) => prio(p),
            None => BasicProperties::default(),
        };
        publish_with(&ch, "", &q, b.as_bytes(), props).await;
    }
    wait_count(&ch, &q, 8, Duration::from_secs(1)).await;
    let mut consumer = consume(&ch, &q).await;
    let got = drain(&mut consumer, 200).await;
    // No priority property counts as priority 0.
    assert_eq!(
        bodies(&got),
        ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2", "none-1", "none-2"]
    );
    assert_eq!(got[0].properties.priority(), &Some(9));
}

#[tokio::test]
async fn priority_above_the_maximum_counts_as_the_maximum() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "prio-cap", &[("x-max-priority", int(5))]).await;
    publish_with(&ch, "", &q, b"at-max", prio(5)).await;
    publish_with(&ch, "", &q, b"above-max", prio(200)).await;
    publish_with(&ch, "", &q, b"below", prio(4)).await;
    wait_count(&ch, &q, 3, Duration::from_secs(1)).await;
    let mut consumer = consume(&ch, &q).await;
    let got = drain(&mut consumer, 200).await;
    assert_eq!(bodies(&got), ["at-max", "above-max", "below"]);
    // The property itself is delivered unchanged.
    assert_eq!(got[1].properties.priority(), &Some(200));
}

#[tokio::test]
async fn queue_without_max_priority_ignores_priorities() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "prio-none", &[]).await;
    publish_with(&ch, "", &q, b"a", prio(1)).await;
    publish_with(&ch, "", &q, b"b", prio(9)).await;
    wait_count(&ch, &q, 2, Duration::from_secs(1)).await;
    assert_eq!(get_all(&ch, &q).await, ["a", "b"]);
}

#[tokio::test]
async fn priority_with_prefetch_one_hands_out_the_highest_waiting_next() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "prio-qos", &[("x-max-priority", int(10))]).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, &q).await;
    publish_with(&ch, "", &q, b"first-low", prio(1)).await;
    let first = next_delivery(&mut consumer).await;
    assert_eq!(body(&first), "first-low");
    publish_with(&ch, "", &q, b"low", prio(1)).await;
    publish_with(&ch, "", &q, b"high", prio(8)).await;
    publish_with(&ch, "", &q, b"mid", prio(4)).await;
    wait_count(&ch, &q, 3, Duration::from_secs(1)).await;
    let mut order = Vec::new();
    let mut current = first;
    for _ in 0..3 {
        current.ack(BasicAckOptions::default()).await.unwrap();
        current = next_delivery(&mut consumer).await;
        order.push(body(&current));
    }
    assert_eq!(order, ["high", "mid", "low"]);
}

#[tokio::test]
async fn requeued_message_goes_back_by_priority() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "prio-requeue", &[("x-max-priority", int(10))]).await;
    publish_with(&ch, "", &q, b"high", prio(9)).await;
    publish_with(&ch, "", &q, b"low", prio(1)).await;
    wait_count(&ch, &q, 2, Duration::from_secs(1)).await;
    let h = get_msg(&ch, &q).await.unwrap();
    assert_eq!(body(&h), "high");
    publish_with(&ch, "", &q, b"mid", prio(5)).await;
    wait_count(&ch, &q, 2, Duration::from_secs(1)).await;
    h.reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    wait_count(&ch, &q, 3, Duration::from_secs(1)).await;
    assert_eq!(get_all(&ch, &q).await, ["high", "mid", "low"]);
}

// --------------------------------------------------------------- single active consumer

#[tokio::test]
async fn single_active_consumer_fails_over_with_unacked_messages() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "sac", &[("x-single-active-consumer", boolean(true))]).await;
    let (conn_a, ch_a) = connect_channel(&broker).await;
    let (_conn_b, ch_b) = connect_channel(&broker).await;
    let mut a = consume(&ch_a, &q).await;
    let mut b = consume(&ch_b, &q).await;
    publish_numbered(&ch, &q, 4).await;
    let got_a = drain(&mut a, 300).await;
    assert_eq!(bodies(&got_a), ["m0", "m1", "m2", "m3"]);
    expect_no_delivery(&mut b, 100).await;
    // A acks two and dies holding the other two.
    got_a[1]
        .ack(BasicAckOptions { multiple: true })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn_a.close(200, "bye".into()).await.unwrap();
    let taken_over = drain(&mut b, 300).await;
    assert_eq!(bodies(&taken_over), ["m2", "m3"]);
    assert!(taken_over.iter().all(|d| d.redelivered));
    publish(&ch, "", &q, b"m4").await;
    let d = next_delivery(&mut b).await;
    assert_eq!(body(&d), "m4");
    assert!(!d.redelivered);
}

#[tokio::test]
async fn single_active_consumer_cancel_hands_over_to_the_next() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(
        &ch,
        "sac-cancel",
        &[("x-single-active-consumer", boolean(true))],
    )
    .await;
    let (_conn_b, ch_b) = connect_channel(&broker).await;
    let a = consume(&ch, &q).await;
    let mut b = consume(&ch_b, &q).await;
    publish(&ch, "", &q, b"to-a").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    expect_no_delivery(&mut b, 50).await;
    ch.basic_cancel(a.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish(&ch, "", &q, b"to-b").await;
    let d = next_delivery(&mut b).await;
    assert_eq!(body(&d), "to-b");
}

#[tokio::test]
async fn queue_without_single_active_consumer_round_robins() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "no-sac", &[]).await;
    let (_conn_b, ch_b) = connect_channel(&broker).await;
    let mut a = consume(&ch, &q).await;
    let mut b = consume(&ch_b, &q).await;
    publish_numbered(&ch, &q, 4).await;
    let got_a = drain(&mut a, 200).await;
    let got_b = drain(&mut b, 100).await;
    assert_eq!(got_a.len(), 2);
    assert_eq!(got_b.len(), 2);
}

// ------------------------------------------------------------------- consumer priorities

fn consumer_priority(p: i32) -> FieldTable {
    table(&[("x-priority", int(p))])
}

#[tokio::test]
async fn higher_priority_consumer_gets_messages_while_it_has_credit() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "cprio", &[]).await;
    let (_ch_conn, ch_high) = connect_channel(&broker).await;
    let (_cl_conn, ch_low) = connect_channel(&broker).await;
    ch_high
        .basic_qos(2, BasicQosOptions::default())
        .await
        .unwrap();
    ch_low
        .basic_qos(10, BasicQosOptions::default())
        .await
        .unwrap();
    let mut low = consume_with(&ch_low, &q, false, consumer_priority(1)).await;
    let mut high = consume_with(&ch_high, &q, false, consumer_priority(10)).await;
    publish_numbered(&ch, &q, 5).await;
    let got_high = drain(&mut high, 300).await;
    let got_low = drain(&mut low, 100).await;
    assert_eq!(bodies(&got_high), ["m0", "m1"]);
    assert_eq!(bodies(&got_low), ["m2", "m3", "m4"]);
    // With credit again, the high-priority consumer is preferred again.
    got_high[1]
        .ack(BasicAckOptions { multiple: true })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&ch, "", &q, b"m5").await;
    assert_eq!(body(&next_delivery(&mut high).await), "m5");
    expect_no_delivery(&mut low, 100).await;
}

#[tokio::test]
async fn consumers_of_equal_priority_share_and_default_priority_is_zero() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "cprio-neg", &[]).await;
    let (_c1, ch_default) = connect_channel(&broker).await;
    let (_c2, ch_neg) = connect_channel(&broker).await;
    let mut neg = consume_with(&ch_neg, &q, false, consumer_priority(-5)).await;
    let mut default = consume(&ch_default, &q).await;
    publish_numbered(&ch, &q, 4).await;
    // Unlimited prefetch: the default (0) consumer always has credit, so it gets everything.
    assert_eq!(drain(&mut default, 300).await.len(), 4);
    expect_no_delivery(&mut neg, 50).await;
}

// ------------------------------------------------------------------- argument validation

/// Declares queue `name` with one argument on a fresh channel; returns (code, text) of the
/// error, or None when accepted (the queue is then deleted again).
async fn declare_error(
    conn: &lapin::Connection,
    name: &str,
    durable: bool,
    arg: &str,
    value: AMQPValue,
) -> Option<(u16, String)> {
    let ch = within("channel", conn.create_channel()).await.unwrap();
    let res = try_declare(
        &ch,
        name,
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        table(&[(arg, value)]),
    )
    .await;
    match res {
        Ok(_) => {
            ch.queue_delete(name.into(), QueueDeleteOptions::default())
                .await
                .unwrap();
            None
        }
        Err(e) => {
            assert!(is_soft(&e), "argument errors close the channel only: {e:?}");
            Some((reply_code(&e).unwrap(), reply_text(&e).unwrap()))
        }
    }
}

#[tokio::test]
async fn invalid_queue_arguments_are_406_naming_the_argument() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let q = unique("badarg");
    let invalid = |arg: &str, why: &str| {
        format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {why}")
    };
    let expected_integer = "\"expected integer, got longstr\"";
    let cases: Vec<(&str, AMQPValue, String)> = vec![
        (
            "x-max-priority",
            int(300),
            invalid("x-max-priority", "{max_value_exceeded,300}"),
        ),
        (
            "x-max-priority",
            int(256),
            invalid("x-max-priority", "{max_value_exceeded,256}"),
        ),
        (
            "x-max-priority",
            int(-1),
            invalid("x-max-priority", "{value_negative,-1}"),
        ),
        (
            "x-max-priority",
            text("high"),
            invalid("x-max-priority", expected_integer),
        ),
        (
            "x-message-ttl",
            int(-1),
            invalid("x-message-ttl", "{value_negative,-1}"),
        ),
        (
            "x-message-ttl",
            text("100"),
            invalid("x-message-ttl", expected_integer),
        ),
        ("x-expires", int(0), invalid("x-expires", "{value_zero,0}")),
        (
            "x-expires",
            int(-1),
            invalid("x-expires", "{value_negative,-1}"),
        ),
        (
            "x-expires",
            text("x"),
            invalid("x-expires", expected_integer),
        ),
        (
            "x-max-length",
            int(-1),
            invalid("x-max-length", "{value_negative,-1}"),
        ),
        (
            "x-max-length",
            text("x"),
            invalid("x-max-length", expected_integer),
        ),
        (
            "x-max-length-bytes",
            int(-1),
            invalid("x-max-length-bytes", "{value_negative,-1}"),
        ),
        (
            "x-overflow",
            text("bogus"),
            invalid("x-overflow", "invalid_overflow"),
        ),
        (
            "x-overflow",
            int(1),
            invalid("x-overflow", "{unacceptable_type,signedint}"),
        ),
        (
            "x-dead-letter-exchange",
            int(1),
            format!(
                "PRECONDITION_FAILED - invalid type 'signedint' for arg \
                 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"
            ),
        ),
        (
            "x-dead-letter-routing-key",
            text("k"),
            invalid(
                "x-dead-letter-routing-key",
                "routing_key_but_no_dlx_defined",
            ),
        ),
        (
            "x-single-active-consumer",
            text("yes"),
            invalid("x-single-active-consumer", "{unacceptable_type,longstr}"),
        ),
        (
            "x-single-active-consumer",
            int(1),
            invalid("x-single-active-consumer", "{unacceptable_type,signedint}"),
        ),
        (
            "x-queue-mode",
            text("bogus"),
            invalid("x-queue-mode", "\"unsupported queue mode 'bogus'\""),
        ),
        (
            "x-queue-type",
            text("bogus"),
            invalid("x-queue-type", "\"unsupported queue type 'bogus'\""),
        ),
    ];
    let mut failures = Vec::new();
    for (arg, value, expected) in cases {
        let got = declare_error(&conn, &q, false, arg, value.clone()).await;
        if got != Some((406, expected.clone())) {
            failures.push(format!(
                "{arg}={value:?}: got {got:?}, expected 406 {expected}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn accepted_queue_arguments() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let q = unique("goodarg");
    let cases: Vec<(&str, AMQPValue)> = vec![
        ("x-queue-mode", text("lazy")),
        ("x-queue-mode", text("default")),
        ("x-queue-type", text("classic")),
        ("x-max-priority", int(255)),
        ("x-max-priority", AMQPValue::ShortShortUInt(10)),
        ("x-max-priority", long(10)),
        ("x-message-ttl", long(0)),
        ("x-max-length", AMQPValue::ShortInt(5)),
        ("x-overflow", text("drop-head")),
        ("x-overflow", text("reject-publish")),
        ("x-overflow", text("reject-publish-dlx")),
        ("x-single-active-consumer", boolean(false)),
        ("x-dead-letter-exchange", text("")),
        // Unknown x- arguments are stored and ignored.
        ("x-unknown-argument", text("whatever")),
    ];
    for (arg, value) in cases {
        assert_eq!(
            declare_error(&conn, &q, false, arg, value.clone()).await,
            None,
            "{arg}={value:?}"
        );
    }
}

#[tokio::test]
async fn lazy_and_classic_queues_work_normally() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let lazy = declare_with(&ch, "lazy", &[("x-queue-mode", text("lazy"))]).await;
    let classic = declare_with(&ch, "classic", &[("x-queue-type", text("classic"))]).await;
    for q in [&lazy, &classic] {
        publish_numbered(&ch, q, 3).await;
        wait_count(&ch, q, 3, Duration::from_secs(1)).await;
        assert_eq!(get_all(&ch, q).await, ["m0", "m1", "m2"]);
    }
}

#[tokio::test]
async fn quorum_queue_type_is_refused_by_warren() {
    let broker = Broker::start();
    if broker.is_external() {
        eprintln!("skipped: RabbitMQ supports quorum queues; Warren must refuse them");
        return;
    }
    let conn = connect(&broker).await;
    let q = unique("quorum");
    let got = declare_error(&conn, &q, true, "x-queue-type", text("quorum")).await;
    let (code, text) = got.expect("quorum queue declare must fail on Warren");
    assert_eq!(code, 406);
    assert!(
        text.starts_with("PRECONDITION_FAILED - ") && text.contains("x-queue-type"),
        "{text}"
    );
}

#[tokio::test]
async fn quorum_and_stream_need_durable_queues_on_rabbitmq() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let q = unique("quorum-nd");
    // Non-durable quorum/stream: RabbitMQ refuses with this text. (Warren refuses quorum in
    // any case, so only the code is common ground.)
    for kind in ["quorum", "stream"] {
        let got = declare_error(&conn, &q, false, "x-queue-type", text(kind)).await;
        let (code, msg) = got.expect("non-durable quorum/stream queue must be refused");
        assert_eq!(code, 406, "{msg}");
        if broker.is_external() {
            assert_eq!(
                msg,
                format!("PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'")
            );
        }
    }
}

#[tokio::test]
async fn consumer_priority_must_be_an_integer() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "cprio-bad", &[]).await;
    let err = within(
        "basic.consume",
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[("x-priority", text("high"))]),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!(
            "PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': \
             \"expected integer, got longstr\""
        )
    );
}

// ------------------------------------------- exchange-to-exchange, alternate, internal

#[tokio::test]
async fn exchange_to_exchange_bindings_for_every_source_type() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let hdr = |v: &str| table(&[("kind", text(v))]);
    // (source type, binding key, binding args, routing key, message headers, should route)
    let cases: Vec<(ExchangeKind, &str, FieldTable, &str, FieldTable, bool)> = vec![
        (
            ExchangeKind::Direct,
            "k",
            FieldTable::default(),
            "k",
            FieldTable::default(),
            true,
        ),
        (
            ExchangeKind::Direct,
            "k",
            FieldTable::default(),
            "other",
            FieldTable::default(),
            false,
        ),
        (
            ExchangeKind::Fanout,
            "",
            FieldTable::default(),
            "anything",
            FieldTable::default(),
            true,
        ),
        (
            ExchangeKind::Topic,
            "a.*.c",
            FieldTable::default(),
            "a.b.c",
            FieldTable::default(),
            true,
        ),
        (
            ExchangeKind::Topic,
            "a.*.c",
            FieldTable::default(),
            "a.b.d",
            FieldTable::default(),
            false,
        ),
        (ExchangeKind::Headers, "", hdr("yes"), "", hdr("yes"), true),
        (ExchangeKind::Headers, "", hdr("yes"), "", hdr("no"), false),
    ];
    for (i, (kind, bkey, bargs, rkey, mheaders, routes)) in cases.into_iter().enumerate() {
        let src = new_exchange(&ch, "e2e-src", kind.clone()).await;
        // The destination is a fanout so only the source's routing decides.
        let dest = new_exchange(&ch, "e2e-dest", ExchangeKind::Fanout).await;
        let q = declare_with(&ch, "e2e-q", &[]).await;
        bind(&ch, &q, &dest, "").await;
        bind_exchange(&ch, &dest, &src, bkey, bargs).await;
        publish_with(
            &ch,
            &src,
            rkey,
            b"m",
            BasicProperties::default().with_headers(mheaders),
        )
        .await;
        let n = if routes { 1 } else { 0 };
        if routes {
            wait_count(&ch, &q, 1, Duration::from_secs(1)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            ready_count(&ch, &q).await,
            n,
            "case {i}: {kind:?} {bkey} -> {rkey}"
        );
    }
}

#[tokio::test]
async fn exchange_to_exchange_chain_keeps_the_routing_key_and_delivers_once() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let a = new_exchange(&ch, "e2e-a", ExchangeKind::Topic).await;
    let b = new_exchange(&ch, "e2e-b", ExchangeKind::Direct).await;
    let c = new_exchange(&ch, "e2e-c", ExchangeKind::Fanout).await;
    let q = declare_with(&ch, "e2e-chain", &[]).await;
    bind_exchange(&ch, &b, &a, "orders.#", FieldTable::default()).await;
    bind_exchange(&ch, &c, &b, "orders.eu.new", FieldTable::default()).await;
    bind(&ch, &q, &c, "").await;
    // Two paths to the same queue still give one copy.
    bind(&ch, &q, &a, "#").await;
    publish(&ch, &a, "orders.eu.new", b"m").await;
    publish(&ch, &a, "orders.us.new", b"n").await;
    wait_count(&ch, &q, 2, Duration::from_secs(1)).await;
    let d = get_auto(&ch, &q).await.unwrap();
    assert_eq!(d.routing_key.as_str(), "orders.eu.new");
    assert_eq!(
        d.exchange.as_str(),
        a,
        "delivery names the exchange published to"
    );
    assert_eq!(get_all(&ch, &q).await, ["n"]);
}

#[tokio::test]
async fn exchange_binding_cycle_delivers_once() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let a = new_exchange(&ch, "e2e-cyc-a", ExchangeKind::Fanout).await;
    let b = new_exchange(&ch, "e2e-cyc-b", ExchangeKind::Fanout).await;
    let q = declare_with(&ch, "e2e-cyc", &[]).await;
    bind_exchange(&ch, &b, &a, "", FieldTable::default()).await;
    bind_exchange(&ch, &a, &b, "", FieldTable::default()).await;
    bind(&ch, &q, &b, "").await;
    publish(&ch, &a, "", b"m").await;
    wait_count(&ch, &q, 1, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ready_count(&ch, &q).await, 1);
}

async fn declare_exchange_with_ae(
    ch: &lapin::Channel,
    prefix: &str,
    kind: ExchangeKind,
    ae: &str,
) -> String {
    let name = unique(prefix);
    declare_exchange(ch, &name, kind, table(&[("alternate-exchange", text(ae))])).await;
    name
}

#[tokio::test]
async fn chained_alternate_exchanges() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let last = new_exchange(&ch, "ae-last", ExchangeKind::Fanout).await;
    let catch_all = declare_with(&ch, "ae-catch-all", &[]).await;
    bind(&ch, &catch_all, &last, "").await;
    // middle: a direct AE (itself with an AE) that only routes "mid".
    let middle = declare_exchange_with_ae(&ch, "ae-middle", ExchangeKind::Direct, &last).await;
    let mid_q = declare_with(&ch, "ae-mid-q", &[]).await;
    bind(&ch, &mid_q, &middle, "mid").await;
    let main = declare_exchange_with_ae(&ch, "ae-main", ExchangeKind::Direct, &middle).await;
    let main_q = declare_with(&ch, "ae-main-q", &[]).await;
    bind(&ch, &main_q, &main, "main").await;

    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for key in ["main", "mid", "other"] {
        let pc = within(
            "basic.publish",
            ch.basic_publish(
                main.as_str().into(),
                key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                key.as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
        // Routed via an alternate exchange counts as routed: acked, not returned.
        assert_eq!(
            within("confirm", pc).await.unwrap(),
            Confirmation::Ack(None),
            "{key}"
        );
    }
    assert_eq!(get_all(&ch, &main_q).await, ["main"]);
    assert_eq!(get_all(&ch, &mid_q).await, ["mid"]);
    assert_eq!(get_all(&ch, &catch_all).await, ["other"]);
}

#[tokio::test]
async fn alternate_exchange_of_an_exchange_reached_by_binding_is_also_used() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // RabbitMQ applies the alternate exchange of every exchange the message passes through
    // that routes it nowhere, not only of the exchange it was published to.
    let ae = new_exchange(&ch, "ae-inner", ExchangeKind::Fanout).await;
    let ae_q = declare_with(&ch, "ae-inner-q", &[]).await;
    bind(&ch, &ae_q, &ae, "").await;
    let inner = declare_exchange_with_ae(&ch, "ae-dest", ExchangeKind::Direct, &ae).await;
    let outer = new_exchange(&ch, "ae-outer", ExchangeKind::Fanout).await;
    bind_exchange(&ch, &inner, &outer, "", FieldTable::default()).await;
    publish(&ch, &outer, "nomatch", b"via-outer").await;
    publish(&ch, &inner, "nomatch", b"direct").await;
    wait_count(&ch, &ae_q, 2, Duration::from_secs(1)).await;
    assert_eq!(get_all(&ch, &ae_q).await, ["via-outer", "direct"]);
}

#[tokio::test]
async fn internal_exchange_refuses_publish_but_routes_via_exchange_binding() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let internal = unique("internal");
    within(
        "exchange.declare",
        ch.exchange_declare(
            internal.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                internal: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let q = declare_with(&ch, "internal-q", &[]).await;
    bind(&ch, &q, &internal, "").await;
    let front = new_exchange(&ch, "internal-front", ExchangeKind::Direct).await;
    bind_exchange(&ch, &internal, &front, "k", FieldTable::default()).await;
    publish(&ch, &front, "k", b"via-binding").await;
    wait_count(&ch, &q, 1, Duration::from_secs(1)).await;

    let (_c2, ch2) = connect_channel(&broker).await;
    let mut watch = watch_channel(&ch2).await;
    publish(&ch2, &internal, "", b"direct").await;
    assert_eq!(
        channel_close_reason(&mut watch).await,
        (
            403,
            format!(
                "ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'"
            )
        )
    );
    assert_eq!(get_all(&ch, &q).await, ["via-binding"]);
}

// ------------------------------------------------------------------ x-consistent-hash

fn consistent_hash() -> ExchangeKind {
    ExchangeKind::Custom("x-consistent-hash".into())
}

/// A small xorshift generator: random-looking routing keys without extra dependencies.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> XorShift {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        XorShift(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A consistent-hash exchange (with `args`) and one queue per weight, bound with the weight as
/// its binding key.
async fn hash_setup(
    ch: &lapin::Channel,
    prefix: &str,
    args: FieldTable,
    weights: &[u32],
) -> (String, Vec<String>) {
    let x = unique(prefix);
    declare_exchange(ch, &x, consistent_hash(), args).await;
    let mut queues = Vec::new();
    for w in weights {
        let q = declare_with(ch, &format!("{prefix}-w{w}"), &[]).await;
        bind(ch, &q, &x, &w.to_string()).await;
        queues.push(q);
    }
    (x, queues)
}

async fn counts(ch: &lapin::Channel, queues: &[String]) -> Vec<u32> {
    let mut out = Vec::new();
    for q in queues {
        out.push(ready_count(ch, q).await);
    }
    out
}

/// Polls until the queues together hold `total` messages; returns the per-queue counts.
async fn wait_total(ch: &lapin::Channel, queues: &[String], total: u32) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let c = counts(ch, queues).await;
        if c.iter().sum::<u32>() == total {
            return c;
        }
        if start.elapsed() > WAIT {
            panic!("queues hold {c:?}, expected {total} in all");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn consistent_hash_distributes_by_weight_one_queue_per_message() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let weights = [1u32, 2, 3];
    let (x, queues) = hash_setup(&ch, "chash", FieldTable::default(), &weights).await;
    let mut rng = XorShift::seeded();
    let n = 2000u32;
    for _ in 0..n {
        let key = format!("key-{:x}", rng.next());
        publish(&ch, &x, &key, b"m").await;
    }
    // Each message goes to exactly one queue...
    let got = wait_total(&ch, &queues, n).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counts(&ch, &queues).await, got, "no extra copies");
    // ...and the share follows the weights (loose bounds: +-25%).
    let total_weight: u32 = weights.iter().sum();
    for (w, c) in weights.iter().zip(&got) {
        let expected = f64::from(n) * f64::from(*w) / f64::from(total_weight);
        let c = f64::from(*c);
        assert!(
            c > expected * 0.75 && c < expected * 1.25,
            "weight {w}: got {c}, expected about {expected} (all: {got:?})"
        );
    }
}

#[tokio::test]
async fn consistent_hash_same_routing_key_same_queue() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (x, queues) = hash_setup(&ch, "chash-stable", FieldTable::default(), &[1, 1, 1, 1]).await;
    let mut rng = XorShift::seeded();
    for _ in 0..5 {
        let key = format!("order-{}", rng.next());
        for _ in 0..10 {
            publish(&ch, &x, &key, b"m").await;
        }
        // All ten copies of this key land in one queue.
        let c = wait_total(&ch, &queues, 10).await;
        assert_eq!(
            c.iter().filter(|&&n| n > 0).count(),
            1,
            "key {key} spread over {c:?}"
        );
        for q in &queues {
            while get_auto(&ch, q).await.is_some() {}
        }
    }
}

#[tokio::test]
async fn consistent_hash_on_a_header() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let (x, queues) = hash_setup(
        &ch,
        "chash-hdr",
        table(&[("hash-header", text("user"))]),
        &[1, 1, 1],
    )
    .await;
    let user = |u: &str| BasicProperties::default().with_headers(table(&[("user", text(u))]));
    // Same header value, different routing keys: always the same queue.
    for i in 0..20 {
        publish_with(&ch, &x, &format!("rk-{i}"), b"alice", user("alice")).await;
    }
    let c = wait_total(&ch, &queues, 20).await;
    assert_eq!(c.iter().filter(|&&n| n > 0).count(), 1, "{c:?}");
    for q in &queues {
        while get_auto(&ch, q).await.is_some() {}
    }
    // Different header values, same routing key: spread over the queues.
    let mut rng = XorShift::seeded();
    for _ in 0..300 {
        publish_with(&ch, &x, "same", b"m", user(&format!("u{}", rng.next()))).await;
    }
    let c = wait_total(&ch, &queues, 300).await;
    assert!(c.iter().all(|&n| n > 30), "header values spread: {c:?}");
    for q in &queues {
        while get_auto(&ch, q).await.is_some() {}
    }
    // Without the header the message is still routed: every such message (whatever its
    // routing key) hashes to the same one queue.
    for i in 0..10 {
        publish(&ch, &x, &format!("rk-{i}"), b"no-header").await;
    }
    let c = wait_total(&ch, &queues, 10).await;
    assert_eq!(c.iter().filter(|&&n| n > 0).count(), 1, "{c:?}");
}

#[tokio::test]
async fn consistent_hash_binding_key_must_be_a_positive_integer() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let ch = within("channel", conn.create_channel()).await.unwrap();
    let x = unique("chash-bad");
    declare_exchange(&ch, &x, consistent_hash(), FieldTable::default()).await;
    let q = declare_with(&ch, "chash-bad-q", &[]).await;
    for (key, expected) in [
        (
            "abc",
            "PRECONDITION_FAILED - The binding key must be an integer: <<\"abc\">>",
        ),
        (
            "",
            "PRECONDITION_FAILED - The binding key must be an integer: <<>>",
        ),
        (
            "0",
            "PRECONDITION_FAILED - The binding key must be greater than 0",
        ),
        (
            "-3",
            "PRECONDITION_FAILED - The binding key must be greater than 0",
        ),
    ] {
        let ch = within("channel", conn.create_channel()).await.unwrap();
        let err = within(
            "queue.bind",
            ch.queue_bind(
                q.as_str().into(),
                x.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(reply_code(&err), Some(406), "key {key:?}: {err:?}");
        assert_eq!(reply_text(&err).unwrap(), expected, "key {key:?}");
    }
}

#[tokio::test]
async fn consistent_hash_argument_errors() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    for (args, expected) in [
        (
            table(&[("hash-property", text("nope"))]),
            "PRECONDITION_FAILED - Unsupported property: nope".to_string(),
        ),
        (
            table(&[
                ("hash-property", text("message_id")),
                ("hash-header", text("h")),
            ]),
            "PRECONDITION_FAILED - hash-header and hash-property are mutually exclusive"
                .to_string(),
        ),
    ] {
        let ch = within("channel", conn.create_channel()).await.unwrap();
        let err = within(
            "exchange.declare",
            ch.exchange_declare(
                unique("chash-arg").as_str().into(),
                consistent_hash(),
                ExchangeDeclareOptions::default(),
                args,
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(reply_code(&err), Some(406), "{err:?}");
        assert_eq!(reply_text(&err).unwrap(), expected);
    }
}

// ------------------------------------------------------------------- direct reply-to

#[tokio::test]
async fn direct_reply_to_rpc_round_trip() {
    let broker = Broker::start();
    let (_sc, server_ch) = connect_channel(&broker).await;
    let rpc_q = declare_with(&server_ch, "rpc", &[]).await;
    let mut server = consume(&server_ch, &rpc_q).await;

    let (_cc, client_ch) = connect_channel(&broker).await;
    let mut replies = within(
        "basic.consume reply-to",
        client_ch.basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("consume amq.rabbitmq.reply-to");
    publish_with(
        &client_ch,
        "",
        &rpc_q,
        b"2+2",
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("c-1".into()),
    )
    .await;

    let req = next_delivery(&mut server).await;
    assert_eq!(body(&req), "2+2");
    let reply_to = req
        .properties
        .reply_to()
        .as_ref()
        .expect("reply_to")
        .to_string();
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > 30,
        "rewritten reply-to: {reply_to}"
    );
    publish_with(
        &server_ch,
        "",
        &reply_to,
        b"4",
        BasicProperties::default().with_correlation_id("c-1".into()),
    )
    .await;
    req.ack(BasicAckOptions::default()).await.unwrap();

    let reply = next_delivery(&mut replies).await;
    assert_eq!(body(&reply), "4");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("c-1")
    );
    assert_eq!(reply.exchange.as_str(), "");
    assert_eq!(reply.routing_key.as_str(), reply_to);
}

// ----------------------------------------------------------------------------- policies

/// Policy tests run against RabbitMQ, and against Warren once `warren ctl set_policy` exists.
fn skip_policies(broker: &Broker) -> bool {
    if policies_supported(broker) {
        return false;
    }
    eprintln!(
        "skipped: expected to fail on Warren until `warren ctl set_policy` exists \
         (set WARREN_CTL_READY=1 to run)"
    );
    true
}

/// `^name$` as a policy pattern (queue names from `unique` have no regex metacharacters).
fn exactly(name: &str) -> String {
    format!("^{name}$")
}

#[tokio::test]
async fn policy_message_ttl() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let q = unique("pol-ttl");
    let _p = set_policy(
        &broker,
        &q,
        &exactly(&q),
        r#"{"message-ttl":150}"#,
        "queues",
        0,
    );
    let (_c, ch) = connect_channel(&broker).await;
    declare_with_name(&ch, &q, &[]).await;
    publish(&ch, "", &q, b"m").await;
    wait_count(&ch, &q, 1, Duration::from_millis(100)).await;
    wait_count(&ch, &q, 0, Duration::from_secs(2)).await;
}

async fn declare_with_name(ch: &lapin::Channel, q: &str, args: &[(&str, AMQPValue)]) {
    try_declare(ch, q, QueueDeclareOptions::default(), table(args))
        .await
        .unwrap_or_else(|e| panic!("declare {q}: {e:?}"));
}

#[tokio::test]
async fn policy_max_length() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let q = unique("pol-maxlen");
    let _p = set_policy(
        &broker,
        &q,
        &exactly(&q),
        r#"{"max-length":2}"#,
        "queues",
        0,
    );
    let (_c, ch) = connect_channel(&broker).await;
    declare_with_name(&ch, &q, &[]).await;
    publish_numbered(&ch, &q, 4).await;
    wait_count(&ch, &q, 2, Duration::from_secs(1)).await;
    assert_eq!(get_all(&ch, &q).await, ["m2", "m3"]);
}

#[tokio::test]
async fn policy_applies_to_an_existing_queue_and_clearing_it_lifts_the_limit() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "pol-dyn", &[]).await;
    publish_numbered(&ch, &q, 5).await;
    wait_count(&ch, &q, 5, Duration::from_secs(1)).await;
    let p = set_policy(
        &broker,
        &q,
        &exactly(&q),
        r#"{"max-length":2}"#,
        "queues",
        0,
    );
    // The queue is cut down to the new limit right away (oldest dropped).
    wait_count(&ch, &q, 2, Duration::from_secs(2)).await;
    clear_policy(&broker, p);
    publish_numbered(&ch, &q, 3).await;
    wait_count(&ch, &q, 5, Duration::from_secs(2)).await;
    assert_eq!(get_all(&ch, &q).await, ["m3", "m4", "m0", "m1", "m2"]);
}

#[tokio::test]
async fn policy_applying_to_exchanges_does_not_touch_queues() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let q = unique("pol-ex-only");
    let _p = set_policy(
        &broker,
        &q,
        &exactly(&q),
        r#"{"max-length":1}"#,
        "exchanges",
        0,
    );
    let (_c, ch) = connect_channel(&broker).await;
    declare_with_name(&ch, &q, &[]).await;
    publish_numbered(&ch, &q, 3).await;
    wait_count(&ch, &q, 3, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn policy_dead_letter_exchange() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let (_c, ch) = connect_channel(&broker).await;
    let (dlx, dlq) = dlx_pair(&ch, "pol-dlx").await;
    let q = unique("pol-dlx-src");
    let _p = set_policy(
        &broker,
        &q,
        &exactly(&q),
        &format!(r#"{{"dead-letter-exchange":"{dlx}"}}"#),
        "queues",
        0,
    );
    declare_with_name(&ch, &q, &[]).await;
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, "", &q, b"m").await;
    reject_next(&mut consumer).await;
    let d = wait_get(&ch, &dlq).await;
    check_death(&x_death(&d)[0], 1, "rejected", &q, "", &[&q], None);
}

#[tokio::test]
async fn highest_priority_policy_wins_and_definitions_are_not_merged() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let q = unique("pol-prio");
    let q2 = unique("pol-prio-merge");
    // Two policies for q: the higher priority's max-length applies.
    let _low = set_policy(
        &broker,
        &format!("{q}-low"),
        &exactly(&q),
        r#"{"max-length":1}"#,
        "queues",
        1,
    );
    let _high = set_policy(
        &broker,
        &format!("{q}-high"),
        &exactly(&q),
        r#"{"max-length":3}"#,
        "queues",
        5,
    );
    // Two policies for q2 with different keys: only the higher one applies, so the lower
    // one's max-length is ignored entirely.
    let _low2 = set_policy(
        &broker,
        &format!("{q2}-low"),
        &exactly(&q2),
        r#"{"max-length":1}"#,
        "queues",
        1,
    );
    let _high2 = set_policy(
        &broker,
        &format!("{q2}-high"),
        &exactly(&q2),
        r#"{"message-ttl":60000}"#,
        "queues",
        5,
    );
    let (_c, ch) = connect_channel(&broker).await;
    declare_with_name(&ch, &q, &[]).await;
    declare_with_name(&ch, &q2, &[]).await;
    publish_numbered(&ch, &q, 5).await;
    publish_numbered(&ch, &q2, 3).await;
    wait_count(&ch, &q, 3, Duration::from_secs(1)).await;
    wait_count(&ch, &q2, 3, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get_all(&ch, &q).await, ["m2", "m3", "m4"]);
    assert_eq!(ready_count(&ch, &q2).await, 3);
}

#[tokio::test]
async fn queue_argument_beats_policy_for_dead_letter_exchange() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let (_c, ch) = connect_channel(&broker).await;
    let (by_arg, by_arg_q) = dlx_pair(&ch, "pol-vs-arg-a").await;
    let (by_policy, by_policy_q) = dlx_pair(&ch, "pol-vs-arg-p").await;
    let q = unique("pol-vs-arg");
    let _p = set_policy(
        &broker,
        &q,
        &exactly(&q),
        &format!(r#"{{"dead-letter-exchange":"{by_policy}"}}"#),
        "queues",
        0,
    );
    declare_with_name(&ch, &q, &[("x-dead-letter-exchange", text(&by_arg))]).await;
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, "", &q, b"m").await;
    reject_next(&mut consumer).await;
    wait_get(&ch, &by_arg_q).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ready_count(&ch, &by_policy_q).await, 0);
}

#[tokio::test]
async fn queue_argument_beats_policy_for_overflow() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let q = unique("pol-overflow");
    let _p = set_policy(
        &broker,
        &q,
        &exactly(&q),
        r#"{"max-length":1,"overflow":"reject-publish"}"#,
        "queues",
        0,
    );
    let (_c, ch) = connect_channel(&broker).await;
    declare_with_name(&ch, &q, &[("x-overflow", text("drop-head"))]).await;
    publish_numbered(&ch, &q, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get_all(&ch, &q).await, ["m2"], "drop-head kept the newest");
}

#[tokio::test]
async fn lower_of_policy_and_argument_wins_for_max_length_and_ttl() {
    let broker = Broker::start();
    if skip_policies(&broker) {
        return;
    }
    let prefix = unique("pol-min");
    let _p = set_policy(
        &broker,
        &prefix,
        &format!("^{prefix}-ml-"),
        r#"{"max-length":2}"#,
        "queues",
        0,
    );
    let _t = set_policy(
        &broker,
        &format!("{prefix}-ttl"),
        &format!("^{prefix}-ttl-"),
        r#"{"message-ttl":150}"#,
        "queues",
        0,
    );
    let (_c, ch) = connect_channel(&broker).await;
    // max-length: policy 2, argument 4 -> 2; policy 2, argument 1 -> 1.
    for (arg, kept) in [(4, 2u32), (1, 1)] {
        let q = format!("{prefix}-ml-{arg}");
        declare_with_name(&ch, &q, &[("x-max-length", int(arg))]).await;
        publish_numbered(&ch, &q, 6).await;
        wait_count(&ch, &q, kept, Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ready_count(&ch, &q).await, kept, "argument {arg}");
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    // message-ttl: policy 150 ms against an argument of 60 s -> 150 ms; and a policy of
    // 150 ms against an argument of 100 ms -> 100 ms (both expire quickly).
    for arg in [60_000, 100] {
        let q = format!("{prefix}-ttl-{arg}");
        declare_with_name(&ch, &q, &[("x-message-ttl", int(arg))]).await;
        publish(&ch, "", &q, b"m").await;
        wait_count(&ch, &q, 0, Duration::from_secs(2)).await;
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
}

// ----------------------------------------------- quirks matched against RabbitMQ 3.10

/// RabbitMQ 3.10: a queue declared with `x-queue-type: classic` redeclares without the
/// argument (no type is the default type), and the other way round.
#[tokio::test]
async fn classic_queue_type_equals_no_queue_type_on_redeclare() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "classic", &[("x-queue-type", text("classic"))]).await;
    try_declare(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("redeclare without x-queue-type");
    let plain = declare_with(&ch, "plain", &[]).await;
    try_declare(
        &ch,
        &plain,
        QueueDeclareOptions::default(),
        table(&[("x-queue-type", text("classic"))]),
    )
    .await
    .expect("redeclare with x-queue-type classic");
}

/// RabbitMQ 3.10: a passive declare counts as use, so `x-expires` starts again.
#[tokio::test]
async fn passive_declare_resets_the_expiry_timer() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "expiring", &[("x-expires", int(1500))]).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        passive_declare(&ch, &q)
            .await
            .expect("still there: every passive declare restarted its 1.5 s");
    }
}

/// RabbitMQ 3.10: a message requeued into a full drop-head queue is subject to the limit
/// like a new one; the head (here the requeued message itself) is dropped.
#[tokio::test]
async fn requeue_into_a_full_drop_head_queue_drops_the_head() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_with(&ch, "full", &[("x-max-length", long(2))]).await;
    publish(&ch, "", &q, b"1").await;
    publish(&ch, "", &q, b"2").await;
    wait_ready(&ch, &q, 2).await;
    let got = within(
        "basic.get",
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("a message");
    publish(&ch, "", &q, b"3").await;
    publish(&ch, "", &q, b"4").await;
    wait_ready(&ch, &q, 2).await;
    got.delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .expect("nack");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bodies = Vec::new();
    while let Some(b) = get_body(&ch, &q).await {
        bodies.push(b);
    }
    assert_eq!(bodies, vec![b"3".to_vec(), b"4".to_vec()]);
}

/// RabbitMQ 3.10 (checked with pika; the issue expected it only while consuming): a passive
/// declare of `amq.rabbitmq.reply-to` reports one consumer, consuming or not.
#[tokio::test]
async fn passive_declare_of_reply_to_reports_one_consumer() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let before = passive_declare(&ch, "amq.rabbitmq.reply-to")
        .await
        .expect("passive declare");
    assert_eq!(before.consumer_count(), 1);
    ch.basic_consume(
        "amq.rabbitmq.reply-to".into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("consume amq.rabbitmq.reply-to");
    let after = passive_declare(&ch, "amq.rabbitmq.reply-to")
        .await
        .expect("passive declare");
    assert_eq!(after.consumer_count(), 1);
    assert_eq!(after.message_count(), 0);
}

//! Routing: direct, fanout, default exchange, and topic pattern edge cases. The topic tables
//! below are RabbitMQ 3.10's observed behaviour, key by key.
mod common;

use common::*;
use lapin::{options::*, types::FieldTable, ExchangeKind};
use std::time::Duration;

async fn exchange(ch: &lapin::Channel, kind: ExchangeKind) -> String {
    let x = unique("rx");
    ch.exchange_declare(
        x.as_str().into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    x
}

async fn bound_queue(ch: &lapin::Channel, x: &str, key: &str) -> String {
    let q = declare_queue(ch, "rq").await;
    ch.queue_bind(
        q.as_str().into(),
        x.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    q
}

/// Drains `q` (no-ack gets) after publishes have settled; returns bodies as strings.
async fn bodies(ch: &lapin::Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(b) = get_body(ch, q).await {
        out.push(String::from_utf8(b).unwrap());
    }
    out
}

/// Publishes every key (body = key) to `x`, then a marker through the default exchange to
/// each queue so that we know all earlier publishes were routed (per-channel ordering).
async fn publish_keys_and_settle(ch: &lapin::Channel, x: &str, keys: &[&str], queues: &[String]) {
    for k in keys {
        publish(ch, x, k, k.as_bytes()).await;
    }
    for q in queues {
        publish(ch, "", q, b"<end>").await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn bodies_until_marker(ch: &lapin::Channel, q: &str) -> Vec<String> {
    let mut all = bodies(ch, q).await;
    assert_eq!(
        all.pop().as_deref(),
        Some("<end>"),
        "marker must arrive last"
    );
    all
}

// ---------------------------------------------------------------------------- direct

#[tokio::test]
async fn direct_exact_match_only() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let qa = bound_queue(&ch, &x, "a").await;
    let qe = bound_queue(&ch, &x, "").await;
    let qstar = bound_queue(&ch, &x, "*").await;
    publish_keys_and_settle(
        &ch,
        &x,
        &["a", "A", "a.b", "", "*", "b"],
        &[qa.clone(), qe.clone(), qstar.clone()],
    )
    .await;
    assert_eq!(bodies_until_marker(&ch, &qa).await, ["a"]);
    assert_eq!(bodies_until_marker(&ch, &qe).await, [""]);
    assert_eq!(
        bodies_until_marker(&ch, &qstar).await,
        ["*"],
        "no wildcards in direct"
    );
}

#[tokio::test]
async fn direct_multiple_queues_same_key_and_multiple_keys_one_queue() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let q1 = bound_queue(&ch, &x, "k").await;
    let q2 = bound_queue(&ch, &x, "k").await;
    ch.queue_bind(
        q1.as_str().into(),
        x.as_str().into(),
        "k2".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_keys_and_settle(&ch, &x, &["k", "k2"], &[q1.clone(), q2.clone()]).await;
    assert_eq!(bodies_until_marker(&ch, &q1).await, ["k", "k2"]);
    assert_eq!(bodies_until_marker(&ch, &q2).await, ["k"]);
}

#[tokio::test]
async fn fanout_ignores_routing_key() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Fanout).await;
    let q1 = bound_queue(&ch, &x, "").await;
    let q2 = bound_queue(&ch, &x, "some-key").await;
    publish_keys_and_settle(&ch, &x, &["", "x", "a.b"], &[q1.clone(), q2.clone()]).await;
    assert_eq!(bodies_until_marker(&ch, &q1).await, ["", "x", "a.b"]);
    assert_eq!(bodies_until_marker(&ch, &q2).await, ["", "x", "a.b"]);
}

#[tokio::test]
async fn fanout_same_queue_bound_twice_gets_one_copy() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Fanout).await;
    let q = bound_queue(&ch, &x, "one").await;
    ch.queue_bind(
        q.as_str().into(),
        x.as_str().into(),
        "two".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_keys_and_settle(&ch, &x, &["m"], std::slice::from_ref(&q)).await;
    assert_eq!(bodies_until_marker(&ch, &q).await, ["m"]);
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q1 = declare_queue(&ch, "dflt-1").await;
    let q2 = declare_queue(&ch, "dflt-2").await;
    publish(&ch, "", &q1, b"to-1").await;
    publish(&ch, "", &q2, b"to-2").await;
    publish(&ch, "", &unique("nobody"), b"dropped").await;
    wait_ready(&ch, &q1, 1).await;
    wait_ready(&ch, &q2, 1).await;
    assert_eq!(bodies(&ch, &q1).await, ["to-1"]);
    assert_eq!(bodies(&ch, &q2).await, ["to-2"]);
}

#[tokio::test]
async fn publish_to_amq_default_by_name_is_404() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let mut watch = watch_channel(&ch).await;
    let q = declare_queue(&ch, "amqdefault").await;
    publish(&ch, "amq.default", &q, b"x").await;
    // RabbitMQ 3.10: "amq.default" is NOT an alias of the default exchange for AMQP 0-9-1
    // publishes: channel.close 404 "NOT_FOUND - no exchange 'amq.default' in vhost '/'".
    assert_eq!(channel_closed_code(&mut watch).await, 404);
    assert!(conn.status().connected());
}

// ----------------------------------------------------------------------------- topic

const KEYS: &[&str] = &[
    "", "a", "b", "a.b", "a.c", "a.x.b", "a.x.y.b", "a.b.c", "a..b", ".", "a.", ".a", "*", "#",
    "b.a", "a.a",
];

async fn check_topic(pattern: &str, expected: &[&str]) {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Topic).await;
    let q = bound_queue(&ch, &x, pattern).await;
    publish_keys_and_settle(&ch, &x, KEYS, std::slice::from_ref(&q)).await;
    assert_eq!(
        bodies_until_marker(&ch, &q).await,
        expected,
        "pattern {pattern:?}"
    );
}

#[tokio::test]
async fn topic_hash_alone_matches_everything_including_empty_key() {
    check_topic("#", KEYS).await;
}

#[tokio::test]
async fn topic_hash_hash_matches_everything() {
    check_topic("#.#", KEYS).await;
}

#[tokio::test]
async fn topic_star_matches_exactly_one_word_not_empty_key() {
    // RabbitMQ 3.10: the empty routing key has zero words, so "*" does not match it; the
    // literal keys "*" and "#" are ordinary one-word keys.
    check_topic("*", &["a", "b", "*", "#"]).await;
}

#[tokio::test]
async fn topic_empty_pattern_matches_only_empty_key() {
    check_topic("", &[""]).await;
}

#[tokio::test]
async fn topic_a_hash_b() {
    // "#" may match zero words; "a..b" is a, "", b so the empty middle word matches too.
    check_topic("a.#.b", &["a.b", "a.x.b", "a.x.y.b", "a..b"]).await;
}

#[tokio::test]
async fn topic_a_hash_hash_b_same_as_a_hash_b() {
    check_topic("a.#.#.b", &["a.b", "a.x.b", "a.x.y.b", "a..b"]).await;
}

#[tokio::test]
async fn topic_star_hash_needs_at_least_one_word() {
    let expected: Vec<&str> = KEYS.iter().copied().filter(|k| !k.is_empty()).collect();
    check_topic("*.#", &expected).await;
}

#[tokio::test]
async fn topic_hash_star_needs_at_least_one_word() {
    let expected: Vec<&str> = KEYS.iter().copied().filter(|k| !k.is_empty()).collect();
    check_topic("#.*", &expected).await;
}

#[tokio::test]
async fn topic_star_star_hash_needs_two_words() {
    check_topic(
        "*.*.#",
        &[
            "a.b", "a.c", "a.x.b", "a.x.y.b", "a.b.c", "a..b", ".", "a.", ".a", "b.a", "a.a",
        ],
    )
    .await;
}

#[tokio::test]
async fn topic_a_star() {
    // "a." is the words a and "": the empty word matches "*".
    check_topic("a.*", &["a.b", "a.c", "a.", "a.a"]).await;
}

#[tokio::test]
async fn topic_a_hash_includes_bare_a() {
    check_topic(
        "a.#",
        &[
            "a", "a.b", "a.c", "a.x.b", "a.x.y.b", "a.b.c", "a..b", "a.", "a.a",
        ],
    )
    .await;
}

#[tokio::test]
async fn topic_hash_b() {
    check_topic("#.b", &["b", "a.b", "a.x.b", "a.x.y.b", "a..b"]).await;
}

#[tokio::test]
async fn topic_star_star_two_words_including_empty_words() {
    // "." is two empty words; ".a" and "a." are two words, one empty.
    check_topic("*.*", &["a.b", "a.c", ".", "a.", ".a", "b.a", "a.a"]).await;
}

#[tokio::test]
async fn topic_empty_word_in_pattern_is_literal() {
    check_topic("a..b", &["a..b"]).await;
}

#[tokio::test]
async fn topic_a_star_b_star_matches_empty_word() {
    check_topic("a.*.b", &["a.x.b", "a..b"]).await;
}

#[tokio::test]
async fn topic_exact_words() {
    check_topic("a.b", &["a.b"]).await;
}

#[tokio::test]
async fn topic_hash_a_hash() {
    check_topic(
        "#.a.#",
        &[
            "a", "a.b", "a.c", "a.x.b", "a.x.y.b", "a.b.c", "a..b", "a.", ".a", "b.a", "a.a",
        ],
    )
    .await;
}

#[tokio::test]
async fn topic_dot_pattern_and_trailing_dot() {
    check_topic(".", &["."]).await;
    check_topic("a.", &["a."]).await;
}

#[tokio::test]
async fn topic_overlapping_bindings_deliver_one_copy_per_queue() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Topic).await;
    let q = bound_queue(&ch, &x, "a.*").await;
    for p in ["#", "a.b", "*.b", "a.#"] {
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            p.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    publish_keys_and_settle(&ch, &x, &["a.b", "z"], std::slice::from_ref(&q)).await;
    assert_eq!(bodies_until_marker(&ch, &q).await, ["a.b", "z"]);
}

#[tokio::test]
async fn topic_unbind_one_pattern_keeps_others() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Topic).await;
    let q = bound_queue(&ch, &x, "a.*").await;
    ch.queue_bind(
        q.as_str().into(),
        x.as_str().into(),
        "#.c".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "a.*".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_keys_and_settle(&ch, &x, &["a.b", "a.c", "x.y.c"], std::slice::from_ref(&q)).await;
    assert_eq!(bodies_until_marker(&ch, &q).await, ["a.c", "x.y.c"]);
}

#[tokio::test]
async fn topic_routing_is_case_sensitive() {
    check_topic_case().await;
}

async fn check_topic_case() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = exchange(&ch, ExchangeKind::Topic).await;
    let q = bound_queue(&ch, &x, "A.*").await;
    publish_keys_and_settle(&ch, &x, &["a.b", "A.b"], std::slice::from_ref(&q)).await;
    assert_eq!(bodies_until_marker(&ch, &q).await, ["A.b"]);
}

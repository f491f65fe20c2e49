//! basic.* methods: qos, consume, cancel, publish, get, ack/nack/reject, recover, content.
mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::{
    options::*,
    types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString},
    BasicProperties,
};
use std::time::Duration;

async fn consume_opts(
    ch: &lapin::Channel,
    q: &str,
    tag: &str,
    opts: BasicConsumeOptions,
) -> lapin::Result<lapin::Consumer> {
    within(
        "basic.consume",
        ch.basic_consume(q.into(), tag.into(), opts, FieldTable::default()),
    )
    .await
}

async fn consume(ch: &lapin::Channel, q: &str) -> lapin::Consumer {
    consume_opts(ch, q, "", BasicConsumeOptions::default())
        .await
        .expect("basic.consume")
}

async fn fill(ch: &lapin::Channel, q: &str, n: usize) {
    for i in 0..n {
        publish(ch, "", q, format!("m{i}").as_bytes()).await;
    }
    wait_ready(ch, q, n as u32).await;
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

// ----------------------------------------------------------------------------------- qos

#[tokio::test]
async fn qos_per_consumer_limits_unacked_deliveries() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "qos-cons").await;
    fill(&ch, &q, 10).await;
    ch.basic_qos(3, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumer = consume(&ch, &q).await;
    let first = drain(&mut consumer, 300).await;
    assert_eq!(first.len(), 3, "exactly prefetch_count unacked deliveries");
    // Acking one releases exactly one more.
    first[0].ack(BasicAckOptions::default()).await.unwrap();
    let more = drain(&mut consumer, 300).await;
    assert_eq!(more.len(), 1);
    assert_eq!(body(&more[0]), "m3");
    // Acking the rest (multiple) releases that many more.
    more[0]
        .ack(BasicAckOptions { multiple: true })
        .await
        .unwrap();
    let more = drain(&mut consumer, 300).await;
    assert_eq!(more.len(), 3);
}

#[tokio::test]
async fn qos_per_consumer_applies_to_each_consumer_separately() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q1 = declare_queue(&ch, "qos-each-1").await;
    let q2 = declare_queue(&ch, "qos-each-2").await;
    fill(&ch, &q1, 5).await;
    fill(&ch, &q2, 5).await;
    ch.basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut c1 = consume(&ch, &q1).await;
    let mut c2 = consume(&ch, &q2).await;
    assert_eq!(drain(&mut c1, 300).await.len(), 2);
    assert_eq!(drain(&mut c2, 300).await.len(), 2);
}

#[tokio::test]
async fn qos_global_limits_the_whole_channel() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q1 = declare_queue(&ch, "qos-glob-1").await;
    let q2 = declare_queue(&ch, "qos-glob-2").await;
    fill(&ch, &q1, 5).await;
    fill(&ch, &q2, 5).await;
    // RabbitMQ 3.10: global=true means a limit shared by all consumers on the channel.
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut c1 = consume(&ch, &q1).await;
    let mut c2 = consume(&ch, &q2).await;
    let a = drain(&mut c1, 300).await;
    let b = drain(&mut c2, 300).await;
    assert_eq!(a.len() + b.len(), 3, "{} + {}", a.len(), b.len());
    let last = a.iter().chain(b.iter()).next().unwrap();
    last.ack(BasicAckOptions::default()).await.unwrap();
    let a2 = drain(&mut c1, 300).await;
    let b2 = drain(&mut c2, 300).await;
    assert_eq!(a2.len() + b2.len(), 1);
}

async fn two_consumers_with_qos(calls: &[(u16, bool)]) -> (usize, usize) {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q1 = declare_queue(&ch, "qos-both-1").await;
    let q2 = declare_queue(&ch, "qos-both-2").await;
    fill(&ch, &q1, 5).await;
    fill(&ch, &q2, 5).await;
    for &(n, global) in calls {
        ch.basic_qos(n, BasicQosOptions { global }).await.unwrap();
    }
    let mut c1 = consume(&ch, &q1).await;
    let a = drain(&mut c1, 300).await;
    let mut c2 = consume(&ch, &q2).await;
    let b = drain(&mut c2, 300).await;
    (a.len(), b.len())
}

#[tokio::test]
async fn qos_per_consumer_then_global_both_apply() {
    // Per-consumer 2, then channel-wide 3: c1 gets 2 (its own limit), c2 gets 1 (channel full).
    assert_eq!(
        two_consumers_with_qos(&[(2, false), (3, true)]).await,
        (2, 1)
    );
}

#[tokio::test]
async fn qos_global_then_per_consumer_resets_global_limit() {
    // RabbitMQ 3.10 quirk: basic.qos(global=false) also REMOVES any channel-wide (global)
    // prefetch limit set earlier ("if default was set to global, it is reset to per
    // consumer"). So global 3 followed by per-consumer 2 leaves only the per-consumer limit.
    assert_eq!(
        two_consumers_with_qos(&[(3, true), (2, false)]).await,
        (2, 2)
    );
}

#[tokio::test]
async fn qos_zero_means_unlimited() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "qos-zero").await;
    fill(&ch, &q, 20).await;
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, &q).await;
    assert_eq!(drain(&mut consumer, 300).await.len(), 20);
}

#[tokio::test]
async fn qos_applies_only_to_consumers_created_after_it() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "qos-after").await;
    let mut consumer = consume(&ch, &q).await;
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    fill_no_wait(&ch, &q, 5).await;
    // RabbitMQ 3.10: per-consumer prefetch is captured at basic.consume time.
    assert_eq!(drain(&mut consumer, 300).await.len(), 5);
}

async fn fill_no_wait(ch: &lapin::Channel, q: &str, n: usize) {
    for i in 0..n {
        publish(ch, "", q, format!("m{i}").as_bytes()).await;
    }
}

#[tokio::test]
async fn no_ack_consumer_ignores_prefetch() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "qos-noack").await;
    fill(&ch, &q, 10).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume_opts(
        &ch,
        &q,
        "",
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(drain(&mut consumer, 300).await.len(), 10);
}

#[tokio::test]
async fn basic_get_is_not_limited_by_prefetch() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "qos-get").await;
    fill(&ch, &q, 3).await;
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .unwrap();
    for _ in 0..3 {
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .expect("message");
    }
}

// ------------------------------------------------------------------------------- consume

#[tokio::test]
async fn server_generated_consumer_tag() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "ctag").await;
    let c1 = consume(&ch, &q).await;
    let c2 = consume(&ch, &q).await;
    // RabbitMQ 3.10: "amq.ctag-" + 22 url-safe base64 characters.
    for t in [c1.tag(), c2.tag()] {
        assert!(t.as_str().starts_with("amq.ctag-"), "{t}");
        assert_eq!(t.as_str().len(), "amq.ctag-".len() + 22, "{t}");
    }
    assert_ne!(c1.tag(), c2.tag());
}

#[tokio::test]
async fn client_chosen_consumer_tag_is_echoed() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "ctag-client").await;
    let mut c = consume_opts(&ch, &q, "my-tag", BasicConsumeOptions::default())
        .await
        .unwrap();
    assert_eq!(c.tag().as_str(), "my-tag");
    publish(&ch, "", &q, b"x").await;
    let d = next_delivery(&mut c).await;
    assert_eq!(d.delivery_tag, 1);
    // Same tag on another channel is fine (tags are channel-scoped).
    let ch2 = _c.create_channel().await.unwrap();
    consume_opts(&ch2, &q, "my-tag", BasicConsumeOptions::default())
        .await
        .expect("tag per channel");
}

#[tokio::test]
async fn duplicate_consumer_tag_on_channel_is_530_connection_error() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let mut events = conn.events_listener();
    let ch = conn.create_channel().await.unwrap();
    let q = declare_queue(&ch, "dup-tag").await;
    let _keep = consume_opts(&ch, &q, "dup", BasicConsumeOptions::default())
        .await
        .unwrap();
    let err = consume_opts(&ch, &q, "dup", BasicConsumeOptions::default())
        .await
        .unwrap_err();
    // RabbitMQ 3.10: CONNECTION close 530 "NOT_ALLOWED - attempt to reuse consumer tag 'dup'"
    // (60,20).
    assert_eq!(reply_code(&err), Some(530));
    assert_eq!(
        reply_text(&err).unwrap(),
        "NOT_ALLOWED - attempt to reuse consumer tag 'dup'"
    );
    assert_eq!(connection_closed_code(&mut events).await, 530);
    assert!(!conn.status().connected());
}

#[tokio::test]
async fn exclusive_consumer_blocks_second_consumer_403() {
    let broker = Broker::start();
    let (_c1, ch1) = connect_channel(&broker).await;
    let q = declare_queue(&ch1, "excl-cons").await;
    let _keep = consume_opts(
        &ch1,
        &q,
        "",
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (c2, ch2) = connect_channel(&broker).await;
    let err = consume_opts(&ch2, &q, "", BasicConsumeOptions::default())
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 403 "ACCESS_REFUSED - queue '<q>' in vhost '/' in
    // exclusive use" (60,20).
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")
    );
    assert!(c2.status().connected());
    // Even on the same channel.
    let ch3 = _c1.create_channel().await.unwrap();
    let err = consume_opts(&ch3, &q, "", BasicConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
}

#[tokio::test]
async fn exclusive_consume_on_queue_with_consumers_is_403() {
    let broker = Broker::start();
    let (_c1, ch1) = connect_channel(&broker).await;
    let q = declare_queue(&ch1, "excl-late").await;
    let _keep = consume(&ch1, &q).await;
    let (_c2, ch2) = connect_channel(&broker).await;
    let err = consume_opts(
        &ch2,
        &q,
        "",
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
}

#[tokio::test]
async fn consume_from_missing_queue_is_404() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let err = consume_opts(&ch, &unique("nope"), "", BasicConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    assert!(conn.status().connected());
}

#[tokio::test]
async fn deliveries_carry_exchange_routing_key_and_increasing_tags() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "deliv-fields").await;
    ch.queue_bind(
        q.as_str().into(),
        "amq.direct".into(),
        q.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, "amq.direct", &q, b"1").await;
    publish(&ch, "", &q, b"2").await;
    let d1 = next_delivery(&mut consumer).await;
    let d2 = next_delivery(&mut consumer).await;
    assert_eq!(
        (
            d1.exchange.as_str(),
            d1.routing_key.as_str(),
            d1.delivery_tag,
            d1.redelivered
        ),
        ("amq.direct", q.as_str(), 1, false)
    );
    assert_eq!(
        (
            d2.exchange.as_str(),
            d2.routing_key.as_str(),
            d2.delivery_tag
        ),
        ("", q.as_str(), 2)
    );
    // basic.get shares the channel's delivery tag sequence.
    publish(&ch, "", &q, b"3").await;
    let d3 = next_delivery(&mut consumer).await;
    assert_eq!(d3.delivery_tag, 3);
}

#[tokio::test]
async fn cancel_stops_deliveries() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "cancel").await;
    let mut consumer = consume_opts(
        &ch,
        &q,
        "",
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    publish(&ch, "", &q, b"before").await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"before");
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    let end = within("stream end", consumer.next()).await;
    assert!(end.is_none(), "{end:?}");
    publish(&ch, "", &q, b"after").await;
    wait_ready(&ch, &q, 1).await;
}

#[tokio::test]
async fn cancel_unknown_tag_is_ok() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    // RabbitMQ 3.10: basic.cancel of an unknown consumer tag replies cancel-ok.
    ch.basic_cancel("no-such-consumer".into(), BasicCancelOptions::default())
        .await
        .expect("cancel-ok");
    assert!(conn.status().connected() && ch.status().connected());
}

#[tokio::test]
async fn cancel_returns_unacked_to_queue_only_on_channel_close() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "cancel-unacked").await;
    fill(&ch, &q, 1).await;
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&cch, &q).await;
    let d = next_delivery(&mut consumer).await;
    cch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    // Still unacked after cancel: not ready.
    wait_ready(&ch, &q, 0).await;
    // It can still be acked after cancel.
    d.ack(BasicAckOptions::default()).await.unwrap();
    cch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("channel fine after late ack");
    wait_ready(&ch, &q, 0).await;
}

#[tokio::test]
async fn server_cancels_consumer_when_queue_deleted() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "srv-cancel").await;
    let mut consumer = consume(&ch, &q).await;
    let dch = _c.create_channel().await.unwrap();
    dch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let end = within("server basic.cancel", consumer.next()).await;
    assert!(
        end.is_none(),
        "consumer ended by server basic.cancel: {end:?}"
    );
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("channel still open");
}

#[tokio::test]
async fn round_robin_between_consumers() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "rr").await;
    let mut c1 = consume_opts(
        &ch,
        &q,
        "a",
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut c2 = consume_opts(
        &ch,
        &q,
        "b",
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fill_no_wait(&ch, &q, 10).await;
    let a = drain(&mut c1, 300).await;
    let b = drain(&mut c2, 300).await;
    assert_eq!(a.len(), 5);
    assert_eq!(b.len(), 5);
}

// ------------------------------------------------------------------------------- publish

#[tokio::test]
async fn mandatory_unroutable_is_returned_with_312() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let key = unique("nobody");
    let props = BasicProperties::default().with_message_id("mid-1".into());
    let confirm = ch
        .basic_publish(
            "".into(),
            key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"bounced",
            props.clone(),
        )
        .await
        .unwrap();
    match within("confirm", confirm).await.unwrap() {
        lapin::Confirmation::Ack(Some(ret)) => {
            // RabbitMQ 3.10: basic.return 312 "NO_ROUTE", then basic.ack.
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(ret.delivery.exchange.as_str(), "");
            assert_eq!(ret.delivery.routing_key.as_str(), key);
            assert_eq!(ret.delivery.data, b"bounced");
            assert_eq!(ret.delivery.properties, props);
        }
        other => panic!("expected Ack with returned message, got {other:?}"),
    }
}

#[tokio::test]
async fn non_mandatory_unroutable_is_silently_dropped() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            unique("nobody").as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        within("confirm", confirm).await.unwrap(),
        lapin::Confirmation::Ack(None)
    );
}

#[tokio::test]
async fn immediate_flag_is_540_connection_error() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let mut events = conn.events_listener();
    let ch = conn.create_channel().await.unwrap();
    let q = declare_queue(&ch, "immediate").await;
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions {
            immediate: true,
            ..Default::default()
        },
        b"x",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    // RabbitMQ 3.10: connection.close 540 "NOT_IMPLEMENTED - immediate=true" (60,40).
    assert_eq!(connection_closed_code(&mut events).await, 540);
    assert!(!conn.status().connected());
    let (_c, ch) = connect_channel(&broker).await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn user_id_must_match_authenticated_user() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "userid").await;
    let mut watch = watch_channel(&ch).await;
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_user_id("mallory".into()),
    )
    .await
    .unwrap();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - user_id property set to
    // 'mallory' but authenticated user was 'guest'" (60,40).
    assert_eq!(channel_closed_code(&mut watch).await, 406);
    assert!(conn.status().connected());
}

// ----------------------------------------------------------------------------------- get

#[tokio::test]
async fn get_reports_remaining_count_and_get_empty() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "get").await;
    assert!(
        ch.basic_get(q.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
            .is_none(),
        "get-empty"
    );
    fill(&ch, &q, 3).await;
    for remaining in [2u32, 1, 0] {
        let m = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.message_count, remaining);
        assert_eq!(body(&m.delivery), format!("m{}", 2 - remaining));
        assert!(!m.delivery.redelivered);
        assert_eq!(m.delivery.routing_key.as_str(), q);
    }
    assert!(ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn get_from_missing_queue_is_404() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let err = ch
        .basic_get(unique("nope").as_str().into(), BasicGetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn get_with_ack_and_channel_close_requeues() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "get-ack").await;
    fill(&ch, &q, 1).await;
    let gch = conn.create_channel().await.unwrap();
    let m = gch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.delivery_tag, 1);
    assert!(ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .is_none());
    gch.close(200, "ok".into()).await.unwrap();
    let again = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert!(again.delivery.redelivered);
}

// --------------------------------------------------------------------- ack / nack / reject

#[tokio::test]
async fn ack_single_removes_only_that_message() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "ack1").await;
    fill(&ch, &q, 3).await;
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&cch, &q).await;
    let ds = drain(&mut consumer, 300).await;
    assert_eq!(ds.len(), 3);
    ds[1].ack(BasicAckOptions::default()).await.unwrap();
    cch.close(200, "ok".into()).await.unwrap();
    wait_ready(&ch, &q, 2).await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"m0");
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"m2");
}

#[tokio::test]
async fn ack_multiple_acks_up_to_tag() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "ackmulti").await;
    fill(&ch, &q, 5).await;
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&cch, &q).await;
    let ds = drain(&mut consumer, 300).await;
    assert_eq!(ds.len(), 5);
    cch.basic_ack(3, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    cch.close(200, "ok".into()).await.unwrap();
    wait_ready(&ch, &q, 2).await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"m3");
}

#[tokio::test]
async fn ack_multiple_with_tag_zero_acks_everything() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "ackzero").await;
    fill(&ch, &q, 4).await;
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&cch, &q).await;
    assert_eq!(drain(&mut consumer, 300).await.len(), 4);
    // delivery-tag 0 with multiple=true means "all outstanding".
    cch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    cch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("no channel error");
    cch.close(200, "ok".into()).await.unwrap();
    wait_ready(&ch, &q, 0).await;
}

#[tokio::test]
async fn reject_requeue_false_discards() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "reject-drop").await;
    fill(&ch, &q, 1).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    wait_ready(&ch, &q, 0).await;
    assert_eq!(get_body(&ch, &q).await, None);
}

#[tokio::test]
async fn reject_requeue_true_restores_original_position_and_sets_redelivered() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "reject-requeue").await;
    fill(&ch, &q, 3).await;
    let a = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    let b = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    // Requeue in reverse order: the queue still orders them by original position.
    b.delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    a.delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("m0".into(), true),
            ("m1".into(), true),
            ("m2".into(), false)
        ]
    );
}

#[tokio::test]
async fn nack_multiple_requeue_keeps_order() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "nack-multi").await;
    fill(&ch, &q, 4).await;
    let mut consumer = consume(&ch, &q).await;
    let ds = drain(&mut consumer, 300).await;
    assert_eq!(ds.len(), 4);
    // nack tags 1..=3 (multiple), requeue; leave 4 unacked.
    ch.basic_nack(
        3,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .unwrap();
    let again = drain(&mut consumer, 300).await;
    let seen: Vec<(String, bool, u64)> = again
        .iter()
        .map(|d| (body(d), d.redelivered, d.delivery_tag))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("m0".into(), true, 5),
            ("m1".into(), true, 6),
            ("m2".into(), true, 7)
        ],
        "redelivered in original order with fresh delivery tags"
    );
}

#[tokio::test]
async fn nack_requeue_false_discards() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "nack-drop").await;
    fill(&ch, &q, 2).await;
    let _a = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    let _b = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    ch.basic_nack(
        2,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    )
    .await
    .unwrap();
    ch.basic_qos(0, BasicQosOptions::default())
        .await
        .expect("no error");
    wait_ready(&ch, &q, 0).await;
}

#[tokio::test]
async fn ack_unknown_delivery_tag_is_406_channel_error() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let mut watch = watch_channel(&ch).await;
    ch.basic_ack(42, BasicAckOptions::default()).await.unwrap();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - unknown delivery tag 42" (60,80).
    assert_eq!(channel_closed_code(&mut watch).await, 406);
    assert!(conn.status().connected());
}

#[tokio::test]
async fn double_ack_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "double-ack").await;
    fill(&ch, &q, 1).await;
    let mut watch = watch_channel(&ch).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    let tag = m.delivery.delivery_tag;
    ch.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    ch.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    // RabbitMQ 3.10: 406 "PRECONDITION_FAILED - unknown delivery tag 1".
    assert_eq!(channel_closed_code(&mut watch).await, 406);
    assert!(conn.status().connected());
}

#[tokio::test]
async fn reject_unknown_tag_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let mut watch = watch_channel(&ch).await;
    ch.basic_reject(7, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    assert_eq!(channel_closed_code(&mut watch).await, 406);
}

#[tokio::test]
async fn nack_unknown_tag_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let mut watch = watch_channel(&ch).await;
    ch.basic_nack(
        7,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .unwrap();
    // multiple=true with a tag beyond the last delivery is still unknown.
    assert_eq!(channel_closed_code(&mut watch).await, 406);
}

#[tokio::test]
async fn ack_of_no_ack_delivery_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "ack-noack").await;
    fill(&ch, &q, 1).await;
    let mut watch = watch_channel(&ch).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(channel_closed_code(&mut watch).await, 406);
}

#[tokio::test]
async fn delivery_tags_are_per_channel() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tags-per-ch").await;
    fill(&ch, &q, 2).await;
    let ch2 = conn.create_channel().await.unwrap();
    let m1 = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    let m2 = ch2
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m1.delivery.delivery_tag, 1);
    assert_eq!(m2.delivery.delivery_tag, 1);
    // Acking tag 1 on ch2 acks ch2's message, not ch's.
    ch2.basic_ack(1, BasicAckOptions::default()).await.unwrap();
    ch.basic_ack(1, BasicAckOptions::default()).await.unwrap();
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    ch2.basic_qos(1, BasicQosOptions::default()).await.unwrap();
}

// ------------------------------------------------------------------------------- recover

#[tokio::test]
async fn recover_requeue_redelivers_unacked() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "recover").await;
    fill(&ch, &q, 2).await;
    let mut consumer = consume(&ch, &q).await;
    let first = drain(&mut consumer, 300).await;
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|d| !d.redelivered));
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let again = drain(&mut consumer, 300).await;
    let seen: Vec<(String, bool)> = again.iter().map(|d| (body(d), d.redelivered)).collect();
    assert_eq!(seen, vec![("m0".into(), true), ("m1".into(), true)]);
    // The old tags are gone: acking the new ones works.
    again[1]
        .ack(BasicAckOptions { multiple: true })
        .await
        .unwrap();
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
}

#[tokio::test]
async fn recover_without_requeue() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "recover-noreq").await;
    fill(&ch, &q, 1).await;
    let mut consumer = consume(&ch, &q).await;
    let _d = next_delivery(&mut consumer).await;
    let res = ch
        .basic_recover(BasicRecoverOptions { requeue: false })
        .await;
    // RabbitMQ 3.10: basic.recover requeue=false is unsupported: CONNECTION close 540
    // "NOT_IMPLEMENTED - requeue=false" (60,110).
    assert_eq!(reply_code(&res.unwrap_err()), Some(540));
    assert!(!_c.status().connected());
}

// -------------------------------------------------------------------------------- content

#[tokio::test]
async fn fifo_ordering_of_many_messages() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "fifo").await;
    let mut consumer = consume_opts(
        &ch,
        &q,
        "",
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for i in 0..500u32 {
        publish(&ch, "", &q, &i.to_be_bytes()).await;
    }
    for i in 0..500u32 {
        assert_eq!(next_delivery(&mut consumer).await.data, i.to_be_bytes());
    }
}

#[tokio::test]
async fn empty_body_round_trip() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "empty").await;
    publish(&ch, "", &q, b"").await;
    let mut consumer = consume(&ch, &q).await;
    let d = next_delivery(&mut consumer).await;
    assert!(d.data.is_empty());
    publish(&ch, "", &q, b"").await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"");
}

async fn large_round_trip(size: usize) {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "large").await;
    let body: Vec<u8> = (0..size).map(|i| ((i * 31 + i / 7) % 256) as u8).collect();
    publish(&ch, "", &q, &body).await;
    let mut consumer = consume(&ch, &q).await;
    let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("large delivery")
        .unwrap()
        .unwrap();
    assert_eq!(d.data.len(), body.len());
    assert!(d.data == body, "body not byte-exact");
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    d.ack(BasicAckOptions::default()).await.unwrap();
    // And via basic.get.
    publish(&ch, "", &q, &body).await;
    wait_ready(&ch, &q, 1).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert!(m.delivery.data == body);
}

#[tokio::test]
async fn body_exactly_frame_boundaries() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "frame-edge").await;
    let fmax = conn.configuration().frame_max() as usize;
    // Body frame payload capacity is frame_max - 8.
    for size in [
        fmax - 9,
        fmax - 8,
        fmax - 7,
        2 * (fmax - 8),
        2 * (fmax - 8) + 1,
    ] {
        let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        publish(&ch, "", &q, &body).await;
        let got = get_body(&ch, &q).await.unwrap();
        assert!(got == body, "size {size}");
    }
}

#[tokio::test]
async fn large_body_1mib() {
    large_round_trip(1 << 20).await;
}

#[tokio::test]
async fn large_body_10mib() {
    large_round_trip(10 << 20).await;
}

fn all_field_types() -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert("inner-str".into(), AMQPValue::LongString("deep".into()));
    nested.insert("inner-int".into(), AMQPValue::LongInt(-7));
    let mut h = FieldTable::default();
    h.insert("bool".into(), AMQPValue::Boolean(true));
    h.insert("i8".into(), AMQPValue::ShortShortInt(-8));
    h.insert("u8".into(), AMQPValue::ShortShortUInt(200));
    h.insert("i16".into(), AMQPValue::ShortInt(-1600));
    h.insert("u16".into(), AMQPValue::ShortUInt(60000));
    h.insert("i32".into(), AMQPValue::LongInt(-320_000));
    h.insert("u32".into(), AMQPValue::LongUInt(4_000_000_000));
    h.insert("i64".into(), AMQPValue::LongLongInt(-6_400_000_000_000));
    h.insert("f32".into(), AMQPValue::Float(1.5));
    h.insert("f64".into(), AMQPValue::Double(-2.25e100));
    h.insert(
        "decimal".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12345,
        }),
    );
    h.insert(
        "longstr".into(),
        AMQPValue::LongString(LongString::from("héllo \u{0} world".as_bytes())),
    );
    h.insert(
        "bytes".into(),
        AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255])),
    );
    h.insert(
        "array".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongInt(1),
            AMQPValue::LongString("two".into()),
            AMQPValue::Boolean(false),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::ShortShortUInt(3)])),
        ])),
    );
    h.insert("timestamp".into(), AMQPValue::Timestamp(1_700_000_000));
    h.insert("table".into(), AMQPValue::FieldTable(nested));
    h.insert("void".into(), AMQPValue::Void);
    h.insert(
        "empty-array".into(),
        AMQPValue::FieldArray(FieldArray::default()),
    );
    h.insert(
        "empty-table".into(),
        AMQPValue::FieldTable(FieldTable::default()),
    );
    h
}

fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/x-test".into())
        .with_content_encoding("gzip".into())
        .with_headers(all_field_types())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply-queue".into())
        .with_expiration("3600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_234_567_890)
        .with_type("test-type".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
        .with_cluster_id("cluster-x".into())
}

#[tokio::test]
async fn all_properties_round_trip_via_consume() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "props").await;
    let props = all_properties();
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"p",
        props.clone(),
    )
    .await
    .unwrap();
    let mut consumer = consume(&ch, &q).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.properties, props);
}

#[tokio::test]
async fn all_properties_round_trip_via_get() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "props-get").await;
    let props = all_properties();
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"p",
        props.clone(),
    )
    .await
    .unwrap();
    wait_ready(&ch, &q, 1).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.properties, props);
}

#[tokio::test]
async fn no_properties_round_trip_as_none() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "noprops").await;
    publish(&ch, "", &q, b"x").await;
    wait_ready(&ch, &q, 1).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.properties, BasicProperties::default());
}

#[tokio::test]
async fn unsigned_64_bit_header_comes_back_signed() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "u64hdr").await;
    let mut h = FieldTable::default();
    h.insert("u64".into(), AMQPValue::LongLongInt(i64::MAX));
    h.insert("ts".into(), AMQPValue::Timestamp(u64::MAX));
    let props = BasicProperties::default().with_headers(h);
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        props.clone(),
    )
    .await
    .unwrap();
    wait_ready(&ch, &q, 1).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.properties, props);
}

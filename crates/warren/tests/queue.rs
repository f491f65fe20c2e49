//! queue.* methods: declare flavours, exclusivity, auto-delete, bindings, purge, delete.
mod common;

use common::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    ExchangeKind,
};
use std::time::Duration;

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare(
    ch: &lapin::Channel,
    name: &str,
    opts: QueueDeclareOptions,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    within("queue.declare", ch.queue_declare(name.into(), opts, args)).await
}

async fn consume(ch: &lapin::Channel, q: &str) -> lapin::Result<lapin::Consumer> {
    within(
        "basic.consume",
        ch.basic_consume(
            q.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

/// Polls (bounded) until a passive declare of `q` fails with 404.
async fn wait_gone(ch_conn: &lapin::Connection, q: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ch = ch_conn.create_channel().await.unwrap();
        match ch
            .queue_declare(q.into(), passive(), FieldTable::default())
            .await
        {
            Err(e) if reply_code(&e) == Some(404) => return,
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => {
                let _ = ch.close(200, "ok".into()).await;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue {q} was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn declare_returns_name_and_zero_counts() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = unique("q-plain");
    let q = declare(
        &ch,
        &name,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!(q.name().as_str(), name);
    assert_eq!(q.message_count(), 0);
    assert_eq!(q.consumer_count(), 0);
}

#[tokio::test]
async fn server_named_queue_has_amq_gen_prefix() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q1 = declare(
        &ch,
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q2 = declare(
        &ch,
        "",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // RabbitMQ 3.10: names look like "amq.gen-" + 22 url-safe base64 chars.
    for q in [&q1, &q2] {
        let n = q.name().as_str();
        assert!(n.starts_with("amq.gen-"), "{n}");
        assert_eq!(n.len(), "amq.gen-".len() + 22, "{n}");
    }
    assert_ne!(q1.name(), q2.name());
    // The generated queue is usable by its name.
    publish(&ch, "", q2.name().as_str(), b"x").await;
    assert_eq!(get_body(&ch, q2.name().as_str()).await.unwrap(), b"x");
    ch.queue_delete(q2.name().clone(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn declare_ok_counts_ready_messages_and_consumers() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = declare_queue(&ch, "q-counts").await;
    for i in 0..3u8 {
        publish(&ch, "", &name, &[i]).await;
    }
    wait_ready(&ch, &name, 3).await;
    let q = declare(
        &ch,
        &name,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!((q.message_count(), q.consumer_count()), (3, 0));
    // A consumer with prefetch 1 holds one unacked message: it is no longer counted as ready.
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&cch, &name).await.unwrap();
    let _d = next_delivery(&mut consumer).await;
    wait_ready(&ch, &name, 2).await;
    let q = declare(&ch, &name, passive(), FieldTable::default())
        .await
        .unwrap();
    assert_eq!((q.message_count(), q.consumer_count()), (2, 1));
}

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = unique("q-missing");
    let err = declare(&ch, &name, passive(), FieldTable::default())
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 404 "NOT_FOUND - no queue '<name>' in vhost '/'" (50,10).
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("NOT_FOUND - no queue '{name}' in vhost '/'")
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn passive_declare_ignores_flags_and_args() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = declare_queue(&ch, "q-passive").await;
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
    declare(
        &ch,
        &name,
        QueueDeclareOptions {
            passive: true,
            durable: true,
            auto_delete: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("passive declare only checks existence");
}

#[tokio::test]
async fn redeclare_with_different_durable_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = declare_queue(&ch, "q-redecl").await;
    let err = declare(
        &ch,
        &name,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - inequivalent arg 'durable' for
    // queue '<name>' in vhost '/': received 'true' but current is 'false'".
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{name}' in vhost '/': received 'true' but current is 'false'")
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn redeclare_with_different_auto_delete_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = declare_queue(&ch, "q-redecl-ad").await;
    let err = declare(
        &ch,
        &name,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert!(
        reply_text(&err)
            .unwrap()
            .contains("inequivalent arg 'auto_delete'"),
        "{err:?}"
    );
}

#[tokio::test]
async fn redeclare_with_different_arguments_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = unique("q-args");
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
    declare(&ch, &name, QueueDeclareOptions::default(), args.clone())
        .await
        .unwrap();
    declare(&ch, &name, QueueDeclareOptions::default(), args)
        .await
        .expect("same args ok");
    let mut other = FieldTable::default();
    other.insert("x-message-ttl".into(), AMQPValue::LongInt(30_000));
    let err = declare(&ch, &name, QueueDeclareOptions::default(), other)
        .await
        .unwrap_err();
    // RabbitMQ 3.10: 406 "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue
    // '<name>' in vhost '/': received the value '30000' of type 'signedint' but current is
    // the value '60000' of type 'signedint'".
    assert_eq!(reply_code(&err), Some(406));
    assert!(
        reply_text(&err)
            .unwrap()
            .contains("inequivalent arg 'x-message-ttl'"),
        "{err:?}"
    );
    // Omitting an argument that the queue was declared with is also inequivalent.
    let ch = conn.create_channel().await.unwrap();
    let err = declare(
        &ch,
        &name,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
}

#[tokio::test]
async fn declare_with_amq_prefix_is_403() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = format!("amq.{}", unique("q"));
    let err = declare(
        &ch,
        &name,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    // RabbitMQ 3.10: 403 "ACCESS_REFUSED - queue name '<name>' contains reserved prefix 'amq.*'".
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'")
    );
}

#[tokio::test]
async fn exclusive_queue_is_locked_for_other_connections() {
    let broker = Broker::start();
    let (_owner, och) = connect_channel(&broker).await;
    let name = unique("q-excl");
    declare(
        &och,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();

    let other = connect(&broker).await;
    // Declare (same flags) from another connection.
    let ch = other.create_channel().await.unwrap();
    let err = declare(
        &ch,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_err();
    // RabbitMQ 3.10: channel.close 405 "RESOURCE_LOCKED - cannot obtain exclusive access to
    // locked queue '<name>' in vhost '/'. It could be originally declared on another
    // connection or the exclusive property value does not match that of the original
    // declaration." (50,10)
    assert_eq!(reply_code(&err), Some(405));
    assert!(reply_text(&err).unwrap().starts_with(&format!("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost '/'")), "{err:?}");
    assert!(other.status().connected(), "405 is a channel error");

    // Passive declare too.
    let ch = other.create_channel().await.unwrap();
    let err = declare(&ch, &name, passive(), FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(405));
    // Consume.
    let ch = other.create_channel().await.unwrap();
    let err = consume(&ch, &name).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(405));
    // Get.
    let ch = other.create_channel().await.unwrap();
    let err = ch
        .basic_get(name.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(405));
    // Purge.
    let ch = other.create_channel().await.unwrap();
    let err = ch
        .queue_purge(name.as_str().into(), QueuePurgeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(405));
    // Delete.
    let ch = other.create_channel().await.unwrap();
    let err = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(405));

    // Publishing to it from another connection is allowed.
    let ch = other.create_channel().await.unwrap();
    publish(&ch, "", &name, b"from-other").await;
    // The publish travels on another connection: wait until it has landed.
    wait_ready(&och, &name, 1).await;
    assert_eq!(get_body(&och, &name).await.unwrap(), b"from-other");
}

#[tokio::test]
async fn exclusive_queue_can_be_bound_from_other_connection() {
    let broker = Broker::start();
    let (_owner, och) = connect_channel(&broker).await;
    let name = unique("q-excl-bind");
    declare(
        &och,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (_other, ch) = connect_channel(&broker).await;
    let res = ch
        .queue_bind(
            name.as_str().into(),
            "amq.direct".into(),
            name.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    // RabbitMQ 3.10: queue.bind on another connection's exclusive queue is 405 RESOURCE_LOCKED.
    assert_eq!(reply_code(&res.unwrap_err()), Some(405));
}

#[tokio::test]
async fn exclusive_queue_usable_from_other_channel_of_same_connection() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let ch1 = conn.create_channel().await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let name = unique("q-excl-samconn");
    declare(
        &ch1,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(
        &ch2,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch2, "", &name, b"x").await;
    assert_eq!(get_body(&ch2, &name).await.unwrap(), b"x");
    consume(&ch2, &name).await.unwrap();
}

#[tokio::test]
async fn exclusive_queue_deleted_when_connection_closes() {
    let broker = Broker::start();
    let name = unique("q-excl-gone");
    let owner = connect(&broker).await;
    let och = owner.create_channel().await.unwrap();
    declare(
        &och,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&och, "", &name, b"lost").await;
    let watcher = connect(&broker).await;
    owner.close(200, "bye".into()).await.unwrap();
    wait_gone(&watcher, &name).await;
    // The name is free again for anybody.
    let ch = watcher.create_channel().await.unwrap();
    declare(
        &ch,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn exclusive_queue_survives_channel_close() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let ch = conn.create_channel().await.unwrap();
    let name = unique("q-excl-chclose");
    declare(
        &ch,
        &name,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.close(200, "ok".into()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, &name, passive(), FieldTable::default())
        .await
        .expect("owned by the connection, not the channel");
}

#[tokio::test]
async fn auto_delete_queue_deleted_after_last_consumer_cancels() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = unique("q-autodel");
    declare(
        &ch,
        &name,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Never had a consumer: still there.
    tokio::time::sleep(Duration::from_millis(100)).await;
    declare(&ch, &name, passive(), FieldTable::default())
        .await
        .expect("no consumer yet, not deleted");
    let c1 = ch
        .basic_consume(
            name.as_str().into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let c2 = ch
        .basic_consume(
            name.as_str().into(),
            "c2".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_cancel(c1.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let q = declare(&ch, &name, passive(), FieldTable::default())
        .await
        .expect("one consumer left");
    assert_eq!(q.consumer_count(), 1);
    ch.basic_cancel(c2.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    wait_gone(&conn, &name).await;
}

#[tokio::test]
async fn auto_delete_queue_deleted_when_consumer_channel_closes() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = unique("q-autodel-chan");
    declare(
        &ch,
        &name,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let cch = conn.create_channel().await.unwrap();
    let _keep = consume(&cch, &name).await.unwrap();
    cch.close(200, "ok".into()).await.unwrap();
    wait_gone(&conn, &name).await;
}

#[tokio::test]
async fn bind_to_missing_exchange_is_404() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-bind-nox").await;
    let x = unique("x-missing");
    let err = ch
        .queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 404 "NOT_FOUND - no exchange '<x>' in vhost '/'" (50,20).
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("NOT_FOUND - no exchange '{x}' in vhost '/'")
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn bind_missing_queue_is_404() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = unique("q-missing");
    let err = ch
        .queue_bind(
            q.as_str().into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: 404 "NOT_FOUND - no queue '<q>' in vhost '/'".
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("NOT_FOUND - no queue '{q}' in vhost '/'")
    );
}

#[tokio::test]
async fn bind_is_idempotent_and_unbind_stops_routing() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = unique("x-bind");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = declare_queue(&ch, "q-bind").await;
    for _ in 0..2 {
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    publish(&ch, &x, "k", b"1").await;
    wait_ready(&ch, &q, 1).await; // one binding, one copy
    ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, &x, "k", b"2").await;
    publish(&ch, "", &q, b"marker").await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"1");
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"marker");
}

#[tokio::test]
async fn unbind_of_nonexistent_binding_is_ok() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-unbind-none").await;
    // RabbitMQ 3.10: unbinding a binding that does not exist is unbind-ok.
    ch.queue_unbind(
        q.as_str().into(),
        "amq.direct".into(),
        "never-bound".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind of missing binding");
}

#[tokio::test]
async fn unbind_with_missing_queue_or_exchange() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-unbind-nox").await;
    let r1 = ch
        .queue_unbind(
            q.as_str().into(),
            unique("x-missing").as_str().into(),
            "k".into(),
            FieldTable::default(),
        )
        .await;
    let (_c2, ch2) = connect_channel(&broker).await;
    let r2 = ch2
        .queue_unbind(
            unique("q-missing").as_str().into(),
            "amq.direct".into(),
            "k".into(),
            FieldTable::default(),
        )
        .await;
    // RabbitMQ 3.10: queue.unbind naming a missing exchange or a missing queue is unbind-ok
    // (idempotent), unlike queue.bind which is 404.
    assert!(r1.is_ok(), "{r1:?}");
    assert!(r2.is_ok(), "{r2:?}");
}

#[tokio::test]
async fn purge_returns_message_count() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-purge").await;
    for i in 0..5u8 {
        publish(&ch, "", &q, &[i]).await;
    }
    wait_ready(&ch, &q, 5).await;
    let n = ch
        .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        0
    );
    assert_eq!(get_body(&ch, &q).await, None);
}

#[tokio::test]
async fn purge_does_not_touch_unacked() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-purge-unacked").await;
    publish(&ch, "", &q, b"a").await;
    publish(&ch, "", &q, b"b").await;
    wait_ready(&ch, &q, 2).await;
    let cch = conn.create_channel().await.unwrap();
    let got = cch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.delivery.data, b"a");
    assert_eq!(
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        1
    );
    // The unacked message comes back when its channel closes.
    cch.close(200, "ok".into()).await.unwrap();
    let back = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.delivery.data, b"a");
    assert!(back.delivery.redelivered);
}

#[tokio::test]
async fn purge_missing_queue_is_404() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let err = ch
        .queue_purge(
            unique("q-missing").as_str().into(),
            QueuePurgeOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn delete_returns_message_count() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-delete").await;
    for i in 0..4u8 {
        publish(&ch, "", &q, &[i]).await;
    }
    wait_ready(&ch, &q, 4).await;
    assert_eq!(
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap(),
        4
    );
    let err = declare(&ch, &q, passive(), FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn delete_missing_queue_is_ok() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // RabbitMQ 3.10: queue.delete of a nonexistent queue is delete-ok with message_count 0.
    let n = ch
        .queue_delete(
            unique("q-never").as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .expect("delete missing");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn delete_if_unused_with_consumer_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-inuse").await;
    let _consumer = consume(&ch, &q).await.unwrap();
    let dch = conn.create_channel().await.unwrap();
    let err = dch
        .queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - queue '<q>' in vhost '/' in use".
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use")
    );
    declare(&ch, &q, passive(), FieldTable::default())
        .await
        .expect("still there");
}

#[tokio::test]
async fn delete_if_empty_with_messages_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-notempty").await;
    publish(&ch, "", &q, b"x").await;
    wait_ready(&ch, &q, 1).await;
    let dch = conn.create_channel().await.unwrap();
    let err = dch
        .queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - queue '<q>' in vhost '/' not empty".
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty")
    );
    // if-empty and if-unused both satisfied once drained and no consumers.
    get_body(&ch, &q).await.unwrap();
    let n = ch
        .queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_empty: true,
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn delete_queue_cancels_consumers_on_other_connection() {
    let broker = Broker::start();
    let (_c1, ch1) = connect_channel(&broker).await;
    let q = declare_queue(&ch1, "q-del-cancel").await;
    let mut consumer = consume(&ch1, &q).await.unwrap();
    let (_c2, ch2) = connect_channel(&broker).await;
    ch2.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    // Server-sent basic.cancel (consumer_cancel_notify): lapin ends the consumer stream.
    use futures_lite::StreamExt;
    let end = within("consumer cancel", consumer.next()).await;
    assert!(end.is_none(), "{end:?}");
    assert!(ch1.status().connected(), "the channel stays open");
}

#[tokio::test]
async fn delete_returns_count_excluding_unacked() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "q-del-unacked").await;
    for i in 0..3u8 {
        publish(&ch, "", &q, &[i]).await;
    }
    wait_ready(&ch, &q, 3).await;
    let cch = conn.create_channel().await.unwrap();
    cch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    // RabbitMQ 3.10: delete-ok message_count counts ready messages only.
    assert_eq!(
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap(),
        2
    );
}

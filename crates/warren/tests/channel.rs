//! Channel lifecycle and channel-level error isolation.
mod common;

use common::*;
use lapin::{options::*, types::FieldTable};

#[tokio::test]
async fn open_and_close_channel() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let ch = conn.create_channel().await.unwrap();
    assert!(ch.status().connected());
    ch.close(200, "done".into()).await.unwrap();
    assert!(!ch.status().connected());
    assert!(conn.status().connected());
    // Operations on a closed channel fail client-side.
    assert!(ch.basic_qos(1, BasicQosOptions::default()).await.is_err());
}

#[tokio::test]
async fn many_channels_on_one_connection() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let mut chans = Vec::new();
    for _ in 0..100 {
        chans.push(within("channel.open", conn.create_channel()).await.unwrap());
    }
    let q = declare_queue(&chans[0], "many-ch").await;
    for (i, ch) in chans.iter().enumerate() {
        publish(ch, "", &q, format!("{i}").as_bytes()).await;
    }
    wait_ready(&chans[0], &q, 100).await;
    for ch in chans.iter().skip(50) {
        ch.close(200, "ok".into()).await.unwrap();
    }
    for ch in chans.iter().take(50) {
        within("qos", ch.basic_qos(5, BasicQosOptions::default()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn channel_error_closes_only_that_channel() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let bad = conn.create_channel().await.unwrap();
    let good = conn.create_channel().await.unwrap();
    let q = declare_queue(&good, "isolation").await;

    let err = bad
        .queue_declare(
            unique("missing").as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 404 "NOT_FOUND - no queue 'x' in vhost '/'", class 50 method 10.
    assert_eq!(reply_code(&err), Some(404));
    assert!(reply_text(&err)
        .unwrap()
        .starts_with("NOT_FOUND - no queue '"));
    assert!(err.is_amqp_soft_error());

    // The failed channel is unusable...
    assert!(bad.basic_qos(1, BasicQosOptions::default()).await.is_err());
    // ...but the connection and the sibling channel keep working.
    assert!(conn.status().connected());
    publish(&good, "", &q, b"still-alive").await;
    assert_eq!(get_body(&good, &q).await.unwrap(), b"still-alive");
    // And a new channel can be opened on the same connection.
    let again = conn.create_channel().await.unwrap();
    assert_eq!(get_body(&again, &q).await, None);
}

#[tokio::test]
async fn channel_error_does_not_disturb_consumers_on_other_channels() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let good = conn.create_channel().await.unwrap();
    let q = declare_queue(&good, "iso-consumer").await;
    let mut consumer = good
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let bad = conn.create_channel().await.unwrap();
    let err = bad
        .exchange_declare(
            unique("missing-x").as_str().into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    publish(&good, "", &q, b"after").await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"after");
}

#[tokio::test]
async fn many_channel_errors_in_a_row() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    for _ in 0..20 {
        let ch = conn.create_channel().await.unwrap();
        let err = ch
            .queue_declare(
                unique("missing").as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(reply_code(&err), Some(404));
    }
    assert!(conn.status().connected());
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "after-errors").await;
}

#[tokio::test]
async fn channel_flow_active_true_is_acknowledged() {
    let broker = Broker::start();
    let (_conn, ch) = connect_channel(&broker).await;
    // RabbitMQ 3.10 answers channel.flow(active=true) with flow-ok(active=true).
    let active = within(
        "channel.flow",
        ch.channel_flow(ChannelFlowOptions { active: true }),
    )
    .await
    .unwrap();
    assert!(active);
}

#[tokio::test]
async fn channel_flow_active_false_is_not_implemented() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let mut events = conn.events_listener();
    let ch = conn.create_channel().await.unwrap();
    // RabbitMQ 3.10: client-initiated channel.flow(active=false) is unsupported:
    // connection.close 540 "NOT_IMPLEMENTED - active=false", class 20 method 20.
    let res = ch.channel_flow(ChannelFlowOptions { active: false }).await;
    assert_eq!(connection_closed_code(&mut events).await, 540);
    if let Err(e) = res {
        assert_eq!(reply_code(&e), Some(540));
    }
}

#[tokio::test]
async fn channel_close_with_pending_unacked_requeues() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let ch = conn.create_channel().await.unwrap();
    let q = declare_queue(&ch, "close-requeue").await;
    publish(&ch, "", &q, b"m").await;
    let c2 = conn.create_channel().await.unwrap();
    let got = c2
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    assert!(!got.delivery.redelivered);
    c2.close(200, "bye".into()).await.unwrap();
    let again = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.delivery.data, b"m");
    assert!(again.delivery.redelivered);
}

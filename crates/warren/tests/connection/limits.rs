//! Limits that keep one client from costing the others their service: connections (global and
//! per vhost), queues per vhost, consumers per channel, message size and transaction size.
//! Each test hits its limit, checks the documented error and that the broker serves on.

use super::*;
use lapin::BasicProperties;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `set_vhost_limits`: `max-connections` refuses the next `connection.open` with 530 and
/// `max-queues` the next new queue with 406, both with RabbitMQ's texts; existing queues
/// still redeclare, and a closed connection frees its slot. (Warren only: on a shared
/// RabbitMQ the limits would hit every other test on `/`.)
#[tokio::test]
async fn vhost_limits_refuse_connections_and_queues_as_rabbitmq_does() {
    if external_broker() {
        return;
    }
    let broker = Broker::start();
    ctl(
        &broker,
        &[
            "set_vhost_limits",
            r#"{"max-connections": 1, "max-queues": 1}"#,
        ],
    );
    let conn = connect(&broker).await;
    let ch = conn.create_channel().await.unwrap();
    let q = declare_queue(&ch, "limited").await;
    // RabbitMQ 3.10: "PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost
    // 'limtest' (1) is reached" (406, channel closed).
    let text = expect_code(
        ch.queue_declare(
            "second".into(),
            lapin::options::QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
    );
    assert!(
        text.contains("cannot declare queue 'second': queue limit in vhost '/' (1) is reached"),
        "{text}"
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        q.as_str().into(),
        lapin::options::QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("an existing queue still redeclares");
    // RabbitMQ 3.10: "NOT_ALLOWED - access to vhost 'limtest' refused for user 'guest':
    // connection limit (1) is reached" (530 on connection.open).
    let err = connect_url(&broker.url())
        .await
        .expect_err("over the limit");
    let shown = format!("{err:?}");
    assert!(
        shown.contains(
            "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (1) is reached"
        ),
        "{shown}"
    );
    conn.close(200, "bye".into()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let again = loop {
        match connect_url(&broker.url()).await {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("the closed connection's slot was not given back: {e:?}"),
        }
    };
    drop(again);
    ctl(&broker, &["clear_vhost_limits"]);
    let (_c, ch) = connect_channel(&broker).await;
    declare_queue(&ch, "unlimited").await;
}

/// `--max-message-size`: a larger body closes the channel with 406 and RabbitMQ's text
/// (rabbit_channel: "message size ~B is larger than configured max size ~B"); a body at the
/// limit passes and the connection lives on.
#[tokio::test]
async fn message_over_max_size_closes_the_channel_with_406() {
    if external_broker() {
        return; // RabbitMQ's max_message_size is a config-file setting.
    }
    let broker = Broker::start_with_args(&["--max-message-size", "1024"]);
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "sized").await;
    publish(&ch, "", &q, &[b'a'; 1024]).await;
    wait_ready(&ch, &q, 1).await;
    let mut watch = watch_channel(&ch).await;
    // The publish itself may succeed: the close arrives asynchronously.
    let _ = ch
        .basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            &[b'b'; 2000],
            lapin::BasicProperties::default(),
        )
        .await;
    let closed = channel_close_error(&mut watch).await;
    assert_eq!(reply_code(&closed), Some(406), "{closed:?}");
    let text = reply_text(&closed).unwrap_or_default();
    assert!(
        text.contains("message size 2000 is larger than configured max size 1024"),
        "{text}"
    );
    let ch2 = conn
        .create_channel()
        .await
        .expect("the connection lives on");
    wait_ready(&ch2, &q, 1).await;
}

/// `--connection-max`: RabbitMQ 3.10's acceptor stops accepting at `connection_max`; the
/// client's TCP connection waits in the listen backlog with no AMQP answer (measured: its
/// handshake times out). Warren does the same, and accepts the waiting client once a slot
/// frees.
#[tokio::test]
async fn connection_max_leaves_further_connections_waiting_until_one_closes() {
    if external_broker() {
        return;
    }
    let broker = Broker::start_with_args(&["--connection-max", "2"]);
    let first = connect(&broker).await;
    let second = connect(&broker).await;
    let mut waiting = tokio::net::TcpStream::connect(broker.addr.as_str())
        .await
        .expect("the kernel completes the TCP handshake from the backlog");
    waiting.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut buf = [0u8; 7];
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(700),
        waiting.read_exact(&mut buf),
    )
    .await;
    assert!(
        early.is_err(),
        "a third connection must not be served yet: {early:?}"
    );
    // Those already in are served as before.
    let ch = within("channel on an accepted connection", second.create_channel())
        .await
        .unwrap();
    declare_queue(&ch, "served").await;
    first.close(200, "make room".into()).await.unwrap();
    within(
        "connection.start once a slot frees",
        waiting.read_exact(&mut buf),
    )
    .await
    .expect("read");
    assert_eq!(buf[0], 1, "a method frame (connection.start)");
    assert_eq!(&buf[1..3], &[0, 0], "on channel 0");
}

/// `--consumer-max-per-channel`: the consumer over the limit is a 530 connection error with
/// RabbitMQ's text (rabbit_channel, 3.12+: "reached maximum (~B) of consumers per channel");
/// other connections are served.
#[tokio::test]
async fn consumer_over_the_per_channel_limit_is_530() {
    if external_broker() {
        return; // RabbitMQ 3.10 has no consumer_max_per_channel.
    }
    let broker = Broker::start_with_args(&["--consumer-max-per-channel", "2"]);
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "consumed").await;
    // Held: lapin cancels a consumer that is dropped.
    let mut held = Vec::new();
    for _ in 0..2 {
        let consumer = ch
            .basic_consume(
                q.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("within the limit");
        held.push(consumer);
    }
    let other = conn.create_channel().await.unwrap();
    let _other_consumer = other
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the limit is per channel");
    let mut events = conn.events_listener();
    let _ = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    let closed = connection_close_error(&mut events).await;
    assert_eq!(reply_code(&closed), Some(530), "{closed:?}");
    let text = reply_text(&closed).unwrap_or_default();
    assert!(
        text.contains("NOT_ALLOWED - reached maximum (2) of consumers per channel"),
        "{text}"
    );
    let (_c2, ch2) = connect_channel(&broker).await;
    publish(&ch2, "", &q, b"still served").await;
}

/// `--transaction-max-bytes`: a transaction buffering more than the limit closes its channel
/// with 406; nothing of it is routed, and a new transaction within the limit commits.
/// (RabbitMQ has no such limit: a documented difference.)
#[tokio::test]
async fn transaction_over_max_bytes_closes_the_channel_and_routes_nothing() {
    if external_broker() {
        return;
    }
    let broker = Broker::start_with_args(&["--transaction-max-bytes", "10000"]);
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-limit").await;
    ch.tx_select().await.unwrap();
    let mut watch = watch_channel(&ch).await;
    for _ in 0..3 {
        // 4000-byte bodies: the third passes 10000 bytes.
        let sent = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &[b'x'; 4000],
                BasicProperties::default(),
            )
            .await;
        if sent.is_err() {
            break;
        }
    }
    let closed = channel_close_error(&mut watch).await;
    assert_eq!(reply_code(&closed), Some(406), "{closed:?}");
    let text = reply_text(&closed).unwrap_or_default();
    assert!(
        text.contains("uncommitted publishes exceed transaction_max_bytes (10000 bytes)"),
        "{text}"
    );
    let ch2 = conn
        .create_channel()
        .await
        .expect("the connection lives on");
    wait_ready(&ch2, &q, 0).await;
    ch2.tx_select().await.unwrap();
    publish(&ch2, "", &q, &[b'y'; 4000]).await;
    publish(&ch2, "", &q, &[b'y'; 4000]).await;
    ch2.tx_commit().await.expect("within the limit");
    publish(&ch2, "", &q, &[b'y'; 4000]).await;
    publish(&ch2, "", &q, &[b'y'; 4000]).await;
    ch2.tx_commit()
        .await
        .expect("the count starts again after a commit");
    wait_ready(&ch2, &q, 4).await;
}

/// `--consumer-timeout` (RabbitMQ's `consumer_timeout`, 30 min by default): RabbitMQ 3.10
/// with `consumer_timeout = 5000` closed both a consumer's channel and a `basic.get`
/// channel holding an unacked delivery with 406 "delivery acknowledgement on channel 1
/// timed out. Timeout value used: 5000 ms. ..." on class 0 method 0 (at its next one-minute
/// channel tick; raw frames), and requeued the messages. A channel that acks in time is left
/// alone.
#[tokio::test]
async fn unacked_delivery_past_the_consumer_timeout_closes_its_channel_with_406() {
    if external_broker() {
        return; // consumer_timeout is a config-file setting in RabbitMQ.
    }
    use futures_lite::StreamExt;
    let broker = Broker::start_with_args(&["--consumer-timeout", "1000"]);
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "ack-timeout").await;
    for body in [&b"consumed"[..], b"got", b"acked"] {
        publish(&ch, "", &q, body).await;
    }
    wait_ready(&ch, &q, 3).await;
    let acking = conn.create_channel().await.unwrap();
    let getter = conn.create_channel().await.unwrap();
    let mut getter_watch = watch_channel(&getter).await;
    let got = getter
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    let consuming = conn.create_channel().await.unwrap();
    consuming
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consuming
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = within("delivery", consumer.next())
        .await
        .expect("a delivery")
        .expect("a delivery");
    // The acking channel takes and acks a message well within the timeout, repeatedly.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        if let Some(m) = acking
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            acking
                .basic_reject(
                    m.delivery.delivery_tag,
                    BasicRejectOptions { requeue: true },
                )
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let closed = loop {
        match within("channel.close of the consumer", consumer.next()).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("consumer ended without an error"),
        }
    };
    assert_eq!(reply_code(&closed), Some(406), "{closed:?}");
    let text = reply_text(&closed).unwrap_or_default();
    assert!(
        text.contains("PRECONDITION_FAILED - delivery acknowledgement on channel")
            && text.contains(
                "timed out. Timeout value used: 1000 ms. This timeout value can be configured, see consumers doc guide to learn more"
            ),
        "{text}"
    );
    assert_eq!(channel_closed_code(&mut getter_watch).await, 406);
    drop((got, first));
    // Both unacked messages are back; the acking channel is open and sees them.
    wait_ready(&acking, &q, 3).await;
}

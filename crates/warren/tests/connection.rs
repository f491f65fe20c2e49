//! Connection-level behaviour: open/close, authentication, vhosts, tune negotiation.
mod common;

use common::*;
use lapin::{options::*, types::FieldTable};

#[tokio::test]
async fn connect_and_close_cleanly() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    assert!(conn.status().connected());
    assert_eq!(conn.status().vhost().as_str(), "/");
    within("connection.close", conn.close(200, "bye".into()))
        .await
        .expect("close");
    assert!(conn.status().closed());
}

#[tokio::test]
async fn many_sequential_connections() {
    let broker = Broker::start();
    for _ in 0..10 {
        let conn = connect(&broker).await;
        let ch = within("channel", conn.create_channel()).await.unwrap();
        within("qos", ch.basic_qos(1, BasicQosOptions::default()))
            .await
            .unwrap();
        conn.close(200, "ok".into()).await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_connections() {
    let broker = Broker::start();
    let mut conns = Vec::new();
    for _ in 0..20 {
        conns.push(connect(&broker).await);
    }
    for c in &conns {
        let ch = within("channel", c.create_channel()).await.unwrap();
        declare_queue(&ch, "conc").await;
    }
    for c in conns {
        c.close(200, "ok".into()).await.unwrap();
    }
}

#[tokio::test]
async fn bad_password_is_access_refused() {
    let broker = Broker::start();
    let err = connect_url(&format!("amqp://guest:wrong-password@{}/%2f", broker.addr))
        .await
        .expect_err("login must fail");
    // RabbitMQ 3.10: with the authentication_failure_close capability (lapin sends it) the
    // server replies connection.close 403 "ACCESS_REFUSED - Login was refused using
    // authentication mechanism PLAIN. For details see the broker logfile." (class 0 method 0)
    // in place of connection.tune.
    assert_eq!(reply_code(&err), Some(403), "{err:?}");
    assert!(
        reply_text(&err).unwrap().starts_with("ACCESS_REFUSED"),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_user_is_access_refused() {
    let broker = Broker::start();
    let err = connect_url(&format!("amqp://no-such-user-xyz:pw@{}/%2f", broker.addr))
        .await
        .expect_err("login must fail");
    assert_eq!(reply_code(&err), Some(403), "{err:?}");
}

#[tokio::test]
async fn unknown_vhost_is_not_allowed() {
    let broker = Broker::start();
    let vhost = unique("no-such-vhost");
    let err = connect_url(&format!("amqp://guest:guest@{}/{vhost}", broker.addr))
        .await
        .expect_err("connection.open must fail");
    // RabbitMQ 3.10: connection.close 530 "NOT_ALLOWED - vhost <name> not found" in reply to
    // connection.open (class 10 method 40).
    assert_eq!(reply_code(&err), Some(530), "{err:?}");
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("NOT_ALLOWED - vhost {vhost} not found")
    );
}

#[tokio::test]
async fn broker_still_serves_after_failed_logins() {
    let broker = Broker::start();
    for _ in 0..3 {
        let _ = connect_url(&format!("amqp://guest:nope@{}/%2f", broker.addr)).await;
    }
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "after-bad-login").await;
    publish(&ch, "", &q, b"x").await;
    wait_ready(&ch, &q, 1).await;
}

#[tokio::test]
async fn default_tune_values() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let cfg = conn.configuration();
    // RabbitMQ 3.10 defaults: channel_max 2047, frame_max 131072, heartbeat 60.
    // lapin asks for 0 (no limit) / its own defaults, so it gets the server's values.
    assert_eq!(cfg.channel_max(), 2047);
    assert_eq!(cfg.frame_max(), 131072);
    assert_eq!(cfg.heartbeat(), 60);
}

#[tokio::test]
async fn client_can_lower_channel_max_and_frame_max() {
    let broker = Broker::start();
    let conn = connect_url(&format!(
        "{}?channel_max=10&frame_max=8192&heartbeat=7",
        broker.url()
    ))
    .await
    .unwrap();
    let cfg = conn.configuration();
    assert_eq!(cfg.channel_max(), 10);
    assert_eq!(cfg.frame_max(), 8192);
    assert_eq!(cfg.heartbeat(), 7);
    // A message far larger than frame_max is still delivered byte-exact (split in body frames).
    let ch = conn.create_channel().await.unwrap();
    let q = declare_queue(&ch, "small-frames").await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", &q, &body).await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), body);
}

#[tokio::test]
async fn channel_max_is_enforced_client_side_by_lapin() {
    let broker = Broker::start();
    let conn = connect_url(&format!("{}?channel_max=3", broker.url()))
        .await
        .unwrap();
    let mut chans = Vec::new();
    for _ in 0..3 {
        chans.push(conn.create_channel().await.expect("within channel_max"));
    }
    let err = conn
        .create_channel()
        .await
        .expect_err("4th channel exceeds channel_max=3");
    assert!(
        matches!(err.kind(), lapin::ErrorKind::ChannelsLimitReached),
        "{err:?}"
    );
    // The connection is still fine.
    declare_queue(&chans[2], "chmax").await;
}

#[tokio::test]
async fn connection_close_closes_its_channels() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let ch1 = conn.create_channel().await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    assert!(!ch1.status().connected());
    assert!(!ch2.status().connected());
    assert!(ch1.basic_qos(1, BasicQosOptions::default()).await.is_err());
}

#[tokio::test]
async fn connection_error_closes_every_channel() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let mut events = conn.events_listener();
    let ch1 = conn.create_channel().await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    // An unknown exchange type is a connection error (503) in RabbitMQ 3.10.
    let err = ch1
        .exchange_declare(
            unique("bad-type").as_str().into(),
            lapin::ExchangeKind::Custom("no-such-type".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(503));
    assert_eq!(connection_closed_code(&mut events).await, 503);
    assert!(ch2.basic_qos(1, BasicQosOptions::default()).await.is_err());
    assert!(!conn.status().connected());
    // The broker keeps serving new connections.
    let (_c, ch) = connect_channel(&broker).await;
    declare_queue(&ch, "after-conn-error").await;
}

#[tokio::test]
async fn client_properties_with_connection_name_accepted() {
    let broker = Broker::start();
    let props = lapin::ConnectionProperties::default()
        .with_connection_name("warren-test-conn".into())
        .with_client_property("x-test".into(), "yes".into());
    let conn = within("connect", lapin::Connection::connect(&broker.url(), props))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "named-conn").await;
}

/// The embeddable broker (`warren::Embedded`): an in-process Warren on a free loopback port
/// serves a real client, keeps durable state in its data directory across two embedded runs,
/// and stops (refusing connections) when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_serves_clients_and_stops_on_drop() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    let dir = std::env::temp_dir().join(format!("warren-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = warren::EmbeddedOptions {
        data_dir: Some(dir.clone()),
        ..Default::default()
    };
    // Started straight from async code: no block_on on the caller's runtime.
    let broker = warren::Embedded::start_with(opts.clone()).expect("embedded broker");
    assert!(
        dir.join("warren.sock").exists(),
        "with a data directory it serves the control socket for warren ctl"
    );
    let url = broker.url();
    {
        let conn = connect_url(&url)
            .await
            .expect("connect to the embedded broker");
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("embedded-q".into(), durable, FieldTable::default())
            .await
            .expect("declare");
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        let confirm = ch
            .basic_publish(
                "".into(),
                "embedded-q".into(),
                BasicPublishOptions::default(),
                b"kept",
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
    }
    tokio::task::block_in_place(|| drop(broker));
    assert!(
        connect_url(&url).await.is_err(),
        "a dropped embedded broker still accepts connections"
    );
    let again = tokio::task::block_in_place(|| warren::Embedded::start_with(opts))
        .expect("embedded broker again");
    let conn = connect_url(&again.url()).await.expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("embedded-q".into(), passive, FieldTable::default())
        .await
        .expect("the durable queue is back");
    assert_eq!(q.message_count(), 1);
    drop(conn);
    tokio::task::block_in_place(|| drop(again));
    let _ = std::fs::remove_dir_all(&dir);
}

#[path = "connection/limits.rs"]
mod limits;

#[path = "connection/access.rs"]
mod access;

#[path = "connection/tls.rs"]
mod tls;

#[path = "connection/process.rs"]
mod process;

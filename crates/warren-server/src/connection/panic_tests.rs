//! A connection task that panics still tears its connection down: its consumers leave their
//! queues and its unacknowledged deliveries go back, and the server serves others on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warren_amqp::{BasicConsume, BasicProperties, ChannelOpen, FieldTable, Method};
use warren_core::{Broker, Message, QueueSpec};
use warren_perf::proto::SetupConn;

/// A channel id whose `channel.open` makes the connection task panic (test builds only).
pub(crate) const PANIC_CHANNEL: u16 = 999;

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_connection_is_torn_down_and_its_unacked_messages_requeued() {
    let broker = Arc::new(Broker::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(crate::serve(
        Arc::clone(&broker),
        crate::ServerConfig::default(),
        vec![listener.into()],
        stop_rx,
    ));

    let vhost = broker.vhost("/").unwrap();
    let spec = QueueSpec {
        name: "victim".into(),
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: FieldTable::default(),
    };
    let queue = vhost.declare_queue(spec, false, 0).unwrap().queue;
    for i in 0..3 {
        let props = BasicProperties::default().to_bytes();
        let body = Bytes::from(format!("m{i}"));
        queue.publish(Arc::new(Message::new(String::new(), "victim", props, body)));
    }

    let uri = warren_perf::uri::parse(&format!("amqp://guest:guest@{addr}/%2f")).unwrap();
    let mut conn = SetupConn::open(&uri, "doomed").await.unwrap();
    conn.open_channel(1).await.unwrap();
    let consume = BasicConsume {
        queue: "victim".into(),
        consumer_tag: "c".into(),
        ..Default::default()
    };
    let reply = conn.rpc(1, Method::BasicConsume(consume)).await.unwrap();
    assert!(matches!(reply, Method::BasicConsumeOk(_)), "{reply:?}");
    wait_until("the three deliveries are unacked", || {
        queue.message_count() == 0 && queue.unacked_count() == 3
    })
    .await;
    assert_eq!(queue.consumer_count(), 1);

    conn.send(PANIC_CHANNEL, &Method::ChannelOpen(ChannelOpen::default()))
        .await
        .unwrap();
    wait_until("the dead connection's consumer is gone", || {
        queue.consumer_count() == 0
    })
    .await;
    assert_eq!(queue.message_count(), 3, "its unacked deliveries are back");
    assert_eq!(queue.unacked_count(), 0);

    // Everyone else is still served.
    let mut other = SetupConn::open(&uri, "survivor").await.unwrap();
    other.open_channel(1).await.unwrap();
    other.close().await.unwrap();
    drop(conn);
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap();
}

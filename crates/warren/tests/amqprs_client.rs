//! A representative subset exercised through a second, independent client library (amqprs),
//! so that the broker is not only tuned to lapin's quirks.
mod common;

use amqprs::error::Error as AmqprsError;
use amqprs::{
    callbacks::{ChannelCallback, ConnectionCallback},
    channel::{
        BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicNackArguments,
        BasicPublishArguments, BasicQosArguments, BasicRejectArguments, Channel,
        ConfirmSelectArguments, ExchangeDeclareArguments, QueueBindArguments,
        QueueDeclareArguments, QueueDeleteArguments, QueuePurgeArguments,
    },
    connection::{Connection, OpenConnectionArguments},
    Ack, BasicProperties, Cancel, Close, CloseChannel, FieldTable, FieldValue, Nack, Return,
};
use async_trait::async_trait;

type Result<T> = std::result::Result<T, AmqprsError>;
use common::*;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Events observed through amqprs callbacks.
#[derive(Debug)]
enum Ev {
    ConnClose {
        code: u16,
        class: u16,
        method: u16,
        text: String,
    },
    ChanClose {
        code: u16,
        class: u16,
        method: u16,
        text: String,
    },
    Ack {
        tag: u64,
        multiple: bool,
    },
    #[allow(dead_code)]
    Nack {
        tag: u64,
    },
    Return {
        code: u16,
        text: String,
        routing_key: String,
        body: Vec<u8>,
    },
    Cancel {
        tag: String,
    },
}

struct ConnCb(UnboundedSender<Ev>);

#[async_trait]
impl ConnectionCallback for ConnCb {
    async fn close(&mut self, _c: &Connection, close: Close) -> Result<()> {
        let _ = self.0.send(Ev::ConnClose {
            code: close.reply_code(),
            class: close.class_id(),
            method: close.method_id(),
            text: close.reply_text().clone(),
        });
        Ok(())
    }
    async fn blocked(&mut self, _c: &Connection, _reason: String) {}
    async fn unblocked(&mut self, _c: &Connection) {}
    async fn secret_updated(&mut self, _c: &Connection) {}
}

struct ChanCb(UnboundedSender<Ev>);

#[async_trait]
impl ChannelCallback for ChanCb {
    async fn close(&mut self, _ch: &Channel, close: CloseChannel) -> Result<()> {
        let _ = self.0.send(Ev::ChanClose {
            code: close.reply_code(),
            class: close.class_id(),
            method: close.method_id(),
            text: close.reply_text().clone(),
        });
        Ok(())
    }
    async fn cancel(&mut self, _ch: &Channel, cancel: Cancel) -> Result<()> {
        let _ = self.0.send(Ev::Cancel {
            tag: cancel.consumer_tag().clone(),
        });
        Ok(())
    }
    async fn flow(&mut self, _ch: &Channel, active: bool) -> Result<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _ch: &Channel, ack: Ack) {
        let _ = self.0.send(Ev::Ack {
            tag: ack.delivery_tag(),
            multiple: ack.mutiple(),
        });
    }
    async fn publish_nack(&mut self, _ch: &Channel, nack: Nack) {
        let _ = self.0.send(Ev::Nack {
            tag: nack.delivery_tag(),
        });
    }
    async fn publish_return(
        &mut self,
        _ch: &Channel,
        ret: Return,
        _props: BasicProperties,
        content: Vec<u8>,
    ) {
        let _ = self.0.send(Ev::Return {
            code: ret.reply_code(),
            text: ret.reply_text().clone(),
            routing_key: ret.routing_key().clone(),
            body: content,
        });
    }
}

fn open_args(broker: &Broker, user: &str, password: &str) -> OpenConnectionArguments {
    OpenConnectionArguments::new(&broker.host(), broker.port(), user, password)
}

struct Client {
    conn: Connection,
    ch: Channel,
    events: UnboundedReceiver<Ev>,
}

async fn client(broker: &Broker) -> Client {
    let (tx, events) = unbounded_channel();
    let conn = within(
        "amqprs connect",
        Connection::open(&open_args(broker, "guest", "guest")),
    )
    .await
    .expect("amqprs connect");
    conn.register_callback(ConnCb(tx.clone())).await.unwrap();
    let ch = within("amqprs channel", conn.open_channel(None))
        .await
        .unwrap();
    ch.register_callback(ChanCb(tx)).await.unwrap();
    Client { conn, ch, events }
}

impl Client {
    async fn next_event(&mut self) -> Ev {
        within("amqprs callback event", self.events.recv())
            .await
            .expect("event channel open")
    }
    async fn declare(&self, prefix: &str) -> String {
        let name = unique(prefix);
        let (n, m, c) = within(
            "queue.declare",
            self.ch.queue_declare(QueueDeclareArguments::new(&name)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((n.as_str(), m, c), (name.as_str(), 0, 0));
        name
    }
    async fn publish(&self, exchange: &str, key: &str, body: &[u8]) {
        within(
            "publish",
            self.ch.basic_publish(
                BasicProperties::default(),
                body.to_vec(),
                BasicPublishArguments::new(exchange, key),
            ),
        )
        .await
        .unwrap();
    }
    async fn get(
        &self,
        q: &str,
        no_ack: bool,
    ) -> Option<(amqprs::GetOk, BasicProperties, Vec<u8>)> {
        within(
            "basic.get",
            self.ch
                .basic_get(BasicGetArguments::new(q).no_ack(no_ack).finish()),
        )
        .await
        .unwrap()
    }
    async fn ready(&self, q: &str) -> u32 {
        let (_, m, _) = self
            .ch
            .queue_declare(QueueDeclareArguments::new(q).passive(true).finish())
            .await
            .unwrap()
            .unwrap();
        m
    }
    async fn wait_ready(&self, q: &str, n: u32) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.ready(q).await != n {
            assert!(
                std::time::Instant::now() < deadline,
                "queue {q} never reached {n} ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn amqprs_connect_and_server_capabilities() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let caps = c.conn.server_properties().capabilities();
    assert!(caps.publisher_confirms());
    assert!(caps.exchange_exchange_bindings());
    assert!(caps.basic_nack());
    assert!(caps.consumer_cancel_notify());
    assert!(caps.connection_blocked());
    assert!(caps.authentication_failure_close());
    assert!(caps.per_consumer_qos());
    assert!(caps.direct_reply_to());
    assert_eq!(c.conn.channel_max(), 2047);
    assert_eq!(c.conn.frame_max(), 131072);
    assert!(c.conn.is_open());
    c.ch.close().await.unwrap();
    c.conn.close().await.unwrap();
}

#[tokio::test]
async fn amqprs_bad_credentials_fail() {
    let broker = Broker::start();
    let res = within(
        "connect",
        Connection::open(&open_args(&broker, "guest", "definitely-wrong")),
    )
    .await;
    let err = res.err().expect("login must fail");
    // RabbitMQ 3.10: amqprs does not announce the authentication_failure_close client
    // capability, so the broker does NOT send connection.close 403; it just closes the socket
    // after start-ok (amqprs: "network io error: Connection reset by peer" or EOF).
    assert!(matches!(err, AmqprsError::NetworkError(_)), "{err}");
}

#[tokio::test]
async fn amqprs_unknown_vhost_fails() {
    let broker = Broker::start();
    let mut args = open_args(&broker, "guest", "guest");
    args.virtual_host(&unique("no-vhost"));
    let err = within("connect", Connection::open(&args))
        .await
        .err()
        .expect("open must fail");
    let msg = format!("{err}");
    assert!(msg.contains("530") || msg.contains("NOT_ALLOWED"), "{msg}");
}

#[tokio::test]
async fn amqprs_declare_bind_publish_get() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let x = unique("amqprs-x");
    c.ch.exchange_declare(ExchangeDeclareArguments::new(&x, "topic"))
        .await
        .unwrap();
    let q = c.declare("amqprs-q").await;
    c.ch.queue_bind(QueueBindArguments::new(&q, &x, "a.*"))
        .await
        .unwrap();
    c.publish(&x, "a.b", b"hit").await;
    c.publish(&x, "b.a", b"miss").await;
    c.wait_ready(&q, 1).await;
    let (get_ok, _props, body) = c.get(&q, true).await.unwrap();
    assert_eq!(body, b"hit");
    assert_eq!(get_ok.exchange(), &x);
    assert_eq!(get_ok.routing_key(), "a.b");
    assert_eq!(get_ok.message_count(), 0);
    assert!(!get_ok.redelivered());
    assert!(c.get(&q, true).await.is_none(), "get-empty");
}

#[tokio::test]
async fn amqprs_consume_and_ack() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let q = c.declare("amqprs-consume").await;
    c.ch.basic_qos(BasicQosArguments::new(0, 2, false))
        .await
        .unwrap();
    for i in 0..4u8 {
        c.publish("", &q, &[i]).await;
    }
    let (tag, mut rx) =
        c.ch.basic_consume_rx(BasicConsumeArguments::new(&q, ""))
            .await
            .unwrap();
    assert!(tag.starts_with("amq.ctag-"), "{tag}");
    let mut tags = Vec::new();
    for i in 0..2u8 {
        let m = within("delivery", rx.recv()).await.unwrap();
        assert_eq!(m.content.unwrap(), vec![i]);
        tags.push(m.deliver.unwrap().delivery_tag());
    }
    // prefetch 2: nothing more until an ack.
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_err());
    c.ch.basic_ack(BasicAckArguments::new(tags[1], true))
        .await
        .unwrap();
    for i in 2..4u8 {
        let m = within("delivery", rx.recv()).await.unwrap();
        assert_eq!(m.content.unwrap(), vec![i]);
        let d = m.deliver.unwrap();
        assert_eq!(d.delivery_tag(), u64::from(i) + 1);
        c.ch.basic_ack(BasicAckArguments::new(d.delivery_tag(), false))
            .await
            .unwrap();
    }
    c.wait_ready(&q, 0).await;
}

#[tokio::test]
async fn amqprs_nack_requeue_and_reject() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let q = c.declare("amqprs-nack").await;
    c.publish("", &q, b"a").await;
    c.publish("", &q, b"b").await;
    c.wait_ready(&q, 2).await;
    let (a, _, _) = c.get(&q, false).await.unwrap();
    let (b, _, _) = c.get(&q, false).await.unwrap();
    c.ch.basic_reject(BasicRejectArguments::new(b.delivery_tag(), false))
        .await
        .unwrap();
    c.ch.basic_nack(BasicNackArguments::new(a.delivery_tag(), false, true))
        .await
        .unwrap();
    c.wait_ready(&q, 1).await;
    let (again, _, body) = c.get(&q, true).await.unwrap();
    assert_eq!(body, b"a");
    assert!(again.redelivered());
}

#[tokio::test]
async fn amqprs_purge_and_delete_counts() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let q = c.declare("amqprs-purge").await;
    for _ in 0..3 {
        c.publish("", &q, b"x").await;
    }
    c.wait_ready(&q, 3).await;
    assert_eq!(
        c.ch.queue_purge(QueuePurgeArguments::new(&q))
            .await
            .unwrap(),
        Some(3)
    );
    c.publish("", &q, b"y").await;
    c.wait_ready(&q, 1).await;
    assert_eq!(
        c.ch.queue_delete(QueueDeleteArguments::new(&q))
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn amqprs_properties_round_trip() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let q = c.declare("amqprs-props").await;
    let mut headers = FieldTable::new();
    headers.insert("str".try_into().unwrap(), FieldValue::from("v"));
    headers.insert("int".try_into().unwrap(), FieldValue::I(-5));
    headers.insert("bool".try_into().unwrap(), FieldValue::t(true));
    headers.insert("long".try_into().unwrap(), FieldValue::l(1 << 40));
    let props = BasicProperties::default()
        .with_content_type("text/plain")
        .with_content_encoding("utf-8")
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(3)
        .with_correlation_id("c1")
        .with_reply_to("r1")
        .with_expiration("600000")
        .with_message_id("m1")
        .with_timestamp(1_600_000_000)
        .with_message_type("t1")
        .with_user_id("guest")
        .with_app_id("amqprs-test")
        .with_cluster_id("cl")
        .finish();
    c.ch.basic_publish(
        props.clone(),
        b"body".to_vec(),
        BasicPublishArguments::new("", &q),
    )
    .await
    .unwrap();
    c.wait_ready(&q, 1).await;
    let (_, got, body) = c.get(&q, true).await.unwrap();
    assert_eq!(body, b"body");
    assert_eq!(got.content_type(), props.content_type());
    assert_eq!(got.content_encoding(), props.content_encoding());
    assert_eq!(got.headers(), props.headers());
    assert_eq!(got.delivery_mode(), Some(2));
    assert_eq!(got.priority(), Some(3));
    assert_eq!(got.correlation_id(), props.correlation_id());
    assert_eq!(got.reply_to(), props.reply_to());
    assert_eq!(got.expiration(), props.expiration());
    assert_eq!(got.message_id(), props.message_id());
    assert_eq!(got.timestamp(), Some(1_600_000_000));
    assert_eq!(got.message_type(), props.message_type());
    assert_eq!(got.user_id(), props.user_id());
    assert_eq!(got.app_id(), props.app_id());
    assert_eq!(got.cluster_id(), props.cluster_id());
}

#[tokio::test]
async fn amqprs_publisher_confirms_have_increasing_tags() {
    let broker = Broker::start();
    let mut c = client(&broker).await;
    let q = c.declare("amqprs-confirm").await;
    c.ch.confirm_select(ConfirmSelectArguments::new(false))
        .await
        .unwrap();
    for _ in 0..10 {
        c.publish("", &q, b"c").await;
    }
    let mut last = 0u64;
    while last < 10 {
        match c.next_event().await {
            Ev::Ack { tag, multiple } => {
                assert!(tag > last, "tags increase: {tag} after {last}");
                if !multiple {
                    assert_eq!(tag, last + 1);
                }
                last = tag;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(last, 10, "sequence numbers start at 1 and count publishes");
}

#[tokio::test]
async fn amqprs_mandatory_return_then_ack() {
    let broker = Broker::start();
    let mut c = client(&broker).await;
    c.ch.confirm_select(ConfirmSelectArguments::new(false))
        .await
        .unwrap();
    let key = unique("nowhere");
    c.ch.basic_publish(
        BasicProperties::default(),
        b"ret".to_vec(),
        BasicPublishArguments::new("", &key)
            .mandatory(true)
            .finish(),
    )
    .await
    .unwrap();
    // RabbitMQ 3.10: basic.return (312 NO_ROUTE) arrives before basic.ack(1).
    match c.next_event().await {
        Ev::Return {
            code,
            text,
            routing_key,
            body,
        } => {
            assert_eq!(
                (code, text.as_str(), routing_key.as_str(), body.as_slice()),
                (312, "NO_ROUTE", key.as_str(), &b"ret"[..])
            );
        }
        other => panic!("expected return first, got {other:?}"),
    }
    match c.next_event().await {
        Ev::Ack { tag, .. } => assert_eq!(tag, 1),
        other => panic!("expected ack, got {other:?}"),
    }
}

#[tokio::test]
async fn amqprs_channel_error_reports_code_class_method() {
    let broker = Broker::start();
    let mut c = client(&broker).await;
    let missing = unique("amqprs-missing");
    let res =
        c.ch.queue_declare(QueueDeclareArguments::new(&missing).passive(true).finish())
            .await;
    assert!(res.is_err());
    match c.next_event().await {
        Ev::ChanClose {
            code,
            class,
            method,
            text,
        } => {
            // RabbitMQ 3.10: channel.close 404 (50,10) "NOT_FOUND - no queue '<q>' in vhost '/'"
            assert_eq!((code, class, method), (404, 50, 10));
            assert_eq!(
                text,
                format!("NOT_FOUND - no queue '{missing}' in vhost '/'")
            );
        }
        other => panic!("expected channel close, got {other:?}"),
    }
    // The connection is still fine.
    let ch2 = c.conn.open_channel(None).await.unwrap();
    ch2.queue_declare(QueueDeclareArguments::new(&unique("amqprs-ok")))
        .await
        .unwrap();
}

#[tokio::test]
async fn amqprs_exchange_redeclare_conflict_is_406() {
    let broker = Broker::start();
    let mut c = client(&broker).await;
    let x = unique("amqprs-x406");
    c.ch.exchange_declare(ExchangeDeclareArguments::new(&x, "direct"))
        .await
        .unwrap();
    assert!(c
        .ch
        .exchange_declare(ExchangeDeclareArguments::new(&x, "fanout"))
        .await
        .is_err());
    match c.next_event().await {
        Ev::ChanClose {
            code,
            class,
            method,
            ..
        } => assert_eq!((code, class, method), (406, 40, 10)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn amqprs_unknown_delivery_tag_is_406() {
    let broker = Broker::start();
    let mut c = client(&broker).await;
    c.ch.basic_ack(BasicAckArguments::new(77, false))
        .await
        .unwrap();
    match c.next_event().await {
        Ev::ChanClose {
            code,
            class,
            method,
            text,
        } => {
            // RabbitMQ 3.10: channel.close 406 (60,80) "PRECONDITION_FAILED - unknown delivery tag 77"
            assert_eq!((code, class, method), (406, 60, 80));
            assert_eq!(text, "PRECONDITION_FAILED - unknown delivery tag 77");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn amqprs_exclusive_queue_locked_405() {
    let broker = Broker::start();
    let owner = client(&broker).await;
    let name = unique("amqprs-excl");
    owner
        .ch
        .queue_declare(QueueDeclareArguments::new(&name).exclusive(true).finish())
        .await
        .unwrap();
    let mut other = client(&broker).await;
    assert!(other
        .ch
        .basic_consume_rx(BasicConsumeArguments::new(&name, ""))
        .await
        .is_err());
    match other.next_event().await {
        Ev::ChanClose {
            code,
            class,
            method,
            ..
        } => assert_eq!((code, class, method), (405, 60, 20)),
        ev => panic!("{ev:?}"),
    }
}

#[tokio::test]
async fn amqprs_duplicate_consumer_tag_is_530_connection_error() {
    let broker = Broker::start();
    let mut c = client(&broker).await;
    let q = c.declare("amqprs-dup").await;
    let _rx1 =
        c.ch.basic_consume_rx(BasicConsumeArguments::new(&q, "same"))
            .await
            .unwrap();
    let _ =
        c.ch.basic_consume_rx(BasicConsumeArguments::new(&q, "same"))
            .await;
    match c.next_event().await {
        Ev::ConnClose {
            code,
            class,
            method,
            text,
        } => {
            // RabbitMQ 3.10: CONNECTION close 530 (60,20) "NOT_ALLOWED - attempt to reuse consumer tag 'same'"
            assert_eq!((code, class, method), (530, 60, 20));
            assert_eq!(text, "NOT_ALLOWED - attempt to reuse consumer tag 'same'");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn amqprs_server_cancel_on_queue_delete() {
    let broker = Broker::start();
    let mut c = client(&broker).await;
    let q = c.declare("amqprs-cancel").await;
    let (tag, _rx) =
        c.ch.basic_consume_rx(BasicConsumeArguments::new(&q, ""))
            .await
            .unwrap();
    let other = client(&broker).await;
    other
        .ch
        .queue_delete(QueueDeleteArguments::new(&q))
        .await
        .unwrap();
    match c.next_event().await {
        Ev::Cancel { tag: t } => assert_eq!(t, tag),
        ev => panic!("{ev:?}"),
    }
}

#[tokio::test]
async fn amqprs_transaction_commit_and_rollback() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let q = c.declare("amqprs-tx").await;
    c.ch.tx_select().await.unwrap();
    c.publish("", &q, b"rolled-back").await;
    c.ch.tx_rollback().await.unwrap();
    c.publish("", &q, b"committed").await;
    c.ch.tx_commit().await.unwrap();
    c.wait_ready(&q, 1).await;
    assert_eq!(c.get(&q, true).await.unwrap().2, b"committed");
}

#[tokio::test]
async fn lapin_publishes_amqprs_consumes() {
    let broker = Broker::start();
    let c = client(&broker).await;
    let q = c.declare("interop").await;
    let (_lc, lch) = connect_channel(&broker).await;
    let mut h = lapin::types::FieldTable::default();
    h.insert("k".into(), lapin::types::AMQPValue::LongString("v".into()));
    lch.basic_publish(
        "".into(),
        q.as_str().into(),
        lapin::options::BasicPublishOptions::default(),
        b"from-lapin",
        lapin::BasicProperties::default()
            .with_headers(h)
            .with_message_id("interop-1".into()),
    )
    .await
    .unwrap();
    c.wait_ready(&q, 1).await;
    let (_, props, body) = c.get(&q, true).await.unwrap();
    assert_eq!(body, b"from-lapin");
    assert_eq!(props.message_id().map(String::as_str), Some("interop-1"));
    let mut expected = FieldTable::new();
    expected.insert("k".try_into().unwrap(), FieldValue::from("v"));
    assert_eq!(props.headers(), Some(&expected));
}

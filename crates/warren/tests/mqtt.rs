//! MQTT with a second, independent client library (rumqttc, 3.1.1 and 5.0) over real
//! sockets, and AMQP (lapin) meeting MQTT on `amq.topic` in both directions. The wider
//! protocol suite, with paho-mqtt, is tests/python/test_mqtt.py.
mod common;

use std::time::Duration;

use common::*;
use lapin::{options::*, types::FieldTable};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

fn mqtt_broker() -> Broker {
    Broker::start_with_args(&["--mqtt-listen", "127.0.0.1:0"])
}

fn host_port(b: &Broker) -> (String, u16) {
    let addr = b.mqtt_addr.clone().expect("an MQTT listener");
    let (h, p) = addr.rsplit_once(':').expect("host:port");
    (h.to_string(), p.parse().expect("port"))
}

/// A 3.1.1 client whose event loop runs on its own task; publishes arrive on the channel.
struct V4 {
    client: rumqttc::AsyncClient,
    rx: mpsc::UnboundedReceiver<rumqttc::Publish>,
    connack: mpsc::UnboundedReceiver<rumqttc::ConnAck>,
}

async fn v4(b: &Broker, id: &str, clean: bool) -> V4 {
    let (host, port) = host_port(b);
    let mut opts = rumqttc::MqttOptions::new(id, host, port);
    opts.set_credentials("guest", "guest");
    opts.set_clean_session(clean);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ctx, connack) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c))) => {
                    let _ = ctx.send(c);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let mut c = V4 {
        client,
        rx,
        connack,
    };
    let ack = tokio::time::timeout(WAIT, c.connack.recv())
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    c
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message in time")
        .expect("the client is running")
}

async fn nothing<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("unexpected message: {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_every_qos_and_retained_with_rumqttc() {
    use rumqttc::QoS::*;
    let b = mqtt_broker();
    let t = unique("rq");
    let mut sub = v4(&b, &unique("sub"), true).await;
    sub.client
        .subscribe(format!("{t}/#"), ExactlyOnce)
        .await
        .unwrap();
    let publisher = v4(&b, &unique("pub"), true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for qos in [AtMostOnce, AtLeastOnce, ExactlyOnce] {
        publisher
            .client
            .publish(format!("{t}/x"), qos, false, format!("{qos:?}"))
            .await
            .unwrap();
        let m = next(&mut sub.rx).await;
        assert_eq!((m.topic.as_str(), m.qos), (format!("{t}/x").as_str(), qos));
        assert_eq!(&m.payload[..], format!("{qos:?}").as_bytes());
    }
    publisher
        .client
        .publish(format!("{t}/kept"), AtLeastOnce, true, "retained")
        .await
        .unwrap();
    let _live = next(&mut sub.rx).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = v4(&b, &unique("late"), true).await;
    late.client
        .subscribe(format!("{t}/+"), AtLeastOnce)
        .await
        .unwrap();
    let m = next(&mut late.rx).await;
    assert!(m.retain);
    assert_eq!(&m.payload[..], b"retained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_persistent_session_with_rumqttc() {
    use rumqttc::QoS::*;
    let b = mqtt_broker();
    let (t, id) = (unique("ps"), unique("ps"));
    let sub = v4(&b, &id, false).await;
    sub.client.subscribe(t.clone(), AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let publisher = v4(&b, &unique("pub"), true).await;
    for i in 0..5 {
        publisher
            .client
            .publish(t.clone(), AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (host, port) = host_port(&b);
    let mut opts = rumqttc::MqttOptions::new(id.as_str(), host, port);
    opts.set_credentials("guest", "guest");
    opts.set_clean_session(false);
    let (_client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let mut got = Vec::new();
    let mut present = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < 5 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(WAIT, el.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c)))) => {
                present = Some(c.session_present)
            }
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                got.push(String::from_utf8_lossy(&p.payload).into_owned())
            }
            Ok(Ok(_)) => {}
            other => panic!("event loop: {other:?}"),
        }
    }
    assert_eq!(present, Some(true));
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_properties_and_subscription_ids_with_rumqttc() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties, SubscribeProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let b = mqtt_broker();
    let (host, port) = host_port(&b);
    let t = unique("r5");
    let start = |id: String| {
        let mut opts = MqttOptions::new(id, host.clone(), port);
        opts.set_credentials("guest", "guest");
        let (client, mut el) = AsyncClient::new(opts, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    let _ = tx.send(p);
                }
            }
        });
        (client, rx)
    };
    let (sub, mut rx) = start(unique("s"));
    sub.subscribe_with_properties(
        format!("{t}/+"),
        QoS::ExactlyOnce,
        SubscribeProperties {
            id: Some(7),
            user_properties: vec![],
        },
    )
    .await
    .unwrap();
    let (publisher, _prx) = start(unique("p"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let props = PublishProperties {
        content_type: Some("application/cbor".into()),
        response_topic: Some(format!("{t}/reply")),
        correlation_data: Some(b"corr".to_vec().into()),
        user_properties: vec![("site".into(), "north".into())],
        ..Default::default()
    };
    publisher
        .publish_with_properties(format!("{t}/a"), QoS::ExactlyOnce, false, "payload", props)
        .await
        .unwrap();
    let m = next(&mut rx).await;
    assert_eq!(m.qos, QoS::ExactlyOnce);
    assert_eq!(&m.topic[..], format!("{t}/a").as_bytes());
    let p = m.properties.expect("properties");
    assert_eq!(p.content_type.as_deref(), Some("application/cbor"));
    assert_eq!(p.response_topic, Some(format!("{t}/reply")));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(
        p.user_properties,
        vec![("site".to_string(), "north".to_string())]
    );
    assert_eq!(p.subscription_identifiers, vec![7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_and_mqtt_meet_on_amq_topic_with_lapin_and_rumqttc() {
    use rumqttc::QoS::*;
    let b = mqtt_broker();
    let t = unique("meet");
    let (_conn, ch) = connect_channel(&b).await;
    let q = declare_queue(&ch, "meet").await;
    ch.queue_bind(
        q.as_str().into(),
        "amq.topic".into(),
        format!("{t}.*.up").as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    // MQTT → AMQP.
    let mut device = v4(&b, &unique("dev"), true).await;
    device
        .client
        .publish(format!("{t}/d1/up"), AtLeastOnce, false, "reading")
        .await
        .unwrap();
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.routing_key.as_str(), format!("{t}.d1.up"));
    assert_eq!(d.data, b"reading");
    assert_eq!(d.properties.delivery_mode(), &Some(2));
    // AMQP → MQTT.
    device
        .client
        .subscribe(format!("{t}/+/down"), AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&ch, "amq.topic", &format!("{t}.d1.down"), b"command").await;
    let m = next(&mut device.rx).await;
    assert_eq!(m.topic, format!("{t}/d1/down"));
    assert_eq!(&m.payload[..], b"command");
    nothing(&mut device.rx).await;
}

mod v5 {
    //! rumqttc's MQTT 5 client: retained messages, wills, shared subscriptions, user
    //! properties in order and a persistent session with its expiry interval.
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnectReturnCode, LastWill, Packet, Publish, PublishProperties,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub struct Client {
        pub client: AsyncClient,
        pub rx: mpsc::UnboundedReceiver<Publish>,
        pub connack: ConnAck,
        task: tokio::task::JoinHandle<()>,
    }

    impl Client {
        /// Ends the connection without DISCONNECT (so the will goes out).
        pub fn drop_connection(self) {
            self.task.abort();
        }
    }

    pub async fn connect(b: &Broker, id: &str, setup: impl FnOnce(&mut MqttOptions)) -> Client {
        let (host, port) = host_port(b);
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_credentials("guest", "guest");
        opts.set_keep_alive(Duration::from_secs(10));
        setup(&mut opts);
        let (client, mut el) = AsyncClient::new(opts, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                match ev {
                    Event::Incoming(Packet::Publish(p)) => {
                        let _ = tx.send(p);
                    }
                    Event::Incoming(Packet::ConnAck(c)) => {
                        let _ = ctx.send(c);
                    }
                    _ => {}
                }
            }
        });
        let connack = next(&mut crx).await;
        assert_eq!(connack.code, ConnectReturnCode::Success);
        Client {
            client,
            rx,
            connack,
            task,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mqtt5_retained_will_shared_and_user_properties_with_rumqttc() {
        let b = mqtt_broker();
        let t = unique("r5x");
        let settle = || tokio::time::sleep(Duration::from_millis(300));
        // Retained: the last one is handed to a later subscriber, flag set.
        let p = connect(&b, &unique("p"), |_| {}).await;
        for body in ["old", "new"] {
            p.client
                .publish(format!("{t}/r"), QoS::AtLeastOnce, true, body)
                .await
                .unwrap();
        }
        settle().await;
        let mut s = connect(&b, &unique("s"), |_| {}).await;
        s.client
            .subscribe(format!("{t}/#"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let m = next(&mut s.rx).await;
        assert!(m.retain);
        assert_eq!(&m.payload[..], b"new");
        // User properties: order and a repeated key arrive as published.
        let user = vec![
            ("k".to_string(), "1".to_string()),
            ("z".to_string(), "2".to_string()),
            ("k".to_string(), "3".to_string()),
        ];
        let props = PublishProperties {
            user_properties: user.clone(),
            ..Default::default()
        };
        p.client
            .publish_with_properties(format!("{t}/u"), QoS::AtLeastOnce, false, "u", props)
            .await
            .unwrap();
        let m = next(&mut s.rx).await;
        assert_eq!(m.properties.expect("properties").user_properties, user);
        // A will: published when its client goes without DISCONNECT.
        let dying = connect(&b, &unique("d"), |o| {
            o.set_last_will(LastWill::new(
                format!("{t}/will"),
                "gone",
                QoS::AtLeastOnce,
                false,
                None,
            ));
        })
        .await;
        dying.drop_connection();
        let m = next(&mut s.rx).await;
        assert_eq!(&m.topic[..], format!("{t}/will").as_bytes());
        // A shared subscription: two members split the messages between them.
        let mut m1 = connect(&b, &unique("m1"), |_| {}).await;
        let mut m2 = connect(&b, &unique("m2"), |_| {}).await;
        for m in [&m1, &m2] {
            m.client
                .subscribe(format!("$share/g/{t}/s"), QoS::AtLeastOnce)
                .await
                .unwrap();
        }
        settle().await;
        for i in 0..10 {
            p.client
                .publish(format!("{t}/s"), QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap();
        }
        let (mut a, mut c) = (0, 0);
        while a + c < 10 {
            tokio::select! {
                Some(_) = m1.rx.recv() => a += 1,
                Some(_) = m2.rx.recv() => c += 1,
                _ = tokio::time::sleep(WAIT) => panic!("{a} + {c} of 10 shared messages"),
            }
        }
        assert!(a > 0 && c > 0, "{a} / {c}");
        nothing(&mut m1.rx).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mqtt5_session_expiry_and_qos2_with_rumqttc() {
        let b = mqtt_broker();
        let (t, id) = (unique("r5s"), unique("sess"));
        let persistent = |o: &mut MqttOptions| {
            o.set_clean_start(false);
            o.set_session_expiry_interval(Some(60));
        };
        let s = connect(&b, &id, persistent).await;
        assert!(!s.connack.session_present);
        s.client.subscribe(&t, QoS::ExactlyOnce).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.client.disconnect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let p = connect(&b, &unique("p"), |_| {}).await;
        for i in 0..5 {
            p.client
                .publish(&t, QoS::ExactlyOnce, false, format!("m{i}"))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut back = connect(&b, &id, persistent).await;
        assert!(back.connack.session_present);
        for i in 0..5 {
            let m = next(&mut back.rx).await;
            assert_eq!(m.qos, QoS::ExactlyOnce);
            assert_eq!(&m.payload[..], format!("m{i}").as_bytes());
        }
        nothing(&mut back.rx).await;
        // A clean start ends the session: nothing is waiting any more.
        back.client.disconnect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fresh = connect(&b, &id, |o| {
            o.set_clean_start(true);
        })
        .await;
        assert!(!fresh.connack.session_present);
    }
}

/// A topic longer than an AMQP short string becomes a routing key the store must keep whole:
/// it was cut at byte 255, which could split a character so that the stored message no longer
/// read back after a restart (a QoS 1 message lost after its PUBACK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_topic_survives_a_restart_of_its_persistent_session() {
    use rumqttc::QoS::*;
    let mut node = Node::start("mqtt-long", &["--mqtt-listen", "127.0.0.1:0"]);
    let id = unique("long");
    // 254 ASCII bytes, then a two-byte character across byte 255, then more levels.
    let topic = format!("{}é/tail/x", "t".repeat(254));
    let sub = v4(node.broker(), &id, false).await;
    sub.client.subscribe("#", AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let publisher = v4(node.broker(), &unique("pub"), true).await;
    publisher
        .client
        .publish(topic.clone(), AtLeastOnce, false, "kept")
        .await
        .unwrap();
    // The PUBACK comes after the fsync; give it time to arrive, then crash.
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.kill9();
    node.restart();
    let (host, port) = host_port(node.broker());
    let mut opts = rumqttc::MqttOptions::new(id.as_str(), host, port);
    opts.set_credentials("guest", "guest");
    opts.set_clean_session(false);
    opts.set_max_packet_size(1 << 16, 1 << 16);
    let (_client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got = None;
    while got.is_none() && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(WAIT, el.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => got = Some(p),
            Ok(Ok(_)) => {}
            other => panic!("event loop: {other:?}"),
        }
    }
    let p = got.expect("the message after the restart");
    assert_eq!(&p.payload[..], b"kept");
    assert_eq!(p.topic, topic);
    assert!(
        !node.stderr_text().contains("undecodable"),
        "a record failed to read back"
    );
}

//! Users and permissions over real sockets: logins, `connection.open` refused without
//! permissions on the vhost, and the permission each AMQP method needs on which resource,
//! as RabbitMQ 3.10.8 answered the same operations (pika and lapin against a local node,
//! through rabbitmqctl). Runs against RabbitMQ too (`WARREN_TEST_URL`): users get unique
//! names and are deleted at the end.

use super::*;
use lapin::{BasicProperties, ExchangeKind};

/// A user for one test, deleted when dropped.
struct TestUser<'a> {
    broker: &'a Broker,
    name: String,
}

impl<'a> TestUser<'a> {
    fn add(broker: &'a Broker, prefix: &str) -> TestUser<'a> {
        let name = unique(prefix);
        ctl(broker, &["add_user", &name, "pw"]);
        TestUser { broker, name }
    }

    fn url(&self, password: &str) -> String {
        format!("amqp://{}:{password}@{}/%2f", self.name, self.broker.addr)
    }

    fn permit(&self, configure: &str, write: &str, read: &str) {
        ctl(
            self.broker,
            &[
                "set_permissions",
                "-p",
                "/",
                &self.name,
                configure,
                write,
                read,
            ],
        );
    }

    async fn connect(&self) -> lapin::Connection {
        within("login", connect_url(&self.url("pw")))
            .await
            .unwrap_or_else(|e| panic!("{} cannot log in: {e:?}", self.name))
    }
}

impl Drop for TestUser<'_> {
    fn drop(&mut self) {
        let _ = ctl_output(self.broker, &["delete_user", &self.name]);
    }
}

#[tokio::test]
async fn a_user_without_permissions_on_the_vhost_is_refused_at_connection_open() {
    let broker = Broker::start();
    let alice = TestUser::add(&broker, "alice");
    // RabbitMQ 3.10: 530 "NOT_ALLOWED - access to vhost '/' refused for user 'alice'".
    let err = connect_url(&alice.url("pw"))
        .await
        .expect_err("no permissions on /");
    let shown = format!("{err:?}");
    assert!(
        shown.contains(&format!(
            "NOT_ALLOWED - access to vhost '/' refused for user '{}'",
            alice.name
        )),
        "{shown}"
    );
    alice.permit("", "", "");
    // Any permission entry opens the vhost, even one that grants nothing.
    let conn = alice.connect().await;
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn wrong_blank_and_deleted_credentials_are_refused() {
    let broker = Broker::start();
    let bob = TestUser::add(&broker, "bob");
    bob.permit(".*", ".*", ".*");
    let conn = bob.connect().await;
    for password in ["wrong", ""] {
        let err = connect_url(&bob.url(password))
            .await
            .expect_err("bad password");
        assert!(
            format!("{err:?}").contains("ACCESS_REFUSED") || reply_code(&err).is_none(),
            "{err:?}"
        );
    }
    ctl(&broker, &["change_password", &bob.name, "new"]);
    assert!(connect_url(&bob.url("pw")).await.is_err(), "old password");
    within("login with the new password", connect_url(&bob.url("new")))
        .await
        .expect("new password");
    let ok = ctl_output(&broker, &["authenticate_user", &bob.name, "new"]);
    assert!(ok.status.success(), "{ok:?}");
    let bad = ctl_output(&broker, &["authenticate_user", &bob.name, "pw"]);
    assert!(!bad.status.success());
    // Deleting a user closes its connections: RabbitMQ 3.10 sends 320 CONNECTION_FORCED
    // "user '<name>' is deleted".
    let mut events = conn.events_listener();
    ctl(&broker, &["delete_user", &bob.name]);
    let closed = connection_close_error(&mut events).await;
    assert_eq!(reply_code(&closed), Some(320), "{closed:?}");
    let text = reply_text(&closed).unwrap_or_default();
    assert!(
        text.contains(&format!(
            "CONNECTION_FORCED - user '{}' is deleted",
            bob.name
        )),
        "{text}"
    );
    assert!(connect_url(&bob.url("new")).await.is_err(), "deleted");
}

/// How an operation ended: `None` if allowed, else the 403 text.
async fn outcome(ch: lapin::Channel, op: &Op) -> Option<String> {
    // The channel's close reason, through a consumer that needs no permission (direct
    // reply-to is not a resource).
    let mut watch = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("direct reply-to consumer");
    let result: lapin::Result<()> = match op {
        Op::PublishKey(exchange, key) => {
            let _ = ch
                .basic_publish(
                    exchange.as_str().into(),
                    key.as_str().into(),
                    BasicPublishOptions::default(),
                    b"m",
                    BasicProperties::default(),
                )
                .await;
            match tokio::time::timeout(WAIT, passive_declare(&ch, "amq.rabbitmq.reply-to")).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(channel_close_error(&mut watch).await),
            }
        }
        Op::BindKey(queue, exchange, key) => {
            ch.queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        }
        Op::UnbindKey(queue, exchange, key) => {
            ch.queue_unbind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await
        }
        Op::DeclareQueue(name, args) => ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::default(),
                args.clone(),
            )
            .await
            .map(|_| ()),
        Op::PassiveQueue(name) => passive_declare(&ch, name).await.map(|_| ()),
        Op::DeclareExchange(name, args) => {
            ch.exchange_declare(
                name.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                args.clone(),
            )
            .await
        }
        Op::PassiveExchange(name) => {
            ch.exchange_declare(
                name.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
        }
        Op::BindQueue(queue, exchange) => {
            ch.queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        }
        Op::BindExchange(destination, source) => {
            ch.exchange_bind(
                destination.as_str().into(),
                source.as_str().into(),
                "k".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
        }
        Op::Consume(queue) => ch
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(|_| ()),
        Op::Get(queue) => ch
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .map(|_| ()),
        Op::Purge(queue) => ch
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await
            .map(|_| ()),
        Op::DeleteQueue(queue) => ch
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .map(|_| ()),
        Op::DeleteExchange(exchange) => {
            ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
        }
    };
    match result {
        Ok(()) => None,
        Err(e) => {
            assert_eq!(reply_code(&e), Some(403), "{op:?}: {e:?}");
            Some(reply_text(&e).unwrap_or_default())
        }
    }
}

#[derive(Debug)]
enum Op {
    /// Publish with this routing key; its outcome is seen through a passive declare after
    /// it (the broker answers in order).
    PublishKey(String, String),
    BindKey(String, String, String),
    UnbindKey(String, String, String),
    DeclareQueue(String, FieldTable),
    PassiveQueue(String),
    DeclareExchange(String, FieldTable),
    PassiveExchange(String),
    BindQueue(String, String),
    BindExchange(String, String),
    Consume(String),
    Get(String),
    Purge(String),
    DeleteQueue(String),
    DeleteExchange(String),
}

fn with_arg(key: &str, value: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        key.into(),
        lapin::types::AMQPValue::LongString(value.into()),
    );
    t
}

/// Every method's permission, as RabbitMQ 3.10.8 answered (`perm.py` runs in the session
/// that wrote this): publish needs write on the exchange (the default one is checked as
/// `amq.default`); declare configure on the queue or exchange (a server-named queue under
/// its new name) but a passive declare nothing; binds write on the destination, then read
/// on the source; consume, get and purge read; deletes configure; a dead-letter exchange
/// read on the queue and write on that exchange, an alternate exchange likewise.
#[tokio::test]
async fn each_method_checks_the_permission_rabbitmq_checks() {
    let broker = Broker::start();
    let p = unique("acl");
    let mine = |s: &str| format!("{p}-mine-{s}");
    let other = |s: &str| format!("{p}-other-{s}");
    let (_admin_conn, admin) = connect_channel(&broker).await;
    for q in [other("q")] {
        admin
            .queue_declare(
                q.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    for x in [other("x"), mine("x"), format!("{p}-wx"), format!("{p}-rx")] {
        admin
            .exchange_declare(
                x.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    admin
        .queue_declare(
            mine("q").as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let user = TestUser::add(&broker, "carol");
    let refused = |kind: &str, name: &str| {
        Some(format!(
            "ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user '{}'",
            user.name
        ))
    };
    let only_mine = format!("^{p}-mine-");
    user.permit(&only_mine, &only_mine, &only_mine);
    let conn = user.connect().await;
    let cases: Vec<(Op, Option<String>)> = vec![
        (
            Op::PublishKey("".into(), "k".into()),
            refused("exchange", "amq.default"),
        ),
        (
            Op::PublishKey(other("x"), "k".into()),
            refused("exchange", &other("x")),
        ),
        (Op::PublishKey(mine("x"), "k".into()), None),
        (Op::PassiveQueue(other("q")), None),
        (Op::PassiveExchange(other("x")), None),
        (Op::DeclareQueue(mine("q"), FieldTable::default()), None),
        (
            Op::DeclareQueue(other("q"), FieldTable::default()),
            refused("queue", &other("q")),
        ),
        (
            Op::DeclareExchange(other("x"), FieldTable::default()),
            refused("exchange", &other("x")),
        ),
        (
            Op::BindQueue(mine("q"), other("x")),
            refused("exchange", &other("x")),
        ),
        (
            Op::BindQueue(other("q"), mine("x")),
            refused("queue", &other("q")),
        ),
        (
            Op::BindQueue(other("q"), other("x")),
            refused("queue", &other("q")),
        ),
        (Op::BindQueue(mine("q"), mine("x")), None),
        (
            Op::BindExchange(mine("x"), other("x")),
            refused("exchange", &other("x")),
        ),
        (
            Op::BindExchange(other("x"), mine("x")),
            refused("exchange", &other("x")),
        ),
        (Op::Consume(other("q")), refused("queue", &other("q"))),
        (Op::Consume(mine("q")), None),
        (Op::Get(other("q")), refused("queue", &other("q"))),
        (Op::Purge(other("q")), refused("queue", &other("q"))),
        (Op::DeleteQueue(other("q")), refused("queue", &other("q"))),
        (
            Op::DeleteExchange(other("x")),
            refused("exchange", &other("x")),
        ),
    ];
    for (op, want) in &cases {
        let ch = conn.create_channel().await.unwrap();
        let got = outcome(ch, op).await;
        assert_eq!(&got, want, "{op:?}");
    }
    // The server-named queue is checked under the name it would get.
    let ch = conn.create_channel().await.unwrap();
    let got = outcome(ch, &Op::DeclareQueue("".into(), FieldTable::default()))
        .await
        .expect("refused");
    assert!(got.contains("access to queue 'amq.gen-"), "{got}");

    // Dead-letter and alternate exchanges: write on the target, read on the declared one.
    user.permit(".*", &format!("^{p}-(mine|wx)"), &format!("^{p}-(mine|rx)"));
    let conn = user.connect().await;
    let (wx, rx) = (format!("{p}-wx"), format!("{p}-rx"));
    let cases = vec![
        (
            Op::DeclareQueue(mine("d1"), with_arg("x-dead-letter-exchange", &wx)),
            None,
        ),
        (
            Op::DeclareQueue(mine("d2"), with_arg("x-dead-letter-exchange", &rx)),
            refused("exchange", &rx),
        ),
        (
            Op::DeclareQueue(format!("{p}-zz"), with_arg("x-dead-letter-exchange", &wx)),
            refused("queue", &format!("{p}-zz")),
        ),
        (
            Op::DeclareExchange(mine("a1"), with_arg("alternate-exchange", &wx)),
            None,
        ),
        (
            Op::DeclareExchange(mine("a2"), with_arg("alternate-exchange", &rx)),
            refused("exchange", &rx),
        ),
        (
            Op::DeclareExchange(format!("{p}-za"), with_arg("alternate-exchange", &wx)),
            refused("exchange", &format!("{p}-za")),
        ),
    ];
    for (op, want) in &cases {
        let ch = conn.create_channel().await.unwrap();
        let got = outcome(ch, op).await;
        assert_eq!(&got, want, "{op:?}");
    }
    // Clean up what the test declared (on a shared RabbitMQ).
    for q in [mine("q"), other("q"), mine("d1")] {
        let _ = admin
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [other("x"), mine("x"), wx, rx, mine("a1")] {
        let _ = admin
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// Users and permissions are definitions: they survive `kill -9` (written ahead, like
/// every definition).
#[tokio::test]
async fn users_and_permissions_survive_kill_9() {
    if external_broker() {
        return;
    }
    let mut node = Node::start("access-crash", &[]);
    let run = |node: &Node, args: &[&str]| {
        warren_ctl(&node.data_dir(), args).unwrap_or_else(|e| panic!("{e}"))
    };
    run(&node, &["add_user", "dave", "pw"]);
    run(&node, &["set_user_tags", "dave", "monitoring", "custom"]);
    run(
        &node,
        &["set_permissions", "-p", "/", "dave", "^dave", ".*", ""],
    );
    run(&node, &["add_user", "erin", "pw"]);
    run(&node, &["delete_user", "erin"]);
    node.kill9();
    node.restart();
    let url = format!("amqp://dave:pw@{}/%2f", node.broker().addr);
    let conn = within("login after restart", connect_url(&url))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let got = outcome(ch, &Op::Get("anything".into())).await;
    assert_eq!(
        got.as_deref(),
        Some("ACCESS_REFUSED - access to queue 'anything' in vhost '/' refused for user 'dave'")
    );
    let listed = run(&node, &["list_users"]);
    assert!(listed.contains("dave\t[monitoring, custom]"), "{listed}");
    assert!(listed.contains("guest\t[administrator]"), "{listed}");
    assert!(!listed.contains("erin"), "{listed}");
    let listed = run(&node, &["list_user_permissions", "dave"]);
    assert!(listed.contains("/\t^dave\t.*\t"), "{listed}");
}

/// Vhosts, as RabbitMQ 3.10.8 behaves (rabbitmqctl against a local node): `add_vhost` with
/// a description and tags, listed by `list_vhosts`; deleting one closes its connections
/// with 320 "CONNECTION_FORCED - vhost 'v' is deleted", and takes its queues, messages and
/// permissions with it (a vhost of the same name added again is empty, and nobody has
/// permissions on it).
#[tokio::test]
async fn deleting_a_vhost_closes_its_connections_and_removes_all_it_held() {
    let broker = Broker::start();
    let name = unique("vh");
    ctl(
        &broker,
        &[
            "add_vhost",
            "--description",
            "for a test",
            "--tags",
            "a,b",
            &name,
        ],
    );
    let out = ctl_output(&broker, &["list_vhosts", "name", "description", "tags"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!("{name}\tfor a test\ta,b")),
        "{listed}"
    );
    assert!(listed.contains("/\tDefault virtual host\t[]"), "{listed}");
    ctl(
        &broker,
        &["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"],
    );
    let url = format!("amqp://guest:guest@{}/{name}", broker.addr);
    let conn = within("connect to the new vhost", connect_url(&url))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "kept".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "", "kept", b"m").await;
    wait_ready(&ch, "kept", 1).await;
    let mut events = conn.events_listener();
    ctl(&broker, &["delete_vhost", &name]);
    let closed = connection_close_error(&mut events).await;
    // RabbitMQ 3.10: it sends the 320 close and resets the socket at once; lapin may report
    // only the reset (pika, in tests/python, reads the 320 from RabbitMQ too).
    if !(broker.is_external() && reply_code(&closed).is_none()) {
        assert_eq!(reply_code(&closed), Some(320), "{closed:?}");
        let text = reply_text(&closed).unwrap_or_default();
        assert_eq!(
            text,
            format!("CONNECTION_FORCED - vhost '{name}' is deleted")
        );
    }
    let err = connect_url(&url).await.expect_err("vhost gone");
    assert!(
        format!("{err:?}").contains(&format!("NOT_ALLOWED - vhost {name} not found")),
        "{err:?}"
    );
    ctl(&broker, &["add_vhost", &name]);
    let err = connect_url(&url)
        .await
        .expect_err("no permissions any more");
    assert!(format!("{err:?}").contains("access to vhost"), "{err:?}");
    ctl(
        &broker,
        &["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"],
    );
    let conn = within("connect again", connect_url(&url)).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let gone = passive_declare(&ch, "kept").await;
    assert_eq!(
        expect_code(gone.map(|_| ()), 404),
        format!("NOT_FOUND - no queue 'kept' in vhost '{name}'")
    );
    ctl(&broker, &["delete_vhost", &name]);
}

/// A vhost, its description and its deletion are definitions: they survive `kill -9`, and
/// a deleted vhost (with its durable queue and messages) does not come back.
#[tokio::test]
async fn vhosts_and_their_deletion_survive_kill_9() {
    if external_broker() {
        return;
    }
    let mut node = Node::start("vhost-crash", &[]);
    let run = |node: &Node, args: &[&str]| {
        warren_ctl(&node.data_dir(), args).unwrap_or_else(|e| panic!("{e}"))
    };
    run(&node, &["add_vhost", "--description", "kept", "kept"]);
    run(&node, &["add_vhost", "gone"]);
    run(
        &node,
        &["set_permissions", "-p", "gone", "guest", ".*", ".*", ".*"],
    );
    let url = format!("amqp://guest:guest@{}/gone", node.broker().addr);
    let conn = connect_url(&url).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "q".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    run(&node, &["delete_vhost", "gone"]);
    drop(ch);
    drop(conn);
    node.kill9();
    node.restart();
    let listed = run(&node, &["list_vhosts", "name", "description"]);
    assert!(listed.contains("kept\tkept"), "{listed}");
    assert!(!listed.contains("gone"), "{listed}");
    assert!(listed.contains("/\tDefault virtual host"), "{listed}");
    run(&node, &["delete_vhost", "/"]);
    node.kill9();
    node.restart();
    let listed = run(&node, &["list_vhosts"]);
    assert!(
        !listed.lines().any(|l| l == "/"),
        "the default vhost is created only once: {listed}"
    );
}

/// Topic permissions, as RabbitMQ 3.10.8 answered (`topic.py`): on a topic exchange with an
/// entry, publish checks the routing key against write (`{username}` replaced) and bind and
/// unbind check the binding key against read; other exchanges, and topic exchanges without
/// an entry, are not checked; CC keys are not checked (3.10; 4.1 checks them).
#[tokio::test]
async fn topic_permissions_check_routing_and_binding_keys_on_topic_exchanges() {
    let broker = Broker::start();
    let user = TestUser::add(&broker, "tina");
    user.permit(".*", ".*", ".*");
    let other_topic = unique("free-topic");
    let (_admin_conn, admin) = connect_channel(&broker).await;
    admin
        .exchange_declare(
            other_topic.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ctl(
        &broker,
        &[
            "set_topic_permissions",
            "-p",
            "/",
            &user.name,
            "amq.topic",
            "^{username}\\.",
            "^r\\.",
        ],
    );
    let out = ctl_output(&broker, &["list_topic_permissions", "-p", "/"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!(
            "{}\tamq.topic\t^{{username}}\\.\t^r\\.",
            user.name
        )),
        "{listed}"
    );
    let conn = user.connect().await;
    let q = {
        let ch = conn.create_channel().await.unwrap();
        declare_queue(&ch, "topic-perm").await
    };
    let refused = |key: &str| {
        Some(format!(
            "ACCESS_REFUSED - access to topic '{key}' in exchange 'amq.topic' in vhost '/' refused for user '{}'",
            user.name
        ))
    };
    let mine = format!("{}.orders", user.name);
    let cases = vec![
        (Op::PublishKey("amq.topic".into(), mine.clone()), None),
        (
            Op::PublishKey("amq.topic".into(), "bob.orders".into()),
            refused("bob.orders"),
        ),
        (
            Op::PublishKey("amq.direct".into(), "bob.orders".into()),
            None,
        ),
        (Op::PublishKey(other_topic.clone(), "anything".into()), None),
        (
            Op::BindKey(q.clone(), "amq.topic".into(), "r.1".into()),
            None,
        ),
        (
            Op::BindKey(q.clone(), "amq.topic".into(), "s.1".into()),
            refused("s.1"),
        ),
        (
            Op::UnbindKey(q.clone(), "amq.topic".into(), "s.1".into()),
            refused("s.1"),
        ),
    ];
    for (op, want) in &cases {
        let ch = conn.create_channel().await.unwrap();
        let got = outcome(ch, op).await;
        assert_eq!(&got, want, "{op:?}");
    }
    ctl(&broker, &["clear_topic_permissions", "-p", "/", &user.name]);
    let ch = conn.create_channel().await.unwrap();
    let got = outcome(
        ch,
        &Op::BindKey(q.clone(), "amq.topic".into(), "s.2".into()),
    )
    .await;
    assert_eq!(got, None, "cleared: every key allowed");
    let _ = admin
        .exchange_delete(
            other_topic.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
}

/// User limits, as RabbitMQ 3.10.8 answered (pika against a local node): over
/// `max-connections`, 530 "connection refused for user 'u': user connection limit (N) is
/// reached" at `connection.open`; over `max-channels`, counted over all the user's
/// connections, 530 "number of channels opened for user 'u' has reached the maximum allowed
/// user limit of (N)", a connection error.
#[tokio::test]
async fn user_limits_refuse_connections_and_channels_as_rabbitmq_does() {
    let broker = Broker::start();
    let user = TestUser::add(&broker, "uma");
    user.permit(".*", ".*", ".*");
    ctl(
        &broker,
        &[
            "set_user_limits",
            &user.name,
            r#"{"max-connections": 2, "max-channels": 2}"#,
        ],
    );
    let out = ctl_output(&broker, &["list_user_limits", "--user", &user.name]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(r#"{"max-channels":2,"max-connections":2}"#),
        "{listed}"
    );
    let first = user.connect().await;
    let second = user.connect().await;
    let err = connect_url(&user.url("pw"))
        .await
        .expect_err("over max-connections");
    let shown = format!("{err:?}");
    assert!(
        shown.contains(&format!(
            "NOT_ALLOWED - connection refused for user '{}': user connection limit (2) is reached",
            user.name
        )),
        "{shown}"
    );
    let _a = first.create_channel().await.unwrap();
    let _b = second.create_channel().await.unwrap();
    let mut events = second.events_listener();
    let _ = second.create_channel().await;
    let closed = connection_close_error(&mut events).await;
    assert_eq!(reply_code(&closed), Some(530), "{closed:?}");
    assert_eq!(
        reply_text(&closed).unwrap_or_default(),
        format!(
            "NOT_ALLOWED - number of channels opened for user '{}' has reached the maximum allowed user limit of (2)",
            user.name
        )
    );
    // The closed connection gave its connection and channel back.
    let third = within("a slot freed", async {
        loop {
            match connect_url(&user.url("pw")).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    third.create_channel().await.expect("a channel slot freed");
    ctl(&broker, &["clear_user_limits", &user.name, "all"]);
    let out = ctl_output(&broker, &["list_user_limits", "--user", &user.name]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("{}")
    );
    user.connect().await;
}

/// `--default-user` / `--default-pass` (RabbitMQ's `default_user` / `default_pass`): the
/// user created at the first start instead of guest, an administrator with every permission
/// on `/`; a later start with other values changes nothing.
#[tokio::test]
async fn the_default_user_is_configurable_and_created_once() {
    if external_broker() {
        return;
    }
    let mut node = Node::start(
        "default-user",
        &["--default-user", "admin", "--default-pass", "s3cret"],
    );
    let url = |node: &Node, user: &str, pass: &str| {
        format!("amqp://{user}:{pass}@{}/%2f", node.broker().addr)
    };
    assert!(
        connect_url(&url(&node, "guest", "guest")).await.is_err(),
        "no guest"
    );
    let conn = within("admin logs in", connect_url(&url(&node, "admin", "s3cret")))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "admin-q").await;
    drop(ch);
    drop(conn);
    let listed = warren_ctl(&node.data_dir(), &["list_users"]).unwrap();
    assert!(listed.contains("admin\t[administrator]"), "{listed}");
    node.args = vec!["--default-user".into(), "other".into()];
    node.kill9();
    node.restart();
    let listed = warren_ctl(&node.data_dir(), &["list_users"]).unwrap();
    assert!(!listed.contains("other"), "{listed}");
    within(
        "admin still logs in",
        connect_url(&url(&node, "admin", "s3cret")),
    )
    .await
    .unwrap();
}

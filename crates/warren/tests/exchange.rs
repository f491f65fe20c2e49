//! exchange.* methods, predeclared exchanges, exchange-to-exchange bindings, alternate exchanges.
mod common;

use common::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    ExchangeKind,
};

fn passive() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare_x(ch: &lapin::Channel, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
    within(
        "exchange.declare",
        ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

async fn bind_q(ch: &lapin::Channel, q: &str, x: &str, key: &str) {
    bind_args(ch, q, x, key, FieldTable::default()).await;
}

#[tokio::test]
async fn declare_each_type_and_redeclare_idempotently() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    for kind in [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ] {
        let name = unique("x-type");
        declare_x(&ch, &name, kind.clone()).await.unwrap();
        declare_x(&ch, &name, kind.clone())
            .await
            .expect("identical redeclare is ok");
        within(
            "passive",
            ch.exchange_declare(name.as_str().into(), kind, passive(), FieldTable::default()),
        )
        .await
        .expect("passive declare of existing exchange");
        ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_is_404() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = unique("x-missing");
    let err = ch
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Direct,
            passive(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 404 "NOT_FOUND - no exchange '<name>' in vhost '/'" (40,10).
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("NOT_FOUND - no exchange '{name}' in vhost '/'")
    );
    assert!(conn.status().connected(), "channel error only");
}

#[tokio::test]
async fn passive_declare_ignores_type_and_flags() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = unique("x-passive");
    declare_x(&ch, &name, ExchangeKind::Direct).await.unwrap();
    // RabbitMQ 3.10: a passive declare only checks existence; type/durable are not compared.
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare with another type is fine");
}

#[tokio::test]
async fn redeclare_with_different_type_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = unique("x-redecl");
    declare_x(&ch, &name, ExchangeKind::Direct).await.unwrap();
    let err = declare_x(&ch, &name, ExchangeKind::Fanout)
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - inequivalent arg 'type' for
    // exchange '<name>' in vhost '/': received 'fanout' but current is 'direct'".
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}' in vhost '/': received 'fanout' but current is 'direct'")
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn redeclare_with_different_durable_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = unique("x-redecl-durable");
    declare_x(&ch, &name, ExchangeKind::Direct).await.unwrap();
    let err = ch
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
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
            .contains("inequivalent arg 'durable'"),
        "{err:?}"
    );
}

#[tokio::test]
async fn redeclare_with_different_auto_delete_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = unique("x-redecl-ad");
    declare_x(&ch, &name, ExchangeKind::Topic).await.unwrap();
    let err = ch
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
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
    let (_c, ch) = connect_channel(&broker).await;
    ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_exchange_type_is_connection_error_503() {
    let broker = Broker::start();
    let conn = connect(&broker).await;
    let mut events = conn.events_listener();
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            unique("x-badtype").as_str().into(),
            ExchangeKind::Custom("x-no-such-type".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: CONNECTION close (not channel) 503 "COMMAND_INVALID - unknown exchange
    // type 'x-no-such-type'", class 40 method 10.
    assert_eq!(reply_code(&err), Some(503));
    assert_eq!(
        reply_text(&err).unwrap(),
        "COMMAND_INVALID - unknown exchange type 'x-no-such-type'"
    );
    assert_eq!(connection_closed_code(&mut events).await, 503);
    assert!(!conn.status().connected());
}

#[tokio::test]
async fn declare_with_amq_prefix_is_403() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = format!("amq.{}", unique("custom"));
    let err = declare_x(&ch, &name, ExchangeKind::Direct)
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 403 "ACCESS_REFUSED - exchange name '<name>' contains
    // reserved prefix 'amq.*'".
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'")
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn equivalent_redeclare_of_predeclared_amq_direct_is_ok() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // RabbitMQ 3.10: the reserved 'amq.' prefix is only checked when the exchange would be
    // CREATED. Redeclaring an existing amq.* exchange with equivalent properties (amq.direct
    // is durable) succeeds.
    ch.exchange_declare(
        "amq.direct".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("equivalent redeclare of amq.direct");
}

#[tokio::test]
async fn inequivalent_redeclare_of_predeclared_amq_direct_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // amq.direct exists (durable), so the reply is the equivalence failure, not the prefix 403.
    let err = ch
        .exchange_declare(
            "amq.direct".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert!(
        reply_text(&err)
            .unwrap()
            .contains("inequivalent arg 'durable'"),
        "{err:?}"
    );
}

#[tokio::test]
async fn passive_declare_of_missing_amq_prefixed_exchange_is_404() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let err = ch
        .exchange_declare(
            format!("amq.{}", unique("nope")).as_str().into(),
            ExchangeKind::Direct,
            passive(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn predeclared_exchanges_exist() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        within(
            name,
            ch.exchange_declare(name.into(), kind, passive(), FieldTable::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} must exist: {e:?}"));
    }
}

#[tokio::test]
async fn predeclared_exchanges_route() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "predecl").await;
    let key = unique("k");
    bind_q(&ch, &q, "amq.direct", &key).await;
    bind_q(&ch, &q, "amq.fanout", "").await;
    bind_q(&ch, &q, "amq.topic", &format!("{key}.*")).await;
    publish(&ch, "amq.direct", &key, b"direct").await;
    publish(&ch, "amq.topic", &format!("{key}.x"), b"topic").await;
    publish(&ch, "amq.fanout", "whatever", b"fanout").await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"direct");
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"topic");
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"fanout");
    // Clean up the amq.fanout binding so other tests' fanout publishes don't pile up here.
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn default_exchange_declare_is_403_even_passive() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    // RabbitMQ 3.10: ANY exchange.declare naming "" (even passive) is channel.close 403
    // "ACCESS_REFUSED - operation not permitted on the default exchange".
    let err = ch
        .exchange_declare(
            "".into(),
            ExchangeKind::Direct,
            passive(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).unwrap(),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
}

#[tokio::test]
async fn bind_queue_to_default_exchange_is_403() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "bind-default").await;
    let err = ch
        .queue_bind(
            q.as_str().into(),
            "".into(),
            "foo".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 403 "ACCESS_REFUSED - operation not permitted on the
    // default exchange" (50,20).
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).unwrap(),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn unbind_queue_from_default_exchange_is_403() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "unbind-default").await;
    let err = ch
        .queue_unbind(
            q.as_str().into(),
            "".into(),
            q.as_str().into(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));
}

#[tokio::test]
async fn delete_predeclared_exchange_is_403() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let err = ch
        .exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 403 "ACCESS_REFUSED - deletion of system exchange
    // 'amq.direct' in vhost '/' not allowed" (40,20).
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).unwrap(),
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    );
    let (_c, ch) = connect_channel(&broker).await;
    ch.exchange_declare(
        "amq.direct".into(),
        ExchangeKind::Direct,
        passive(),
        FieldTable::default(),
    )
    .await
    .expect("amq.direct still exists");
}

#[tokio::test]
async fn delete_default_exchange_is_403() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let err = ch
        .exchange_delete("".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap_err();
    // RabbitMQ 3.10: 403 "ACCESS_REFUSED - operation not permitted on the default exchange".
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).unwrap(),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
}

#[tokio::test]
async fn delete_exchange_then_passive_is_404() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = unique("x-del");
    declare_x(&ch, &name, ExchangeKind::Fanout).await.unwrap();
    ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let err = ch
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Fanout,
            passive(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn delete_missing_exchange_is_ok() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    // RabbitMQ 3.10: exchange.delete of a nonexistent exchange succeeds (delete-ok), no 404.
    ch.exchange_delete(
        unique("x-never").as_str().into(),
        ExchangeDeleteOptions::default(),
    )
    .await
    .expect("deleting a missing exchange is ok");
    ch.exchange_delete(
        unique("x-never").as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    )
    .await
    .expect("even with if-unused");
}

#[tokio::test]
async fn delete_if_unused_on_bound_exchange_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let name = unique("x-inuse");
    declare_x(&ch, &name, ExchangeKind::Direct).await.unwrap();
    let q = declare_queue(&ch, "inuse-q").await;
    bind_q(&ch, &q, &name, "k").await;
    let err = ch
        .exchange_delete(
            name.as_str().into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - exchange '<name>' in vhost '/' in use".
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        format!("PRECONDITION_FAILED - exchange '{name}' in vhost '/' in use")
    );
    let (_c, ch) = connect_channel(&broker).await;
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        passive(),
        FieldTable::default(),
    )
    .await
    .expect("still exists");
    // Unused exchange (no bindings as source) can be deleted with if-unused.
    ch.queue_unbind(
        q.as_str().into(),
        name.as_str().into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_delete(
        name.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    )
    .await
    .expect("unused now");
}

#[tokio::test]
async fn delete_exchange_removes_its_bindings() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = unique("x-delbind");
    declare_x(&ch, &x, ExchangeKind::Fanout).await.unwrap();
    let q = declare_queue(&ch, "delbind-q").await;
    bind_q(&ch, &q, &x, "").await;
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    declare_x(&ch, &x, ExchangeKind::Fanout).await.unwrap();
    publish(&ch, &x, "", b"gone").await;
    publish(&ch, "", &q, b"marker").await;
    assert_eq!(
        get_body(&ch, &q).await.unwrap(),
        b"marker",
        "old binding must not survive"
    );
}

#[tokio::test]
async fn publish_to_missing_exchange_is_404_channel_error() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let mut watch = watch_channel(&ch).await;
    let name = unique("x-nowhere");
    publish(&ch, &name, "k", b"lost").await;
    // RabbitMQ 3.10: channel.close 404 "NOT_FOUND - no exchange '<name>' in vhost '/'" (60,40).
    assert_eq!(channel_closed_code(&mut watch).await, 404);
    assert!(conn.status().connected());
}

#[tokio::test]
async fn publish_to_internal_exchange_is_403() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let name = unique("x-internal");
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut watch = watch_channel(&ch).await;
    publish(&ch, &name, "", b"nope").await;
    // RabbitMQ 3.10: channel.close 403 "ACCESS_REFUSED - cannot publish to internal exchange
    // '<name>' in vhost '/'" (60,40).
    assert_eq!(channel_closed_code(&mut watch).await, 403);
    assert!(conn.status().connected());
}

#[tokio::test]
async fn internal_exchange_receives_via_exchange_binding() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let front = unique("x-front");
    let internal = unique("x-internal-dest");
    declare_x(&ch, &front, ExchangeKind::Direct).await.unwrap();
    ch.exchange_declare(
        internal.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        internal.as_str().into(),
        front.as_str().into(),
        "k".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = declare_queue(&ch, "internal-q").await;
    bind_q(&ch, &q, &internal, "").await;
    publish(&ch, &front, "k", b"through").await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"through");
}

#[tokio::test]
async fn exchange_to_exchange_bind_routes_and_unbind_stops() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let src = unique("x-src");
    let dst = unique("x-dst");
    declare_x(&ch, &src, ExchangeKind::Topic).await.unwrap();
    declare_x(&ch, &dst, ExchangeKind::Direct).await.unwrap();
    let q = declare_queue(&ch, "e2e-q").await;
    bind_q(&ch, &q, &dst, "a.b").await;
    ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.*".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, &src, "a.b", b"1").await; // src topic a.* matches, dst direct a.b matches
    publish(&ch, &src, "a.c", b"2").await; // reaches dst, no queue bound with a.c
    publish(&ch, &src, "b.b", b"3").await; // not routed by src
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"1");
    assert_eq!(get_body(&ch, &q).await, None);
    ch.exchange_unbind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.*".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, &src, "a.b", b"4").await;
    publish(&ch, &dst, "a.b", b"5").await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"5");
}

#[tokio::test]
async fn exchange_to_exchange_cycle_delivers_once() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let a = unique("x-cyc-a");
    let b = unique("x-cyc-b");
    declare_x(&ch, &a, ExchangeKind::Fanout).await.unwrap();
    declare_x(&ch, &b, ExchangeKind::Fanout).await.unwrap();
    ch.exchange_bind(
        b.as_str().into(),
        a.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        a.as_str().into(),
        b.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = declare_queue(&ch, "cyc-q").await;
    bind_q(&ch, &q, &a, "").await;
    bind_q(&ch, &q, &b, "").await;
    publish(&ch, &a, "", b"once").await;
    publish(&ch, "", &q, b"marker").await;
    // A queue reachable by several paths (and through a cycle) gets exactly one copy.
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"once");
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"marker");
}

#[tokio::test]
async fn exchange_bind_missing_source_or_destination_is_404() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = unique("x-present");
    declare_x(&ch, &x, ExchangeKind::Direct).await.unwrap();
    let err = ch
        .exchange_bind(
            x.as_str().into(),
            unique("x-absent").as_str().into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    let (_c, ch) = connect_channel(&broker).await;
    let err = ch
        .exchange_bind(
            unique("x-absent").as_str().into(),
            x.as_str().into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn alternate_exchange_receives_unroutable() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let ae = unique("x-ae");
    let main = unique("x-main");
    declare_x(&ch, &ae, ExchangeKind::Fanout).await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(ae.as_str().into()),
    );
    ch.exchange_declare(
        main.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .unwrap();
    let routed = declare_queue(&ch, "ae-routed").await;
    let unrouted = declare_queue(&ch, "ae-unrouted").await;
    bind_q(&ch, &routed, &main, "known").await;
    bind_q(&ch, &unrouted, &ae, "").await;
    publish(&ch, &main, "known", b"r").await;
    publish(&ch, &main, "unknown", b"u").await;
    assert_eq!(get_body(&ch, &routed).await.unwrap(), b"r");
    let m = ch
        .basic_get(unrouted.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"u");
    // The delivery keeps the original exchange and routing key.
    assert_eq!(m.delivery.exchange.as_str(), main);
    assert_eq!(m.delivery.routing_key.as_str(), "unknown");
    assert_eq!(get_body(&ch, &routed).await, None);
}

#[tokio::test]
async fn mandatory_publish_routed_via_alternate_exchange_is_not_returned() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let ae = unique("x-ae2");
    let main = unique("x-main2");
    declare_x(&ch, &ae, ExchangeKind::Fanout).await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(ae.as_str().into()),
    );
    ch.exchange_declare(
        main.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .unwrap();
    let q = declare_queue(&ch, "ae2-q").await;
    bind_q(&ch, &q, &ae, "").await;
    let confirm = ch
        .basic_publish(
            main.as_str().into(),
            "nothing".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            Default::default(),
        )
        .await
        .unwrap();
    let confirmation = within("confirm", confirm).await.unwrap();
    assert_eq!(
        confirmation,
        lapin::Confirmation::Ack(None),
        "no basic.return expected"
    );
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"m");
}

#[tokio::test]
async fn missing_alternate_exchange_means_unroutable() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let main = unique("x-main3");
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(unique("x-ae-missing").as_str().into()),
    );
    ch.exchange_declare(
        main.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .unwrap();
    let confirm = ch
        .basic_publish(
            main.as_str().into(),
            "k".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            Default::default(),
        )
        .await
        .unwrap();
    match within("confirm", confirm).await.unwrap() {
        lapin::Confirmation::Ack(Some(ret)) => assert_eq!(ret.reply_code, 312),
        other => panic!("expected ack with a returned message, got {other:?}"),
    }
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_last_binding_removed() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = unique("x-autodel");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Not deleted merely for having no bindings yet.
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        passive(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = declare_queue(&ch, "autodel-q").await;
    bind_q(&ch, &q, &x, "k").await;
    ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            x.as_str().into(),
            ExchangeKind::Direct,
            passive(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_code(&err),
        Some(404),
        "auto-delete exchange removed with its last binding"
    );
}

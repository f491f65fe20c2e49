//! Headers-exchange routing. Every expectation here is RabbitMQ 3.10's observed behaviour.
mod common;

use common::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, ExchangeKind,
};
use std::time::Duration;

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

fn i(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

/// Named test messages: (name used as body, headers or None for no headers property).
fn messages() -> Vec<(&'static str, Option<FieldTable>)> {
    use AMQPValue::*;
    vec![
        ("a=1 b=x", Some(table(vec![("a", i(1)), ("b", s("x"))]))),
        ("a=1", Some(table(vec![("a", i(1))]))),
        ("b=x", Some(table(vec![("b", s("x"))]))),
        ("a=1i8", Some(table(vec![("a", ShortShortInt(1))]))),
        ("a=1i64", Some(table(vec![("a", LongLongInt(1))]))),
        ("a=1u32", Some(table(vec![("a", LongUInt(1))]))),
        ("a=1u16", Some(table(vec![("a", ShortUInt(1))]))),
        ("a=2", Some(table(vec![("a", i(2))]))),
        ("noheaders", None),
        ("emptyheaders", Some(table(vec![]))),
        (
            "a=1 b=x x-foo=bar",
            Some(table(vec![("a", i(1)), ("b", s("x")), ("x-foo", s("bar"))])),
        ),
        ("x-foo=bar", Some(table(vec![("x-foo", s("bar"))]))),
        ("a=\"1\"", Some(table(vec![("a", s("1"))]))),
        ("a=void", Some(table(vec![("a", Void)]))),
        ("f=1.0f32", Some(table(vec![("f", Float(1.0))]))),
        ("f=1.0f64", Some(table(vec![("f", Double(1.0))]))),
        ("t=1", Some(table(vec![("t", i(1))]))),
        ("t=true", Some(table(vec![("t", Boolean(true))]))),
        (
            "b=bytes x",
            Some(table(vec![(
                "b",
                AMQPValue::ByteArray(b"x".to_vec().into()),
            )])),
        ),
        ("a=1.0f64", Some(table(vec![("a", Double(1.0))]))),
        ("a=ts1", Some(table(vec![("a", Timestamp(1))]))),
    ]
}

const ALL: &[&str] = &[
    "a=1 b=x",
    "a=1",
    "b=x",
    "a=1i8",
    "a=1i64",
    "a=1u32",
    "a=1u16",
    "a=2",
    "noheaders",
    "emptyheaders",
    "a=1 b=x x-foo=bar",
    "x-foo=bar",
    "a=\"1\"",
    "a=void",
    "f=1.0f32",
    "f=1.0f64",
    "t=1",
    "t=true",
    "b=bytes x",
    "a=1.0f64",
    "a=ts1",
];

/// Messages whose header `a` equals the number 1 (any integer width, float 1.0, timestamp 1).
const A_IS_ONE: &[&str] = &[
    "a=1 b=x",
    "a=1",
    "a=1i8",
    "a=1i64",
    "a=1u32",
    "a=1u16",
    "a=1 b=x x-foo=bar",
    "a=1.0f64",
    "a=ts1",
];

async fn check_headers(binding: FieldTable, expected: &[&str]) {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let x = unique("hx");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Headers,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = declare_queue(&ch, "hq").await;
    ch.queue_bind(
        q.as_str().into(),
        x.as_str().into(),
        "ignored-key".into(),
        QueueBindOptions::default(),
        binding.clone(),
    )
    .await
    .unwrap();
    for (name, headers) in messages() {
        let mut props = BasicProperties::default();
        if let Some(h) = headers {
            props = props.with_headers(h);
        }
        ch.basic_publish(
            x.as_str().into(),
            "rk".into(),
            BasicPublishOptions::default(),
            name.as_bytes(),
            props,
        )
        .await
        .unwrap();
    }
    publish(&ch, "", &q, b"<end>").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut got = Vec::new();
    while let Some(b) = get_body(&ch, &q).await {
        got.push(String::from_utf8(b).unwrap());
    }
    assert_eq!(got.pop().as_deref(), Some("<end>"));
    assert_eq!(got, expected, "binding {binding:?}");
}

#[tokio::test]
async fn x_match_all_requires_every_pair() {
    check_headers(
        table(vec![("x-match", s("all")), ("a", i(1)), ("b", s("x"))]),
        &["a=1 b=x", "a=1 b=x x-foo=bar"],
    )
    .await;
}

#[tokio::test]
async fn x_match_any_requires_one_pair() {
    // "b=bytes x" matches b="x": RabbitMQ 3.10 compares a longstr and a byte array with the
    // same bytes as equal.
    check_headers(
        table(vec![("x-match", s("any")), ("a", i(1)), ("b", s("x"))]),
        &[
            "a=1 b=x",
            "a=1",
            "b=x",
            "a=1i8",
            "a=1i64",
            "a=1u32",
            "a=1u16",
            "a=1 b=x x-foo=bar",
            "b=bytes x",
            "a=1.0f64",
            "a=ts1",
        ],
    )
    .await;
}

#[tokio::test]
async fn missing_x_match_defaults_to_all() {
    check_headers(table(vec![("a", i(1))]), A_IS_ONE).await;
}

#[tokio::test]
async fn integer_equality_across_widths_and_numeric_types() {
    // RabbitMQ 3.10 compares numbers by value: a u8 1 in the binding equals i8/i16/u16/i32/
    // u32/i64 1, and also double 1.0 and timestamp 1 in the message. A string "1" does not.
    check_headers(
        table(vec![
            ("x-match", s("all")),
            ("a", AMQPValue::ShortShortUInt(1)),
        ]),
        A_IS_ONE,
    )
    .await;
    check_headers(
        table(vec![
            ("x-match", s("all")),
            ("a", AMQPValue::LongLongInt(1)),
        ]),
        A_IS_ONE,
    )
    .await;
}

#[tokio::test]
async fn float_equality_across_widths() {
    check_headers(
        table(vec![("x-match", s("all")), ("f", AMQPValue::Double(1.0))]),
        &["f=1.0f32", "f=1.0f64"],
    )
    .await;
}

#[tokio::test]
async fn string_does_not_equal_number() {
    check_headers(
        table(vec![("x-match", s("all")), ("a", s("1"))]),
        &["a=\"1\""],
    )
    .await;
}

#[tokio::test]
async fn bool_does_not_equal_int() {
    check_headers(
        table(vec![("x-match", s("all")), ("t", AMQPValue::Boolean(true))]),
        &["t=true"],
    )
    .await;
}

#[tokio::test]
async fn byte_array_equals_longstr_with_same_bytes() {
    check_headers(
        table(vec![
            ("x-match", s("all")),
            ("b", AMQPValue::ByteArray(b"x".to_vec().into())),
        ]),
        &["a=1 b=x", "b=x", "a=1 b=x x-foo=bar", "b=bytes x"],
    )
    .await;
}

#[tokio::test]
async fn void_value_in_binding_tests_presence() {
    // A void binding value matches any message that has the header, whatever its value.
    check_headers(
        table(vec![("x-match", s("all")), ("a", AMQPValue::Void)]),
        &[
            "a=1 b=x",
            "a=1",
            "a=1i8",
            "a=1i64",
            "a=1u32",
            "a=1u16",
            "a=2",
            "a=1 b=x x-foo=bar",
            "a=\"1\"",
            "a=void",
            "a=1.0f64",
            "a=ts1",
        ],
    )
    .await;
}

#[tokio::test]
async fn all_with_no_pairs_matches_everything() {
    check_headers(table(vec![("x-match", s("all"))]), ALL).await;
}

#[tokio::test]
async fn empty_binding_arguments_match_everything() {
    check_headers(table(vec![]), ALL).await;
}

#[tokio::test]
async fn any_with_no_pairs_matches_nothing() {
    check_headers(table(vec![("x-match", s("any"))]), &[]).await;
}

#[tokio::test]
async fn x_prefixed_binding_keys_are_ignored_by_all() {
    check_headers(
        table(vec![
            ("x-match", s("all")),
            ("x-foo", s("bar")),
            ("a", i(1)),
        ]),
        A_IS_ONE,
    )
    .await;
}

#[tokio::test]
async fn x_prefixed_binding_keys_are_ignored_by_any() {
    check_headers(table(vec![("x-match", s("any")), ("x-foo", s("bar"))]), &[]).await;
}

#[tokio::test]
async fn all_with_x_compares_x_prefixed_keys_too() {
    check_headers(
        table(vec![
            ("x-match", s("all-with-x")),
            ("x-foo", s("bar")),
            ("a", i(1)),
        ]),
        &["a=1 b=x x-foo=bar"],
    )
    .await;
}

#[tokio::test]
async fn any_with_x_compares_x_prefixed_keys_too() {
    check_headers(
        table(vec![("x-match", s("any-with-x")), ("x-foo", s("bar"))]),
        &["a=1 b=x x-foo=bar", "x-foo=bar"],
    )
    .await;
}

#[tokio::test]
async fn invalid_x_match_value_is_rejected() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let x = unique("hx-bad");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Headers,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = declare_queue(&ch, "hq-bad").await;
    let err = ch
        .queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            table(vec![("x-match", s("some"))]),
        )
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 406 PRECONDITION_FAILED "Invalid x-match field value
    // <<\"some\">>; expected all, any, all-with-x, or any-with-x" (50,20).
    assert_eq!(reply_code(&err), Some(406), "{err:?}");
    assert!(conn.status().connected());
}

#[tokio::test]
async fn routing_key_is_ignored_by_headers_exchange() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "hq-rk").await;
    // amq.headers is predeclared; bind with a routing key that the publish does not use.
    let tag = unique("tag");
    ch.queue_bind(
        q.as_str().into(),
        "amq.headers".into(),
        "bind-key".into(),
        QueueBindOptions::default(),
        table(vec![("tag", s(&tag))]),
    )
    .await
    .unwrap();
    let props = BasicProperties::default().with_headers(table(vec![("tag", s(&tag))]));
    ch.basic_publish(
        "amq.headers".into(),
        "other-key".into(),
        BasicPublishOptions::default(),
        b"h",
        props,
    )
    .await
    .unwrap();
    wait_ready(&ch, &q, 1).await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"h");
}

#[tokio::test]
async fn unbind_with_same_arguments_removes_headers_binding() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "hq-unbind").await;
    let tag = unique("tag");
    let args = table(vec![("x-match", s("any")), ("tag", s(&tag))]);
    ch.queue_bind(
        q.as_str().into(),
        "amq.match".into(),
        "".into(),
        QueueBindOptions::default(),
        args.clone(),
    )
    .await
    .unwrap();
    ch.queue_unbind(q.as_str().into(), "amq.match".into(), "".into(), args)
        .await
        .unwrap();
    let props = BasicProperties::default().with_headers(table(vec![("tag", s(&tag))]));
    ch.basic_publish(
        "amq.match".into(),
        "".into(),
        BasicPublishOptions::default(),
        b"h",
        props,
    )
    .await
    .unwrap();
    publish(&ch, "", &q, b"marker").await;
    wait_ready(&ch, &q, 1).await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"marker");
}

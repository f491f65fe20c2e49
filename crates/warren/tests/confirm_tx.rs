//! Publisher confirms (confirm.*) and transactions (tx.*).
mod common;

use common::*;
use lapin::{options::*, types::FieldTable, BasicProperties, Confirmation};

async fn publish_confirm(
    ch: &lapin::Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    mandatory: bool,
) -> Confirmation {
    let pc = within(
        "basic.publish",
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            body,
            BasicProperties::default(),
        ),
    )
    .await
    .unwrap();
    within("publisher confirm", pc).await.unwrap()
}

#[tokio::test]
async fn confirm_select_then_publish_is_acked() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "confirm").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert!(ch.status().confirm());
    assert_eq!(
        publish_confirm(&ch, "", &q, b"a", false).await,
        Confirmation::Ack(None)
    );
    wait_ready(&ch, &q, 1).await;
}

#[tokio::test]
async fn confirm_select_twice_is_ok() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn without_confirm_select_nothing_is_confirmed() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "noconfirm").await;
    assert_eq!(
        publish_confirm(&ch, "", &q, b"a", false).await,
        Confirmation::NotRequested
    );
}

#[tokio::test]
async fn many_publishes_all_confirmed() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "confirm-many").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..1000u32 {
        pending.push(
            ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    let returned = within("wait_for_confirms", ch.wait_for_confirms())
        .await
        .unwrap();
    assert!(returned.is_empty());
    for pc in pending {
        assert_eq!(
            within("confirm", pc).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
    wait_ready(&ch, &q, 1000).await;
}

#[tokio::test]
async fn unroutable_publish_is_still_acked() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // Non-mandatory unroutable: plain ack.
    assert_eq!(
        publish_confirm(&ch, "amq.direct", &unique("none"), b"x", false).await,
        Confirmation::Ack(None)
    );
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_then_acked() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let key = unique("none");
    // RabbitMQ 3.10 sends basic.return (312 NO_ROUTE) BEFORE basic.ack for the same publish;
    // lapin attaches the returned message to the ack.
    match publish_confirm(&ch, "", &key, b"ret", true).await {
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(ret.delivery.routing_key.as_str(), key);
            assert_eq!(ret.delivery.data, b"ret");
        }
        other => panic!("expected ack carrying a return, got {other:?}"),
    }
    // The channel continues confirming after a return.
    let q = declare_queue(&ch, "after-return").await;
    assert_eq!(
        publish_confirm(&ch, "", &q, b"ok", true).await,
        Confirmation::Ack(None)
    );
}

#[tokio::test]
async fn mixed_routable_and_unroutable_mandatory_publishes() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = declare_queue(&ch, "mixed").await;
    let mut pcs = Vec::new();
    for i in 0..20 {
        let key = if i % 2 == 0 {
            q.clone()
        } else {
            unique("none")
        };
        pcs.push(
            ch.basic_publish(
                "".into(),
                key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"m",
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    // Every publish is acked; exactly the 10 unroutable ones are returned. (Which confirm
    // lapin attaches each return to is a client detail when RabbitMQ acks with multiple=true,
    // so only the totals are asserted.)
    let mut returns = 0;
    for pc in pcs {
        match within("confirm", pc).await.unwrap() {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(r)) => {
                assert_eq!(r.reply_code, 312);
                returns += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(returns, 10);
    wait_ready(&ch, &q, 10).await;
}

#[tokio::test]
async fn confirm_on_transactional_channel_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    ch.tx_select().await.unwrap();
    let err = ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - cannot switch from tx to
    // confirm mode" (85,10).
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn tx_on_confirm_channel_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let err = ch.tx_select().await.unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - cannot switch from confirm to
    // tx mode" (90,10).
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    );
    assert!(conn.status().connected());
}

// ----------------------------------------------------------------------------------- tx

#[tokio::test]
async fn tx_commit_makes_publishes_visible() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-commit").await;
    let obs = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    publish(&ch, "", &q, b"1").await;
    publish(&ch, "", &q, b"2").await;
    // Not yet visible.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    wait_ready(&obs, &q, 0).await;
    ch.tx_commit().await.unwrap();
    wait_ready(&obs, &q, 2).await;
    assert_eq!(get_body(&obs, &q).await.unwrap(), b"1");
    assert_eq!(get_body(&obs, &q).await.unwrap(), b"2");
}

#[tokio::test]
async fn tx_rollback_discards_publishes() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-rollback").await;
    let obs = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    publish(&ch, "", &q, b"never").await;
    ch.tx_rollback().await.unwrap();
    // The transaction continues: a new publish + commit delivers only the new one.
    publish(&ch, "", &q, b"later").await;
    ch.tx_commit().await.unwrap();
    wait_ready(&obs, &q, 1).await;
    assert_eq!(get_body(&obs, &q).await.unwrap(), b"later");
    assert_eq!(get_body(&obs, &q).await, None);
}

#[tokio::test]
async fn tx_uncommitted_publishes_lost_on_channel_close() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-close").await;
    let obs = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    publish(&ch, "", &q, b"lost").await;
    ch.close(200, "bye".into()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    wait_ready(&obs, &q, 0).await;
}

/// An ack inside a transaction that is never committed did not happen: when the channel
/// closes, the message goes back to the queue like any unacked one.
#[tokio::test]
async fn tx_uncommitted_ack_is_void_when_the_channel_closes() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-ack-close").await;
    publish(&ch, "", &q, b"keep").await;
    wait_ready(&ch, &q, 1).await;
    let tch = conn.create_channel().await.unwrap();
    tch.tx_select().await.unwrap();
    let m = tch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    tch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    tch.close(200, "no commit".into()).await.unwrap();
    wait_ready(&ch, &q, 1).await;
    assert_eq!(get_body(&ch, &q).await.as_deref(), Some(&b"keep"[..]));
}

#[tokio::test]
async fn tx_ack_takes_effect_on_commit() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-ack").await;
    publish(&ch, "", &q, b"a").await;
    wait_ready(&ch, &q, 1).await;
    let tch = conn.create_channel().await.unwrap();
    tch.tx_select().await.unwrap();
    let m = tch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    tch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    tch.tx_commit().await.unwrap();
    tch.close(200, "ok".into()).await.unwrap();
    // Acked for real: nothing comes back.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    wait_ready(&ch, &q, 0).await;
}

#[tokio::test]
async fn tx_rolled_back_ack_leaves_message_unacked() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-ack-rb").await;
    publish(&ch, "", &q, b"a").await;
    wait_ready(&ch, &q, 1).await;
    let tch = conn.create_channel().await.unwrap();
    tch.tx_select().await.unwrap();
    let m = tch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    let tag = m.delivery.delivery_tag;
    tch.basic_ack(tag, BasicAckOptions::default())
        .await
        .unwrap();
    tch.tx_rollback().await.unwrap();
    // Still unacked (not ready, not gone); the same tag may be acked again in a new tx...
    wait_ready(&ch, &q, 0).await;
    // ...and closing the channel requeues it since the ack was rolled back.
    tch.close(200, "ok".into()).await.unwrap();
    wait_ready(&ch, &q, 1).await;
    let back = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.delivery.data, b"a");
    assert!(back.delivery.redelivered);
}

#[tokio::test]
async fn tx_rolled_back_ack_can_be_reacked() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "tx-reack").await;
    publish(&ch, "", &q, b"a").await;
    wait_ready(&ch, &q, 1).await;
    let tch = conn.create_channel().await.unwrap();
    tch.tx_select().await.unwrap();
    let m = tch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    let tag = m.delivery.delivery_tag;
    tch.basic_ack(tag, BasicAckOptions::default())
        .await
        .unwrap();
    tch.tx_rollback().await.unwrap();
    tch.basic_ack(tag, BasicAckOptions::default())
        .await
        .unwrap();
    tch.tx_commit()
        .await
        .expect("re-ack after rollback is valid");
    tch.close(200, "ok".into()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    wait_ready(&ch, &q, 0).await;
}

#[tokio::test]
async fn tx_commit_without_select_is_406() {
    let broker = Broker::start();
    let (conn, ch) = connect_channel(&broker).await;
    let err = ch.tx_commit().await.unwrap_err();
    // RabbitMQ 3.10: channel.close 406 "PRECONDITION_FAILED - channel is not transactional"
    // (90,20).
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        "PRECONDITION_FAILED - channel is not transactional"
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn tx_rollback_without_select_is_406() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    let err = ch.tx_rollback().await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).unwrap(),
        "PRECONDITION_FAILED - channel is not transactional"
    );
}

#[tokio::test]
async fn tx_select_twice_and_empty_commit_ok() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.tx_select().await.unwrap();
    ch.tx_select().await.expect("idempotent");
    ch.tx_commit().await.expect("empty commit");
    ch.tx_rollback().await.expect("empty rollback");
}

#[tokio::test]
async fn tx_mandatory_unroutable_returned_on_commit() {
    let broker = Broker::start();
    let (_c, ch) = connect_channel(&broker).await;
    ch.tx_select().await.unwrap();
    let pc = ch
        .basic_publish(
            "".into(),
            unique("none").as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"r",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        within("confirm", pc).await.unwrap(),
        Confirmation::NotRequested
    );
    ch.tx_commit().await.expect("commit ok even with a return");
    let _ = FieldTable::default();
}

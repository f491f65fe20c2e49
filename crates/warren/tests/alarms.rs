//! Resource alarms over real sockets: a publisher is blocked (its publishes are not read, so
//! their confirms do not come) while the memory alarm is on, a consumer on another
//! connection keeps draining, and everything resumes when the alarm clears. The alarm is
//! driven through `warren ctl set_vm_memory_high_watermark`, as an operator would.
mod common;

use std::time::Duration;

use common::*;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn memory_alarm_blocks_publishers_until_it_clears() {
    // A watermark of one byte: the alarm is on as soon as the broker measures itself.
    let broker = Broker::start_with_args(&["--memory-high-watermark", "1"]);
    if broker.is_external() {
        eprintln!("skipped: needs a Warren we start (alarm thresholds)");
        return;
    }
    let data_dir = broker.data_dir.clone().expect("our broker has a data dir");
    // Give the housekeeping thread time to take its first measurement.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let (_pc, publisher) = connect_channel(&broker).await;
    let (_cc, consumer) = connect_channel(&broker).await;
    let queue = unique("alarm-q");
    publisher
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");

    // The first publish marks the connection as a publisher; from then on it is not read.
    let first = publisher
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"one",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    let _ = tokio::time::timeout(Duration::from_secs(2), first).await;
    // lapin itself holds publishes back once it hears `connection.blocked`, so the second
    // publish runs in a task: neither the publish nor its confirm may complete while blocked.
    let blocked_publisher = publisher.clone();
    let blocked_queue = queue.clone();
    let mut second = tokio::spawn(async move {
        blocked_publisher
            .basic_publish(
                "".into(),
                blocked_queue.as_str().into(),
                BasicPublishOptions::default(),
                b"two",
                BasicProperties::default(),
            )
            .await?
            .await
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(800), &mut second)
            .await
            .is_err(),
        "a blocked publisher's message must not be confirmed while the alarm is on"
    );

    // Consumers are not blocked: the other connection still works.
    let got = within(
        "basic.get on a consuming connection",
        consumer.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get on a consuming connection");
    assert!(
        got.is_some(),
        "the first message was accepted before the block"
    );

    warren_ctl(&data_dir, &["set_vm_memory_high_watermark", "0.9"]).expect("raise the watermark");
    tokio::time::timeout(Duration::from_secs(5), &mut second)
        .await
        .expect("confirm after the alarm cleared")
        .expect("task")
        .expect("confirm");
    wait_ready(&consumer, &queue, 1).await;
    let got = within(
        "basic.get",
        consumer.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .expect("the second message arrived after unblocking");
    assert_eq!(got.delivery.data, b"two");
}

//! Channel closes that cross on the wire, compared with RabbitMQ 3.10 by raw frames.

use super::*;

/// A publish to a missing exchange (method, header and a one-byte body) on `channel`.
fn publish_to_missing_exchange(channel: u16) -> Vec<u8> {
    let mut burst = method_frame(channel, 60, 40, &publish_args("no-such-exchange", "k"));
    burst.extend(frame(FRAME_HEADER, channel, &content_header(1)));
    burst.extend(frame(FRAME_BODY, channel, b"x"));
    burst
}

fn channel_close(channel: u16) -> Vec<u8> {
    method_frame(
        channel,
        20,
        40,
        &Args::default()
            .u16(200)
            .shortstr("bye")
            .u16(0)
            .u16(0)
            .done(),
    )
}

#[track_caller]
fn expect_not_found_close(c: &mut Conn, channel: u16) {
    let close = c.expect_method(20, 40);
    let mut a = close.args();
    assert_eq!(close.channel, channel);
    assert_eq!(a.u16(), 404);
    assert_eq!(
        a.shortstr(),
        "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'"
    );
    assert_eq!((a.u16(), a.u16()), (60, 40));
}

/// amqp091-go's `TestChannelExceptionWithCloseIssue43`: the client's `channel.close` crosses
/// the broker's. RabbitMQ 3.10 (raw frames against a local node): the broker sends its
/// close (404), answers the client's with `close-ok`, then takes the client's `close-ok` to
/// its own silently; other channels live on and the id opens again.
#[tokio::test]
async fn crossing_channel_closes_end_only_that_channel() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.open_channel(2);
    let mut burst = publish_to_missing_exchange(1);
    burst.extend(channel_close(1));
    c.send(&burst);
    expect_not_found_close(&mut c, 1);
    assert_eq!(
        c.expect_method(20, 41).channel,
        1,
        "close-ok for the client's close"
    );
    c.send(&method_frame(1, 20, 41, &[]));
    let declare = Args::default().u16(0).shortstr("").u8(0x08).u32(0).done();
    c.send(&method_frame(2, 50, 10, &declare));
    assert_eq!(c.expect_method(50, 11).channel, 2, "channel 2 still serves");
    c.open_channel(1);
    broker_still_healthy(&broker).await;
}

/// RabbitMQ 3.10: until the client answers the broker's `channel.close` with `close-ok`
/// (a crossing `channel.close` does not count), the channel is still open to it: a
/// `channel.open` of the id is 504 "second 'channel.open' seen", a connection error.
#[tokio::test]
async fn channel_open_before_close_ok_is_504_second_open() {
    let broker = Broker::start();
    for crossing in [false, true] {
        let mut c = Conn::open(&broker);
        c.open_channel(1);
        let mut burst = publish_to_missing_exchange(1);
        if crossing {
            burst.extend(channel_close(1));
        }
        c.send(&burst);
        expect_not_found_close(&mut c, 1);
        if crossing {
            c.expect_method(20, 41);
        }
        c.send(&method_frame(
            1,
            20,
            10,
            &Args::default().shortstr("").done(),
        ));
        let text = assert_conn_close(c.outcome(), 504, 20, 10);
        assert_eq!(text, "CHANNEL_ERROR - second 'channel.open' seen");
    }
    broker_still_healthy(&broker).await;
}

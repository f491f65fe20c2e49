"""Channel lifecycle and channel-scoped errors."""

import pika
import pika.exceptions as exc
import pytest

from conftest import unique, wait_for


def test_open_and_close_many_channels(conn):
    chans = [conn.channel() for _ in range(100)]
    numbers = {ch.channel_number for ch in chans}
    assert len(numbers) == 100
    for ch in chans:
        assert ch.is_open
    # Every channel is independently usable.
    for ch in chans[::10]:
        ch.basic_qos(prefetch_count=5)
    for ch in chans:
        ch.close()
        assert ch.is_closed
    assert conn.is_open
    ch = conn.channel()
    assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_explicit_channel_number(conn):
    ch = conn.channel(channel_number=42)
    assert ch.channel_number == 42
    assert ch.is_open
    ch.close()
    ch = conn.channel(channel_number=42)  # number can be reused after close
    assert ch.is_open


def test_channel_error_closes_only_that_channel(conn, broker):
    good = conn.channel()
    q = good.queue_declare("", exclusive=True).method.queue
    got = []
    good.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)

    bad = conn.channel()
    missing = unique("missing")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        bad.queue_declare(missing, passive=True)
    assert ei.value.reply_code == 404
    assert ei.value.reply_text == f"NOT_FOUND - no queue '{missing}' in vhost '{broker.vhost}'"
    assert bad.is_closed
    assert conn.is_open
    assert good.is_open

    # Using the closed channel is a client-side error.
    with pytest.raises(exc.ChannelWrongStateError):
        bad.basic_publish("", q, b"x")

    # Other channel still routes & consumes.
    good.basic_publish("", q, b"after-error")
    assert wait_for(conn, lambda: got)
    assert got == [b"after-error"]

    # A fresh channel works too.
    fresh = conn.channel()
    assert fresh.queue_declare(q, passive=True).method.consumer_count == 1


def test_channel_error_during_consume_keeps_other_consumers(conn, broker):
    c1 = conn.channel()
    c2 = conn.channel()
    q1 = c1.queue_declare("", exclusive=True).method.queue
    seen = []
    c1.basic_consume(q1, lambda c, m, p, b: seen.append(b), auto_ack=True)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        c2.basic_ack(12345)
        c2.basic_qos(prefetch_count=1)  # synchronous round trip surfaces the async close
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 12345"
    c3 = conn.channel()
    c3.basic_publish("", q1, b"still-alive")
    assert wait_for(conn, lambda: seen)
    assert seen == [b"still-alive"]


def test_impl_close_callback_receives_broker_reason(conn):
    ch = conn.channel()
    reasons = []
    # BlockingChannel has no add_on_close_callback; the underlying impl channel does.
    ch._impl.add_on_close_callback(lambda c, reason: reasons.append(reason))
    with pytest.raises(exc.ChannelClosedByBroker):
        ch.exchange_declare(unique("x"), passive=True)
    wait_for(conn, lambda: reasons, timeout=2)
    assert len(reasons) == 1
    assert isinstance(reasons[0], exc.ChannelClosedByBroker)
    assert reasons[0].reply_code == 404


def test_channel_flow_active_true_ok(channel):
    assert channel.flow(True) is True


def test_channel_flow_active_false_not_implemented(conn):
    ch = conn.channel()
    with pytest.raises(exc.ConnectionClosedByBroker) as ei:
        ch.flow(False)
    # RabbitMQ 3.10: channel.flow(active=false) from a client is a connection error 540.
    assert ei.value.reply_code == 540
    assert ei.value.reply_text == "NOT_IMPLEMENTED - active=false"
    assert conn.is_closed


def test_basic_qos_prefetch_size_not_implemented(conn):
    ch = conn.channel()
    with pytest.raises(exc.ConnectionClosedByBroker) as ei:
        ch.basic_qos(prefetch_size=10)
    # RabbitMQ 3.10: prefetch_size != 0 is a connection error 540.
    assert ei.value.reply_code == 540
    assert ei.value.reply_text == "NOT_IMPLEMENTED - prefetch_size!=0 (10)"

"""Publisher confirms and AMQP transactions."""

import pika
import pika.exceptions as exc
import pytest

from conftest import get_all, get_one, unique, wait_for, wait_message_count


def closed(ei, code, text):
    assert ei.value.reply_code == code, (ei.value.reply_code, ei.value.reply_text)
    assert ei.value.reply_text == text


# --------------------------------------------------------------------------- confirms


def test_confirm_delivery_many_publishes(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(300):
        # BlockingChannel.basic_publish in confirm mode waits for the ack; raises on nack/return.
        ch.basic_publish("", q, b"%d" % i)
    assert ch.queue_declare(q, passive=True).method.message_count == 300


def test_confirm_delivery_idempotent(channel):
    channel.confirm_delivery()
    # A second confirm.select on the same channel is allowed by the broker; pika refuses it
    # client-side only if already enabled, so go through the impl.
    results = []
    channel._impl.confirm_delivery(lambda *a: None, callback=lambda f: results.append(f))
    channel.basic_qos(prefetch_count=0)
    assert results and isinstance(results[0].method, pika.spec.Confirm.SelectOk)


def test_confirm_unroutable_non_mandatory_is_acked(channel):
    channel.confirm_delivery()
    channel.basic_publish("amq.direct", unique("nokey"), b"x")  # no exception
    assert channel.is_open


def test_confirm_unroutable_mandatory_raises_unroutable(channel):
    channel.confirm_delivery()
    key = unique("nokey")
    with pytest.raises(exc.UnroutableError) as ei:
        channel.basic_publish("amq.direct", key, b"bounce", mandatory=True)
    msgs = ei.value.messages
    assert len(msgs) == 1
    m = msgs[0].method
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == (312, "NO_ROUTE", "amq.direct", key)
    assert msgs[0].body == b"bounce"
    assert channel.is_open
    # channel still usable afterwards
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", q, b"fine", mandatory=True)


def test_confirm_nack_on_reject_publish_overflow(channel):
    channel.confirm_delivery()
    q = channel.queue_declare(
        "", exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    ).method.queue
    channel.basic_publish("", q, b"first")
    with pytest.raises(exc.NackError):
        channel.basic_publish("", q, b"second")
    assert get_all(channel, q) == [b"first"]


def test_confirm_publish_to_missing_exchange_closes_channel(conn, broker):
    ch = conn.channel()
    ch.confirm_delivery()
    x = unique("nox")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_publish(x, "k", b"x")
    closed(ei, 404, f"NOT_FOUND - no exchange '{x}' in vhost '{broker.vhost}'")


def test_async_confirms_delivery_tags(conn):
    """Use the impl channel to see raw basic.ack frames: tags are 1..N, possibly multiple."""
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    acks = []
    ch._impl.confirm_delivery(lambda frame: acks.append(frame.method))
    ch.basic_qos(prefetch_count=0)
    for i in range(50):
        ch._impl.basic_publish("", q, b"%d" % i)

    def all_acked():
        confirmed = set()
        for m in acks:
            assert isinstance(m, pika.spec.Basic.Ack)
            if m.multiple:
                confirmed.update(range(1, m.delivery_tag + 1))
            else:
                confirmed.add(m.delivery_tag)
        return confirmed == set(range(1, 51))

    assert wait_for(conn, all_acked, timeout=5)


def test_confirm_then_tx_406(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.tx_select()
    closed(ei, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")


# --------------------------------------------------------------------------- tx


def test_tx_commit_publish(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    observer = conn.channel()
    ok = ch.tx_select()
    assert isinstance(ok.method, pika.spec.Tx.SelectOk)
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    assert observer.queue_declare(q, passive=True).method.message_count == 0
    ok = ch.tx_commit()
    assert isinstance(ok.method, pika.spec.Tx.CommitOk)
    assert wait_message_count(observer, q, 2) == 2
    assert get_all(observer, q) == [b"1", b"2"]


def test_tx_rollback_publish(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"gone")
    ok = ch.tx_rollback()
    assert isinstance(ok.method, pika.spec.Tx.RollbackOk)
    ch.tx_commit()  # nothing pending
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    # channel stays transactional: next publish is again held until commit
    ch.basic_publish("", q, b"kept")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_commit()
    assert get_all(ch, q) == [b"kept"]


def test_tx_commit_ack(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"a")
    ch.tx_select()
    m, _, _ = ch.basic_get(q)
    ch.basic_ack(m.delivery_tag)
    ch.tx_commit()
    ch.close()
    assert conn.channel().queue_declare(q, passive=True).method.message_count == 0


def test_tx_rollback_ack_leaves_message_unacked(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"a")
    ch.tx_select()
    m, _, _ = ch.basic_get(q)
    ch.basic_ack(m.delivery_tag)
    ch.tx_rollback()
    # the ack was discarded: message still unacked, comes back when channel closes
    ch.close()
    ch2 = conn.channel()
    m2, _, b = get_one(ch2, q)
    assert b == b"a"
    assert m2.redelivered is True


def test_tx_rolled_back_ack_can_be_acked_again(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"a")
    ch.tx_select()
    m, _, _ = ch.basic_get(q)
    ch.basic_ack(m.delivery_tag)
    ch.tx_rollback()
    ch.basic_ack(m.delivery_tag)
    ch.tx_commit()
    ch.close()
    assert conn.channel().queue_declare(q, passive=True).method.message_count == 0


def test_tx_commit_without_select_406(conn):
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.tx_commit()
    closed(ei, 406, "PRECONDITION_FAILED - channel is not transactional")


def test_tx_rollback_without_select_406(conn):
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.tx_rollback()
    closed(ei, 406, "PRECONDITION_FAILED - channel is not transactional")


def test_tx_then_confirm_406(conn):
    ch = conn.channel()
    ch.tx_select()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.confirm_delivery()
    closed(ei, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")


def test_tx_mandatory_unroutable_returned_on_commit(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(m))
    ch.tx_select()
    ch.basic_publish("amq.direct", unique("nokey"), b"x", mandatory=True)
    ch.tx_commit()
    assert wait_for(conn, lambda: returned, timeout=5)
    assert returned[0].reply_code == 312

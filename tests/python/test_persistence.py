"""Durability across a broker restart. Only runs against a Warren we spawn ourselves
(skipped with WARREN_URL, since we must not restart an external broker).

Expected semantics are RabbitMQ's: durable exchanges/queues/bindings and persistent
(delivery_mode=2) messages in durable queues survive a restart; transient queues,
exclusive queues and non-persistent messages do not."""

import pika
import pika.exceptions as exc
import pytest


from conftest import get_all, unique, wait_message_count


def _declare_world(ch, names):
    ch.exchange_declare(names["x"], exchange_type="topic", durable=True)
    ch.queue_declare(names["dq"], durable=True)
    ch.queue_declare(names["tq"], durable=False)
    ch.queue_bind(names["dq"], names["x"], routing_key="k.#")


def _names():
    return {"x": unique("dx"), "dq": unique("dq"), "tq": unique("tq")}


@pytest.mark.parametrize("hard", [False, True], ids=["graceful", "kill9"])
def test_durable_entities_and_persistent_messages_survive_restart(private_warren, hard):
    names = _names()
    b1 = private_warren.start()
    c = b1.connect()
    ch = c.channel()
    _declare_world(ch, names)
    ch.confirm_delivery()  # a confirmed persistent message must survive even a crash
    ch.basic_publish(names["x"], "k.persistent", b"persistent", pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", names["dq"], b"transient-msg", pika.BasicProperties(delivery_mode=1))
    ch.basic_publish("", names["tq"], b"in-transient-queue", pika.BasicProperties(delivery_mode=2))
    assert wait_message_count(ch, names["dq"], 2) == 2
    if not hard:
        c.close()
    private_warren.stop(b1, hard=hard)

    b2 = private_warren.start()
    c2 = b2.connect()
    try:
        ch2 = c2.channel()
        ch2.exchange_declare(names["x"], passive=True)
        ok = ch2.queue_declare(names["dq"], passive=True)
        # RabbitMQ: only the persistent message survives in the durable queue.
        assert ok.method.message_count == 1
        m, p, body = ch2.basic_get(names["dq"], auto_ack=True)
        assert body == b"persistent"
        assert p.delivery_mode == 2
        # binding survived too
        ch2.basic_publish(names["x"], "k.again", b"routed-after-restart")
        assert get_all(ch2, names["dq"]) == [b"routed-after-restart"]
        with pytest.raises(exc.ChannelClosedByBroker) as ei:
            ch2.queue_declare(names["tq"], passive=True)
        assert ei.value.reply_code == 404
    finally:
        c2.close()


def test_unacked_persistent_message_redelivered_after_restart(private_warren):
    q = unique("ua")
    b1 = private_warren.start()
    c = b1.connect()
    ch = c.channel()
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"keep", pika.BasicProperties(delivery_mode=2))
    m, _, _ = ch.basic_get(q)  # taken but never acked
    assert m is not None
    private_warren.stop(b1, hard=True)

    b2 = private_warren.start()
    c2 = b2.connect()
    try:
        m, _, body = c2.channel().basic_get(q, auto_ack=True)
        assert body == b"keep"
    finally:
        c2.close()


def test_exclusive_queue_gone_after_restart(private_warren):
    b1 = private_warren.start()
    c = b1.connect()
    q = unique("ex")
    c.channel().queue_declare(q, exclusive=True, durable=False)
    private_warren.stop(b1, hard=False)
    b2 = private_warren.start()
    c2 = b2.connect()
    try:
        with pytest.raises(exc.ChannelClosedByBroker) as ei:
            c2.channel().queue_declare(q, passive=True)
        assert ei.value.reply_code == 404
    finally:
        c2.close()

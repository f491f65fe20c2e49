"""queue.declare / bind / unbind / purge / delete semantics and error codes."""

import re
import time

import pika
import pika.exceptions as exc
import pytest

from conftest import get_all, get_one, unique, wait_for, wait_message_count, wait_queue_gone

GEN_RE = re.compile(r"^amq\.gen-[A-Za-z0-9_\-]{22}$")


def closed(ei, code, text):
    assert ei.value.reply_code == code, (ei.value.reply_code, ei.value.reply_text)
    assert ei.value.reply_text == text


def locked_text(q, vhost):
    return (
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '{vhost}'. "
        "It could be originally declared on another connection or the exclusive property value does not "
        "match that of the original declaration."
    )


def test_declare_variants(channel, cleanup):
    variants = [
        dict(),
        dict(durable=True),
        dict(auto_delete=True),
        dict(exclusive=True),
        dict(durable=True, arguments={"x-message-ttl": 60000}),
        dict(arguments={"x-max-length": 10, "x-overflow": "reject-publish"}),
        dict(arguments={"x-expires": 60000}),
        dict(arguments={"x-max-priority": 10}),
        dict(arguments={"x-dead-letter-exchange": "amq.fanout", "x-dead-letter-routing-key": "dlk"}),
        dict(arguments={"x-queue-type": "classic"}),
        dict(arguments={"x-max-length-bytes": 1024}),
    ]
    for kw in variants:
        q = cleanup.queue(unique("qv"))
        ok = channel.queue_declare(q, **kw)
        assert ok.method.queue == q
        assert ok.method.message_count == 0
        assert ok.method.consumer_count == 0
        # identical redeclare is OK
        channel.queue_declare(q, **kw)
        channel.queue_declare(q, passive=True)


def test_server_named_queue(channel):
    q1 = channel.queue_declare("", exclusive=True).method.queue
    q2 = channel.queue_declare("", exclusive=True).method.queue
    assert GEN_RE.match(q1), q1
    assert GEN_RE.match(q2), q2
    assert q1 != q2


def test_empty_name_refers_to_last_declared_queue(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind("", "amq.fanout")  # "" == last queue declared on this channel
    channel.basic_publish("", q, b"hi")
    m, p, b = channel.basic_get("", auto_ack=True)
    assert b == b"hi"
    assert channel.queue_purge("").method.message_count == 0
    channel.queue_unbind("", "amq.fanout")
    assert channel.queue_delete("").method.message_count == 0
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.queue_declare(q, passive=True)
    assert ei.value.reply_code == 404


def test_empty_name_without_previous_declare_404(conn):
    for op in (
        lambda ch: ch.queue_bind("", "amq.direct", routing_key="k"),
        lambda ch: ch.basic_get(""),
    ):
        ch = conn.channel()
        with pytest.raises(exc.ChannelClosedByBroker) as ei:
            op(ch)
        closed(ei, 404, "NOT_FOUND - no previously declared queue")


def test_declare_ok_counts(conn, cleanup):
    ch = conn.channel()
    q = cleanup.queue(unique("cnt"))
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    wait_message_count(ch, q, 3)
    ok = ch.queue_declare(q)
    assert ok.method.message_count == 3
    assert ok.method.consumer_count == 0
    ok = ch.queue_declare(q, passive=True)
    assert (ok.method.message_count, ok.method.consumer_count) == (3, 0)

    cons = conn.channel()
    cons.basic_qos(prefetch_count=1)
    got = []
    cons.basic_consume(q, lambda c, m, p, b: got.append(m))
    assert wait_for(conn, lambda: got)
    conn.process_data_events(time_limit=0.1)
    wait_message_count(ch, q, 2)
    ok = ch.queue_declare(q, passive=True)
    # message_count counts only ready messages: 1 is unacked in the consumer.
    assert ok.method.message_count == 2
    assert ok.method.consumer_count == 1


def test_passive_missing_404(channel, broker):
    q = unique("noq")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.queue_declare(q, passive=True)
    closed(ei, 404, f"NOT_FOUND - no queue '{q}' in vhost '{broker.vhost}'")


def test_amq_prefix_403(channel):
    q = "amq.pytest-" + unique()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.queue_declare(q)
    closed(ei, 403, f"ACCESS_REFUSED - queue name '{q}' contains reserved prefix 'amq.*'")


def test_redeclare_mismatch_406(conn, cleanup, broker):
    q = cleanup.queue(unique("mm"))
    ch = conn.channel()
    ch.queue_declare(q)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, durable=True)
    closed(
        ei,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '{broker.vhost}': "
        "received 'true' but current is 'false'",
    )
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, arguments={"x-max-length": 5})
    closed(
        ei,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '{broker.vhost}': "
        "received the value '5' of type 'signedint' but current is none",
    )


@pytest.mark.parametrize(
    "args,suffix",
    [
        ({"x-max-length": "a"}, "'x-max-length' for queue '{q}' in vhost '{v}': \"expected integer, got longstr\""),
        ({"x-message-ttl": -1}, "'x-message-ttl' for queue '{q}' in vhost '{v}': {{value_negative,-1}}"),
        ({"x-expires": 0}, "'x-expires' for queue '{q}' in vhost '{v}': {{value_zero,0}}"),
        ({"x-max-priority": 300}, "'x-max-priority' for queue '{q}' in vhost '{v}': {{max_value_exceeded,300}}"),
        ({"x-overflow": "weird"}, "'x-overflow' for queue '{q}' in vhost '{v}': invalid_overflow"),
    ],
)
def test_invalid_queue_arguments_406(channel, broker, args, suffix):
    q = unique("badarg")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.queue_declare(q, arguments=args)
    # RabbitMQ 3.10: the tail of these texts is an Erlang term rendering.
    closed(ei, 406, "PRECONDITION_FAILED - invalid arg " + suffix.format(q=q, v=broker.vhost))


def test_exclusive_queue_other_connection_405(conn, connect, broker, cleanup):
    ch = conn.channel()
    q = cleanup.queue(unique("excl"))
    ch.queue_declare(q, exclusive=True)
    other = connect()
    ops = [
        ("declare", lambda c: c.queue_declare(q)),
        ("declare-exclusive", lambda c: c.queue_declare(q, exclusive=True)),
        ("passive", lambda c: c.queue_declare(q, passive=True)),
        ("consume", lambda c: c.basic_consume(q, lambda *a: None)),
        ("get", lambda c: c.basic_get(q)),
        ("purge", lambda c: c.queue_purge(q)),
        ("delete", lambda c: c.queue_delete(q)),
        ("bind", lambda c: c.queue_bind(q, "amq.fanout")),
    ]
    for label, op in ops:
        oc = other.channel()
        with pytest.raises(exc.ChannelClosedByBroker) as ei:
            op(oc)
        assert ei.value.reply_code == 405, label
        assert ei.value.reply_text == locked_text(q, broker.vhost), label
    assert other.is_open
    # owner still fine
    ch.queue_declare(q, exclusive=True)


def test_exclusive_queue_redeclare_non_exclusive_same_connection_405(conn, broker, cleanup):
    ch = conn.channel()
    q = cleanup.queue(unique("excl"))
    ch.queue_declare(q, exclusive=True)
    # RabbitMQ 3.10: even the owning connection gets 405 (not 406) when redeclaring
    # an exclusive queue without exclusive=True.
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.queue_declare(q)
    closed(ei, 405, locked_text(q, broker.vhost))


def test_exclusive_queue_usable_from_other_channel_same_connection(conn):
    ch1 = conn.channel()
    q = ch1.queue_declare("", exclusive=True).method.queue
    ch2 = conn.channel()
    ch2.basic_publish("", q, b"x")
    m, p, b = ch2.basic_get(q, auto_ack=True)
    assert b == b"x"


def test_exclusive_queue_deleted_when_connection_closes(broker, conn):
    owner = broker.connect()
    q = owner.channel().queue_declare("", exclusive=True).method.queue
    owner.close()
    assert wait_queue_gone(conn, q)


def test_purge_returns_count(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    for i in range(7):
        channel.basic_publish("", q, b"x")
    wait_message_count(channel, q, 7)
    ok = channel.queue_purge(q)
    assert isinstance(ok.method, pika.spec.Queue.PurgeOk)
    assert ok.method.message_count == 7
    assert channel.queue_purge(q).method.message_count == 0


def test_purge_does_not_touch_unacked(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    wait_message_count(ch, q, 3)
    m, p, b = ch.basic_get(q, auto_ack=False)
    assert ch.queue_purge(q).method.message_count == 2
    ch.basic_nack(m.delivery_tag, requeue=True)
    assert get_all(ch, q) == [b"0"]


def test_purge_missing_404(channel, broker):
    q = unique("noq")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.queue_purge(q)
    closed(ei, 404, f"NOT_FOUND - no queue '{q}' in vhost '{broker.vhost}'")


def test_delete_returns_count(channel, cleanup):
    q = cleanup.queue(unique("del"))
    channel.queue_declare(q)
    for i in range(4):
        channel.basic_publish("", q, b"x")
    wait_message_count(channel, q, 4)
    ok = channel.queue_delete(q)
    assert isinstance(ok.method, pika.spec.Queue.DeleteOk)
    assert ok.method.message_count == 4


def test_delete_missing_is_ok(channel):
    # RabbitMQ 3.10: queue.delete of a missing queue succeeds with message_count=0 (no 404).
    ok = channel.queue_delete(unique("noq"))
    assert ok.method.message_count == 0
    assert channel.is_open


def test_delete_if_unused_406(conn, connect, cleanup, broker):
    ch = conn.channel()
    q = cleanup.queue(unique("ifu"))
    ch.queue_declare(q)
    other = connect()
    other.channel().basic_consume(q, lambda *a: None)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.queue_delete(q, if_unused=True)
    closed(ei, 406, f"PRECONDITION_FAILED - queue '{q}' in vhost '{broker.vhost}' in use")
    other.close()
    ch = conn.channel()
    ch.queue_delete(q, if_unused=True)


def test_delete_if_empty_406(conn, cleanup, broker):
    ch = conn.channel()
    q = cleanup.queue(unique("ife"))
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x")
    wait_message_count(ch, q, 1)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.queue_delete(q, if_empty=True)
    closed(ei, 406, f"PRECONDITION_FAILED - queue '{q}' in vhost '{broker.vhost}' not empty")
    ch = conn.channel()
    ch.queue_purge(q)
    assert ch.queue_delete(q, if_empty=True).method.message_count == 0


def test_delete_if_empty_ignores_unacked(conn, connect, cleanup):
    ch = conn.channel()
    q = cleanup.queue(unique("ife2"))
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x")
    other = connect()
    oc = other.channel()
    got = []
    oc.basic_consume(q, lambda c, m, p, b: got.append(m))  # manual ack; keep unacked
    assert wait_for(other, lambda: got)
    # RabbitMQ 3.10: if_empty only looks at ready messages; an unacked delivery does not block it,
    # and delete-ok reports message_count=0.
    ok = ch.queue_delete(q, if_empty=True)
    assert ok.method.message_count == 0


def test_auto_delete_after_last_consumer(conn, cleanup):
    ch = conn.channel()
    q = cleanup.queue(unique("ad"))
    ch.queue_declare(q, auto_delete=True)
    # Not deleted while it never had a consumer.
    conn.process_data_events(time_limit=0.1)
    ch.queue_declare(q, passive=True)
    c1 = conn.channel()
    c2 = conn.channel()
    t1 = c1.basic_consume(q, lambda *a: None)
    t2 = c2.basic_consume(q, lambda *a: None)
    c1.basic_cancel(t1)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    c2.basic_cancel(t2)
    assert wait_queue_gone(conn, q)


def test_auto_delete_when_consumer_channel_closes(conn, cleanup):
    ch = conn.channel()
    q = cleanup.queue(unique("ad2"))
    ch.queue_declare(q, auto_delete=True)
    c1 = conn.channel()
    c1.basic_consume(q, lambda *a: None)
    c1.close()
    assert wait_queue_gone(conn, q)


def test_bind_unbind(channel, cleanup):
    x = cleanup.exchange(unique("bx"))
    channel.exchange_declare(x, exchange_type="direct")
    q = channel.queue_declare("", exclusive=True).method.queue
    ok = channel.queue_bind(q, x, routing_key="k1")
    assert isinstance(ok.method, pika.spec.Queue.BindOk)
    channel.queue_bind(q, x, routing_key="k1")  # idempotent
    channel.basic_publish(x, "k1", b"a")
    assert get_all(channel, q) == [b"a"]
    ok = channel.queue_unbind(q, x, routing_key="k1")
    assert isinstance(ok.method, pika.spec.Queue.UnbindOk)
    channel.basic_publish(x, "k1", b"b")
    assert get_all(channel, q) == []


def test_bind_missing_queue_or_exchange_404(conn, broker):
    missing_q = unique("noq")
    missing_x = unique("nox")
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.queue_bind(missing_q, "amq.direct", routing_key="k")
    closed(ei, 404, f"NOT_FOUND - no queue '{missing_q}' in vhost '{broker.vhost}'")
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.queue_bind(q, missing_x, routing_key="k")
    closed(ei, 404, f"NOT_FOUND - no exchange '{missing_x}' in vhost '{broker.vhost}'")


def test_bind_to_default_exchange_403(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for op in (lambda c: c.queue_bind(q, "", routing_key="k"), lambda c: c.queue_unbind(q, "", routing_key="k")):
        with pytest.raises(exc.ChannelClosedByBroker) as ei:
            op(ch)
        closed(ei, 403, "ACCESS_REFUSED - operation not permitted on the default exchange")
        ch = conn.channel()


def test_unbind_missing_is_ok(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    # RabbitMQ 3.10: queue.unbind is idempotent: unknown queue, unknown exchange and
    # non-existent binding all reply unbind-ok instead of 404.
    ch.queue_unbind(q, "amq.direct", routing_key="never-bound")
    ch.queue_unbind(q, unique("nox"), routing_key="k")
    ch.queue_unbind(unique("noq"), "amq.direct", routing_key="k")
    assert ch.is_open


def test_message_ttl_expires(channel):
    q = channel.queue_declare("", exclusive=True, arguments={"x-message-ttl": 100}).method.queue
    channel.basic_publish("", q, b"short-lived")
    time.sleep(0.4)
    m, p, b = channel.basic_get(q, auto_ack=True)
    assert m is None


def test_per_message_expiration(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", q, b"expires", pika.BasicProperties(expiration="100"))
    channel.basic_publish("", q, b"stays")
    time.sleep(0.4)
    assert get_all(channel, q) == [b"stays"]


def test_max_length_drops_head(channel):
    q = channel.queue_declare("", exclusive=True, arguments={"x-max-length": 2}).method.queue
    for b in (b"1", b"2", b"3"):
        channel.basic_publish("", q, b)
    assert get_all(channel, q) == [b"2", b"3"]


def test_dead_letter_on_reject(channel):
    dlq = channel.queue_declare("", exclusive=True).method.queue
    q = channel.queue_declare(
        "", exclusive=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    ).method.queue
    channel.basic_publish("", q, b"dead")
    m, p, b = channel.basic_get(q)
    channel.basic_reject(m.delivery_tag, requeue=False)
    m, p, b = get_one(channel, dlq)  # dead-lettering is asynchronous
    assert b == b"dead"
    death = p.headers["x-death"][0]
    assert death["reason"] == "rejected"
    assert death["queue"] == q
    assert death["count"] == 1


def test_queue_expires(channel, cleanup):
    q = cleanup.queue(unique("exp"))
    channel.queue_declare(q, arguments={"x-expires": 200})
    time.sleep(0.8)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.queue_declare(q, passive=True)
    assert ei.value.reply_code == 404


def test_exclusive_queue_name_reusable_after_owner_closes(broker, connect):
    q = unique("exreuse")
    owner = connect()
    owner.channel().queue_declare(q, exclusive=True)
    owner.close()
    other = connect()
    deadline = time.monotonic() + 5
    while True:
        ch = other.channel()
        try:
            ch.queue_declare(q, exclusive=True)
            break
        except exc.ChannelClosedByBroker as e:
            # owner cleanup is asynchronous; 405 until it finishes
            assert e.reply_code == 405
            assert time.monotonic() < deadline
            time.sleep(0.05)
    ch.queue_delete(q)

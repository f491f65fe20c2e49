"""basic.* : publish / consume / get / qos / ack / nack / reject / return / cancel / recover."""

import datetime
import decimal
import struct
import time

import pika
import pika.data
import pika.exceptions as exc
import pytest

from conftest import drain, get_all, get_one, unique, wait_for, wait_message_count


def closed(ei, code, text):
    assert ei.value.reply_code == code, (ei.value.reply_code, ei.value.reply_text)
    assert ei.value.reply_text == text


def sync(ch):
    """A synchronous round trip so an asynchronous channel.close from the broker surfaces."""
    ch.basic_qos(prefetch_count=0)


def pump(conn, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)


def publish_n(ch, q, n, prefix=b"m"):
    for i in range(n):
        ch.basic_publish("", q, prefix + str(i).encode())


# --------------------------------------------------------------------------- publish / get


def test_publish_get_roundtrip(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    publish_n(channel, q, 3)
    m, p, b = channel.basic_get(q, auto_ack=True)
    assert isinstance(m, pika.spec.Basic.GetOk)
    assert b == b"m0"
    assert m.message_count == 2  # remaining after this one
    assert m.redelivered is False
    assert m.exchange == ""
    assert m.routing_key == q
    assert get_all(channel, q) == [b"m1", b"m2"]
    assert channel.basic_get(q) == (None, None, None)  # get-empty


def test_get_missing_queue_404(channel, broker):
    q = unique("noq")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.basic_get(q)
    closed(ei, 404, f"NOT_FOUND - no queue '{q}' in vhost '{broker.vhost}'")


def test_delivery_tags_monotonic_per_channel(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 4)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(2)]
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
    assert wait_for(conn, lambda: len(got) == 2)
    assert tags + got == [1, 2, 3, 4]
    # each channel has its own delivery-tag sequence starting at 1
    other = conn.channel()
    q2 = other.queue_declare("", exclusive=True).method.queue
    other.basic_publish("", q2, b"y")
    m2, _, _ = get_one(other, q2, auto_ack=False)
    assert m2.delivery_tag == 1


def test_empty_body(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", q, b"")
    m, p, b = channel.basic_get(q, auto_ack=True)
    assert m is not None
    assert b == b""


def test_five_mib_body(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    body = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    assert len(body) == 5 * 1024 * 1024
    ch.basic_publish("", q, body)
    got = drain(conn, ch, q, 1, timeout=15)
    assert len(got) == 1
    assert got[0][2] == body


def test_publish_to_default_exchange_unknown_queue_is_dropped(channel):
    channel.basic_publish("", unique("noq"), b"lost")
    sync(channel)
    assert channel.is_open


# --------------------------------------------------------------------------- properties


@pytest.fixture
def float_headers(monkeypatch):
    """pika 1.3.2 cannot encode Python floats in tables and decodes doubles with int()
    (truncation). Teach it both directions so we can check the broker passes 'd' through."""
    orig_enc = pika.data.encode_value
    orig_dec = pika.data.decode_value

    def enc(pieces, value):
        if isinstance(value, float):
            pieces.append(struct.pack(">cd", b"d", value))
            return 9
        return orig_enc(pieces, value)

    def dec(encoded, offset):
        if encoded[offset:offset + 1] == b"d":
            return struct.unpack_from(">d", encoded, offset + 1)[0], offset + 9
        return orig_dec(encoded, offset)

    monkeypatch.setattr(pika.data, "encode_value", enc)
    monkeypatch.setattr(pika.data, "decode_value", dec)


def test_all_basic_properties_roundtrip(conn, broker, float_headers):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    headers = {
        "str": "text",
        "unicode": "h\u00e9llo \u2603",
        "int": 42,
        "neg": -7,
        "big": 2 ** 40,
        "float": 1.5,
        "true": True,
        "false": False,
        "nested": {"inner": {"x": 1, "y": "z"}},
        "list": [1, "a", [2, 3], {"k": "v"}],
        "bytes": b"\x00\x01\xffbin",
        "decimal": decimal.Decimal("3.14"),
        "datetime": datetime.datetime(2020, 1, 2, 3, 4, 5),
        "none": None,
    }
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="gzip",
        headers=headers,
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="reply-queue",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="my.type",
        user_id=broker.username,
        app_id="pytest-app",
        cluster_id="cluster-x",
    )
    ch.basic_publish("", q, b"{}", props)
    for via in ("get", "consume"):
        if via == "get":
            m, p, b = ch.basic_get(q, auto_ack=True)
        else:
            ch.basic_publish("", q, b"{}", props)
            m, p, b = drain(conn, ch, q, 1)[0]
        assert b == b"{}"
        assert p.content_type == "application/json"
        assert p.content_encoding == "gzip"
        assert p.delivery_mode == 2
        assert p.priority == 5
        assert p.correlation_id == "corr-1"
        assert p.reply_to == "reply-queue"
        assert p.expiration == "60000"
        assert p.message_id == "msg-1"
        assert p.timestamp == 1700000000
        assert p.type == "my.type"
        assert p.user_id == broker.username
        assert p.app_id == "pytest-app"
        assert p.cluster_id == "cluster-x"
        h = p.headers
        assert set(h) == set(headers)
        for k, v in headers.items():
            assert h[k] == v, (k, h[k], v)
            assert type(h[k]) is type(v) or isinstance(h[k], type(v)), (k, type(h[k]), type(v))


def test_no_properties_roundtrip(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", q, b"bare")
    m, p, b = channel.basic_get(q, auto_ack=True)
    for attr in (
        "content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
        "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id",
    ):
        assert getattr(p, attr) is None, attr


def test_user_id_mismatch_406(conn, broker):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="not-" + broker.username))
        sync(ch)
    # RabbitMQ 3.10: validated user_id; mismatch is a channel error 406.
    closed(
        ei,
        406,
        f"PRECONDITION_FAILED - user_id property set to 'not-{broker.username}' but authenticated user was '{broker.username}'",
    )
    assert conn.is_open


@pytest.mark.parametrize(
    "expiration,detail", [("abc", "no_integer"), ("-5", "{value_negative,-5}")]
)
def test_invalid_expiration_406(conn, expiration, detail):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_publish("", q, b"x", pika.BasicProperties(expiration=expiration))
        sync(ch)
    closed(ei, 406, f"PRECONDITION_FAILED - invalid expiration '{expiration}': {detail}")


def test_priority_queue_orders_by_priority(channel):
    q = channel.queue_declare("", exclusive=True, arguments={"x-max-priority": 10}).method.queue
    for prio in (1, 9, 5, 0):
        channel.basic_publish("", q, b"p%d" % prio, pika.BasicProperties(priority=prio))
    assert get_all(channel, q) == [b"p9", b"p5", b"p1", b"p0"]


# --------------------------------------------------------------------------- consume


def test_consume_receives_in_order(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 10)
    got = drain(conn, ch, q, 10)
    assert [b for _, _, b in got] == [b"m%d" % i for i in range(10)]
    m = got[0][0]
    assert isinstance(m, pika.spec.Basic.Deliver)
    assert m.exchange == "" and m.routing_key == q and m.redelivered is False


def test_consume_missing_queue_404(channel, broker):
    q = unique("noq")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.basic_consume(q, lambda *a: None)
    closed(ei, 404, f"NOT_FOUND - no queue '{q}' in vhost '{broker.vhost}'")


def test_cancel_stops_delivery(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    assert tag in ch.consumer_tags
    ch.basic_publish("", q, b"1")
    assert wait_for(conn, lambda: got)
    ch.basic_cancel(tag)
    assert tag not in ch.consumer_tags
    ch.basic_publish("", q, b"2")
    pump(conn, 0.2)
    assert got == [b"1"]
    assert get_all(ch, q) == [b"2"]


def test_cancel_unknown_consumer_tag_ok(channel):
    # pika short-circuits unknown tags client-side; broker must also tolerate it.
    channel.basic_cancel("no-such-tag")
    sync(channel)
    assert channel.is_open


def test_round_robin_between_consumers(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    a, b_ = [], []
    ch.basic_consume(q, lambda c, m, p, b: a.append(b), auto_ack=True)
    ch.basic_consume(q, lambda c, m, p, b: b_.append(b), auto_ack=True)
    publish_n(ch, q, 10)
    assert wait_for(conn, lambda: len(a) + len(b_) == 10)
    assert len(a) == 5 and len(b_) == 5


def test_exclusive_consume_403(conn, connect, broker):
    ch = conn.channel()
    q = ch.queue_declare(unique("ex"), auto_delete=True).method.queue
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    text = f"ACCESS_REFUSED - queue '{q}' in vhost '{broker.vhost}' in exclusive use"
    other = connect().channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        other.basic_consume(q, lambda *a: None)
    closed(ei, 403, text)
    # also refused on another channel of the same connection
    same = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        same.basic_consume(q, lambda *a: None, exclusive=True)
    closed(ei, 403, text)


def test_exclusive_consume_when_consumers_exist_403(conn, broker):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume(q, lambda *a: None)
    ch2 = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch2.basic_consume(q, lambda *a: None, exclusive=True)
    closed(ei, 403, f"ACCESS_REFUSED - queue '{q}' in vhost '{broker.vhost}' in exclusive use")


def test_consumer_cancel_notification_on_queue_delete(conn, connect, cleanup):
    ch = conn.channel()
    q = cleanup.queue(unique("cn"))
    ch.queue_declare(q)
    cancels = []
    ch.add_on_cancel_callback(lambda frame: cancels.append(frame))
    tag = ch.basic_consume(q, lambda *a: None)
    other = connect().channel()
    other.queue_delete(q)
    assert wait_for(conn, lambda: cancels, timeout=5)
    frame = cancels[0]
    assert isinstance(frame.method, pika.spec.Basic.Cancel)
    assert frame.method.consumer_tag == tag
    assert tag not in ch.consumer_tags
    assert ch.is_open  # broker-side cancel is not an error


# --------------------------------------------------------------------------- qos


def test_prefetch_count_per_consumer(conn):
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 5)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m))
    assert wait_for(conn, lambda: len(got) >= 2)
    pump(conn, 0.3)
    assert len(got) == 2
    ch.basic_ack(got[0].delivery_tag)
    assert wait_for(conn, lambda: len(got) >= 3)
    pump(conn, 0.2)
    assert len(got) == 3
    ch.basic_ack(got[2].delivery_tag, multiple=True)
    assert wait_for(conn, lambda: len(got) >= 5)
    assert [m.delivery_tag for m in got] == [1, 2, 3, 4, 5]


def test_prefetch_per_consumer_two_consumers(conn):
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q1, 5)
    publish_n(ch, q2, 5)
    g1, g2 = [], []
    ch.basic_consume(q1, lambda c, m, p, b: g1.append(m))
    ch.basic_consume(q2, lambda c, m, p, b: g2.append(m))
    assert wait_for(conn, lambda: len(g1) + len(g2) >= 4)
    pump(conn, 0.3)
    assert (len(g1), len(g2)) == (2, 2)


def test_prefetch_global_shared_across_consumers(conn):
    ch = conn.channel()
    ch.basic_qos(prefetch_count=3, global_qos=True)
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q1, 5)
    publish_n(ch, q2, 5)
    got = []
    ch.basic_consume(q1, lambda c, m, p, b: got.append(m))
    ch.basic_consume(q2, lambda c, m, p, b: got.append(m))
    assert wait_for(conn, lambda: len(got) >= 3)
    pump(conn, 0.3)
    assert len(got) == 3
    ch.basic_ack(got[-1].delivery_tag, multiple=True)
    assert wait_for(conn, lambda: len(got) >= 6)
    pump(conn, 0.2)
    assert len(got) == 6


def test_prefetch_global_and_per_consumer_combined(conn):
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)  # per consumer
    ch.basic_qos(prefetch_count=3, global_qos=True)  # per channel
    qs = [ch.queue_declare("", exclusive=True).method.queue for _ in range(3)]
    for q in qs:
        publish_n(ch, q, 5)
    per = {q: [] for q in qs}
    for q in qs:
        ch.basic_consume(q, lambda c, m, p, b, q=q: per[q].append(m))
    assert wait_for(conn, lambda: sum(map(len, per.values())) >= 3)
    pump(conn, 0.3)
    counts = sorted(len(v) for v in per.values())
    assert sum(counts) == 3
    assert max(counts) <= 2


def test_qos_change_does_not_affect_existing_consumer(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m))  # unlimited
    ch.basic_qos(prefetch_count=1)  # only applies to consumers started later
    publish_n(ch, q, 4)
    assert wait_for(conn, lambda: len(got) == 4)


def test_basic_get_ignores_prefetch(channel):
    channel.basic_qos(prefetch_count=1)
    q = channel.queue_declare("", exclusive=True).method.queue
    publish_n(channel, q, 3)
    msgs = [channel.basic_get(q)[0] for _ in range(3)]
    assert all(m is not None for m in msgs)


# --------------------------------------------------------------------------- ack / nack / reject


def _consume_all(conn, ch, q, n):
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append((m, b)))
    assert wait_for(conn, lambda: len(got) >= n)
    return tag, got


def test_ack_multiple_then_close_requeues_rest(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 5)
    _, got = _consume_all(conn, ch, q, 5)
    ch.basic_ack(got[2][0].delivery_tag, multiple=True)
    ch.close()
    ch2 = conn.channel()
    wait_message_count(ch2, q, 2)  # requeue on channel close is asynchronous
    rest = []
    for _ in range(3):
        m, p, b = ch2.basic_get(q, auto_ack=True)
        if m is None:
            break
        rest.append((b, m.redelivered))
    assert rest == [(b"m3", True), (b"m4", True)]


def test_nack_multiple_requeue_restores_order(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 5)
    tag, got = _consume_all(conn, ch, q, 5)
    ch.basic_cancel(tag)
    ch.basic_nack(got[-1][0].delivery_tag, multiple=True, requeue=True)
    out = []
    for _ in range(6):
        m, p, b = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        out.append((b, m.redelivered))
    assert out == [(b"m%d" % i, True) for i in range(5)]


def test_reject_requeue_goes_back_to_original_position(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    for b in (b"a", b"b", b"c"):
        channel.basic_publish("", q, b)
    ma, _, _ = channel.basic_get(q)
    mb, _, _ = channel.basic_get(q)
    channel.basic_reject(ma.delivery_tag, requeue=True)
    m1, _, b1 = channel.basic_get(q, auto_ack=True)
    m2, _, b2 = channel.basic_get(q, auto_ack=True)
    # RabbitMQ 3.10 (classic queue): a requeued message regains its original position (head).
    assert (b1, m1.redelivered) == (b"a", True)
    assert (b2, m2.redelivered) == (b"c", False)
    channel.basic_reject(mb.delivery_tag, requeue=True)
    m3, _, b3 = channel.basic_get(q, auto_ack=True)
    assert (b3, m3.redelivered) == (b"b", True)
    assert m3.delivery_tag == 5


def test_reject_and_nack_without_requeue_drop(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    publish_n(channel, q, 4)
    m0 = channel.basic_get(q)[0]
    channel.basic_reject(m0.delivery_tag, requeue=False)
    channel.basic_get(q)
    m2 = channel.basic_get(q)[0]
    channel.basic_nack(m2.delivery_tag, multiple=True, requeue=False)
    assert get_all(channel, q) == [b"m3"]


def test_ack_zero_multiple_acks_everything(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 3)
    for _ in range(3):
        ch.basic_get(q)
    # RabbitMQ 3.10: delivery_tag=0 with multiple=true means "all outstanding".
    ch.basic_ack(0, multiple=True)
    sync(ch)
    ch.close()
    assert conn.channel().queue_declare(q, passive=True).method.message_count == 0


def test_nack_zero_multiple_requeues_everything(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 3)
    for _ in range(3):
        ch.basic_get(q)
    ch.basic_nack(0, multiple=True, requeue=True)
    assert get_all(ch, q) == [b"m0", b"m1", b"m2"]


@pytest.mark.parametrize("method", ["ack", "nack", "reject"])
def test_unknown_delivery_tag_406(conn, method):
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        getattr(ch, "basic_" + method)(99)
        sync(ch)
    closed(ei, 406, "PRECONDITION_FAILED - unknown delivery tag 99")
    assert conn.is_open


def test_ack_zero_single_406(conn):
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_ack(0)
        sync(ch)
    closed(ei, 406, "PRECONDITION_FAILED - unknown delivery tag 0")


def test_double_ack_406(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"x")
    m, _, _ = ch.basic_get(q)
    ch.basic_ack(m.delivery_tag)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_ack(m.delivery_tag)
        sync(ch)
    closed(ei, 406, f"PRECONDITION_FAILED - unknown delivery tag {m.delivery_tag}")


def test_ack_of_auto_acked_delivery_406(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"x")
    m, _, _ = ch.basic_get(q, auto_ack=True)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_ack(m.delivery_tag)
        sync(ch)
    closed(ei, 406, f"PRECONDITION_FAILED - unknown delivery tag {m.delivery_tag}")


def test_unacked_requeued_on_connection_close(broker, conn, cleanup):
    c = broker.connect()
    ch = c.channel()
    q = cleanup.queue(unique("rq"))
    conn.channel().queue_declare(q)
    ch.basic_publish("", q, b"x")
    m, _, _ = ch.basic_get(q)
    assert m is not None
    c.close()
    m, _, b = get_one(conn.channel(), q)
    assert b == b"x" and m.redelivered is True


# --------------------------------------------------------------------------- mandatory / return


def test_mandatory_unroutable_returns_312(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, p, b)))
    key = unique("nokey")
    ch.basic_publish("amq.direct", key, b"bounce", pika.BasicProperties(message_id="r1"), mandatory=True)
    assert wait_for(conn, lambda: returned, timeout=5)
    m, p, b = returned[0]
    assert isinstance(m, pika.spec.Basic.Return)
    assert m.reply_code == 312
    assert m.reply_text == "NO_ROUTE"
    assert m.exchange == "amq.direct"
    assert m.routing_key == key
    assert p.message_id == "r1"
    assert b == b"bounce"


def test_mandatory_default_exchange_unknown_queue_returns(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(m))
    q = unique("noq")
    ch.basic_publish("", q, b"x", mandatory=True)
    assert wait_for(conn, lambda: returned, timeout=5)
    assert (returned[0].reply_code, returned[0].reply_text, returned[0].exchange, returned[0].routing_key) == (
        312, "NO_ROUTE", "", q)


def test_mandatory_routable_and_non_mandatory_unroutable_no_return(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(m))
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"ok", mandatory=True)
    ch.basic_publish("amq.direct", unique("nokey"), b"dropped")
    pump(conn, 0.3)
    assert returned == []
    assert get_all(ch, q) == [b"ok"]


# --------------------------------------------------------------------------- recover


def test_basic_recover_requeue_redelivers(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(ch, q, 2)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append((m, b)))
    assert wait_for(conn, lambda: len(got) == 2)
    assert all(not m.redelivered for m, _ in got)
    ok = ch.basic_recover(requeue=True)
    assert wait_for(conn, lambda: len(got) == 4)
    again = got[2:]
    assert sorted(b for _, b in again) == [b"m0", b"m1"]
    assert all(m.redelivered for m, _ in again)
    ch.basic_ack(0, multiple=True)


def test_basic_recover_requeue_false_not_implemented(conn):
    ch = conn.channel()
    with pytest.raises(exc.ConnectionClosedByBroker) as ei:
        ch.basic_recover(requeue=False)
    # RabbitMQ 3.10: basic.recover(requeue=false) is a connection error 540.
    assert ei.value.reply_code == 540
    assert ei.value.reply_text == "NOT_IMPLEMENTED - requeue=false"


def test_nacked_message_goes_to_other_consumer_redelivered(conn, connect, cleanup):
    ch = conn.channel()
    q = ch.queue_declare(cleanup.queue(unique("nk"))).method.queue
    first = []
    tag = ch.basic_consume(q, lambda c, m, p, b: first.append(m))
    ch.basic_publish("", q, b"hot-potato")
    assert wait_for(conn, lambda: first)
    ch.basic_cancel(tag)  # cancelling does not requeue unacked deliveries
    other = connect()
    och = other.channel()
    second = []
    och.basic_consume(q, lambda c, m, p, b: second.append((m, b)), auto_ack=True)
    ch.basic_nack(first[0].delivery_tag, requeue=True)
    assert wait_for(other, lambda: second)
    m, b = second[0]
    assert b == b"hot-potato" and m.redelivered is True

"""exchange.declare / delete / bind / unbind semantics and error codes."""

import pika
import pika.exceptions as exc
import pytest

from conftest import get_all, unique, wait_for


def closed(ei, code, text):
    assert ei.value.reply_code == code, (ei.value.reply_code, ei.value.reply_text)
    assert ei.value.reply_text == text


@pytest.mark.parametrize("xtype", ["direct", "fanout", "topic", "headers"])
def test_declare_all_types(channel, cleanup, xtype):
    x = cleanup.exchange(unique(xtype))
    ok = channel.exchange_declare(x, exchange_type=xtype)
    assert isinstance(ok.method, pika.spec.Exchange.DeclareOk)
    # redeclare identical is fine, passive is fine
    channel.exchange_declare(x, exchange_type=xtype)
    assert isinstance(channel.exchange_declare(x, passive=True).method, pika.spec.Exchange.DeclareOk)
    # passive ignores type
    other = "fanout" if xtype != "fanout" else "direct"
    channel.exchange_declare(x, exchange_type=other, passive=True)


def test_declare_durable_autodelete_internal_variants(channel, cleanup):
    for kw in (dict(durable=True), dict(auto_delete=True), dict(internal=True), dict(durable=True, internal=True)):
        x = cleanup.exchange(unique("xv"))
        channel.exchange_declare(x, exchange_type="direct", **kw)
        channel.exchange_declare(x, exchange_type="direct", **kw)
        channel.exchange_declare(x, passive=True)


@pytest.mark.parametrize("xname", ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"])
def test_predeclared_exchanges_exist(channel, xname):
    channel.exchange_declare(xname, passive=True)


def test_predeclared_redeclare_equivalent_ok(channel):
    channel.exchange_declare("amq.direct", exchange_type="direct", durable=True)
    channel.exchange_declare("amq.topic", exchange_type="topic", durable=True)


def test_passive_missing_404(channel, broker):
    x = unique("nox")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.exchange_declare(x, passive=True)
    closed(ei, 404, f"NOT_FOUND - no exchange '{x}' in vhost '{broker.vhost}'")


def test_redeclare_type_mismatch_406(conn, cleanup, broker):
    x = cleanup.exchange(unique("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_declare(x, exchange_type="fanout")
    closed(
        ei,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '{broker.vhost}': "
        "received 'fanout' but current is 'direct'",
    )


def test_redeclare_durable_mismatch_406(conn, cleanup, broker):
    x = cleanup.exchange(unique("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_declare(x, exchange_type="direct", durable=True)
    closed(
        ei,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{x}' in vhost '{broker.vhost}': "
        "received 'true' but current is 'false'",
    )


def test_redeclare_predeclared_with_wrong_durable_406(channel, broker):
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.exchange_declare("amq.direct", exchange_type="direct", durable=False)
    closed(
        ei,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '{broker.vhost}': "
        "received 'false' but current is 'true'",
    )


def test_amq_prefix_declare_403(channel):
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.exchange_declare("amq.pytest-" + unique(), exchange_type="direct")
    assert ei.value.reply_code == 403
    assert ei.value.reply_text.startswith("ACCESS_REFUSED - exchange name 'amq.pytest-")
    assert ei.value.reply_text.endswith("' contains reserved prefix 'amq.*'")


def test_amq_prefix_passive_missing_is_404(channel, broker):
    x = "amq.pytest-" + unique()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.exchange_declare(x, passive=True)
    # RabbitMQ 3.10: passive declare of a missing amq.* exchange is 404, not 403.
    closed(ei, 404, f"NOT_FOUND - no exchange '{x}' in vhost '{broker.vhost}'")


def test_default_exchange_operations_403(conn):
    text = "ACCESS_REFUSED - operation not permitted on the default exchange"
    for op in (
        lambda ch: ch.exchange_declare("", exchange_type="direct"),
        lambda ch: ch.exchange_declare("", passive=True),  # RabbitMQ 3.10: even passive is refused
        lambda ch: ch.exchange_delete(""),
    ):
        ch = conn.channel()
        with pytest.raises(exc.ChannelClosedByBroker) as ei:
            op(ch)
        closed(ei, 403, text)


def test_delete_system_exchange_403(channel, broker):
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.exchange_delete("amq.direct")
    closed(ei, 403, f"ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '{broker.vhost}' not allowed")


def test_delete_missing_exchange_is_ok(channel):
    # RabbitMQ 3.10: exchange.delete of a non-existent exchange succeeds (idempotent), no 404.
    ok = channel.exchange_delete(unique("nox"))
    assert isinstance(ok.method, pika.spec.Exchange.DeleteOk)
    assert channel.is_open


def test_delete_if_unused_406_then_ok(conn, cleanup, broker):
    ch = conn.channel()
    x = cleanup.exchange(unique("x"))
    ch.exchange_declare(x, exchange_type="fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_delete(x, if_unused=True)
    closed(ei, 406, f"PRECONDITION_FAILED - exchange '{x}' in vhost '{broker.vhost}' in use")
    ch = conn.channel()
    ch.exchange_declare(x, passive=True)  # still there
    ch.queue_unbind(q, x)
    ch.exchange_delete(x, if_unused=True)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_declare(x, passive=True)
    assert ei.value.reply_code == 404


def test_delete_if_unused_counts_e2e_binding_as_source(conn, cleanup):
    ch = conn.channel()
    src = cleanup.exchange(unique("src"))
    dst = cleanup.exchange(unique("dst"))
    ch.exchange_declare(src, exchange_type="fanout")
    ch.exchange_declare(dst, exchange_type="fanout")
    ch.exchange_bind(destination=dst, source=src)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_delete(src, if_unused=True)
    assert ei.value.reply_code == 406


def test_delete_removes_bindings(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("x"))
    ch.exchange_declare(x, exchange_type="fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x)
    ch.exchange_delete(x)
    ch.exchange_declare(x, exchange_type="fanout")
    ch.basic_publish(x, "", b"after-recreate")
    assert get_all(ch, q) == []


def test_auto_delete_exchange_removed_after_last_unbind(conn, cleanup, broker):
    ch = conn.channel()
    x = cleanup.exchange(unique("adx"))
    ch.exchange_declare(x, exchange_type="fanout", auto_delete=True)
    # Not deleted while it never had a binding.
    ch.exchange_declare(x, passive=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x)
    ch.queue_unbind(q, x)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_declare(x, passive=True)
    closed(ei, 404, f"NOT_FOUND - no exchange '{x}' in vhost '{broker.vhost}'")


def test_auto_delete_exchange_removed_when_bound_queue_deleted(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("adx"))
    ch.exchange_declare(x, exchange_type="fanout", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x)
    ch.queue_delete(q)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_declare(x, passive=True)
    assert ei.value.reply_code == 404


def test_exchange_to_exchange_binding_routes(conn, cleanup):
    ch = conn.channel()
    src = cleanup.exchange(unique("src"))
    dst = cleanup.exchange(unique("dst"))
    ch.exchange_declare(src, exchange_type="topic")
    ch.exchange_declare(dst, exchange_type="direct")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, dst, routing_key="k.one")
    ok = ch.exchange_bind(destination=dst, source=src, routing_key="k.*")
    assert isinstance(ok.method, pika.spec.Exchange.BindOk)
    ch.basic_publish(src, "k.one", b"1")  # src matches k.*, dst matches k.one
    ch.basic_publish(src, "k.two", b"2")  # src matches, dst does not
    ch.basic_publish(src, "x.one", b"3")  # src does not match
    assert get_all(ch, q) == [b"1"]
    ok = ch.exchange_unbind(destination=dst, source=src, routing_key="k.*")
    assert isinstance(ok.method, pika.spec.Exchange.UnbindOk)
    ch.basic_publish(src, "k.one", b"4")
    assert get_all(ch, q) == []


def test_exchange_binding_chain_and_cycle_delivers_once(conn, cleanup):
    ch = conn.channel()
    a = cleanup.exchange(unique("a"))
    b = cleanup.exchange(unique("b"))
    ch.exchange_declare(a, exchange_type="fanout")
    ch.exchange_declare(b, exchange_type="fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.exchange_bind(destination=b, source=a)
    ch.exchange_bind(destination=a, source=b)  # cycle
    ch.queue_bind(q, a)
    ch.queue_bind(q, b)
    ch.basic_publish(a, "", b"once")
    # Each queue gets at most one copy even with cycles / multiple paths.
    assert get_all(ch, q) == [b"once"]


def test_exchange_bind_missing_404(conn, broker):
    ch = conn.channel()
    missing = unique("nox")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_bind(destination=missing, source="amq.direct", routing_key="k")
    closed(ei, 404, f"NOT_FOUND - no exchange '{missing}' in vhost '{broker.vhost}'")
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.exchange_bind(destination="amq.direct", source=missing, routing_key="k")
    closed(ei, 404, f"NOT_FOUND - no exchange '{missing}' in vhost '{broker.vhost}'")


def test_exchange_unbind_missing_is_ok(channel):
    # RabbitMQ 3.10: unbinding a non-existent exchange binding is a no-op (no 404).
    channel.exchange_unbind(destination="amq.direct", source=unique("nox"), routing_key="k")
    channel.exchange_unbind(destination="amq.fanout", source="amq.direct", routing_key="not-bound")
    assert channel.is_open


def test_alternate_exchange(conn, cleanup):
    ch = conn.channel()
    ae = cleanup.exchange(unique("ae"))
    x = cleanup.exchange(unique("x"))
    ch.exchange_declare(ae, exchange_type="fanout")
    ch.exchange_declare(x, exchange_type="direct", arguments={"alternate-exchange": ae})
    q_main = ch.queue_declare("", exclusive=True).method.queue
    q_alt = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q_main, x, routing_key="known")
    ch.queue_bind(q_alt, ae)
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    ch.basic_publish(x, "known", b"routed")
    ch.basic_publish(x, "unknown", b"unrouted", mandatory=True)
    conn.process_data_events(time_limit=0.2)
    assert get_all(ch, q_main) == [b"routed"]
    m, p, b = ch.basic_get(q_alt, auto_ack=True)
    assert b == b"unrouted"
    assert m.exchange == x  # original exchange and key are preserved
    assert m.routing_key == "unknown"
    assert returned == []  # routed via AE -> no basic.return even with mandatory


def test_alternate_exchange_missing_drops_or_returns(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("x"))
    ch.exchange_declare(x, exchange_type="direct", arguments={"alternate-exchange": unique("ae-missing")})
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, b)))
    ch.basic_publish(x, "nowhere", b"r", mandatory=True)
    assert wait_for(conn, lambda: returned, timeout=3)
    assert returned[0][0].reply_code == 312


def test_alternate_exchange_bad_type_406(channel, broker):
    x = unique("x")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        channel.exchange_declare(x, exchange_type="fanout", arguments={"alternate-exchange": 5})
    closed(
        ei,
        406,
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange '{x}' in vhost '{broker.vhost}'",
    )


def test_internal_exchange_publish_403(conn, cleanup, broker):
    ch = conn.channel()
    x = cleanup.exchange(unique("int"))
    ch.exchange_declare(x, exchange_type="fanout", internal=True)
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_publish(x, "", b"nope")
        ch.basic_qos(prefetch_count=0)  # force a round trip to observe the async close
    closed(ei, 403, f"ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '{broker.vhost}'")


def test_internal_exchange_reachable_via_e2e(conn, cleanup):
    ch = conn.channel()
    front = cleanup.exchange(unique("front"))
    internal = cleanup.exchange(unique("int"))
    ch.exchange_declare(front, exchange_type="fanout")
    ch.exchange_declare(internal, exchange_type="fanout", internal=True)
    ch.exchange_bind(destination=internal, source=front)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, internal)
    ch.basic_publish(front, "", b"via-front")
    assert get_all(ch, q) == [b"via-front"]


def test_publish_to_missing_exchange_404(conn, broker):
    ch = conn.channel()
    x = unique("nox")
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_publish(x, "k", b"x")
        ch.basic_qos(prefetch_count=0)
    closed(ei, 404, f"NOT_FOUND - no exchange '{x}' in vhost '{broker.vhost}'")
    assert conn.is_open

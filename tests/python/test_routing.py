"""Routing semantics of the built-in exchange types."""

import pika
import pytest

from conftest import get_all, unique

# Ground truth captured from RabbitMQ 3.10.8. Keys are routing keys published; values are the
# set of keys each binding pattern receives.
TOPIC_KEYS = ["", "a", "a.b", "a.x.b", "a.x.y.b", "a..b", "b", "a.b.c", ".", "x.a.b", "a.", "..", "b.a", "a.b.b"]
ALL = set(TOPIC_KEYS)
TOPIC_TABLE = {
    "#": ALL,
    "#.#": ALL,
    # RabbitMQ 3.10: "" is zero words, so "*" (exactly one word) does not match the empty key,
    # and neither does "*.#" / "#.*"; "." is two empty words and does match "*.*".
    "*": {"a", "b"},
    "*.#": ALL - {""},
    "#.*": ALL - {""},
    "": {""},
    "a.#.b": {"a.b", "a.x.b", "a.x.y.b", "a..b", "a.b.b"},
    "a.#.#.b": {"a.b", "a.x.b", "a.x.y.b", "a..b", "a.b.b"},
    "a.*": {"a.b", "a."},
    "a.#": {"a", "a.b", "a.x.b", "a.x.y.b", "a..b", "a.b.c", "a.", "a.b.b"},
    "a..b": {"a..b"},
    "a.*.b": {"a.x.b", "a..b", "a.b.b"},
    "#.b": {"a.b", "a.x.b", "a.x.y.b", "a..b", "b", "x.a.b", "a.b.b"},
    "a.b": {"a.b"},
    "*.*": {"a.b", ".", "a.", "b.a"},
    "*.*.*": {"a.x.b", "a..b", "a.b.c", "x.a.b", "..", "a.b.b"},
    "#.a.#": {"a", "a.b", "a.x.b", "a.x.y.b", "a..b", "a.b.c", "x.a.b", "a.", "b.a", "a.b.b"},
}


def bodies(ch, q):
    return [b.decode() for b in get_all(ch, q)]


def test_topic_matrix(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("topic"))
    ch.exchange_declare(x, exchange_type="topic")
    queues = {}
    for pattern in TOPIC_TABLE:
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, x, routing_key=pattern)
        queues[pattern] = q
    for key in TOPIC_KEYS:
        ch.basic_publish(x, key, key.encode())
    mismatches = {}
    for pattern, q in queues.items():
        got = bodies(ch, q)
        assert len(got) == len(set(got)), f"duplicate delivery for pattern {pattern!r}: {got}"
        if set(got) != TOPIC_TABLE[pattern]:
            mismatches[pattern] = (sorted(got), sorted(TOPIC_TABLE[pattern]))
        # order of publication preserved per queue
        assert got == [k for k in TOPIC_KEYS if k in set(got)]
    assert mismatches == {}


def test_topic_overlapping_bindings_deliver_once(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("topic"))
    ch.exchange_declare(x, exchange_type="topic")
    q = ch.queue_declare("", exclusive=True).method.queue
    for pattern in ("a.*", "a.#", "#", "*.b", "a.b"):
        ch.queue_bind(q, x, routing_key=pattern)
    ch.basic_publish(x, "a.b", b"once")
    assert get_all(ch, q) == [b"once"]


def test_topic_unbind_one_of_many(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("topic"))
    ch.exchange_declare(x, exchange_type="topic")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="a.*")
    ch.queue_bind(q, x, routing_key="*.b")
    ch.queue_unbind(q, x, routing_key="a.*")
    ch.basic_publish(x, "a.c", b"no")
    ch.basic_publish(x, "c.b", b"yes")
    assert get_all(ch, q) == [b"yes"]


def test_amq_topic_predeclared_routes(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, "amq.topic", routing_key=q + ".#")
    channel.basic_publish("amq.topic", q + ".x.y", b"t")
    assert get_all(channel, q) == [b"t"]


HEADER_BINDINGS = {
    "all_ab": {"x-match": "all", "a": 1, "b": "two"},
    "any_ab": {"x-match": "any", "a": 1, "b": "two"},
    "default_ab": {"a": 1, "b": "two"},  # x-match defaults to all
    "all_empty": {"x-match": "all"},
    "any_empty": {"x-match": "any"},
    "noargs": {},
    "all_with_xfoo": {"x-match": "all", "x-foo": "bar", "a": 1},
    "any_xfoo_only": {"x-match": "any", "x-foo": "bar"},
    "allwx": {"x-match": "all-with-x", "x-foo": "bar", "a": 1},
    "anywx": {"x-match": "any-with-x", "x-foo": "bar"},
    "void": {"x-match": "all", "a": None},
    "str1": {"x-match": "all", "a": "1"},
    "bool": {"x-match": "all", "flag": True},
}
HEADER_MESSAGES = {
    "none": None,
    "empty": {},
    "a1": {"a": 1},
    "a1b2": {"a": 1, "b": "two"},
    "a1b2c": {"a": 1, "b": "two", "c": 3},
    "a2b2": {"a": 2, "b": "two"},
    "astr1": {"a": "1"},
    "xfoo": {"x-foo": "bar"},
    "xfoo_a1": {"x-foo": "bar", "a": 1},
    "xfoo_other_a1": {"x-foo": "baz", "a": 1},
    "flag": {"flag": True},
    "flag_int": {"flag": 1},
    "a_none": {"a": None},
    "a_long": {"a": 2 ** 40},
}
EVERY = list(HEADER_MESSAGES)
HEADER_EXPECTED = {
    "all_ab": ["a1b2", "a1b2c"],
    "any_ab": ["a1", "a1b2", "a1b2c", "a2b2", "xfoo_a1", "xfoo_other_a1"],
    "default_ab": ["a1b2", "a1b2c"],
    # RabbitMQ 3.10: x-match=all with no other args matches every message (even with no headers);
    # x-match=any with no other args matches nothing.
    "all_empty": EVERY,
    "any_empty": [],
    "noargs": EVERY,
    # RabbitMQ 3.10: with all/any, binding args starting with "x-" are ignored for matching.
    "all_with_xfoo": ["a1", "a1b2", "a1b2c", "xfoo_a1", "xfoo_other_a1"],
    "any_xfoo_only": [],
    # all-with-x / any-with-x do consider x- args.
    "allwx": ["xfoo_a1"],
    "anywx": ["xfoo", "xfoo_a1"],
    # RabbitMQ 3.10: a void (None) binding value matches on presence of the header, any value.
    "void": ["a1", "a1b2", "a1b2c", "a2b2", "astr1", "xfoo_a1", "xfoo_other_a1", "a_none", "a_long"],
    # values compare with type: int 1 != "1", bool True != int 1
    "str1": ["astr1"],
    "bool": ["flag"],
}


def test_headers_exchange_matrix(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("hdr"))
    ch.exchange_declare(x, exchange_type="headers")
    queues = {}
    for name, args in HEADER_BINDINGS.items():
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, x, routing_key="ignored", arguments=args)
        queues[name] = q
    for name, headers in HEADER_MESSAGES.items():
        ch.basic_publish(x, "whatever", name.encode(), pika.BasicProperties(headers=headers))
    results = {name: bodies(ch, q) for name, q in queues.items()}
    assert results == HEADER_EXPECTED


def test_headers_invalid_x_match_406(conn, broker):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        ch.queue_bind(q, "amq.headers", arguments={"x-match": "bogus"})
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == (
        'PRECONDITION_FAILED - Invalid x-match field value <<"bogus">>; expected all, any, all-with-x, or any-with-x'
    )


def test_headers_unbind_needs_same_arguments(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("hdr"))
    ch.exchange_declare(x, exchange_type="headers")
    q = ch.queue_declare("", exclusive=True).method.queue
    args = {"x-match": "any", "k": "v"}
    ch.queue_bind(q, x, arguments=args)
    ch.queue_unbind(q, x, arguments={"x-match": "any", "k": "other"})  # different binding: no-op
    ch.basic_publish(x, "", b"1", pika.BasicProperties(headers={"k": "v"}))
    ch.queue_unbind(q, x, arguments=args)
    ch.basic_publish(x, "", b"2", pika.BasicProperties(headers={"k": "v"}))
    assert get_all(ch, q) == [b"1"]


def test_fanout_ignores_routing_key(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("fan"))
    ch.exchange_declare(x, exchange_type="fanout")
    qs = [ch.queue_declare("", exclusive=True).method.queue for _ in range(3)]
    ch.queue_bind(qs[0], x, routing_key="")
    ch.queue_bind(qs[1], x, routing_key="some.key")
    ch.queue_bind(qs[2], x, routing_key="other")
    ch.basic_publish(x, "anything", b"f1")
    ch.basic_publish(x, "", b"f2")
    for q in qs:
        assert get_all(ch, q) == [b"f1", b"f2"]


def test_fanout_bound_twice_delivers_once(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("fan"))
    ch.exchange_declare(x, exchange_type="fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="k1")
    ch.queue_bind(q, x, routing_key="k2")
    ch.basic_publish(x, "", b"one")
    assert get_all(ch, q) == [b"one"]


def test_direct_multiple_bindings(conn, cleanup):
    ch = conn.channel()
    x = cleanup.exchange(unique("dir"))
    ch.exchange_declare(x, exchange_type="direct")
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q1, x, routing_key="red")
    ch.queue_bind(q1, x, routing_key="green")
    ch.queue_bind(q2, x, routing_key="green")
    ch.queue_bind(q2, x, routing_key="green")  # duplicate bind is idempotent
    ch.queue_bind(q2, x, routing_key="")
    for key in ("red", "green", "blue", "", "Red"):
        ch.basic_publish(x, key, key.encode() or b"<empty>")
    assert get_all(ch, q1) == [b"red", b"green"]
    assert get_all(ch, q2) == [b"green", b"<empty>"]


def test_default_exchange_routes_by_queue_name(channel, cleanup):
    q = cleanup.queue(unique("dflt"))
    channel.queue_declare(q)
    channel.basic_publish("", q, b"direct-to-queue")
    channel.basic_publish("amq.direct", q, b"not-bound")
    assert get_all(channel, q) == [b"direct-to-queue"]


def test_default_exchange_routing_key_is_exact(channel):
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", q.upper(), b"case")
    channel.basic_publish("", q + " ", b"space")
    channel.basic_publish("", q, b"exact")
    assert get_all(channel, q) == [b"exact"]

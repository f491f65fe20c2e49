"""RabbitMQ direct reply-to (amq.rabbitmq.reply-to) pseudo-queue."""

import pika
import pika.exceptions as exc
import pytest

from conftest import unique, wait_for

REPLY_TO = "amq.rabbitmq.reply-to"


def test_rpc_round_trip(conn, connect, cleanup):
    # server side on its own connection
    server_conn = connect()
    sch = server_conn.channel()
    rpc_q = cleanup.queue(unique("rpc"))
    sch.queue_declare(rpc_q, auto_delete=True)
    seen_reply_to = []

    def on_request(ch, method, props, body):
        seen_reply_to.append(props.reply_to)
        ch.basic_publish(
            "", props.reply_to, body.upper(), pika.BasicProperties(correlation_id=props.correlation_id)
        )

    sch.basic_consume(rpc_q, on_request, auto_ack=True)

    # client side
    cch = conn.channel()
    replies = []
    cch.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append((m, p, b)), auto_ack=True)
    cch.basic_publish("", rpc_q, b"ping", pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-1"))

    def done():
        server_conn.process_data_events(time_limit=0.02)
        return bool(replies)

    assert wait_for(conn, done, timeout=5)
    m, p, b = replies[0]
    assert b == b"PING"
    assert p.correlation_id == "c-1"
    # The broker rewrites reply_to into a routable per-channel name.
    assert seen_reply_to[0].startswith(REPLY_TO + ".")
    assert seen_reply_to[0] != REPLY_TO
    assert m.routing_key == seen_reply_to[0]


def test_reply_to_consumer_must_be_auto_ack_406(conn):
    ch = conn.channel()
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_publish_with_reply_to_without_consumer_406(conn, cleanup):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(exc.ChannelClosedByBroker) as ei:
        ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=REPLY_TO))
        ch.basic_qos(prefetch_count=0)
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"


def test_reply_to_declare_passive_ok(conn):
    ch = conn.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ok = ch.queue_declare(REPLY_TO, passive=True)
    assert ok.method.queue == REPLY_TO
    assert ok.method.message_count == 0

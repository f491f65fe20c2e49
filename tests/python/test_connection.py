"""Connection-level behaviour as seen through pika's BlockingConnection."""

import socket
import time

import pika
import pika.exceptions as exc
import pytest

from conftest import unique, wait_for, wait_message_count


EXPECTED_CAPABILITIES = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
]


def test_server_properties_capabilities(conn):
    props = conn._impl.server_properties
    caps = props["capabilities"]
    for cap in EXPECTED_CAPABILITIES:
        assert caps.get(cap) is True, f"capability {cap} missing or not true: {caps!r}"


def test_server_properties_product_and_version(conn):
    props = conn._impl.server_properties
    for key in ("product", "version", "platform", "copyright", "information"):
        assert key in props, f"server_properties lacks {key!r}: {props!r}"
    # pika decodes longstr table values to str where they are valid UTF-8.
    product = props["product"]
    version = props["version"]
    assert isinstance(product, (str, bytes)) and len(product) > 0
    assert isinstance(version, (str, bytes)) and len(version) > 0


def test_default_tune_values(broker):
    """RabbitMQ 3.10 proposes channel_max=2047, frame_max=131072, heartbeat=60."""
    seen = {}

    def hb(_conn, server_value):
        seen["heartbeat"] = server_value
        return server_value

    c = pika.BlockingConnection(broker.params(heartbeat=hb))
    try:
        assert seen["heartbeat"] == 60  # RabbitMQ 3.10: default heartbeat proposal is 60 s
        assert c._impl.params.heartbeat == 60
        # pika proposes frame_max=131072 and channel_max=65535; negotiated = min.
        assert c._impl.params.frame_max == 131072
        assert c._impl.params.channel_max == 2047  # RabbitMQ 3.10: channel_max default 2047
    finally:
        c.close()


def test_wrong_password_is_auth_error(broker):
    params = broker.params(credentials=pika.PlainCredentials(broker.username, "definitely-wrong"))
    with pytest.raises((exc.ProbableAuthenticationError, exc.AuthenticationError)) as ei:
        pika.BlockingConnection(params)
    # RabbitMQ 3.10: with authentication_failure_close the broker sends connection.close
    # 403 before closing; pika surfaces it as ProbableAuthenticationError with the text.
    msg = str(ei.value)
    assert "403" in msg
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in msg


def test_unknown_user_is_auth_error(broker):
    params = broker.params(credentials=pika.PlainCredentials("no-such-user-" + unique(), "x"))
    with pytest.raises((exc.ProbableAuthenticationError, exc.AuthenticationError)) as ei:
        pika.BlockingConnection(params)
    assert "ACCESS_REFUSED" in str(ei.value)


def test_unknown_vhost_closed_530(broker):
    vhost = "no-such-vhost-" + unique()
    with pytest.raises(exc.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(broker.params(virtual_host=vhost))
    msg = str(ei.value)
    # RabbitMQ 3.10: connection.open to a missing vhost -> connection.close 530.
    assert "530" in msg
    assert f"NOT_ALLOWED - vhost {vhost} not found" in msg


def test_heartbeat_negotiation_keeps_idle_connection_open(broker):
    c = pika.BlockingConnection(broker.params(heartbeat=2))
    try:
        assert c._impl.params.heartbeat == 2
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            c.process_data_events(time_limit=0.5)
        assert c.is_open
        checker = c._impl._heartbeat_checker
        assert checker is not None
        # The broker must have sent heartbeat frames during the idle period.
        assert checker._heartbeat_frames_received >= 1
        ch = c.channel()
        ok = ch.queue_declare("", exclusive=True)
        assert ok.method.queue.startswith("amq.gen-")
    finally:
        if c.is_open:
            c.close()


def test_heartbeat_disabled(broker):
    c = pika.BlockingConnection(broker.params(heartbeat=0))
    try:
        assert c._impl.params.heartbeat == 0
        c.process_data_events(time_limit=0.2)
        assert c.is_open
    finally:
        c.close()


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_attempts_exhausted_on_dead_port(broker):
    params = broker.params(port=_closed_port(), connection_attempts=2, retry_delay=0.1, socket_timeout=1)
    start = time.monotonic()
    with pytest.raises(exc.AMQPConnectionError):
        pika.BlockingConnection(params)
    assert time.monotonic() - start < 10


def test_connection_attempts_succeeds(broker):
    c = pika.BlockingConnection(broker.params(connection_attempts=3, retry_delay=0.1))
    assert c.is_open
    c.close()
    assert c.is_closed


def test_frame_max_4096_large_body_intact(broker, name):
    c = pika.BlockingConnection(broker.params(frame_max=4096))
    try:
        assert c._impl.params.frame_max == 4096
        ch = c.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        body = bytes((i * 7 + 3) % 256 for i in range(100 * 1024))
        ch.basic_publish("", q, body, pika.BasicProperties(message_id="big"))
        # Consume (deliver path) and get (get-ok path) both must reassemble the frames.
        got = []
        ch.basic_consume(q, lambda _c, m, p, b: got.append(b), auto_ack=True)
        assert wait_for(c, lambda: got, timeout=5)
        assert got[0] == body
        ch.basic_publish("", q, body)
        ch2 = c.channel()
        ch.close()
        ch2.basic_publish("", q, body)
        m, p, b = ch2.basic_get(q, auto_ack=True)
        assert m is not None and b == body
    finally:
        c.close()


def test_frame_max_below_minimum_is_rejected_client_side(broker):
    # pika refuses frame_max below the AMQP minimum of 4096 before connecting.
    with pytest.raises(ValueError):
        broker.params(frame_max=1024)


def test_channel_max_negotiation(broker):
    c = pika.BlockingConnection(broker.params(channel_max=10))
    try:
        assert c._impl.params.channel_max == 10
        chans = [c.channel() for _ in range(10)]
        assert all(ch.is_open for ch in chans)
        with pytest.raises(exc.NoFreeChannels):
            c.channel()
        chans[3].close()
        again = c.channel()
        assert again.is_open
    finally:
        c.close()


def test_blocked_callbacks_registration_harmless(broker):
    events = []
    c = pika.BlockingConnection(broker.params(blocked_connection_timeout=5))
    try:
        c.add_on_connection_blocked_callback(lambda *a: events.append("blocked"))
        c.add_on_connection_unblocked_callback(lambda *a: events.append("unblocked"))
        ch = c.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        for i in range(20):
            ch.basic_publish("", q, b"m%d" % i)
        c.process_data_events(time_limit=0.1)
        assert wait_message_count(ch, q, 20) == 20
        assert events == []
    finally:
        c.close()


def test_client_close_is_clean(broker):
    c = broker.connect()
    ch = c.channel()
    ch.queue_declare("", exclusive=True)
    c.close()
    assert c.is_closed
    assert ch.is_closed
    with pytest.raises(exc.ConnectionWrongStateError):
        c.channel()


def test_client_properties_connection_name_accepted(broker):
    c = pika.BlockingConnection(
        broker.params(client_properties={"connection_name": "pytest-" + unique(), "product": "pytest"})
    )
    assert c.is_open
    c.close()


def test_many_connections(broker):
    conns = [broker.connect() for _ in range(10)]
    try:
        for c in conns:
            ch = c.channel()
            assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
    finally:
        for c in conns:
            c.close()


def test_connection_error_closes_everything(conn):
    ch1 = conn.channel()
    ch2 = conn.channel()
    with pytest.raises(exc.ConnectionClosedByBroker) as ei:
        ch1.exchange_declare(unique("x"), exchange_type="no-such-type")
    # RabbitMQ 3.10: unknown exchange type is a *connection* error 503, not a channel error.
    assert ei.value.reply_code == 503
    assert ei.value.reply_text == "COMMAND_INVALID - unknown exchange type 'no-such-type'"
    assert conn.is_closed
    assert ch2.is_closed

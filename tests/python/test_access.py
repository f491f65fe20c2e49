"""Users and permissions with pika (the second client library; lapin's are in
crates/warren/tests/connection/access.rs). Each assertion is what RabbitMQ 3.10.8 answered;
the suite passes against it too (WARREN_URL, rabbitmqctl on the default node)."""

import uuid

import pika
import pytest


@pytest.fixture
def user(broker):
    name = f"pika-{uuid.uuid4().hex[:10]}"
    broker.ctl("add_user", name, "pw")
    yield name
    broker.ctl("delete_user", name, check=False)


def login(broker, name, password="pw"):
    return pika.BlockingConnection(
        broker.params(credentials=pika.PlainCredentials(name, password))
    )


def test_no_permissions_on_the_vhost_refuses_connection_open(broker, user):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        login(broker, user)
    assert f"NOT_ALLOWED - access to vhost '/' refused for user '{user}'" in str(e.value)


def test_wrong_password_is_refused(broker, user):
    broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        login(broker, user, "wrong")
    login(broker, user).close()


def refused(user, kind, name):
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user '{user}'"


def test_each_method_needs_its_permission(broker, user):
    prefix = f"acl-{uuid.uuid4().hex[:8]}"
    mine, other = f"{prefix}-mine", f"{prefix}-other"
    admin = broker.connect()
    ach = admin.channel()
    ach.queue_declare(f"{other}-q")
    ach.exchange_declare(f"{other}-x", "fanout")
    ach.exchange_declare(f"{mine}-x", "fanout")
    broker.ctl("set_permissions", "-p", "/", user, f"^{mine}", f"^{mine}", f"^{mine}")
    conn = login(broker, user)

    def attempt(op):
        ch = conn.channel()
        try:
            op(ch)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 403
            return e.reply_text
        ch.close()
        return None

    def publish(exchange):
        def op(ch):
            ch.confirm_delivery()
            ch.basic_publish(exchange, "k", b"m")
        return op

    assert attempt(publish("")) == refused(user, "exchange", "amq.default")
    assert attempt(publish(f"{other}-x")) == refused(user, "exchange", f"{other}-x")
    assert attempt(publish(f"{mine}-x")) is None
    assert attempt(lambda ch: ch.queue_declare(f"{other}-q", passive=True)) is None
    assert attempt(lambda ch: ch.queue_declare(f"{mine}-q")) is None
    assert attempt(lambda ch: ch.queue_declare(f"{other}-q")) == refused(user, "queue", f"{other}-q")
    assert attempt(lambda ch: ch.queue_bind(f"{other}-q", f"{other}-x")) == refused(user, "queue", f"{other}-q")
    assert attempt(lambda ch: ch.queue_bind(f"{mine}-q", f"{other}-x")) == refused(user, "exchange", f"{other}-x")
    assert attempt(lambda ch: ch.basic_consume(f"{other}-q", lambda *a: None)) == refused(user, "queue", f"{other}-q")
    assert attempt(lambda ch: ch.basic_get(f"{other}-q")) == refused(user, "queue", f"{other}-q")
    assert attempt(lambda ch: ch.queue_purge(f"{other}-q")) == refused(user, "queue", f"{other}-q")
    assert attempt(lambda ch: ch.queue_delete(f"{other}-q")) == refused(user, "queue", f"{other}-q")
    assert attempt(lambda ch: ch.exchange_delete(f"{other}-x")) == refused(user, "exchange", f"{other}-x")
    conn.close()
    ach.queue_delete(f"{other}-q")
    ach.queue_delete(f"{mine}-q")
    ach.exchange_delete(f"{other}-x")
    ach.exchange_delete(f"{mine}-x")
    admin.close()


def test_deleting_a_user_closes_its_connections(broker, user):
    broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
    conn = login(broker, user)
    broker.ctl("delete_user", user)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.process_data_events(time_limit=5)
        conn.channel()
    assert e.value.reply_code == 320
    assert e.value.reply_text == f"CONNECTION_FORCED - user '{user}' is deleted"


def test_deleting_a_vhost_closes_its_connections(broker):
    name = f"pika-vh-{uuid.uuid4().hex[:8]}"
    broker.ctl("add_vhost", name)
    broker.ctl("set_permissions", "-p", name, broker.username, ".*", ".*", ".*")
    conn = pika.BlockingConnection(broker.params(virtual_host=name))
    conn.channel().queue_declare("q", durable=True)
    broker.ctl("delete_vhost", name)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.process_data_events(time_limit=5)
        conn.channel()
    assert e.value.reply_code == 320
    assert e.value.reply_text == f"CONNECTION_FORCED - vhost '{name}' is deleted"


def test_topic_permissions_and_dead_letter_exchange_checks(broker, user):
    """The same cases as the lapin suite, with pika: topic permissions on amq.topic (routing
    key on publish, binding key on bind), and a dead-letter exchange needing write on it."""
    prefix = f"acl-{uuid.uuid4().hex[:8]}"
    admin = broker.connect()
    ach = admin.channel()
    ach.exchange_declare(f"{prefix}-rx", "fanout")
    broker.ctl("set_permissions", "-p", "/", user, ".*", f"^(amq\\.topic|{prefix}-mine.*)", ".*")
    broker.ctl("set_topic_permissions", "-p", "/", user, "amq.topic", "^{username}\\.", "^r\\.")
    conn = login(broker, user)

    def attempt(op):
        ch = conn.channel()
        try:
            op(ch)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 403
            return e.reply_text
        ch.close()
        return None

    def publish(key):
        def op(ch):
            ch.confirm_delivery()
            ch.basic_publish("amq.topic", key, b"m")
        return op

    def topic_refused(key):
        return (f"ACCESS_REFUSED - access to topic '{key}' in exchange 'amq.topic' "
                f"in vhost '/' refused for user '{user}'")

    assert attempt(publish(f"{user}.x")) is None
    assert attempt(publish("bob.x")) == topic_refused("bob.x")
    q = f"{prefix}-mine-q"
    assert attempt(lambda ch: (ch.queue_declare(q), ch.queue_bind(q, "amq.topic", "r.1"))) is None
    assert attempt(lambda ch: ch.queue_bind(q, "amq.topic", "s.1")) == topic_refused("s.1")
    assert attempt(lambda ch: ch.queue_declare(
        f"{prefix}-mine-d", arguments={"x-dead-letter-exchange": f"{prefix}-rx"})) == refused(
        user, "exchange", f"{prefix}-rx")
    conn.close()
    broker.ctl("clear_topic_permissions", "-p", "/", user)
    ach.queue_delete(q)
    ach.exchange_delete(f"{prefix}-rx")
    admin.close()


def test_impersonator_tag_lifts_the_user_id_check(broker, user):
    """RabbitMQ: user_id must be the authenticated user (406), unless the user has the
    impersonator tag."""
    broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
    props = pika.BasicProperties(user_id="someone-else")
    conn = login(broker, user)
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_publish("amq.direct", "k", b"m", props)
    assert e.value.reply_code == 406
    assert "user_id property set to 'someone-else' but authenticated user was" in e.value.reply_text
    conn.close()
    broker.ctl("set_user_tags", user, "impersonator")
    conn = login(broker, user)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", "k", b"m", props)
    conn.close()

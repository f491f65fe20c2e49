"""The management HTTP API with a second independent client (requests): JSON shapes and
types that tools parse, error codes and bodies, tag rules, pagination, messages over HTTP,
connections, statistics, definitions.

Runs against a private Warren (its API on an ephemeral port, statistics every 0.5 s), or
against RabbitMQ when WARREN_URL and WARREN_MGMT_URL are set (the oracle: every assertion
here was checked against RabbitMQ 3.10.8 that way).
"""

import base64
import json
import os
import subprocess
import time
import uuid

import pika
import pytest
import requests

from conftest import _start_warren, stop_warren, warren_binary

ADMIN = ("guest", "guest")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


class Api:
    def __init__(self, base, amqp_host, amqp_port, external, process=None):
        self.base = base.rstrip("/") + "/api"
        self.amqp_host = amqp_host
        self.amqp_port = amqp_port
        self.external = external
        self.process = process
        # Statistics are sampled every 0.5 s on our Warren, every 5 s on RabbitMQ.
        self.stats_wait = 6.0 if external else 1.2

    def raw(self, method, path, auth=ADMIN, **kw):
        """A request whose path goes out byte for byte (requests would re-quote it)."""
        session = requests.Session()
        req = requests.Request(method, self.base + path, auth=auth, **kw).prepare()
        req.url = self.base + path
        return session.send(req, timeout=30)

    def get(self, path, auth=ADMIN, **kw):
        return self.raw("GET", path, auth=auth, **kw)

    def put(self, path, body=None, auth=ADMIN):
        return self.raw("PUT", path, auth=auth, json=body if body is not None else {})

    def post(self, path, body=None, auth=ADMIN, **kw):
        return self.raw("POST", path, auth=auth, json=body if body is not None else {}, **kw)

    def delete(self, path, auth=ADMIN, **kw):
        return self.raw("DELETE", path, auth=auth, **kw)

    def ok(self, method, path, body=None, auth=ADMIN):
        r = getattr(self, method)(path, body, auth=auth) if method in ("put", "post") else getattr(self, method)(path, auth=auth)
        assert r.status_code in (200, 201, 204), (method, path, r.status_code, r.text)
        return r.json() if r.status_code == 200 and r.content else None

    def ctl(self, *args, remote=False):
        """`warren ctl` over the control socket (or `--uri` over HTTP), `rabbitmqctl` or
        `rabbitmq-diagnostics` on RabbitMQ."""
        if self.external:
            node = os.environ.get("WARREN_TEST_RABBIT_NODE", "rabbit@localhost")
            tool = "rabbitmq-diagnostics" if args[0].startswith(("check_", "ping", "listeners")) else "rabbitmqctl"
            cmd = [tool, "-n", node, *args]
        elif remote:
            cmd = [warren_binary(), "ctl", "--uri", f"http://guest:guest@127.0.0.1:{self.process.http_port}", *args]
        else:
            cmd = [warren_binary(), "ctl", "--data-dir", self.process.data_dir, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def connect(self, vhost="/", user="guest", password="guest", **kw):
        params = pika.ConnectionParameters(
            host=self.amqp_host, port=self.amqp_port, virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password),
            socket_timeout=5, stack_timeout=10, connection_attempts=1, **kw)
        return pika.BlockingConnection(params)


@pytest.fixture(scope="module")
def api():
    mgmt = os.environ.get("WARREN_MGMT_URL")
    url = os.environ.get("WARREN_URL")
    if mgmt and url:
        p = pika.URLParameters(url)
        yield Api(mgmt, p.host, p.port, external=True)
        return
    if url:
        pytest.skip("WARREN_URL without WARREN_MGMT_URL: no management API to test")
    b, data_dir = _start_warren(extra_args=["--management-listen", "127.0.0.1:0", "--stats-interval", "500"])
    try:
        assert b.http_port, "Warren printed no HTTP listening line"
        yield Api(f"http://127.0.0.1:{b.http_port}", b.host, b.port, external=False, process=b)
    finally:
        stop_warren(b)


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def enc(s):
    """Percent-encodes every non-alphanumeric byte, as rabbitmq_http_client does."""
    return "".join(c if c.isalnum() else "%%%02X" % ord(c) for c in s)


# ----- authentication and identity -----

def test_requests_need_credentials(api):
    r = requests.get(api.base + "/overview", timeout=10)
    assert r.status_code == 401
    assert r.content == b""
    assert r.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'
    r = api.get("/overview", auth=("guest", "wrong"))
    assert r.status_code == 401
    assert r.json() == {"error": "not_authorized", "reason": "Login failed"}


def test_overview_and_nodes_report_what_tools_parse(api):
    o = api.ok("get", "/overview")
    major, minor = (int(x) for x in o["rabbitmq_version"].split(".")[:2])
    assert (major, minor) >= (3, 10)
    assert o["node"].startswith("rabbit@")
    assert set(o["object_totals"]) >= {"connections", "channels", "queues", "exchanges", "consumers"}
    assert isinstance(o["queue_totals"], dict) and isinstance(o["churn_rates"]["queue_created"], int)
    assert any(l["protocol"] == "amqp" and l["port"] == api.amqp_port for l in o["listeners"])
    for l in o["listeners"]:
        assert set(l) >= {"node", "protocol", "port", "ip_address"}
    nodes = api.ok("get", "/nodes")
    assert len(nodes) == 1
    n = nodes[0]
    assert n["name"] == o["node"]
    assert isinstance(n["os_pid"], str)  # RabbitMQ 3.10: a string
    assert isinstance(n["mem_limit"], int) and n["mem_limit"] > 0
    assert isinstance(n["mem_alarm"], bool) and isinstance(n["disk_free_alarm"], bool)
    assert isinstance(n["disk_free_limit"], int)
    # RabbitMQ 3.10 has no being_drained yet (rabbitmqadmin reads it when present).
    assert isinstance(n["enabled_plugins"], list) and n.get("being_drained", False) is False
    assert api.ok("get", "/nodes/" + enc(n["name"]))["name"] == n["name"]
    assert api.ok("get", "/whoami") == {"name": "guest", "tags": ["administrator"]}


def test_node_io_statistics_follow_confirmed_persistent_messages(api):
    """RabbitMQ's node `io_*` fields, each with a `_details` rate: counts, bytes, and the
    average time of one operation in milliseconds. RabbitMQ 3.10: that average is over
    every operation since the start (its io_read_avg_time was exactly
    rabbitmq_io_read_time_seconds_total over rabbitmq_io_read_ops_total), not over the last
    interval as its documentation says."""
    name = api.ok("get", "/nodes")[0]["name"]
    before = api.ok("get", "/nodes/" + enc(name))
    q = f"io-node-{uuid.uuid4().hex[:6]}"
    conn = api.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(q, durable=True)
    try:
        # 5000-byte bodies: RabbitMQ 3.10 writes them to its message store, which its io_*
        # fields count (smaller ones stay in the queue index).
        for _ in range(20):
            ch.basic_publish("", q, b"x" * 5000, pika.BasicProperties(delivery_mode=2), mandatory=True)
        # RabbitMQ 3.10 updates these once per statistics interval (5 s).
        deadline = time.monotonic() + 3 * api.stats_wait
        while True:
            time.sleep(0.2 if not api.external else 1.0)
            n = api.ok("get", "/nodes/" + enc(name))
            if n["io_write_bytes"] - before["io_write_bytes"] >= 100000 \
                    and n["io_sync_count"] > before["io_sync_count"] or time.monotonic() > deadline:
                break
        for field in ["io_read_count", "io_read_bytes", "io_write_count", "io_write_bytes", "io_sync_count",
                      "io_seek_count", "io_reopen_count"]:
            assert isinstance(n[field], int), field
        for field in ["io_read_avg_time", "io_write_avg_time", "io_sync_avg_time", "io_seek_avg_time"]:
            assert isinstance(n[field], (int, float)) and n[field] >= 0, field
        for field in ["io_read_count", "io_read_bytes", "io_read_avg_time", "io_write_count", "io_write_bytes",
                      "io_write_avg_time", "io_sync_count", "io_sync_avg_time", "io_seek_count",
                      "io_seek_avg_time", "io_reopen_count"]:
            assert isinstance(n[field + "_details"]["rate"], (int, float)), field
        assert n["io_write_count"] > before["io_write_count"]
        assert n["io_write_bytes"] - before["io_write_bytes"] >= 100000
        assert n["io_sync_count"] > before["io_sync_count"]
        assert n["io_sync_avg_time"] > 0
    finally:
        ch.queue_delete(q)
        conn.close()


def test_cluster_name_is_settable(api):
    before = api.ok("get", "/cluster-name")["name"]
    try:
        assert api.put("/cluster-name", {"name": "warren-test"}).status_code == 204
        assert api.ok("get", "/cluster-name") == {"name": "warren-test"}
        assert api.ok("get", "/overview")["cluster_name"] == "warren-test"
    finally:
        # Deleting the parameter restores the derived name.
        api.delete("/global-parameters/cluster_name")
    assert api.ok("get", "/cluster-name")["name"] == before


# ----- queues, exchanges, bindings -----

def test_queue_lifecycle_and_encoded_names(api):
    q = name("my-q.x_1")
    path = "/queues/%2F/" + enc(q)
    assert api.put(path, {"durable": True, "arguments": {"x-max-length": 10}}).status_code == 201
    got = api.ok("get", path)
    assert got["name"] == q and got["vhost"] == "/" and got["type"] == "classic"
    assert got["arguments"] == {"x-max-length": 10} and got["durable"] is True
    assert api.ok("get", "/queues/%2f/" + q)["name"] == q  # lower-case %2f too
    assert api.put(path, {"durable": True, "arguments": {"x-max-length": 10}}).status_code == 204
    r = api.put(path, {"durable": False, "arguments": {"x-max-length": 10}})
    assert r.status_code == 400
    assert r.json() == {"error": "bad_request", "reason": f"inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'"}
    assert api.delete(path).status_code == 204
    r = api.get(path)
    assert r.status_code == 404
    assert r.json() == {"error": "Object Not Found", "reason": "Not Found"}
    assert api.get("/nonexistent").status_code == 404


def test_exchanges_default_and_system_ones(api):
    x = name("x")
    r = api.put(f"/exchanges/%2F/{x}", {"type": "nope"})
    assert r.status_code == 400 and r.json()["reason"] == "unknown exchange type 'nope'"
    assert api.put(f"/exchanges/%2F/{x}", {"type": "topic", "durable": True}).status_code == 201
    got = api.ok("get", f"/exchanges/%2F/{x}")
    assert (got["type"], got["durable"], got["internal"], got["arguments"]) == ("topic", True, False, {})
    default = api.ok("get", "/exchanges/%2F/amq.default")
    assert default["name"] == "" and default["type"] == "direct"
    # RabbitMQ 3.10: system exchanges are refused with a 401, not a 403.
    r = api.delete("/exchanges/%2F/amq.direct")
    assert r.status_code == 401 and r.json() == {"error": "not_authorised", "reason": "Access refused."}
    assert api.get("/exchanges/%2F/amq.direct").status_code == 200
    assert api.delete(f"/exchanges/%2F/{x}").status_code == 204


def test_bindings_by_properties_key(api):
    x, q = name("bx"), name("bq")
    api.ok("put", f"/exchanges/%2F/{x}", {"type": "topic"})
    api.ok("put", f"/queues/%2F/{q}", {"durable": False})
    try:
        r = api.post(f"/bindings/%2F/e/{x}/q/{q}", {"routing_key": "a.#"})
        assert r.status_code == 201 and "location" in r.headers
        api.ok("post", f"/bindings/%2F/e/{x}/q/{q}", {"routing_key": "k", "arguments": {"x-foo": "bar"}})
        listed = api.ok("get", f"/bindings/%2F/e/{x}/q/{q}")
        keys = {b["routing_key"]: b["properties_key"] for b in listed}
        assert keys["a.#"] == "a.%23"
        assert keys["k"].startswith("k~")
        for b in listed:
            assert set(b) >= {"source", "vhost", "destination", "destination_type", "routing_key", "arguments", "properties_key"}
            assert b["destination_type"] == "queue"
        # The implicit default-exchange binding comes first in a queue's bindings.
        qb = api.ok("get", f"/queues/%2F/{q}/bindings")
        assert qb[0]["source"] == "" and qb[0]["properties_key"] == q and len(qb) == 3
        # The key arrives encoded once or twice; both name the binding.
        assert api.get(f"/bindings/%2F/e/{x}/q/{q}/a.%2523").status_code == 200
        assert api.get(f"/bindings/%2F/e/{x}/q/{q}/a.%23").status_code == 200
        assert api.delete(f"/bindings/%2F/e/{x}/q/{q}/{keys['k']}").status_code == 204
        assert [b["routing_key"] for b in api.ok("get", f"/bindings/%2F/e/{x}/q/{q}")] == ["a.#"]
    finally:
        api.delete(f"/exchanges/%2F/{x}")
        api.delete(f"/queues/%2F/{q}")


# ----- messages over HTTP -----

def publish(api, exchange, key, payload, properties=None, encoding="string"):
    return api.post(f"/exchanges/%2F/{exchange}/publish", {
        "properties": properties or {}, "routing_key": key,
        "payload": payload, "payload_encoding": encoding})


def test_publish_and_get_with_each_ack_mode(api):
    q, dlq = name("getq"), name("dlq")
    api.ok("put", f"/queues/%2F/{dlq}", {"durable": False})
    api.ok("put", f"/queues/%2F/{q}", {"durable": True, "arguments": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}})
    try:
        r = publish(api, "amq.default", q, "m1", {"delivery_mode": 2, "headers": {"h": 1}, "content_type": "text/plain"})
        assert r.status_code == 200 and r.json() == {"routed": True}
        assert publish(api, "amq.default", q, base64.b64encode(b"\xff\x00bin").decode(), encoding="base64").json() == {"routed": True}
        assert publish(api, "amq.default", name("nowhere"), "x").json() == {"routed": False}
        r = publish(api, "no-such-exchange", q, "x")
        assert r.status_code == 400
        assert r.json()["reason"] == "404 NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'"
        got = api.ok("post", f"/queues/%2F/{q}/get", {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"})
        assert [m["payload"] for m in got] == ["m1", "/wBiaW4="]
        assert [m["payload_encoding"] for m in got] == ["string", "base64"]
        first = got[0]
        assert first["properties"] == {"delivery_mode": 2, "headers": {"h": 1}, "content_type": "text/plain"}
        assert (first["message_count"], first["redelivered"], first["exchange"], first["routing_key"]) == (1, False, "", q)
        assert first["payload_bytes"] == 2
        again = api.ok("post", f"/queues/%2F/{q}/get", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "base64", "truncate": 1})
        assert again[0]["redelivered"] is True and again[0]["payload"] == "bQ==" and again[0]["payload_bytes"] == 2
        # reject without requeue dead-letters; ack without requeue removes.
        api.ok("post", f"/queues/%2F/{q}/get", {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"})
        api.ok("post", f"/queues/%2F/{q}/get", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
        assert api.ok("post", f"/queues/%2F/{q}/get", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}) == []
        dead = api.ok("post", f"/queues/%2F/{dlq}/get", {"count": 5, "ackmode": "ack_requeue_false", "encoding": "auto"})
        assert [m["payload"] for m in dead] == ["m1"]
        assert dead[0]["properties"]["headers"]["x-death"][0]["reason"] == "rejected"
    finally:
        api.delete(f"/queues/%2F/{q}")
        api.delete(f"/queues/%2F/{dlq}")


def test_http_publish_and_get_count_in_the_overview(api):
    """RabbitMQ publishes and gets over an internal channel, so they count like AMQP's."""
    q = name("httpcount")
    api.ok("put", f"/queues/%2F/{q}", {"durable": False})
    try:
        time.sleep(api.stats_wait)
        before = api.ok("get", "/overview")["message_stats"]
        for i in range(3):
            publish(api, "amq.default", q, f"m{i}")
        api.ok("post", f"/queues/%2F/{q}/get", {"count": 2, "ackmode": "ack_requeue_false", "encoding": "auto"})
        time.sleep(api.stats_wait)
        after = api.ok("get", "/overview")["message_stats"]
        assert after["publish"] - before.get("publish", 0) == 3
        assert after["get"] - before.get("get", 0) == 2
        # (Their rate is not asserted here: after the wait the window of three samples may
        # have moved past them. test_message_rates_move_with_traffic covers rates.)
    finally:
        api.delete(f"/queues/%2F/{q}")


def test_purge_empties_a_queue(api):
    q = name("purge")
    api.ok("put", f"/queues/%2F/{q}", {"durable": False})
    try:
        for i in range(3):
            publish(api, "amq.default", q, f"m{i}")
        assert api.delete(f"/queues/%2F/{q}/contents").status_code == 204
        assert api.ok("post", f"/queues/%2F/{q}/get", {"count": 5, "ackmode": "ack_requeue_false", "encoding": "auto"}) == []
    finally:
        api.delete(f"/queues/%2F/{q}")


def test_move_messages_to_another_queue(api):
    if api.external:
        pytest.skip("Warren's own endpoint (RabbitMQ's UI moves messages with a shovel)")
    src, dst = name("move-src"), name("move-dst")
    api.ok("put", f"/queues/%2F/{src}", {"durable": False})
    api.ok("put", f"/queues/%2F/{dst}", {"durable": False})
    try:
        for i in range(5):
            publish(api, "amq.default", src, f"m{i}", {"headers": {"n": i}})
        assert api.ok("post", f"/queues/%2F/{src}/move", {"destination": dst}) == {"moved": 5}
        got = api.ok("post", f"/queues/%2F/{dst}/get", {"count": 10, "ackmode": "ack_requeue_true", "encoding": "auto"})
        assert [m["payload"] for m in got] == [f"m{i}" for i in range(5)]
        assert [m["properties"]["headers"]["n"] for m in got] == list(range(5))
        # As through a shovel: the default exchange, the destination's name as the key.
        assert (got[0]["exchange"], got[0]["routing_key"]) == ("", dst)
        assert api.ok("get", f"/queues/%2F/{src}")["messages"] == 0
        r = api.post(f"/queues/%2F/{src}/move", {"destination": src})
        assert r.status_code == 400
        r = api.post(f"/queues/%2F/{src}/move", {"destination": name("missing")})
        assert r.status_code == 404
        assert api.post(f"/queues/%2F/{src}/move", {}).status_code == 400
    finally:
        api.delete(f"/queues/%2F/{src}")
        api.delete(f"/queues/%2F/{dst}")


def test_moved_persistent_messages_survive_kill_9(tmp_path):
    """The move acknowledges at the source only once the copies are on disk."""
    if os.environ.get("WARREN_URL"):
        pytest.skip("starts and kills its own Warren")
    data = str(tmp_path / "data")
    args = ["--management-listen", "127.0.0.1:0"]
    b, _ = _start_warren(data_dir=data, extra_args=args)
    try:
        base = f"http://127.0.0.1:{b.http_port}/api"
        for q in ("ms", "md"):
            assert requests.put(f"{base}/queues/%2F/{q}", json={"durable": True}, auth=ADMIN, timeout=10).status_code == 201
        for i in range(50):
            r = requests.post(f"{base}/exchanges/%2F/amq.default/publish", auth=ADMIN, timeout=10,
                              json={"routing_key": "ms", "payload": f"p{i}", "payload_encoding": "string", "properties": {"delivery_mode": 2}})
            assert r.json() == {"routed": True}
        r = requests.post(f"{base}/queues/%2F/ms/move", json={"destination": "md"}, auth=ADMIN, timeout=30)
        assert r.json() == {"moved": 50}
    finally:
        stop_warren(b, hard=True)
    b, _ = _start_warren(data_dir=data, extra_args=args)
    try:
        base = f"http://127.0.0.1:{b.http_port}/api"
        got = requests.post(f"{base}/queues/%2F/md/get", auth=ADMIN, timeout=10,
                            json={"count": 100, "ackmode": "ack_requeue_true", "encoding": "auto"}).json()
        assert sorted(m["payload"] for m in got) == sorted(f"p{i}" for i in range(50))
    finally:
        stop_warren(b)


# ----- lists -----

def test_pagination_envelope_and_errors(api):
    prefix = name("page")
    for i in range(3):
        api.ok("put", f"/queues/%2F/{prefix}-{i}", {"durable": False})
    try:
        r = api.ok("get", f"/queues/%2F?page=2&page_size=1&name={prefix}&use_regex=false")
        assert set(r) == {"filtered_count", "item_count", "items", "page", "page_count", "page_size", "total_count"}
        assert (r["filtered_count"], r["item_count"], r["page"], r["page_count"], r["page_size"]) == (3, 1, 2, 3, 1)
        assert r["items"][0]["name"] == f"{prefix}-1"
        r = api.ok("get", f"/queues/%2F?page=1&name=^{prefix}-[02]$&use_regex=true")
        assert [i["name"] for i in r["items"]] == [f"{prefix}-0", f"{prefix}-2"]
        r = api.get("/queues?page=0")
        assert r.status_code == 400
        assert r.json() == {"error": "invalid_pagination_parameters", "reason": "Invalid pagination parameters: page number 0, page size undefined"}
        r = api.get("/queues?page=1&page_size=1000")
        assert r.status_code == 400 and r.json()["error"] == "invalid_pagination_parameters"
        r = api.get(f"/queues/%2F?page=99&page_size=1&name={prefix}")
        assert r.status_code == 400 and r.json() == {"error": "page_out_of_range", "reason": "Page out of range, page: 99 page size: 1, len: 3"}
        # RabbitMQ 3.10: without `page`, neither page_size nor the name filter applies.
        plain = api.ok("get", f"/queues/%2F?page_size=1000&name={prefix}")
        assert isinstance(plain, list) and len(plain) >= 3
        desc = [q["name"] for q in api.ok("get", "/queues/%2F?sort=name&sort_reverse=true") if q["name"].startswith(prefix)]
        assert desc == [f"{prefix}-2", f"{prefix}-1", f"{prefix}-0"]
        users = [u["name"] for u in api.ok("get", "/users?sort=name&sort_reverse=true")]
        assert users == sorted(users, reverse=True)
        pruned = [q for q in api.ok("get", "/queues/%2F?columns=name,arguments") if q["name"].startswith(prefix)]
        assert pruned[0] == {"name": f"{prefix}-0", "arguments": {}}
        empty = api.ok("get", f"/queues/%2F?page=1&page_size=500&name={name('none')}")
        assert (empty["items"], empty["page_count"], empty["filtered_count"]) == ([], 0, 0)
    finally:
        for i in range(3):
            api.delete(f"/queues/%2F/{prefix}-{i}")


# ----- tags and visibility -----

def test_each_tag_sees_what_rabbitmq_shows_it(api):
    vh, q = name("tagvh"), name("tagq")
    users = {"mgmt": "management", "mon": "monitoring", "pm": "policymaker"}
    created = {}
    api.ok("put", f"/vhosts/{vh}", {"description": "tags"})
    try:
        for role, tag in users.items():
            u = name(role)
            created[role] = (u, "pw-" + u)
            api.ok("put", f"/users/{u}", {"password": "pw-" + u, "tags": tag})
        api.ok("put", f"/permissions/{vh}/{created['mgmt'][0]}", {"configure": ".*", "write": ".*", "read": ".*"})
        api.ok("put", f"/queues/{vh}/{q}", {"durable": False})
        mgmt, mon, pm = created["mgmt"], created["mon"], created["pm"]
        assert [v["name"] for v in api.ok("get", "/vhosts", auth=mgmt)] == [vh]
        assert {vh, "/"} <= {v["name"] for v in api.ok("get", "/vhosts", auth=mon)}
        assert api.ok("get", "/vhosts", auth=pm) == []
        assert [x["name"] for x in api.ok("get", "/queues", auth=mgmt)] == [q]
        # RabbitMQ 3.10: monitoring lists every vhost but no queue of a vhost it has no permissions in.
        assert api.ok("get", "/queues", auth=mon) == []
        for who in (mgmt, pm):
            r = api.get("/nodes", auth=who)
            assert r.status_code == 401 and r.json() == {"error": "not_authorised", "reason": "Not monitor user"}
        assert api.get("/nodes", auth=mon).status_code == 200
        for who in (mgmt, mon, pm):
            r = api.get("/users", auth=who)
            assert r.status_code == 401 and r.json()["reason"] == "Not administrator user"
        r = api.delete(f"/queues/%2F/{name('any')}", auth=mon)
        assert r.status_code == 401 and r.json()["reason"] == "User not authorised to access virtual host"
        policy = {"pattern": "^x", "definition": {"max-length": 5}}
        r = api.put(f"/policies/{vh}/p", policy, auth=pm)
        assert r.status_code == 401 and r.json()["reason"] == "User not authorised to access object"
        assert api.put(f"/policies/{vh}/p", policy, auth=mgmt).status_code == 401
        api.ok("put", f"/permissions/{vh}/{pm[0]}", {"configure": ".*", "write": ".*", "read": ".*"})
        assert api.put(f"/policies/{vh}/p", policy, auth=pm).status_code == 201
        assert api.put(f"/policies/{vh}/p", policy, auth=pm).status_code == 204
        assert api.delete(f"/policies/{vh}/p", auth=pm).status_code == 204
    finally:
        api.delete(f"/vhosts/{vh}")
        for u, _ in created.values():
            api.delete(f"/users/{u}")


# ----- connections, channels, consumers, statistics -----

def test_connections_channels_consumers_and_close(api):
    q = name("cq")
    api.ok("put", f"/queues/%2F/{q}", {"durable": False})
    conn = api.connect(client_properties={"connection_name": "mgmt-test"})
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_qos(prefetch_count=5)
        for i in range(3):
            ch.basic_publish("", q, f"m{i}".encode())
        got = []
        ch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag), consumer_tag="mgmt-ctag")
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        ch.basic_ack(got[0])
        ch.basic_ack(got[1])
        conn.process_data_events(time_limit=api.stats_wait)
        conns = [c for c in api.ok("get", "/connections") if c["client_properties"].get("connection_name") == "mgmt-test"]
        assert len(conns) == 1
        c = conns[0]
        assert (c["user"], c["vhost"], c["protocol"], c["state"]) == ("guest", "/", "AMQP 0-9-1", "running")
        assert c["peer_host"] == "127.0.0.1" and c["port"] == api.amqp_port
        # RabbitMQ 3.10: the client's connection_name is echoed as user_provided_name.
        assert c["user_provided_name"] == "mgmt-test"
        assert all("user_provided_name" not in x for x in api.ok("get", "/connections") if x["name"] != c["name"] and not x["client_properties"].get("connection_name"))
        assert isinstance(c["connected_at"], int) and c["client_properties"]["capabilities"]["publisher_confirms"] is True
        chans = [x for x in api.ok("get", "/channels") if x["connection_details"]["name"] == c["name"]]
        assert len(chans) == 1
        chan = chans[0]
        assert (chan["confirm"], chan["prefetch_count"], chan["consumer_count"], chan["messages_unacknowledged"]) == (True, 5, 1, 1)
        assert chan["message_stats"]["publish"] == 3 and chan["message_stats"]["ack"] == 2
        assert api.ok("get", "/channels/" + enc(chan["name"]))["number"] == chan["number"]
        cons = [x for x in api.ok("get", "/consumers") if x["consumer_tag"] == "mgmt-ctag"]
        assert len(cons) == 1
        assert cons[0]["queue"] == {"name": q, "vhost": "/"} and cons[0]["prefetch_count"] == 5
        assert cons[0]["ack_required"] is True and cons[0]["arguments"] == {}
        qs = api.ok("get", f"/queues/%2F/{q}")
        assert qs["consumer_details"][0]["channel_details"]["connection_name"] == c["name"]
        assert qs["consumer_details"][0]["channel_details"]["number"] == chan["number"]
        assert (qs["messages"], qs["messages_ready"], qs["messages_unacknowledged"]) == (1, 0, 1)
        assert qs["message_stats"]["publish"] == 3 and qs["message_stats"]["ack"] == 2
        paged = api.ok("get", "/connections?page=1&page_size=1")
        assert paged["page_size"] == 1 and paged["item_count"] == 1
        assert api.delete("/connections/" + enc(c["name"]), headers={"X-Reason": "bye"}).status_code == 204
        with pytest.raises(pika.exceptions.ConnectionClosed) as closed:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.2)
        assert closed.value.reply_code == 320
        assert closed.value.reply_text == "CONNECTION_FORCED - bye"
    finally:
        if conn.is_open:
            conn.close()
        api.delete(f"/queues/%2F/{q}")


def test_message_rates_move_with_traffic(api):
    q = name("rates")
    api.ok("put", f"/queues/%2F/{q}", {"durable": False})
    conn = api.connect()
    try:
        ch = conn.channel()
        # About 2,000 messages a second for two statistics intervals (bounded in both).
        deadline = time.monotonic() + api.stats_wait * 2
        sent = 0
        while time.monotonic() < deadline and sent < 100000:
            for _ in range(20):
                ch.basic_publish("", q, b"x")
            sent += 20
            conn.process_data_events(time_limit=0.01)
        # The rate while traffic flows (the sampler has seen at least two intervals of it).
        assert api.ok("get", f"/queues/%2F/{q}")["message_stats"]["publish_details"]["rate"] > 0
        conn.process_data_events(time_limit=api.stats_wait)
        qs = api.ok("get", f"/queues/%2F/{q}")
        assert qs["messages"] == sent
        assert qs["message_stats"]["publish"] == sent
        o = api.ok("get", "/overview")
        assert o["message_stats"]["publish"] >= sent
        assert o["queue_totals"]["messages"] >= sent
    finally:
        conn.close()
        api.delete(f"/queues/%2F/{q}")


# ----- users, vhosts, permissions, limits, parameters -----

def test_users_from_hash_or_password_with_tags_in_both_forms(api):
    u2, u3 = name("u2"), name("u3")
    try:
        # RabbitMQ's documented vector: salt 908DC60A, password test12.
        h = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        assert api.put(f"/users/{u2}", {"password_hash": h, "tags": "administrator,monitoring"}).status_code == 201
        got = api.ok("get", f"/users/{u2}")
        assert got["tags"] == ["administrator", "monitoring"] and got["password_hash"] == h
        assert got["hashing_algorithm"] == "rabbit_password_hashing_sha256" and got["limits"] == {}
        assert api.ok("get", "/whoami", auth=(u2, "test12"))["name"] == u2
        assert api.put(f"/users/{u3}", {"password": "x", "tags": ["management"]}).status_code == 201
        assert api.ok("get", f"/users/{u3}")["tags"] == ["management"]
        r = api.put(f"/users/{name('u5')}", {})
        assert r.status_code == 400 and r.json() == {"error": "bad_request", "reason": "tags_not_present"}
        assert api.put(f"/users/{u3}", {"password": "y", "tags": ""}).status_code == 204
        assert api.get("/whoami", auth=(u3, "y")).status_code == 401  # no management tag any more
    finally:
        api.delete(f"/users/{u2}")
        api.delete(f"/users/{u3}")


def test_vhosts_permissions_and_limits(api):
    vh, u = name("vh"), name("pu")
    try:
        assert api.put(f"/vhosts/{vh}", {"description": "d", "tags": "a,b"}).status_code == 201
        got = api.ok("get", f"/vhosts/{vh}")
        assert (got["name"], got["description"], got["tags"]) == (vh, "d", ["a", "b"])
        assert api.put(f"/vhosts/{vh}", {"description": "d2"}).status_code == 204
        # RabbitMQ 3.10: the creator gets every permission on a vhost it creates.
        assert api.ok("get", f"/permissions/{vh}/guest")["configure"] == ".*"
        api.ok("put", f"/users/{u}", {"password": "p", "tags": ""})
        assert api.put(f"/permissions/{vh}/{u}", {"configure": "^c", "write": "^w", "read": "^r"}).status_code == 201
        assert api.ok("get", f"/permissions/{vh}/{u}") == {"user": u, "vhost": vh, "configure": "^c", "write": "^w", "read": "^r"}
        assert api.put(f"/topic-permissions/{vh}/{u}", {"exchange": "amq.topic", "write": "^a", "read": ".*"}).status_code == 201
        assert any(t["user"] == u and t["write"] == "^a" for t in api.ok("get", "/topic-permissions"))
        assert api.put(f"/vhost-limits/{vh}/max-queues", {"value": 2}).status_code == 204
        assert api.ok("get", f"/vhost-limits/{vh}") == [{"vhost": vh, "value": {"max-queues": 2}}]
        r = api.put(f"/vhost-limits/{vh}/max-foo", {"value": 3})
        assert r.status_code == 400 and r.json()["reason"].startswith("Validation failed")
        for i in range(2):
            api.ok("put", f"/queues/{vh}/q{i}", {"durable": False})
        r = api.put(f"/queues/{vh}/q2", {"durable": False})
        assert r.status_code == 400 and "queue limit in vhost" in r.json()["reason"]
        assert api.put(f"/user-limits/{u}/max-connections", {"value": 1}).status_code == 204
        assert api.ok("get", f"/user-limits/{u}") == [{"user": u, "value": {"max-connections": 1}}]
        assert api.delete(f"/user-limits/{u}/max-connections").status_code == 204
        assert api.delete(f"/permissions/{vh}/{u}").status_code == 204
        assert api.get(f"/permissions/{vh}/{u}").status_code == 404
    finally:
        api.delete(f"/vhosts/{vh}")
        api.delete(f"/users/{u}")
    assert api.get(f"/vhosts/{vh}").status_code == 404


def test_parameters_store_globals_and_refuse_unknown_components(api):
    for component in ("shovel", "federation-upstream"):
        r = api.put(f"/parameters/{component}/%2F/p1", {"value": {"src-uri": "amqp://"}})
        assert r.status_code == 400
        assert r.json() == {"error": "bad_request", "reason": f"Validation failed\n\ncomponent {component} not found\n"}
        assert api.ok("get", f"/parameters/{component}") == []
    g = name("gp")
    assert api.put(f"/global-parameters/{g}", {"name": g, "value": {"a": 1}}).status_code == 201
    assert api.ok("get", f"/global-parameters/{g}") == {"name": g, "value": {"a": 1}}
    assert {"name": g, "value": {"a": 1}} in api.ok("get", "/global-parameters")
    assert api.delete(f"/global-parameters/{g}").status_code == 204
    assert api.get(f"/global-parameters/{g}").status_code == 404


# ----- health checks -----

def test_health_checks(api):
    assert api.ok("get", "/health/checks/alarms") == {"status": "ok"}
    assert api.ok("get", "/health/checks/local-alarms") == {"status": "ok"}
    assert api.ok("get", f"/health/checks/port-listener/{api.amqp_port}") == {"status": "ok", "port": api.amqp_port}
    r = api.get("/health/checks/port-listener/1")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failed" and body["missing"] == 1 and api.amqp_port in body["ports"]
    assert api.ok("get", "/health/checks/protocol-listener/amqp") == {"status": "ok", "protocol": "amqp"}
    r = api.get("/health/checks/protocol-listener/stomp")
    assert r.status_code == 503 and r.json()["missing"] == "stomp" and "amqp" in r.json()["protocols"]
    assert api.ok("get", "/health/checks/virtual-hosts")["status"] == "ok"
    assert api.ok("get", "/aliveness-test/%2F") == {"status": "ok"}
    api.delete("/queues/%2F/aliveness-test")


# ----- definitions -----

def load_fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def ours(defs, vhost):
    """The parts of an export that belong to `vhost` (and its users), for comparison."""
    def strip(items, keys=()):
        return sorted((json.dumps({k: v for k, v in i.items() if k not in keys}, sort_keys=True) for i in items))
    return {
        "queues": strip([q for q in defs["queues"] if q["vhost"] == vhost], keys=("type",)),
        "exchanges": strip([x for x in defs["exchanges"] if x["vhost"] == vhost]),
        "bindings": strip([b for b in defs["bindings"] if b["vhost"] == vhost]),
        "policies": strip([p for p in defs["policies"] if p["vhost"] == vhost]),
        "parameters": strip([p for p in defs["parameters"] if p["vhost"] == vhost]),
        "permissions": strip([p for p in defs["permissions"] if p["vhost"] == vhost]),
        "topic_permissions": strip([p for p in defs["topic_permissions"] if p["vhost"] == vhost]),
    }


@pytest.mark.parametrize("fixture", ["rabbitmq-3.10-definitions.json", "rabbitmq-4.x-definitions.json"])
def test_rabbitmq_definitions_import_and_export_the_same(api, fixture):
    defs = load_fixture(fixture)
    vh = "defs-test"
    try:
        r = api.post("/definitions", defs)
        assert r.status_code in (201, 204), r.text
        out = api.ok("get", "/definitions")
        for key in ("users", "vhosts", "permissions", "topic_permissions", "parameters", "global_parameters", "policies", "queues", "exchanges", "bindings"):
            assert isinstance(out[key], list), key
        assert ours(out, vh) == ours(load_fixture("rabbitmq-3.10-definitions.json"), vh)
        users = {u["name"]: u for u in out["users"]}
        assert users["defs-admin"]["password_hash"] == "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        assert users["defs-admin"]["tags"] == ["administrator"]
        assert sorted(users["defs-user"]["tags"]) == ["management", "policymaker"]
        assert api.ok("get", "/whoami", auth=("defs-admin", "test12"))["name"] == "defs-admin"
        assert api.ok("get", "/whoami", auth=("defs-user", "defs-pass"))["name"] == "defs-user"
        assert {"name": "defs-param", "value": {"n": 3, "team": "platform"}} in out["global_parameters"]
        # The imported objects work: the policy applies, the binding routes.
        deadline = time.monotonic() + api.stats_wait + 5
        q = api.ok("get", f"/queues/{vh}/defs-ttl-q")
        while "effective_policy_definition" not in q and time.monotonic() < deadline:
            time.sleep(0.5)  # RabbitMQ 3.10: the key appears with the first statistics
            q = api.ok("get", f"/queues/{vh}/defs-ttl-q")
        assert q["effective_policy_definition"] == {"max-length": 1000, "message-ttl": 60000}
        assert api.post(f"/exchanges/{vh}/defs-x-topic/publish", {"properties": {}, "routing_key": "a.z", "payload": "p", "payload_encoding": "string"}).json() == {"routed": True}
        one = api.ok("get", f"/definitions/{vh}")
        assert "vhost" not in one["queues"][0] and len(one["queues"]) == 4
    finally:
        api.delete(f"/vhosts/{vh}")
        for u in ("defs-user", "defs-admin"):
            api.delete(f"/users/{u}")
        api.delete("/global-parameters/defs-param")


def test_definitions_with_unknown_components_are_refused_whole(api):
    vh = name("never")
    defs = {"vhosts": [{"name": vh}], "parameters": [{"vhost": "/", "component": "shovel", "name": "s", "value": {}}]}
    try:
        r = api.post("/definitions", defs)
        assert r.status_code == 400
        assert "component shovel not found" in r.json()["reason"]
        if not api.external:
            # RabbitMQ 3.10 imports up to the item it cannot take (the vhost is made); Warren
            # checks first and changes nothing (docs/compatibility.md).
            assert api.get(f"/vhosts/{vh}").status_code == 404
    finally:
        api.delete(f"/vhosts/{vh}")


@pytest.mark.skipif(not os.environ.get("WARREN_ORACLE_MGMT_URL"), reason="needs a RabbitMQ to import into (WARREN_ORACLE_MGMT_URL)")
def test_warren_export_imports_into_rabbitmq(api):
    """The round trip: RabbitMQ's export → Warren → Warren's export → RabbitMQ, compared."""
    if api.external:
        pytest.skip("compares Warren with RabbitMQ: run against Warren")
    oracle = os.environ["WARREN_ORACLE_MGMT_URL"].rstrip("/") + "/api"
    vh = "defs-test"
    try:
        api.ok("post", "/definitions", load_fixture("rabbitmq-3.10-definitions.json"))
        exported = api.ok("get", "/definitions")
        r = requests.post(oracle + "/definitions", json=exported, auth=ADMIN, timeout=30)
        assert r.status_code in (201, 204), r.text
        back = requests.get(oracle + "/definitions", auth=ADMIN, timeout=30).json()
        assert ours(back, vh) == ours(exported, vh)
        users = {u["name"]: u for u in back["users"]}
        assert users["defs-admin"]["password_hash"] == "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    finally:
        for base, auth in ((api.base, ADMIN), (oracle, ADMIN)):
            requests.delete(f"{base}/vhosts/{vh}", auth=auth, timeout=30)
            for u in ("defs-user", "defs-admin"):
                requests.delete(f"{base}/users/{u}", auth=auth, timeout=30)
            requests.delete(f"{base}/global-parameters/defs-param", auth=auth, timeout=30)


# ----- warren ctl / rabbitmqctl -----

def test_ctl_output_into_a_closed_pipe_ends_quietly(api):
    """`warren ctl list_queues | head -1`: the reader is gone, ctl ends like any CLI tool
    (killed by SIGPIPE), not with a panic."""
    if api.external:
        pytest.skip("Warren's ctl")
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails: deterministic, whatever the output size
    try:
        out = subprocess.run([warren_binary(), "ctl", "--data-dir", api.process.data_dir, "list_queues"],
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "panicked" not in out.stderr, out.stderr
    assert out.returncode == -13, (out.returncode, out.stderr)


def test_ctl_read_verbs_columns_and_checks(api):
    q = name("ctlq")
    api.ok("put", f"/queues/%2F/{q}", {"durable": True})
    try:
        publish(api, "amq.default", q, "m")
        for remote in (False, True):
            if remote and api.external:
                continue
            out = api.ctl("list_queues", "-q", remote=remote)
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert lines[0] == "name\tmessages"
            assert f"{q}\t1" in lines
            out = api.ctl("list_queues", "name", "durable", "messages", "--formatter", "json", remote=remote)
            rows = json.loads(out.stdout)
            assert {"name": q, "durable": True, "messages": 1} in rows
        out = api.ctl("list_bindings", "-s")
        assert f"\texchange\t{q}\tqueue\t{q}\t" in out.stdout
        out = api.ctl("list_exchanges", "name", "type", "-s")
        assert "amq.topic\ttopic" in out.stdout.splitlines()
        out = api.ctl("purge_queue", q)
        assert out.returncode == 0
        assert api.ok("get", f"/queues/%2F/{q}")["messages_ready"] == 0 or api.external
        assert api.ctl("check_port_listener", str(api.amqp_port)).returncode == 0
        failed = api.ctl("check_port_listener", "1")
        assert failed.returncode == 69  # rabbitmq-diagnostics' EX_UNAVAILABLE
        assert api.ctl("check_alarms").returncode == 0
        assert api.ctl("ping").returncode == 0
        assert "Ping succeeded" in api.ctl("ping").stdout
        listeners = api.ctl("listeners").stdout
        assert f"port: {api.amqp_port}, protocol: amqp" in listeners
        out = api.ctl("delete_queue", q)
        assert out.returncode == 0 and "Queue was successfully deleted with 0 ready messages" in out.stdout
        assert api.get(f"/queues/%2F/{q}").status_code == 404
    finally:
        api.delete(f"/queues/%2F/{q}")


def test_ctl_connections_and_definitions(api, tmp_path):
    conn = api.connect(client_properties={"connection_name": "ctl-test"})
    try:
        out = api.ctl("list_connections", "name", "user", "--formatter", "json")
        mine = [c for c in json.loads(out.stdout) if c["user"] == "guest"]
        assert mine
        assert api.ctl("close_all_connections", "-p", "/", "ctl says bye").returncode == 0
        with pytest.raises(pika.exceptions.ConnectionClosed) as closed:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.2)
        assert closed.value.reply_code == 320
    finally:
        if conn.is_open:
            conn.close()
    if api.external:
        return
    x = name("ctlx")
    api.ok("put", f"/exchanges/%2F/{x}", {"type": "fanout", "durable": True})
    try:
        path = tmp_path / "defs.json"
        assert api.ctl("export_definitions", str(path)).returncode == 0
        defs = json.loads(path.read_text())
        assert any(e["name"] == x for e in defs["exchanges"])
        api.delete(f"/exchanges/%2F/{x}")
        assert api.ctl("import_definitions", str(path)).returncode == 0
        assert api.get(f"/exchanges/%2F/{x}").status_code == 200
        status = api.ctl("status")
        assert status.returncode == 0 and "RabbitMQ version: 3.10.8" in status.stdout
    finally:
        api.delete(f"/exchanges/%2F/{x}")

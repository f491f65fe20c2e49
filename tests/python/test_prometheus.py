"""Warren's Prometheus endpoint, parsed with prometheus_client's own parser: RabbitMQ's
metric names, types and labels, counters that move with AMQP traffic by exactly what was
done, per-object and detailed endpoints, and every metric the RabbitMQ-Overview Grafana
dashboard queries."""

import os
import re
import time
import uuid

import pika
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import _start_warren, stop_warren

PROM_RE = re.compile(r"listening for Prometheus on ([\d.]+):(\d+)")

# What RabbitMQ-Overview.json queries (../shared/reference/management-api.md §2).
DASHBOARD = [
    "rabbitmq_identity_info", "rabbitmq_build_info",
    "rabbitmq_connections", "rabbitmq_channels", "rabbitmq_queues", "rabbitmq_consumers",
    "rabbitmq_connections_opened_total", "rabbitmq_connections_closed_total",
    "rabbitmq_channels_opened_total", "rabbitmq_channels_closed_total",
    "rabbitmq_queues_declared_total", "rabbitmq_queues_created_total", "rabbitmq_queues_deleted_total",
    "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked", "rabbitmq_queue_messages",
    "rabbitmq_queue_consumers",
    "rabbitmq_global_messages_received_total", "rabbitmq_global_messages_received_confirm_total",
    "rabbitmq_global_messages_routed_total", "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_global_messages_unroutable_dropped_total", "rabbitmq_global_messages_unroutable_returned_total",
    "rabbitmq_global_messages_delivered_total", "rabbitmq_global_messages_delivered_consume_manual_ack_total",
    "rabbitmq_global_messages_delivered_consume_auto_ack_total", "rabbitmq_global_messages_delivered_get_manual_ack_total",
    "rabbitmq_global_messages_delivered_get_auto_ack_total", "rabbitmq_global_messages_get_empty_total",
    "rabbitmq_global_messages_redelivered_total", "rabbitmq_global_messages_acknowledged_total",
    "rabbitmq_global_publishers", "rabbitmq_global_consumers",
    "rabbitmq_process_resident_memory_bytes", "rabbitmq_resident_memory_limit_bytes",
    "rabbitmq_disk_space_available_bytes", "rabbitmq_disk_space_available_limit_bytes",
    "rabbitmq_process_open_fds", "rabbitmq_process_max_fds", "rabbitmq_erlang_uptime_seconds",
    "rabbitmq_message_size_bytes",
]
ALARMS = ["rabbitmq_alarms_memory_used_watermark", "rabbitmq_alarms_free_disk_space_watermark",
          "rabbitmq_alarms_file_descriptor_limit"]
GAUGES = ["rabbitmq_connections", "rabbitmq_channels", "rabbitmq_queues", "rabbitmq_consumers",
          "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked", "rabbitmq_queue_messages",
          "rabbitmq_global_publishers", "rabbitmq_global_consumers", "rabbitmq_process_resident_memory_bytes",
          "rabbitmq_process_open_fds"]


class Target:
    def __init__(self, host, port, api, external=False):
        self.host, self.port, self.api, self.external = host, port, api, external


@pytest.fixture(scope="module")
def warren():
    """Our own Warren, or the broker of WARREN_PROM_URL (with WARREN_URL and
    WARREN_MGMT_URL: how this suite is run against RabbitMQ 3.10 as the oracle)."""
    prom = os.environ.get("WARREN_PROM_URL")
    if prom:
        url = pika.URLParameters(os.environ["WARREN_URL"])
        yield Target(url.host, url.port, os.environ["WARREN_MGMT_URL"].rstrip("/") + "/api", external=True), prom
        return
    b, _ = _start_warren(extra_args=["--prometheus-listen", "127.0.0.1:0", "--management-listen", "127.0.0.1:0"])
    try:
        port = next(int(m.group(2)) for m in map(PROM_RE.search, b.output) if m)
        yield Target(b.host, b.port, f"http://127.0.0.1:{b.http_port}/api"), f"http://127.0.0.1:{port}"
    finally:
        stop_warren(b)


def scrape(base, path="/metrics"):
    r = requests.get(base + path, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}, r.text


def family(families, name):
    """The parser drops `_total` from counters' family names."""
    return families.get(name) or families.get(name[: -len("_total")] if name.endswith("_total") else name)


def value(families, name, **labels):
    f = family(families, name)
    assert f is not None, f"{name} missing"
    want = name if f.type != "counter" or name.endswith("_total") else name + "_total"
    hits = [s.value for s in f.samples if s.name == want and all(s.labels.get(k) == v for k, v in labels.items())]
    assert hits, f"no sample {want}{labels}"
    return sum(hits)


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(b.host, b.port, heartbeat=0, socket_timeout=5))


def test_families_types_and_labels(warren):
    b, base = warren
    families, text = scrape(base)
    for name in DASHBOARD + ALARMS:
        if b.external and name == "rabbitmq_message_size_bytes":
            continue  # RabbitMQ 3.10: no message-size histogram (it came in 4.0)
        assert family(families, name) is not None, name
    for name in GAUGES:
        assert family(families, name).type == "gauge", name
    for name in [n for n in DASHBOARD if n.endswith("_total")]:
        assert family(families, name).type == "counter", name
    if not b.external:
        assert family(families, "rabbitmq_message_size_bytes").type == "histogram"
    for name in ["rabbitmq_identity_info", "rabbitmq_build_info"] + ALARMS:
        assert family(families, name).type == "unknown", name  # `untyped` in the text
    identity = family(families, "rabbitmq_identity_info").samples[0]
    assert identity.value == 1
    labels = {"rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id", "rabbitmq_endpoint"}
    if b.external:
        # RabbitMQ 3.10: no rabbitmq_endpoint label yet; the dashboards of later releases
        # have an `endpoint` variable built on it, so Warren carries it.
        labels.discard("rabbitmq_endpoint")
    assert set(identity.labels) == labels
    assert b.external or identity.labels["rabbitmq_endpoint"] == "aggregated"
    assert identity.labels["rabbitmq_node"].startswith("rabbit@")
    build = family(families, "rabbitmq_build_info").samples[0].labels
    assert build["rabbitmq_version"] == "3.10.8"
    # RabbitMQ 3.10: product_name only when one is configured; Warren always names itself.
    assert b.external or build["product_name"] == "Warren"
    received = family(families, "rabbitmq_global_messages_received_total").samples[0]
    assert received.labels == {"protocol": "amqp091"}
    delivered = family(families, "rabbitmq_global_messages_delivered_total").samples[0]
    assert delivered.labels == {"protocol": "amqp091", "queue_type": "rabbit_classic_queue"}
    buckets = [] if b.external else [
        s.labels["le"] for s in family(families, "rabbitmq_message_size_bytes").samples if s.name.endswith("_bucket")]
    assert b.external or buckets == ["100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08", "+Inf"] or \
        buckets == ["100", "1000", "10000", "100000", "1000000", "10000000", "50000000", "100000000", "+Inf"]
    assert "# TYPE rabbitmq_connections_opened_total counter" in text
    assert value(families, "rabbitmq_resident_memory_limit_bytes") > 0
    assert value(families, "rabbitmq_process_max_fds") >= value(families, "rabbitmq_process_open_fds") > 0
    assert value(families, "rabbitmq_alarms_memory_used_watermark") == 0


def test_counters_move_by_exactly_the_traffic(warren):
    b, base = warren
    q = f"prom-{uuid.uuid4().hex[:8]}"
    before, _ = scrape(base)
    conn = connect(b)
    try:
        ch = conn.channel()
        ch.queue_declare(q)
        ch.confirm_delivery()
        for i in range(20):
            ch.basic_publish("", q, b"x" * (50 if i < 10 else 5000))
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish("", "prom-nowhere", b"r", mandatory=True)
        ch.basic_publish("", "prom-nowhere", b"d")
        for _ in range(2):
            assert ch.basic_get(q, auto_ack=True)[0] is not None
        method, _, _ = ch.basic_get(q, auto_ack=False)
        ch.basic_ack(method.delivery_tag)
        method, _, _ = ch.basic_get(q, auto_ack=False)
        ch.basic_nack(method.delivery_tag, requeue=True)  # its next delivery is a redelivery
        got = []
        ch.basic_qos(prefetch_count=100)
        tag = ch.basic_consume(q, lambda c, m, p, body: got.append(m))
        deadline = time.monotonic() + 10
        while len(got) < 17 and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        assert len(got) == 17 and sum(m.redelivered for m in got) == 1
        for m in got[:10]:
            ch.basic_ack(m.delivery_tag)
        ch.basic_cancel(tag)
        assert ch.basic_get(q, auto_ack=True)[0] is None  # 7 are unacked, none ready
        during, _ = scrape(base)

        def delta(name, **labels):
            return value(during, name, **labels) - value(before, name, **labels)

        expected = {
            "received": 22, "received_confirm": 22, "routed": 20, "confirmed": 22,
            "unroutable_returned": 1, "unroutable_dropped": 1,
            "delivered": 21, "delivered_get_auto_ack": 2, "delivered_get_manual_ack": 2,
            "delivered_consume_manual_ack": 17, "delivered_consume_auto_ack": 0,
            "get_empty": 1, "redelivered": 1, "acknowledged": 11,
        }
        got_deltas = {k: delta(f"rabbitmq_global_messages_{k}_total") for k in expected}
        assert got_deltas == expected
        if not b.external:  # RabbitMQ 3.10: no message-size histogram (4.0 added it)
            buckets = {s.labels["le"]: s.value for s in family(during, "rabbitmq_message_size_bytes").samples if s.name.endswith("_bucket")}
            old = {s.labels["le"]: s.value for s in family(before, "rabbitmq_message_size_bytes").samples if s.name.endswith("_bucket")}
            grown = [buckets[k] - old[k] for k in buckets]
            assert grown == [12, 12, 22, 22, 22, 22, 22, 22, 22]
            def hist(families, suffix):
                return next(x.value for x in family(families, "rabbitmq_message_size_bytes").samples
                            if x.name == "rabbitmq_message_size_bytes" + suffix)

            assert hist(during, "_count") - hist(before, "_count") == 22
            assert hist(during, "_sum") - hist(before, "_sum") == 10 * 50 + 10 * 5000 + 2
        if not b.external:  # RabbitMQ 3.10's channel tables are refreshed every 5 s
            live = {n: value(during, f"rabbitmq_channel_{n}") for n in [
                "messages_published_total", "messages_confirmed_total", "messages_unroutable_returned_total",
                "messages_unroutable_dropped_total", "get_total", "get_ack_total", "get_empty_total",
                "messages_delivered_ack_total", "messages_delivered_total", "messages_redelivered_total",
                "messages_acked_total", "messages_unacked", "consumers"]}
            # RabbitMQ's names: `get_total` is basic.get with auto-ack, `get_ack_total` manual.
            assert live == {"messages_published_total": 22, "messages_confirmed_total": 22,
                            "messages_unroutable_returned_total": 1, "messages_unroutable_dropped_total": 1,
                            "get_total": 2, "get_ack_total": 2, "get_empty_total": 1,
                            "messages_delivered_ack_total": 17, "messages_delivered_total": 0,
                            "messages_redelivered_total": 1, "messages_acked_total": 11,
                            "messages_unacked": 7, "consumers": 0}
            assert value(during, "rabbitmq_connection_channels") == 1
            assert value(during, "rabbitmq_connection_incoming_bytes_total") > 50000
            assert value(during, "rabbitmq_queue_messages_published_total") == 20
        gauges = {n: value(during, n) for n in ["rabbitmq_connections", "rabbitmq_channels", "rabbitmq_queues",
                                                 "rabbitmq_consumers", "rabbitmq_queue_messages_ready",
                                                 "rabbitmq_queue_messages_unacked", "rabbitmq_queue_messages",
                                                 "rabbitmq_global_publishers", "rabbitmq_global_consumers"]}
        if b.external:
            # RabbitMQ 3.10: queue gauges lag up to a statistics interval behind, and its
            # publishers gauge counted every publisher since boot here: not compared.
            for lagging in ["rabbitmq_queue_messages_unacked", "rabbitmq_queue_messages",
                            "rabbitmq_queue_messages_ready", "rabbitmq_global_publishers", "rabbitmq_queues"]:
                gauges.pop(lagging)
        want = {"rabbitmq_connections": 1, "rabbitmq_channels": 1, "rabbitmq_queues": 1,
                "rabbitmq_consumers": 0, "rabbitmq_queue_messages_ready": 0,
                "rabbitmq_queue_messages_unacked": 7, "rabbitmq_queue_messages": 7,
                "rabbitmq_global_publishers": 1, "rabbitmq_global_consumers": 0}
        assert gauges == {k: v for k, v in want.items() if k in gauges}
        conn.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after, _ = scrape(base)
            if value(after, "rabbitmq_connections") == 0:
                break
            time.sleep(0.05)
        # A closed channel's counts stay in the totals: counters never go down.
        for k in expected:
            name = f"rabbitmq_global_messages_{k}_total"
            assert value(after, name) == value(during, name), name
        assert value(after, "rabbitmq_connections_closed_total") - value(before, "rabbitmq_connections_closed_total") == 1
        assert value(after, "rabbitmq_channels_closed_total") - value(before, "rabbitmq_channels_closed_total") == 1
        if not b.external:
            # As in RabbitMQ, the channel families cover open channels only.
            assert value(after, "rabbitmq_channel_messages_published_total") == 0
            assert value(after, "rabbitmq_queue_messages_ready") == 7  # the unacked came back
            assert value(after, "rabbitmq_global_publishers") == 0
    finally:
        if conn.is_open:
            conn.close()
        cleanup = connect(b)
        cleanup.channel().queue_delete(q)
        cleanup.close()


def test_per_object_and_detailed(warren):
    b, base = warren
    api = b.api
    auth = ("guest", "guest")
    vhost = f"prom-v-{uuid.uuid4().hex[:6]}"
    # RabbitMQ 3.10 writes quotes and backslashes in label values unescaped, which no
    # parser reads back: the escaping check is Warren's only.
    odd = 'odd "name" \\ here' if not b.external else "prom-plain"
    assert requests.put(f"{api}/vhosts/{vhost}", auth=auth, timeout=10).status_code == 201
    try:
        for v, name, n in [("%2F", "prom-a", 2), ("%2F", odd, 1), (vhost, "prom-b", 3)]:
            enc = requests.utils.quote(name, safe="")
            assert requests.put(f"{api}/queues/{v}/{enc}", json={"durable": False}, auth=auth, timeout=10).status_code == 201
            for i in range(n):
                r = requests.post(f"{api}/exchanges/{v}/amq.default/publish", auth=auth, timeout=10,
                                  json={"routing_key": name, "payload": "p", "payload_encoding": "string", "properties": {}})
                assert r.json() == {"routed": True}
        # RabbitMQ 3.10's queue metrics lag up to a statistics interval (5 s); Warren's are live.
        deadline = time.monotonic() + (12 if b.external else 0)
        while True:
            per, _ = scrape(base, "/metrics/per-object")
            ready = {(s.labels["vhost"], s.labels["queue"]): s.value
                     for s in family(per, "rabbitmq_queue_messages_ready").samples}
            if ready.get(("/", odd)) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert ready[("/", "prom-a")] == 2 and ready[(vhost, "prom-b")] == 3
        assert ready[("/", odd)] == 1  # quotes and backslashes escaped and parsed back
        assert b.external or family(per, "rabbitmq_identity_info").samples[0].labels["rabbitmq_endpoint"] == "per-object"
        agg, _ = scrape(base)
        assert [s.labels for s in family(agg, "rabbitmq_queue_messages_ready").samples] == [{}]
        assert value(agg, "rabbitmq_queue_messages_ready") == sum(ready.values())
        det, text = scrape(base, f"/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count&vhost={vhost}")
        assert b.external or family(det, "rabbitmq_identity_info").samples[0].labels["rabbitmq_endpoint"] == "detailed"
        assert [(s.labels, s.value) for s in family(det, "rabbitmq_detailed_queue_messages_ready").samples] == \
            [({"vhost": vhost, "queue": "prom-b"}, 3)]
        assert value(det, "rabbitmq_detailed_queue_messages", queue="prom-b") == 3
        assert value(det, "rabbitmq_detailed_queue_consumers", queue="prom-b") == 0
        assert "rabbitmq_queue_messages_ready" not in text and "rabbitmq_detailed_queue_messages_ready_bytes" not in text
        bare, _ = scrape(base, "/metrics/detailed")
        # RabbitMQ 3.10 adds its scrape telemetry (telemetry_scrape_*), which Warren leaves out.
        assert {n for n in bare if not n.startswith("telemetry_")} == {"rabbitmq_identity_info", "rabbitmq_build_info"}
        assert requests.get(base + "/nothing", timeout=10).status_code == 404
    finally:
        requests.delete(f"{api}/vhosts/{vhost}", auth=auth, timeout=10)
        for name in ["prom-a", odd]:
            requests.delete(f"{api}/queues/%2F/{requests.utils.quote(name, safe='')}", auth=auth, timeout=10)


def test_every_dashboard_query_has_series(warren):
    b, base = warren
    families, _ = scrape(base)
    # RabbitMQ 3.10: no message-size histogram.
    queried = [n for n in DASHBOARD if not (b.external and n == "rabbitmq_message_size_bytes")]
    empty = [n for n in queried if not family(families, n).samples]
    assert empty == []


IO_COUNTERS = ["rabbitmq_io_read_ops_total", "rabbitmq_io_read_bytes_total",
               "rabbitmq_io_write_ops_total", "rabbitmq_io_write_bytes_total",
               "rabbitmq_io_sync_ops_total", "rabbitmq_io_read_time_seconds_total",
               "rabbitmq_io_write_time_seconds_total", "rabbitmq_io_sync_time_seconds_total",
               "rabbitmq_io_seek_ops_total", "rabbitmq_io_seek_time_seconds_total",
               "rabbitmq_io_reopen_ops_total"]


def test_io_counters_move_with_confirmed_persistent_messages(warren):
    b, base = warren
    before, _ = scrape(base)
    for name in IO_COUNTERS:
        assert family(before, name).type == "counter", name
    detailed, _ = scrape(base, "/metrics/detailed?family=node_persister_metrics")
    assert family(detailed, "rabbitmq_detailed_io_sync_ops_total").type == "counter"
    # 5000-byte bodies: RabbitMQ 3.10 keeps smaller ones in its queue index, larger ones
    # in the message store, which is what its io_* counters count.
    body, n = b"x" * 5000, 20
    q = f"prom-io-{uuid.uuid4().hex[:6]}"
    conn = connect(b)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(q, durable=True)
    try:
        for _ in range(n):
            ch.basic_publish("", q, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        # RabbitMQ 3.10 updates these counters once per statistics interval (5 s).
        deadline = time.monotonic() + (15 if b.external else 2)
        while True:
            after, _ = scrape(base)
            grew = {name: value(after, name) - value(before, name) for name in IO_COUNTERS}
            if (grew["rabbitmq_io_write_bytes_total"] >= n * len(body) and grew["rabbitmq_io_sync_ops_total"] > 0) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert grew["rabbitmq_io_write_ops_total"] > 0
        assert grew["rabbitmq_io_write_bytes_total"] >= n * len(body), grew
        assert grew["rabbitmq_io_sync_ops_total"] > 0, grew
        assert grew["rabbitmq_io_sync_time_seconds_total"] > 0, grew
        assert all(v >= 0 for v in grew.values()), grew
    finally:
        ch.queue_delete(q)
        conn.close()

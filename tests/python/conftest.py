"""Shared fixtures for the pika integration suite.

Broker selection:
  * WARREN_URL set   -> use that external broker (e.g. RabbitMQ as oracle).
  * otherwise        -> spawn the Warren binary (WARREN_BIN, default
                        <repo>/target/debug/warren) on an ephemeral port.
"""

import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

import pika
import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LISTEN_RE = re.compile(r"warren: listening for AMQP on ([0-9.]+):(\d+)")
TLS_LISTEN_RE = re.compile(r"warren: listening for AMQPS on ([0-9.]+):(\d+)")
HTTP_LISTEN_RE = re.compile(r"warren: listening for HTTP on ([0-9.]+):(\d+)")
MQTT_LISTEN_RE = re.compile(r"warren: listening for (MQTT|MQTTS|MQTT over WebSocket|MQTT over secure WebSocket) on ([0-9.]+):(\d+)")
DATA_DIR_RE = re.compile(r"warren: data directory ")
STARTUP_TIMEOUT = 20.0


@dataclass
class Broker:
    host: str
    port: int
    url: str
    external: bool
    vhost: str = "/"
    username: str = "guest"
    password: str = "guest"
    process: Optional[subprocess.Popen] = None
    output: list = field(default_factory=list)
    data_dir: Optional[str] = None
    tls_port: Optional[int] = None
    http_port: Optional[int] = None
    # MQTT listeners by label: "MQTT", "MQTTS", "MQTT over WebSocket".
    mqtt_ports: dict = field(default_factory=dict)

    def ctl(self, *args, check=True):
        """`warren ctl` on our Warren, `rabbitmqctl` on an external RabbitMQ (same verbs)."""
        if self.external:
            node = os.environ.get("WARREN_TEST_RABBIT_NODE", "rabbit@localhost")
            cmd = ["rabbitmqctl", "-n", node, *args]
        else:
            cmd = [warren_binary(), "ctl", "--data-dir", self.data_dir, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if check and out.returncode != 0:
            raise AssertionError(f"{cmd} failed: {out.stdout}{out.stderr}")
        return out

    def params(self, **overrides):
        """pika.ConnectionParameters for this broker with sane bounded timeouts."""
        kw = dict(
            host=self.host,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.username, self.password),
            socket_timeout=5,
            blocked_connection_timeout=10,
            stack_timeout=10,
            connection_attempts=1,
        )
        kw.update(overrides)
        return pika.ConnectionParameters(**kw)

    def connect(self, **overrides):
        return pika.BlockingConnection(self.params(**overrides))


def warren_binary():
    return os.environ.get("WARREN_BIN", os.path.join(REPO_ROOT, "target", "debug", "warren"))


class WarrenStartError(RuntimeError):
    pass


def _start_warren(data_dir=None, fatal=True, extra_args=()):
    binary = warren_binary()
    if not os.path.exists(binary):
        if fatal:
            pytest.exit(f"Warren binary not found at {binary}; build it or set WARREN_URL", returncode=2)
        raise WarrenStartError(f"Warren binary not found at {binary}")
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="warren-pytest-")
    env = dict(os.environ)
    env["WARREN_LOG"] = "warn"
    # Many brokers run at once: the management API only where a test asks for it.
    env["WARREN_MANAGEMENT_LISTEN"] = "none"
    env["WARREN_PROMETHEUS_LISTEN"] = "none"
    env["WARREN_MQTT_LISTEN"] = "none"
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir, *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        bufsize=1,
    )
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    output: list = []

    def drain():
        try:
            for line in proc.stdout:
                output.append(line)
                lines.put(line)
        finally:
            lines.put(None)

    t = threading.Thread(target=drain, name="warren-stdout", daemon=True)
    t.start()

    deadline = time.monotonic() + STARTUP_TIMEOUT
    host = port = tls_port = http_port = None
    mqtt_ports = {}
    # The listening lines come before the data directory line (which is printed last).
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        m = LISTEN_RE.search(line)
        if m:
            host, port = m.group(1), int(m.group(2))
        m = TLS_LISTEN_RE.search(line)
        if m:
            tls_port = int(m.group(2))
        m = HTTP_LISTEN_RE.search(line)
        if m:
            http_port = int(m.group(2))
        m = MQTT_LISTEN_RE.search(line)
        if m:
            mqtt_ports[m.group(1)] = int(m.group(3))
        if DATA_DIR_RE.search(line):
            break
    if port is None:
        proc.kill()
        proc.wait(timeout=5)
        msg = "Warren did not report its listening port within 20 s:\n" + "".join(output)
        if fatal:
            shutil.rmtree(data_dir, ignore_errors=True)
            pytest.exit(msg, returncode=2)
        raise WarrenStartError(msg)
    url = f"amqp://guest:guest@{host}:{port}/%2f"
    return Broker(host=host, port=port, url=url, external=False, process=proc, output=output, data_dir=data_dir, tls_port=tls_port, http_port=http_port, mqtt_ports=mqtt_ports), data_dir


@pytest.fixture(scope="session")
def broker():
    url = os.environ.get("WARREN_URL")
    if url:
        p = pika.URLParameters(url)
        creds = p.credentials
        yield Broker(
            host=p.host,
            port=p.port,
            url=url,
            external=True,
            vhost=p.virtual_host,
            username=getattr(creds, "username", "guest"),
            password=getattr(creds, "password", "guest"),
        )
        return
    b, data_dir = _start_warren()
    try:
        yield b
    finally:
        proc = b.process
        if proc.poll() is None:
            proc.kill()  # only the PID we started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(data_dir, ignore_errors=True)


def stop_warren(b, hard=False):
    """Stop a Warren we started (by its PID): SIGTERM (graceful) or SIGKILL."""
    proc = b.process
    if proc is None or proc.poll() is not None:
        return
    if hard:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def private_warren(broker):
    """Factory for private Warren instances on a shared data dir (for restart tests).

    Skipped when the suite runs against an external broker (WARREN_URL)."""
    if broker.external:
        pytest.skip("needs a broker we can restart (WARREN_URL is set)")
    data_dir = tempfile.mkdtemp(prefix="warren-pytest-restart-")
    started = []

    class _Factory:
        def start(self, *extra_args):
            b, _ = _start_warren(data_dir=data_dir, fatal=False, extra_args=extra_args)
            started.append(b)
            return b

        def stop(self, b, hard=False):
            stop_warren(b, hard=hard)

    yield _Factory()
    for b in started:
        stop_warren(b, hard=True)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def conn(broker):
    c = broker.connect()
    yield c
    if c.is_open:
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def channel(conn):
    ch = conn.channel()
    yield ch


@pytest.fixture
def connect(broker):
    """Factory for extra connections; all closed at teardown."""
    opened = []

    def _connect(**overrides):
        c = broker.connect(**overrides)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        if c.is_open:
            try:
                c.close()
            except Exception:
                pass


def unique(prefix="t"):
    """A unique resource name (queues/exchanges) so tests never collide."""
    return f"pytest.{prefix}.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def name():
    """Callable fixture: name('q') -> unique name."""
    return unique


@pytest.fixture
def cleanup(broker):
    """Register queues/exchanges to delete after the test (through a fresh connection)."""
    queues, exchanges = [], []

    class _C:
        def queue(self, q):
            queues.append(q)
            return q

        def exchange(self, e):
            exchanges.append(e)
            return e

    yield _C()
    if not queues and not exchanges:
        return
    try:
        c = broker.connect()
    except Exception:
        return
    try:
        for q in queues:
            ch = c.channel()
            try:
                ch.queue_delete(q)
                ch.close()
            except Exception:
                pass
        for e in exchanges:
            ch = c.channel()
            try:
                ch.exchange_delete(e)
                ch.close()
            except Exception:
                pass
    finally:
        try:
            c.close()
        except Exception:
            pass


def drain(conn, channel, queue_name, expected, timeout=5.0, auto_ack=True):
    """Consume until `expected` messages have arrived or the timeout passes.

    Returns list of (method, properties, body)."""
    got = []

    def cb(ch, method, props, body):
        got.append((method, props, body))

    tag = channel.basic_consume(queue_name, cb, auto_ack=auto_ack)
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    channel.basic_cancel(tag)
    return got


def get_all(channel, queue_name, limit=1000):
    """basic_get with auto_ack until empty; returns list of bodies."""
    out = []
    for _ in range(limit):
        m, p, b = channel.basic_get(queue_name, auto_ack=True)
        if m is None:
            break
        out.append(b)
    return out


def wait_for(conn, predicate, timeout=5.0, step=0.05):
    """Pump pika's I/O until predicate() is true; returns the final value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        conn.process_data_events(time_limit=step)


def message_count(channel, queue_name):
    return channel.queue_declare(queue_name, passive=True).method.message_count


def wait_message_count(channel, queue_name, expected, timeout=5.0):
    """Poll queue.declare(passive) until message_count == expected (bounded); return last count.

    RabbitMQ 3.10 routes publishes to classic queues asynchronously (via delegates), so a
    queue.declare right after basic.publish on the same channel may not see them yet."""
    deadline = time.monotonic() + timeout
    while True:
        n = message_count(channel, queue_name)
        if n == expected or time.monotonic() >= deadline:
            return n
        time.sleep(0.02)


def get_one(channel, queue_name, timeout=5.0, auto_ack=True):
    """basic_get, retrying until a message arrives (bounded). Returns (method, props, body)."""
    deadline = time.monotonic() + timeout
    while True:
        res = channel.basic_get(queue_name, auto_ack=auto_ack)
        if res[0] is not None or time.monotonic() >= deadline:
            return res
        time.sleep(0.02)


def queue_exists(conn, queue_name):
    import pika.exceptions as exc

    ch = conn.channel()
    try:
        ch.queue_declare(queue_name, passive=True)
    except exc.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return False
        raise
    ch.close()
    return True


def wait_queue_gone(conn, queue_name, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        if not queue_exists(conn, queue_name):
            return True
        if time.monotonic() >= deadline:
            return False
        conn.process_data_events(time_limit=0.05)


# --------------------------------------------------------------------------- pending features


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "warren_pending(issue): RabbitMQ behaviour Warren does not have yet; against Warren the "
        "test must fail (strict xfail) until that issue lands, against RabbitMQ it runs normally",
    )


def pytest_collection_modifyitems(config, items):
    if os.environ.get("WARREN_URL"):
        return
    for item in items:
        marker = item.get_closest_marker("warren_pending")
        if marker is not None:
            issue = marker.args[0] if marker.args else "?"
            item.add_marker(
                pytest.mark.xfail(strict=True, reason=f"Warren: issue {issue} not implemented yet")
            )

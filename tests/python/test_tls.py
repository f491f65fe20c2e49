"""AMQPS with pika over Python's ssl (OpenSSL): TLS 1.2 and 1.3, client certificates, and the
wrong protocol on each port. Certificates are made at test time with the openssl command.
What RabbitMQ 3.10.8 did with the same certificates (listeners.ssl on a local node) is noted
at each assertion. Warren only: a TLS listener is configured at start."""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import pika
import pytest

from conftest import _start_warren, stop_warren

pytestmark = pytest.mark.skipif(
    os.environ.get("WARREN_URL") is not None, reason="starts its own Warren with TLS"
)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="warren-tls-")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN={ca}", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    # X.509 v3 client certificates (webpki, behind rustls, takes no v1 certificate).
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, ca, extra in (("server", "ca", ["-extfile", "san.ext"]),
                            ("client", "ca", ["-extfile", "client.ext"]),
                            ("stranger", "other-ca", ["-extfile", "client.ext"])):
        subject = "/C=DE/O=Warren Test/OU=qa/CN=carl" if name == "client" else f"/CN={name}"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", subject, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extra, cwd=d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def tls_warren(certs, *extra):
    args = ["--tls-listen", "127.0.0.1:0", "--tls-cert", os.path.join(certs, "server.pem"),
            "--tls-key", os.path.join(certs, "server.key"), *extra]
    b, data_dir = _start_warren(extra_args=args)
    assert b.tls_port, "".join(b.output)
    return b, data_dir


@pytest.fixture
def warren_tls(certs):
    b, data_dir = tls_warren(certs)
    yield b
    stop_warren(b, hard=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def context(certs, version=None, client=None):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if client:
        ctx.load_cert_chain(os.path.join(certs, f"{client}.pem"), os.path.join(certs, f"{client}.key"))
    return ctx


def connect(b, ctx):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="localhost", port=b.tls_port, ssl_options=pika.SSLOptions(ctx, "localhost"),
        socket_timeout=5, connection_attempts=1))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_publish_and_consume_over_tls_1_2_and_1_3(certs, warren_tls, version):
    conn = connect(warren_tls, context(certs, version))
    assert conn._impl._transport._sock.version() == {
        ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    bodies = [os.urandom(n) for n in (0, 1, 65536, 300_000)]
    for body in bodies:
        ch.basic_publish("", q, body)
    got = []
    for _ in bodies:
        m = None
        for _ in range(50):
            m = ch.basic_get(q, auto_ack=True)
            if m[0]:
                break
            conn.sleep(0.02)
        got.append(m[2])
    assert got == bodies
    conn.close()


def test_plaintext_client_on_the_tls_port_gets_a_fatal_alert_and_the_socket_closed(warren_tls):
    s = socket.create_connection(("127.0.0.1", warren_tls.tls_port), timeout=5)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    data = b""
    try:
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    # RabbitMQ 3.10: a fatal TLS alert record (15 03 01 00 02 02 0a, unexpected_message) then
    # a reset. Warren (rustls): a fatal alert too (decode_error), then close.
    assert data[:1] == b"\x15" and data[5:6] == b"\x02", data.hex()


def test_tls_client_on_the_plaintext_port_fails_its_handshake(certs, warren_tls):
    # Both brokers answer the ClientHello with the AMQP protocol header, which the client
    # reads as a bad TLS record ("wrong version number", the same with RabbitMQ 3.10).
    s = socket.create_connection(("127.0.0.1", warren_tls.port), timeout=5)
    with pytest.raises(ssl.SSLError) as e:
        context(certs).wrap_socket(s, server_hostname="localhost")
    assert "WRONG_VERSION_NUMBER" in str(e.value)


def test_verify_peer_and_fail_if_no_peer_cert(certs):
    ca = os.path.join(certs, "ca.pem")
    b, data_dir = tls_warren(certs, "--tls-ca", ca, "--tls-verify-peer", "true",
                             "--tls-fail-if-no-peer-cert", "true")
    try:
        connect(b, context(certs, client="client")).close()
        for client in (None, "stranger"):
            with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError, OSError)):
                connect(b, context(certs, client=client))
    finally:
        stop_warren(b, hard=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    # verify_peer alone: no certificate is fine, a certificate from an unknown CA is not.
    b, data_dir = tls_warren(certs, "--tls-ca", ca, "--tls-verify-peer", "true")
    try:
        connect(b, context(certs)).close()
        connect(b, context(certs, client="client")).close()
        with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError, OSError)):
            connect(b, context(certs, client="stranger"))
    finally:
        stop_warren(b, hard=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def mechanisms(sock):
    """The mechanisms field of connection.start."""
    import struct
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    buf = b""
    while len(buf) < 7 or len(buf) < 8 + struct.unpack(">I", buf[3:7])[0]:
        chunk = sock.recv(4096)
        assert chunk, "closed before connection.start"
        buf += chunk
    p = buf[7:]
    i = 4 + 2
    i += 4 + struct.unpack(">I", p[i:i + 4])[0]
    n = struct.unpack(">I", p[i:i + 4])[0]
    return p[i + 4:i + 4 + n]


def external(b, ctx):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="localhost", port=b.tls_port, ssl_options=pika.SSLOptions(ctx, "localhost"),
        credentials=pika.credentials.ExternalCredentials(), socket_timeout=5,
        connection_attempts=1))


# RabbitMQ 3.10.8 with rabbitmq_auth_mechanism_ssl (verify_peer, EXTERNAL enabled) was
# asked the same: it offered "EXTERNAL PLAIN AMQPLAIN" on TLS connections and "PLAIN
# AMQPLAIN" on plain ones; it took the user name "CN=carl,OU=qa,O=Warren Test,C=DE" from
# the subject /C=DE/O=Warren Test/OU=qa/CN=carl; without a certificate it refused with 403.
DN = "CN=carl,OU=qa,O=Warren Test,C=DE"


def test_external_login_with_the_certificates_distinguished_name(certs):
    ca = os.path.join(certs, "ca.pem")
    b, data_dir = tls_warren(certs, "--tls-ca", ca, "--tls-verify-peer", "true")
    try:
        plain = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        assert mechanisms(plain) == b"PLAIN AMQPLAIN"
        tls = context(certs).wrap_socket(
            socket.create_connection(("127.0.0.1", b.tls_port), timeout=5),
            server_hostname="localhost")
        assert mechanisms(tls) == b"EXTERNAL PLAIN AMQPLAIN"
        b.ctl("add_user", DN, "unused")
        b.ctl("clear_password", DN)
        b.ctl("set_permissions", "-p", "/", DN, ".*", ".*", ".*")
        conn = external(b, context(certs, client="client"))
        ch = conn.channel()
        ch.queue_declare("", exclusive=True)
        conn.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
            external(b, context(certs))
        assert "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL" in str(e.value)
        # PLAIN works on the TLS listener too.
        connect(b, context(certs)).close()
    finally:
        stop_warren(b, hard=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_external_login_from_the_common_name(certs):
    ca = os.path.join(certs, "ca.pem")
    b, data_dir = tls_warren(certs, "--tls-ca", ca, "--tls-verify-peer", "true",
                             "--tls-login-from", "common_name")
    try:
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            external(b, context(certs, client="client"))  # no user "carl" yet
        b.ctl("add_user", "carl", "unused")
        b.ctl("set_permissions", "-p", "/", "carl", ".*", ".*", ".*")
        external(b, context(certs, client="client")).close()
    finally:
        stop_warren(b, hard=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_management_api_over_https(certs):
    """--management-tls-listen serves the API with the AMQPS certificate (RabbitMQ's 15671)."""
    b, data_dir = tls_warren(certs, "--management-tls-listen", "127.0.0.1:0")
    try:
        https = [l for l in b.output if "listening for HTTPS on" in l]
        assert https, "".join(b.output)
        port = int(https[0].rsplit(":", 1)[1])
        import requests
        r = requests.get(f"https://localhost:{port}/api/overview", auth=("guest", "guest"),
                         verify=os.path.join(certs, "ca.pem"), timeout=10)
        assert r.status_code == 200
        o = r.json()
        assert any(l["protocol"] == "https" and l["port"] == port for l in o["listeners"])
        assert any(l["protocol"] == "amqp/ssl" and l["port"] == b.tls_port for l in o["listeners"])
        # Plain HTTP on the HTTPS port gets no answer (the TLS handshake fails).
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/api/overview", auth=("guest", "guest"), timeout=5)
    finally:
        stop_warren(b, hard=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_mqtt_over_tls_and_secure_websocket(certs):
    from mqtt_helpers import V5, Client, unique
    args = ["--tls-cert", os.path.join(certs, "server.pem"), "--tls-key", os.path.join(certs, "server.key"),
            "--mqtt-tls-listen", "127.0.0.1:0", "--mqtt-wss-listen", "127.0.0.1:0"]
    b, data_dir = _start_warren(extra_args=args)
    try:
        ca = os.path.join(certs, "ca.pem")
        t = unique("tls")
        sub = Client("localhost", b.mqtt_ports["MQTTS"], version=V5, ca_certs=ca)
        sub.subscribe(t, 1)
        Client("localhost", b.mqtt_ports["MQTT over secure WebSocket"], transport="websockets",
               ca_certs=ca).publish(t, b"sealed", qos=1)
        assert sub.get().payload == b"sealed"
        sub.disconnect()
        # A plaintext MQTT client on the TLS port gets no CONNACK.
        s = socket.create_connection(("127.0.0.1", b.mqtt_ports["MQTTS"]), timeout=5)
        s.sendall(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a")
        data = s.recv(100)
        assert not data.startswith(b"\x20")
        s.close()
    finally:
        stop_warren(b, hard=True)
        shutil.rmtree(data_dir, ignore_errors=True)

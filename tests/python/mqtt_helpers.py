"""A small synchronous layer over paho-mqtt 2.x for the MQTT suite: connect and wait for
CONNACK, collect messages in a queue, wait for acknowledgements, all with bounded waits;
plus a raw-socket MQTT client for what no library sends (malformed packets, duplicate
QoS 2 publishes, silence)."""

import queue
import socket
import struct
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
WAIT = 5.0


def unique(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Client:
    """One paho client on its own network thread."""

    def __init__(self, host, port, version=V311, client_id=None, clean=True, username="guest",
                 password="guest", keepalive=30, will=None, session_expiry=None,
                 transport="tcp", connect_props=None, connect=True, ca_certs=None):
        self.host, self.port, self.version = host, port, version
        self.client_id = client_id if client_id is not None else unique()
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        kw = dict(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id,
                  protocol=version, transport=transport)
        if version != V5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(**kw)
        if transport == "websockets":
            self.c.ws_set_options(path="/ws")
        if ca_certs:
            self.c.tls_set(ca_certs=ca_certs)
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain, props = (list(will) + [None] * 5)[:5]
            self.c.will_set(topic, payload, qos or 0, bool(retain), properties=props)
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, f, rc, p: self.connacks.put((f, rc, p))
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs))
        self.c.on_unsubscribe = lambda c, u, mid, rcs, p: self.unsubacks.put((mid, rcs))
        self.clean = clean
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.connect_props = connect_props
        if connect:
            self.connect()

    def connect(self, expect_ok=True):
        kw = {}
        props = self.connect_props
        if self.version == V5:
            kw["clean_start"] = self.clean
            if self.session_expiry is not None:
                props = props or Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
        if props is not None:
            kw["properties"] = props
        self.c.connect(self.host, self.port, keepalive=self.keepalive, **kw)
        self.c.loop_start()
        flags, rc, props = self.connacks.get(timeout=WAIT)
        self.connack_flags, self.connack_rc, self.connack_props = flags, rc, props
        if expect_ok:
            assert not rc.is_failure, f"CONNACK {rc}"
        return flags, rc, props

    def subscribe(self, topic, qos=0, options=None, props=None):
        if self.version == V5:
            opts = options or SubscribeOptions(qos=qos)
            rc, mid = self.c.subscribe(topic, options=opts, properties=props)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        got_mid, codes = self.subacks.get(timeout=WAIT)
        assert got_mid == mid
        return codes

    def unsubscribe(self, topic):
        rc, mid = self.c.unsubscribe(topic)
        got_mid, codes = self.unsubacks.get(timeout=WAIT)
        assert got_mid == mid
        return codes

    def publish(self, topic, payload, qos=0, retain=False, props=None, wait=True):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if wait and qos > 0:
            info.wait_for_publish(timeout=WAIT)
            assert info.is_published(), f"no acknowledgement for {topic}"
        return info

    def get(self, timeout=WAIT):
        return self.messages.get(timeout=timeout)

    def none(self, wait=0.5):
        """Asserts nothing arrives within `wait` seconds."""
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic}: {m.payload!r}")

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT (the will is published)."""
        self.c.loop_stop()
        self.c.socket().close()


def props(kind, **values):
    p = Properties(kind)
    for k, v in values.items():
        setattr(p, k, v)
    return p


# -- raw packets -------------------------------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id, clean=True, keepalive=30, user="guest", password="guest", level=4,
                   props=b""):
    flags = (0x02 if clean else 0) | (0x80 if user else 0) | (0x40 if password else 0)
    body = _str("MQTT") + bytes([level, flags]) + struct.pack(">H", keepalive)
    if level == 5:
        body += _varint(len(props)) + props
    body += _str(client_id)
    if user:
        body += _str(user)
    if password:
        body += _str(password)
    return packet(0x10, body)


def publish_packet(topic, payload, qos=0, pid=None, dup=False, retain=False, v5=False):
    body = _str(topic)
    if qos:
        body += struct.pack(">H", pid)
    if v5:
        body += b"\x00"
    body += payload
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1) | int(retain), body)


class Raw:
    """A socket speaking raw MQTT."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=WAIT)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def read_packet(self, timeout=WAIT):
        """(first byte, body), or None when the broker closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    n += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + n:
                    first, body = self.buf[0], self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return first, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no packet")
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def closed(self, timeout=WAIT):
        """Reads until the broker closes; answers the packets it sent before closing."""
        seen = []
        while True:
            p = self.read_packet(timeout)
            if p is None:
                return seen
            seen.append(p)

    def close(self):
        self.s.close()


# -- SCRAM-SHA-256 (RFC 5802 / RFC 7677), the client's side, for MQTT 5 enhanced auth ----

def v5_props(*items):
    """Encoded MQTT 5 properties from (identifier, kind, value); kind 's' string, 'b' binary."""
    out = b""
    for ident, kind, value in items:
        data = value.encode() if kind == "s" else value
        out += bytes([ident]) + struct.pack(">H", len(data)) + data
    return out


def auth_packet(reason, method, data):
    props = v5_props((0x15, "s", method), (0x16, "b", data))
    return packet(0xF0, bytes([reason]) + _varint(len(props)) + props)


def read_v5_props(body):
    """{identifier: value} of the properties at the start of `body` (strings and binaries)."""
    n, mult, i = 0, 1, 0
    while True:
        b = body[i]
        n += (b & 0x7F) * mult
        mult *= 128
        i += 1
        if not b & 0x80:
            break
    props, end = {}, i + n
    while i < end:
        ident = body[i]
        i += 1
        if ident in (0x15, 0x16, 0x1F, 0x12, 0x03, 0x08, 0x09):
            ln = struct.unpack(">H", body[i:i + 2])[0]
            props[ident] = body[i + 2:i + 2 + ln]
            i += 2 + ln
        elif ident in (0x11, 0x27, 0x02, 0x18):
            props[ident] = struct.unpack(">I", body[i:i + 4])[0]
            i += 4
        elif ident in (0x21, 0x22, 0x13, 0x23):
            props[ident] = struct.unpack(">H", body[i:i + 2])[0]
            i += 2
        elif ident == 0x26:
            kl = struct.unpack(">H", body[i:i + 2])[0]
            vl = struct.unpack(">H", body[i + 2 + kl:i + 4 + kl])[0]
            i += 4 + kl + vl
        else:  # one-byte properties
            props[ident] = body[i]
            i += 1
    return props


class Scram:
    """One SCRAM-SHA-256 exchange from the client's side."""

    def __init__(self, user, password):
        import base64
        import os as _os
        self.password = password
        self.nonce = base64.b64encode(_os.urandom(18)).decode()
        self.bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={self.nonce}"

    def first(self):
        return ("n,," + self.bare).encode()

    def final(self, server_first):
        import base64
        import hashlib
        import hmac
        server_first = server_first.decode()
        fields = dict(f.split("=", 1) for f in server_first.split(","))
        assert fields["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(),
                                     base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{self.bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_server_final = b"v=" + base64.b64encode(
            hmac.new(server_key, auth_message, hashlib.sha256).digest())
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

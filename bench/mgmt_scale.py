#!/usr/bin/env python3
"""Management API at scale: how long listing takes with many queues and connections.

Declares QUEUES queues (over AMQP, pika) and opens CONNECTIONS idle AMQP connections (raw
sockets doing the AMQP 0-9-1 handshake), then times the listing endpoints tools call: the
first page of /api/queues and /api/connections (page_size 100 and 500), a page from the
middle, a name-filtered page, and the whole unpaged list. Prints one line per request:
median and max of REPEAT runs, the response size, and the broker's RSS before and after
(when its PID is given). Loopback only; everything it makes is removed at the end.

  bench/mgmt_scale.py --amqp-port 5672 --http http://127.0.0.1:15672 [--pid PID]
                      [--queues 10000] [--connections 10000] [--repeat 5]
"""

import argparse
import socket
import statistics
import struct
import time

import pika
import requests

AUTH = ("guest", "guest")


def rss_mb(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def shortstr(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def read_frame(sock):
    head = b""
    while len(head) < 7:
        chunk = sock.recv(7 - len(head))
        if not chunk:
            raise ConnectionError("closed during handshake")
        head += chunk
    _, _, size = struct.unpack(">BHI", head)
    body = b""
    while len(body) < size + 1:
        chunk = sock.recv(size + 1 - len(body))
        if not chunk:
            raise ConnectionError("closed during handshake")
        body += chunk
    return body[:-1]


def open_connection(port):
    """An idle AMQP connection: handshake only, heartbeats off."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    read_frame(s)  # connection.start
    props = struct.pack(">I", 0)
    start_ok = struct.pack(">HH", 10, 11) + props + shortstr("PLAIN") + longstr(b"\x00guest\x00guest") + shortstr("en_US")
    s.sendall(frame(1, 0, start_ok))
    tune = read_frame(s)
    channel_max, frame_max, _ = struct.unpack(">HIH", tune[4:12])
    s.sendall(frame(1, 0, struct.pack(">HHHIH", 10, 31, channel_max, frame_max, 0)))
    s.sendall(frame(1, 0, struct.pack(">HH", 10, 40) + shortstr("/") + shortstr("") + b"\x00"))
    read_frame(s)  # connection.open-ok
    return s


def timed(url, repeat):
    times, size = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        r = requests.get(url, auth=AUTH, timeout=300)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        size = len(r.content)
    return statistics.median(times), max(times), size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amqp-port", type=int, default=5672)
    ap.add_argument("--http", default="http://127.0.0.1:15672")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--queues", type=int, default=10000)
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--label", default="broker")
    a = ap.parse_args()
    api = a.http.rstrip("/") + "/api"
    print(f"# {a.label}: {a.queues} queues, {a.connections} connections; RSS {rss_mb(a.pid)} MB at start")
    # No heartbeats: this connection idles while the listings are timed.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", a.amqp_port, credentials=pika.PlainCredentials(*AUTH), heartbeat=0))
    ch = conn.channel()
    t = time.perf_counter()
    for i in range(a.queues):
        ch.queue_declare(f"scale-{i:05d}", durable=False)
    print(f"# declared {a.queues} queues in {time.perf_counter() - t:.1f} s")
    sockets = []
    t = time.perf_counter()
    try:
        for _ in range(a.connections):
            sockets.append(open_connection(a.amqp_port))
        print(f"# opened {len(sockets)} connections in {time.perf_counter() - t:.1f} s; RSS {rss_mb(a.pid)} MB")
        time.sleep(6)  # one statistics interval on RabbitMQ, so its lists are complete
        for path in ["/queues?page=1&page_size=100", "/queues?page=1&page_size=500",
                     f"/queues?page={max(1, a.queues // 200)}&page_size=100",
                     "/queues?page=1&page_size=100&name=scale-0999", "/queues",
                     "/queues?disable_stats=true&enable_queue_totals=true",
                     "/connections?page=1&page_size=100", "/connections?page=1&page_size=500",
                     "/connections", "/overview"]:
            med, worst, size = timed(api + path, a.repeat)
            print(f"{a.label}\tGET /api{path}\tmedian {med:.0f} ms\tmax {worst:.0f} ms\t{size / 1024:.0f} KiB")
        print(f"# RSS {rss_mb(a.pid)} MB after listing")
    finally:
        for s in sockets:
            s.close()
        for i in range(a.queues):
            ch.queue_delete(f"scale-{i:05d}")
        conn.close()


if __name__ == "__main__":
    main()

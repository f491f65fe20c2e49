#!/usr/bin/env python3
"""Publish-to-delivery latency at a fixed rate, measured with pika (not warren-perf).

An independent check of scenario 8: a publisher process sends RATE msg/s for SECONDS
(each body carries its send time), a consumer process in another connection takes them
and records the delay. Both sides are plain pika, so nothing here shares code with Warren.

    bench/latency_probe.py URI [--rate 1000] [--seconds 10] [--ack auto|manual]
                           [--prefetch N] [--persistent] [--confirm]

Prints one JSON line: p50/p99/p99.9/max in ms and the counts. Bounded: it stops after
SECONDS plus a 5 s drain.
"""

import argparse
import json
import multiprocessing as mp
import struct
import time

import pika


def consume(uri, queue, ack, prefetch, expected, ready, out):
    conn = pika.BlockingConnection(pika.URLParameters(uri))
    ch = conn.channel()
    if prefetch:
        ch.basic_qos(prefetch_count=prefetch)
    lat = []
    deadline = [None]

    def on_msg(ch, method, _props, body):
        sent = struct.unpack_from("<q", body)[0]
        lat.append((time.time_ns() - sent) / 1e6)
        if ack == "manual":
            ch.basic_ack(method.delivery_tag)
        if len(lat) >= expected:
            ch.stop_consuming()

    ch.basic_consume(queue, on_msg, auto_ack=(ack == "auto"))
    ready.set()
    start = time.monotonic()
    while len(lat) < expected and time.monotonic() - start < expected / 100 + 60:
        conn.process_data_events(time_limit=0.2)
        if deadline[0] is None and out.poll():
            deadline[0] = time.monotonic() + 5
        if deadline[0] is not None and time.monotonic() > deadline[0]:
            break
    conn.close()
    out.send(lat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--ack", choices=["auto", "manual"], default="auto")
    ap.add_argument("--prefetch", type=int, default=0)
    ap.add_argument("--persistent", action="store_true")
    ap.add_argument("--confirm", action="store_true")
    a = ap.parse_args()

    queue = f"latency-probe-{int(time.time())}"
    conn = pika.BlockingConnection(pika.URLParameters(a.uri))
    ch = conn.channel()
    ch.queue_declare(queue, durable=a.persistent)
    if a.confirm:
        ch.confirm_delivery()
    total = int(a.rate * a.seconds)
    ready = mp.Event()
    parent, child = mp.Pipe()
    c = mp.Process(target=consume, args=(a.uri, queue, a.ack, a.prefetch, total, ready, child))
    c.start()
    ready.wait(10)
    time.sleep(0.3)
    props = pika.BasicProperties(delivery_mode=2 if a.persistent else 1)
    pad = b"x" * max(0, a.size - 8)
    t0 = time.monotonic()
    for i in range(total):
        due = t0 + i / a.rate
        while True:
            now = time.monotonic()
            if now >= due:
                break
            if due - now > 0.0005:
                time.sleep(due - now - 0.0003)
        ch.basic_publish("", queue, struct.pack("<q", time.time_ns()) + pad, props)
        if i % 100 == 0:
            conn.process_data_events(0)
    parent.send("done")
    lat = parent.recv()
    c.join(10)
    ch.queue_delete(queue)
    conn.close()
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))], 3) if lat else None

    print(json.dumps({"rate": a.rate, "sent": total, "received": len(lat), "ack": a.ack,
                      "persistent": a.persistent, "confirm": a.confirm,
                      "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
                      "max_ms": round(lat[-1], 3) if lat else None}))


if __name__ == "__main__":
    main()

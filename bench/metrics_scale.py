#!/usr/bin/env python3
"""Prometheus scrapes at scale, and whether scraping slows publishing.

Declares QUEUES queues (pika; one message in each, so the gauges are not all zero), then:
  1. times scrapes of /metrics and /metrics/per-object (median and max of REPEAT, size);
  2. runs warren-perf's scenario 1 (1 producer, 1 consumer, 16 B, no confirms, auto-ack)
     for DURATION seconds ROUNDS times each way, interleaved: with no scrapes, and with a
     per-object scrape every second; prints each run's consumed msg/s and the scrapes'
     times during the load.
Loopback only; every loop is bounded; the queues are deleted at the end.

  bench/metrics_scale.py --amqp-port 5672 --metrics http://127.0.0.1:15692
                         --perf target/release/warren-perf [--queues 10000] [--duration 10]
"""

import argparse
import json
import os
import statistics
import subprocess
import threading
import time

import pika
import requests


def cpu_seconds(pid):
    """User + system CPU of a process, from /proc (None without a PID)."""
    if not pid:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(url, repeat):
    times, size = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        r = requests.get(url, timeout=60)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        size = len(r.content)
    return statistics.median(times), max(times), size


def perf_run(perf, port, duration, label):
    out = subprocess.run(
        [perf, "--uri", f"amqp://guest:guest@127.0.0.1:{port}/%2f", "--queue-pattern", "metrics-s1-%d",
         "--size", "16", "--duration", str(duration), "--delete-queues", "--json", "--quiet", "--label", label],
        capture_output=True, text=True, timeout=duration + 60, check=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amqp-port", type=int, default=5672)
    ap.add_argument("--metrics", default="http://127.0.0.1:15692")
    ap.add_argument("--perf", default="target/release/warren-perf")
    ap.add_argument("--queues", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--label", default="broker")
    ap.add_argument("--pid", type=int, help="the broker's PID, for its CPU per message")
    a = ap.parse_args()
    base = a.metrics.rstrip("/")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", a.amqp_port, heartbeat=0))
    ch = conn.channel()
    try:
        t = time.perf_counter()
        for i in range(a.queues):
            name = f"mscale-{i:05d}"
            ch.queue_declare(name, durable=False)
            ch.basic_publish("", name, b"x")
        print(f"# {a.label}: declared {a.queues} queues (one message each) in {time.perf_counter() - t:.1f} s")
        for path in ["/metrics", "/metrics/per-object"]:
            med, worst, size = timed(base + path, a.repeat)
            print(f"{a.label}\tGET {path}\tmedian {med:.0f} ms\tmax {worst:.0f} ms\t{size / 1024:.0f} KiB")
        for round_no in range(a.rounds):
            for scraping in (False, True):
                stop = threading.Event()
                times = []

                def scrape():
                    while not stop.wait(1.0):
                        t0 = time.perf_counter()
                        requests.get(base + "/metrics/per-object", timeout=60).raise_for_status()
                        times.append((time.perf_counter() - t0) * 1000)

                scraper = threading.Thread(target=scrape, daemon=True)
                if scraping:
                    scraper.start()
                cpu0 = cpu_seconds(a.pid)
                result = perf_run(a.perf, a.amqp_port, a.duration, a.label)
                cpu1 = cpu_seconds(a.pid)
                stop.set()
                if scraping:
                    scraper.join(timeout=60)
                extra = (f"\t{len(times)} scrapes, median {statistics.median(times):.0f} ms, max {max(times):.0f} ms"
                         if times else "")
                kind = "scrape every 1 s" if scraping else "no scrapes"
                if cpu0 is not None and result.get("consumed"):
                    extra = f"\tbroker {(cpu1 - cpu0) * 1e6 / result['consumed']:.2f} CPU µs/msg" + extra
                print(f"{a.label}\ts1 round {round_no + 1}, {kind}\t{result['consume_rate']:.0f} msg/s{extra}")
    finally:
        for i in range(a.queues):
            ch.queue_delete(f"mscale-{i:05d}")
        conn.close()


if __name__ == "__main__":
    main()

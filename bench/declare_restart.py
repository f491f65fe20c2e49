"""Declares N durable queues one after another on one channel (each declare waits for its
declare-ok, as a client creating topology does), then, given --check, verifies after a
restart that they all exist. Prints one JSON line. Used by bench/declare_restart.sh."""
import argparse
import json
import time

import pika

p = argparse.ArgumentParser()
p.add_argument("--uri", required=True)
p.add_argument("--count", type=int, default=10000)
p.add_argument("--prefix", default="decl-")
p.add_argument("--check", action="store_true", help="only check that the queues exist")
p.add_argument("--delete", action="store_true", help="delete the queues")
a = p.parse_args()

conn = pika.BlockingConnection(pika.URLParameters(a.uri))
ch = conn.channel()
start = time.monotonic()
for i in range(a.count):
    name = f"{a.prefix}{i:05d}"
    if a.delete:
        ch.queue_delete(name)
    else:
        ch.queue_declare(name, durable=True, passive=a.check)
elapsed = time.monotonic() - start
conn.close()
what = "delete" if a.delete else ("check" if a.check else "declare")
print(json.dumps({"op": what, "count": a.count, "seconds": round(elapsed, 3),
                  "per_second": round(a.count / elapsed, 1)}))

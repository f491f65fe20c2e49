#!/usr/bin/env bash
# "Declare 10,000 durable queues, then restart": Warren and RabbitMQ side by side.
#
#   bench/declare_restart.sh [COUNT]     # default 10000
#
# Warren: target/release/warren on 127.0.0.1:5681 with a temporary data dir, stopped with
# SIGTERM and started again. RabbitMQ: the node at 127.0.0.1:5673 (started detached with the
# machine's /etc/rabbitmq config if not running), stopped with `rabbitmqctl stop` and started
# again. For each: time to declare COUNT durable queues one by one (pika, each declare waits
# for its declare-ok), time from the start command until the AMQP port answers after the
# restart, and time to check them all passively (SKIP_RABBITMQ=1: Warren only; WARREN_BIN: another
# build). Needs python3 with pika ($PYTHON, default
# .venv/bin/python). Only processes this script started are stopped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${1:-10000}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WARREN_BIN="${WARREN_BIN:-$ROOT/target/release/warren}"
PORT=5681
DATA="$(mktemp -d /tmp/warren-decl.XXXXXX)"
WARREN_PID=""

cleanup() {
    if [[ -n "$WARREN_PID" ]]; then kill "$WARREN_PID" 2>/dev/null || true; fi
    rm -rf "$DATA" "$DATA.log"
}
trap cleanup EXIT

wait_port() { # host port seconds
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

now() { date +%s.%N; }

start_warren() {
    "$WARREN_BIN" --listen "127.0.0.1:$PORT" --management-listen none --data-dir "$DATA" >>"$DATA.log" 2>&1 &
    WARREN_PID=$!
}

echo "== Warren ($WARREN_BIN)"
start_warren
wait_port 127.0.0.1 "$PORT" 30
W_URI="amqp://guest:guest@127.0.0.1:$PORT/%2f"
"$PYTHON" "$ROOT/bench/declare_restart.py" --uri "$W_URI" --count "$COUNT"
kill -TERM "$WARREN_PID"; wait "$WARREN_PID" || true
t0="$(now)"; start_warren; wait_port 127.0.0.1 "$PORT" 120; t1="$(now)"
echo "{\"op\": \"restart\", \"seconds\": $(echo "$t1 - $t0" | bc)}"
"$PYTHON" "$ROOT/bench/declare_restart.py" --uri "$W_URI" --count "$COUNT" --check
echo "definitions log: $(stat -c %s "$DATA/store/metadata.log" 2>/dev/null || echo n/a) bytes"
kill -TERM "$WARREN_PID"; wait "$WARREN_PID" || true; WARREN_PID=""

if [[ -z "${SKIP_RABBITMQ:-}" ]] && command -v rabbitmq-server >/dev/null; then
    echo "== RabbitMQ"
    R_URI="amqp://guest:guest@127.0.0.1:5673/%2f"
    RABBIT_WAS_RUNNING=1
    if ! wait_port 127.0.0.1 5673 1; then
        RABBIT_WAS_RUNNING=""
        rabbitmq-server -detached
        wait_port 127.0.0.1 5673 120
    fi
    "$PYTHON" "$ROOT/bench/declare_restart.py" --uri "$R_URI" --count "$COUNT"
    timeout 120 rabbitmqctl stop >/dev/null
    t0="$(now)"; rabbitmq-server -detached; wait_port 127.0.0.1 5673 300; t1="$(now)"
    echo "{\"op\": \"restart\", \"seconds\": $(echo "$t1 - $t0" | bc)}"
    "$PYTHON" "$ROOT/bench/declare_restart.py" --uri "$R_URI" --count "$COUNT" --check
    "$PYTHON" "$ROOT/bench/declare_restart.py" --uri "$R_URI" --count "$COUNT" --delete
    # The restart above is ours; a node that was not running before is stopped again.
    if [[ -z "$RABBIT_WAS_RUNNING" ]]; then timeout 120 rabbitmqctl stop >/dev/null || true; fi
fi

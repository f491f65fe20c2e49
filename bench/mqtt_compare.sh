#!/usr/bin/env bash
# Warren vs mosquitto vs RabbitMQ's MQTT plugin, same machine, same run, same load
# generator (`warren perf` with an mqtt:// URI):
#
#   bench/mqtt_compare.sh [SCENARIO...]     # default: m1 m2 m3 m4 m6 m5
#
#   m1  QoS 0, 16 B, 1 publisher -> 1 subscriber
#   m2  QoS 1, 16 B, 1 -> 1 (a publisher window of 100 unacknowledged messages)
#   m3  QoS 2, 16 B, 1 -> 1
#   m4  QoS 0, 16 B, 1 -> 100 subscribers (fan-out)
#   m5  $IDLE_CLIENTS (10000) idle connected clients: broker RSS per client
#   m6  QoS 1, 16 B, 1 -> 1 at 1,000 msg/s: end-to-end latency p50 / p99
#
# Warren (target/release/warren) runs on 127.0.0.1:$WARREN_MQTT_PORT (1893) with a temporary
# data directory; mosquitto (if installed) on 127.0.0.1:$MOSQUITTO_PORT (1894) with a
# temporary config (no persistence); RabbitMQ's MQTT plugin is used at $RABBITMQ_MQTT_URI
# (mqtt://guest:guest@127.0.0.1:1885: enable rabbitmq_mqtt and add
# `mqtt.listeners.tcp.1 = 127.0.0.1:1885` to /etc/rabbitmq/rabbitmq.conf) when reachable.
# RabbitMQ 3.10's plugin has no QoS 2 (it downgrades to 1), so m3 against it is QoS 1 in
# effect and marked so. Broker CPU µs per message come from /proc/PID/stat before and after
# each run; RSS from VmRSS, sampled every 200 ms (m5: peak while the clients are connected,
# minus the RSS before, per client). Raw JSON lines in $OUT_DIR. DURATION (10 s) per run.
# Every loop is bounded; only processes this script started are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARREN_BIN="${WARREN_BIN:-$ROOT/target/release/warren}"
WARREN_MQTT_PORT="${WARREN_MQTT_PORT:-1893}"
MOSQUITTO_PORT="${MOSQUITTO_PORT:-1894}"
RABBITMQ_MQTT_URI="${RABBITMQ_MQTT_URI:-mqtt://guest:guest@127.0.0.1:1885}"
DURATION="${DURATION:-10}"
IDLE_CLIENTS="${IDLE_CLIENTS:-10000}"
OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/warren-mqtt-bench.XXXXXX)}"
CLK_TCK="$(getconf CLK_TCK)"
mkdir -p "$OUT_DIR"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WARREN_PID="" WARREN_DATA="" MOSQ_PID="" MOSQ_DIR="" RABBIT_PID=""
log() { echo "mqtt_compare: $*" >&2; }

cleanup() {
    if [[ -n "$WARREN_PID" ]]; then kill "$WARREN_PID" 2>/dev/null || true; wait "$WARREN_PID" 2>/dev/null || true; fi
    if [[ -n "$MOSQ_PID" ]]; then kill "$MOSQ_PID" 2>/dev/null || true; wait "$MOSQ_PID" 2>/dev/null || true; fi
    [[ -n "$WARREN_DATA" ]] && rm -rf "$WARREN_DATA"
    [[ -n "$MOSQ_DIR" ]] && rm -rf "$MOSQ_DIR"
    return 0
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() { # HOST PORT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do port_open "$1" "$2" && return 0; sleep 0.1; done
    return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

[[ -x "$WARREN_BIN" ]] || (cd "$ROOT" && cargo build --release -q -p warren)
if port_open 127.0.0.1 "$WARREN_MQTT_PORT"; then log "port $WARREN_MQTT_PORT is taken"; exit 1; fi

start_warren() {
    WARREN_DATA="$(mktemp -d /tmp/warren-mqtt-bench-data.XXXXXX)"
    "$WARREN_BIN" --listen 127.0.0.1:0 --mqtt-listen "127.0.0.1:$WARREN_MQTT_PORT" \
        --management-listen none --prometheus-listen none --data-dir "$WARREN_DATA" \
        --log warn >"$OUT_DIR/warren.log" 2>&1 &
    WARREN_PID=$!
    wait_port 127.0.0.1 "$WARREN_MQTT_PORT" 20 || { log "Warren did not start"; exit 1; }
}

start_mosquitto() {
    command -v mosquitto >/dev/null || { log "mosquitto not installed: skipped"; return 0; }
    if port_open 127.0.0.1 "$MOSQUITTO_PORT"; then log "port $MOSQUITTO_PORT is taken"; exit 1; fi
    MOSQ_DIR="$(mktemp -d /tmp/warren-mqtt-bench-mosq.XXXXXX)"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n' \
        "$MOSQUITTO_PORT" >"$MOSQ_DIR/mosquitto.conf"
    mosquitto -c "$MOSQ_DIR/mosquitto.conf" >"$OUT_DIR/mosquitto.log" 2>&1 &
    MOSQ_PID=$!
    wait_port 127.0.0.1 "$MOSQUITTO_PORT" 10 || { log "mosquitto did not start"; exit 1; }
}

find_rabbit() {
    local hp="${RABBITMQ_MQTT_URI##*@}"
    hp="${hp#mqtt://}"
    if port_open "${hp%:*}" "${hp##*:}"; then
        RABBIT_PID="${RABBITMQ_PID:-$(pgrep -o -f 'beam.smp.*rabbit' || true)}"
    fi
    [[ -n "$RABBIT_PID" ]] || log "no RabbitMQ MQTT at $RABBITMQ_MQTT_URI: skipped"
}

# run NAME URI PID SCENARIO: one scenario against one broker, a JSON line appended.
run() {
    local name="$1" uri="$2" pid="$3" s="$4" args=() before after rss0 rss1 json
    case "$s" in
        m1) args=(--qos 0 --producers 1 --consumers 1) ;;
        m2) args=(--qos 1 --producers 1 --consumers 1 --confirm 100) ;;
        m3) args=(--qos 2 --producers 1 --consumers 1 --confirm 100) ;;
        m4) args=(--qos 0 --producers 1 --consumers 100) ;;
        m5) args=(--connections-only "$IDLE_CLIENTS") ;;
        m6) args=(--qos 1 --producers 1 --consumers 1 --rate 1000) ;;
    esac
    before="$(cpu_ticks "$pid")"
    rss0="$(rss_kib "$pid")"
    # Peak RSS while the run lasts (bounded: it stops with the run or after its time limit).
    echo "$rss0" >"$OUT_DIR/peak"
    (
        end=$((SECONDS + DURATION * 3 + 120))
        while [[ $SECONDS -lt $end && -e "$OUT_DIR/peak" ]]; do
            r="$(rss_kib "$pid" 2>/dev/null || echo 0)"
            p="$(cat "$OUT_DIR/peak" 2>/dev/null || echo 0)"
            if [[ "$r" -gt "$p" ]]; then echo "$r" >"$OUT_DIR/peak"; fi
            sleep 0.2
        done
    ) &
    local sampler=$!
    if ! json="$(timeout $((DURATION * 3 + 120)) "$WARREN_BIN" perf --uri "$uri" "${args[@]}" \
        --size 16 --duration "$DURATION" --label "$s" --json --quiet 2>"$OUT_DIR/$name-$s.err")"; then
        json="{\"label\":\"$s\",\"error\":true}"
    fi
    after="$(cpu_ticks "$pid")"
    rss1="$(cat "$OUT_DIR/peak")"
    rm -f "$OUT_DIR/peak"
    wait "$sampler" 2>/dev/null || true
    echo "$json" | jq -c --argjson cpu "$(((after - before) * 1000000 / CLK_TCK))" \
        --argjson rss0 "$rss0" --argjson rss1 "$rss1" \
        '. + {broker_cpu_us: $cpu, broker_rss_before_kib: $rss0, broker_rss_peak_kib: $rss1}
           + (if (.published // 0) > 0 then {broker_cpu_us_per_msg: ($cpu / ([.published, .consumed] | max))} else {} end)' \
        >>"$OUT_DIR/$name.jsonl"
}

value() { # FILE LABEL JQ
    [[ -f "$1" ]] || { echo "n/a"; return; }
    jq -r --arg l "$2" "select(.label == \$l) | if .error then \"error\" else ($3 // \"n/a\") end" "$1" | head -n 1
}
fmt() { if [[ "$1" =~ ^-?[0-9.e+-]+$ ]]; then printf "%.${2}f" "$1"; else echo "${1:-n/a}"; fi; }
ratio() { # A B: A / B as "N.NNx"
    if [[ "$1" =~ ^[0-9.e+-]+$ && "$2" =~ ^[0-9.e+-]+$ ]] && awk "BEGIN{exit !($2 > 0)}"; then
        awk "BEGIN{printf \"%.2fx\", $1 / $2}"
    else echo "n/a"; fi
}

SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(m1 m2 m3 m4 m6 m5)
start_warren
start_mosquitto
find_rabbit
: >"$OUT_DIR/warren.jsonl"
for s in "${SCENARIOS[@]}"; do
    if [[ "$s" == m5 ]]; then
        # Memory per client on a fresh process: what the earlier runs freed would otherwise
        # be reused by the clients and hide their cost. (RabbitMQ is not ours to restart.)
        log "restarting Warren and mosquitto for m5"
        kill "$WARREN_PID" 2>/dev/null || true
        wait "$WARREN_PID" 2>/dev/null || true
        rm -rf "$WARREN_DATA"
        start_warren
        if [[ -n "$MOSQ_PID" ]]; then
            kill "$MOSQ_PID" 2>/dev/null || true
            wait "$MOSQ_PID" 2>/dev/null || true
            rm -rf "$MOSQ_DIR"
            start_mosquitto
        fi
    fi
    log "scenario $s: warren"
    run warren "mqtt://guest:guest@127.0.0.1:$WARREN_MQTT_PORT" "$WARREN_PID" "$s"
    if [[ -n "$MOSQ_PID" ]]; then
        log "scenario $s: mosquitto"
        run mosquitto "mqtt://127.0.0.1:$MOSQUITTO_PORT" "$MOSQ_PID" "$s"
    fi
    if [[ -n "$RABBIT_PID" ]]; then
        log "scenario $s: rabbitmq"
        run rabbitmq "$RABBITMQ_MQTT_URI" "$RABBIT_PID" "$s"
    fi
done

W="$OUT_DIR/warren.jsonl" M="$OUT_DIR/mosquitto.jsonl" R="$OUT_DIR/rabbitmq.jsonl"
echo
mosq_version="$( (mosquitto -h 2>/dev/null || true) | awk 'NR==1 {print $3}')"
echo "MQTT, $(date -u +%Y-%m-%d), ${DURATION} s per run, mosquitto ${mosq_version:-?}, RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')"
echo
echo "| scenario | metric | Warren | mosquitto | RabbitMQ MQTT | Warren/mosquitto | Warren/RabbitMQ | broker µs/msg W / M / R |"
echo "|---|---|---|---|---|---|---|---|"
for s in "${SCENARIOS[@]}"; do
    if [[ "$s" == m5 ]]; then
        expr="((.broker_rss_peak_kib - .broker_rss_before_kib) / (.connections.opened // 1))"
        w="$(value "$W" "$s" "$expr")" m="$(value "$M" "$s" "$expr")" r="$(value "$R" "$s" "$expr")"
        echo "| $s $IDLE_CLIENTS idle clients | RSS KiB per client | $(fmt "$w" 1) | $(fmt "$m" 1) | $(fmt "$r" 1) | $(ratio "$m" "$w") less | $(ratio "$r" "$w") less | |"
        continue
    fi
    if [[ "$s" == m6 ]]; then
        lat='"\(.latency_ms.p50 * 1000 | round / 1000) / \(.latency_ms.p99 * 1000 | round / 1000)"'
        w="$(value "$W" "$s" "$lat")" m="$(value "$M" "$s" "$lat")" r="$(value "$R" "$s" "$lat")"
        echo "| $s QoS 1 at 1k msg/s | latency p50 / p99 ms | $w | $m | $r | | | |"
        continue
    fi
    w="$(value "$W" "$s" .consume_rate)" m="$(value "$M" "$s" .consume_rate)" r="$(value "$R" "$s" .consume_rate)"
    wc="$(value "$W" "$s" .broker_cpu_us_per_msg)" mc="$(value "$M" "$s" .broker_cpu_us_per_msg)" rc="$(value "$R" "$s" .broker_cpu_us_per_msg)"
    note=""
    [[ "$s" == m3 ]] && note=" (RabbitMQ: QoS 1)"
    echo "| $s$note | delivered msg/s | $(fmt "$w" 0) | $(fmt "$m" 0) | $(fmt "$r" 0) | $(ratio "$w" "$m") | $(ratio "$w" "$r") | $(fmt "$wc" 2) / $(fmt "$mc" 2) / $(fmt "$rc" 2) |"
done
echo
echo "Raw results: $OUT_DIR"

#!/usr/bin/env bash
# Warren vs RabbitMQ on the ten scenarios of issue 5, same machine, same run.
#
#   bench/compare.sh [SCENARIO...]        # default: 1..10
#
# Starts Warren (target/release/warren, built if missing) on 127.0.0.1:5680
# with a temporary data directory, and uses the RabbitMQ at $RABBITMQ_URI
# (default amqp://guest:guest@127.0.0.1:5673/%2f). If that is not reachable
# and `rabbitmq-server` is installed, it is started detached with the
# machine's /etc/rabbitmq config (listener 127.0.0.1:5673, node
# rabbit@localhost), and stopped again at the end.
#
# For each run it samples the broker's CPU time (utime+stime of
# /proc/PID/stat before and after: broker CPU µs per message) and its
# resident memory (VmRSS every 100 ms: peak), then prints a markdown table.
# Raw JSON lines are kept in $OUT_DIR (default: a temp dir, path printed).
#
# LavinMQ as an optional third broker: with LAVINMQ_BIN set (a lavinmq binary; see
# bench/README.md), it is started with a temporary data directory, AMQP on
# 127.0.0.1:$LAVINMQ_PORT (5690) and its HTTP API on 127.0.0.1:$LAVINMQ_HTTP_PORT (15690;
# -1: off), AMQPS off (unless TLS_DIR), measured like the others, restarted before the memory
# scenarios 9-12 as Warren is, and stopped at the end; the table gets LavinMQ columns.
#
# Environment: RABBITMQ_URI, RABBITMQ_PID (if it cannot be found), WARREN_PORT
# (5680), WARREN_BIN (another build, e.g. the one before a change), SKIP_RABBITMQ=1 (Warren
# only, for a before/after pair where RabbitMQ ran once; Warren and LavinMQ with LAVINMQ_BIN),
# LAVINMQ_BIN / LAVINMQ_PORT / LAVINMQ_HTTP_PORT, WARREN_ARGS (more options for Warren, e.g.
# "--fsync false" for a like-for-like run against a broker that confirms without syncing), OUT_DIR, and DURATION / BACKLOG /
# PERSISTENT_BACKLOG / IDLE_CONNECTIONS (see scenarios.sh).
# Every loop is bounded; only processes this script started are stopped.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/scenarios.sh
source "$BENCH_DIR/scenarios.sh"

RABBITMQ_URI="${RABBITMQ_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}"
WARREN_PORT="${WARREN_PORT:-5680}"
WARREN_BIN="${WARREN_BIN:-$ROOT/target/release/warren}"
WARREN_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
# TLS_DIR (with ca.pem, server.pem, server.key): every scenario over TLS. Warren serves AMQPS
# on WARREN_PORT+1 with those files; point RABBITMQ_URI at RabbitMQ's TLS listener with the
# same certificates (amqps://guest:guest@localhost:5671/%2f?cacertfile=$TLS_DIR/ca.pem).
TLS_DIR="${TLS_DIR:-}"
WARREN_LISTEN_PORT="$WARREN_PORT"
if [[ -n "$TLS_DIR" ]]; then
    WARREN_LISTEN_PORT=$((WARREN_PORT + 1))
    WARREN_URI="amqps://guest:guest@localhost:$WARREN_LISTEN_PORT/%2f?cacertfile=$TLS_DIR/ca.pem"
fi
# LavinMQ (optional): AMQP on LAVINMQ_PORT, or AMQPS on LAVINMQ_PORT+1 with TLS_DIR.
LAVINMQ_BIN="${LAVINMQ_BIN:-}"
LAVINMQ_PORT="${LAVINMQ_PORT:-5690}"
LAVINMQ_HTTP_PORT="${LAVINMQ_HTTP_PORT:-15690}"
LAVINMQ_URI="amqp://guest:guest@127.0.0.1:$LAVINMQ_PORT/%2f"
LAVINMQ_LISTEN_PORT="$LAVINMQ_PORT"
if [[ -n "$TLS_DIR" ]]; then
    LAVINMQ_LISTEN_PORT=$((LAVINMQ_PORT + 1))
    LAVINMQ_URI="amqps://guest:guest@localhost:$LAVINMQ_LISTEN_PORT/%2f?cacertfile=$TLS_DIR/ca.pem"
fi
OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/warren-bench.XXXXXX)}"
CLK_TCK="$(getconf CLK_TCK)"
mkdir -p "$OUT_DIR"

WARREN_PID=""
WARREN_DATA=""
RABBIT_STARTED=""
RABBIT_PID=""
SAMPLER_PID=""
LAVINMQ_PID=""
LAVINMQ_DATA=""

log() { echo "compare: $*" >&2; }

cleanup() {
    if [[ -n "$SAMPLER_PID" ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
    stop_warren
    stop_lavinmq
    if [[ -n "$RABBIT_STARTED" ]]; then
        log "stopping the RabbitMQ node this script started"
        timeout 60 rabbitmqctl stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# host_port URI -> "host port"
host_port() {
    local rest="${1#amqp://}"
    rest="${rest#amqps://}"
    rest="${rest%%\?*}"
    rest="${rest#*@}"
    rest="${rest%%/*}"
    echo "${rest%:*} ${rest##*:}"
}

# wait_port HOST PORT SECONDS: poll until something listens (bounded).
wait_port() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

cpu_ticks() { # utime + stime of PID, in clock ticks
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# sample_rss PID FILE: write the peak VmRSS (KiB) to FILE every 100 ms;
# stops when killed, when PID exits, or after an hour.
sample_rss() {
    local pid="$1" file="$2" peak=0 cur i
    for ((i = 0; i < 36000; i++)); do
        cur="$(rss_kib "$pid" 2>/dev/null)" || break
        if [[ -n "$cur" && "$cur" -gt "$peak" ]]; then
            peak="$cur"
            echo "$peak" >"$file"
        fi
        sleep 0.1
    done
}

BROKER_PID=""

# The measured run_perf: same as scenarios.sh's, plus broker CPU and memory.
run_perf() {
    local label="$1"
    shift
    local cpu0 cpu1 rss0 rss1 peak json status=0 peakfile="$OUT_DIR/.peak"
    rss0="$(rss_kib "$BROKER_PID")"
    echo "$rss0" >"$peakfile"
    sample_rss "$BROKER_PID" "$peakfile" &
    SAMPLER_PID=$!
    cpu0="$(cpu_ticks "$BROKER_PID")"
    json="$("$PERF" --uri "$URI" --json --quiet --label "$label" "$@" 2>"$OUT_DIR/$label.$BROKER_NAME.err")" || status=$?
    cpu1="$(cpu_ticks "$BROKER_PID")"
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    peak="$(cat "$peakfile")"
    # What the broker keeps once the run is over (its queues deleted): a second to settle.
    sleep 1
    rss1="$(rss_kib "$BROKER_PID")"
    if [[ $status -ne 0 || -z "$json" ]]; then
        local err
        err="$(tail -n 1 "$OUT_DIR/$label.$BROKER_NAME.err")"
        log "$BROKER_NAME $label failed: $err"
        json="$(jq -cn --arg l "$label" --arg e "$err" '{label: $l, error: $e}')"
    fi
    echo "$json" | jq -c --arg b "$BROKER_NAME" --argjson cpu "$(((cpu1 - cpu0) * 1000000 / CLK_TCK))" \
        --argjson rss0 "$rss0" --argjson peak "$peak" --argjson rss1 "$rss1" \
        '. + {broker_name: $b, broker_cpu_us: $cpu, broker_rss_before_kib: $rss0, broker_peak_rss_kib: $peak, broker_rss_after_kib: $rss1}
         | . + (if (.published // 0) > 0 or (.consumed // 0) > 0
                then {broker_cpu_us_per_msg: ($cpu / ([.published, .consumed] | max))} else {} end)'
}

# stop_started PID_VAR DATA_VAR: stops a broker this script started and removes its data
# directory (the variables are cleared).
stop_started() {
    local -n pid="$1" data="$2"
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
    if [[ -n "$data" ]]; then rm -rf "$data"; data=""; fi
}

# port_free NAME PORT VAR: refuse to start when something already listens there (the run
# would otherwise measure that other broker without noticing).
port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
        log "something already listens on 127.0.0.1:$2; set $3 to start $1 elsewhere"
        exit 1
    fi
}

stop_warren() { stop_started WARREN_PID WARREN_DATA; }

start_warren() {
    if [[ ! -x "$WARREN_BIN" ]]; then
        log "building warren..."
        (cd "$ROOT" && cargo build --release -p warren >&2)
    fi
    port_free warren "$WARREN_LISTEN_PORT" WARREN_PORT
    WARREN_DATA="$(mktemp -d /tmp/warren-bench-data.XXXXXX)"
    local tls_args=()
    if [[ -n "$TLS_DIR" ]]; then
        tls_args=(--tls-listen "127.0.0.1:$WARREN_LISTEN_PORT" --tls-cert "$TLS_DIR/server.pem"
            --tls-key "$TLS_DIR/server.key")
    fi
    # shellcheck disable=SC2086 # WARREN_ARGS is a list of options
    "$WARREN_BIN" --listen "127.0.0.1:$WARREN_PORT" --management-listen "127.0.0.1:0" --prometheus-listen "127.0.0.1:0" --data-dir "$WARREN_DATA" "${tls_args[@]}" ${WARREN_ARGS:-} \
        >"$OUT_DIR/warren.log" 2>&1 &
    WARREN_PID=$!
    wait_port 127.0.0.1 "$WARREN_LISTEN_PORT" 30 || { log "warren did not start (see $OUT_DIR/warren.log)"; exit 1; }
    log "warren pid $WARREN_PID on 127.0.0.1:$WARREN_PORT"
}

stop_lavinmq() { stop_started LAVINMQ_PID LAVINMQ_DATA; }

# LavinMQ with a fresh data directory, every listener on loopback. CONFIGURATION_DIRECTORY
# points at that directory so that no /etc/lavinmq/lavinmq.ini is read. (It also binds the
# unix socket /tmp/lavinmqctl.sock for lavinmqctl; that path is fixed in LavinMQ 1.0.)
start_lavinmq() {
    [[ -x "$LAVINMQ_BIN" ]] || { log "LAVINMQ_BIN=$LAVINMQ_BIN is not executable (see bench/README.md)"; exit 1; }
    port_free lavinmq "$LAVINMQ_LISTEN_PORT" LAVINMQ_PORT
    LAVINMQ_DATA="$(mktemp -d /tmp/lavinmq-bench-data.XXXXXX)"
    local tls_args=()
    if [[ -n "$TLS_DIR" ]]; then
        tls_args=(--amqps-port "$LAVINMQ_LISTEN_PORT" --cert "$TLS_DIR/server.pem" --key "$TLS_DIR/server.key")
    fi
    CONFIGURATION_DIRECTORY="$LAVINMQ_DATA" "$LAVINMQ_BIN" --data-dir "$LAVINMQ_DATA/data" \
        --bind 127.0.0.1 --amqp-port "$LAVINMQ_PORT" --http-port "$LAVINMQ_HTTP_PORT" "${tls_args[@]}" \
        >>"$OUT_DIR/lavinmq.log" 2>&1 &
    LAVINMQ_PID=$!
    wait_port 127.0.0.1 "$LAVINMQ_LISTEN_PORT" 30 || { log "lavinmq did not start (see $OUT_DIR/lavinmq.log)"; exit 1; }
    log "lavinmq pid $LAVINMQ_PID on 127.0.0.1:$LAVINMQ_LISTEN_PORT"
}

find_rabbit_pid() {
    if [[ -n "${RABBITMQ_PID:-}" ]]; then echo "$RABBITMQ_PID"; return; fi
    local pidfile
    for pidfile in /var/lib/rabbitmq/mnesia/*.pid; do
        if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            cat "$pidfile"
            return
        fi
    done
    pgrep -o -f 'beam.smp.*rabbit' || true
}

ensure_rabbit() {
    local hp host port
    hp="$(host_port "$RABBITMQ_URI")"
    host="${hp% *}"
    port="${hp#* }"
    if ! wait_port "$host" "$port" 1; then
        if ! command -v rabbitmq-server >/dev/null; then
            log "no RabbitMQ at $RABBITMQ_URI and rabbitmq-server is not installed"
            exit 1
        fi
        log "starting rabbitmq-server (detached, /etc/rabbitmq config)"
        ulimit -n 65536 2>/dev/null || true
        rabbitmq-server -detached
        RABBIT_STARTED=1
        wait_port "$host" "$port" 120 || { log "RabbitMQ did not come up on $host:$port"; exit 1; }
    fi
    RABBIT_PID="$(find_rabbit_pid)"
    if [[ -z "$RABBIT_PID" ]]; then
        log "cannot find RabbitMQ's beam.smp pid; set RABBITMQ_PID"
        exit 1
    fi
    log "rabbitmq pid $RABBIT_PID at $RABBITMQ_URI"
}

# ---- the table -------------------------------------------------------------

# value FILE LABEL JQ_EXPR: the expression on the line with that label.
value() {
    jq -r --arg l "$2" "select(.label == \$l) | if .error then \"error\" else ($3 // \"n/a\") end" "$1" | head -n 1
}

fmt() { # fmt NUMBER DECIMALS
    if [[ "$1" =~ ^-?[0-9.e+-]+$ ]]; then printf "%.${2}f" "$1"; else echo "${1:-n/a}"; fi
}

# Which broker columns the table has: RabbitMQ's unless SKIP_RABBITMQ=1 with LavinMQ
# (Warren-only runs keep them, as n/a), LavinMQ's with LAVINMQ_BIN.
SHOW_RABBITMQ=1
if [[ -n "$LAVINMQ_BIN" && -n "${SKIP_RABBITMQ:-}" ]]; then SHOW_RABBITMQ=""; fi

# advantage WARREN OTHER higher|lower: Warren's advantage over the other broker.
advantage() {
    if [[ ! ("$1" =~ ^[0-9.e+-]+$ && "$2" =~ ^[0-9.e+-]+$) ]]; then echo "n/a"; return; fi
    case "$3" in
        higher) awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }' ;;
        lower) awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f×", b / a; else print "n/a" }' ;;
    esac
}

# cells NAME UNIT W R L HOW DECIMALS WC RC LC: one table line from the values
# (WC RC LC all "-": no CPU figures, empty cells).
cells() {
    local line="| $1 | $2 | $(fmt "$3" "$7")"
    if [[ -n "$SHOW_RABBITMQ" ]]; then line+=" | $(fmt "$4" "$7") | $(advantage "$3" "$4" "$6")"; fi
    if [[ -n "$LAVINMQ_BIN" ]]; then line+=" | $(fmt "$5" "$7") | $(advantage "$3" "$5" "$6")"; fi
    if [[ "$8$9${10}" == --- ]]; then
        line+=" |"
        if [[ -n "$SHOW_RABBITMQ" ]]; then line+=" |"; fi
        if [[ -n "$LAVINMQ_BIN" ]]; then line+=" |"; fi
        echo "$line |"
        return
    fi
    line+=" | $(fmt "$8" 2)"
    if [[ -n "$SHOW_RABBITMQ" ]]; then line+=" | $(fmt "$9" 2)"; fi
    if [[ -n "$LAVINMQ_BIN" ]]; then line+=" | $(fmt "${10}" 2)"; fi
    echo "$line |"
}

# row NAME UNIT LABEL EXPR higher|lower DECIMALS
row() {
    local w r l="" wc rc lc=""
    w="$(value "$OUT_DIR/warren.jsonl" "$3" "$4")"
    r="$(value "$OUT_DIR/rabbitmq.jsonl" "$3" "$4")"
    wc="$(value "$OUT_DIR/warren.jsonl" "$3" '.broker_cpu_us_per_msg')"
    rc="$(value "$OUT_DIR/rabbitmq.jsonl" "$3" '.broker_cpu_us_per_msg')"
    if [[ -n "$LAVINMQ_BIN" ]]; then
        l="$(value "$OUT_DIR/lavinmq.jsonl" "$3" "$4")"
        lc="$(value "$OUT_DIR/lavinmq.jsonl" "$3" '.broker_cpu_us_per_msg')"
    fi
    cells "$1" "$2" "$w" "$r" "$l" "$5" "$6" "$wc" "$rc" "$lc"
}

# peak_row NAME LABEL_A LABEL_B: the peak RSS over two runs, in MiB.
peak_row() {
    local w r l=""
    w="$(peak_mib "$OUT_DIR/warren.jsonl" "$2" "$3")"
    r="$(peak_mib "$OUT_DIR/rabbitmq.jsonl" "$2" "$3")"
    if [[ -n "$LAVINMQ_BIN" ]]; then l="$(peak_mib "$OUT_DIR/lavinmq.jsonl" "$2" "$3")"; fi
    cells "$1" "peak RSS MiB" "$w" "$r" "$l" lower 0 - - -
}

# The peak over several runs (scenario 9's two phases), in MiB.
peak_mib() {
    jq -s -r --arg a "$2" --arg b "$3" \
        '[.[] | select(.label == $a or .label == $b) | .broker_peak_rss_kib] | if length == 0 then "n/a" else (max / 1024) end' "$1"
}

print_header() {
    local cpu title="Warren" head="| scenario | metric | Warren" align="|---|---|---:" cpus="" versions=""
    cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    if [[ -n "$SHOW_RABBITMQ" ]]; then
        title+=" vs RabbitMQ"
        head+=" | RabbitMQ | × RabbitMQ"
        align+="|---:|---:"
        cpus=" | RabbitMQ CPU µs/msg"
        versions="RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'), "
    fi
    if [[ -n "$LAVINMQ_BIN" ]]; then
        title+=" vs LavinMQ"
        head+=" | LavinMQ | × LavinMQ"
        align+="|---:|---:"
        versions+="LavinMQ $("$LAVINMQ_BIN" --version 2>/dev/null | sed -n 1p), "
    fi
    echo "## $title — $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu)"
    echo
    echo "${versions}Warren $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); ${DURATION} s per timed run; load generator: warren-perf on the same machine${TLS_DIR:+; every connection over TLS (amqps, the same certificates for every broker)}."
    echo "× X = Warren ahead of X by (Warren/X for rates, X/Warren for latency and memory). CPU = broker CPU time (user+sys) per message."
    echo
    echo "$head | Warren CPU µs/msg$cpus${LAVINMQ_BIN:+ | LavinMQ CPU µs/msg} |"
    echo "$align|---:${cpus:+|---:}${LAVINMQ_BIN:+|---:}|"
}

print_table() {
    local s
    echo
    print_header
    for s in "${SCENARIOS[@]}"; do
        case "$s" in
            1) row "1 transient" "consumed msg/s" s1-transient .consume_rate higher 0 ;;
            2) row "2 safe" "consumed msg/s" s2-safe .consume_rate higher 0 ;;
            3) row "3 persistent" "consumed msg/s" s3-persistent .consume_rate higher 0 ;;
            4) row "4 fanout" "deliveries/s" s4-fanout .consume_rate higher 0 ;;
            5) row "5 topic" "consumed msg/s" s5-topic .consume_rate higher 0 ;;
            6) row "6 bandwidth" "consumed MiB/s" s6-bandwidth .consume_mib_per_s higher 0 ;;
            7) row "7 many" "consumed msg/s" s7-many .consume_rate higher 0 ;;
            8)
                row "8 latency 1k/s" "p99 ms" s8-latency-1k .latency_ms.p99 lower 3
                row "8 latency 10k/s" "p99 ms" s8-latency-10k .latency_ms.p99 lower 3
                ;;
            9)
                row "9 backlog publish" "msg/s" s9-backlog-publish .publish_rate higher 0
                row "9 backlog drain" "msg/s" s9-backlog-drain .consume_rate higher 0
                peak_row "9 backlog" s9-backlog-publish s9-backlog-drain
                ;;
            10)
                row "10 connections" "RSS KiB per connection" s10-connections \
                    '(if .connections then (.broker_peak_rss_kib - .broker_rss_before_kib) / .connections.opened else null end)' lower 1
                row "10 connections" "open ms per connection" s10-connections '.connections.open_mean_ms' lower 2
                ;;
            11)
                row "11 persistent backlog publish" "msg/s" s11-persistent-publish .publish_rate higher 0
                row "11 persistent backlog drain" "msg/s" s11-persistent-drain .consume_rate higher 0
                peak_row "11 persistent backlog" s11-persistent-publish s11-persistent-drain
                ;;
            12)
                row "12 unlimited-prefetch drain" "msg/s" s12-unlimited-drain .consume_rate higher 0
                row "12 unlimited-prefetch drain" "peak RSS MiB" s12-unlimited-drain '(.broker_peak_rss_kib / 1024)' lower 0
                row "12 unlimited-prefetch drain" "RSS MiB after" s12-unlimited-drain '(.broker_rss_after_kib / 1024)' lower 0
                row "12 idle before the backlog" "RSS MiB" s12-unlimited-publish '(.broker_rss_before_kib / 1024)' lower 0
                ;;
        esac
    done
    echo
    echo "Raw results: $OUT_DIR/warren.jsonl, $OUT_DIR/rabbitmq.jsonl${LAVINMQ_BIN:+, $OUT_DIR/lavinmq.jsonl}"
}

# ---- main ------------------------------------------------------------------

if [[ $# -gt 0 ]]; then SCENARIOS=("$@"); else SCENARIOS=("${ALL_SCENARIOS[@]}"); fi
for s in "${SCENARIOS[@]}"; do
    [[ "$s" =~ ^([1-9]|10|11|12)$ ]] || { log "unknown scenario $s (1..12)"; exit 2; }
done
ulimit -n 65536 2>/dev/null || true
if [[ ! -x "$PERF" ]]; then ensure_perf; fi
start_warren
if [[ -z "${SKIP_RABBITMQ:-}" ]]; then ensure_rabbit; fi
if [[ -n "$LAVINMQ_BIN" ]]; then start_lavinmq; fi
: >"$OUT_DIR/warren.jsonl"
: >"$OUT_DIR/rabbitmq.jsonl"
if [[ -n "$LAVINMQ_BIN" ]]; then : >"$OUT_DIR/lavinmq.jsonl"; fi
for s in "${SCENARIOS[@]}"; do
    if [[ "$s" == 9 || "$s" == 10 || "$s" == 11 || "$s" == 12 ]]; then
        # memory scenarios: a fresh Warren, so its RSS baseline and peak are
        # this scenario's own and not what earlier scenarios left allocated
        stop_warren
        start_warren
        if [[ -n "$LAVINMQ_BIN" ]]; then
            stop_lavinmq
            start_lavinmq
        fi
    fi
    log "scenario $s: warren"
    URI="$WARREN_URI" BROKER_PID="$WARREN_PID" BROKER_NAME=warren
    "scenario_$s" | tee -a "$OUT_DIR/warren.jsonl" >&2
    if [[ -z "${SKIP_RABBITMQ:-}" ]]; then
        log "scenario $s: rabbitmq"
        URI="$RABBITMQ_URI" BROKER_PID="$RABBIT_PID" BROKER_NAME=rabbitmq
        "scenario_$s" | tee -a "$OUT_DIR/rabbitmq.jsonl" >&2
    fi
    if [[ -n "$LAVINMQ_BIN" ]]; then
        log "scenario $s: lavinmq"
        URI="$LAVINMQ_URI" BROKER_PID="$LAVINMQ_PID" BROKER_NAME=lavinmq
        "scenario_$s" | tee -a "$OUT_DIR/lavinmq.jsonl" >&2
    fi
done
print_table

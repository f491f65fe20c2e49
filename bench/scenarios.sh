#!/usr/bin/env bash
# The ten benchmark scenarios of issue 5, each as one `warren-perf` run (or
# a short sequence), printing one JSON summary line per run on stdout.
#
#   bench/scenarios.sh AMQP_URI [SCENARIO...]     # scenarios: 1..10 (default: all)
#
# Environment:
#   PERF      the load generator (default: target/release/warren-perf, built if missing)
#   DURATION  seconds per timed run (default 10)
#   BACKLOG   messages for scenario 9 (default 1000000)
#   PERSISTENT_BACKLOG  messages for scenario 11 (default 2097152: 2 GiB of 1 KiB bodies)
#   IDLE_CONNECTIONS  connections for scenario 10 (default 1000)
#   UNLIMITED_BACKLOG messages for scenario 12 (default 2097152: 2 GiB of 1 KiB bodies,
#             drained by a consumer with prefetch 0 and manual acks)
#
# Sourced by bench/compare.sh, which replaces `run_perf` to sample the
# broker's CPU time and memory around each run. Every run is bounded by
# --duration (or --count with a duration cap) and cleans up its queues.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
PERF="${PERF:-$ROOT/target/release/warren-perf}"
DURATION="${DURATION:-10}"
BACKLOG="${BACKLOG:-1000000}"
PERSISTENT_BACKLOG="${PERSISTENT_BACKLOG:-2097152}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-1000}"
UNLIMITED_BACKLOG="${UNLIMITED_BACKLOG:-2097152}"
ALL_SCENARIOS=(1 2 3 4 5 6 7 8 9 10 11 12)

ensure_perf() {
    if [[ ! -x "$PERF" ]]; then
        echo "building warren-perf..." >&2
        (cd "$ROOT" && cargo build --release -p warren-perf >&2)
    fi
}

# run_perf LABEL ARGS...: one load-generator run; prints its JSON summary.
# (compare.sh redefines it to wrap the run with broker measurements.)
run_perf() {
    local label="$1"
    shift
    "$PERF" --uri "$URI" --json --quiet --label "$label" "$@"
}

scenario_1() { # transient: 1 producer, 1 consumer, 16 B, no confirms, auto-ack
    run_perf s1-transient --queue-pattern perf-s1-%d --size 16 --duration "$DURATION" --delete-queues
}

scenario_2() { # safe: confirms (window 1000), manual ack multiple every 100, prefetch 1000
    run_perf s2-safe --queue-pattern perf-s2-%d --size 16 --confirm 1000 \
        --ack manual --multiple-ack-every 100 --prefetch 1000 --duration "$DURATION" --delete-queues
}

scenario_3() { # persistent: durable queue, delivery-mode 2, confirms, manual ack, 1 KiB
    run_perf s3-persistent --queue-pattern perf-s3-%d --durable --persistent --size 1024 \
        --confirm 1000 --ack manual --multiple-ack-every 100 --prefetch 1000 \
        --duration "$DURATION" --delete-queues
}

scenario_4() { # fanout: 1 producer -> fanout exchange -> 10 queues, 10 consumers
    run_perf s4-fanout --queue-pattern perf-s4-%d --exchange perf-fanout --exchange-type fanout \
        --queues 10 --consumers 10 --size 16 --duration "$DURATION" --delete-queues
}

scenario_5() { # topic: 1000 wildcard bindings over 10 queues, producer cycling through keys
    run_perf s5-topic --queue-pattern perf-s5-%d --exchange perf-topic --exchange-type topic \
        --topic-bindings 1000 --queues 10 --consumers 1 --size 16 \
        --duration "$DURATION" --delete-queues
}

scenario_6() { # bandwidth: 64 KiB bodies
    run_perf s6-bandwidth --queue-pattern perf-s6-%d --size 65536 --duration "$DURATION" --delete-queues
}

scenario_7() { # many: 50 producers, 50 consumers, 50 queues (a connection each)
    run_perf s7-many --queue-pattern perf-s7-%d --producers 50 --consumers 50 --queues 50 \
        --size 16 --duration "$DURATION" --delete-queues
}

scenario_8() { # latency at fixed rates: 1k and 10k msg/s
    run_perf s8-latency-1k --queue-pattern perf-s8-%d --size 16 --rate 1000 \
        --duration "$DURATION" --delete-queues
    run_perf s8-latency-10k --queue-pattern perf-s8-%d --size 16 --rate 10000 \
        --duration "$DURATION" --delete-queues
}

scenario_9() { # backlog: publish BACKLOG x 1 KiB with no consumer (confirmed), then drain it
    run_perf s9-backlog-publish --queue-pattern perf-s9-%d --publish-only --size 1024 \
        --confirm 1000 --count "$BACKLOG" --duration 600
    run_perf s9-backlog-drain --queue-pattern perf-s9-%d --consume-only \
        --ack manual --multiple-ack-every 100 --prefetch 1000 --duration 600 --delete-queues
}

scenario_11() { # persistent backlog: PERSISTENT_BACKLOG x 1 KiB, durable, confirmed, then drained
    run_perf s11-persistent-publish --queue-pattern perf-s11-%d --durable --persistent \
        --publish-only --size 1024 --confirm 1000 --count "$PERSISTENT_BACKLOG" --duration 900
    run_perf s11-persistent-drain --queue-pattern perf-s11-%d --durable --consume-only \
        --ack manual --multiple-ack-every 100 --prefetch 1000 --duration 900 --delete-queues
}

scenario_12() { # UNLIMITED_BACKLOG x 1 KiB transient, drained by a prefetch-0 manual-ack consumer
    run_perf s12-unlimited-publish --queue-pattern perf-s12-%d --publish-only --size 1024 \
        --confirm 1000 --count "$UNLIMITED_BACKLOG" --duration 900
    run_perf s12-unlimited-drain --queue-pattern perf-s12-%d --consume-only \
        --ack manual --multiple-ack-every 100 --prefetch 0 --duration 900 --delete-queues
}

scenario_10() { # connections: IDLE_CONNECTIONS idle connections with a channel each
    run_perf s10-connections --connections-only "$IDLE_CONNECTIONS" --duration "$DURATION"
}

run_scenarios() {
    local s
    for s in "$@"; do
        case "$s" in
            1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12) "scenario_$s" ;;
            *) echo "unknown scenario $s (1..12)" >&2; return 2 ;;
        esac
    done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    if [[ $# -lt 1 ]]; then
        echo "usage: $0 AMQP_URI [SCENARIO...]" >&2
        exit 2
    fi
    URI="$1"
    shift
    ensure_perf
    if [[ $# -eq 0 ]]; then
        set -- "${ALL_SCENARIOS[@]}"
    fi
    run_scenarios "$@"
fi

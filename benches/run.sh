#!/usr/bin/env bash
# Sentinel under load next to a bare actix-web handler, in one run, on loopback. See docs/benchmarks.md.
#
#   benches/run.sh                          10 s per cell; connections 1 16 64 x symbols 1 100 1000
#   QUICK=1 benches/run.sh                  3 s per cell; connections 1 64 x symbols 1 100
#   DURATION=60 CONNECTIONS=64 SYMBOLS=100 benches/run.sh
#
# Each cell starts a fresh daemon (paper exchange, journal on disk in a temporary folder, one HTTP worker) pinned to
# core SERVER_CPU, and sends signed signals from benches/load.rs pinned to core LOAD_CPU. Then the bare handler gets
# the same requests at each connection count.
#
# Environment: DURATION (whole seconds per cell), CONNECTIONS and SYMBOLS (space-separated lists), IDLE_INTERVAL_MS
# (10: an extra cell with one connection sending one request per 10 ms, to measure an idle daemon; 0 skips it),
# SERVER_CPU (0) and LOAD_CPU (1), PORT (18080), API_PORT (18081) and BARE_PORT (18090) on 127.0.0.1, SENTINEL_BENCH_SECRET (the hmac
# source's secret; a fixed one by default), PERF=1 (record a call-graph profile of the daemon in the busiest cell;
# needs perf), KEEP=1 (keep the work folder: configs, journals, logs, profile), BUILD=0 (measure the binaries as last
# built, to repeat a run without compiling), BARE=0 (skip the bare handler, e.g. for a long overload run).
# Needs: cargo, curl, taskset (util-linux).
set -euo pipefail

cd "$(dirname "$0")/.."

# An empty SYMBOLS runs no daemon cells but the idle one (and the bare handler's).
if [[ "${QUICK:-0}" == 1 ]]; then
    DURATION=${DURATION:-3}
    CONNECTIONS=${CONNECTIONS-"1 64"}
    SYMBOLS=${SYMBOLS-"1 100"}
fi
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS-"1 16 64"}
SYMBOLS=${SYMBOLS-"1 100 1000"}
IDLE_INTERVAL_MS=${IDLE_INTERVAL_MS:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18080}
API_PORT=${API_PORT:-18081}
BARE_PORT=${BARE_PORT:-18090}
PERF=${PERF:-0}
export SENTINEL_BENCH_SECRET=${SENTINEL_BENCH_SECRET:-load-benchmark-secret-0123456789}

WORK=$(mktemp -d -t sentinel-load.XXXXXX)
ROWS="$WORK/rows.jsonl"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# --- build -----------------------------------------------------------------------------------------------------------
# The bench build links the dev-dependencies' features into the package, so the daemon is built on its own after it.
if [[ "${BUILD:-1}" == 1 ]]; then
    echo "building (release)..."
    LOAD=$(cargo bench --bench load --no-run --message-format=json 2>/dev/null \
        | grep '"executable":"[^"]*"' | grep '"name":"load"' | sed 's/.*"executable":"\([^"]*\)".*/\1/' | tail -n 1)
    cargo build --release --bin sentinel --quiet
else
    LOAD=$(ls -t target/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
    echo "BUILD=0: the binaries as last built ($LOAD, target/release/sentinel)"
fi
SENTINEL=target/release/sentinel
if [[ ! -x "$LOAD" ]]; then
    cargo bench --bench load --no-run >&2 || true
    echo "the load generator did not build" >&2
    exit 1
fi

# --- pinning ---------------------------------------------------------------------------------------------------------
PIN_SERVER=(taskset -c "$SERVER_CPU")
PIN_LOAD=(taskset -c "$LOAD_CPU")
if ! command -v taskset >/dev/null || [[ $(nproc) -lt 2 ]]; then
    PIN_SERVER=()
    PIN_LOAD=()
    echo "pinning: OFF (needs taskset and 2 cores); server and load share the CPUs"
else
    echo "pinning: server on CPU $SERVER_CPU, load generator on CPU $LOAD_CPU (taskset)"
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, $(uname -r)"
idle_note="one request per $IDLE_INTERVAL_MS ms"
[[ "$IDLE_INTERVAL_MS" == 0 ]] && idle_note="off"
echo "cells: connections {$CONNECTIONS} x symbols {$SYMBOLS}, $DURATION s each; idle cell: $idle_note"
echo "work folder: $WORK"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on these cores show in 'cores busy')"

write_config() { # symbols dir
    local symbols=$1 dir=$2 k
    {
        cat <<EOF
[server]
listen = "127.0.0.1:$PORT"
workers = 1
rate_limit_per_address_per_minute = 1000000
rate_limit_per_address_burst = 100000

[api]
listen = "127.0.0.1:$API_PORT"

[[sources]]
name = "bench"
kind = "hmac"
secret_env = "SENTINEL_BENCH_SECRET"
rate_limit_per_minute = 1000000
rate_limit_burst = 100000

[exchange]
kind = "paper"
starting_balance = "1000000"

[risk]
max_position_notional = "100000000"

[journal]
path = "$dir/journal.db"
EOF
        for ((k = 1; k <= symbols; k++)); do
            printf '\n[[symbols]]\nsymbol = "SYM%d"\nquantity_step = "0.001"\n' "$k"
        done
    } >"$dir/config.toml"
}

wait_until_up() { # url pid
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) != 000 ]] && return 0
        sleep 0.05
    done
    return 1
}

stop_server() {
    local i
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

busiest_connections=$(tr ' ' '\n' <<<"$CONNECTIONS" | sort -n | tail -n 1)
busiest_symbols=$(tr ' ' '\n' <<<"$SYMBOLS" | sort -n | tail -n 1)

daemon_cell() { # connections symbols [interval_ms]
    local conns=$1 symbols=$2 interval=${3:-} dir perf_pid=""
    dir="$WORK/sentinel-c$conns-s$symbols${interval:+-idle}"
    mkdir -p "$dir"
    write_config "$symbols" "$dir"
    "$SENTINEL" check-config --config "$dir/config.toml" >"$dir/check-config.txt" \
        || { cat "$dir/check-config.txt" >&2; exit 1; }
    "${PIN_SERVER[@]}" "$SENTINEL" run --config "$dir/config.toml" >"$dir/daemon.log" 2>&1 &
    SERVER_PID=$!
    wait_until_up "http://127.0.0.1:$PORT/healthz" "$SERVER_PID" \
        || { echo "the daemon did not start:" >&2; tail -n 20 "$dir/daemon.log" >&2; exit 1; }
    sleep 1 # idle memory is read after start-up settles
    if [[ "$PERF" == 1 && -z "$interval" && $conns == "$busiest_connections" && $symbols == "$busiest_symbols" ]]; then
        # On the generator's core, and for at most 5 s: DWARF stacks are 16 KiB a sample.
        "${PIN_LOAD[@]}" perf record -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$dir/perf.data" \
            -- sleep "$((DURATION < 5 ? DURATION : 5))" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    echo
    echo "== sentinel: $conns connection(s), $symbols symbol(s)${interval:+, one request per $interval ms}"
    "${PIN_LOAD[@]}" "$LOAD" --addr "127.0.0.1:$PORT" --api-addr "127.0.0.1:$API_PORT" --connections "$conns" --symbols "$symbols" \
        --duration "$DURATION" ${interval:+--interval-ms "$interval"} --server sentinel --server-pid "$SERVER_PID" \
        --stats --journal "$dir/journal.db" --rows "$ROWS" | grep -v '^{'
    if [[ -n "$perf_pid" ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        perf report -i "$dir/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -n 25 >"$dir/perf-self.txt" || true
        perf report -i "$dir/perf.data" --children --sort sym --stdio -g none 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | grep -v '\[k\]' | head -n 40 >"$dir/perf-children.txt" || true
        echo "-- profile of the daemon, self time (the rest is in $dir/perf-children.txt):"
        cat "$dir/perf-self.txt"
    fi
    stop_server
}

bare_cell() { # connections
    local conns=$1 dir="$WORK/bare-c$1"
    mkdir -p "$dir"
    "${PIN_SERVER[@]}" "$LOAD" --serve-bare "127.0.0.1:$BARE_PORT" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_until_up "http://127.0.0.1:$BARE_PORT/" "$SERVER_PID" || { echo "the bare server did not start" >&2; exit 1; }
    sleep 1
    echo
    echo "== bare actix-web handler: $conns connection(s)"
    "${PIN_LOAD[@]}" "$LOAD" --addr "127.0.0.1:$BARE_PORT" --connections "$conns" --symbols 100 \
        --duration "$DURATION" --server bare --server-pid "$SERVER_PID" --rows "$ROWS" | grep -v '^{'
    stop_server
}

"$LOAD" --fsync-probe "$WORK" --rows "$ROWS"
for symbols in $SYMBOLS; do
    for conns in $CONNECTIONS; do
        daemon_cell "$conns" "$symbols"
    done
done
if [[ "$IDLE_INTERVAL_MS" != 0 ]]; then
    daemon_cell 1 100 "$IDLE_INTERVAL_MS"
fi
if [[ "${BARE:-1}" != 0 ]]; then
    for conns in $CONNECTIONS; do
        bare_cell "$conns"
    done
fi

echo
echo "== results ($DURATION s per cell; latency from the load generator, send to last byte of the answer)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$LOAD" --table "$ROWS"

#!/usr/bin/env bash
# Instructions per GET /users/me/, Gatehouse against the baseline, counted by callgrind:
# unlike requests per second, the count does not move with the load of a shared machine.
#
#   bench/instructions.sh            SQLite, release binaries in CARGO_TARGET_DIR (target/bench)
#
# Both servers run under `valgrind --tool=callgrind` with instrumentation off; after a warm-up,
# it is switched on for a fixed number of seconds of `wrk` load, and the instructions
# counted (every thread: the SQLite connection threads too) are divided by the requests answered.
# valgrind does not report SHA extensions to the program, so HMAC-SHA256 runs in software here
# (about 20,000 instructions per request in both servers) and weighs more than on the hardware.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

TARGET=${CARGO_TARGET_DIR:-target/bench}
SECONDS_COUNTED=${BENCH_SECONDS:-8}
WORK=$(mktemp -d -t gatehouse-instructions.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cargo build --release --quiet --target-dir "$TARGET"
cargo build --release --quiet --target-dir "$TARGET" --manifest-path bench/baseline/Cargo.toml

SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SECRET_KEY BENCH_PASSWORD=bench-password-1 RUST_LOG=${RUST_LOG:-info}
export DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc" DATA_DIR=$WORK/data
export PORT=18200 BASELINE_PORT=18201 RATE_LIMIT_LOGIN=1000000/second
"$TARGET/release/gatehouse" migrate >/dev/null
"$TARGET/release/gatehouse-bench" seed 1 1000 >/dev/null

# Tokens of 20 users, from a Gatehouse run outside valgrind.
"$TARGET/release/gatehouse" serve >/dev/null 2>&1 &
PIDS+=($!)
wait_ready $PORT
for n in $(seq 20); do
    curl -fs -X POST "http://127.0.0.1:$PORT/token" -d "username=bench$n&password=$BENCH_PASSWORD" |
        sed 's/.*"access_token":"\([^"]*\)".*/\1/' >>"$WORK/tokens"
    echo >>"$WORK/tokens"
done
kill "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

count() { # NAME PORT BINARY ARGS...
    local name=$1 port=$2
    shift 2
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$name.out" \
        "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=($pid)
    wait_ready "$port" 60 0.1 # valgrind starts slowly
    BENCH_TOKENS=$WORK/tokens wrk -t1 -c4 -d3s -s bench/wrk/me.lua "http://127.0.0.1:$port" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    BENCH_TOKENS=$WORK/tokens wrk -t1 -c4 -d"${SECONDS_COUNTED}s" -s bench/wrk/me.lua \
        "http://127.0.0.1:$port" >"$WORK/$name.wrk"
    callgrind_control -i off "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local requests instructions
    requests=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    instructions=$(callgrind_annotate "$WORK/$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$name $requests $instructions" >>"$WORK/counts"
    printf '%s: %d requests, %.0f instructions per request\n' "$name" "$requests" \
        "$(awk -v i="$instructions" -v r="$requests" 'BEGIN {print i / r}')"
}

count baseline $BASELINE_PORT "$TARGET/release/gatehouse-bench" serve
count gatehouse $PORT "$TARGET/release/gatehouse" serve
awk '{per[$1] = $3 / $2} END {printf "RESULT instructions: gatehouse / baseline = %.2f\n", per["gatehouse"] / per["baseline"]}' "$WORK/counts"

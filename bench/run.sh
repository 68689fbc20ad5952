#!/usr/bin/env bash
# Gatehouse load scenarios (see bench/README.md). Builds release binaries, starts the services
# on 127.0.0.1, runs the scenarios, prints the figures and stops everything it started.
#
#   bench/run.sh [sqlite|postgres] [SCENARIO...]      scenarios 1 to 6, all by default
#
# Environment: CARGO_TARGET_DIR (default target/bench), BENCH_SECONDS (one wrk run, default 8),
# BENCH_ROUNDS (interleaved rounds, default 3), BENCH_PORT (default 18000), BENCH_PG_URL
# (default postgres://postgres@127.0.0.1:5432), BENCH_LARGE_USERS (default 1000000),
# BENCH_KEEP=1 keeps the work folder with every raw output, BENCH_S3_BARE=1 adds bare hashing
# (no login requests) at two scheduling priorities to scenario 3, BENCH_S3_TRACE=1 traces its
# flooded runs with perf and tells where the requests' time went (bench/attribute.py),
# BENCH_GATEHOUSE=PATH runs that service binary instead of building one (with
# BENCH_COMMIT=NAME for the report).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BACKEND=${1:-sqlite}
shift || true
SCENARIOS=${*:-1 2 3 4 5 6}
case $BACKEND in sqlite | postgres) ;; *)
    echo "usage: bench/run.sh [sqlite|postgres] [1 2 3 4 5 6]" >&2
    exit 2
    ;;
esac

TARGET=${CARGO_TARGET_DIR:-target/bench}
GATEHOUSE=${BENCH_GATEHOUSE:-$TARGET/release/gatehouse}
HELPER=$TARGET/release/gatehouse-bench
SECONDS_PER_RUN=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-3}
PORT=${BENCH_PORT:-18000}
LARGE_PORT=$((PORT + 1))
BASE_PORT=$((PORT + 100))
SMALL_USERS=1000
LARGE_USERS=${BENCH_LARGE_USERS:-1000000}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
WRK="wrk -t1 --latency"
WORK=$(mktemp -d -t gatehouse-bench.XXXXXX)

SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SECRET_KEY
export BENCH_PASSWORD=bench-password-1
export RUST_LOG=${RUST_LOG:-info}
# Generous limits, so that scenarios 1 to 3 measure the service rather than its throttles
# (every request comes from 127.0.0.1). Variables the service does not know are ignored.
# Scenario 4 runs twice: with the defaults, and with these.
GENEROUS_LIMITS=(${BENCH_GENEROUS_ENV:-RATE_LIMIT_LOGIN=1000000/second RATE_LIMIT_SIGNUP=1000000/second PASSWORD_HASH_MAX_WAIT_MS=600000})

declare -A PID=()
PG_DATABASES=()

cleanup() {
    for name in "${!PID[@]}"; do
        kill "${PID[$name]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    for db in "${PG_DATABASES[@]}"; do
        psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    if [ -n "${BENCH_KEEP:-}" ]; then echo "raw outputs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say() { printf '%s\n' "$*" | tee -a "$WORK/summary.txt"; }

# --- figures out of wrk's output -------------------------------------------------------------
rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
# A latency percentile (50, 99) in milliseconds.
pct() {
    awk -v p="$2%" '$1 == p {
        v = $2; unit = v; gsub(/[0-9.]/, "", unit); sub(/[a-z]+$/, "", v)
        if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000; else if (unit == "m") v *= 60000
        printf "%.2f\n", v }' "$1"
}
errors() { grep -E 'Non-2xx|Socket errors' "$1" | tr -s ' ' | paste -sd ';' - || true; }
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", a / b}'; }
verdict() { awk "BEGIN {print ($1) ? \"met\" : \"MISSED\"}"; }

# --- services ---------------------------------------------------------------------------------
# Creates a database and sets VARIABLE to its URL. Not called as $(...): a subshell's list of
# databases to drop at exit would be lost.
new_database() { # NAME VARIABLE
    if [ "$BACKEND" = sqlite ]; then
        printf -v "$2" '%s' "sqlite://$WORK/$1.db?mode=rwc"
    else
        local db="gatehouse_bench_$1_$$"
        psql -q "$PG_URL/postgres" -c "CREATE DATABASE $db" >/dev/null
        PG_DATABASES+=("$db")
        printf -v "$2" '%s' "$PG_URL/$db"
    fi
}

start_gatehouse() { # NAME URL PORT [VAR=VALUE...]
    local name=$1 url=$2 port=$3
    shift 3
    env "$@" DATABASE_URL="$url" PORT="$port" DATA_DIR="$WORK/data-$name" \
        "$GATEHOUSE" serve >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
    wait_ready "$port"
}

stop() { # NAME
    kill "${PID[$1]}" 2>/dev/null || true
    wait "${PID[$1]}" 2>/dev/null || true
    unset "PID[$1]"
}

# COUNT access tokens of random users among 1..MAX, one a line, in FILE.
tokens() { # FILE PORT COUNT MAX
    : >"$1"
    for _ in $(seq "$3"); do
        local n=$(((RANDOM * 32768 + RANDOM) % $4 + 1))
        curl -fs -X POST "http://127.0.0.1:$2/token" -d "username=bench$n&password=$BENCH_PASSWORD" |
            sed 's/.*"access_token":"\([^"]*\)".*/\1/' >>"$1"
        echo >>"$1"
    done
    [ "$(grep -c . "$1")" = "$3" ] || { echo "login failed while collecting tokens" >&2; exit 1; }
}

# CPU time (user and system, reaped children included) in clock ticks: of one process, or of
# every process of the local PostgreSQL server.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13 + $14 + $15}'; }
database_ticks() {
    [ "$BACKEND" = postgres ] || { echo 0; return; }
    # Counts the server's processes that exist now: backends of closed connections are
    # counted through the postmaster's reaped children.
    local p t=0
    for p in $(pgrep -x postgres); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
    echo "$t"
}
# CPU ticks of the service's password hashing threads (named gatehouse-hash-N; the kernel keeps
# the first 15 characters); nothing for a build without them. Each thread's stat file is read
# once; after "pid (comm) ", utime and stime are fields 12 and 13.
hashing_ticks() { # PID
    awk '/^[0-9]+ \(gatehouse-hash/ {sub(/.*\) /, ""); t += $12 + $13; n++} END {if (n) print t}' \
        /proc/"$1"/task/*/stat 2>/dev/null || true
}
# Milliseconds of CPU per request: TICKS over the requests of a wrk output.
ms_per_request() { # TICKS WRK_OUTPUT
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" '/ requests in / {printf "%.2f\n", t * 1000 / hz / $1}' "$2"
}

# VmHWM (peak resident) or VmRSS of a process, in MB.
memory_mb() { awk -v k="$2:" '$1 == k {printf "%.1f\n", $2 / 1024}' "/proc/$1/status"; }

# --- scenarios ----------------------------------------------------------------------------------
scenario_1() {
    local rounds=$((ROUNDS * 3))
    say "## 1. GET /users/me/ throughput, against the baseline (wrk -t1 -c32, ${SECONDS_PER_RUN}s, $rounds rounds, order alternating)"
    # Short runs in alternating order, and the ratio taken within each round: the load of a
    # shared machine drifts by more than the difference measured, but slowly.
    local r first second
    for r in $(seq "$rounds"); do
        if [ $((r % 2)) = 1 ]; then first=baseline second=gatehouse; else first=gatehouse second=baseline; fi
        for who in $first $second; do
            local port=$PORT
            [ "$who" = baseline ] && port=$BASE_PORT
            BENCH_TOKENS=$WORK/tokens-small $WRK -c32 -d"${SECONDS_PER_RUN}s" -s bench/wrk/me.lua \
                "http://127.0.0.1:$port" >"$WORK/s1-$who-$r.txt"
        done
        local b=$WORK/s1-baseline-$r.txt g=$WORK/s1-gatehouse-$r.txt
        ratio "$(rps "$g")" "$(rps "$b")" >"$WORK/s1-ratio-$r.txt"
        say "round $r: baseline $(rps "$b")/s p99 $(pct "$b" 99) ms [$(errors "$b")]; gatehouse $(rps "$g")/s p99 $(pct "$g" 99) ms [$(errors "$g")]; ratio $(cat "$WORK/s1-ratio-$r.txt")"
    done
    local base gh base99 gh99 r1
    base=$(for f in "$WORK"/s1-baseline-*.txt; do rps "$f"; done | median)
    gh=$(for f in "$WORK"/s1-gatehouse-*.txt; do rps "$f"; done | median)
    base99=$(for f in "$WORK"/s1-baseline-*.txt; do pct "$f" 99; done | median)
    gh99=$(for f in "$WORK"/s1-gatehouse-*.txt; do pct "$f" 99; done | median)
    r1=$(cat "$WORK"/s1-ratio-*.txt | median)
    say "RESULT 1: median baseline $base/s (p99 $base99 ms), gatehouse $gh/s (p99 $gh99 ms); median ratio of the rounds $r1 (target >= 0.9: $(verdict "$r1 >= 0.9"))"
}

scenario_2() {
    say "## 2. Logins per second, against the Argon2id limit (wrk -t1 -c8, $((SECONDS_PER_RUN * 2))s, hash timed before and after, $ROUNDS rounds)"
    local r limit parallel service hashing hashing_after database cpu hash_ms split round_ratio share speed
    for r in $(seq "$ROUNDS"); do
        "$HELPER" hash-time 12 >"$WORK/s2-hash-before-$r.txt"
        service=$(cpu_ticks "${PID[small]}")
        hashing=$(hashing_ticks "${PID[small]}")
        database=$(database_ticks)
        BENCH_USERS=$SMALL_USERS $WRK -c8 -d"$((SECONDS_PER_RUN * 2))s" -s bench/wrk/login.lua \
            "http://127.0.0.1:$PORT" >"$WORK/s2-login-$r.txt"
        # Hashing first (the reverse of the order before): a hash still running when wrk stops
        # then counts in the service's total too, not only in its hashing.
        hashing_after=$(hashing_ticks "${PID[small]}")
        service=$(($(cpu_ticks "${PID[small]}") - service))
        database=$(($(database_ticks) - database))
        cpu="service $(ms_per_request "$service" "$WORK/s2-login-$r.txt") ms"
        split="" hash_ms=""
        if [ -n "$hashing" ] && [ -n "$hashing_after" ]; then
            hashing=$((hashing_after - hashing))
            hash_ms=$(ms_per_request "$hashing" "$WORK/s2-login-$r.txt")
            cpu+=" (hashing threads $hash_ms ms,"
            cpu+=" the rest $(ms_per_request "$((service - hashing))" "$WORK/s2-login-$r.txt") ms)"
        fi
        [ "$BACKEND" = sqlite ] || cpu+=", database server $(ms_per_request "$database" "$WORK/s2-login-$r.txt") ms"
        "$HELPER" hash-time 12 >"$WORK/s2-hash-after-$r.txt"
        limit=$(cat "$WORK/s2-hash-before-$r.txt" "$WORK/s2-hash-after-$r.txt" |
            sed 's/.*limit_per_second=\([0-9.]*\).*/\1/' | awk '{s += $1} END {printf "%.2f\n", s / NR}')
        parallel=$(cat "$WORK/s2-hash-before-$r.txt" "$WORK/s2-hash-after-$r.txt" |
            sed 's/.*parallel_per_second=\([0-9.]*\).*/\1/' | awk '{s += $1} END {printf "%.2f\n", s / NR}')
        if [ -n "$hash_ms" ] && awk -v h="$hash_ms" 'BEGIN {exit !(h > 0)}'; then
            # The round's ratio to the limit, split in two: the share of the cores the hashing
            # threads had, and how fast a hash ran in the run against one alone, in CPU time
            # (`cpu_alone` before and after, averaged as rates, as the limit is). Their product
            # is the ratio but for the limit's wall time against CPU time.
            cat "$WORK/s2-hash-before-$r.txt" "$WORK/s2-hash-after-$r.txt" |
                sed 's/.*cores=\([0-9]*\).*cpu_alone=\([0-9.]*\).*/\1 \2/' |
                awk -v logins="$(rps "$WORK/s2-login-$r.txt")" -v limit="$limit" -v hash_ms="$hash_ms" \
                    '{cores = $1; rate += 1 / ($2 * 1000)} END {
                        printf "%.3f %.3f %.3f\n", logins / limit,
                            logins * hash_ms / 1000 / cores, NR / rate / hash_ms }' \
                    >"$WORK/s2-split-$r.txt"
            read -r round_ratio share speed <"$WORK/s2-split-$r.txt"
            split=" | ratio to the limit $round_ratio:"
            split+=" share of the cores hashing $share × CPU of a hash alone / in the run $speed"
        fi
        echo "$limit" >"$WORK/s2-limit-$r.txt"
        echo "$parallel" >"$WORK/s2-parallel-$r.txt"
        say "round $r: before: $(cat "$WORK/s2-hash-before-$r.txt") | logins $(rps "$WORK/s2-login-$r.txt")/s p50 $(pct "$WORK/s2-login-$r.txt" 50) ms, $(grep statuses "$WORK/s2-login-$r.txt") [$(errors "$WORK/s2-login-$r.txt")], CPU per login: $cpu | after: $(cat "$WORK/s2-hash-after-$r.txt")$split"
    done
    local logins r2 rp
    limit=$(cat "$WORK"/s2-limit-*.txt | median)
    parallel=$(cat "$WORK"/s2-parallel-*.txt | median)
    logins=$(for f in "$WORK"/s2-login-*.txt; do rps "$f"; done | median)
    r2=$(ratio "$logins" "$limit")
    rp=$(ratio "$logins" "$parallel")
    say "RESULT 2: median logins $logins/s; limit (cores / one verification) $limit/s, ratio $r2 (target >= 0.9: $(verdict "$r2 >= 0.9")); bare parallel verification $parallel/s, ratio $rp"
    if compgen -G "$WORK/s2-split-*.txt" >/dev/null; then
        say "RESULT 2: medians of the rounds, each taken on its own: ratio to the limit $(cut -d' ' -f1 "$WORK"/s2-split-*.txt | median); share of the cores hashing $(cut -d' ' -f2 "$WORK"/s2-split-*.txt | median); CPU of a hash alone / in the run $(cut -d' ' -f3 "$WORK"/s2-split-*.txt | median)"
    fi
}

# The paced GET /users/me/ load of scenario 3 (4 connections, one request per 5 ms each), on
# the service, or on another server and path (the baseline's GET /claims).
paced() { # OUTPUT [PORT PATH]
    BENCH_TOKENS=$WORK/tokens-small BENCH_DELAY_MS=5 BENCH_PATH=${3:-/users/me/} $WRK -c4 \
        -d"${SECONDS_PER_RUN}s" -s bench/wrk/me.lua "http://127.0.0.1:${2:-$PORT}" >"$1"
}

# The paced load on the service, then on the baseline, or the other way round (odd rounds
# first), so that neither always comes first in a phase.
paced_both() { # ROUND PHASE
    local who
    for who in $([ $(($1 % 2)) = 1 ] && echo gatehouse baseline || echo baseline gatehouse); do
        if [ "$who" = gatehouse ]; then
            # Where the log stood before and after, read once the phase is over.
            log_bytes >"$WORK/s3-$2-log-$1.txt"
            paced_maybe_traced "$2" "$WORK/s3-$2-$1.txt" "$PORT" /users/me/ "${PID[small]}"
            sleep 0.2 # the log is written in batches, up to 100 ms late
            log_bytes >>"$WORK/s3-$2-log-$1.txt"
        else
            paced_maybe_traced "$2" "$WORK/s3-$2-baseline-$1.txt" "$BASE_PORT" /claims "${PID[baseline]}"
        fi
    done
}

# The paced load; under the flood with BENCH_S3_TRACE=1, also a kernel trace of the whole
# machine while it runs, for `attribute_trace` (the trace slows what it watches: the figures
# of a traced run show where time goes, not the scenario's result).
paced_maybe_traced() { # PHASE OUTPUT PORT PATH SERVER_PID
    if [ -z "${BENCH_S3_TRACE:-}" ] || [ "$1" != busy ]; then
        paced "$2" "$3" "$4"
        return
    fi
    paced "$2" "$3" "$4" &
    local load=$! client
    sleep 1
    client=$(pgrep -n -x wrk) # the paced client: the newest wrk, started after the flood's
    ss -tnpH "( sport = :$3 or dport = :$3 )" >"$2.connections"
    # Two recordings: the scheduler on every core, the system calls of the two processes only
    # (of every process, they would be too many for the trace to keep up).
    local seconds=$((SECONDS_PER_RUN - 3))
    perf record -q -a -m 16M -o "$2.sched.perf" -e sched:sched_switch -e sched:sched_wakeup \
        -- sleep "$seconds" 2>/dev/null &
    local sched=$!
    perf record -q -p "$client,$5" -m 16M -o "$2.calls.perf" $(
        for call in read write writev recvfrom sendto; do
            echo "-e syscalls:sys_enter_$call -e syscalls:sys_exit_$call"
        done
    ) -- sleep "$seconds" 2>/dev/null
    wait "$sched" "$load"
    echo "$client $5" >"$2.processes"
}

# bench/attribute.py's account of a traced paced run (OUTPUT as given to paced_maybe_traced),
# in OUTPUT's name with .attribution. Run once the flood is over: it takes seconds of CPU.
attribute_trace() { # OUTPUT
    for part in sched calls; do
        perf script -i "$1.$part.perf" -F comm,pid,tid,cpu,time,event,trace 2>/dev/null
    done | python3 bench/attribute.py "$1.connections" $(cat "$1.processes") >"${1%.txt}.attribution"
    [ -n "${BENCH_KEEP:-}" ] || rm -f "$1".*.perf
}

log_bytes() { stat -c %s "$WORK/small.log"; }
# The median over the rounds of the p99 of the wrk outputs s3-NAME-<round>.txt.
median_p99() { # NAME
    local r
    for r in $(seq "$ROUNDS"); do pct "$WORK/s3-$1-$r.txt" 99; done | median
}
# The p99 of the service's own time on GET /users/me/ between two `log_bytes`: the request log's
# latency_ms, from the request's head (read and parsed) to its answer ready to write. Not in it:
# reading and writing the connection, waking each side, the loopback.
served_p99() { # FROM TO
    # Nothing to read below RUST_LOG=info: "n/a".
    { tail -c +"$(($1 + 1))" "$WORK/small.log" || true; } | head -c "$(($2 - $1))" |
        { grep -F 'route=/users/me/' || true; } |
        sed -n 's/.*latency_ms=\([0-9.]*\).*/\1/p' | sort -g |
        awk '{a[NR] = $1} END {i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1; if (NR) printf "%.3f\n", a[i]; else print "n/a"}'
}

# The paced load beside the helper's bare hashing (one loop per core, no requests), started
# under the scheduling command given (nice, chrt).
paced_beside_hashing() { # OUTPUT COMMAND...
    local output=$1
    shift
    "$@" "$HELPER" hash-load "$((SECONDS_PER_RUN + 3))" >/dev/null &
    local load=$!
    sleep 1.5
    paced "$output"
    wait "$load"
}

# The session cache's hit and miss counters, as "HITS MISSES".
cache_counts() {
    curl -fs "http://127.0.0.1:$PORT/metrics" |
        awk '$1 == "gatehouse_session_cache_hits_total" {h = $2}
             $1 == "gatehouse_session_cache_misses_total" {m = $2}
             END {printf "%d %d\n", h, m}'
}
# The share of signed-in requests that read the database between two `cache_counts`.
miss_share() { # BEFORE AFTER
    awk -v b="$1" -v a="$2" 'BEGIN {split(b, x, " "); split(a, y, " ")
        h = y[1] - x[1]; m = y[2] - x[2]; printf "%.1f%%\n", (h + m) ? 100 * m / (h + m) : 0}'
}

scenario_3() {
    say "## 3. GET /users/me/ p99 while a login flood fills every hashing slot (paced: wrk -t1 -c4, one request per 5 ms per connection; flood: wrk -t1 -c16 on /token; $ROUNDS rounds; the same paced load on the baseline's GET /claims, which answers from memory, for reference)"
    local r
    for r in $(seq "$ROUNDS"); do
        local quiet_from quiet_to busy_from busy_to
        quiet_from=$(cache_counts)
        paced_both "$r" quiet
        quiet_to=$(cache_counts)
        BENCH_USERS=$SMALL_USERS $WRK -c16 -d"$((2 * SECONDS_PER_RUN + 3))s" -s bench/wrk/login.lua \
            "http://127.0.0.1:$PORT" >"$WORK/s3-flood-$r.txt" &
        local flood=$!
        sleep 1.5
        curl -fs "http://127.0.0.1:$PORT/metrics" | grep -E '^gatehouse_password_hash_(slots|slots_in_use|waiting) ' |
            tr '\n' ' ' >"$WORK/s3-slots-$r.txt" || true
        busy_from=$(cache_counts)
        paced_both "$r" busy
        busy_to=$(cache_counts)
        wait "$flood"
        local phase
        for phase in quiet busy; do
            served_p99 $(cat "$WORK/s3-$phase-log-$r.txt") >"$WORK/s3-$phase-served-$r.txt"
        done
        say "round $r: quiet p50 $(pct "$WORK/s3-quiet-$r.txt" 50) p99 $(pct "$WORK/s3-quiet-$r.txt" 99) ms; under flood p50 $(pct "$WORK/s3-busy-$r.txt" 50) p99 $(pct "$WORK/s3-busy-$r.txt" 99) ms [$(errors "$WORK/s3-busy-$r.txt")]; the service's own p99 (request log) quiet $(cat "$WORK/s3-quiet-served-$r.txt"), under flood $(cat "$WORK/s3-busy-served-$r.txt") ms; baseline /claims p99 quiet $(pct "$WORK/s3-quiet-baseline-$r.txt" 99), under flood $(pct "$WORK/s3-busy-baseline-$r.txt" 99) ms [$(errors "$WORK/s3-busy-baseline-$r.txt")]; flood $(rps "$WORK/s3-flood-$r.txt") logins/s; session cache misses quiet $(miss_share "$quiet_from" "$quiet_to"), under flood $(miss_share "$busy_from" "$busy_to"); metrics during flood: $(cat "$WORK/s3-slots-$r.txt")"
        if [ -n "${BENCH_S3_TRACE:-}" ]; then
            attribute_trace "$WORK/s3-busy-$r.txt"
            attribute_trace "$WORK/s3-busy-baseline-$r.txt"
            say "round $r, where the paced requests' time went under the flood (traced run), on the service:"
            say "$(cat "$WORK/s3-busy-$r.attribution")"
            say "on the baseline's /claims:"
            say "$(cat "$WORK/s3-busy-baseline-$r.attribution")"
        fi
        if [ -n "${BENCH_S3_BARE:-}" ]; then
            paced_beside_hashing "$WORK/s3-nice-$r.txt" nice -n 10
            paced_beside_hashing "$WORK/s3-idle-$r.txt" chrt --idle 0
            say "round $r, bare hashing on every core beside the paced load (no login requests): p99 at nice 10 (the service's nice value, usual time slice) $(pct "$WORK/s3-nice-$r.txt" 99) ms; under SCHED_IDLE $(pct "$WORK/s3-idle-$r.txt" 99) ms"
        fi
    done
    local quiet busy r3 base_quiet base_busy
    quiet=$(median_p99 quiet)
    busy=$(median_p99 busy)
    base_quiet=$(median_p99 quiet-baseline)
    base_busy=$(median_p99 busy-baseline)
    r3=$(ratio "$busy" "$quiet")
    say "RESULT 3: median p99 quiet $quiet ms, under flood $busy ms; ratio $r3 (target < 20 ms and < 3x: $(verdict "$busy < 20 && $r3 < 3")); the baseline's /claims beside the same flood: quiet $base_quiet ms, under flood $base_busy ms, ratio $(ratio "$base_busy" "$base_quiet")"
    if [ -n "${BENCH_S3_BARE:-}" ]; then
        local setting
        for setting in nice idle; do
            say "bare hashing, $setting: median p99 $(for f in "$WORK"/s3-"$setting"-*.txt; do pct "$f" 99; done | median) ms"
        done
    fi
}

scenario_4() {
    local limits
    for limits in defaults generous; do
        say "## 4. Peak memory under 1,000 concurrent login connections (20 s of keep-alive logins; fresh process; $limits limits)"
        stop small
        if [ $limits = defaults ]; then
            start_gatehouse small "$SMALL_URL" "$PORT"
        else
            start_gatehouse small "$SMALL_URL" "$PORT" "${GENEROUS_LIMITS[@]}"
        fi
        local before peak=0 rss
        before=$(memory_mb "${PID[small]}" VmRSS)
        BENCH_ADDR=127.0.0.1:$PORT "$HELPER" flood 1000 20 "$SMALL_USERS" >"$WORK/s4-flood-$limits.txt" &
        local flood=$!
        while kill -0 "$flood" 2>/dev/null; do
            rss=$(memory_mb "${PID[small]}" VmRSS || echo 0)
            peak=$(awk -v a="$peak" -v b="$rss" 'BEGIN {print (b > a) ? b : a}')
            sleep 0.5
        done
        wait "$flood"
        local hwm alive
        hwm=$(memory_mb "${PID[small]}" VmHWM)
        alive=$(curl -fs -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || echo dead)
        say "flood: $(cat "$WORK/s4-flood-$limits.txt")"
        say "RESULT 4 ($limits limits): RSS before $before MB, peak (VmHWM) $hwm MB (sampled max $peak MB); healthz after: $alive; target < 300 MB: $(verdict "$hwm < 300"); every request answered when failures={} and statuses are 200, 401, 429 or 503"
    done
    stop small
    start_gatehouse small "$SMALL_URL" "$PORT" "${GENEROUS_LIMITS[@]}"
}

scenario_5() {
    say "## 5. Scale: $LARGE_USERS users against $SMALL_USERS (two databases, two processes; latency at one login connection and at paced GET /users/me/; $ROUNDS interleaved rounds, the side that goes first alternating)"
    local large_url
    new_database large large_url
    DATABASE_URL=$large_url "$GATEHOUSE" migrate >/dev/null
    say "$(DATABASE_URL=$large_url "$HELPER" seed 1 "$LARGE_USERS")"
    start_gatehouse large "$large_url" "$LARGE_PORT" "${GENEROUS_LIMITS[@]}"
    tokens "$WORK/tokens-large" "$LARGE_PORT" 20 "$LARGE_USERS"
    local r size port users order
    for r in $(seq "$ROUNDS"); do
        # Which side goes first alternates by round, as in scenario 1, so that neither is
        # always the one measured later.
        if [ $((r % 2)) -eq 1 ]; then order="small large"; else order="large small"; fi
        for size in $order; do
            if [ $size = small ]; then port=$PORT users=$SMALL_USERS; else port=$LARGE_PORT users=$LARGE_USERS; fi
            BENCH_USERS=$users $WRK -c1 -d"${SECONDS_PER_RUN}s" -s bench/wrk/login.lua \
                "http://127.0.0.1:$port" >"$WORK/s5-login-$size-$r.txt"
            BENCH_TOKENS=$WORK/tokens-$size BENCH_DELAY_MS=5 $WRK -c4 -d"${SECONDS_PER_RUN}s" \
                -s bench/wrk/me.lua "http://127.0.0.1:$port" >"$WORK/s5-me-$size-$r.txt"
        done
        say "round $r: login p50 small $(pct "$WORK/s5-login-small-$r.txt" 50) / large $(pct "$WORK/s5-login-large-$r.txt" 50) ms; me p50 small $(pct "$WORK/s5-me-small-$r.txt" 50) / large $(pct "$WORK/s5-me-large-$r.txt" 50) ms, p99 $(pct "$WORK/s5-me-small-$r.txt" 99) / $(pct "$WORK/s5-me-large-$r.txt" 99) ms"
    done
    local kind p s l q
    for kind in login me; do
        for p in 50 99; do
            s=$(for f in "$WORK"/s5-$kind-small-*.txt; do pct "$f" $p; done | median)
            l=$(for f in "$WORK"/s5-$kind-large-*.txt; do pct "$f" $p; done | median)
            q=$(ratio "$l" "$s")
            say "RESULT 5 $kind p$p: $SMALL_USERS users $s ms, $LARGE_USERS users $l ms; ratio $q (target <= 1.2: $(verdict "$q <= 1.2"))"
        done
    done
    stop large
}

scenario_6() {
    say "## 6. Cold start to the first answered request (SQLite, GET /healthz polled every 10 ms), and idle memory"
    local dir=$WORK/cold run t0 t1
    mkdir -p "$dir"
    for run in fresh warm1 warm2 warm3; do
        t0=$(date +%s%N)
        DATABASE_URL="sqlite://$dir/cold.db?mode=rwc" PORT=$((PORT + 2)) DATA_DIR="$dir" \
            "$GATEHOUSE" serve >"$WORK/cold-$run.log" 2>&1 &
        PID[cold]=$!
        wait_ready $((PORT + 2))
        t1=$(date +%s%N)
        sleep 1
        local idle
        idle=$(memory_mb "${PID[cold]}" VmRSS)
        say "$run: first answer after $(((t1 - t0) / 1000000)) ms; idle RSS $idle MB"
        stop cold
    done
    if [ "$BACKEND" = postgres ]; then first_seconds_on_postgres; fi
}

# Whatever a new database connection costs, a service just started pays it on its first
# requests: its pools open connections as requests need them.
first_seconds_on_postgres() {
    say "## 6, PostgreSQL: the first seconds of a service just started on a new database (start to first answer, the first sign-up, the first login, then GET /notes/ paced at wrk -c8, one request per 5 ms per connection, for 3 s at once and again for 3 s after 3 s more; 3 runs)"
    local run port=$((PORT + 3)) t0 t1 t2 t3
    for run in 1 2 3; do
        local url
        new_database "first$run" url
        t0=$(date +%s%N)
        start_gatehouse first "$url" "$port" "${GENEROUS_LIMITS[@]}"
        t1=$(date +%s%N)
        curl -fs -o /dev/null -X POST "http://127.0.0.1:$port/users/" -H 'content-type: application/json' \
            -d "{\"username\":\"first\",\"email\":\"first@example.com\",\"password\":\"$BENCH_PASSWORD\"}"
        t2=$(date +%s%N)
        curl -fs -X POST "http://127.0.0.1:$port/token" -d "username=first&password=$BENCH_PASSWORD" |
            sed 's/.*"access_token":"\([^"]*\)".*/\1/' >"$WORK/s6-token-$run"
        t3=$(date +%s%N)
        local phase
        for phase in first later; do
            [ $phase = first ] || sleep 3
            BENCH_TOKENS=$WORK/s6-token-$run BENCH_PATH=/notes/ BENCH_DELAY_MS=5 $WRK -c8 -d3s \
                -s bench/wrk/me.lua "http://127.0.0.1:$port" >"$WORK/s6-notes-$phase-$run.txt"
        done
        say "run $run: first answer after $(((t1 - t0) / 1000000)) ms; first sign-up $(((t2 - t1) / 1000000)) ms; first login $(((t3 - t2) / 1000000)) ms; GET /notes/ p99 in the first 3 s $(pct "$WORK/s6-notes-first-$run.txt" 99) ms (max $(awk '$1 == "Latency" {print $4; exit}' "$WORK/s6-notes-first-$run.txt")), 3 s later $(pct "$WORK/s6-notes-later-$run.txt" 99) ms [$(errors "$WORK/s6-notes-first-$run.txt")]"
        stop first
    done
    local first later
    first=$(for f in "$WORK"/s6-notes-first-*.txt; do pct "$f" 99; done | median)
    later=$(for f in "$WORK"/s6-notes-later-*.txt; do pct "$f" 99; done | median)
    say "RESULT 6 (PostgreSQL): median GET /notes/ p99 in the first 3 s $first ms, 3 s later $later ms; ratio $(ratio "$first" "$later")"
}

# --- main --------------------------------------------------------------------------------------
echo "building release binaries in $TARGET" >&2
# BENCH_GATEHOUSE names a binary built elsewhere (to compare two builds on one machine).
if [ -n "${BENCH_GATEHOUSE:-}" ]; then
    echo "service binary: $BENCH_GATEHOUSE (not built here)" >&2
else
    CARGO_TARGET_DIR=$TARGET cargo build --release --quiet --bin gatehouse
fi
CARGO_TARGET_DIR=$TARGET cargo build --release --quiet --manifest-path bench/baseline/Cargo.toml

say "# Gatehouse bench: $BACKEND, scenarios $SCENARIOS"
say "date $(date -u +%Y-%m-%dT%H:%MZ), commit ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')}, $(nproc) cores, $(uname -m), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
say "argon2: m=${ARGON2_MEMORY_KIB:-19456} KiB t=${ARGON2_ITERATIONS:-2} p=${ARGON2_PARALLELISM:-1}; RUST_LOG=$RUST_LOG; generous limits: ${GENEROUS_LIMITS[*]:-none}"

new_database small SMALL_URL
DATABASE_URL=$SMALL_URL "$GATEHOUSE" migrate >/dev/null
say "$(DATABASE_URL=$SMALL_URL "$HELPER" seed 1 $SMALL_USERS)"
start_gatehouse small "$SMALL_URL" "$PORT" "${GENEROUS_LIMITS[@]}"
DATABASE_URL=$SMALL_URL BASELINE_PORT=$BASE_PORT "$HELPER" serve >"$WORK/baseline.log" 2>&1 &
PID[baseline]=$!
wait_ready "$BASE_PORT"
tokens "$WORK/tokens-small" "$PORT" 20 "$SMALL_USERS"

for s in $SCENARIOS; do
    "scenario_$s"
done
say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

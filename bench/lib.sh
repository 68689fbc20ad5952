# Shell functions shared by the bench scripts (sourced, not run).

# Waits until Gatehouse or the baseline answers GET /healthz on PORT: polls every INTERVAL
# seconds (default 0.01) until SECONDS have passed (default 10; a server under valgrind
# starts slowly, and is better polled less often).
wait_ready() { # PORT [SECONDS] [INTERVAL]
    local deadline=$((SECONDS + ${2:-10}))
    while ((SECONDS < deadline)); do
        curl -fs -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
        sleep "${3:-0.01}"
    done
    echo "nothing answers on port $1" >&2
    return 1
}

# Shared by bench/run.sh, bench/udp.sh and bench/latency.sh.

# bench_stop PID...: stops the processes a benchmark started.  Two signals
# (a second one makes a draining shim exit at once), then up to 3 s for each
# to go, then SIGKILL; reaps them.
bench_stop() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null; done
    sleep 0.2
    for p in "$@"; do kill "$p" 2>/dev/null; done
    for p in "$@"; do
        for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    wait 2>/dev/null
}

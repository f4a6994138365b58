#!/bin/bash
# Live demonstration: real iperf servers on this machine (loopback), the shim
# in front of them, real clients through it.  Prints what the shim logged.
set -u
cd "$(dirname "$0")/.."
SHIM=${SHIM:-./iperf-shim}
PORT_SRV=5291 PORT_SHIM=5292
tmp=$(mktemp -d /tmp/iperf-shim-demo.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

wait_port() {  # wait_port PORT: until a TCP listener is up (5 s at most)
    for _ in $(seq 100); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.05; done
    echo "nothing listens on port $1" >&2; exit 1
}
step() { printf '\n=== %s\n' "$*"; }

iperf3 -s -p $PORT_SRV >"$tmp/iperf3-server.log" 2>&1 & pids+=($!)
wait_port $PORT_SRV
"$SHIM" --listen "[::]:$PORT_SHIM" --upstream "127.0.0.1:$PORT_SRV" 2>"$tmp/shim.log" & pids+=($!)
wait_port $PORT_SHIM

step "iperf3 --bidir -P 2 through the shim (IPv6 client -> shim -> IPv4 server)"
iperf3 -c ::1 -p $PORT_SHIM --bidir -P 2 -t 3 | grep -E 'SUM|sender|receiver' | tail -n 6
step "iperf3 -R through the shim"
iperf3 -c 127.0.0.1 -p $PORT_SHIM -R -t 2 | tail -n 4
step "what the shim logged"
cat "$tmp/shim.log"

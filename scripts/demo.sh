#!/bin/bash
# Live demonstration: real iperf3 and iperf2 servers on this machine
# (loopback), one shim port in front of both, real clients through it.
# Prints the clients' summaries and what the shim logged.
set -u
cd "$(dirname "$0")/.."
SHIM=${SHIM:-./iperf-shim}
P3=5291 P2=5293 PSHIM=5292
tmp=$(mktemp -d /tmp/iperf-shim-demo.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

wait_port() {  # wait_port PROTO PORT: until a listener is up (5 s at most)
    for _ in $(seq 100); do ss -Hln"$1" "sport = :$2" | grep -q . && return 0; sleep 0.05; done
    echo "nothing listens on port $2" >&2; exit 1
}
step() { printf '\n=== %s\n' "$*"; }

[ -x "$SHIM" ] || make -s
iperf3 -s -p $P3 >"$tmp/iperf3-server.log" 2>&1 & pids+=($!)
iperf -s -p $P2 >"$tmp/iperf2-tcp-server.log" 2>&1 & pids+=($!)
iperf -s -u -p $P2 >"$tmp/iperf2-udp-server.log" 2>&1 & pids+=($!)
wait_port t $P3; wait_port t $P2; wait_port u $P2
"$SHIM" --listen "[::]:$PSHIM" --upstream "127.0.0.1:$P3" --upstream-iperf2 "127.0.0.1:$P2" \
    --udp-linger 2 2>"$tmp/shim.log" & pids+=($!)
wait_port t $PSHIM

step "iperf3 --bidir -P 2 over IPv6 through the shim (shim -> IPv4 server)"
timeout 30 iperf3 -c ::1 -p $PSHIM --bidir -P 2 -t 3 | grep -E 'SUM' | tail -n 4
step "iperf3 -R through the shim"
timeout 30 iperf3 -c 127.0.0.1 -p $PSHIM -R -t 2 | grep -E 'sender|receiver'
step "iperf3 -u -b 200M through the shim"
timeout 30 iperf3 -c 127.0.0.1 -p $PSHIM -u -b 200M -t 2 | grep -E 'sender|receiver'
step "iperf2 TCP through the same shim port"
timeout 30 iperf -c 127.0.0.1 -p $PSHIM -t 2 | grep -E 'sec'
step "iperf2 UDP through the same shim port (the Server Report comes back through the shim)"
timeout 30 iperf -c 127.0.0.1 -p $PSHIM -u -b 50M -t 2 | grep -A2 'Server Report'
# UDP flows are logged when they end, --udp-linger (2 s) after their last datagram
for _ in $(seq 100); do grep -q 'iperf2 UDP flow .* ended' "$tmp/shim.log" && break; sleep 0.1; done
step "what the shim logged"
cat "$tmp/shim.log"

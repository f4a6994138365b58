#!/bin/bash
# iperf3 over a long path: through the shim a TCP stream must reach the rate it
# reaches directly over the same path (issue #9, faithful numbers).
#
# The shim caps the receive buffer of its data connections (512 KiB, for exact
# end-of-test accounting on fast paths: proxy/iperf3_data.c data_leg_rcvbuf).
# A buffer is a window, and a window limits a stream to window / RTT: on a
# 40 ms path the cap would hold a client-to-server stream near 120 Mbit/s
# whatever the path carries.  It must apply only to short paths.
#
# Topology (tests/integration/netns.sh): client -- gateway (shim) -- server;
# every packet the client namespace receives waits DELAY s in a delay line
# (NFQUEUE to build/tools/nfq_delay on its INPUT hook; only the receiving side
# is delayed, so no sender's own queue limits apply), which gives both paths,
# direct (forwarded by the gateway) and through the shim, the same RTT.
# For IPv4 and IPv6 client to server, and IPv4 -R, the receiver's bytes through
# the shim must be at least WANWIN_MIN (0.6) of the direct run next to it, and
# above what the capped window could carry.  A second shim runs next to the
# client (the long path is then toward the server) for -R -P 4, where the
# shim's receiving sockets are its upstream ones.
# WANWIN_DELAY (0.04 s), WANWIN_TIME (4 s) override.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
. "$here/netns.sh"
it_require_root
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing"

DELAY=${WANWIN_DELAY:-0.04}
TIME=${WANWIN_TIME:-4}
MIN=${WANWIN_MIN:-0.6}
QNUM=9
SRV=5201 SHIMP=15901

NFQ=$root/build/tools/nfq_delay
if [ ! -x "$NFQ" ]; then
    make -C "$root" -s tools >"$IT_TMP/make-tools.log" 2>&1
    [ -x "$NFQ" ] || { cat "$IT_TMP/make-tools.log"; it_fail "test tool missing: $NFQ (make tools)"; }
fi

NS_C4=10.209.1.2    NS_GC4=10.209.1.1    NS_GS4=10.209.2.1    NS_S4=10.209.2.2
NS_C6=fd00:209:1::2 NS_GC6=fd00:209:1::1 NS_GS6=fd00:209:2::1 NS_S6=fd00:209:2::2
ns_topology "is-wanwin-$$"

ns_ipt "$NS_C" -A INPUT -i eth0 -p tcp -j NFQUEUE --queue-num $QNUM --queue-bypass \
    || it_fail "NFQUEUE rule in $NS_C"
it_bg nfq ip netns exec "$NS_C" "$NFQ" -q $QNUM -d "$DELAY" -l 50000 -t 300
NFQ_PID=$IT_LAST_PID
it_wait_log_count "$IT_TMP/nfq.log" 'nfq_delay: ready' 1 10 || { cat "$IT_TMP/nfq.log"; it_fail "delay line did not start"; }

it_bg server ip netns exec "$NS_S" iperf3 -s -p $SRV
it_wait_tcp "$NS_S" x $SRV 10 || it_fail "iperf3 server did not start"
it_start_shim shim "$NS_G" -- --listen "[::]:$SHIMP" --upstream "$NS_S4:$SRV" --log-level debug
it_start_shim near "$NS_C" -- --listen "127.0.0.1:$SHIMP" --upstream "$NS_S4:$SRV" --log-level debug

# run NAME HOST PORT [ARGS...]: one iperf3 test from the client; prints the
# receiver's bytes (end.sum_received) and keeps the JSON in $IT_TMP/NAME.json.
# Runs in a command substitution: failures are told on stderr.
run() {
    local name=$1 host=$2 port=$3
    shift 3
    if ! ns_exec "$NS_C" timeout $((TIME + 30)) iperf3 -c "$host" -p "$port" -t "$TIME" -J "$@" \
            >"$IT_TMP/$name.json" 2>&1; then
        cat "$IT_TMP/$name.json" >&2
        echo "FAIL: $name: iperf3 failed" >&2
        return 1
    fi
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bytes"])' \
        "$IT_TMP/$name.json" || { echo "FAIL: $name: no result" >&2; return 1; }
}

# what the capped window (at most 2 x 512 KiB of buffer) carries in TIME s at this RTT
cap_bytes=$(python3 -c "print(int(2 * 512 * 1024 / (2 * $DELAY) * $TIME))")
[ "$(echo "$DELAY" | awk '{ print ($1 * 2 > 0.0005) }')" = 1 ] || it_fail "WANWIN_DELAY too small to test a long path"

for c in "c2s-v4 $NS_S4 $NS_GC4" "c2s-v6 $NS_S6 $NS_GC6" "s2c-v4 $NS_S4 $NS_GC4 -R" \
         "near-s2c $NS_S4 127.0.0.1 -R -P 4"; do
    read -r name direct_host shim_host args <<<"$c"
    direct=$(run "$name-direct" "$direct_host" $SRV $args) || exit 1
    shim=$(run "$name-shim" "$shim_host" $SHIMP $args) || exit 1
    ratio=$(python3 -c "print('%.3f' % ($shim / $direct))")
    it_log "$name ($args): direct $direct bytes, shim $shim bytes ($ratio of direct; a capped window carries at most $cap_bytes per stream)"
    python3 -c "import sys; sys.exit(0 if $shim >= $MIN * $direct else 1)" \
        || it_fail "$name: through the shim $ratio of the direct rate (< $MIN)"
    # only meaningful where the delay line carries more than the capped windows would
    streams=1; [[ $args =~ -P\ ([0-9]+) ]] && streams=${BASH_REMATCH[1]}
    cap=$((cap_bytes * streams))
    if [ "$direct" -gt $((cap * 2)) ] && [ "$shim" -le "$cap" ]; then
        it_fail "$name: through the shim no more than the capped windows carry ($shim <= $cap)"
    fi
done

grep -q 'client path RTT [0-9.]* ms: its data connections. receive buffers are left to the kernel' \
    "$IT_TMP/shim.log" || it_fail "the shim did not log that it left the client path's buffers to the kernel"
grep -q 'server path RTT [0-9.]* ms: its data connections. receive buffers are left to the kernel' \
    "$IT_TMP/near.log" || it_fail "the shim next to the client did not leave the server path's buffers to the kernel"
[ "$(grep -c 'path RTT' "$IT_TMP/near.log")" = 1 ] || it_fail "one 'path RTT' line per test and side expected"
# the gateway-server leg is short: its buffers stay capped (no such line for it)
if grep -q 'server path RTT' "$IT_TMP/shim.log"; then
    grep 'server path RTT' "$IT_TMP/shim.log" | head -n 2
    it_fail "the short gateway-server path was left uncapped"
fi
kill -TERM "$NFQ_PID" 2>/dev/null
wait "$NFQ_PID" 2>/dev/null
it_log "delay line: $(grep 'nfq_delay: exit' "$IT_TMP/nfq.log" | tail -n 1)"
exit 0

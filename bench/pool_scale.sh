#!/bin/bash
# Scale run of a pool (esnet/iperf #2029: 96 concurrent --bidir tests), with real
# Debian iperf3 3.12 binaries, in network namespaces of its own (run it as root,
# from inside your own namespace if you share the machine):
#
#   bench/pool_scale.sh ./iperf-shim            # both scenarios
#   POOL_SCENARIO=big bench/pool_scale.sh ...   # only 96 clients / 48 servers
#   POOL_SCENARIO=dead bench/pool_scale.sh ...  # only 24 clients / 8 servers + a dead one
#
# Topology (tests/integration/netns.sh): client ns -- gateway ns (the shim) -- server
# ns (the iperf3 servers, ports 5201..).  The race's handshake drops
# (tests/integration/t_bidir_race.sh) are on both legs: packets 2 and 3 of every TCP
# connection (the handshake-completing ACK and the cookie) are dropped at random,
# p = POOL_PROB (0.5), on the client's OUTPUT (client -> shim) and on the gateway's
# OUTPUT (shim -> servers).
#
# Scenario "big": one shim in front of POOL_SERVERS (48) servers; POOL_CLIENTS (96)
# `iperf3 --bidir -t POOL_T -b POOL_RATE` clients started at once from one host.
# Scenario "dead": 24 clients, 8 servers and one member listed that nothing
# listens on.
# Pass: every client exits with JSON, no "error" (no "busy"), 2 streams, every
# stream with bytes > 0 sent and received, both directions.  Prints the shim's
# peak RSS (sampled every 0.2 s), its CPU seconds (utime + stime) over the run,
# the queue waits it logged, and the wall time.
set -u
here=$(cd "$(dirname "$0")" && pwd)
SHIM=$(realpath "${1:?usage: pool_scale.sh PATH/TO/iperf-shim}")
export SHIM
. "$here/../tests/integration/lib.sh"
. "$here/../tests/integration/netns.sh"
it_require_root
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"

PROB=${POOL_PROB:-0.5}
T=${POOL_T:-3}
RATE=${POOL_RATE:-20M}
SCENARIO=${POOL_SCENARIO:-all}
PORT=5201

ns_topology "h10pool-$$"
DROP=(-m connbytes --connbytes 2:3 --connbytes-dir original --connbytes-mode packets
      -m statistic --mode random --probability "$PROB" -j DROP)

# scenario NAME CLIENTS SERVERS DEAD: one run; returns non-zero on failure.
scenario() {
    local name=$1 nc=$2 ns=$3 dead=$4 i p ups=() bad=0
    local last=$((PORT + ns - 1))
    for ((i = 0; i < ns; i++)); do
        p=$((PORT + i))
        ns_exec "$NS_S" timeout 600 iperf3 -s -p $p -B "$NS_S4" >"$IT_TMP/$name-srv$p.log" 2>&1 &
        IT_PIDS+=($!)
        ups+=(--upstream "$NS_S4:$p")
        # the dead member goes in the middle of the list
        [ "$dead" = 1 ] && [ $i = $((ns / 2)) ] && ups+=(--upstream "$NS_S4:$((PORT + 999))")
    done
    for ((i = 0; i < ns; i++)); do
        it_wait_tcp "$NS_S" x $((PORT + i)) 10 || it_fail "$name: server $((PORT + i)) did not start"
    done
    ns_exec "$NS_C" iptables -F OUTPUT; ns_exec "$NS_G" iptables -F OUTPUT
    ns_exec "$NS_C" iptables -A OUTPUT -p tcp --dport $PORT "${DROP[@]}" || it_skip "no connbytes/statistic"
    ns_exec "$NS_G" iptables -A OUTPUT -p tcp --dport $PORT:$((PORT + 999)) "${DROP[@]}"
    it_start_shim "shim-$name" "$NS_G" -- --listen "$NS_GC4:$PORT" "${ups[@]}" --queue-timeout 120
    local spid
    spid=$(pgrep -P "$SHIM_PID" -f iperf-shim | head -n 1); [ -n "$spid" ] || spid=$SHIM_PID
    local cpu0 t0 peak=0 rss
    cpu0=$(awk '{print $14 + $15}' "/proc/$spid/stat")
    t0=$(date +%s.%N)
    for ((i = 0; i < nc; i++)); do
        timeout $((T * nc / ns + 90)) ip netns exec "$NS_C" iperf3 -c "$NS_GC4" -p $PORT --bidir \
            -t "$T" -b "$RATE" -J >"$IT_TMP/$name-c$i.json" 2>"$IT_TMP/$name-c$i.err" &
        echo $! >>"$IT_TMP/$name.pids"
    done
    while [ -n "$(jobs -rp | grep -Fxf "$IT_TMP/$name.pids")" ]; do
        rss=$(it_proc_rss_kb "$spid"); [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.2
    done
    local wall cpu
    wall=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
    cpu=$(awk -v c0="$cpu0" -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 - c0) / hz}' "/proc/$spid/stat")
    local drops
    drops="client $(ns_exec "$NS_C" iptables -nvxL OUTPUT | awk '$3=="DROP"{s+=$1} END{print s+0}'), gateway $(ns_exec "$NS_G" iptables -nvxL OUTPUT | awk '$3=="DROP"{s+=$1} END{print s+0}')"
    python3 - "$IT_TMP" "$name" "$nc" <<'EOF' || bad=1
import json, sys
d, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
fails = []
for i in range(n):
    try:
        j = json.load(open("%s/%s-c%d.json" % (d, name, i)))
    except Exception as e:
        fails.append("c%d: no JSON (%s)" % (i, str(e)[:60])); continue
    if j.get("error"):
        fails.append("c%d: %s" % (i, j["error"])); continue
    st = j.get("end", {}).get("streams", [])
    if len(st) != 2:
        fails.append("c%d: %d streams" % (i, len(st))); continue
    for s in st:
        a, b = (s.get("sender") or {}).get("bytes", 0), (s.get("receiver") or {}).get("bytes", 0)
        if a == 0 or b == 0:
            fails.append("c%d: a stream with sent %d received %d" % (i, a, b))
print("%s: %d/%d clients ok" % (name, n - len(fails), n))
for f in fails[:20]:
    print("  FAIL " + f)
sys.exit(1 if fails else 0)
EOF
    local log=$IT_TMP/shim-$name.log
    local waited busy down fixed
    waited=$(grep -cE "waits its turn" "$log")
    busy=$(grep -cE "busy \(ACCESS_DENIED\)" "$log")
    down=$(grep -cE "is down|is suspect" "$log")
    fixed=$(grep -c "bidir roles fixed" "$log")
    echo "$name: $nc clients, $ns servers$([ "$dead" = 1 ] && echo " + 1 dead member"): wall ${wall} s;" \
         "shim peak RSS ${peak} kB, CPU ${cpu} s; handshake drops: $drops;" \
         "$waited queued, max wait $(grep -oE 'queued [0-9.]+ s$' "$log" | awk '{if ($2 > m) m = $2} END {print m + 0}') s;" \
         "$fixed bidir pairs re-paired; member down/suspect lines: $down; ACCESS_DENIED answers: $busy"
    grep -E " (warn|error) " "$log" | head -n 5
    kill "$SHIM_PID" 2>/dev/null
    wait "$SHIM_PID" 2>/dev/null
    ns_kill_all "$NS_S"
    return $bad
}

rc=0
case $SCENARIO in all|big) scenario big "${POOL_CLIENTS:-96}" "${POOL_SERVERS:-48}" 0 || rc=1;; esac
case $SCENARIO in all|dead) scenario dead 24 8 1 || rc=1;; esac
[ $rc = 0 ] || it_fail "scale run failed"
echo ok

#!/bin/bash
# iperf3 3.12 UDP tests (-u) through the shim, each next to the same test run
# directly against the server, over IPv4 and IPv6 (the IPv6 shim listens on
# [::], dual-stack, and also takes an IPv4 client).
#
# Cases: default rate, -b 500M, -l 16, -l 1400, -l 8000, -l 65507, -R, --bidir,
# -P 4, -P 16.  Every run (direct and through the shim) must exit 0 with no
# JSON "error", count packets on both ends (client summary, and the server's
# own report via server -J / --get-server-output, stream by stream), receive
# no more than was sent, and through the shim create exactly one UDP flow per
# stream.  A gross-breakage bound applies per case up to 100 Mbit/s: true loss through
# the shim <= direct + 20 points (above, CPU-bound: reported).  Loss and jitter are
# printed side by side.
#
# -l 65507 is NOT fragmented on IPv4 loopback (65507 + 28 = 65535 < MTU 65536);
# on IPv6 it is (65507 + 48 > 65536), so the IPv6 run covers fragmentation and
# reassembly (host-wide IP fragment counters are printed as evidence).
#
# Loss comparison (IPv4, -b 100M -l 1400, -t $IT_UDP_TIME, both directions):
# $IT_UDP_ROUNDS interleaved rounds of direct and shim runs.  Measured on this
# 2-vCPU machine with other test suites running, one run in 5-8 (direct or
# shim alike) loses 1-10 % in a burst when a process is descheduled, while
# most runs lose 0-0.2 %.  The "true" loss is 1 - bytes received / bytes sent
# (it also counts the datagrams iperf3 itself does not see as lost: those
# after the last one received and those that arrive before the receiver
# enters TEST_RUNNING).  Asserted, exactly, for every shim run: the shim
# relayed toward the receiver every byte the sender sent (its flow line, once
# the flow ended, against the sender's count; + the 4-byte stream
# request/reply): nothing was lost in the shim or at its sockets' door.
# What is lost after it is lost in the receiving iperf3's socket buffer
# (208 KiB, ~15 ms at 100 Mbit/s) while that process waits for a CPU, as in
# direct runs: reported, not asserted:
#   median(shim) <= median(direct) + 3 points, min(shim) <= min(direct) + 0.5
# (the min check failed once under other engineers' load, 0.9 points: every
# shim run lost some at the receiver, one direct run lost nothing; issue #12).
# One systematic effect of the shim's own making shows at the receiver only:
# a delayed control connection in -R (the client discards what arrives before
# it reads TEST_RUNNING).  It costs hundreds of datagrams in the first
# interval of every run (269-294 when the control legs lacked TCP_NODELAY):
# asserted as best shim run > best direct run + 50 datagrams.
#
# Ports: 15501 (iperf3 -s, 127.0.0.1), 15502 (iperf3 -s, ::1), 15510 (shim,
# 127.0.0.1), 15511 (shim, [::]).  Takes about 2.5 minutes.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
IPERF3_VER=$(iperf3 --version 2>/dev/null | awk 'NR == 1 { print $2 }')
[[ $IPERF3_VER == 3.* ]] || it_skip "iperf3 version '$IPERF3_VER' not understood"
[ "$IPERF3_VER" = 3.12 ] || it_log "note: written against iperf3 3.12, found $IPERF3_VER"
[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: this test always runs its direct comparison itself"

T=${IT_UDP_TIME:-2}              # -t of the loss comparison runs
CT=${IT_UDP_CASE_TIME:-1}        # -t of the per-case runs
ROUNDS=${IT_UDP_ROUNDS:-5}
SRV4=15501 SRV6=15502 SHIM4=15510 SHIM6=15511
HAVE6=1
ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/' || HAVE6=0

it_iperf3_server srv4 $SRV4 -J
if [ $HAVE6 = 1 ]; then it_iperf3_server srv6 $SRV6 -B ::1 -J; fi
it_start_shim shim4 -- --listen 127.0.0.1:$SHIM4 --upstream 127.0.0.1:$SRV4 --log-level debug
SHIM4_PID=$SHIM_PID
SHIM4_LOG=$IT_TMP/shim4.log
SHIM6_PID=""
if [ $HAVE6 = 1 ]; then
    it_start_shim shim6 -- --listen "[::]:$SHIM6" --upstream "[::1]:$SRV6" --log-level debug
    SHIM6_PID=$SHIM_PID
fi
SHIM6_LOG=$IT_TMP/shim6.log
FD4=$(it_fd_count "$SHIM4_PID")
[ -n "$SHIM6_PID" ] && FD6=$(it_fd_count "$SHIM6_PID")

FAILS=0
fail_soft() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# client OUT HOST PORT ARGS...: one bounded iperf3 UDP client run (-t $T unless ARGS has -t).
client() {
    local out=$1 host=$2 port=$3; shift 3
    timeout $((T + 40)) iperf3 -c "$host" -p "$port" -u -t "$T" -J --get-server-output "$@" \
        >"$out" 2>"$out.err"
}

flows_created() { grep -c 'new iperf3 UDP flow from' "$1"; }

# run_case FAMILY NAME MODE P LEN ARGS...: direct run, then shim run; checks both.
run_case() {
    local fam=$1 name=$2 mode=$3 P=$4 len=$5; shift 5
    local host dport sport slog spid
    if [ "$fam" = v4 ]; then host=127.0.0.1 dport=$SRV4 sport=$SHIM4 slog=$SHIM4_LOG spid=$SHIM4_PID
    elif [ "$fam" = v6 ]; then host=::1 dport=$SRV6 sport=$SHIM6 slog=$SHIM6_LOG spid=$SHIM6_PID
    else host=127.0.0.1 dport="" sport=$SHIM6 slog=$SHIM6_LOG spid=$SHIM6_PID   # v4 client, [::] shim
    fi
    local opts=(--mode "$mode" -P "$P") nconn=$P rc d s frag0 frag1 n0 n1 dline="(none)" sline
    [ -n "$len" ] && opts+=(--len "$len")
    [ "$mode" = bidir ] && nconn=$((2 * P))
    local base=$IT_TMP/$fam-$name
    if [ -n "$dport" ]; then
        client "$base-direct.json" "$host" "$dport" "$@"; rc=$?
        if [ $rc != 0 ]; then
            fail_soft "$fam $name direct: iperf3 exit $rc: $(head -c 300 "$base-direct.json.err")"; return
        fi
        dline=$(it_udp_iperf3_check "$base-direct.json" "${opts[@]}") \
            || { fail_soft "$fam $name DIRECT run fails the checks (environment, not the shim): $dline"; return; }
    fi
    frag0=$(it_frag_counters); n0=$(flows_created "$slog")
    client "$base-shim.json" "$host" "$sport" "$@"; rc=$?
    frag1=$(it_frag_counters); n1=$(flows_created "$slog")
    kill -0 "$spid" 2>/dev/null || it_fail "$fam $name: the shim died; log tail: $(tail -n 20 "$slog")"
    if [ $rc != 0 ]; then
        fail_soft "$fam $name shim: iperf3 exit $rc: $(head -c 300 "$base-shim.json.err")"; return
    fi
    if ! sline=$(it_udp_iperf3_check "$base-shim.json" "${opts[@]}"); then
        fail_soft "$fam $name through the shim: $sline"; return
    fi
    echo "  $fam $name: direct: $dline"
    echo "  $fam $name: shim:   $sline"
    [ $((n1 - n0)) = "$nconn" ] || fail_soft "$fam $name: the shim created $((n1 - n0)) UDP flows, want $nconn (one per stream)"
    if [ "$len" = 65507 ]; then
        read -r a4 a6 <<<"$frag0"; read -r b4 b6 <<<"$frag1"
        echo "  $fam $name: host-wide fragments created during the shim run: IPv4 +$((b4 - a4)), IPv6 +$((b6 - a6))"
    fi
    if [ -n "$dport" ]; then
        # Above 100 Mbit/s the loss follows the CPU the three processes get (measured:
        # -b 500M over IPv6, 28 % through the shim vs 0 % direct, while other test runs
        # loaded the machine): reported, not asserted.
        local mbps
        mbps=$(echo "$*" | sed -n 's/.*-b \([0-9]*\)M.*/\1/p')
        for dir in 'c->s' 's->c'; do
            d=$(it_udp_metric "$base-direct.json" "$dir" trueloss); s=$(it_udp_metric "$base-shim.json" "$dir" trueloss)
            [ -z "$d" ] && continue
            awk -v d="$d" -v s="$s" 'BEGIN { exit !(s <= d + 20) }' && continue
            if [ "${mbps:-0}" -gt 100 ]; then
                echo "# NOTE $fam $name $dir: true loss through the shim $s % > direct $d % + 20 points at ${mbps} Mbit/s (CPU-bound: not asserted)"
            else
                fail_soft "$fam $name $dir: true loss through the shim $s % > direct $d % + 20 points"
            fi
        done
    fi
}

CASES=(
    "default|default|1||"
    "b500M|default|1||-b 500M"
    "l16|default|1|16|-l 16 -b 2M"
    "l1400|default|1|1400|-l 1400 -b 100M"
    "l8000|default|1|8000|-l 8000 -b 100M"
    "l65507|default|1|65507|-l 65507 -b 100M"
    "R|reverse|1||-R -b 10M"
    "bidir|bidir|1||--bidir -b 10M"
    "P4|default|4||-P 4 -b 10M"
    "P16|default|16||-P 16 -b 10M"
)
FAMS=(v4)
[ $HAVE6 = 1 ] && FAMS+=(v6) || it_log "no ::1 on lo: IPv6 cases skipped"
for fam in "${FAMS[@]}"; do
    it_log "$fam cases (-t $CT)"
    for c in "${CASES[@]}"; do
        IFS='|' read -r name mode P len args <<<"$c"
        # shellcheck disable=SC2086
        run_case "$fam" "$name" "$mode" "$P" "$len" $args -t "$CT"
    done
done
if [ $HAVE6 = 1 ]; then
    it_log "IPv4 client to the dual-stack [::] shim (IPv6 upstream)"
    run_case v4on6 default default 1 "" -b 10M -t "$CT"
    run_case v4on6 R reverse 1 "" -R -b 10M -t "$CT"
    grep -q "new iperf3 UDP flow from 127.0.0.1:" "$SHIM6_LOG" \
        || fail_soft "[::] shim did not log the IPv4 client as 127.0.0.1:PORT"
fi

# ---- loss comparison -------------------------------------------------------
it_log "loss comparison: -b 100M -l 1400 -t $T, $ROUNDS interleaved rounds, IPv4"
printf '#   %-5s %-4s %-6s %9s %9s %10s %12s\n' round dir cfg trueloss% iperf3% jitter_ms 1st-int-lost
for r in $(seq "$ROUNDS"); do
    for dir in fwd rev; do
        order="direct shim"; [ $((r % 2)) = 0 ] && order="shim direct"
        for cfg in $order; do
            f=$IT_TMP/loss-$r-$dir-$cfg.json
            port=$SRV4; [ $cfg = shim ] && port=$SHIM4
            extra=(); mode=default; key='c->s'
            [ $dir = rev ] && { extra=(-R); mode=reverse; key='s->c'; }
            client "$f" 127.0.0.1 "$port" -b 100M -l 1400 "${extra[@]}"; rc=$?
            if [ $rc != 0 ] || ! msg=$(it_udp_iperf3_check "$f" --mode $mode --len 1400); then
                fail_soft "loss round $r $dir $cfg: exit $rc ${msg:-}"; continue
            fi
            [ $cfg = shim ] && echo "$f $dir" >>"$IT_TMP/shim-loss-runs"
            tl=$(it_udp_metric "$f" "$key" trueloss); il=$(it_udp_metric "$f" "$key" lost)
            jt=$(it_udp_metric "$f" "$key" jitter); fl=$(it_udp_metric "$f" "$key" firstlost)
            echo "$dir $cfg $tl $il $jt $fl" >>"$IT_TMP/loss.tsv"
            printf '#   %-5s %-4s %-6s %9.3f %9.3f %10.3f %12s\n' "$r" "$dir" "$cfg" "$tl" "$il" "$jt" "$fl"
        done
    done
done
# stats DIR CFG: "median_trueloss min_trueloss median_jitter median_firstlost min_firstlost"
stats() {
    awk -v d="$1" -v c="$2" '$1 == d && $2 == c' "$IT_TMP/loss.tsv" | python3 -c '
import sys, statistics as st
r = [l.split() for l in sys.stdin if l.strip()]
if not r: print("nan nan nan nan nan"); sys.exit()
col = lambda i: [float(x[i]) for x in r]
print(st.median(col(2)), min(col(2)), st.median(col(4)), st.median(col(5)), min(col(5)))'
}
for dir in fwd rev; do
    read -r dmed dmin dj dfl dflmin < <(stats $dir direct)
    read -r smed smin sj sfl sflmin < <(stats $dir shim)
    echo "  $dir: true loss % median/min: direct $dmed/$dmin, shim $smed/$smin;" \
         "jitter ms median: direct $dj, shim $sj" \
         "$([ $dir = rev ] && echo "; first-interval lost median/min: direct $dfl/$dflmin, shim $sfl/$sflmin")"
    # The median follows the machine's load (a third busy process on 2 cores): reported.
    # What the shim itself causes shows in every run, the best one included: asserted below.
    awk -v d="$dmed" -v s="$smed" 'BEGIN { exit !(s <= d + 3.0) }' \
        || echo "# NOTE $dir: median true loss through the shim $smed % > direct $dmed % + 3 points (load: see the relayed counts below)"
    awk -v d="$dmin" -v s="$smin" 'BEGIN { exit !(s <= d + 0.5) }' \
        || echo "# NOTE $dir: best shim run lost $smin %, best direct run $dmin % (+0.5 points exceeded; load: see the relayed counts below)"
    if [ $dir = rev ] && awk -v d="$dflmin" -v s="$sflmin" 'BEGIN { exit !(s > d + 50) }'; then
        why=" (the loss is at the start:
      at least $sflmin datagrams lost in the first interval of every shim run, $dflmin direct.  iperf3
      drops uncounted what arrives before the client reads TEST_RUNNING on the control connection,
      and its timer starts then: the server's data went ahead of the control message through the
      shim, i.e. the control connection was delayed.  Cause found with strace: the shim's control
      legs have no TCP_NODELAY (iperf3 sets it on both of its ends), so a small message relayed
      while the previous small one is unacknowledged waits for the peer's delayed ACK, ~40 ms)"
        fail_soft "$dir: systematic loss at the start: at least $sflmin datagrams lost in the first interval of every shim run, $dflmin in the best direct run$why"
    fi
done

# ---- teardown checks -------------------------------------------------------
for pid in "$SHIM4_PID" $SHIM6_PID; do
    kill -0 "$pid" 2>/dev/null || it_fail "a shim died (pid $pid)"
done
it_log "waiting for UDP flows to expire (--udp-linger default 10 s)"
it_wait_fd_count "$SHIM4_PID" "$FD4" 20 || fail_soft "IPv4 shim: $(it_fd_count "$SHIM4_PID") fds 20 s after the last test, $FD4 at start: $(it_fd_list "$SHIM4_PID" | tr '\n' ' ')"
if [ -n "$SHIM6_PID" ]; then
    it_wait_fd_count "$SHIM6_PID" "$FD6" 20 || fail_soft "IPv6 shim: $(it_fd_count "$SHIM6_PID") fds 20 s after the last test, $FD6 at start"
fi
# Every loss-comparison run through the shim: bytes relayed toward the
# receiver (the flow's line, logged when it ended) = bytes sent + 4 (the
# stream request, or the server's reply to it in -R).
relayed_ok=0
while read -r f dir; do
    port=$(jq -r '.start.connected[0].local_port' "$f")
    sent=$(jq -r '.end.sum_sent.bytes' "$f")
    field=3; [ "$dir" = rev ] && field=5
    lines=$(grep -E "iperf3 UDP stream 127\.0\.0\.1:$port ended: " "$SHIM4_LOG" |
            sed -E 's/.* ended: server [^;]*; ([0-9]+) datagrams \(([0-9]+) bytes\) to server, ([0-9]+) \(([0-9]+) bytes\) to client.*/x \1 \2 \3 \4/' |
            awk -v k=$field '{ print $k }')
    if [ -z "$lines" ]; then
        fail_soft "loss run $(basename "$f") ($dir): no flow line for client port $port"
    elif ! grep -qx "$((sent + 4))" <<<"$lines"; then
        fail_soft "loss run $(basename "$f") ($dir): the shim relayed $(echo $lines) bytes toward the receiver, the sender sent $sent (+4 expected): lost in the shim or at its socket"
    else
        relayed_ok=$((relayed_ok + 1))
    fi
done <"$IT_TMP/shim-loss-runs"
it_log "loss runs through the shim: $relayed_ok of $(wc -l <"$IT_TMP/shim-loss-runs") relayed every byte sent (exact)"
for log in "$SHIM4_LOG" $( [ -n "$SHIM6_PID" ] && echo "$SHIM6_LOG"); do
    n=$(flows_created "$log"); e=$(grep -c 'iperf3 UDP stream .* ended' "$log")
    it_log "$(basename "$log" .log): $n UDP flows created, $e ended;" \
           "$(grep -o 'queue drops [1-9][0-9]*' "$log" | wc -l) with queue drops," \
           "$(grep -o 'ICMP errors absorbed [1-9][0-9]*' "$log" | wc -l) with ICMP errors absorbed"
    [ "$n" = "$e" ] || fail_soft "$(basename "$log"): $n flows created but $e ended"
    grep -E '^\S+ (warn|error)' "$log" | sed 's/^/#   shim: /' | head -n 10
done
[ $FAILS = 0 ] || it_fail "$FAILS check(s) failed (see above)"
echo "ok"

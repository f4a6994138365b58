#!/bin/bash
# Per-stream iperf3 results through the shim when data connections are reordered.
#
# iperf3 matches each stream's peer numbers by stream id, and ids follow the
# client's creation order and the server's accept order.  A lost handshake ACK
# or cookie (the --bidir race's drops, t_bidir_race.sh) makes a connection
# arrive after the next one, on the client's leg (at the shim) or on the
# shim's upstream leg (at the server).  The shim opens upstream connections
# one at a time (server order = its order), recovers the client's creation
# order (accept order; after a held-up handshake, source ports confirmed by
# accept order or SYN-ACK times, or a sequential allocator's ports where
# nothing times a pair; else byte counts) and renumbers the stream
# ids of both results JSON (docs/results-pairing.md), so each stream's line
# must show the numbers of the stream it really exchanged data with.
#
# Topology (netns.sh): client ns -- gateway ns (shim) -- server ns, with the
# race's drop rule (p = 0.5 on packets 2-3 of every connection to the port) on
# the client's OUTPUT (client -> shim) and the gateway's OUTPUT (shim ->
# server).  For each of -P 4, -R -P 4 and --bidir -P 2 (-t 4), REORDER_RUNS
# (8) runs through the shim, each asserting:
#   - every stream (as iperf3 paired them by id): receiver <= sender and
#     receiver >= 90 % of sender;
#   - client to server in all: received >= 95 % of sent.  The end-of-test fence
#     makes the server acknowledge every byte before TEST_END, but what is still
#     in its receive queue then is not counted (directly as well): up to 2.6 %
#     measured here at -t 4;
#   - the shim's test line: no fence timeout.
# And over all runs: connections were really reordered, i.e. the shim
# renumbered stream ids in at least one run ("ids renumbered" in its log).
# Every run where the shim claims certainty (ids renumbered, or matched and left
# as they were: by accept order, by ports and SYN-ACK times, by source ports,
# or by bytes) must
# pass the per-stream band above, -R -P 4 included: crossed lines then fail the
# test.  A run where the shim could not pair the streams with certainty (its
# test line says "left as it was" and why) is a known limit, not a failure:
# receiving client streams with nearly equal counts whose creation order the
# shim could not prove (docs/accuracy.md).  Such runs are listed with their
# per-stream verdict and counted per mode; the per-direction bound still
# applies to them.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/netns.sh"

it_require_root
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
command -v iptables >/dev/null || it_skip "iptables not installed"
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing"

RUNS=${REORDER_RUNS:-8}
PORT=5201
NS_C4=10.207.1.2 NS_GC4=10.207.1.1 NS_GS4=10.207.2.1 NS_S4=10.207.2.2
NS_C6=fd00:207:1::2 NS_GC6=fd00:207:1::1 NS_GS6=fd00:207:2::1 NS_S6=fd00:207:2::2
ns_topology "is-reord-$$"

DROP_RULE=(-p tcp --dport "$PORT" -m connbytes --connbytes 2:3 --connbytes-dir original
           --connbytes-mode packets -m statistic --mode random --probability 0.5 -j DROP)
ns_exec "$NS_C" iptables -A OUTPUT "${DROP_RULE[@]}" || it_skip "iptables lacks connbytes/statistic"
ns_exec "$NS_G" iptables -A OUTPUT "${DROP_RULE[@]}" || it_skip "iptables lacks connbytes/statistic"

ns_exec "$NS_S" timeout 1800 iperf3 -s -p "$PORT" -B "$NS_S4" >"$IT_TMP/server.log" 2>&1 &
IT_PIDS+=($!)
it_wait_tcp "$NS_S" x "$PORT" 10 || it_fail "iperf3 server did not start"
it_start_shim shim "$NS_G" -- --listen "$NS_GC4:$PORT" --upstream "$NS_S4:$PORT" --log-level info
LOG=$IT_TMP/shim.log

fails=0 runs=0 renumbered=0 asis=0 uncertain=0
declare -A certain_in=() by_ports=() by_run=()
for spec in "P4|-P 4|default|4" "R-P4|-R -P 4|reverse|4" "bidir-P2|--bidir -P 2|bidir|2"; do
    IFS='|' read -r name args mode P <<<"$spec"
    for i in $(seq "$RUNS"); do
        out=$IT_TMP/$name-$i.json
        before=$(wc -l <"$LOG")
        # shellcheck disable=SC2086
        timeout 40 ip netns exec "$NS_C" iperf3 -J -c "$NS_GC4" -p "$PORT" -t 4 $args >"$out" 2>"$out.err"
        runs=$((runs + 1))
        it_wait_log_count "$LOG" 'test [^ ]+: client .* mode .* streams' "$(( $(it_shim_test_lines "$LOG" | wc -l) + 1 ))" 5 ||
            true
        tline=$(tail -n +"$((before + 1))" "$LOG" | it_shim_test_lines /dev/stdin | tail -n 1)
        res=$(it_iperf3_check "$out" --mode "$mode" -P "$P" --timed --stream-min 0.9 --c2s-min 0.95)
        ok=$?
        case $tline in
            *"ids renumbered"*) renumbered=$((renumbered + 1)); how=renumbered;;
            *"ids as they were"*) asis=$((asis + 1)); how="as accepted";;
            *) uncertain=$((uncertain + 1)); how="not re-paired: ${tline##*results: }";;
        esac
        case $how in not*) ;; *) certain_in[$name]=$(( ${certain_in[$name]:-0} + 1 ));; esac
        case $tline in
            *"ports and SYN-ACK times"*) by_ports[$name]=$(( ${by_ports[$name]:-0} + 1 ));;
            *"source ports"*) by_run[$name]=$(( ${by_run[$name]:-0} + 1 ));;
        esac
        case $tline in *"fence timed out"*) ok=1; res="$res; shim: fence timed out";; esac
        if [ $ok -ne 0 ] && [ "$how" != "${how#not re-paired}" ]; then
            # uncertain pairing: only the totals are asserted
            tot=$(it_iperf3_check "$out" --mode "$mode" -P "$P" --timed --per-stream-note --c2s-min 0.95)
            if [ $? -eq 0 ]; then
                it_log "NOTE [$name run $i] ($how): per-stream lines may be crossed: $res"
                continue
            fi
            res=$tot
        fi
        if [ $ok -ne 0 ]; then
            fails=$((fails + 1))
            echo "FAIL [$name run $i] ($how): $res"
            echo "      shim: $tline"
        else
            it_log "[$name run $i] ($how) $res"
        fi
    done
done
kill -0 "$SHIM_PID" 2>/dev/null || it_fail "the shim died"
drops=$(ns_exec "$NS_C" iptables -nvxL OUTPUT | awk '$3=="DROP"{s+=$1} END{print s+0}')
gdrops=$(ns_exec "$NS_G" iptables -nvxL OUTPUT | awk '$3=="DROP"{s+=$1} END{print s+0}')
for name in P4 R-P4 bidir-P2; do
    it_log "$name: streams matched with certainty in ${certain_in[$name]:-0} of $RUNS runs (by ports and SYN-ACK times in ${by_ports[$name]:-0}, by source ports alone in ${by_run[$name]:-0}), per-stream lines asserted in those"
done
it_log "runs $runs: results renumbered in $renumbered, matched as accepted in $asis, left as they were in $uncertain; drops: client leg $drops, upstream leg $gdrops packets"
[ "$renumbered" -gt 0 ] || it_fail "no run needed renumbering: the drops did not reorder any stream"
[ $fails -eq 0 ] || it_fail "$fails of $runs runs failed"
exit 0

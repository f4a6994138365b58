#!/bin/bash
# UDP through the shim in transparent mode (issue #13), on lib_transparent.sh's
# topology: client, gateway (shim + the documented TPROXY ruleset), servers A and B
# on their own subnets.  Clients address the servers' own addresses; from the
# client's "shim" address (TP_C4/TP_C6) everything on ports 5001/5201 goes through
# the shim, from its "direct" address (TP_D4/TP_D6) nothing does, so every case is
# run both ways in this test and the numbers compared.
#
#  1. iperf3 UDP (-n: the sender's byte count is exact): IPv4 to A, -P 2 IPv6 to A
#     (two flows share the server's address and port), -R IPv6 to B, --bidir IPv4
#     to B; two tests at once, one to each server.  Per direction
#     against the direct run: receiver bytes >= 90 %, sender bytes equal for a
#     client sending alone (-n is exact there), within 15 % otherwise (see
#     compare()); the shim logged one UDP flow per stream toward the server the
#     client addressed (IPv6 as IPv6).
#  2. iperf2 UDP: IPv4 to A and IPv6 to B, a Server Report for every client,
#     through the shim as directly; iperf2 -u -d (dual test) to A: both
#     directions' reports, as directly (the connect-back reaches the client from
#     A's address).
#  3. Nothing else is touched: a UDP test to port 5002 (not intercepted) reaches A
#     directly (the server sees the client's address; the shim has no flow for it).
#  4. #391 in transparent mode: A's iperf2 server runs with Winsock semantics
#     (libwinsock_udp.so: an ICMP port-unreachable kills it, as on Windows), its
#     replies are delayed 0.4 s and the client's datagrams 30 ms (nfq_delay), so
#     that final datagrams are in flight when the report arrives: the shim answers
#     them, the answers reach a closed port, and the client's host sends ICMP errors
#     to the server's address.  The ruleset's ICMP rule (docs/udp.md) keeps those
#     at the gateway.  4 clients to A and 2 to B (IPv6): every one gets its
#     report, A and B receive no ICMP unreachable, A's server lives.
#  5. --allow-server (A's networks only): an iperf2 UDP client of B gets no report,
#     B receives nothing, the shim logs the refusal; a client of A is served.
#  6. --transparent-source: iperf2 UDP to A and iperf3 UDP to B; the servers see
#     the client's own address, and the client gets its report / numbers as
#     directly.
# The iperf3 control connections (TCP) go through the shim too (TU_TCP=0 routes
# them directly, to look at the UDP side alone; t_transparent_tcp.sh covers TCP).
# Takes about 60 s.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/lib_transparent.sh"

it_require_root
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
command -v iperf >/dev/null || it_skip "iperf (2.x) not installed"
[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (compares with direct runs itself)"
NFQ=$here/../../build/tools/nfq_delay
FAILS=0
fail_soft() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

tp_topology "tu$$"
if [ "${TU_TCP:-1}" = 0 ]; then
    h=$(ns_exec "$TP_G" nft -a list chain inet iperf_shim prerouting |
        awk '/tcp dport/ && /tproxy/ { print $NF }')
    [ -n "$h" ] && ns_exec "$TP_G" nft delete rule inet iperf_shim prerouting handle "$h"
fi

# servers: iperf3 on A and B (both families), iperf2 UDP on A (IPv4, 5001 and 5002)
# and B (IPv6)
for ns in "$TP_A" "$TP_B"; do
    ns_exec "$ns" iperf3 -s -D -p 5201 || it_fail "iperf3 -s in $ns"
done
it_bg i2a ns_exec "$TP_A" iperf -s -u -e -p 5001
it_bg i2a2 ns_exec "$TP_A" iperf -s -u -e -p 5002
it_bg i2b ns_exec "$TP_B" iperf -s -u -e -V -p 5001
for ns in "$TP_A" "$TP_B"; do
    ns_exec "$ns" bash -c ". $here/lib.sh; it_wait_udp x 5001 10" || it_fail "iperf -s -u in $ns did not bind"
    ns_exec "$ns" bash -c "for i in \$(seq 100); do ss -Htln 'sport = :5201' | grep -q . && exit 0; sleep 0.05; done; exit 1" ||
        it_fail "iperf3 -s in $ns did not listen"
done
ns_exec "$TP_A" bash -c ". $here/lib.sh; it_wait_udp x 5002 10" || it_fail "iperf -s -u -p 5002 in A"

tp_shim shim --udp-linger 2

# i3 OUT SRC DST ARGS...: iperf3 -u -J from the client namespace, bound to SRC.
# Prints "c2s_sent c2s_recv s2c_sent s2c_recv" (bytes; 0 for a direction not run).
i3() {
    local out=$1 src=$2 dst=$3; shift 3
    ns_exec "$TP_C" timeout 30 iperf3 -c "$dst" -B "$src" -u -J "$@" >"$IT_TMP/$out.json" 2>&1
    python3 - "$IT_TMP/$out.json" <<'EOF'
import json, sys
try:
    e = json.load(open(sys.argv[1])).get("end", {})
except Exception:
    print("0 0 0 0"); sys.exit()
rev = False
try:
    rev = json.load(open(sys.argv[1]))["start"]["test_start"]["reverse"]
except Exception:
    pass
a = (e.get("sum_sent", {}).get("bytes", 0), e.get("sum_received", {}).get("bytes", 0))
b = (e.get("sum_sent_bidir_reverse", {}).get("bytes", 0), e.get("sum_received_bidir_reverse", {}).get("bytes", 0))
if rev: a, b = b, a
print(a[0], a[1], b[0], b[1])
EOF
}

# compare NAME "SHIM_COUNTS" "DIRECT_COUNTS": per direction, the shim run's bytes
# against the direct run's.  Received: >= 90 % of the direct run's (a loaded
# 2-core machine under ASan lost up to 9 % at 20 Mbit/s), and no more than were sent.  Sent: a client sending alone stops at exactly -n bytes (equal);
# a sending server, and both ends of --bidir (the test ends when one direction is
# done), stop a little after -n or before it: within 15 % (12 % seen directly).
compare() {
    local name=$1 s d i dir
    read -r -a s <<<"$2"; read -r -a d <<<"$3"
    it_log "$name: c->s sent/recv shim ${s[0]}/${s[1]} direct ${d[0]}/${d[1]}; s->c shim ${s[2]}/${s[3]} direct ${d[2]}/${d[3]}"
    for i in 0 2; do
        dir=c-\>s; [ $i = 2 ] && dir=s-\>c
        [ "${d[$i]}" = 0 ] && [ "${s[$i]}" = 0 ] && continue
        if [ $i = 0 ] && [ "${s[2]}${d[2]}" = 00 ]; then
            [ "${s[0]}" = "${d[0]}" ] || fail_soft "$name $dir: shim run sent ${s[0]} bytes, direct ${d[0]}"
        else
            [ $(( (s[i] - d[i]) * (s[i] - d[i]) * 400 )) -le $(( 9 * d[i] * d[i] )) ] ||
                fail_soft "$name $dir: shim run sent ${s[$i]} bytes, direct ${d[$i]} (more than 15 % apart)"
        fi
        [ "${s[i+1]}" -gt 0 ] && [ $(( s[i+1] * 100 )) -ge $(( d[i+1] * 90 )) ] ||
            fail_soft "$name $dir: shim run received ${s[$((i+1))]} bytes, direct ${d[$((i+1))]}"
        [ "${s[i+1]}" -le "${s[i]}" ] || fail_soft "$name $dir: shim run received ${s[$((i+1))]} > ${s[$i]} sent"
    done
}

# i3_case NAME FAMILY(4|6) DST ARGS...: shim run, direct run, compare; the shim's
# log must show a flow from the client to DST:5201.
i3_case() {
    local name=$1 fam=$2 dst=$3 c d s r; shift 3
    if [ "$fam" = 4 ]; then c=$TP_C4 d=$TP_D4; else c=$TP_C6 d=$TP_D6; fi
    s=$(i3 "$name-shim" "$c" "$dst" "$@"); r=$(i3 "$name-direct" "$d" "$dst" "$@")
    it_udp_iperf3_check "$IT_TMP/$name-shim.json" "${I3MODE[@]}" >/dev/null ||
        fail_soft "$name (shim): $(it_udp_iperf3_check "$IT_TMP/$name-shim.json" "${I3MODE[@]}")"
    compare "$name" "$s" "$r"
    local want; [ "$fam" = 4 ] && want="$dst:5201" || want="\\[$dst\\]:5201"
    # the flow's line comes when it lingered out (--udp-linger 2)
    it_wait_log_count "$IT_TMP/shim.log" "iperf3 UDP stream [^ ]*$c[^ ]* ended: server $want;" 1 8 ||
        fail_soft "$name: the shim logged no UDP flow from $c to $dst"
}

it_log "1. iperf3 UDP"
I3MODE=()
i3_case v4 4 "$TP_A4" -b 10M -n 1M -l 1000
I3MODE=(-P 2)
i3_case v6-P2 6 "$TP_A6" -b 10M -n 1M -l 1000 -P 2
I3MODE=(--mode reverse)
i3_case v6-reverse 6 "$TP_B6" -b 10M -n 1M -l 1000 -R
I3MODE=(--mode bidir)
i3_case v4-bidir 4 "$TP_B4" -b 10M -n 1M -l 1000 --bidir
# two servers at once
i3 both-a "$TP_C4" "$TP_A4" -b 10M -t 2 -l 1000 >"$IT_TMP/both-a.counts" &
pa=$!
i3 both-b "$TP_C4" "$TP_B4" -b 10M -t 2 -l 1000 >"$IT_TMP/both-b.counts" &
pb=$!
wait $pa $pb
for x in a b; do
    read -r sent recv _ <"$IT_TMP/both-$x.counts"
    it_log "at once, server $x: sent $sent recv $recv"
    [ "${sent:-0}" -gt 0 ] && [ $(( recv * 100 )) -ge $(( sent * 90 )) ] ||
        fail_soft "two servers at once: server $x: sent ${sent:-0}, received ${recv:-0}"
done

if [ "${TU_TCP:-1}" != 0 ]; then
    # the control connections went through the shim: one test line each, its server the addressed one
    n=$(it_shim_test_lines "$IT_TMP/shim.log" | grep -c "mode UDP")
    it_log "iperf3 test lines of the shim: $n; $(it_shim_test_lines "$IT_TMP/shim.log" | grep -m1 "mode UDP" | sed 's/^.*info *//' | cut -c1-200)"
    [ "$n" = 6 ] || fail_soft "the shim logged $n iperf3 UDP tests, want 6"
    it_shim_test_lines "$IT_TMP/shim.log" | grep -q "client \[$TP_C6\]:[0-9]*, server \[$TP_B6\]:5201, mode UDP" ||
        fail_soft "no iperf3 test line from $TP_C6 to $TP_B6"
fi

# iperf2: i2 OUT SRC DST [ARGS]: one client run; prints "REPORTS SENT LOST TOTAL".
i2() {
    local out=$1 src=$2 dst=$3 six=; shift 3
    [[ $dst == *:* ]] && six=-V
    ns_exec "$TP_C" timeout 20 iperf -c "$dst" -B "$src" -u -p 5001 $six "$@" >"$IT_TMP/$out.txt" 2>&1
    it_iperf2_udp_reports "$IT_TMP/$out.txt"
}
# i2_case NAME SRC_SHIM SRC_DIRECT DST ARGS...: every report through the shim as directly.
i2_case() {
    local name=$1 cs=$2 cd=$3 dst=$4 s r; shift 4
    s=$(i2 "$name-shim" "$cs" "$dst" "$@"); r=$(i2 "$name-direct" "$cd" "$dst" "$@")
    it_log "$name: reports/sent/lost/total shim $s, direct $r"
    read -r -a S <<<"$s"; read -r -a R <<<"$r"
    [ "${S[0]:-0}" -ge 1 ] && [ "${S[0]}" = "${R[0]}" ] ||
        { fail_soft "$name: ${S[0]:-0} Server Report(s) through the shim, ${R[0]:-0} directly"; sed 's/^/#   | /' "$IT_TMP/$name-shim.txt"; }
    grep -q "did not receive ack" "$IT_TMP/$name-shim.txt" && fail_soft "$name: $(grep -m1 'did not' "$IT_TMP/$name-shim.txt")"
    [ $(( ${S[3]:-0} * 100 )) -ge $(( ${S[1]:-1} * 90 )) ] || fail_soft "$name: the report counts ${S[3]:-0} of ${S[1]:-?} datagrams"
}

it_log "2. iperf2 UDP"
i2_case i2-v4 "$TP_C4" "$TP_D4" "$TP_A4" -b 5M -t 1
i2_case i2-v6 "$TP_C6" "$TP_D6" "$TP_B6" -b 5M -t 1
sleep 1   # Debian's 2.1.8 server: no back-to-back UDP clients (see t_udp_iperf2.sh)
i2_case i2-dual "$TP_C4" "$TP_D4" "$TP_A4" -b 2M -t 1 -d
# the server's test toward the client (the connect-back): the client's own
# receiver line, next to the Server Report of its test toward the server
for x in shim direct; do
    n=$(grep -c "Server Report:" "$IT_TMP/i2-dual-$x.txt")
    rx=$(grep -cE "^\[ *[0-9]+\] +0\.0+-.*sec .*Bytes .*/.*\(" "$IT_TMP/i2-dual-$x.txt")
    it_log "i2-dual $x: $n Server Report(s), $rx lines with loss counts (report + the client's receiver)"
    eval "rx_$x=$rx"
done
[ "$rx_shim" -ge 2 ] && [ "$rx_shim" = "$rx_direct" ] ||
    { fail_soft "i2-dual: $rx_shim loss lines through the shim, $rx_direct directly (no connect-back data?)"; sed 's/^/#   | /' "$IT_TMP/i2-dual-shim.txt"; }
grep -q "connect-back" "$IT_TMP/shim.log" || it_wait_log_count "$IT_TMP/shim.log" "connect-back: [1-9]" 1 6 ||
    fail_soft "i2-dual: the shim relayed no connect-back"

it_log "3. not intercepted: UDP port 5002 of A"
ns_exec "$TP_C" timeout 20 iperf -c "$TP_A4" -B "$TP_C4" -u -p 5002 -b 2M -t 1 >"$IT_TMP/p5002.txt" 2>&1
r=$(it_iperf2_udp_reports "$IT_TMP/p5002.txt")
it_log "port 5002: reports/sent/lost/total $r"
[ "${r%% *}" = 1 ] || fail_soft "port 5002: no Server Report: $(tail -n 3 "$IT_TMP/p5002.txt")"
grep -q "connected with $TP_C4 port" "$IT_TMP/i2a2.log" ||
    fail_soft "port 5002: the server did not see the client's own address: $(grep connected "$IT_TMP/i2a2.log")"
grep -q ":5002" "$IT_TMP/shim.log" && fail_soft "port 5002: the shim had a flow: $(grep ':5002' "$IT_TMP/shim.log")"

# unreach NS: ICMP destination-unreachables namespace NS received (IPv4 + IPv6)
unreach() {
    local v4 v6
    v4=$(ns_exec "$1" awk '$1=="Icmp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "InDestUnreachs") c = i; h = 1; next } print $c }' /proc/net/snmp)
    v6=$(ns_exec "$1" awk '$1=="Icmp6InDestUnreachs" { print $2 }' /proc/net/snmp6)
    echo $(( ${v4:-0} + ${v6:-0} ))
}
# icmp_caught: ICMP errors about intercepted flows that the gateway kept (rule counters)
icmp_caught() {
    ns_exec "$TP_G" nft list chain inet iperf_shim prerouting |
        awk '/destination-unreachable/ { for (i = 1; i < NF; i++) if ($i == "packets") n += $(i + 1) } END { print n + 0 }'
}

it_log "4. #391: A's iperf2 server with Winsock semantics, its replies delayed 0.4 s, the client 30 ms away"
# The ICMP errors a client's host sends about datagrams from the server's address
# (the shim's answers to final datagrams that were still in flight when the client
# got its report and closed) are addressed to the server: the ruleset hands them
# to the shim's flow socket instead (docs/udp.md), where they are absorbed.
if ! grep -q "destination-unreachable" "$TP_NFT"; then
    ns_exec "$TP_G" nft add rule inet iperf_shim prerouting iifname c0 icmp type destination-unreachable \
        @th,136,8 17 @th,224,16 '{ 5001, 5201 }' counter meta mark set "$TP_MARK" accept || it_fail "nft: ICMP rule"
    ns_exec "$TP_G" nft add rule inet iperf_shim prerouting iifname c0 icmpv6 type destination-unreachable \
        @th,112,8 17 @th,384,16 '{ 5001, 5201 }' counter meta mark set "$TP_MARK" accept || it_fail "nft: ICMPv6 rule"
fi
i2pid=$(ns_exec "$TP_A" ss -Hlunp 'sport = :5001' | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
[ -n "$i2pid" ] && kill "$i2pid"
for i in $(seq 50); do ns_exec "$TP_A" ss -Huln 'sport = :5001' | grep -q . || break; sleep 0.1; done
ns_exec "$TP_A" iptables -A OUTPUT -p udp --sport 5001 -j NFQUEUE --queue-num 5 --queue-bypass ||
    it_skip "iptables NFQUEUE target not available"
it_bg nfq ns_exec "$TP_A" "$NFQ" -q 5 -d 0.4 -t 300
it_wait_log_count "$IT_TMP/nfq.log" 'nfq_delay: ready' 1 5 || { cat "$IT_TMP/nfq.log"; it_fail "nfq_delay (A) did not start"; }
for t in iptables ip6tables; do
    ns_exec "$TP_C" $t -A OUTPUT -p udp --dport 5001 -j NFQUEUE --queue-num 6 --queue-bypass || it_fail "$t NFQUEUE in C"
done
it_bg nfqc ns_exec "$TP_C" "$NFQ" -q 6 -d 0.03 -t 300
NFQC_PID=$IT_LAST_PID
it_wait_log_count "$IT_TMP/nfqc.log" 'nfq_delay: ready' 1 5 || { cat "$IT_TMP/nfqc.log"; it_fail "nfq_delay (C) did not start"; }
it_bg i2w ns_exec "$TP_A" env LD_PRELOAD="$here/../../build/tools/libwinsock_udp.so" WINSOCK_UDP_QUIET=1 iperf -s -u -e -p 5001
ns_exec "$TP_A" bash -c ". $here/lib.sh; it_wait_udp x 5001 10" || it_fail "iperf -s -u (winsock) in A did not bind"
ua0=$(unreach "$TP_A") ub0=$(unreach "$TP_B") k0=$(icmp_caught)
N391=${TU_391_CLIENTS:-4}
for i in $(seq "$N391"); do
    r=$(i2 "w$i" "$TP_C4" "$TP_A4" -b 2M -t 1)
    it_log "  client $i to A through the shim: reports/sent/lost/total $r"
    [ "${r%% *}" = 1 ] || fail_soft "#391 client $i: no Server Report: $(grep -m1 -E 'did not|WARN' "$IT_TMP/w$i.txt")"
    sleep 1
done
for i in 1 2; do
    r=$(i2 "w6-$i" "$TP_C6" "$TP_B6" -b 2M -t 1)
    it_log "  client $i to B (IPv6) through the shim: reports/sent/lost/total $r"
    [ "${r%% *}" = 1 ] || fail_soft "#391 IPv6 client $i: no Server Report: $(grep -m1 -E 'did not|WARN' "$IT_TMP/w6-$i.txt")"
    sleep 1
done
it_wait_log_count "$IT_TMP/shim.log" "iperf2 UDP flow [^ ]*$TP_C4[^ ]* ended .*: server $TP_A4:5001;" $(( N391 + 3 )) 10
ua1=$(unreach "$TP_A") ub1=$(unreach "$TP_B") k1=$(icmp_caught)
[ "$ua1" = "$ua0" ] || fail_soft "#391: A received $((ua1 - ua0)) ICMP unreachable(s) during the shim runs"
[ "$ub1" = "$ub0" ] || fail_soft "#391: B received $((ub1 - ub0)) ICMP unreachable(s) during the shim runs"
[ "$k1" -gt "$k0" ] || it_log "note: no client sent an ICMP error this time (no final datagram was in flight)"
ns_exec "$TP_A" ss -Hlunp 'sport = :5001' | grep -q iperf ||
    fail_soft "#391: A's iperf2 server (Winsock semantics) died: $(tail -n 3 "$IT_TMP/i2w.log")"
it_log "#391: $N391 + 2 clients through the shim; the servers received $((ua1 - ua0 + ub1 - ub0)) ICMP unreachables;" \
       "the gateway kept $((k1 - k0)) from the clients (answers to final datagrams in flight); shim:" \
       "$(grep -o 'final datagrams [0-9]* ([0-9]* answered by the shim), Server Report [a-z ]* ([0-9]* later copies absorbed); ICMP errors absorbed [0-9]*' "$IT_TMP/shim.log" | tail -n 6 | tr '\n' ';')"
for t in iptables ip6tables; do ns_exec "$TP_C" $t -D OUTPUT -p udp --dport 5001 -j NFQUEUE --queue-num 6 --queue-bypass; done
kill "$NFQC_PID" 2>/dev/null

it_log "5. --allow-server: A's networks only"
kill "$SHIM_PID"; wait "$SHIM_PID" 2>/dev/null
tp_shim shim2 --udp-linger 2 --allow-server 10.213.2.0/24 --allow-server fd00:213:2::/64
b0=$(grep -c "connected with" "$IT_TMP/i2b.log")
r=$(i2 refused "$TP_C6" "$TP_B6" -b 1M -t 1)
[ "${r%% *}" = 0 ] || fail_soft "--allow-server: a client of B got a report: $r"
[ "$(grep -c "connected with" "$IT_TMP/i2b.log")" = "$b0" ] || fail_soft "--allow-server: B received the refused test"
grep -q "refusing UDP datagram from .*$TP_C6.* to \[$TP_B6\]:5001: server not in --allow-server" "$IT_TMP/shim2.log" ||
    fail_soft "--allow-server: no refusal line: $(grep -i refus "$IT_TMP/shim2.log" | head -n 2)"
r=$(i2 allowed "$TP_C4" "$TP_A4" -b 1M -t 1)
[ "${r%% *}" = 1 ] || fail_soft "--allow-server: the client of A got no report: $r"
it_log "--allow-server: $(grep -m1 'not in --allow-server' "$IT_TMP/shim2.log" | sed 's/^.*warn *//')"

it_log "6. --transparent-source"
kill "$SHIM_PID"; wait "$SHIM_PID" 2>/dev/null
tp_shim shim3 --udp-linger 2 --transparent-source
sleep 1
r=$(i2 src-i2 "$TP_C4" "$TP_A4" -b 2M -t 1)
port=$(grep -m1 -o "local $TP_C4 port [0-9]*" "$IT_TMP/src-i2.txt" | awk '{ print $4 }')
it_log "iperf2 with --transparent-source: reports/sent/lost/total $r; A saw: $(grep "port 5001 connected with" "$IT_TMP/i2w.log" | tail -n 1 | sed 's/^.*connected/connected/')"
[ "${r%% *}" = 1 ] || fail_soft "--transparent-source iperf2: no Server Report"
grep -q "connected with $TP_C4 port $port " "$IT_TMP/i2w.log" ||
    fail_soft "--transparent-source iperf2: A did not see the client's address and port $TP_C4:$port"
s=$(i3 src-i3 "$TP_C4" "$TP_B4" -b 10M -n 1M -l 1000 --get-server-output)
r=$(i3 src-i3-direct "$TP_D4" "$TP_B4" -b 10M -n 1M -l 1000)
compare "--transparent-source iperf3" "$s" "$r"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("server_output_text",""))' "$IT_TMP/src-i3.json" >"$IT_TMP/src-i3.server"
grep -Eq "connected to $TP_C4 port [0-9]+" "$IT_TMP/src-i3.server" ||
    fail_soft "--transparent-source iperf3: B's UDP stream did not come from the client: $(grep connected "$IT_TMP/src-i3.server")"

if [ "$FAILS" -gt 0 ]; then it_fail "$FAILS check(s) failed"; fi
echo "PASS"

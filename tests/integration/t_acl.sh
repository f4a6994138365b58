#!/bin/bash
# Access control (issue #11): --allow lets only listed client networks in,
# TCP and UDP, IPv4 and IPv6.
#
# client ns (10.205.1.2 and .3, fd00:205:1::2 and ::3) -- gateway ns (shim on
# [::]:5201, dual-stack: IPv4 clients are v4-mapped and must match IPv4
# networks) -- server ns (iperf3 -s, iperf -s -u).
# The shim allows 10.205.1.2/32 and fd00:205:1::2/128 only:
#  - iperf3 TCP from the allowed v4 and v6 addresses: the test runs;
#  - iperf3 TCP from .3 / ::3 (client bound with -B): refused at once (the
#    client errors in well under the 10 s handshake timeout), a log line
#    names the client, the server never sees a connection (its log is empty);
#  - iperf2 UDP from .3: no flow is created (no "iperf2 UDP flow" line for it,
#    the server receives nothing), one log line; from .2: the report comes.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/netns.sh"

it_require_root
[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (shim-specific checks)"
command -v iperf >/dev/null || it_skip "iperf (2.x) not installed"
NS_C4=10.205.1.2    NS_GC4=10.205.1.1    NS_GS4=10.205.2.1    NS_S4=10.205.2.2
NS_C6=fd00:205:1::2 NS_GC6=fd00:205:1::1 NS_GS6=fd00:205:2::1 NS_S6=fd00:205:2::2
BAD4=10.205.1.3 BAD6=fd00:205:1::3
ns_topology "acl-$$"
ip -n "$NS_C" addr add "$BAD4/24" dev eth0
ip -n "$NS_C" addr add "$BAD6/64" dev eth0 nodad

it_bg i3srv ip netns exec "$NS_S" timeout 300 iperf3 -s -p 5201
it_bg i2srv ip netns exec "$NS_S" timeout 300 iperf -s -u -p 5001
it_wait_tcp "$NS_S" x 5201 10 || it_fail "iperf3 server did not start"
it_start_shim shim "$NS_G" -- --listen "[::]:5201" --upstream "$NS_S4:5201" \
    --upstream-iperf2 "$NS_S4:5001" --allow "$NS_C4/32" --allow "$NS_C6/128" --udp-linger 1
LOG=$IT_TMP/shim.log

for a in "$NS_C4 $NS_GC4" "$NS_C6 $NS_GC6"; do
    set -- $a
    ns_exec "$NS_C" timeout 30 iperf3 -J -c "$2" -p 5201 -B "$1" -t 1 >"$IT_TMP/ok-$1.json" 2>&1
    it_iperf3_check "$IT_TMP/ok-$1.json" --timed || it_fail "allowed client $1 could not run a test"
done
echo "allowed clients ran their tests"

for a in "$BAD4 $NS_GC4" "$BAD6 $NS_GC6"; do
    set -- $a
    start=$(date +%s%N)
    ns_exec "$NS_C" timeout 30 iperf3 -J -c "$2" -p 5201 -B "$1" -t 1 >"$IT_TMP/bad-$1.json" 2>&1
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    err=$(it_iperf3_error "$IT_TMP/bad-$1.json")
    echo "refused client $1: '$err' after $ms ms"
    [ -n "$err" ] || it_fail "client $1 outside the allowed networks ran a test"
    [ "$ms" -lt 5000 ] || it_fail "client $1 waited $ms ms for its refusal"
    it_wait_log_count "$LOG" "refusing TCP client \[?(::ffff:)?$1\]?:[0-9]+: not in the allowed networks" 1 5 \
        || { cat "$LOG"; it_fail "no log line for the refused client $1"; }
done
n=$(it_shim_test_lines "$LOG" | wc -l)
[ "$n" = 2 ] || { it_shim_test_lines "$LOG"; it_fail "$n tests reached the server side, want 2 (the allowed ones)"; }

ns_exec "$NS_C" timeout 20 iperf -c "$NS_GC4" -p 5201 -u -B "$BAD4" -b 1M -t 1 >"$IT_TMP/i2bad.out" 2>&1
grep -q "Server Report:" "$IT_TMP/i2bad.out" && it_fail "a refused UDP client got a Server Report"
it_wait_log_count "$LOG" "refusing UDP client $BAD4:[0-9]+: not in the allowed networks" 1 5 \
    || { cat "$LOG"; it_fail "no log line for the refused UDP client"; }
ns_exec "$NS_C" timeout 20 iperf -c "$NS_GC4" -p 5201 -u -B "$NS_C4" -b 1M -t 1 >"$IT_TMP/i2ok.out" 2>&1
grep -q "Server Report:" "$IT_TMP/i2ok.out" || { cat "$IT_TMP/i2ok.out"; it_fail "the allowed UDP client got no Server Report"; }
it_wait_log_count "$LOG" "iperf2 UDP flow (::ffff:)?$NS_C4:[0-9]+ ended" 1 10 || { cat "$LOG"; it_fail "no UDP flow for the allowed client"; }
grep -Eq "UDP flow (::ffff:)?$BAD4" "$LOG" && it_fail "a UDP flow was created for the refused client"
echo PASS

#!/bin/bash
# SIGTERM drains; a second signal exits at once (issue #8).
#
# 1. Drain: an iperf3 TCP test (-t 4) and an iperf2 UDP test (-t 3) run through
#    the shim when it gets SIGTERM.  The shim must stay up, refuse a new iperf3
#    test the way a busy server does ("the server is busy"), let both running
#    tests finish whole (the iperf3 receiver counts what was sent, the iperf2
#    client gets its Server Report), keep the UDP flow's upstream port open
#    until the flow is quiet (--udp-linger 2), then exit 0 by itself saying
#    "drained".  No ICMP port-unreachable may leave this namespace while the
#    server's late datagrams arrive (iperf2 ticket #391): counted from
#    /proc/net/snmp, before and after.
# 2. Second signal: with an iperf3 test running, SIGTERM twice: the shim exits
#    within 2 s and the client ends with an error at once instead of hanging.
#
# Ports: 15801-15803 on 127.0.0.1.  Takes about 20 s.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (shim-specific checks)"
command -v iperf >/dev/null || it_skip "iperf (2.x) not installed"
H=127.0.0.1 P_SHIM=15801 P_I3=15802 P_I2=15803

icmp_unreach() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["OutDestUnreachs"] }' /proc/net/snmp; }

# wait_exit PID TIMEOUT_S: poll until PID is gone; returns 1 on timeout.
wait_exit() {
    local i
    for i in $(seq $(($2 * 20))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    return 1
}

it_iperf3_server i3srv "$P_I3"
it_bg i2srv iperf -s -u -e -B "$H" -p "$P_I2"
it_wait_udp "$H" "$P_I2" 10 || it_fail "iperf -s -u did not bind $P_I2"

# --- 1. drain --------------------------------------------------------------------
it_start_shim shim1 -- --listen "$H:$P_SHIM" --upstream "$H:$P_I3" --upstream-iperf2 "$H:$P_I2" \
    --udp-linger 2 --log-level debug
LOG=$IT_TMP/shim1.log
it_bg i3client it_iperf3_json "$IT_TMP/i3.json" 30 -c "$H" -p "$P_SHIM" -t 4
I3C=$IT_LAST_PID
it_bg i2client timeout 30 iperf -c "$H" -p "$P_SHIM" -u -b 10M -t 3
I2C=$IT_LAST_PID
it_wait_log_count "$LOG" "test \S+: client .* asks for" 1 10 || { cat "$LOG"; it_fail "the iperf3 test never started"; }
it_wait_log_count "$LOG" "new iperf2 UDP flow" 1 10 || { cat "$LOG"; it_fail "the iperf2 UDP test never started"; }
icmp0=$(icmp_unreach)
kill -TERM "$SHIM_PID"
it_wait_log_count "$LOG" "draining: .* still open" 1 5 || { cat "$LOG"; it_fail "no drain line after SIGTERM"; }
kill -0 "$SHIM_PID" 2>/dev/null || it_fail "the shim exited at once on SIGTERM with tests running"

# a new test is refused the way a busy server refuses it
start=$(date +%s%N)
it_iperf3_json "$IT_TMP/refused.json" 10 -c "$H" -p "$P_SHIM" -t 1
err=$(it_iperf3_error "$IT_TMP/refused.json")
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "new test while draining: error '$err' after $ms ms"
case $err in *busy*) ;; *) it_fail "a new iperf3 test during the drain got '$err', want the server-busy refusal";; esac
[ "$ms" -lt 3000 ] || it_fail "the refusal took $ms ms"

wait "$I3C"; wait "$I2C"
it_iperf3_check "$IT_TMP/i3.json" --timed || it_fail "the running iperf3 test did not finish whole"
grep -q "Server Report:" "$IT_TMP/i2client.log" || { cat "$IT_TMP/i2client.log"; it_fail "the iperf2 UDP client got no Server Report during the drain"; }
wait_exit "$SHIM_PID" 20 || { tail -20 "$LOG"; it_fail "the shim did not exit by itself after the drain"; }
wait "$SHIM_PID"; rc=$?
[ $rc = 0 ] || it_fail "the shim exited with $rc after draining"
grep -q "drained: every test and UDP flow has ended" "$LOG" || { tail -20 "$LOG"; it_fail "no 'drained' line"; }
grep -Eq "iperf2 UDP flow .* Server Report relayed" "$LOG" || it_fail "the UDP flow's line does not say the report was relayed"
grep -Eq "test \S+: client .*control closed" "$LOG" || { it_shim_test_lines "$LOG"; it_fail "the iperf3 test did not end normally"; }
# the server's late datagrams still arrive for a while: give them the time to draw an ICMP
sleep 1
icmp1=$(icmp_unreach)
echo "ICMP port-unreachable sent in this namespace during the drain: $((icmp1 - icmp0))"
[ "$icmp1" = "$icmp0" ] || it_fail "$((icmp1 - icmp0)) ICMP port-unreachable(s) were sent: a UDP port closed too early"

# --- 2. a second signal exits at once ---------------------------------------------
it_start_shim shim2 -- --listen "$H:$P_SHIM" --upstream "$H:$P_I3" --upstream-iperf2 "$H:$P_I2" \
    --log-level debug
LOG=$IT_TMP/shim2.log
it_bg i3client2 it_iperf3_json "$IT_TMP/i3b.json" 30 -c "$H" -p "$P_SHIM" -t 20
I3C=$IT_LAST_PID
it_wait_log_count "$LOG" "test \S+: client .* asks for" 1 10 || { cat "$LOG"; it_fail "the second iperf3 test never started"; }
kill -TERM "$SHIM_PID"
it_wait_log_count "$LOG" "draining" 1 5 || it_fail "no drain line after the first SIGTERM"
start=$(date +%s%N)
kill -TERM "$SHIM_PID"
wait_exit "$SHIM_PID" 2 || it_fail "the shim did not exit within 2 s of the second signal"
grep -q "again: exiting now" "$LOG" || it_fail "no 'exiting now' line"
wait_exit "$I3C" 10 || it_fail "the client of the closed test still runs 10 s after the shim exited"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
err=$(it_iperf3_error "$IT_TMP/i3b.json")
echo "client of the closed test: error '$err', ended $ms ms after the second signal"
[ -n "$err" ] || it_fail "the client of the closed test reported no error"
echo "PASS"

#!/bin/bash
# Limits of a service (issue #11): --max-duration.
#
#  - an iperf3 client asking for -t 5 through a shim with --max-duration 3 is
#    refused at once with SERVER_ERROR 37, what a 3.20+ server with
#    --server-max-duration answers (Debian's 3.12 client prints
#    "int_errno=37"), the shim logs why, and the server never starts the test:
#    a -t 2 test right after it runs normally;
#  - a -n test (its parameters bound no duration) is closed by the shim once
#    it runs 5 s past the limit (a 3 s limit: about 8 s), with a line saying so.
#
# Ports: 15841-15842 on 127.0.0.1.  Takes about 15 s.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (shim-specific checks)"
H=127.0.0.1 P=15841 S=15842
it_iperf3_server srv "$S"
it_start_shim shim -- --listen "$H:$P" --upstream "$H:$S" --max-duration 3
LOG=$IT_TMP/shim.log

start=$(date +%s%N)
it_iperf3_json "$IT_TMP/long.json" 20 -c "$H" -p "$P" -t 5
ms=$(( ($(date +%s%N) - start) / 1000000 ))
err=$(it_iperf3_error "$IT_TMP/long.json")
echo "-t 5 with --max-duration 3: '$err' after $ms ms"
case $err in *37*|*"max-duration"*|*"maximum duration"*) ;; *) it_fail "want SERVER_ERROR 37, got '$err'";; esac
[ "$ms" -lt 3000 ] || it_fail "the refusal took $ms ms"
it_wait_log_count "$LOG" "asks for -t 5 s, above --max-duration 3 s: refused" 1 5 || { cat "$LOG"; it_fail "no refusal line"; }

it_iperf3_json "$IT_TMP/ok.json" 20 -c "$H" -p "$P" -t 2
it_iperf3_check "$IT_TMP/ok.json" --timed || it_fail "a -t 2 test after the refusal failed"

start=$(date +%s%N)
it_iperf3_json "$IT_TMP/bytes.json" 30 -c "$H" -p "$P" -n 1000000G
s=$(( ($(date +%s%N) - start) / 1000000000 ))
echo "-n 1000000G with --max-duration 3: ended after ${s} s: '$(it_iperf3_error "$IT_TMP/bytes.json")'"
[ "$s" -ge 7 ] && [ "$s" -le 14 ] || it_fail "the -n test ended after $s s, want about 8"
it_wait_log_count "$LOG" "test \S+: the test ran past --max-duration" 1 5 || { cat "$LOG"; it_fail "no line for the test stopped at the limit"; }
kill -0 "$SHIM_PID" || it_fail "the shim died"
echo PASS

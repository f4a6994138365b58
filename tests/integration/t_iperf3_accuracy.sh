#!/bin/bash
# iperf3's numbers through the shim against direct, in the same run (issue #9).
#
# bench/accuracy.sh runs direct and through-the-shim tests interleaved on
# loopback (ports 16300-16301 on 127.0.0.1) and compares medians of
# received/sent per direction.  Asserted (--check 0.5,1): through the shim the
# client-to-server ratio is at most 0.5 point below direct and the
# server-to-client one at most 1 point below, and no stream (as iperf3 paired
# them by id) has a receiver that counted more than its sender sent or less
# than 90 % of it.  Modes: -P 4, -R -P 4, --bidir -P 2, -n 300M; -t 4;
# ACCURACY_ROUNDS (3) rounds.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing"
out=$IT_TMP/accuracy.out
"$here/../../bench/accuracy.sh" -s "$SHIM" -r "${ACCURACY_ROUNDS:-3}" -t 4 \
    -m P4,R-P4,bidir-P2,n300M --check 0.5,1 >"$out" 2>&1
rc=$?
grep -v '^# .* round ' "$out"
[ $rc -eq 0 ] || it_fail "accuracy through the shim out of bounds (exit $rc)"
exit 0

#!/bin/bash
# Runs one integration test N times in a row and prints the tally.
# Usage: repeat.sh TEST [N]      e.g.  tests/integration/repeat.sh t_udp_icmp 20
#   TEST  a t_*.sh name, with or without .sh, or a path
#   N     runs (default 10)
# The shim under test is $SHIM if set, else ./iperf-shim at the top of this tree.
# One line per run: verdict and duration, then the run's "# NOTE", "# SERVER FAULT" and
# "# summary" lines (a pass that needed a server restart says so); for a failed run its
# "FAIL" lines and the last 30 lines of its output.  Every failed run's whole output is kept in a directory named at
# the end.  Ends with "TEST: P passed of N (F failed, S skipped)"; exit 0 only when no
# run failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
t=${1:?usage: repeat.sh TEST [N]}
n=${2:-10}
case $n in ''|*[!0-9]*) echo "repeat.sh: N must be a number, not '$n'" >&2; exit 2;; esac
[ -f "$t" ] || t=$here/${t%.sh}.sh
[ -f "$t" ] || { echo "repeat.sh: no test $1 in $here" >&2; exit 2; }
name=$(basename "$t" .sh)
SHIM=$(realpath "${SHIM:-$root/iperf-shim}")
[ -x "$SHIM" ] || { echo "repeat.sh: shim $SHIM not built (make)" >&2; exit 2; }
export SHIM
keep=$(mktemp -d "/tmp/iperf-shim-repeat-$name.XXXXXX")
pass=0 fail=0 skip=0 total_start=$SECONDS
for i in $(seq "$n"); do
    log=$keep/run$i.log
    start=$SECONDS
    bash "$t" >"$log" 2>&1; rc=$?
    dur=$((SECONDS - start))
    notes=$(grep -E '^# (NOTE|SERVER FAULT|summary)' "$log" | sed 's/^/    /')
    case $rc in
        0)  pass=$((pass + 1)); echo "run $i/$n: PASS $name (${dur}s)"; [ -n "$notes" ] && echo "$notes"; rm -f "$log";;
        77) skip=$((skip + 1)); echo "run $i/$n: SKIP $name (${dur}s): $(tail -n 1 "$log")"; rm -f "$log";;
        *)  fail=$((fail + 1)); echo "run $i/$n: FAIL $name (rc=$rc, ${dur}s), output in $log"
            [ -n "$notes" ] && echo "$notes"
            grep -E '^FAIL' "$log" | sed 's/^/    ! /'
            tail -n 30 "$log" | sed 's/^/    | /';;
    esac
done
echo "$name: $pass passed of $n ($fail failed, $skip skipped) in $((SECONDS - total_start))s"
[ "$fail" -eq 0 ] && rmdir "$keep" 2>/dev/null
[ "$fail" -eq 0 ] || echo "outputs of the failed runs: $keep"
[ "$fail" -eq 0 ]

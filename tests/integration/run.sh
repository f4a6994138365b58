#!/bin/bash
# Runs every tests/integration/t_*.sh against one shim binary.
# Usage: run.sh PATH/TO/iperf-shim [t_name ...]
# Each test script exits 0 (pass), 77 (skip) or anything else (fail).
set -u
here=$(cd "$(dirname "$0")" && pwd)
SHIM=$(realpath "${1:?usage: run.sh SHIM [tests...]}"); shift
export SHIM
if [ $# -gt 0 ]; then tests=("$@"); else tests=("$here"/t_*.sh); fi
pass=0 fail=0 skip=0 failed=() all_start=$(date +%s)
for t in "${tests[@]}"; do
    [ -f "$t" ] || t="$here/$t"
    name=$(basename "$t" .sh)
    log=$(mktemp /tmp/iperf-shim-it.XXXXXX)
    start=$(date +%s)
    bash "$t" >"$log" 2>&1; rc=$?
    dur=$(( $(date +%s) - start ))
    case $rc in
        0)  pass=$((pass+1)); echo "PASS $name (${dur}s)";;
        77) skip=$((skip+1)); echo "SKIP $name (${dur}s): $(tail -n 1 "$log")";;
        *)  fail=$((fail+1)); failed+=("$name"); echo "FAIL $name (rc=$rc, ${dur}s)"
            # the test's own FAIL lines first (they may be far above its last lines)
            grep -E '^FAIL' "$log" | head -n 20 | sed 's/^/    ! /'
            sed 's/^/    | /' "$log" | tail -n 60;;
    esac
    rm -f "$log"
done
echo "integration: $pass passed, $fail failed, $skip skipped in $(( $(date +%s) - all_start ))s${failed[*]:+ (failed: ${failed[*]})}"
[ $fail -eq 0 ]

#!/bin/bash
# --bidir role repair, byte-exact: a scripted iperf3 client opens its receiver
# streams before its sender streams, so a server that assigns roles by accept
# order (like every real iperf3 server) always gets them crossed.  Through the
# shim every byte each sender wrote must reach a receiver exactly (sha256 and
# length of every stream), including the bytes the shim held while it learned
# the roles (8 MiB per stream: far more than its 64 KiB hold buffer, so the
# backpressure and release paths run too).  Direct, the same peers deadlock:
# that proves the test provokes the race it claims to.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

PY="python3 $here/fake_iperf3.py"
SRV=15601 SHIMP=15602
NBYTES=$((8 << 20))

# run_pair P TARGET_PORT [CLIENT_ARGS...]: one test; prints "ok" when exact
run_pair() {
    local p=$1 port=$2
    shift 2
    local cargs=("$@")
    [ ${#cargs[@]} -gt 0 ] || cargs=(--receivers-first)
    $PY server $SRV >"$IT_TMP/srv.json" 2>&1 &
    local spid=$!
    it_wait_tcp x $SRV 5 || it_fail "fake server did not start"
    timeout 30 $PY client 127.0.0.1 "$port" -P "$p" -n $NBYTES "${cargs[@]}" \
        >"$IT_TMP/cli.json" 2>&1
    local crc=$?
    wait $spid
    local src=$?
    python3 - "$IT_TMP/cli.json" "$IT_TMP/srv.json" "$p" "$NBYTES" <<'EOF'
import json, sys
cli, srv = (json.loads(open(f).read().strip().splitlines()[-1]) for f in sys.argv[1:3])
p, n = int(sys.argv[3]), int(sys.argv[4])
if "error" in cli or "error" in srv:
    print("error", cli.get("error"), srv.get("error")); sys.exit(1)
ok = (sorted(cli["sent"]) == sorted(srv["received"]) and
      sorted(srv["sent"]) == sorted(cli["received"]) and
      len(cli["sent"]) == p and len(srv["sent"]) == p and
      all(l == n for _, l in cli["sent"] + srv["sent"]))
print("ok" if ok else "mismatch: client %s server %s" % (cli, srv))
sys.exit(0 if ok else 1)
EOF
    local vrc=$?
    [ $crc -eq 0 ] && [ $src -eq 0 ] && [ $vrc -eq 0 ]
}

# 1. direct: the crossed roles must really deadlock (bounded by the peers' timeouts)
it_log "direct, receivers first: expecting the crossed-roles deadlock"
if run_pair 1 $SRV >/dev/null 2>&1; then
    it_fail "direct run succeeded: the scripted peers do not provoke the race"
fi
# (run_pair waited for its fake server: nothing to kill.  A `pkill -f` by name here
# killed the fake servers of every other run of this test on the machine, in other
# namespaces too: "fake server did not start" in a concurrent run.)

# 2. through the shim, splice and copy modes, P = 1, 2, 4
for mode in splice copy; do
    extra=()
    [ $mode = copy ] && extra=(--no-splice)
    it_start_shim shim-$mode -- --listen "127.0.0.1:$SHIMP" --upstream "127.0.0.1:$SRV" \
        --log-level info "${extra[@]}"
    for p in 1 2 4; do
        it_log "through the shim ($mode), -P $p, $NBYTES bytes per stream each way"
        out=$(run_pair $p $SHIMP 2>&1) || { cat "$IT_TMP/shim-$mode.log"; it_fail "P=$p $mode: $out"; }
        it_log "$out"
    done
    # every test was logged; the roles of every test were crossed by the client, so
    # unless the shim's own arrival order happened to uncross them, they were re-paired
    for _ in $(seq 50); do
        [ "$(grep -c 'mode TCP bidir' "$IT_TMP/shim-$mode.log")" -ge 3 ] && break
        sleep 0.1
    done
    n=$(grep -c "mode TCP bidir" "$IT_TMP/shim-$mode.log")
    [ "$n" -eq 3 ] || { cat "$IT_TMP/shim-$mode.log"; it_fail "$mode: expected 3 test lines, got $n"; }
    r=$(grep -c "roles re-paired" "$IT_TMP/shim-$mode.log")
    it_log "$mode: $r of 3 tests re-paired"
    [ "$r" -ge 1 ] || { cat "$IT_TMP/shim-$mode.log"; it_fail "$mode: no test was re-paired"; }
    grep -q "bidir roles fixed: client sender" "$IT_TMP/shim-$mode.log" ||
        it_fail "$mode: no 'bidir roles fixed' line"
    kill "$SHIM_PID"
    wait "$SHIM_PID" 2>/dev/null
done
# 3. fallback: client senders start 2.5 s late, past --role-timeout 1; the shim must
#    log that it could not learn the roles, pair in arrival order (right here: the
#    client opens senders first, as real clients do) and lose nothing of the held bytes
it_start_shim shim-fallback -- --listen "127.0.0.1:$SHIMP" --upstream "127.0.0.1:$SRV" \
    --role-timeout 1
it_log "through the shim, senders 2.5 s late, --role-timeout 1"
out=$(run_pair 2 $SHIMP --sender-delay 2.5 2>&1) || { cat "$IT_TMP/shim-fallback.log"; it_fail "fallback: $out"; }
it_log "$out"
it_wait_log_count "$IT_TMP/shim-fallback.log" "mode TCP bidir" 1 5 ||
    it_fail "fallback: no test line"
grep -q "bidir roles not learned within 1.0 s (senders seen: client 0, server 2 of 2)" \
    "$IT_TMP/shim-fallback.log" || { cat "$IT_TMP/shim-fallback.log"; it_fail "fallback: not logged"; }
grep -q "roles paired in arrival order (roles not learned)" "$IT_TMP/shim-fallback.log" ||
    { cat "$IT_TMP/shim-fallback.log"; it_fail "fallback: test line does not say so"; }
it_log "all streams byte-exact through the shim"
exit 0

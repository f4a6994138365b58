#!/bin/bash
# Reproduces the iperf3 --bidir role race (esnet/iperf #2029) for real, with the
# unmodified Debian iperf3 server, and checks that the shim removes it.
#
# The race: in --bidir the client opens P sender streams, then P receiver streams, one
# connect() after the other; the server (every version 3.7..master) makes the first P
# connections it accept()s its receivers and the next P its senders.  If one data
# connection's handshake completes at the server later than the next one's, the accept
# order crosses the P boundary: both ends send on one connection and both read the
# other.  We provoke exactly that by dropping, at random, the two packets that complete
# a data connection at the server: the client's handshake ACK (packet 2 of the flow) and
# its first data segment, the 37-byte cookie (packet 3; it also carries an ACK, so it
# completes the handshake on its own when only the ACK is lost).  When both are lost the
# connection stays in SYN_RECV at the server until the cookie is retransmitted (RTO,
# >= 200 ms), while the client - whose connect() already returned on the SYN-ACK - opens
# the next stream at once; that one is accepted first.
#
# Topology (netns.sh): client ns -- gateway ns -- server ns.  The shim runs in the gateway
# with --upstream = the server; direct runs go through the gateway's IP forwarding.
# Drop rule (iptables and ip6tables):
#   client  OUTPUT : client->server (direct) and client->shim (first leg of shim runs)
#   gateway OUTPUT : shim->server, the shim's own upstream connections (second leg)
#   gateway FORWARD: client->server direct traffic once more.  The gateway's OUTPUT chain
#                    sees only locally generated packets, so without this rule a direct
#                    connection would face one random drop point and a shim connection
#                    two (one per leg).  With it both paths cross two drop points.  For
#                    forwarded packets the gateway's conntrack counts only what survived
#                    the client's rule, so "packets 2..3" there are again the first two
#                    packets after the SYN that reach the gateway.
# The rule also hits the control connection (it is just the first connection to 5201,
# its packets 2..3 are its ACK and cookie).  That only delays it by an RTO: the client
# sends nothing more on it until the server answers, and the server (3.12) just blocks
# reading the cookie.  It cannot reorder data streams, and it is a realistic extra
# (the shim must cope with a slow upstream control connection), so it is kept.
#
# Failure of a run: non-zero exit or timeout, unparsable JSON or an "error" member,
# fewer than 2P streams, any stream or direction with 0 bytes.  (Measured with Debian's
# 3.12: a crossed run does NOT hang and exits 0 after -t; its JSON simply shows 0 bytes
# received in the crossed streams - e.g. ~800 KB "sent" into a full socket buffer and 0
# received - so the byte check is what detects it.)
#
# Byte accounting, TCP: iperf3's sender counts what it wrote into its socket, the
# receiver what it read; on TEST_END the server closes its data sockets at once, so what
# was in flight (sender's send queue + receiver's receive queue) is never read.  Direct
# runs without drops show this (a few MB per stream on this machine; the first phase
# measures and prints it).  So per direction we require 0 <= sent - received <= bound,
# the bound being what the socket buffers can hold: per stream and per TCP leg
# tcp_wmem[max] + tcp_rmem[max], times 2 legs through the shim, plus RACE_SHIM_BUF bytes
# per stream for the shim's own buffering.  received > sent would mean duplicated or
# injected bytes.  Sums per direction are compared, not per stream: peers match
# per-stream results by stream id, and ids follow accept order, which may legitimately
# be permuted within one direction.
#
# Tunables (environment): RACE_DIRECT_RUNS (10 per -P, IPv4), RACE_SHIM_RUNS (10 per -P,
# IPv4), RACE_V6_RUNS (3 per -P and per path, IPv6), RACE_EXTRA_RUNS (20: extra direct
# -P 1 runs at most, while none of the direct runs has failed yet), RACE_HARD_LIMIT (s,
# 1800: a safety net only; every run is bounded by its own timeout and the number of runs
# is fixed, so a slow but sound machine never reaches it), RACE_PROB (0.5), RACE_SHIM_BUF
# (8 MiB), RACE_DIRECT_ONLY=1 (skip the shim half, for diagnosing the race itself),
# RACE_SHIM_LOG_LEVEL (info).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/netns.sh"

it_require_root
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
command -v iptables >/dev/null && command -v ip6tables >/dev/null || it_skip "iptables/ip6tables not installed"
command -v python3 >/dev/null || it_skip "python3 not installed"
iperf3 --help 2>&1 | grep -q -- --bidir || it_skip "iperf3 has no --bidir (needs >= 3.7)"

DIRECT_RUNS=${RACE_DIRECT_RUNS:-10}
SHIM_RUNS=${RACE_SHIM_RUNS:-10}
V6_RUNS=${RACE_V6_RUNS:-3}
EXTRA_RUNS=${RACE_EXTRA_RUNS:-20}
PROB=${RACE_PROB:-0.5}
SHIM_BUF=${RACE_SHIM_BUF:-8388608}
DIRECT_ONLY=${RACE_DIRECT_ONLY:-0}
PORT=5201
T0=$SECONDS
HARD_LIMIT=${RACE_HARD_LIMIT:-1800}  # no new run starts after this many seconds: fail instead

if [ "$DIRECT_ONLY" != 1 ]; then
    [ -x "$SHIM" ] || it_fail "shim binary $SHIM missing or not executable"
fi

ns_topology "is-race-$$"
it_log "namespaces $NS_C $NS_G $NS_S; iperf3 $(iperf3 --version | head -n1)"

DROP_RULE=(-p tcp --dport "$PORT" -m connbytes --connbytes 2:3 --connbytes-dir original
           --connbytes-mode packets -m statistic --mode random --probability "$PROB" -j DROP)
drops_on() {
    ns_ipt "$NS_C" -A OUTPUT "${DROP_RULE[@]}" || it_skip "iptables lacks connbytes/statistic matches"
    ns_ipt "$NS_G" -A OUTPUT "${DROP_RULE[@]}" || it_skip "iptables lacks connbytes/statistic matches"
    ns_ipt "$NS_G" -A FORWARD "${DROP_RULE[@]}" || it_skip "iptables lacks connbytes/statistic matches"
}
drop_counts() {  # packets dropped so far: client OUTPUT, gateway OUTPUT, gateway FORWARD (v4+v6)
    local spec n out=""
    for spec in "$NS_C OUTPUT" "$NS_G OUTPUT" "$NS_G FORWARD"; do
        set -- $spec
        n=$(( $(ns_exec "$1" iptables -nvxL "$2" | awk '$3=="DROP"{s+=$1} END{print s+0}') +
              $(ns_exec "$1" ip6tables -nvxL "$2" | awk '$3=="DROP"{s+=$1} END{print s+0}') ))
        out+="${out:+ }$n"
    done
    echo "$out"
}

# Buffer bound per stream and TCP leg (see the header comment).
wmax=$(ns_exec "$NS_S" sysctl -n net.ipv4.tcp_wmem | awk '{print $3}')
rmax=$(ns_exec "$NS_S" sysctl -n net.ipv4.tcp_rmem | awk '{print $3}')
LEG_BOUND=$((wmax + rmax))

cat >"$IT_TMP/check.py" <<'EOF'
# check.py JSON RC P TOL_PER_STREAM: one verdict line for an iperf3 --bidir -J result.
#   "ok fwd_sent fwd_recv rev_sent rev_recv"   or   "FAIL reason ..."
# TOL_PER_STREAM < 0: no upper bound on sent-received (only reported).
import json, sys
path, rc, P, tol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
try:
    j = json.load(open(path))
except Exception as e:
    print("FAIL rc=%d, no JSON (%s)" % (rc, str(e)[:80])); sys.exit()
end = j.get("end", {})
def b(k):
    return int(end.get(k, {}).get("bytes", 0))
fs, fr = b("sum_sent"), b("sum_received")
rs, rr = b("sum_sent_bidir_reverse"), b("sum_received_bidir_reverse")
nums = "fwd %d/%d rev %d/%d" % (fs, fr, rs, rr)
probs = []
if rc != 0:
    probs.append("rc=%d" % rc)
if j.get("error"):
    probs.append("error: %s" % j["error"])
streams = end.get("streams", [])
if len(streams) != 2 * P:
    probs.append("%d streams, expected %d" % (len(streams), 2 * P))
zero = []
for i, st in enumerate(streams):
    s, r = st.get("sender") or {}, st.get("receiver") or {}
    if int(s.get("bytes", 0)) == 0 or int(r.get("bytes", 0)) == 0:
        zero.append("#%d(%s, sent %d recv %d)" % (i, "client sends" if s.get("sender") else "client receives",
                                                  int(s.get("bytes", 0)), int(r.get("bytes", 0))))
if zero:
    probs.append("zero-byte streams " + " ".join(zero))
if 0 in (fs, fr, rs, rr):
    probs.append("a direction with 0 bytes")
if not probs:
    for name, snt, rcv in (("fwd", fs, fr), ("rev", rs, rr)):
        if rcv > snt:
            probs.append("%s receiver got %d more bytes than the sender sent" % (name, rcv - snt))
        elif tol >= 0 and snt - rcv > tol * P:
            probs.append("%s receiver short by %d > bound %d" % (name, snt - rcv, tol * P))
if probs:
    print("FAIL " + "; ".join(probs) + " [" + nums + "]")
else:
    print("ok %d %d %d %d" % (fs, fr, rs, rr))
EOF

SRV_PID=""
server_start() {
    ns_exec "$NS_S" timeout 40 iperf3 -s -1 -p "$PORT" >>"$IT_TMP/server.log" 2>&1 &
    SRV_PID=$!
    IT_PIDS+=("$SRV_PID")
    it_wait_tcp "$NS_S" x "$PORT" 5 || it_fail "iperf3 server did not start"
}
server_stop() {  # give the one-off server 3 s to finish on its own, then stop it
    local i
    for i in $(seq 30); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    # A server still listening (not expected after the kill) would confuse the next run.
    for i in $(seq 30); do ns_exec "$NS_S" ss -Htln "sport = :$PORT" | grep -q . || return 0; sleep 0.1; done
    ns_kill_all "$NS_S"
}

# run_one LABEL TARGET P TOL: one --bidir test; sets VERDICT, RUN_SECS; appends to results.
run_one() {
    local label=$1 target=$2 P=$3 tol=$4 rc t0 json=$IT_TMP/run.json
    [ $((SECONDS - T0)) -lt "$HARD_LIMIT" ] ||
        it_fail "time limit of $HARD_LIMIT s reached before a $label run (results so far: $(cut -f1,4 "$IT_TMP/results.tsv" | cut -c1-12 | sort | uniq -c | tr -s ' \n' ' '))"
    server_start
    t0=$(date +%s%N)
    timeout 20 ip netns exec "$NS_C" iperf3 -c "$target" -p "$PORT" --bidir -P "$P" -t 2 -J \
        >"$json" 2>"$IT_TMP/client.err"
    rc=$?
    RUN_SECS=$(( ($(date +%s%N) - t0) / 1000000 ))
    server_stop
    VERDICT=$(python3 "$IT_TMP/check.py" "$json" "$rc" "$P" "$tol")
    printf '%s\t%s\t%s\t%s\n' "$label" "$P" "$RUN_SECS" "$VERDICT" >>"$IT_TMP/results.tsv"
    case $VERDICT in FAIL*) cp "$json" "$IT_TMP/fail-$label-$(wc -l <"$IT_TMP/results.tsv").json";; esac
}

# ---------------------------------------------------------------- phase 1: baseline
# Direct, no drops: must always work; measures the in-flight difference described above.
it_log "phase 1: direct runs without drops (calibration)"
base_max=0
for spec in "$NS_S4 1" "$NS_S4 2" "$NS_S6 1" "$NS_S6 2"; do
    set -- $spec
    run_one base "$1" "$2" "$LEG_BOUND"
    it_log "  direct $1 -P $2: $VERDICT (${RUN_SECS} ms)"
    case $VERDICT in ok*) ;; *) it_fail "direct run without drops failed: $VERDICT";; esac
    read -r _ fs fr rs rr <<<"$VERDICT"
    for d in $(( (fs - fr) / $2 )) $(( (rs - rr) / $2 )); do [ "$d" -gt "$base_max" ] && base_max=$d; done
done
it_log "  largest sent-received difference without drops: $base_max bytes per stream" \
       "(bound per stream and TCP leg: wmem $wmax + rmem $rmax = $LEG_BOUND)"

# ---------------------------------------------------------------- phase 2: direct under drops
drops_on
it_log "phase 2: direct runs under drops (p=$PROB on client OUTPUT and gateway FORWARD)"
direct_runs=0 direct_fail=0
direct_run() {  # TARGET P
    run_one direct "$1" "$2" -1
    direct_runs=$((direct_runs + 1))
    case $VERDICT in FAIL*) direct_fail=$((direct_fail + 1)); it_log "  direct $1 -P $2: $VERDICT (${RUN_SECS} ms)";; esac
}
for P in 1 2; do
    for i in $(seq "$DIRECT_RUNS"); do direct_run "$NS_S4" "$P"; done
    for i in $(seq "$V6_RUNS"); do direct_run "$NS_S6" "$P"; done
done
# The comparison means nothing unless the race was really provoked: if no direct run
# failed yet, keep trying -P 1 (the most sensitive case), EXTRA_RUNS times at most (a
# count, not a time budget: a loaded machine runs as many).
extra=0
while [ "$direct_fail" -eq 0 ] && [ "$extra" -lt "$EXTRA_RUNS" ]; do
    direct_run "$NS_S4" 1
    extra=$((extra + 1))
done
it_log "  direct: $direct_fail of $direct_runs runs failed; drops so far (client OUT, gw OUT, gw FWD): $(drop_counts)"
awk -F'\t' '$1=="direct"{n[$2]++; if ($4 ~ /^FAIL/) f[$2]++} END{for (p in n) printf "#   -P %s: %d/%d failed\n", p, f[p], n[p]}' "$IT_TMP/results.tsv"
[ "$direct_fail" -gt 0 ] || it_fail "the race was never provoked: $direct_runs direct runs under drops all passed"

if [ "$DIRECT_ONLY" = 1 ]; then
    it_log "RACE_DIRECT_ONLY=1: shim half skipped"
    exit 0
fi

# ---------------------------------------------------------------- phase 3: through the shim
SHIM_LEVEL=${RACE_SHIM_LOG_LEVEL:-info}
SHIM_TOL=$((2 * LEG_BOUND + SHIM_BUF))
shim_runs=0 shim_fail=0 shim_fixed=0 shim_fixed_lines=0 shim_testlines=0 shim_repaired=0 shim_fallback=0
# The shim's per-test line: "<time> info  test ID: client ..., mode M, streams N each way, roles R, bytes ..."
TEST_LINE_RE='(^|[[:space:]])test [^ ]+ .*mode .*streams'

# shim_phase NAME LISTEN UPSTREAM TARGET: start a shim, run RUNS x -P 1 and -P 2 at TARGET.
shim_phase() {
    local name=$1 listen=$2 upstream=$3 target=$4 runs=$5 P i before fixed log
    it_start_shim "$name" "$NS_G" -- --listen "$listen" --upstream "$upstream" --log-level "$SHIM_LEVEL"
    log=$IT_TMP/$name.log
    it_log "phase 3 ($name): shim --listen $listen --upstream $upstream (pid $SHIM_PID)"
    for P in 1 2; do
        for i in $(seq "$runs"); do
            before=$(wc -l <"$log")
            run_one "$name" "$target" "$P" "$SHIM_TOL"
            shim_runs=$((shim_runs + 1))
            # The shim logs its per-test line when the test ends; give it a moment.
            for _ in $(seq 30); do
                tail -n +"$((before + 1))" "$log" | grep -Eq "$TEST_LINE_RE" && break
                sleep 0.1
            done
            fixed=$(tail -n +"$((before + 1))" "$log" | grep -c 'bidir roles fixed')
            shim_fixed_lines=$((shim_fixed_lines + fixed))
            [ "$fixed" -gt 0 ] && shim_fixed=$((shim_fixed + 1))
            tline=$(tail -n +"$((before + 1))" "$log" | grep -E "$TEST_LINE_RE" | tail -n 1)
            if [ -n "$tline" ]; then
                shim_testlines=$((shim_testlines + 1))
                case $tline in *re-paired*) shim_repaired=$((shim_repaired + 1));; esac
                case $tline in *"roles not learned"*) shim_fallback=$((shim_fallback + 1))
                    it_log "  shim $target -P $P run $i: roles not learned, arrival order: $tline";; esac
            fi
            case $VERDICT in
                FAIL*)
                    shim_fail=$((shim_fail + 1))
                    it_log "  shim $target -P $P run $i: $VERDICT (${RUN_SECS} ms); shim log of this run:"
                    tail -n +"$((before + 1))" "$log" | tail -n 40 | sed 's/^/#     | /'
                    ;;
                *)  [ "$fixed" -gt 0 ] && it_log "  shim $target -P $P run $i: ok, bidir roles fixed ($fixed)";;
            esac
            kill -0 "$SHIM_PID" 2>/dev/null || { tail -n 40 "$log"; it_fail "shim ($name) died during run $i (-P $P)"; }
        done
    done
    kill "$SHIM_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SHIM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SHIM_PID" 2>/dev/null
    wait "$SHIM_PID" 2>/dev/null
}

# IPv4 both legs, on the dual-stack listener (the client reaches it through a v4-mapped
# address); then IPv6 both legs.
shim_phase shim4 "[::]:$PORT" "$NS_S4:$PORT" "$NS_GC4" "$SHIM_RUNS"
shim_phase shim6 "[$NS_GC6]:$PORT" "[$NS_S6]:$PORT" "$NS_GC6" "$V6_RUNS"

it_log "summary: direct $direct_fail/$direct_runs runs failed; shim $shim_fail/$shim_runs runs failed;" \
       "\"bidir roles fixed\" in $shim_fixed shim runs ($shim_fixed_lines lines);" \
       "per-test log lines $shim_testlines/$shim_runs (\"re-paired\" in $shim_repaired," \
       "\"roles not learned\" in $shim_fallback); drops (client OUT, gw OUT, gw FWD): $(drop_counts);" \
       "$((SECONDS - T0)) s"
awk -F'\t' '$1 ~ /^shim/ {n[$1" -P "$2]++; if ($4 ~ /^FAIL/) f[$1" -P "$2]++} END{for (k in n) printf "#   %s: %d/%d failed\n", k, f[k], n[k]}' "$IT_TMP/results.tsv"
awk -F'\t' -v tol="$SHIM_TOL" '$1 ~ /^shim/ && $4 ~ /^ok/ {split($4, a, " "); d = a[2] - a[3]; if (d / $2 > m) m = d / $2;
    d = a[4] - a[5]; if (d / $2 > m) m = d / $2}
    END {printf "#   shim runs: largest sent-received difference %d bytes per stream (bound %d)\n", m, tol}' "$IT_TMP/results.tsv"
grep -E "$TEST_LINE_RE" "$IT_TMP/shim4.log" "$IT_TMP/shim6.log" | grep -m 2 re-paired | sed 's/^/#   /'

[ "$shim_fail" -eq 0 ] || it_fail "$shim_fail of $shim_runs runs through the shim failed (direct: $direct_fail/$direct_runs)"
[ "$shim_fixed" -gt 0 ] || it_log "note: the shim never logged \"bidir roles fixed\" (did no upstream reorder happen?)"
exit 0

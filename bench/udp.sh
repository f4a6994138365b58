#!/usr/bin/env bash
# Loopback UDP benchmark: iperf3 -u direct vs. through iperf-shim and socat.
#
# usage: bench/udp.sh [options] [SHIM]        (SHIM defaults to ./iperf-shim)
#   -r, --rounds N     rounds per configuration        (BENCH_ROUNDS, default 3)
#   -t, --time S       iperf3 -t seconds                (BENCH_TIME, default 5)
#   -c, --configs L    comma list of direct,shim,socat,alt (BENCH_CONFIGS, default
#                      direct,shim,socat); alt is a second shim, started with
#                      the extra arguments of --alt-args, for A/B runs of a lever
#   -a, --alt-args A   the alt shim's extra arguments, e.g. "--no-udp-gso"
#                      (BENCH_ALT_ARGS)
#   -b, --alt-bin B    the alt shim's binary (default SHIM)      (BENCH_ALT_BIN)
#   -T, --tests L      comma list of RATE-LEN tests, RATE 1G (any iperf3 -b value)
#                      or max (-b 0), LEN the datagram size in bytes
#                      (BENCH_TESTS, default 1G-64,1G-1400,max-64,max-1400)
#   -R, --reverse      server sends (iperf3 -R)             (BENCH_REVERSE=1)
#   -p, --pin          pin iperf3 (server+client) to BENCH_IPERF_CPUS (default 0)
#                      and the proxy to BENCH_PROXY_CPUS (default 1)   (BENCH_PIN=1)
#   -o, --out FILE     also write the raw per-run rows (TSV) to FILE   (BENCH_OUT)
#
# socat is two processes on the proxy port: the UDP relay the comparison is
# about, `socat -T 5 UDP4-LISTEN:PORT,fork,reuseaddr UDP4:127.0.0.1:SERVERPORT`
# (-T 5 so that its per-client children exit when idle instead of piling up
# run after run), and `socat TCP4-LISTEN:PORT,fork,reuseaddr TCP4:...` for
# iperf3's control connection.  The shim does both in one process.
#
# Runs are interleaved: for each round, for each test, every configuration in
# turn (the order rotates from round to round), so slow drift of a noisy
# machine hits all configurations alike.  Per run it records, from iperf3 -u -J:
#   sent      datagrams the sender sent (end.sum_sent.packets)
#   recv      datagrams the receiver counted: end.sum_received.bytes / LEN (iperf3's
#             own "packets" is the highest sequence number seen, not a count)
#   recv/s    recv / the receiver's test time
#   loss%     1 - recv / sent: every datagram that did not reach the receiving
#             iperf3 while it was counting (in the proxy, in a full socket buffer,
#             or in flight when the test ended)
#   iperf%    iperf3's own lost_percent (gaps in sequence numbers only)
#   jitter    receiver's jitter, ms
#   cpu_s     the proxy's CPU time over the run: utime+stime+cutime+cstime from
#             /proc/PID/stat of the proxy and of every live descendant (socat's
#             per-client children; reaped ones are in cutime/cstime), summed over
#             socat's UDP and TCP processes
#   kdg/cpus  thousands of datagrams received per proxy CPU-second
#   @proxy%   datagrams dropped by a full receive buffer of one of the proxy's
#             own UDP sockets ("drops" of /proc/net/udp, polled: see
#             drops_monitor), in % of sent: the part of loss% that happened at
#             the proxy's door; the rest was lost mostly in the receiving
#             iperf3's socket buffer (208 KiB by default), or inside the proxy
# It prints medians over rounds and the shim/socat ratios.  It does not judge
# the numbers: exit status is 0 when every run completed, 1 when a run broke
# twice (each broken run is shown and retried once) or a proxy died, 2 on a
# usage or set-up error.
#
# Only loopback ports 15550-15559 are used (see PORT_* below).
set -u
. "$(dirname "$0")/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
TIME=${BENCH_TIME:-5}
CONFIGS=${BENCH_CONFIGS:-direct,shim,socat}
TESTS=${BENCH_TESTS:-1G-64,1G-1400,max-64,max-1400}
REVERSE=${BENCH_REVERSE:-0}
PIN=${BENCH_PIN:-0}
IPERF_CPUS=${BENCH_IPERF_CPUS:-0}
PROXY_CPUS=${BENCH_PROXY_CPUS:-1}
OUT=${BENCH_OUT:-}
ALT_ARGS=${BENCH_ALT_ARGS:-}
ALT_BIN=${BENCH_ALT_BIN:-}
SHIM=./iperf-shim

PORT_IPERF=15550
PORT_SHIM=15551
PORT_SOCAT=15552
PORT_ALT=15553
HOST=127.0.0.1

die() { echo "bench: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        -r|--rounds)  ROUNDS=${2:?}; shift 2 ;;
        -t|--time)    TIME=${2:?}; shift 2 ;;
        -c|--configs) CONFIGS=${2:?}; shift 2 ;;
        -T|--tests)   TESTS=${2:?}; shift 2 ;;
        -R|--reverse) REVERSE=1; shift ;;
        -p|--pin)     PIN=1; shift ;;
        -o|--out)     OUT=${2:?}; shift 2 ;;
        -a|--alt-args) ALT_ARGS=${2?}; shift 2 ;;
        -b|--alt-bin) ALT_BIN=${2:?}; shift 2 ;;
        -h|--help)    sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*)           die "unknown option $1 (see --help)" ;;
        *)            SHIM=$1; shift ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "bad --rounds $ROUNDS"
[[ $TIME =~ ^[1-9][0-9]*$ ]]   || die "bad --time $TIME"
IFS=, read -r -a CFG_LIST <<<"$CONFIGS"
IFS=, read -r -a TEST_LIST <<<"$TESTS"
for c in "${CFG_LIST[@]}"; do
    case $c in direct|shim|socat|alt) ;; *) die "unknown config $c" ;; esac
done
for t in "${TEST_LIST[@]}"; do
    [[ $t =~ ^([0-9]+[KMG]?|max)-([0-9]+)$ ]] || die "bad test $t (want RATE-LEN, e.g. 1G-64 or max-1400)"
    len=${BASH_REMATCH[2]}
    [ "$len" -ge 16 ] && [ "$len" -le 65507 ] || die "test $t: LEN must be 16..65507"
done
has_cfg() { [[ ",$CONFIGS," == *",$1,"* ]]; }

need=(iperf3 jq ss getconf awk sort timeout python3)
has_cfg socat && need+=(socat)
[ "$PIN" = 1 ] && need+=(taskset)
for b in "${need[@]}"; do
    command -v "$b" >/dev/null || die "$b not found (scripts/install-deps.sh installs it)"
done
if has_cfg shim || has_cfg alt; then
    [ -x "$SHIM" ] || die "shim binary '$SHIM' not found or not executable (build it, or pass --configs without shim)"
fi
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/iperf-shim-bench-udp.XXXXXX)
PIDS=()
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    trap - EXIT INT TERM
    [ -n "${CLIENT_PID:-}" ] && PIDS+=("$CLIENT_PID")
    [ -n "${MON_PID:-}" ] && PIDS+=("$MON_PID")
    bench_stop "${PIDS[@]}"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pin_iperf=() pin_proxy=()
if [ "$PIN" = 1 ]; then
    pin_iperf=(taskset -c "$IPERF_CPUS")
    pin_proxy=(taskset -c "$PROXY_CPUS")
fi

# listening PORT: true when something listens on TCP PORT.
listening() { ss -Htln "sport = :$1" | grep -q .; }
# udp_bound PORT: true when a UDP socket is bound to PORT.
udp_bound() { ss -Huan "sport = :$1" | grep -q .; }

# wait_port tcp|udp PORT PID: wait up to 10 s for PID to bind PORT.
wait_port() {
    local f=listening
    [ "$1" = udp ] && f=udp_bound
    for _ in $(seq 200); do
        $f "$2" && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# start NAME tcp|udp PORT CMD...: start a daemon, log in $TMP/NAME.log, wait for PORT.
# Sets STARTED_PID.
start() {
    local name=$1 proto=$2 port=$3; shift 3
    "$@" >"$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    if ! wait_port "$proto" "$port" "$STARTED_PID"; then
        echo "bench: $name did not bind $proto port $port:" >&2
        tail -n 20 "$TMP/$name.log" >&2
        return 1
    fi
}

stop() {
    kill "$1" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null
}

start_iperf_server() {
    start iperf3-server tcp "$PORT_IPERF" "${pin_iperf[@]}" iperf3 -s -B "$HOST" -p "$PORT_IPERF"
    IPERF_PID=$STARTED_PID
}

# proxy_ticks PID...: CPU ticks of each PID and all its live descendants
# (utime+stime+cutime+cstime, fields 14-17 of /proc/PID/stat; children that
# exited and were reaped are in their parent's cutime/cstime), or "dead" when
# a PID is gone.
proxy_ticks() {
    python3 - "$@" <<'PYEOF'
import os, sys
roots = [int(a) for a in sys.argv[1:]]
procs = {}
for d in os.listdir("/proc"):
    if not d.isdigit(): continue
    try: s = open("/proc/%s/stat" % d).read()
    except OSError: continue
    f = s[s.rindex(")") + 2:].split()
    procs[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
if any(r not in procs for r in roots): print("dead"); sys.exit()
kids = {}
for p, (pp, _) in procs.items(): kids.setdefault(pp, []).append(p)
total, todo, seen = 0, list(roots), set()
while todo:
    p = todo.pop()
    if p in seen or p not in procs: continue
    seen.add(p); total += procs[p][1]; todo.extend(kids.get(p, []))
print(total)
PYEOF
}

# drops_monitor OUT PID...: starts in the background (MON_PID) a poller that, every 0.2 s, finds the UDP sockets held
# by the PIDs and their descendants and reads their receive-buffer drop counters
# ("drops", last column of /proc/net/udp{,6}).  On SIGTERM it writes to OUT the
# datagrams dropped since it started, summed over every socket it saw (socat's
# per-client children die at the end of a test, taking their counters along:
# hence the polling).  Its own CPU cost (~1-2 % of a core) is outside the proxy's.
drops_monitor() {
    python3 - "$@" >/dev/null 2>&1 <<'PYEOF' &
import os, signal, sys, time
out, roots = sys.argv[1], [int(a) for a in sys.argv[2:]]
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def tree_inodes():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        try: s = open("/proc/%s/stat" % d).read()
        except OSError: continue
        kids.setdefault(int(s[s.rindex(")") + 2:].split()[1]), []).append(int(d))
    inodes, todo, seen = set(), list(roots), set()
    while todo:
        p = todo.pop()
        if p in seen: continue
        seen.add(p); todo.extend(kids.get(p, []))
        try:
            for fd in os.listdir("/proc/%d/fd" % p):
                try: l = os.readlink("/proc/%d/fd/%s" % (p, fd))
                except OSError: continue
                if l.startswith("socket:["): inodes.add(l[8:-1])
        except OSError: pass
    return inodes
base, last, first = {}, {}, True
while True:
    ino = tree_inodes()
    for f in ("/proc/net/udp", "/proc/net/udp6"):
        try: lines = open(f).readlines()[1:]
        except OSError: continue
        for line in lines:
            c = line.split()
            if c[9] in ino:
                if c[9] not in base: base[c[9]] = int(c[-1]) if first else 0
                last[c[9]] = int(c[-1])
    first = False
    if stop: break
    time.sleep(0.2)
open(out, "w").write("%d\n" % sum(last[k] - base[k] for k in last))
PYEOF
    MON_PID=$!
}

ALT_BIN=${ALT_BIN:-$SHIM}
for p in $PORT_IPERF $PORT_SHIM $PORT_SOCAT $PORT_ALT; do
    listening "$p" && die "TCP port $p already in use"
    udp_bound "$p" && die "UDP port $p already in use"
done

# ---- daemons ---------------------------------------------------------------
declare -A PROXY_PIDS PROXY_PORT
start_iperf_server || exit 2
if has_cfg shim; then
    start shim tcp "$PORT_SHIM" "${pin_proxy[@]}" "$SHIM" --listen "$HOST:$PORT_SHIM" \
        --upstream "$HOST:$PORT_IPERF" --log-level warn || exit 2
    PROXY_PIDS[shim]=$STARTED_PID PROXY_PORT[shim]=$PORT_SHIM
fi
if has_cfg alt; then
    # shellcheck disable=SC2086
    start alt tcp "$PORT_ALT" "${pin_proxy[@]}" "$ALT_BIN" --listen "$HOST:$PORT_ALT" \
        --upstream "$HOST:$PORT_IPERF" --log-level warn $ALT_ARGS || exit 2
    PROXY_PIDS[alt]=$STARTED_PID PROXY_PORT[alt]=$PORT_ALT
fi
if has_cfg socat; then
    start socat-udp udp "$PORT_SOCAT" "${pin_proxy[@]}" socat -T 5 \
        "UDP4-LISTEN:$PORT_SOCAT,bind=$HOST,fork,reuseaddr" "UDP4:$HOST:$PORT_IPERF" || exit 2
    s1=$STARTED_PID
    start socat-tcp tcp "$PORT_SOCAT" "${pin_proxy[@]}" socat \
        "TCP4-LISTEN:$PORT_SOCAT,bind=$HOST,fork,reuseaddr" "TCP4:$HOST:$PORT_IPERF" || exit 2
    PROXY_PIDS[socat]="$s1 $STARTED_PID" PROXY_PORT[socat]=$PORT_SOCAT
fi
PROXY_PORT[direct]=$PORT_IPERF

# ---- runs ------------------------------------------------------------------
ROWS=$TMP/rows.tsv   # round test config ok sent recv pps loss iperfloss jitter cpu kdgcpu proxydrops
: >"$ROWS"
FAILED=0
NRUNS=$(( ROUNDS * ${#TEST_LIST[@]} * ${#CFG_LIST[@]} ))
echo "# iperf3 -u -t $TIME on loopback$([ "$REVERSE" = 1 ] && echo ", -R (server sends)");" \
     "$ROUNDS rounds x {${TESTS}} x {${CONFIGS}} = $NRUNS runs" \
     "(~$(( NRUNS * (TIME + 2) / 60 + 1 )) min); pin=$PIN; CLK_TCK=$CLK_TCK"
[ "$PIN" = 1 ] && echo "# pinned: iperf3 on CPU $IPERF_CPUS, proxy on CPU $PROXY_CPUS"
has_cfg shim && echo "# shim: $SHIM"
has_cfg alt && echo "# alt: $ALT_BIN $ALT_ARGS"
FMT='%-5s %-9s %-6s %10s %10s %10s %7s %7s %7s %7s %6s %9s\n'
printf "$FMT" round test config sent recv recv/s loss% iperf% @proxy% jit_ms cpu_s kdg/cpus

# quiesce: let the receiver drain and socat's idle children be counted.
quiesce() { sleep 0.5; }

# run_one ROUND TEST CFG: one iperf3 -u run; appends a row to $ROWS.
run_one() {
    local round=$1 test=$2 cfg=$3 port=${PROXY_PORT[$3]} pids="" rc json err="" t0="" t1=""
    local rate=${test%-*} len=${test#*-} row cpu="-" per="-" pdrops="-"
    [ "$rate" = max ] && rate=0
    json=$TMP/run.json
    if [ "$cfg" != direct ]; then
        pids=${PROXY_PIDS[$cfg]}
        # shellcheck disable=SC2086
        t0=$(proxy_ticks $pids)
        [ "$t0" = dead ] && err="$cfg is not running"
    fi
    if [ -z "$err" ]; then
        local rev=() mon=""
        [ "$REVERSE" = 1 ] && rev=(-R)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            drops_monitor "$TMP/drops" $pids
            mon=$MON_PID
            sleep 0.3   # its first sample is the baseline
        fi
        "${pin_iperf[@]}" timeout $(( TIME + 30 )) iperf3 -c "$HOST" -p "$port" -u -b "$rate" \
            -l "$len" -t "$TIME" "${rev[@]}" --connect-timeout 3000 -J >"$json" 2>"$TMP/client.err" &
        CLIENT_PID=$!
        wait "$CLIENT_PID"
        rc=$?
        CLIENT_PID=
        quiesce
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            t1=$(proxy_ticks $pids)
            kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
            [ "$t1" = dead ] && err="$cfg died during the run (log: $(tail -n 3 "$TMP/$cfg"*.log | tr '\n' ' '))"
        fi
        if [ -z "$err" ]; then
            err=$(jq -r '.error // empty' "$json" 2>/dev/null)
            [ -z "$err" ] && [ "$rc" != 0 ] && err="iperf3 exited $rc $(head -c 200 "$TMP/client.err")"
        fi
        if [ -z "$err" ] && ! jq -e '.end.sum_sent.packets > 0 and .end.sum_received.bytes > 0' \
                "$json" >/dev/null 2>&1; then
            err="nothing received ($(jq -rc '[.end.sum_sent.packets, .end.sum_received.bytes] | map(. // "n/a") | join("/")' "$json" 2>/dev/null) sent/bytes received)"
        fi
    fi
    if [ -z "$err" ]; then
        row=$(jq -r --argjson len "$len" '
            (.end.sum_sent.packets) as $s | (.end.sum_received.bytes / $len | floor) as $r
            | (.end.sum_received.seconds) as $t
            | [$s, $r, ($r / $t | floor), (100 * (1 - $r / $s)),
               .end.sum_received.lost_percent, .end.sum_received.jitter_ms] | @tsv' "$json")
        local sent recv pps loss iloss jit drops
        read -r sent recv pps loss iloss jit <<<"$row"
        if [ -n "$pids" ]; then
            drops=$(cat "$TMP/drops" 2>/dev/null || echo 0)
            cpu=$(awk -v d=$(( t1 - t0 )) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
            per=$(awk -v r="$recv" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", r / c / 1000; else print "-" }')
            pdrops=$(awk -v d="$drops" -v s="$sent" 'BEGIN { printf "%.2f", 100 * d / s }')
        fi
        printf "$FMT" "$round" "$test" "$cfg" "$sent" "$recv" "$pps" \
            "$(printf %.2f "$loss")" "$(printf %.2f "$iloss")" "$pdrops" "$(printf %.3f "$jit")" "$cpu" "$per"
        printf '%s\t%s\t%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$test" "$cfg" \
            "$sent" "$recv" "$pps" "$loss" "$iloss" "$jit" "$cpu" "$per" "$pdrops" >>"$ROWS"
    else
        printf '%-5s %-9s %-6s %10s   %s\n' "$round" "$test" "$cfg" FAIL "$err"
        echo "$round $test $cfg: $err" >>"$TMP/broken"
        # A broken run may leave iperf3 3.12 wedged (it has no read timeout):
        # restart it so that the remaining runs still mean something.
        stop "$IPERF_PID"
        start_iperf_server || exit 1
        return 1
    fi
}

for ((r = 1; r <= ROUNDS; r++)); do
    for test in "${TEST_LIST[@]}"; do
        n=${#CFG_LIST[@]}
        for ((k = 0; k < n; k++)); do
            cfg=${CFG_LIST[$(( (k + r - 1) % n ))]}
            run_one "$r" "$test" "$cfg" && continue
            dead=0
            for p in ${PROXY_PIDS[$cfg]:-}; do kill -0 "$p" 2>/dev/null || dead=1; done
            if [ "$dead" = 1 ]; then
                FAILED=1
                continue       # a dead proxy stays dead: no retry
            fi
            run_one "$r" "$test" "$cfg" || FAILED=1
        done
    done
done
[ -n "$OUT" ] && cp "$ROWS" "$OUT"

# ---- summary ---------------------------------------------------------------
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# col TEST CFG N: column N of the successful rows of TEST/CFG.
col() { awk -F'\t' -v t="$1" -v c="$2" -v n="$3" '$2 == t && $3 == c && $4 == "ok" { print $n }' "$ROWS"; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "-" || v == "") print "-"; else printf f, v }'; }

echo
echo "# medians over rounds (recv/s: datagrams counted by the receiving iperf3 per second)"
SFMT='%-9s %-6s %5s %10s %20s %7s %7s %7s %7s %6s %9s\n'
printf "$SFMT" test config runs recv/s "[min-max]" loss% iperf% @proxy% jit_ms cpu_s kdg/cpus
for test in "${TEST_LIST[@]}"; do
    for cfg in "${CFG_LIST[@]}"; do
        n=$(col "$test" "$cfg" 7 | wc -l)
        range=$(col "$test" "$cfg" 7 | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
                END { if (NR) printf "%d-%d", lo, hi; else print "-" }')
        printf "$SFMT" "$test" "$cfg" "$n/$ROUNDS" "$(fmt "$(col "$test" "$cfg" 7 | median)" %.0f)" "[$range]" \
            "$(fmt "$(col "$test" "$cfg" 8 | median)" %.2f)" "$(fmt "$(col "$test" "$cfg" 9 | median)" %.2f)" \
            "$(fmt "$(col "$test" "$cfg" 13 | grep -v '^-$' | median)" %.2f)" \
            "$(fmt "$(col "$test" "$cfg" 10 | median)" %.3f)" \
            "$(fmt "$(col "$test" "$cfg" 11 | grep -v '^-$' | median)" %.2f)" \
            "$(fmt "$(col "$test" "$cfg" 12 | grep -v '^-$' | median)" %.0f)"
    done
done

# ratios A/B per test: median over rounds of the per-round ratio (each round
# runs A and B back to back), per-round values alongside; loss as a difference.
ratios() {
    local a=$1 b=$2 test
    has_cfg "$a" && has_cfg "$b" || return 0
    echo
    echo "# $a/$b: median of per-round ratios (per-round values); loss: $a - $b in points"
    printf '%-9s %-28s %-28s %s\n' test recv/s kdg/cpus "loss% difference"
    for test in "${TEST_LIST[@]}"; do
        awk -F'\t' -v t="$test" -v a="$a" -v b="$b" '
            $2 == t && $4 == "ok" && $3 == a { pa[$1] = $7; ea[$1] = $12; la[$1] = $8 }
            $2 == t && $4 == "ok" && $3 == b { pb[$1] = $7; eb[$1] = $12; lb[$1] = $8 }
            END {
                for (r in pa) if ((r in pb) && pb[r] > 0) print "p", r, pa[r] / pb[r]
                for (r in ea) if ((r in eb) && eb[r] != "-" && ea[r] != "-" && eb[r] > 0) print "e", r, ea[r] / eb[r]
                for (r in la) if (r in lb) print "l", r, la[r] - lb[r]
            }' "$ROWS" | sort -k1,1 -k2,2n >"$TMP/ratios"
        local k out=()
        for k in p e l; do
            local lst med
            lst=$(awk -v k=$k '$1 == k { printf "%s%.2f", s, $3; s = " " }' "$TMP/ratios")
            med=$(awk -v k=$k '$1 == k { print $3 }' "$TMP/ratios" | median)
            out+=("$(fmt "$med" %.2f) ($lst)")
        done
        printf '%-9s %-28s %-28s %s\n' "$test" "${out[0]}" "${out[1]}" "${out[2]}"
    done
}
ratios shim socat
ratios shim direct
has_cfg alt && ratios alt direct
has_cfg alt && ratios shim alt

# ---- issue #12 targets -------------------------------------------------------
# per_round TEST A B COL OP: median over rounds of A/B (OP "/") or A-B (OP "-")
# of column COL (7: recv/s, 8: loss%), "-" when no round has both.
per_round() {
    awk -F'\t' -v t="$1" -v a="$2" -v b="$3" -v n="$4" -v op="$5" '
        $2 == t && $4 == "ok" && $3 == a { va[$1] = $n }
        $2 == t && $4 == "ok" && $3 == b { vb[$1] = $n }
        END { for (r in va) if (r in vb) {
                  if (op == "-") print va[r] - vb[r]
                  else if (vb[r] > 0) print va[r] / vb[r] } }' "$ROWS" | median
}
# target NAME TEST COL KIND LIMIT: one row: shim, direct and socat medians,
# shim against direct (ratio, or difference in points for loss), the target
# and whether this run met it (printed only: the exit status does not judge).
target() {
    local name=$1 test=$2 n=$3 kind=$4 lim=$5 a d s r verdict f=%.0f goal
    [[ " ${TEST_LIST[*]} " == *" $test "* ]] && has_cfg shim && has_cfg direct || return 0
    [ "$kind" = loss ] && f=%.2f
    a=$(col "$test" shim "$n" | median)
    d=$(col "$test" direct "$n" | median)
    s=$(has_cfg socat && col "$test" socat "$n" | median)
    if [ "$kind" = loss ]; then
        r=$(per_round "$test" shim direct "$n" -)
        goal="<= +$lim pt"
        verdict=$(awk -v r="$r" -v m="$lim" 'BEGIN { if (r == "-" || r == "") print "-";
                                                     else print (r <= m ? "met" : "missed") }')
    else
        r=$(per_round "$test" shim direct "$n" /)
        goal=">= ${lim}x"
        verdict=$(awk -v r="$r" -v m="$lim" 'BEGIN { if (r == "-" || r == "") print "-";
                                                     else print (r >= m ? "met" : "missed") }')
    fi
    printf '%-38s %9s %9s %9s %8s %10s  %s\n' "$name" "$(fmt "$a" $f)" "$(fmt "$d" $f)" \
        "$(fmt "${s:--}" $f)" "$(fmt "$r" %+.2f | sed 's/^+//')" "$goal" "$verdict"
}
echo
echo "# issue #12 targets (this run; shim vs direct: median of per-round ratios, or of"
echo "# per-round differences in points for loss)"
printf '%-38s %9s %9s %9s %8s %10s  %s\n' test shim direct socat vs-direct target verdict
target "UDP max rate 1400 B, datagrams/s recv" max-1400 7 rate 0.6
target "UDP 1 Gbit/s 1400 B, loss %" 1G-1400 8 loss 2
target "UDP max rate 64 B, datagrams/s recv" max-64 7 rate 0.6

if [ -s "$TMP/broken" ]; then
    echo
    echo "# broken runs ($(wc -l <"$TMP/broken")), each retried once:"
    sed 's/^/#   /' "$TMP/broken"
fi
if [ "$FAILED" != 0 ]; then
    echo "bench: some runs broke twice (or their proxy died); they are left out" >&2
    exit 1
fi
exit 0

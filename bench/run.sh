#!/usr/bin/env bash
# Loopback throughput / CPU benchmark: iperf3 direct vs. through iperf-shim,
# haproxy (splice, 1 MiB pipes, 1 thread) and socat.
#
# usage: bench/run.sh [options] [SHIM]        (SHIM defaults to ./iperf-shim)
#   -r, --rounds N     rounds per configuration        (BENCH_ROUNDS, default 3)
#   -t, --time S       iperf3 -t seconds                (BENCH_TIME, default 5)
#   -c, --configs L    comma list of direct,shim,haproxy,socat,alt
#                      (BENCH_CONFIGS, default direct,shim,haproxy,socat); alt
#                      is a second shim for A/B runs of a lever: --alt-bin
#                      with the extra arguments of --alt-args
#   -a, --alt-args A   the alt shim's extra arguments            (BENCH_ALT_ARGS)
#   -b, --alt-bin B    the alt shim's binary (default SHIM)      (BENCH_ALT_BIN)
#   -T, --tests L      comma list of p1,p4,bidir        (BENCH_TESTS, default all)
#   -p, --pin          pin iperf3 (server+client) to BENCH_IPERF_CPUS (default 0)
#                      and the proxy to BENCH_PROXY_CPUS (default 1)   (BENCH_PIN=1)
#   -o, --out FILE     also write the raw per-run rows (TSV) to FILE   (BENCH_OUT)
#
# Runs are interleaved: for each round, for each test, every configuration in
# turn, so slow drift of a noisy machine hits all configurations alike.
# Per run it records the iperf3 receive throughput (end.sum_received, plus
# end.sum_received_bidir_reverse for --bidir) and the proxy's CPU time over the
# run (utime+stime+cutime+cstime from /proc/PID/stat; the child terms count
# socat's forked children once reaped).  It prints medians over rounds and the
# shim/haproxy ratios.  It does not judge the numbers: exit status is 0 when
# every run completed, 1 when a run broke twice (each broken run is shown and
# retried once) or a proxy died, 2 on a usage or set-up error.
#
# Only loopback ports 16200-16299 are used (see PORT_* below).
set -u
. "$(dirname "$0")/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
TIME=${BENCH_TIME:-5}
CONFIGS=${BENCH_CONFIGS:-direct,shim,haproxy,socat}
TESTS=${BENCH_TESTS:-p1,p4,bidir}
PIN=${BENCH_PIN:-0}
IPERF_CPUS=${BENCH_IPERF_CPUS:-0}
PROXY_CPUS=${BENCH_PROXY_CPUS:-1}
OUT=${BENCH_OUT:-}
ALT_ARGS=${BENCH_ALT_ARGS:-}
ALT_BIN=${BENCH_ALT_BIN:-}
SHIM=./iperf-shim

PORT_IPERF=16201
PORT_SHIM=16210
PORT_HAPROXY=16220
PORT_SOCAT=16230
PORT_ALT=16240
HOST=127.0.0.1

HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)

die() { echo "bench: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        -r|--rounds)  ROUNDS=${2:?}; shift 2 ;;
        -t|--time)    TIME=${2:?}; shift 2 ;;
        -c|--configs) CONFIGS=${2:?}; shift 2 ;;
        -T|--tests)   TESTS=${2:?}; shift 2 ;;
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
    case $c in direct|shim|haproxy|socat|alt) ;; *) die "unknown config $c" ;; esac
done
for t in "${TEST_LIST[@]}"; do
    case $t in p1|p4|bidir) ;; *) die "unknown test $t" ;; esac
done
has_cfg() { [[ ",$CONFIGS," == *",$1,"* ]]; }

need=(iperf3 jq ss getconf awk sort timeout)
has_cfg haproxy && need+=("$HAPROXY")
has_cfg socat && need+=(socat)
[ "$PIN" = 1 ] && need+=(taskset)
for b in "${need[@]}"; do
    command -v "$b" >/dev/null || die "$b not found (scripts/install-deps.sh installs it)"
done
if has_cfg shim; then
    [ -x "$SHIM" ] || die "shim binary '$SHIM' not found or not executable (build it, or pass --configs without shim)"
fi
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/iperf-shim-bench.XXXXXX)
PIDS=()
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    trap - EXIT INT TERM
    [ -n "${CLIENT_PID:-}" ] && PIDS+=("$CLIENT_PID")
    bench_stop "${PIDS[@]}"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# pin_iperf / pin_proxy: command prefixes for --pin.
pin_iperf=() pin_proxy=()
if [ "$PIN" = 1 ]; then
    pin_iperf=(taskset -c "$IPERF_CPUS")
    pin_proxy=(taskset -c "$PROXY_CPUS")
fi

# listening PORT: true when something listens on TCP PORT.
listening() { ss -Htln "sport = :$1" | grep -q .; }

# wait_listen PORT PID: wait up to 10 s for PID to listen on PORT.
wait_listen() {
    for _ in $(seq 200); do
        listening "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# quiesce: wait (max 10 s) until no connection on our ports is open any more,
# so the next test does not meet a server still tearing down the previous one
# and socat's children have exited and been reaped.
quiesce() {
    local f="( sport = :$PORT_IPERF or dport = :$PORT_IPERF or sport = :$PORT_SHIM"
    f+=" or sport = :$PORT_HAPROXY or sport = :$PORT_SOCAT or sport = :$PORT_ALT )"
    local open=1
    for _ in $(seq 100); do
        ss -Htn state connected exclude time-wait "$f" | grep -q . || { open=0; break; }
        sleep 0.1
    done
    if [ "$open" = 1 ]; then
        echo "#   note: connections still open 10 s after the client exited:"
        ss -Htn state connected exclude time-wait "$f" | sed 's/^/#     /'
    fi
    if [ -n "${SOCAT_PID:-}" ]; then
        for _ in $(seq 50); do
            [ -z "$(ps -o pid= --ppid "$SOCAT_PID")" ] && break
            sleep 0.1
        done
    fi
    sleep 0.3
}

# start NAME PORT CMD...: start a daemon, log in $TMP/NAME.log, wait for PORT.
# Sets STARTED_PID.
start() {
    local name=$1 port=$2; shift 2
    "$@" >"$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    if ! wait_listen "$port" "$STARTED_PID"; then
        echo "bench: $name did not start listening on $port:" >&2
        tail -n 20 "$TMP/$name.log" >&2
        return 1
    fi
}

# stop PID: terminate one daemon we started.
stop() {
    kill "$1" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null
}

start_iperf_server() {
    start iperf3-server "$PORT_IPERF" "${pin_iperf[@]}" iperf3 -s -B "$HOST" -p "$PORT_IPERF"
    IPERF_PID=$STARTED_PID
}

# proc_ticks PID: utime+stime+cutime+cstime of PID, in clock ticks.
proc_ticks() {
    local s f
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -r -a f <<<"${s##*) }"   # drop "pid (comm) ": f[0] is field 3 (state)
    echo $(( f[11] + f[12] + f[13] + f[14] ))   # fields 14-17
}

ALT_BIN=${ALT_BIN:-$SHIM}
for p in $PORT_IPERF $PORT_SHIM $PORT_HAPROXY $PORT_SOCAT $PORT_ALT; do
    listening "$p" && die "port $p already in use"
done

# ---- daemons ---------------------------------------------------------------
declare -A PROXY_PID PROXY_PORT
start_iperf_server || exit 2
if has_cfg shim; then
    start shim "$PORT_SHIM" "${pin_proxy[@]}" "$SHIM" --listen "$HOST:$PORT_SHIM" \
        --upstream "$HOST:$PORT_IPERF" --log-level warn || exit 2
    PROXY_PID[shim]=$STARTED_PID PROXY_PORT[shim]=$PORT_SHIM
fi
if has_cfg alt; then
    # shellcheck disable=SC2086
    start alt "$PORT_ALT" "${pin_proxy[@]}" "$ALT_BIN" --listen "$HOST:$PORT_ALT" \
        --upstream "$HOST:$PORT_IPERF" --log-level warn $ALT_ARGS || exit 2
    PROXY_PID[alt]=$STARTED_PID PROXY_PORT[alt]=$PORT_ALT
fi
if has_cfg haproxy; then
    sed -e "s/@LISTEN@/$HOST:$PORT_HAPROXY/" -e "s/@UPSTREAM@/$HOST:$PORT_IPERF/" \
        "$BENCH_DIR/haproxy.cfg.in" >"$TMP/haproxy.cfg"
    "$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || die "haproxy rejects $TMP/haproxy.cfg"
    start haproxy "$PORT_HAPROXY" "${pin_proxy[@]}" "$HAPROXY" -db -f "$TMP/haproxy.cfg" || exit 2
    PROXY_PID[haproxy]=$STARTED_PID PROXY_PORT[haproxy]=$PORT_HAPROXY
fi
if has_cfg socat; then
    start socat "$PORT_SOCAT" "${pin_proxy[@]}" socat \
        "TCP-LISTEN:$PORT_SOCAT,bind=$HOST,fork,reuseaddr" "TCP:$HOST:$PORT_IPERF" || exit 2
    PROXY_PID[socat]=$STARTED_PID PROXY_PORT[socat]=$PORT_SOCAT SOCAT_PID=$STARTED_PID
fi
PROXY_PORT[direct]=$PORT_IPERF

test_args() {
    case $1 in
        p1)    echo "-P 1" ;;
        p4)    echo "-P 4" ;;
        bidir) echo "--bidir -P 1" ;;
    esac
}

# ---- runs ------------------------------------------------------------------
ROWS=$TMP/rows.tsv       # round test config ok gbps gbit cpu_s
: >"$ROWS"
FAILED=0
NRUNS=$(( ROUNDS * ${#TEST_LIST[@]} * ${#CFG_LIST[@]} ))
echo "# iperf3 -t $TIME on loopback; $ROUNDS rounds x {${TESTS}} x {${CONFIGS}} = $NRUNS runs" \
     "(~$(( NRUNS * (TIME + 2) / 60 + 1 )) min); pin=$PIN; CLK_TCK=$CLK_TCK"
[ "$PIN" = 1 ] && echo "# pinned: iperf3 on CPU $IPERF_CPUS, proxy on CPU $PROXY_CPUS"
has_cfg shim && echo "# shim: $SHIM"
has_cfg alt && echo "# alt: $ALT_BIN $ALT_ARGS"
printf '%-5s %-6s %-8s %10s %10s %12s\n' round test config Gbit/s proxyCPUs Gbit/CPUs

# run_one ROUND TEST CFG: one iperf3 client run; appends a row to $ROWS.
run_one() {
    local round=$1 test=$2 cfg=$3 port=${PROXY_PORT[$3]} pid="" t0="" t1 rc json err
    local gbps gbit cpu="-" per="-"
    json=$TMP/run.json
    if [ "$cfg" != direct ]; then
        pid=${PROXY_PID[$cfg]}
        t0=$(proc_ticks "$pid") || { err="$cfg is not running"; t0=""; }
    fi
    if [ -z "${err:-}" ]; then
        # shellcheck disable=SC2046
        "${pin_iperf[@]}" timeout $(( TIME + 30 )) iperf3 -c "$HOST" -p "$port" -t "$TIME" \
            $(test_args "$test") --connect-timeout 3000 -J >"$json" 2>"$TMP/client.err" &
        CLIENT_PID=$!
        wait "$CLIENT_PID"
        rc=$?
        CLIENT_PID=
        quiesce
        if [ -n "$pid" ]; then
            t1=$(proc_ticks "$pid") || err="$cfg died during the run (log: $(tail -n 3 "$TMP/$cfg.log" | tr '\n' ' '))"
        fi
        if [ -z "${err:-}" ]; then
            err=$(jq -r '.error // empty' "$json" 2>/dev/null)
            [ -z "$err" ] && [ "$rc" != 0 ] && err="iperf3 exited $rc $(head -c 200 "$TMP/client.err")"
        fi
        # A direction that moved nothing is a broken run, not a slow one: with
        # --bidir it is what crossed stream roles look like (esnet/iperf #2029:
        # the relay opened upstream data connections out of accept order).
        if [ -z "${err:-}" ] && ! jq -e '.end.sum_received.bytes > 0
                and (.end.sum_received_bidir_reverse.bytes // 1) > 0' "$json" >/dev/null 2>&1; then
            err="0 bytes received in a direction ($(jq -rc '[.end.sum_received.bytes,
                 .end.sum_received_bidir_reverse.bytes] | map(. // "n/a") | join("/")' "$json" 2>/dev/null))"
            [ "$test" = bidir ] && err+=": stream roles crossed? (esnet/iperf #2029)"
        fi
    fi
    if [ -z "${err:-}" ]; then
        read -r gbps gbit < <(jq -r '[ (.end.sum_received.bits_per_second
                                 + (.end.sum_received_bidir_reverse.bits_per_second // 0)) / 1e9,
                               (.end.sum_received.bytes
                                 + (.end.sum_received_bidir_reverse.bytes // 0)) * 8 / 1e9 ]
                             | @tsv' "$json")
        if [ -n "$pid" ]; then
            cpu=$(awk -v d=$(( t1 - t0 )) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
            per=$(awk -v g="$gbit" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.1f", g / c; else print "-" }')
        fi
        printf '%-5s %-6s %-8s %10.2f %10s %12s\n' "$round" "$test" "$cfg" "$gbps" "$cpu" "$per"
        printf '%s\t%s\t%s\tok\t%s\t%s\t%s\t%s\n' "$round" "$test" "$cfg" "$gbps" "$gbit" "$cpu" "$per" >>"$ROWS"
    else
        printf '%-5s %-6s %-8s %10s   %s\n' "$round" "$test" "$cfg" FAIL "$err"
        echo "$round $test $cfg: $err" >>"$TMP/broken"
        # A broken run may leave iperf3 3.12 wedged (it has no read timeout):
        # restart it so that the remaining runs still mean something.
        stop "$IPERF_PID"
        start_iperf_server || exit 1
        return 1
    fi
}

# Each broken run is shown and retried once; only a run broken twice is left
# out of the summary (and makes the exit status 1).
for ((r = 1; r <= ROUNDS; r++)); do
    for test in "${TEST_LIST[@]}"; do
        for cfg in "${CFG_LIST[@]}"; do
            run_one "$r" "$test" "$cfg" && continue
            if [ -n "${PROXY_PID[$cfg]:-}" ] && ! kill -0 "${PROXY_PID[$cfg]}" 2>/dev/null; then
                FAILED=1
                continue       # a dead proxy stays dead: no retry
            fi
            run_one "$r" "$test" "$cfg" || FAILED=1
        done
    done
done
[ -n "$OUT" ] && cp "$ROWS" "$OUT"

# ---- summary ---------------------------------------------------------------
# median: median of the numbers on stdin ("-" when none).
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# col TEST CFG N: column N of the successful rows of TEST/CFG.
col() { awk -F'\t' -v t="$1" -v c="$2" -v n="$3" '$2 == t && $3 == c && $4 == "ok" { print $n }' "$ROWS"; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "-" || v == "") print "-"; else printf f, v }'; }

echo
echo "# medians over rounds (throughput = iperf3 received, both directions for --bidir)"
printf '%-6s %-8s %4s %10s %16s %10s %12s\n' test config runs Gbit/s "[min-max]" proxyCPUs Gbit/CPUs
for test in "${TEST_LIST[@]}"; do
    for cfg in "${CFG_LIST[@]}"; do
        n=$(col "$test" "$cfg" 5 | wc -l)
        g=$(col "$test" "$cfg" 5 | median)
        range=$(col "$test" "$cfg" 5 | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
                END { if (NR) printf "%.1f-%.1f", lo, hi; else print "-" }')
        c=$(col "$test" "$cfg" 7 | grep -v '^-$' | median)
        e=$(col "$test" "$cfg" 8 | grep -v '^-$' | median)
        printf '%-6s %-8s %4s %10s %16s %10s %12s\n' "$test" "$cfg" "$n/$ROUNDS" \
            "$(fmt "$g" %.2f)" "[$range]" "$(fmt "$c" %.2f)" "$(fmt "$e" %.1f)"
    done
done

# ratios A/B per test: median over rounds of the per-round ratio A/B (each round
# runs A and B back to back), with the per-round values alongside.
ratios() {
    local a=$1 b=$2 test
    has_cfg "$a" && has_cfg "$b" || return 0
    echo
    echo "# $a/$b: median of per-round ratios (per-round values)"
    local w=$(( 8 + 5 * ROUNDS ))
    printf '%-6s %-*s %s\n' test "$w" throughput Gbit/CPUs
    for test in "${TEST_LIST[@]}"; do
        awk -F'\t' -v t="$test" -v a="$a" -v b="$b" '
            $2 == t && $4 == "ok" && $3 == a { ga[$1] = $5; ea[$1] = $8 }
            $2 == t && $4 == "ok" && $3 == b { gb[$1] = $5; eb[$1] = $8 }
            END {
                for (r in ga) if ((r in gb) && gb[r] > 0) print "g", r, ga[r] / gb[r]
                for (r in ea) if ((r in eb) && eb[r] + 0 > 0 && ea[r] != "-") print "e", r, ea[r] / eb[r]
            }' "$ROWS" | sort -k1,1 -k2,2n >"$TMP/ratios"
        local gl el gm em
        gl=$(awk '$1 == "g" { printf "%s%.2f", s, $3; s = " " }' "$TMP/ratios")
        el=$(awk '$1 == "e" { printf "%s%.2f", s, $3; s = " " }' "$TMP/ratios")
        gm=$(awk '$1 == "g" { print $3 }' "$TMP/ratios" | median)
        em=$(awk '$1 == "e" { print $3 }' "$TMP/ratios" | median)
        printf '%-6s %-*s %s\n' "$test" "$w" "$(fmt "$gm" %.2f) ($gl)" "$(fmt "$em" %.2f) ($el)"
    done
}
ratios shim haproxy
ratios alt haproxy
ratios shim alt

# ---- issue #12 targets -------------------------------------------------------
# ratio_med TEST A B COL: median over rounds of the per-round ratio A/B of
# column COL (5: Gbit/s, 8: Gbit per CPU-s), "-" when no round has both.
ratio_med() {
    awk -F'\t' -v t="$1" -v a="$2" -v b="$3" -v n="$4" '
        $2 == t && $4 == "ok" && $3 == a { va[$1] = $n }
        $2 == t && $4 == "ok" && $3 == b { vb[$1] = $n }
        END { for (r in va) if ((r in vb) && va[r] != "-" && vb[r] != "-" && vb[r] > 0)
                  print va[r] / vb[r] }' "$ROWS" | median
}
# target NAME TEST COL UNIT MIN: one row of the table: shim, haproxy, ratio,
# the target ratio and whether this run met it (printed only: the exit status
# does not judge numbers).
target() {
    local name=$1 test=$2 n=$3 min=$4 a b r verdict
    has_cfg shim && has_cfg haproxy && [[ " ${TEST_LIST[*]} " == *" $test "* ]] || return 0
    a=$(col "$test" shim "$n" | grep -v '^-$' | median)
    b=$(col "$test" haproxy "$n" | grep -v '^-$' | median)
    r=$(ratio_med "$test" shim haproxy "$n")
    verdict=$(awk -v r="$r" -v m="$min" 'BEGIN { if (r == "-" || r == "") print "-";
                                                 else print (r >= m ? "met" : "missed") }')
    printf '%-34s %8s %8s %7s %8s  %s\n' "$name" "$(fmt "$a" %.2f)" "$(fmt "$b" %.2f)" \
        "$(fmt "$r" %.2f)" ">= ${min}x" "$verdict"
}
if has_cfg shim && has_cfg haproxy; then
    echo
    echo "# issue #12 targets (this run; ratio = median of per-round shim/haproxy)"
    printf '%-34s %8s %8s %7s %8s  %s\n' test shim haproxy ratio target verdict
    target "TCP 1 stream, Gbit/s" p1 5 1.0
    target "TCP 1 stream, Gbit per proxy CPU-s" p1 8 1.2
    target "TCP -P 4, Gbit per proxy CPU-s" p4 8 1.2
    target "TCP --bidir, Gbit per proxy CPU-s" bidir 8 1.2
fi

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

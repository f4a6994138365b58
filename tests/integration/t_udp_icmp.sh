#!/bin/bash
# iperf2 UDP servers and late Server Reports: ICMP port-unreachable (iperf2 ticket #391).
#
# The problem: iperf2's UDP server answers each client's FIN with a Server Report and
# resends it while FINs keep coming.  A report that arrives after the client has closed
# its port draws an ICMP port-unreachable.  The Windows server gets that as WSAECONNRESET
# on recvfrom of its listening socket (no SIO_UDP_CONNRESET) and, treating every error
# but WSAEWOULDBLOCK as fatal, stops: every later client gets "did not receive ack of last
# datagram".  The shim's fix: a per-client upstream UDP socket that lingers
# (--udp-linger S) after the client's last datagram, so no late report ever hits a closed
# port and the server never sees an ICMP.
#
# Reproduced here on Linux with the unmodified Debian iperf 2.1.8 server:
#  - late reports: the server namespace's outgoing UDP from port 5001 goes through
#    NFQUEUE to build/tools/nfq_delay, which re-injects every packet 1.5 s later (order
#    kept; netem is not available in this kernel).  The 2.1.8 client sends a FIN every
#    10 ms for up to 2 s; the server answers each with a report (up to 9 times, then
#    closes the client's socket); the client takes the first report to arrive (after
#    ~1.5 s), prints it and exits; the remaining reports arrive at its closed port.
#  - Windows semantics: the server runs under LD_PRELOAD=build/tools/libwinsock_udp.so
#    (see tests/tools/winsock_udp.c), which turns an ICMP port-unreachable into
#    ECONNRESET on the listening socket's next receive, as Winsock does.  iperf2's
#    Listener::udp_accept ends the listener on any recvfrom error (FAIL_errno) on Linux
#    too, so the server then stops exactly like the Windows one.
#  - ICMP count: Icmp InDestUnreachs (+ Icmp6 InDestUnreachs) of the server namespace's
#    /proc/net/snmp{,6}: ICMPs the server host received.
#
# Topology (netns.sh, addresses moved to 10.203.x / fd00:203:x so that this test does not
# share subnets with the other tests):
#   client ns 10.203.1.2 -- gateway ns 10.203.1.1 | 10.203.2.1 (forwarding) -- server ns 10.203.2.2
#
# Phases (each client: `iperf -c TARGET -u -t 1 -b 1M`, clients one after another,
# UDPICMP_GAP s apart: Debian's 2.1.8 server may segfault on back-to-back clients):
#  0. injector self-test on loopback (tests/tools/winsock_udp_selftest.py).
#  1. DIRECT, plain Linux server, delay on: InDestUnreachs must rise above 0 (the late
#     reports do hit closed ports); the first client must get its report (topology works).
#     How many clients got reports, and whether the server survived, is logged (Linux
#     servers normally survive: the ICMP is dropped at their unconnected listener).
#  2. DIRECT, server under the injector, delay on: the first client gets its Server
#     Report; the injector reports ECONNRESET on the listener; the server process exits;
#     no later client gets a report.  That is the Windows failure, reproduced.  (IPv6 too,
#     unless UDPICMP_V6=0.)
#  3. SHIM (needs `--udp-linger` in `$SHIM --help`): server under the injector, delay on,
#     `$SHIM --listen 10.203.1.1:5001 --upstream 10.203.2.2:5001 --udp-linger 10` in the
#     gateway ns, UDPICMP_SHIM_CLIENTS (12) clients through it.  Every client must get its
#     Server Report, the server namespace must receive exactly 0 new ICMP
#     port-unreachables, the injector must never fire, server and shim must stay up.
#     (Then IPv6 through the shim with UDPICMP_SHIM6_CLIENTS clients.)
#
# Tunables: UDPICMP_DELAY (1.5 s), UDPICMP_GAP (3 s), UDPICMP_DIRECT_CLIENTS (3),
# UDPICMP_SHIM_CLIENTS (12, at least 12 for a pass), UDPICMP_SHIM6_CLIENTS (3),
# UDPICMP_V6 (1), UDPICMP_LINGER (10), UDPICMP_DIRECT_ONLY=1 (stop after phase 2, pass),
# UDPICMP_TOOLS (directory with nfq_delay and libwinsock_udp.so, default build/tools).
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
. "$here/netns.sh"

it_require_root
command -v iperf >/dev/null || it_skip "iperf (2) not installed"
command -v iptables >/dev/null && command -v ip6tables >/dev/null || it_skip "iptables/ip6tables not installed"
command -v python3 >/dev/null || it_skip "python3 not installed"

DELAY=${UDPICMP_DELAY:-1.5}
GAP=${UDPICMP_GAP:-3}
DIRECT_CLIENTS=${UDPICMP_DIRECT_CLIENTS:-3}
SHIM_CLIENTS=${UDPICMP_SHIM_CLIENTS:-12}
SHIM6_CLIENTS=${UDPICMP_SHIM6_CLIENTS:-3}
V6=${UDPICMP_V6:-1}
LINGER=${UDPICMP_LINGER:-10}
DIRECT_ONLY=${UDPICMP_DIRECT_ONLY:-0}
TOOLS=${UDPICMP_TOOLS:-$root/build/tools}
PORT=5001
QNUM=5           # NFQUEUE number, private to the server namespace
T0=$SECONDS
[ "$DIRECT_CLIENTS" -ge 2 ] || it_fail "UDPICMP_DIRECT_CLIENTS must be >= 2"

NFQ=$TOOLS/nfq_delay
INJ=$TOOLS/libwinsock_udp.so
if [ ! -x "$NFQ" ] || [ ! -f "$INJ" ]; then
    [ -z "${UDPICMP_TOOLS:-}" ] && make -C "$root" -s tools >"$IT_TMP/make-tools.log" 2>&1
    [ -x "$NFQ" ] && [ -f "$INJ" ] || { cat "$IT_TMP/make-tools.log" 2>/dev/null
        it_fail "test tools missing: $NFQ, $INJ (run 'make tools'; needs libnetfilter-queue-dev)"; }
fi
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3

it_log "$(iperf -v 2>&1 | head -n 1); delay ${DELAY}s, gap ${GAP}s"

NS_C4=10.203.1.2    NS_GC4=10.203.1.1    NS_GS4=10.203.2.1    NS_S4=10.203.2.2
NS_C6=fd00:203:1::2 NS_GC6=fd00:203:1::1 NS_GS6=fd00:203:2::1 NS_S6=fd00:203:2::2
ns_topology "is-udpicmp-$$"
it_log "namespaces $NS_C $NS_G $NS_S"

# ---------------------------------------------------------------- helpers
# unreach NS: "v4 v6" InDestUnreachs counters of namespace NS.
unreach() {
    local v4 v6
    v4=$(ns_exec "$1" awk '$1=="Icmp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "InDestUnreachs") c = i; h = 1; next } print $c }' /proc/net/snmp)
    v6=$(ns_exec "$1" awk '$1=="Icmp6InDestUnreachs" { print $2 }' /proc/net/snmp6)
    echo "${v4:-0} ${v6:-0}"
}
unreach_sum() { local a b; read -r a b <<<"$(unreach "$1")"; echo $((a + b)); }

SRV_PID="" SRV_NAME=""
# srv_start NAME plain|inject [IPERF ARGS...]: `iperf -s -u -p 5001` in the server ns.
srv_start() {
    local name=$1 mode=$2 i; shift 2
    SRV_NAME=$name
    if [ "$mode" = inject ]; then
        ns_exec "$NS_S" timeout 600 env LD_PRELOAD="$INJ" WINSOCK_UDP_LOG="$IT_TMP/$name.inj" \
            iperf -s -u -p "$PORT" "$@" >"$IT_TMP/$name.log" 2>&1 &
    else
        ns_exec "$NS_S" timeout 600 iperf -s -u -p "$PORT" "$@" >"$IT_TMP/$name.log" 2>&1 &
    fi
    SRV_PID=$!
    IT_PIDS+=("$SRV_PID")
    for i in $(seq 100); do
        ns_exec "$NS_S" ss -Hulna "sport = :$PORT" | grep -q . && return 0
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$IT_TMP/$name.log"; it_fail "iperf server ($name) did not start"
}
# srv_stop: stop the server if still running; sets SRV_STATUS (exit status, 143 = we
# stopped it, 0/other = it had exited on its own: see SRV_EXITED).
srv_stop() {
    SRV_EXITED=1
    kill -0 "$SRV_PID" 2>/dev/null && { SRV_EXITED=0; kill "$SRV_PID" 2>/dev/null; }
    wait "$SRV_PID" 2>/dev/null; SRV_STATUS=$?
    local i
    for i in $(seq 40); do ns_exec "$NS_S" ss -Hulna "sport = :$PORT" | grep -q . || return 0; sleep 0.05; done
    # still listening: SIGKILL the iperf processes of the server namespace (only those)
    local p
    for p in $(ip netns pids "$NS_S"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = iperf ] && kill -9 "$p"; done
}

# client LABEL TARGET: one iperf2 UDP client; sets OUTCOME to report|noack|other and
# appends "LABEL OUTCOME secs" to $IT_TMP/clients.tsv.
client() {
    local label=$1 target=$2 log=$IT_TMP/$1.log t0 rc secs
    t0=$(date +%s%N)
    ns_exec "$NS_C" timeout 20 iperf -c "$target" -u -p "$PORT" -t 1 -b 1M >"$log" 2>&1; rc=$?
    secs=$(( ($(date +%s%N) - t0) / 1000000 ))
    if grep -q 'Server Report:' "$log"; then OUTCOME=report
    elif grep -q 'did not receive ack of last datagram' "$log"; then OUTCOME=noack
    else OUTCOME=other; fi
    [ $rc -ne 0 ] && OUTCOME="$OUTCOME(rc=$rc)"
    printf '%s\t%s\t%s\n' "$label" "$OUTCOME" "$secs" >>"$IT_TMP/clients.tsv"
    CLIENT_MS=$secs
}

# run_clients PREFIX TARGET N: N clients GAP s apart; sets REPORTS (how many got their
# Server Report), OUTCOMES (space separated), FIRST (outcome of the first).
run_clients() {
    local prefix=$1 target=$2 n=$3 i
    REPORTS=0 OUTCOMES="" FIRST=""
    for i in $(seq "$n"); do
        [ "$i" -gt 1 ] && sleep "$GAP"
        client "$prefix-$i" "$target"
        [ "$i" = 1 ] && FIRST=$OUTCOME
        case $OUTCOME in report) REPORTS=$((REPORTS + 1));; esac
        OUTCOMES+="${OUTCOMES:+ }$OUTCOME"
        it_log "  $prefix client $i -> $target: $OUTCOME (${CLIENT_MS} ms), server ns InDestUnreachs v4/v6 now $(unreach "$NS_S")"
    done
}

# nfq_stop: stop the delay line (it releases what it holds) and log its counters.
nfq_stop() {
    kill -TERM "$NFQ_PID" 2>/dev/null
    wait "$NFQ_PID" 2>/dev/null
    it_log "delay line: $(grep 'nfq_delay: exit' "$IT_TMP/nfq.log" | tail -n 1)"
}

show_tail() { sed 's/^/#     | /' "$1" | tail -n "${2:-15}"; }

# ---------------------------------------------------------------- phase 0: injector self-test
it_log "phase 0: libwinsock_udp.so self-test (loopback of the server ns)"
if ! ns_exec "$NS_S" timeout 30 env LD_PRELOAD="$INJ" WINSOCK_UDP_QUIET=1 "$PY" "$root/tests/tools/winsock_udp_selftest.py" \
        >"$IT_TMP/selftest.log" 2>&1; then
    show_tail "$IT_TMP/selftest.log" 30
    it_fail "winsock_udp self-test failed"
fi
it_log "  $(tail -n 1 "$IT_TMP/selftest.log")"

# ---------------------------------------------------------------- delay line
ns_ipt "$NS_S" -A OUTPUT -p udp --sport "$PORT" -j NFQUEUE --queue-num "$QNUM" --queue-bypass \
    || it_skip "iptables NFQUEUE target not available"
it_bg nfq ip netns exec "$NS_S" "$NFQ" -q "$QNUM" -d "$DELAY" -t 900
NFQ_PID=$IT_LAST_PID
it_wait_log_count "$IT_TMP/nfq.log" 'nfq_delay: ready' 1 5 || { cat "$IT_TMP/nfq.log"; it_fail "nfq_delay did not start"; }
it_log "delay line: server ns OUTPUT udp sport $PORT -> NFQUEUE $QNUM -> nfq_delay ${DELAY}s"

# ---------------------------------------------------------------- phase 1: direct, plain server
it_log "phase 1: DIRECT, plain Linux iperf server, replies delayed ${DELAY}s"
srv_start direct-plain plain
u0=$(unreach_sum "$NS_S")
run_clients direct-plain "$NS_S4" "$DIRECT_CLIENTS"
sleep 1
u1=$(unreach_sum "$NS_S")
P1_UNREACH=$((u1 - u0))
srv_stop
it_log "  phase 1: $REPORTS/$DIRECT_CLIENTS clients got their Server Report; server ns received $P1_UNREACH ICMP port-unreachables;" \
       "server $([ "$SRV_EXITED" = 1 ] && echo "had EXITED (status $SRV_STATUS)" || echo "survived")"
[ "$FIRST" = report ] || { show_tail "$IT_TMP/direct-plain-1.log"; it_fail "phase 1: first client got no Server Report (topology or delay broken?)"; }
[ "$P1_UNREACH" -gt 0 ] || it_fail "phase 1: no ICMP port-unreachable reached the server ns (late reports not provoked)"

# ---------------------------------------------------------------- phase 2: direct, server under the injector
# direct_injected LABEL TARGET N [IPERF SERVER ARGS...]
direct_injected() {
    local label=$1 target=$2 n=$3 u_before u_after late bad=""; shift 3
    srv_start "$label" inject "$@"
    u_before=$(unreach_sum "$NS_S")
    run_clients "$label" "$target" "$n"
    sleep 1
    u_after=$(unreach_sum "$NS_S")
    srv_stop
    late=$(echo "$OUTCOMES" | cut -d' ' -f2- | tr ' ' '\n' | grep -c '^report')
    it_log "  $label: outcomes [$OUTCOMES]; server ns ICMP port-unreachables +$((u_after - u_before));" \
           "server $([ "$SRV_EXITED" = 1 ] && echo "EXITED on its own (status $SRV_STATUS)" || echo "still running")"
    grep -E 'ECONNRESET|recvfrom|failed|WARN' "$IT_TMP/$label.inj" "$IT_TMP/$label.log" 2>/dev/null | sed 's/^/#     | /' | head -n 8
    [ "$FIRST" = report ] || bad+="first client got no Server Report ($FIRST); "
    [ $((u_after - u_before)) -gt 0 ] || bad+="no ICMP port-unreachable reached the server ns; "
    grep -q 'ECONNRESET on listener' "$IT_TMP/$label.inj" 2>/dev/null || bad+="injector never raised ECONNRESET on the listener; "
    [ "$SRV_EXITED" = 1 ] || bad+="server still running after the injected ECONNRESET; "
    [ "$late" -eq 0 ] || bad+="$late later clients still got Server Reports; "
    if [ -n "$bad" ]; then
        show_tail "$IT_TMP/$label.log"; show_tail "$IT_TMP/$label.inj"
        it_fail "$label: Windows failure not reproduced: $bad"
    fi
}
it_log "phase 2: DIRECT, iperf server under libwinsock_udp.so (Winsock semantics), replies delayed ${DELAY}s"
direct_injected direct-win4 "$NS_S4" "$DIRECT_CLIENTS"
[ "$V6" = 1 ] && direct_injected direct-win6 "$NS_S6" 2 -V
it_log "direct half done: Windows failure reproduced ($((SECONDS - T0)) s so far)"

if [ "$DIRECT_ONLY" = 1 ]; then
    nfq_stop
    it_log "UDPICMP_DIRECT_ONLY=1: shim half skipped"
    exit 0
fi

# ---------------------------------------------------------------- phase 3: through the shim
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing or not executable"
"$SHIM" --help 2>&1 | grep -q -- --udp-linger ||
    it_fail "shim half: $SHIM has no UDP engine yet (no --udp-linger in --help); the direct half passed"
[ "$SHIM_CLIENTS" -ge 12 ] || it_log "note: UDPICMP_SHIM_CLIENTS=$SHIM_CLIENTS < 12: not a full proof"

# shim_phase NAME LISTEN UPSTREAM TARGET N [IPERF SERVER ARGS...]
shim_phase() {
    local name=$1 listen=$2 upstream=$3 target=$4 n=$5 i u_before u_after g_before g_after bad=""; shift 5
    srv_start "$name-srv" inject "$@"
    it_bg "$name" ip netns exec "$NS_G" "$SHIM" --listen "$listen" --upstream "$upstream" --udp-linger "$LINGER"
    local shim_pid=$IT_LAST_PID
    for i in $(seq 100); do
        ns_exec "$NS_G" ss -Hulna "sport = :$PORT" | grep -q . && break
        kill -0 "$shim_pid" 2>/dev/null || break
        sleep 0.05
    done
    ns_exec "$NS_G" ss -Hulna "sport = :$PORT" | grep -q . ||
        { show_tail "$IT_TMP/$name.log"; it_fail "$name: shim has no UDP socket on port $PORT"; }
    it_log "phase 3 ($name): shim --listen $listen --upstream $upstream --udp-linger $LINGER (pid $shim_pid)"
    u_before=$(unreach "$NS_S"); g_before=$(unreach_sum "$NS_G")
    run_clients "$name" "$target" "$n"
    # the last client's late reports are still in the delay line: let them come out
    sleep "$(awk -v d="$DELAY" 'BEGIN { printf "%.1f", d + 2 }')"
    u_after=$(unreach "$NS_S"); g_after=$(unreach_sum "$NS_G")
    local d4 d6
    d4=$(( $(echo "$u_after" | cut -d' ' -f1) - $(echo "$u_before" | cut -d' ' -f1) ))
    d6=$(( $(echo "$u_after" | cut -d' ' -f2) - $(echo "$u_before" | cut -d' ' -f2) ))
    local shim_alive=1; kill -0 "$shim_pid" 2>/dev/null || shim_alive=0
    srv_stop
    it_log "  $name: $REPORTS/$n clients got their Server Report; new ICMP port-unreachables at the server ns:" \
           "v4 $d4, v6 $d6 (at the gateway/shim ns: +$((g_after - g_before)));" \
           "server $([ "$SRV_EXITED" = 1 ] && echo "EXITED (status $SRV_STATUS)" || echo "survived"); shim $([ $shim_alive = 1 ] && echo alive || echo DEAD)"
    [ "$REPORTS" -eq "$n" ] || bad+="only $REPORTS of $n clients got their Server Report [$OUTCOMES]; "
    [ "$d4" -eq 0 ] && [ "$d6" -eq 0 ] || bad+="the server ns received ICMP port-unreachables (v4 $d4, v6 $d6); "
    grep -q 'ECONNRESET on listener' "$IT_TMP/$name-srv.inj" 2>/dev/null && bad+="injector raised ECONNRESET on the server's listener; "
    [ "$SRV_EXITED" = 0 ] || bad+="server exited (status $SRV_STATUS); "
    [ $shim_alive = 1 ] || bad+="shim died; "
    kill "$shim_pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$shim_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$shim_pid" 2>/dev/null; wait "$shim_pid" 2>/dev/null
    if [ -n "$bad" ]; then
        it_log "  server log:"; show_tail "$IT_TMP/$name-srv.log"
        it_log "  injector log:"; show_tail "$IT_TMP/$name-srv.inj" 8
        it_log "  shim log:"; show_tail "$IT_TMP/$name.log" 30
        local first_bad
        first_bad=$(awk -F'\t' -v p="$name-" 'index($1, p) == 1 && $2 != "report" { print $1; exit }' "$IT_TMP/clients.tsv")
        [ -n "$first_bad" ] && { it_log "  first failing client ($first_bad):"; show_tail "$IT_TMP/$first_bad.log" 12; }
        it_fail "$name: $bad"
    fi
}

shim_phase shim4 "$NS_GC4:$PORT" "$NS_S4:$PORT" "$NS_GC4" "$SHIM_CLIENTS"
[ "$V6" = 1 ] && shim_phase shim6 "[$NS_GC6]:$PORT" "[$NS_S6]:$PORT" "$NS_GC6" "$SHIM6_CLIENTS" -V

nfq_stop
it_log "summary: direct: ICMP port-unreachables reach the server and the Winsock-semantics server dies after" \
       "its first client; through the shim: every client got its report, 0 ICMPs at the server ($((SECONDS - T0)) s)"
exit 0

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
#    NFQUEUE to build/tools/nfq_delay, which re-injects every packet DELAY s later (order
#    kept; netem is not available in this kernel).  The 2.1.8 client resends its FIN every
#    10 ms until a reply comes or its ack window W (about 2 s) is over; the server answers
#    each FIN it reads with a reply (up to 10, ~100 ms, then closes the client's socket);
#    the client takes the first reply to arrive (DELAY s after its first FIN), prints it
#    and exits; the remaining replies arrive at its closed port.
#  - Windows semantics: the server runs under LD_PRELOAD=build/tools/libwinsock_udp.so
#    (see tests/tools/winsock_udp.c), which turns an ICMP port-unreachable into
#    ECONNRESET on the listening socket's next receive, as Winsock does.  iperf2's
#    Listener::udp_accept ends the listener on any recvfrom error (FAIL_errno) on Linux
#    too, so the server then stops exactly like the Windows one.
#  - ICMP count: Icmp InDestUnreachs (+ Icmp6 InDestUnreachs) of the server namespace's
#    /proc/net/snmp{,6}: ICMPs the server host received.
#
# Timing, measured rather than hoped for: DELAY must be longer than the server's answer
# burst (~0.1 s: later replies then reach a closed port) and, with room to spare, shorter
# than the client's ack window W (else the client gives up first).  The room: the 2.1.8
# server now and then answers a FIN ~1 s late (seen: 162 FINs instead of 67, directly
# and through the shim alike; consistent with iperf2's reporter thread sleeping in a 1 s
# timed wait before the final report is made).  W is timed once at the start (a client
# whose datagrams the server namespace drops: time from its test's end to its no-ack
# warning, and the number of FINs it sent meanwhile); DELAY defaults to W/6 and the test
# fails unless W - DELAY >= 1.5 s.  Every client's FINs (counted by u32 rules in the
# client namespace: one every 10 ms until the reply arrives) and the time its report was
# printed are logged, and the smallest margin left (FINs it did not need).
#
# Topology (netns.sh, addresses moved to 10.203.x / fd00:203:x so that this test does not
# share subnets with the other tests; IPv6 addresses added with nodad):
#   client ns 10.203.1.2 -- gateway ns 10.203.1.1 | 10.203.2.1 (forwarding) -- server ns 10.203.2.2
#
# Phases (each client: `iperf -c TARGET -u -t 1 -b 1M`, clients one after another,
# UDPICMP_GAP s apart: Debian's 2.1.8 server may segfault on back-to-back clients):
#  0. injector self-test on loopback (tests/tools/winsock_udp_selftest.py); ack window W.
#  1. DIRECT, plain Linux server, delay on: InDestUnreachs must rise above 0 (the late
#     reports do hit closed ports); the first client must get its report (topology works).
#     How many clients got reports, and whether the server survived, is logged (Linux
#     servers normally survive: the ICMP is dropped at their unconnected listener).
#  2. DIRECT, server under the injector, delay on: the poisoning must happen: the first
#     client gets its Server Report (inside the measured margin); the late reports of a
#     client that got its report draw ICMPs, the injector reports ECONNRESET on the
#     listener, the server process exits, and from then on no client gets a report
#     (clients run until two in a row get none, DIRECT_CLIENTS + 3 at most).  That is the
#     Windows failure, reproduced.  (IPv6 too, unless UDPICMP_V6=0.)
#  3. SHIM (needs `--udp-linger` in `$SHIM --help`): server under the injector, delay on,
#     `$SHIM --listen 10.203.1.1:5001 --upstream 10.203.2.2:5001 --udp-linger L` in the
#     gateway ns, UDPICMP_SHIM_CLIENTS (12) clients through it.  Every client must get its
#     Server Report, the server namespace must receive exactly 0 new ICMP
#     port-unreachables (read once the shim has logged the end of every flow: all late
#     reports have come by then), the injector must never fire, server and shim must stay
#     up.  (Then IPv6 through the shim with UDPICMP_SHIM6_CLIENTS clients.)
#
# A client without a report is never retried blindly.  Through the shim, the test waits
# for the shim's end line of that client's flow: "Server Report relayed" while the client
# still sent FINs means the shim lost it (fail); relayed only after the client had given
# up (a whole window of FINs, none answered by the shim) means the server was late; and
# "never came" with the server's own log showing that flow unfinished (no report line)
# or the server dead without the injector having fired: those two are server faults:
# one line says so, the server is restarted and that client runs once more.  Directly,
# a first client without a report and an unfinished flow in the server's log is the same
# server fault, and the phase runs once more.  A second server fault in a run fails.
#
# Tunables: UDPICMP_DELAY (W/6), UDPICMP_GAP (3 s), UDPICMP_DIRECT_CLIENTS (3; phase 2
# runs up to 3 more), UDPICMP_SHIM_CLIENTS (12, at least 12 for a pass),
# UDPICMP_SHIM6_CLIENTS (3), UDPICMP_V6 (1), UDPICMP_LINGER (5),
# UDPICMP_DIRECT_ONLY=1 (stop after phase 2, pass),
# UDPICMP_TOOLS (directory with nfq_delay and libwinsock_udp.so, default build/tools).
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
. "$here/netns.sh"

it_require_root
command -v iperf >/dev/null || it_skip "iperf (2) not installed"
command -v iptables >/dev/null && command -v ip6tables >/dev/null || it_skip "iptables/ip6tables not installed"
command -v python3 >/dev/null || it_skip "python3 not installed"

GAP=${UDPICMP_GAP:-3}
DIRECT_CLIENTS=${UDPICMP_DIRECT_CLIENTS:-3}
SHIM_CLIENTS=${UDPICMP_SHIM_CLIENTS:-12}
SHIM6_CLIENTS=${UDPICMP_SHIM6_CLIENTS:-3}
V6=${UDPICMP_V6:-1}
LINGER=${UDPICMP_LINGER:-5}
DIRECT_ONLY=${UDPICMP_DIRECT_ONLY:-0}
TOOLS=${UDPICMP_TOOLS:-$root/build/tools}
PORT=5001
QNUM=5           # NFQUEUE number, private to the server namespace
MIN_MARGIN_MS=1500   # the server may hold its report back up to ~1 s (reporter thread), + 0.5 s
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

it_log "$(iperf -v 2>&1 | head -n 1); gap ${GAP}s"

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

# wait_unreach_above NS N TIMEOUT_S: poll until NS has received more than N ICMP
# port-unreachables in all; true if it did within TIMEOUT_S.
wait_unreach_above() {
    local i
    for i in $(seq $(($3 * 20))); do
        [ "$(unreach_sum "$1")" -gt "$2" ] && return 0
        sleep 0.05
    done
    return 1
}

SRV_PID="" SRV_NAME="" SRV_LOGS=""
# srv_start NAME plain|inject [IPERF ARGS...]: `iperf -s -u -p 5001` in the server ns,
# output in NAME.log (the injector's in NAME.inj).  SRV_LOGS collects every server log
# of the current phase (a restarted server gets NAME-r1, NAME-r2...).
srv_start() {
    local name=$1 mode=$2 i; shift 2
    SRV_NAME=$name SRV_MODE=$mode SRV_ARGS=("$@")
    SRV_LOGS+="${SRV_LOGS:+ }$name"
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
    local i p
    for i in $(seq 40); do ns_exec "$NS_S" ss -Hulna "sport = :$PORT" | grep -q . || break; sleep 0.05; done
    # a wedged 2.1.8 server ignores SIGTERM: SIGKILL the iperf processes of the server
    # namespace (only those)
    for p in $(ip netns pids "$NS_S"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = iperf ] && kill -9 "$p"; done
    wait "$SRV_PID" 2>/dev/null; SRV_STATUS=$?
    for i in $(seq 40); do ns_exec "$NS_S" ss -Hulna "sport = :$PORT" | grep -q . || return 0; sleep 0.05; done
    it_fail "iperf server ($SRV_NAME) still holds UDP port $PORT after SIGKILL"
}
# srv_restart: stop the server and start it again the same way (log NAME-rN).
srv_restart() {
    local base=${SRV_NAME%-r[0-9]*} n=1
    while [ -e "$IT_TMP/$base-r$n.log" ]; do n=$((n + 1)); done
    srv_stop
    srv_start "$base-r$n" "$SRV_MODE" "${SRV_ARGS[@]}"
}

# srv_last_flow LOG: state of the most recent client flow in a server log: "none" (no
# "connected with" line), "finished" (its id has a report line after it) or "unfinished".
srv_last_flow() {
    awk '/ connected with / { id = $0; sub(/^\[ */, "", id); sub(/\].*/, "", id); seen = 1; fin = 0; next }
         seen && / sec .* ms +[0-9]+\/ *[0-9]+/ { r = $0; sub(/^\[ */, "", r); sub(/\].*/, "", r); if (r == id) fin = 1 }
         END { print (!seen ? "none" : (fin ? "finished" : "unfinished")) }' "$1"
}

FAULTS=0
# server_fault WHAT: the iperf server failed on its own (not the shim, not the
# injector): say so in one line; the second one in a run fails the test.
server_fault() {
    FAULTS=$((FAULTS + 1))
    it_log "SERVER FAULT $FAULTS: $*"
    [ "$FAULTS" -le 1 ] || it_fail "second iperf server fault in one run ($*): the server is not reliable enough for a verdict"
}

# client_port LOG: the client's local UDP port, from its "local A port P connected" line.
client_port() { sed -n 's/.* local .* port \([0-9]*\) connected with .*/\1/p' "$1" | head -n 1; }

# stamp: copy stdin to stdout, each line prefixed with the time it arrived (s since the
# epoch; the 2.1.8 client flushes every line as it prints it).
stamp() { local l; while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }

# client_reply_ms LOG: ms from the client's "connected with" line (its test starts) to its
# "Server Report:" line, or to its last line when it got none, minus its own test time:
# how long it waited for the reply to its FIN, process start and exit left out.
client_reply_ms() {
    awk '/ connected with / && !c { c = $1 } / Server Report:/ && !r { r = $1 } { last = $1 }
         / sec / && !t { for (i = 3; i <= NF; i++) if ($i ~ /^0\.0+-[0-9.]+$/) { split($i, a, "-"); t = a[2] } }
         END { if (!c || !t) { print -1; exit } if (!r) r = last; printf "%d\n", (r - c - t) * 1000 }' "$1"
}

# The client's FINs (datagrams to port 5001 with a negative sequence number: the first
# payload word's top bit) are counted by ACCEPT rules in the client namespace.  The
# client sends one every 10 ms until a reply arrives, so the count says when the reply
# came, whatever the client's reporter thread does before it prints it.
FIN4="-p udp --dport $PORT -m u32 --u32 0>>22&0x3C@8>>31=1"
FIN6="-p udp --dport $PORT -m u32 --u32 48>>31=1"
# shellcheck disable=SC2086
ns_exec "$NS_C" iptables -A OUTPUT $FIN4 -j ACCEPT && ns_exec "$NS_C" ip6tables -A OUTPUT $FIN6 -j ACCEPT ||
    it_skip "iptables u32 match not available (FIN counting)"
fins_sent() {
    { ns_exec "$NS_C" iptables -nvxL OUTPUT; ns_exec "$NS_C" ip6tables -nvxL OUTPUT; } |
        awk '/u32/ { s += $1 } END { print s + 0 }'
}

MIN_LEFT=""      # smallest (W - reply time) seen over the clients that got a report
# client LABEL TARGET: one iperf2 UDP client; sets OUTCOME to report|noack|other,
# CLIENT_MS (run time), REPLY_MS (see client_reply_ms), FINS (final datagrams it sent)
# and appends "LABEL OUTCOME ms fins" to $IT_TMP/clients.tsv.  Its output,
# time-stamped, is in LABEL.log.
client() {
    local label=$1 target=$2 log=$IT_TMP/$1.log t0 rc f0
    f0=$(fins_sent)
    t0=$(date +%s%N)
    ns_exec "$NS_C" timeout 20 iperf -c "$target" -u -p "$PORT" -t 1 -b 1M 2>&1 | stamp >"$log"
    rc=${PIPESTATUS[0]}
    CLIENT_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    FINS=$(( $(fins_sent) - f0 ))
    REPLY_MS=$(client_reply_ms "$log")
    if grep -q 'Server Report:' "$log"; then OUTCOME=report
    elif grep -q 'did not receive ack of last datagram' "$log"; then OUTCOME=noack
    else OUTCOME=other; fi
    [ "$rc" -ne 0 ] && OUTCOME="$OUTCOME(rc=$rc)"
    # margin left: the FINs it did not need to send, out of the ack window's, in ms
    if [ "$OUTCOME" = report ] && [ -n "${ACK_WINDOW_FINS:-}" ]; then
        local left=$(( (ACK_WINDOW_FINS - FINS) * ACK_WINDOW_MS / ACK_WINDOW_FINS ))
        { [ -z "$MIN_LEFT" ] || [ "$left" -lt "$MIN_LEFT" ]; } && MIN_LEFT=$left
    fi
    printf '%s\t%s\t%s\t%s\n' "$label" "$OUTCOME" "$CLIENT_MS" "$FINS" >>"$IT_TMP/clients.tsv"
}

# run_clients PREFIX TARGET N: N clients GAP s apart; sets REPORTS (how many got their
# Server Report), OUTCOMES (space separated), FIRST (outcome of the first).
run_clients() {
    local prefix=$1 target=$2 n=$3 i
    REPORTS=0 OUTCOMES="" FIRST=""
    for i in $(seq "$n"); do
        [ "$i" -gt 1 ] && sleep "$GAP"   # pacing, not a check: 2.1.8 crashes on back-to-back clients
        client "$prefix-$i" "$target"
        [ "$i" = 1 ] && FIRST=$OUTCOME
        case $OUTCOME in report) REPORTS=$((REPORTS + 1));; esac
        OUTCOMES+="${OUTCOMES:+ }$OUTCOME"
        it_log "  $prefix client $i -> $target: $OUTCOME (${CLIENT_MS} ms; $FINS FINs; reply printed ${REPLY_MS} ms after its test ended), server ns InDestUnreachs v4/v6 now $(unreach "$NS_S")"
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

# ---------------------------------------------------------------- the client's ack window
# One client whose datagrams the server namespace drops (no server, no ICMP): it sends
# its FINs until it gives up.  Its run time minus its test time is the window W in which
# a reply must arrive.
ns_ipt "$NS_S" -I INPUT -p udp --dport "$PORT" -j DROP || it_fail "iptables DROP rule"
client ackwindow "$NS_S4"
ns_ipt "$NS_S" -D INPUT -p udp --dport "$PORT" -j DROP
[ "$OUTCOME" = noack ] && [ "$REPLY_MS" -gt 0 ] ||
    { show_tail "$IT_TMP/ackwindow.log"; it_fail "ack window: a client with no server should end with no ack ($OUTCOME, $REPLY_MS ms)"; }
ACK_WINDOW_MS=$REPLY_MS ACK_WINDOW_FINS=$FINS
[ "$FINS" -gt 0 ] || it_fail "ack window: the FIN counter saw none of the client's final datagrams"
DELAY=${UDPICMP_DELAY:-$(awk -v w="$ACK_WINDOW_MS" 'BEGIN { printf "%.3f", w / 6000 }')}
DELAY_MS=$(awk -v d="$DELAY" 'BEGIN { printf "%d", d * 1000 }')
it_log "client ack window W = ${ACK_WINDOW_MS} ms, $ACK_WINDOW_FINS FINs (measured: from the end of its test to its no-ack warning); replies delayed ${DELAY_MS} ms;" \
       "margin W - delay = $((ACK_WINDOW_MS - DELAY_MS)) ms (required >= ${MIN_MARGIN_MS})"
[ $((ACK_WINDOW_MS - DELAY_MS)) -ge "$MIN_MARGIN_MS" ] ||
    it_fail "delay ${DELAY_MS} ms leaves less than ${MIN_MARGIN_MS} ms of the client's ${ACK_WINDOW_MS} ms ack window"
[ "$DELAY_MS" -ge 200 ] || it_fail "delay ${DELAY_MS} ms is too short to outlast the server's answer burst (~100 ms)"

# ---------------------------------------------------------------- delay line
ns_ipt "$NS_S" -A OUTPUT -p udp --sport "$PORT" -j NFQUEUE --queue-num "$QNUM" --queue-bypass \
    || it_skip "iptables NFQUEUE target not available"
it_bg nfq ip netns exec "$NS_S" "$NFQ" -q "$QNUM" -d "$DELAY" -t 900
NFQ_PID=$IT_LAST_PID
it_wait_log_count "$IT_TMP/nfq.log" 'nfq_delay: ready' 1 5 || { cat "$IT_TMP/nfq.log"; it_fail "nfq_delay did not start"; }
it_log "delay line: server ns OUTPUT udp sport $PORT -> NFQUEUE $QNUM -> nfq_delay ${DELAY}s"

# first_client_fault LABEL: true (after logging a server fault) when the first client
# of LABEL got no report and the server's log shows that flow unfinished.
first_client_fault() {
    local st
    st=$(srv_last_flow "$IT_TMP/$1.log")
    [ "$FIRST" != report ] && [ "$st" != finished ] || return 1
    server_fault "$1: first client got no Server Report ($FIRST) and the server's log shows its flow $st; running the phase again"
}

# ---------------------------------------------------------------- phase 1: direct, plain server
# direct_plain LABEL: phase 1 once; sets P1_UNREACH.
direct_plain() {
    srv_start "$1" plain
    local u0 u1
    u0=$(unreach_sum "$NS_S")
    run_clients "$1" "$NS_S4" "$DIRECT_CLIENTS"
    wait_unreach_above "$NS_S" "$u0" $((DELAY_MS / 1000 + 3))
    u1=$(unreach_sum "$NS_S")
    P1_UNREACH=$((u1 - u0))
    srv_stop
}
it_log "phase 1: DIRECT, plain Linux iperf server, replies delayed ${DELAY}s"
direct_plain direct-plain
if first_client_fault direct-plain; then SRV_LOGS=""; direct_plain direct-plain-again; P1=direct-plain-again; else P1=direct-plain; fi
it_log "  phase 1: $REPORTS/$DIRECT_CLIENTS clients got their Server Report; server ns received $P1_UNREACH ICMP port-unreachables;" \
       "server $([ "$SRV_EXITED" = 1 ] && echo "had EXITED (status $SRV_STATUS)" || echo "survived")"
[ "$FIRST" = report ] || { show_tail "$IT_TMP/$P1-1.log"; show_tail "$IT_TMP/$P1.log"
    it_fail "phase 1: first client got no Server Report (reply ${REPLY_MS} ms, window ${ACK_WINDOW_MS} ms; server's flow $(srv_last_flow "$IT_TMP/$P1.log"))"; }
[ "$P1_UNREACH" -gt 0 ] || it_fail "phase 1: no ICMP port-unreachable reached the server ns (late reports not provoked)"

# ---------------------------------------------------------------- phase 2: direct, server under the injector
# direct_injected_run LABEL TARGET MAX [IPERF SERVER ARGS...]: clients one at a time
# until two in a row get no report, MAX at most; sets OUTCOMES, FIRST, POISONED (how many
# got their report before the first without one), U_DELTA.
direct_injected_run() {
    local label=$1 target=$2 max=$3 u_before i=0 misses=0; shift 3
    SRV_LOGS=""
    srv_start "$label" inject "$@"
    u_before=$(unreach_sum "$NS_S")
    OUTCOMES="" FIRST="" POISONED=""
    while [ "$i" -lt "$max" ] && [ "$misses" -lt 2 ]; do
        i=$((i + 1))
        [ "$i" -gt 1 ] && sleep "$GAP"   # pacing, not a check
        client "$label-$i" "$target"
        [ "$i" = 1 ] && FIRST=$OUTCOME
        OUTCOMES+="${OUTCOMES:+ }$OUTCOME"
        if [ "$OUTCOME" = report ]; then misses=0; else misses=$((misses + 1)); [ -z "$POISONED" ] && POISONED=$((i - 1)); fi
        it_log "  $label client $i -> $target: $OUTCOME (${CLIENT_MS} ms; $FINS FINs; reply printed ${REPLY_MS} ms after its test ended), server ns InDestUnreachs v4/v6 now $(unreach "$NS_S")"
    done
    # the poisoning: ICMP at the server ns, ECONNRESET on the listener, the server gone
    for i in $(seq 60); do
        grep -q 'ECONNRESET on listener' "$IT_TMP/$label.inj" 2>/dev/null && ! kill -0 "$SRV_PID" 2>/dev/null && break
        sleep 0.05
    done
    U_DELTA=$(( $(unreach_sum "$NS_S") - u_before ))
    srv_stop
}
# direct_injected LABEL TARGET [IPERF SERVER ARGS...]: the Windows failure, required: the
# first client gets its report; the late reports of some client that got its report
# draw ICMPs, the injector resets the listener (on its next receive: when the next
# client's first datagram wakes it), the server exits, and from then on no client gets
# a report.  Which client poisoned it is logged: usually the first; when the server's
# reporter thread holds a report back (iperf2's 1 s timed wait), the replies leave in
# one burst and the client may read one and drop the rest with its socket, no ICMP.
direct_injected() {
    local label=$1 target=$2 late bad="" max=$((DIRECT_CLIENTS + 3)); shift 2
    direct_injected_run "$label" "$target" "$max" "$@"
    if first_client_fault "$label"; then
        label=$label-again
        direct_injected_run "$label" "$target" "$max" "$@"
    fi
    late=$(echo "$OUTCOMES" | tr ' ' '\n' | awk 'f && $0 == "report" { n++ } $0 != "report" { f = 1 } END { print n + 0 }')
    it_log "  $label: outcomes [$OUTCOMES]; poisoned by client ${POISONED:-none}; server ns ICMP port-unreachables +$U_DELTA;" \
           "server $([ "$SRV_EXITED" = 1 ] && echo "EXITED on its own (status $SRV_STATUS)" || echo "still running")"
    grep -E 'ECONNRESET|recvfrom|failed|WARN' "$IT_TMP/$label.inj" "$IT_TMP/$label.log" 2>/dev/null | sed 's/^/#     | /' | head -n 8
    [ "$U_DELTA" -gt 0 ] || bad+="no ICMP port-unreachable reached the server ns; "
    grep -q 'ECONNRESET on listener' "$IT_TMP/$label.inj" 2>/dev/null || bad+="injector never raised ECONNRESET on the listener; "
    [ "$SRV_EXITED" = 1 ] || bad+="server still running after the injected ECONNRESET; "
    [ -n "$POISONED" ] && [ "$POISONED" -ge 1 ] || bad+="no client without a report after one with it ([$OUTCOMES]); "
    [ "$late" -eq 0 ] || bad+="$late clients got Server Reports after one got none; "
    [ "$FIRST" = report ] || bad+="first client got no Server Report ($FIRST, $FINS FINs of the window's $ACK_WINDOW_FINS; server's flow $(srv_last_flow "$IT_TMP/$label.log")); "
    if [ -n "$bad" ]; then
        show_tail "$IT_TMP/$label.log"; show_tail "$IT_TMP/$label.inj"
        it_fail "$label: Windows failure not reproduced: $bad"
    fi
}
it_log "phase 2: DIRECT, iperf server under libwinsock_udp.so (Winsock semantics), replies delayed ${DELAY}s"
direct_injected direct-win4 "$NS_S4"
[ "$V6" = 1 ] && direct_injected direct-win6 "$NS_S6" -V
it_log "direct half done: Windows failure reproduced ($((SECONDS - T0)) s so far); smallest margin left in a client's ack window: ${MIN_LEFT:-?} ms"

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

# flow_line SHIMLOG PORT K TIMEOUT_S: wait for the shim's K-th "iperf2 UDP flow A:PORT
# ended" line and print it (empty if it did not come in time).
flow_line() {
    local re="iperf2 UDP flow [^ ]*:$2 ended"
    it_wait_log_count "$1" "$re" "$3" "$4" || return 0
    grep -E -- "$re" "$1" | sed -n "$3p"
}

# shim_client NAME I TARGET SHIMLOG: client I of a shim phase; a client without a report
# is explained from the shim's line for its flow (and the server's log) before anything
# else happens.  Sets OUTCOME; appends "PORT K" of the flow to $IT_TMP/NAME.flows.
shim_client() {
    local name=$1 i=$2 target=$3 slog=$4 label=$1-$2 port k line st wait_s
    client "$label" "$target"
    port=$(client_port "$IT_TMP/$label.log")
    [ -n "$port" ] || { show_tail "$IT_TMP/$label.log"; it_fail "$label: no local port in the client's output"; }
    k=$(( $(awk -v p="$port" '$1 == p' "$IT_TMP/$name.flows" 2>/dev/null | wc -l) + 1 ))
    echo "$port $k" >>"$IT_TMP/$name.flows"
    it_log "  $name client $i -> $target (port $port): $OUTCOME (${CLIENT_MS} ms; $FINS FINs; reply printed ${REPLY_MS} ms after its test ended)"
    [ "$OUTCOME" = report ] && return 0
    wait_s=$(( LINGER + DELAY_MS / 1000 + 10 ))
    line=$(flow_line "$slog" "$port" "$k" "$wait_s")
    st=$(srv_last_flow "$IT_TMP/$SRV_NAME.log")
    it_log "  $label: no Server Report; shim: ${line:-<no end line for port $port within $wait_s s>}; server's last flow: $st"
    local answered
    answered=$(echo "$line" | sed -n 's/.*(\([0-9]*\) answered by the shim).*/\1/p')
    case $line in
        *"Server Report relayed"*)
            # Relayed while the client still sent FINs, the shim answers the later ones
            # from it: the client must have it.  Relayed after the client gave up (it
            # sent a whole window of FINs, the shim answered none): the server was late.
            if [ "${answered:-0}" -gt 0 ] || [ "$FINS" -lt $(( ACK_WINDOW_FINS * 9 / 10 )) ]; then
                show_tail "$IT_TMP/$label.log"; show_tail "$slog" 20
                it_fail "$label: the shim relayed the Server Report but the client has none ($FINS FINs sent, the ack window is $ACK_WINDOW_FINS; $answered answered by the shim): shim bug"
            fi
            server_fault "$label: the server's report reached the shim only after the client gave up ($FINS FINs," \
                         "more than $((ACK_WINDOW_MS - DELAY_MS)) ms late); restarting the server and running this client once more"
            shim_client_again "$name" "$i" "$target" "$slog" "$wait_s";;
        *"Server Report never came"*)
            local dead=0
            kill -0 "$SRV_PID" 2>/dev/null || dead=1
            if [ "$st" = finished ] && [ $dead = 0 ]; then
                show_tail "$IT_TMP/$SRV_NAME.log"
                it_fail "$label: the server finished the flow (report line in its log) but no report reached the shim"
            fi
            if [ $dead = 1 ] && grep -q 'ECONNRESET on listener' "$IT_TMP/$SRV_NAME.inj" 2>/dev/null; then
                show_tail "$IT_TMP/$SRV_NAME.inj"
                it_fail "$label: the server's listener got an ICMP (injector fired): the shim let a late report reach a closed port"
            fi
            server_fault "$label: server $([ $dead = 1 ] && echo "died (no injector reset)" || echo "left the flow unfinished (no report line)");" \
                         "restarting the server and running this client once more"
            shim_client_again "$name" "$i" "$target" "$slog" "$wait_s";;
        *)
            show_tail "$IT_TMP/$label.log"; show_tail "$slog" 20
            it_fail "$label: no Server Report and the shim's flow line does not say the server never sent one";;
    esac
}

# shim_client_again NAME I TARGET SHIMLOG WAIT_S: after a server fault, restart the
# server and run client I once more; it must get its report.
shim_client_again() {
    local name=$1 i=$2 target=$3 slog=$4 label=$1-$2-again port k line
    srv_restart
    sleep "$GAP"   # pacing, as between clients
    client "$label" "$target"
    port=$(client_port "$IT_TMP/$label.log")
    k=$(( $(awk -v p="$port" '$1 == p' "$IT_TMP/$name.flows" | wc -l) + 1 ))
    echo "$port $k" >>"$IT_TMP/$name.flows"
    it_log "  $name client $i again -> $target (port $port): $OUTCOME (${CLIENT_MS} ms; $FINS FINs; reply printed ${REPLY_MS} ms)"
    [ "$OUTCOME" = report ] && return 0
    line=$(flow_line "$slog" "$port" "$k" "$5")
    show_tail "$IT_TMP/$label.log"; show_tail "$IT_TMP/$SRV_NAME.log"
    it_fail "$label: no Server Report on the second try either; shim: ${line:-<no end line>}; server's last flow: $(srv_last_flow "$IT_TMP/$SRV_NAME.log")"
}

# shim_phase NAME LISTEN UPSTREAM TARGET N [IPERF SERVER ARGS...]
shim_phase() {
    local name=$1 listen=$2 upstream=$3 target=$4 n=$5 i u_before u_after g_before g_after bad=""; shift 5
    SRV_LOGS=""
    srv_start "$name-srv" inject "$@"
    it_bg "$name" ip netns exec "$NS_G" "$SHIM" --listen "$listen" --upstream "$upstream" --udp-linger "$LINGER"
    local shim_pid=$IT_LAST_PID slog=$IT_TMP/$name.log
    for i in $(seq 100); do
        ns_exec "$NS_G" ss -Hulna "sport = :$PORT" | grep -q . && break
        kill -0 "$shim_pid" 2>/dev/null || break
        sleep 0.05
    done
    ns_exec "$NS_G" ss -Hulna "sport = :$PORT" | grep -q . ||
        { show_tail "$slog"; it_fail "$name: shim has no UDP socket on port $PORT"; }
    it_log "phase 3 ($name): shim --listen $listen --upstream $upstream --udp-linger $LINGER (pid $shim_pid)"
    u_before=$(unreach "$NS_S"); g_before=$(unreach_sum "$NS_G")
    : >"$IT_TMP/$name.flows"
    REPORTS=0
    for i in $(seq "$n"); do
        [ "$i" -gt 1 ] && sleep "$GAP"   # pacing, not a check
        shim_client "$name" "$i" "$target" "$slog"
        REPORTS=$((REPORTS + 1))         # shim_client returns only with a report
    done
    # Every flow's end line: the shim closes a flow's upstream port only after it has
    # been quiet both ways for the linger time, so by then every late report the delay
    # line held has arrived (and was absorbed, or drew an ICMP).
    local flows nlines
    flows=$(wc -l <"$IT_TMP/$name.flows")
    it_wait_log_count "$slog" 'iperf2 UDP flow .* ended' "$flows" $(( LINGER + DELAY_MS / 1000 + 10 )) ||
        bad+="the shim logged the end of $(grep -Ec 'iperf2 UDP flow .* ended' "$slog") of $flows flows; "
    nlines=$(grep -E 'iperf2 UDP flow .* ended' "$slog" | grep -vc 'Server Report relayed')
    u_after=$(unreach "$NS_S"); g_after=$(unreach_sum "$NS_G")
    local d4 d6
    d4=$(( $(echo "$u_after" | cut -d' ' -f1) - $(echo "$u_before" | cut -d' ' -f1) ))
    d6=$(( $(echo "$u_after" | cut -d' ' -f2) - $(echo "$u_before" | cut -d' ' -f2) ))
    local shim_alive=1; kill -0 "$shim_pid" 2>/dev/null || shim_alive=0
    srv_stop
    it_log "  $name: $REPORTS/$n clients got their Server Report; $((flows - nlines))/$flows flows 'Server Report relayed';" \
           "new ICMP port-unreachables at the server ns: v4 $d4, v6 $d6 (at the gateway/shim ns: +$((g_after - g_before)));" \
           "server $([ "$SRV_EXITED" = 1 ] && echo "EXITED (status $SRV_STATUS)" || echo "survived"); shim $([ $shim_alive = 1 ] && echo alive || echo DEAD)"
    [ "$d4" -eq 0 ] && [ "$d6" -eq 0 ] || bad+="the server ns received ICMP port-unreachables (v4 $d4, v6 $d6); "
    local s
    for s in $SRV_LOGS; do
        grep -q 'ECONNRESET on listener' "$IT_TMP/$s.inj" 2>/dev/null && bad+="injector raised ECONNRESET on the server's listener ($s); "
    done
    [ "$SRV_EXITED" = 0 ] || bad+="server exited (status $SRV_STATUS); "
    [ $shim_alive = 1 ] || bad+="shim died; "
    kill "$shim_pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$shim_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$shim_pid" 2>/dev/null; wait "$shim_pid" 2>/dev/null
    if [ -n "$bad" ]; then
        it_log "  server log:"; show_tail "$IT_TMP/$SRV_NAME.log"
        it_log "  injector log:"; show_tail "$IT_TMP/$SRV_NAME.inj" 8
        it_log "  shim log:"; show_tail "$slog" 30
        it_fail "$name: $bad"
    fi
}

shim_phase shim4 "$NS_GC4:$PORT" "$NS_S4:$PORT" "$NS_GC4" "$SHIM_CLIENTS"
[ "$V6" = 1 ] && shim_phase shim6 "[$NS_GC6]:$PORT" "[$NS_S6]:$PORT" "$NS_GC6" "$SHIM6_CLIENTS" -V

nfq_stop
it_log "summary: direct: ICMP port-unreachables reach the server and the Winsock-semantics server dies after" \
       "its first client; through the shim: every client got its report, 0 ICMPs at the server;" \
       "ack window ${ACK_WINDOW_MS} ms, delay ${DELAY_MS} ms, smallest margin left ${MIN_LEFT:-?} ms;" \
       "server faults $FAULTS ($((SECONDS - T0)) s)"
exit 0

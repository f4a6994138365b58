#!/bin/bash
# iperf2 -d / -r through the shim on a gateway whose server side cannot route back to
# the client: the server's connect-back only works because the shim rewrites mPort to a
# port of its own on the gateway's server-side address and relays the connect-back.
# Real Debian iperf 2.1.8 client and servers.
#
# Topology (netns.sh, own subnets 10.204.x / fd00:204:x, namespaces i2gw-$$-{c,g,s}):
#   client ns 10.204.1.2 -- gateway ns 10.204.1.1 | 10.204.2.1 -- server ns 10.204.2.2
#             fd00:204:1::2          fd00:204:1::1 | fd00:204:2::1           fd00:204:2::2
# Changes to the netns.sh topology:
#  - the server's default routes (v4 and v6) are DELETED: the server reaches only its
#    own subnet, i.e. the gateway's server-side address.  Asserted: a TCP SYN from the
#    server to the client (v4 and v6) gets no answer, one to 10.204.2.1 does.
#  - the gateway masquerades forwarded client traffic leaving toward the server (iptables
#    and ip6tables nat POSTROUTING -s <client subnet> -o s0 -j MASQUERADE), like a NAT
#    gateway, so that a DIRECT client connection works at all; only a connection opened
#    by the server toward the client cannot.  (Without it a direct connection fails
#    already at its SYN-ACK, which would prove nothing about the connect-back.)
#
# Servers (server ns): `iperf -s -p 5001` (TCP, v4), `iperf -s -V -p 5001 -B fd00:204:2::2`
# (TCP, v6), `iperf -s -u -p 5001` (UDP, v4).
# Shims (gateway ns): --listen 10.204.1.1:5001 --upstream 10.204.2.2:5001, and
# --listen [fd00:204:1::1]:5001 --upstream [fd00:204:2::2]:5001 (both
# --handshake-timeout 3, which also bounds the wait for a late connect-back).
#
# Asserted (every client bounded by `timeout`, -t 1 (TCP) / -t 1 -b 10M (UDP)):
#  1. shim, TCP v4 -d and -r: client exit 0; its report shows [1] (sent, on its
#     connection to 10.204.1.1:5001) and [2] (received, on local port 5001, i.e. the
#     connect-back) each > 1 MiB; the shim's summary line says mode dualtest / tradeoff,
#     "connect-back via shim port P to client port 5001: 1 connection(s)" with
#     server->client bytes > 0; the server's log shows it connected to 10.204.2.1:P.
#  2. shim, TCP v6 -d: same checks (client -V to [fd00:204:1::1]).
#  3. direct control: `iperf -c 10.204.2.2 -t 1` (and v6) through the NAT gateway
#     works: [1] > 1 MiB.  Then direct -d (v4 and v6) must FAIL: no connect-back stream
#     with data in the client's report (2.1.8 prints "ERROR: expected reverse connect
#     did not occur" and still exits 0, so the report is what is checked).
#  4. shim, UDP -d and -u -r (v4): both directions must carry data: the client's
#     Server Report for [1] and the connect-back stream [2] (local port 5001) > 0
#     bytes, and the server must still be running afterwards.  UDP clients are spaced
#     3 s apart (Debian's 2.1.8 UDP server may segfault on back-to-back clients).  A
#     direct UDP -d is logged, not asserted.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/netns.sh"

it_require_root
command -v iperf >/dev/null || it_skip "iperf (2) not installed"
iperf -v 2>&1 | grep -q '^iperf version 2\.' || it_skip "iperf is not iperf 2.x: $(iperf -v 2>&1 | head -n 1)"
command -v iptables >/dev/null && command -v ip6tables >/dev/null || it_skip "iptables/ip6tables not installed"
command -v python3 >/dev/null || it_skip "python3 not installed"
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing or not executable"

PORT=5001
NS_C4=10.204.1.2    NS_GC4=10.204.1.1    NS_GS4=10.204.2.1    NS_S4=10.204.2.2
NS_C6=fd00:204:1::2 NS_GC6=fd00:204:1::1 NS_GS6=fd00:204:2::1 NS_S6=fd00:204:2::2
ns_topology "i2gw-$$"
it_log "$(iperf -v 2>&1 | head -n 1); namespaces $NS_C $NS_G $NS_S"

FAILS=()
bad() { echo "FAIL: $*"; FAILS+=("$*"); }
show() { sed 's/^/#     | /' "$1"; }

# ---------------------------------------------------------------- setup
ip -n "$NS_S" route del default || it_fail "cannot delete the server's v4 default route"
ip -n "$NS_S" -6 route del default || it_fail "cannot delete the server's v6 default route"
ns_ipt_nat() {   # ns_ipt_nat CMD SUBNET: iptables or ip6tables nat rule in the gateway
    ns_exec "$NS_G" "$1" -t nat -A POSTROUTING -s "$2" -o s0 -j MASQUERADE
}
ns_ipt_nat iptables 10.204.1.0/24 || it_skip "iptables nat (MASQUERADE) not available"
ns_ipt_nat ip6tables fd00:204:1::/64 || it_skip "ip6tables nat (MASQUERADE) not available"
ns_reachable "$NS_S" "$NS_C4" && it_fail "setup: the server still reaches the client at $NS_C4"
ns_reachable "$NS_S" "$NS_C6" && it_fail "setup: the server still reaches the client at $NS_C6"
ns_reachable "$NS_S" "$NS_GS4" || it_fail "setup: the server cannot reach the gateway at $NS_GS4"
ns_reachable "$NS_S" "$NS_GS6" || it_fail "setup: the server cannot reach the gateway at $NS_GS6"
it_log "server routes: $(ip -n "$NS_S" route | tr '\n' ';') $(ip -n "$NS_S" -6 route | grep -v fe80 | tr '\n' ';')"

it_bg srv4 ip netns exec "$NS_S" timeout 600 iperf -s -p "$PORT"
it_wait_tcp "$NS_S" x "$PORT" 10 || { cat "$IT_TMP/srv4.log"; it_fail "iperf2 v4 server did not start"; }
it_bg srv6 ip netns exec "$NS_S" timeout 600 iperf -s -V -p "$PORT" -B "$NS_S6"
for _ in $(seq 100); do
    [ "$(ns_exec "$NS_S" ss -Htln "sport = :$PORT" | wc -l)" -ge 2 ] && break; sleep 0.05
done
[ "$(ns_exec "$NS_S" ss -Htln "sport = :$PORT" | wc -l)" -ge 2 ] || { cat "$IT_TMP/srv6.log"; it_fail "iperf2 v6 server did not start"; }

it_start_shim shim4 "$NS_G" -- --listen "$NS_GC4:$PORT" --upstream "$NS_S4:$PORT" \
    --handshake-timeout 3 --log-level debug
SHIM4_PID=$SHIM_PID
it_start_shim shim6 "$NS_G" -- --listen "[$NS_GC6]:$PORT" --upstream "[$NS_S6]:$PORT" \
    --handshake-timeout 3 --log-level debug
SHIM6_PID=$SHIM_PID
# it_start_shim waits for any listener on the port: the v4 shim already has one
for _ in $(seq 100); do
    ns_exec "$NS_G" ss -Htln "( sport = :$PORT )" | grep -q "\[$NS_GC6\]:$PORT" && break; sleep 0.05
done
ns_exec "$NS_G" ss -Htln "( sport = :$PORT )" | grep -q "\[$NS_GC6\]:$PORT" || { cat "$IT_TMP/shim6.log"; it_fail "the v6 shim did not listen"; }

# cb_check NAME RC SHIMLOG MODE SRVLOG SRVADDR: assert on a TCP -d/-r run through the
# shim (see header, 1.): client report $IT_TMP/NAME.out, shim summary in SHIMLOG, the
# server's connect-back in SRVLOG toward SRVADDR (the gateway's server-side address).
cb_check() {
    local name=$1 rc=$2 slog=$3 mode=$4 srvlog=$5 gsaddr=$6
    it_iperf2_streams "$IT_TMP/$name.out" >"$IT_TMP/$name.streams"
    local cport
    cport=$(awk -v sp="$PORT" '$1 == "1" && $4 == sp { print $3 }' "$IT_TMP/$name.streams")
    [ -n "$cport" ] && it_wait_log_count "$slog" "iperf2 test: client \S+:$cport," 1 15
    python3 - "$name" "$rc" "$mode" "$IT_TMP/$name.streams" "$slog" "$PORT" "${cport:-none}" "$srvlog" "$gsaddr" <<'PYEOF'
import re, sys
name, rc, mode, sfile, slog, port, cport, srvlog, gsaddr = sys.argv[1:10]
MiB, bad, st = 1 << 20, [], {}
for l in open(sfile):
    i, b, lp, pp, tr = l.split()
    st[i] = dict(bytes=int(b), lport=lp, pport=pp, tr=tr.replace("_", " "))
if rc != "0": bad.append("client exit status %s" % rc)
for i, what in (("1", "sent"), ("2", "received on the connect-back")):
    if i not in st: bad.append("no [%s] (%s) report" % (i, what))
    elif st[i]["bytes"] <= MiB: bad.append("[%s] (%s) only %s" % (i, what, st[i]["tr"]))
if "1" in st and st["1"]["pport"] != port: bad.append("[1] is not connected to port %s: %s" % (port, st["1"]))
if "2" in st and st["2"]["lport"] != port: bad.append("[2] is not on local port %s (not the connect-back): %s" % (port, st["2"]))
rx = re.compile(r'iperf2 test: client \S+:%s, server \S+, mode (\S+), bytes client->server (\d+), server->client (\d+)'
                r', connect-back via shim port (\d+) to client port (\d+): (\d+) connection\(s\), bytes server->client (\d+), '
                r'client->server (\d+), (.*)$' % re.escape(cport))
m = None
for l in open(slog):
    m = rx.search(l) or m
shimport = None
if m is None:
    bad.append("no shim summary line with a connect-back part for client port %s" % cport)
else:
    shimport = m.group(4)
    if m.group(1) != mode: bad.append("shim mode %s, want %s" % (m.group(1), mode))
    if m.group(5) != port: bad.append("shim relayed the connect-back to client port %s, want %s" % (m.group(5), port))
    if m.group(6) != "1": bad.append("shim counted %s connect-back connections, want 1" % m.group(6))
    if int(m.group(7)) <= MiB: bad.append("shim relayed only %s bytes server->client on the connect-back" % m.group(7))
    if int(m.group(2)) <= MiB: bad.append("shim relayed only %s bytes client->server" % m.group(2))
    if not m.group(9).startswith("closed"): bad.append("shim outcome %r" % m.group(9))
    srv = open(srvlog, errors="replace").read()
    if not re.search(r'Client connecting to %s, TCP port %s\b' % (re.escape(gsaddr), shimport), srv):
        bad.append("the server log has no 'Client connecting to %s, TCP port %s'" % (gsaddr, shimport))
if bad:
    for b in bad: print("FAIL: %s: %s" % (name, b))
    sys.exit(1)
print("ok %s: [1] %s sent, [2] %s received via the connect-back; server connected to %s port %s, "
      "shim relayed it to client port %s" % (name, st["1"]["tr"], st["2"]["tr"], gsaddr, shimport, port))
PYEOF
}

# tcp_shim NAME MODE TARGET SHIMLOG SRVLOG GSADDR IPERF_ARGS...
tcp_shim() {
    local name=$1 mode=$2 target=$3 slog=$4 srvlog=$5 gs=$6 rc; shift 6
    ns_exec "$NS_C" timeout 30 iperf -c "$target" -p "$PORT" -t 1 "$@" >"$IT_TMP/$name.out" 2>&1; rc=$?
    if cb_check "$name" "$rc" "$slog" "$mode" "$srvlog" "$gs" >"$IT_TMP/$name.check" 2>&1; then
        it_log "$(cat "$IT_TMP/$name.check")"
    else
        cat "$IT_TMP/$name.check"; show "$IT_TMP/$name.out"; FAILS+=("$name")
    fi
}

# ---------------------------------------------------------------- 1, 2: TCP via the shim
it_log "1. TCP -d / -r via the shim (v4)"
tcp_shim shim-d4 dualtest "$NS_GC4" "$IT_TMP/shim4.log" "$IT_TMP/srv4.log" "$NS_GS4" -d
tcp_shim shim-r4 tradeoff "$NS_GC4" "$IT_TMP/shim4.log" "$IT_TMP/srv4.log" "$NS_GS4" -r
it_log "2. TCP -d via the shim (v6)"
tcp_shim shim-d6 dualtest "$NS_GC6" "$IT_TMP/shim6.log" "$IT_TMP/srv6.log" "$NS_GS6" -V -d

# ---------------------------------------------------------------- 3: direct
# direct NAME TARGET EXPECT(ok|nocb) ARGS...
direct() {
    local name=$1 target=$2 expect=$3 rc; shift 3
    ns_exec "$NS_C" timeout 30 iperf -c "$target" -p "$PORT" -t 1 "$@" >"$IT_TMP/$name.out" 2>&1; rc=$?
    it_iperf2_streams "$IT_TMP/$name.out" >"$IT_TMP/$name.streams"
    local sent cb
    sent=$(awk '$1 == "1" { print $2 }' "$IT_TMP/$name.streams")
    cb=$(awk -v p="$PORT" '$1 != "1" && $1 != "SUM" && $3 == p { print $2 }' "$IT_TMP/$name.streams")
    if [ "$expect" = ok ]; then
        if [ "$rc" = 0 ] && [ "${sent:-0}" -gt 1048576 ]; then
            it_log "ok $name: direct through the NAT gateway works: [1] ${sent} bytes"
        else
            show "$IT_TMP/$name.out"
            it_fail "$name: the direct control run failed (exit $rc, [1] ${sent:-none} bytes): the topology is broken, the -d check below would prove nothing"
        fi
    else
        if [ -n "$cb" ] && [ "$cb" -gt 0 ]; then
            bad "$name: direct -d got a connect-back with $cb bytes although the server has no route to the client"
            show "$IT_TMP/$name.out"
        else
            it_log "ok $name: direct -d failed as it must (exit $rc, [1] ${sent:-0} bytes, no connect-back stream): $(grep -m1 -E 'ERROR|failed' "$IT_TMP/$name.out")"
        fi
    fi
}
it_log "3. direct (client -> server through the NAT gateway, no shim)"
direct direct-plain4 "$NS_S4" ok
direct direct-d4     "$NS_S4" nocb -d
direct direct-plain6 "$NS_S6" ok -V
direct direct-d6     "$NS_S6" nocb -V -d

# ---------------------------------------------------------------- 4: UDP via the shim
it_log "4. UDP -d and -u -r via the shim (v4)"
it_bg srvu ip netns exec "$NS_S" timeout 600 iperf -s -u -p "$PORT"
SRVU_PID=$IT_LAST_PID
ok_u=0
for _ in $(seq 100); do ns_exec "$NS_S" ss -Hlun "sport = :$PORT" | grep -q . && { ok_u=1; break; }; sleep 0.05; done
udp_case() {
    local name=$1 rc; shift
    ns_exec "$NS_C" timeout 30 iperf -c "$NS_GC4" -p "$PORT" -u -t 1 -b 10M "$@" >"$IT_TMP/$name.out" 2>&1; rc=$?
    it_iperf2_streams "$IT_TMP/$name.out" >"$IT_TMP/$name.streams"
    local sr cb why=""
    sr=$(awk '$1 == "SR1" { print $2 }' "$IT_TMP/$name.streams")
    cb=$(awk -v p="$PORT" '$1 !~ /^(1|SR1|SUM)$/ && $3 == p { print $2 }' "$IT_TMP/$name.streams" | head -n 1)
    [ "$rc" = 0 ] || why+="exit status $rc; "
    [ "${sr:-0}" -gt 0 ] || why+="no Server Report with data for [1] (client->server); "
    [ "${cb:-0}" -gt 0 ] || why+="no connect-back stream with data on local port $PORT (server->client); "
    if [ -z "$why" ]; then
        it_log "ok $name: client->server $sr bytes (Server Report), server->client $cb bytes (connect-back)"
    else
        bad "$name through the shim: ${why%; }"
        show "$IT_TMP/$name.out"
    fi
}
if [ $ok_u = 1 ]; then
    udp_case shim-udp-d -d
    sleep 3   # pacing, not a check: Debian's 2.1.8 UDP server crashes on back-to-back clients
    udp_case shim-udp-r -r
    sleep 3   # pacing, as above
    # informational: the same without the shim
    ns_exec "$NS_C" timeout 30 iperf -c "$NS_S4" -p "$PORT" -u -t 1 -b 10M -d >"$IT_TMP/direct-udp-d.out" 2>&1
    it_log "info: direct UDP -d (not asserted): $(it_iperf2_streams "$IT_TMP/direct-udp-d.out" | tr '\n' ';')"
    grep -E 'iperf2 UDP' "$IT_TMP/shim4.log" | sed 's/^/#   shim: /'
    kill -0 "$SRVU_PID" 2>/dev/null || bad "the iperf2 UDP server exited: $(tail -n 2 "$IT_TMP/srvu.log")"
else
    bad "the iperf2 UDP server did not start"
fi

it_log "shim summaries:"
it_iperf2_shim_lines "$IT_TMP/shim4.log" | sed 's/^/#   v4: /'
it_iperf2_shim_lines "$IT_TMP/shim6.log" | sed 's/^/#   v6: /'
grep -hE '\b(warn|error)\b' "$IT_TMP/shim4.log" "$IT_TMP/shim6.log" | sed 's/^/#   shim: /'
kill -0 "$SHIM4_PID" 2>/dev/null || bad "the v4 shim exited: $(tail -n 3 "$IT_TMP/shim4.log")"
kill -0 "$SHIM6_PID" 2>/dev/null || bad "the v6 shim exited: $(tail -n 3 "$IT_TMP/shim6.log")"

if [ ${#FAILS[@]} -gt 0 ]; then
    echo "FAIL: ${#FAILS[@]} check(s) failed: ${FAILS[*]}"
    exit 1
fi
echo "PASS"
exit 0

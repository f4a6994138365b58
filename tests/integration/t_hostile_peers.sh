#!/bin/bash
# Hostile peers against the shim while a real iperf3 test (--bidir -P 2 -t 6) runs
# through it (shim --handshake-timeout 1):
#  (a) a connection that sends nothing: closed by the shim after ~1 s, nothing received;
#  (b) 100 bytes of 0xff instead of a cookie: closed, never sees PARAM_EXCHANGE, and the
#      shim logs a warn line for it;
#  (c) a fake control connection: a valid-looking cookie, then a JSON length 0xFFFFFFFF.
#      While the test runs the server answers a new control connection with
#      ACCESS_DENIED (-1) at once, so (c) is also run once more when the server is idle:
#      there the server's PARAM_EXCHANGE (9) comes back, and after the length the shim
#      must log a warn rejection mentioning the length and close, without forwarding
#      the length (the server's stderr must not show "Data length overflow");
#  (d) connect-and-reset (SO_LINGER 0): bare, after 10 bytes of cookie, after a full cookie;
#      the last once more on an idle server, after which a normal test must pass (the
#      shim must close the upstream leg it opened, or the 3.12 server waits forever);
#  (e) reported only: cookie, then silence for 6 s on an idle server (wedges a 3.12
#      server unless the shim bounds the time to the parameters).
# Then: the long test exits 0 with sane byte counts, the shim is alive, serves another
# test, and its fd count returns (polled, bounded) to the idle baseline taken after a
# warm-up test; same for the iperf3 server's fd count (no upstream leak).
# Flood: 200 connections opened and closed quickly (plain close, RST, partial cookie),
# then the shim must still serve a test and return to the fd baseline.
# IT_DIRECT=1 SHIM=none: peers go straight to the server; shim-only assertions are
# reported, not enforced (3.12 has no handshake timeout and never logs).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"

SRV=15230 SH=15231
it_iperf3_server srv $SRV
SRV_PID=$IT_IPERF3_PID
if [ "$IT_DIRECT" = 1 ]; then
    PORT=$SRV; PID=$SRV_PID; LOG=/dev/null
else
    # --queue-max 0: no queue, a peer arriving during a test meets the busy server as directly
    it_start_shim shim -- --listen 127.0.0.1:$SH --upstream 127.0.0.1:$SRV --handshake-timeout 1 --log-level info \
        --queue-max 0
    PORT=$SH; PID=$SHIM_PID; LOG=$IT_TMP/shim.log
fi
# per-stream receiver <= sender is only reported for --bidir through the shim (role
# re-pairing makes iperf3's by-id matching pair different connections), as in t_iperf3_tcp_modes
PSNOTE=(); [ "$IT_DIRECT" = 1 ] || PSNOTE=(--per-stream-note)
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# shim_expect COND_TEXT RESULT: enforce a shim-only expectation (report only when direct)
shim_expect() {
    if [ "$2" = 0 ]; then return 0; fi
    if [ "$IT_DIRECT" = 1 ]; then echo "direct (not enforced): $1"; else fail "$1"; fi
}

cat >"$IT_TMP/peers.py" <<'PYEOF'
import json, random, socket, struct, sys, threading, time
port = int(sys.argv[1]); what = sys.argv[2:]
A = "abcdefghijklmnopqrstuvwxyz234567"
def cookie(): return "".join(random.choice(A) for _ in range(36)).encode() + b"\0"
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s, s.getsockname()[1]
def read_to_close(s, limit, t0):
    got = b""
    s.settimeout(limit)
    try:
        while True:
            b = s.recv(4096)
            if not b: return got, "EOF", time.time() - t0
            got += b
    except socket.timeout: return got, "OPEN", time.time() - t0
    except ConnectionResetError: return got, "RST", time.time() - t0
def res(name, lport, got, how, dt, **kw):
    r = dict(peer=name, lport=lport, got=got.hex(), end=how, secs=round(dt, 2)); r.update(kw)
    print(json.dumps(r), flush=True)
def silent():
    s, lp = conn(); t0 = time.time()
    res("silent", lp, *read_to_close(s, 5, t0)); s.close()
def garbage():
    s, lp = conn(); t0 = time.time()
    try: s.sendall(b"\xff" * 100)
    except OSError: pass
    res("garbage", lp, *read_to_close(s, 5, t0)); s.close()
def fakectl():
    s, lp = conn(); t0 = time.time()
    s.sendall(cookie())
    first = b""
    s.settimeout(5)
    try: first = s.recv(1)
    except (socket.timeout, ConnectionResetError): pass
    sent_len = False
    try:
        s.sendall(struct.pack(">I", 0xFFFFFFFF)); sent_len = True
        s.sendall(b'{"tcp":true,' + b"x" * 2000)
    except OSError: pass
    got, how, dt = read_to_close(s, 5, t0)
    res("fakectl", lp, first + got, how, dt, first=first.hex(), sent_len=sent_len); s.close()
def rst(n):
    s, lp = conn()
    if n: s.sendall(cookie()[:n])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close()
    res("rst%d" % n, lp, b"", "sent RST", 0)
def cookie_hold(secs):
    s, lp = conn(); t0 = time.time()
    s.sendall(cookie())
    got, how, dt = read_to_close(s, secs, t0)
    res("cookiehold", lp, got, how, dt); s.close()
def flood(n):
    ok = err = 0; kinds = {}
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            k = i % 4
            if k == 1: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif k == 2: s.sendall(cookie()[:20])
            elif k == 3:
                s.sendall(cookie()[:20]); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close(); ok += 1
        except OSError as e:
            err += 1; kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
    print(json.dumps(dict(peer="flood", opened=ok, errors=err, error_kinds=kinds)), flush=True)
jobs = {"silent": silent, "garbage": garbage, "fakectl": fakectl,
        "rst0": lambda: rst(0), "rst10": lambda: rst(10), "rst37": lambda: rst(37),
        "flood": lambda: flood(200), "cookiehold": lambda: cookie_hold(6)}
ts = [threading.Thread(target=jobs[w]) for w in what]
for t in ts: t.start()
for t in ts: t.join()
PYEOF
peers() { timeout 30 python3 "$IT_TMP/peers.py" "$PORT" "$@"; }
# field JSONLINES PEER KEY
field() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: d=json.loads(l)
    except ValueError: continue
    if d.get("peer")==sys.argv[2]: print(d.get(sys.argv[3])); break' "$1" "$2" "$3"; }
# new_log_lines FROM_LINE: shim log lines after line FROM_LINE
new_log_lines() { tail -n +"$(( $1 + 1 ))" "$LOG"; }
loglen() { wc -l <"$LOG"; }
# log_has_line FROM REGEX...: some new log line matches all REGEXes (grep -Ei); waits up to 3 s
log_has_line() {
    local from=$1; shift
    local i r lines
    for i in $(seq 30); do
        lines=$(new_log_lines "$from")
        for r in "$@"; do lines=$(grep -Ei -- "$r" <<<"$lines"); done
        [ -n "$lines" ] && { echo "$lines" | head -n 1; return 0; }
        sleep 0.1
    done
    return 1
}
# wait_running: poll (10 s at most) until the server's sockets have received more than
# 1 MiB: the test's data streams are flowing, so the server is past CREATE_STREAMS.
wait_running() {
    for _ in $(seq 200); do
        [ "$(ss -Htni state established "( sport = :$SRV )" | grep -o 'bytes_received:[0-9]*' |
             awk -F: '{ s += $2 } END { print s + 0 }')" -gt 1048576 ] && return 0
        sleep 0.05
    done
    return 1
}
# wait_server_idle WHAT: poll (10 s at most) until the iperf3 server holds no connection
# (none established or half-closed on its port): it has closed everything of the
# previous test or peer and answers the next connection as a new test.
wait_server_idle() {
    for _ in $(seq 200); do
        [ -z "$(ss -Htn state established state close-wait "( sport = :$SRV )")" ] && return 0
        sleep 0.05
    done
    fail "$1: the iperf3 server still holds connections after 10 s:$(echo; ss -Htn "( sport = :$SRV )")"
    return 1
}
# wait_shim_tests N: through the shim, poll (10 s at most) until it has logged the end of
# N tests (it logs a test's end once every fd of it is closed).  Direct: nothing to wait for.
wait_shim_tests() {
    [ "$IT_DIRECT" = 1 ] && return 0
    it_wait_log_count "$LOG" '^(\S+\s+)?(info\s+)?test \S+: client .*, mode .*, streams [0-9]+' "$1" 10 ||
        fail "the shim logged the end of $(it_shim_test_lines "$LOG" | wc -l) tests, want $1"
}
normal_test() {
    local out=$IT_TMP/normal.$RANDOM.json res
    it_iperf3_json "$out" 20 -c 127.0.0.1 -p "$PORT" -t 1 --bidir -P 2 \
        || fail "$1: test exit $?: $(it_iperf3_error "$out")"
    res=$(it_iperf3_check "$out" --mode bidir -P 2 --timed "${PSNOTE[@]}") || fail "$1: $res"
    echo "$1: $res"
}
fd_back() {  # fd_back WHAT PID BASE
    if it_wait_fd_count "$2" "$3" 10; then echo "$1: fds back to $3"; return 0; fi
    echo "--- $1 fds now $(it_fd_count "$2"), baseline $3:"; it_fd_list "$2"
    return 1
}

# warm-up (same shape as the long test), then the idle baselines
normal_test "warm-up"
wait_shim_tests 1
wait_server_idle "after the warm-up"
BASE=$(it_fd_count "$PID"); SBASE=$(it_fd_count "$SRV_PID")
echo "baseline fds: shim(or direct server) $BASE, server $SBASE"
[ "$IT_DIRECT" = 1 ] || it_fd_list "$PID" >"$IT_TMP/fds-baseline"

# long test, hostile peers while it runs
LONG=$IT_TMP/long.json
it_iperf3_json "$LONG" 40 -c 127.0.0.1 -p "$PORT" -t 15 --bidir -P 2 &   # long enough for the peers on a loaded machine
lpid=$!
wait_running || fail "long test did not start"
L0=$([ "$IT_DIRECT" = 1 ] && echo 0 || loglen)
peers silent garbage fakectl rst0 rst10 rst37 >"$IT_TMP/peers.out"
cat "$IT_TMP/peers.out"
kill -0 $lpid 2>/dev/null || fail "long test ended before the hostile peers were done"

# (a) silent: closed after the 1 s handshake timeout, nothing sent to it
end=$(field "$IT_TMP/peers.out" silent end) secs=$(field "$IT_TMP/peers.out" silent secs) got=$(field "$IT_TMP/peers.out" silent got)
python3 -c "import sys; sys.exit(0 if sys.argv[1] in ('EOF','RST') and 0.8 <= float(sys.argv[2]) <= 3.0 else 1)" "$end" "$secs"
shim_expect "(a) silent connection: $end after ${secs}s (want closed after ~1 s handshake timeout)" $?
[ -z "$got" ] ; shim_expect "(a) silent connection received '$got'" $?
# (b) garbage: closed, no PARAM_EXCHANGE, a warn line
end=$(field "$IT_TMP/peers.out" garbage end) secs=$(field "$IT_TMP/peers.out" garbage secs) got=$(field "$IT_TMP/peers.out" garbage got)
lp=$(field "$IT_TMP/peers.out" garbage lport)
[ "$end" != OPEN ]; shim_expect "(b) garbage connection still open after ${secs}s" $?
case $got in 09*) fail "(b) garbage cookie got PARAM_EXCHANGE from upstream: '$got'";; esac
if [ "$IT_DIRECT" != 1 ]; then
    l=$(log_has_line "$L0" warn "$lp") || fail "(b) no warn log line naming peer port $lp; new log lines:$(echo; new_log_lines "$L0" | head -n 20)"
    echo "(b) log: $l"
fi
# (c) during the test: ACCESS_DENIED (ff) or nothing, then closed
end=$(field "$IT_TMP/peers.out" fakectl end) got=$(field "$IT_TMP/peers.out" fakectl got)
[ "$end" != OPEN ]; shim_expect "(c) fake control connection during a test still open" $?
case $got in ""|ff) ;; *) fail "(c) during a test the fake control connection got '$got' (want ff or nothing)";; esac

wait $lpid; rc=$?
[ $rc = 0 ] || fail "long test exit $rc: $(it_iperf3_error "$LONG")"
res=$(it_iperf3_check "$LONG" --mode bidir -P 2 --timed "${PSNOTE[@]}") || fail "long test: $res"
echo "long test: $res"

# (c) on an idle server: PARAM_EXCHANGE relayed, then the huge length rejected
# (directly, Debian's patched 3.12 prints 'Data length overflow' and closes)
wait_server_idle "after the long test"
L1=$([ "$IT_DIRECT" = 1 ] && echo 0 || loglen)
peers fakectl >"$IT_TMP/peers2.out"; cat "$IT_TMP/peers2.out"
first=$(field "$IT_TMP/peers2.out" fakectl first) end=$(field "$IT_TMP/peers2.out" fakectl end)
secs=$(field "$IT_TMP/peers2.out" fakectl secs) got=$(field "$IT_TMP/peers2.out" fakectl got)
[ "$first" = 09 ] || fail "(c) idle: first byte back '$first', want 09 (PARAM_EXCHANGE)"
[ "$end" != OPEN ] || fail "(c) idle: connection still open ${secs}s after the 0xFFFFFFFF length"
[ "$got" = 09 ] || fail "(c) idle: bytes back '$got', want only 09"
if [ "$IT_DIRECT" != 1 ]; then
    l=$(log_has_line "$L1" warn '4294967295|0xffffffff|ffffffff') \
        || fail "(c) idle: no warn line mentioning the length; new log lines:$(echo; new_log_lines "$L1" | head -n 20)"
    echo "(c) log: $l"
fi
kill -0 "$SRV_PID" 2>/dev/null || fail "(c) idle: the iperf3 server died"
# Debian's patched 3.12 prints this on stderr when it reads a length of 0xFFFFFFFF:
# present when direct (proves the probe), absent through the shim (length not forwarded);
# written before the server closes the connection
wait_server_idle "after (c) idle"
if grep -q "Data length overflow" "$IT_TMP/srv.log"; then
    [ "$IT_DIRECT" = 1 ] || fail "(c) idle: the server saw the 0xFFFFFFFF length: the shim forwarded it upstream"
else
    [ "$IT_DIRECT" != 1 ] || fail "(c) idle direct: the server did not report 'Data length overflow' (probe broken?)"
fi

# (d) on an idle server: a full cookie then RST.  The shim has connected upstream and
# the 3.12 server waits for parameters with no timeout: the shim must close its upstream
# leg, or the server is wedged for every later test.
peers rst37 >"$IT_TMP/peers3.out"; cat "$IT_TMP/peers3.out"
wait_server_idle "(d) after the cookie+RST peer"
out=$IT_TMP/after-rst37.json
it_iperf3_json "$out" 15 -c 127.0.0.1 -p "$PORT" -t 1; rc=$?
res=$(it_iperf3_check "$out") || fail "(d) idle: a test after a cookie+RST peer: exit $rc, $res"
echo "(d) idle: test after a cookie+RST peer: $res"

# (e) on an idle server: a full cookie, PARAM_EXCHANGE read, then silence for 6 s.
# A 3.12 server is wedged meanwhile (it reads the parameters with no timeout).
# Reported only: whether the shim bounds this phase is a design decision.
peers cookiehold >"$IT_TMP/peers4.out"; cat "$IT_TMP/peers4.out"
echo "NOTE (e) idle: cookie then silence: $(field "$IT_TMP/peers4.out" cookiehold end) after $(field "$IT_TMP/peers4.out" cookiehold secs)s (OPEN = the shim kept it, and the upstream server, for 6 s)"
wait_server_idle "(e) after the cookie+silence peer"

kill -0 "$PID" 2>/dev/null || fail "shim (pid $PID) died"
fd_back "after hostile peers: shim" "$PID" "$BASE" || fail "shim fds did not return to $BASE"
fd_back "after hostile peers: server" "$SRV_PID" "$SBASE" || fail "server fds did not return to $SBASE"
normal_test "after hostile peers"

# flood
peers flood >"$IT_TMP/flood.out"; cat "$IT_TMP/flood.out"
kill -0 "$PID" 2>/dev/null || fail "shim (pid $PID) died in the flood"
normal_test "after flood"
fd_back "after flood: shim" "$PID" "$BASE" || fail "shim fds did not return to $BASE after the flood"
fd_back "after flood: server" "$SRV_PID" "$SBASE" || fail "server fds did not return to $SBASE after the flood"
if [ "$IT_DIRECT" != 1 ]; then
    grep -Eiq 'AddressSanitizer|runtime error' "$LOG" && fail "sanitizer report in shim log"
    echo "--- shim log: $(wc -l <"$LOG") lines, last warn lines:"; grep -i warn "$LOG" | tail -n 8
fi
[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
exit 0

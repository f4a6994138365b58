#!/bin/bash
# iperf 2.1.8 UDP tests (-u) through the shim.
#
# 1. Modes, against a real `iperf -s -u`: `-b 10M -t 2`, `-n 1M`, `-e`, `-P 4`,
#    `--reverse`.  Every client must print its Server Report (one per stream);
#    with --reverse the server sends and no report is due (the server marks the
#    test "no-udp-fin"): the client's own receiver line must count datagrams.
# 2. $IT_I2_CLIENTS (default 12) consecutive clients, $IT_I2_SPACING s apart
#    (default 3), each must get its Server Report, and the server must survive.
#    Debian's 2.1.8 server wedges when a UDP client starts right after the
#    previous one, with or without a relay (measured here, direct: the second
#    of two back-to-back clients gets "did not receive ack of last datagram";
#    1 s spacing was fine for 6 direct clients).  3 s is the documented safe
#    spacing; a smaller one is only for runs where it was verified.
#    When the flows have expired (--udp-linger default 10 s), the shim's log
#    must say "Server Report relayed" for every normal flow, "not due" for the
#    reverse one, "never came" for none.
# 3. Junk: 1000 datagrams (random bytes, random sizes from 0 to 65507 bytes, and
#    near misses of the iperf3 request and of an iperf2 client datagram) from 40
#    source ports must create no UDP flow and no upstream traffic (both
#    upstreams are python sinks that count what arrives: 0), and the same shim
#    then serves a real iperf2 UDP test.
# 4. Flood: 5000 distinct source ports each send a genuine iperf2 first datagram
#    (captured from the real client at the start of the test) to a shim with
#    --max-flows 100 --udp-linger 2: the shim logs "UDP flow table full", stays
#    alive, opens at most 100 flows (upstream sink count = flows created), its
#    RSS grows by less than 16 MiB (64 with sanitizers), its fds return to the
#    baseline when the flows expire, and then a real iperf2 UDP test works.
#
# Ports: 15520-15533 on 127.0.0.1.  Takes about 2 minutes.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

command -v iperf >/dev/null || it_skip "iperf (2.x) not installed"
I2VER=$(iperf -v 2>&1 | awk '/^iperf version/ { print $3; exit }')
[[ $I2VER == 2.* ]] || it_skip "iperf version '$I2VER' is not 2.x"
[ "$I2VER" = 2.1.8 ] || it_log "note: written against iperf 2.1.8, found $I2VER"
[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (shim-specific checks)"

SPACING=${IT_I2_SPACING:-3}
NCLIENTS=${IT_I2_CLIENTS:-12}
H=127.0.0.1
SHIM_A=15520 I2_A=15521 NONE_A=15529            # modes + consecutive clients
SHIM_J=15525 SINK_J3=15526 SINK_J2=15527        # junk
SHIM_F=15530 SINK_F3=15531 SINK_F2=15532        # flood
CAP=15533                                       # capture of a real first datagram
FAILS=0
fail_soft() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# i2_server NAME PORT: start `iperf -s -u` on $H:PORT (no timeout wrapper: a
# wedged 2.1.8 server ignores SIGTERM, the cleanup's SIGKILL must reach it).
i2_server() {
    it_bg "$1" iperf -s -u -e -B "$H" -p "$2"
    it_wait_udp "$H" "$2" 10 || { cat "$IT_TMP/$1.log"; it_fail "iperf -s -u did not bind $2"; }
    I2_PID=$IT_LAST_PID
}

# i2_client OUT PORT ARGS...: one bounded `iperf -c -u` run; exit status in I2_RC.
i2_client() {
    local out=$1 port=$2; shift 2
    timeout 40 iperf -c "$H" -p "$port" -u "$@" >"$out" 2>&1
    I2_RC=$?
}

# check_client NAME OUT WANT_REPORTS: assert on a client's output text.
check_client() {
    local name=$1 out=$2 want=$3 reports sent lost total
    read -r reports sent lost total < <(it_iperf2_udp_reports "$out")
    if [ "$I2_RC" != 0 ]; then
        fail_soft "$name: iperf exited $I2_RC"; sed 's/^/#   | /' "$out"; return 1
    fi
    if grep -q "did not receive ack" "$out"; then
        fail_soft "$name: $(grep -m1 'did not receive ack' "$out")"; sed 's/^/#   | /' "$out"; return 1
    fi
    if [ "$reports" != "$want" ]; then
        fail_soft "$name: $reports Server Report(s) in the client's output, want $want"
        sed 's/^/#   | /' "$out"; return 1
    fi
    if [ "$total" -le 0 ] || { [ "$want" -gt 0 ] && [ $((total * 2)) -lt "$sent" ]; }; then
        fail_soft "$name: the report(s) count $total datagrams ($sent sent)"
        sed 's/^/#   | /' "$out"; return 1
    fi
    if [ "$want" = 0 ]; then
        echo "  $name: no Server Report due (reverse); client received $total datagrams, lost $lost"
    else
        echo "  $name: $reports Server Report(s): $lost lost of $total; client sent $sent"
    fi
}

# ---- capture a genuine first datagram of an iperf 2 UDP client ---------------
it_udp_sink capsink "$IT_TMP/cap.txt" $H $CAP
CAPSINK=$IT_LAST_PID
timeout 10 iperf -c $H -p $CAP -u -l 1470 -n 1470 >"$IT_TMP/cap-client.log" 2>&1
it_stop_pid $CAPSINK
FIRST=$(cat "$IT_TMP/cap.txt.first.$CAP" 2>/dev/null)
[ ${#FIRST} -ge 80 ] || it_fail "could not capture an iperf2 client datagram (got '${FIRST:0:40}')"
it_log "captured iperf $I2VER first datagram: $((${#FIRST} / 2)) bytes, starts ${FIRST:0:64}"

# ---- 1. modes --------------------------------------------------------------
i2_server i2a $I2_A
I2A_PID=$I2_PID
it_start_shim shimA -- --listen $H:$SHIM_A --upstream $H:$NONE_A --upstream-iperf2 $H:$I2_A --log-level debug
SHIMA_PID=$SHIM_PID
LOGA=$IT_TMP/shimA.log
NORMAL_FLOWS=0
it_log "modes through the shim (clients $SPACING s apart)"
MODES=(
    "basic|1|-b 10M -t 2"
    "n1M|1|-b 10M -n 1M"
    "enhanced|1|-b 10M -t 2 -e"
    "P4|4|-b 10M -t 2 -P 4"
    "reverse|0|-b 10M -t 2 --reverse"
)
for m in "${MODES[@]}"; do
    IFS='|' read -r name want args <<<"$m"
    # shellcheck disable=SC2086
    i2_client "$IT_TMP/mode-$name.txt" $SHIM_A $args
    check_client "$name" "$IT_TMP/mode-$name.txt" "$want"
    NORMAL_FLOWS=$((NORMAL_FLOWS + want))
    kill -0 $SHIMA_PID 2>/dev/null || it_fail "the shim died during $name: $(tail -n 20 "$LOGA")"
    sleep "$SPACING"   # pacing, not a check: 2.1.8 wedges on back-to-back UDP clients
done

# ---- 2. consecutive clients --------------------------------------------------
it_log "$NCLIENTS consecutive clients (-b 10M -t 1), $SPACING s apart"
ok=0
for i in $(seq "$NCLIENTS"); do
    i2_client "$IT_TMP/seq-$i.txt" $SHIM_A -b 10M -t 1
    if check_client "client $i" "$IT_TMP/seq-$i.txt" 1 >"$IT_TMP/seq-$i.chk"; then ok=$((ok + 1)); fi
    sed 's/^/  /' "$IT_TMP/seq-$i.chk" | sed 's/^  FAIL/FAIL/'
    NORMAL_FLOWS=$((NORMAL_FLOWS + 1))
    [ "$i" -lt "$NCLIENTS" ] && sleep "$SPACING"   # pacing, as above
done
it_log "$ok of $NCLIENTS consecutive clients got their Server Report"
kill -0 $I2A_PID 2>/dev/null || fail_soft "the iperf2 server died during the consecutive clients: $(tail -n 5 "$IT_TMP/i2a.log")"

# ---- 3. junk -----------------------------------------------------------------
it_log "junk: 1000 non-iperf datagrams to a shim whose upstreams are counting sinks"
it_udp_sink sinkJ "$IT_TMP/sinkJ.txt" $H $SINK_J3 $SINK_J2
SINKJ_PID=$IT_LAST_PID
it_start_shim shimJ -- --listen $H:$SHIM_J --upstream $H:$SINK_J3 --upstream-iperf2 $H:$SINK_J2 --log-level debug
SHIMJ_PID=$SHIM_PID
python3 - $H $SHIM_J "$FIRST" >"$IT_TMP/junk.txt" <<'PYEOF' || it_fail "junk sender failed: $(cat "$IT_TMP/junk.txt")"
import random, socket, struct, sys, time
host, port, first = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
rnd = random.Random(391)
MAGIC3 = {b"\x39\x38\x37\x36", b"\x15\xcd\x5b\x07", b"\x07\x5b\xcd\x15"}
def size():
    x = rnd.random()
    if x < 0.5: return rnd.randint(0, 64)
    if x < 0.8: return rnd.randint(65, 1500)
    if x < 0.95: return rnd.randint(1501, 9000)
    return rnd.randint(9001, 65507)
def rand_dgram():
    while True:
        d = rnd.randbytes(size())
        if d not in MAGIC3: return d
def patch(d, off, fmt, *v):
    d = bytearray(d); struct.pack_into(fmt, d, off, *v); return bytes(d)
near = [
    b"\x36\x37\x38\x39",                       # the iperf3 server's reply, not a request
    b"\x39\x38\x37", b"\x39\x38\x37\x36\x00",  # the request, one byte short / long
    b"\x00" * 4, b"\xff" * 4,
    bytes(16) + struct.pack(">I", 0x80000000) + bytes(108),   # an iperf2 Server Report shape
    bytes(36), bytes(128), b"\xff" * 128,
    patch(first, 8, ">I", 1000000),            # tv_usec out of range
    patch(first, 20, ">I", 0),                 # numThreads 0
    patch(first, 24, ">I", 0),                 # mPort 0
    patch(first, 24, ">I", 70000),             # mPort > 65535
    first[:17],                                # truncated in the flags word
]
dgrams = near * 6 + [rand_dgram() for _ in range(1000 - 6 * len(near))]
assert len(dgrams) == 1000
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
for s in socks: s.bind((host, 0))
sizes = []
for i, d in enumerate(dgrams):
    socks[i % len(socks)].sendto(d, (host, port)); sizes.append(len(d))
    if i % 50 == 49: time.sleep(0.005)
print("sent %d datagrams from %d ports, sizes %d..%d (median %d), %d near misses"
      % (len(dgrams), len(socks), min(sizes), max(sizes), sorted(sizes)[500], 6 * len(near)))
PYEOF
it_log "$(cat "$IT_TMP/junk.txt")"
# Barrier: one genuine iperf2 first datagram after the junk, from a new port.  The shim
# reads its one listening socket in order and forwards synchronously, and loopback
# delivers in order, so once the iperf2 sink has counted it, whatever of the junk the
# shim forwarded has been counted too.
bport=$(python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0))
s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2]))); print(s.getsockname()[1])' $H $SHIM_J "$FIRST")
for _ in $(seq 100); do [ "$(it_udp_sink_count "$IT_TMP/sinkJ.txt" $SINK_J2)" -ge 1 ] && break; sleep 0.05; done
kill -0 $SHIMJ_PID 2>/dev/null || it_fail "the shim died on junk: $(tail -n 20 "$IT_TMP/shimJ.log")"
j3=$(it_udp_sink_count "$IT_TMP/sinkJ.txt" $SINK_J3); j2=$(it_udp_sink_count "$IT_TMP/sinkJ.txt" $SINK_J2)
jf=$(grep -c 'new .* UDP flow from' "$IT_TMP/shimJ.log")
jb=$(grep -c "new iperf2 UDP flow from $H:$bport\$" "$IT_TMP/shimJ.log")
it_log "junk: upstream sinks received $j3 (iperf3 upstream) + $j2 (iperf2 upstream, 1 is the barrier from port $bport)" \
       "datagrams; flows created: $jf (the barrier's: $jb)"
[ "$j2" -ge 1 ] && [ "$jb" = 1 ] || fail_soft "the barrier datagram (port $bport) did not reach the iperf2 sink within 5 s (sink $j2, flow lines $jb)"
[ "$j3" = 0 ] && [ "$j2" -le 1 ] || fail_soft "junk reached the upstream: $j3 + $((j2 - 1)) datagrams"
[ "$jf" -le 1 ] || fail_soft "junk created $((jf - 1)) UDP flows: $(grep 'new .* UDP flow from' "$IT_TMP/shimJ.log" | grep -v ":$bport\$" | head -n 3)"
it_stop_pid $SINKJ_PID
i2_server i2j $SINK_J2
i2_client "$IT_TMP/junk-after.txt" $SHIM_J -b 10M -t 2
check_client "real test after the junk" "$IT_TMP/junk-after.txt" 1

# ---- 4. flood ----------------------------------------------------------------
it_log "flood: 5000 source ports, each one genuine iperf2 first datagram, --max-flows 100 --udp-linger 2"
it_udp_sink sinkF "$IT_TMP/sinkF.txt" $H $SINK_F3 $SINK_F2
SINKF_PID=$IT_LAST_PID
it_start_shim shimF -- --listen $H:$SHIM_F --upstream $H:$SINK_F3 --upstream-iperf2 $H:$SINK_F2 \
    --max-flows 100 --udp-linger 2 --log-level debug
SHIMF_PID=$SHIM_PID
LOGF=$IT_TMP/shimF.log
FD0=$(it_fd_count $SHIMF_PID); RSS0=$(it_proc_rss_kb $SHIMF_PID)
python3 - $H $SHIM_F "$FIRST" >"$IT_TMP/flood.txt" <<'PYEOF' || it_fail "flood sender failed: $(cat "$IT_TMP/flood.txt")"
import resource, socket, sys, time
host, port, first = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
N = 5000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < N + 100: resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, N + 200), hard))
t0 = time.monotonic()
socks, ports = [], set()
for i in range(N):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0)); ports.add(s.getsockname()[1]); socks.append(s)
    s.sendto(first, (host, port))
    if i % 200 == 199: time.sleep(0.002)   # let the shim read: its listener holds ~4 MiB
dt = time.monotonic() - t0
for s in socks: s.close()
print("%d datagrams from %d distinct source ports in %.2f s" % (N, len(ports), dt))
if len(ports) != N: sys.exit(1)
PYEOF
it_log "$(cat "$IT_TMP/flood.txt")"
# the shim has read the whole flood when its listening socket's receive queue is empty
# (it forwards, or queues, what it reads at once): only then are flows and forwarded
# datagrams final enough to compare (forwarded <= created)
for _ in $(seq 200); do
    [ "$(ss -Huan "sport = :$SHIM_F" | awk '{ s += $2 } END { print s + 0 }')" = 0 ] && break
    kill -0 $SHIMF_PID 2>/dev/null || break
    sleep 0.05
done
kill -0 $SHIMF_PID 2>/dev/null || it_fail "the shim died in the flood: $(tail -n 20 "$LOGF")"
FD1=$(it_fd_count $SHIMF_PID); RSS1=$(it_proc_rss_kb $SHIMF_PID)
created=$(grep -c 'new iperf2 UDP flow from' "$LOGF")
fwd=$(it_udp_sink_count "$IT_TMP/sinkF.txt" $SINK_F2)
it_log "flood: $created flows created, $fwd datagrams reached the upstream, fds $FD0 -> $FD1," \
       "RSS $RSS0 -> $RSS1 KiB"
grep -m 3 'flow table full' "$LOGF" | sed 's/^/#   shim: /'
grep -q 'UDP flow table full (100 flows)' "$LOGF" || fail_soft "no 'UDP flow table full (100 flows)' warning in the shim's log"
# Each admitted flow gets one datagram and expires 2 s later: at most 100 flows
# per started 2 s of flood.
dt=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "s" && $(i - 1) == "in") print $i }' "$IT_TMP/flood.txt")
max_created=$(awk -v t="${dt:-0}" 'BEGIN { print 100 * (1 + int(t / 2)) }')
[ "$created" -le "$max_created" ] || fail_soft "$created flows created with --max-flows 100 (bound $max_created for a ${dt}s flood)"
[ "$created" -ge 1 ] || fail_soft "no flow created at all by genuine iperf2 datagrams"
[ "$fwd" -le "$created" ] || fail_soft "$fwd datagrams reached the upstream, more than the $created flows' one each"
[ "$FD1" -le $((FD0 + 100)) ] || fail_soft "fds grew from $FD0 to $FD1 (> 100 flows)"
rss_max=$((16 * 1024)); [ "${SHIM_SANITIZED:-0}" = 1 ] && rss_max=$((64 * 1024))
[ $((RSS1 - RSS0)) -le $rss_max ] || fail_soft "RSS grew by $((RSS1 - RSS0)) KiB in the flood (bound $rss_max)"
it_wait_fd_count $SHIMF_PID "$FD0" 10 \
    || fail_soft "fds did not return to $FD0 after the flows' linger: $(it_fd_count $SHIMF_PID) open"
it_wait_log_count "$LOGF" 'iperf2 UDP flow .* ended' "$created" 5 \
    || fail_soft "$(grep -c 'iperf2 UDP flow .* ended' "$LOGF") flows ended of $created"
it_log "flood flows expired: fds $(it_fd_count $SHIMF_PID), RSS $(it_proc_rss_kb $SHIMF_PID) KiB"
it_stop_pid $SINKF_PID
i2_server i2f $SINK_F2
i2_client "$IT_TMP/flood-after.txt" $SHIM_F -b 10M -t 2
check_client "real test after the flood" "$IT_TMP/flood-after.txt" 1
kill -0 $SHIMF_PID 2>/dev/null || fail_soft "the flood shim died"

# ---- flow summaries of the modes / consecutive clients shim --------------------
it_wait_log_count "$LOGA" 'iperf2 UDP flow .* ended' $((NORMAL_FLOWS + 1)) 15 \
    || fail_soft "shim A: $(grep -c 'iperf2 UDP flow .* ended' "$LOGA") flows ended, want $((NORMAL_FLOWS + 1))"
relayed=$(grep -c 'iperf2 UDP flow .* ended (normal): .*Server Report relayed' "$LOGA")
notdue=$(grep -c 'iperf2 UDP flow .* ended (reverse): .*Server Report not due' "$LOGA")
never=$(grep -c 'Server Report never came' "$LOGA")
answered=$(grep -o '([0-9]* answered by the shim)' "$LOGA" | tr -dc '0-9\n' | awk '{ s += $1 } END { print s + 0 }')
icmp=$(grep -o 'ICMP errors absorbed [0-9]*' "$LOGA" | awk '{ s += $4 } END { print s + 0 }')
drops=$(grep -o 'queue drops [0-9]*' "$LOGA" | awk '{ s += $3 } END { print s + 0 }')
it_log "shim A flows: $relayed normal with the report relayed (want $NORMAL_FLOWS), $notdue reverse" \
       "(not due), $never never came; final datagrams answered by the shim: $answered;" \
       "ICMP errors absorbed: $icmp; queue drops: $drops"
[ "$relayed" = "$NORMAL_FLOWS" ] || fail_soft "shim A: $relayed flows relayed a Server Report, want $NORMAL_FLOWS"
[ "$notdue" = 1 ] || fail_soft "shim A: $notdue reverse flows ended with 'not due', want 1"
[ "$never" = 0 ] || fail_soft "shim A: $never flows whose Server Report never came"
kill -0 $SHIMA_PID 2>/dev/null || fail_soft "shim A died"
[ $FAILS = 0 ] || it_fail "$FAILS check(s) failed (see above)"
echo "ok"

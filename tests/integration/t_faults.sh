#!/bin/bash
# Fault paths of the shim's core (issue #8): it must survive its own faults without
# spinning, log each in a few lines an operator can act on, and serve the next test.
# Real Debian iperf3 3.12 / iperf 2.1.8 binaries; python3 for the flood and the stranger.
# Loopback only (run it inside a network namespace of your own), ports 15480-15499:
#   iperf3 -s 127.0.0.1:15491, iperf -s 127.0.0.1:15492 (TCP), iperf -s -u 127.0.0.1:15492
#   shim A 127.0.0.1:15480 (all parts but 1 and 2), shim B 15481 (part 1), shim C 15482 (part 2)
#
#  1. Out of file descriptors: shim B runs under `ulimit -n 40` (--handshake-timeout 2);
#     200 silent connections are opened at once and held 4 s.  Asserted: at most one
#     "out of file descriptors" line per second of flood (+2), at least one of them
#     counts refused clients > 0, the shim used < 1 CPU-second over the flood; after the
#     flood its fd count returns to what it was and a real iperf3 -t 1 test through it
#     passes (it_iperf3_check --timed).
#  2. iperf2 connect-back accept failing (EMFILE): shim C's fd limit is set (prlimit on
#     the running process) so that an iperf2 -d test gets its 7 fds (client, server,
#     connect-back port, two splice pipes) and the server's connect-back does not: its
#     accept4 fails with EMFILE until the main connection ends after -t 3 (-b 10M, so
#     that relaying the test itself costs next to no CPU).  Asserted: the shim's CPU
#     over those 3 s is < 0.5 s (it used to spin), at most 5 "accept failed" lines;
#     with the limit lifted, a plain iperf2 test passes.
#  3. Strangers on the connect-back ports: during an iperf2 -d test (TCP, then UDP at
#     10 Mbit/s) a python peer bound to 127.0.0.2 connects to the shim's connect-back
#     port (learned from its debug log) twice (TCP; it must see its connection closed,
#     not held and not relayed) or sends 2 x 500 datagrams, paced (UDP).  Asserted: the
#     test completes with data both ways ([1] and [2] > 1 MiB for TCP; for UDP [2] loses at
#     most 1 % and counts no more datagrams than the server sent, so none of the
#     stranger's reached the client); the shim's summary says 1 connect-back connection
#     (TCP); warnings name the stranger and the server, at most one per second; UDP: the
#     closing line counts the dropped datagrams (up to 1000: the kernel may drop some
#     of the burst itself).  Then a scripted client sends a -d header whose connect-back
#     port (15499) is closed: the shim must log "iperf2 connect-back to client
#     127.0.0.1:15499: Connection refused; closing the server's connection".
#  4. A server that dies mid-test: kill -9 of the iperf3 server 2 s into a -t 10 test
#     (TCP, then -R); the client must end with an error within 4 s of the kill; the
#     shim must log "test ID: server 127.0.0.1:15491 closed|reset the control
#     connection during the test" (or "reset a data connection", whichever the shim saw
#     first); the server is restarted and a new -t 1 test through the same shim
#     passes.  The same with iperf2: kill -9 of `iperf -s` 2 s into a
#     -t 10 test: the client stops within 4 s (its write is reset, as it is directly),
#     the shim logs "server 127.0.0.1:15492 reset the connection"; after a restart a
#     -t 1 test passes and ends "closed" with no such warning.
#  5. (IPv6) Part 3's strangers again in a client / gateway / server namespace
#     topology (netns.sh, subnets 10.208.x, fd00:208:x): shim in the gateway on
#     [fd00:208:1::1]:5001, iperf2 servers (TCP, UDP) on [fd00:208:2::2]:5001; the stranger is the client
#     namespace's fd00:208:1::2 talking to the connect-back port on the gateway's
#     server-side fd00:208:2::1.  Same assertions, one stranger connection (TCP) and
#     300 datagrams (UDP).
# Every part prints what it measured ("# measured: ...": shim CPU from /proc/PID/stat,
# log lines) so that docs/notes.md can quote it.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
command -v iperf >/dev/null || it_skip "iperf (2.x) not installed"
command -v python3 >/dev/null || it_skip "python3 not installed"
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing or not executable"
it_require_root   # prlimit on another process, 127.0.0.2 as a source address

P_A=15480 P_B=15481 P_C=15482 P_I3=15491 P_I2=15492 P_LD=15485 P_LD2=15486 P_LD3=15487 P_CLOSED=15499
for p in $P_A $P_B $P_C $P_I3 $P_I2 $P_LD $P_LD2 $P_LD3 $P_CLOSED; do
    ss -Htln "( sport = :$p )" | grep -q . && it_fail "TCP port $p is in use here (run the test in a namespace of its own)"
done
ss -Huan "( sport = :$P_I2 )" | grep -q . && it_fail "UDP port $P_I2 is in use here"

FAILS=()
bad() { echo "FAIL: $*"; FAILS+=("$*"); }

# cpu_ms PID: user + system CPU time of PID so far, in ms.
TCK=$(getconf CLK_TCK)
cpu_ms() { awk -v t="$TCK" '{ print int(($14 + $15) * 1000 / t) }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# elapsed since START (date +%s.%N), in seconds with 2 decimals
since() { awk -v s="$1" -v n="$(date +%s.%N)" 'BEGIN { printf "%.2f", n - s }'; }

# start_iperf3_server / start_iperf2_servers: (re)start the servers, set their pids.
start_iperf3_server() {
    it_iperf3_server "i3srv$1" "$P_I3"
    I3_PID=$IT_IPERF3_PID
}
start_iperf2_servers() {
    it_bg "i2srv$1" timeout 600 iperf -s -p "$P_I2" -B 127.0.0.1
    I2_PID=$IT_LAST_PID
    it_wait_tcp x "$P_I2" 10 || it_fail "iperf2 TCP server did not listen"
    I2_PID=$(pgrep -P "$I2_PID" -x iperf | head -n 1)
}
start_iperf3_server 0
start_iperf2_servers 0
it_bg i2usrv timeout 600 iperf -s -u -p "$P_I2" -B 127.0.0.1
it_wait_udp 127.0.0.1 "$P_I2" 10 || it_fail "iperf2 UDP server did not bind"

# =====================================================================================
it_log "part 1: out of file descriptors (ulimit -n 40, 200 silent connections)"
it_bg shimB bash -c 'ulimit -n 40 && exec "$0" "$@"' "$SHIM" --listen "127.0.0.1:$P_B" \
    --upstream "127.0.0.1:$P_I3" --handshake-timeout 2
SHIMB_PID=$IT_LAST_PID
it_wait_tcp x "$P_B" 10 || { cat "$IT_TMP/shimB.log"; it_fail "shim B did not listen"; }
[ "$(awk '/^Max open files/ { print $4 }' "/proc/$SHIMB_PID/limits")" = 40 ] || it_fail "shim B's fd limit is not 40"
sleep 0.2   # let it settle: the fd count below is the idle baseline
fd0=$(it_fd_count "$SHIMB_PID")
cpu0=$(cpu_ms "$SHIMB_PID")
t0=$(date +%s.%N)
python3 - "$P_B" >"$IT_TMP/flood.out" 2>&1 <<'PYEOF'
import select, socket, sys, time
port, N, HOLD = int(sys.argv[1]), 200, 4.0
socks = []
for i in range(N):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    socks.append(s)
closed, end = set(), time.monotonic() + HOLD
while time.monotonic() < end:
    live = [s for s in socks if s.fileno() not in closed]
    r, _, _ = select.select(live, [], [], 0.1) if live else ([], [], time.sleep(0.1))
    for s in r:
        try: d = s.recv(16)
        except OSError: d = b""
        if d == b"": closed.add(s.fileno())
print("opened %d, closed by the shim during the %.0f s hold: %d" % (N, HOLD, len(closed)))
for s in socks: s.close()
PYEOF
flood_s=$(since "$t0")
cpu1=$(cpu_ms "$SHIMB_PID")
sed 's/^/# /' "$IT_TMP/flood.out"
n_fd=$(grep -c "out of file descriptors" "$IT_TMP/shimB.log")
refused=$(grep -o "refused [0-9]* client" "$IT_TMP/shimB.log" | awk '{ s += $2 } END { print s + 0 }')
it_log "measured: flood of ${flood_s} s: shim CPU $((cpu1 - cpu0)) ms, $n_fd 'out of file descriptors' line(s), $refused client(s) refused in them, $(grep -c 'no iperf cookie' "$IT_TMP/shimB.log") handshake-timeout line(s)"
grep "out of file descriptors\|accepting clients again" "$IT_TMP/shimB.log" | sed 's/^/#   /'
max_lines=$(awk -v s="$flood_s" 'BEGIN { print int(s) + 3 }')
[ "$n_fd" -ge 1 ] || bad "part 1: no 'out of file descriptors' line: was the limit reached?"
[ "$n_fd" -le "$max_lines" ] || bad "part 1: $n_fd 'out of file descriptors' lines in ${flood_s} s (at most $max_lines)"
[ "$refused" -gt 0 ] || bad "part 1: no refused client counted"
[ $((cpu1 - cpu0)) -lt 1000 ] || bad "part 1: shim used $((cpu1 - cpu0)) ms of CPU over the flood"
it_wait_fd_count "$SHIMB_PID" "$fd0" 10 || { bad "part 1: fd count $(it_fd_count "$SHIMB_PID") after the flood, was $fd0"; it_fd_list "$SHIMB_PID" | sed 's/^/#   /'; }
it_iperf3_json "$IT_TMP/after_flood.json" 30 -c 127.0.0.1 -p "$P_B" -t 1
r=$(it_iperf3_check "$IT_TMP/after_flood.json" --timed) || bad "part 1: iperf3 test after the flood: $r"
it_log "iperf3 -t 1 after the flood: $r"
grep -q "accepting clients again" "$IT_TMP/shimB.log" || bad "part 1: no 'accepting clients again' line"
it_stop_pid "$SHIMB_PID"

# =====================================================================================
it_log "part 2: iperf2 connect-back port out of fds (EMFILE on its accept4)"
it_start_shim shimC -- --listen "127.0.0.1:$P_C" --upstream "127.0.0.1:$P_I3" \
    --upstream-iperf2 "127.0.0.1:$P_I2" --handshake-timeout 3 --log-level debug
SHIMC_PID=$SHIM_PID
sleep 0.2
# the lowest limit that leaves exactly 7 free fd numbers below it
limit=$(python3 - "$SHIMC_PID" <<'PYEOF'
import os, sys
used = {int(f) for f in os.listdir("/proc/%s/fd" % sys.argv[1])}
free, L = 0, 0
while free < 7:
    if L not in used: free += 1
    L += 1
print(L)
PYEOF
)
# only the soft limit (raising a hard limit back may need CAP_SYS_RESOURCE)
hard=$(awk '/^Max open files/ { print $5 }' "/proc/$SHIMC_PID/limits")
soft=$(awk '/^Max open files/ { print $4 }' "/proc/$SHIMC_PID/limits")
setlimit() {
    python3 -c 'import resource, sys; h = sys.argv[3]; h = resource.RLIM_INFINITY if h == "unlimited" else int(h)
resource.prlimit(int(sys.argv[1]), resource.RLIMIT_NOFILE, (int(sys.argv[2]), h))' "$SHIMC_PID" "$1" "$hard"
}
setlimit "$limit" || it_fail "prlimit on the shim failed"
it_log "shim C: $(it_fd_count "$SHIMC_PID") fds open, limit set to $limit"
cpu0=$(cpu_ms "$SHIMC_PID")
t0=$(date +%s.%N)
timeout 40 iperf -c 127.0.0.1 -p "$P_C" -t 3 -b 10M -d -L "$P_LD" >"$IT_TMP/emfile_d.out" 2>&1 &
cpid=$!
# the main connection ends after -t 3: measure the spin window while it runs
it_wait_log_count "$IT_TMP/shimC.log" "accept failed" 1 5 || bad "part 2: no 'accept failed' line on the connect-back port"
sleep 2
cpu1=$(cpu_ms "$SHIMC_PID"); win=$(since "$t0")
wait "$cpid"; crc=$?
n_acc=$(grep -c "accept failed" "$IT_TMP/shimC.log")
it_log "measured: connect-back accept failing for ~${win} s: shim CPU $((cpu1 - cpu0)) ms, $n_acc 'accept failed' line(s); the client exited $crc after $(since "$t0") s"
grep "accept failed\|connect-back to client" "$IT_TMP/shimC.log" | sed 's/^/#   /'
[ $((cpu1 - cpu0)) -lt 500 ] || bad "part 2: shim used $((cpu1 - cpu0)) ms of CPU in ${win} s with the connect-back failing (spinning?)"
[ "$n_acc" -le 5 ] || bad "part 2: $n_acc 'accept failed' lines (at most one a second)"
setlimit "$soft" || bad "part 2: could not restore the shim's fd limit"
timeout 30 iperf -c 127.0.0.1 -p "$P_C" -t 1 >"$IT_TMP/emfile_after.out" 2>&1
b=$(it_iperf2_streams "$IT_TMP/emfile_after.out" | awk '$1 == "1" { print $2 }')
[ "${b:-0}" -gt 1048576 ] || { bad "part 2: plain iperf2 test afterwards moved ${b:-0} bytes"; cat "$IT_TMP/emfile_after.out"; }
it_stop_pid "$SHIMC_PID"

# =====================================================================================
it_log "part 3: strangers on the connect-back ports"
it_start_shim shimA -- --listen "127.0.0.1:$P_A" --upstream "127.0.0.1:$P_I3" \
    --upstream-iperf2 "127.0.0.1:$P_I2" --handshake-timeout 3 --udp-linger 2 --log-level debug
SHIMA_PID=$SHIM_PID
# stranger.py tcp|udp SRC DST PORT N: connect from SRC to DST:PORT, or send N datagrams
cat >"$IT_TMP/stranger.py" <<'PYEOF'
import socket, sys, time
kind, src, dst, port, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
if kind == "tcp":
    s = socket.socket(fam); s.settimeout(3); s.bind((src, 0))
    s.connect((dst, port))
    try:
        s.sendall(b"\x80\x00\x00\x00" + b"X" * 1000)
        d = s.recv(100)
        print("closed" if d == b"" else "got data")
    except ConnectionResetError: print("closed")
    except socket.timeout: print("held open")
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((src, 0))
    for i in range(n):
        s.sendto(b"S" * 100, (dst, port))
        if i % 25 == 24: time.sleep(0.002)   # paced: the shim's socket buffer is finite
    print("sent %d" % n)
PYEOF
# back_port LOG N: the shim port of the N-th "connect back to shim port" line, polled.
back_port() {
    local i p
    for i in $(seq 100); do
        p=$(grep -o "connect back to shim port [0-9]*" "$1" | sed -n "${2}p" | grep -o "[0-9]*$")
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.05
    done
    return 1
}
cpu0=$(cpu_ms "$SHIMA_PID")
timeout 40 iperf -c 127.0.0.1 -p "$P_A" -t 3 -d -L "$P_LD2" >"$IT_TMP/stranger_tcp.out" 2>&1 &
cpid=$!
bp=$(back_port "$IT_TMP/shimA.log" 1) || bad "part 3: no connect-back port in the shim's log"
s1=$(python3 "$IT_TMP/stranger.py" tcp 127.0.0.2 127.0.0.1 "${bp:-1}" 0)
s2=$(python3 "$IT_TMP/stranger.py" tcp 127.0.0.2 127.0.0.1 "${bp:-1}" 0)
wait "$cpid"
it_log "TCP stranger on shim port $bp: $s1, $s2"
[ "$s1" = closed ] && [ "$s2" = closed ] || bad "part 3: TCP stranger: '$s1', '$s2' (want its connection closed)"
it_iperf2_streams "$IT_TMP/stranger_tcp.out" >"$IT_TMP/stranger_tcp.streams"
sed 's/^/#   /' "$IT_TMP/stranger_tcp.streams"
for id in 1 2; do
    b=$(awk -v i=$id '$1 == i { print $2 }' "$IT_TMP/stranger_tcp.streams")
    [ "${b:-0}" -gt 1048576 ] || { bad "part 3: TCP -d stream [$id] moved ${b:-0} bytes"; cat "$IT_TMP/stranger_tcp.out"; }
done
it_wait_log_count "$IT_TMP/shimA.log" "iperf2 test: client .*mode dualtest" 1 10 || bad "part 3: no end line for the -d test"
grep -q "mode dualtest.*: 1 connection(s)" "$IT_TMP/shimA.log" || bad "part 3: the shim's -d line does not say 1 connect-back connection: $(it_iperf2_shim_lines "$IT_TMP/shimA.log")"
n_w=$(grep -c "refusing 127.0.0.2:[0-9]*: not the server 127.0.0.1:$P_I2" "$IT_TMP/shimA.log")
[ "$n_w" -ge 1 ] && [ "$n_w" -le 2 ] || bad "part 3: $n_w 'refusing 127.0.0.2 ... not the server' warnings (want 1 or 2)"
grep "refusing 127.0.0.2" "$IT_TMP/shimA.log" | sed 's/^/#   /'

timeout 40 iperf -c 127.0.0.1 -p "$P_A" -u -b 10M -t 3 -d -L "$P_LD3" >"$IT_TMP/stranger_udp.out" 2>&1 &
cpid=$!
bp=$(back_port "$IT_TMP/shimA.log" 2) || bad "part 3: no UDP connect-back port in the shim's log"
s1=$(python3 "$IT_TMP/stranger.py" udp 127.0.0.2 127.0.0.1 "${bp:-1}" 500)
s2=$(python3 "$IT_TMP/stranger.py" udp 127.0.0.2 127.0.0.1 "${bp:-1}" 500)
wait "$cpid"
it_log "UDP stranger on shim port $bp: $s1, $s2"
# the client's receiver line for [2]: "... N/M (x%)": lost N of M datagrams
read -r lost total <<<"$(grep -E '^\[ *2\] .* [0-9]+/[0-9]+ \(' "$IT_TMP/stranger_udp.out" | tail -n 1 | sed -E 's/.* ([0-9]+)\/([0-9]+) \(.*/\1 \2/')"
it_log "client's connect-back stream [2]: lost ${lost:-?} of ${total:-?} datagrams"
# 10 Mbit/s of 1470-byte datagrams for 3 s is ~2550; 1000 more would be the stranger's
if [ -z "${total:-}" ] || [ "$total" -lt 1000 ] || [ "$total" -gt 3300 ] || [ $((lost * 100)) -gt "$total" ]; then
    bad "part 3: UDP -d stream [2]: lost ${lost:-?} of ${total:-?}"; cat "$IT_TMP/stranger_udp.out"
fi
it_wait_log_count "$IT_TMP/shimA.log" "connect-back port $bp closed: [0-9]+ datagram" 1 10 \
    || bad "part 3: no 'connect-back port $bp closed: N datagram(s) ... dropped' line"
n_w=$(grep -c "connect-back port $bp: dropping datagrams from 127.0.0.2" "$IT_TMP/shimA.log")
[ "$n_w" -ge 1 ] && [ "$n_w" -le 3 ] || bad "part 3: $n_w UDP stranger warnings (want 1 to 3)"
grep "connect-back port $bp" "$IT_TMP/shimA.log" | grep -v debug | sed 's/^/#   /'
it_log "measured: strangers: shim CPU $(( $(cpu_ms "$SHIMA_PID") - cpu0 )) ms for both -d tests"

# a -d header asking for a connect-back to a closed port (scripted client: a captured
# 2.1.8 plain header made a dual test, flags 0xc0010079, mPort $P_CLOSED), 1 s of data
cat >"$IT_TMP/closedcb.py" <<'PYEOF'
import socket, struct, sys, time
shim_port, cb_port = int(sys.argv[1]), int(sys.argv[2])
HDR = bytearray.fromhex("400100780000000100003c2d0000000000000000ffffff9c"
                        "000000000000000000000000000200010008000300000000"
                        "000000000000000000000000")
struct.pack_into(">I", HDR, 0, 0xc0010079)   # VERSION1 | EXTEND | LEN | RUN_NOW: -d
struct.pack_into(">I", HDR, 8, cb_port)
s = socket.create_connection(("127.0.0.1", shim_port))
s.sendall(bytes(HDR))
end = time.monotonic() + 1.0
while time.monotonic() < end:
    s.sendall(b"\0" * 65536)
s.shutdown(socket.SHUT_WR)
s.settimeout(5)
try:
    while s.recv(65536): pass
except OSError: pass
PYEOF
timeout 20 python3 "$IT_TMP/closedcb.py" "$P_A" "$P_CLOSED" || bad "part 3: scripted -d client failed"
it_wait_log_count "$IT_TMP/shimA.log" "iperf2 connect-back to client 127.0.0.1:$P_CLOSED: Connection refused; closing the server's connection" 1 10 \
    || bad "part 3: no 'iperf2 connect-back to client 127.0.0.1:$P_CLOSED: Connection refused' line"
grep "connect-back to client 127.0.0.1:$P_CLOSED" "$IT_TMP/shimA.log" | sed 's/^/#   /'

# =====================================================================================
it_log "part 4: a server that dies mid-test"
# kill_mid_test NAME SERVERPID CLIENT...: runs CLIENT in the background, kills SERVERPID
# with SIGKILL 2 s in, waits for the client; sets KILL_CLIENT_S (client exit after the
# kill) and KILL_CPU_MS (shim CPU from the kill to the client's exit).
kill_mid_test() {
    local name=$1 spid=$2 cpid tk c0; shift 2
    "$@" >"$IT_TMP/$name.out" 2>&1 &
    cpid=$!
    sleep 2
    c0=$(cpu_ms "$SHIMA_PID"); tk=$(date +%s.%N)
    kill -9 "$spid"
    wait "$cpid"
    KILL_CLIENT_S=$(since "$tk")
    KILL_CPU_MS=$(( $(cpu_ms "$SHIMA_PID") - c0 ))
}
for mode in "" -R; do
    n0=$(wc -l <"$IT_TMP/shimA.log")
    kill_mid_test "i3kill$mode" "$I3_PID" timeout 30 iperf3 -c 127.0.0.1 -p "$P_A" -t 10 $mode
    err=$(grep -o "iperf3: error - .*" "$IT_TMP/i3kill$mode.out")
    it_log "measured: iperf3 ${mode:-(TCP)} server killed: client ended ${KILL_CLIENT_S} s after the kill ('$err'), shim CPU ${KILL_CPU_MS} ms"
    awk -v s=$((n0 + 1)) 'NR >= s && !/ debug /' "$IT_TMP/shimA.log" | sed 's/^/#   /'
    awk -v t="$KILL_CLIENT_S" 'BEGIN { exit !(t < 4) }' || bad "part 4: iperf3 $mode client ended ${KILL_CLIENT_S} s after the kill"
    [ -n "$err" ] || bad "part 4: iperf3 $mode client printed no error"
    it_wait_log_count "$IT_TMP/shimA.log" "test [a-z0-9?]+: server 127.0.0.1:$P_I3 (closed|reset) (the control|a data) connection during the test" $((${#mode} / 2 + 1)) 5 \
        || bad "part 4: iperf3 $mode: no 'server 127.0.0.1:$P_I3 closed/reset the control/a data connection during the test' line"
    start_iperf3_server "$mode"
    it_iperf3_json "$IT_TMP/i3after$mode.json" 30 -c 127.0.0.1 -p "$P_A" -t 1 $mode
    r=$(it_iperf3_check "$IT_TMP/i3after$mode.json" --timed --mode "$([ "$mode" = -R ] && echo reverse || echo default)") \
        || bad "part 4: iperf3 $mode test after the restart: $r"
    it_log "after the restart: $r"
done

n0=$(wc -l <"$IT_TMP/shimA.log")
kill_mid_test i2kill "$I2_PID" timeout 30 iperf -c 127.0.0.1 -p "$P_A" -t 10
it_log "measured: iperf2 server killed: client ended ${KILL_CLIENT_S} s after the kill ($(grep -m1 -i "failed" "$IT_TMP/i2kill.out")), shim CPU ${KILL_CPU_MS} ms"
awk -v s=$((n0 + 1)) 'NR >= s && !/ debug /' "$IT_TMP/shimA.log" | sed 's/^/#   /'
awk -v t="$KILL_CLIENT_S" 'BEGIN { exit !(t < 4) }' || bad "part 4: iperf2 client ended ${KILL_CLIENT_S} s after the kill (it kept sending?)"
it_wait_log_count "$IT_TMP/shimA.log" "iperf2 test: client 127.0.0.1:[0-9]+, server 127.0.0.1:$P_I2, mode normal, .*server 127.0.0.1:$P_I2 reset the connection" 1 5 \
    || bad "part 4: no 'server 127.0.0.1:$P_I2 reset the connection' line for iperf2"
start_iperf2_servers 1
n0=$(wc -l <"$IT_TMP/shimA.log")
timeout 30 iperf -c 127.0.0.1 -p "$P_A" -t 1 >"$IT_TMP/i2after.out" 2>&1
b=$(it_iperf2_streams "$IT_TMP/i2after.out" | awk '$1 == "1" { print $2 }')
[ "${b:-0}" -gt 1048576 ] || { bad "part 4: iperf2 test after the restart moved ${b:-0} bytes"; cat "$IT_TMP/i2after.out"; }
it_wait_log_count "$IT_TMP/shimA.log" "iperf2 test: client .*mode normal.*closed$" 1 10 \
    || bad "part 4: the iperf2 test after the restart did not end 'closed'"
awk -v s=$((n0 + 1)) 'NR >= s && /reset the connection/' "$IT_TMP/shimA.log" | grep -q . \
    && bad "part 4: a normal iperf2 test was logged as a server reset"
it_log "after the restart: iperf2 [1] moved $b bytes"

# =====================================================================================
it_log "part 5: strangers on IPv6 connect-back ports (namespaces: client, gateway, server)"
. "$here/netns.sh"
NS_C4=10.208.1.2    NS_GC4=10.208.1.1    NS_GS4=10.208.2.1    NS_S4=10.208.2.2
NS_C6=fd00:208:1::2 NS_GC6=fd00:208:1::1 NS_GS6=fd00:208:2::1 NS_S6=fd00:208:2::2
ns_topology "flt-$$"
it_bg srv6 ip netns exec "$NS_S" timeout 600 iperf -s -V -p 5001 -B "$NS_S6"
it_bg srv6u ip netns exec "$NS_S" timeout 600 iperf -s -u -V -p 5001 -B "$NS_S6"
it_wait_tcp "$NS_S" x 5001 10 || it_fail "part 5: iperf2 v6 server did not start"
it_start_shim shim6 "$NS_G" -- --listen "[$NS_GC6]:5001" --upstream "[$NS_S6]:5001" \
    --handshake-timeout 3 --udp-linger 2 --log-level debug
L6=$IT_TMP/shim6.log
ns_exec "$NS_C" timeout 40 iperf -c "$NS_GC6" -V -p 5001 -t 3 -d >"$IT_TMP/v6_tcp.out" 2>&1 &
cpid=$!
bp=$(back_port "$L6" 1) || bad "part 5: no connect-back port in the v6 shim's log"
s1=$(ns_exec "$NS_C" python3 "$IT_TMP/stranger.py" tcp "$NS_C6" "$NS_GS6" "${bp:-1}" 0)
wait "$cpid"
it_log "v6 TCP stranger [$NS_C6] on [$NS_GS6]:$bp: $s1"
[ "$s1" = closed ] || bad "part 5: v6 TCP stranger: '$s1' (want its connection closed)"
for id in 1 2; do
    b=$(it_iperf2_streams "$IT_TMP/v6_tcp.out" | awk -v i=$id '$1 == i { print $2 }')
    [ "${b:-0}" -gt 1048576 ] || { bad "part 5: v6 TCP -d stream [$id] moved ${b:-0} bytes"; cat "$IT_TMP/v6_tcp.out"; }
done
it_wait_log_count "$L6" "mode dualtest.*: 1 connection\\(s\\)" 1 10 || bad "part 5: the v6 -d line does not say 1 connect-back connection"
grep -q "refusing \[$NS_C6\]:[0-9]*: not the server \[$NS_S6\]:5001" "$L6" || bad "part 5: no v6 'refusing ... not the server' warning"
grep "refusing" "$L6" | sed 's/^/#   /'
sleep 3   # Debian's 2.1.8 UDP server wants clients spaced (docs/notes.md)
ns_exec "$NS_C" timeout 40 iperf -c "$NS_GC6" -V -p 5001 -u -b 10M -t 3 -d >"$IT_TMP/v6_udp.out" 2>&1 &
cpid=$!
bp=$(back_port "$L6" 2) || bad "part 5: no v6 UDP connect-back port in the shim's log"
s1=$(ns_exec "$NS_C" python3 "$IT_TMP/stranger.py" udp "$NS_C6" "$NS_GS6" "${bp:-1}" 300)
wait "$cpid"
read -r lost total <<<"$(grep -E '^\[ *2\] .* [0-9]+/[0-9]+ \(' "$IT_TMP/v6_udp.out" | tail -n 1 | sed -E 's/.* ([0-9]+)\/([0-9]+) \(.*/\1 \2/')"
it_log "v6 UDP stranger on [$NS_GS6]:$bp: $s1; client's [2]: lost ${lost:-?} of ${total:-?}"
if [ -z "${total:-}" ] || [ "$total" -lt 1000 ] || [ "$total" -gt 3300 ] || [ $((lost * 100)) -gt "$total" ]; then
    bad "part 5: v6 UDP -d stream [2]: lost ${lost:-?} of ${total:-?}"; cat "$IT_TMP/v6_udp.out"
fi
it_wait_log_count "$L6" "connect-back port $bp closed: [0-9]+ datagram" 1 10 || bad "part 5: no v6 UDP 'closed: N datagram(s) ... dropped' line"
grep "connect-back port $bp" "$L6" | grep -v debug | sed 's/^/#   /'

if [ ${#FAILS[@]} -gt 0 ]; then
    it_log "shim A log (tail):"; grep -v " debug " "$IT_TMP/shimA.log" | tail -n 30 | sed 's/^/#   /'
    it_fail "${#FAILS[@]} check(s) failed"
fi
echo "ok"

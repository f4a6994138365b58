# Shared helpers for integration tests.  Source it; $SHIM is the binary under test.
# Every helper bounds its waits; cleanup runs on exit.
set -u
: "${SHIM:?SHIM must point at the iperf-shim binary}"
IT_TMP=$(mktemp -d /tmp/iperf-shim-test.XXXXXX)
IT_PIDS=()
IT_CLEANUPS=()

it_cleanup() {
    local rc=$? p c f
    for c in "${IT_CLEANUPS[@]}"; do eval "$c" >/dev/null 2>&1; done
    for p in "${IT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${IT_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    # A sanitizer report in any log (the shim exits cleanly on SIGTERM, so
    # LeakSanitizer has spoken by now) fails the test, whatever it asserted.
    for f in "$IT_TMP"/*.log; do
        [ -f "$f" ] || continue
        if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$f"; then
            echo "FAIL: sanitizer report in $(basename "$f"):"
            grep -E -A25 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$f" | head -60
            rc=1
        fi
    done
    if [ "${IT_KEEP:-0}" != 1 ]; then rm -rf "$IT_TMP"; fi
    exit $rc
}
trap it_cleanup EXIT

# Register a command to run at exit (e.g. deleting a namespace).
it_on_exit() { IT_CLEANUPS+=("$1"); }

it_fail() { echo "FAIL: $*"; exit 1; }
it_skip() { echo "$*"; exit 77; }
it_log()  { echo "# $*"; }

# it_bg NAME CMD...: start CMD in the background, output in $IT_TMP/NAME.log; sets IT_LAST_PID.
it_bg() {
    local name=$1; shift
    "$@" >"$IT_TMP/$name.log" 2>&1 &
    IT_LAST_PID=$!
    IT_PIDS+=("$IT_LAST_PID")
}

# it_wait_tcp [NETNS] HOST PORT [TIMEOUT_S]: poll until a TCP listener accepts.
it_wait_tcp() {
    local ns=""
    if [ $# -ge 3 ] && ip netns list | grep -qw "^$1"; then ns=$1; shift; fi
    local host=$1 port=$2 t=${3:-10} i
    for i in $(seq $((t * 20))); do
        if [ -n "$ns" ]; then
            ip netns exec "$ns" ss -Htln "sport = :$port" | grep -q . && return 0
        else
            ss -Htln "sport = :$port" | grep -q . && return 0
        fi
        sleep 0.05
    done
    return 1
}

# it_start_shim NAME [NETNS] -- ARGS...: start the shim (optionally in a netns) and wait for its port.
# The listen port is taken from the --listen argument.
it_start_shim() {
    local name=$1; shift
    local ns=""
    if [ "$1" != "--" ]; then ns=$1; shift; fi
    shift  # --
    local args=("$@") port="" i
    for ((i = 0; i < ${#args[@]}; i++)); do
        [ "${args[$i]}" = "--listen" ] && port=${args[$((i+1))]##*:}
    done
    if [ -n "$ns" ]; then
        it_bg "$name" ip netns exec "$ns" "$SHIM" "${args[@]}"
    else
        it_bg "$name" "$SHIM" "${args[@]}"
    fi
    SHIM_PID=$IT_LAST_PID
    if [ -n "$ns" ]; then it_wait_tcp "$ns" x "$port" 10; else it_wait_tcp x "$port" 10; fi \
        || { cat "$IT_TMP/$name.log"; it_fail "shim did not start listening on $port"; }
}

# it_fd_count PID: number of open fds of a process.
it_fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# it_require_root: skip the test when not root (netns, iptables).
it_require_root() { [ "$(id -u)" = 0 ] || it_skip "needs root"; }

# ---------------------------------------------------------------------------
# iperf3 helpers (t_iperf3_*.sh, t_hostile_peers.sh).
# IT_DIRECT=1 runs a test file without the shim (clients go straight to the
# server) to prove its assertions against plain iperf3; set SHIM=none then.
IT_DIRECT=${IT_DIRECT:-0}

# it_iperf3_server NAME PORT [ARGS...]: start `iperf3 -s` bound to 127.0.0.1
# (add -B ::1 in ARGS to override) and wait for it.  Sets IT_LAST_PID (the
# `timeout` wrapper) and IT_IPERF3_PID (the iperf3 process itself).
it_iperf3_server() {
    local name=$1 port=$2 i; shift 2
    local bind=(-B 127.0.0.1)
    for i in "$@"; do [ "$i" = -B ] && bind=(); done
    it_bg "$name" timeout 1800 iperf3 -s -p "$port" "${bind[@]}" "$@"
    it_wait_tcp x "$port" 10 || { cat "$IT_TMP/$name.log"; it_fail "iperf3 server did not listen on $port"; }
    IT_IPERF3_PID=$(pgrep -P "$IT_LAST_PID" -x iperf3 | head -n 1)
    [ -n "$IT_IPERF3_PID" ] || IT_IPERF3_PID=$IT_LAST_PID
}

# it_iperf3_json OUT TIMEOUT_S ARGS...: run `iperf3 -J ARGS` bounded; JSON to OUT,
# stderr to OUT.err; returns the client's exit status (124 on timeout).
# Note: iperf3 3.12 with -J exits 0 even on errors: check the "error" key.
it_iperf3_json() {
    local out=$1 t=$2; shift 2
    timeout "$t" iperf3 -J "$@" >"$out" 2>"$out.err"
}

# it_iperf3_check FILE [OPTIONS]: assert on one iperf3 -J client result.
#  --mode default|reverse|bidir   (default: default)
#  -P N                           streams asked for (default 1)
#  --timed                        time-limited test: every receiving stream got > 0 bytes
#  --sent N                       -n/-k: bytes sent must be exactly N (bidir: one
#                                 direction exactly N, the other <= N)
#  --omit                         -O was used: counters restart at different moments on
#                                 each side, receiver may exceed sender (bounded)
#  --server-output                --get-server-output: server's report must be present
#  --per-stream-note              report per-stream receiver > sender as a NOTE, not a failure
#                                 (a relay that re-pairs --bidir streams by role makes
#                                 iperf3's by-id matching pair different connections)
#  --c2s-min R                    client-to-server direction: received >= R x sent (the
#                                 shim's end-of-test fence delivers everything before TEST_END)
#  --s2c-min R                    server-to-client direction: received >= R x sent
#  --stream-min R                 every stream (as iperf3 paired them by id): receiver >= R x
#                                 sender, and receiver <= sender whatever --per-stream-note says
#  --c2s-stream-min R             the same for the streams the client sends on only (those the
#                                 fence makes exact; server->client streams lose what is in
#                                 flight at TEST_END, ~10 % at -t 1)
# TCP relation asserted (measured on direct 3.12 runs): receiver bytes <= sender
# bytes in each direction, and sender - receiver <= what can sit in socket buffers
# (per stream 2*(tcp_wmem max + tcp_rmem max) + 8 MiB of relay buffers).
# Prints one summary line; exits non-zero with reasons on failure.
it_iperf3_check() {
    python3 - "$@" <<'PYEOF'
import json, sys
args = sys.argv[1:]
f = args.pop(0)
mode, P, timed, sent, omit, srvout, psnote = "default", 1, False, None, False, False, False
c2s_min, s2c_min, stream_min, c2s_stream_min = None, None, None, None
while args:
    a = args.pop(0)
    if a == "--mode": mode = args.pop(0)
    elif a == "-P": P = int(args.pop(0))
    elif a == "--timed": timed = True
    elif a == "--sent": sent = int(args.pop(0))
    elif a == "--omit": omit = True
    elif a == "--server-output": srvout = True
    elif a == "--per-stream-note": psnote = True
    elif a == "--c2s-min": c2s_min = float(args.pop(0))
    elif a == "--s2c-min": s2c_min = float(args.pop(0))
    elif a == "--stream-min": stream_min = float(args.pop(0))
    elif a == "--c2s-stream-min": c2s_stream_min = float(args.pop(0))
    else: sys.exit("it_iperf3_check: bad option " + a)
def sysctl_max(name):
    try:
        return int(open("/proc/sys/net/ipv4/" + name).read().split()[-1])
    except Exception:
        return 64 << 20
per_stream = 2 * (sysctl_max("tcp_wmem") + sysctl_max("tcp_rmem")) + (8 << 20)
bad, notes = [], []
try:
    d = json.load(open(f))
except Exception as e:
    print("FAIL: %s: not JSON (%s)" % (f, e)); sys.exit(1)
if "error" in d:
    print("FAIL: iperf3 reported error: %r" % d["error"]); sys.exit(1)
ts = d.get("start", {}).get("test_start", {})
if ts.get("num_streams") != P: bad.append("test_start.num_streams=%r, want %d" % (ts.get("num_streams"), P))
if ts.get("protocol") != "TCP": bad.append("protocol=%r" % ts.get("protocol"))
if bool(ts.get("reverse")) != (mode == "reverse"): bad.append("test_start.reverse=%r for mode %s" % (ts.get("reverse"), mode))
e = d.get("end", {})
streams = e.get("streams", [])
nconn = 2 * P if mode == "bidir" else P
if len(streams) != nconn: bad.append("end.streams has %d entries, want %d" % (len(streams), nconn))
pairs = [("sum_sent", "sum_received")]
if mode == "bidir": pairs.append(("sum_sent_bidir_reverse", "sum_received_bidir_reverse"))
elif "sum_sent_bidir_reverse" in e: bad.append("bidir sums present in mode %s" % mode)
summary = []
sents = []
# direction of each (sent, received) pair of sums
dirname = {"sum_sent": "s2c" if mode == "reverse" else "c2s", "sum_sent_bidir_reverse": "s2c"}
for ks, kr in pairs:
    if ks not in e or kr not in e:
        bad.append("missing end.%s / end.%s" % (ks, kr)); continue
    s, r = e[ks]["bytes"], e[kr]["bytes"]
    sents.append(s)
    summary.append("%s=%d %s=%d diff=%d" % (ks, s, kr, r, s - r))
    dmin = c2s_min if dirname[ks] == "c2s" else s2c_min
    if dmin is not None and s > 0 and r < dmin * s:
        bad.append("%s: received %d < %.3f x sent %d (ratio %.4f)" % (dirname[ks], r, dmin, s, r / s))
    bound = P * per_stream
    if s <= 0: bad.append("%s is %d" % (ks, s))
    if timed and r <= 0: bad.append("%s is %d in a timed test" % (kr, r))
    if omit:
        if abs(s - r) > bound: bad.append("|%s - %s| = %d > %d" % (ks, kr, abs(s - r), bound))
    else:
        if r > s: bad.append("%s=%d > %s=%d (receiver counted more than was sent)" % (kr, r, ks, s))
        if s - r > bound: bad.append("%s - %s = %d > in-flight bound %d" % (ks, kr, s - r, bound))
if sent is not None and sents:
    if mode == "bidir":
        if sent not in sents or max(sents) > sent: bad.append("bidir sent %r, want one == %d and none above" % (sents, sent))
    elif sents[0] != sent: bad.append("sent %d bytes, want exactly %d" % (sents[0], sent))
# per stream (matched by id by iperf3 itself): receiver <= sender; timed: receiver > 0
for st in streams:
    snd, rcv = st.get("sender", {}), st.get("receiver", {})
    sid = snd.get("socket")
    sb, rb = snd.get("bytes", -1), rcv.get("bytes", -1)
    if timed and rb <= 0: bad.append("stream socket %s: receiver got %d bytes" % (sid, rb))
    if not omit and rb > sb:
        msg = ("per-stream: client socket %s: receiver %d > sender %d (iperf3 matched this stream "
               "by id with another connection's counters)" % (sid, rb, sb))
        if psnote and stream_min is None and c2s_stream_min is None: notes.append(msg)
        else: bad.append(msg)
    smin = stream_min
    if smin is None and snd.get("sender", mode != "reverse"):
        smin = c2s_stream_min
    if smin is not None and sb > 0 and rb < smin * sb:
        bad.append("per-stream: client socket %s: receiver %d < %.2f x sender %d (ratio %.4f)"
                   % (sid, rb, smin, sb, rb / sb))
if srvout:
    so = d.get("server_output_text") or json.dumps(d.get("server_output_json", ""))
    if "receiver" not in so and "sender" not in so: bad.append("no server output (server_output_text=%r)" % so[:200])
if bad:
    print("FAIL: %s: %s" % (f, "; ".join(bad)))
    print("      " + " | ".join(summary)); sys.exit(1)
print("ok " + " | ".join(summary) + "".join("\n      NOTE " + n for n in notes))
PYEOF
}

# it_iperf3_error FILE: print the "error" value of an iperf3 -J result (empty if none).
it_iperf3_error() {
    python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("error", ""))
except Exception as e: print("<unparseable: %s>" % e)' "$1"
}

# it_shim_test_lines LOG: the shim's end-of-test summary lines, whole, one per line:
#   <time> info  test ID: client A, server B, mode M, streams N[ each way], roles R,
#   bytes client->server X, server->client Y, OUTCOME
# (other "test ID: ..." lines -- warnings, debug -- are not summaries).
it_shim_test_lines() { grep -E '^(\S+\s+)?((info|warn)\s+)?test \S+: client .*, mode .*, streams [0-9]+' "$1"; }

# it_wait_log_count LOG REGEX N [TIMEOUT_S]: wait until LOG has >= N lines matching REGEX (grep -E -i).
it_wait_log_count() {
    local log=$1 re=$2 n=$3 t=${4:-5} i
    for i in $(seq $((t * 20))); do
        [ "$(grep -Eic -- "$re" "$log")" -ge "$n" ] && return 0
        sleep 0.05
    done
    return 1
}

# it_wait_fd_count PID N [TIMEOUT_S]: poll until PID has exactly N open fds.
it_wait_fd_count() {
    local pid=$1 n=$2 t=${3:-10} i
    for i in $(seq $((t * 10))); do
        [ "$(it_fd_count "$pid")" -eq "$n" ] && return 0
        sleep 0.1
    done
    return 1
}

# it_fd_list PID: one line per open fd with its target (for failure reports).
it_fd_list() { local f; for f in /proc/$1/fd/*; do echo "$(basename "$f") -> $(readlink "$f")"; done 2>/dev/null; }

# it_tap LISTEN_PORT TARGET_PORT OUT: a one-connection recording relay on 127.0.0.1
# (python, background, bounded to 30 s).  When both directions are done it writes
# to OUT the server-to-client bytes in hex followed by "|EOF" or "|RST".
it_tap() {
    it_bg "tap$1" timeout 30 python3 -c '
import socket, sys, threading
lp, tp, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", lp)); ls.listen(1)
c, _ = ls.accept(); u = socket.create_connection(("127.0.0.1", tp))
rec, end = bytearray(), ["|EOF"]
def pump(a, b, keep):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            if keep: rec.extend(d)
            b.sendall(d)
    except ConnectionResetError:
        if keep: end[0] = "|RST"
    except OSError: pass
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
t = threading.Thread(target=pump, args=(u, c, True)); t.start(); pump(c, u, False); t.join()
open(out, "w").write(rec.hex() + end[0] + "\n")
' "$1" "$2" "$3"
    it_wait_tcp x "$1" 10 || it_fail "tap on $1 did not start"
}

# ---------------------------------------------------------------------------
# iperf2 helpers (t_iperf2_*.sh).

# it_iperf2_streams FILE: the final per-stream reports of an iperf 2.x client
# (no -i), one line per report id: "ID BYTES LOCALPORT PEERPORT TRANSFER".
#  ID        as printed: "1", "*1" (reverse/full-duplex: the stream the client
#            receives), "SUM"
#  BYTES     the Transfer column in bytes (KBytes/MBytes/GBytes are 2^10/2^20/2^30)
#  LOCALPORT PEERPORT  from the id's "local A port X connected with B port Y" line
#            (a "*N" or "SRN" id takes N's; "-" when there is none, e.g. SUM)
#  TRANSFER  the Transfer column verbatim, spaces as '_' ("10.0_MBytes")
# TCP: the report line "[ ID] 0.0000-T sec  N Unit  rate ...".  UDP: the same
# line; the "Server Report:" block after a client's stream is listed with the
# id "SR<ID>".  For an id reported twice, the last report wins.
it_iperf2_streams() {
    python3 - "$1" <<'PYEOF'
import re, sys
units = {"Bytes": 1, "KBytes": 1 << 10, "MBytes": 1 << 20, "GBytes": 1 << 30, "TBytes": 1 << 40}
rep = re.compile(r'^\[\s*(\*?\s*\d+|SUM)\]\s+(\d+\.\d+)\s*-\s*(\d+\.\d+)\s+sec\s+(\d+(?:\.\d+)?)\s+([KMGT]?Bytes)\b')
con = re.compile(r'^\[\s*(\*?\s*\d+)\]\s+local\s+(\S+)\s+port\s+(\d+)\s+connected\s+with\s+(\S+)\s+port\s+(\d+)')
ports, out, order, server_report = {}, {}, [], False
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    if "Server Report:" in line:
        server_report = True
        continue
    m = con.match(line)
    if m:
        ports[m.group(1).replace(" ", "")] = (m.group(3), m.group(5))
        continue
    m = rep.match(line)
    if not m:
        continue
    i = m.group(1).replace(" ", "")
    if server_report:
        i = "SR" + i
        server_report = False
    b = int(round(float(m.group(4)) * units[m.group(5)]))
    if i not in out:
        order.append(i)
    out[i] = (b, m.group(4) + "_" + m.group(5))
for i in order:
    base = i[2:] if i.startswith("SR") else i
    lp, pp = ports.get(base) or ports.get(base.lstrip("*")) or ("-", "-")
    print(i, out[i][0], lp, pp, out[i][1])
PYEOF
}

# it_iperf2_shim_lines LOG: the shim's iperf2 end-of-test lines, whole:
#   <time> info  iperf2 test: client A, server B, mode M, bytes client->server X,
#   server->client Y[, connect-back via shim port P to client port Q: N connection(s),
#   bytes server->client X2, client->server Y2], OUTCOME
it_iperf2_shim_lines() { grep -E '^(\S+\s+)?((info|warn)\s+)?iperf2 test: client ' "$1"; }

# ---------------------------------------------------------------------------
# UDP helpers (t_udp_iperf3.sh, t_udp_iperf2.sh; usable by any UDP test).

# it_wait_udp HOST PORT [TIMEOUT_S]: poll until a UDP socket is bound to PORT.
it_wait_udp() {
    local port=$2 t=${3:-10} i
    for i in $(seq $((t * 20))); do
        ss -Huan "sport = :$port" | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

# it_udp_iperf3_check FILE [--mode default|reverse|bidir] [-P N] [--len L]
# Asserts on one `iperf3 -u -J` client result (3.12 key layout):
#  - no "error" key; test_start: protocol UDP, num_streams N, reverse flag, blksize L;
#  - every direction (one, two with --bidir): sum_sent and sum_received both count
#    packets (> 0) and the receiver got bytes; the receiver got no more bytes than
#    were sent and its highest sequence number is not above the sender's count
#    (a relay that duplicated or invented datagrams would break these);
#  - end.streams has N entries (2N with --bidir), each with packets > 0;
#  - when the server ran with -J and the client with --get-server-output: the
#    server's own interval reports show as many streams, each with packets > 0
#    (sent or received by the server itself).
# Prints one line per direction: sent/received packets, iperf3's loss (gaps in
# sequence numbers seen by the receiver: it does not see datagrams lost after
# the last one it received, nor those that arrived before it entered
# TEST_RUNNING, which it drops uncounted), the "true" loss 1 - received bytes /
# sent bytes (counts both), and the receiver's jitter.  Also writes FILE.metrics:
# one line per direction "DIR trueloss_pct iperf_lost_pct jitter_ms first_interval_lost".
it_udp_iperf3_check() {
    python3 - "$@" <<'PYEOF'
import json, sys
args = sys.argv[1:]
f = args.pop(0)
mode, P, blk = "default", 1, None
while args:
    a = args.pop(0)
    if a == "--mode": mode = args.pop(0)
    elif a == "-P": P = int(args.pop(0))
    elif a == "--len": blk = int(args.pop(0))
    else: sys.exit("it_udp_iperf3_check: bad option " + a)
bad, lines, metrics = [], [], []
try:
    d = json.load(open(f))
except Exception as e:
    print("FAIL: %s: not JSON (%s)" % (f, e)); sys.exit(1)
if "error" in d:
    print("FAIL: iperf3 reported error: %r" % d["error"]); sys.exit(1)
ts = d.get("start", {}).get("test_start", {})
if ts.get("protocol") != "UDP": bad.append("protocol=%r" % ts.get("protocol"))
if ts.get("num_streams") != P: bad.append("num_streams=%r, want %d" % (ts.get("num_streams"), P))
if bool(ts.get("reverse")) != (mode == "reverse"): bad.append("reverse=%r in mode %s" % (ts.get("reverse"), mode))
if blk is not None and ts.get("blksize") != blk: bad.append("blksize=%r, want %d" % (ts.get("blksize"), blk))
e = d.get("end", {})
nconn = 2 * P if mode == "bidir" else P
dirs = [("s->c" if mode == "reverse" else "c->s", "sum_sent", "sum_received", "sum")]
if mode == "bidir":
    dirs.append(("s->c", "sum_sent_bidir_reverse", "sum_received_bidir_reverse", "sum_bidir_reverse"))
ivs = d.get("intervals", [])
for name, ks, kr, kiv in dirs:
    if ks not in e or kr not in e:
        bad.append("%s: missing end.%s/end.%s" % (name, ks, kr)); continue
    s, r = e[ks], e[kr]
    sp, rp, sb, rb = s.get("packets", 0), r.get("packets", 0), s.get("bytes", 0), r.get("bytes", 0)
    if sp <= 0: bad.append("%s: sender counted %d packets" % (name, sp))
    if rp <= 0 or rb <= 0: bad.append("%s: receiver counted %d packets, %d bytes" % (name, rp, rb))
    if rb > sb: bad.append("%s: receiver got %d bytes > %d sent (duplicated datagrams?)" % (name, rb, sb))
    if rp > sp: bad.append("%s: receiver's highest sequence %d > %d packets sent" % (name, rp, sp))
    tl = 100.0 * (1 - rb / sb) if sb > 0 else 100.0
    fil = ivs[0].get(kiv, {}).get("lost_packets", 0) if ivs and kiv in ivs[0] else 0
    lines.append("%s: sent %d recv %d pkts, iperf3 lost %d (%.2f%%), true loss %.2f%%, jitter %.3f ms"
                 % (name, sp, rp, r.get("lost_packets", 0), r.get("lost_percent", 0), tl, r.get("jitter_ms", 0)))
    metrics.append("%s %.4f %.4f %.4f %d" % (name, tl, r.get("lost_percent", 0), r.get("jitter_ms", 0), fil))
streams = e.get("streams", [])
if len(streams) != nconn: bad.append("end.streams has %d entries, want %d" % (len(streams), nconn))
for st in streams:
    u = st.get("udp", {})
    if u.get("packets", 0) <= 0 or u.get("bytes", 0) <= 0:
        bad.append("stream socket %s: packets %r bytes %r" % (u.get("socket"), u.get("packets"), u.get("bytes")))
so = d.get("server_output_json")
if so is not None:
    if "error" in so: bad.append("server reported error: %r" % so["error"])
    # the server's own counts: its interval reports (end.streams mixes in the peer's)
    own = {}
    for iv in so.get("intervals", []):
        for st in iv.get("streams", []):
            k = st.get("socket")
            own[k] = own.get(k, 0) + st.get("packets", 0)
    if len(own) != nconn: bad.append("server's intervals show %d streams, want %d" % (len(own), nconn))
    for k, n in sorted(own.items()):
        if n <= 0: bad.append("server stream socket %s counted %d packets itself" % (k, n))
open(f + ".metrics", "w").write("".join(m + "\n" for m in metrics))
if bad:
    print("FAIL: %s: %s" % (f, "; ".join(bad)))
    for l in lines: print("      " + l)
    sys.exit(1)
print(" | ".join(lines))
PYEOF
}

# it_udp_metric FILE DIR FIELD: one number from FILE.metrics written by
# it_udp_iperf3_check (FIELD: trueloss, lost, jitter, firstlost).
it_udp_metric() {
    awk -v d="$2" -v f="$3" 'BEGIN { c["trueloss"] = 2; c["lost"] = 3; c["jitter"] = 4; c["firstlost"] = 5 }
        $1 == d { print $(c[f]); exit }' "$1.metrics"
}

# it_frag_counters: "IPv4FragCreates IPv6FragCreates" from /proc/net/snmp{,6}
# (host-wide: other traffic on the machine adds to them).
it_frag_counters() {
    local v4 v6
    v4=$(awk '/^Ip: / { if (!h) { for (i = 2; i <= NF; i++) n[$i] = i; h = 1 } else print $(n["FragCreates"]) }' /proc/net/snmp)
    v6=$(awk '$1 == "Ip6FragCreates" { print $2 }' /proc/net/snmp6)
    echo "${v4:-0} ${v6:-0}"
}

# it_proc_rss_kb PID: resident set size of PID in KiB.
it_proc_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# it_udp_sink NAME OUT HOST PORT...: a python UDP sink bound to HOST on each PORT
# (background, bounded to 30 min).  It counts datagrams and bytes per port and
# keeps OUT up to date (rewritten atomically, at most every 0.1 s, and on
# SIGTERM): one line "PORT DATAGRAMS BYTES" per port.  The first datagram each
# port receives is saved in hex to OUT.first.PORT.  Sets IT_LAST_PID.
it_udp_sink() {
    local name=$1 out=$2 host=$3 p; shift 3
    it_bg "$name" timeout 1800 python3 -c '
import os, select, signal, socket, sys, time
out, host, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
socks, cnt, byt = {}, {}, {}
for p in ports:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((host, p)); s.setblocking(False)
    socks[s.fileno()] = (s, p); cnt[p] = 0; byt[p] = 0
def dump():
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        for p in ports: fh.write("%d %d %d\n" % (p, cnt[p], byt[p]))
    os.replace(tmp, out)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
dump(); last = time.monotonic(); dirty = False
while not stop:
    try: r, _, _ = select.select(list(socks), [], [], 0.1)
    except InterruptedError: r = []
    for fd in r:
        s, p = socks[fd]
        while True:
            try: dg = s.recv(65536)
            except (BlockingIOError, InterruptedError): break
            except OSError: break
            if cnt[p] == 0:
                open("%s.first.%d" % (out, p), "w").write(dg.hex() + "\n")
            cnt[p] += 1; byt[p] += len(dg); dirty = True
    if dirty and time.monotonic() - last >= 0.1:
        dump(); last = time.monotonic(); dirty = False
dump()
' "$out" "$host" "$@"
    for p in "$@"; do
        it_wait_udp "$host" "$p" 10 || { cat "$IT_TMP/$name.log"; it_fail "UDP sink did not bind $host:$p"; }
    done
    for p in $(seq 50); do [ -s "$out" ] && break; sleep 0.05; done
}

# it_udp_sink_count OUT PORT: datagrams the sink has counted on PORT so far.
it_udp_sink_count() { awk -v p="$2" '$1 == p { print $2; f = 1 } END { if (!f) print 0 }' "$1" 2>/dev/null; }

# it_stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL (one process we started).
it_stop_pid() {
    local p=$1
    kill "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
}

# it_iperf2_udp_reports FILE: checks an `iperf -c -u` client output.  Prints
# "REPORTS SENT LOST TOTAL" (Server Reports found, sum of "Sent N datagrams",
# sum of the reports' Lost and Total), or "REPORTS SENT RXLOST RXTOTAL" from the
# client's own receiver line for --reverse tests (REPORTS is then 0).
it_iperf2_udp_reports() {
    python3 - "$1" <<'PYEOF'
import re, sys
t = open(sys.argv[1], errors="replace").read().splitlines()
reports = sum(1 for l in t if "Server Report:" in l)
sent = sum(int(m.group(1)) for l in t for m in [re.search(r"\]\s+Sent (\d+) datagrams", l)] if m and "SUM" not in l)
lost = total = 0
for i, l in enumerate(t):
    if "Server Report:" in l:
        for l2 in t[i + 1:i + 4]:
            m = re.search(r"\s(\d+)/(\d+) \(", l2)
            if m: lost += int(m.group(1)); total += int(m.group(2)); break
if reports == 0:
    for l in t:
        m = re.search(r"\s(\d+)/(\d+) \(", l)
        if m and "SUM" not in l: lost += int(m.group(1)); total += int(m.group(2))
print(reports, sent, lost, total)
PYEOF
}

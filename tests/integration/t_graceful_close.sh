#!/bin/bash
# Closing semantics of the shim's TCP relay (proxy/relay.h, docs/closing.md), with
# scripted peers in python3: a scripted "server" behind the shim and a scripted "client"
# in front of it.  The client first sends a captured iperf 2.1.8 plain-mode test header
# (60 bytes: flags 0x40010078 = HEADER_EXTEND | HEADER_LEN_BIT | 60<<1, numThreads 1,
# mPort 15405 (the port of the capture; unused in plain mode), mBufLen 0, mWinBand 0,
# mAmount -100 (-t 1), version 2.1.8 release), so that the shim accepts the connection
# as an iperf2 test and relays it to --upstream-iperf2; everything after it is arbitrary
# bytes (seeded random patterns).  The server checks that it receives exactly that
# header first.
#
# Loopback only, ports 15450-15469: shim (splice) 15450 -> server 15460; shim
# --no-splice 15451 -> server 15461.  Every case runs against both shims.
# "EOF" = recv() returned b'' (a FIN); "RST" = ConnectionResetError.
#
#  a   client half-closes early: client sends 1 MiB, shutdown(SHUT_WR); the server reads
#      to EOF (must be exactly header + the client's 1 MiB, then EOF), only then sends
#      1 MiB back and closes; the client must get exactly that 1 MiB, then EOF.
#  b   server half-closes early: server sends 1 MiB, shutdown(SHUT_WR); the client reads
#      to EOF (exactly that 1 MiB, then EOF), only then sends 1 MiB and shuts down; the
#      server must get exactly the client's 1 MiB, then EOF.
#  c   reset after FIN (Microsoft KB Q152474): server sends 1 MiB, shutdown(SHUT_WR),
#      waits until its send queue is empty (SIOCOUTQ 0: data and FIN acknowledged by the
#      shim's kernel), pauses 0.2 s, closes with SO_LINGER 0 (RST).  The client (reading
#      at once) must get exactly the 1 MiB, then EOF; then, after the RST is known to be
#      sent, it sends 64 KiB more (the shim must absorb them: DISCARD) and its socket
#      must show no error (SO_ERROR 0): no reset reached it at any time.
#  c2  the same with a slow client (SO_RCVBUF 16 KiB, starts reading 1 s after the RST):
#      the 1 MiB is still inside the shim (and its sockets) when the RST arrives.
#  d   server closes with unread data: the server sends a 1000-byte reply, the client
#      reads it and only then sends 2 MiB (so the server is the receiving side when it
#      resets); the server reads 256 KiB of them, waits until its reply is acknowledged
#      and more unread bytes are queued (FIONREAD > 0), then close() -> the kernel sends
#      RST.  The client must get exactly the reply, then EOF (not RST); its 2 MiB
#      sendall must complete without error (the shim discards the rest), SO_ERROR 0.
#  e   reset mid-stream: the server sends continuously and after 4 MiB closes with
#      SO_LINGER 0 while still sending.  The client (reading) must see RST, not EOF,
#      and what it got must be a prefix of the server's stream.
#  f   stall: the server accepts and never reads; the client writes (non-blocking) until
#      no progress for 2 s.  Meanwhile the shim's VmRSS (/proc/PID/status) must stay
#      under 64 MiB and it must stop reading (client blocked before 512 MiB); while the
#      client is blocked a second, normal connection (256 KiB each way with half-close,
#      as in a) must work.
# After all cases of a shim: its open fd count must return to what it was before (no
# relay or session left behind), checked within 15 s.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

command -v python3 >/dev/null || it_skip "python3 not installed"
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing or not executable"
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
$PY -c 'import random; random.Random(1).randbytes' 2>/dev/null || it_skip "python3 >= 3.9 needed"

P_SPLICE=15450 P_COPY=15451 P_SRV_SPLICE=15460 P_SRV_COPY=15461
for p in $P_SPLICE $P_COPY $P_SRV_SPLICE $P_SRV_COPY; do
    ss -Htln "( sport = :$p )" | grep -q . && it_fail "port $p is in use on this machine"
done
CASES=${GRACEFUL_CASES:-a b c c2 d e f}

cat >"$IT_TMP/graceful.py" <<'PYEOF'
import fcntl, os, random, select, socket, struct, sys, termios, threading, time

shim_port, srv_port, shim_pid, label = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cases = sys.argv[5:]
# iperf 2.1.8 client, `iperf -c 127.0.0.1 -p 15405 -t 1`: the first 60 bytes it sent
HDR = bytes.fromhex("400100780000000100003c2d0000000000000000ffffff9c"
                    "000000000000000000000000000200010008000300000000"
                    "000000000000000000000000")
assert len(HDR) == 60
KiB, MiB = 1 << 10, 1 << 20
T = 15.0  # every blocking socket operation

def pat(seed, n):
    return random.Random(seed).randbytes(n)

def log(msg):
    print("#   %s %s %.3f %s" % (label, CASE, time.time(), msg), flush=True)

def read_end(s, stop_after=None):
    """recv until EOF / RST / timeout; returns (bytes, 'EOF'|'RST'|'TIMEOUT'|'ERR ...')."""
    buf = bytearray()
    try:
        while True:
            d = s.recv(256 * KiB)
            if not d:
                return bytes(buf), "EOF"
            buf += d
    except ConnectionResetError:
        return bytes(buf), "RST"
    except socket.timeout:
        return bytes(buf), "TIMEOUT"
    except OSError as e:
        return bytes(buf), "ERR %s" % e

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            break
        buf += d
    return bytes(buf)

def ioctl_int(s, req):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), req, b"\0\0\0\0"))[0]

def outq(s):
    return ioctl_int(s, termios.TIOCOUTQ)

def inq(s):
    return ioctl_int(s, termios.FIONREAD)

def wait_for(cond, t=5.0):
    end = time.time() + t
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()

def shim_unread(c):
    """Bytes the shim has not read yet on its socket of client connection c (0 when that
    socket is gone), from ss: Recv-Q of shim_port -> c's port."""
    import subprocess
    q = "( sport = :%d and dport = :%d )" % (shim_port, c.getsockname()[1])
    out = subprocess.run(["ss", "-Htn", q], capture_output=True, text=True).stdout.split()
    return int(out[1]) if len(out) > 1 else 0

def shim_settled(c):
    """Waits (5 s at most) until the shim has taken everything client c sent: c's send
    queue is empty and the shim's socket holds no unread byte.  Whatever the shim does
    about those bytes (discard, or a reset toward c) it does as it reads them."""
    return wait_for(lambda: outq(c) == 0 and shim_unread(c) == 0, 5)

def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()

def so_error(s):
    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return "0" if e == 0 else "%d (%s)" % (e, os.strerror(e))

def diff(got, want):
    if got == want:
        return "identical"
    n = min(len(got), len(want))
    i = next((k for k in range(n) if got[k] != want[k]), n)
    return "got %d bytes, want %d, first difference at offset %d" % (len(got), len(want), i)

def rss_kib():
    for l in open("/proc/%d/status" % shim_pid):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
    return -1

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", srv_port))
ls.listen(8)
ls.settimeout(T)

def accept():
    s, _ = ls.accept()
    s.settimeout(T)
    return s

def connect(rcvbuf=None):
    c = socket.socket()
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(T)
    c.connect(("127.0.0.1", shim_port))
    return c

def run_server(fn, res):
    def body():
        try:
            fn(res)
        except Exception as e:
            res.setdefault("server_exc", repr(e))
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t

# ------------------------------------------------------------------ cases
def case_a(bad, info):
    C, S = pat(1, MiB), pat(2, MiB)
    res = {}
    def server(r):
        s = accept()
        r["got"], r["end"] = read_end(s)
        s.sendall(S)
        s.close()
    t = run_server(server, res)
    c = connect()
    c.sendall(HDR + C)
    c.shutdown(socket.SHUT_WR)
    got, end = read_end(c)
    t.join(T)
    err = so_error(c); c.close()
    if res.get("server_exc"): bad.append("server: %s" % res["server_exc"])
    if res.get("got") != HDR + C: bad.append("server received: %s" % diff(res.get("got", b""), HDR + C))
    if res.get("end") != "EOF": bad.append("server saw %s after the client's bytes, want EOF" % res.get("end"))
    if got != S: bad.append("client received: %s" % diff(got, S))
    if end != "EOF": bad.append("client saw %s after the server's bytes, want EOF" % end)
    if err != "0": bad.append("client SO_ERROR %s" % err)
    info.append("server got %d B then %s; client got %d B then %s" % (len(res.get("got", b"")), res.get("end"), len(got), end))

def case_b(bad, info):
    C, S = pat(3, MiB), pat(4, MiB)
    res = {}
    def server(r):
        s = accept()
        r["hdr"] = recv_exact(s, len(HDR))
        s.sendall(S)
        s.shutdown(socket.SHUT_WR)
        r["got"], r["end"] = read_end(s)
        s.close()
    t = run_server(server, res)
    c = connect()
    c.sendall(HDR)
    got, end = read_end(c)
    if end == "EOF":
        c.sendall(C)
        c.shutdown(socket.SHUT_WR)
        got2, end2 = read_end(c)
    else:
        got2, end2 = b"", "(not reached)"
    t.join(T)
    err = so_error(c); c.close()
    if res.get("server_exc"): bad.append("server: %s" % res["server_exc"])
    if res.get("hdr") != HDR: bad.append("server: header: %s" % diff(res.get("hdr", b""), HDR))
    if got != S: bad.append("client received: %s" % diff(got, S))
    if end != "EOF": bad.append("client saw %s after the server's bytes, want EOF" % end)
    if res.get("got") != C: bad.append("server received: %s" % diff(res.get("got", b""), C))
    if res.get("end") != "EOF": bad.append("server saw %s after the client's bytes, want EOF" % res.get("end"))
    if got2 or end2 != "EOF": bad.append("client, after sending: %d more bytes then %s, want EOF" % (len(got2), end2))
    if err != "0": bad.append("client SO_ERROR %s" % err)
    info.append("client got %d B then %s; server got %d B then %s" % (len(got), end, len(res.get("got", b"")), res.get("end")))

def reset_after_fin(bad, info, slow):
    S = pat(5, MiB)
    res, rst_sent = {}, threading.Event()
    def server(r):
        s = accept()
        r["hdr"] = recv_exact(s, len(HDR))
        s.sendall(S)
        s.shutdown(socket.SHUT_WR)
        r["outq0"] = wait_for(lambda: outq(s) == 0, 10)
        r["outq"] = outq(s)
        time.sleep(0.2)
        rst_close(s)
        rst_sent.set()
    t = run_server(server, res)
    c = connect(rcvbuf=16 * KiB if slow else None)
    c.sendall(HDR)
    if slow:
        rst_sent.wait(T)
        time.sleep(1.0)
    got, end = read_end(c)
    rst_sent.wait(T)
    time.sleep(0.3)
    after = "not tried"
    if end == "EOF":
        try:
            c.sendall(pat(6, 64 * KiB))
            settled = shim_settled(c)
            after = "sent 64 KiB, SO_ERROR %s" % so_error(c)
            if not settled:
                after += " (the shim had not read them within 5 s)"
        except OSError as e:
            after = "send failed: %r" % e
    err = so_error(c)
    t.join(T)
    c.close()
    if res.get("server_exc"): bad.append("server: %s" % res["server_exc"])
    if res.get("hdr") != HDR: bad.append("server: header: %s" % diff(res.get("hdr", b""), HDR))
    if not res.get("outq0"): bad.append("test setup: the server's send queue never emptied (SIOCOUTQ %s): the RST would discard data" % res.get("outq"))
    if got != S: bad.append("client received: %s" % diff(got, S))
    if end != "EOF": bad.append("client saw %s after the server's bytes, want EOF (FIN)" % end)
    if end == "EOF" and after != "sent 64 KiB, SO_ERROR 0": bad.append("client after EOF: %s, want the shim to absorb it with no reset" % after)
    if err != "0": bad.append("client SO_ERROR %s at the end" % err)
    info.append("client%s got %d B then %s; after the RST: %s" % (" (slow)" if slow else "", len(got), end, after))

def case_c(bad, info):
    reset_after_fin(bad, info, False)

def case_c2(bad, info):
    reset_after_fin(bad, info, True)

def case_d(bad, info):
    REPLY, C, PART = pat(7, 1000), pat(8, 2 * MiB), 256 * KiB
    res = {}
    def server(r):
        s = accept()
        r["hdr"] = recv_exact(s, len(HDR))
        s.sendall(REPLY)
        r["part"] = recv_exact(s, PART)
        r["outq0"] = wait_for(lambda: outq(s) == 0, 5)
        r["unread_ok"] = wait_for(lambda: inq(s) > 0, 5)
        r["unread"] = inq(s)
        s.close()   # unread data: the kernel sends RST
    t = run_server(server, res)
    c = connect()
    c.sendall(HDR)
    reply = recv_exact(c, len(REPLY))
    sres = {}
    def sender():
        try:
            c.sendall(C)
            sres["ok"] = True
        except OSError as e:
            sres["err"] = repr(e)
    st = threading.Thread(target=sender, daemon=True)
    st.start()
    got, end = read_end(c)
    st.join(T)
    if sres.get("ok"):
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            sres["err"] = "shutdown: %r" % e
    shim_settled(c)
    err = so_error(c)
    t.join(T)
    c.close()
    if res.get("server_exc"): bad.append("server: %s" % res["server_exc"])
    if res.get("hdr") != HDR: bad.append("server: header: %s" % diff(res.get("hdr", b""), HDR))
    if res.get("part") != C[:PART]: bad.append("server: first %d bytes: %s" % (PART, diff(res.get("part", b""), C[:PART])))
    if not res.get("outq0"): bad.append("test setup: the server's reply was never acknowledged")
    if not res.get("unread_ok"): bad.append("test setup: no unread bytes at the server's close (FIONREAD %s): no RST" % res.get("unread"))
    if reply != REPLY: bad.append("client: reply: %s" % diff(reply, REPLY))
    if got: bad.append("client got %d unexpected bytes after the reply" % len(got))
    if end != "EOF": bad.append("client saw %s after the reply, want EOF (FIN)" % end)
    if not sres.get("ok"): bad.append("client's 2 MiB sendall: %s, want it absorbed" % sres.get("err", "did not finish within %.0f s" % T))
    if err != "0": bad.append("client SO_ERROR %s" % err)
    info.append("server read %d B, closed with %s B unread; client got the %d-byte reply then %d B then %s; its sendall: %s"
                % (len(res.get("part", b"")), res.get("unread"), len(reply), len(got), end, "ok" if sres.get("ok") else sres.get("err")))

def case_e(bad, info):
    STREAM = pat(9, 8 * MiB)
    res = {}
    def server(r):
        s = accept()
        r["hdr"] = recv_exact(s, len(HDR))
        sent, off = 0, 0
        while sent < 4 * MiB:
            n = s.send(STREAM[off:off + 64 * KiB])
            sent += n; off += n
        r["sent"] = sent
        r["outq"] = outq(s)
        rst_close(s)
    t = run_server(server, res)
    c = connect()
    c.sendall(HDR)
    got, end = read_end(c)
    t.join(T)
    c.close()
    if res.get("server_exc"): bad.append("server: %s" % res["server_exc"])
    if res.get("hdr") != HDR: bad.append("server: header: %s" % diff(res.get("hdr", b""), HDR))
    if got != STREAM[:len(got)]: bad.append("client data is not a prefix of the server's stream: %s" % diff(got, STREAM[:len(got)]))
    if len(got) > res.get("sent", 0): bad.append("client got %d bytes, more than the %s sent" % (len(got), res.get("sent")))
    if end != "RST": bad.append("client saw %s after %d bytes, want RST (the server reset mid-stream)" % (end, len(got)))
    info.append("server sent %s B (%s unsent) then RST; client got %d B then %s" % (res.get("sent"), res.get("outq"), len(got), end))

def case_f(bad, info):
    C2, S2 = pat(10, 256 * KiB), pat(11, 256 * KiB)
    res, release = {}, threading.Event()
    def server(r):
        s1 = accept()          # the stalled one: never read
        r["stalled_accepted"] = True
        s2 = accept()          # the normal one
        r["got"], r["end"] = read_end(s2)
        s2.sendall(S2)
        s2.close()
        release.wait(60)
        r["s1_unread"] = inq(s1)
        s1.close()
    t = run_server(server, res)
    rss0 = rss_kib()
    c1 = connect()
    c1.sendall(HDR)
    c1.setblocking(False)
    chunk = pat(12, 256 * KiB)
    written, last, peak, nxt = 0, time.time(), rss0, 0.0
    capped = False
    while True:
        now = time.time()
        if now >= nxt:
            peak = max(peak, rss_kib()); nxt = now + 0.05
        try:
            written += c1.send(chunk)
            last = now
        except BlockingIOError:
            select.select([], [c1], [], 0.1)
        if time.time() - last > 2.0:
            break
        if written > 512 * MiB:
            capped = True
            break
    peak = max(peak, rss_kib())
    # while c1 is blocked: a normal connection
    c2 = connect()
    c2.sendall(HDR + C2)
    c2.shutdown(socket.SHUT_WR)
    got, end = read_end(c2)
    c2.close()
    peak = max(peak, rss_kib())
    still_blocked = True
    try:
        c1.send(chunk)
        still_blocked = False
    except BlockingIOError:
        pass
    c1.close()
    release.set()
    t.join(T)
    if res.get("server_exc"): bad.append("server: %s" % res["server_exc"])
    if capped: bad.append("the client wrote more than 512 MiB into a stalled connection: no backpressure")
    if peak > 64 * 1024: bad.append("shim VmRSS reached %d KiB (> 64 MiB)" % peak)
    if res.get("got") != HDR + C2: bad.append("normal connection: server received: %s" % diff(res.get("got", b""), HDR + C2))
    if res.get("end") != "EOF": bad.append("normal connection: server saw %s, want EOF" % res.get("end"))
    if got != S2: bad.append("normal connection: client received: %s" % diff(got, S2))
    if end != "EOF": bad.append("normal connection: client saw %s, want EOF" % end)
    if not still_blocked: bad.append("the stalled connection accepted more bytes after 2 s without progress")
    info.append("client wrote %.1f MiB before blocking; shim VmRSS %d KiB before, peak %d KiB; normal connection: %d B / %d B, %s/%s"
                % (written / MiB, rss0, peak, len(res.get("got", b"")), len(got), res.get("end"), end))

CASE = "-"
failed = 0
for CASE in cases:
    bad, info = [], []
    t0 = time.time()
    try:
        globals()["case_" + CASE](bad, info)
    except Exception as e:
        bad.append("exception: %r" % e)
    dt = time.time() - t0
    if bad:
        failed += 1
        for b in bad:
            print("FAIL %s case %s: %s" % (label, CASE, b), flush=True)
        for i in info:
            print("     %s case %s: %s" % (label, CASE, i), flush=True)
    else:
        print("ok %s case %s (%.1fs): %s" % (label, CASE, dt, "; ".join(info)), flush=True)
    time.sleep(0.2)
sys.exit(1 if failed else 0)
PYEOF

FAILS=()
# run_shim LABEL SHIMPORT SRVPORT SHIM_EXTRA_ARGS...
run_shim() {
    local label=$1 sp=$2 up=$3 rc; shift 3
    it_start_shim "shim-$label" -- --listen "127.0.0.1:$sp" --upstream "127.0.0.1:$up" \
        --upstream-iperf2 "127.0.0.1:$up" --log-level debug "$@"
    local pid=$SHIM_PID fds0
    fds0=$(it_fd_count "$pid")
    it_log "shim $label (pid $pid, $*): $fds0 fds at start"
    # shellcheck disable=SC2086
    timeout 300 "$PY" "$IT_TMP/graceful.py" "$sp" "$up" "$pid" "$label" $CASES >"$IT_TMP/py-$label.out" 2>&1; rc=$?
    grep -v '^#' "$IT_TMP/py-$label.out" | sed 's/^ok /# ok /'
    [ $rc -eq 0 ] || FAILS+=("$label: cases failed (rc=$rc)")
    if ! it_wait_fd_count "$pid" "$fds0" 15; then
        echo "FAIL: shim $label: $(it_fd_count "$pid") fds open 15 s after the last case, $fds0 at start:"
        it_fd_list "$pid" | sed 's/^/#     /'
        echo "# the shim's TCP sockets (a relay left behind shows up here):"
        ss -Htanp | grep "pid=$pid," | sed 's/^/#     /'
        FAILS+=("$label: fds not released")
    fi
    kill -0 "$pid" 2>/dev/null || FAILS+=("$label: the shim exited")
    if [ $rc -ne 0 ] || [ ${#FAILS[@]} -gt 0 ]; then
        echo "# shim $label log:"
        grep -v 'iperf2 normal test from' "$IT_TMP/shim-$label.log" | sed 's/^/#   | /' | tail -n 60
    else
        it_log "shim $label summaries:"
        it_iperf2_shim_lines "$IT_TMP/shim-$label.log" | sed 's/^/#   /'
    fi
}

run_shim splice "$P_SPLICE" "$P_SRV_SPLICE"
run_shim nosplice "$P_COPY" "$P_SRV_COPY" --no-splice

if [ ${#FAILS[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${FAILS[@]}"
    exit 1
fi
echo "PASS"
exit 0

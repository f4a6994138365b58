#!/usr/bin/env python3
"""Self-test of libwinsock_udp.so's semantics on loopback (run it inside a private
network namespace: it uses 127.0.0.1 ports 47000-47003 and needs them free).

    LD_PRELOAD=build/tools/libwinsock_udp.so python3 tests/tools/winsock_udp_selftest.py

Prints one "ok ..." line per check and "selftest: N passed, 0 failed"; exits 1 on the
first failed check.  Python's socket module calls the libc functions the library
interposes (socket, bind, connect, recvfrom, recv, close), so this exercises the same
paths as iperf2's server.
"""
import errno
import os
import socket
import sys
import threading
import time

if "winsock_udp" not in os.environ.get("LD_PRELOAD", ""):
    sys.exit("run me with LD_PRELOAD=.../libwinsock_udp.so")

H = "127.0.0.1"
LPORT, CLOSED, PEER = 47000, 47001, 47002
passed = 0


def check(cond, what):
    global passed
    if not cond:
        print("FAIL " + what)
        sys.exit(1)
    passed += 1
    print("ok " + what)


def err_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return None


def udp(bind_port=None, reuse=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if bind_port is not None:
        s.bind((H, bind_port))
    return s


def wait_icmp():
    time.sleep(0.2)  # loopback ICMP is immediate; give it a moment anyway


sender = udp()

# 1. The iperf2 case: an ICMP for a flow whose connected socket is gone is matched by
#    the kernel to the wildcard listener: its next receive fails with ECONNRESET, once;
#    the datagram queued behind the error is returned by the next call.
# "raw" stands in for the closed per-client socket: it sends from port LPORT to the
# closed port.  It is bound before the listener: among equally good matches the kernel
# picks the socket bound last, so the ICMP goes to the listener, not to raw.
raw = udp(LPORT, reuse=True)
lst = udp(LPORT, reuse=True)
lst.settimeout(2)
raw.sendto(b"late server report", (H, CLOSED))
wait_icmp()
raw.close()
sender.sendto(b"next client", (H, LPORT))
time.sleep(0.05)
e = err_of(lambda: lst.recvfrom(2048))
check(e == errno.ECONNRESET, "listener: ICMP matched to it -> recvfrom ECONNRESET (got %s)" % e)
d, _ = lst.recvfrom(2048)
check(d == b"next client", "listener: datagram behind the error returned by the next call")
lst.close()

# 2. Connected socket: ECONNREFUSED becomes ECONNRESET there, and the listener's next
#    receive fails once (latch), before the queued datagram.
lst = udp(LPORT, reuse=True)
lst.settimeout(2)
c = udp(LPORT, reuse=True)
c.connect((H, CLOSED))
c.send(b"x")
wait_icmp()
c.settimeout(1)
e = err_of(lambda: c.recv(100))
check(e == errno.ECONNRESET, "connected socket: ICMP -> recv ECONNRESET, not ECONNREFUSED (got %s)" % e)
sender.sendto(b"d2", (H, LPORT))
time.sleep(0.05)
e = err_of(lambda: lst.recvfrom(2048))
check(e == errno.ECONNRESET, "latch: listener's next recvfrom fails with ECONNRESET (got %s)" % e)
d, _ = lst.recvfrom(2048)
check(d == b"d2", "latch: fires once, datagram kept")
c.close()

# 3. Error pending at close() of another socket also latches.
c = udp(LPORT, reuse=True)
c.connect((H, CLOSED))
c.send(b"x")
wait_icmp()
c.close()
# (the latch is seen by the next receive call; poll/select are not woken by it, and
# Python's settimeout() polls first, so queue a datagram)
sender.sendto(b"d3", (H, LPORT))
time.sleep(0.05)
e = err_of(lambda: lst.recvfrom(2048))
check(e == errno.ECONNRESET, "latch from an error pending at close() (got %s)" % e)
check(lst.recvfrom(2048)[0] == b"d3", "latch from close(): datagram kept")

# 4. Latch set while the listener is blocked: the blocked call fails when a datagram
#    wakes it, and the datagram is returned by the next call.
res = {}


def blocked():
    res["e"] = err_of(lambda: lst.recvfrom(2048))
    res["d"] = lst.recvfrom(2048)[0]


# recvfrom/recvmsg system call numbers, to see the thread blocked inside one
RECV_SYSCALLS = {"x86_64": {"45", "47"}, "aarch64": {"207", "212"}}.get(os.uname().machine)


def in_recv(tid):
    """True when thread tid is blocked in a receive system call (/proc/.../syscall)."""
    try:
        with open("/proc/self/task/%d/syscall" % tid) as f:
            return f.read().split()[0] in RECV_SYSCALLS
    except (OSError, IndexError):
        return False


lst.settimeout(None)  # really blocking: exercises the library's MSG_PEEK wait
t = threading.Thread(target=blocked, daemon=True)
t.start()
if RECV_SYSCALLS:
    # the latch must be set while the thread is inside the call, not before it
    end = time.time() + 5
    while not (t.native_id and in_recv(t.native_id)) and time.time() < end:
        time.sleep(0.01)
    check(in_recv(t.native_id), "test setup: the listener thread is blocked in its receive call")
else:
    time.sleep(0.3)   # unknown architecture: no way to see it, give it time
c = udp(LPORT, reuse=True)
c.connect((H, CLOSED))
c.send(b"x")
wait_icmp()
c.close()
time.sleep(0.1)
check(t.is_alive(), "blocked listener not woken by the latch alone")
sender.sendto(b"d4", (H, LPORT))
t.join(3)
check(res.get("e") == errno.ECONNRESET and res.get("d") == b"d4",
      "blocked listener: ECONNRESET when woken, then the datagram (got %r)" % res)

# 5. No ICMP, no error: plain traffic is untouched; SO_RCVTIMEO on a blocking socket
#    still times out (EAGAIN) instead of blocking for ever.
sender.sendto(b"d5", (H, LPORT))
check(lst.recvfrom(2048)[0] == b"d5", "plain datagram passes")
import struct
lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300000))
t0 = time.time()
e = err_of(lambda: lst.recvfrom(2048))
check(e in (errno.EAGAIN, errno.EWOULDBLOCK) and time.time() - t0 < 2,
      "SO_RCVTIMEO honoured on the listener (got %s after %.2f s)" % (e, time.time() - t0))
lst.close()

# 6./7. AF_INET6 listeners: an IPv6 flow (ICMPv6 port unreachable) and, on a dual-stack
#       listener, an IPv4 flow (ICMPv4 for a v4-mapped peer) end the same way.
for label, dest in (("IPv6 listener, ICMPv6", "::1"), ("dual-stack listener, ICMPv4 (v4-mapped)", "::ffff:127.0.0.1")):
    def udp6():
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s6.bind(("::", PEER))
        return s6
    raw6 = udp6()
    lst6 = udp6()
    lst6.settimeout(2)
    raw6.sendto(b"late", (dest, CLOSED))
    wait_icmp()
    raw6.close()
    snd6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    snd6.sendto(b"d6", (dest, PEER))
    time.sleep(0.05)
    e = err_of(lambda: lst6.recvfrom(2048))
    check(e == errno.ECONNRESET, "%s -> recvfrom ECONNRESET (got %s)" % (label, e))
    check(lst6.recvfrom(2048)[0] == b"d6", "%s: datagram kept" % label)
    snd6.close()
    lst6.close()
print("selftest: %d passed, 0 failed" % passed)

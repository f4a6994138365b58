#!/usr/bin/env python3
"""Scripted iperf3 peers for exact-byte tests of the --bidir role pairing.

The server follows iperf3's wire protocol and, like every real server, gives
the first P data connections it accepts the receiver role and the next P the
sender role.  The client speaks the same protocol but opens its P receiver
connections FIRST (--receivers-first), so accept order always crosses the
roles: without role repair both ends of each connection read (or write) and
nothing arrives.  Every sender writes a deterministic pseudo-random stream
and every receiver hashes what it reads, so the test can prove that every
byte sent was received, exactly once, in order.

  fake_iperf3.py server PORT                      (serves one test, prints JSON)
  fake_iperf3.py client HOST PORT -P N -n BYTES [--receivers-first] [--sender-delay S]

Each side prints one JSON line: {"sent": [[sha256, len], ...],
"received": [[sha256, len], ...]} and exits 0, or exits 1 on a timeout.
"""
import argparse
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

TEST_START, TEST_RUNNING, TEST_END = 1, 2, 4
PARAM_EXCHANGE, CREATE_STREAMS, EXCHANGE_RESULTS = 9, 10, 13
DISPLAY_RESULTS, IPERF_DONE = 14, 16
TIMEOUT = 20.0


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed")
        buf += chunk
    return buf


def send_json(s, obj):
    data = json.dumps(obj).encode()
    s.sendall(struct.pack(">I", len(data)) + data)


def recv_json(s):
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    return json.loads(recv_exact(s, n))


def pattern(seed, nbytes):
    """Deterministic, distinct per seed; yields chunks."""
    h = hashlib.sha256(seed.encode()).digest()
    left = nbytes
    counter = 0
    while left > 0:
        block = hashlib.sha256(h + counter.to_bytes(8, "big")).digest() * 2048  # 64 KiB
        counter += 1
        yield block[:left]
        left -= len(block[:left])


def run_sender(sock, seed, nbytes, out, delay=0.0):
    if delay:
        time.sleep(delay)   # a sender that is slow to start (role learning falls back)
    h = hashlib.sha256()
    total = 0
    for chunk in pattern(seed, nbytes):
        sock.sendall(chunk)
        h.update(chunk)
        total += len(chunk)
    sock.shutdown(socket.SHUT_WR)
    # a sender never reads; wait for the peer's FIN so the close is clean
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    out.append([h.hexdigest(), total])


def run_receiver(sock, out):
    h = hashlib.sha256()
    total = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        total += len(chunk)
    sock.shutdown(socket.SHUT_WR)
    out.append([h.hexdigest(), total])


def run_streams(senders, receivers, tag, nbytes, delay=0.0):
    sent, received, threads = [], [], []
    for i, s in enumerate(senders):
        threads.append(threading.Thread(target=run_sender,
                                        args=(s, f"{tag}{i}", nbytes, sent, delay)))
    for s in receivers:
        threads.append(threading.Thread(target=run_receiver, args=(s, received)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        if t.is_alive():
            print(json.dumps({"error": "stream timeout", "sent": sent, "received": received}))
            sys.stdout.flush()
            os._exit(1)
    return sent, received


def server(port):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", port))
    ls.listen(64)
    ls.settimeout(TIMEOUT)
    ctrl, _ = ls.accept()
    ctrl.settimeout(TIMEOUT)
    cookie = recv_exact(ctrl, 37)
    ctrl.sendall(bytes([PARAM_EXCHANGE]))
    params = recv_json(ctrl)
    p = int(params["parallel"])
    nbytes = int(params["num"])
    ctrl.sendall(bytes([CREATE_STREAMS]))
    conns = []
    while len(conns) < 2 * p:
        c, _ = ls.accept()
        c.settimeout(TIMEOUT)
        if recv_exact(c, 37) != cookie:
            raise SystemExit("data connection with a foreign cookie")
        conns.append(c)
    receivers, senders = conns[:p], conns[p:]   # iperf_run_server: accept order decides
    ctrl.sendall(bytes([TEST_START, TEST_RUNNING]))
    sent, received = run_streams(senders, receivers, "server", nbytes)
    if recv_exact(ctrl, 1)[0] != TEST_END:
        raise SystemExit("expected TEST_END")
    ctrl.sendall(bytes([EXCHANGE_RESULTS]))
    recv_json(ctrl)
    send_json(ctrl, {"streams": []})
    ctrl.sendall(bytes([DISPLAY_RESULTS]))
    recv_exact(ctrl, 1)   # IPERF_DONE
    print(json.dumps({"sent": sorted(sent), "received": sorted(received)}))


def client(host, port, p, nbytes, receivers_first, sender_delay):
    cookie = (os.urandom(18).hex()[:36]).encode() + b"\0"
    cookie = bytes(c if c in b"abcdefghijklmnopqrstuvwxyz234567" else ord("a") for c in cookie[:36]) + b"\0"
    ctrl = socket.create_connection((host, port), timeout=TIMEOUT)
    ctrl.sendall(cookie)
    if recv_exact(ctrl, 1)[0] != PARAM_EXCHANGE:
        raise SystemExit("expected PARAM_EXCHANGE")
    send_json(ctrl, {"tcp": True, "bidirectional": True, "parallel": p, "num": nbytes,
                     "len": 131072, "client_version": "3.12"})
    if recv_exact(ctrl, 1)[0] != CREATE_STREAMS:
        raise SystemExit("expected CREATE_STREAMS")
    senders, receivers = [], []
    order = ["r"] * p + ["s"] * p if receivers_first else ["s"] * p + ["r"] * p
    for role in order:
        s = socket.create_connection((host, port), timeout=TIMEOUT)
        s.sendall(cookie)
        (receivers if role == "r" else senders).append(s)
    if recv_exact(ctrl, 2) != bytes([TEST_START, TEST_RUNNING]):
        raise SystemExit("expected TEST_START, TEST_RUNNING")
    sent, received = run_streams(senders, receivers, "client", nbytes, sender_delay)
    ctrl.sendall(bytes([TEST_END]))
    if recv_exact(ctrl, 1)[0] != EXCHANGE_RESULTS:
        raise SystemExit("expected EXCHANGE_RESULTS")
    send_json(ctrl, {"streams": []})
    recv_json(ctrl)
    recv_exact(ctrl, 1)   # DISPLAY_RESULTS
    ctrl.sendall(bytes([IPERF_DONE]))
    print(json.dumps({"sent": sorted(sent), "received": sorted(received)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["server", "client"])
    ap.add_argument("args", nargs="+")
    ap.add_argument("-P", type=int, default=1)
    ap.add_argument("-n", type=int, default=4 << 20)
    ap.add_argument("--receivers-first", action="store_true")
    ap.add_argument("--sender-delay", type=float, default=0.0,
                    help="client senders wait this long after TEST_RUNNING")
    a = ap.parse_args()
    try:
        if a.role == "server":
            server(int(a.args[0]))
        else:
            client(a.args[0], int(a.args[1]), a.P, a.n, a.receivers_first, a.sender_delay)
    except (OSError, EOFError) as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)


if __name__ == "__main__":
    main()

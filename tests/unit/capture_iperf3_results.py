#!/usr/bin/env python3
"""Captures the results JSON blocks of real iperf3 tests on loopback and writes
them as C fixtures: usage capture_iperf3_results.py OUT.h

For each case it starts `iperf3 -s -1` on 127.0.0.1:5201 and runs the client
against a recording relay on 127.0.0.1:5202 (TCP and UDP), then cuts the
client's and the server's results JSON out of the recorded control stream:
c2s is cookie (37), parameters (4-byte length + JSON), state bytes up to
TEST_END (4), then the client's results JSON; s2c is state bytes up to
EXCHANGE_RESULTS (13), then the server's results JSON.  Run it inside a
network namespace of your own (fixed ports)."""
import selectors, socket, struct, subprocess, sys, threading, time

SRV, RELAY = 5201, 5202
CASES = [  # name, client arguments, server arguments
    ("tcp_p4", ["-P", "4", "-t", "1"], []),
    ("tcp_r_p2", ["-R", "-P", "2", "-t", "1"], []),
    ("tcp_bidir_p2", ["--bidir", "-P", "2", "-t", "1"], []),
    ("udp_p2", ["-u", "-b", "10M", "-P", "2", "-t", "1"], []),
    ("tcp_gso_text", ["--get-server-output", "-P", "2", "-t", "1"], []),
    # server_output_json only comes from a server run with -J
    ("tcp_gso_json", ["--get-server-output", "-J", "-t", "1"], ["-J"]),
]


class Relay:
    """TCP and UDP relay 127.0.0.1:RELAY -> 127.0.0.1:SRV; keeps both
    directions of the first TCP connection (the control connection)."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.lt = socket.socket(); self.lt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lt.bind(("127.0.0.1", RELAY)); self.lt.listen(64); self.lt.setblocking(False)
        self.lu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.lu.bind(("127.0.0.1", RELAY)); self.lu.setblocking(False)
        self.sel.register(self.lt, selectors.EVENT_READ, ("accept",))
        self.sel.register(self.lu, selectors.EVENT_READ, ("udp_in",))
        self.ctrl = None            # (client socket) of the control connection
        self.rec = {0: bytearray(), 1: bytearray()}   # 0: c2s, 1: s2c
        self.flows = {}             # UDP client address -> upstream socket
        self.stop = False

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        for u in self.flows.values():
            u.close()
        self.sel.close()

    def run(self):
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                kind = key.data[0]
                if kind == "accept":
                    c, _ = self.lt.accept()
                    u = socket.create_connection(("127.0.0.1", SRV))
                    if self.ctrl is None:
                        self.ctrl = c
                    self.sel.register(c, selectors.EVENT_READ, ("tcp", u, 0 if c is self.ctrl else None))
                    self.sel.register(u, selectors.EVENT_READ, ("tcp", c, 1 if c is self.ctrl else None))
                elif kind == "tcp":
                    s, peer, d = key.fileobj, key.data[1], key.data[2]
                    try:
                        b = s.recv(1 << 16)
                    except OSError:
                        b = b""
                    if not b:
                        self.sel.unregister(s)
                        try:
                            peer.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    if d is not None:
                        self.rec[d] += b
                    try:
                        peer.sendall(b)
                    except OSError:
                        pass
                elif kind == "udp_in":
                    b, a = self.lu.recvfrom(1 << 16)
                    if a not in self.flows:
                        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        u.connect(("127.0.0.1", SRV)); u.setblocking(False)
                        self.flows[a] = u
                        self.sel.register(u, selectors.EVENT_READ, ("udp_back", a))
                    try:
                        self.flows[a].send(b)
                    except OSError:
                        pass
                elif kind == "udp_back":
                    try:
                        b = key.fileobj.recv(1 << 16)
                        self.lu.sendto(b, key.data[1])
                    except OSError:
                        pass


def cut(c2s, s2c):
    """Returns (client results JSON, server results JSON) from the control bytes."""
    o = 37
    n = struct.unpack(">I", c2s[o:o + 4])[0]
    o += 4 + n
    while c2s[o] != 4:
        o += 1
    o += 1
    n = struct.unpack(">I", c2s[o:o + 4])[0]
    client = bytes(c2s[o + 4:o + 4 + n])
    o = s2c.index(13) + 1
    n = struct.unpack(">I", s2c[o:o + 4])[0]
    server = bytes(s2c[o + 4:o + 4 + n])
    return client, server


def c_literal(b):
    out, line = [], ""
    for ch in b.decode():
        e = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}.get(ch, ch)
        if ord(ch) < 0x20 and ch not in "\n\t":
            e = "\\%03o" % ord(ch)
        line += e
        if len(line) >= 90 or ch == "\n":
            out.append('    "%s"' % line); line = ""
    if line:
        out.append('    "%s"' % line)
    return "\n".join(out)


def main():
    out = sys.argv[1]
    fx = []
    for name, args, sargs in CASES:
        srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(SRV)] + sargs,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 5
        while time.time() < deadline:
            ss = subprocess.run(["ss", "-Hltn", "sport = :%d" % SRV], capture_output=True)
            if ss.stdout.strip():
                break
            time.sleep(0.05)
        r = Relay()
        t = threading.Thread(target=r.run); t.start()
        cl = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(RELAY)] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
        r.stop = True; t.join(); r.close()
        srv.wait(timeout=10)
        if cl.returncode != 0:
            sys.exit("%s: client failed: %s" % (name, cl.stderr.decode()))
        client, server = cut(r.rec[0], r.rec[1])
        fx.append((name, client, server))
        print("%s: client results %d bytes, server results %d bytes" % (name, len(client), len(server)))
    with open(out, "w") as f:
        f.write("/* Results JSON blocks captured from Debian iperf3 3.12 on loopback, exactly as\n"
                " * sent on the control connection (generated by capture_iperf3_results.py;\n"
                " * client and server: iperf3 3.12, cJSON 1.7.15 bundled). */\n")
        f.write("#ifndef IPERF_SHIM_TESTS_IPERF3_RESULTS_FIXTURES_H\n#define IPERF_SHIM_TESTS_IPERF3_RESULTS_FIXTURES_H\n\n")
        f.write("struct i3_results_fixture {\n    const char *name;    /* test mode */\n"
                "    const char *json;    /* results JSON, as on the wire (no NUL there) */\n"
                "    bool        server;  /* sent by the server (else by the client) */\n};\n\n")
        f.write("static const struct i3_results_fixture i3rfx[] = {\n")
        for name, client, server in fx:
            for who, b in (("client", client), ("server", server)):
                f.write('    { "%s_%s",\n%s,\n      %s },\n' % (name, who, c_literal(b),
                                                           "true" if who == "server" else "false"))
        f.write("};\n\n#define I3RFX_COUNT (sizeof(i3rfx) / sizeof(i3rfx[0]))\n\n#endif\n")


main()

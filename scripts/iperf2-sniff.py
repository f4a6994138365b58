#!/usr/bin/env python3
"""Loopback packet capture for wire studies (how tests/unit/iperf2_fixtures.h
was made; see docs/iperf2-wire.md).  Linux, root, no tcpdump needed.

  iperf2-sniff.py record OUT.jsonl SECONDS [LOPORT HIPORT]
      Capture IPv4 TCP and UDP on lo whose source or destination port lies in
      LOPORT..HIPORT (default 15300..15399) for SECONDS; one JSON object per
      packet, payload as hex (first 512 bytes).  A kernel filter keeps the
      rest of the loopback traffic out.  OUT.jsonl.ready appears when the
      capture is armed: start the clients after that.
  iperf2-sniff.py summary OUT.jsonl [NBYTES]
      Per TCP connection: the first NBYTES (default 96) each side sent, in
      stream order; per UDP flow: the first and last datagrams.
"""
import ctypes
import json
import socket
import struct
import sys
import time

PACKET_OUTGOING = 4      # every lo packet shows up twice: keep the incoming copy
SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003


def port_filter(lo, hi):
    """Classic BPF: IPv4, TCP or UDP, not a fragment, either port in lo..hi."""
    prog = [
        (0x28, 0, 0, 12),          # 0  ldh [12]           ethertype
        (0x15, 0, 14, 0x800),      # 1  jeq IPv4 else drop
        (0x30, 0, 0, 23),          # 2  ldb [23]           protocol
        (0x15, 1, 0, 6),           # 3  TCP -> 5
        (0x15, 0, 11, 17),         # 4  UDP else drop
        (0x28, 0, 0, 20),          # 5  ldh [20]           fragment offset
        (0x45, 9, 0, 0x1fff),      # 6  fragment -> drop
        (0xb1, 0, 0, 14),          # 7  ldxb 4*([14]&0xf)   IP header length
        (0x48, 0, 0, 14),          # 8  ldh [x+14]         source port
        (0x35, 0, 1, lo),          # 9  < lo -> 11
        (0x25, 0, 4, hi),          # 10 <= hi -> accept
        (0x48, 0, 0, 16),          # 11 ldh [x+16]         destination port
        (0x35, 0, 3, lo),          # 12 < lo -> drop
        (0x25, 2, 1, hi),          # 13 > hi -> drop, else accept
        (0x06, 0, 0, 0),           # 14 (unreached)
        (0x06, 0, 0, 0x40000),     # 15 accept
        (0x06, 0, 0, 0),           # 16 drop
    ]
    code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code)
    return struct.pack("HL", len(prog), ctypes.addressof(buf)), buf


def record(out, secs, lo=15300, hi=15399):
    # Protocol 0 receives nothing until bind(): the filter is in place before
    # the first packet is queued.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    fprog, keep = port_filter(lo, hi)
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    s.bind(("lo", ETH_P_ALL))
    s.settimeout(0.2)
    t0 = time.time()
    open(out + ".ready", "w").close()
    with open(out, "w") as f:
        while time.time() - t0 < secs:
            try:
                data, addr = s.recvfrom(70000)
            except socket.timeout:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            ip = data[14:]
            ihl = (ip[0] & 15) * 4
            proto, tot = ip[9], struct.unpack("!H", ip[2:4])[0]
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            l4 = ip[ihl:tot]
            rec = {"t": round(time.time() - t0, 6)}
            if proto == 6:
                sp, dp, seq = struct.unpack("!HHI", l4[:8])
                fl, hl = l4[13], (l4[12] >> 4) * 4
                pay = l4[hl:]
                rec.update(p="tcp", seq=seq, fl="".join(
                    n for b, n in ((2, "S"), (1, "F"), (4, "R"), (16, "A"), (8, "P")) if fl & b))
            else:
                sp, dp = struct.unpack("!HH", l4[:4])
                pay = l4[8:]
                rec.update(p="udp")
            rec.update(src=f"{src}:{sp}", dst=f"{dst}:{dp}", len=len(pay), hex=pay[:512].hex())
            f.write(json.dumps(rec) + "\n")
            f.flush()
    del keep


def hexdump(b, indent="    "):
    return "\n".join(f"{indent}{i:04x}: {b[i:i + 16].hex(' ')}" for i in range(0, len(b), 16))


def summary(path, n=96):
    recs = [json.loads(line) for line in open(path)]
    conns, order = {}, []
    for r in (r for r in recs if r["p"] == "tcp"):
        key = (r["src"], r["dst"])
        if key not in conns:
            conns[key] = {"isn": None, "data": {}, "bytes": 0, "events": []}
            order.append(key)
        c = conns[key]
        if "S" in r["fl"]:
            c["isn"] = r["seq"] + 1
        if r["len"] and c["isn"] is not None:
            off = (r["seq"] - c["isn"]) & 0xffffffff
            if off not in c["data"]:
                c["data"][off] = bytes.fromhex(r["hex"])
                c["bytes"] += r["len"]
        if r["len"] or "F" in r["fl"] or "R" in r["fl"]:
            c["events"].append((r["t"], r["len"] or r["fl"]))
    for key in order:
        c, buf = conns[key], b""
        for off in sorted(c["data"]):
            if off != len(buf):
                break
            buf += c["data"][off]
        print(f"TCP {key[0]} -> {key[1]}: {c['bytes']} bytes, first {min(n, len(buf))}:")
        print(hexdump(buf[:n]))
        print("  first events (t, len or flags):", c["events"][:6])
    flows, forder = {}, []
    for r in (r for r in recs if r["p"] == "udp"):
        key = (r["src"], r["dst"])
        if key not in flows:
            flows[key] = []
            forder.append(key)
        flows[key].append(r)
    for key in forder:
        dg = flows[key]
        print(f"UDP {key[0]} -> {key[1]}: {len(dg)} datagrams, lengths {sorted({d['len'] for d in dg})}")
        for d in (dg if len(dg) <= 6 else dg[:3] + dg[-3:]):
            print(f"  t={d['t']} len={d['len']}")
            print(hexdump(bytes.fromhex(d["hex"])[:n]))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "record":
        ports = [int(p) for p in sys.argv[4:6]] or [15300, 15399]
        record(sys.argv[2], float(sys.argv[3]), *ports)
    elif len(sys.argv) >= 3 and sys.argv[1] == "summary":
        summary(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 96)
    else:
        sys.exit(__doc__)

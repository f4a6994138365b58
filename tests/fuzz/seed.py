#!/usr/bin/env python3
"""Seed corpus for tests/fuzz/fuzz_protocol.c: usage seed.py DIR.

The first byte of each file picks the fuzz target (see fuzz_protocol.c).
Seeds: a whole iperf3 control conversation cut into direction-tagged chunks,
one ending in SERVER_ERROR, a parameters JSON, a version string, and every
captured iperf2 byte array of tests/unit/iperf2_fixtures.h for the iperf2 TCP,
iperf2 UDP and detection targets."""
import json, os, re, struct, sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))


def put(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def chunks(parts):
    """(direction, bytes) pairs -> the fuzzer's chunk encoding: a selector byte
    (bit 0: direction, bits 1-7: chunk length - 1) before each chunk."""
    b = b""
    for d, data in parts:
        for i in range(0, len(data), 100):
            c = data[i:i + 100]
            b += bytes([((len(c) - 1) << 1) | d]) + c
    return b


def block(obj):
    j = json.dumps(obj).encode()
    return struct.pack(">I", len(j)) + j


cookie = b"abcdefghijklmnopqrstuvwxyz234567abcd\0"
params = {"tcp": True, "omit": 0, "time": 10, "parallel": 2, "len": 131072,
          "bidirectional": True, "client_version": "3.12"}
results = {"cpu_util_total": 1, "streams": [{"id": 1, "bytes": 10}]}
C, S = 0, 1
put("i3_ctrl_full", b"\x00" + chunks([
    (C, cookie), (S, b"\x09"), (C, block(params)), (S, b"\x0a\x01\x02"), (C, b"\x04"),
    (S, b"\x0d"), (C, block(results)), (S, block(results) + b"\x0e"), (C, b"\x10")]))
put("i3_ctrl_server_error", b"\x00" + chunks([
    (C, cookie), (S, b"\x09"), (C, block(params)),
    (S, b"\xfe\x00\x00\x00\x7b\x00\x00\x00\x16")]))
put("i3_params", b"\x01" + json.dumps(params).encode())
put("i3_version", b"\x05" + b"3.12")

src = open(os.path.join(here, "..", "unit", "iperf2_fixtures.h")).read()
n = 0
for m in re.finditer(r"static const uint8_t (\w+)\[\w*\]\s*=\s*\{([^}]*)\}", src):
    data = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})", m.group(2)))
    for sel in (2, 3, 4):
        put("i2_%s_%d" % (m.group(1), sel), bytes([sel]) + data)
    n += 1
if n == 0:
    sys.exit("seed.py: no byte arrays found in iperf2_fixtures.h")

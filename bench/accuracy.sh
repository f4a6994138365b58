#!/usr/bin/env bash
# iperf3 accuracy through the shim: are the numbers the same as direct?
#
# usage: bench/accuracy.sh [options]
#   -r, --rounds N      runs per mode and path, interleaved        (default 3)
#   -t, --time S        iperf3 -t of the timed modes               (default 4)
#   -m, --modes L       comma list of mode names (see MODES below; default all)
#   -s, --shim PATH     shim binary                                (default ./iperf-shim)
#   -b, --base PATH     a second shim binary (e.g. the build before a change): its
#                       column is run in the same rounds, after the shim's
#   -d, --drops         three namespaces (client, gateway with the shim, server) and the
#                       --bidir race's handshake drops (p=0.5 on packets 2-3 of every
#                       connection) on the client leg, the shim's upstream leg and the
#                       forwarded direct path (tests/integration/t_bidir_race.sh)
#   -o, --out FILE      raw rows (TSV) to FILE as well
#   -a, --shim-args A   extra shim arguments (one string, split on spaces)
#   -p, --pin           iperf3 (server and client) on BENCH_IPERF_CPUS (default 0), the
#                       shims on BENCH_PROXY_CPUS (default 1): the shim on a CPU of its
#                       own, as on a gateway, instead of taking the endpoints' CPU time
#                       (direct runs are pinned the same way)
#   -c, --check C,S     judge the medians: fail (exit 1) when the shim's client-to-server
#                       ratio is more than C points below direct, its server-to-client
#                       ratio more than S points below, or a shim stream is off (with -O a
#                       receiver above its sender is expected and not judged)
#                       (the issue's targets: --check 0.5,1)
#
# For every run it reads the client's -J result (which holds both ends' numbers:
# iperf3 exchanges them) and computes, per direction, received / sent bytes
# ("c2s": client to server, "s2c": server to client), and per stream the
# receiver's bytes over the sender's bytes as iperf3 paired them (by stream id).
# It prints, per mode, the median ratio of each path, the shim minus direct in
# points, and every stream whose receiver counted more than its sender sent or
# less than 90 % of it.  Loopback: ports 16300-16319 on 127.0.0.1 (run it inside
# a network namespace of your own when others share the machine).
# Exit status: 0 when every run completed (and --check held), 1 if a run failed or a
# --check bound was missed, 2 on set-up errors.
set -u
exec python3 - "$@" <<'PYEOF'
import argparse, json, os, random, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser(prog="bench/accuracy.sh")
ap.add_argument("-r", "--rounds", type=int, default=3)
ap.add_argument("-t", "--time", type=int, default=4)
ap.add_argument("-m", "--modes", default="")
ap.add_argument("-s", "--shim", default="./iperf-shim")
ap.add_argument("-b", "--base", default="")
ap.add_argument("-d", "--drops", action="store_true")
ap.add_argument("-o", "--out", default="")
ap.add_argument("-a", "--shim-args", default="")
ap.add_argument("-c", "--check", default="")
ap.add_argument("-p", "--pin", action="store_true")
a = ap.parse_args()
pin_iperf = ["taskset", "-c", os.environ.get("BENCH_IPERF_CPUS", "0")] if a.pin else []
pin_shim = ["taskset", "-c", os.environ.get("BENCH_PROXY_CPUS", "1")] if a.pin else []
T = str(a.time)

# name -> (iperf3 client arguments, streams asked for, kind); kind: "f" forward,
# "r" reverse, "b" bidir.  -n/-k sizes are whole 128 KiB blocks.
MODES = {
    "P1":        (["-t", T], 1, "f"),
    "P2":        (["-t", T, "-P", "2"], 2, "f"),
    "P4":        (["-t", T, "-P", "4"], 4, "f"),
    "P8":        (["-t", T, "-P", "8"], 8, "f"),
    "P16":       (["-t", T, "-P", "16"], 16, "f"),
    "R":         (["-t", T, "-R"], 1, "r"),
    "R-P4":      (["-t", T, "-R", "-P", "4"], 4, "r"),
    "R-P16":     (["-t", T, "-R", "-P", "16"], 16, "r"),
    "bidir":     (["-t", T, "--bidir"], 1, "b"),
    "bidir-P2":  (["-t", T, "--bidir", "-P", "2"], 2, "b"),
    "bidir-P8":  (["-t", T, "--bidir", "-P", "8"], 8, "b"),
    "n300M":     (["-n", "300M"], 1, "f"),
    "n300M-P4":  (["-n", "300M", "-P", "4"], 4, "f"),
    "R-n300M":   (["-n", "300M", "-R"], 1, "r"),
    "k2000":     (["-k", "2000"], 1, "f"),
    "O1-P2":     (["-t", T, "-O", "1", "-P", "2"], 2, "f"),
    "O1-R":      (["-t", T, "-O", "1", "-R"], 1, "r"),
}
modes = [m for m in (a.modes.split(",") if a.modes else MODES) if m]
for m in modes:
    if m not in MODES:
        sys.exit("bench/accuracy.sh: unknown mode %s (known: %s)" % (m, ", ".join(MODES)))
for b in [a.shim] + ([a.base] if a.base else []):
    if not os.access(b, os.X_OK):
        print("bench/accuracy.sh: %s is not executable" % b, file=sys.stderr); sys.exit(2)
if shutil.which("iperf3") is None:
    print("bench/accuracy.sh: iperf3 not installed", file=sys.stderr); sys.exit(2)

if a.base and a.drops:
    print("bench/accuracy.sh: --base with --drops is not supported (one drop port)", file=sys.stderr)
    sys.exit(2)
tmp = tempfile.mkdtemp(prefix="accuracy.")
procs, namespaces = [], []

def cleanup():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try: p.wait(timeout=5)
        except subprocess.TimeoutExpired: p.kill()
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    shutil.rmtree(tmp, ignore_errors=True)

def ns_cmd(ns, cmd):
    return (["ip", "netns", "exec", ns] if ns else []) + cmd

def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def wait_port(ns, port, t=10):
    end = time.monotonic() + t
    while time.monotonic() < end:
        out = subprocess.run(ns_cmd(ns, ["ss", "-Htln", "sport = :%d" % port]),
                             capture_output=True, text=True).stdout
        if out.strip():
            return True
        time.sleep(0.05)
    return False

def start(ns, cmd, log):
    p = subprocess.Popen(ns_cmd(ns, cmd), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    return p

try:
    if a.drops:
        pfx = "acc%d" % os.getpid()
        NC, NG, NS = pfx + "-c", pfx + "-g", pfx + "-s"
        for ns in (NC, NG, NS):
            sh("ip", "netns", "add", ns); namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", NC, "link", "add", "eth0", "type", "veth", "peer", "name", "c0", "netns", NG)
        sh("ip", "-n", NS, "link", "add", "eth0", "type", "veth", "peer", "name", "s0", "netns", NG)
        for ns, dev, addr in ((NC, "eth0", "10.231.1.2/24"), (NG, "c0", "10.231.1.1/24"),
                              (NG, "s0", "10.231.2.1/24"), (NS, "eth0", "10.231.2.2/24")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", NC, "route", "add", "default", "via", "10.231.1.1")
        sh("ip", "-n", NS, "route", "add", "default", "via", "10.231.2.1")
        sh("ip", "netns", "exec", NG, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rule = ["-p", "tcp", "--dport", "16300", "-m", "connbytes", "--connbytes", "2:3",
                "--connbytes-dir", "original", "--connbytes-mode", "packets", "-m", "statistic",
                "--mode", "random", "--probability", "0.5", "-j", "DROP"]
        for ns, chain in ((NC, "OUTPUT"), (NG, "OUTPUT"), (NG, "FORWARD")):
            sh("ip", "netns", "exec", ns, "iptables", "-A", chain, *rule)
        srv_ns, shim_ns, cli_ns = NS, NG, NC
        srv_host, shim_listen, direct_host, shim_host = "10.231.2.2", "10.231.1.1", "10.231.2.2", "10.231.1.1"
        time.sleep(0.2)
    else:
        srv_ns = shim_ns = cli_ns = None
        srv_host = shim_listen = direct_host = shim_host = "127.0.0.1"
    SRV, SHIM_PORT, BASE_PORT = 16300, 16301, 16302
    if a.drops:   # the drop rule matches port 16300: the shim listens on it too (other address)
        SHIM_PORT = BASE_PORT = 16300
    start(srv_ns, pin_iperf + ["iperf3", "-s", "-p", str(SRV), "-B", srv_host], tmp + "/server.log")
    if not wait_port(srv_ns, SRV):
        print("iperf3 server did not start", file=sys.stderr); sys.exit(2)
    extra = a.shim_args.split()
    paths = [("direct", direct_host, SRV, None)]
    start(shim_ns, pin_shim + [a.shim, "--listen", "%s:%d" % (shim_listen, SHIM_PORT), "--upstream",
                    "%s:%d" % (srv_host, SRV), "--log-level", "info"] + extra, tmp + "/shim.log")
    paths.append(("shim", shim_host, SHIM_PORT, tmp + "/shim.log"))
    if a.base:
        blisten, bport = shim_listen, BASE_PORT
        start(shim_ns, pin_shim + [a.base, "--listen", "%s:%d" % (blisten, bport), "--upstream",
                        "%s:%d" % (srv_host, SRV), "--log-level", "info"] + extra, tmp + "/base.log")
        paths.append(("base", shim_host, bport, tmp + "/base.log"))
    for name, host, port, _ in paths[1:]:
        if not wait_port(shim_ns, port):
            print("%s did not start" % name, file=sys.stderr); sys.exit(2)

    def analyse(d, kind):
        """(c2s ratio or None, s2c ratio or None, [(stream id, role, sent, received)], Gbit/s
        received (both directions), error)"""
        if "error" in d:
            return None, None, [], 0, d["error"]
        e = d.get("end", {})
        def ratio(ks, kr):
            s, r = e.get(ks, {}).get("bytes", 0), e.get(kr, {}).get("bytes", 0)
            return r / s if s else None
        c2s = s2c = None
        if kind == "f": c2s = ratio("sum_sent", "sum_received")
        elif kind == "r": s2c = ratio("sum_sent", "sum_received")
        else:
            c2s = ratio("sum_sent", "sum_received")
            s2c = ratio("sum_sent_bidir_reverse", "sum_received_bidir_reverse")
        gbps = sum(e.get(k, {}).get("bits_per_second", 0) for k in
                   ("sum_received", "sum_received_bidir_reverse")) / 1e9
        st = []
        for x in e.get("streams", []):
            s, r = x.get("sender", {}), x.get("receiver", {})
            role = "c2s" if s.get("sender", kind != "r") else "s2c"
            st.append((s.get("socket"), role, s.get("bytes", 0), r.get("bytes", 0)))
        return c2s, s2c, st, gbps, None

    rows, failures = [], 0
    res = {m: {p[0]: {"c2s": [], "s2c": [], "gbps": [], "bad": [], "streams": 0, "minr": 1e9, "maxr": 0}
               for p in paths} for m in modes}
    fences = {p[0]: [] for p in paths}
    for rnd in range(a.rounds):
        for m in modes:
            args, P, kind = MODES[m]
            for name, host, port, log in paths:
                out = "%s/%s-%s-%d.json" % (tmp, m, name, rnd)
                loglen = os.path.getsize(log) if log else 0
                cmd = ["timeout", str(a.time + 40)] + pin_iperf + ["iperf3", "-J", "-c", host, "-p", str(port)] + args
                rc = subprocess.run(ns_cmd(cli_ns, cmd), stdout=open(out, "w"),
                                    stderr=subprocess.DEVNULL).returncode
                try:
                    d = json.load(open(out))
                except Exception as ex:
                    d = {"error": "no JSON (rc %d): %s" % (rc, ex)}
                c2s, s2c, st, gbps, err = analyse(d, kind)
                if log:   # the shim's test line for this run (bounded wait)
                    end = time.monotonic() + 3
                    line = ""
                    while time.monotonic() < end and not line:
                        with open(log) as fh:
                            fh.seek(loglen)
                            for l in fh:
                                if " mode " in l and " streams " in l:
                                    line = l.strip()
                        if not line: time.sleep(0.05)
                    if "fence" in line:
                        fences[name].append(line[line.index("end-of-test fence"):])
                r = res[m][name]
                if err:
                    failures += 1
                    print("FAIL %s %s round %d: %s" % (m, name, rnd + 1, err), flush=True)
                    rows.append((m, name, rnd, "error", "", "", err)); continue
                r["gbps"].append(gbps)
                if c2s is not None: r["c2s"].append(c2s)
                if s2c is not None: r["s2c"].append(s2c)
                for sid, role, s, rc_ in st:
                    r["streams"] += 1
                    q = rc_ / s if s else 0
                    r["minr"], r["maxr"] = min(r["minr"], q), max(r["maxr"], q)
                    # with -O the two ends restart their counters at different
                    # moments: a receiver above its sender is expected, directly too
                    if (rc_ > s and "-O" not in MODES[m][0]) or rc_ < 0.9 * s:
                        r["bad"].append("round %d socket %s %s: sent %d received %d (%.3f)"
                                        % (rnd + 1, sid, role, s, rc_, q))
                rows.append((m, name, rnd, "%.5f" % c2s if c2s is not None else "",
                             "%.5f" % s2c if s2c is not None else "",
                             "%.4f..%.4f" % (min((x[3] / x[2] for x in st if x[2]), default=0),
                                             max((x[3] / x[2] for x in st if x[2]), default=0)), ""))
                print("# %-9s %-6s round %d: c2s %s s2c %s, %.2f Gbit/s" % (
                    m, name, rnd + 1, "%.4f" % c2s if c2s is not None else "-",
                    "%.4f" % s2c if s2c is not None else "-", gbps), flush=True)

    med = lambda v: statistics.median(v) if v else None
    fmt = lambda v: "%.4f" % v if v is not None else "-"
    names = [p[0] for p in paths]
    print()
    print("median received/sent over %d rounds (%s)%s" % (a.rounds, ("namespaces with handshake drops" if a.drops else "loopback") +
          (", iperf3 and shims pinned to separate CPUs" if a.pin else ""),
          ", shim args: " + a.shim_args if a.shim_args else ""))
    hdr = "| mode | " + " | ".join("%s c2s" % n for n in names) + " | " + \
          " | ".join("%s s2c" % n for n in names) + " | shim-direct c2s (pt) | shim-direct s2c (pt) | shim streams off (>sent or <90%) | " + \
          " | ".join("%s Gbit/s" % n for n in names) + " |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for m in modes:
        rr = res[m]
        dc, ds = med(rr["direct"]["c2s"]), med(rr["direct"]["s2c"])
        sc, ss = med(rr["shim"]["c2s"]), med(rr["shim"]["s2c"])
        dpc = "%+.2f" % (100 * (sc - dc)) if sc is not None and dc is not None else "-"
        dps = "%+.2f" % (100 * (ss - ds)) if ss is not None and ds is not None else "-"
        print("| %s | %s | %s | %s | %s | %d of %d | %s |" % (
            " ".join(MODES[m][0]), " | ".join(fmt(med(rr[n]["c2s"])) for n in names),
            " | ".join(fmt(med(rr[n]["s2c"])) for n in names), dpc, dps,
            len(rr["shim"]["bad"]), rr["shim"]["streams"],
            " | ".join("%.2f" % med(rr[n]["gbps"]) if rr[n]["gbps"] else "-" for n in names)))
    for m in modes:
        if "-O" in MODES[m][0]:
            print("# %s (-O: receiver above sender not judged): largest receiver/sender of a stream: %s"
                  % (m, ", ".join("%s %.4f" % (n, res[m][n]["maxr"]) for n in names)))
        for n in names:
            for b in res[m][n]["bad"]:
                print("# off-stream %s %s %s" % (m, n, b))
    for n in names[1:]:
        print("# %s fence lines: %d; %s" % (n, len(fences[n]), "; ".join(fences[n][:3])))
    if a.check:
        cpt, spt = (float(x) for x in a.check.split(","))
        for m in modes:
            rr = res[m]
            for dname, bound in (("c2s", cpt), ("s2c", spt)):
                dv, sv = med(rr["direct"][dname]), med(rr["shim"][dname])
                if dv is not None and sv is not None and 100 * (sv - dv) < -bound:
                    failures += 1
                    print("CHECK FAIL %s %s: shim %.4f is %.2f points below direct %.4f (bound %.2f)"
                          % (m, dname, sv, 100 * (dv - sv), dv, bound))
            if rr["shim"]["bad"]:
                failures += 1
                print("CHECK FAIL %s: %d shim stream(s) off" % (m, len(rr["shim"]["bad"])))
    if a.out:
        with open(a.out, "w") as fh:
            for row in rows: fh.write("\t".join(str(x) for x in row) + "\n")
    sys.exit(1 if failures else 0)
finally:
    cleanup()
PYEOF

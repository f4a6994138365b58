#!/bin/bash
# Two shims in front of one pool, behind the L4 spreading operators already run
# (issue #10, "past one gateway"): an nftables DNAT by source-address hash
# (jhash ip saddr mod 2) in the gateway namespace sends every connection and
# datagram of one client address to the same shim; the shims share no state
# and still never show "busy" while a server is free, because a server that
# is taken answers the other shim's test with ACCESS_DENIED and that shim
# tries the next one (docs/pool.md).  Run as root, from inside your own
# namespace if you share the machine:
#
#   bench/pool_two_shims.sh ./iperf-shim
#
# client ns (6 addresses 10.212.1.10-15) -- gateway ns: VIP 10.212.9.1:5201
# DNATed to shim A (10.212.9.11) or shim B (10.212.9.12), both with
# --upstream 10.212.2.2:5201..5204 -- server ns: 4 iperf3 3.12 servers.
# 24 clients at once, 4 per address, half TCP (-t 3) and half UDP (-u -b 20M
# -t 3).  Pass: all 24 complete with data (no "busy", no error); both shims
# served tests; every address's tests went through one shim only.
here=$(cd "$(dirname "$0")" && pwd)
SHIM=$(realpath "${1:-$here/../iperf-shim}")
export SHIM
. "$here/../tests/integration/lib.sh"
. "$here/../tests/integration/netns.sh"
it_require_root
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
command -v nft >/dev/null || it_skip "nft (Debian package nftables) not installed"

NS_C4=10.212.1.2    NS_GC4=10.212.1.1    NS_GS4=10.212.2.1    NS_S4=10.212.2.2
NS_C6=fd00:212:1::2 NS_GC6=fd00:212:1::1 NS_GS6=fd00:212:2::1 NS_S6=fd00:212:2::2
VIP=10.212.9.1 A=10.212.9.11 B=10.212.9.12
ns_topology "twoshims-$$"
for i in 10 11 12 13 14 15; do ip -n "$NS_C" addr add "10.212.1.$i/24" dev eth0; done
ip -n "$NS_C" route add "$VIP/32" via "$NS_GC4"
for a in $A $B; do ip -n "$NS_G" addr add "$a/32" dev lo; done
ns_exec "$NS_G" nft -f - <<EOF_NFT || it_fail "nft rules"
table ip spread {
    chain pre {
        type nat hook prerouting priority dstnat;
        ip daddr $VIP meta l4proto { tcp, udp } th dport 5201 dnat to jhash ip saddr mod 2 map { 0 : $A, 1 : $B }
    }
}
EOF_NFT
ups=()
for p in 5201 5202 5203 5204; do
    it_bg "srv$p" ip netns exec "$NS_S" timeout 600 iperf3 -s -p $p -B "$NS_S4"
    ups+=(--upstream "$NS_S4:$p")
done
for p in 5201 5202 5203 5204; do it_wait_tcp "$NS_S" x $p 10 || it_fail "server $p did not start"; done
it_start_shim shimA "$NS_G" -- --listen "$A:5201" "${ups[@]}" --queue-timeout 120 --name A
it_start_shim shimB "$NS_G" -- --listen "$B:5201" "${ups[@]}" --queue-timeout 120 --name B

t0=$(date +%s)
n=0
for i in 10 11 12 13 14 15; do
    for k in 0 1 2 3; do
        if [ $((k % 2)) = 0 ]; then args=(-t 3); else args=(-u -b 20M -t 3); fi
        timeout 150 ip netns exec "$NS_C" iperf3 -c "$VIP" -B "10.212.1.$i" -J "${args[@]}" \
            >"$IT_TMP/c$n.json" 2>&1 &
        echo "$! 10.212.1.$i" >>"$IT_TMP/pids"
        n=$((n + 1))
    done
done
wait $(awk '{print $1}' "$IT_TMP/pids")
echo "24 clients done in $(( $(date +%s) - t0 )) s"
python3 - "$IT_TMP" <<'PY' || it_fail "not every test completed"
import json, sys
d = sys.argv[1]; bad = []
for i in range(24):
    try:
        j = json.load(open("%s/c%d.json" % (d, i)))
    except Exception as e:
        bad.append("c%d: no JSON (%s)" % (i, str(e)[:60])); continue
    if j.get("error"):
        bad.append("c%d: %s" % (i, j["error"])); continue
    e = j.get("end", {})
    got = (e.get("sum_received") or e.get("sum") or {}).get("bytes", 0)
    if not got:
        bad.append("c%d: no data received" % i)
print("%d/24 tests complete with data" % (24 - len(bad)))
for b in bad: print("  FAIL " + b)
sys.exit(1 if bad else 0)
PY
na=$(it_shim_test_lines "$IT_TMP/shimA.log" | wc -l); nb=$(it_shim_test_lines "$IT_TMP/shimB.log" | wc -l)
echo "tests through shim A: $na, shim B: $nb"
[ "$na" -gt 0 ] && [ "$nb" -gt 0 ] || it_fail "one shim served no test"
for i in 10 11 12 13 14 15; do
    a=$(it_shim_test_lines "$IT_TMP/shimA.log" | grep -c "client 10.212.1.$i:")
    b=$(it_shim_test_lines "$IT_TMP/shimB.log" | grep -c "client 10.212.1.$i:")
    echo "  10.212.1.$i: A $a, B $b"
    [ "$a" = 0 ] || [ "$b" = 0 ] || it_fail "tests of 10.212.1.$i went through both shims"
done
grep -h "waits its turn\|busy (ACCESS_DENIED)" "$IT_TMP"/shim[AB].log | wc -l | xargs echo "queue/busy lines:"
echo ok

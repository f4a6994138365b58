# Transparent-mode topology for integration tests (issue #13).  Source after lib.sh;
# it sources netns.sh for the namespace helpers (ns_exec, ns_link, ...).
#
#   client ns                 gateway ns (shim, nft TPROXY)         server A ns
#   eth0 10.213.1.2 (shim)  <-> c0 10.213.1.1   a0 10.213.2.1 <-> eth0 10.213.2.2
#        10.213.1.3 (direct)                                          fd00:213:2::2
#        fd00:213:1::2/::3       fd00:213:1::1   fd00:213:2::1
#                                                b0 10.213.3.1 <-> server B ns
#                                                   fd00:213:3::1     eth0 10.213.3.2
#                                                                          fd00:213:3::2
#
# The gateway routes (IPv4 and IPv6) between the client and both servers.  It loads
# docs/examples/tproxy.nft (the documented ruleset; its defines replaced: LAN_IF c0,
# SHIM_PORT $TP_SHIM_PORT) and the documented policy routing (fwmark 0x1 -> local
# table 100), so TCP and UDP from the client to ports 5001 and 5201 of ANY host reach
# the shim listening in the gateway on port $TP_SHIM_PORT.  One rule is added for
# tests only, first in the chain: traffic from the client's "direct" addresses
# ($TP_D4, $TP_D6) is not intercepted, so a test can compare a run through the shim
# with a direct run in the same topology (client binds -B $TP_C4 or -B $TP_D4).
#
# Servers answer clients by their default route via the gateway, so with
# --transparent-source the servers' answers to the client's address come back to the
# gateway, where the ruleset's "socket transparent" rule delivers them to the shim.
#
# Usage:
#   . lib.sh; . lib_transparent.sh
#   tp_topology "tpt-$$"             # sets TP_C TP_G TP_A TP_B and the addresses below
#   ns_exec "$TP_G" cmd ...          # run in a namespace (netns.sh)
#   tp_shim NAME ARGS...             # start the shim in the gateway on [::]:$TP_SHIM_PORT
#                                    # with --transparent and ARGS; sets SHIM_PID
#   tp_intercepted PROTO             # packets the TPROXY rule handed to the shim so far
# Cleanup (namespaces deleted, which kills what runs in them) is registered with
# it_on_exit.  Only addresses inside these namespaces are used.

TP_C4=10.213.1.2     TP_D4=10.213.1.3     TP_GC4=10.213.1.1
TP_GA4=10.213.2.1    TP_A4=10.213.2.2     TP_GB4=10.213.3.1    TP_B4=10.213.3.2
TP_C6=fd00:213:1::2  TP_D6=fd00:213:1::3  TP_GC6=fd00:213:1::1
TP_GA6=fd00:213:2::1 TP_A6=fd00:213:2::2  TP_GB6=fd00:213:3::1 TP_B6=fd00:213:3::2
TP_SHIM_PORT=${TP_SHIM_PORT:-15201}
TP_MARK=0x1
TP_TABLE=100
TP_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TP_NFT=${TP_NFT:-$TP_HERE/../../docs/examples/tproxy.nft}

. "$TP_HERE/netns.sh"

# tp_topology PREFIX: build the topology above, load the ruleset and policy routing.
tp_topology() {
    local p=$1 ns
    command -v nft >/dev/null || it_skip "nft (nftables) not installed"
    [ -f "$TP_NFT" ] || it_fail "ruleset $TP_NFT missing"
    TP_C=$p-c TP_G=$p-g TP_A=$p-a TP_B=$p-b
    for ns in "$TP_C" "$TP_G" "$TP_A" "$TP_B"; do
        ip netns add "$ns" || it_fail "ip netns add $ns"
        it_on_exit "ns_delete $ns"
        ip -n "$ns" link set lo up
    done
    ns_link "$TP_C" eth0 "$TP_G" c0
    ns_link "$TP_A" eth0 "$TP_G" a0
    ns_link "$TP_B" eth0 "$TP_G" b0
    ip -n "$TP_C" addr add "$TP_C4/24" dev eth0
    ip -n "$TP_C" addr add "$TP_D4/24" dev eth0
    ip -n "$TP_C" addr add "$TP_C6/64" dev eth0 nodad
    # deprecated, so never chosen as a source address unless a client binds to it
    ip -n "$TP_C" addr add "$TP_D6/64" dev eth0 nodad preferred_lft 0
    ip -n "$TP_G" addr add "$TP_GC4/24" dev c0
    ip -n "$TP_G" addr add "$TP_GC6/64" dev c0 nodad
    ip -n "$TP_G" addr add "$TP_GA4/24" dev a0
    ip -n "$TP_G" addr add "$TP_GA6/64" dev a0 nodad
    ip -n "$TP_G" addr add "$TP_GB4/24" dev b0
    ip -n "$TP_G" addr add "$TP_GB6/64" dev b0 nodad
    ip -n "$TP_A" addr add "$TP_A4/24" dev eth0
    ip -n "$TP_A" addr add "$TP_A6/64" dev eth0 nodad
    ip -n "$TP_B" addr add "$TP_B4/24" dev eth0
    ip -n "$TP_B" addr add "$TP_B6/64" dev eth0 nodad
    ip -n "$TP_C" route add default via "$TP_GC4"
    ip -n "$TP_C" -6 route add default via "$TP_GC6"
    ip -n "$TP_A" route add default via "$TP_GA4"
    ip -n "$TP_A" -6 route add default via "$TP_GA6"
    ip -n "$TP_B" route add default via "$TP_GB4"
    ip -n "$TP_B" -6 route add default via "$TP_GB6"
    ns_exec "$TP_G" sysctl -qw net.ipv4.ip_forward=1
    ns_exec "$TP_G" sysctl -qw net.ipv6.conf.all.forwarding=1

    # the documented ruleset, its defines set for this topology
    sed -e "s/^define LAN_IF .*/define LAN_IF = \"c0\"/" \
        -e "s/^define SHIM_PORT .*/define SHIM_PORT = $TP_SHIM_PORT/" \
        -e "s/^define TPROXY_MARK .*/define TPROXY_MARK = $TP_MARK/" \
        "$TP_NFT" >"$IT_TMP/tproxy.nft"
    ns_exec "$TP_G" nft -f "$IT_TMP/tproxy.nft" || it_skip "nft cannot load the TPROXY ruleset (kernel without nft_tproxy/nft_socket?)"
    # tests only: the client's direct addresses are not intercepted
    ns_exec "$TP_G" nft insert rule inet iperf_shim prerouting ip saddr "$TP_D4" return
    ns_exec "$TP_G" nft insert rule inet iperf_shim prerouting ip6 saddr "$TP_D6" return
    # the documented policy routing
    ns_exec "$TP_G" ip rule add fwmark "$TP_MARK" lookup "$TP_TABLE"
    ns_exec "$TP_G" ip route add local 0.0.0.0/0 dev lo table "$TP_TABLE"
    ns_exec "$TP_G" ip -6 rule add fwmark "$TP_MARK" lookup "$TP_TABLE"
    ns_exec "$TP_G" ip -6 route add local ::/0 dev lo table "$TP_TABLE"

    # Wait (bounded) until the client reaches both servers, both families (port 9 is
    # not intercepted: this is plain routing).
    local i ok=0
    for i in $(seq 50); do
        if ns_reachable "$TP_C" "$TP_A4" && ns_reachable "$TP_C" "$TP_A6" &&
           ns_reachable "$TP_C" "$TP_B4" && ns_reachable "$TP_C" "$TP_B6"; then ok=1; break; fi
        sleep 0.1
    done
    [ $ok = 1 ] || it_fail "transparent topology $p: the client cannot reach the servers"
}

# tp_shim NAME ARGS...: start the shim in the gateway namespace, listening on
# [::]:$TP_SHIM_PORT (dual-stack) with --transparent and ARGS; waits for its start-up
# line.  Sets SHIM_PID; its log is $IT_TMP/NAME.log.
tp_shim() {
    local name=$1; shift
    it_start_shim "$name" "$TP_G" -- --listen "[::]:$TP_SHIM_PORT" --transparent "$@"
}

# tp_intercepted PROTO: packets the ruleset's TPROXY rule for PROTO (tcp|udp) has
# handed to the shim so far (the rule's counter; both address families).
tp_intercepted() {
    ns_exec "$TP_G" nft list chain inet iperf_shim prerouting 2>/dev/null |
        awk -v p="$1" '$0 ~ "tproxy" && $0 ~ (p " dport") { for (i = 1; i < NF; i++) if ($i == "packets") n += $(i + 1) } END { print n + 0 }'
}

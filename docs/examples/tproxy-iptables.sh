#!/bin/sh
# iperf-shim on a lab gateway, transparently: the iptables equivalent of
# tproxy.nft (docs/transparent.md).  Run as root on the gateway; undo with
# the same commands, -A replaced by -D (and `ip rule del ...`).
set -e
LAN_IF=c0              # where the clients are
SHIM_PORT=15201        # the shim's --listen port (not one of IPERF_PORTS)
IPERF_PORTS=5001,5201  # the servers' ports that are intercepted
TPROXY_MARK=0x1        # routes a packet to the local table (ip rule below)

for ipt in iptables ip6tables; do
    $ipt -t mangle -N IPERF_SHIM_DIVERT
    $ipt -t mangle -A IPERF_SHIM_DIVERT -j MARK --set-mark $TPROXY_MARK
    $ipt -t mangle -A IPERF_SHIM_DIVERT -j ACCEPT
    # packets of connections and flows the shim already holds, and the
    # servers' answers to its --transparent-source sockets (the return path)
    $ipt -t mangle -A PREROUTING -p tcp -m socket --transparent -j IPERF_SHIM_DIVERT
    $ipt -t mangle -A PREROUTING -p udp -m socket --transparent -j IPERF_SHIM_DIVERT
    # new connections and datagrams from the LAN to a server's iperf port
    for proto in tcp udp; do
        $ipt -t mangle -A PREROUTING -i $LAN_IF -p $proto -m multiport --dports $IPERF_PORTS \
            -j TPROXY --on-port $SHIM_PORT --tproxy-mark $TPROXY_MARK/$TPROXY_MARK
    done
done
# ICMP errors from the LAN about UDP datagrams that came from a server's iperf
# port stay on this host and reach the shim's flow socket, not the server
# (iperf2 #391; docs/udp.md).  u32 offsets: the quoted header's protocol (17,
# UDP) and its UDP source port (IPv4 header without options; IPv6 without
# extension headers).
iptables -t mangle -A PREROUTING -i $LAN_IF -p icmp --icmp-type destination-unreachable \
    -m u32 --u32 "0>>22&0x3C@14&0xFF=17 && 0>>22&0x3C@28>>16=$IPERF_PORTS" -j IPERF_SHIM_DIVERT
ip6tables -t mangle -A PREROUTING -i $LAN_IF -p icmpv6 --icmpv6-type destination-unreachable \
    -m u32 --u32 "51&0xFF=17 && 88>>16=$IPERF_PORTS" -j IPERF_SHIM_DIVERT
ip rule add fwmark $TPROXY_MARK lookup 100
ip route add local 0.0.0.0/0 dev lo table 100
ip -6 rule add fwmark $TPROXY_MARK lookup 100
ip -6 route add local ::/0 dev lo table 100

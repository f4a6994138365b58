# Network-namespace topology helpers for integration tests.  Source after lib.sh.
#
#   client ns                gateway ns                    server ns
#   eth0 10.201.1.2  <--->  c0 10.201.1.1 | s0 10.201.2.1  <--->  eth0 10.201.2.2
#        fd00:201:1::2      fd00:201:1::1 | fd00:201:2::1         fd00:201:2::2
#
# The gateway forwards (IPv4 and IPv6), so the client reaches the server directly
# through it as well as via a shim listening in the gateway namespace.  Only addresses
# inside these namespaces are used; nothing is configured in the root namespace (the
# veth pairs are created directly inside the namespaces, so their short interface
# names cannot collide with anything outside).
#
# Usage:
#   . lib.sh; . netns.sh
#   ns_topology "is-race-$$"      # sets NS_C NS_G NS_S and the address variables below
#   ns_exec "$NS_C" cmd ...       # run in a namespace
# The address variables (NS_C4 ... NS_S6) may be reassigned before ns_topology, e.g. to
# give a test its own subnets.
# Cleanup (deleting the namespaces, which also kills what runs in them) is registered
# with it_on_exit, so it runs even when the test fails.

NS_C4=10.201.1.2   NS_GC4=10.201.1.1   NS_GS4=10.201.2.1   NS_S4=10.201.2.2
NS_C6=fd00:201:1::2 NS_GC6=fd00:201:1::1 NS_GS6=fd00:201:2::1 NS_S6=fd00:201:2::2

ns_exec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ns_kill_all NS: SIGKILL every process still running inside namespace NS.
ns_kill_all() {
    local p
    for p in $(ip netns pids "$1" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
}

# ns_delete NS: kill what runs in NS, then delete it.
ns_delete() {
    ns_kill_all "$1"
    ip netns del "$1" 2>/dev/null
}

# ns_reachable NS HOST: true when a TCP SYN from NS to HOST port 9 (nothing listens
# there) is answered by a RST, i.e. the path works both ways.  Needs no ping binary.
ns_reachable() {
    local err
    err=$(ip netns exec "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$2/9" 2>&1)
    case $err in *refused*) return 0;; esac
    return 1
}

# ns_link NS_A IF_A NS_B IF_B: a veth pair between two namespaces, both ends up.
ns_link() {
    ip -n "$1" link add "$2" type veth peer name "$4" netns "$3" || it_fail "veth $1/$2 <-> $3/$4"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}

# ns_topology PREFIX: build the three-namespace topology described above.
ns_topology() {
    local p=$1
    NS_C=$p-c NS_G=$p-g NS_S=$p-s
    local ns
    for ns in "$NS_C" "$NS_G" "$NS_S"; do
        ip netns add "$ns" || it_fail "ip netns add $ns"
        it_on_exit "ns_delete $ns"
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_C" link add eth0 type veth peer name c0 netns "$NS_G" || it_fail "veth client<->gateway"
    ip -n "$NS_S" link add eth0 type veth peer name s0 netns "$NS_G" || it_fail "veth gateway<->server"

    ip -n "$NS_C" addr add "$NS_C4/24" dev eth0
    ip -n "$NS_C" addr add "$NS_C6/64" dev eth0 nodad
    ip -n "$NS_G" addr add "$NS_GC4/24" dev c0
    ip -n "$NS_G" addr add "$NS_GC6/64" dev c0 nodad
    ip -n "$NS_G" addr add "$NS_GS4/24" dev s0
    ip -n "$NS_G" addr add "$NS_GS6/64" dev s0 nodad
    ip -n "$NS_S" addr add "$NS_S4/24" dev eth0
    ip -n "$NS_S" addr add "$NS_S6/64" dev eth0 nodad
    ip -n "$NS_C" link set eth0 up
    ip -n "$NS_S" link set eth0 up
    ip -n "$NS_G" link set c0 up
    ip -n "$NS_G" link set s0 up
    ip -n "$NS_C" route add default via "$NS_GC4"
    ip -n "$NS_C" -6 route add default via "$NS_GC6"
    ip -n "$NS_S" route add default via "$NS_GS4"
    ip -n "$NS_S" -6 route add default via "$NS_GS6"
    ns_exec "$NS_G" sysctl -qw net.ipv4.ip_forward=1
    ns_exec "$NS_G" sysctl -qw net.ipv6.conf.all.forwarding=1

    # Wait (bounded) until both address families reach end to end.
    local i ok=0
    for i in $(seq 50); do
        if ns_reachable "$NS_C" "$NS_S4" && ns_reachable "$NS_C" "$NS_S6"; then ok=1; break; fi
        sleep 0.1
    done
    [ $ok = 1 ] || it_fail "namespace topology $p: client cannot reach server"
}

# ns_ipt NS ARGS...: run the same rule through iptables and ip6tables in NS.
ns_ipt() {
    local ns=$1; shift
    ns_exec "$ns" iptables "$@" && ns_exec "$ns" ip6tables "$@"
}

# ns_flush_filter NS: remove every rule from the filter table (v4 and v6) in NS.
ns_flush_filter() { ns_ipt "$1" -F; }

#!/bin/bash
# UDP details of the listener, on loopback:
# 1. Replies leave from the address the client sent to (IP_PKTINFO): the shim
#    listens on the wildcard, clients send to 127.0.0.2 and 127.0.0.3, and
#    both iperf3 and iperf2 connect() their UDP sockets, so a reply from any
#    other source address (the kernel's choice would be 127.0.0.1) would be
#    dropped by the client's kernel and the test would fail.
# 2. --protocol applies to UDP flows too: with --protocol iperf3 an iperf2 UDP
#    client gets nothing through (no upstream traffic), and the reverse.
# 3. A client that reuses its source port for a new test while the old test's
#    flow still lingers gets its own Server Report, not the old one kept for
#    answering repeated final datagrams.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

P3=15701 P2=15702 SHIMP=15703
it_bg iperf3-server iperf3 -s -p $P3
it_bg iperf2-server iperf -s -u -p $P2
it_wait_tcp x $P3 5 || it_fail "iperf3 server did not start"

it_start_shim shim -- --listen "[::]:$SHIMP" --upstream "127.0.0.1:$P3" \
    --upstream-iperf2 "127.0.0.1:$P2" --udp-linger 2
for dst in 127.0.0.2 127.0.0.3; do
    timeout 20 iperf3 -c $dst -p $SHIMP -u -b 10M -t 1 -J >"$IT_TMP/u3.json" 2>&1
    pk=$(jq '.end.sum.packets // 0' "$IT_TMP/u3.json")
    err=$(jq -r '.error // empty' "$IT_TMP/u3.json")
    [ -z "$err" ] && [ "$pk" -gt 0 ] || it_fail "iperf3 -u to $dst through the shim: error '$err', packets $pk"
    it_log "iperf3 -u to $dst: $pk packets"
    out=$(timeout 20 iperf -c $dst -p $SHIMP -u -b 5M -t 1 2>&1)
    echo "$out" | grep -q "Server Report:" || { echo "$out"; it_fail "iperf2 -u to $dst: no Server Report"; }
    it_log "iperf2 -u to $dst: Server Report received"
    sleep 3   # pacing, not a check: Debian's 2.1.8 server crashes on back-to-back clients
done

# same source port, three tests back to back (within --udp-linger): each report
# must count that test's own bytes
for n in 100 300 200; do
    out=$(timeout 20 iperf -c 127.0.0.1 -p $SHIMP -u -n ${n}K -B 127.0.0.1:15704 2>&1)
    line=$(echo "$out" | grep -A2 "Server Report:" | tail -n 1)
    echo "$line" | grep -q " $((n + 1)) KBytes" ||
        { echo "$out"; it_fail "source port reused: the -n ${n}K test got report '$line'"; }
    it_log "-n ${n}K from port 15704: $line"
    sleep 3   # pacing, not a check: Debian's 2.1.8 server crashes on back-to-back clients
done
kill "$SHIM_PID"; wait "$SHIM_PID" 2>/dev/null

# --protocol iperf3: an iperf2 UDP client is not relayed (its report never comes)
it_start_shim shim3 -- --listen "127.0.0.1:$SHIMP" --upstream "127.0.0.1:$P3" \
    --upstream-iperf2 "127.0.0.1:$P2" --protocol iperf3 --udp-linger 2 --log-level debug
out=$(timeout 20 iperf -c 127.0.0.1 -p $SHIMP -u -b 1M -t 1 2>&1)
echo "$out" | grep -q "Server Report:" && it_fail "--protocol iperf3 relayed an iperf2 UDP client"
it_wait_log_count "$IT_TMP/shim3.log" "UDP datagram of an iperf2 client dropped: --protocol iperf3" 1 5 ||
    it_fail "--protocol iperf3: no log line for the iperf2 datagrams"
timeout 20 iperf3 -c 127.0.0.1 -p $SHIMP -u -b 10M -t 1 -J >"$IT_TMP/u3b.json" 2>&1
[ "$(jq '.end.sum.packets // 0' "$IT_TMP/u3b.json")" -gt 0 ] || it_fail "--protocol iperf3 refused iperf3 UDP"
kill "$SHIM_PID"; wait "$SHIM_PID" 2>/dev/null

# --protocol iperf2: an iperf3 UDP stream request goes nowhere, iperf2 works
it_start_shim shim2 -- --listen "127.0.0.1:$SHIMP" --upstream "127.0.0.1:$P3" \
    --upstream-iperf2 "127.0.0.1:$P2" --protocol iperf2 --udp-linger 2 --log-level debug
# (an iperf3 client never gets this far: its TCP control connection is refused
# first; so send its UDP stream request by hand, 3.12's 4 bytes)
python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'9876', ('127.0.0.1', $SHIMP))"
it_wait_log_count "$IT_TMP/shim2.log" "UDP datagram of an iperf3 client dropped: --protocol iperf2" 1 5 ||
    it_fail "--protocol iperf2: iperf3 UDP request not dropped (or not logged)"
out=$(timeout 20 iperf -c 127.0.0.1 -p $SHIMP -u -b 1M -t 1 2>&1)
echo "$out" | grep -q "Server Report:" || it_fail "--protocol iperf2 refused an iperf2 UDP client"
it_log "--protocol filters UDP flows both ways"
exit 0

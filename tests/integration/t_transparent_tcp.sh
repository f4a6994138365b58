#!/bin/bash
# Transparent mode, TCP (issue #13): clients address their servers, the gateway's
# nftables TPROXY rules (docs/examples/tproxy.nft, loaded by lib_transparent.sh) hand
# the connections to the shim, which relays each test to the server its client
# addressed.  Real iperf3 3.12 and iperf 2.1.8, IPv4 and IPv6, two servers on their
# own subnets behind one gateway.
#
# Servers: A (10.213.2.2, fd00:213:2::2): iperf3 -s and iperf -s (v4);
#          B (10.213.3.2, fd00:213:3::2): iperf3 -s -B fd00:213:3::2 (IPv6 only: its
#          IPv4 port 5201 refuses) and iperf -s -V -B fd00:213:3::2.
# Every iperf3 case runs twice in the same topology: through the shim (client bound
# to $TP_C4/$TP_C6, intercepted) and directly (bound to $TP_D4/$TP_D6, not
# intercepted), and the byte counts are compared.
#
# Phase 1: shim --transparent
#  1. iperf3 -n 32M to A (v4) and -R -n 32M to B (v6), --bidir -t 1 to A (v6):
#     per direction, the sender sent as many bytes as directly (-n: +- one block) and every
#     receiver got >= 3/4 of what was sent, through the shim and directly (iperf3
#     leaves the rest in flight at TEST_END; through the shim, the end-of-test fence
#     delivers all the client sent); the shim's test line names the addressed server
#     and counts exactly what the sender sent; A's log shows the shim's gateway address as the
#     peer (no --transparent-source).  --bidir: both runs within it_iperf3_check's
#     bounds, numbers printed.
# 1b. iperf3 -t 2 to A (v4) and -R -t 2 to B (v6) at the same time: both pass.
#  2. iperf2 -d -n 16M (v4, A) and -r -n 16M (v6, B): both streams carry 16 MiB, as
#     in the direct run; the shim's line counts the connect-back.
#  3. busy: while a direct client runs a test on A, a client through the shim gets
#     iperf3's own "busy" refusal, as the direct client does, in < 3 s.
#  4. refused: iperf3 to B's IPv4 address (nothing listens): the client fails in
#     < 3 s, as directly (no hang until a timeout).
#  5. the shim's own port addressed directly (10.213.1.1:$TP_SHIM_PORT): reset at
#     once, one log line, no test.
#  6. the TPROXY rule counted the intercepted packets; the direct runs bypassed it.
# Phase 2: shim --transparent --transparent-source --transparent-mark 0x2a
#          --allow-server A's networks
#  7. iperf3 -n 32M to A (v4) and -R -n 32M (v6): compared with direct runs as in 1;
#     A's log shows the client's own address as the peer.
#  8. iperf2 -d -n 16M to A (v4): both streams carry 16 MiB; A connects back to the
#     client's address; the client sees the connect-back from A's address.  The
#     gateway's output hook counted packets with the shim's mark 0x2a.
#  9. iperf3 to B (v6, not allowed): reset at once, "not in --allow-server" logged,
#     B saw no connection.
# Phase 3: nftables REDIRECT (nat) instead of TPROXY, shim --transparent
# 10. iperf3 -n 32M to A (v4) and B (v6), iperf2 -d to A: as in 1 and 2; the shim
#     found each destination in conntrack (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST).
# Phase 4: shim --transparent --transparent-source, t_bidir_race's drops (handshake
#          ACK and cookie of new connections to 5201, p = 1/2) on the client's leg
#          and on the shim's upstream leg
# 11. iperf3 --bidir -P 2 -t 1, 6 runs through the shim (4 v4, 2 v6): every run has
#     data in every stream both ways; 6 direct runs under the same drops are
#     counted (the race crosses some of them), not asserted.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/lib_transparent.sh"

it_require_root
[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (the test runs its own direct cases)"
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
command -v iperf >/dev/null || it_skip "iperf (2.x) not installed"
[ -x "$SHIM" ] || it_fail "shim binary $SHIM missing or not executable"

tp_topology "tpt-$$"
it_log "namespaces $TP_C $TP_G $TP_A $TP_B; $(iperf3 --version | head -n 1); $(iperf -v 2>&1 | head -n 1)"
FAILS=()
bad() { echo "FAIL: $*"; FAILS+=("$*"); }
N3=$((32 << 20)) N2=$((16 << 20))

it_bg a3 ip netns exec "$TP_A" timeout 300 iperf3 -s -p 5201
it_bg b3 ip netns exec "$TP_B" timeout 300 iperf3 -s -p 5201 -B "$TP_B6"
it_bg a2 ip netns exec "$TP_A" timeout 300 iperf -s -p 5001
it_bg b2 ip netns exec "$TP_B" timeout 300 iperf -s -V -p 5001 -B "$TP_B6"
for ns in "$TP_A" "$TP_B"; do
    it_wait_tcp "$ns" x 5201 10 && it_wait_tcp "$ns" x 5001 10 || it_fail "servers did not start in $ns"
done

# listening NS PORT: wait (bounded) until NS listens on PORT again (an iperf3 3.12
# server re-creates its listener after each test; direct clients wait for it too)
listening() { it_wait_tcp "$1" x "$2" 5; }

# i3 NAME SERVER_NS SRC DST ARGS...: one iperf3 -J run from SRC to DST (bounded)
i3() {
    local name=$1 ns=$2 src=$3 dst=$4; shift 4
    listening "$ns" 5201
    ns_exec "$TP_C" timeout 30 iperf3 -J -c "$dst" -B "$src" "$@" >"$IT_TMP/$name.json" 2>"$IT_TMP/$name.err"
}
# compare NAME CHECK_ARGS...: the shim run NAME and the direct run NAME-d both pass
# it_iperf3_check; per direction: the sender sent the same bytes through the shim as
# directly (-n: within one 128 KiB block, which 3.12 may add, directly too), and each receiver got >= 3/4 of what was sent (the
# rest is what iperf3 leaves in flight at TEST_END; through the shim the end-of-test
# fence delivers all of the client's bytes; --bidir: only it_iperf3_check's bounds,
# as whichever direction ends second is cut short, directly too).  Prints both.
compare() {
    local name=$1; shift
    it_iperf3_check "$IT_TMP/$name.json" "$@" >"$IT_TMP/$name.check" || { cat "$IT_TMP/$name.check"; bad "$name through the shim"; return; }
    it_iperf3_check "$IT_TMP/$name-d.json" "$@" >"$IT_TMP/$name-d.check" || { cat "$IT_TMP/$name-d.check"; bad "$name directly"; return; }
    python3 - "$name" "$IT_TMP/$name.json" "$IT_TMP/$name-d.json" <<'PYEOF' || bad "$name: byte counts differ from the direct run"
import json, sys
name, shim, direct = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
def dirs(d):
    e, rev = d["end"], d["start"]["test_start"].get("reverse")
    out = {("s2c" if rev else "c2s"): (e["sum_sent"]["bytes"], e["sum_received"]["bytes"])}
    if "sum_sent_bidir_reverse" in e:
        out["s2c"] = (e["sum_sent_bidir_reverse"]["bytes"], e["sum_received_bidir_reverse"]["bytes"])
    return out
a, b, bad, txt = dirs(shim), dirs(direct), [], []
BLOCK = 128 << 10   # -n: iperf3 3.12 may send one block (128 KiB) more than asked, directly too
bidir = len(a) == 2
for k in sorted(set(a) | set(b)):
    if k not in a or k not in b: bad.append("%s missing" % k); continue
    (sa, ra), (sb, rb) = a[k], b[k]
    txt.append("%s sent/received shim %d/%d direct %d/%d" % (k, sa, ra, sb, rb))
    if not bidir and abs(sa - sb) > BLOCK: bad.append("%s: sent %d through the shim, %d directly" % (k, sa, sb))
    for who, s_, r_ in (("shim", sa, ra), ("direct", sb, rb)):
        if not bidir and r_ < 0.75 * s_: bad.append("%s %s: received %d < 3/4 of %d sent" % (who, k, r_, s_))
print(("FAIL: %s: " % name + "; ".join(bad) + " | ") if bad else "# ok %s: " % name, end="")
print("; ".join(txt))
sys.exit(1 if bad else 0)
PYEOF
}
# shim_line LOG SERVER: the last test line of the shim for server address SERVER
shim_line() { it_shim_test_lines "$1" | grep -F "server $2:5201," | tail -n 1; }

# ---------------------------------------------------------------- phase 1
it_log "phase 1: --transparent"
tp_shim shim1 --handshake-timeout 3
LOG1=$IT_TMP/shim1.log

it_log "1. iperf3 through the shim and directly"
i3 n4   "$TP_A" "$TP_C4" "$TP_A4" -n "$N3"; i3 n4-d   "$TP_A" "$TP_D4" "$TP_A4" -n "$N3"
i3 r6   "$TP_B" "$TP_C6" "$TP_B6" -R -n "$N3"; i3 r6-d "$TP_B" "$TP_D6" "$TP_B6" -R -n "$N3"
i3 bd6  "$TP_A" "$TP_C6" "$TP_A6" --bidir -t 1; i3 bd6-d "$TP_A" "$TP_D6" "$TP_A6" --bidir -t 1
compare n4
compare r6 --mode reverse
compare bd6 --mode bidir --timed
it_wait_log_count "$LOG1" "test \S+: client .*, server \[?$TP_A6\]?:5201, mode TCP bidir" 1 5
sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_sent"]["bytes"])' "$IT_TMP/n4.json")
l=$(shim_line "$LOG1" "$TP_A4"); case $l in *"bytes client->server $sent, server->client 0, control closed"*) it_log "ok shim line: ${l#*info  }";; *) bad "shim line for n4: '$l'";; esac
sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_sent"]["bytes"])' "$IT_TMP/r6.json")
l=$(shim_line "$LOG1" "[$TP_B6]"); case $l in *"mode TCP reverse"*"server->client $sent, control closed"*) it_log "ok shim line: ${l#*info  }";; *) bad "shim line for r6: '$l'";; esac
grep -q "Accepted connection from $TP_GA4, port" "$IT_TMP/a3.log" || bad "server A did not see the gateway's address $TP_GA4 (no --transparent-source)"

it_log "1b. two servers at once: iperf3 -t 2 to A (v4) and B (v6) in parallel"
listening "$TP_A" 5201; listening "$TP_B" 5201
ns_exec "$TP_C" timeout 30 iperf3 -J -c "$TP_A4" -B "$TP_C4" -t 2 >"$IT_TMP/parA.json" 2>&1 &
PA=$!
ns_exec "$TP_C" timeout 30 iperf3 -J -c "$TP_B6" -B "$TP_C6" -t 2 -R >"$IT_TMP/parB.json" 2>&1
wait "$PA"
for f in parA parB; do
    m=default; [ $f = parB ] && m=reverse
    it_iperf3_check "$IT_TMP/$f.json" --mode $m --timed >"$IT_TMP/$f.check" && it_log "ok $f: $(cat "$IT_TMP/$f.check")" \
        || { cat "$IT_TMP/$f.check"; bad "$f: parallel test through the shim"; }
done

it_log "2. iperf2 -d / -r through the shim and directly"
# i2 NAME SRC DST ARGS...: iperf2 client, streams parsed (see lib.sh it_iperf2_streams)
i2() {
    local name=$1 src=$2 dst=$3; shift 3
    ns_exec "$TP_C" timeout 30 iperf -c "$dst" -B "$src" -p 5001 -n "$N2" "$@" >"$IT_TMP/$name.out" 2>&1
    it_iperf2_streams "$IT_TMP/$name.out" >"$IT_TMP/$name.streams"
}
# i2check NAME: [1] (sent) and the connect-back stream (local port 5001) each N2 bytes
i2check() {
    local s cb
    s=$(awk '$1 == "1" { print $2 }' "$IT_TMP/$1.streams")
    cb=$(awk '$1 != "1" && $1 != "SUM" && $3 == 5001 { print $2 }' "$IT_TMP/$1.streams" | head -n 1)
    if [ "${s:-0}" = "$N2" ] && [ "${cb:-0}" = "$N2" ]; then it_log "ok $1: sent $s, connect-back received $cb"
    else bad "$1: sent ${s:-none}, connect-back received ${cb:-none}, want $N2 each"; sed 's/^/#   | /' "$IT_TMP/$1.out"; fi
}
i2 d4 "$TP_C4" "$TP_A4" -d;   i2check d4
i2 d4-d "$TP_D4" "$TP_A4" -d; i2check d4-d
i2 r6 "$TP_C6" "$TP_B6" -V -r;   i2check r6
i2 r6-d "$TP_D6" "$TP_B6" -V -r; i2check r6-d
it_wait_log_count "$LOG1" "iperf2 test: client \S+, server \[?$TP_B6\]?:5001, .*connect-back via shim port" 1 15 \
    || bad "no iperf2 line with a connect-back for server B"
it_iperf2_shim_lines "$LOG1" | sed 's/^/#   shim: /'

it_log "3. a busy server answers busy itself"
listening "$TP_A" 5201
ns_exec "$TP_C" timeout 30 iperf3 -c "$TP_A4" -B "$TP_D4" -t 4 >"$IT_TMP/occupy.out" 2>&1 &
OCC=$!
for _ in $(seq 100); do grep -q "Accepted connection from $TP_D4" "$IT_TMP/a3.log" && break; sleep 0.05; done
sleep 0.3   # pacing: let the occupying test reach TEST_RUNNING (not a check)
for c in "$TP_C4 shim" "$TP_D4 direct"; do
    set -- $c
    t0=$(date +%s%N)
    ns_exec "$TP_C" timeout 10 iperf3 -J -c "$TP_A4" -B "$1" -t 1 >"$IT_TMP/busy-$2.json" 2>&1
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    err=$(it_iperf3_error "$IT_TMP/busy-$2.json")
    case $err in *busy*) [ "$ms" -lt 3000 ] && it_log "ok busy ($2): '$err' in $ms ms" || bad "busy ($2) took $ms ms";;
                 *) bad "busy ($2): error '$err', want the server's busy refusal";; esac
done
wait "$OCC"

it_log "4. nothing listens at the destination: prompt failure"
for c in "$TP_C4 shim" "$TP_D4 direct"; do
    set -- $c
    t0=$(date +%s%N)
    ns_exec "$TP_C" timeout 10 iperf3 -J -c "$TP_B4" -B "$1" -t 1 >"$IT_TMP/refused-$2.json" 2>&1
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    err=$(it_iperf3_error "$IT_TMP/refused-$2.json")
    if [ -n "$err" ] && [ "$ms" -lt 3000 ]; then it_log "ok refused ($2): '$err' in $ms ms"
    else bad "refused ($2): error '$err' after $ms ms"; fi
done
it_wait_log_count "$LOG1" "server $TP_B4:5201, .*connect to $TP_B4:5201: Connection refused" 1 5 \
    || bad "no test line saying the connect to $TP_B4:5201 was refused"

it_log "5. the shim's own port addressed directly"
ns_exec "$TP_C" timeout 10 iperf3 -J -c "$TP_GC4" -p "$TP_SHIM_PORT" -t 1 >"$IT_TMP/loop.json" 2>&1
err=$(it_iperf3_error "$IT_TMP/loop.json")
[ -n "$err" ] || bad "a client of the shim's own port ran a test"
it_wait_log_count "$LOG1" "refusing TCP client $TP_C4:[0-9]+ to $TP_GC4:$TP_SHIM_PORT: that is the shim's own listener" 1 5 \
    && it_log "ok own port: '$err', logged" || bad "no log line for the client of the shim's own port"

it_log "6. interception counters"
n=$(tp_intercepted tcp)
[ "$n" -gt 0 ] && it_log "ok the TPROXY rule handed $n TCP packets to the shim" || bad "the TPROXY rule counted no TCP packet"
n=$(it_shim_test_lines "$LOG1" | grep -cE "client \[?($TP_D4|$TP_D6)\]?:")
[ "$n" = 0 ] || bad "$n direct runs went through the shim"
kill -0 "$SHIM_PID" 2>/dev/null || bad "shim 1 exited: $(tail -n 3 "$LOG1")"
it_stop_pid "$SHIM_PID"

# ---------------------------------------------------------------- phase 2
it_log "phase 2: --transparent --transparent-source --allow-server A"
ns_exec "$TP_G" nft -f - <<'NFT' || bad "cannot load the mark-counting chain"
table inet t_mark {
    chain output {
        type filter hook output priority 0; policy accept;
        meta mark 0x2a counter
    }
}
NFT
tp_shim shim2 --handshake-timeout 3 --transparent-source --transparent-mark 0x2a \
    --allow-server 10.213.2.0/24 --allow-server fd00:213:2::/64
LOG2=$IT_TMP/shim2.log

it_log "7. iperf3 from the client's own address"
i3 s4 "$TP_A" "$TP_C4" "$TP_A4" -n "$N3"; i3 s4-d "$TP_A" "$TP_D4" "$TP_A4" -n "$N3"
i3 s6 "$TP_A" "$TP_C6" "$TP_A6" -R -n "$N3"; i3 s6-d "$TP_A" "$TP_D6" "$TP_A6" -R -n "$N3"
compare s4
compare s6 --mode reverse
grep -q "Accepted connection from $TP_C4, port" "$IT_TMP/a3.log" || bad "server A never saw the client's address $TP_C4"
grep -q "Accepted connection from $TP_C6, port" "$IT_TMP/a3.log" || bad "server A never saw the client's address $TP_C6"

it_log "8. iperf2 -d from the client's own address"
i2 sd4 "$TP_C4" "$TP_A4" -d; i2check sd4
grep -q "Client connecting to $TP_C4, TCP port" "$IT_TMP/a2.log" || bad "server A did not connect back to the client's address"
grep -q "port 5001 connected with $TP_A4 port" "$IT_TMP/sd4.out" || bad "the client did not see the connect-back from A's address"

marked=$(ns_exec "$TP_G" nft list chain inet t_mark output | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
[ "${marked:-0}" -gt 0 ] && it_log "ok --transparent-mark: $marked packets of the shim left with mark 0x2a" \
    || bad "no packet of the shim carried --transparent-mark 0x2a"
it_log "9. a server outside --allow-server"
before=$(grep -c "Accepted connection" "$IT_TMP/b3.log")
t0=$(date +%s%N)
ns_exec "$TP_C" timeout 10 iperf3 -J -c "$TP_B6" -B "$TP_C6" -t 1 >"$IT_TMP/deny.json" 2>&1
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
err=$(it_iperf3_error "$IT_TMP/deny.json")
[ -n "$err" ] && [ "$ms" -lt 3000 ] || bad "client to the server not allowed: error '$err' after $ms ms"
it_wait_log_count "$LOG2" "refusing TCP client \[$TP_C6\]:[0-9]+ to \[$TP_B6\]:5201: server not in --allow-server" 1 5 \
    && it_log "ok not allowed: '$err' in $ms ms, logged" || bad "no log line for the server not allowed"
[ "$(grep -c "Accepted connection" "$IT_TMP/b3.log")" = "$before" ] || bad "server B saw a connection although not allowed"
kill -0 "$SHIM_PID" 2>/dev/null || bad "shim 2 exited: $(tail -n 3 "$LOG2")"
it_stop_pid "$SHIM_PID"

# ---------------------------------------------------------------- phase 3
it_log "phase 3: REDIRECT instead of TPROXY (the destination from conntrack)"
# with no shim on $TP_SHIM_PORT the TPROXY rule finds no socket and does not match;
# the nat chain then redirects to the shim's port $TP_SHIM_PORT+1
RPORT=$((TP_SHIM_PORT + 1))
ns_exec "$TP_G" nft -f - <<NFT || bad "cannot load the REDIRECT rules"
table inet iperf_shim_nat {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "c0" ip saddr $TP_C4 tcp dport { 5001, 5201 } redirect to :$RPORT
        iifname "c0" ip6 saddr $TP_C6 tcp dport { 5001, 5201 } redirect to :$RPORT
    }
}
NFT
it_start_shim shim3 "$TP_G" -- --listen "[::]:$RPORT" --transparent --handshake-timeout 3
LOG3=$IT_TMP/shim3.log
it_log "10. iperf3 and iperf2 -d via REDIRECT"
i3 x4 "$TP_A" "$TP_C4" "$TP_A4" -n "$N3"; i3 x4-d "$TP_A" "$TP_D4" "$TP_A4" -n "$N3"
i3 x6 "$TP_B" "$TP_C6" "$TP_B6" -n "$N3"; i3 x6-d "$TP_B" "$TP_D6" "$TP_B6" -n "$N3"
compare x4
compare x6
i2 xd4 "$TP_C4" "$TP_A4" -d; i2check xd4
n=$(it_shim_test_lines "$LOG3" | grep -cE "server ($TP_A4|\\[$TP_B6\\]):5201, mode TCP,")
[ "$n" = 2 ] && it_log "ok the shim relayed both iperf3 tests to their addressed servers" || bad "$n iperf3 tests relayed to A and B via REDIRECT, want 2"
kill -0 "$SHIM_PID" 2>/dev/null || bad "shim 3 exited: $(tail -n 3 "$LOG3")"

it_stop_pid "$SHIM_PID"

# ---------------------------------------------------------------- phase 4
it_log "phase 4: the --bidir role race (esnet/iperf #2029) on both legs, transparently"
ns_exec "$TP_G" nft delete table inet iperf_shim_nat
tp_shim shim4 --handshake-timeout 3 --transparent-source
LOG4=$IT_TMP/shim4.log
# t_bidir_race's drop: the handshake ACK and the cookie of a new connection to 5201,
# each lost with probability 1/2, on the client's output (client leg, and direct runs),
# the gateway's output (the shim's upstream leg) and forward (direct runs)
DROP=(-p tcp --dport 5201 -m connbytes --connbytes 2:3 --connbytes-dir original
      --connbytes-mode packets -m statistic --mode random --probability 0.5 -j DROP)
for t in "$TP_C OUTPUT" "$TP_G OUTPUT" "$TP_G FORWARD"; do
    set -- $t
    ns_exec "$1" iptables -A "$2" "${DROP[@]}" && ns_exec "$1" ip6tables -A "$2" "${DROP[@]}" \
        || it_skip "iptables lacks the connbytes/statistic matches"
done
it_log "11. --bidir -P 2 -t 1, 6 runs through the shim (4 IPv4, 2 IPv6) and 6 directly"
crossed=0 ok=0
for i in 1 2 3 4 5 6; do
    if [ $i -le 4 ]; then src=$TP_C4 dsrc=$TP_D4 dst=$TP_A4; else src=$TP_C6 dsrc=$TP_D6 dst=$TP_A6; fi
    i3 race$i "$TP_A" "$src" "$dst" --bidir -P 2 -t 1
    if it_iperf3_check "$IT_TMP/race$i.json" --mode bidir -P 2 --timed --per-stream-note >"$IT_TMP/race$i.check"; then
        ok=$((ok + 1))
    else
        cat "$IT_TMP/race$i.check"; bad "race run $i through the shim"
    fi
    i3 race$i-d "$TP_A" "$dsrc" "$dst" --bidir -P 2 -t 1
    it_iperf3_check "$IT_TMP/race$i-d.json" --mode bidir -P 2 --timed >/dev/null || crossed=$((crossed + 1))
done
drops=$(( $(ns_exec "$TP_C" iptables -nvxL OUTPUT | awk '$3 == "DROP" { s += $1 } END { print s + 0 }') +
          $(ns_exec "$TP_G" iptables -nvxL OUTPUT | awk '$3 == "DROP" { s += $1 } END { print s + 0 }') ))
[ "$drops" -gt 0 ] || bad "the drop rules dropped nothing: the race was not provoked"
it_log "ok through the shim $ok/6 runs with data in every stream both ways; directly $crossed/6 runs failed" \
       "(the race); $drops IPv4 handshake packets dropped; 'bidir roles fixed' logged $(grep -c 'bidir roles fixed' "$LOG4") times"
for t in "$TP_C OUTPUT" "$TP_G OUTPUT" "$TP_G FORWARD"; do
    set -- $t
    ns_exec "$1" iptables -D "$2" "${DROP[@]}"; ns_exec "$1" ip6tables -D "$2" "${DROP[@]}"
done
kill -0 "$SHIM_PID" 2>/dev/null || bad "shim 4 exited: $(tail -n 3 "$LOG4")"

it_log "shim warnings:"
grep -hE '\b(warn|error)\b' "$LOG1" "$LOG2" "$LOG3" "$LOG4" | sed 's/^/#   /'
if [ ${#FAILS[@]} -gt 0 ]; then
    echo "FAIL: ${#FAILS[@]} check(s) failed"
    exit 1
fi
echo PASS

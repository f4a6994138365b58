#!/bin/bash
# A pool of servers behind one shim (docs/pool.md), real iperf3 3.12 and
# iperf 2.1.8 on loopback.  Run it inside a network namespace of your own.
#
#  1. affinity + queue + dead member: shim A in front of three iperf3 servers
#     and one port nothing listens on.  Four tests at once from one host (TCP
#     -P 2, UDP -P 2, --bidir -P 2, -R): every one completes with data on every
#     stream (UDP streams carry no cookie: they must reach their test's server),
#     three run on three different servers, the fourth waits its turn and is
#     logged as queued; the dead member is logged down once.
#  1b. three UDP tests (-P 3) at once from that host through shim A: all complete.
#  2. busy, then the next: a direct client keeps server 1 busy; through shim B
#     (servers 1 and 2, server 1 asked first) the test is refused by server 1
#     (ACCESS_DENIED, never shown to the client) and runs on server 2.
#  3. queue bounds: shim C (one server, --queue-max 1, --queue-timeout 2): while a
#     test runs, client Q waits and gets "busy" after about 2 s; client F, with
#     the queue full, gets "busy" at once.
#  4. --max-tests-per-client 1 (shim D): a second test from the same host while
#     one runs gets "busy" at once (iperf3); a second iperf2 test is closed.
#  5. a member dies mid-test: through shim B, the server running a test is
#     killed; the next test runs on the other server; the dead one is logged down,
#     and, restarted, is logged back up when its back-off is over.
#  6. iperf2: two iperf2 servers behind shim E: two tests at once (one plain,
#     one -d with its connect-back) run on different servers (least loaded).
#  7. IPv6: through shim F on [::1], one IPv4 and one IPv6 member, a UDP and a
#     TCP test at once from ::1: both complete, one on each member.
#  8. a member that accepts and never answers (shim G, --connect-timeout 1) is
#     marked suspect after 1 s and the test runs on the next member.
set -u
. "$(dirname "$0")/lib.sh"
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
command -v iperf >/dev/null || it_skip "iperf (2) not installed"

S1=15301 S2=15302 S3=15303 DEAD=15309
A=15300 B=15310 C=15320 D=15330 E=15340 I2A=15341 I2B=15342
busy="the server is busy running a test. try again later"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

declare -A SPID
start_server() {  # start_server PORT
    it_iperf3_server "srv$1-$RANDOM" "$1"
    SPID[$1]=$IT_IPERF3_PID
}
for p in $S1 $S2 $S3; do start_server $p; done

# wait_log FILE REGEX COUNT SECONDS: poll until FILE has COUNT lines matching REGEX.
wait_log() {
    local i
    for i in $(seq $(($4 * 10))); do
        [ "$(grep -cE "$2" "$1")" -ge "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
# wait_established PORT N SECONDS: poll until N established TCP connections to PORT.
wait_established() {
    local i
    for i in $(seq $(($3 * 10))); do
        [ "$(ss -Htn state established "dport = :$1" | wc -l)" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# server_of LOG ID: the server a test ran on (from its end-of-test line).
server_of() { grep -E "test $2: client .*, mode " "$1" | sed -E 's/.*, server ([^,]+), mode .*/\1/' | tail -n 1; }
# test_id JSON: the cookie's first 8 characters, as the shim logs it.
test_id() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["start"]["cookie"][:8])' "$1" 2>/dev/null; }

# ---- 1. affinity, queue, dead member ----------------------------------------
it_start_shim shimA -- --listen 127.0.0.1:$A --upstream 127.0.0.1:$S1 --upstream 127.0.0.1:$DEAD \
    --upstream 127.0.0.1:$S2 --upstream 127.0.0.1:$S3 --connect-timeout 2 --log-level debug
LA=$IT_TMP/shimA.log
t0=$(date +%s.%N)
it_iperf3_json "$IT_TMP/a-tcp.json" 40 -c 127.0.0.1 -p $A -t 3 -P 2 &   p1=$!
it_iperf3_json "$IT_TMP/a-udp.json" 40 -c 127.0.0.1 -p $A -t 3 -P 2 -u -b 20M &   p2=$!
it_iperf3_json "$IT_TMP/a-bidir.json" 40 -c 127.0.0.1 -p $A -t 3 -P 2 --bidir &   p3=$!
it_iperf3_json "$IT_TMP/a-rev.json" 40 -c 127.0.0.1 -p $A -t 3 -R &   p4=$!
wait $p1 $p2 $p3 $p4
echo "part 1: four tests at once took $(python3 -c "import time; print(round(time.time() - $t0, 1))") s"
r=$(it_iperf3_check "$IT_TMP/a-tcp.json" -P 2 --timed) || fail "1 tcp: $r"; echo "  tcp -P 2: $r"
r=$(it_udp_iperf3_check "$IT_TMP/a-udp.json" -P 2) || fail "1 udp: $r"; echo "  udp -P 2: $r"
r=$(it_iperf3_check "$IT_TMP/a-bidir.json" --mode bidir -P 2 --timed --per-stream-note) || fail "1 bidir: $r"
echo "  bidir -P 2: $r"
r=$(it_iperf3_check "$IT_TMP/a-rev.json" --mode reverse --timed) || fail "1 reverse: $r"; echo "  -R: $r"
wait_log "$LA" "test .*: client .*, mode .*queued" 4 10 || fail "1: four end-of-test lines not logged"
declare -A used
for f in tcp udp bidir rev; do
    id=$(test_id "$IT_TMP/a-$f.json"); s=$(server_of "$LA" "$id")
    echo "  $f: test $id ran on $s"
    [ -n "$s" ] || fail "1 $f: no end-of-test line for test '$id'"
    [ "$s" = "127.0.0.1:$DEAD" ] && fail "1 $f: ran on the dead member"
    used[$s]=1
done
[ ${#used[@]} -eq 3 ] || fail "1: tests ran on ${#used[@]} distinct servers, want 3"
n=$(grep -cE "iperf3 server 127.0.0.1:$DEAD is down" "$LA")
[ "$n" = 1 ] || fail "1: dead member logged down $n times, want 1"
q=$(grep -cE "every server busy: client .* waits its turn" "$LA")
[ "$q" -ge 1 ] || fail "1: no test waited in the queue ($q)"
grep -E "test .*: client .*, mode .*, queued [1-9][0-9]*\.[0-9] s|queued 0\.[1-9] s" "$LA" | sed 's/^/  queued: /' | head -n 3
grep -qE "queued ([1-9][0-9]*\.[0-9]|0\.[1-9]) s$" "$LA" || fail "1: no test line shows a wait in the queue"
grep -qE "ACCESS_DENIED|busy running" "$IT_TMP"/a-*.json && fail "1: a client saw busy"

# ---- 1b. three UDP tests at once from one host ------------------------------------
# their streams carry no cookie: each must reach its own test's server, so the
# shim keeps their stream-creation phases apart (CREATE_STREAMS held back)
for i in 1 2 3; do
    it_iperf3_json "$IT_TMP/u$i.json" 40 -c 127.0.0.1 -p $A -t 2 -P 3 -u -b 10M &   up[$i]=$!
done
wait ${up[1]} ${up[2]} ${up[3]}
for i in 1 2 3; do
    r=$(it_udp_iperf3_check "$IT_TMP/u$i.json" -P 3) || fail "1b udp $i: $r"; echo "  1b udp $i -P 3: $r"
done
echo "part 1b: CREATE_STREAMS held back $(grep -c "holding the server's CREATE_STREAMS" "$LA") time(s)"

# ---- 2. busy, then the next ---------------------------------------------------
it_start_shim shimB -- --listen 127.0.0.1:$B --upstream 127.0.0.1:$S1 --upstream 127.0.0.1:$S2 \
    --connect-timeout 2 --log-level debug
LB=$IT_TMP/shimB.log
timeout 30 iperf3 -c 127.0.0.1 -p $S1 -t 4 >"$IT_TMP/direct.out" 2>&1 &   dpid=$!
wait_established $S1 2 5 || fail "2: the direct test on server 1 did not start"
it_iperf3_json "$IT_TMP/b.json" 20 -c 127.0.0.1 -p $B -t 1
r=$(it_iperf3_check "$IT_TMP/b.json" --timed) || fail "2: $r"; echo "part 2: $r"
id=$(test_id "$IT_TMP/b.json")
wait_log "$LB" "test $id: client .*, mode " 1 5
s=$(server_of "$LB" "$id")
[ "$s" = "127.0.0.1:$S2" ] || fail "2: ran on '$s', want server 2"
grep -qE "test $id: server 127.0.0.1:$S1 is busy \(ACCESS_DENIED\): asking the next one" "$LB" \
    || fail "2: no 'busy, asking the next one' line for server 1"
wait $dpid || fail "2: the direct test on server 1 failed: $(tail -n 2 "$IT_TMP/direct.out")"

# ---- 3. queue bounds ---------------------------------------------------------
it_start_shim shimC -- --listen 127.0.0.1:$C --upstream 127.0.0.1:$S3 --queue-max 1 \
    --queue-timeout 2 --log-level debug
LC=$IT_TMP/shimC.log
it_iperf3_json "$IT_TMP/c-long.json" 30 -c 127.0.0.1 -p $C -t 5 &   lpid=$!
wait_established $S3 2 5 || fail "3: the long test did not start"
q0=$(date +%s.%N)
( it_iperf3_json "$IT_TMP/c-q.json" 20 -c 127.0.0.1 -p $C -t 1; date +%s.%N >"$IT_TMP/c-q.end" ) &   qpid=$!
wait_log "$LC" "waits its turn" 1 5 || fail "3: client Q did not queue"
f0=$(date +%s.%N)
it_iperf3_json "$IT_TMP/c-f.json" 20 -c 127.0.0.1 -p $C -t 1
f1=$(date +%s.%N)
wait $qpid
qt=$(python3 -c "print(round($(cat "$IT_TMP/c-q.end") - $q0, 2))"); ft=$(python3 -c "print(round($f1 - $f0, 2))")
echo "part 3: queued client refused after $qt s: '$(it_iperf3_error "$IT_TMP/c-q.json")'; queue-full client after $ft s: '$(it_iperf3_error "$IT_TMP/c-f.json")'"
[ "$(it_iperf3_error "$IT_TMP/c-q.json")" = "$busy" ] || fail "3: queued client did not get busy"
[ "$(it_iperf3_error "$IT_TMP/c-f.json")" = "$busy" ] || fail "3: queue-full client did not get busy"
python3 -c "import sys; sys.exit(not (1.5 <= $qt <= 4.5))" || fail "3: queued client refused after $qt s, want ~2"
python3 -c "import sys; sys.exit(not ($ft < 1.5))" || fail "3: queue-full client waited $ft s"
wait $lpid
r=$(it_iperf3_check "$IT_TMP/c-long.json" --timed) || fail "3 long test: $r"
grep -q "queue full (--queue-max)" "$LC" || fail "3: no queue-full line"
grep -q "no server free within --queue-timeout" "$LC" || fail "3: no queue-timeout line"

# ---- 4. --max-tests-per-client -------------------------------------------------
timeout 600 iperf -s -p $I2A -B 127.0.0.1 >"$IT_TMP/i2a.log" 2>&1 &   IT_PIDS+=($!)
timeout 600 iperf -s -p $I2B -B 127.0.0.1 >"$IT_TMP/i2b.log" 2>&1 &   IT_PIDS+=($!)
it_wait_tcp x $I2A 10 && it_wait_tcp x $I2B 10 || fail "iperf2 servers did not start"
it_start_shim shimD -- --listen 127.0.0.1:$D --upstream 127.0.0.1:$S3 --upstream-iperf2 127.0.0.1:$I2A \
    --max-tests-per-client 1 --log-level debug
LD=$IT_TMP/shimD.log
it_iperf3_json "$IT_TMP/d-long.json" 30 -c 127.0.0.1 -p $D -t 3 &   lpid=$!
wait_established $S3 2 5 || fail "4: the first test did not start"
it_iperf3_json "$IT_TMP/d-2.json" 20 -c 127.0.0.1 -p $D -t 1
[ "$(it_iperf3_error "$IT_TMP/d-2.json")" = "$busy" ] || fail "4: second iperf3 test from the host: '$(it_iperf3_error "$IT_TMP/d-2.json")', want busy"
wait $lpid
r=$(it_iperf3_check "$IT_TMP/d-long.json" --timed) || fail "4 first test: $r"
timeout 20 iperf -c 127.0.0.1 -p $D -t 3 >"$IT_TMP/d-i2a.out" 2>&1 &   ipid=$!
wait_established $I2A 1 5 || fail "4: the first iperf2 test did not start"
timeout 20 iperf -c 127.0.0.1 -p $D -t 1 >"$IT_TMP/d-i2b.out" 2>&1
wait $ipid
grep -qE "refusing iperf2 client .*max-tests-per-client 1" "$LD" || fail "4: second iperf2 test not refused"
grep -qE "[0-9.]+ [KMG]?Bytes" "$IT_TMP/d-i2a.out" || fail "4: first iperf2 test: $(tail -n 3 "$IT_TMP/d-i2a.out")"
echo "part 4: second iperf3 test told busy, second iperf2 test refused; first ones ran"

# ---- 5. a member dies mid-test ---------------------------------------------------
it_iperf3_json "$IT_TMP/e-long.json" 30 -c 127.0.0.1 -p $B -t 8 &   lpid=$!
wait_log "$LB" "runs on server" 2 5 || fail "5: the long test did not start"
victim=$(grep -E "runs on server" "$LB" | tail -n 1 | sed -E 's/.*runs on server 127.0.0.1:([0-9]+).*/\1/')
other=$S1; [ "$victim" = "$S1" ] && other=$S2
wait_established "$victim" 2 5
kill "${SPID[$victim]}"
wait $lpid
echo "part 5: killed server $victim mid-test; the client says '$(it_iperf3_error "$IT_TMP/e-long.json")'"
for i in 1 2 3 4; do   # round robin: every other test asks the dead server first
    [ $i -gt 2 ] && grep -q "iperf3 server 127.0.0.1:$victim is down" "$LB" && break
    it_iperf3_json "$IT_TMP/e-next$i.json" 20 -c 127.0.0.1 -p $B -t 1
    r=$(it_iperf3_check "$IT_TMP/e-next$i.json" --timed) || fail "5 next test $i: $r"
    id=$(test_id "$IT_TMP/e-next$i.json")
    wait_log "$LB" "test $id: client .*, mode " 1 5
    s=$(server_of "$LB" "$id")
    echo "  next test $i ran on $s"
    [ "$s" = "127.0.0.1:$other" ] || fail "5: next test $i ran on '$s', want 127.0.0.1:$other"
done
grep -q "iperf3 server 127.0.0.1:$victim is down" "$LB" || fail "5: server $victim not logged down"
start_server "$victim"
back=0
for i in $(seq 8); do   # bounded: the back-off is 2 s, then 4 s
    grep -q "iperf3 server 127.0.0.1:$victim is back up" "$LB" && { back=1; break; }
    it_iperf3_json "$IT_TMP/e-$i.json" 20 -c 127.0.0.1 -p $B -t 1
    r=$(it_iperf3_check "$IT_TMP/e-$i.json" --timed) || fail "5 test $i: $r"
    sleep 0.5
done
grep -q "iperf3 server 127.0.0.1:$victim is back up" "$LB" && back=1
[ $back = 1 ] || fail "5: server $victim never logged back up"
n=$(grep -c "iperf3 server 127.0.0.1:$victim is down" "$LB")
echo "  server $victim: logged down $n time(s), back up: $back"

# ---- 6. iperf2: least loaded -------------------------------------------------------
it_start_shim shimE -- --listen 127.0.0.1:$E --upstream 127.0.0.1:$S1 --upstream-iperf2 127.0.0.1:$I2A \
    --upstream-iperf2 127.0.0.1:$I2B --handshake-timeout 3 --log-level debug
LE=$IT_TMP/shimE.log
timeout 20 iperf -c 127.0.0.1 -p $E -t 2 >"$IT_TMP/f1.out" 2>&1 &   x1=$!
timeout 20 iperf -c 127.0.0.1 -p $E -t 2 -d -L 15349 >"$IT_TMP/f2.out" 2>&1 &   x2=$!
wait $x1 $x2
# -d: the server's connect-back reaches the client through the shim: two reports
[ "$(grep -cE "[0-9.]+ [KMG]?Bytes" "$IT_TMP/f2.out")" -ge 2 ] \
    || fail "6: -d test: want a report each way: $(tail -n 4 "$IT_TMP/f2.out")"
wait_log "$LE" "iperf2 test: client" 2 10 || fail "6: two iperf2 end lines not logged"
srv=$(grep -E "iperf2 test: client" "$LE" | sed -E 's/.*, server ([^,]+), .*/\1/' | sort -u | tr '\n' ' ')
echo "part 6: iperf2 tests ran on: $srv"
[ "$(echo $srv | wc -w)" = 2 ] || fail "6: want two different iperf2 servers, got '$srv'"
for f in f1 f2; do grep -qE "[0-9.]+ [KMG]?Bytes" "$IT_TMP/$f.out" || fail "6 $f: $(tail -n 2 "$IT_TMP/$f.out")"; done

# ---- 7. IPv6: a client over IPv6, one IPv4 and one IPv6 member ---------------------
if ip -6 addr show dev lo 2>/dev/null | grep -q "::1"; then
    V6=15351 F=15350
    it_iperf3_server "srv6" $V6 -B ::1
    it_start_shim shimF -- --listen "[::1]:$F" --upstream 127.0.0.1:$S3 --upstream "[::1]:$V6" \
        --log-level debug
    LF=$IT_TMP/shimF.log
    it_iperf3_json "$IT_TMP/v6-udp.json" 30 -c ::1 -p $F -t 2 -P 2 -u -b 10M &   y1=$!
    it_iperf3_json "$IT_TMP/v6-tcp.json" 30 -c ::1 -p $F -t 2 -P 2 &   y2=$!
    wait $y1 $y2
    r=$(it_udp_iperf3_check "$IT_TMP/v6-udp.json" -P 2) || fail "7 udp over IPv6: $r"; echo "part 7: udp: $r"
    r=$(it_iperf3_check "$IT_TMP/v6-tcp.json" -P 2 --timed) || fail "7 tcp over IPv6: $r"; echo "part 7: tcp: $r"
    wait_log "$LF" "test .*: client .*, mode " 2 5 || fail "7: two end-of-test lines not logged"
    srv=$(grep -E "test .*: client .*, mode " "$LF" | sed -E 's/.*, server ([^,]+), mode .*/\1/' | sort -u | tr '\n' ' ')
    echo "part 7: tests ran on: $srv"
    [ "$(echo $srv | wc -w)" = 2 ] || fail "7: want both members used, got '$srv'"
else
    echo "part 7: skipped (no IPv6 loopback)"
fi

# ---- 8. a member that accepts but never answers ----------------------------------
SIL=15361 G=15360
timeout 120 python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); time.sleep(120)' $SIL &   IT_PIDS+=($!)
it_wait_tcp x $SIL 10 || fail "8: silent server did not listen"
it_start_shim shimG -- --listen 127.0.0.1:$G --upstream 127.0.0.1:$SIL --upstream 127.0.0.1:$S3 \
    --connect-timeout 1 --log-level debug
LG=$IT_TMP/shimG.log
g0=$(date +%s.%N)
it_iperf3_json "$IT_TMP/g.json" 30 -c 127.0.0.1 -p $G -t 1
r=$(it_iperf3_check "$IT_TMP/g.json" --timed) || fail "8: $r"
id=$(test_id "$IT_TMP/g.json")
wait_log "$LG" "test $id: client .*, mode " 1 5
echo "part 8: $r; took $(python3 -c "import time; print(round(time.time() - $g0, 1))") s, ran on $(server_of "$LG" "$id")"
grep -q "iperf3 server 127.0.0.1:$SIL is suspect" "$LG" || fail "8: the silent member was not marked suspect"
[ "$(server_of "$LG" "$id")" = "127.0.0.1:$S3" ] || fail "8: the test did not move on to the next member"

echo "--- shim warn lines ---"
grep -hE " warn " "$IT_TMP"/shim*.log | head -n 20
[ $fails = 0 ] || it_fail "$fails failure(s)"
echo "ok"

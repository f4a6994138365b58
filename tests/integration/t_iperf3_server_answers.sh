#!/bin/bash
# The iperf3 3.12 server's refusals must reach the client through the shim exactly
# as they do directly.  Every scenario is run twice, straight at the server and
# through the shim, and the client's error text (-J "error" and plain stderr line)
# must be equal, and equal to the text 3.12 is known to print:
#  1. busy: a second client while a test runs -> server writes ACCESS_DENIED (-1)
#     -> "the server is busy running a test. try again later"; the running test
#     still completes with matching byte counts.
#  2. SERVER_ERROR: client -M 1.  The server re-creates its data listener with
#     TCP_MAXSEG 1 after PARAM_EXCHANGE, setsockopt fails (EINVAL) and it sends
#     SERVER_ERROR -2, i_errno 123 (IESETMSS), errno 22 (iperf_exchange_parameters,
#     iperf_tcp_listen) -> "unable to set TCP/SCTP MSS: Invalid argument".
#     Also checked on the wire with a scripted client: after the cookie and a
#     parameters JSON with "MSS":1 the bytes coming back are 09 fe 0000007b 00000016
#     then EOF, through the shim as directly.
#  3. a queued client reset by the server: A holds the server in PARAM_EXCHANGE, B waits
#     in its backlog; when A leaves, 3.12 re-creates its listener and resets B:
#     "unable to receive control message: Connection reset by peer" (B, both ways).
#  4. authentication (RSA): correct password passes through; wrong password and
#     unknown user get "test authorization failed".  On the wire 3.12 sends
#     SERVER_ERROR followed by ONE int32 only (i_errno 142 = IEAUTHTEST) and closes
#     (iperf_exchange_parameters in 3.12-3.20; 3.21 sends two): a relay waiting for 8
#     code bytes must still pass those 5 bytes and the EOF on.  Checked on the wire
#     through a recording relay (it_tap): 09 fe 0000008e then EOF, shim as direct.
#     (The password has no whitespace: 3.12 parses the token with sscanf "%s",
#     iperf_auth.c, so "a b" is always refused.)
# After each scenario a normal test must pass (server and shim recovered).
# IT_DIRECT=1 SHIM=none runs only the direct halves.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"

SRV=15220 SH=15221 ASRV=15222 ASH=15223 TAP=15224
it_iperf3_server srv $SRV
SRV_PID=$IT_IPERF3_PID
if [ "$IT_DIRECT" != 1 ]; then
    # --queue-max 0: no queue, so a busy server's refusal reaches the client as directly
    it_start_shim shim -- --listen 127.0.0.1:$SH --upstream 127.0.0.1:$SRV --log-level debug \
        --queue-max 0
    SH_PID=$SHIM_PID
fi
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# paths: "direct" and (unless IT_DIRECT) "shim"
paths=(direct); [ "$IT_DIRECT" = 1 ] || paths+=(shim)
port_of() { case $1 in direct) echo "$2";; shim) echo "$3";; esac; }

# sanity: normal test on PATH via PORT
normal_test() {
    local what=$1 port=$2; shift 2
    local out=$IT_TMP/normal.$RANDOM.json res
    it_iperf3_json "$out" 20 -c 127.0.0.1 -p "$port" -t 1 -P 2 "$@" \
        || fail "$what: normal test exit $?: $(it_iperf3_error "$out")"
    res=$(it_iperf3_check "$out" -P 2 --timed) || fail "$what: normal test: $res"
    echo "  $what normal test: $res"
}

# wait_running PORT: poll (10 s at most) until the server on PORT has received more than
# 1 MiB on its sockets: the test's data is flowing, the server is past CREATE_STREAMS.
wait_running() {
    for _ in $(seq 200); do
        [ "$(ss -Htni state established "( sport = :$1 )" | grep -o 'bytes_received:[0-9]*' |
             awk -F: '{ s += $2 } END { print s + 0 }')" -gt 1048576 ] && return 0
        sleep 0.05
    done
    return 1
}

# ---- 1. busy ----------------------------------------------------------------
want_busy="the server is busy running a test. try again later"
declare -A busy_json busy_err
busy_once() {  # busy_once PATH PORT: 0 when the scenario ran as intended (refusals while the test ran)
    local p=$1 port=$2 long=$IT_TMP/busy-long-$1.json lpid jpid rc
    it_iperf3_json "$long" 30 -c 127.0.0.1 -p "$port" -t 6 &
    lpid=$!
    wait_running $SRV || fail "busy/$p: long test did not start"
    # both refused clients at once, well inside the 6 s test
    it_iperf3_json "$IT_TMP/busy2-$p.json" 10 -c 127.0.0.1 -p "$port" -t 1 &
    jpid=$!
    timeout 10 iperf3 -c 127.0.0.1 -p "$port" -t 1 >/dev/null 2>"$IT_TMP/busy3-$p.err"; busy_rc=$?
    wait $jpid
    kill -0 $lpid 2>/dev/null; local still=$?
    busy_json[$p]=$(it_iperf3_error "$IT_TMP/busy2-$p.json")
    busy_err[$p]=$(grep 'error' "$IT_TMP/busy3-$p.err")
    wait $lpid; rc=$?
    [ $rc = 0 ] || fail "busy/$p: long test exit $rc: $(it_iperf3_error "$long")"
    res=$(it_iperf3_check "$long" --timed) || fail "busy/$p: long test: $res"
    echo "  busy/$p long test: $res"
    return $still
}
for p in "${paths[@]}"; do
    port=$(port_of $p $SRV $SH)
    busy_once $p "$port" || { echo "busy/$p: the long test had ended before the refused clients were done (slow machine?); once more"; busy_once $p "$port"; } \
        || fail "busy/$p: the long test ended before the refused clients were done, twice"
    echo "busy/$p: -J error '${busy_json[$p]}', stderr '${busy_err[$p]}'"
    [ $busy_rc = 1 ] || fail "busy/$p: plain client exit $busy_rc, want 1"
    [ "${busy_json[$p]}" = "$want_busy" ] || fail "busy/$p: -J error '${busy_json[$p]}', want '$want_busy'"
    [ "${busy_err[$p]}" = "iperf3: error - $want_busy" ] || fail "busy/$p: stderr '${busy_err[$p]}'"
done
if [ "$IT_DIRECT" != 1 ]; then
    [ "${busy_json[direct]}" = "${busy_json[shim]}" ] || fail "busy: shim '${busy_json[shim]}' != direct '${busy_json[direct]}'"
    [ "${busy_err[direct]}" = "${busy_err[shim]}" ] || fail "busy: shim stderr differs from direct"
    # the shim's end-of-test line says what happened to the refused tests
    it_wait_log_count "$IT_TMP/shim.log" 'test .*: client .*ACCESS_DENIED' 2 3 \
        || fail "busy: shim did not log 2 end-of-test lines with ACCESS_DENIED: $(it_shim_test_lines "$IT_TMP/shim.log" | tail -n 4)"
fi

# ---- 2. SERVER_ERROR after PARAM_EXCHANGE (-M 1) -----------------------------
want_mss="unable to set TCP/SCTP MSS: Invalid argument"
declare -A mss_json mss_err mss_wire
for p in "${paths[@]}"; do
    port=$(port_of $p $SRV $SH)
    it_iperf3_json "$IT_TMP/mss-$p.json" 10 -c 127.0.0.1 -p "$port" -t 1 -M 1
    mss_json[$p]=$(it_iperf3_error "$IT_TMP/mss-$p.json")
    timeout 10 iperf3 -c 127.0.0.1 -p "$port" -t 1 -M 1 >/dev/null 2>"$IT_TMP/mss-$p.err"; rc=$?
    mss_err[$p]=$(grep 'error' "$IT_TMP/mss-$p.err")
    [ $rc = 1 ] || fail "mss/$p: plain client exit $rc, want 1"
    # on the wire: cookie, read PARAM_EXCHANGE, send parameters with MSS 1, read to EOF
    mss_wire[$p]=$(timeout 15 python3 - "$port" <<'PYEOF'
import json, socket, struct, sys, random
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(bytes(random.choice(b"abcdefghijklmnopqrstuvwxyz234567") for _ in range(36)) + b"\0")
got = s.recv(1)
params = json.dumps({"tcp": True, "omit": 0, "time": 1, "num": 0, "blockcount": 0, "MSS": 1,
                     "parallel": 1, "len": 131072, "pacing_timer": 1000,
                     "client_version": "3.12"}, separators=(",", ":")).encode()
if got == b"\x09":
    s.sendall(struct.pack(">I", len(params)) + params)
    try:
        while True:
            b = s.recv(4096)
            if not b: got += b"|EOF"; break
            got += b
    except socket.timeout: got += b"|TIMEOUT"
    except ConnectionResetError: got += b"|RST"
print(got.hex() if b"|" not in got else got[:got.index(b"|")].hex() + got[got.index(b"|"):].decode())
PYEOF
)
    echo "mss/$p: -J error '${mss_json[$p]}', stderr '${mss_err[$p]}', wire '${mss_wire[$p]}'"
    [ "${mss_json[$p]}" = "$want_mss" ] || fail "mss/$p: -J error '${mss_json[$p]}', want '$want_mss'"
    [ "${mss_err[$p]}" = "iperf3: error - $want_mss" ] || fail "mss/$p: stderr '${mss_err[$p]}'"
    [ "${mss_wire[$p]}" = "09fe0000007b00000016|EOF" ] || fail "mss/$p: wire '${mss_wire[$p]}', want 09fe0000007b00000016|EOF"
    normal_test "mss/$p" "$port"
done
if [ "$IT_DIRECT" != 1 ]; then
    it_wait_log_count "$IT_TMP/shim.log" 'test .*: client .*server error 123 \(errno 22\)' 3 3 \
        || fail "mss: shim did not log 3 end-of-test lines with 'server error 123 (errno 22)'"
    [ "${mss_json[direct]}" = "${mss_json[shim]}" ] || fail "mss: shim '${mss_json[shim]}' != direct '${mss_json[direct]}'"
    [ "${mss_wire[direct]}" = "${mss_wire[shim]}" ] || fail "mss: shim wire '${mss_wire[shim]}' != direct '${mss_wire[direct]}'"
fi

# ---- 3. a queued client reset by the server -----------------------------------
# A sends a cookie and holds the server in PARAM_EXCHANGE (3.12 reads the parameters
# with no timeout); B connects meanwhile and waits in the listen backlog.  When A
# closes, the server fails the parameter read, re-creates its listener and B's queued
# connection is reset: directly B prints "unable to receive control message:
# Connection reset by peer"; through the shim the upstream reset must reach B too.
want_q="unable to receive control message: Connection reset by peer"
declare -A q_json
for p in "${paths[@]}"; do
    port=$(port_of $p $SRV $SH)
    timeout 15 python3 -c '
import os, random, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(bytes(random.choice(b"abcdefghijklmnopqrstuvwxyz234567") for _ in range(36)) + b"\0")
print(s.recv(1).hex(), flush=True)
deadline = time.time() + 10                 # hold until B is queued (the shell says so)
while not os.path.exists(sys.argv[2]) and time.time() < deadline: time.sleep(0.02)
s.close()' "$port" "$IT_TMP/q-go-$p" >"$IT_TMP/q-a-$p.out" 2>&1 &
    apid=$!
    for _ in $(seq 50); do [ -s "$IT_TMP/q-a-$p.out" ] && break; sleep 0.1; done
    t0=$(date +%s)
    it_iperf3_json "$IT_TMP/q-b-$p.json" 15 -c 127.0.0.1 -p "$port" -t 1 &
    bpid=$!
    # B is queued once the server's port has a second established connection (A's, or
    # the shim's upstream leg for A, and B's or its upstream leg in the listen backlog)
    for _ in $(seq 200); do
        [ "$(ss -Htn state established "( sport = :$SRV )" | wc -l)" -ge 2 ] && break
        sleep 0.05
    done
    [ "$(ss -Htn state established "( sport = :$SRV )" | wc -l)" -ge 2 ] || fail "queued/$p: B never reached the server's backlog"
    touch "$IT_TMP/q-go-$p"
    wait $bpid; rc=$?
    wait $apid
    q_json[$p]=$(it_iperf3_error "$IT_TMP/q-b-$p.json")
    echo "queued/$p: A got '$(cat "$IT_TMP/q-a-$p.out")'; B exit $rc after $(( $(date +%s) - t0 ))s, error '${q_json[$p]}'"
    [ "$(cat "$IT_TMP/q-a-$p.out")" = 09 ] || fail "queued/$p: A did not get PARAM_EXCHANGE"
    [ "${q_json[$p]}" = "$want_q" ] || fail "queued/$p: B's error '${q_json[$p]}', want '$want_q'"
    normal_test "queued/$p" "$port"
done

# ---- 4. authentication --------------------------------------------------------
auth_skipped=0
if ! command -v openssl >/dev/null; then
    echo "SKIP auth part: openssl not installed"; auth_skipped=1
else
    k=$IT_TMP/keys; mkdir -p "$k"
    openssl genrsa -out "$k/private.pem" 2048 2>/dev/null || fail "openssl genrsa"
    openssl rsa -in "$k/private.pem" -outform PEM -pubout -out "$k/public.pem" 2>/dev/null || fail "openssl rsa -pubout"
    # authorized users: user,sha256("{user}password")
    echo "alice,$(printf '{%s}%s' alice 's3cr3t-pass' | sha256sum | cut -d' ' -f1)" >"$k/users.csv"
    it_iperf3_server asrv $ASRV --rsa-private-key-path "$k/private.pem" --authorized-users-path "$k/users.csv"
    if [ "$IT_DIRECT" != 1 ]; then
        it_start_shim ashim -- --listen 127.0.0.1:$ASH --upstream 127.0.0.1:$ASRV --log-level debug
        ASH_PID=$SHIM_PID
    fi
    want_auth="test authorization failed"
    declare -A auth_json auth_err auth_wire
    for p in "${paths[@]}"; do
        port=$(port_of $p $ASRV $ASH)
        out=$IT_TMP/auth-ok-$p.json
        IPERF3_PASSWORD='s3cr3t-pass' it_iperf3_json "$out" 20 -c 127.0.0.1 -p "$port" -t 1 -P 2 \
            --username alice --rsa-public-key-path "$k/public.pem" \
            || fail "auth/$p: correct password: exit $?"
        res=$(it_iperf3_check "$out" -P 2 --timed) || fail "auth/$p: correct password: $res"
        echo "auth/$p correct password: $res"
        for case in wrongpw:alice:wrong unknownuser:mallory:s3cr3t_pass; do
            IFS=: read -r cname user pw <<<"$case"
            IPERF3_PASSWORD=$pw it_iperf3_json "$IT_TMP/auth-$cname-$p.json" 10 -c 127.0.0.1 -p "$port" -t 1 \
                --username "$user" --rsa-public-key-path "$k/public.pem"
            auth_json[$cname.$p]=$(it_iperf3_error "$IT_TMP/auth-$cname-$p.json")
            IPERF3_PASSWORD=$pw timeout 10 iperf3 -c 127.0.0.1 -p "$port" -t 1 \
                --username "$user" --rsa-public-key-path "$k/public.pem" >/dev/null 2>"$IT_TMP/auth-$cname-$p.err"; rc=$?
            auth_err[$cname.$p]=$(grep 'error' "$IT_TMP/auth-$cname-$p.err")
            echo "auth/$p $cname: -J error '${auth_json[$cname.$p]}', stderr '${auth_err[$cname.$p]}'"
            [ $rc = 1 ] || fail "auth/$p $cname: plain client exit $rc, want 1"
            [ "${auth_json[$cname.$p]}" = "$want_auth" ] || fail "auth/$p $cname: '${auth_json[$cname.$p]}', want '$want_auth'"
            [ "${auth_err[$cname.$p]}" = "iperf3: error - $want_auth" ] || fail "auth/$p $cname: stderr '${auth_err[$cname.$p]}'"
            # on the wire, through a recording relay: 09 fe 0000008e EOF (one int32 only)
            it_tap $TAP "$port" "$IT_TMP/tap-$cname-$p"
            IPERF3_PASSWORD=$pw timeout 10 iperf3 -c 127.0.0.1 -p $TAP -t 1 \
                --username "$user" --rsa-public-key-path "$k/public.pem" >/dev/null 2>&1
            for _ in $(seq 50); do [ -s "$IT_TMP/tap-$cname-$p" ] && break; sleep 0.1; done
            auth_wire[$cname.$p]=$(cat "$IT_TMP/tap-$cname-$p" 2>/dev/null)
            echo "auth/$p $cname: wire '${auth_wire[$cname.$p]}'"
            [ "${auth_wire[$cname.$p]}" = "09fe0000008e|EOF" ] || fail "auth/$p $cname: wire '${auth_wire[$cname.$p]}', want 09fe0000008e|EOF"
            if [ "$p" = shim ]; then
                [ "${auth_json[$cname.$p]}" = "${auth_json[$cname.direct]}" ] || fail "auth $cname: shim text differs from direct"
            fi
        done
        # the server (and shim) still serve an authorized test afterwards
        out=$IT_TMP/auth-after-$p.json
        IPERF3_PASSWORD='s3cr3t-pass' it_iperf3_json "$out" 20 -c 127.0.0.1 -p "$port" -t 1 -R \
            --username alice --rsa-public-key-path "$k/public.pem" || fail "auth/$p: test after refusals: exit $?"
        res=$(it_iperf3_check "$out" --mode reverse --timed) || fail "auth/$p: test after refusals: $res"
    done
    if [ "$IT_DIRECT" != 1 ]; then
        # not asserted: how the shim's end-of-test line reports the 5-byte SERVER_ERROR
        echo "shim's end-of-test lines for the auth server:"; it_shim_test_lines "$IT_TMP/ashim.log" | sed 's/^/    /'
    fi
fi

if [ "$IT_DIRECT" != 1 ]; then
    for pid in "$SH_PID" ${ASH_PID:+"$ASH_PID"}; do
        kill -0 "$pid" 2>/dev/null || fail "shim pid $pid died"
    done
    echo "--- shim log (warn/error lines) ---"
    grep -Eih 'warn|error|reject' "$IT_TMP/shim.log" "$IT_TMP/ashim.log" 2>/dev/null | tail -n 20
fi
[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
[ $auth_skipped = 0 ] || it_skip "auth part skipped: openssl not installed"
exit 0

#!/bin/bash
# The configuration file (issue #11): --check, and reload on SIGHUP.
#
# 1. --check on a good file with two services (IPv4 and IPv6, comments,
#    integer and float values) exits 0 and prints both; on broken files it
#    exits non-zero with FILE:LINE and what is wrong: a syntax error, an
#    unknown key, a bad value, a service without upstream, two services on
#    one address, a missing file.
# 2. Reload: services A (15811) and B (15813) in front of an iperf3 server
#    (15812).  A 5 s iperf3 test runs through A; the file is rewritten to A and
#    C (15815, in front of a second server, 15816) and SIGHUP sent: B stops (its port refuses once drained), C
#    starts and serves a test, the test on A completes whole.  Then a broken
#    file and SIGHUP: refused with a log line, A still serves a test.
# 3. --log-format json: every line is one JSON object (time, level, msg).
#
# Ports: 15811-15816 on 127.0.0.1 and ::1.  Takes about 15 s.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (shim-specific checks)"
H=127.0.0.1 A=15811 SRV=15812 B=15813 C=15815 SRV2=15816
CONF=$IT_TMP/shim.conf

# check_bad NAME EXPECTED_LINE EXPECTED_TEXT: --check on $IT_TMP/NAME.conf must fail so.
check_bad() {
    local out rc
    out=$("$SHIM" --config "$IT_TMP/$1.conf" --check 2>&1); rc=$?
    echo "  $1: rc $rc: $out"
    [ $rc != 0 ] || it_fail "--check accepted $1"
    case $out in *"$1.conf:$2: "*"$3"*) ;; *) it_fail "$1: want line $2 and '$3'";; esac
}

# --- 1. --check ----------------------------------------------------------------------
cat >"$CONF" <<EOC
# two services
log_level = "debug";   // a comment
drain_timeout = 30;
services = (
  { name = "lab-a"; listen = "$H:$A"; upstream = "$H:$SRV"; connect_timeout = 2; },
  { listen = "[::1]:$B"; upstream = "[::1]:$SRV"; protocol = "iperf3"; udp_linger = 2.5;
    no_splice = true; }
);
EOC
out=$("$SHIM" --config "$CONF" --check) || it_fail "--check refused a good file: $out"
echo "$out"
grep -q "^service lab-a: listen $H:$A .*connect 2 s" <<<"$out" || it_fail "--check: service lab-a not as written"
grep -q "^service \[::1\]:$B: listen \[::1\]:$B .*protocol iperf3.*UDP linger 2.5 s.*splice off" <<<"$out" \
    || it_fail "--check: the IPv6 service not as written"

printf 'services = (\n  { listen = "%s";\n    upstream = ;\n  }\n);\n' "$H:$A" >"$IT_TMP/syntax.conf"
check_bad syntax 3 "syntax error"
printf 'services = (\n  {\n    listen = "%s";\n    upstream = "%s";\n    protcol = "auto";\n  }\n);\n' "$H:$A" "$H:$SRV" >"$IT_TMP/unknown.conf"
check_bad unknown 5 "services[0].protcol: unknown setting"
printf 'log_level = "loud";\n' >"$IT_TMP/level.conf"
check_bad level 1 "log_level: expected error, warn, info or debug"
printf 'services = (\n  { listen = "%s"; upstream = "%s"; },\n  {\n    listen = "%s";\n    idle_timeout = -1;\n  }\n);\n' "$H:$A" "$H:$SRV" "$H:$B" >"$IT_TMP/value.conf"
check_bad value 5 "services[1].idle_timeout: expected seconds"
printf 'services = (\n  { listen = "%s"; upstream = "%s"; },\n  {\n    listen = "%s";\n  }\n);\n' "$H:$A" "$H:$SRV" "$H:$B" >"$IT_TMP/noup.conf"
check_bad noup 3 "services[1]: a service needs an upstream server"
printf 'services = (\n  { listen = "%s"; upstream = "%s"; },\n  { listen = "%s"; upstream = "%s"; }\n);\n' "$H:$A" "$H:$SRV" "$H:$A" "$H:$SRV" >"$IT_TMP/dup.conf"
check_bad dup 3 "two services listen on the same address"
out=$("$SHIM" --config "$IT_TMP/none.conf" --check 2>&1) && it_fail "--check accepted a missing file"
case $out in *"none.conf: cannot read the file: No such file"*) ;; *) it_fail "missing file: '$out'";; esac

# --- 2. reload -----------------------------------------------------------------------
it_iperf3_server srv "$SRV"
it_iperf3_server srv2 "$SRV2"
two_services() {   # two_services PORT1 PORT2 SERVER2
    cat >"$CONF.new" <<EOC
services = (
  { name = "svc-$1"; listen = "$H:$1"; upstream = "$H:$SRV"; },
  { name = "svc-$2"; listen = "$H:$2"; upstream = "$H:$3"; }
);
EOC
    mv "$CONF.new" "$CONF"
}
two_services "$A" "$B" "$SRV"
it_start_shim shim -- --config "$CONF" --log-level debug
LOG=$IT_TMP/shim.log
it_wait_tcp x "$B" 5 || it_fail "service B did not listen"
it_bg longtest it_iperf3_json "$IT_TMP/long.json" 30 -c "$H" -p "$A" -t 5
LONG=$IT_LAST_PID
it_wait_log_count "$LOG" "test \S+: client .* asks for" 1 10 || { cat "$LOG"; it_fail "the test on A never started"; }

two_services "$A" "$C" "$SRV2"
kill -HUP "$SHIM_PID"
it_wait_log_count "$LOG" "reloaded: 1 service\(s\) added, 1 removed" 1 5 || { cat "$LOG"; it_fail "no reload line"; }
it_wait_tcp x "$C" 5 || it_fail "service C did not start listening after the reload"
it_iperf3_json "$IT_TMP/c.json" 20 -c "$H" -p "$C" -t 1
it_iperf3_check "$IT_TMP/c.json" --timed || it_fail "a test through the added service C failed"
it_wait_log_count "$LOG" "service svc-$B: removed by a reload, drained and closed" 1 5 || it_fail "B was not closed"
if timeout 2 bash -c "exec 3<>/dev/tcp/$H/$B" 2>/dev/null; then it_fail "B still accepts connections"; fi

wait "$LONG"
it_iperf3_check "$IT_TMP/long.json" --timed || it_fail "the test on A did not complete whole across the reload"
grep -Eq "test \S+: client .*control closed" "$LOG" || it_fail "the test on A did not end normally"

printf 'services = (\n  { listen = "%s"\n' "$H:$A" >"$CONF"
kill -HUP "$SHIM_PID"
it_wait_log_count "$LOG" "reload refused: .*shim.conf:[0-9]+: .*; the running configuration stays" 1 5 \
    || { tail -5 "$LOG"; it_fail "a broken file was not refused with a line"; }
it_iperf3_json "$IT_TMP/a2.json" 20 -c "$H" -p "$A" -t 1
it_iperf3_check "$IT_TMP/a2.json" --timed || it_fail "A stopped serving after a refused reload"
kill -0 "$SHIM_PID" || it_fail "the shim died"

# --- 3. JSON log lines -------------------------------------------------------------------
it_stop_pid "$SHIM_PID"
it_start_shim jsonshim -- --listen "$H:$B" --upstream "$H:$SRV" --log-format json
it_iperf3_json "$IT_TMP/j.json" 20 -c "$H" -p "$B" -t 1
it_iperf3_check "$IT_TMP/j.json" --timed || it_fail "a test through the JSON-logging shim failed"
it_wait_log_count "$IT_TMP/jsonshim.log" '"msg":"test [^ ]+: client ' 1 5 || it_fail "no JSON test line"
python3 - "$IT_TMP/jsonshim.log" <<'PY' || it_fail "a log line is not one JSON object with time, level, msg"
import json, sys
n = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    assert set(o) == {"time", "level", "msg"} and o["level"] in ("error", "warn", "info", "debug"), o
    n += 1
print("JSON log lines:", n)
PY
echo PASS

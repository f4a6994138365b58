#!/bin/bash
# Metrics and the status page (issue #11), with real iperf3 and iperf tests.
#
#  - /metrics parses with `promtool check metrics`, before and after tests;
#  - while an iperf3 --bidir test runs, /status.json lists it (client, mode,
#    bytes moving) and the page at / shows it in a real headless browser
#    (Debian's chromium --dump-dom; skipped with a message without chromium);
#  - after it: iperf_shim_tests_total{protocol="iperf3",transport="tcp",
#    mode="bidir",outcome="ok"} is 1 and the TCP bytes each way equal the
#    shim's own line for the test; an iperf2 UDP test moves the UDP counters
#    and counts as a test once its flow has lingered out (--udp-linger 1);
#    the recent tests of /status.json hold both;
#  - unknown paths get 404, POST gets 405.
#
# Ports: 15821-15824 on 127.0.0.1.  Takes about 15 s.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (shim-specific checks)"
command -v promtool >/dev/null || it_skip "promtool (Debian package prometheus) not installed"
command -v curl >/dev/null || it_skip "curl not installed"
H=127.0.0.1 SHIMP=15821 I3=15822 I2=15823 M=15824
URL=http://$H:$M

it_iperf3_server i3srv "$I3"
it_bg i2srv iperf -s -u -B "$H" -p "$I2"
it_wait_udp "$H" "$I2" 10 || it_fail "iperf -s -u did not bind $I2"
it_start_shim shim -- --listen "$H:$SHIMP" --upstream "$H:$I3" --upstream-iperf2 "$H:$I2" \
    --metrics "$H:$M" --udp-linger 1 --name lab --log-level debug
LOG=$IT_TMP/shim.log

scrape() { curl -sf --max-time 5 "$URL/metrics" >"$IT_TMP/$1.prom" || it_fail "GET /metrics failed"; \
           promtool check metrics <"$IT_TMP/$1.prom" || it_fail "promtool rejects /metrics ($1)"; }
metric() { awk -v k="$2" 'index($0, k" ") == 1 { print $NF; f = 1 } END { if (!f) print 0 }' "$IT_TMP/$1.prom"; }
scrape before

# --- a running test in the status view and in a browser ------------------------------
it_bg i3c it_iperf3_json "$IT_TMP/i3.json" 30 -c "$H" -p "$SHIMP" -t 3 --bidir
I3C=$IT_LAST_PID
ok=0
for _ in $(seq 100); do
    curl -sf --max-time 2 "$URL/status.json" >"$IT_TMP/status.json" 2>/dev/null && \
    python3 - "$IT_TMP/status.json" <<'PY' && { ok=1; break; }
import json, sys
d = json.load(open(sys.argv[1]))
run = [t for s in d["services"] if s["name"] == "lab" for t in s["running"]]
sys.exit(0 if any(t["protocol"] == "iperf3" and t["mode"] == "bidir" and t["outcome"] == "running"
                  and t["bytes_client_to_server"] > 0 and t["bytes_server_to_client"] > 0
                  for t in run) else 1)
PY
    sleep 0.1
done
[ $ok = 1 ] || { cat "$IT_TMP/status.json"; it_fail "/status.json never showed the running test with bytes both ways"; }
echo "status.json lists the running test"
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROME" ]; then
    timeout 60 "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$IT_TMP/chrome" --dump-dom "$URL/" >"$IT_TMP/page.html" 2>"$IT_TMP/chrome.err"
    grep -q "<h2 class=\"service\">lab</h2>" "$IT_TMP/page.html" || { head -c 2000 "$IT_TMP/page.html"; it_fail "the page in chromium has no service 'lab'"; }
    grep -Eq "<td>iperf3 tcp bidir</td><td>$H:[0-9]+</td><td>$H:$I3</td>" "$IT_TMP/page.html" \
        || { head -c 3000 "$IT_TMP/page.html"; it_fail "the page in chromium does not show the running test"; }
    echo "chromium renders the page with the running test"
else
    echo "SKIP-PART: chromium not installed: the page was not loaded in a browser"
fi
wait "$I3C"
it_iperf3_check "$IT_TMP/i3.json" --mode bidir --timed || it_fail "the iperf3 test failed"

# --- counters after it ------------------------------------------------------------------
it_wait_log_count "$LOG" "test \S+: client .*mode TCP bidir" 1 5 || it_fail "no end line for the test"
line=$(it_shim_test_lines "$LOG" | tail -1)
c2s=$(sed -E 's/.*bytes client->server ([0-9]+).*/\1/' <<<"$line")
s2c=$(sed -E 's/.*server->client ([0-9]+).*/\1/' <<<"$line")
scrape after
n=$(metric after 'iperf_shim_tests_total{service="lab",protocol="iperf3",transport="tcp",mode="bidir",outcome="ok"}')
[ "$n" = 1 ] || it_fail "iperf3 bidir tests_total is '$n', want 1"
m1=$(metric after 'iperf_shim_relayed_bytes_total{service="lab",transport="tcp",direction="client_to_server"}')
m2=$(metric after 'iperf_shim_relayed_bytes_total{service="lab",transport="tcp",direction="server_to_client"}')
echo "bytes: shim line $c2s/$s2c, metrics $m1/$m2"
[ "$m1" = "$c2s" ] && [ "$m2" = "$s2c" ] || it_fail "relayed bytes in /metrics differ from the shim's line"
[ "$(metric after 'iperf_shim_tests_running{service="lab",protocol="iperf3"}')" = 0 ] || it_fail "a test still counted as running"

timeout 20 iperf -c "$H" -p "$SHIMP" -u -b 5M -t 1 >"$IT_TMP/i2.out" 2>&1
grep -q "Server Report:" "$IT_TMP/i2.out" || { cat "$IT_TMP/i2.out"; it_fail "the iperf2 UDP client got no report"; }
it_wait_log_count "$LOG" "iperf2 UDP flow .* ended" 1 10 || it_fail "the UDP flow did not linger out"
scrape udp
[ "$(metric udp 'iperf_shim_udp_flows_total{service="lab"}')" = 1 ] || it_fail "udp_flows_total is not 1"
[ "$(metric udp 'iperf_shim_tests_total{service="lab",protocol="iperf2",transport="udp",mode="normal",outcome="ok"}')" = 1 ] \
    || it_fail "the iperf2 UDP test is not counted"
ub=$(metric udp 'iperf_shim_relayed_bytes_total{service="lab",transport="udp",direction="client_to_server"}')
[ "$ub" -gt 600000 ] || it_fail "UDP bytes client->server $ub, want > 600000 (5 Mbit/s for 1 s)"
curl -sf --max-time 5 "$URL/status.json" >"$IT_TMP/status2.json" || it_fail "GET /status.json failed"
python3 - "$IT_TMP/status2.json" <<'PY' || it_fail "/status.json recent tests are wrong"
import json, sys
d = json.load(open(sys.argv[1]))
rec = d["services"][0]["recent"]
kinds = [(t["protocol"], t["transport"], t["mode"], t["ok"]) for t in rec]
print("recent:", kinds)
assert ("iperf3", "tcp", "bidir", True) in kinds and ("iperf2", "udp", "normal", True) in kinds
assert d["services"][0]["running"] == []
PY

# --- other requests ----------------------------------------------------------------------
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/nope")" = 404 ] || it_fail "no 404 for an unknown path"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/metrics")" = 405 ] || it_fail "no 405 for POST"
kill -0 "$SHIM_PID" || it_fail "the shim died"
echo PASS

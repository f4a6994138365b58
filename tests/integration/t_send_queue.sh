#!/bin/bash
# The shim's unsent queue toward a receiver that does not read (issue #9).
#
# Every byte queued in the shim toward the client when the client stops
# reading is one the server counted as sent and the client never counts
# (docs/accuracy.md item 2).  An `iperf3 -R -P 8` client is stopped (SIGSTOP)
# in the middle of its test: its receive queues fill, then the shim's send
# queues toward it.  Asserted, once they no longer grow: every data
# connection's unsent bytes (ss "notsent") stay within the bound the shim
# sets for 8 streams (1 MiB of TCP_NOTSENT_LOWAT, plus one splice of at most
# a pipe, 1 MiB); without the bound the kernel lets them reach tcp_wmem's
# maximum (4 MiB).  The client is then resumed and its test must end with
# results.  IPv4 and IPv6.
#
# Ports: 15951-15952 on 127.0.0.1 and ::1.  Takes about 17 s.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$IT_DIRECT" = 1 ] && it_skip "IT_DIRECT=1: not applicable (the shim's own queues)"
command -v iperf3 >/dev/null || it_skip "iperf3 not installed"
P_SHIM=15951 P_I3=15952
BOUND=$((2 * 1024 * 1024))   # lowat for 8 streams + one splice (pipe, 1 MiB)

# shim_legs: ss -i lines of the shim's client-side connections (local port
# P_SHIM: the data connections and the control connection; one client at a time)
shim_legs() { ss -Htni state established "( sport = :$P_SHIM )"; }

# unsent: "max total count" of their unsent bytes (the control connection has none)
unsent() {
    shim_legs | awk '
        { for (i = 1; i <= NF; i++) if ($i ~ /^notsent:/) { v = substr($i, 9) + 0
              n++; t += v; if (v > m) m = v } }
        END { printf "%d %d %d\n", m, t, n }'
}

it_iperf3_server i3srv "$P_I3" -B ::
it_start_shim shim -- --listen "[::]:$P_SHIM" --upstream "[::1]:$P_I3" --log-level info

for H in 127.0.0.1 ::1; do
    it_log "$H: iperf3 -R -P 8, client stopped mid-test"
    it_bg "client-$H" iperf3 -J -c "$H" -p "$P_SHIM" -R -P 8 -t 8
    CPID=$IT_LAST_PID
    # the data connections carry data: 8 of the client's legs with bytes acked
    ok=0
    for _ in $(seq 100); do
        n=$(shim_legs | grep -c "bytes_acked:[0-9]\{7,\}")
        [ "$n" -ge 8 ] && { ok=1; break; }
        sleep 0.05
    done
    [ $ok = 1 ] || { cat "$IT_TMP/shim.log"; it_fail "$H: the 8 data connections never carried data"; }
    kill -STOP "$CPID"
    # poll until the queues stop growing (three equal samples in a row), at most 5 s
    last="" same=0 peak=0
    for _ in $(seq 50); do
        read -r m t n <<<"$(unsent)"
        [ "$m" -gt "$peak" ] && peak=$m
        if [ "$t" = "$last" ] && [ "$t" -gt 0 ]; then same=$((same + 1)); else same=0; fi
        [ $same -ge 3 ] && break
        last=$t
        sleep 0.1
    done
    echo "$H: unsent toward the stopped client: largest $m, total $t over $n connections, peak $peak (bound $BOUND)"
    kill -CONT "$CPID"
    [ "$t" -gt 0 ] || it_fail "$H: no unsent bytes toward a stopped client: the queues never filled, nothing was measured"
    [ "$peak" -le "$BOUND" ] || it_fail "$H: a data connection queued $peak unsent bytes toward the client (bound $BOUND)"
    for _ in $(seq 300); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$CPID" 2>/dev/null && it_fail "$H: the client did not finish after it was resumed"
    it_iperf3_check "$IT_TMP/client-$H.log" --mode reverse -P 8 --timed \
        || it_fail "$H: the resumed client's results"
done
exit 0

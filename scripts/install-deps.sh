#!/bin/sh
# Installs every Debian 12 package iperf-shim needs to build, test, demo, benchmark
# and fuzz (clang and its libFuzzer runtime: `make fuzz` only), and to build and
# check its Debian package, man pages and systemd unit (t_packaging: dpkg-dev,
# debhelper, fakeroot, lintian, mandoc, man-db, systemd for systemd-analyze).
set -e
if [ "${SKIP_APT_UPDATE:-0}" != 1 ]; then apt-get update -qq; fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    gcc make pkg-config libc6-dev libev-dev libcjson-dev libcmocka-dev libconfig-dev \
    libmicrohttpd-dev \
    iperf3 iperf iproute2 iptables procps psmisc python3 jq haproxy socat openssl curl \
    prometheus chromium \
    libnetfilter-queue-dev libnfnetlink-dev clang libclang-rt-14-dev \
    build-essential dpkg-dev debhelper fakeroot lintian mandoc man-db \
    systemd git nftables >/dev/null

#!/bin/bash
# Packaging (issue #11): --version, the man pages, the systemd unit and the
# Debian package.
#
# 1. `$SHIM --version` prints "iperf-shim V", V from the first line of
#    debian/changelog (the one place the version is kept).
# 2. Man pages: `mandoc -Tlint` says nothing, lexgrog finds the NAME section,
#    `man -l` renders them without a groff warning.  Every option of --help is
#    in iperf-shim.8; every option but --help/--version/--config/--check is a
#    key foo_bar in iperf-shim.conf.5 and in examples/iperf-shim.conf.
# 3. The systemd unit: `systemd-analyze verify` (no running systemd needed) on
#    a copy whose paths point at $SHIM and the example is silent; the hardening
#    the issue asks for is there; TimeoutStopSec is above the example's
#    drain_timeout; the offline exposure score is printed.
# 4. The Debian package (the normal run only, not the sanitizer run): the
#    source is copied to a temporary directory and built there with
#    `dpkg-buildpackage -us -uc -b` (at most 300 s), so the worktree stays as
#    it was (checked with git status).  `dpkg-deb -I`/`-c`: binary, man pages,
#    unit, the example as the conffile /etc/iperf-shim/iperf-shim.conf;
#    lintian reports no error; the package extracted with `dpkg-deb -x` into a
#    throw-away root runs `--version`, and `--check --config` on its conffile
#    once the binary has --check.  Then `make install` with PREFIX=/usr/local:
#    the unit's paths follow the prefix, and an existing configuration is kept.
#
# A step whose tool is missing is skipped with a message and the test ends
# SKIP naming it (scripts/install-deps.sh installs them all).  No network, no
# ports.  Takes 25 to 35 s here (package build ~15 s, lintian ~8 s), 1 s without.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "${IT_DIRECT:-0}" = 1 ] && it_skip "IT_DIRECT=1: not applicable (no traffic)"
ROOT=$(cd "$here/../.." && pwd)
MISSING=()

# have TOOL...: true if every TOOL is installed; else records the step as skipped.
have() {
    local t
    for t in "$@"; do
        if ! command -v "$t" >/dev/null; then
            MISSING+=("$t")
            it_log "SKIPPED a step: $t is not installed"
            return 1
        fi
    done
}

# The version, from the first line of debian/changelog: "iperf-shim (V) ...".
VERSION=$(head -n 1 "$ROOT/debian/changelog" | sed -n 's/^iperf-shim (\([^)]*\)).*/\1/p')
[ -n "$VERSION" ] || it_fail "no version on the first line of debian/changelog"

# --- 1. --version ----------------------------------------------------------
out=$("$SHIM" --version) || it_fail "--version exited non-zero"
[ "$out" = "iperf-shim $VERSION" ] || it_fail "--version printed '$out', expected 'iperf-shim $VERSION'"
it_log "--version: $out"

# --- 2. man pages ----------------------------------------------------------
MAN8=$ROOT/man/iperf-shim.8 MAN5=$ROOT/man/iperf-shim.conf.5 EXAMPLE=$ROOT/examples/iperf-shim.conf
if have mandoc; then
    lint=$(mandoc -Tlint "$MAN8" "$MAN5" 2>&1) || it_fail "mandoc -Tlint failed: $lint"
    [ -z "$lint" ] || it_fail "mandoc -Tlint: $lint"
    it_log "mandoc -Tlint: clean"
fi
if have lexgrog man; then
    for page in "$MAN8" "$MAN5"; do
        name=$(basename "$page"); name=${name%.*}
        lexgrog "$page" | grep -qF "\"$name - " || it_fail "lexgrog finds no NAME section in $page"
        warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >"$IT_TMP/page.txt") ||
            it_fail "man -l $page failed: $warn"
        [ -z "$warn" ] || it_fail "man -l $page: $warn"
        grep -q "^NAME" "$IT_TMP/page.txt" || it_fail "man -l $page rendered no NAME heading"
    done
    it_log "lexgrog: NAME found in both pages; man -l renders both without a warning"
fi
opts=$("$SHIM" --help | sed -n 's/^  \(-., \)\{0,1\}\(--[a-z0-9-]*\).*/\2/p')
[ -n "$opts" ] || it_fail "--help lists no option"
for opt in $opts; do
    grep -qF -- "$(printf '%s' "$opt" | sed 's/-/\\-/g')" "$MAN8" ||
        it_fail "option $opt (from --help) is not in man/iperf-shim.8"
    case $opt in --help|--version|--config|--check) continue;; esac
    key=$(printf '%s' "${opt#--}" | tr - _)
    grep -qE "^\.BR $key " "$MAN5" || it_fail "key $key (option $opt) is not described in man/iperf-shim.conf.5"
    grep -qE "^ *$key = " "$EXAMPLE" || it_fail "key $key (option $opt) is not in examples/iperf-shim.conf"
done
it_log "every --help option is in iperf-shim.8, and its key in iperf-shim.conf.5 and the example"

# --- 3. systemd unit -------------------------------------------------------
UNIT=$ROOT/systemd/iperf-shim.service
for line in DynamicUser=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
            PrivateDevices=yes NoNewPrivileges=yes CapabilityBoundingSet= \
            MemoryDenyWriteExecute=yes SystemCallFilter=@system-service LimitNOFILE=65536 \
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" KillSignal=SIGTERM \
            "ExecReload=/bin/kill -HUP \$MAINPID"; do
    grep -qxF "$line" "$UNIT" || it_fail "the unit lacks the line '$line'"
done
grep -qE '^ExecStartPre=/usr/sbin/iperf-shim --check --config /etc/iperf-shim/iperf-shim.conf$' "$UNIT" ||
    it_fail "the unit does not check the configuration before a start"
[ "$(grep -c -- '^ExecReload=.* --check ' "$UNIT")" = 1 ] || it_fail "the unit does not check the configuration on reload"
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$UNIT")
drain=$(sed -n 's/^drain_timeout = \([0-9.]*\);.*/\1/p' "$EXAMPLE")
[ -n "$stop" ] && [ -n "$drain" ] || it_fail "TimeoutStopSec (unit) or drain_timeout (example) not found"
awk -v s="$stop" -v d="$drain" 'BEGIN { exit !(s > d) }' ||
    it_fail "TimeoutStopSec=$stop is not above drain_timeout=$drain: systemd would kill a drain"
it_log "unit: hardening lines present; TimeoutStopSec=$stop > drain_timeout=$drain"
if have systemd-analyze; then
    # A copy whose paths exist here: verify checks that every command is executable.
    sed -e "s|/usr/sbin/iperf-shim|$SHIM|g" -e "s|/etc/iperf-shim/iperf-shim.conf|$EXAMPLE|g" \
        "$UNIT" >"$IT_TMP/iperf-shim.service"
    v=$(systemd-analyze verify --man=no "$IT_TMP/iperf-shim.service" 2>&1) ||
        it_fail "systemd-analyze verify failed: $v"
    [ -z "$v" ] || it_fail "systemd-analyze verify: $v"
    it_log "systemd-analyze verify: clean"
    if score=$(systemd-analyze security --offline=yes "$IT_TMP/iperf-shim.service" 2>/dev/null |
               grep -o 'Overall exposure level.*'); then
        it_log "systemd-analyze security: $score"
    fi
fi

# --- 4. Debian package -----------------------------------------------------
if [ "${SHIM_SANITIZED:-0}" = 1 ]; then
    it_log "Debian package: built and checked in the normal (non-sanitizer) run only"
elif have dpkg-buildpackage dpkg-checkbuilddeps dpkg-deb tar; then
    BUILD=$IT_TMP/deb
    mkdir -p "$BUILD/src"
    in_git=0
    if command -v git >/dev/null && git -C "$ROOT" rev-parse 2>/dev/null; then
        in_git=1 git_before=$(git -C "$ROOT" status --porcelain --ignored)
    fi
    tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./iperf-shim -cf - . |
        tar -C "$BUILD/src" -xf - || it_fail "cannot copy the source to $BUILD/src"
    if deps=$(cd "$BUILD/src" && dpkg-checkbuilddeps 2>&1); then
        start=$(date +%s)
        (cd "$BUILD/src" && timeout 300 dpkg-buildpackage -us -uc -b) >"$IT_TMP/build.log" 2>&1 ||
            { tail -n 40 "$IT_TMP/build.log"; it_fail "dpkg-buildpackage failed (or took over 300 s)"; }
        it_log "dpkg-buildpackage -us -uc -b: $(( $(date +%s) - start )) s"
        DEB=$BUILD/iperf-shim_${VERSION}_$(dpkg --print-architecture).deb
        [ -f "$DEB" ] || it_fail "no $(basename "$DEB") was built"

        info=$(dpkg-deb -I "$DEB") || it_fail "dpkg-deb -I failed"
        grep -qx ' Package: iperf-shim' <<<"$info" || it_fail "the package is not called iperf-shim"
        grep -qx " Version: $VERSION" <<<"$info" || it_fail "the package's version is not $VERSION"
        grep -q '^ Depends: .*libev4' <<<"$info" || it_fail "the package does not depend on libev4"
        files=$(dpkg-deb -c "$DEB" | awk '{ print $NF }')
        for f in ./usr/sbin/iperf-shim ./usr/share/man/man8/iperf-shim.8.gz \
                 ./usr/share/man/man5/iperf-shim.conf.5.gz ./lib/systemd/system/iperf-shim.service \
                 ./etc/iperf-shim/iperf-shim.conf ./usr/share/doc/iperf-shim/examples/iperf-shim.conf; do
            grep -qxF "$f" <<<"$files" || it_fail "$f is not in the package"
        done
        dpkg-deb -e "$DEB" "$BUILD/control"
        grep -qx /etc/iperf-shim/iperf-shim.conf "$BUILD/control/conffiles" ||
            it_fail "/etc/iperf-shim/iperf-shim.conf is not a conffile"
        it_log "dpkg-deb: binary, both man pages, the unit, the example config as a conffile"

        if have lintian; then
            lintian --fail-on error --tag-display-limit 0 "$BUILD"/iperf-shim_"${VERSION}"_*.changes \
                >"$IT_TMP/lintian.log" 2>&1 ||
                { cat "$IT_TMP/lintian.log"; it_fail "lintian reports errors"; }
            it_log "lintian: no error ($(grep -c '^W: ' "$IT_TMP/lintian.log") warning(s), $(grep -c '^I: ' "$IT_TMP/lintian.log") info(s))"
            sed 's/^/#   /' "$IT_TMP/lintian.log"
        fi

        dpkg-deb -x "$DEB" "$BUILD/root" || it_fail "dpkg-deb -x failed"
        bin=$BUILD/root/usr/sbin/iperf-shim
        out=$("$bin" --version) || it_fail "the packaged binary's --version exited non-zero"
        [ "$out" = "iperf-shim $VERSION" ] || it_fail "the packaged binary's --version printed '$out'"
        it_log "packaged binary: $out"
        if "$bin" --help | grep -q -- '--check'; then
            "$bin" --check --config "$BUILD/root/etc/iperf-shim/iperf-shim.conf" >"$IT_TMP/check.log" 2>&1 ||
                { cat "$IT_TMP/check.log"; it_fail "--check rejects the packaged configuration"; }
            it_log "packaged binary: --check accepts the packaged configuration"
        else
            it_log "SKIPPED --check of the packaged configuration: this binary has no --check yet"
        fi

        # make install with another prefix, from the tree the package was built in.
        make -s -C "$BUILD/src" install DESTDIR="$BUILD/inst" PREFIX=/usr/local >/dev/null ||
            it_fail "make install PREFIX=/usr/local failed"
        for f in sbin/iperf-shim share/man/man8/iperf-shim.8 share/man/man5/iperf-shim.conf.5 \
                 lib/systemd/system/iperf-shim.service etc/iperf-shim/iperf-shim.conf; do
            [ -f "$BUILD/inst/usr/local/$f" ] || it_fail "make install PREFIX=/usr/local did not install $f"
        done
        grep -qx 'ExecStart=/usr/local/sbin/iperf-shim --config /usr/local/etc/iperf-shim/iperf-shim.conf' \
            "$BUILD/inst/usr/local/lib/systemd/system/iperf-shim.service" ||
            it_fail "make install PREFIX=/usr/local: the unit's paths do not follow the prefix"
        echo '# edited' >>"$BUILD/inst/usr/local/etc/iperf-shim/iperf-shim.conf"
        make -s -C "$BUILD/src" install DESTDIR="$BUILD/inst" PREFIX=/usr/local >/dev/null ||
            it_fail "a second make install failed"
        tail -n 1 "$BUILD/inst/usr/local/etc/iperf-shim/iperf-shim.conf" | grep -qx '# edited' ||
            it_fail "a second make install replaced an existing configuration"
        it_log "make install PREFIX=/usr/local: paths follow the prefix; an existing config is kept"
    else
        MISSING+=("build dependencies")
        it_log "SKIPPED the package build: $deps"
    fi
    if [ $in_git = 1 ]; then
        [ "$(git -C "$ROOT" status --porcelain --ignored)" = "$git_before" ] ||
            it_fail "the package build changed the worktree: $(git -C "$ROOT" status --porcelain --ignored)"
        it_log "the worktree is as it was"
    fi
fi

[ ${#MISSING[@]} -eq 0 ] || it_skip "checked all but: ${MISSING[*]} missing (scripts/install-deps.sh installs them)"
echo "PASS"

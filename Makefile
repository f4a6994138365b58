# iperf-shim build.  `make` builds ./iperf-shim; `make test` runs everything;
# `make install DESTDIR=... PREFIX=/usr` installs it (debian/ packages it).
# CFLAGS, CPPFLAGS and LDFLAGS are the user's (`make CFLAGS=-O0` works;
# dpkg-buildflags sets all three); what the code needs is in BASE_CFLAGS.
# Warnings are errors in the test targets (CI), not in a plain `make` on a
# newer compiler.
CC          ?= gcc
CFLAGS      ?= -O2 -g
BASE_CFLAGS  = -std=c11 -D_GNU_SOURCE -I. -MMD -MP \
               -Wall -Wextra -Wshadow -Wstrict-prototypes $(WERROR)
LDLIBS      := -lev -lcjson -lconfig -lmicrohttpd
# The version lives in one place: the first line of debian/changelog.
SHIM_VERSION := $(shell head -n 1 debian/changelog 2>/dev/null | cut -d ' ' -f 2 | tr -d '()')
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

PROTO_SRC  := $(wildcard protocol/*.c)
COMPAT_SRC := $(wildcard compat/*.c)
PROXY_SRC  := $(wildcard proxy/*.c)
LIB_SRC    := $(PROTO_SRC) $(COMPAT_SRC)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

OBJ        := $(patsubst %.c,build/rel/%.o,$(LIB_SRC) $(PROXY_SRC))
SAN_OBJ    := $(patsubst %.c,build/san/%.o,$(LIB_SRC) $(PROXY_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,build/rel/tests/%,$(UNIT_SRC))
UNIT_SAN   := $(patsubst tests/unit/%.c,build/san/tests/%,$(UNIT_SRC))
LIB_OBJ    := $(patsubst %.c,build/rel/%.o,$(LIB_SRC))
LIB_SAN    := $(patsubst %.c,build/san/%.o,$(LIB_SRC))
# proxy/ without main(), for proxy unit tests (socketpairs, a real libev loop)
PXY_OBJ    := $(patsubst %.c,build/rel/%.o,$(filter-out proxy/main.c,$(PROXY_SRC)))
PXY_SAN    := $(patsubst %.c,build/san/%.o,$(filter-out proxy/main.c,$(PROXY_SRC)))

.PHONY: all test unit unit-san integration integration-san san deps demo bench clean
all: iperf-shim

iperf-shim: $(OBJ)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/san/iperf-shim: $(SAN_OBJ)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(VERSION_CFLAGS) -c -o $@ $<

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(VERSION_CFLAGS) $(SAN) -c -o $@ $<

# The version: only proxy/version.c gets it, and is rebuilt when it changes.
build/rel/proxy/version.o build/san/proxy/version.o: debian/changelog
build/rel/proxy/version.o build/san/proxy/version.o: VERSION_CFLAGS = \
    -DSHIM_VERSION='"$(or $(SHIM_VERSION),$(error no version on the first line of debian/changelog))"'

build/rel/tests/%: tests/unit/%.c $(LIB_OBJ) $(PXY_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(PXY_OBJ) $(LDLIBS) -lcmocka

build/san/tests/%: tests/unit/%.c $(LIB_SAN) $(PXY_SAN)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(SAN) -o $@ $< $(LIB_SAN) $(PXY_SAN) $(LDLIBS) -lcmocka

# header dependencies, written by -MMD
-include $(shell find build -name '*.d' 2>/dev/null)

# Proxy unit tests (tests/unit/test_relay.c): the proxy objects they exercise, never
# main.c, and the system-call seams of tests/unit/mock_sys.c bound with --wrap.
RELAY_TEST_OBJ := proxy/relay.o proxy/net.o
RELAY_TEST_WRAP := -Wl,--wrap=calloc,--wrap=realloc,--wrap=pipe2,--wrap=send,--wrap=read,--wrap=splice,--wrap=shutdown

build/rel/tests/test_relay: tests/unit/test_relay.c tests/unit/mock_sys.c tests/unit/mock_sys.h $(addprefix build/rel/,$(RELAY_TEST_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(RELAY_TEST_WRAP) -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lcmocka

build/san/tests/test_relay: tests/unit/test_relay.c tests/unit/mock_sys.c tests/unit/mock_sys.h $(addprefix build/san/,$(RELAY_TEST_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(SAN) $(RELAY_TEST_WRAP) -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lcmocka

san: build/san/iperf-shim $(UNIT_SAN)

# Each unit test binary: its output, then its verdict and how long it took.
unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "== $$t"; s=$$(date +%s%N); $$t; rc=$$?; \
	    ms=$$(( ($$(date +%s%N) - s) / 1000000 )); \
	    if [ $$rc -ne 0 ]; then echo "== FAIL $$t (rc=$$rc, $$ms ms)"; exit 1; fi; echo "== ok $$t ($$ms ms)"; done

unit-san: $(UNIT_SAN)
	@for t in $(UNIT_SAN); do echo "== $$t (asan+ubsan)"; s=$$(date +%s%N); $$t; rc=$$?; \
	    ms=$$(( ($$(date +%s%N) - s) / 1000000 )); \
	    if [ $$rc -ne 0 ]; then echo "== FAIL $$t (rc=$$rc, $$ms ms)"; exit 1; fi; echo "== ok $$t ($$ms ms)"; done

# Integration tests drive the real iperf3/iperf binaries through the shim (root, netns).
integration: iperf-shim
	tests/integration/run.sh ./iperf-shim

integration-san: build/san/iperf-shim
	SHIM_SANITIZED=1 tests/integration/run.sh build/san/iperf-shim

test: unit unit-san integration integration-san

# The test targets (CI) treat warnings as errors; it carries over to what they build.
test unit unit-san integration integration-san san tools: WERROR := -Werror

# Installs every Debian package the project needs (build, tests, demo, bench).
deps:
	scripts/install-deps.sh

demo: iperf-shim
	scripts/demo.sh

bench: iperf-shim
	bench/run.sh

clean:
	rm -rf build iperf-shim

# Installs the binary, both man pages, the systemd unit (its paths rewritten to
# BINDIR and SYSCONFDIR) and the example configuration, which never replaces an
# existing one.  Debian's systemd unit directory comes from systemd.pc.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),$(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system),$(PREFIX)/lib/systemd/system)
CONF       := $(DESTDIR)$(SYSCONFDIR)/iperf-shim/iperf-shim.conf
.PHONY: install
install: iperf-shim
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(UNITDIR) $(dir $(CONF))
	install -m 0755 iperf-shim $(DESTDIR)$(BINDIR)/iperf-shim
	install -m 0644 man/iperf-shim.8 $(DESTDIR)$(MANDIR)/man8/iperf-shim.8
	install -m 0644 man/iperf-shim.conf.5 $(DESTDIR)$(MANDIR)/man5/iperf-shim.conf.5
	sed -e 's|/usr/sbin/iperf-shim|$(BINDIR)/iperf-shim|g' \
	    -e 's|/etc/iperf-shim/|$(SYSCONFDIR)/iperf-shim/|g' \
	    systemd/iperf-shim.service >$(DESTDIR)$(UNITDIR)/iperf-shim.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/iperf-shim.service
	@if [ -e $(CONF) ]; then echo "kept the existing $(CONF)"; \
	else echo "install -m 0644 examples/iperf-shim.conf $(CONF)"; \
	     install -m 0644 examples/iperf-shim.conf $(CONF); fi

# Test tools (tests/tools): NFQUEUE packet delayer and the Winsock UDP fault injector
# (LD_PRELOAD).  Built without sanitizers: the preload library must not drag ASan into
# the unmodified iperf binaries it is loaded into.
.PHONY: tools
TOOLS := build/tools/nfq_delay build/tools/libwinsock_udp.so
tools: $(TOOLS)
integration integration-san: tools

build/tools/nfq_delay: tests/tools/nfq_delay.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $$(pkg-config --libs libnetfilter_queue 2>/dev/null || echo -lnetfilter_queue -lnfnetlink)

build/tools/libwinsock_udp.so: tests/tools/winsock_udp.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -fPIC -shared -o $@ $< -ldl

# UDP benchmark (bench/udp.sh --help): iperf3 -u direct vs. shim vs. socat.
.PHONY: bench-udp
bench-udp: iperf-shim
	bench/udp.sh

# Added latency at low rate (bench/latency.sh --help): iperf2 --trip-times direct vs. shim.
.PHONY: bench-latency
bench-latency: iperf-shim
	bench/latency.sh

# Coverage-guided fuzzing of protocol/ and compat/ (libFuzzer, clang, ASan + UBSan).
# Not part of `make test`: `make fuzz FUZZ_SECONDS=300` runs it (default 60 s);
# crashes are written to build/fuzz/ and fail the target.
.PHONY: fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
build/fuzz/fuzz_protocol: tests/fuzz/fuzz_protocol.c $(LIB_SRC) $(wildcard protocol/*.h compat/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -I. -g -O1 -Wall -Wextra -Werror \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ tests/fuzz/fuzz_protocol.c $(LIB_SRC) -lcjson
fuzz: build/fuzz/fuzz_protocol
	python3 tests/fuzz/seed.py build/fuzz/corpus
	build/fuzz/fuzz_protocol -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -artifact_prefix=build/fuzz/ build/fuzz/corpus

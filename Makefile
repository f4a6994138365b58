# iperf-shim build.  `make` builds ./iperf-shim; `make test` runs everything.
CC      ?= gcc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -I.
LDLIBS  := -lev -lcjson
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

.PHONY: all test unit unit-san integration integration-san san deps demo bench clean
all: iperf-shim

iperf-shim: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/san/iperf-shim: $(SAN_OBJ)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

build/rel/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

build/san/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -c -o $@ $<

build/rel/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

build/san/tests/%: tests/unit/%.c $(LIB_SAN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS) -lcmocka

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

# Installs every Debian package the project needs (build, tests, demo, bench).
deps:
	scripts/install-deps.sh

demo: iperf-shim
	scripts/demo.sh

bench: iperf-shim
	bench/run.sh

clean:
	rm -rf build iperf-shim

# Test tools (tests/tools): NFQUEUE packet delayer and the Winsock UDP fault injector
# (LD_PRELOAD).  Built without sanitizers: the preload library must not drag ASan into
# the unmodified iperf binaries it is loaded into.
.PHONY: tools
TOOLS := build/tools/nfq_delay build/tools/libwinsock_udp.so
tools: $(TOOLS)
integration integration-san: tools

build/tools/nfq_delay: tests/tools/nfq_delay.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $$(pkg-config --libs libnetfilter_queue 2>/dev/null || echo -lnetfilter_queue -lnfnetlink)

build/tools/libwinsock_udp.so: tests/tools/winsock_udp.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $< -ldl

# UDP benchmark (bench/udp.sh --help): iperf3 -u direct vs. shim vs. socat.
.PHONY: bench-udp
bench-udp: iperf-shim
	bench/udp.sh

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

# SmarterQuant — build, test, fuzz, bench, install.
#   make            build/sq and build/libsq.a
#   make test       all tests (ends with "N passed, N failed")
#   make asan       the tests again under AddressSanitizer + UBSan (build-asan/)
#   make fuzz       every libFuzzer target for FUZZ_TIME seconds (clang-14)
#   make bench      every benchmark in bench/
#   make demo       the main job on the vendored demo model
#   make install PREFIX=/usr/local
# Sources are found by wildcard: a new .c under src/, tools/, tests/, bench/ or
# fuzz/ needs no change here.

BUILD   ?= build
CC      ?= gcc
OPT     ?= -O2
PREFIX  ?= /usr/local
FUZZ_TIME ?= 60
SHARED  ?= $(abspath ../shared)

PKGS    := jansson libmicrohttpd libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lmicrohttpd -lutf8proc)

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
# Error messages are cut to their buffer on purpose; clang has no such warning.
ifeq ($(findstring clang,$(shell $(CC) --version 2>/dev/null | head -n 1)),)
WARN    += -Wno-format-truncation
endif
CFLAGS  ?=
# -ffp-contract=off: no fused multiply-adds the source did not ask for; the
# quantizers' bytes rest on ggml's exact float operations (clang contracts by default).
ALL_CFLAGS := -std=c11 $(OPT) -g -ffp-contract=off -D_GNU_SOURCE -Iinclude -Isrc $(WARN) $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS ?=
LDLIBS  := $(PKG_LIBS) -lm -lpthread

# SIMD kernels: a file named *_avx2.c, *_avx512.c or *_amx.c gets that ISA; the choice
# among them is made at run time from the CPU.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx2 -mfma -mf16c -mbmi2 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
AMX_FLAGS    := $(AVX512_FLAGS) -mamx-tile -mamx-int8

LIB_SRC   := $(shell find src -name '*.c' | sort)
TOOL_SRC  := $(wildcard tools/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_AUX  := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
BENCH_SRC := $(wildcard bench/*.c)
FUZZ_SRC  := $(wildcard fuzz/fuzz_*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_AUX_OBJ := $(TEST_AUX:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:%.c=$(BUILD)/%)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)
LIBSQ     := $(BUILD)/libsq.a
SQ        := $(BUILD)/sq

.SECONDARY:
.PHONY: all test tests asan fuzz fuzz-build fuzz-merge bench demo install clean
all: $(SQ) $(LIBSQ)

# V=1 shows the full commands.
Q := $(if $(V),,@)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC  $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%_avx2.o: ALL_CFLAGS += $(AVX2_FLAGS)
$(BUILD)/%_avx512.o: ALL_CFLAGS += $(AVX512_FLAGS)
$(BUILD)/%_amx.o: ALL_CFLAGS += $(AMX_FLAGS)

$(LIBSQ): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(SQ): $(TOOL_OBJ) $(LIBSQ)
	@$(if $(V),,echo "  LD  $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(LIBSQ) $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_AUX_OBJ) $(LIBSQ)
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_AUX_OBJ) $(LIBSQ) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIBSQ)
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBSQ) $(LDLIBS)

# every bench/ program is built with the tests, so that a change of an interface they use
# cannot leave them broken unnoticed (the scripts in bench/ run them)
tests: $(TEST_BIN) $(SQ) $(BENCH_BIN)

# Test binaries run from the repository root; SQ_SHARED points at ../shared
# (tests that need it skip cleanly when it is absent), SQ_BIN at the tool.
test: tests
	@SQ_SHARED=$(SHARED) SQ_BIN=$(abspath $(SQ)) SQ_BUILD=$(abspath $(BUILD)) sh tests/run.sh $(TEST_BIN)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" test

# bench/bench_*.c are benchmarks that run with no arguments; other bench/ programs
# (make_model) are tools the benchmark scripts call.
BENCH_RUN := $(filter $(BUILD)/bench/bench_%,$(BENCH_BIN))
bench: $(BENCH_BIN) $(SQ)
	@for b in $(BENCH_RUN); do echo "== $$b"; SQ_SHARED=$(SHARED) SQ_BIN=$(abspath $(SQ)) $$b || exit 1; done

# libFuzzer targets: each fuzz/fuzz_NAME.c is linked with the library sources
# built by clang-14. The kept corpus is fuzz/corpus/NAME (seeds and minimised
# finds, committed); a run's new inputs go to build-fuzz/corpus/NAME (make
# fuzz-merge folds them in); crashers are kept in fuzz/regressions/NAME.
FUZZ_CC  := clang-14
FUZZ_DIR := build-fuzz
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/%.o)
FUZZ_CFLAGS := -std=c11 -O1 -g -ffp-contract=off -D_GNU_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC  $< (fuzz)")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_DIR)/%_avx2.o: FUZZ_CFLAGS += $(AVX2_FLAGS)
$(FUZZ_DIR)/%_avx512.o: FUZZ_CFLAGS += $(AVX512_FLAGS)
$(FUZZ_DIR)/%_amx.o: FUZZ_CFLAGS += $(AMX_FLAGS)

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	@$(if $(V),,echo "  LD  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@for f in $(FUZZ_BIN); do n=$${f##*/fuzz_}; mkdir -p fuzz/corpus/$$n fuzz/regressions/$$n; \
	  echo "== fuzz $$n for $(FUZZ_TIME)s"; \
	  $$f -runs=0 fuzz/regressions/$$n fuzz/corpus/$$n >/dev/null 2>&1 || { echo "regression input crashes $$n"; exit 1; }; \
	  mkdir -p $(FUZZ_DIR)/corpus/$$n; \
	  $$f -max_total_time=$(FUZZ_TIME) -artifact_prefix=fuzz/regressions/$$n/ -print_final_stats=1 \
	    $(FUZZ_DIR)/corpus/$$n fuzz/corpus/$$n 2>&1 | tail -n 3 || exit 1; \
	done

# Folds what the runs found (build-fuzz/corpus) into the kept corpus, minimised.
fuzz-merge: fuzz-build
	@for f in $(FUZZ_BIN); do n=$${f##*/fuzz_}; mkdir -p $(FUZZ_DIR)/corpus/$$n; \
	  $$f -merge=1 fuzz/corpus/$$n $(FUZZ_DIR)/corpus/$$n 2>&1 | tail -n 1; done

demo: $(SQ)
	sh scripts/demo.sh

install: $(SQ) $(LIBSQ)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/sq
	install -m 755 $(SQ) $(DESTDIR)$(PREFIX)/bin/sq
	install -m 644 $(LIBSQ) $(DESTDIR)$(PREFIX)/lib/libsq.a
	install -m 644 include/sq/*.h $(DESTDIR)$(PREFIX)/include/sq/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBS@|$(PKG_LIBS) -lm -lpthread|g' sq.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sq.pc

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) build-fuzz -name '*.d' 2>/dev/null)

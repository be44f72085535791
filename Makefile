# localgemma build. `make` builds build/localgemma and build/liblocalgemma.a;
# `make test` runs every test and ends with one "N passed, N failed" line;
# `make demo` installs the default model and answers a prompt with it.
#
# Kernel files pick their ISA by name: *_avx2.c, *_avx512.c and *_amx.c get their own flags, the rest
# is built for x86-64-v3 (never -march=native: the binary must run on any x86-64-v3 machine).

MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
CC       ?= cc
CLANG    ?= clang
BUILD    ?= build
ASAN_DIR ?= build-asan
PYTHON   ?= python3

WARN     = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
           -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN    += -Werror
endif
BASEFLAGS = -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -MMD -MP -fno-strict-aliasing $(WARN)
OPT      ?= -O2 -g
ARCH     ?= -march=x86-64-v3
CFLAGS   ?=
ALLCFLAGS = $(BASEFLAGS) $(OPT) $(ARCH) $(CFLAGS)
AVX2FLAGS   = -mavx2 -mfma -mf16c
AVX512FLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mfma -mf16c
AMXFLAGS    = $(AVX512FLAGS) -mamx-tile -mamx-int8
LDLIBS   = -lmicrohttpd -ljansson -lcurl -lsqlite3 -lpcre2-8 -lpthread -lm

LIB_SRCS  = $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRCS  = $(sort $(wildcard src/cli/*.c))
TEST_SRCS = $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRCS = $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIB_OBJS  = $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS  = $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TESTS     = $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
ASAN_LIB_OBJS = $(LIB_SRCS:%.c=$(ASAN_DIR)/obj/%.o)
ASAN_TESTS    = $(TEST_SRCS:tests/unit/%.c=$(ASAN_DIR)/tests/%)
REPLAYS   = $(FUZZ_SRCS:tests/fuzz/%.c=$(ASAN_DIR)/replay/%)
FUZZERS   = $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

SANFLAGS  = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all test unit asan replay pytest demo fuzz fuzz-build setup clean format coverage
all: $(BUILD)/localgemma $(BUILD)/liblocalgemma.a

isa_flags = $(if $(findstring _amx,$(1)),$(AMXFLAGS),$(if $(findstring _avx512,$(1)),$(AVX512FLAGS),$(if $(findstring _avx2,$(1)),$(AVX2FLAGS))))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(call isa_flags,$<) -c $< -o $@

$(ASAN_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 -g $(ARCH) $(CFLAGS) $(SANFLAGS) $(call isa_flags,$<) -c $< -o $@

$(BUILD)/liblocalgemma.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(ASAN_DIR)/liblocalgemma.a: $(ASAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/localgemma: $(CLI_OBJS) $(BUILD)/liblocalgemma.a
	$(CC) $(ALLCFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/liblocalgemma.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/liblocalgemma.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -Itests -o $@ $< $(BUILD)/liblocalgemma.a $(LDLIBS)

$(ASAN_DIR)/tests/%: tests/unit/%.c $(ASAN_DIR)/liblocalgemma.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 -g $(ARCH) $(SANFLAGS) -Itests -o $@ $< $(ASAN_DIR)/liblocalgemma.a $(LDLIBS)

# Corpus replay: each fuzz target linked with a plain main() that feeds it every corpus file.
$(ASAN_DIR)/replay/%: tests/fuzz/%.c tests/fuzz/replay_main.c $(ASAN_DIR)/liblocalgemma.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 -g $(ARCH) $(SANFLAGS) -Itests -o $@ $< tests/fuzz/replay_main.c $(ASAN_DIR)/liblocalgemma.a $(LDLIBS)

# libFuzzer builds (clang): `make fuzz FUZZ_SECONDS=300` runs each target for that long.
# Library objects keep their per-file ISA flags (an AVX-512 flag on every file would let clang
# auto-vectorise plain code with instructions this CPU may lack).
FUZZ_OBJS = $(LIB_SRCS:%.c=$(BUILD)/fuzz-obj/%.o)
$(BUILD)/fuzz-obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -O1 -g $(ARCH) $(call isa_flags,$<) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	$(CLANG) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -Itests -O1 -g $(ARCH) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJS) $(LDLIBS)

FUZZ_SECONDS ?= 60
fuzz-build: $(FUZZERS)
fuzz: fuzz-build
	scripts/fuzz $(FUZZ_SECONDS) $(FUZZERS)

# Coverage (hardening goal G22): an instrumented -O0 copy in $(COV_DIR), the unit tests and
# every fuzz corpus replayed through it, then line + branch coverage per module with gcovr
# (PyPI; scripts/setup installs it). Tests run one at a time so their .gcda counts add up; a
# failing test is reported but the report is still printed (timing bounds may trip at -O0).
# `--exclude-unreachable-branches` drops the compiler's branches on lines with no source code;
# counters are atomic because kernels and the engine run threads (plain counters race and
# gcov then reports negative hits); a hot kernel line may exceed 2^32 hits, which gcovr
# otherwise rejects as "suspicious".
COV_DIR  ?= build-cov
COVFLAGS  = --coverage -fprofile-update=atomic -O0 -g
COV_MODULES = gguf json tok server chat grammar guard store engine model quant sample kv kern base
COV_LIB_OBJS = $(LIB_SRCS:%.c=$(COV_DIR)/obj/%.o)
COV_TESTS    = $(TEST_SRCS:tests/unit/%.c=$(COV_DIR)/tests/%)
COV_REPLAYS  = $(FUZZ_SRCS:tests/fuzz/%.c=$(COV_DIR)/replay/%)
GCOVR     = $(PYTHON) -m gcovr --root . -j 2 --exclude-unreachable-branches \
            --gcov-ignore-parse-errors=suspicious_hits.warn_once_per_file

$(COV_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(COVFLAGS) $(ARCH) $(CFLAGS) $(call isa_flags,$<) -c $< -o $@

$(COV_DIR)/liblocalgemma.a: $(COV_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(COV_DIR)/tests/%: tests/unit/%.c $(COV_DIR)/liblocalgemma.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(COVFLAGS) $(ARCH) -Itests -o $@ $< $(COV_DIR)/liblocalgemma.a $(LDLIBS)

$(COV_DIR)/replay/%: tests/fuzz/%.c tests/fuzz/replay_main.c $(COV_DIR)/liblocalgemma.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(COVFLAGS) $(ARCH) -Itests -o $@ $< tests/fuzz/replay_main.c $(COV_DIR)/liblocalgemma.a $(LDLIBS)

coverage:
	scripts/setup
	$(MAKE) $(COV_TESTS) $(COV_REPLAYS)
	@find $(COV_DIR) -name '*.gcda' -delete
	@mkdir -p $(COV_DIR)/logs; fails=""; \
	for t in $(COV_TESTS); do \
	    n=$$(basename $$t); \
	    LG_TEST_DATA=tests $$t >$(COV_DIR)/logs/$$n.log 2>&1 || fails="$$fails $$n"; \
	    echo "coverage: ran $$n: $$(grep -oE '[0-9]+ passed, [0-9]+ failed' $(COV_DIR)/logs/$$n.log | tail -n 1)"; \
	done; \
	for r in $(COV_REPLAYS); do \
	    n=$$(basename $$r); tgt=$${n#fuzz_}; \
	    $$r tests/fuzz/corpus/$$tgt tests/corpus/$$tgt >$(COV_DIR)/logs/replay_$$tgt.log 2>&1 || fails="$$fails replay_$$tgt"; \
	done; \
	echo "coverage: replayed $(words $(COV_REPLAYS)) fuzz corpora"; \
	if [ -n "$$fails" ]; then echo "coverage: FAILED (logs in $(COV_DIR)/logs):$$fails"; fi
	@mkdir -p $(COV_DIR)/html
	$(GCOVR) --json $(COV_DIR)/coverage.json --html-details $(COV_DIR)/html/index.html \
	    --filter 'src/' --exclude 'src/cli/' $(COV_DIR) >/dev/null
	@printf '%-8s %24s %24s\n' module lines branches
	@for m in $(COV_MODULES); do \
	    $(PYTHON) -m gcovr --root . -a $(COV_DIR)/coverage.json --filter "src/$$m/" --txt-summary -o /dev/null \
	    | awk -v m=$$m '/^lines:/{l=$$2" "$$3"/"$$6} /^branches:/{b=$$2" "$$3"/"$$6} END{printf "%-8s %24s %24s\n", m, l, b}'; \
	done
	@$(PYTHON) -m gcovr --root . -a $(COV_DIR)/coverage.json --txt-summary -o /dev/null \
	    | awk '/^lines:/{l=$$2" "$$3"/"$$6} /^branches:/{b=$$2" "$$3"/"$$6} END{printf "%-8s %24s %24s\n", "overall", l, b}'
	@echo "coverage: per-file detail in $(COV_DIR)/html/index.html"

setup:
	scripts/setup

unit: $(TESTS)
asan: $(ASAN_TESTS)
replay: $(REPLAYS)

# The README's test command. scripts/setup installs what a fresh machine lacks.
test:
	scripts/setup
	$(MAKE) all unit asan replay
	scripts/run-tests

demo:
	scripts/setup
	$(MAKE) all
	scripts/demo "$(PROMPT)"

format:
	clang-format -i $(LIB_SRCS) $(CLI_SRCS) $(TEST_SRCS) $(FUZZ_SRCS)

clean:
	rm -rf $(BUILD) $(ASAN_DIR)

-include $(shell find $(BUILD) $(ASAN_DIR) $(COV_DIR) -name '*.d' 2>/dev/null)

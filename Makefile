# OpenMTE: the two commands of the README, plus the pieces they are made of.
#   make demo   build, start the MTE on loopback, enrol two simulated devices (Flow A without an
#               OBF, Flow B via the OBF), narrate
#   make test   build and run the whole test suite (ctest) under ASan and UBSan, then replay the
#               fuzzing corpora
#   make fuzz   run every libFuzzer target for FUZZ_SECONDS (docs/fuzzing.md)
BUILD ?= build
JOBS ?= 2
BUILD_TYPE ?= RelWithDebInfo
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(notdir $(wildcard fuzz/corpus/*))

.PHONY: all deps test-deps fuzz-deps bench-deps configure build test test-tsan check-plain demo \
	bench bench-instructions bench-scaling test-scale fuzz-build fuzz fuzz-check clean

all: build

deps:
	@bash tools/install-deps.sh

test-deps:
	@bash tools/install-deps.sh --test

fuzz-deps:
	@bash tools/install-deps.sh --fuzz

bench-deps:
	@bash tools/install-deps.sh --bench

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMTE_WERROR=ON >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

# make test: the whole suite once, built with AddressSanitizer and UndefinedBehaviorSanitizer
# (build-asan/; it fails on any sanitizer report of any process), then the fuzz corpora's replay.
test: test-deps fuzz-build
	@JOBS=$(JOBS) bash tools/sanitize.sh asan
	@ctest --test-dir $(FUZZ_BUILD) -L fuzz --output-on-failure -j$(JOBS) --timeout 600

# make test-tsan: the server-level tests built with ThreadSanitizer (build-tsan/).
test-tsan: test-deps
	@JOBS=$(JOBS) bash tools/sanitize.sh tsan

# make check-plain: the whole suite on the ordinary build (build/, the one make demo runs).
check-plain: test-deps build
	@ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS) --timeout 600

demo: build
	@$(BUILD)/bin/mte demo

# make bench: the MEF outbox drain (bench/outbox_drain.sh), 10,000 open outer sessions in one MEF
# (bench/mef_sessions.sh), then the bare and socket nested-handshake floors vs. Flow B enrolments
# through mte serve (bench/run_bench.sh, whose enrolment_vs_floor_ratio stays the last line)
# (docs/performance.md). Builds only what it runs, in $(BUILD) with $(BUILD_TYPE) (Release or
# RelWithDebInfo; run_bench.sh refuses a Debug build). MTE_WERROR stays as configured in $(BUILD).
BENCH_TARGETS := mte mte_bench_bare mte_bench_floor mte_bench_engine mte_bench_flowb mte_bench_outbox
bench: bench-deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) --target $(BENCH_TARGETS)
	@bash bench/outbox_drain.sh $(BUILD)
	@bash bench/mef_sessions.sh $(BUILD)
	@bash bench/run_bench.sh $(BUILD)

# make bench-instructions: instructions per nested handshake (server side) and per Flow B
# enrolment (the MEF process), counted by callgrind (bench/instructions.sh); its last line is
# enrolment_vs_bare_instructions_ratio.
bench-instructions: bench-deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) --target mte mte_bench_bare mte_bench_flowb
	@bash bench/instructions.sh $(BUILD)

# make bench-scaling: Flow B enrolments/s against 1, 2 and 4 MEF processes on one PostgreSQL
# database, beside the embedded SQLite store (bench/scaling.sh, docs/scaling.md).
bench-scaling: test-deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) --target mte mte_bench_flowb
	@bash bench/scaling.sh $(BUILD)

# make test-scale: the scale-out test at full size (200 trials of 64 concurrent redemptions of one
# token, 1,000 enrolments under kill -9 of MEF processes) on the ordinary build; make test runs it
# smaller (tests/integration/scale_out_test.sh).
test-scale: test-deps build
	@MTE_BIN_DIR=$(CURDIR)/$(BUILD)/bin MTE_SOURCE_DIR=$(CURDIR) MTE_SCALE_TRIALS=200 \
	  MTE_SCALE_ENROLMENTS=1000 MTE_SCALE_DEADLINE_S=3000 bash tests/integration/scale_out_test.sh

# The libFuzzer targets (fuzz/, docs/fuzzing.md): clang with ASan and UBSan, in $(FUZZ_BUILD).
fuzz-build: fuzz-deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DMTE_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target mte_fuzz_all

# make fuzz: each target in turn, FUZZ_SECONDS from its seeds and from what earlier runs found
# ($(FUZZ_BUILD)/fuzz/work/NAME/corpus). A crashing input is left in $(FUZZ_BUILD)/fuzz/work/NAME/;
# every target runs, and the command fails if any crashed.
fuzz: fuzz-build
	@status=0; for t in $(FUZZ_TARGETS); do \
	  bash fuzz/run.sh $(FUZZ_BUILD)/fuzz/$$t fuzz/corpus/$$t $(FUZZ_SECONDS) \
	    $(FUZZ_BUILD)/fuzz/work/$$t || status=1; \
	done; exit $$status

# make fuzz-check: what make test adds, the fuzz-labelled ctest tests (each corpus replayed, then a
# few seconds of fuzzing).
fuzz-check: fuzz-build
	@ctest --test-dir $(FUZZ_BUILD) -L fuzz --output-on-failure -j$(JOBS) --timeout 600

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) build-asan build-tsan

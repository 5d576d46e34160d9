# OpenMTE: the two commands of the README, plus the pieces they are made of.
#   make demo   build, start the MTE on loopback, enrol two simulated devices (Flow A without an
#               OBF, Flow B via the OBF), narrate
#   make test   build and run the whole test suite (ctest)
BUILD ?= build
JOBS ?= 2
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps test-deps configure build test demo bench clean

all: build

deps:
	@bash tools/install-deps.sh

test-deps:
	@bash tools/install-deps.sh --test

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMTE_WERROR=ON >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

test: test-deps build
	@ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS) --timeout 600

demo: build
	@$(BUILD)/bin/mte demo

# make bench: the MEF outbox drain (bench/outbox_drain.sh), then the bare nested-handshake floor
# vs. Flow B enrolments through mte serve (bench/run_bench.sh, whose ratio stays the last line)
# (docs/performance.md). Builds only what it runs, in $(BUILD) with $(BUILD_TYPE) (Release or
# RelWithDebInfo; run_bench.sh refuses a Debug build). MTE_WERROR stays as configured in $(BUILD).
bench: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) --target mte mte_bench_bare mte_bench_engine mte_bench_flowb \
	  mte_bench_outbox
	@bash bench/outbox_drain.sh $(BUILD)
	@bash bench/run_bench.sh $(BUILD)

clean:
	rm -rf $(BUILD)

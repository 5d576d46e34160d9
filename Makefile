# OpenMTE: the two commands of the README, plus the pieces they are made of.
#   make demo   build, start the MTE on loopback, enrol a simulated device (Flow A), narrate
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

demo: test-deps build
	@bash tools/demo.sh $(BUILD)/bin

bench: build
	@if [ -x $(BUILD)/bench/mte_bench ]; then $(BUILD)/bench/mte_bench; else echo "no benchmarks built"; fi

clean:
	rm -rf $(BUILD)

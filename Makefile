# Short names for the CMake builds. `make` builds build/whale; `make run` sets up, builds and
# runs the main job; `make test` runs every test
# suite (unit tests, the same under ASan+UBSan, bounded fuzz runs, Python reference tests)
# and ends with one summary line "N passed, N failed".
JOBS ?= $(shell nproc)
# The CMake builds run make inside make, which would print "Entering/Leaving directory" around
# every step (76 of 193 lines of a clean build): not output anyone reads.
MAKEFLAGS += --no-print-directory

.PHONY: all whale debug tsan fuzz test run chat setup clean format install reasoner
all: whale

whale:
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build -j $(JOBS)

debug:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWHALE_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

# ThreadSanitizer, optimized (-O1): the server tests run against build-tsan/whale.
tsan:
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWHALE_TSAN=ON >/dev/null
	@cmake --build build-tsan -j $(JOBS) --target whale

fuzz:
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DWHALE_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

test:
	@scripts/test

# libwhale for other programs: PREFIX/include/whale.h, PREFIX/lib/libwhale.{a,so},
# PREFIX/lib/pkgconfig/whale.pc (`pkg-config --cflags --libs whale`; see examples/simple.c).
PREFIX ?= /usr/local
install: whale
	@cmake --install build --prefix $(PREFIX)

setup:
	@scripts/setup

# The main job: set up (packages, default model), build, and chat with the default model.
run: setup whale
	@build/whale chat

chat: run

# The default model learns to think (R1's recipe: cold-start SFT on its own verified answers,
# then GRPO): writes $WHALE_HOME/models/default-r1.gguf, registered as `default-r1`
# (scripts/reasoner; docs/RL.md, "make reasoner").
reasoner: setup whale
	@scripts/reasoner

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-fuzz

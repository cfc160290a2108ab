# Thin wrapper over CMake: `make demo` and `make test` are the README's two commands.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup build test demo asan asan-mpi clean bench install

all: build

setup:
	@bash scripts/setup.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: setup build
	@bash scripts/demo.sh $(BUILD)/loom

# With MPICH installed too, a second build against it runs the MPI test with mpirun.mpich.
test: setup build
	@if command -v mpicc.mpich >/dev/null; then \
	  cmake -S . -B $(BUILD)-mpich -DCMAKE_BUILD_TYPE=Release -DMPI_C_COMPILER=mpicc.mpich $(CMAKE_FLAGS) >/dev/null && \
	  cmake --build $(BUILD)-mpich -j $(JOBS) --target loom >/dev/null; fi
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	@# without MPI: Open MPI leaks at exit by design, which LeakSanitizer would report
	@$(MAKE) build BUILD=build-asan CMAKE_FLAGS="-DLOOM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DLOOM_MPI=OFF"
	@cd build-asan && ctest --output-on-failure -j $(JOBS)

# The MPI test under AddressSanitizer and UBSan, with an MPI build (LeakSanitizer off:
# Open MPI keeps allocations until exit by design)
asan-mpi:
	@$(MAKE) build BUILD=build-asan-mpi CMAKE_FLAGS="-DLOOM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DLOOM_MPI=ON"
	@LOOM=$(CURDIR)/build-asan-mpi/loom ASAN_OPTIONS=detect_leaks=0 bash tests/cli/mpi.sh

# make install PREFIX=/opt/loom: bin/loom, lib/libloom.{a,so}, include/loom, lib/pkgconfig/loom.pc,
# share/loom/data/gpt2 (the tokenizer), share/man/man1/loom*.1
PREFIX ?= /usr/local
install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

bench: setup build
	@bash bench/run_all.sh $(BUILD)

clean:
	rm -rf build build-asan

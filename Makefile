# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned to the CPU wheel that lies on disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
HMREC_SIZE ?= MEDIUM

.PHONY: run test test-avx2 test-portable test-cpus install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/hmrec run --size $(HMREC_SIZE)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# The tests whose numbers depend on the CPU: the C kernels, training, retrieval, serving.
CPU_TESTS := tests/test_retrieval_*.py tests/test_serving_*.py tests/test_registry_towers.py tests/test_pipeline_end_to_end.py
# An AVX2-only CPU (e.g. AMD Zen 3) emulated on a newer one: PyTorch's own kernels, oneDNN
# and MKL limited to AVX2, the C kernels built for x86-64-v3 (AVX2 + FMA).
AVX2_ENV := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 HMREC_NATIVE_MARCH=x86-64-v3

test-avx2: $(STAMP)
	@if [ "$$(uname -m)" = x86_64 ]; then $(AVX2_ENV) $(BIN)/python -m pytest -q -n 2 $(CPU_TESTS); \
	else echo "test-avx2: not an x86-64 machine, nothing to emulate"; fi

# Without the C kernels (HMREC_NATIVE=0): the PyTorch paths a machine without a compiler runs.
test-portable: $(STAMP)
	HMREC_NATIVE=0 $(BIN)/python -m pytest -q -n 2 $(CPU_TESTS)

test-cpus: test test-avx2 test-portable

clean:
	rm -rf $(VENV) .hmrec

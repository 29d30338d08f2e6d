# All set-up from nothing: `make demo` and `make test` create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: demo test bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv

# Re-install only when the package metadata changes.
$(STAMP): $(PY) pyproject.toml
	$(UV) pip install --quiet --python $(PY) -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/two_rings.py

test: $(STAMP)
	$(PY) -m ruff check kerastorch tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m pytest

# The peers (Lightning, Poutyne, Keras 3) come from the `bench` extra.
bench: $(STAMP)
	$(UV) pip install --quiet --python $(PY) -e ".[dev,bench]"
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_regularizers.py
	$(PY) benchmarks/bench_optimizer.py
	$(PY) benchmarks/bench_peers.py
	$(PY) benchmarks/bench_loop.py
	$(PY) benchmarks/bench_predict_memory.py
	$(PY) benchmarks/bench_ema.py

# On a machine with CUDA: tests/gpu, the no-host-sync checks and the --device cuda benchmark
# rows, about 8 minutes at most; writes gpu-check-results.json.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --out gpu-check-results.json

clean:
	rm -rf $(VENV) build *.egg-info

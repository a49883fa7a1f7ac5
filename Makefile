# ov2 — every target sets itself up on a fresh Debian/Ubuntu machine:
# FFmpeg dev packages via apt when missing, a .venv at the repo root, torch, an editable build.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := pkg-config libavformat-dev libavcodec-dev libavutil-dev libswscale-dev cmake g++ python3-venv
NATIVE_SRC := $(shell find csrc cmake -type f 2>/dev/null) CMakeLists.txt pyproject.toml
PYTEST_ARGS ?=

.PHONY: all demo test sysdeps venv build bench bench-quick bench-deps clean

all: build

sysdeps: $(VENV)/.sysdeps
$(VENV)/.sysdeps:
	@if ! (command -v pkg-config >/dev/null && pkg-config --exists libavformat libavcodec libavutil libswscale && command -v cmake >/dev/null && command -v g++ >/dev/null); then \
	  echo "ov2: installing FFmpeg development packages via apt"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PKGS); \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/bin/python: | $(VENV)/.sysdeps
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }

venv: $(VENV)/.deps
$(VENV)/.deps: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q numpy "pybind11>=2.12" "scikit-build-core>=0.10" "transformers>=4.56" "safetensors>=0.4" \
	    "pytest>=7" "hypothesis>=6" "av>=12" psutil tqdm "matplotlib>=3.5"
	-$(PIP) install -q "triton>=3.0"
	@touch $@

build: $(VENV)/.built
$(VENV)/.built: $(VENV)/.deps $(NATIVE_SRC)
	$(PIP) install -q --no-build-isolation --no-deps -e . -Ccmake.build-type=Release
	@touch $@

demo: build
	$(PY) -m ov2_tokenizer.demo

test: build
	OMP_NUM_THREADS=2 $(PY) -m pytest -q $(PYTEST_ARGS)

bench-deps: $(VENV)/.bench-deps
$(VENV)/.bench-deps: $(VENV)/.deps
	-$(PIP) install -q motion-vector-extractor
	-$(PIP) install -q decord || $(PIP) install -q eva-decord
	@touch $@

bench: build bench-deps
	$(PY) benchmarks/run.py

bench-quick: build bench-deps
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf build $(VENV)/.built

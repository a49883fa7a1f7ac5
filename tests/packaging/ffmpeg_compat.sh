#!/usr/bin/env bash
# Builds ov2's C++ core against other FFmpeg releases and runs the core's tests with each (docs/packaging.md,
# "Other FFmpeg releases"; `make ffmpeg-compat`). The editable install (make build, the system's FFmpeg) is untouched: each version gets
# its own FFmpeg under build/ffmpeg-compat/<version>/prefix and its own extension in .../ov2, loaded by the tests
# through OV2_CORE_DIR with that FFmpeg on LD_LIBRARY_PATH.
#
# Usage: tests/packaging/ffmpeg_compat.sh [VERSION ...]          (default: 4.4.2 6.1.1 7.1.5 8.0.1)
#   OV2_COMPAT_TESTS   pytest targets (default: the core, tokenizer, robustness, modes, streaming and pipeline tests)
#   OV2_COMPAT_JOBS    parallel compile jobs (default: nproc)
#   PY                 the Python with ov2's test dependencies (default: .venv/bin/python)
#
# FFmpeg is configured for decoding only (every decoder, demuxer, parser and bitstream filter, file and pipe
# protocols, swscale, zlib, libdav1d when its headers are installed), with its assembly when nasm is present.
# Sources are Debian's / Ubuntu's original tarballs (checksums below), fetched once into build/ffmpeg-compat/src.
# Last, tests/packaging/token_digests.py hashes every mode's tokens and the core's per-frame products on the demo
# sample and the shared videos with each release and reports which differ from the system build's (information,
# not a failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/build/ffmpeg-compat
PY=${PY:-$ROOT/.venv/bin/python}
JOBS=${OV2_COMPAT_JOBS:-$(nproc)}
TESTS=${OV2_COMPAT_TESTS:-tests/codec tests/tokenize tests/robustness tests/modes tests/stream tests/pipeline}
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(4.4.2 6.1.1 7.1.5 8.0.1)

# version -> "url sha256" (the release tarballs as Debian / Ubuntu ship them; ffmpeg.org's release tarball is the
# fallback, checked against the same digest)
source_of() {
  case "$1" in
    4.4.2) echo "http://archive.ubuntu.com/ubuntu/pool/universe/f/ffmpeg/ffmpeg_4.4.2.orig.tar.xz af419a7f88adbc56c758ab19b4c708afbcae15ef09606b82b855291f6a6faa93" ;;
    6.1.1) echo "http://archive.ubuntu.com/ubuntu/pool/universe/f/ffmpeg/ffmpeg_6.1.1.orig.tar.xz 8684f4b00f94b85461884c3719382f1261f0d9eb3d59640a1f4ac0873616f968" ;;
    7.1.5) echo "http://deb.debian.org/debian/pool/main/f/ffmpeg/ffmpeg_7.1.5.orig.tar.xz de668509caf9e35e3cd162473441fdb29538c6d96ed080292b3cf9e6fc5d558f" ;;
    8.0.1) echo "http://archive.ubuntu.com/ubuntu/pool/universe/f/ffmpeg/ffmpeg_8.0.1.orig.tar.xz 05ee0b03119b45c0bdb4df654b96802e909e0a752f72e4fe3794f487229e5a41" ;;
    *) echo "" ;;
  esac
}

fetch() {  # fetch VERSION -> path of the verified tarball
  local v=$1 url sha tar
  read -r url sha <<<"$(source_of "$v")"
  [ -n "$url" ] || { echo "ffmpeg_compat: no known source for FFmpeg $v (add it to source_of)" >&2; exit 2; }
  mkdir -p "$WORK/src"
  tar=$WORK/src/ffmpeg-$v.tar.xz
  if [ ! -s "$tar" ] || ! echo "$sha  $tar" | sha256sum -c --status; then
    curl -fsSL -o "$tar.part" "$url" || curl -fsSL -o "$tar.part" "https://ffmpeg.org/releases/ffmpeg-$v.tar.xz"
    echo "$sha  $tar.part" | sha256sum -c --status || { echo "ffmpeg_compat: checksum mismatch for $url" >&2; exit 1; }
    mv "$tar.part" "$tar"
  fi
  echo "$tar"
}

build_ffmpeg() {  # build_ffmpeg VERSION
  local v=$1 prefix=$WORK/$1/prefix tar src extra=()
  [ -f "$prefix/.done" ] && return 0
  tar=$(fetch "$v") || return 1
  src=$WORK/$v/src
  rm -rf "$src" "$prefix" && mkdir -p "$src"
  tar -xJf "$tar" -C "$src" --strip-components=1 || return 1
  command -v nasm >/dev/null || extra+=(--disable-x86asm)
  pkg-config --exists dav1d && extra+=(--enable-libdav1d)
  grep -q -- "--disable-postproc" "$src/configure" && extra+=(--disable-postproc)  # gone in FFmpeg 8
  (cd "$src" && ./configure --prefix="$prefix" --enable-shared --disable-static --disable-programs --disable-doc \
      --disable-debug --disable-autodetect --disable-everything --enable-decoders --enable-demuxers \
      --enable-parsers --enable-bsfs --enable-protocol=file,pipe --enable-zlib --enable-swscale \
      --disable-avdevice --disable-avfilter --disable-network "${extra[@]}" >"$WORK/$v/configure.log" \
    && make -j"$JOBS" >"$WORK/$v/make.log" 2>&1 && make install >>"$WORK/$v/make.log" 2>&1) \
    || { echo "ffmpeg_compat: building FFmpeg $v failed (logs in $WORK/$v)" >&2; return 1; }
  touch "$prefix/.done"
}

build_ov2() {  # build_ov2 VERSION: the extension against that FFmpeg, warnings shown
  local v=$1 prefix=$WORK/$1/prefix out=$WORK/$1/ov2
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  PKG_CONFIG_PATH=$prefix/lib/pkgconfig cmake -S "$ROOT" -B "$out" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DOV2_PYTHON=ON -DOV2_CUDA=OFF -DPython_EXECUTABLE="$PY" \
    -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >"$WORK/$v/cmake.log"
  cmake --build "$out" -j"$JOBS" 2>&1 | tee "$WORK/$v/ov2-build.log" | grep -E "warning|error" || true
  [ "${PIPESTATUS[0]}" -eq 0 ]
}

show_versions() {  # show_versions VERSION: what the core built against that FFmpeg reports
  OV2_CORE_DIR=$WORK/$1/ov2 LD_LIBRARY_PATH=$WORK/$1/prefix/lib "$PY" - <<'EOF'
import ov2_tokenizer
ff = ov2_tokenizer.build_info()["ffmpeg"]
libs = sorted(ff["libraries"].items())
print(f"FFmpeg {ff['version_info']}: " + ", ".join(f"{k} {x['compiled']} (loaded {x['runtime']})" for k, x in libs))
EOF
}

compare_digests() {  # compare_digests FILE: where FILE's outputs differ from the system build's
  "$PY" - "$WORK/digests-system.jsonl" "$1" <<'EOF'
import json, sys
load = lambda p: {(r["video"], r["what"]): r["digest"] for r in map(json.loads, open(p))}
ref, got = load(sys.argv[1]), load(sys.argv[2])
built = {k: ref.pop(k) for k in list(ref) if k[0] == "_"}, {k: got.pop(k) for k in list(got) if k[0] == "_"}
diff = sorted(k for k in ref if got.get(k) != ref[k])
print(f"{len(ref) - len(diff)}/{len(ref)} outputs identical to the system build's"
      + ("" if not diff else "; differ: " + ", ".join(f"{v} {w}" for v, w in diff))
      + f" ({built[1].get(('_', '_build'))} vs {built[0].get(('_', '_build'))})")
EOF
}

# Outputs of the system build (make build), the reference for every release's (tests/packaging/token_digests.py).
echo "== digests of the system build's outputs"
mkdir -p "$WORK"
env -u OV2_CORE_DIR "$PY" tests/packaging/token_digests.py >"$WORK/digests-system.jsonl"
echo "   $(wc -l <"$WORK/digests-system.jsonl") outputs"

status=0
summary=()
for v in "${VERSIONS[@]}"; do
  echo "== FFmpeg $v"
  if ! build_ffmpeg "$v"; then summary+=("$v: FFmpeg build failed"); status=1; continue; fi
  if ! build_ov2 "$v"; then summary+=("$v: ov2 build FAILED ($WORK/$v/ov2-build.log)"); status=1; continue; fi
  show_versions "$v" || true
  # one pytest session per target (their conftests share a module name, as in the CI's runs); each session first
  # runs tests/packaging/test_ffmpeg_runtime.py, which fails if it loaded another core or another FFmpeg
  : >"$WORK/$v/pytest.log"
  results=()
  for t in $TESTS; do
    set +e
    # shellcheck disable=SC2086
    OV2_CORE_DIR=$WORK/$v/ov2 LD_LIBRARY_PATH=$WORK/$v/prefix/lib OMP_NUM_THREADS=2 \
      OV2_EXPECT_FFMPEG=$v OV2_EXPECT_FFMPEG_PREFIX=$WORK/$v/prefix \
      "$PY" -m pytest -q -p no:cacheprovider tests/packaging/test_ffmpeg_runtime.py "$t" ${PYTEST_ARGS:-} \
      >"$WORK/$v/pytest.part" 2>&1
    rc=$?
    set -e
    cat "$WORK/$v/pytest.part" >>"$WORK/$v/pytest.log"
    last=$(tail -n 1 "$WORK/$v/pytest.part" | tr -d '=' | sed 's/^ *//')
    echo "   $t: $last"
    results+=("$t $last")
    if [ "$rc" -ne 0 ]; then status=1; grep -E "^(FAILED|ERROR)" "$WORK/$v/pytest.part" | head -n 20 || true; fi
  done
  OV2_CORE_DIR=$WORK/$v/ov2 LD_LIBRARY_PATH=$WORK/$v/prefix/lib "$PY" tests/packaging/token_digests.py >"$WORK/$v/digests.jsonl"
  same=$(compare_digests "$WORK/$v/digests.jsonl")
  echo "   outputs: $same"
  summary+=("$v: $(printf '%s; ' "${results[@]}")outputs: $same")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status

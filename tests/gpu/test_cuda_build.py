"""The kernels build without FFmpeg: configure csrc with -DOV2_FFMPEG=OFF -DOV2_CUDA=ON (out of tree, in a temporary
directory), build the _core extension with the CUDA kernels for sm_80 and sm_90, and import it. This is how CI
proves the kernels compile (nvcc is on the CI machine, no GPU is): the test skips only when nvcc or cmake is
missing. The import must work without an NVIDIA driver (static CUDA runtime) and report "no device" as data.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from _gpu_util import ROOT

pytestmark = pytest.mark.slow


def _nvcc() -> str | None:
    return shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc") or None


@pytest.fixture(scope="module")
def cuda_build(tmp_path_factory) -> str:
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA kernels cannot be compiled here")
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found")
    try:
        import pybind11
    except ImportError:
        pytest.skip("pybind11 is not installed")
    build = str(tmp_path_factory.mktemp("cuda_noffmpeg"))
    cfg = ["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DOV2_FFMPEG=OFF", "-DOV2_CUDA=ON",
           "-DOV2_PYTHON=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DPython_EXECUTABLE={sys.executable}",
           f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"]
    env = {k: v for k, v in os.environ.items() if k != "CUDAARCHS"}  # the default architectures are under test
    r = subprocess.run(cfg, capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"configure failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "CUDA kernels for 80;90" in r.stdout, r.stdout[-2000:]
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    r = subprocess.run(["cmake", "--build", build, "-j", jobs], capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"build failed:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    return build


def test_kernels_build_without_ffmpeg(cuda_build: str) -> None:
    libs = [f for f in os.listdir(cuda_build) if f.startswith("libov2_cuda")]
    assert libs, "libov2_cuda was not built"
    assert not any(f.startswith("libov2_codec") for f in os.listdir(cuda_build)), "the FFmpeg core was built"


def test_built_core_imports_and_reports_the_device(cuda_build: str) -> None:
    code = textwrap.dedent("""
        import json
        from ov2_tokenizer._native import core
        n, why = core.cuda.device_count()
        print(json.dumps({"has_cuda": core.has_cuda, "has_ffmpeg": core.has_ffmpeg, "n": n, "why": why,
                          "available": core.cuda.available(),
                          "functions": sorted(x for x in dir(core.cuda) if not x.startswith("_"))}))
    """)
    env = dict(os.environ, OV2_CORE_DIR=cuda_build, PYTHONPATH=os.path.join(ROOT, "src"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["has_cuda"] is True and info["has_ffmpeg"] is False
    assert info["available"] == (info["n"] > 0)
    if info["n"] == 0:
        assert info["why"], "no device but no reason given"
    for fn in ("score_frames", "saliency", "allocate", "gop_partition_batch", "gather_canvases", "compute_residual",
               "densify_motion", "resize_bilinear_u8", "resize_area_f32", "block_score", "yuv420_to_rgb"):
        assert fn in info["functions"], fn


def test_static_cuda_runtime(cuda_build: str) -> None:
    so = [f for f in os.listdir(cuda_build) if f.startswith("_core") and f.endswith(".so")]
    assert so
    if shutil.which("ldd") is None:
        pytest.skip("no ldd")
    r = subprocess.run(["ldd", os.path.join(cuda_build, so[0])], capture_output=True, text=True)
    assert "libcudart.so" not in r.stdout, r.stdout

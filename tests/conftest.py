"""Fixtures shared by every test directory.

- ``shared_videos``: the directory of real test videos (``<repo>/../shared/videos``); tests that need it skip
  with the reason when it is absent (it is not part of the repository).
- ``generated_dir``: one session-wide temporary directory where tests write the videos they generate.

Nothing here imports ``ov2_tokenizer`` at module level, so test directories that do not need the compiled core
still collect without it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from ov2_testing import SHARED_VIDEOS, VIDEO_SUFFIXES, shared_video_paths  # noqa: E402,F401

if str(REPO_ROOT / "src") not in sys.path:  # allow running without PYTHONPATH=src
    sys.path.insert(0, str(REPO_ROOT / "src"))


def _enable_triton_interpreter() -> None:
    """Triton's CPU interpreter must be chosen before triton is first imported (``import ov2_model`` imports it),
    so the whole session runs Triton kernels through the interpreter when no CUDA device is present."""
    import importlib.util
    import os

    if "TRITON_INTERPRET" in os.environ or "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


_enable_triton_interpreter()


def pytest_report_header(config) -> str:
    """Which core and which FFmpeg this session runs (the editable install, or OV2_CORE_DIR's build against another
    FFmpeg release: tests/packaging/ffmpeg_compat.sh)."""
    try:
        import ov2_tokenizer

        info = ov2_tokenizer.build_info()
    except Exception as exc:  # a broken build still reports its tests' import errors
        return f"ov2: core not importable ({type(exc).__name__}: {exc})"
    ff = info.get("ffmpeg") or {}
    libs = ff.get("libraries", {})
    avcodec = libs.get("libavcodec", {})
    return (f"ov2 {info.get('version')}: core {info['build'].get('core_path')}; FFmpeg {ff.get('version_info')} "
            f"(libavcodec {avcodec.get('runtime')} from {avcodec.get('path')})" if ff else
            f"ov2 {info.get('version')}: core {info['build'].get('core_path')}; built without FFmpeg")


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """``<repo>/../shared/videos``; skips the test when the directory is absent."""
    if not shared_video_paths():
        pytest.skip(f"shared test videos not found at {SHARED_VIDEOS}")
    return SHARED_VIDEOS


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory) -> Path:
    """A session-wide directory for generated videos (each generator writes its file once)."""
    return tmp_path_factory.mktemp("ov2_generated_videos")

"""The FFmpeg the loaded core runs on is the one a run asked for.

``tests/packaging/ffmpeg_compat.sh`` (``make ffmpeg-compat``) builds the core against other FFmpeg releases and runs the core's
tests with each; it sets ``OV2_EXPECT_FFMPEG`` (the release, e.g. ``7.1.5``) and ``OV2_EXPECT_FFMPEG_PREFIX`` (where
it installed it), and this test makes that run fail if the session silently loaded another core or another FFmpeg
(the editable install, the system's libraries). Without those variables it skips.
"""
from __future__ import annotations

import os

import pytest


def _ffmpeg() -> dict:
    ov2 = pytest.importorskip("ov2_tokenizer")
    info = ov2.build_info()
    if not info["has_ffmpeg"]:
        pytest.skip("core built without FFmpeg")
    return info["ffmpeg"]


def test_the_requested_ffmpeg_is_loaded():
    want = os.environ.get("OV2_EXPECT_FFMPEG")
    if not want:
        pytest.skip("OV2_EXPECT_FFMPEG not set (set by tests/packaging/ffmpeg_compat.sh)")
    ff = _ffmpeg()
    assert str(ff["version_info"]).startswith(want), ff["version_info"]
    prefix = os.environ.get("OV2_EXPECT_FFMPEG_PREFIX")
    if prefix:
        for name, lib in ff["libraries"].items():
            assert os.path.realpath(str(lib["path"])).startswith(os.path.realpath(prefix)), (name, lib["path"])
    core_dir = os.environ.get("OV2_CORE_DIR")
    if core_dir:
        import ov2_tokenizer

        core = ov2_tokenizer.build_info()["build"]["core_path"]
        assert os.path.realpath(core).startswith(os.path.realpath(core_dir)), core

"""ov2_tokenizer.build_info() on whatever core this test run uses (the editable build, or OV2_CORE_DIR)."""
from __future__ import annotations

import json
import os
from importlib.metadata import version

import pytest

ov2 = pytest.importorskip("ov2_tokenizer")


def test_build_info_reports_build_and_runtime_ffmpeg(capsys):
    assert hasattr(ov2._native.core, "build_info"), "the compiled core predates build_info(): rebuild it (make build)"
    info = ov2.build_info()
    json.dumps(info)  # JSON-serialisable as documented
    assert info["version"] == info["package_version"] == version("ov2") == ov2.__version__
    b = info["build"]
    assert b["build_type"] and b["cxx_standard"] == "17" and b["compiler"].split()[0] in ("GNU", "Clang", "AppleClang")
    assert os.path.samefile(b["core_path"], ov2._native.core.__file__)
    assert info["has_ffmpeg"] == ov2._native.HAS_FFMPEG
    assert info["has_cuda"] == bool(getattr(ov2._native.core, "has_cuda", False))
    assert info["numpy"] == version("numpy")
    if not info["has_ffmpeg"]:
        assert info["ffmpeg"] is None
        return
    ff = info["ffmpeg"]
    for name in ("libavcodec", "libavformat", "libavutil", "libswscale"):
        lib = ff["libraries"][name]
        assert lib["abi_match"], lib
        assert lib["compiled"].split(".")[0] == lib["runtime"].split(".")[0]
        assert os.path.exists(lib["path"]), lib
        # the file dladdr names is the one mapped into the process
        assert any(os.path.samefile(lib["path"], p) for p in ff["loaded"][name].split(os.pathsep)), (lib, ff["loaded"])
    assert ff["version_info"] and "--" in ff["configuration"] and ff["license"]
    assert ff["decoders"]["default"]["h264"] == "h264" and ff["decoders"]["available"]["h264"]
    assert ff["vendored"] == (ff["vendored_dir"] is not None and os.path.dirname(
        os.path.realpath(ff["libraries"]["libavcodec"]["path"])) == os.path.realpath(ff["vendored_dir"]))

    from ov2_tokenizer.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ov2 ") and "libavcodec" in out and ff["version_info"] in out
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ffmpeg"]["license"] == ff["license"]


def test_build_info_does_not_shadow_and_is_lazy():
    import ov2_tokenizer._build_info  # noqa: F401  (importing the module must not replace the function)

    assert callable(ov2.build_info) and "build_info" in ov2.__all__

"""``ov2_tokenizer.build_info()``: how the installed ov2 was built and which FFmpeg it runs on.

The compiled core reports its own build (version, compiler, build type, C++ standard, CMake options, whether
FFmpeg / CUDA were compiled in) and, with FFmpeg, the library versions it was compiled against next to the ones
loaded at run time, the loaded build's ``configure`` line and licence, the decoders of interest, and the file each
FFmpeg library was loaded from. This wrapper adds the interpreter, numpy and torch (versions read from the
installed distributions' metadata: torch is not imported), the FFmpeg shared objects mapped into the process
(``/proc/self/maps``), and whether those are the copies vendored into the wheel by ``auditwheel repair``
(``<site-packages>/ov2.libs/``) or system libraries::

    >>> import ov2_tokenizer as ov2
    >>> info = ov2.build_info()
    >>> info["ffmpeg"]["libraries"]["libavcodec"]["runtime"], info["ffmpeg"]["vendored"]   # doctest: +SKIP
    ('59.37.100', True)

``ov2 info`` with no video (or ``python -m ov2_tokenizer._build_info [--json]``) prints it. (The module is
private so that importing it never shadows the function ``ov2_tokenizer.build_info``.)
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["build_info", "loaded_ffmpeg_libraries"]

_FFMPEG_LIBS = ("libavcodec", "libavformat", "libavutil", "libswscale", "libswresample")


def loaded_ffmpeg_libraries() -> dict[str, str]:
    """The FFmpeg shared objects mapped into this process, ``{library: path}`` (from ``/proc/self/maps``;
    empty where the file does not exist). A library mapped from two files (vendored and system) lists both,
    separated by ``os.pathsep``."""
    found: dict[str, list[str]] = {}
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) < 6:
                    continue
                path = parts[5].strip()
                base = os.path.basename(path)
                for lib in _FFMPEG_LIBS:
                    # system: libavcodec.so.59.37.100; auditwheel: libavcodec-<hash>.so.59.37.100
                    if base.startswith(lib + ".so") or base.startswith(lib + "-"):
                        paths = found.setdefault(lib, [])
                        if path not in paths:
                            paths.append(path)
    except OSError:
        return {}
    return {lib: os.pathsep.join(paths) for lib, paths in found.items()}


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _vendored_dir() -> Path | None:
    """``<site-packages>/ov2.libs`` (where ``auditwheel repair`` puts the libraries it vendors), if present."""
    d = Path(__file__).resolve().parent.parent / "ov2.libs"
    return d if d.is_dir() else None


def build_info() -> dict[str, Any]:
    """The build and run-time configuration of ov2 as a JSON-serialisable dict (see the module docstring).

    Keys: ``version``, ``build`` (compiler, build_type, cxx_standard, cxx_flags, options, core_path, ...),
    ``has_ffmpeg``, ``has_cuda``, ``cuda``, ``ffmpeg`` (None without FFmpeg; else ``libraries`` with compiled /
    runtime versions and the loaded path of each, ``version_info``, ``configuration``, ``license``,
    ``decoders``, ``loaded`` from /proc/self/maps, ``vendored``, ``vendored_dir``), ``python``, ``numpy``,
    ``torch``, ``package_version``.
    """
    from ._native import core

    info: dict[str, Any] = dict(core.build_info()) if hasattr(core, "build_info") else {
        "version": None, "build": None, "has_ffmpeg": bool(getattr(core, "has_ffmpeg", False)),
        "has_cuda": bool(getattr(core, "has_cuda", False)), "cuda": None, "ffmpeg": None,
    }
    info["package_version"] = _dist_version("ov2")
    ff = info.get("ffmpeg")
    if ff is not None:
        ff = dict(ff)
        ff["libraries"] = {name: {**lib, "path": os.path.normpath(lib["path"]) if lib["path"] else ""}
                           for name, lib in ff["libraries"].items()}  # .../ov2_tokenizer/../ov2.libs/x -> .../ov2.libs/x
        ff["loaded"] = loaded_ffmpeg_libraries()
        vdir = _vendored_dir()
        codec_path = ff["libraries"]["libavcodec"]["path"] or ff["loaded"].get("libavcodec", "")
        ff["vendored_dir"] = str(vdir) if vdir else None
        ff["vendored"] = bool(vdir and codec_path and Path(codec_path).resolve().parent == vdir)
        info["ffmpeg"] = ff
    info["python"] = {"version": platform.python_version(), "implementation": platform.python_implementation(),
                      "executable": sys.executable, "platform": platform.platform()}
    info["numpy"] = _dist_version("numpy")
    info["torch"] = _dist_version("torch")
    return info


def format_build_info(info: dict[str, Any] | None = None) -> str:
    """A human-readable summary of :func:`build_info` (what ``ov2 info`` prints without videos)."""
    info = build_info() if info is None else info
    b = info.get("build") or {}
    lines = [
        f"ov2 {info.get('package_version') or info.get('version')}  (core {info.get('version')}, "
        f"{b.get('build_type')}, {b.get('compiler')}, C++{b.get('cxx_standard')}, {b.get('frontend')})",
        f"  core           {b.get('core_path')}",
        f"  ffmpeg         {'yes' if info.get('has_ffmpeg') else 'no'}   cuda {'yes' if info.get('has_cuda') else 'no'}",
        f"  python         {info['python']['version']}   numpy {info.get('numpy')}   torch {info.get('torch')}",
    ]
    ff = info.get("ffmpeg")
    if ff:
        lines.append(f"  FFmpeg         {ff['version_info']}  ({ff['license']}; "
                     f"{'vendored in the wheel' if ff['vendored'] else 'system / external libraries'})")
        for name, lib in ff["libraries"].items():
            mark = "" if lib["abi_match"] else "  ** ABI MISMATCH (major version differs) **"
            lines.append(f"  {name:14s} compiled {lib['compiled']:10s} runtime {lib['runtime']:10s} {lib['path']}{mark}")
        dec = ff["decoders"]
        lines.append("  decoders       " + ", ".join(f"{k}={v or '-'}" for k, v in dec["default"].items())
                     + "; " + ", ".join(k for k, v in dec["available"].items() if v))
        lines.append(f"  configuration  {ff['configuration']}")
    return "\n".join(lines)


if __name__ == "__main__":
    if "--json" in sys.argv[1:]:
        print(json.dumps(build_info(), indent=2))
    else:
        print(format_build_info())

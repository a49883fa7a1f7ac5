"""Helpers shared by every test directory, importable as ``ov2_testing`` (tests/ is on sys.path once the root
conftest is loaded; a plain module name avoids the clash between the several ``conftest`` modules)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO_ROOT.parent / "shared" / "videos"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")


def shared_video_paths() -> list[Path]:
    """The videos of ``../shared/videos`` (empty when the directory is absent); usable at collection time."""
    if not SHARED_VIDEOS.is_dir():
        return []
    return sorted(p for p in SHARED_VIDEOS.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def tokens_digest(vt) -> str:
    """SHA-256 over every tensor of a VisualTokens (name, dtype, shape, bytes); ``meta`` (timings) is left out."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for k, a in sorted(vt._arrays().items()):
        a = np.ascontiguousarray(a.numpy() if hasattr(a, "numpy") else a)
        h.update(k.encode())
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()

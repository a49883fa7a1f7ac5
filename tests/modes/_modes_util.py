"""Paths shared by the mode tests (importable at collection time)."""
from __future__ import annotations

from pathlib import Path

SHARED_VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "videos"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")


def shared_video_paths() -> list[Path]:
    """The videos of ``<repo>/../shared/videos`` (empty when absent)."""
    if not SHARED_VIDEOS.is_dir():
        return []
    return sorted(p for p in SHARED_VIDEOS.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())

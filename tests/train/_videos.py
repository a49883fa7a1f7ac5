"""Generated captioned clips (and the shared real videos) as training manifests for ``ov2_tokenizer.data``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

#: tokenizer options that keep the tiny models fast: 56x56 canvases (16 patches, 4 merged tokens each)
GEN_OPTIONS = {"min_pixels": 784, "max_pixels": 3136}
#: real videos are 16:9 or 9:16: 56x112 canvases
SHARED_OPTIONS = {"min_pixels": 784, "max_pixels": 6272}
#: the same budget for both video forms: 2 canvases (codec_stream: 2 of 8 candidate frames; frames: 2 frames)
BUDGET = {"codec_stream": {"num_frames": 8, "max_canvases": 2}, "frames": {"num_frames": 2}, "image": {},
          "cope": {"num_frames": 4, "max_canvases": 2}}


def options(mode: str, shared: bool = False, **extra) -> dict:
    """ManifestDataset options of one form."""
    return {**(SHARED_OPTIONS if shared else GEN_OPTIONS), **BUDGET[mode], **extra}

_DIRS = [(1, 0, "right"), (-1, 0, "left"), (0, 1, "down"), (0, -1, "up")]


def write_clips(directory: Path, n: int = 8, frames: int = 24, size: int = 64) -> list[Path]:
    """``n`` H.264 clips (``size``²; 8 fps; a key frame every 8 frames; no B-frames): a textured square moving
    in one of four directions at one of two speeds over a textured background; clip ``i`` is unique."""
    from ov2_tokenizer.samples import encode_video, texture

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"clip{i}.mp4"
        paths.append(path)
        if path.exists() and path.stat().st_size > 0:
            continue
        bg = texture(size, size, seed=200 + i)
        sq = texture(24, 24, seed=300 + i, smooth=1)
        dx, dy, _ = _DIRS[i % 4]
        speed = 1 + i // 4

        def render(f: int, bg=bg, sq=sq, dx=dx, dy=dy, speed=speed) -> np.ndarray:
            img = bg.copy()
            x = 20 + dx * speed * f
            y = 20 + dy * speed * f
            x, y = int(np.clip(x, 0, size - 24)), int(np.clip(y, 0, size - 24))
            img[y:y + 24, x:x + 24] = sq
            return img

        encode_video(path, frames, render, fps=8, options={"x264-params": "keyint=8:min-keyint=8:bframes=0:scenecut=0"})
    return paths


def caption(i: int) -> str:
    return f"{i}: {_DIRS[i % 4][2]} {'fast' if i >= 4 else 'slow'}"


def write_manifest(path: Path, videos: Sequence[Path], question: str = "<video>Caption?",
                   captions: Sequence[str] | None = None) -> Path:
    """A training manifest in the ``ov2_tokenizer.data`` format (``"path"`` + a LLaVA conversation)."""
    lines = []
    for i, v in enumerate(videos):
        cap = captions[i] if captions is not None else caption(i)
        lines.append(json.dumps({"path": str(v), "id": i, "conversations": [
            {"from": "human", "value": question}, {"from": "gpt", "value": cap}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def generated_manifest(directory: Path, question: str = "<video>Caption?", name: str = "clips.jsonl") -> Path:
    return write_manifest(directory / name, write_clips(directory / "clips"), question=question)


def shared_manifest(directory: Path, limit: int = 8) -> Path | None:
    """A manifest over the shared real videos (``../shared/videos``), None when they are absent."""
    from ov2_testing import shared_video_paths

    paths = shared_video_paths()[:limit]
    if not paths:
        return None
    caps = [f"{i}: {p.stem[:6]}" for i, p in enumerate(paths)]
    return write_manifest(directory / "shared.jsonl", paths, captions=caps)

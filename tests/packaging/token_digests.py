#!/usr/bin/env python
"""SHA-256 digests of what ov2 produces for a set of videos, one JSON line per (video, product).

Products: ``tokenize_video`` in the modes ``codec_stream``, ``frames``, ``ovenc_topk`` and ``cope`` (every tensor of
the VisualTokens, ``meta`` excluded: it holds timings), and the core's per-frame products (``frames()`` with luma,
RGB at 448x252, motion vectors, dense field, residual and coding cost, every frame). An input that raises records the
error's type instead of a digest.

``tests/packaging/ffmpeg_compat.sh`` runs this with the system build and with the core built against each other FFmpeg
release, and reports where the outputs differ. Usage::

    python tests/packaging/token_digests.py [VIDEO ...]      # default: the demo sample and ../shared/videos (when present)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODES = ("codec_stream", "frames", "ovenc_topk", "cope")


def _update(h: "hashlib._Hash", name: str, value) -> None:
    h.update(name.encode())
    if value is None:
        h.update(b"<none>")
        return
    a = np.ascontiguousarray(value.numpy() if hasattr(value, "numpy") else value)
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())


def frames_digest(ov2, path: str) -> str:
    h = hashlib.sha256()
    reader = ov2.open_video(path)
    for f in reader.frames(with_luma=True, with_rgb=True, rgb_size=(252, 448), with_mvs=True, with_residual=True,
                           with_coding_cost=True):
        h.update(f"{f.index}:{f.pts_s!r}:{f.pict_type}:{f.keyframe}".encode())
        for name in ("luma", "rgb", "motion_vectors", "mv_field", "intra_mask", "residual", "coding_cost"):
            _update(h, name, getattr(f, name, None))
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import ov2_tokenizer as ov2
    from ov2_testing import shared_video_paths, tokens_digest

    videos = [Path(v) for v in args.videos] or [ov2.sample_video()] + shared_video_paths()
    info = ov2.build_info()
    # which core and FFmpeg produced the lines below (not an output: the comparison skips what starts with "_")
    print(json.dumps({"video": "_", "what": "_build", "digest": f"FFmpeg {(info['ffmpeg'] or {}).get('version_info')}"
                      f" via {info['build']['core_path']}"}), flush=True)
    for video in videos:
        work = [(m, lambda m=m: tokens_digest(ov2.tokenize_video(str(video), mode=m))) for m in MODES]
        work.append(("frames()", lambda: frames_digest(ov2, str(video))))
        for what, fn in work:
            try:
                out = fn()
            except Exception as exc:  # noqa: BLE001 - recorded, compared like a digest
                out = f"error: {type(exc).__name__}"
            print(json.dumps({"video": video.name, "what": what, "digest": out}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

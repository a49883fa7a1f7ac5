"""Dump the codec primitives of a video to files (``ov2 primitives``).

Layout of ``out_dir`` (the motion-vector part follows motion-vector-extractor's ``--dump`` layout, so tools
written for it read ov2's output unchanged)::

    info.json                 stream info (codec, size, fps, motion_source, ...) and decode statistics
    packets.csv               index, pts_s, dts_s, size, keyframe, pict_type, reference   (decode order)
    frames.csv                index, pts_s, pict_type, keyframe, num_mvs, intra_fraction,
                              residual_mean_abs, residual_energy, coding_cost_mean        (presentation order)
    motion_vectors/mvs-{i}.npy   int32 [N, 10] per frame i: source, w, h, src_x, src_y, dst_x, dst_y,
                              motion_x, motion_y, motion_scale (mv-extractor's columns; [0, 10] for I-frames)
    frame_types.txt           one 'I' / 'P' / 'B' per frame (mv-extractor)
    timestamps.txt            one pts in seconds per frame (mv-extractor)
    residual_energy.npy       float64 [F]: mean squared motion-compensated residual per frame

The residual is ov2's motion-compensated *prediction* residual (docs/residual.md), not the coded residual.
For codecs without exported vectors (HEVC, AV1, ...) the vectors are ov2's block-matching estimate
(``info.json: motion_source = "estimated"``).

    >>> import ov2_tokenizer as ov2, tempfile, numpy as np
    >>> from ov2_tokenizer.primitives import dump_primitives
    >>> out = tempfile.mkdtemp()
    >>> summary = dump_primitives(ov2.sample_video(), out, max_frames=5)
    >>> summary["frames"], np.load(f"{out}/motion_vectors/mvs-1.npy").shape[1]
    (5, 10)
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from .video import MV_COLUMNS, open_video

__all__ = ["dump_primitives"]


def dump_primitives(
    video: Any,
    out_dir: Union[str, os.PathLike],
    max_frames: Optional[int] = None,
    num_threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Writes the files above for the first ``max_frames`` frames (all when None); returns a summary dict
    (``frames``, ``packets``, ``motion_source``, ``out_dir``)."""
    out = Path(out_dir)
    (out / "motion_vectors").mkdir(parents=True, exist_ok=True)
    reader = open_video(video, num_threads=num_threads)
    info = reader.info
    pk = reader.packets()
    with open(out / "packets.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "pts_s", "dts_s", "size", "keyframe", "pict_type", "reference"])
        for i in range(len(pk)):
            w.writerow([i, _num(pk.pts_s[i]), _num(pk.dts_s[i]), int(pk.size[i]), int(bool(pk.keyframe[i])),
                        pk.pict_type[i].decode(), int(pk.reference[i])])
    indices = None if max_frames is None else range(int(max_frames))
    energies = []
    n = 0
    with open(out / "frames.csv", "w", newline="") as fh, open(out / "frame_types.txt", "w") as ft, \
            open(out / "timestamps.txt", "w") as ts:
        w = csv.writer(fh)
        w.writerow(["index", "pts_s", "pict_type", "keyframe", "num_mvs", "intra_fraction", "residual_mean_abs",
                    "residual_energy", "coding_cost_mean"])
        for f in reader.frames(indices=indices, with_luma=False, with_mvs=True, with_residual=True,
                               with_coding_cost=True):
            mvs = f.motion_vectors if f.motion_vectors is not None else np.zeros((0, len(MV_COLUMNS)), np.int32)
            np.save(out / "motion_vectors" / f"mvs-{n}.npy", np.ascontiguousarray(mvs, dtype=np.int32))
            res = f.residual.astype(np.float64) if f.residual is not None else np.zeros(1)
            energy = float(np.mean(res * res))
            energies.append(energy)
            intra = float(f.intra_mask.mean()) if f.intra_mask is not None and f.pict_type != "I" else (
                1.0 if f.pict_type == "I" else 0.0)
            cost = float(f.coding_cost.mean()) if f.coding_cost is not None else float("nan")
            w.writerow([f.index, _num(f.pts_s), f.pict_type, int(f.keyframe), int(mvs.shape[0]), f"{intra:.6f}",
                        f"{float(np.mean(np.abs(res))):.6f}", f"{energy:.6f}", f"{cost:.6f}"])
            ft.write(f.pict_type + "\n")
            ts.write(repr(float(f.pts_s)) + "\n")
            n += 1
    np.save(out / "residual_energy.npy", np.asarray(energies, dtype=np.float64))
    d = asdict(info)
    d["time_base"] = str(d["time_base"])
    d["mv_columns"] = list(MV_COLUMNS)
    d["stats"] = dict(reader.stats)
    d["source"] = reader.name
    (out / "info.json").write_text(json.dumps(d, indent=2, default=str))
    return {"frames": n, "packets": len(pk), "motion_source": info.motion_source, "out_dir": str(out)}


def _num(x: float) -> str:
    return "" if not np.isfinite(x) else repr(float(x))

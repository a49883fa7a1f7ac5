"""``make demo`` / ``python -m ov2_tokenizer.demo [VIDEO]``: what the codec core reads from a video, and the
visual tokens each mode makes of it. Without an argument it uses the generated sample clip
(:func:`ov2_tokenizer.sample_video`): objects moving at known speeds, a scene cut at 4 s and a burst of
periodic motion at 5.5–6.5 s."""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from . import open_video, sample_video
from .errors import Ov2Error


def _table(rows, header) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    out = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(out)


def describe_core(path) -> None:
    video = open_video(path)
    info = video._info  # header information (num_frames is filled by the packet pass below)
    print(f"== {path}")
    print(f"   {info.codec} {info.width}x{info.height} {info.pix_fmt}, {info.fps:.3g} fps, {info.duration_s:.2f} s, "
          f"B-frames: {'yes' if info.has_b_frames else 'no'}, motion: {info.motion_source}")

    t0 = time.perf_counter()
    pk = video.packets()
    t_pk = time.perf_counter() - t0
    types = {str(k): v for k, v in Counter(pk.pict_type.astype(str)).items()}
    print(f"\n-- packets (demux only, {t_pk * 1e3:.1f} ms): {len(pk)} packets, {int(pk.size.sum()):,} bytes, "
          f"{int(pk.keyframe.sum())} key; parser picture types {dict(sorted(types.items()))}")

    per_sec: dict[int, dict] = {}
    kinds = Counter()
    t0 = time.perf_counter()
    for f in video.frames(with_luma=False, with_mvs=True, with_residual=True, with_coding_cost=True):
        kinds[f.pict_type] += 1
        sec = int(f.pts_s) if np.isfinite(f.pts_s) else -1
        d = per_sec.setdefault(sec, {"frames": 0, "types": Counter(), "mv": [], "res": [], "cost": [], "bytes": 0})
        d["frames"] += 1
        d["types"][f.pict_type] += 1
        if f.pict_type != "I":
            mag = np.hypot(f.mv_field[..., 0], f.mv_field[..., 1])[~f.intra_mask]
            moving = mag[mag >= 0.5]
            d["mv"].append((100.0 * moving.size / max(1, mag.size), float(moving.mean()) if moving.size else 0.0))
        d["res"].append(float(np.abs(f.residual).mean()))
        d["cost"].append(float(f.coding_cost.mean()))
    t_fr = time.perf_counter() - t0
    n = sum(kinds.values())
    print(f"-- frames (decode + vectors + residual + coding cost, {t_fr:.2f} s, {n / max(t_fr, 1e-9):.0f} fps, "
          f"{video.num_threads} threads): {n} frames {dict(sorted(kinds.items()))}")
    secs = np.floor(np.nan_to_num(pk.pts_s, nan=-1)).astype(int)
    rows = []
    for s in sorted(per_sec):
        d = per_sec[s]
        rows.append((
            f"{s}-{s + 1}s", d["frames"], "".join(f"{k}{v}" for k, v in sorted(d["types"].items())),
            f"{int(pk.size[secs == s].sum()):,}",
            f"{np.mean([m[0] for m in d['mv']]):.1f}" if d["mv"] else "-",
            f"{np.mean([m[1] for m in d['mv']]):.2f}" if d["mv"] else "-",
            f"{np.mean(d['res']):.2f}", f"{np.mean(d['cost']):.2f}",
        ))
    print(_table(rows, ("time", "frames", "types", "bytes", "moving cells %", "|mv| of moving px", "mean |residual|",
                       "coding cost")))


# cope keeps per-step motion fields and RGB residuals (memory and time grow with the steps): 32 steps here
_DEMO_OVERRIDES = {"cope": {"num_frames": 32}}


def describe_tokens(path) -> None:
    try:
        from .tokenize import tokenize_video
        from .config import MODES
    except ImportError:
        return
    print("\n-- visual tokens per mode")
    rows = []
    for mode in MODES:
        try:
            t0 = time.perf_counter()
            vt = tokenize_video(path, mode=mode, **_DEMO_OVERRIDES.get(mode, {}))
            dt = time.perf_counter() - t0
        except Ov2Error as exc:
            rows.append((mode, "-", "-", "-", f"error: {exc}"))
            continue
        real = int((vt.frame >= 0).sum())
        label = mode + (" (" + ", ".join(f"{k}={v}" for k, v in _DEMO_OVERRIDES[mode].items()) + ")"
                        if mode in _DEMO_OVERRIDES else "")
        rows.append((label, vt.num_tokens, vt.num_canvases, real, f"{dt:.2f} s"))
        if mode == "codec_stream":
            codec_vt = vt
    print(_table(rows, ("mode", "tokens", "canvases", "non-padding", "time")))
    if "codec_vt" in locals():
        print("\n-- codec_stream groups")
        print(codec_vt.summary())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", help="a video file (default: the generated sample clip)")
    args = ap.parse_args(argv)
    path = args.video or sample_video()
    try:
        describe_core(path)
        describe_tokens(path)
    except Ov2Error as exc:
        print(f"ov2: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

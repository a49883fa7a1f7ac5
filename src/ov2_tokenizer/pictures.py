"""Pictures of a codec-stream tokenization (``ov2 show``), drawn with matplotlib (Agg, no display needed).

Three PNGs of fixed pixel size (so tests and docs can rely on them):

- ``{stem}_bitcost.png`` (1200 x 500): bit-cost of P/B packets per 0.5 s bin (bars), the running energy of the
  current partition group against θ (the trigger threshold, DESIGN §5.3), and the group boundaries -- the
  picture of LLaVA-OneVision-2's Figure 4.
- ``{stem}_canvases.png`` (1200 x 800): the canvases of the first groups, one row per group (I then P).
- ``{stem}_timeline.png`` (1200 x 450): visual tokens per second of video for codec-stream canvases and for
  uniformly sampled frames at the same budget (same number of canvases of the same size).

    >>> import ov2_tokenizer as ov2, tempfile
    >>> from ov2_tokenizer.pictures import render_show
    >>> paths = render_show(ov2.sample_video(), tempfile.mkdtemp(), num_frames=32, max_canvases=8)
    >>> sorted(paths)
    ['bitcost', 'canvases', 'timeline']
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from .config import TokenizerConfig
from .tokens import CANVAS_I, VisualTokens

__all__ = ["render_show", "plot_bitcost", "plot_canvases", "plot_timeline", "PNG_SIZES"]

_DPI = 100
#: (width, height) in pixels of each picture.
PNG_SIZES = {"bitcost": (1200, 500), "canvases": (1200, 800), "timeline": (1200, 450)}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _figure(kind: str):
    plt = _plt()
    w, h = PNG_SIZES[kind]
    return plt.figure(figsize=(w / _DPI, h / _DPI), dpi=_DPI)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI)  # no bbox_inches="tight": the pixel size stays PNG_SIZES
    _plt().close(fig)
    return path


def _t0(vt: VisualTokens) -> float:
    part = vt.meta["partition"]
    return float(vt.groups["start_s"][0]) - float(part["start"][0]) * float(vt.meta["config"]["bin_s"])


def plot_bitcost(vt: VisualTokens, path: Union[str, os.PathLike]) -> Path:
    """Bit-cost per bin, running group energy vs θ, partition and final group boundaries."""
    part = vt.meta.get("partition")
    if not part:
        raise ValueError("plot_bitcost needs codec_stream tokens (meta['partition'])")
    delta = float(vt.meta["config"]["bin_s"])
    t0 = _t0(vt)
    e = np.asarray(part["energy"], dtype=np.float64)
    b = np.arange(e.size)
    fig = _figure("bitcost")
    ax = fig.add_axes([0.07, 0.11, 0.84, 0.72])
    ax.bar(t0 + (b + 0.5) * delta, e / 1e3, width=delta * 0.9, color="#7fa7d6", label="P/B bytes per bin")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"bit-cost per {delta:g} s bin (kB)")
    ax2 = ax.twinx()
    run = np.zeros_like(e)
    for s, c in zip(part["start"], part["end"]):
        run[s : c + 1] = np.cumsum(e[s : c + 1])
    ax2.step(t0 + (b + 1) * delta, run / 1e3, where="pre", color="#d1495b", lw=1.5, label="energy of the group so far")
    theta = float(part["theta"])
    ax2.axhline(theta / 1e3, color="#d1495b", ls="--", lw=1.2, label=f"θ = {theta / 1e3:.1f} kB")
    ax2.set_ylabel("running group energy (kB)")
    ax2.set_ylim(0, max(theta, float(run.max()) if run.size else 0.0) * 1.15 / 1e3 + 1e-9)
    final = set(np.round(vt.groups["start_s"].numpy(), 6).tolist())
    for s in part["start"][1:]:
        t = t0 + s * delta
        merged = round(t, 6) not in final
        ax.axvline(t, color="#888888" if merged else "black", ls=":" if merged else "-", lw=1.0 if merged else 1.6)
    for k, (s, c) in enumerate(zip(vt.groups["start_s"].tolist(), vt.groups["end_s"].tolist())):
        ax.text((s + c) / 2, ax.get_ylim()[1] * 0.97, f"κ={k}", ha="center", va="top", fontsize=9)
    for trig in part.get("trigger", []):
        if trig >= 0:
            ax2.plot([t0 + (trig + 1) * delta], [run[trig] / 1e3], "v", color="#d1495b", ms=7)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=8, frameon=False)
    name = Path(str(vt.meta.get("source", "video"))).name
    fig.suptitle(f"{name}: GOP partition ({len(vt.groups['start_s'])} groups; solid = group boundary, "
                 f"dotted = merged by the budget, ▼ = trigger)", fontsize=10)
    return _save(fig, Path(path))


def plot_canvases(vt: VisualTokens, path: Union[str, os.PathLike], max_groups: int = 3, max_cols: int = 6) -> Path:
    """The canvases of the first ``max_groups`` groups, one row per group."""
    kinds = vt.canvas_kind.numpy()
    # the group of a canvas = the group of its tokens (canvases never straddle groups)
    canvas_group = np.zeros(vt.num_canvases, dtype=np.int64)
    canvas_group[vt.canvas.numpy()] = vt.group.numpy()
    groups = sorted(set(canvas_group.tolist()))[:max_groups]
    rows = max(1, len(groups))
    cols = max(1, min(max_cols, max(int((canvas_group == g).sum()) for g in groups) if groups else 1))
    fig = _figure("canvases")
    for r, g in enumerate(groups):
        idx = np.flatnonzero(canvas_group == g)[:max_cols]
        for c, ci in enumerate(idx):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.imshow(vt.canvases[ci].permute(1, 2, 0).numpy())
            frames = sorted(set(vt.frame[(vt.canvas == int(ci)) & (vt.frame >= 0)].tolist()))
            kind = "I" if kinds[ci] == CANVAS_I else "P" if kinds[ci] == 1 else "frame"
            span = f"f{frames[0]}" if len(frames) == 1 else f"f{frames[0]}–{frames[-1]} ({len(frames)})" if frames else "empty"
            ax.set_title(f"κ={g} #{ci} {kind}: {span}", fontsize=8)
            ax.axis("off")
    name = Path(str(vt.meta.get("source", "video"))).name
    fig.suptitle(f"{name}: canvases of the first {len(groups)} groups (I = anchor frame, P = salient blocks)",
                 fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.9, wspace=0.04, hspace=0.25)
    return _save(fig, Path(path))


def token_rate(vt: VisualTokens, edges: np.ndarray) -> np.ndarray:
    """Non-padding tokens per second in each time bin ``[edges[i], edges[i+1])``."""
    t = vt.t_s.numpy()
    t = t[np.isfinite(t) & (vt.frame.numpy() >= 0)]
    counts, _ = np.histogram(t, bins=edges)
    return counts / np.diff(edges)


def plot_timeline(vt: VisualTokens, uniform: VisualTokens, path: Union[str, os.PathLike], min_bin_s: float = 0.5) -> Path:
    """Tokens per second: codec-stream ``vt`` vs the ``uniform`` frames at the same budget.

    Bins split the video into ``d`` equal parts, ``d`` the largest divisor of the uniform frame count with bins of
    at least ``min_bin_s``; uniform sampling puts one frame per equal-time chunk, so its rate is flat and any
    unevenness of the codec-stream curve is the tokenizer's choice, not bin aliasing.
    """
    times = np.concatenate([vt.t_s.numpy(), uniform.t_s.numpy()])
    times = times[np.isfinite(times)]
    t_start = float(vt.groups["start_s"][0]) if vt.groups else 0.0
    t_end = max(float(vt.groups["end_s"][-1]) if vt.groups else 0.0, float(times.max(initial=0.0)) + 1e-6)
    if vt.groups and uniform.meta.get("timestamps"):  # the uniform chunks span the stream's frames
        t_end = min(t_end, float(uniform.meta["timestamps"][-1]) + float(uniform.meta["timestamps"][0]) - t_start + 1e-6)
        t_end = max(t_end, float(times.max(initial=0.0)) + 1e-6)
    s = max(1, uniform.num_canvases)
    dur = max(t_end - t_start, 1e-6)
    nb = max([d for d in range(1, s + 1) if s % d == 0 and dur / d >= min_bin_s] or [1])
    edges = np.linspace(t_start, t_end, nb + 1)
    bin_s = dur / nb
    fig = _figure("timeline")
    ax = fig.add_axes([0.07, 0.14, 0.9, 0.72])
    n_cs = int((vt.frame >= 0).sum())
    n_un = int((uniform.frame >= 0).sum())
    ax.stairs(token_rate(vt, edges), edges, baseline=None, color="#d1495b", lw=1.8,
              label=f"codec_stream: {vt.num_canvases} canvases, {n_cs} tokens")
    ax.stairs(token_rate(uniform, edges), edges, baseline=None, color="#2e86ab", lw=1.5, ls="--",
              label=f"uniform frames: {uniform.num_canvases} frames, {n_un} tokens")
    if vt.groups:
        for k, (s, e) in enumerate(zip(vt.groups["start_s"].tolist(), vt.groups["end_s"].tolist())):
            if k % 2:
                ax.axvspan(s, e, color="#eeeeee", zorder=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("visual tokens per second")
    ax.set_ylim(bottom=0)
    ax.set_xlim(edges[0], edges[-1])
    ax.legend(loc="upper right", fontsize=9)
    name = Path(str(vt.meta.get("source", "video"))).name
    ax.set_title(f"{name}: where the token budget goes (bins of {bin_s:.2f} s; shading = codec groups)", fontsize=10)
    return _save(fig, Path(path))


def render_show(
    video: Any,
    out_dir: Union[str, os.PathLike],
    config: Optional[TokenizerConfig] = None,
    stem: Optional[str] = None,
    **overrides: Any,
) -> Dict[str, Path]:
    """Tokenizes ``video`` (codec_stream) and writes the three pictures; returns ``{kind: path}``."""
    from .tokenize import tokenize_video

    cfg = (config or TokenizerConfig()).replace(**overrides) if overrides else (config or TokenizerConfig())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or (Path(os.fspath(video)).stem if isinstance(video, (str, os.PathLike)) else "video")
    vt = tokenize_video(video, mode="codec_stream", config=cfg)
    uniform = tokenize_video(video, mode="frames", config=cfg.replace(num_frames=vt.num_canvases, fps=None))
    return {
        "bitcost": plot_bitcost(vt, out / f"{stem}_bitcost.png"),
        "canvases": plot_canvases(vt, out / f"{stem}_canvases.png"),
        "timeline": plot_timeline(vt, uniform, out / f"{stem}_timeline.png"),
    }

"""The orchestration of ov2_tokenizer.gpu (decode into host buffers, kernel calls with addresses and sizes, the
allocation and canvas gather, VisualTokens assembly, the batched GOP launch) run on the CPU against an emulation
of ``core.cuda`` that reads and writes host memory at the given addresses with the CPU algorithms (core.tok).
Equality with the CPU tokenizer shows that the GPU path passes the right buffers, shapes, strides and per-frame
parameters; the kernels themselves are checked by test_device_math.py (CPU) and test_gpu_parity.py (GPU).
"""
from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest
import torch

import ov2_tokenizer as ov2
from ov2_tokenizer import gpu
from ov2_tokenizer._native import core

FIELDS = ("canvases", "canvas_kind", "canvas", "frame", "t_s", "can_hw", "src_hw", "group", "pos_thw")


def _view(addr: int, shape, dtype) -> np.ndarray | None:
    if addr == 0:
        return None
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = (ctypes.c_char * max(1, n * dt.itemsize)).from_address(addr)
    return np.frombuffer(buf, dtype=dt, count=n).reshape(shape)


class FakeCuda:
    """core.cuda's interface over host memory (the addresses are CPU tensors' data_ptr())."""

    def __init__(self):
        self.calls: list = []

    def score_frames(self, n, height, width, mv_field, mv_flags, h4, w4, residual, is_intra, cost, ch, cw, canvas_h,
                     canvas_w, patch, merge, beta, beta_by_frame=0, valid=(0, 0, -1, -1), out=0, stream=0):
        self.calls.append(("score_frames", n))
        f = _view(mv_field, (n, h4, w4, 4), np.float32)
        fl = _view(mv_flags, (n, h4, w4), np.uint8)
        r = _view(residual, (n, height, width), np.int16)
        it = _view(is_intra, (n,), np.uint8)
        c = _view(cost, (n, ch, cw), np.float32)
        b = _view(beta_by_frame, (n,), np.float64)
        bs = patch * merge
        o = _view(out, (n, canvas_h // bs, canvas_w // bs), np.float32)
        for i in range(n):
            o[i] = core.tok.score_frame(canvas_h, canvas_w, height, width, f[i], fl[i], r[i], c[i], bool(it[i]), patch,
                                        merge, float(b[i]) if b is not None else beta)

    def resize_area_f32(self, src, n, sh, sw, dst, dh, dw, stream=0):
        self.calls.append(("resize_area_f32", n))
        s, d = _view(src, (n, sh, sw), np.float32), _view(dst, (n, dh, dw), np.float32)
        for i in range(n):
            d[i] = core.tok.resize_area(s[i], dh, dw)

    def block_score(self, s, cost, n, canvas_h, canvas_w, patch, merge, beta, valid=(0, 0, -1, -1), out=0, stream=0):
        self.calls.append(("block_score", n))
        sv = _view(s, (n, canvas_h, canvas_w), np.float32)
        cv = _view(cost, (n, canvas_h, canvas_w), np.float32)
        bs = patch * merge
        o = _view(out, (n, canvas_h // bs, canvas_w // bs), np.float32)
        for i in range(n):
            o[i] = core.tok.block_score(sv[i], None if cv is None else cv[i], patch, merge, beta)

    def gop_partition_batch(self, videos, k_tar, delta, t_min, t_max, radius, energy, stream=0):
        self.calls.append(("gop_partition_batch", len(videos)))
        return [core.tok.gop_partition(v["pts_s"], v["size"], v["pict_type"], v["keyframe"].astype(bool),
                                       k_tar=v.get("k_tar", k_tar), duration_s=v["duration_s"], t0=v["t0"],
                                       delta=delta, t_min=t_min, t_max=t_max, radius=radius, energy=energy)
                for v in videos]

    def allocate(self, gs, ge, gc, cand_t, scores, nbh, nbw, max_canvases, lam, alpha_peak, anchor, t0, delta,
                 stream=0, rank="rank"):
        self.calls.append(("allocate", len(cand_t)))
        sc = _view(scores, (len(cand_t), nbh, nbw), np.float32).copy()
        return core.tok.allocate(gs, ge, gc, cand_t, sc, max_canvases=max_canvases, lam=lam, alpha_peak=alpha_peak,
                                 anchor=anchor, rank=rank, t0=t0, delta=delta)

    def gather_canvases(self, S, kind, frame, offset, bt, bi, bj, frames_hwc, n_cand, hc, wc, patch, merge, out,
                        stream=0):
        self.calls.append(("gather_canvases", S))
        off = _view(offset, (S + 1,), np.int64).copy()
        nbk = int(off[-1])
        plan = {"canvas_kind": _view(kind, (S,), np.int8).copy(), "canvas_group": np.zeros(S, np.int32),
                "canvas_frame": _view(frame, (S,), np.int32).copy(), "canvas_offset": off,
                "block_t": _view(bt, (nbk,), np.int32).copy() if nbk else np.zeros(0, np.int32),
                "block_i": _view(bi, (nbk,), np.int32).copy() if nbk else np.zeros(0, np.int32),
                "block_j": _view(bj, (nbk,), np.int32).copy() if nbk else np.zeros(0, np.int32),
                "group_anchor": np.zeros(1, np.int32)}
        imgs = _view(frames_hwc, (n_cand, hc, wc, 3), np.uint8)
        _view(out, (S, 3, hc, wc), np.uint8)[...] = core.tok.pack_canvases(plan, imgs, patch, merge)


@pytest.fixture()
def fake(monkeypatch):
    fc = FakeCuda()
    monkeypatch.setattr(gpu, "core", types.SimpleNamespace(tok=core.tok, cuda=fc, has_cuda=True))
    return fc


def _same(a, b) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        if f == "t_s":
            x, y = torch.nan_to_num(x, nan=-7.0), torch.nan_to_num(y, nan=-7.0)
        assert torch.equal(x, y), f
    for k in b.groups:
        assert torch.equal(a.groups[k], b.groups[k]), k
    for k in ("partition", "candidates", "candidate_times", "canvas_widen", "canvas_whole", "canvas_frame", "merges",
              "canvas_hw", "mode", "source"):
        assert a.meta[k] == b.meta[k], k


@pytest.mark.parametrize("overrides", [dict(num_frames=24, max_canvases=8),
                                       dict(num_frames=40, max_canvases=12, anchor="center", beta=0.0),
                                       dict(num_frames=16, max_canvases=8, accumulate="interval"),
                                       dict(num_frames=30, max_canvases=6, energy="log1p", temporal_coord="slot")])
def test_gpu_orchestration_equals_cpu(fake, small_videos, overrides) -> None:
    cfg = ov2.TokenizerConfig(**overrides)
    for path in small_videos:
        ref = ov2.tokenize_video(path, config=cfg)
        hv = gpu._decode_host(path, cfg, pin=False)
        got = gpu._gpu_tokens(hv, cfg, torch.device("cpu"), None)
        _same(got, ref)
    names = {c[0] for c in fake.calls}
    assert {"gop_partition_batch", "allocate", "gather_canvases"} <= names
    assert ("score_frames" in names) == (cfg.accumulate != "interval")


def test_batched_partition_matches_per_video(fake, small_videos) -> None:
    cfg = ov2.TokenizerConfig(num_frames=24, max_canvases=8)
    hvs = [gpu._decode_host(p, cfg, pin=False) for p in small_videos]
    parts = gpu._gop_batch(hvs, cfg, 0)
    assert fake.calls[-1] == ("gop_partition_batch", 3)
    for hv, part, p in zip(hvs, parts, small_videos):
        ref = ov2.tokenize_video(p, config=cfg)
        assert ref.meta["partition"]["start"] == part["start"].tolist()
        hv.partition = part
        _same(gpu._gpu_tokens(hv, cfg, torch.device("cpu"), None), ref)


@pytest.mark.parametrize("workers,prefetch", [(1, 1), (3, 2)])
def test_batch_pipeline_equals_cpu(fake, small_videos, workers, prefetch) -> None:
    cfg = ov2.TokenizerConfig(num_frames=24, max_canvases=8)
    srcs = list(small_videos) * 2
    ref = [ov2.tokenize_video(p, config=cfg) for p in srcs]
    got = gpu._batch_cuda(srcs, cfg, torch.device("cpu"), workers, prefetch, False)
    assert len(got) == len(srcs)
    for a, b in zip(got, ref):
        _same(a, b)
    # every video's partition came from a gop_partition_batch launch; with decode ahead some launches hold several
    launched = sum(c[1] for c in fake.calls if c[0] == "gop_partition_batch")
    assert launched == len(srcs)


def test_batch_pipeline_errors(fake, small_videos, tmp_path) -> None:
    from ov2_tokenizer.errors import VideoOpenError

    cfg = ov2.TokenizerConfig(num_frames=24, max_canvases=8)
    srcs = [small_videos[0], tmp_path / "nope.mp4"] + list(small_videos) * 2
    with pytest.raises(VideoOpenError, match="nope.mp4"):
        gpu._batch_cuda(srcs, cfg, torch.device("cpu"), 2, 1, False)  # must not hang on the early error
    got = gpu._batch_cuda(srcs, cfg, torch.device("cpu"), 2, 1, True)
    assert isinstance(got[1], VideoOpenError)
    _same(got[2], ov2.tokenize_video(small_videos[0], config=cfg))

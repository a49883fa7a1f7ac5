"""``StreamTokenizer``: codec-stream tokenization of a video whose bytes arrive incrementally (a pipe, a growing
file, a live stream), with the causal *streaming schedule* (``TokenizerConfig(schedule="stream")``,
docs/streaming.md).

Each group's canvases and token records are emitted as soon as the group closes (the GOP partition needs at most
L_max bins of look-ahead), memory stays bounded independently of the stream's length, and the concatenation of
the emitted groups is bit-identical to ``tokenize_video(path, mode="codec_stream", schedule="stream")``::

    >>> import ov2_tokenizer as ov2
    >>> from ov2_tokenizer.stream import StreamTokenizer
    >>> st = StreamTokenizer(config=ov2.TokenizerConfig(schedule="stream"), name="cam0", keep=True,
    ...                      seekable=True)                     # a plain MP4: its moov atom is at the end
    >>> data = open(ov2.sample_video(), "rb").read()          # any source of bytes
    >>> groups = []
    >>> for i in range(0, len(data), 4096):
    ...     groups += st.feed(data[i:i + 4096])               # each closed group: a VisualTokens
    >>> groups += st.close()
    >>> st.result().equal(ov2.tokenize_video(ov2.sample_video(), schedule="stream"))
    True

Decoding runs on a background C++ thread (``_core.StreamSession``) that reads the pushed bytes through a blocking
AVIO source, picks the candidate frames at ``candidate_fps``, and scores them (DESIGN §5.4–5.5) as they are
decoded; this module runs the partition (§5.3 rules with a running θ) and calls the C++ allocation and packing
(``core.tok.allocate`` / ``pack_records`` / ``pack_canvases``) once per closed group.
"""
from __future__ import annotations

import math
import os
import time
from collections import deque
from typing import Iterator, List, Optional

import numpy as np
import torch

from . import errors
from ._native import HAS_FFMPEG, core
from .config import TokenizerConfig
from .tokens import VisualTokens
from .video import VideoSource, _source_args

__all__ = ["StreamTokenizer", "tokenize_stream"]

_WAIT_S = 0.05  # one wait of the pump loop (the decoder thread is polled this often)


def _config(config: Optional[TokenizerConfig], overrides: dict) -> TokenizerConfig:
    cfg = config if config is not None else TokenizerConfig(schedule="stream")
    if not isinstance(cfg, TokenizerConfig):
        raise errors.ConfigError("config", f"must be a TokenizerConfig, got {type(cfg).__name__}")
    cfg = cfg.replace(**overrides) if overrides else cfg
    if cfg.schedule != "stream":
        raise errors.ConfigError(
            "schedule",
            "StreamTokenizer needs TokenizerConfig(schedule='stream'): the global schedule (DESIGN §5) spreads the "
            "candidates over the whole duration and shares the canvas budget across all groups, which a stream "
            "cannot know before it ends (tokenize the finished file with tokenize_video instead)",
        )
    if cfg.accumulate != "none":
        raise errors.ConfigError("accumulate", "schedule='stream' supports accumulate='none' only")
    return cfg


class _Schedule:
    """The streaming schedule on the event sequence of one stream (docs/streaming.md).

    Consumes packets (decode order) and candidate frames (presentation order) exactly in the order the decoder
    produced them, so its decisions do not depend on how the bytes were chunked or on thread timing.
    """

    def __init__(self, cfg: TokenizerConfig, name: str) -> None:
        self.cfg = cfg
        self.name = name
        self.delta = float(cfg.bin_s)
        self.l_min = max(1, math.ceil(cfg.t_min_s / self.delta))
        self.l_max = max(self.l_min, math.ceil(cfg.t_max_s / self.delta))
        self.l_tar = cfg.stream_group_s / self.delta
        self.radius = int(cfg.valley_radius)
        self.log1p = cfg.energy == "log1p"
        self.t0: Optional[float] = None
        self.early: list = []  # P/B packets (pts, bytes) seen before the first frame fixed t0
        self.energy: dict = {}  # bin -> e_b for bins >= s
        self.s = 0  # first bin of the open group
        self.hist_sum = 0.0  # Σ e_b over bins < s (in bin order)
        self.carry: Optional[tuple] = None  # (start bin, cost) of closed groups without candidates, merged forward
        self.max_bin = -1  # last bin holding a frame or a P/B packet
        self.frontier = 0  # bins [0, frontier) are complete (a later frame has been output)
        self.cands: deque = deque()  # (slot, frame index, t, bin, rgb, scores) not yet emitted
        self.num_cands = 0
        self.num_groups = 0
        self.num_canvases = 0
        self.late_packets = 0
        self.packets = 0
        self.hc = self.wc = 0

    # -- events -----------------------------------------------------------------------------------------------
    def _bin(self, t: float) -> int:
        x = math.floor((t - self.t0) / self.delta)
        return x if x > 0 else 0

    def _add_energy(self, t: float, size: int) -> None:
        b = self._bin(t)
        if b < self.s:
            self.late_packets += 1  # its bin already belongs to an emitted group
            return
        self.energy[b] = self.energy.get(b, 0.0) + (math.log1p(size) if self.log1p else float(size))
        if b > self.max_bin:
            self.max_bin = b

    def packets_in(self, pts: np.ndarray, size: np.ndarray, pict: np.ndarray, key: np.ndarray) -> None:
        for t, n, p, k in zip(pts.tolist(), size.tolist(), pict.tolist(), key.tolist()):
            self.packets += 1
            if not math.isfinite(t):
                continue
            # P/B as core.tok.packet_is_pb: not 'I'; unknown type ('?' or 0) -> not a key packet
            if p == 73 or ((p == 63 or p == 0) and k):
                continue
            if self.t0 is None:
                self.early.append((t, n))
            else:
                self._add_energy(t, n)

    def frame_in(self, f: dict) -> List[VisualTokens]:
        t = float(f["pts_s"])
        if self.t0 is None:
            self.t0 = t
            for pt, n in self.early:
                self._add_energy(pt, n)
            self.early = []
        b = self._bin(t)
        self.max_bin = max(self.max_bin, b)
        self.frontier = max(self.frontier, b)
        self.cands.append((self.num_cands, int(f["index"]), t, b, f["rgb"], f["scores"]))
        self.num_cands += 1
        return self.close_groups(final=False)

    # -- partition (DESIGN §5.3 trigger and valley, running θ) -------------------------------------------------
    def close_groups(self, final: bool, last_frame_s: Optional[float] = None) -> List[VisualTokens]:
        out: List[VisualTokens] = []
        if self.t0 is None:
            return out
        if final and last_frame_s is not None:
            self.max_bin = max(self.max_bin, self._bin(last_frame_s))
        num_bins = self.max_bin + 1
        avail = num_bins if final else self.frontier
        e = self.energy
        while self.s < avail:
            if self._skip_empty(avail):
                continue
            s = self.s
            w = max(s, self.l_max)
            if final:
                w = min(w, num_bins)
            if w > avail:
                break
            total = self.hist_sum
            for b in range(s, w):
                total += e.get(b, 0.0)
            theta = total / w * self.l_tar
            cum, trig = 0.0, -1
            for x in range(s, min(s + self.l_max, avail)):
                cum += e.get(x, 0.0)
                n = x - s + 1
                if n >= self.l_max or (n >= self.l_min and cum >= theta):
                    trig = x
                    break
            if trig < 0:
                if not final:
                    break
                out += self._emit(s, num_bins - 1, -1, theta, avail)  # the tail: its own group (nothing to merge into)
                break
            lo = max(s + self.l_min - 1, trig - self.radius)
            hi = min(s + self.l_max - 1, trig + self.radius)
            if final:
                hi = min(hi, num_bins - 1)
            elif hi >= avail:
                break  # the valley window is not complete yet
            best = trig
            for b in range(lo, hi + 1):
                eb, ebest = e.get(b, 0.0), e.get(best, 0.0)
                if (eb, abs(b - trig), b) < (ebest, abs(best - trig), best):
                    best = b
            out += self._emit(s, best, trig, theta, avail)
        return out

    def _skip_empty(self, avail: int) -> bool:
        """Jumps over whole steps of a stretch without energy and without candidates (a gap in the timestamps).

        Each step there closes a group at its trigger — ``l_min`` bins while no energy has been seen (θ = 0), else
        ``l_max`` (the cumulative energy stays 0 < θ) — the valley stays on the trigger (every energy in its window
        is 0, so nothing beats the trigger's distance 0), and the group has no candidate, so it is merged forward.
        The loop above would do exactly that one step at a time: on a file whose timestamps jump by 10^8 s that took
        hours. Only steps whose whole window (``l_max + radius`` bins) stays clear and complete are jumped."""
        s = self.s
        step = self.l_min if self.hist_sum <= 0 else self.l_max
        next_energy = min(self.energy) if self.energy else math.inf
        next_cand = self.cands[0][3] if self.cands else math.inf
        clear = min(next_energy, avail) - (self.l_max + self.radius)  # a jumped-to s must keep its window clear
        m = min((clear - s) // step, (next_cand - s) // step)  # the groups [s, s + m*step) hold no candidate
        if not m >= 2:
            return False
        if self.carry is None:
            self.carry = (s, 0.0)
        self.s = s + int(m) * step
        return True

    def _emit(self, s: int, c: int, trig: int, theta: float, avail: int) -> List[VisualTokens]:
        cost = 0.0
        for b in range(s, c + 1):
            v = self.energy.pop(b, 0.0)
            cost += v
            self.hist_sum += v
        self.s = c + 1
        start = s
        if self.carry is not None:
            start, before = self.carry
            cost = before + cost
            self.carry = None
        group = []
        while self.cands and self.cands[0][3] <= c:
            group.append(self.cands.popleft())
        if not group:  # no candidate frame in these bins: merged into the next group (an I-canvas needs an anchor)
            self.carry = (start, cost)
            return []
        return [self._allocate(start, c, trig, cost, theta, group, avail)]

    # -- allocation and packing of one closed group (the C++ algorithms of DESIGN §5.6–5.7) ---------------------
    def _allocate(self, start: int, end: int, trig: int, cost: float, theta: float, group: list,
                  avail: int) -> VisualTokens:
        cfg = self.cfg
        if theta > 0:
            m = math.floor(cfg.stream_p_canvases * cost / theta + 0.5)
        else:
            m = cfg.stream_p_canvases
        m = min(max(m, 1), cfg.stream_max_p_canvases)
        slot0 = group[0][0]
        cand_frame = np.asarray([g[1] for g in group], dtype=np.int32)
        cand_t = np.asarray([g[2] for g in group], dtype=np.float64)
        images = np.stack([g[4] for g in group])
        scores = np.stack([g[5] for g in group])
        plan = core.tok.allocate(
            np.asarray([start], dtype=np.int64), np.asarray([end], dtype=np.int64), np.asarray([cost]), cand_t, scores,
            max_canvases=1 + m, lam=cfg.lam, alpha_peak=cfg.alpha_peak, anchor=cfg.anchor, t0=self.t0, delta=self.delta,
        )
        rec = core.tok.pack_records(plan, cand_frame, cand_t, self.hc, self.wc, cfg.patch_size, cfg.merge_size,
                                    cfg.temporal_coord)
        canvases = core.tok.pack_canvases(plan, images, cfg.patch_size, cfg.merge_size)
        k = self.num_groups
        canvas = np.asarray(rec["canvas"], dtype=np.int32)  # indexes this piece's canvases; + first_canvas: global
        pos = np.array(rec["pos_thw"], dtype=np.int32)
        if cfg.temporal_coord == "slot":
            pos[:, 0] += np.int32(slot0)
        frame = np.asarray(rec["frame"], dtype=np.int32)
        t_s = np.asarray(rec["t_s"], dtype=np.float32)
        t_s = np.where(frame < 0, np.float32("nan"), t_s)
        num_p = np.asarray(plan["group_num_p"], dtype=np.int32)
        self.num_groups += 1
        self.num_canvases += int(canvases.shape[0])
        return VisualTokens(
            canvases=torch.from_numpy(np.ascontiguousarray(canvases)),
            canvas_kind=torch.from_numpy(np.asarray(plan["canvas_kind"], dtype=np.int8)),
            canvas=torch.from_numpy(canvas),
            frame=torch.from_numpy(frame),
            t_s=torch.from_numpy(t_s),
            can_hw=torch.from_numpy(np.asarray(rec["can_hw"], dtype=np.int16)),
            src_hw=torch.from_numpy(np.asarray(rec["src_hw"], dtype=np.int16)),
            group=torch.from_numpy(np.full(frame.shape[0], k, dtype=np.int32)),
            pos_thw=torch.from_numpy(pos),
            groups={
                "start_s": torch.tensor([start * self.delta + self.t0], dtype=torch.float64),
                "end_s": torch.tensor([(end + 1) * self.delta + self.t0], dtype=torch.float64),
                "bit_cost": torch.from_numpy(np.asarray(plan["group_cost"], dtype=np.float64)),
                "num_p": torch.from_numpy(num_p),
            },
            meta={
                "mode": "codec_stream",
                "schedule": "stream",
                "patch_size": cfg.patch_size,
                "merge_size": cfg.merge_size,
                "config": cfg.to_dict(),
                "source": self.name,
                "canvas_hw": [self.hc, self.wc],
                "group_index": k,
                "first_canvas": self.num_canvases - int(canvases.shape[0]),
                "partition": {"start": [start], "end": [end], "trigger": [trig], "cost": [cost], "theta": [theta],
                              "target_p": [m]},
                "candidates": cand_frame.tolist(),
                "candidate_times": cand_t.tolist(),
                "first_slot": slot0,
                "decided_with_bins": avail,  # bins [0, avail) were complete when the group was decided
                "canvas_widen": np.asarray(plan["canvas_widen"]).tolist(),
                "canvas_whole": np.asarray(plan["canvas_whole"]).tolist(),
            },
        )


def _concat(pieces: List[VisualTokens], meta: dict) -> VisualTokens:
    cat = lambda name: torch.cat([getattr(p, name) for p in pieces])  # noqa: E731
    keys = ("start_s", "end_s", "bit_cost", "num_p")
    # a piece's canvas indices count its own canvases; in the whole they count from the start of the stream
    canvas = torch.cat([p.canvas + int(p.meta["first_canvas"]) for p in pieces])
    return VisualTokens(
        canvases=cat("canvases"), canvas_kind=cat("canvas_kind"), canvas=canvas, frame=cat("frame"),
        t_s=cat("t_s"), can_hw=cat("can_hw"), src_hw=cat("src_hw"), group=cat("group"), pos_thw=cat("pos_thw"),
        groups={k: torch.cat([p.groups[k] for p in pieces]) for k in keys}, meta=meta,
    )


class StreamTokenizer:
    """Tokenizes a video from bytes fed incrementally (codec-stream mode, streaming schedule).

    Args:
        config: a :class:`TokenizerConfig` with ``schedule="stream"`` (default: ``TokenizerConfig(schedule="stream")``);
            ``overrides`` replace its fields. Another schedule raises :class:`~ov2_tokenizer.errors.ConfigError`.
        name: what errors and ``meta["source"]`` call the stream.
        seekable: keep every fed byte so the demuxer may seek (needed for an MP4 whose moov atom follows the media
            data; memory then grows with the stream). Default: consumed bytes are discarded (bounded memory).
        keep: keep the emitted groups so that :meth:`result` can concatenate them (memory grows with the stream).
        max_pending_bytes: :meth:`feed` returns once at most this many fed bytes are still unread by the decoder
            (back-pressure: it bounds the bytes held and the latency between feeding and emitting).

    :meth:`feed` and :meth:`close` return the groups that closed meanwhile, each a :class:`VisualTokens` holding one
    group's canvases and records: ``canvas`` indexes the piece's own ``canvases`` (so ``patches()`` and
    ``model_inputs()`` work on each piece; ``meta["first_canvas"]`` is the count of canvases emitted before it), group
    and temporal indices are global. Not thread-safe: feed from one
    thread. ``config.timeout_s`` (> 0) bounds how long one call waits for the decoder to make progress
    (:class:`~ov2_tokenizer.errors.DecodeTimeout`).
    """

    def __init__(
        self,
        config: Optional[TokenizerConfig] = None,
        *,
        name: str = "<stream>",
        seekable: bool = False,
        keep: bool = False,
        max_pending_bytes: int = 1 << 20,
        max_queue_bytes: int = 32 << 20,
        **overrides,
    ) -> None:
        self._init(config, overrides, None, str(name), bool(seekable), bool(keep), int(max_pending_bytes),
                   int(max_queue_bytes))

    def _init(self, config, overrides, source, name, seekable, keep, max_pending_bytes, max_queue_bytes) -> None:
        if not HAS_FFMPEG:
            raise errors.UnsupportedCodecError("ov2", "this build of ov2 has no FFmpeg core (built with OV2_FFMPEG=OFF)")
        self.config = cfg = _config(config, overrides)
        if max_pending_bytes < 0:
            raise errors.ConfigError("max_pending_bytes", f"must be >= 0, got {max_pending_bytes}")
        self.name = name
        self.keep = keep
        self.max_pending_bytes = max_pending_bytes
        self._session = None
        self._session = core.StreamSession(
            source, name, seekable, cfg.on_error, float(cfg.timeout_s), cfg.patch_size, cfg.merge_size,
            cfg.min_pixels, cfg.max_pixels, float(cfg.beta), float(cfg.candidate_fps), max_queue_bytes,
        )
        self._sched = _Schedule(cfg, name)
        self._pieces: List[VisualTokens] = []
        self._info: Optional[dict] = None
        self._stats: dict = {}
        self._done = False  # the decoder finished and the last groups were emitted
        self._closed = False
        self._ignored_bytes = 0
        self._t_start = time.perf_counter()
        self._path: Optional[str] = None

    # -- construction from a file ---------------------------------------------------------------------------------
    @classmethod
    def from_path(
        cls,
        path: "str | os.PathLike[str]",
        *,
        follow: bool = False,
        chunk_size: int = 1 << 16,
        poll_s: float = 0.1,
        idle_timeout_s: float = 10.0,
        config: Optional[TokenizerConfig] = None,
        **kwargs,
    ) -> "StreamTokenizer":
        """A tokenizer that reads ``path`` in ``chunk_size`` pieces when iterated (``for group in st: ...``).

        ``follow=True`` tails a growing file (a recording in progress): at the current end it polls every
        ``poll_s`` seconds and stops once the file has not grown for ``idle_timeout_s`` seconds. Other keyword
        arguments go to the constructor (``seekable``, ``keep``, ``name``, config overrides).
        """
        if chunk_size < 1:
            raise errors.ConfigError("chunk_size", f"must be >= 1, got {chunk_size}")
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise errors.VideoOpenError(p, "no such file" if not os.path.exists(p) else "not a regular file")
        kwargs.setdefault("name", p)
        st = cls(config=config, **kwargs)
        st._path = p
        st._follow = (bool(follow), int(chunk_size), float(poll_s), float(idle_timeout_s))
        return st

    def __iter__(self) -> Iterator[VisualTokens]:
        if self._path is None:
            raise errors.ConfigError("StreamTokenizer", "only a tokenizer made by from_path() can be iterated; "
                                                        "call feed() and close() otherwise")
        follow, chunk_size, poll_s, idle_s = self._follow
        with open(self._path, "rb") as fh:
            last_growth = time.monotonic()
            while True:
                chunk = fh.read(chunk_size)
                if chunk:
                    last_growth = time.monotonic()
                    yield from self.feed(chunk)
                    continue
                if not follow or time.monotonic() - last_growth > idle_s:
                    break
                time.sleep(poll_s)
        yield from self.close()

    # -- feeding --------------------------------------------------------------------------------------------------
    def feed(self, data) -> List[VisualTokens]:
        """Hands ``data`` (bytes-like) to the decoder; returns the groups that closed meanwhile."""
        if self._closed:
            raise errors.ConfigError("feed", f"{self.name}: feed() after close()")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"feed() takes bytes, bytearray or memoryview, got {type(data).__name__}")
        if self._done:  # the container ended before the input (e.g. trailing boxes after an MP4's last sample)
            self._ignored_bytes += memoryview(data).nbytes
            return []
        self._session.feed(data)
        return self._drain(final=False)

    def close(self) -> List[VisualTokens]:
        """Signals the end of input, waits for the decoder and returns the last groups."""
        if self._closed:
            return []
        self._closed = True
        self._session.close_input()
        out = self._drain(final=True) if not self._done else []
        return out

    def result(self) -> VisualTokens:
        """All emitted groups as one :class:`VisualTokens` (needs ``keep=True``, after :meth:`close`); equal to
        ``tokenize_video(source, mode="codec_stream", schedule="stream")`` with the same config."""
        if not self.keep:
            raise errors.ConfigError("keep", f"{self.name}: result() needs StreamTokenizer(keep=True)")
        if not self._done:
            raise errors.ConfigError("result", f"{self.name}: result() is available after close()")
        return _concat(self._pieces, self._meta())

    # -- state ----------------------------------------------------------------------------------------------------
    @property
    def info(self) -> Optional[dict]:
        """Stream information once the decoder has opened the stream (codec, size, fps, canvas_hw, ...)."""
        return None if self._info is None else dict(self._info)

    @property
    def stats(self) -> dict:
        """Counters: bytes fed / held, groups, canvases, candidates, packets, late packets, decoder statistics."""
        s = self._sched
        d = {
            "bytes_fed": self._session.fed if self._session is not None else 0,
            "bytes_held": self._session.held if self._session is not None else 0,
            "bytes_ignored": self._ignored_bytes,
            "num_groups": s.num_groups, "num_canvases": s.num_canvases, "num_candidates": s.num_cands,
            "num_packets": s.packets, "late_packets": s.late_packets, "open_candidates": len(s.cands),
        }
        d.update(self._stats)
        return d

    def abort(self) -> None:
        """Stops the decoder thread at once (no more groups); safe to call more than once."""
        self._closed = True
        self._done = True
        if self._session is not None:
            self._session.stop()

    def __enter__(self) -> "StreamTokenizer":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()

    def __del__(self) -> None:
        sess = getattr(self, "_session", None)
        if sess is not None:
            sess.stop()

    # -- internals ------------------------------------------------------------------------------------------------
    def _drain(self, final: bool) -> List[VisualTokens]:
        out: List[VisualTokens] = []
        sess = self._session
        timeout = float(self.config.timeout_s)
        limit = -1 if final else self.max_pending_bytes
        last_progress = time.monotonic()
        last_pending = sess.pending
        while True:
            try:
                d = sess.pump(_WAIT_S, limit)
            except errors.Ov2Error:
                self._done = self._closed = True
                sess.stop()
                raise
            got = self._handle(d, out)
            if d["finished"]:
                self._finish(d, out)
                break
            pending = sess.pending
            if not final and (pending <= self.max_pending_bytes or sess.starved):
                break
            now = time.monotonic()
            if got or pending < last_pending:
                last_progress = now
            last_pending = pending
            if timeout > 0 and now - last_progress > timeout:
                self._done = self._closed = True
                sess.stop()
                raise errors.DecodeTimeout(self.name, f"the decoder made no progress for {timeout:g} s")
        if self.keep:
            self._pieces.extend(out)
        return out

    def _handle(self, d: dict, out: List[VisualTokens]) -> bool:
        s = self._sched
        if d["info"] is not None:
            self._info = dict(d["info"])
            s.hc, s.wc = (int(x) for x in d["info"]["canvas_hw"])
        pk = d["packets"]
        base = int(d["packets_base"])
        pos = 0  # next packet of this batch to hand to the schedule
        for f in d["frames"]:
            upto = int(f["packets_before"]) - base
            if upto > pos:
                s.packets_in(pk["pts_s"][pos:upto], pk["size"][pos:upto], pk["pict_type"][pos:upto],
                             pk["keyframe"][pos:upto])
                pos = upto
            out += s.frame_in(f)
        n = pk["size"].shape[0]
        if n > pos:
            s.packets_in(pk["pts_s"][pos:], pk["size"][pos:], pk["pict_type"][pos:], pk["keyframe"][pos:])
        return bool(d["frames"]) or n > 0

    def _finish(self, d: dict, out: List[VisualTokens]) -> None:
        s = self._sched
        self._stats = dict(d["stats"])
        self._stats["frames_seen"] = int(d["frames_seen"])
        if s.t0 is None:
            self._done = True
            raise errors.CorruptVideoError(self.name, "the stream has no decodable frame")
        out += s.close_groups(final=True, last_frame_s=d["last_frame_s"])
        if s.num_groups == 0:
            self._done = True
            raise errors.CorruptVideoError(self.name, "no group with a candidate frame could be formed")
        self._done = True

    def _meta(self) -> dict:
        cfg = self.config
        s = self._sched
        parts = [p.meta for p in self._pieces]
        part = {k: [x for m in parts for x in m["partition"][k]] for k in ("start", "end", "trigger", "cost", "theta",
                                                                            "target_p")}
        return {
            "mode": "codec_stream",
            "schedule": "stream",
            "patch_size": cfg.patch_size,
            "merge_size": cfg.merge_size,
            "config": cfg.to_dict(),
            "source": self.name,
            "canvas_hw": [s.hc, s.wc],
            "motion_source": (self._info or {}).get("motion_source"),
            "partition": part,
            "candidates": [x for m in parts for x in m["candidates"]],
            "candidate_times": [x for m in parts for x in m["candidate_times"]],
            "canvas_widen": [x for m in parts for x in m["canvas_widen"]],
            "canvas_whole": [x for m in parts for x in m["canvas_whole"]],
            "timings": {"total": time.perf_counter() - self._t_start},
            **self.stats,
        }


def tokenize_stream(source: VideoSource, cfg: TokenizerConfig) -> VisualTokens:
    """``tokenize_video(source, mode="codec_stream", schedule="stream")``: the streaming schedule over a whole file
    (path, bytes or file-like), run by the same decoder session and schedule as :class:`StreamTokenizer`."""
    src, name = _source_args(source)
    if isinstance(src, str) and not os.path.exists(src):
        raise errors.VideoOpenError(name, "cannot open: no such file")
    st = StreamTokenizer.__new__(StreamTokenizer)
    st._init(cfg, {}, src, name, False, True, 0, 32 << 20)
    st._closed = True
    try:
        st._drain(final=True)
    finally:
        st._session.stop()
    return st.result()

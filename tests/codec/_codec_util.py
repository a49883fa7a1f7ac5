"""Helpers of the codec tests: the PyAV oracle, an independent densification of motion-vector rows, an
independent H.264 luma prediction (numpy), content renderers for generated videos, and frame hashing.

Nothing here calls ov2's C++ for an expectation: expectations come from PyAV (FFmpeg 8, a different build
from the FFmpeg 5.1 the core links) or from the construction of the generated videos.
"""
from __future__ import annotations

import gc
import hashlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ov2_testing import SHARED_VIDEOS, VIDEO_SUFFIXES, shared_video_paths  # noqa: E402,F401

MV_FIELDS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")

# AVPictureType -> ov2's letter: S/SP -> P, SI -> I, BI -> B.
PICT_LETTER = {1: "I", 2: "P", 3: "B", 4: "P", 5: "I", 6: "P", 7: "B"}


# ---------------------------------------------------------------------------------------------------------------
# PyAV oracle
def pyav_open_stream(path, stream_index: int, export_mvs: bool = True):
    """Opens ``path`` with PyAV and returns (container, stream) configured for deterministic decoding."""
    import av

    container = av.open(str(path))
    stream = container.streams[stream_index]
    stream.thread_type = "SLICE"
    stream.thread_count = 1
    if export_mvs:
        stream.codec_context.options = {"flags2": "+export_mvs"}
    return container, stream


def pyav_mv_rows(frame) -> np.ndarray:
    """PyAV's exported vectors of ``frame`` as int32 N x 10 rows in FFmpeg's order, without ``flags``."""
    sd = frame.side_data.get("MOTION_VECTORS")
    if sd is None:
        return np.zeros((0, 10), np.int32)
    a = sd.to_ndarray()
    return np.stack([a[name].astype(np.int32) for name in MV_FIELDS], axis=1) if len(a) else np.zeros((0, 10), np.int32)


def pyav_luma(frame) -> np.ndarray:
    """The decoded luma plane of a PyAV frame, copied out of its line-padded buffer (8-bit or 16-bit)."""
    plane = frame.planes[0]
    dtype = np.uint16 if frame.format.name.endswith(("le", "be")) and "p1" in frame.format.name else np.uint8
    item = np.dtype(dtype).itemsize
    buf = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
    rows = buf[:, : plane.width * item]
    return np.ascontiguousarray(rows).view(dtype).copy()


def pyav_frames(path, stream_index: int, *, mvs: bool = True) -> Iterator[dict]:
    """Yields {pts_s, pict_type, key, rows, luma} per decoded frame, in PyAV's output order.

    PyAV keeps frames alive through a reference cycle once side data is read, so the garbage collector runs
    every few frames to bound memory.
    """
    container, stream = pyav_open_stream(path, stream_index, export_mvs=mvs)
    tb = stream.time_base
    tb_d = tb.numerator / tb.denominator  # av_q2d
    try:
        for i, frame in enumerate(container.decode(stream)):
            out = {
                "pts_s": float("nan") if frame.pts is None else frame.pts * tb_d,
                "pict_type": PICT_LETTER.get(int(frame.pict_type), "?"),
                "key": bool(frame.key_frame),
                "rows": pyav_mv_rows(frame) if mvs else None,
                "luma": pyav_luma(frame),
                "format": frame.format.name,
            }
            del frame
            yield out
            if i % 32 == 31:
                gc.collect()
    finally:
        container.close()
        gc.collect()


def pyav_packets(path, stream_index: int) -> dict:
    """The demuxer's packets of one stream (PyAV's empty flush packet skipped), in decode order."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        tb = stream.time_base
        tb_d = tb.numerator / tb.denominator
        pts, dts, size, key, pos = [], [], [], [], []
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            pts.append(float("nan") if pkt.pts is None else pkt.pts * tb_d)
            dts.append(float("nan") if pkt.dts is None else pkt.dts * tb_d)
            size.append(pkt.size)
            key.append(bool(pkt.is_keyframe))
            pos.append(-1 if pkt.pos is None else pkt.pos)
    return {
        "pts_s": np.array(pts, np.float64),
        "dts_s": np.array(dts, np.float64),
        "size": np.array(size, np.int64),
        "keyframe": np.array(key, bool),
        "pos": np.array(pos, np.int64),
    }


def video_stream_indices(path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        return [s.index for s in c.streams if s.type == "video"]


# ---------------------------------------------------------------------------------------------------------------
# Independent densification of motion-vector rows onto the 4x4-cell grid (DESIGN §3.1 mv_field / intra_mask)
def densify(rows: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (mx, my, scale, has), each [2, ceil(H/4), ceil(W/4)] int32/bool, list 0 = past, 1 = future.

    Each row covers the cells of its partition (dst is the partition centre); later rows overwrite earlier ones.
    """
    ch, cw = (height + 3) // 4, (width + 3) // 4
    mx = np.zeros((2, ch, cw), np.int32)
    my = np.zeros((2, ch, cw), np.int32)
    sc = np.zeros((2, ch, cw), np.int32)
    has = np.zeros((2, ch, cw), bool)
    for r in rows:
        src, w, h, _, _, dx, dy, mvx, mvy, scale = (int(v) for v in r)
        if w <= 0 or h <= 0 or scale <= 0:
            continue
        lst = 1 if src > 0 else 0
        x0, y0 = dx - w // 2, dy - h // 2
        cx0, cy0 = max(0, x0 // 4), max(0, y0 // 4)
        cx1, cy1 = min(cw, (x0 + w + 3) // 4), min(ch, (y0 + h + 3) // 4)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        mx[lst, cy0:cy1, cx0:cx1] = mvx
        my[lst, cy0:cy1, cx0:cx1] = mvy
        sc[lst, cy0:cy1, cx0:cx1] = scale
        has[lst, cy0:cy1, cx0:cx1] = True
    return mx, my, sc, has


def field_from_dense(mx, my, sc, has) -> tuple[np.ndarray, np.ndarray]:
    """(mv_field float32 [ch, cw, 4] in pixels, intra_mask bool [ch, cw]) from :func:`densify`'s output."""
    ch, cw = mx.shape[1:]
    field = np.zeros((ch, cw, 4), np.float32)
    for lst in range(2):
        s = np.where(has[lst], sc[lst], 1).astype(np.float32)
        field[..., 2 * lst] = np.where(has[lst], mx[lst].astype(np.float32) / s, 0)
        field[..., 2 * lst + 1] = np.where(has[lst], my[lst].astype(np.float32) / s, 0)
    return field, ~(has[0] | has[1])


# ---------------------------------------------------------------------------------------------------------------
# Independent H.264 luma prediction (ITU-T H.264 §8.4.2.2.1), whole-plane numpy version
def _tap6(a, axis):
    def s(k):
        return np.take(a, np.arange(k, a.shape[axis] - 5 + k), axis=axis)

    return s(0) - 5 * s(1) + 20 * s(2) + 20 * s(3) - 5 * s(4) + s(5)


def h264_subpel_planes(ref: np.ndarray, pad: int = 24) -> tuple[np.ndarray, int]:
    """The 16 quarter-sample planes of ``ref`` (uint8 H x W), edge-extended by ``pad``.

    Returns (planes [16, H + 2p, W + 2p] uint8 indexed by fy * 4 + fx, p): planes[k][y + p, x + p] is the
    sample at (x + fx/4, y + fy/4).
    """
    P = pad + 3
    G = np.pad(ref.astype(np.int32), P + 1, mode="edge")  # +1 so that x+1 / y+1 neighbours exist
    # Full-sample grid G[yy, xx] covers image coordinates yy - (P+1), xx - (P+1).
    b1 = _tap6(G, 1)  # half sample at (x + 1/2, y); x index offset: b1[:, i] is at x = i - (P+1) + 2
    h1 = _tap6(G, 0)  # half sample at (x, y + 1/2); h1[i, :] is at y = i - (P+1) + 2
    j1 = _tap6(b1, 0)  # centre; j1[i, j] at y = i - (P+1) + 2, x = j - (P+1) + 2
    clip = lambda v: np.clip(v, 0, 255)  # noqa: E731
    b = clip((b1 + 16) >> 5)
    h = clip((h1 + 16) >> 5)
    j = clip((j1 + 512) >> 10)
    Hp, Wp = ref.shape[0] + 2 * pad, ref.shape[1] + 2 * pad
    o = P + 1  # offset of image (0, 0) in G

    def g(dy, dx):  # full samples at (x + dx, y + dy)
        return G[o - pad + dy : o - pad + dy + Hp, o - pad + dx : o - pad + dx + Wp]

    def B(dy, dx):  # horizontal half at (x + dx + 1/2, y + dy); b index offset is o - 2 in both axes (rows: o)
        return b[o - pad + dy : o - pad + dy + Hp, o - 2 - pad + dx : o - 2 - pad + dx + Wp]

    def Hh(dy, dx):  # vertical half at (x + dx, y + dy + 1/2)
        return h[o - 2 - pad + dy : o - 2 - pad + dy + Hp, o - pad + dx : o - pad + dx + Wp]

    def J(dy, dx):  # centre half at (x + dx + 1/2, y + dy + 1/2)
        return j[o - 2 - pad + dy : o - 2 - pad + dy + Hp, o - 2 - pad + dx : o - 2 - pad + dx + Wp]

    avg = lambda a, c: (a + c + 1) >> 1  # noqa: E731
    planes = np.empty((16, Hp, Wp), np.uint8)
    planes[0] = g(0, 0)
    planes[1] = avg(g(0, 0), B(0, 0))  # a
    planes[2] = B(0, 0)  # b
    planes[3] = avg(g(0, 1), B(0, 0))  # c
    planes[4] = avg(g(0, 0), Hh(0, 0))  # d
    planes[5] = avg(B(0, 0), Hh(0, 0))  # e
    planes[6] = avg(B(0, 0), J(0, 0))  # f
    planes[7] = avg(B(0, 0), Hh(0, 1))  # g
    planes[8] = Hh(0, 0)  # h
    planes[9] = avg(Hh(0, 0), J(0, 0))  # i
    planes[10] = J(0, 0)  # j
    planes[11] = avg(J(0, 0), Hh(0, 1))  # k
    planes[12] = avg(g(1, 0), Hh(0, 0))  # n
    planes[13] = avg(Hh(0, 0), B(1, 0))  # p
    planes[14] = avg(J(0, 0), B(1, 0))  # q
    planes[15] = avg(Hh(0, 1), B(1, 0))  # r
    return planes, pad


def _h264_prediction(ref: np.ndarray, mx: np.ndarray, my: np.ndarray, has: np.ndarray) -> np.ndarray:
    """Per-pixel H.264 luma prediction from ``ref`` with one list's densified quarter-pel field (int32 H x W)."""
    H, W = ref.shape
    planes, pad = h264_subpel_planes(ref)
    cy, cx = np.mgrid[0:H, 0:W]
    HAS = has[cy // 4, cx // 4]
    MX = np.where(HAS, mx[cy // 4, cx // 4], 0)
    MY = np.where(HAS, my[cy // 4, cx // 4], 0)
    k = (MY & 3) * 4 + (MX & 3)
    X = np.clip(cx + (MX >> 2) + pad, 0, W + 2 * pad - 1)
    Y = np.clip(cy + (MY >> 2) + pad, 0, H + 2 * pad - 1)
    return planes[k, Y, X].astype(np.int32)


def h264_residual(cur: np.ndarray, ref0, ref1, rows: np.ndarray) -> np.ndarray:
    """Motion-compensated residual (docs/residual.md) of a P- or B-frame: cur - prediction, per 4x4 cell from the
    L0 vectors of ``rows`` on ``ref0``, the L1 vectors on ``ref1`` (either may be None: that list is unusable),
    ``(p0 + p1 + 1) >> 1`` where both lists predict, the co-located pixels of ``ref0`` (else ``ref1``) in cells
    without a vector, and the current pixels (residual 0) in cells whose only list has no reference. int16 H x W."""
    H, W = cur.shape
    mx, my, _sc, has = densify(rows, H, W)
    cy, cx = np.mgrid[0:H, 0:W]
    h0 = has[0][cy // 4, cx // 4]
    h1 = has[1][cy // 4, cx // 4]
    u0, u1 = h0 & (ref0 is not None), h1 & (ref1 is not None)
    pred = cur.astype(np.int32).copy()
    intra_ref = ref0 if ref0 is not None else ref1
    if intra_ref is not None:
        intra = ~h0 & ~h1
        pred[intra] = intra_ref.astype(np.int32)[intra]
    p0 = _h264_prediction(ref0, mx[0], my[0], has[0]) if ref0 is not None else None
    p1 = _h264_prediction(ref1, mx[1], my[1], has[1]) if ref1 is not None else None
    if p0 is not None:
        pred[u0 & ~u1] = p0[u0 & ~u1]
    if p1 is not None:
        pred[u1 & ~u0] = p1[u1 & ~u0]
    if p0 is not None and p1 is not None:
        both = u0 & u1
        pred[both] = (p0[both] + p1[both] + 1) >> 1
    return (cur.astype(np.int32) - pred).astype(np.int16)


def h264_residual_p(cur: np.ndarray, ref: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Motion-compensated residual of a single-reference P-frame: cur - prediction from ``ref`` with the L0
    vectors of ``rows`` (cells without a vector: co-located ``ref`` pixels). int16 H x W."""
    return h264_residual(cur, ref, None, rows)


def h264_packet_references(path, stream_index: int) -> dict:
    """{pts: (decode order, is_reference)} of an H.264 stream in MP4 (4-byte NAL lengths): whether a picture is
    a reference comes from ``nal_ref_idc`` of its first slice NAL unit (types 1 and 5), read with PyAV's demuxer
    independently of ov2."""
    import av

    out = {}
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        order = 0
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            data, pos, ref = bytes(pkt), 0, None
            while pos + 4 < len(data):
                n = int.from_bytes(data[pos : pos + 4], "big")
                header = data[pos + 4]
                if header & 0x1F in (1, 5):
                    ref = (header >> 5) & 3 > 0
                    break
                pos += 4 + n
            assert ref is not None, f"packet {order} has no slice NAL unit"
            out[pkt.pts] = (order, ref)
            order += 1
    return out


# ---------------------------------------------------------------------------------------------------------------
# Hashing of ov2 frames (determinism, source-kind equivalence) without keeping arrays alive
def frame_digest(f) -> str:
    h = hashlib.sha1()
    h.update(repr((f.index, f.pts_s, f.pict_type, f.keyframe, f.width, f.height)).encode())
    for name in ("luma", "motion_vectors", "mv_field", "intra_mask", "residual", "coding_cost"):
        a = getattr(f, name)
        if a is None:
            h.update(b"<none>")
        else:
            h.update(repr((name, a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def reader_digests(source, *, num_threads: int = 1, indices=None, **products) -> tuple[list[str], dict]:
    import ov2_tokenizer as ov2

    r = ov2.open_video(source, num_threads=num_threads)
    digests = [frame_digest(f) for f in r.frames(indices, **products)]
    return digests, dict(r.stats)


# ---------------------------------------------------------------------------------------------------------------
# Content for generated videos
def textured(height: int, width: int, seed: int, smooth: int = 1) -> np.ndarray:
    """Grey textured image, uint8 H x W x 3 (equal channels keep luma a linear function of the value)."""
    from ov2_tokenizer.samples import texture

    t = texture(height, width, seed=seed, smooth=smooth).astype(np.float32).mean(axis=2)
    t = 24 + (t - t.min()) / max(1e-6, float(t.max() - t.min())) * 207
    return np.repeat(np.round(t).astype(np.uint8)[..., None], 3, axis=2)


class BandLimitedTexture:
    """A periodic band-limited grey texture that can be translated by any real displacement exactly
    (Fourier shift), so a sub-pixel motion of the content is known exactly."""

    def __init__(self, height: int, width: int, seed: int, cutoff: float = 0.22):
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((height, width))
        self.spec = np.fft.fft2(noise)
        fy = np.fft.fftfreq(height)[:, None]
        fx = np.fft.fftfreq(width)[None, :]
        self.spec *= np.exp(-(fx**2 + fy**2) / (2 * (cutoff / 2.5) ** 2))
        self.fy, self.fx = fy, fx
        base = np.real(np.fft.ifft2(self.spec))
        self.lo, self.hi = float(base.min()), float(base.max())

    def shifted(self, dx: float, dy: float) -> np.ndarray:
        """The texture translated by (+dx, +dy) pixels, as uint8 grey values in [30, 225]."""
        phase = np.exp(-2j * np.pi * (self.fx * dx + self.fy * dy))
        v = np.real(np.fft.ifft2(self.spec * phase))
        v = 30 + (v - self.lo) / (self.hi - self.lo) * 195
        return np.clip(np.round(v), 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    h, w = patch.shape[:2]
    canvas[y : y + h, x : x + w] = patch


def block_cells(rows: np.ndarray, x0: int, y0: int, x1: int, y1: int, *, source_sign: int = -1) -> np.ndarray:
    """Rows of the given list whose whole partition lies inside the rectangle [x0, x1) x [y0, y1)."""
    if rows.size == 0:
        return rows
    src, w, h, dx, dy = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 5], rows[:, 6]
    px0, py0 = dx - w // 2, dy - h // 2
    inside = (px0 >= x0) & (py0 >= y0) & (px0 + w <= x1) & (py0 + h <= y1) & (np.sign(src) == source_sign)
    return rows[inside]

"""Malformed-input corpus for ov2's robustness tests (issue #7, DESIGN §5.10).

``build_corpus(out_dir)`` writes a deterministic (seeded) set of damaged, odd and hostile media files into
``out_dir`` and returns their manifest: one dict per case with ``name``, ``category``, ``path`` and ``note``.
Inputs come from small videos generated here with PyAV (several codecs and containers) and, when present,
excerpts of the shared real videos (``../shared/videos``), stream-copied to a few packets.

Categories:
  base            an undamaged generated video (the reference each mutation starts from)
  truncate        cut inside the header, the moov atom, mid-packet, in the last packet, at many fractions
  flip            random byte flips at several rates (whole file, or packet payloads only)
  zero            zeroed byte ranges (payload, moov)
  packets         payloads swapped / duplicated / dropped / reversed by remuxing with PyAV
  extension       the right bytes under a wrong container extension
  header_lies     a header claiming more (or fewer) frames than exist
  huge_dims       huge declared dimensions (SPS, tkhd + sample entry, JPEG SOF, y4m header, AVI header)
  structure       odd dimensions, 1 frame, all-I, start pts, negative pts, VFR, rotation, 10-bit, 4:4:4/4:2:2,
                  gray, two video streams, a very long thin frame
  no_video        audio only, an image, text, random bytes, an empty file
  shared          excerpts of the shared real videos (and damaged versions of them)
  regression      inputs kept under tests/robustness/regressions/ (each once crashed or hung something)

Run ``python tests/robustness/corpus.py OUT_DIR`` to write the corpus and print the counts per category.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from fractions import Fraction
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE / "regressions"
SHARED_VIDEOS = HERE.parents[1].parent / "shared" / "videos"


# ---------------------------------------------------------------------------------------------------------------
# Generated inputs
def _render(h: int, w: int, seed: int, step: int = 2) -> Callable[[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 256, size=(h + 8, w + 64, 3), dtype=np.uint8)
    g = ((g.astype(np.uint16) + np.roll(g, 1, 0) + np.roll(g, 1, 1)) // 3).astype(np.uint8)

    def frame(i: int) -> np.ndarray:
        x = (i * step) % 64
        img = g[4 : 4 + h, x : x + w].copy()
        img[(i * 3) % max(1, h - 4) : (i * 3) % max(1, h - 4) + 4, :8] = 255  # a moving bright block
        return img

    return frame


def encode(
    path: Path,
    *,
    codec: str = "libx264",
    size: tuple = (64, 96),
    frames: int = 24,
    fps: int = 12,
    pix_fmt: str = "yuv420p",
    options: Optional[Dict[str, str]] = None,
    fmt: Optional[str] = None,
    container_options: Optional[Dict[str, str]] = None,
    pts: Optional[List[int]] = None,
    time_base: Optional[Fraction] = None,
    seed: int = 0,
    second_stream: Optional[tuple] = None,
) -> Path:
    """Encodes a small moving texture with PyAV. ``pts``/``time_base`` set explicit timestamps (VFR, offsets);
    ``second_stream=(h, w)`` adds another video stream."""
    import av

    h, w = size
    render = _render(h, w, seed)
    copts = {"fflags": "+bitexact", **dict(container_options or {})}  # no random UIDs: same seed, same bytes
    with av.open(str(path), mode="w", format=fmt, options=copts) as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            st.time_base = time_base
            st.codec_context.time_base = time_base
        if options:
            st.options = dict(options)
        st2 = None
        if second_stream:
            st2 = out.add_stream("libx264", rate=fps)
            st2.height, st2.width = second_stream
            st2.pix_fmt = "yuv420p"
            render2 = _render(second_stream[0], second_stream[1], seed + 1)
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(render(i), format="rgb24")
            vf.pts = pts[i] if pts is not None else i
            if time_base is not None:
                vf.time_base = time_base
            for pkt in st.encode(vf):
                out.mux(pkt)
            if st2 is not None:
                vf2 = av.VideoFrame.from_ndarray(render2(i), format="rgb24")
                vf2.pts = i
                for pkt in st2.encode(vf2):
                    out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
        if st2 is not None:
            for pkt in st2.encode(None):
                out.mux(pkt)
    return path


def encode_audio(path: Path, codec: str = "aac", fmt: Optional[str] = None) -> Path:
    import av

    with av.open(str(path), mode="w", format=fmt, options={"fflags": "+bitexact"}) as out:
        st = out.add_stream(codec, rate=16000)
        st.layout = "mono"
        t = np.arange(16000, dtype=np.float32) / 16000
        samples = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)
        fmt_name = "fltp" if codec == "aac" else "s16"
        data = samples if fmt_name == "fltp" else (samples * 32767).astype(np.int16)
        frame_size = st.codec_context.frame_size or 1024
        for k in range(0, len(data) - frame_size, frame_size):
            af = av.AudioFrame.from_ndarray(data[None, k : k + frame_size], format=fmt_name, layout="mono")
            af.sample_rate = 16000
            af.pts = k
            for pkt in st.encode(af):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def encode_image(path: Path, codec: str = "png") -> Path:
    import av

    img = _render(48, 64, 5)(0)
    with av.open(str(path), mode="w", format="image2") as out:
        st = out.add_stream(codec, rate=1)
        st.width, st.height = 64, 48
        st.pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        for pkt in st.encode(vf):
            out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def packet_spans(path: Path) -> List[tuple]:
    """(offset, size) of the video packets in the file (from PyAV's demuxer), in file order."""
    import av

    spans = []
    try:
        with av.open(str(path)) as c:
            vs = [s for s in c.streams if s.type == "video"]
            if not vs:
                return []
            for p in c.demux(vs[0]):
                if p.size and p.pos is not None and p.pos >= 0:
                    spans.append((int(p.pos), int(p.size)))
    except Exception:  # noqa: BLE001 - only a helper for choosing offsets
        return []
    return sorted(spans)


def remux_payloads(src: Path, dst: Path, op: str, seed: int) -> bool:
    """Re-muxes src's video packets into dst (same container) with their payloads permuted by ``op``
    (swap / dup / drop / reverse / shuffle_keys); timestamps stay in order, so the damage is in the bitstream
    order the decoder sees. Returns False when PyAV cannot remux this container."""
    import av

    rng = np.random.default_rng(seed)
    try:
        with av.open(str(src)) as c:
            vs = c.streams.video[0]
            pk = [(bytes(p), p.pts, p.dts, p.is_keyframe, p.duration) for p in c.demux(vs) if p.size]
            fmt = c.format.name.split(",")[0]
        if len(pk) < 4:
            return False
        payload = [p[0] for p in pk]
        keys = [p[3] for p in pk]
        n = len(payload)
        if op == "swap":
            for _ in range(max(1, n // 6)):
                i = int(rng.integers(0, n - 1))
                payload[i], payload[i + 1] = payload[i + 1], payload[i]
                keys[i], keys[i + 1] = keys[i + 1], keys[i]
        elif op == "dup":
            for _ in range(max(1, n // 6)):
                i = int(rng.integers(0, len(payload)))
                payload.insert(i, payload[i])
                keys.insert(i, keys[i])
        elif op == "drop":
            for _ in range(max(1, n // 5)):
                i = int(rng.integers(1, len(payload)))
                payload.pop(i)
                keys.pop(i)
        elif op == "reverse":
            payload.reverse()
            keys.reverse()
        elif op == "drop_first_key":
            payload.pop(0)
            keys.pop(0)
        else:
            raise ValueError(op)
        # timestamps: the original ones, extended with the last step when packets were added
        pts = [p[1] for p in pk]
        dts = [p[2] for p in pk]
        step = 1
        if len(dts) > 1 and dts[-1] is not None and dts[-2] is not None:
            step = max(1, dts[-1] - dts[-2])
        while len(pts) < len(payload):
            pts.append(None if pts[-1] is None else pts[-1] + step)
            dts.append(None if dts[-1] is None else dts[-1] + step)
        if fmt in ("mov", "mp4"):
            fmt = "mp4"
        with av.open(str(src)) as c, av.open(str(dst), mode="w", format=fmt, options={"fflags": "+bitexact"}) as out:
            ist = c.streams.video[0]
            ost = out.add_stream_from_template(ist)
            for i, data in enumerate(payload):
                p = av.Packet(data)
                p.stream = ost
                p.time_base = ist.time_base
                p.pts = pts[i] if fmt not in ("h264", "hevc", "mpegvideo") else None
                p.dts = dts[i] if fmt not in ("h264", "hevc", "mpegvideo") else None
                p.is_keyframe = bool(keys[i])
                out.mux(p)
        return True
    except Exception:  # noqa: BLE001 - a container PyAV cannot remux: the case is skipped (counted)
        if dst.exists():
            dst.unlink()
        return False


def stream_copy(src: Path, dst: Path, max_packets: int, fmt: Optional[str] = None) -> bool:
    """The first ``max_packets`` video packets of src, stream-copied (no re-encoding) into dst."""
    import av

    try:
        with av.open(str(src)) as c, av.open(str(dst), mode="w", format=fmt, options={"fflags": "+bitexact"}) as out:
            ist = c.streams.video[0]
            ost = out.add_stream_from_template(ist)
            n = 0
            for p in c.demux(ist):
                if p.dts is None and p.pts is None:
                    continue
                p.stream = ost
                out.mux(p)
                n += 1
                if n >= max_packets:
                    break
        return n > 0
    except Exception:  # noqa: BLE001
        if dst.exists():
            dst.unlink()
        return False


# ---------------------------------------------------------------------------------------------------------------
# Byte-level helpers (ISO-BMFF boxes, H.264 SPS)
def mp4_boxes(data: bytes, start: int = 0, end: Optional[int] = None, path: str = "") -> List[tuple]:
    """All boxes as (path, offset, size, header_size), descending into container boxes."""
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta", b"dinf"}
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack(">I4s", data[pos : pos + 8])
        hdr = 8
        if size == 1 and pos + 16 <= end:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            hdr = 16
        elif size == 0:
            size = end - pos
        if size < hdr or pos + size > end:
            break
        name = typ.decode("latin1")
        out.append((path + "/" + name, pos, size, hdr))
        if typ in containers:
            out.extend(mp4_boxes(data, pos + hdr, pos + size, path + "/" + name))
        pos += size
    return out


def find_box(data: bytes, suffix: str) -> Optional[tuple]:
    for b in mp4_boxes(data):
        if b[0].endswith(suffix):
            return b
    return None


def patch_tkhd(data: bytes, *, matrix: Optional[List[int]] = None, dims: Optional[tuple] = None) -> Optional[bytes]:
    b = find_box(data, "/tkhd")
    if b is None:
        return None
    _, off, _, hdr = b
    p = off + hdr
    version = data[p]
    mat = p + (52 if version == 1 else 40)
    buf = bytearray(data)
    if matrix is not None:
        buf[mat : mat + 36] = struct.pack(">9i", *matrix)
    if dims is not None:
        buf[mat + 36 : mat + 44] = struct.pack(">II", dims[1] << 16, dims[0] << 16)
    return bytes(buf)


def patch_sample_entry_dims(data: bytes, h: int, w: int) -> Optional[bytes]:
    b = find_box(data, "/stsd")
    if b is None:
        return None
    _, off, size, hdr = b
    entry = off + hdr + 8
    if entry + 36 > off + size:
        return None
    buf = bytearray(data)
    buf[entry + 32 : entry + 36] = struct.pack(">HH", w & 0xFFFF, h & 0xFFFF)
    return bytes(buf)


def patch_sample_count(data: bytes, box: str, factor: float) -> Optional[bytes]:
    """Scales the sample count in stsz (sample_count) or in the first stts entry."""
    b = find_box(data, "/" + box)
    if b is None:
        return None
    _, off, _, hdr = b
    p = off + hdr
    buf = bytearray(data)
    at = p + 8 if box == "stsz" else p + 8  # stsz: ver/flags, size, COUNT; stts: ver/flags, entries, COUNT, delta
    (count,) = struct.unpack(">I", data[at : at + 4])
    buf[at : at + 4] = struct.pack(">I", max(0, min(0xFFFFFFFF, int(count * factor))))
    return bytes(buf)


class _Bits:
    def __init__(self, data: bytes):
        self.bits = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def u(self, n: int) -> int:
        v = int(self.bits[self.pos : self.pos + n] or "0", 2)
        self.pos += n
        return v

    def ue(self) -> int:
        z = 0
        while self.bits[self.pos] == "0":
            z += 1
            self.pos += 1
        self.pos += 1
        v = int(self.bits[self.pos : self.pos + z], 2) if z else 0
        self.pos += z
        return (1 << z) - 1 + v


def _ue_bits(v: int) -> str:
    b = bin(v + 1)[2:]
    return "0" * (len(b) - 1) + b


def _unescape(nal: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def rewrite_sps_dims(rbsp_with_header: bytes, mb_w: int, mb_h: int) -> Optional[bytes]:
    """An H.264 SPS NAL (header byte + escaped payload) with pic_width/height_in_mbs replaced."""
    hdr, body = rbsp_with_header[:1], _unescape(rbsp_with_header[1:])
    r = _Bits(body)
    try:
        profile = r.u(8)
        r.u(16)
        r.ue()
        if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            cf = r.ue()
            if cf == 3:
                r.u(1)
            r.ue()
            r.ue()
            r.u(1)
            if r.u(1):
                return None  # scaling matrices: not handled
        r.ue()
        poc = r.ue()
        if poc == 0:
            r.ue()
        elif poc == 1:
            return None
        r.ue()
        r.u(1)
        before = r.bits[: r.pos]
        r.ue()
        r.ue()
        rest = r.bits[r.pos :].rstrip("0")
        rest = rest[:-1]  # the rbsp stop bit
    except (IndexError, ValueError):
        return None
    bits = before + _ue_bits(mb_w - 1) + _ue_bits(mb_h - 1) + rest + "1"
    bits += "0" * (-len(bits) % 8)
    payload = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    return hdr + _escape(payload)


def patch_annexb_sps(data: bytes, mb_w: int, mb_h: int) -> Optional[bytes]:
    out = bytearray()
    i = 0
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    if not starts:
        return None
    done = False
    prev_end = 0
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        while k + 1 < len(starts) and e > s and data[e - 1] == 0:
            e -= 1
        if data[s] & 0x1F == 7:
            new = rewrite_sps_dims(data[s:e], mb_w, mb_h)
            if new is None:
                return None
            out += data[prev_end:s] + new
            prev_end = e
            done = True
    out += data[prev_end:]
    return bytes(out) if done else None


# ---------------------------------------------------------------------------------------------------------------
class _Writer:
    def __init__(self, out: Path):
        self.out = out
        self.cases: List[dict] = []
        self.names: set = set()

    def add(self, name: str, category: str, data: bytes, ext: str, note: str = "", source: Optional[str] = None) -> None:
        """``source``: the generated case this one's bytes derive from (default: the name before "__")."""
        assert name not in self.names, name
        self.names.add(name)
        p = self.out / f"{name}{ext}"
        p.write_bytes(data)
        self.cases.append({"name": name, "category": category, "path": str(p), "note": note,
                           "source": source or name.split("__")[0]})

    def add_file(self, name: str, category: str, src: Path, ext: Optional[str] = None, note: str = "") -> None:
        self.add(name, category, Path(src).read_bytes(), ext if ext is not None else Path(src).suffix, note)


def _mutations(w: _Writer, base: str, data: bytes, ext: str, src: Path, seed: int, full: bool = True) -> None:
    """The damage applied to every base input. Each case draws from its own generator (seed, case name), so a
    case's bytes do not depend on which other cases are written (quick and full corpora agree)."""
    import zlib

    def rng_for(tag: str) -> np.random.Generator:
        return np.random.default_rng([seed, zlib.crc32(f"{base}/{tag}".encode())])

    n = len(data)
    spans = packet_spans(src)
    # -- truncation
    cuts = {"hdr16": 16, "hdr100": min(100, n - 1)}
    fracs = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98) if full else (0.1, 0.5, 0.9)
    for f in fracs:
        cuts[f"f{int(f * 100):02d}"] = max(1, int(n * f))
    moov = find_box(data, "moov") if data[4:8] in (b"ftyp", b"moov", b"mdat", b"free") else None
    if moov:
        cuts["moov_mid"] = moov[1] + moov[2] // 2
        cuts["moov_end1"] = moov[1] + moov[2] - 1
    if spans:
        mid = spans[len(spans) // 2]
        cuts["mid_packet"] = mid[0] + max(1, mid[1] // 2)
        last = spans[-1]
        cuts["last_packet"] = last[0] + max(1, last[1] // 2)
        cuts["after_first_packet"] = spans[0][0] + spans[0][1]
    for k, c in cuts.items():
        if 0 < c < n:
            w.add(f"{base}__trunc_{k}", "truncate", data[:c], ext, f"cut at byte {c} of {n}")
    # -- byte flips (whole file and packet payloads only)
    rates = (1e-4, 1e-3, 1e-2, 5e-2) if full else (1e-3, 1e-2)
    for r in rates:
        for s in range(2 if full else 1):
            rng = rng_for(f"flip_{r:g}_s{s}")
            buf = bytearray(data)
            k = max(1, int(n * r))
            for pos in rng.integers(0, n, size=k):
                buf[pos] ^= 1 << int(rng.integers(0, 8))
            w.add(f"{base}__flip_{r:g}_s{s}", "flip", bytes(buf), ext, f"{k} random bit flips")
    if spans:
        for r in ((1e-3, 1e-2) if full else (1e-2,)):
            rng = rng_for(f"flip_payload_{r:g}")
            buf = bytearray(data)
            for off, size in spans:
                for _ in range(max(1, int(size * r))):
                    pos = off + int(rng.integers(0, size))
                    if pos < n:
                        buf[pos] = int(rng.integers(0, 256))
            w.add(f"{base}__flip_payload_{r:g}", "flip", bytes(buf), ext, "random bytes in every packet payload")
    # -- zeroed ranges
    for s in range(2 if full else 1):
        rng = rng_for(f"zero_s{s}")
        buf = bytearray(data)
        length = int(rng.integers(16, max(17, n // 8)))
        start = int(rng.integers(0, max(1, n - length)))
        buf[start : start + length] = bytes(length)
        w.add(f"{base}__zero_s{s}", "zero", bytes(buf), ext, f"{length} zero bytes at {start}")
    if moov:
        buf = bytearray(data)
        a = moov[1] + moov[3] + 8
        buf[a : a + min(64, moov[2] // 3)] = bytes(min(64, moov[2] // 3))
        w.add(f"{base}__zero_moov", "zero", bytes(buf), ext, "zeroed bytes inside moov")
    if spans and full:
        buf = bytearray(data)
        for off, size in spans[1::3]:
            buf[off : off + size] = bytes(size)
        w.add(f"{base}__zero_packets", "zero", bytes(buf), ext, "every third packet zeroed")
    # -- packet-level damage by remuxing
    for op in (("swap", "dup", "drop", "reverse", "drop_first_key") if full else ("swap", "drop")):
        dst = w.out / f"{base}__packets_{op}{ext}"
        if remux_payloads(src, dst, op, seed):
            w.names.add(dst.stem)
            w.cases.append({"name": dst.stem, "category": "packets", "path": str(dst), "note": f"payloads {op}",
                            "source": dst.stem.split("__")[0]})
    # -- wrong extension
    wrong = {".mp4": ".mkv", ".mkv": ".mp4", ".avi": ".mp4", ".ts": ".avi", ".webm": ".ts", ".h264": ".mp4",
             ".mpg": ".mkv", ".mov": ".webm", ".hevc": ".mp4"}.get(ext, ".mp4")
    w.add(f"{base}__ext{wrong.replace('.', '_')}", "extension", data, wrong, f"{ext} bytes named {wrong}")


def build_corpus(out_dir, *, seed: int = 0, shared: bool = True, quick: bool = False) -> List[dict]:
    """Writes the corpus into ``out_dir`` and returns its manifest (also written as ``manifest.json``).
    ``quick`` writes a small subset (a few bases, fewer mutations) for sanitizer runs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = out / "_gen"
    gen.mkdir(exist_ok=True)
    w = _Writer(out)
    x264 = {"g": "8", "bf": "2", "x264-params": "keyint=8:min-keyint=8:scenecut=0"}

    # -- bases that every mutation is applied to
    bases = [
        ("h264_bframes_mp4", dict(codec="libx264", options=x264), ".mp4", None),
        ("h264_ippp_faststart_mp4", dict(codec="libx264", options={"bf": "0", "g": "6"},
                                        container_options={"movflags": "+faststart"}), ".mp4", None),
        ("mpeg4_avi", dict(codec="mpeg4", options={"g": "6", "bf": "1"}), ".avi", None),
        ("hevc_mkv", dict(codec="libx265", frames=16, options={"x265-params": "keyint=8:log-level=none"}), ".mkv", None),
        ("vp9_webm", dict(codec="libvpx-vp9", frames=16, options={"g": "8", "deadline": "realtime", "cpu-used": "8"}), ".webm", None),
        ("h264_mpegts", dict(codec="libx264", options=x264), ".ts", None),
        ("h264_annexb", dict(codec="libx264", options=x264, fmt="h264"), ".h264", None),
        ("mpeg2_ps", dict(codec="mpeg2video", options={"g": "6", "bf": "2"}, fmt="vob"), ".mpg", None),
        ("mjpeg_avi", dict(codec="mjpeg", frames=8, pix_fmt="yuvj420p"), ".avi", None),
    ]
    indexed = list(enumerate(bases))  # the seed of a base is its index in the full list (quick = full subset)
    if quick:
        indexed = [(i, b) for i, b in indexed if b[0] in ("h264_bframes_mp4", "mpeg4_avi", "vp9_webm")]
    for i, (name, kw, ext, _) in indexed:
        src = gen / f"{name}{ext}"
        try:
            encode(src, seed=i, **kw)
        except Exception as exc:  # noqa: BLE001 - an encoder missing from this PyAV build
            print(f"corpus: skipping base {name}: {exc}", file=sys.stderr)
            continue
        data = src.read_bytes()
        w.add(name, "base", data, ext, "undamaged")
        _mutations(w, name, data, ext, src, seed + 100 * i, full=not quick)

    # -- structure cases
    def gen_case(name: str, category: str, ext: str, note: str, **kw) -> Optional[Path]:
        p = gen / f"{name}{ext}"
        try:
            encode(p, **kw)
        except Exception as exc:  # noqa: BLE001
            print(f"corpus: skipping {name}: {exc}", file=sys.stderr)
            return None
        w.add_file(name, category, p, ext, note)
        return p

    structure = [
        ("odd_17x33_h264_444", ".mp4", "odd dimensions 17x33", dict(size=(17, 33), pix_fmt="yuv444p", options=x264)),
        ("odd_33x17_mpeg4", ".avi", "odd dimensions", dict(codec="mpeg4", size=(33, 17))),
        ("one_frame_h264", ".mp4", "a single frame", dict(frames=1)),
        ("one_frame_mpeg4", ".avi", "a single frame", dict(codec="mpeg4", frames=1)),
        ("two_frames_h264", ".mkv", "two frames", dict(frames=2, options=x264)),
        ("all_intra_h264", ".mp4", "all I-frames (g=1)", dict(options={"g": "1", "bf": "0"})),
        ("all_intra_mpeg2", ".mpg", "all I-frames", dict(codec="mpeg2video", options={"g": "1"}, fmt="vob")),
        ("start_pts_1000_mkv", ".mkv", "first pts 1000", dict(pts=[1000 + i for i in range(24)], options=x264)),
        ("start_pts_1000_mp4", ".mp4", "first pts 1000", dict(pts=[1000 + i for i in range(24)], options=x264)),
        ("negative_pts_mkv", ".mkv", "pts from -10", dict(pts=[i - 10 for i in range(24)], options=x264,
                                                          container_options={"avoid_negative_ts": "disabled"})),
        ("negative_pts_ts", ".ts", "pts from -10", dict(pts=[i - 10 for i in range(24)], options=x264)),
        ("vfr_mkv", ".mkv", "variable frame rate", dict(pts=list(np.cumsum([0] + [1, 2, 5, 1, 1, 30, 3, 1] * 3)[:24] * 10),
                                                        time_base=Fraction(1, 1000), options=x264)),
        ("vfr_mp4", ".mp4", "variable frame rate", dict(pts=list(np.cumsum([0] + [7, 40, 3, 90, 33] * 5)[:24]),
                                                        time_base=Fraction(1, 1000), options={"bf": "0"})),
        ("h264_10bit", ".mp4", "H.264 10-bit 4:2:0", dict(pix_fmt="yuv420p10le", options=x264)),
        ("hevc_10bit", ".mkv", "HEVC 10-bit", dict(codec="libx265", frames=12, pix_fmt="yuv420p10le",
                                                  options={"x265-params": "log-level=none"})),
        ("h264_444", ".mp4", "H.264 4:4:4", dict(pix_fmt="yuv444p", options=x264)),
        ("h264_422_10bit", ".mkv", "H.264 4:2:2 10-bit", dict(pix_fmt="yuv422p10le", options=x264)),
        ("hevc_444", ".mp4", "HEVC 4:4:4", dict(codec="libx265", frames=12, pix_fmt="yuv444p",
                                                options={"x265-params": "log-level=none"})),
        ("h264_gray", ".mkv", "gray (4:0:0)", dict(pix_fmt="gray", options=x264)),
        ("ffv1_rgb", ".mkv", "lossless RGB (intra-only)", dict(codec="ffv1", frames=6, pix_fmt="bgr0")),
        ("two_video_streams_mkv", ".mkv", "a second video stream", dict(second_stream=(48, 64), options=x264)),
        ("two_video_streams_mp4", ".mp4", "a second video stream", dict(second_stream=(32, 32), options=x264)),
        ("thin_16x2048", ".mkv", "a long thin frame", dict(size=(16, 2048), frames=6, options=x264)),
        ("tall_2048x16", ".mkv", "a tall thin frame", dict(size=(2048, 16), frames=6, options=x264)),
        ("tiny_2x2", ".mkv", "a 2x2 frame", dict(size=(2, 2), frames=6, pix_fmt="yuv444p", options=x264)),
        ("vp8_webm", ".webm", "VP8", dict(codec="libvpx", frames=12)),
        ("h263_3gp", ".3gp", "H.263", dict(codec="h263", size=(96, 128), frames=12)),
        ("flv1_flv", ".flv", "Sorenson H.263", dict(codec="flv", frames=12)),
        ("av1_svt_mkv", ".mkv", "AV1 (SVT)", dict(codec="libsvtav1", frames=8, size=(64, 64),
                                                 options={"preset": "12"})),
    ]
    if quick:
        structure = structure[:8]
    for name, ext, note, kw in structure:
        gen_case(name, "structure", ext, note, **kw)

    # rotation metadata (tkhd display matrix), on the undamaged B-frame mp4
    base_mp4 = gen / "h264_bframes_mp4.mp4"
    if base_mp4.exists():
        d = base_mp4.read_bytes()
        one, neg = 1 << 16, -(1 << 16)
        for deg, m in ((90, [0, one, 0, neg, 0, 0, 0, 0, 1 << 30]), (180, [neg, 0, 0, 0, neg, 0, 0, 0, 1 << 30]),
                       (270, [0, neg, 0, one, 0, 0, 0, 0, 1 << 30]), (7, [one, one, 0, one, one, 0, 0, 0, 0])):
            p = patch_tkhd(d, matrix=m)
            if p:
                w.add(f"rotation_{deg}", "structure", p, ".mp4", f"tkhd display matrix {deg}", source="h264_bframes_mp4")
        # -- header lies: more/fewer frames than exist
        for box, f in (("stsz", 10.0), ("stsz", 0.5), ("stts", 10.0), ("stts", 0.25), ("stsz", 1e6)):
            p = patch_sample_count(d, box, f)
            if p:
                w.add(f"lying_{box}_x{f:g}", "header_lies", p, ".mp4", f"{box} sample count x{f:g}",
                      source="h264_bframes_mp4")
        # -- huge declared dimensions
        for dims in ((65535, 65535), (16384, 16384), (1, 65535), (0, 0)):
            p = patch_tkhd(d, dims=dims)
            q = patch_sample_entry_dims(p, *dims) if p else None
            if q:
                w.add(f"huge_tkhd_stsd_{dims[0]}x{dims[1]}", "huge_dims", q, ".mp4", f"tkhd + avc1 dims {dims}",
                      source="h264_bframes_mp4")
    fast = gen / "h264_ippp_faststart_mp4.mp4"
    if fast.exists():
        d = fast.read_bytes()
        spans = packet_spans(fast)
        if spans:
            w.add("faststart_claims_more_frames", "header_lies", d[: spans[len(spans) // 3][0]], ".mp4",
                  "moov lists every sample, the data stops after a third", source="h264_ippp_faststart_mp4")
    annexb = gen / "h264_annexb.h264"
    if annexb.exists():
        d = annexb.read_bytes()
        for mbw, mbh in ((1024, 1024), (8192, 8), (4, 4), (1, 1), (512, 540)):
            p = patch_annexb_sps(d, mbw, mbh)
            if p:
                w.add(f"huge_sps_{mbw * 16}x{mbh * 16}", "huge_dims", p, ".h264", f"SPS says {mbw * 16}x{mbh * 16}",
                      source="h264_annexb")
    mj = gen / "mjpeg_avi.avi"
    if mj.exists():
        d = mj.read_bytes()
        buf = bytearray(d)
        pos, k = 0, 0
        while True:
            pos = d.find(b"\xff\xc0", pos)
            if pos < 0:
                break
            buf[pos + 5 : pos + 9] = struct.pack(">HH", 16000 if k % 2 == 0 else 65535, 16000)
            pos += 2
            k += 1
        if k:
            w.add("huge_jpeg_sof", "huge_dims", bytes(buf), ".avi", "JPEG SOF says 16000x16000 / 65535x16000",
                  source="mjpeg_avi")
        b2 = bytearray(d)
        strf = d.find(b"strf")
        if strf > 0:
            b2[strf + 12 : strf + 20] = struct.pack("<ii", 1 << 20, 1 << 20)
            w.add("huge_avi_strf", "huge_dims", bytes(b2), ".avi", "AVI BITMAPINFOHEADER says 2^20 x 2^20",
                  source="mjpeg_avi")
    y4m_frame = bytes(64 * 48 * 3 // 2)
    w.add("y4m_ok", "structure", b"YUV4MPEG2 W64 H48 F12:1 Ip A1:1 C420jpeg\n" + (b"FRAME\n" + y4m_frame) * 3, ".y4m",
          "raw y4m")
    w.add("y4m_huge_dims", "huge_dims", b"YUV4MPEG2 W1000000 H1000000 F30:1 Ip C420jpeg\nFRAME\n" + y4m_frame, ".y4m",
          "y4m header says 1000000x1000000")
    w.add("y4m_16k_dims", "huge_dims", b"YUV4MPEG2 W16384 H16384 F30:1 Ip C420jpeg\nFRAME\n" + y4m_frame, ".y4m",
          "y4m header says 16384x16384 with 4 KiB of data")
    w.add("y4m_truncated_frame", "truncate", b"YUV4MPEG2 W64 H48 F12:1 Ip C420jpeg\nFRAME\n" + y4m_frame[:1000],
          ".y4m", "first frame cut")
    w.add("y4m_zero_fps", "structure", b"YUV4MPEG2 W64 H48 F0:0 Ip C420jpeg\nFRAME\n" + y4m_frame * 1, ".y4m",
          "frame rate 0/0")

    # -- no video stream, not media at all
    for name, codec, ext, fmt in (("audio_only_m4a", "aac", ".m4a", "mp4"), ("audio_only_wav", "pcm_s16le", ".wav", "wav"),
                                  ("audio_only_mkv", "aac", ".mkv", "matroska")):
        p = gen / f"{name}{ext}"
        try:
            encode_audio(p, codec, fmt)
            w.add_file(name, "no_video", p, ext, "audio only")
        except Exception as exc:  # noqa: BLE001
            print(f"corpus: skipping {name}: {exc}", file=sys.stderr)
    for codec, ext in (("png", ".png"), ("mjpeg", ".jpg")):
        p = gen / f"image{ext}"
        try:
            encode_image(p, codec)
            w.add_file(f"image_{codec}", "no_video", p, ext, "a still image (decodes as one frame)")
        except Exception as exc:  # noqa: BLE001
            print(f"corpus: skipping image {codec}: {exc}", file=sys.stderr)
    rng = np.random.default_rng(seed + 7)
    w.add("empty", "no_video", b"", ".mp4", "0 bytes")
    w.add("one_byte", "no_video", b"\x00", ".mp4", "1 byte")
    w.add("text", "no_video", b"this is not a video\n" * 100, ".mp4", "text")
    w.add("ansi_text", "no_video", b"\x1b[31mred\x1b[0m text\n" * 50, ".ans", "text an ANSI demuxer would take")
    w.add("random_64k", "no_video", rng.integers(0, 256, 65536, dtype=np.uint8).tobytes(), ".mp4", "random bytes")
    w.add("random_1k_mkv", "no_video", rng.integers(0, 256, 1024, dtype=np.uint8).tobytes(), ".mkv", "random bytes")
    w.add("ftyp_only", "no_video", struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 512), ".mp4", "only an ftyp box")
    w.add("moov_empty", "no_video", struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 512) + struct.pack(">I4s", 8, b"moov"),
          ".mp4", "an empty moov")
    w.add("box_size_huge", "no_video", struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 512) + struct.pack(">I4sQ", 1, b"mdat", 1 << 62),
          ".mp4", "an mdat claiming 2^62 bytes")
    w.add("ebml_header_only", "no_video", bytes.fromhex("1a45dfa3") + bytes(60), ".mkv", "an EBML header, nothing else")
    w.add("ts_sync_only", "no_video", (b"\x47" + bytes(187)) * 40, ".ts", "MPEG-TS sync bytes, no tables")

    # -- the shared real videos: short stream copies (and damage on them)
    if shared and SHARED_VIDEOS.is_dir():
        vids = sorted(p for p in SHARED_VIDEOS.iterdir() if p.suffix in (".mp4", ".mkv", ".mov", ".avi", ".webm"))
        if quick:
            vids = vids[:3]
        for k, v in enumerate(vids):
            big = v.stat().st_size > 500_000
            dst = gen / f"shared_{v.stem}{v.suffix}"
            if not stream_copy(v, dst, 8 if big else 24):
                continue
            name = f"shared_{v.stem}"
            data = dst.read_bytes()
            w.add(name, "shared", data, v.suffix, f"first packets of {v.name}, stream copy")
            n = len(data)
            r = np.random.default_rng(seed + 1000 + k)
            for f in ((0.5,) if big else (0.3, 0.7)):
                w.add(f"{name}__trunc_f{int(f * 100)}", "shared", data[: int(n * f)], v.suffix, f"cut at {f:.0%}")
            for rate in ((1e-3,) if big else (1e-3, 1e-2)):
                buf = bytearray(data)
                for pos in r.integers(0, n, size=max(1, int(n * rate))):
                    buf[pos] ^= 0xFF
                w.add(f"{name}__flip_{rate:g}", "shared", bytes(buf), v.suffix, "byte flips")
            if not big:
                for op in ("swap", "drop"):
                    d2 = out / f"{name}__packets_{op}{v.suffix}"
                    if remux_payloads(dst, d2, op, seed + k):
                        w.names.add(d2.stem)
                        w.cases.append({"name": d2.stem, "category": "shared", "path": str(d2), "note": f"payloads {op}",
                                        "source": name})

    # -- kept regression inputs
    if REGRESSIONS.is_dir():
        for p in sorted(REGRESSIONS.iterdir()):
            if p.is_file() and not p.name.startswith(".") and p.suffix not in (".md", ".txt", ".json"):
                w.add_file(f"regression_{p.stem}", "regression", p, p.suffix, "kept regression input")

    shutil.rmtree(gen, ignore_errors=True)
    (out / "manifest.json").write_text(json.dumps(w.cases, indent=1))
    return w.cases


if __name__ == "__main__":
    import collections
    import time

    t0 = time.time()
    cases = build_corpus(sys.argv[1] if len(sys.argv) > 1 else "corpus_out", quick="--quick" in sys.argv)
    print(f"{len(cases)} cases in {time.time() - t0:.1f} s")
    print(dict(collections.Counter(c["category"] for c in cases)))

"""Preprocessing at scale: a manifest of videos in, webdataset tar shards of :class:`VisualTokens` out.

``ov2 preprocess MANIFEST --out DIR --engine local|ray`` (docs/ecosystem.md, "Preprocessing at scale")::

    DIR/shard-000000.tar       <key>.tokens.npz (or .tokens.safetensors) + <key>.json per video, manifest order
    DIR/shard-000000.json      the shard's index: fingerprint, keys, per-video timings, the shard's failures
    DIR/failures.jsonl         one JSON object per video that failed: key, path, error class, message
    DIR/summary.json           totals over all shards of the manifest

Items go to shards by manifest order (``shard_size`` per shard), so the layout depends only on the manifest.
Both engines tokenize the same bytes with the same function and the driver writes every tar deterministically
(fixed mtime / uid / gid / mode, members in manifest order; the npz zip entries carry a fixed date), so
``engine="local"`` and ``engine="ray"`` write byte-identical shards. Timings, which differ from run to run, are
kept out of the tar (in ``shard-NNNNNN.json``).

A shard is written to a temporary file and renamed into place, index first, tar last: a killed run leaves
whole shards only, and a rerun skips every shard whose tar exists and whose index has the same fingerprint
(manifest items of the shard, their effective configs, the format).

Reading: :func:`load_shards` / :func:`iter_shard` yield ``(key, VisualTokens, meta)`` through ``webdataset``
(or a plain :mod:`tarfile` reader), and :func:`decode_sample` turns a raw webdataset sample into the same
triple inside a pipeline of your own::

    >>> import webdataset as wds                                          # doctest: +SKIP
    >>> ds = wds.WebDataset("DIR/shard-{000000..000009}.tar", shardshuffle=False).map(decode_sample)
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import io
import json
import logging
import os
import re
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .config import MODES, TokenizerConfig, unknown_field_cause
from .errors import ConfigError, Ov2Error, TokensFileError, VideoOpenError

__all__ = [
    "PreprocessItem",
    "PreprocessSummary",
    "PreprocessError",
    "read_preprocess_manifest",
    "preprocess",
    "iter_shard",
    "load_shards",
    "decode_sample",
    "SHARD_NAME",
    "FORMATS",
    "ENGINES",
]

SHARD_NAME = "shard-%06d.tar"
FORMATS = ("npz", "safetensors")
ENGINES = ("local", "ray")
FAILURES_FILE = "failures.jsonl"
SUMMARY_FILE = "summary.json"
_LAYOUT_VERSION = 1
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_TAR_EPOCH = 0  # mtime of every tar member
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # date of every npz zip entry
_TMP_RE = re.compile(r"^\.(shard-\d+\.(?:tar|json)|failures\.jsonl|summary\.json)\.tmp-(\d+)$")


class PreprocessError(Ov2Error):
    """The run itself failed (a worker process died, the Ray job failed, the output is not writable).

    Shards finished before the failure stay on disk; rerunning the same command resumes after them."""


# -- manifest -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessItem:
    """One video of a preprocessing manifest.

    ``key`` names the sample inside its shard (``<key>.tokens.npz``, ``<key>.json``): letters, digits, ``_`` and
    ``-`` only (webdataset splits a member name at its first dot). ``overrides`` are TokenizerConfig fields of
    this item; ``extra`` the manifest line's other keys (stored in the sample's JSON under ``"manifest"``).
    """

    index: int
    key: str
    path: str
    mode: Optional[str] = None  # None: the run's mode
    overrides: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""  # manifest file:line, for error messages


def _is_url(path: str) -> bool:
    return "://" in path


def _derive_key(path: str) -> str:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    stem = base.lstrip(".").split(".", 1)[0]
    key = re.sub(r"[^A-Za-z0-9_\-]+", "_", stem).strip("_")
    return key[:120] or "video"


def _tuple_lists(d: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def read_preprocess_manifest(path: Union[str, "os.PathLike[str]"]) -> List[PreprocessItem]:
    """Reads a manifest: a text file with one video path per line, or JSON lines (``.jsonl`` / ``.json`` /
    ``.ndjson``, or a text file whose first entry starts with ``{``), one object per video::

        {"path": "clips/a.mp4"}
        {"path": "clips/b.mp4", "key": "b_frames", "mode": "frames", "config": {"num_frames": 16}}
        {"path": "/data/c.mkv", "max_canvases": 8, "caption": "a dog"}

    ``key`` (default: the file name without extensions, made unique with ``-2``, ``-3``, ...), ``mode``, and
    TokenizerConfig fields either at the top level or under ``"config"`` override the run's settings for that
    video; other keys are kept as ``extra``. Relative paths resolve against the manifest's directory; URLs
    (``s3://...``) are kept as they are (the Ray engine reads them through pyarrow). Blank lines and lines
    starting with ``#`` are skipped.

    Raises :class:`ConfigError` naming ``file:line`` for a malformed entry, a duplicate or invalid key, an
    unknown mode or config field, and for a manifest that lists no video. Config values are validated with
    the run's base config by :func:`preprocess`, before any work starts.
    """
    mpath = Path(path)
    try:
        text = mpath.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(str(mpath), f"cannot read the manifest: {cause}") from exc
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)]
    lines = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ConfigError(str(mpath), "the manifest lists no video")
    as_json = mpath.suffix.lower() in _JSON_SUFFIXES or lines[0][1].startswith("{")
    fields_ = {f.name for f in dataclasses.fields(TokenizerConfig)}
    raw: List[Tuple[str, str, Optional[str], Optional[str], Dict[str, Any], Dict[str, Any]]] = []
    for lineno, line in lines:
        where = f"{mpath}:{lineno}"
        if not as_json:
            raw.append((where, line, None, None, {}, {}))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(where, f"not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), str) or not obj["path"]:
            raise ConfigError(where, 'each line must be an object with a non-empty string "path"')
        src = obj.pop("path")
        key = obj.pop("key", None)
        if key is not None and (not isinstance(key, str) or not _KEY_RE.match(key) or len(key) > 200):
            raise ConfigError(where, f'"key" must be 1-200 letters, digits, "_" or "-" (no dots), got {key!r}')
        mode = obj.pop("mode", None)
        if mode is not None and mode not in MODES:
            raise ConfigError(where, f"mode must be one of {MODES}, got {mode!r}")
        cfg = obj.pop("config", {})
        if not isinstance(cfg, dict):
            raise ConfigError(where, '"config" must be an object of TokenizerConfig fields')
        top = {k: obj.pop(k) for k in list(obj) if k in fields_}
        both = sorted(set(top) & set(cfg))
        if both:
            raise ConfigError(where, f"config field {both[0]!r} given both at the top level and under \"config\"")
        unknown = sorted(set(cfg) - fields_)
        if unknown:
            raise ConfigError(where, f"config field {unknown[0]}: {unknown_field_cause(unknown[0])}")
        overrides = _tuple_lists({**cfg, **top})  # values are checked against the run's config by preprocess()
        raw.append((where, src, key, mode, overrides, obj))
    used: Dict[str, str] = {}
    for where, _, key, *_ in raw:
        if key is not None:
            if key in used:
                raise ConfigError(where, f"duplicate key {key!r} (first at {used[key]})")
            used[key] = where
    items: List[PreprocessItem] = []
    for index, (where, src, key, mode, overrides, extra) in enumerate(raw):
        if not _is_url(src) and not os.path.isabs(src):
            src = str(mpath.parent / src)
        if not _is_url(src):
            src = os.path.abspath(src)
        if key is None:
            base, key, k = _derive_key(src), _derive_key(src), 1
            while key in used:
                k += 1
                key = f"{base}-{k}"
            used[key] = where
        items.append(PreprocessItem(index, key, src, mode, overrides, extra, where))
    return items


# -- per-item work (runs in worker processes or Ray tasks) ---------------------------------------------------


def _spec(item: PreprocessItem, shard: int, mode: str, config: TokenizerConfig, fmt: str) -> Dict[str, Any]:
    """Everything a worker needs for one item, as plain picklable data."""
    return {
        "index": item.index, "shard": shard, "key": item.key, "path": item.path, "mode": mode,
        "config": config.to_dict(), "format": fmt, "extra": dict(item.extra),
    }


def _read_local(path: str) -> bytes:
    if _is_url(path):
        raise VideoOpenError(path, "the local engine reads local files only; use --engine ray for URLs")
    try:
        if os.path.exists(path) and not os.path.isdir(path) and not os.path.isfile(path):
            raise VideoOpenError(path, "not a regular file (a named pipe or device)")  # open() of a pipe may block
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise VideoOpenError(path, exc.strerror or str(exc)) from exc


def _normalised_npz(data: bytes) -> bytes:
    """The npz (zip) ``data`` rewritten with a fixed date on every entry (np.savez stamps the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=_ZIP_DATE)
            zi.external_attr = 0o644 << 16
            with src.open(info) as r, dst.open(zi, "w", force_zip64=True) as w:
                while chunk := r.read(1 << 20):
                    w.write(chunk)
    return out.getvalue()


def _encode_tokens(vt: Any, fmt: str) -> bytes:
    """``VisualTokens.save`` bytes of ``vt`` (via a temporary file, so the format is exactly ``save``'s)."""
    with tempfile.TemporaryDirectory(prefix="ov2_pre_") as tmp:
        path = vt.save(Path(tmp) / f"tokens.{fmt}")
        data = Path(path).read_bytes()
    return _normalised_npz(data) if fmt == "npz" else data


def _failure(spec: Mapping[str, Any], exc: BaseException, expected: bool) -> Dict[str, Any]:
    if isinstance(exc, Ov2Error):
        cause = exc.cause or str(exc)
        message = f"{spec['path']}: {cause}" if exc.cause else str(exc)
    else:
        cause = str(exc) or type(exc).__name__
        message = f"{spec['path']}: {cause}"
    rec = {"key": spec["key"], "index": spec["index"], "shard": spec["shard"], "path": spec["path"],
           "mode": spec["mode"], "error": type(exc).__name__, "message": message}
    if not expected:
        rec["unexpected"] = True
    return rec


def _process(spec: Mapping[str, Any], data: Optional[bytes] = None) -> Dict[str, Any]:
    """Tokenizes one item; never raises for a bad video (the failure is returned as a record).

    Returns ``{"index", "key", "ok", "tokens": bytes, "json": bytes, "num_tokens", "seconds", "timings",
    "failure"}``; ``tokens`` / ``json`` are the tar members' contents and depend only on the input and spec.
    """
    from dataclasses import asdict

    from .tokenize import tokenize_video
    from .video import open_video

    t0 = time.perf_counter()
    res: Dict[str, Any] = {"index": spec["index"], "key": spec["key"], "ok": False, "tokens": b"", "json": b"",
                           "num_tokens": 0, "seconds": 0.0, "timings": {}, "failure": None}
    try:
        if data is None:
            data = _read_local(spec["path"])
        cfg = TokenizerConfig(**_tuple_lists(spec["config"]))
        vt = tokenize_video(data, mode=spec["mode"], config=cfg)
        info = asdict(open_video(data, num_threads=1, on_error=cfg.on_error).info)
        info["time_base"] = str(info["time_base"])
        res["timings"] = {k: float(v) for k, v in (vt.meta.pop("timings", None) or {}).items()}
        vt.meta["source"] = spec["path"]  # tokenized from bytes; name the file, as tokenize_video(path) does
        m = vt.meta
        meta = {
            "key": spec["key"], "index": spec["index"], "source": spec["path"], "mode": spec["mode"],
            "format": spec["format"], "config": spec["config"], "num_tokens": vt.num_tokens,
            "num_canvases": vt.num_canvases, "llm_tokens": vt.num_tokens // max(1, vt.merge_size ** 2),
            "grid_thw": vt.grid_thw.tolist()[0], "video": info,
            "decoding": {k: m[k] for k in ("frames_decoded", "corrupt_packets", "corrupt_frames", "repeated_frames",
                                           "truncated", "motion_source") if k in m},
            "manifest": spec["extra"],
        }
        res["tokens"] = _encode_tokens(vt, spec["format"])
        res["json"] = json.dumps(meta, sort_keys=True, separators=(",", ":"), default=_json_default).encode()
        res["num_tokens"] = vt.num_tokens
        res["ok"] = True
    except Ov2Error as exc:
        res["failure"] = _failure(spec, exc, expected=True)
    except Exception as exc:  # noqa: BLE001 - a bug on one video must not end a million-video run; reported
        res["failure"] = _failure(spec, exc, expected=False)
    res["seconds"] = time.perf_counter() - t0
    return res


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o.tolist() if isinstance(o, np.ndarray) else o)
    return str(o)


def _limit_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _local_worker_init(threads: int) -> None:
    _limit_threads(threads)


def _local_task(spec: Mapping[str, Any]) -> Dict[str, Any]:
    return _process(spec)


def _path_key(path: str) -> str:
    """Path as Ray Data reports it back (pyarrow drops the URL scheme)."""
    return path.split("://", 1)[1] if "://" in path else path


def _ray_batch(batch: Mapping[str, np.ndarray], specs_by_path: Mapping[str, List[Dict[str, Any]]],
               threads: int) -> Dict[str, np.ndarray]:
    """map_batches function: each (path, bytes) row becomes one result row per manifest item of that path."""
    import pickle

    _limit_threads(threads)
    out: List[bytes] = []
    index: List[int] = []
    for path, data in zip(batch["path"], batch["bytes"]):
        specs = specs_by_path.get(_path_key(str(path)))
        if specs is None:
            raise PreprocessError(str(path), "Ray Data returned a path that is not in the manifest")
        for spec in specs:
            res = _process(spec, bytes(data))
            index.append(res["index"])
            out.append(pickle.dumps(res, protocol=5))
    return {"index": np.asarray(index, dtype=np.int64), "result": np.asarray(out, dtype=object)}


# -- shards -------------------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PreprocessError(str(path), f"cannot write: {exc.strerror or exc}") from exc


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.type = size, _TAR_EPOCH, 0o644, tarfile.REGTYPE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _fingerprint(specs: Sequence[Mapping[str, Any]]) -> str:
    keep = [{k: s[k] for k in ("index", "key", "path", "mode", "config", "format", "extra")} for s in specs]
    blob = json.dumps({"version": _LAYOUT_VERSION, "items": keep}, sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_index(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _shard_done(out: Path, shard: int, fingerprint: str) -> Optional[Dict[str, Any]]:
    tar = out / (SHARD_NAME % shard)
    idx = _read_index(tar.with_suffix(".json"))
    if tar.is_file() and idx is not None and idx.get("fingerprint") == fingerprint:
        return idx
    return None


class _ShardWriter:
    """Streams one shard's samples into a temporary tar in manifest order as results arrive (out-of-order
    results wait in memory), then writes the index and renames the tar into place."""

    def __init__(self, out: Path, shard: int, specs: Sequence[Mapping[str, Any]], fingerprint: str) -> None:
        self.out, self.shard, self.specs, self.fingerprint = out, shard, list(specs), fingerprint
        self.path = out / (SHARD_NAME % shard)
        self.tmp = out / f".{self.path.name}.tmp-{os.getpid()}"
        self._fh: Optional[Any] = None
        self._tar: Optional[tarfile.TarFile] = None
        self._waiting: Dict[int, Dict[str, Any]] = {}
        self._next = 0
        self.samples: List[Dict[str, Any]] = []
        self.failures: List[Dict[str, Any]] = []

    @property
    def complete(self) -> bool:
        return self._next == len(self.specs)

    def add(self, res: Dict[str, Any]) -> None:
        self._waiting[res["index"]] = res
        try:
            while self._next < len(self.specs) and self.specs[self._next]["index"] in self._waiting:
                spec = self.specs[self._next]
                self._append(spec, self._waiting.pop(spec["index"]))
                self._next += 1
        except OSError as exc:
            self.abort()
            raise PreprocessError(str(self.path), f"cannot write: {exc.strerror or exc}") from exc

    def _append(self, spec: Mapping[str, Any], r: Dict[str, Any]) -> None:
        if self._tar is None:
            self._fh = open(self.tmp, "wb")
            self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.PAX_FORMAT)
        if not r["ok"]:
            self.failures.append(r["failure"])
            return
        for name, data in ((f"{spec['key']}.tokens.{spec['format']}", r["tokens"]), (f"{spec['key']}.json", r["json"])):
            self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        self.samples.append({"key": spec["key"], "index": spec["index"], "path": spec["path"],
                             "num_tokens": r["num_tokens"], "seconds": round(r["seconds"], 6),
                             "timings": r["timings"]})

    def finish(self) -> Dict[str, Any]:
        assert self.complete and self._tar is not None and self._fh is not None
        index = {"version": _LAYOUT_VERSION, "shard": self.shard, "tar": self.path.name,
                 "fingerprint": self.fingerprint, "videos": len(self.samples), "failed": len(self.failures),
                 "tokens": sum(s["num_tokens"] for s in self.samples), "samples": self.samples,
                 "failures": self.failures}
        try:
            self._tar.close()
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            _atomic_write(self.path.with_suffix(".json"), json.dumps(index, indent=1, sort_keys=True).encode())
            os.replace(self.tmp, self.path)  # last: the tar's presence marks the shard finished
        except OSError as exc:
            self.abort()
            raise PreprocessError(str(self.path), f"cannot write: {exc.strerror or exc}") from exc
        return index

    def abort(self) -> None:
        for obj in (self._tar, self._fh):
            try:
                if obj is not None:
                    obj.close()
            except OSError:
                pass
        self._tar = self._fh = None
        self.tmp.unlink(missing_ok=True)


def _clean_stale_tmp(out: Path) -> None:
    """Removes temporary files that a killed run left (their writer process is gone)."""
    for p in out.iterdir():
        m = _TMP_RE.match(p.name)
        if not m:
            continue
        pid = int(m.group(2))
        alive = pid == os.getpid()
        if not alive:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            p.unlink(missing_ok=True)


# -- driver -------------------------------------------------------------------------------------------------


@dataclass
class PreprocessSummary:
    """Totals of a run. ``videos`` / ``failed`` / ``tokens`` count every shard of the manifest (skipped ones
    too); ``processed`` / ``seconds`` / ``videos_per_s`` this run's work only."""

    out_dir: str
    shards: int
    shards_written: int
    shards_skipped: int
    videos: int
    failed: int
    unexpected: int
    tokens: int
    processed: int
    seconds: float
    failures_file: str
    engine: str

    @property
    def videos_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["videos_per_s"] = self.videos_per_s
        return d

    def __str__(self) -> str:
        return (f"{self.videos} videos, {self.failed} failed, {self.tokens} tokens in {self.shards} shards "
                f"({self.shards_written} written, {self.shards_skipped} skipped) -> {self.out_dir}\n"
                f"this run: {self.processed} videos in {self.seconds:.1f} s ({self.videos_per_s:.2f} videos/s, "
                f"{self.engine} engine); failures: {self.failures_file}")


class _Bar:
    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled and total:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="video", desc="preprocess", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, failed: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{failed} failed", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def preprocess(
    manifest: Union[str, "os.PathLike[str]", Sequence[PreprocessItem]],
    out_dir: Union[str, "os.PathLike[str]"],
    *,
    engine: str = "local",
    mode: str = "codec_stream",
    config: Optional[TokenizerConfig] = None,
    fmt: str = "npz",
    shard_size: int = 64,
    workers: Optional[int] = None,
    threads_per_worker: int = 1,
    start_method: str = "spawn",
    ray_address: Optional[str] = None,
    wave_items: int = 2048,
    progress: bool = False,
    on_shard: Optional[Callable[[int, Dict[str, Any]], None]] = None,
) -> PreprocessSummary:
    """Tokenizes every video of ``manifest`` into webdataset shards under ``out_dir`` (see the module doc).

    Args:
        manifest: a manifest file (:func:`read_preprocess_manifest`) or a list of :class:`PreprocessItem`.
        engine: ``"local"`` (a process pool of ``workers`` processes, ``start_method`` ``"spawn"`` or
            ``"forkserver"``; ``workers=0`` tokenizes in this process, for debugging and tiny manifests) or
            ``"ray"`` (Ray Data: ``read_binary_files`` -> ``map_batches``). The Ray engine
            uses the running Ray instance when ``ray.is_initialized()``, else connects to ``ray_address``
            (``"auto"``, ``"ray://head:10001"``) or starts a local instance with ``workers`` CPUs, and shuts
            down only what it started. Both write byte-identical shards.
        config: base TokenizerConfig; ``num_threads`` defaults to ``threads_per_worker`` unless set. Per-item
            manifest overrides apply on top.
        fmt: ``"npz"`` or ``"safetensors"`` (``VisualTokens.save`` formats).
        shard_size: videos per shard (by manifest order, failures included).
        threads_per_worker: torch / OpenMP threads of each worker (and CPUs of each Ray task).
        wave_items: the Ray engine runs the manifest in waves of whole shards of about this many videos,
            which bounds the driver's memory and the per-task arguments for very large manifests.
        on_shard: called with ``(shard, index)`` after each shard is written (not for skipped shards).

    Per-video failures (:class:`Ov2Error`: missing, corrupt, undecodable files) are recorded, not raised;
    :class:`ConfigError` is raised for a bad manifest or argument, :class:`PreprocessError` when the run
    itself fails (finished shards are kept; rerun to resume).
    """
    if engine not in ENGINES:
        raise ConfigError("engine", f"must be one of {ENGINES}, got {engine!r}")
    if fmt not in FORMATS:
        raise ConfigError("format", f"must be one of {FORMATS}, got {fmt!r}")
    if mode not in MODES:
        raise ConfigError("mode", f"must be one of {MODES}, got {mode!r}")
    for name, v in (("shard_size", shard_size), ("threads_per_worker", threads_per_worker),
                    ("wave_items", wave_items)) + ((("workers", workers),) if workers is not None else ()):
        least = 0 if name == "workers" and engine == "local" else 1
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise ConfigError(name, f"must be an integer >= {least}, got {v!r}")
    if start_method not in ("spawn", "forkserver"):
        raise ConfigError("start_method", f"must be 'spawn' or 'forkserver', got {start_method!r}")
    base = config if config is not None else TokenizerConfig()
    if not isinstance(base, TokenizerConfig):
        raise ConfigError("config", f"must be a TokenizerConfig, got {type(base).__name__}")
    if base.num_threads is None:
        base = base.replace(num_threads=threads_per_worker)
    items = read_preprocess_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    if not items:
        raise ConfigError("manifest", "no videos to preprocess")

    for attr in ("index", "key"):
        seen: Dict[Any, int] = {}
        for i, item in enumerate(items):
            v = getattr(item, attr)
            if v in seen:
                raise ConfigError(item.where or f"item {i}", f"duplicate {attr} {v!r} (also item {seen[v]})")
            seen[v] = i
        if attr == "key":
            bad = [it.key for it in items if not isinstance(it.key, str) or not _KEY_RE.match(it.key)]
            if bad:
                raise ConfigError("key", f"keys are letters, digits, '_' and '-' only, got {bad[0]!r}")
    specs: List[Dict[str, Any]] = []
    for i, item in enumerate(items):
        shard = i // shard_size
        try:
            cfg = base.replace(**item.overrides) if item.overrides else base
        except ConfigError as exc:
            raise ConfigError(item.where or f"item {i}", f"config field {exc.source}: {exc.cause}") from exc
        specs.append(_spec(item, shard, item.mode or mode, cfg, fmt))
    shards = [specs[k:k + shard_size] for k in range(0, len(specs), shard_size)]

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreprocessError(str(out), f"cannot create the output directory: {exc.strerror or exc}") from exc
    _clean_stale_tmp(out)

    prints = [_fingerprint(s) for s in shards]
    indexes: Dict[int, Dict[str, Any]] = {}
    todo: List[int] = []
    for k in range(len(shards)):
        done = _shard_done(out, k, prints[k])
        if done is not None:
            indexes[k] = done
        else:
            todo.append(k)
            # a stale tar (other manifest / config, or no index) goes now: the new index is written before the
            # new tar, and a run killed in between must not pair the new index with the old tar
            (out / (SHARD_NAME % k)).unlink(missing_ok=True)
    skipped = len(shards) - len(todo)

    bar = _Bar(sum(len(shards[k]) for k in todo), progress)
    failed_now = 0
    t0 = time.perf_counter()
    pending: Dict[int, _ShardWriter] = {k: _ShardWriter(out, k, shards[k], prints[k]) for k in todo}
    shard_of = {s["index"]: s["shard"] for s in specs}

    def accept(res: Dict[str, Any]) -> None:
        nonlocal failed_now
        k = shard_of[res["index"]]
        writer = pending[k]
        writer.add(res)
        failed_now += 0 if res["ok"] else 1
        bar.update(failed_now)
        if writer.complete:
            indexes[k] = writer.finish()
            del pending[k]
            if on_shard is not None:
                on_shard(k, indexes[k])

    try:
        if todo:
            work = [s for k in todo for s in shards[k]]
            if engine == "local":
                if workers == 0:
                    for spec in work:
                        accept(_process(spec))
                else:
                    _run_local(work, accept, workers or os.cpu_count() or 1, threads_per_worker, start_method)
            else:
                waves: List[List[Dict[str, Any]]] = [[]]
                for k in todo:
                    if waves[-1] and len(waves[-1]) + len(shards[k]) > wave_items:
                        waves.append([])
                    waves[-1].extend(shards[k])
                _run_ray(waves, accept, workers, threads_per_worker, ray_address)
    except BaseException:
        for writer in pending.values():  # a failed or interrupted run leaves no partial shard
            writer.abort()
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if pending:  # every result arrived but a shard is incomplete: a bug in an engine, never silently ignored
        raise PreprocessError(str(out), f"shards {sorted(pending)} did not receive all their results")

    failures = [f for k in range(len(shards)) for f in indexes[k].get("failures", [])]
    _atomic_write(out / FAILURES_FILE,
                  "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures).encode())
    summary = PreprocessSummary(
        out_dir=str(out), shards=len(shards), shards_written=len(todo), shards_skipped=skipped,
        videos=sum(int(indexes[k]["videos"]) for k in range(len(shards))), failed=len(failures),
        unexpected=sum(1 for f in failures if f.get("unexpected")),
        tokens=sum(int(indexes[k]["tokens"]) for k in range(len(shards))),
        processed=sum(len(shards[k]) for k in todo), seconds=seconds, failures_file=str(out / FAILURES_FILE),
        engine=engine,
    )
    _atomic_write(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=1, sort_keys=True).encode())
    return summary


def _run_local(work: List[Dict[str, Any]], accept: Callable[[Dict[str, Any]], None], workers: int, threads: int,
               start_method: str) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context(start_method)
    window = max(2, 4 * workers)  # in flight at once: bounds the driver's memory, keeps shards finishing in order
    queue = iter(work)
    inflight: Dict[Any, Dict[str, Any]] = {}
    pool = ProcessPoolExecutor(max_workers=min(workers, len(work)), mp_context=ctx,
                               initializer=_local_worker_init, initargs=(threads,))
    try:
        while True:
            while len(inflight) < window:
                spec = next(queue, None)
                if spec is None:
                    break
                inflight[pool.submit(_local_task, spec)] = spec
            if not inflight:
                break
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: inflight[f]["index"]):
                spec = inflight.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool as exc:
                    raise PreprocessError(spec["path"], "a worker process died (crash or out of memory) while "
                                          "this video was in flight; finished shards are kept, rerun to resume"
                                          ) from exc
                accept(res)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(waves: List[List[Dict[str, Any]]], accept: Callable[[Dict[str, Any]], None], workers: Optional[int],
             threads: int, address: Optional[str]) -> None:
    import pickle

    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError("engine", f"the ray engine needs Ray Data: pip install 'ray[data]' ({exc})") from exc

    started = False
    if not ray.is_initialized():
        kwargs: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = workers or os.cpu_count() or 1
        ray.init(address=address, **kwargs)
        started = True
    quiet = [logging.getLogger(n) for n in ("ray.data", "ray")]
    levels = [lg.level for lg in quiet]
    caught = warnings.catch_warnings()
    caught.__enter__()
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\..*")  # Ray's own fields
    try:
        for lg in quiet:
            lg.setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = True  # results in manifest order: shards finish one by one
        for wave in waves:
            local = [s for s in wave if not _is_url(s["path"])]
            missing = [s for s in local if not os.path.isfile(s["path"])]
            for s in missing:  # read_binary_files fails the whole dataset on a missing file: record it here
                try:
                    _read_local(s["path"])
                    err: BaseException = VideoOpenError(s["path"], "not a regular file")
                except VideoOpenError as exc:
                    err = exc
                accept({"index": s["index"], "key": s["key"], "ok": False, "tokens": b"", "json": b"",
                        "num_tokens": 0, "seconds": 0.0, "timings": {}, "failure": _failure(s, err, True)})
            gone = {id(s) for s in missing}
            by_path: Dict[str, List[Dict[str, Any]]] = {}
            paths: List[str] = []
            for s in wave:
                if id(s) in gone:
                    continue
                key = _path_key(s["path"])
                if key not in by_path:
                    by_path[key] = []
                    paths.append(s["path"])
                by_path[key].append(s)
            if not paths:
                continue
            ds = ray.data.read_binary_files(paths, include_paths=True, override_num_blocks=len(paths))
            ds = ds.map_batches(_ray_batch, batch_size=1, batch_format="numpy", num_cpus=threads,
                                fn_kwargs={"specs_by_path": by_path, "threads": threads})
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for blob in batch["result"]:
                        accept(pickle.loads(blob))
            except PreprocessError:
                raise
            except Exception as exc:  # noqa: BLE001 - a task that crashed past Ray's retries, a lost node, ...
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise PreprocessError("ray", f"the Ray Data job failed ({type(exc).__name__}: {first}); "
                                             "finished shards are kept, rerun to resume") from exc
    finally:
        caught.__exit__(None, None, None)
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)
        if started:
            ray.shutdown()


# -- reading shards -----------------------------------------------------------------------------------------


def decode_sample(sample: Mapping[str, Any]) -> Tuple[str, Any, Dict[str, Any]]:
    """A raw webdataset sample (``{"__key__", "tokens.npz" | "tokens.safetensors", "json"}`` of bytes) ->
    ``(key, VisualTokens, meta)``. Use it as ``wds.WebDataset(urls).map(decode_sample)``."""
    key = str(sample.get("__key__", ""))
    for fmt in FORMATS:
        data = sample.get(f"tokens.{fmt}")
        if data is not None:
            break
    else:
        raise ConfigError(f"{sample.get('__url__', '<shard>')}:{key}", "sample has no tokens.npz / tokens.safetensors")
    raw = sample.get("json")
    meta = json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw) if raw else {}
    from .tokens import VisualTokens

    name = f"{sample.get('__url__', '<shard>')}:{key}"
    return key.rsplit("/", 1)[-1], VisualTokens.from_bytes(data, fmt, name=name), meta


def _iter_tar_plain(path: str) -> Iterator[Dict[str, Any]]:
    sample: Dict[str, Any] = {}
    with _typed_shard_errors(path), tarfile.open(path, "r:*") as tf:
        for m in tf:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            key, dot, ext = base.partition(".")
            if not dot:
                continue
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            if not sample:
                sample = {"__key__": key, "__url__": path}
            fh = tf.extractfile(m)
            sample[ext] = fh.read() if fh is not None else b""
    if sample:
        yield sample


@contextlib.contextmanager
def _typed_shard_errors(name: str) -> Iterator[None]:
    """A damaged or foreign tar shard raises TokensFileError naming it (tarfile's, gzip's and I/O errors)."""
    try:
        yield
    except Ov2Error:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise TokensFileError(name, f"not a readable tar shard ({type(exc).__name__}: {exc})") from exc


def _typed_samples(samples: Iterable[Mapping[str, Any]], name: str) -> Iterator[Mapping[str, Any]]:
    with _typed_shard_errors(name):
        yield from samples


def _shard_urls(pattern: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]) -> List[str]:
    if not isinstance(pattern, (str, os.PathLike)):
        return [os.fspath(p) for p in pattern]
    p = os.fspath(pattern)
    if os.path.isdir(p):
        return sorted(glob.glob(os.path.join(glob.escape(p), "shard-*.tar")))
    if "{" in p and not any(c in p for c in "*?["):
        import braceexpand  # a dependency of webdataset

        return list(braceexpand.braceexpand(p))
    if any(c in p for c in "*?["):
        return sorted(glob.glob(p))
    return [p]


def iter_shard(path: Union[str, "os.PathLike[str]"], use_webdataset: Optional[bool] = None
               ) -> Iterator[Tuple[str, Any, Dict[str, Any]]]:
    """Yields ``(key, VisualTokens, meta)`` of one shard in order (webdataset when importable and
    ``use_webdataset`` is not False, else :mod:`tarfile`)."""
    return load_shards([os.fspath(path)], use_webdataset=use_webdataset)


def load_shards(pattern: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
                use_webdataset: Optional[bool] = None) -> Iterator[Tuple[str, Any, Dict[str, Any]]]:
    """Yields ``(key, VisualTokens, meta)`` from shards: an output directory (all its ``shard-*.tar``), a glob
    (``DIR/shard-*.tar``), a brace range (``DIR/shard-{000000..000009}.tar``) or a list of paths.

    ``use_webdataset``: ``None`` uses webdataset when importable, ``True`` requires it, ``False`` reads with
    :mod:`tarfile`. Raises :class:`ConfigError` when nothing matches.
    """
    urls = _shard_urls(pattern)
    if not urls:
        raise ConfigError(os.fspath(pattern) if isinstance(pattern, (str, os.PathLike)) else "shards",
                          "no shard matches")
    for u in urls:
        if not _is_url(u) and not os.path.isfile(u):
            raise VideoOpenError(u, "no such shard")
    wds = None
    if use_webdataset is not False:
        try:
            import webdataset as wds
        except ImportError:
            if use_webdataset:
                raise
    if wds is not None:
        name = urls[0] if len(urls) == 1 else (os.fspath(pattern) if isinstance(pattern, (str, os.PathLike))
                                                else "shards")
        samples: Iterable[Mapping[str, Any]] = _typed_samples(
            wds.WebDataset(urls, shardshuffle=False, empty_check=False), name)
    else:
        samples = (s for u in urls for s in _iter_tar_plain(u))
    return (decode_sample(s) for s in samples)

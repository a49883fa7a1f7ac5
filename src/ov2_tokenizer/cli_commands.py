"""Built-in sub-commands of the ``ov2`` CLI (see :mod:`ov2_tokenizer.cli`)."""
from __future__ import annotations

import argparse
import json

from .cli import builtin


@builtin
def _register_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print stream information and the packet summary of videos "
                       "(without a video: how ov2 was built and which FFmpeg it runs on)")
    p.add_argument("videos", nargs="*", metavar="VIDEO")
    p.add_argument("--json", action="store_true", help="print one JSON object per video")

    def run(args: argparse.Namespace) -> int:
        from dataclasses import asdict

        from .video import open_video

        if not args.videos:  # ov2_tokenizer.build_info() (docs/packaging.md)
            from ._build_info import build_info, format_build_info

            print(json.dumps(build_info()) if args.json else format_build_info())
            return 0
        for path in args.videos:
            v = open_video(path)
            info = asdict(v.info)
            info["time_base"] = str(info["time_base"])
            pk = v.packets()
            info["packets"] = len(pk)
            info["bytes"] = int(pk.size.sum())
            info["keyframes"] = int(pk.keyframe.sum())
            if args.json:
                print(json.dumps({"path": path, **info}))
            else:
                print(path)
                for k, val in info.items():
                    print(f"  {k:18s} {val}")
        return 0

    p.set_defaults(func=run)


@builtin
def _register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="what the core reads from a video and the tokens each mode makes")
    p.add_argument("video", nargs="?", help="a video (default: the generated sample clip)")

    def run(args: argparse.Namespace) -> int:
        from .demo import main as demo_main

        return demo_main([args.video] if args.video else [])

    p.set_defaults(func=run)


# -- ecosystem commands: tokenize, show, primitives (docs/ecosystem.md) ----------------------------------------


def _config_from_args(pairs: list) -> "object":
    """``--config key=value`` pairs -> TokenizerConfig (values parsed as JSON when they parse, else strings)."""
    from .config import TokenizerConfig
    from .errors import ConfigError

    overrides = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError("--config", f"expected key=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides[key.strip()] = tuple(value) if isinstance(value, list) else value
    return TokenizerConfig().replace(**overrides)


def _add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="a TokenizerConfig field, e.g. --config max_canvases=16 --config num_frames=64 (repeatable)")


class _Progress:
    """Files done / total, frames per second and ETA: tqdm when importable, else one rewritten stderr line."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        import sys
        import time

        self.total, self.done, self.frames = total, 0, 0
        self.t0 = time.perf_counter()
        self._time = time.perf_counter
        self._stream = sys.stderr
        self._bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, name: str, frames: int) -> None:
        self.done += 1
        self.frames += frames
        if not self.enabled:
            return
        elapsed = max(1e-9, self._time() - self.t0)
        fps = self.frames / elapsed
        if self._bar is not None:
            self._bar.set_postfix_str(f"{fps:.0f} frames/s, {name}", refresh=False)
            self._bar.update(1)
            return
        eta = elapsed / self.done * (self.total - self.done)
        self._stream.write(f"\r[{self.done}/{self.total}] {fps:.0f} frames/s  ETA {int(eta) // 60:02d}:{int(eta) % 60:02d}"
                           f"  {name[:40]:40s}")
        self._stream.flush()

    def write(self, line: str) -> None:
        """Prints ``line`` on stderr without breaking the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self._stream)
        else:
            self._stream.write(("\n" if self.enabled and self.done else "") + line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.total:
            self._stream.write("\n")


@builtin
def _register_tokenize(sub: argparse._SubParsersAction) -> None:
    from .config import MODES

    p = sub.add_parser("tokenize", help="tokenize videos into .safetensors files (progress bar, summary table)")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--mode", default="codec_stream", choices=MODES)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--format", default="safetensors", choices=("safetensors", "npz"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_arg(p)

    def run(args: argparse.Namespace) -> int:
        import time
        from pathlib import Path

        from .errors import Ov2Error
        from .tokenize import tokenize_video

        cfg = _config_from_args(args.config)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        progress = _Progress(len(args.videos), enabled=not args.no_progress)
        rows, used, failed = [], set(), 0
        for path in args.videos:
            name = Path(path).stem or "video"
            target = name
            k = 1
            while target in used:
                k += 1
                target = f"{name}-{k}"
            used.add(target)
            t = time.perf_counter()
            try:
                vt = tokenize_video(path, mode=args.mode, config=cfg)
                dest = vt.save(out / f"{target}.{args.format}")
                frames = int(vt.meta.get("frames_decoded", 0) or 0)
                rows.append((path, "ok", vt.num_canvases, vt.num_tokens, frames, time.perf_counter() - t, str(dest)))
            except Ov2Error as exc:
                failed += 1
                frames = 0
                progress.write(f"ov2: error: {exc}")
                rows.append((path, type(exc).__name__, 0, 0, 0, time.perf_counter() - t, ""))
            progress.update(Path(path).name, frames)
        progress.close()
        head = ("video", "status", "canvases", "tokens", "frames", "seconds", "output")
        cells = [head] + [(r[0], r[1], str(r[2]), str(r[3]), str(r[4]), f"{r[5]:.2f}", r[6]) for r in rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        for j, c in enumerate(cells):
            print("  ".join(v.rjust(widths[i]) if 2 <= i <= 5 else v.ljust(widths[i]) for i, v in enumerate(c)).rstrip())
            if j == 0:
                print("  ".join("-" * w for w in widths))
        total_t = sum(r[5] for r in rows)
        print(f"{len(rows) - failed}/{len(rows)} videos, {sum(r[3] for r in rows)} tokens, "
              f"{sum(r[4] for r in rows)} frames decoded in {total_t:.1f} s")
        return 2 if failed else 0

    p.set_defaults(func=run)


@builtin
def _register_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="draw the bit-cost partition, the canvases and the token timeline of a video")
    p.add_argument("video", metavar="VIDEO")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for the three PNGs")
    _add_config_arg(p)

    def run(args: argparse.Namespace) -> int:
        from .pictures import render_show

        paths = render_show(args.video, args.out, config=_config_from_args(args.config))
        for kind, path in paths.items():
            print(f"{kind:9s} {path}")
        return 0

    p.set_defaults(func=run)


@builtin
def _register_primitives(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("primitives", help="dump packets, motion vectors (mv-extractor layout), frame types and "
                                          "residual energies of a video")
    p.add_argument("video", metavar="VIDEO")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="only the first N frames")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="decode threads")

    def run(args: argparse.Namespace) -> int:
        from .primitives import dump_primitives

        s = dump_primitives(args.video, args.out, max_frames=args.max_frames, num_threads=args.threads)
        print(f"{args.video}: {s['packets']} packets, {s['frames']} frames ({s['motion_source']} vectors) -> "
              f"{s['out_dir']}")
        return 0

    p.set_defaults(func=run)


@builtin
def _register_preprocess(sub: argparse._SubParsersAction) -> None:
    from .config import MODES

    p = sub.add_parser("preprocess", help="tokenize a manifest of videos into webdataset tar shards "
                                          "(local process pool or Ray Data; resumable)")
    p.add_argument("manifest", metavar="MANIFEST", help="a text file of video paths, or JSON lines "
                                                        '{"path": ..., "key": ..., "mode": ..., "config": {...}}')
    p.add_argument("--out", required=True, metavar="DIR", help="output directory of shard-NNNNNN.tar (created)")
    p.add_argument("--engine", default="local", choices=("local", "ray"))
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (local; 0: in this process) / CPUs of a locally started Ray instance "
                        "(default: all cores)")
    p.add_argument("--threads-per-worker", type=int, default=1, metavar="N", help="torch/decode threads per worker")
    p.add_argument("--shard-size", type=int, default=64, metavar="N", help="videos per shard (default 64)")
    p.add_argument("--mode", default="codec_stream", choices=MODES)
    p.add_argument("--format", default="npz", choices=("npz", "safetensors"))
    p.add_argument("--max-canvases", type=int, default=None, metavar="N")
    p.add_argument("--num-frames", type=int, default=None, metavar="N")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to use ('auto', 'ray://head:10001'); default: a local instance")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_arg(p)

    def run(args: argparse.Namespace) -> int:
        import sys

        from .preprocess import preprocess

        cfg = _config_from_args(args.config)
        direct = {"max_canvases": args.max_canvases, "num_frames": args.num_frames, "max_pixels": args.max_pixels}
        direct = {k: v for k, v in direct.items() if v is not None}
        if direct:
            cfg = cfg.replace(**direct)
        s = preprocess(args.manifest, args.out, engine=args.engine, mode=args.mode, config=cfg, fmt=args.format,
                       shard_size=args.shard_size, workers=args.workers, threads_per_worker=args.threads_per_worker,
                       ray_address=args.ray_address, progress=not args.no_progress)
        print(s)
        if s.unexpected:
            print(f"ov2: error: {s.unexpected} videos failed with unexpected (non-ov2) errors, see "
                  f"{s.failures_file}", file=sys.stderr)
            return 1
        return 0

    p.set_defaults(func=run)

"""Built-in sub-commands of the ``ov2`` CLI (see :mod:`ov2_tokenizer.cli`)."""
from __future__ import annotations

import argparse
import json

from .cli import builtin


@builtin
def _register_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print stream information and the packet summary of videos")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--json", action="store_true", help="print one JSON object per video")

    def run(args: argparse.Namespace) -> int:
        from dataclasses import asdict

        from .video import open_video

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

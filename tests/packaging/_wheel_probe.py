"""Runs inside the fresh venv that test_wheel.py installs the repaired wheel into (never imported by pytest).

usage: python _wheel_probe.py VIDEO [VIDEO...]  -> prints one JSON object on the last line of stdout.

Tokenizes the first video (codec_stream, the default mode), decodes a few frames of every video, then reports
build_info(), the FFmpeg (and other) shared objects mapped into the process from /proc/self/maps, and where
ov2_tokenizer was imported from, so the test can check that nothing came from the source tree or /usr/lib.
"""
from __future__ import annotations

import json
import os
import sys


def main(videos: list[str]) -> int:
    import ov2_tokenizer as ov2

    out: dict = {"ov2_file": ov2.__file__, "sys_path": sys.path,
                 "env": {k: os.environ.get(k) for k in ("LD_LIBRARY_PATH", "PKG_CONFIG_PATH", "PYTHONPATH",
                                                        "OV2_CORE_DIR", "LD_PRELOAD")}}
    vt = ov2.tokenize_video(videos[0])
    out["tokenized"] = {"video": videos[0], "tokens": int(len(vt.canvas)), "canvases": int(vt.canvases.shape[0])}
    decoded = {}
    for path in videos:
        v = ov2.open_video(path)
        n = 0
        for _ in v.frames(indices=list(range(min(8, max(1, v.info.num_frames or 1)))), with_mvs=True):
            n += 1
        decoded[os.path.basename(path)] = {"codec": v.info.codec, "frames": n}
    out["decoded"] = decoded
    out["build_info"] = ov2.build_info()
    maps = set()
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split(None, 5)
            if len(parts) == 6 and ".so" in parts[5]:
                maps.add(parts[5].strip())
    out["maps"] = sorted(maps)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

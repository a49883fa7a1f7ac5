"""Generated clips of the mode tests (small: the suite shares two cores) — encoded once per session."""
from __future__ import annotations

import numpy as np
import pytest

# Exact motion-compensation conditions: one reference, no B-frames, no weighted prediction, loop filter off,
# fixed GOP (keyint) without scene-cut I-frames, low constant qp.
EXACT_X264 = "ref=1:bframes=0:weightp=0:no-deblock=1:scenecut=0:me=esa:merange=16"


def grey_texture(h: int, w: int, seed: int) -> np.ndarray:
    """Grey textured uint8 H x W x 3 (equal channels)."""
    from ov2_tokenizer.samples import texture

    t = texture(h, w, seed=seed, smooth=1).astype(np.float32).mean(axis=2)
    t = 24 + (t - t.min()) / max(1e-6, float(t.max() - t.min())) * 207
    return np.repeat(np.round(t).astype(np.uint8)[..., None], 3, axis=2)


def _encode(path, n, render, fps, params):
    pytest.importorskip("av", reason="generated test videos are encoded with PyAV")
    from ov2_tokenizer.samples import encode_video

    return encode_video(path, n, render, fps=fps, codec="libx264",
                        options={"x264-params": params, "qp": "8", "preset": "medium"})


@pytest.fixture(scope="session")
def moving_block_clip(generated_dir):
    """(path, truth): 192x320 (H x W), 80 frames at 25 fps: static textured background, a 48x48 textured block
    moving by exactly (+4, +1) px per frame from (40, 60); GOP 40 (I-frames at 0 and 40)."""
    h, w, n = 192, 320, 80
    bg = grey_texture(h, w, 21)
    blk = 255 - grey_texture(48, 48, 22)
    vel, start = (4, 1), (16, 60)

    def render(i):
        img = bg.copy()
        x, y = start[0] + vel[0] * (i % 40), start[1] + vel[1] * (i % 40)
        img[y:y + 48, x:x + 48] = blk
        return img

    path = _encode(generated_dir / "modes_moving_block.mp4", n, render, 25, EXACT_X264 + ":keyint=40:min-keyint=40")
    return path, {"h": h, "w": w, "n": n, "vel": vel, "start": start, "size": 48, "gop": 40}

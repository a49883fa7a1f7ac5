"""``VisualTokens.load`` / ``from_bytes``: what ``save`` wrote comes back bit for bit, in every mode and both formats;
anything else — missing, foreign, damaged or inconsistent files — raises ``TokensFileError`` naming the file (it
used to surface as numpy's, zipfile's or safetensors' own errors, or load and fail later in ``patches()``)."""
from __future__ import annotations

import doctest
import json
import pickle
import zipfile

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
from ov2_tokenizer import errors  # noqa: E402
from ov2_tokenizer import tokens as tokens_mod  # noqa: E402
from ov2_tokenizer.preprocess import decode_sample  # noqa: E402
from ov2_tokenizer.tokens import VisualTokens  # noqa: E402

SMALL = dict(num_frames=16, max_canvases=4, max_pixels=12544, ovenc_slots=8, ovenc_size=64, ovenc_patch=16,
             ovenc_topk=64)


@pytest.fixture(scope="module")
def sample():
    return ov2.sample_video()


@pytest.fixture(scope="module")
def saved(sample, tmp_path_factory):
    """(VisualTokens, npz bytes, safetensors bytes) of a small codec_stream result."""
    d = tmp_path_factory.mktemp("tokens")
    vt = ov2.tokenize_video(sample, **SMALL)
    return vt, vt.save(d / "t.npz").read_bytes(), vt.save(d / "t.safetensors").read_bytes()


def _raises(path, match=None) -> errors.TokensFileError:
    with pytest.raises(errors.TokensFileError, match=match) as ei:
        VisualTokens.load(path)
    e = ei.value
    assert e.source == str(path) and str(e).startswith(str(path)) and e.cause
    assert pickle.loads(pickle.dumps(e)).cause == e.cause  # crosses DataLoader workers
    return e


def test_module_doctests():
    res = doctest.testmod(tokens_mod)
    assert res.attempted >= 2 and res.failed == 0


@pytest.mark.parametrize("mode", ["codec_stream", "frames", "image", "ovenc_topk", "cope"])
def test_every_mode_round_trips(sample, tmp_path, mode):
    if mode == "image":
        vt = ov2.tokenize_image(sample, max_pixels=12544)
    else:
        vt = ov2.tokenize_video(sample, mode=mode, **SMALL)
    assert vt._layout_problem() is None
    for suffix in (".npz", ".safetensors"):
        back = VisualTokens.load(vt.save(tmp_path / f"{mode}{suffix}"))
        assert back.equal(vt) and back.meta["mode"] == vt.meta["mode"]
        assert VisualTokens.from_bytes((tmp_path / f"{mode}{suffix}").read_bytes(), suffix[1:]).equal(vt)


def test_missing_directory_and_junk(saved, tmp_path):
    _raises(tmp_path / "none.npz", "no such file")
    _raises(tmp_path, "not a regular file")
    rng = np.random.default_rng(3)
    for name in ("junk.npz", "junk.safetensors"):
        (tmp_path / name).write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
        _raises(tmp_path / name, "not a readable")
    (tmp_path / "text.npz").write_text("hello")
    _raises(tmp_path / "text.npz", "not a readable")


def test_truncated_files(saved, tmp_path):
    _, npz, st = saved
    for data, suffix in ((npz, ".npz"), (st, ".safetensors")):
        for cut in (8, len(data) // 3, len(data) - 1):
            p = tmp_path / f"cut{cut}{suffix}"
            p.write_bytes(data[:cut])
            _raises(p)


def test_foreign_npz_files(tmp_path):
    p = tmp_path / "other.npz"
    np.savez(p, a=np.arange(3))
    _raises(p, "no __meta__")
    np.savez(p, __meta__=np.frombuffer(b"{}", np.uint8), canvases=np.zeros((1, 3, 14, 14), np.uint8))
    _raises(p, "no arrays")
    np.savez(p, __meta__=np.frombuffer(b"{}", np.uint8), x=np.array([{"a": 1}], dtype=object))
    _raises(p, "not a readable")  # object arrays are never unpickled
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("__meta__.npy", b"not an npy")
    _raises(p, "not a readable")


def _rewrite(vt: VisualTokens, tmp_path, name: str, **arrays) -> object:
    """The npz of ``vt`` with some arrays replaced (``__meta__`` as bytes)."""
    d = vt._arrays()
    d["__meta__"] = np.frombuffer(arrays.pop("__meta__", None) or json.dumps(vt.meta, default=str).encode(), np.uint8)
    d.update(arrays)
    p = tmp_path / name
    with open(p, "wb") as fh:
        np.savez(fh, **d)
    return p


def test_inconsistent_arrays(saved, tmp_path):
    vt = saved[0]
    n, s = vt.num_tokens, vt.num_canvases
    cases = {
        "dtype": dict(canvas=vt.canvas.numpy().astype(np.int64)),
        "rows": dict(frame=vt.frame.numpy()[:-1]),
        "tail": dict(pos_thw=np.zeros((n, 2), np.int32)),
        "canvas_range": dict(canvas=np.full(n, s, np.int32)),
        "cell_range": dict(can_hw=np.full((n, 2), 10_000, np.int16)),
        "kinds": dict(canvas_kind=np.zeros(s + 1, np.int8)),
        "frame_below": dict(frame=np.full(n, -2, np.int32)),
        "canvas_size": dict(canvases=np.zeros((s, 3, 15, 14), np.uint8)),
        "meta_list": dict(__meta__=b"[1, 2]"),
        "meta_patch": dict(__meta__=b'{"patch_size": 0}'),
        "float16": dict(t_s=vt.t_s.numpy().astype(np.float16)),
        "uint16": dict(group=vt.group.numpy().astype(np.uint16)),
    }
    for name, arrays in cases.items():
        e = _raises(_rewrite(vt, tmp_path, f"{name}.npz", **arrays))
        assert not e.cause.startswith("not a readable"), (name, e.cause)  # it parses; the layout check names it
    assert VisualTokens.load(_rewrite(vt, tmp_path, "same.npz")).equal(vt)  # the rewrite itself is faithful


def test_from_bytes_and_shard_samples(saved):
    vt, npz, st = saved
    assert VisualTokens.from_bytes(npz).equal(vt) and VisualTokens.from_bytes(st, "safetensors").equal(vt)
    with pytest.raises(errors.ConfigError, match="format"):
        VisualTokens.from_bytes(npz, "pt")
    with pytest.raises(errors.TokensFileError) as ei:
        VisualTokens.from_bytes(npz[:100])
    assert ei.value.source == "<bytes>"
    key, back, meta = decode_sample({"__key__": "a/clip", "__url__": "s.tar", "tokens.npz": npz, "json": b"{}"})
    assert key == "clip" and back.equal(vt) and meta == {}
    with pytest.raises(errors.TokensFileError) as ei:
        decode_sample({"__key__": "clip", "__url__": "s.tar", "tokens.safetensors": st[:-5]})
    assert ei.value.source == "s.tar:clip"

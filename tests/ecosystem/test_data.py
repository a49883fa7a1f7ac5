"""VideoTokenDataset, manifests, collate_visual_tokens invariants, and DataLoader workers under fork / spawn."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest
import torch

import ov2_tokenizer as ov2
from ov2_tokenizer.data import TokenFailure, TokenJob, VideoTokenDataset, collate_visual_tokens, read_manifest
from ov2_tokenizer.errors import ConfigError, Ov2Error, VideoOpenError

from _eco_util import SMALL, RssDataset, batch_signature, generated_clips, shared_fast
from ov2_testing import shared_video_paths


@pytest.fixture(scope="module")
def clips(generated_dir):
    return generated_clips(generated_dir, n=3)


@pytest.fixture(scope="module")
def shared_dir():
    paths = shared_video_paths()
    return paths[0].parent if paths else None


def test_patches_in_place_equal_the_plain_formula():
    """``patches()`` normalises in place (and into ``out=``): the values equal (x / 255 − mean) / std computed
    out of place, for float32 and bfloat16; a mis-shaped or non-contiguous ``out`` is refused."""
    vt = ov2.tokenize_video(ov2.sample_video(), **SMALL)
    p = vt.patch_size
    s, c, h, w = vt.canvases.shape
    grid = vt.canvases.reshape(s, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    sel = grid[vt.canvas.long(), vt.can_hw[:, 0].long(), vt.can_hw[:, 1].long()]
    cfg = vt.meta["config"]
    for dtype in (torch.float32, torch.bfloat16):
        mean = torch.tensor(cfg["image_mean"], dtype=dtype).view(1, 3, 1, 1)
        std = torch.tensor(cfg["image_std"], dtype=dtype).view(1, 3, 1, 1)
        want = ((sel.to(dtype) / 255.0 - mean) / std).reshape(sel.shape[0], -1)
        assert torch.equal(vt.patches(dtype=dtype), want)
        out = torch.empty(vt.num_tokens + 3, c * p * p, dtype=dtype)
        got = vt.patches(dtype=dtype, out=out[1:-2])
        assert torch.equal(out[1:-2], want) and got.data_ptr() == out[1:-2].data_ptr()
    with pytest.raises(ValueError):
        vt.patches(out=torch.empty(vt.num_tokens, c * p * p + 1))
    with pytest.raises(ValueError):
        vt.patches(out=torch.empty(c * p * p, vt.num_tokens).t())


def test_collate_invariants(clips):
    cs = ov2.tokenize_video(clips[0], config=ov2.TokenizerConfig(num_frames=32, max_canvases=10, max_pixels=50176))
    fr = ov2.tokenize_video(clips[1], mode="frames", num_frames=7, max_pixels=50176)
    cs2 = ov2.tokenize_video(ov2.sample_video(), **SMALL)
    fail = TokenFailure(index=9, source="x.mp4", mode="codec_stream", error="VideoOpenError", cause="gone")
    items = [cs, fail, fr, cs2]
    b = collate_visual_tokens(items)
    vts = [cs, fr, cs2]
    ns = [v.num_tokens for v in vts]
    assert b.batch_size == 3 and b.failures == [fail]
    assert b.cu_seqlens.dtype == torch.int32
    assert b.cu_seqlens.tolist() == [0, ns[0], ns[0] + ns[1], sum(ns)]
    # block order preserved: patches and positions are the samples' own, concatenated
    assert torch.equal(b.pixel_values, torch.cat([v.patches() for v in vts]))
    assert torch.equal(b.pos_thw, torch.cat([v.pos_thw for v in vts]).long())
    assert b.grid_thw.tolist() == [v.grid_thw[0].tolist() for v in vts]
    assert b.num_tokens == [n // 4 for n in ns]
    for i, v in enumerate(vts):
        sl = slice(int(b.cu_seqlens[i]), int(b.cu_seqlens[i + 1]))
        assert (b.sample_ids[sl] == i).all()
        assert torch.equal(b.frame[sl], v.frame)
        # windows: runs of 4 canvases, numbered after the previous samples' windows
        first_w = sum(-(-u.num_canvases // 4) for u in vts[:i])
        assert torch.equal(b.window_ids[sl], v.canvas.long() // 4 + first_w)
    # group ids: the same numbering as the model-side converter
    from ov2_model.inputs import visual_tokens_to_inputs

    ref = visual_tokens_to_inputs(vts)
    assert torch.equal(b.group_ids, ref.group_ids)
    assert torch.equal(b.pixel_values, ref.pixel_values)
    # segment offsets: every group / window is one contiguous run, lengths add up
    for ids, cu in ((b.group_ids, b.group_cu_seqlens), (b.window_ids, b.window_cu_seqlens)):
        assert cu.dtype == torch.int32 and int(cu[-1]) == sum(ns)
        assert len(cu) - 1 == len(torch.unique(ids))
        for k in range(len(cu) - 1):
            seg = ids[int(cu[k]):int(cu[k + 1])]
            assert (seg == seg[0]).all()
    per_canvas = cs.num_tokens // cs.num_canvases
    w_len = (b.window_cu_seqlens[1:] - b.window_cu_seqlens[:-1]).tolist()
    assert w_len[:3] == [4 * per_canvas, 4 * per_canvas, 2 * per_canvas]  # 10 canvases -> 4 + 4 + 2
    # codec groups of the codec_stream sample match its own records
    g0 = b.group_ids[: ns[0]]
    assert torch.equal(torch.unique_consecutive(g0), torch.arange(len(cs.groups["start_s"])))
    assert b.metadata[0]["frames_indices"] == sorted(set(cs.frame[cs.frame >= 0].tolist()))
    kw = b.model_kwargs()
    assert set(kw) == {"pixel_values_videos", "video_grid_thw", "patch_positions", "video_group_ids"}
    assert "video_group_ids" not in b.model_kwargs(groups="windows")


def test_collate_rejects_mixed_and_handles_all_failed(clips):
    img = ov2.tokenize_image(clips[0], max_pixels=50176)
    vid = ov2.tokenize_video(clips[0], mode="frames", num_frames=4, max_pixels=50176)
    with pytest.raises(ConfigError, match="mix images and videos"):
        collate_visual_tokens([img, vid])
    assert collate_visual_tokens([img]).model_kwargs().keys() >= {"pixel_values", "image_grid_thw"}
    fail = TokenFailure(0, "a.mp4", "frames", "VideoOpenError", "missing")
    empty = collate_visual_tokens([fail])
    assert empty.batch_size == 0 and empty.pixel_values.shape == (0, 588) and empty.cu_seqlens.tolist() == [0]
    with pytest.raises(ConfigError, match="frame_windows_size"):
        collate_visual_tokens([vid], frame_windows_size=0)


def test_manifest_overrides_extra_and_failures(tmp_path, clips):
    (tmp_path / "v.mp4").write_bytes(clips[0].read_bytes())
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    man = tmp_path / "train.jsonl"
    man.write_text("\n".join([
        "# comment",
        json.dumps({"path": "v.mp4", "mode": "frames", "config": {"num_frames": 5}, "caption": "a square"}),
        json.dumps({"path": str(clips[1]), "config": {"max_canvases": 6, "num_frames": 24}}),
        "",
        json.dumps({"path": "bad.mp4", "label": 3}),
    ]))
    jobs = read_manifest(man)
    assert [j.mode for j in jobs] == ["frames", "codec_stream", "codec_stream"]
    assert jobs[0].source == str(tmp_path / "v.mp4") and jobs[0].extra == {"caption": "a square"}
    ds = VideoTokenDataset(man, on_failure="skip", max_pixels=50176)
    a, b, c = ds[0], ds[1], ds[2]
    assert a.num_canvases == 5 and a.meta["mode"] == "frames"
    assert a.meta["dataset"] == {"index": 0, "source": str(tmp_path / "v.mp4"), "caption": "a square"}
    assert b.num_canvases == 6 and b.meta["config"]["num_threads"] == 1
    assert isinstance(c, TokenFailure) and c.error == "VideoOpenError" and c.source.endswith("bad.mp4")
    assert ds[-1] == c
    strict = VideoTokenDataset(man, max_pixels=50176)
    with pytest.raises(VideoOpenError, match="bad.mp4"):
        strict[2]
    # malformed manifests fail at construction, naming the line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"path": "v.mp4"}) + "\n" + json.dumps({"path": "v.mp4", "config": {"max_canvases": 1}}))
    with pytest.raises(ConfigError, match=r"bad.jsonl:2.*max_canvases"):
        read_manifest(bad)
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="bad.jsonl:1"):
        read_manifest(bad)
    bad.write_bytes(b"\xff\xfe binary, not UTF-8")
    with pytest.raises(VideoOpenError, match="cannot read the manifest"):
        read_manifest(bad)
    with pytest.raises(ConfigError, match="on_failure"):
        VideoTokenDataset([clips[0]], on_failure="ignore")
    with pytest.raises(ConfigError, match="mode"):
        VideoTokenDataset([TokenJob(str(clips[0]), mode="nope")])


def _jobs(clips, shared_dir, bad_path):
    """~24 token jobs: generated clips and the fast shared videos in two modes, plus one corrupt file."""
    base = [str(p) for p in clips] + [str(p) for p in shared_fast(shared_dir)]
    jobs = []
    for k in range(24):
        src = base[k % len(base)]
        if k % 3 == 1:
            jobs.append({"path": src, "mode": "frames", "config": {"num_frames": 4 + k % 5}})
        else:
            jobs.append({"path": src, "config": {"max_canvases": 4 + 2 * (k % 3)}})
    jobs.insert(7, {"path": str(bad_path)})
    return jobs


@pytest.fixture(scope="module")
def loader_setup(tmp_path_factory, clips, shared_dir):
    bad = tmp_path_factory.mktemp("bad") / "truncated.mp4"
    bad.write_bytes(clips[0].read_bytes()[:300])
    jobs = _jobs(clips, shared_dir, bad)
    ds = VideoTokenDataset(jobs, on_failure="skip", num_frames=32, max_pixels=50176)
    reference = [batch_signature(b) for b in torch.utils.data.DataLoader(
        ds, batch_size=3, num_workers=0, collate_fn=collate_visual_tokens)]
    return ds, reference


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_dataloader_workers_match_single_process(loader_setup, start_method):
    if start_method not in mp.get_all_start_methods():
        pytest.skip(f"{start_method} unavailable on this platform")
    ds, reference = loader_setup
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_visual_tokens,
                                         multiprocessing_context=start_method, timeout=120)
    got = [batch_signature(b) for b in loader]
    assert len(got) == len(reference) == 9
    assert sum(len(s["failures"]) for s in got) == 1  # the corrupt file is a failure record, not a crash
    for g, r in zip(got, reference):
        assert g.keys() == r.keys()
        for k in r:
            assert g[k] == r[k], k


def test_dataloader_raise_policy_propagates_the_file(loader_setup):
    ds, _ = loader_setup
    strict = VideoTokenDataset(ds.jobs, on_failure="raise", num_frames=32, max_pixels=50176)
    loader = torch.utils.data.DataLoader(strict, batch_size=4, num_workers=2, collate_fn=collate_visual_tokens,
                                         multiprocessing_context="fork", timeout=120)
    # torch re-raises a worker's exception by calling its class with one message argument; Ov2Error takes
    # (source, cause), so torch falls back to RuntimeError -- the message still names the class and the file.
    with pytest.raises((Ov2Error, RuntimeError), match=r"(?s)VideoOpenError.*truncated.mp4"):
        for _ in loader:
            pass


def test_worker_rss_stays_flat(clips):
    """40 jobs over 2 workers: each worker's RSS after its last items is within 10% of its early plateau."""
    ds = RssDataset([str(clips[k % len(clips)]) for k in range(40)], num_frames=32, max_canvases=8, max_pixels=50176)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=lambda b: b[0].meta["dataset"],
                                         multiprocessing_context="fork", timeout=120)
    by_pid: dict = {}
    for d in loader:
        by_pid.setdefault(d["pid"], []).append(d["rss"])
    assert len(by_pid) == 2
    for pid, rss in by_pid.items():
        assert len(rss) == 20
        early = max(rss[3:8])  # after warm-up (allocator pools, first imports)
        late = max(rss[-5:])
        assert late <= early * 1.10, f"worker {pid}: RSS {early / 2**20:.0f} MiB -> {late / 2**20:.0f} MiB"

"""DataLoader over the shared real videos (issue #10): 200 token jobs with 2 workers under fork and spawn yield the
same batches as single-process iteration, and each worker's RSS grows < 10 % between the first and the last 50
items. Skipped when ``../shared/videos`` is absent.

Jobs: batches of 5 jobs of one mode (``collate_visual_tokens`` packs one patch size and one modality per batch);
a cycle of 10 batches (50 jobs) gives every mode every file, with two size configs alternating inside a batch;
4 cycles make the 200 jobs, each cycle with other memory-neutral knobs (``temporal_coord``, ``anchor``, ``seed``).
With 2 workers and an even number of batches per cycle, each worker runs the same jobs in the first and in the
last 50 items, so the two RSS maxima compare like with like.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
from typing import List

import pytest
import torch

from ov2_tokenizer.data import PackedVisualTokens, collate_visual_tokens

from _eco_util import RssDataset
from ov2_testing import shared_video_paths

MODES = ("codec_stream", "frames", "image", "ovenc_topk", "cope")
#: Two size configs per mode (alternating inside each batch); small enough for 720p inputs on 2 cores.
SIZES = {
    "codec_stream": [dict(num_frames=16, max_canvases=4, max_pixels=50176), dict(num_frames=8, max_canvases=2,
                                                                                max_pixels=12544)],
    "frames": [dict(num_frames=4, max_pixels=50176), dict(num_frames=2, max_pixels=12544, sampling="chunk")],
    "image": [dict(max_pixels=50176), dict(max_pixels=12544)],
    "ovenc_topk": [dict(ovenc_slots=8, ovenc_size=128, ovenc_patch=16, ovenc_topk=128),
                   dict(ovenc_slots=4, ovenc_size=64, ovenc_patch=16, ovenc_topk=64)],
    "cope": [dict(num_frames=2, max_canvases=2, max_pixels=12544), dict(num_frames=3, max_canvases=2,
                                                                        max_pixels=12544)],
}
#: Per cycle: knobs that change tokens but not the memory a job needs.
CYCLE_KNOBS = [dict(temporal_coord="frame"), dict(temporal_coord="slot"),
               dict(temporal_coord="frame", anchor="center"), dict(temporal_coord="slot", seed=3)]
BATCH = 5
N_JOBS = 200
CYCLE = 50
WINDOW = 50


def _files():
    return list(shared_video_paths())


def make_jobs(files) -> List[dict]:
    jobs = []
    for c in range(N_JOBS // CYCLE):
        for b in range(CYCLE // BATCH):
            mode = MODES[b % len(MODES)]
            for j in range(BATCH):
                f = files[(BATCH * (b // len(MODES)) + j) % len(files)]
                jobs.append({"path": str(f), "mode": mode, "config": {**SIZES[mode][j % 2], **CYCLE_KNOBS[c]}})
    return jobs


def _canon(v):
    """Tensors (also inside metadata: cope's Δ tensors) by dtype, shape and hash; containers recursively."""
    if isinstance(v, torch.Tensor):
        return (str(v.dtype), tuple(v.shape), hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest())
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    return v


def signature(batch: PackedVisualTokens) -> dict:
    """Everything a packed batch carries, minus the worker's pid and RSS."""
    sig = {}
    for name in batch.__dataclass_fields__:
        v = getattr(batch, name)
        if isinstance(v, torch.Tensor):
            sig[name] = _canon(v)
    md = []
    for m in batch.metadata:
        m = dict(m)
        m["dataset"] = {k: v for k, v in m.get("dataset", {}).items() if k not in ("pid", "rss")}
        md.append(_canon(m))
    sig["metadata"] = md
    sig["failures"] = [(f.index, f.source, f.error, f.cause) for f in batch.failures]
    sig["num_tokens"] = list(batch.num_tokens)
    sig["scalars"] = (batch.frame_windows_size, batch.modality)
    return sig


def rss_rows(batch: PackedVisualTokens) -> list:
    return [(m["dataset"]["index"], m["dataset"]["pid"], m["dataset"]["rss"]) for m in batch.metadata]


@pytest.fixture(scope="module")
def setup():
    files = _files()
    if not files:
        pytest.skip("../shared/videos absent")
    jobs = make_jobs(files)
    assert len(jobs) == N_JOBS
    ds = RssDataset(jobs, on_failure="skip")
    reference = [signature(b) for b in torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=0,
                                                                   collate_fn=collate_visual_tokens)]
    return ds, reference


def test_jobs_cover_files_modes_and_configs(setup):
    ds, reference = setup
    files = {j.source for j in ds.jobs}
    assert files == {str(p) for p in _files()}
    combos = {(j.source, j.mode) for j in ds.jobs[:CYCLE]}
    assert combos == {(str(p), m) for p in _files() for m in MODES}  # every file in every mode, each cycle
    assert len(reference) == N_JOBS // BATCH
    assert sum(len(s["failures"]) for s in reference) == 0  # the shared videos all tokenize


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_two_workers_match_single_process_and_rss_is_flat(setup, start_method):
    if start_method not in mp.get_all_start_methods():
        pytest.skip(f"{start_method} unavailable on this platform")
    ds, reference = setup
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=2, collate_fn=collate_visual_tokens,
                                         multiprocessing_context=start_method, timeout=300)
    got, rows = [], []
    for b in loader:
        got.append(signature(b))
        rows += rss_rows(b)
    assert len(got) == len(reference)
    for k, (g, r) in enumerate(zip(got, reference)):
        assert g.keys() == r.keys()
        diff = [name for name in r if g[name] != r[name]]
        assert not diff, f"batch {k} ({ds.jobs[k * BATCH].mode}): {diff} differ from single-process iteration"
    assert [i for i, _, _ in rows] == list(range(N_JOBS))
    pids = sorted({p for _, p, _ in rows})
    assert len(pids) == 2
    report = []
    for pid in pids:
        first = max(r for i, p, r in rows if p == pid and i < WINDOW)
        last = max(r for i, p, r in rows if p == pid and i >= N_JOBS - WINDOW)
        report.append(f"worker {pid}: {first / 2**20:.1f} MiB (first {WINDOW}) -> {last / 2**20:.1f} MiB "
                      f"(last {WINDOW}), {100 * (last - first) / first:+.2f} %")
        assert last < first * 1.10, report[-1]
    print(f"{start_method}: " + "; ".join(report))


def test_collate_keeps_large_group_arrays_as_tensors(generated_dir):
    """cope's Δ tensors reach the packed batch's metadata as tensors (shared with the sample), not as nested lists:
    as lists one 720p sample cost ~100 MB and seconds in the collate function and in worker -> parent pickling."""
    import pickle

    import ov2_tokenizer as ov2
    from _eco_util import generated_clips

    clip = generated_clips(generated_dir, n=1)[0]
    vt = ov2.tokenize_video(clip, mode="cope", num_frames=3, max_canvases=2, max_pixels=12544)
    big = {k for k, v in vt.groups.items() if v.dim() > 1}
    assert {"delta_motion", "delta_residual"} <= big
    b = collate_visual_tokens([vt])
    groups = b.metadata[0]["groups"]
    assert groups.keys() == vt.groups.keys()
    for k, v in vt.groups.items():
        if k in big:
            assert isinstance(groups[k], torch.Tensor) and torch.equal(groups[k], v)
        else:
            assert groups[k] == v.tolist()
    # pickled size stays at the tensors' bytes (as lists: 1.8x, and 100x the time)
    raw = sum(v.numel() * v.element_size() for v in vt.groups.values())
    assert len(pickle.dumps(b.metadata)) < 1.2 * raw + 65536

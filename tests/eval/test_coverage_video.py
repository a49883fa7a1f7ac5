"""``ov2 eval coverage``: event coverage of the tokenizer's modes on real tokenizations (issue #8)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")

from ov2_model.eval.cli import register  # noqa: E402
from ov2_model.eval.coverage_video import bitcost_peak_events, coverage_report, read_events  # noqa: E402
from ov2_model.eval.synthetic import SyntheticSpec, generate_video  # noqa: E402

from ov2_testing import shared_video_paths  # noqa: E402


@pytest.fixture(scope="module")
def periodic(tmp_path_factory):
    d = tmp_path_factory.mktemp("cov")
    video, annot = d / "p04.mp4", d / "p04.json"
    generate_video(str(video), SyntheticSpec(duration=10.0, period=0.4, seed=3), str(annot))
    return str(video), str(annot)


def test_codec_stream_covers_more_events_than_frames(periodic, tmp_path):
    video, annot = periodic
    events = read_events(annot)
    assert len(events) == 25
    res = coverage_report(video, events, 2048, delta=0.1, png=str(tmp_path / "cov.png"))
    cs, fr = res["modes"]["codec_stream"], res["modes"]["frames"]
    assert res["total_tokens"]["codec_stream"] == res["total_tokens"]["frames"]
    assert cs["event_recall"] > fr["event_recall"]
    assert (tmp_path / "cov.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_coverage_writes_json(periodic, tmp_path, capsys):
    video, annot = periodic
    parser = argparse.ArgumentParser(prog="ov2")
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cov.json"
    args = parser.parse_args(["eval", "coverage", video, annot, "--budget", "2048", "--json", str(out)])
    assert args.func(args) == 0
    doc = json.loads(out.read_text())
    assert doc["reports"][0]["budget"] == 2048
    assert "event_recall@0.1" in capsys.readouterr().out


def test_bitcost_peaks_are_local_maxima_of_packet_size(periodic):
    video, _ = periodic
    ev = bitcost_peak_events(video, min_gap_s=1.0)
    assert ev == sorted(ev) and all(b - a >= 1.0 for a, b in zip(ev, ev[1:]))
    pk = ov2.open_video(video).packets()
    pb = ~pk.keyframe
    thr = pk.size[pb].mean() + 1.5 * pk.size[pb].std()
    for t in ev:  # each event is a P/B packet above the threshold
        i = int(np.argmin(np.abs(pk.pts_s - t)))
        assert pk.size[i] > thr


@pytest.mark.parametrize("path", shared_video_paths(), ids=lambda p: p.name)
def test_coverage_report_runs_on_shared_videos(path):
    """Demonstration only: events are bit-cost peaks, not ground truth."""
    events = bitcost_peak_events(str(path))
    cfg = ov2.TokenizerConfig(num_frames=64)
    res = coverage_report(str(path), events, 2048, delta=0.1, config=cfg)
    for m in ("codec_stream", "frames"):
        assert 0.0 <= res["modes"][m]["event_free_token_share"] <= 1.0

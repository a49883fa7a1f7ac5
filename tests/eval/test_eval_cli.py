"""``ov2 eval`` plug-in, exercised through a plain argparse parser (entry points exist only once installed)."""
from __future__ import annotations

import argparse
import json

import pytest

from ov2_model.eval import cli
from ov2_model.eval.jumpscore import jumpscore

Ov2Error = cli.ConfigError  # ov2_tokenizer.errors.ConfigError when ov2_tokenizer imports


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ov2")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GT = {"a": [0.5, 0.9, 1.3, 1.7], "b": [1.0, 2.0], "c": [0.4, 0.8]}


def test_jumpscore_command(tmp_path, capsys):
    ann = _jsonl(tmp_path / "ann.jsonl", [{"id": k, "timestamps": v} for k, v in GT.items()])
    pred = _jsonl(tmp_path / "pred.jsonl", [
        {"id": "a", "prediction": "The starts are 0.5s, 0.92s, 1.31s and 2.5s."},
        {"id": "b", "prediction": [[1.0, 0.9], [5.0, 0.8], [2.0, 0.7]]},
        {"id": "zzz", "prediction": [1.0]},
    ])
    out = tmp_path / "res.json"
    assert _run(["eval", "jumpscore", pred, ann, "--json", str(out), "--per-item"]) == 0
    res = json.loads(out.read_text())
    expect = [jumpscore("The starts are 0.5s, 0.92s, 1.31s and 2.5s.", GT["a"]),
              jumpscore([[1.0, 0.9], [5.0, 0.8], [2.0, 0.7]], GT["b"]), jumpscore("", GT["c"])]
    want = sum(e["mAP"] for e in expect) / 3
    assert res["summary"]["mAP"] == pytest.approx(want)
    assert res["missing"] == ["c"] and res["unused"] == ["zzz"]
    assert [r["id"] for r in res["per_item"]] == ["a", "b", "c"]
    captured = capsys.readouterr()
    assert f"{want:.4f}" in captured.out and "JumpScore over 3 videos (1 without prediction)" in captured.out
    assert "no prediction" in captured.err and "no annotation" in captured.err


def test_jumpscore_reads_generator_annotation_and_custom_deltas(tmp_path, capsys):
    (tmp_path / "clip.json").write_text(json.dumps({"id": "clip", "video": "clip.mp4", "timestamps": [0.3, 0.7]}, indent=1))
    pred = _jsonl(tmp_path / "p.jsonl", [{"id": "clip", "answer": "0.35, 0.7"}])
    assert _run(["eval", "jumpscore", pred, str(tmp_path / "clip.json"), "--deltas", "0.01,0.1"]) == 0
    out = capsys.readouterr().out
    assert "0.01" in out and "0.2500" in out and "1.0000" in out  # AP@0.01 = 0.5*0.5, AP@0.1 = 1


def test_pairing_by_order_and_errors(tmp_path):
    ann = _jsonl(tmp_path / "a.jsonl", [{"timestamps": [1.0]}, {"timestamps": [2.0]}])
    pred = _jsonl(tmp_path / "p.jsonl", [{"prediction": "1.0"}, {"prediction": "5"}])
    res = cli.run_jumpscore(pred, ann)
    assert res["summary"]["mAP"] == 0.5
    short = _jsonl(tmp_path / "s.jsonl", [{"prediction": "1.0"}])
    with pytest.raises(Ov2Error, match="no ids"):
        cli.run_jumpscore(short, ann)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "timestamps": [1]}\n{not json\n')
    with pytest.raises(Ov2Error, match=r"bad.jsonl:2"):
        cli.run_jumpscore(pred, str(bad))
    with pytest.raises(Ov2Error, match="cannot read"):
        cli.run_jumpscore(str(tmp_path / "missing.jsonl"), ann)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"id": "x"}\n\x9b\xff')
    with pytest.raises(Ov2Error, match="not UTF-8"):  # was a UnicodeDecodeError traceback from the CLI
        cli.run_jumpscore(str(binary), ann)
    noid = _jsonl(tmp_path / "n.jsonl", [{"id": "x", "gt_missing": []}])
    with pytest.raises(Ov2Error, match="timestamps"):
        cli.run_jumpscore(_jsonl(tmp_path / "q.jsonl", [{"id": "x", "prediction": "1"}]), noid)


def test_grounding_command(tmp_path, capsys):
    ann = _jsonl(tmp_path / "ann.jsonl", [
        {"id": "q1", "moment": [0, 10]},
        {"id": "q2", "timestamp": [20.0, 30.0]},
        {"qid": "q3", "relevant_windows": [[0, 4]], "duration": 8, "relevant_clip_ids": [1, 2],
         "saliency_scores": [[4, 4, 3], [2, 1, 4]]},
    ])
    pred = _jsonl(tmp_path / "pred.jsonl", [
        {"id": "q1", "prediction": "The moment is from 0 to 6 seconds."},
        {"id": "q2", "prediction": "no idea"},
        {"qid": "q3", "pred_relevant_windows": [[0, 2, 0.1], [0, 4, 0.9]], "pred_saliency_scores": [0.1, 0.9, 0.5, 0.0]},
    ])
    out = tmp_path / "g.json"
    assert _run(["eval", "grounding", pred, ann, "--json", str(out), "--per-item"]) == 0
    res = json.loads(out.read_text())
    m, h = res["moment"], res["highlight"]
    assert m["R1@0.5"] == pytest.approx(2 / 3) and m["R1@0.7"] == pytest.approx(1 / 3)
    assert m["mIoU"] == pytest.approx((0.6 + 0 + 1) / 3, abs=1e-6) and m["num_unparsed"] == 1
    assert h["mAP"] == pytest.approx(2.5 / 3) and h["HIT@1"] == 1.0 and h["num_queries"] == 1
    text = capsys.readouterr().out
    assert "Moment retrieval over 3 queries" in text and "HL-mAP" in text


def test_synth_command(tmp_path, capsys):
    pytest.importorskip("av")
    out = tmp_path / "s.mp4"
    assert _run(["eval", "synth", str(out), "--duration", "1", "--period", "0.3", "--seed", "4", "--distractor"]) == 0
    ann = json.loads((tmp_path / "s.json").read_text())
    assert ann["num_frames"] == 30 and ann["generator"]["distractor"] is True and out.stat().st_size > 1000
    assert "30 frames" in capsys.readouterr().out
    with pytest.raises(Ov2Error):
        _run(["eval", "synth", str(tmp_path / "x.mp4"), "--width", "63"])


def test_bare_eval_prints_help(capsys):
    assert _run(["eval"]) == 1
    assert "jumpscore" in capsys.readouterr().out

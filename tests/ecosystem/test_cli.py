"""``ov2 tokenize`` / ``ov2 show`` / ``ov2 primitives``: files, PNG validity and size, errors."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import ov2_tokenizer as ov2
from ov2_tokenizer.cli import main
from ov2_tokenizer.pictures import PNG_SIZES
from ov2_tokenizer.tokens import VisualTokens
from ov2_tokenizer.video import MV_COLUMNS

from _eco_util import moving_clip, png_size
from ov2_testing import shared_video_paths


@pytest.fixture(scope="module")
def clip(generated_dir):
    return moving_clip(generated_dir / "eco_clip_2.mp4", seed=2)


@pytest.mark.parametrize("command", ["tokenize", "show", "primitives"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and "--out" in capsys.readouterr().out


def test_tokenize_writes_files_summary_and_one_line_errors(tmp_path, clip, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"garbage" * 50)
    out = tmp_path / "tok"
    rc = main(["tokenize", str(clip), str(bad), str(ov2.sample_video()), "--out", str(out),
               "--config", "max_canvases=6", "--config", "num_frames=24", "--config", "max_pixels=50176"])
    cap = capsys.readouterr()
    assert rc == 2  # one file failed
    errors = [ln for ln in cap.err.splitlines() if "ov2: error:" in ln]
    assert len(errors) == 1 and "broken.mp4" in errors[0] and "not a readable media file" in errors[0]
    assert "frames/s" in cap.err  # the progress bar
    lines = cap.out.splitlines()
    assert lines[0].split()[:6] == ["video", "status", "canvases", "tokens", "frames", "seconds"]
    assert "2/3 videos" in lines[-1]
    saved = VisualTokens.load(out / f"{clip.stem}.safetensors")
    ref = ov2.tokenize_video(clip, num_frames=24, max_canvases=6, max_pixels=50176)
    assert saved.equal(ref) and saved.num_canvases == 6
    assert (out / f"{ov2.sample_video().stem}.safetensors").exists()
    assert main(["tokenize", str(clip), "--out", str(out), "--config", "nope=1"]) == 2
    assert "nope" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["tokenize", str(clip), "--out", str(a_file)]) == 2  # an --out that is a file: one line
    err = capsys.readouterr().err
    assert err.startswith("ov2: error:") and str(a_file) in err and "Traceback" not in err


def _check_pngs(out, stem):
    for kind, size in PNG_SIZES.items():
        path = out / f"{stem}_{kind}.png"
        assert path.stat().st_size > 10_000, path  # a drawn figure, not a blank canvas
        assert png_size(path) == size, path


def test_show_writes_three_pngs(tmp_path, clip, capsys):
    out = tmp_path / "show"
    assert main(["show", str(ov2.sample_video()), "--out", str(out), "--config", "num_frames=64",
                 "--config", "max_canvases=16"]) == 0
    _check_pngs(out, ov2.sample_video().stem)
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["show", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.mp4" in err[0]


@pytest.mark.skipif(not shared_video_paths(), reason="shared videos absent")
def test_show_on_every_shared_video(tmp_path):
    for path in shared_video_paths():
        assert main(["show", str(path), "--out", str(tmp_path), "--config", "num_frames=48",
                     "--config", "max_canvases=12", "--config", "max_pixels=100352"]) == 0, path
        _check_pngs(tmp_path, path.stem)


def test_primitives_dump(tmp_path, clip, capsys):
    out = tmp_path / "prim"
    assert main(["primitives", str(clip), "--out", str(out), "--max-frames", "20"]) == 0
    reader = ov2.open_video(clip)
    pk = reader.packets()
    with open(out / "packets.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(pk) and [int(r["size"]) for r in rows] == pk.size.tolist()
    with open(out / "frames.csv") as fh:
        frames = list(csv.DictReader(fh))
    assert len(frames) == 20
    types = (out / "frame_types.txt").read_text().split()
    assert types == [r["pict_type"] for r in frames] and types[0] == "I"
    assert len((out / "timestamps.txt").read_text().split()) == 20
    energy = np.load(out / "residual_energy.npy")
    is_i = np.array([t == "I" for t in types])
    assert energy.shape == (20,) and is_i.sum() == 2  # the clip's GOP is 12 frames
    assert (energy[is_i] == 0).all() and (energy[~is_i] > 0).all()
    ref = {f.index: f for f in reader.frames(indices=range(20), with_luma=False, with_mvs=True)}
    for i in range(20):
        mvs = np.load(out / "motion_vectors" / f"mvs-{i}.npy")
        assert mvs.dtype == np.int32 and mvs.shape[1] == len(MV_COLUMNS) == 10
        assert np.array_equal(mvs, ref[i].motion_vectors)
    assert np.load(out / "motion_vectors" / "mvs-0.npy").shape == (0, 10)  # I-frame
    info = json.loads((out / "info.json").read_text())
    assert info["motion_source"] == "codec" and info["mv_columns"][0] == "source"
    assert main(["primitives", str(tmp_path / "nope.mp4"), "--out", str(out)]) == 2
    assert "nope.mp4" in capsys.readouterr().err

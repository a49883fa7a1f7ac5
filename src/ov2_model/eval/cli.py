"""``ov2 eval``: score model outputs (JumpScore, temporal grounding) and generate synthetic JumpScore clips.

Plug-in of the ``ov2`` command line (entry point ``ov2.cli`` → :func:`register`)::

    ov2 eval jumpscore PRED.jsonl ANNOT.jsonl [--deltas 0.1,0.2,0.3] [--per-item] [--json OUT]
    ov2 eval grounding PRED.jsonl ANNOT.jsonl [--iou 0.3,0.5,0.7] [--min-score 4] [--per-item] [--json OUT]
    ov2 eval synth OUT.mp4 [--duration 30] [--period 0.4] [--seed 0] [--distractor] [--pan-speed 8] ...

Input files are JSON lines (one object per line); a file holding one JSON object or one JSON array is read
too (so a generator annotation ``clip.json`` can be passed as is). Predictions and annotations are joined on
``id`` (or ``qid``, ``video_id``, ``video``); when neither file has any of these keys, records are paired by
line order (the counts must be equal). The record fields are documented in ``docs/eval.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

try:
    from ov2_tokenizer.errors import ConfigError
except ImportError:  # ov2_tokenizer unusable here (e.g. its native extension is not built): same interface

    class ConfigError(ValueError):  # type: ignore[no-redef]
        """Bad input file or option: ``"<source>: <cause>"`` (stand-in for ``ov2_tokenizer.errors.ConfigError``)."""

        def __init__(self, source: str, cause: str):
            self.source, self.cause = str(source), str(cause)
            super().__init__(f"{self.source}: {self.cause}")

from . import grounding as G
from . import jumpscore as J

__all__ = ["register", "read_records", "run_jumpscore", "run_grounding", "ConfigError"]

_ID_KEYS = ("id", "qid", "video_id", "video")
_TEXT_KEYS = ("prediction", "answer", "response", "output", "text", "pred")


def read_records(path: str) -> list[dict[str, Any]]:
    """JSON objects from ``path``: JSON lines, or a single JSON object / array. Errors name file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    stripped = text.strip()
    if not stripped:
        return []
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return [whole]
    if isinstance(whole, list):
        if not all(isinstance(x, dict) for x in whole):
            raise ConfigError(path, "a JSON array of objects is expected")
        return whole
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}", f"invalid JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"{path}:{n}", "each line must be a JSON object")
        out.append(rec)
    return out


def _rid(rec: dict[str, Any]) -> str | None:
    for k in _ID_KEYS:
        if k in rec:
            return str(rec[k])
    return None


def _join(preds: list[dict], annots: list[dict], pred_path: str, annot_path: str) -> tuple[list[tuple[str, dict, dict | None]], list[str]]:
    """``[(id, annotation, prediction or None)]`` in annotation order, and ids of predictions left unused."""
    a_ids = [_rid(a) for a in annots]
    p_ids = [_rid(p) for p in preds]
    if all(i is None for i in a_ids) and all(i is None for i in p_ids):
        if len(preds) != len(annots):
            raise ConfigError(pred_path, f"no ids and {len(preds)} predictions for {len(annots)} annotations")
        return [(str(k), a, p) for k, (a, p) in enumerate(zip(annots, preds))], []
    if any(i is None for i in a_ids):
        raise ConfigError(annot_path, f"a record has none of the id keys {_ID_KEYS}")
    if any(i is None for i in p_ids):
        raise ConfigError(pred_path, f"a record has none of the id keys {_ID_KEYS}")
    by_id: dict[str, dict] = {}
    for i, p in zip(p_ids, preds):
        if i in by_id:
            raise ConfigError(pred_path, f"duplicate id {i!r}")
        by_id[i] = p  # type: ignore[index]
    seen = set()
    rows = []
    for i, a in zip(a_ids, annots):
        if i in seen:
            raise ConfigError(annot_path, f"duplicate id {i!r}")
        seen.add(i)
        rows.append((i, a, by_id.get(i)))  # type: ignore[arg-type]
    unused = [i for i in by_id if i not in seen]
    return rows, unused  # type: ignore[return-value]


def _field(rec: dict, keys: Sequence[str]) -> Any:
    for k in keys:
        if k in rec:
            return rec[k]
    return None


def _floats(arg: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in arg.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {arg!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def _warn(msg: str) -> None:
    print(f"ov2 eval: warning: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------------- jumpscore
def run_jumpscore(pred_path: str, annot_path: str, deltas: Sequence[float] = J.DEFAULT_DELTAS) -> dict[str, Any]:
    """Score a predictions file against an annotations file; ``{"summary", "per_item", "missing", "unused"}``.

    Prediction record: ``{"id": ..., "prediction": <answer text> | [seconds, ...] | [[seconds, confidence], ...]}``
    (``answer``, ``response``, ``output``, ``text`` are read as ``prediction`` too). Annotation record:
    ``{"id": ..., "timestamps": [seconds, ...]}`` (``cycle_starts``, ``ground_truth``, ``gt`` accepted).
    A missing prediction scores as an empty answer. The summary averages every metric over videos.
    """
    rows, unused = _join(read_records(pred_path), read_records(annot_path), pred_path, annot_path)
    if not rows:
        raise ConfigError(annot_path, "no annotations")
    per_item: list[dict[str, Any]] = []
    items = []
    missing = []
    for rid, ann, pred in rows:
        gt = _field(ann, ("timestamps", "cycle_starts", "ground_truth", "gt"))
        if not isinstance(gt, list):
            raise ConfigError(annot_path, f"record {rid!r} has no 'timestamps' list")
        p = None if pred is None else _field(pred, _TEXT_KEYS + ("timestamps",))
        if p is None:
            missing.append(rid)
            p = ""
        try:
            r = J.jumpscore(p, gt, deltas)
        except (TypeError, ValueError) as exc:
            raise ConfigError(pred_path, f"record {rid!r}: {exc}") from None
        items.append((p, gt))
        per_item.append({"id": rid, **r})
    summary = J.jumpscore_dataset(items, deltas)
    return {"summary": summary, "per_item": per_item, "missing": missing, "unused": unused}


def format_jumpscore(result: dict[str, Any], deltas: Sequence[float], per_item: bool = False) -> str:
    """The table ``ov2 eval jumpscore`` prints (fractions in [0, 1])."""
    s = result["summary"]
    lines = [f"JumpScore over {int(s['num_videos'])} videos ({len(result['missing'])} without prediction)",
             f"{'delta':>6}  {'AP':>7}  {'precision':>9}  {'recall':>7}"]
    for d in deltas:
        k = f"{d:g}"
        lines.append(f"{k:>6}  {s['AP@' + k]:>7.4f}  {s['precision@' + k]:>9.4f}  {s['recall@' + k]:>7.4f}")
    lines.append(f"{'mAP':>6}  {s['mAP']:>7.4f}")
    if per_item:
        lines.append("")
        lines.append(f"{'id':<24}  {'mAP':>7}  {'#pred':>6}  {'#gt':>5}")
        for r in result["per_item"]:
            lines.append(f"{r['id'][:24]:<24}  {r['mAP']:>7.4f}  {int(r['num_predictions']):>6}  {int(r['num_ground_truth']):>5}")
    return "\n".join(lines)


def _cmd_jumpscore(args: argparse.Namespace) -> int:
    res = run_jumpscore(args.pred, args.annot, args.deltas)
    _report_join(res)
    print(format_jumpscore(res, args.deltas, args.per_item))
    _write_json(args.json, res)
    return 0


# --------------------------------------------------------------------------------------------- grounding
def _moment_gt(ann: dict) -> Any:
    return _field(ann, ("moment", "timestamp", "gt_moment", "relevant_windows", "timestamps"))


def _saliency_gt(ann: dict, clip_length: float, src: str, rid: str) -> Any:
    if "gt_saliency" in ann:
        return ann["gt_saliency"]
    if "saliency_scores" in ann:
        if "duration" not in ann or "relevant_clip_ids" not in ann:
            raise ConfigError(src, f"record {rid!r}: saliency_scores need 'duration' and 'relevant_clip_ids'")
        return G.qvh_gt_scores(float(ann["duration"]), ann["relevant_clip_ids"], ann["saliency_scores"], clip_length)
    return None


def run_grounding(
    pred_path: str,
    annot_path: str,
    thresholds: Sequence[float] = G.IOU_THRESHOLDS,
    min_score: float = 4.0,
    clip_length: float = 2.0,
) -> dict[str, Any]:
    """Moment-retrieval and highlight metrics for a predictions file; ``{"moment", "highlight", "per_item", ...}``.

    Annotation record: ``{"id", "moment": [s, e]}`` (or ``timestamp``, ``relevant_windows`` = list of ``[s, e]``)
    for moment retrieval, and/or QVHighlights ``{"duration", "relevant_clip_ids", "saliency_scores"}`` (or a full
    ``gt_saliency`` ``[[score per annotator], ...]`` per clip) for highlights. Prediction record:
    ``{"id", "prediction": <text> | [s, e] | [[s, e(, score)], ...]}`` and/or QVHighlights
    ``pred_relevant_windows`` / ``pred_saliency_scores``. A section is ``null`` when no annotation has it.
    """
    rows, unused = _join(read_records(pred_path), read_records(annot_path), pred_path, annot_path)
    if not rows:
        raise ConfigError(annot_path, "no annotations")
    m_items, h_items, per_item, missing = [], [], [], []
    for rid, ann, pred in rows:
        if pred is None:
            missing.append(rid)
            pred = {}
        text = _field(pred, _TEXT_KEYS)
        row: dict[str, Any] = {"id": rid}
        gt_m = _moment_gt(ann)
        gt_s = _saliency_gt(ann, clip_length, annot_path, rid)
        if gt_m is None and gt_s is None:
            raise ConfigError(annot_path, f"record {rid!r} has neither a moment nor saliency scores")
        try:
            if gt_m is not None:
                p = pred.get("pred_relevant_windows", text)
                m_items.append((p, gt_m))
                top = G.top1_moment(p)
                row["top1"] = list(top) if top else None
                row["IoU"] = max(G.temporal_iou(top, g) for g in G.gt_moments(gt_m)) if top else 0.0
            if gt_s is not None:
                p = pred.get("pred_saliency_scores", text if text is not None else "")
                h_items.append((p, gt_s))
                hm = G.highlight_metrics([(p, gt_s)], min_score, clip_length)
                row["HL-mAP"], row["HIT@1"] = hm["mAP"], hm["HIT@1"]
        except (TypeError, ValueError, IndexError) as exc:
            raise ConfigError(pred_path, f"record {rid!r}: {exc}") from None
        per_item.append(row)
    moment = G.grounding_metrics(m_items, thresholds) if m_items else None
    highlight = G.highlight_metrics(h_items, min_score, clip_length) if h_items else None
    return {"moment": moment, "highlight": highlight, "per_item": per_item, "missing": missing, "unused": unused,
            "min_score": min_score}


def format_grounding(result: dict[str, Any], per_item: bool = False) -> str:
    """The table ``ov2 eval grounding`` prints (fractions in [0, 1])."""
    lines = []
    m = result["moment"]
    if m:
        keys = [k for k in m if k.startswith("R1@")] + ["mIoU"]
        lines.append(f"Moment retrieval over {int(m['num_queries'])} queries ({int(m['num_unparsed'])} without a moment)")
        lines.append("  ".join(f"{k:>7}" for k in keys))
        lines.append("  ".join(f"{m[k]:>7.4f}" for k in keys))
    h = result["highlight"]
    if h:
        if lines:
            lines.append("")
        lines.append(f"Highlight detection over {int(h['num_queries'])} queries (saliency >= {result['min_score']:g})")
        lines.append(f"{'HL-mAP':>7}  {'HIT@1':>7}")
        lines.append(f"{h['mAP']:>7.4f}  {h['HIT@1']:>7.4f}")
    if per_item:
        lines.append("")
        for r in result["per_item"]:
            vals = "  ".join(f"{k}={v:.4f}" for k, v in r.items() if isinstance(v, float))
            lines.append(f"{r['id'][:24]:<24}  {vals}")
    return "\n".join(lines)


def _cmd_grounding(args: argparse.Namespace) -> int:
    res = run_grounding(args.pred, args.annot, args.iou, args.min_score, args.clip_length)
    _report_join(res)
    print(format_grounding(res, args.per_item))
    _write_json(args.json, res)
    return 0


# --------------------------------------------------------------------------------------------- synth
def _cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import SyntheticSpec, generate_video  # noqa: PLC0415  (needs PyAV)

    try:
        spec = SyntheticSpec(
            duration=args.duration, period=args.period, fps=args.fps, width=args.width, height=args.height,
            seed=args.seed, period_jitter=args.jitter, pan_speed=args.pan_speed, distractor=args.distractor,
            crf=args.crf, preset=args.preset, gop=args.gop,
        )
    except ValueError as exc:
        raise ConfigError(args.out, str(exc)) from None
    ann = generate_video(args.out, spec, args.annotation)
    print(f"{args.out}: {ann['num_frames']} frames, {len(ann['timestamps'])} cycle starts "
          f"(annotation {args.annotation or args.out.rsplit('.', 1)[0] + '.json'})")
    return 0


# --------------------------------------------------------------------------------------------- plumbing
def _report_join(res: dict[str, Any]) -> None:
    if res["missing"]:
        _warn(f"{len(res['missing'])} annotated items have no prediction (scored as empty): {res['missing'][:5]}")
    if res["unused"]:
        _warn(f"{len(res['unused'])} predictions have no annotation (ignored): {res['unused'][:5]}")


def _write_json(path: str | None, res: dict[str, Any]) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    except OSError as exc:
        raise ConfigError(path, f"cannot write: {exc.strerror or exc}") from None


def _cmd_coverage(args: argparse.Namespace) -> int:
    from .coverage_video import bitcost_peak_events, coverage_report, format_report, read_events

    demo = args.annot == "bitcost-peaks"
    events = bitcost_peak_events(args.video) if demo else read_events(args.annot)
    if demo:
        print(f"events: {len(events)} bit-cost peaks (demonstration only, not ground truth)")
    reports = []
    for i, budget in enumerate(args.budget):
        res = coverage_report(args.video, events, budget, args.delta, png=args.png if i == 0 else None)
        res["events_source"] = "bit-cost peaks (demonstration)" if demo else args.annot
        print(f"\n{args.video} — budget {budget} tokens, δ = {args.delta} s, {len(events)} events")
        print(format_report(res))
        reports.append(res)
    _write_json(args.json, {"video": args.video, "reports": reports})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` and its sub-commands to the ``ov2`` parser; each sets ``func`` returning an exit code.

    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="ov2")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["eval", "jumpscore", "pred.jsonl", "ann.jsonl", "--deltas", "0.1,0.2"])
    >>> args.deltas, args.func.__name__
    ((0.1, 0.2), '_cmd_jumpscore')
    """
    p = subparsers.add_parser("eval", help="evaluate model outputs (JumpScore, temporal grounding)",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="eval_command", metavar="TASK")

    def _usage(_args: argparse.Namespace, _p: argparse.ArgumentParser = p) -> int:
        _p.print_help()
        return 1

    p.set_defaults(func=_usage)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("pred", metavar="PRED", help="predictions, JSON lines")
        sp.add_argument("annot", metavar="ANNOT", help="annotations, JSON lines (or one JSON object / array)")
        sp.add_argument("--per-item", action="store_true", help="also print one row per video / query")
        sp.add_argument("--json", metavar="OUT", help="write the summary and per-item scores as JSON")

    js = sub.add_parser("jumpscore", help="JumpScore AP@δ and mAP", description=run_jumpscore.__doc__)
    common(js)
    js.add_argument("--deltas", type=_floats, default=J.DEFAULT_DELTAS, help="tolerances in s (default 0.1,0.2,0.3)")
    js.set_defaults(func=_cmd_jumpscore)

    gr = sub.add_parser("grounding", help="R@1 / mIoU (moments) and HL-mAP / HIT@1 (highlights)",
                        description=run_grounding.__doc__)
    common(gr)
    gr.add_argument("--iou", type=_floats, default=G.IOU_THRESHOLDS, help="IoU thresholds (default 0.3,0.5,0.7)")
    gr.add_argument("--min-score", type=float, default=4.0, help="highlight saliency threshold (default 4)")
    gr.add_argument("--clip-length", type=float, default=2.0, help="highlight clip length in s (default 2)")
    gr.set_defaults(func=_cmd_grounding)

    cv = sub.add_parser("coverage", help="event coverage of codec_stream vs uniform frames at equal tokens",
                        description="Tokenizes VIDEO with each mode at the same token budget and reports the share of "
                                    "annotated events with a token within δ (event recall), tokens per event and the "
                                    "share of tokens on event-free time. ANNOT is a JSON list of event times or an "
                                    "object with 'timestamps'; 'bitcost-peaks' derives demonstration events from "
                                    "packet sizes (not ground truth).")
    cv.add_argument("video", metavar="VIDEO")
    cv.add_argument("annot", metavar="ANNOT", help="annotation JSON, or 'bitcost-peaks'")
    cv.add_argument("--budget", type=lambda s: [int(x) for x in s.split(",")], default=[4096],
                    help="token budgets, comma-separated (default 4096)")
    cv.add_argument("--delta", type=float, default=0.1, help="tolerance in s (default 0.1)")
    cv.add_argument("--png", metavar="OUT.png", help="plot of tokens over time per mode (first budget)")
    cv.add_argument("--json", metavar="OUT", help="write the reports as JSON")
    cv.set_defaults(func=_cmd_coverage)

    sy = sub.add_parser("synth", help="generate a JumpScore-style synthetic clip and its annotation")
    sy.add_argument("out", metavar="OUT.mp4")
    sy.add_argument("--annotation", metavar="JSON", help="annotation path (default OUT with .json)")
    sy.add_argument("--duration", type=float, default=30.0)
    sy.add_argument("--period", type=float, default=0.4, help="cycle period in s (JumpScore-like: 0.3-0.6)")
    sy.add_argument("--jitter", type=float, default=0.0, help="relative std of per-cycle period")
    sy.add_argument("--fps", type=int, default=30)
    sy.add_argument("--width", type=int, default=320)
    sy.add_argument("--height", type=int, default=240)
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--pan-speed", type=float, default=0.0, help="background pan in px/s")
    sy.add_argument("--distractor", action="store_true", help="add a bouncing distractor ball")
    sy.add_argument("--crf", type=int, default=23)
    sy.add_argument("--preset", default="veryfast")
    sy.add_argument("--gop", type=int, default=None, help="libx264 keyint")
    sy.set_defaults(func=_cmd_synth)


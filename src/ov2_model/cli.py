"""``ov2 train`` and ``ov2 chat``: plug-in of the ``ov2`` command line (entry point group ``ov2.cli``)::

    ov2 train CONFIG.yaml [--set key=value ...]          # torchrun --nproc-per-node N -m ... for DDP / FSDP
    ov2 chat VIDEO_OR_IMAGE "question" --model DIR [--mode codec_stream|frames|image|cope] [--budget 32]
             [--compare] [--max-new-tokens 128] [--device cpu|cuda] [--json]

``ov2 chat`` tokenizes the input with ``ov2_tokenizer`` (codec_stream by default; ``--mode frames`` for
uniform frames; images are recognised by extension), answers with greedy decoding and reports the visual
token count, the tokenization time, the time to first token and the decode speed. ``--compare`` runs
codec_stream and frames at the same budget (``max_canvases`` = ``num_frames`` = ``--budget``). ``--mode cope``
answers from I-frame tokens and Δ-tokens with a CoPE checkpoint (``ov2 train`` with a ``cope`` config).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["register", "cmd_train", "cmd_chat"]

_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``chat`` to the ``ov2`` sub-commands."""
    p = sub.add_parser("train", help="train LLaVA-OneVision-2 from a YAML / JSON config",
                       description="Train on mixed codec-stream / frames / image batches (see docs/training.md). "
                                   "Launch with torchrun for several processes.")
    p.add_argument("config", help="YAML or JSON training config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted keys reach into mappings), repeatable")
    p.set_defaults(func=cmd_train)

    c = sub.add_parser("chat", help="ask a question about a video or an image",
                       description="Tokenize a video / image, answer a question and report visual tokens, "
                                   "time to first token and tokens/s.")
    c.add_argument("input", help="video or image file")
    c.add_argument("question")
    c.add_argument("--model", required=True, help="model directory (released layout, with its tokenizer)")
    c.add_argument("--mode", default="codec_stream", choices=["codec_stream", "frames", "image", "cope"],
                   help="cope: I-frames + Δ-tokens (needs a model directory with delta_encoder.safetensors)")
    c.add_argument("--budget", type=int, default=None,
                   help="max_canvases for codec_stream and num_frames for frames (default: tokenizer defaults)")
    c.add_argument("--compare", action="store_true", help="answer with codec_stream and frames at one budget")
    c.add_argument("--min-pixels", type=int, default=None, help="tokenizer min_pixels per canvas")
    c.add_argument("--max-pixels", type=int, default=None, help="tokenizer max_pixels per canvas")
    c.add_argument("--max-new-tokens", type=int, default=128)
    c.add_argument("--device", default="cuda" if _cuda() else "cpu")
    c.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    c.add_argument("--system", default="You are a helpful assistant.", help="system prompt ('' for none)")
    c.add_argument("--json", action="store_true", help="print one JSON object per answer")
    c.set_defaults(func=cmd_chat)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def cmd_train(args: argparse.Namespace) -> int:
    """``ov2 train``."""
    import logging

    from .train import load_config, run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    hist = run_training(cfg)
    if hist:
        print(f"done: {len(hist)} steps, last loss {hist[-1]['loss']:.4f}, output {cfg.output_dir}")
    return 0


def _tokenize(path: str, mode: str, budget: int | None, pixels: dict | None = None) -> Any:
    import os

    import ov2_tokenizer as ov2  # noqa: PLC0415 - only this command needs the tokenizer

    overrides: dict[str, int] = {k: v for k, v in (pixels or {}).items() if v is not None}
    if budget is not None:
        overrides.update({"max_canvases": budget} if mode in ("codec_stream", "cope") else (
            {"num_frames": budget} if mode == "frames" else {}))
    if mode == "image" or os.path.splitext(path)[1].lower() in _IMAGE_EXT:
        return ov2.tokenize_image(path, **overrides)
    return ov2.tokenize_video(path, mode=mode, **overrides)


def cmd_chat(args: argparse.Namespace) -> int:
    """``ov2 chat``."""
    import torch
    from transformers import AutoTokenizer

    from .chat import ChatTemplate, generate_reply
    from .train import load_cope_model

    dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    kw = {"dtype": dtype} if dtype is not None else {}
    model = load_cope_model(args.model, **kw).to(args.device).eval()  # + Δ-encoder when the directory has one
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    template = ChatTemplate(system_prompt=args.system or None)
    modes = ["codec_stream", "frames"] if args.compare else [args.mode]
    for mode in modes:
        t0 = time.perf_counter()
        vt = _tokenize(args.input, mode, args.budget, {"min_pixels": args.min_pixels, "max_pixels": args.max_pixels})
        t_tok = time.perf_counter() - t0
        reply = generate_reply(model, tokenizer, [vt.to(args.device)], args.question, template,
                               max_new_tokens=args.max_new_tokens)
        rec = {"mode": str(vt.meta.get("mode", mode)), "answer": reply.text, "visual_tokens": reply.visual_tokens,
               "canvases": int(vt.num_canvases), "prompt_tokens": reply.prompt_tokens, "new_tokens": reply.new_tokens,
               "tokenize_s": t_tok, "time_to_first_token_s": t_tok + reply.time_to_first_token_s,
               "model_ttft_s": reply.time_to_first_token_s, "tokens_per_s": reply.tokens_per_s}
        if args.json:
            print(json.dumps(rec))
        else:
            print(f"[{rec['mode']}] {reply.text}")
            print(f"  visual tokens {reply.visual_tokens} ({rec['canvases']} canvases), prompt {reply.prompt_tokens} "
                  f"tokens; tokenize {t_tok * 1e3:.0f} ms, time to first token {rec['time_to_first_token_s'] * 1e3:.0f} ms "
                  f"(model {reply.time_to_first_token_s * 1e3:.0f} ms), {reply.tokens_per_s:.1f} tokens/s",
                  file=sys.stdout)
    return 0

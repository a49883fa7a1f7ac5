"""The chat template of the released LLaVA-OneVision-2 model (Qwen ChatML, DESIGN.md §6).

A conversation is rendered as::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
    <|im_start|>user\\n<0.0 seconds><|vision_start|><|video_pad|>...<|vision_end|><2.1 seconds><|vision_start|>...
    <|vision_end|>What happens?<|im_end|>\\n
    <|im_start|>assistant\\nA dog runs.<|im_end|>\\n

* every merged visual token (``N / m²`` per item) is one placeholder token: ``<|image_pad|>`` for images,
  ``<|video_pad|>`` for videos (the ids the model config names ``image_token_id`` / ``video_token_id``);
* ``<|vision_start|>`` / ``<|vision_end|>`` wrap each *run* of visual tokens;
* a video is cut into runs of consecutive canvases that share one time label; the label is written as text
  before the run, ``<12.3 seconds>`` (one decimal). A canvas's time is the earliest source timestamp of its
  non-padding tokens (the anchor frame for I-canvases and frames, the start of the evidence for P-canvases);
  an all-padding canvas joins the run before it. Images get no timestamp and form one run.
* ``labels`` are ``-100`` everywhere except the assistant answers and their closing ``<|im_end|>`` (the
  ``\\n`` after it is not trained), so the model's shifted cross-entropy is a token-level mean over answers.

Text between special tokens is tokenized piecewise (role name, answer and the surrounding newlines are
encoded separately), the way LLaVA-style training code does, so label boundaries are exact for any tokenizer.

Works with a ``transformers`` tokenizer (anything with ``encode(text, add_special_tokens=False)`` and
``convert_tokens_to_ids``) or any object with ``encode(text) -> list[int]`` and ``convert_tokens_to_ids``.

Example (a character-level toy tokenizer)::

    >>> class Toy:
    ...     special = {"<|im_start|>": 1, "<|im_end|>": 2, "<|vision_start|>": 3, "<|vision_end|>": 4,
    ...                "<|image_pad|>": 5, "<|video_pad|>": 6}
    ...     def encode(self, text): return [ord(c) for c in text]
    ...     def convert_tokens_to_ids(self, t): return self.special[t]
    >>> conv = [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "Yo"}]
    >>> enc = ChatTemplate(system_prompt=None).encode(Toy(), conv, [VisualLayout.image(2)])
    >>> enc.input_ids[:9]
    [1, 117, 115, 101, 114, 10, 3, 5, 5]
    >>> [t for t, l in zip(enc.input_ids, enc.labels) if l != -100]
    [89, 111, 2]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

__all__ = [
    "IGNORE_INDEX",
    "ChatTemplate",
    "ChatEncoding",
    "VisualRun",
    "VisualLayout",
    "Message",
    "layout_from_visual_tokens",
    "format_timestamp",
    "collate_encodings",
]

IGNORE_INDEX = -100
Message = dict  #: ``{"role": "system" | "user" | "assistant", "content": str | list[dict]}``

_MARKER = re.compile(r"<(image|video)>")


def format_timestamp(t_s: float) -> str:
    """``<12.3 seconds>``: the released model's text timestamp (one decimal)."""
    return f"<{float(t_s):.1f} seconds>"


@dataclass(frozen=True)
class VisualRun:
    """One run of visual tokens: ``n_tokens`` placeholders between one vision start / end pair."""

    n_tokens: int
    t_s: Optional[float] = None  #: timestamp written before the run (None: no timestamp)


@dataclass
class VisualLayout:
    """How one visual item (an image or a video) appears in the token sequence."""

    modality: str  #: ``"image"`` or ``"video"``
    runs: list[VisualRun] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        """Placeholder tokens of this item (= merged visual tokens the model produces for it)."""
        return sum(r.n_tokens for r in self.runs)

    @classmethod
    def image(cls, n_tokens: int) -> "VisualLayout":
        """An image of ``n_tokens`` merged tokens (one run, no timestamp)."""
        return cls("image", [VisualRun(int(n_tokens))])

    @classmethod
    def video(cls, runs: Sequence[tuple[float, int]]) -> "VisualLayout":
        """A video from ``(t_s, n_tokens)`` runs."""
        return cls("video", [VisualRun(int(n), float(t)) for t, n in runs])


def layout_from_visual_tokens(vt: Any, merge_size: Optional[int] = None) -> VisualLayout:
    """The layout of a ``VisualTokens``-like object (DESIGN §3.2): image if every canvas is an image canvas,
    otherwise a video cut into runs of consecutive canvases with the same one-decimal time label."""
    m = int(merge_size if merge_size is not None else getattr(vt, "merge_size", 2))
    kind = vt.canvas_kind.to(torch.int64)
    n_canvases = int(kind.shape[0])
    canvas = vt.canvas.to(torch.int64)
    n = int(canvas.shape[0])
    if n % (m * m):
        raise ValueError(f"{n} token records are not a multiple of the merge block {m}x{m}")
    if n_canvases == 0:
        raise ValueError("VisualTokens without canvases")
    if bool((kind == 3).all()):
        return VisualLayout.image(n // (m * m))
    if bool((kind == 3).any()):
        raise ValueError("VisualTokens mixes image canvases with video canvases")
    per_canvas = torch.bincount(canvas, minlength=n_canvases)
    if bool((per_canvas % (m * m) != 0).any()):
        raise ValueError("a canvas holds a number of tokens that is not a multiple of the merge block")
    t = vt.t_s.to(torch.float64)
    valid = (vt.frame.to(torch.int64) >= 0) & torch.isfinite(t)
    big = torch.full((n_canvases,), math.inf, dtype=torch.float64)
    first_t = big.scatter_reduce(0, canvas[valid], t[valid], reduce="amin", include_self=True)
    runs: list[list] = []
    for c in range(n_canvases):
        cnt = int(per_canvas[c]) // (m * m)
        if cnt == 0:
            continue
        ft = float(first_t[c])
        label = None if not math.isfinite(ft) else round(ft, 1)
        if runs and (label is None or runs[-1][0] == label):
            runs[-1][1] += cnt
        else:
            runs.append([0.0 if label is None else label, cnt])
    return VisualLayout.video([(t_, n_) for t_, n_ in runs])


@dataclass
class ChatEncoding:
    """Token ids of one rendered conversation."""

    input_ids: list[int]
    labels: list[int]  #: ``IGNORE_INDEX`` outside assistant answers (+ their ``<|im_end|>``)
    n_visual: int  #: placeholder tokens in ``input_ids``

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.input_ids)

    def tensors(self) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask``, ``labels`` as ``[1, L]`` int64 tensors."""
        ids = torch.tensor([self.input_ids], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "labels": torch.tensor([self.labels], dtype=torch.long)}


def collate_encodings(encodings: Sequence[ChatEncoding], pad_token_id: int,
                      padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a batch of encodings to one length: ``input_ids``, ``attention_mask``, ``labels`` ``[B, L]``."""
    if padding_side not in ("right", "left"):
        raise ValueError("padding_side must be 'right' or 'left'")
    length = max(len(e.input_ids) for e in encodings)
    ids = torch.full((len(encodings), length), int(pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(encodings), length), dtype=torch.long)
    labels = torch.full((len(encodings), length), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(encodings):
        n = len(e.input_ids)
        sl = slice(0, n) if padding_side == "right" else slice(length - n, length)
        ids[i, sl] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[i, sl] = 1
        labels[i, sl] = torch.tensor(e.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _encode_text(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    try:
        ids = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:
        ids = tokenizer.encode(text)
    return [int(i) for i in ids]


@dataclass
class ChatTemplate:
    """Qwen ChatML with LLaVA-OneVision-2 vision tokens.

    Args:
        system_prompt: system message added when the conversation has none (None: no system turn).
        im_start, im_end, vision_start, vision_end, image_pad, video_pad: the special-token strings.
        train_roles: roles whose content is trained (labels kept), default the assistant only.
    """

    system_prompt: Optional[str] = "You are a helpful assistant."
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"
    image_pad: str = "<|image_pad|>"
    video_pad: str = "<|video_pad|>"
    train_roles: tuple[str, ...] = ("assistant",)

    # -- ids ---------------------------------------------------------------------------------------------
    def special_ids(self, tokenizer: Any) -> dict[str, int]:
        """Ids of the special tokens; raises if the tokenizer does not know one of them."""
        out = {}
        unk = getattr(tokenizer, "unk_token_id", None)
        for name in ("im_start", "im_end", "vision_start", "vision_end", "image_pad", "video_pad"):
            tok = getattr(self, name)
            i = tokenizer.convert_tokens_to_ids(tok)
            if i is None or (unk is not None and i == unk) or (isinstance(i, list)):
                raise ValueError(f"tokenizer has no single id for the special token {tok!r}")
            out[name] = int(i)
        return out

    # -- rendering ---------------------------------------------------------------------------------------
    @staticmethod
    def _parts(content: Union[str, list]) -> list[tuple[str, str]]:
        """Content as ``("text", s)`` / ``("image", "")`` / ``("video", "")`` parts."""
        if isinstance(content, str):
            parts: list[tuple[str, str]] = []
            pos = 0
            for m in _MARKER.finditer(content):
                if m.start() > pos:
                    parts.append(("text", content[pos:m.start()]))
                parts.append((m.group(1), ""))
                pos = m.end()
            if pos < len(content):
                parts.append(("text", content[pos:]))
            return parts
        out = []
        for p in content:
            kind = p.get("type", "text")
            if kind == "text":
                out.append(("text", str(p.get("text", ""))))
            elif kind in ("image", "video"):
                out.append((kind, ""))
            else:
                raise ValueError(f"unknown content part type {kind!r}")
        return out

    def encode(
        self,
        tokenizer: Any,
        conversation: Sequence[Message],
        visuals: Sequence[VisualLayout] = (),
        add_generation_prompt: bool = False,
    ) -> ChatEncoding:
        """Render ``conversation`` with ``visuals`` (in order of their ``<image>`` / ``<video>`` markers or
        ``{"type": "image"|"video"}`` parts). Visuals without markers go to the start of the first user turn.
        ``add_generation_prompt`` appends ``<|im_start|>assistant\\n`` (inference)."""
        sp = self.special_ids(tokenizer)
        msgs = [dict(m) for m in conversation]
        if not msgs:
            raise ValueError("empty conversation")
        for m in msgs:
            if m.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"unknown role {m.get('role')!r}")
        if self.system_prompt is not None and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        parsed = [(m["role"], self._parts(m.get("content", ""))) for m in msgs]
        n_markers = sum(1 for _, ps in parsed for k, _ in ps if k != "text")
        if n_markers == 0 and visuals:
            first_user = next((i for i, (r, _) in enumerate(parsed) if r == "user"), None)
            if first_user is None:
                raise ValueError("visual inputs given but the conversation has no user turn")
            role, ps = parsed[first_user]
            parsed[first_user] = (role, [(v.modality, "") for v in visuals] + ps)
        elif n_markers != len(visuals):
            raise ValueError(f"conversation has {n_markers} visual markers but {len(visuals)} visuals were given")

        ids: list[int] = []
        labels: list[int] = []
        n_visual = 0
        vis_iter = iter(visuals)

        def emit(tokens: list[int], train: bool) -> None:
            ids.extend(tokens)
            labels.extend(tokens if train else [IGNORE_INDEX] * len(tokens))

        for role, parts in parsed:
            train = role in self.train_roles
            emit([sp["im_start"]], False)
            emit(_encode_text(tokenizer, role + "\n"), False)
            for kind, text in parts:
                if kind == "text":
                    emit(_encode_text(tokenizer, text), train)
                    continue
                vis = next(vis_iter)
                if vis.modality != kind:
                    raise ValueError(f"marker <{kind}> is matched with a {vis.modality} input")
                pad = sp["image_pad"] if vis.modality == "image" else sp["video_pad"]
                for run in vis.runs:
                    if run.t_s is not None:
                        emit(_encode_text(tokenizer, format_timestamp(run.t_s)), False)
                    emit([sp["vision_start"]] + [pad] * run.n_tokens + [sp["vision_end"]], False)
                    n_visual += run.n_tokens
            emit([sp["im_end"]], train)
            emit(_encode_text(tokenizer, "\n"), False)
        if add_generation_prompt:
            emit([sp["im_start"]], False)
            emit(_encode_text(tokenizer, "assistant\n"), False)
        return ChatEncoding(ids, labels, n_visual)

    def render(self, conversation: Sequence[Message], visuals: Sequence[VisualLayout] = (),
               add_generation_prompt: bool = False) -> str:
        """The rendered text (placeholders written out), for inspection and for text-only tokenizers."""

        class _Echo:
            def __init__(self) -> None:
                self.pieces: list[str] = []

            def encode(self, text: str) -> list[int]:
                self.pieces.append(text)
                return [-len(self.pieces)]

            def convert_tokens_to_ids(self, t: str) -> int:
                return hash(t) & 0x7FFFFFFF

        echo = _Echo()
        sp = self.special_ids(echo)
        names = {v: getattr(self, k) for k, v in sp.items()}
        enc = self.encode(echo, conversation, visuals, add_generation_prompt)
        return "".join(echo.pieces[-i - 1] if i < 0 else names[i] for i in enc.input_ids)


# ------------------------------------------------------------------------------------------------------
# inference
# ------------------------------------------------------------------------------------------------------


@dataclass
class ChatReply:
    """An answer and its timings."""

    text: str
    visual_tokens: int  #: merged visual tokens given to the LLM
    prompt_tokens: int
    new_tokens: int
    time_to_first_token_s: float  #: from the call (after tokenization of the visual input) to the first token
    tokens_per_s: float  #: decode speed after the first token


def generate_reply(
    model: Any,
    tokenizer: Any,
    visual_tokens: Sequence[Any],
    question: str,
    template: Optional[ChatTemplate] = None,
    max_new_tokens: int = 128,
    groups: str = "explicit",
    cope_size: Optional[Sequence[int]] = None,
    **generate_kwargs: Any,
) -> ChatReply:
    """Answer ``question`` about ``visual_tokens`` (``VisualTokens``-like objects) with greedy ``generate``.

    ``model`` may be a :class:`~ov2_model.delta.CopeVideoLM`, which also answers from ``cope``-mode inputs (I-frame
    tokens and Δ-tokens interleaved; ``cope_size`` resizes the Δ-inputs). Time to first token covers the prompt
    building, the vision encoder (and Δ-encoder) and the prefill; it is measured with a streamer, so it is the
    moment the first new token exists."""
    import time

    from transformers.generation.streamers import BaseStreamer

    from .delta import cope_layout, is_cope_tokens
    from .train import build_visual_inputs

    template = template or ChatTemplate()
    t0 = time.perf_counter()
    m = int(model.config.vision_config.spatial_merge_size)
    copes = [v for v in visual_tokens if is_cope_tokens(v)]
    if copes and not hasattr(model, "delta"):
        raise ValueError("cope-mode inputs need a CopeVideoLM (a model directory with delta_encoder.safetensors)")
    layouts = [cope_layout(v, model.delta.config.num_tokens, m) if is_cope_tokens(v)
               else layout_from_visual_tokens(v, m) for v in visual_tokens]
    enc = template.encode(tokenizer, [{"role": "user", "content": question}], layouts, add_generation_prompt=True)
    device = next(model.parameters()).device
    ids = torch.tensor([enc.input_ids], device=device)
    images = [v for v, lay in zip(visual_tokens, layouts) if lay.modality == "image"]
    videos = [v for v, lay in zip(visual_tokens, layouts) if lay.modality == "video" and not is_cope_tokens(v)]
    order = [is_cope_tokens(v) for v, lay in zip(visual_tokens, layouts) if lay.modality == "video"]
    kwargs, _ = build_visual_inputs(images, videos, copes, order, m, groups, cope_size)

    def _dev(v: Any) -> Any:
        return v.to(device) if isinstance(v, torch.Tensor) else [x.to(device) for x in v]

    kwargs = {k: _dev(v) for k, v in kwargs.items()}

    class _Timer(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.first: Optional[float] = None

        def put(self, value: torch.Tensor) -> None:
            self.calls += 1
            if self.calls == 2 and self.first is None:  # call 1 is the prompt
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    timer = _Timer()
    im_end = template.special_ids(tokenizer)["im_end"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=im_end, pad_token_id=getattr(tokenizer, "pad_token_id",
                                                                                         None) or im_end,
                             streamer=timer, **kwargs, **generate_kwargs)
    t_end = time.perf_counter()
    new = out[0, ids.shape[1]:].tolist()
    if new and new[-1] == im_end:
        new_text = new[:-1]
    else:
        new_text = new
    text = tokenizer.decode(new_text, skip_special_tokens=True) if hasattr(tokenizer, "decode") else str(new_text)
    first = timer.first if timer.first is not None else t_end
    rate = (len(new) - 1) / (t_end - first) if len(new) > 1 and t_end > first else 0.0
    return ChatReply(text, enc.n_visual, len(enc.input_ids), len(new), first - t0, rate)


__all__ += ["ChatReply", "generate_reply"]

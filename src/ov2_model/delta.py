"""CoPE-VideoLM Δ-encoder (Sarkar et al., ``papers/cope-videolm.md`` §3.2, §3.3, Supp. B), its pre-training
and the interleaved I-token / Δ-token sequence fed to the language model.

Inputs per fused P-step (DESIGN.md §5.8, the tokenizer's ``cope`` mode): the accumulated motion field
``τ`` ``[B, H/c, W/c, 2]`` in pixels (c = ``mv_cell``, 4 for ov2's quarter-resolution ``mv_field``; 1 for a
dense per-pixel field as in the paper) and the residual against the motion-warped reference ``δ``
``[B, H, W, 3]``.

* **Motion branch**: the field is normalised, cut into 16×16-pixel patches (grid ``H/16 × W/16``; a patch of
  the quarter-resolution field is its 4×4 cells, which is exactly the information of a 16×16 patch of the
  nearest-upsampled dense field, so the MLP input is ``(16/c)²·2``), a shared two-layer MLP maps each patch to
  ``d`` features, and a query transformer with ``K_τ`` learnable queries compresses them.
* **Residual branch**: a ResNet-18 trunk (stem + ``layer1``–``layer3``: stride 16, the same ``H/16 × W/16``
  grid; ``resnet_stages=4`` adds ``layer4`` with stride 1) and a second query transformer with ``K_δ``
  queries.
* Output: ``N = K_τ + K_δ`` tokens of width ``d`` per P-step (default 4 + 4, ``d`` = 1152).

Parameter budget. The paper states < 15M parameters and query transformers of "4 layers, hidden dimension d,
9 heads". Both cannot hold at ``d = 1152`` (one such layer alone has ~16M parameters), so ov2 keeps the
stated interfaces -- MLP to ``d``, tokens of width ``d``, 4 PreNorm layers, 9 heads -- and runs the
transformers at an internal ``width`` (default 288 = 9 × 32) with linear maps in and out. With
``resnet_stages=3`` this is ~13M parameters at paper dimensions (asserted in the tests).

Pre-training (paper Eq. 7–10): a *reference* transformer takes the frozen image encoder's tokens of the
reference frame ``X_I^(t-1)`` and the motion tokens and outputs the reference tokens moved by the motion;
a *warped* transformer takes those and the residual tokens and outputs ``X̂_P^(t)``; the loss is the
patch-wise squared L2 distance to the frozen encoder's tokens of the target frame, averaged over patches
(Eq. 10) and over the batch. Both auxiliary transformers are architecturally the branch transformers and are
discarded after pre-training.

Example::

    >>> import torch
    >>> enc = DeltaEncoder(DeltaEncoderConfig(d_model=64, width=32, num_heads=2, num_layers=1, resnet_base=8))
    >>> out = enc(torch.randn(2, 8, 8, 2), torch.randn(2, 32, 32, 3))
    >>> out.tokens.shape
    torch.Size([2, 8, 64])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DeltaEncoderConfig",
    "DeltaEncoder",
    "DeltaEncoderOutput",
    "QueryTransformer",
    "ResNet18Trunk",
    "DeltaPretrainer",
    "DeltaPretrainOutput",
    "patchwise_mse",
    "normalize_motion",
    "CopeSequence",
    "build_cope_sequence",
    "count_parameters",
]


@dataclass
class DeltaEncoderConfig:
    """Hyper-parameters of :class:`DeltaEncoder` (defaults: the paper's dimensions)."""

    d_model: int = 1152  #: width of the Δ-tokens (the image encoder's feature dimension)
    width: int = 288  #: internal width of the query transformers
    num_heads: int = 9
    num_layers: int = 4
    mlp_ratio: float = 4.0
    k_tau: int = 4  #: motion queries K_τ
    k_delta: int = 4  #: residual queries K_δ
    patch: int = 16  #: motion patch size in pixels (the grid is H/patch × W/patch)
    mv_cell: int = 4  #: pixels per motion-field cell (4: ov2's quarter-resolution field, 1: dense)
    motion_norm: str = "fixed"  #: "fixed" (τ / motion_scale, clipped), "minmax" (paper), "none"
    motion_scale: float = 32.0  #: pixels mapped to 1 by motion_norm="fixed"
    residual_scale: float = 255.0  #: δ is divided by this before the ResNet
    resnet_base: int = 64  #: ResNet-18 base width (64 = the standard network)
    resnet_stages: int = 3  #: 3: stem + layer1..3 (stride 16); 4: + layer4 at stride 1

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.patch % self.mv_cell:
            raise ValueError(f"patch {self.patch} is not a multiple of mv_cell {self.mv_cell}")
        if self.motion_norm not in ("fixed", "minmax", "none"):
            raise ValueError(f"motion_norm must be 'fixed', 'minmax' or 'none', got {self.motion_norm!r}")
        if self.resnet_stages not in (3, 4):
            raise ValueError("resnet_stages must be 3 or 4")
        if self.patch != 16:  # the ResNet trunk has stride 16; the motion and residual grids must agree
            raise ValueError("the residual trunk has stride 16, so patch must be 16")

    @property
    def num_tokens(self) -> int:
        """N = K_τ + K_δ."""
        return self.k_tau + self.k_delta

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def sincos_2d(h: int, w: int, dim: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding ``[h*w, dim]`` (rows then columns, raster order)."""
    if dim % 4:
        raise ValueError("dim must be a multiple of 4 for the 2D sin-cos embedding")
    q = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(q, dtype=torch.float32, device=device) / q))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    ay = ys.reshape(-1, 1) * omega
    ax = xs.reshape(-1, 1) * omega
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)


def normalize_motion(tau: torch.Tensor, mode: str = "fixed", scale: float = 32.0) -> torch.Tensor:
    """Normalise a motion field ``[B, h, w, 2]`` to about [-1, 1].

    ``"minmax"`` is the paper's per-sample min-max map to [-1, 1] (note: a uniform translation becomes a
    constant -1 field and loses its direction); ``"fixed"`` divides by ``scale`` pixels and clips, keeping zero
    motion at zero and uniform motion distinguishable; ``"none"`` passes the field through.
    """
    tau = tau.float()
    if mode == "none":
        return tau
    if mode == "fixed":
        return (tau / scale).clamp(-1.0, 1.0)
    flat = tau.reshape(tau.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return 2.0 * (tau - lo) / (hi - lo).clamp_min(1e-6) - 1.0


# ------------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------------


class _Block(nn.Module):
    """PreNorm transformer block: ``x + MHA(LN x)``, ``x + MLP(LN x)``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class QueryTransformer(nn.Module):
    """Learnable queries concatenated with the input tokens, PreNorm blocks, the query outputs returned.

    ``forward(tokens [B, T, in_dim], hw=(h, w))`` → ``[B, K, out_dim]``. Input tokens laid out on an ``h × w``
    grid get a fixed 2D sin-cos position embedding; ``extra`` tokens (already at ``width``) can be appended
    (used by the pre-training transformers).
    """

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, width: int, num_heads: int,
                 num_layers: int, mlp_ratio: float):
        super().__init__()
        self.width = width
        self.num_queries = num_queries
        self.inp = nn.Linear(in_dim, width)
        self.queries = nn.Parameter(torch.randn(num_queries, width) * 0.02) if num_queries else None
        self.blocks = nn.ModuleList(_Block(width, num_heads, mlp_ratio) for _ in range(num_layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, out_dim)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The blocks and the final norm on a ``[B, T, width]`` sequence."""
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, tokens: torch.Tensor, hw: Optional[tuple[int, int]] = None) -> torch.Tensor:
        x = self.inp(tokens)
        if hw is not None:
            x = x + sincos_2d(hw[0], hw[1], self.width, x.device).to(x.dtype)
        q = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1).to(x.dtype)
        y = self.run(torch.cat([q, x], dim=1))
        return self.out(y[:, : self.num_queries])


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18Trunk(nn.Module):
    """ResNet-18 without global pooling and classifier (He et al. 2016), ``[B, C, H, W]`` → ``[B, C', H/16, W/16]``.

    ``stages=3``: stem (7×7/2 conv, 3×3/2 max-pool) + ``layer1``–``layer3`` (stride 16, ``4·base`` channels);
    ``stages=4`` adds ``layer4`` (``8·base`` channels) with stride 1 and dilation 2 so the grid stays H/16.
    """

    def __init__(self, in_channels: int = 3, base: int = 64, stages: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers = [nn.Sequential(_BasicBlock(base, base, 1), _BasicBlock(base, base, 1)),
                  nn.Sequential(_BasicBlock(base, 2 * base, 2), _BasicBlock(2 * base, 2 * base, 1)),
                  nn.Sequential(_BasicBlock(2 * base, 4 * base, 2), _BasicBlock(4 * base, 4 * base, 1))]
        if stages == 4:
            layers.append(nn.Sequential(_BasicBlock(4 * base, 8 * base, 1, 2), _BasicBlock(8 * base, 8 * base, 1, 2)))
        self.layers = nn.Sequential(*layers)
        self.out_channels = base * (8 if stages == 4 else 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


# ------------------------------------------------------------------------------------------------------
# Δ-encoder
# ------------------------------------------------------------------------------------------------------


@dataclass
class DeltaEncoderOutput:
    """Δ-tokens of a batch of P-steps."""

    tokens: torch.Tensor  #: ``[B, K_τ + K_δ, d]`` (motion tokens first)
    motion_tokens: torch.Tensor  #: ``[B, K_τ, d]``
    residual_tokens: torch.Tensor  #: ``[B, K_δ, d]``
    grid_hw: tuple[int, int]  #: ``(H/16, W/16)``


class DeltaEncoder(nn.Module):
    """φ_Δ: motion field and residual of one (fused) P-step → ``N = K_τ + K_δ`` Δ-tokens of width ``d``."""

    def __init__(self, config: Optional[DeltaEncoderConfig] = None):
        super().__init__()
        self.config = cfg = config or DeltaEncoderConfig()
        cells = cfg.patch // cfg.mv_cell
        self.motion_in = 2 * cells * cells
        self.motion_mlp = nn.Sequential(nn.Linear(self.motion_in, cfg.d_model), nn.GELU(),
                                        nn.Linear(cfg.d_model, cfg.d_model))
        self.motion_tf = QueryTransformer(cfg.d_model, cfg.d_model, cfg.k_tau, cfg.width, cfg.num_heads,
                                          cfg.num_layers, cfg.mlp_ratio)
        self.resnet = ResNet18Trunk(3, cfg.resnet_base, cfg.resnet_stages)
        self.residual_tf = QueryTransformer(self.resnet.out_channels, cfg.d_model, cfg.k_delta, cfg.width,
                                            cfg.num_heads, cfg.num_layers, cfg.mlp_ratio)

    def motion_features(self, tau: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``[B, H/c, W/c, 2]`` → per-patch MLP features ``[B, H/16·W/16, d]`` and the grid."""
        cfg = self.config
        if tau.dim() != 4 or tau.shape[-1] != 2:
            raise ValueError(f"motion field must be [B, H/c, W/c, 2], got {tuple(tau.shape)}")
        b, hm, wm, _ = tau.shape
        cells = cfg.patch // cfg.mv_cell
        if hm % cells or wm % cells:
            raise ValueError(f"motion field {hm}x{wm} cells is not a multiple of the {cells}-cell patch")
        x = normalize_motion(tau, cfg.motion_norm, cfg.motion_scale)
        gh, gw = hm // cells, wm // cells
        x = x.reshape(b, gh, cells, gw, cells, 2).permute(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, self.motion_in)
        return self.motion_mlp(x.to(self.motion_mlp[0].weight.dtype)), (gh, gw)

    def forward(self, tau: torch.Tensor, delta: torch.Tensor) -> DeltaEncoderOutput:
        """``tau`` ``[B, H/c, W/c, 2]`` (pixels), ``delta`` ``[B, H, W, 3]`` → :class:`DeltaEncoderOutput`."""
        cfg = self.config
        if delta.dim() != 4 or delta.shape[-1] != 3:
            raise ValueError(f"residual must be [B, H, W, 3], got {tuple(delta.shape)}")
        b, h, w, _ = delta.shape
        if h % cfg.patch or w % cfg.patch:
            raise ValueError(f"frame {h}x{w} is not a multiple of the {cfg.patch}-pixel patch")
        if tau.shape[0] != b or tau.shape[1] * cfg.mv_cell != h or tau.shape[2] * cfg.mv_cell != w:
            raise ValueError(f"motion field {tuple(tau.shape)} does not match residual {tuple(delta.shape)} "
                             f"with mv_cell={cfg.mv_cell}")
        feats, hw = self.motion_features(tau)
        motion = self.motion_tf(feats, hw)
        r = delta.permute(0, 3, 1, 2).to(self.residual_tf.inp.weight.dtype) / cfg.residual_scale
        r = self.resnet(r)  # [B, C, H/16, W/16]
        rg = (r.shape[2], r.shape[3])
        if rg != hw:
            raise RuntimeError(f"residual grid {rg} differs from motion grid {hw}")
        residual = self.residual_tf(r.flatten(2).transpose(1, 2), rg)
        return DeltaEncoderOutput(torch.cat([motion, residual], dim=1), motion, residual, hw)


# ------------------------------------------------------------------------------------------------------
# pre-training
# ------------------------------------------------------------------------------------------------------


def patchwise_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 10: ``1/M Σ_i ||X(i) − X̂(i)||²`` for ``[B, M, D]`` tensors, averaged over the batch."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return (pred.float() - target.float()).pow(2).sum(-1).mean()


class _FusionTransformer(nn.Module):
    """θ_ref / θ_warped: reference tokens (on a grid) + conditioning tokens → updated reference tokens."""

    def __init__(self, ref_dim: int, cond_dim: int, out_dim: int, cfg: DeltaEncoderConfig):
        super().__init__()
        self.tf = QueryTransformer(ref_dim, out_dim, 0, cfg.width, cfg.num_heads, cfg.num_layers, cfg.mlp_ratio)
        self.cond = nn.Linear(cond_dim, cfg.width)
        self.cond_type = nn.Parameter(torch.zeros(1, 1, cfg.width))

    def forward(self, ref: torch.Tensor, cond: torch.Tensor, hw: tuple[int, int], project: bool) -> torch.Tensor:
        x = self.tf.inp(ref) + sincos_2d(hw[0], hw[1], self.tf.width, ref.device).to(ref.dtype)
        c = self.cond(cond) + self.cond_type
        y = self.tf.run(torch.cat([x, c], dim=1))[:, : ref.shape[1]]
        return self.tf.out(y) if project else y


@dataclass
class DeltaPretrainOutput:
    loss: torch.Tensor  #: patch-wise MSE (Eq. 10)
    prediction: torch.Tensor  #: X̂_P ``[B, M, D_img]``
    warped_reference: torch.Tensor  #: X̂_warped (width ``cfg.width``) ``[B, M, width]``
    delta: DeltaEncoderOutput


class DeltaPretrainer(nn.Module):
    """The Δ-encoder with the auxiliary *reference* and *warped* transformers of its pre-training (Eq. 7–10).

    ``forward(tau, delta, ref_tokens, target_tokens, ref_hw)``: ``ref_tokens`` / ``target_tokens`` are the frozen
    image encoder's ``[B, M, D_img]`` tokens of the reference frame I^(t-1) and of the target frame I^(t),
    laid out on the ``ref_hw`` grid (M = h·w). Compute them under ``torch.no_grad()`` (see
    :meth:`frozen_tokens`).
    """

    def __init__(self, encoder: DeltaEncoder, image_dim: int):
        super().__init__()
        cfg = encoder.config
        self.encoder = encoder
        self.image_dim = image_dim
        self.reference = _FusionTransformer(image_dim, cfg.d_model, cfg.width, cfg)
        self.warped = _FusionTransformer(cfg.width, cfg.d_model, image_dim, cfg)
        # the warped transformer's input is already at width: its input map starts as the identity
        with torch.no_grad():
            self.warped.tf.inp.weight.copy_(torch.eye(cfg.width))
            self.warped.tf.inp.bias.zero_()

    @staticmethod
    @torch.no_grad()
    def frozen_tokens(image_encoder: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
        """Tokens of a frozen image encoder (no gradient): ``image_encoder(frames) -> [B, M, D]``."""
        return image_encoder(frames).detach()

    def forward(self, tau: torch.Tensor, delta: torch.Tensor, ref_tokens: torch.Tensor,
                target_tokens: Optional[torch.Tensor], ref_hw: tuple[int, int]) -> DeltaPretrainOutput:
        if ref_tokens.shape[1] != ref_hw[0] * ref_hw[1]:
            raise ValueError(f"{ref_tokens.shape[1]} reference tokens for a {ref_hw} grid")
        d = self.encoder(tau, delta)
        warped = self.reference(ref_tokens, d.motion_tokens, ref_hw, project=False)  # Eq. 8
        pred = self.warped(warped, d.residual_tokens, ref_hw, project=True)  # Eq. 9
        loss = patchwise_mse(pred, target_tokens) if target_tokens is not None else pred.new_zeros(())
        return DeltaPretrainOutput(loss, pred, warped, d)


# ------------------------------------------------------------------------------------------------------
# interleaved I / Δ sequence
# ------------------------------------------------------------------------------------------------------


@dataclass
class CopeSequence:
    """The visual token stream of one video: I-frame tokens and Δ-tokens in temporal order (paper §3.2).

    ``embeds`` ``[L, d]`` goes into the LLM at the video placeholders (see :meth:`scatter`); ``runs`` are the
    ``(t_s, n_tokens)`` runs for :class:`ov2_model.chat.VisualLayout` (one run per I-frame and per P-step).
    """

    embeds: torch.Tensor
    is_delta: torch.Tensor  #: bool ``[L]``
    t_s: torch.Tensor  #: float ``[L]`` timestamp of each token
    runs: list[tuple[float, int]]

    def layout(self):
        """The chat-template layout of this sequence (a video)."""
        from .chat import VisualLayout

        return VisualLayout.video(self.runs)

    @staticmethod
    def scatter(inputs_embeds: torch.Tensor, input_ids: torch.Tensor, placeholder_id: int,
                sequences: Sequence["CopeSequence"]) -> torch.Tensor:
        """Put the sequences' embeddings at the ``placeholder_id`` positions of ``inputs_embeds`` ``[B, L, D]``
        (in order), as the model does for encoder features; pass the result as ``inputs_embeds``."""
        feats = torch.cat([s.embeds for s in sequences]).to(inputs_embeds.dtype)
        mask = input_ids == placeholder_id
        if int(mask.sum()) != feats.shape[0]:
            raise ValueError(f"{int(mask.sum())} placeholders for {feats.shape[0]} visual tokens")
        return inputs_embeds.masked_scatter(mask.unsqueeze(-1).expand_as(inputs_embeds), feats)


def cope_order(i_times: Sequence[float], delta_times: Sequence[float]) -> list[tuple[float, int, int]]:
    """Temporal order of the blocks of a CoPE stream: ``(t, is_delta, k)`` sorted by time, I-frame first on
    ties, then by index. :func:`build_cope_sequence`, :func:`cope_layout` and :class:`CopeVideoLM` all use it, so
    the chat-template runs and the embeddings always line up."""
    items = [(float(t), 0, k) for k, t in enumerate(i_times)] + [(float(t), 1, k) for k, t in enumerate(delta_times)]
    return sorted(items)


def build_cope_sequence(
    i_tokens: Sequence[torch.Tensor],
    i_times: Sequence[float],
    delta_tokens: Sequence[torch.Tensor],
    delta_times: Sequence[float],
    projector: Optional[nn.Module] = None,
) -> CopeSequence:
    """Interleave I-frame tokens (``[M_g, D]`` each, already in the LLM space, e.g. the model's merged video
    features of the GOP's I-frame) and Δ-tokens (``[N, d]`` per P-step; ``projector`` maps ``d`` to ``D`` when
    they differ) in temporal order; ties put the I-frame first."""
    if len(i_tokens) != len(i_times) or len(delta_tokens) != len(delta_times):
        raise ValueError("each token block needs one timestamp")
    order = cope_order(i_times, delta_times)
    if not order:
        raise ValueError("no tokens")
    embeds, flags, times, runs = [], [], [], []
    for t, is_d, k in order:
        x = delta_tokens[k] if is_d else i_tokens[k]
        if is_d and projector is not None:
            x = projector(x)
        embeds.append(x)
        flags.append(torch.full((x.shape[0],), bool(is_d)))
        times.append(torch.full((x.shape[0],), t))
        runs.append((t, int(x.shape[0])))
    dims = {e.shape[-1] for e in embeds}
    if len(dims) != 1:
        raise ValueError(f"I-tokens and Δ-tokens have different widths {sorted(dims)}; pass a projector")
    return CopeSequence(torch.cat(embeds), torch.cat(flags), torch.cat(times), runs)


def make_projector(d_in: int, d_out: int) -> nn.Module:
    """Two-layer MLP (Linear-GELU-Linear) from the Δ-token width to the LLM width, like the model's merger."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


__all__.append("make_projector")


# ------------------------------------------------------------------------------------------------------
# the tokenizer's ``cope`` mode -> Δ-encoder inputs, chat layout, and the VideoLM that consumes them
# ------------------------------------------------------------------------------------------------------


def _canvas_times(vt) -> torch.Tensor:
    """float64 ``[S]``: the earliest source time of each canvas's non-padding tokens (NaN for all-padding)."""
    s = int(vt.canvas_kind.shape[0])
    canvas = vt.canvas.to(torch.int64)
    t = vt.t_s.to(torch.float64)
    valid = (vt.frame.to(torch.int64) >= 0) & torch.isfinite(t)
    first = torch.full((s,), float("inf"), dtype=torch.float64).scatter_reduce(
        0, canvas[valid], t[valid], reduce="amin", include_self=True)
    return torch.where(torch.isfinite(first), first, torch.full_like(first, float("nan")))


def is_cope_tokens(vt) -> bool:
    """True for ``VisualTokens`` made by the tokenizer's ``cope`` mode (I-canvases + Δ-steps in ``groups``)."""
    groups = getattr(vt, "groups", None) or {}
    return getattr(vt, "meta", {}).get("mode") == "cope" and "delta_motion" in groups


def cope_layout(vt, num_delta_tokens: int, merge_size: Optional[int] = None):
    """Chat-template layout (:class:`ov2_model.chat.VisualLayout`) of a ``cope``-mode ``VisualTokens``: the
    I-canvases (``N_canvas / m²`` merged tokens each) and the P-steps (``num_delta_tokens`` each) in the order of
    :func:`cope_order`; consecutive blocks with the same one-decimal time label share one run."""
    from .chat import VisualLayout

    m = int(merge_size if merge_size is not None else getattr(vt, "merge_size", 2))
    s = int(vt.canvas_kind.shape[0])
    per_canvas = torch.bincount(vt.canvas.to(torch.int64), minlength=s)
    i_times = _canvas_times(vt).tolist()
    d_times = vt.groups["delta_t_s"].to(torch.float64).tolist()
    runs: list[list] = []
    for t, is_d, k in cope_order(i_times, d_times):
        n = int(num_delta_tokens) if is_d else int(per_canvas[k]) // (m * m)
        label = round(t, 1) if t == t else None  # NaN: an all-padding canvas joins the run before it
        if runs and (label is None or runs[-1][0] == label):
            runs[-1][1] += n
        else:
            runs.append([0.0 if label is None else label, n])
    return VisualLayout.video([(t_, n_) for t_, n_ in runs])


def cope_delta_inputs(vt, size: Optional[Sequence[int]] = None, mv_cell: int = 4, patch: int = 16) -> dict:
    """The Δ-encoder inputs of a ``cope``-mode ``VisualTokens``.

    Returns ``motion`` ``[P, H'/c, W'/c, 2]`` float32 (pixels), ``residual`` ``[P, H', W', 3]`` (int16, or float32
    when resized), ``i_times`` ``[S]`` and ``delta_times`` ``[P]`` float64. ``H', W'``: the frame padded with
    zeros to a multiple of ``patch``, or ``size`` (multiples of ``patch``): the residual is resized bilinearly
    (antialiased) and the motion field resized by nearest neighbour with its vectors scaled to the new size."""
    motion = vt.groups["delta_motion"].to(torch.float32)
    residual = vt.groups["delta_residual"]
    p, h, w = int(residual.shape[0]), int(residual.shape[1]), int(residual.shape[2])
    if size is None:
        hp, wp = -(-h // patch) * patch, -(-w // patch) * patch
        res = F.pad(residual, (0, 0, 0, wp - w, 0, hp - h))
        mh, mw = hp // mv_cell, wp // mv_cell
        mot = F.pad(motion, (0, 0, 0, max(0, mw - motion.shape[2]), 0, max(0, mh - motion.shape[1])))[:, :mh, :mw]
    else:
        hp, wp = int(size[0]), int(size[1])
        if hp % patch or wp % patch:
            raise ValueError(f"delta size {hp}x{wp} is not a multiple of the {patch}-pixel patch")
        if p:
            res = F.interpolate(residual.permute(0, 3, 1, 2).float(), size=(hp, wp), mode="bilinear",
                                align_corners=False, antialias=True).permute(0, 2, 3, 1).contiguous()
            mot = F.interpolate(motion.permute(0, 3, 1, 2), size=(hp // mv_cell, wp // mv_cell), mode="nearest")
            mot = (mot * torch.tensor([wp / w, hp / h]).view(1, 2, 1, 1)).permute(0, 2, 3, 1).contiguous()
        else:
            res = torch.zeros(0, hp, wp, 3)
            mot = torch.zeros(0, hp // mv_cell, wp // mv_cell, 2)
    return {"motion": mot, "residual": res, "i_times": _canvas_times(vt),
            "delta_times": vt.groups["delta_t_s"].to(torch.float64)}


class CopeVideoLM(nn.Module):
    """A LLaVA-OneVision-2 model that also reads CoPE streams (paper §3.2, Eq. 2).

    ``forward`` takes the model's keyword arguments; when the batch holds ``cope``-mode videos (keys ``cope_*``,
    built by :func:`ov2_model.train.collate_samples`) the I-canvases go through the model's vision tower and
    merger (one block of merged tokens per I-frame), the P-steps through the Δ-encoder and ``projector`` (``N``
    tokens each, at the LLM width), the two are interleaved in temporal order (:func:`build_cope_sequence`) and
    scattered at the ``<|video_pad|>`` positions together with the features of ordinary videos (in the order of
    ``video_is_cope``) and images; the language model then runs on ``inputs_embeds``.
    """

    def __init__(self, lm: nn.Module, delta: DeltaEncoder, projector: Optional[nn.Module] = None):
        super().__init__()
        self.lm = lm
        self.delta = delta
        text_width = int(lm.config.text_config.hidden_size)
        self.projector = projector if projector is not None else make_projector(delta.config.d_model, text_width)

    @property
    def config(self):
        return self.lm.config

    def delta_tokens(self, motion: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``[P, N, D_llm]`` projected Δ-tokens of one video's P-steps."""
        return self.projector(self.delta(motion, residual).tokens)

    def embed(self, input_ids: torch.Tensor, cope_pixel_values: Optional[torch.Tensor] = None,
              cope_grid_thw: Optional[torch.Tensor] = None, cope_patch_positions: Optional[torch.Tensor] = None,
              cope_group_ids: Optional[torch.Tensor] = None, cope_motion: Optional[Sequence[torch.Tensor]] = None,
              cope_residual: Optional[Sequence[torch.Tensor]] = None,
              cope_i_times: Optional[Sequence[torch.Tensor]] = None,
              cope_delta_times: Optional[Sequence[torch.Tensor]] = None,
              video_is_cope: Optional[torch.Tensor] = None, **kwargs) -> tuple[torch.Tensor, dict]:
        """``inputs_embeds`` ``[B, L, D]`` with every visual input (images, ordinary videos, CoPE streams) in place,
        and the keyword arguments that are left for the language model."""
        cfg = self.lm.config
        pixel_values = kwargs.pop("pixel_values", None)
        pixel_values_videos = kwargs.pop("pixel_values_videos", None)
        positions = kwargs.pop("patch_positions", None)
        image_grid_thw, image_group_ids = kwargs.pop("image_grid_thw", None), kwargs.pop("image_group_ids", None)
        video_grid_thw, video_group_ids = kwargs.pop("video_grid_thw", None), kwargs.pop("video_group_ids", None)
        n_img = pixel_values.shape[0] if pixel_values is not None else 0
        embeds = self.lm.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            feats = torch.cat(self.lm.get_image_features(pixel_values, image_grid_thw,
                                                         None if positions is None else positions[:n_img],
                                                         image_group_ids))
            embeds = _scatter(embeds, input_ids, cfg.image_token_id, feats)
        plain = []
        if pixel_values_videos is not None:
            plain = list(self.lm.get_video_features(pixel_values_videos, video_grid_thw,
                                                    None if positions is None else positions[n_img:],
                                                    video_group_ids))
        cope = []
        if cope_pixel_values is not None:
            i_feats = self.lm.get_video_features(cope_pixel_values, cope_grid_thw, cope_patch_positions,
                                                 cope_group_ids)
            for v, feats in enumerate(i_feats):
                n_canvas = int(cope_grid_thw[v, 0])
                i_tok = list(torch.chunk(feats, n_canvas)) if n_canvas else []
                motion, residual = cope_motion[v], cope_residual[v]
                d_tok = list(self.delta_tokens(motion, residual)) if motion.shape[0] else []
                seq = build_cope_sequence(i_tok, cope_i_times[v].tolist(), d_tok, cope_delta_times[v].tolist())
                cope.append(seq.embeds)
        if plain or cope:
            order = video_is_cope.tolist() if video_is_cope is not None else [False] * len(plain) + [True] * len(cope)
            if sum(bool(x) for x in order) != len(cope) or len(order) - len(cope) != len(plain):
                raise ValueError("video_is_cope does not match the ordinary and cope videos of the batch")
            it_plain, it_cope = iter(plain), iter(cope)
            feats = torch.cat([next(it_cope) if c else next(it_plain) for c in order])
            embeds = _scatter(embeds, input_ids, cfg.video_token_id, feats)
        return embeds, kwargs

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **kwargs):
        if kwargs.get("cope_pixel_values") is None:
            return self.lm(input_ids=input_ids, attention_mask=attention_mask,
                           **{k: v for k, v in kwargs.items() if not k.startswith("cope_") and k != "video_is_cope"})
        embeds, rest = self.embed(input_ids, **kwargs)
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, **rest)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **kwargs):
        """Greedy / sampled generation: the prompt's embeddings (CoPE streams included) are built once by
        :meth:`embed` and prefilled as ``inputs_embeds``; decoding continues on text tokens."""
        visual = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("cope_") or k in (
            "video_is_cope", "pixel_values", "pixel_values_videos", "patch_positions", "image_grid_thw",
            "image_group_ids", "video_grid_thw", "video_group_ids")}
        embeds, _ = self.embed(input_ids, **visual)
        return self.lm.generate(input_ids=input_ids, inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


def _scatter(embeds: torch.Tensor, input_ids: torch.Tensor, token_id: int, feats: torch.Tensor) -> torch.Tensor:
    mask = input_ids == int(token_id)
    if int(mask.sum()) != feats.shape[0]:
        raise ValueError(f"placeholder {token_id} appears {int(mask.sum())} times for {feats.shape[0]} visual tokens")
    return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), feats.to(embeds.dtype))


__all__ += ["cope_order", "cope_layout", "cope_delta_inputs", "is_cope_tokens", "CopeVideoLM"]

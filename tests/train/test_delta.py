"""CoPE Δ-encoder: shapes, parameter budget, pre-training on synthetic translating textures, I/Δ sequence."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ov2_model.delta import (CopeSequence, DeltaEncoder, DeltaEncoderConfig, DeltaPretrainer, ResNet18Trunk,
                             build_cope_sequence, count_parameters, make_projector, normalize_motion, patchwise_mse)


def test_parameter_count_at_paper_dimensions_is_below_15m() -> None:
    for mv_cell in (4, 1):  # ov2's quarter-resolution field, the paper's dense 16x16x2 patch input
        enc = DeltaEncoder(DeltaEncoderConfig(mv_cell=mv_cell))
        n = count_parameters(enc)
        assert 5_000_000 < n < 15_000_000, n
        assert enc.config.d_model == 1152 and enc.config.num_tokens == 8
        assert enc.motion_in == 2 * (16 // mv_cell) ** 2
    # the full ResNet-18 trunk (layer4 included) is the standard 11.2M-parameter network
    assert abs(count_parameters(ResNet18Trunk(3, 64, 4)) - 11_176_512) == 0


def test_shapes_and_grid() -> None:
    cfg = DeltaEncoderConfig(d_model=48, width=24, num_heads=3, num_layers=1, resnet_base=8, k_tau=3, k_delta=5)
    enc = DeltaEncoder(cfg)
    out = enc(torch.randn(2, 12, 8, 2), torch.randn(2, 48, 32, 3))  # H=48, W=32 -> grid 3x2
    assert out.tokens.shape == (2, 8, 48)
    assert out.motion_tokens.shape == (2, 3, 48) and out.residual_tokens.shape == (2, 5, 48)
    assert out.grid_hw == (3, 2)
    assert torch.equal(out.tokens[:, :3], out.motion_tokens)
    with pytest.raises(ValueError, match="does not match"):
        enc(torch.randn(2, 8, 8, 2), torch.randn(2, 48, 32, 3))
    with pytest.raises(ValueError, match="multiple of the 16-pixel patch"):
        enc(torch.randn(1, 5, 5, 2), torch.randn(1, 20, 20, 3))
    # the motion field really is cut into 16x16-pixel patches: changing one patch changes only its feature row
    tau = torch.zeros(1, 12, 8, 2)
    f0, _ = enc.motion_features(tau)
    tau[0, 4:8, 0:4] = 5.0  # patch (1, 0) of the 3x2 grid
    f1, _ = enc.motion_features(tau)
    changed = (f0 - f1).abs().sum(-1)[0] > 0
    assert changed.tolist() == [False, False, True, False, False, False]


def test_motion_normalisation() -> None:
    tau = torch.tensor([[[[4.0, -8.0]]]])
    assert torch.allclose(normalize_motion(tau, "fixed", 8.0), torch.tensor([[[[0.5, -1.0]]]]))
    mm = normalize_motion(torch.tensor([[[[0.0, 2.0]], [[4.0, 1.0]]]]), "minmax")
    assert float(mm.min()) == -1.0 and float(mm.max()) == 1.0


def _textures(b: int, g: torch.Generator) -> torch.Tensor:
    return F.interpolate(torch.randn(b, 3, 4, 4, generator=g), size=(32, 32), mode="bicubic", align_corners=False)


def _pairs(b: int, g: torch.Generator):
    """Reference frame, target = reference translated by a whole token (±8 px or 0 per axis) + a brightness
    change; motion field (quarter resolution, pixels) and residual against the warped reference."""
    ref = _textures(b, g)
    shift = torch.randint(-1, 2, (b, 2), generator=g) * 8  # (dy, dx)
    warped = torch.stack([torch.roll(ref[i], (int(shift[i, 0]), int(shift[i, 1])), (1, 2)) for i in range(b)])
    tgt = warped + 0.1 * torch.randn(b, 3, 1, 1, generator=g)
    tau = torch.zeros(b, 8, 8, 2)
    tau[..., 0] = shift[:, 1].view(-1, 1, 1).float()
    tau[..., 1] = shift[:, 0].view(-1, 1, 1).float()
    return ref, tgt, tau, (tgt - warped).permute(0, 2, 3, 1)


def test_pretraining_loss_falls_and_warped_prediction_beats_copying() -> None:
    torch.manual_seed(0)
    image_encoder = torch.nn.Conv2d(3, 16, 8, 8).requires_grad_(False)  # the frozen "image encoder": 4x4 tokens
    tokens = lambda x: image_encoder(x).flatten(2).transpose(1, 2)  # noqa: E731
    cfg = DeltaEncoderConfig(d_model=32, width=32, num_heads=2, num_layers=1, resnet_base=8, motion_scale=8.0,
                             residual_scale=1.0)
    model = DeltaPretrainer(DeltaEncoder(cfg), image_dim=16)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(150):
        ref, tgt, tau, resid = _pairs(16, g)
        out = model(tau, resid, DeltaPretrainer.frozen_tokens(tokens, ref), DeltaPretrainer.frozen_tokens(tokens, tgt),
                    (4, 4))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.7 * losses[0]
    # held-out pairs: the warped prediction is closer to the target tokens than the reference tokens are
    model.eval()
    ref, tgt, tau, resid = _pairs(64, torch.Generator().manual_seed(99))
    with torch.no_grad():
        out = model(tau, resid, tokens(ref), tokens(tgt), (4, 4))
    copy = patchwise_mse(tokens(ref), tokens(tgt))
    assert float(out.loss) < 0.8 * float(copy)
    # ... and it uses the motion: the same pairs with the motion field zeroed are predicted worse
    with torch.no_grad():
        still = model(torch.zeros_like(tau), resid, tokens(ref), tokens(tgt), (4, 4))
    assert float(out.loss) < 0.9 * float(still.loss)
    assert out.prediction.shape == (64, 16, 16) and out.delta.tokens.shape == (64, 8, 32)


def test_patchwise_mse_is_eq10() -> None:
    a, b = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    manual = sum(((a[i, j] - b[i, j]) ** 2).sum() for i in range(2) for j in range(5)) / 10
    assert torch.allclose(patchwise_mse(a, b), manual)


def test_interleaved_sequence_and_scatter() -> None:
    i_tok = [torch.full((3, 4), 1.0), torch.full((3, 4), 2.0)]
    d_tok = [torch.full((2, 6), 10.0), torch.full((2, 6), 20.0), torch.full((2, 6), 30.0)]
    proj = make_projector(6, 4)
    seq = build_cope_sequence(i_tok, [0.0, 8.0], d_tok, [1.0, 2.0, 9.0], projector=proj)
    assert seq.runs == [(0.0, 3), (1.0, 2), (2.0, 2), (8.0, 3), (9.0, 2)]
    assert seq.is_delta.tolist() == [False] * 3 + [True] * 4 + [False] * 3 + [True] * 2
    assert seq.embeds.shape == (12, 4)
    assert torch.equal(seq.embeds[7:10], i_tok[1])
    with pytest.raises(ValueError, match="projector"):
        build_cope_sequence(i_tok, [0.0, 8.0], d_tok, [1.0, 2.0, 9.0])
    lay = seq.layout()
    assert lay.modality == "video" and lay.num_tokens == 12
    ids = torch.tensor([[7] + [501] * 12 + [8]])
    emb = CopeSequence.scatter(torch.zeros(1, 14, 4), ids, 501, [seq]).detach()
    assert torch.equal(emb[0, 1:13], seq.embeds.detach()) and float(emb[0, 0].abs().sum()) == 0.0


def test_cope_delta_inputs_pad_or_resize_the_tokenizer_output() -> None:
    """cope-mode ``groups`` -> Δ-encoder inputs: zero padding to a multiple of 16, or a resize that scales the
    motion vectors with the frame."""
    from types import SimpleNamespace

    from ov2_model.delta import cope_delta_inputs, cope_layout, is_cope_tokens

    p, h, w = 3, 40, 72
    motion = torch.zeros(p, h // 4, w // 4, 2)
    motion[..., 0], motion[..., 1] = 4.0, -2.0
    residual = torch.randint(-50, 50, (p, h, w, 3), dtype=torch.int16)
    vt = SimpleNamespace(
        meta={"mode": "cope"}, merge_size=2,
        groups={"delta_motion": motion, "delta_residual": residual, "delta_t_s": torch.tensor([0.5, 1.0, 2.0])},
        canvas_kind=torch.zeros(2, dtype=torch.int8), canvas=torch.tensor([0] * 8 + [1] * 8),
        t_s=torch.tensor([0.0] * 8 + [1.0] * 8), frame=torch.tensor([0] * 8 + [30] * 8))
    assert is_cope_tokens(vt)
    d = cope_delta_inputs(vt)
    assert d["residual"].shape == (p, 48, 80, 3) and d["motion"].shape == (p, 12, 20, 2)
    assert torch.equal(d["residual"][:, :h, :w], residual) and int(d["residual"][:, h:].abs().sum()) == 0
    assert float(d["motion"][:, :10, :18, 0].min()) == 4.0 and float(d["motion"][:, 10:].abs().sum()) == 0
    r = cope_delta_inputs(vt, size=(80, 144))  # twice the frame: vectors double
    assert r["residual"].shape == (p, 80, 144, 3) and r["motion"].shape == (p, 20, 36, 2)
    assert torch.allclose(r["motion"][..., 0], torch.full((p, 20, 36), 8.0))
    assert torch.allclose(r["motion"][..., 1], torch.full((p, 20, 36), -4.0))
    with pytest.raises(ValueError, match="multiple of the 16"):
        cope_delta_inputs(vt, size=(40, 72))
    assert d["i_times"].tolist() == [0.0, 1.0] and d["delta_times"].tolist() == [0.5, 1.0, 2.0]
    # layout: I(0.0) 2 tokens, Δ(0.5) 8, then I(1.0) before Δ(1.0) in one run (same label), Δ(2.0)
    lay = cope_layout(vt, 8)
    assert [(r.t_s, r.n_tokens) for r in lay.runs] == [(0.0, 2), (0.5, 8), (1.0, 10), (2.0, 8)]
    enc = DeltaEncoder(DeltaEncoderConfig(d_model=16, width=16, num_heads=2, num_layers=1, resnet_base=4))
    assert enc(d["motion"], d["residual"]).tokens.shape == (p, 8, 16)

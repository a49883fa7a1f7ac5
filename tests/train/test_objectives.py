"""OneVision-Encoder multi-label cluster discrimination and the attentive probe."""
from __future__ import annotations

import pytest
import torch

from ov2_model.objectives import (AttentiveProbe, MultiLabelClusterDiscrimination, dense_cluster_discrimination_loss,
                                  train_attentive_probe)


def _labels(b: int, k: int, n: int, g: torch.Generator) -> torch.Tensor:
    lab = torch.stack([torch.randperm(k, generator=g)[:n] for _ in range(b)])
    lab[0, n // 2:] = -1  # a sample with fewer labels
    return lab


def test_margin_only_on_positive_logits() -> None:
    torch.manual_seed(0)
    fn = MultiLabelClusterDiscrimination(50, 8, margin=0.3, scale=64.0, sample_ratio=1.0)
    emb = torch.randn(3, 8)
    labels = torch.tensor([[1, 4, -1], [7, -1, -1], [1, 2, 3]])
    out = fn(emb, labels)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(fn.centres, dim=1).t()
    expected = 64.0 * cos[:, out.class_index]
    for b, row in enumerate(labels.tolist()):
        for y in row:
            if y >= 0:
                expected[b, (out.class_index == y).nonzero().item()] -= 64.0 * 0.3
    assert torch.allclose(out.logits, expected, atol=1e-5)
    # no margin: logits are the plain scaled cosines
    plain = MultiLabelClusterDiscrimination(50, 8, margin=0.0, sample_ratio=1.0)
    plain.centres.data.copy_(fn.centres.data)
    out0 = plain(emb, labels)
    diff = (out0.logits - out.logits)
    assert int((diff.abs() > 1e-6).sum()) == int((labels >= 0).sum())  # exactly one entry per positive


def test_sampling_keeps_positives_and_takes_ratio_of_negatives() -> None:
    g = torch.Generator().manual_seed(0)
    fn = MultiLabelClusterDiscrimination(1000, 8, sample_ratio=0.1)
    labels = _labels(6, 1000, 10, g)
    pos = set(labels[labels >= 0].tolist())
    for seed in range(3):
        out = fn(torch.randn(6, 8), labels, generator=torch.Generator().manual_seed(seed))
        idx = out.class_index.tolist()
        assert pos <= set(idx) and len(set(idx)) == len(idx)
        assert len(idx) == len(pos) + round(0.1 * (1000 - len(pos)))
        # each pair's target column is the positive class it stands for
        drawn_classes = out.class_index[out.pair_target]
        for s, c in zip(out.pair_sample.tolist(), drawn_classes.tolist()):
            assert c in labels[s].tolist()
    zero = MultiLabelClusterDiscrimination(1000, 8, sample_ratio=0.0)(torch.randn(6, 8), labels)
    assert set(zero.class_index.tolist()) == pos


def test_eight_labels_per_sample_per_step() -> None:
    g = torch.Generator().manual_seed(1)
    fn = MultiLabelClusterDiscrimination(200, 8, sample_ratio=0.5, num_positive=8)
    labels = torch.stack([torch.randperm(200, generator=g)[:10] for _ in range(4)])
    out = fn(torch.randn(4, 8), labels, generator=torch.Generator().manual_seed(3))
    assert torch.bincount(out.pair_sample, minlength=4).tolist() == [8, 8, 8, 8]


@pytest.mark.parametrize("seed", range(8))
def test_matches_dense_reference_loss_and_gradients_at_full_sampling(seed: int) -> None:
    """Every input comes from the test's own generator (the result must not depend on the global RNG, which other
    tests advance). In float64 the two forms agree to rounding; in float32 the centre gradients are large (centres
    of norm ~0.025: the normalisation multiplies by ~40) and cancel in places, so float32 is compared relative to
    the gradient's scale."""
    g = torch.Generator().manual_seed(seed)
    labels = _labels(5, 40, 6, g)
    emb0 = torch.randn(5, 6, generator=g, dtype=torch.float64)
    centres0 = torch.randn(40, 6, generator=g, dtype=torch.float64) * 0.01
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        fn = MultiLabelClusterDiscrimination(40, 6, sample_ratio=1.0, num_positive=8).to(dtype)
        with torch.no_grad():
            fn.centres.copy_(centres0.to(dtype))
        emb = emb0.to(dtype).requires_grad_(True)
        loss = fn(emb, labels).loss
        ge, gc = torch.autograd.grad(loss, [emb, fn.centres])
        centres = fn.centres.detach().clone().requires_grad_(True)
        emb2 = emb.detach().clone().requires_grad_(True)
        ref = dense_cluster_discrimination_loss(emb2, centres, labels)
        re, rc = torch.autograd.grad(ref, [emb2, centres])
        assert ref.dtype == loss.dtype == dtype
        assert torch.allclose(loss, ref, rtol=tol, atol=0.0)
        for got, want in ((ge, re), (gc, rc)):
            assert float((got - want).abs().max()) <= tol * float(want.abs().max()), (dtype, got, want)

def test_sampled_loss_gradcheck_in_double() -> None:
    """Double-precision numerical gradient check of the sampled implementation."""
    torch.manual_seed(0)
    fn64 = MultiLabelClusterDiscrimination(12, 3, sample_ratio=1.0).double()
    lab = torch.tensor([[0, 5], [3, -1]])
    e64 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: fn64(e, lab).loss.double(), (e64,), eps=1e-6, atol=1e-4)


def test_loss_trains_embeddings_towards_their_centres() -> None:
    torch.manual_seed(0)
    fn = MultiLabelClusterDiscrimination(30, 8, sample_ratio=0.5, scale=16.0)
    emb = torch.nn.Parameter(torch.randn(6, 8))
    labels = torch.tensor([[i, (i + 1) % 30] for i in range(6)])
    opt = torch.optim.SGD([emb, fn.centres], lr=0.5)
    first = None
    for step in range(30):
        loss = fn(emb, labels, generator=torch.Generator().manual_seed(step)).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_attentive_probe_separable_task_above_90_percent() -> None:
    g = torch.Generator().manual_seed(0)
    n_cls, dim, t = 4, 16, 12
    dirs = torch.randn(n_cls, dim, generator=g) * 3

    def make(n: int):
        x = torch.randn(n, t, dim, generator=g)
        y = torch.randint(0, n_cls, (n,), generator=g)
        pos = torch.randint(0, t, (n,), generator=g)  # the class evidence sits in one random token
        x[torch.arange(n), pos] += dirs[y]
        return x, y

    xtr, ytr = make(400)
    xva, yva = make(200)
    mask = torch.zeros(400, t, dtype=torch.bool)
    mask[:, -2:] = True  # padding tokens are ignored
    xtr[:, -2:] = 100.0
    res = train_attentive_probe(xtr, ytr, n_cls, xva, yva, mask=mask, epochs=15, batch_size=50, lr=3e-3, num_heads=4)
    assert res.val_accuracy is not None and res.val_accuracy > 0.9, res.val_accuracy
    assert res.losses[-1] < res.losses[0]
    probe = AttentiveProbe(dim, n_cls, num_heads=4)
    assert probe(xtr[:3]).shape == (3, n_cls)
    with pytest.raises(ValueError):
        AttentiveProbe(10, 2, num_heads=4)

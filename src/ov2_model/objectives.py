"""OneVision-Encoder objectives (``papers/onevision-encoder.md`` §2.4, §4.1; DESIGN.md §6).

**Multi-label cluster discrimination.** Every sample carries several positive cluster ids (the nearest class
centres of an offline clustering, Top-10 in the paper; ``-1`` pads shorter label lists). Per step:

1. up to ``num_positive`` (8) of each sample's labels are drawn (all of them when it has fewer);
2. the class set of the step = every positive class of the batch (always kept) ∪ a uniform sample of
   ``round(ratio · #negatives)`` of the remaining classes (``ratio`` = 0.1; 1.0 = all classes);
3. logits are ``s · cos(e, c_k)`` against the L2-normalised centres of that set, with the CosFace margin
   subtracted from the target: ``s · (cos(e, c_y) − m)``, ``m`` = 0.3, ``s`` = 64;
4. each drawn label has its own softmax cross-entropy over {its class} ∪ the sampled negatives (the sample's
   other positives are masked out of that softmax: they are not negatives); the loss is the mean over all
   (sample, drawn label) pairs.

With ``ratio = 1`` the loss equals the dense formulation over all classes (tested). Under DDP the centre bank is
an ordinary replicated parameter; pass each rank the same ``generator`` seed so the sampled negatives agree
(positives differ per rank and are kept locally — the gradient all-reduce sums the rows each rank touched).

**Attentive probe.** A frozen encoder's tokens ``[B, T, D]`` → a learned query attends over the tokens
(multi-head) → ``a + MLP(RMSNorm(a))`` → LayerNorm → linear classifier (the SigLIP / OV-Encoder pooling head
used as an evaluation probe). :func:`train_attentive_probe` fits it on frozen features.

Example::

    >>> import torch
    >>> loss_fn = MultiLabelClusterDiscrimination(num_classes=100, dim=16, sample_ratio=0.1)
    >>> labels = torch.tensor([[1, 5, -1], [7, 8, 9]])
    >>> out = loss_fn(torch.randn(2, 16), labels, generator=torch.Generator().manual_seed(0))
    >>> out.class_index.numel()          # 6 positives + 10% of the 94 negatives
    15
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MultiLabelClusterDiscrimination",
    "ClusterDiscriminationOutput",
    "dense_cluster_discrimination_loss",
    "AttentiveProbe",
    "ProbeResult",
    "train_attentive_probe",
    "evaluate_probe",
]


@dataclass
class ClusterDiscriminationOutput:
    loss: torch.Tensor  #: scalar
    logits: torch.Tensor  #: ``[B, S]`` scaled logits against the sampled classes, margin on targets
    class_index: torch.Tensor  #: ``[S]`` class id of each logit column (positives first, sorted)
    pair_sample: torch.Tensor  #: ``[P]`` sample of each (sample, label) pair
    pair_target: torch.Tensor  #: ``[P]`` column (into ``class_index``) of each pair's positive


def _draw_labels(labels: torch.Tensor, k: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Keep at most ``k`` valid labels per row (random subset), ``-1`` elsewhere."""
    valid = labels >= 0
    if int(valid.sum(1).max()) <= k:
        return labels
    noise = torch.rand(labels.shape, generator=generator, device="cpu").to(labels.device)
    noise = noise.masked_fill(~valid, 2.0)  # invalid last
    order = noise.argsort(dim=1)
    keep = torch.zeros_like(valid)
    keep.scatter_(1, order[:, :k], True)
    return labels.masked_fill(~(keep & valid), -1)


class MultiLabelClusterDiscrimination(nn.Module):
    """Multi-label cluster discrimination with a bank of class centres and sampled negatives.

    Args:
        num_classes: K, size of the centre bank.
        dim: embedding dimension.
        margin: CosFace margin m subtracted from the target cosine (0.3).
        scale: logit scale s (64).
        sample_ratio: share of negative centres sampled per step (0.1; 1.0 = dense).
        num_positive: labels drawn per sample per step (8).
    """

    def __init__(self, num_classes: int, dim: int, margin: float = 0.3, scale: float = 64.0,
                 sample_ratio: float = 0.1, num_positive: int = 8):
        super().__init__()
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError("sample_ratio must be in [0, 1]")
        self.num_classes, self.margin, self.scale = num_classes, margin, scale
        self.sample_ratio, self.num_positive = sample_ratio, num_positive
        self.centres = nn.Parameter(torch.randn(num_classes, dim) * 0.01)

    def sample_classes(self, positives: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Sorted positive class ids followed by ``round(ratio · #negatives)`` random negatives."""
        pos = torch.unique(positives[positives >= 0])
        is_neg = torch.ones(self.num_classes, dtype=torch.bool)
        is_neg[pos.cpu()] = False
        neg = torch.nonzero(is_neg).flatten()
        n_take = int(round(self.sample_ratio * neg.numel()))
        if n_take < neg.numel():
            neg = neg[torch.randperm(neg.numel(), generator=generator)[:n_take]].sort().values
        return torch.cat([pos.cpu(), neg]).to(self.centres.device)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> ClusterDiscriminationOutput:
        """``embeddings`` ``[B, D]``, ``labels`` ``[B, L]`` class ids (``-1`` = none) → loss and logits."""
        if labels.dim() != 2 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError("labels must be [B, L] with B = embeddings.shape[0]")
        if bool((labels >= self.num_classes).any()):
            raise ValueError("label id out of range")
        labels = labels.to(embeddings.device)
        drawn = _draw_labels(labels, self.num_positive, generator)
        cls = self.sample_classes(labels, generator)  # all positives of the batch are kept
        col = torch.full((self.num_classes,), -1, dtype=torch.long, device=embeddings.device)
        col[cls] = torch.arange(cls.numel(), device=embeddings.device)
        dt = torch.promote_types(embeddings.dtype, torch.float32)  # fp32 at least (fp64 kept for gradcheck)
        cos = F.normalize(embeddings.to(dt), dim=1) @ F.normalize(self.centres[cls].to(dt), dim=1).t()  # [B, S]
        # (sample, label) pairs
        pair_sample, slot = torch.nonzero(drawn >= 0, as_tuple=True)
        pair_target = col[drawn[pair_sample, slot]]
        # every positive of a sample, as columns, to mask them out of the other labels' softmax
        pos_mask = torch.zeros_like(cos, dtype=torch.bool)
        valid_b, valid_l = torch.nonzero(labels >= 0, as_tuple=True)
        pos_mask[valid_b, col[labels[valid_b, valid_l]]] = True
        target_mask = torch.zeros_like(cos, dtype=torch.bool)
        target_mask[pair_sample, pair_target] = True
        logits = self.scale * (cos - self.margin * target_mask.to(dt))  # margin only where a label is a target
        pair_logits = logits[pair_sample]  # [P, S]
        others = pos_mask[pair_sample].clone()
        others[torch.arange(pair_target.numel(), device=others.device), pair_target] = False
        pair_logits = pair_logits.masked_fill(others, float("-inf"))
        if pair_target.numel() == 0:
            loss = cos.sum() * 0.0
        else:
            loss = F.cross_entropy(pair_logits, pair_target)
        return ClusterDiscriminationOutput(loss, logits, cls, pair_sample, pair_target)


def dense_cluster_discrimination_loss(embeddings: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor,
                                      margin: float = 0.3, scale: float = 64.0) -> torch.Tensor:
    """Reference: the same per-label margin-softmax over *all* classes, written as a plain loop (for tests); float32
    at least, float64 kept."""
    dt = torch.promote_types(embeddings.dtype, torch.float32)
    e = F.normalize(embeddings.to(dt), dim=1)
    c = F.normalize(centres.to(dt), dim=1)
    cos = e @ c.t()
    terms = []
    for b in range(labels.shape[0]):
        pos = [int(x) for x in labels[b] if int(x) >= 0]
        for y in pos:
            z = scale * cos[b].clone()
            z[y] = scale * (cos[b, y] - margin)
            keep = torch.ones_like(z, dtype=torch.bool)
            for o in pos:
                if o != y:
                    keep[o] = False
            terms.append(torch.logsumexp(z[keep], 0) - z[y])
    return torch.stack(terms).mean()


class AttentiveProbe(nn.Module):
    """Attentive-pooling probe: learned query → multi-head attention over tokens → ``a + MLP(RMSNorm(a))``
    → LayerNorm → linear classifier."""

    def __init__(self, dim: int, num_classes: int, num_heads: int = 8, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim must be divisible by num_heads")
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.RMSNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.out_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def pool(self, tokens: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, T, D]`` (``key_padding_mask`` True = padding) → pooled ``[B, D]``."""
        q = self.query.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        a, _ = self.attn(q, tokens, tokens, key_padding_mask=key_padding_mask, need_weights=False)
        a = a + self.mlp(self.norm(a))
        return self.out_norm(a[:, 0])

    def forward(self, tokens: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Class logits ``[B, num_classes]``."""
        return self.head(self.pool(tokens, key_padding_mask))


@dataclass
class ProbeResult:
    probe: AttentiveProbe
    train_accuracy: float
    val_accuracy: Optional[float]
    losses: list[float]


@torch.no_grad()
def evaluate_probe(probe: AttentiveProbe, features: torch.Tensor, labels: torch.Tensor,
                   mask: Optional[torch.Tensor] = None, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``probe`` on frozen ``features`` ``[N, T, D]``."""
    probe.eval()
    correct = 0
    for i in range(0, features.shape[0], batch_size):
        m = None if mask is None else mask[i:i + batch_size]
        pred = probe(features[i:i + batch_size], m).argmax(-1)
        correct += int((pred == labels[i:i + batch_size]).sum())
    return correct / max(1, features.shape[0])


def train_attentive_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    val_features: Optional[torch.Tensor] = None,
    val_labels: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    val_mask: Optional[torch.Tensor] = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    num_heads: int = 8,
    seed: int = 0,
) -> ProbeResult:
    """Fit an :class:`AttentiveProbe` on frozen features ``[N, T, D]`` (``mask`` ``[N, T]`` True = padding) with
    AdamW and a cosine schedule; returns the probe and its train / validation accuracy."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    features = features.detach()
    probe = AttentiveProbe(features.shape[-1], num_classes, num_heads=num_heads)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    n = features.shape[0]
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / max(1, steps)))))
    losses = []
    for _ in range(epochs):
        probe.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            m = None if mask is None else mask[idx]
            loss = F.cross_entropy(probe(features[idx], m), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    train_acc = evaluate_probe(probe, features, labels, mask)
    val_acc = None
    if val_features is not None and val_labels is not None:
        val_acc = evaluate_probe(probe, val_features, val_labels, val_mask)
    return ProbeResult(probe, train_acc, val_acc, losses)

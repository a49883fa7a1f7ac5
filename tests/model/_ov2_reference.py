"""An independent, deliberately plain implementation of the LLaVA-OneVision-2 vision tower.

Written from the equations (float64, explicit loops where they make the maths visible), sharing no code
with ``ov2_model``: it reads the weights from a state dict and returns merged tokens. Tests compare
``ov2_model`` against it for configurations the parity fixture does not cover.
"""

from __future__ import annotations

import math

import torch


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def rope_angles(pos, head_dim, theta):
    """[N, head_dim] angles: bands T:H:W = 4:6:6 of head_dim/2, then the half repeated."""
    half = head_dim // 2
    sizes = [half * 4 // 16, half * 6 // 16, half * 6 // 16]
    cols = []
    for axis, n in enumerate(sizes):
        for k in range(n):
            cols.append(pos[:, axis].double() * theta ** (-k / n))
    a = torch.stack(cols, dim=1)
    return torch.cat([a, a], dim=1)


def rope(x, ang):
    """x [N, H, D]; pair (2i, 2i+1): y0 = x0 cos a_{2i} - x1 sin a_{2i}, y1 = x1 cos a_{2i+1} + x0 sin a_{2i+1}."""
    y = torch.empty_like(x)
    d = x.shape[-1]
    for i in range(0, d, 2):
        a0 = ang[:, i][:, None]
        a1 = ang[:, i + 1][:, None]
        y[..., i] = x[..., i] * torch.cos(a0) - x[..., i + 1] * torch.sin(a0)
        y[..., i + 1] = x[..., i + 1] * torch.cos(a1) + x[..., i] * torch.sin(a1)
    return y


def window_groups(grid_thw, frame_windows_size):
    """Per-token group id: rows cut into windows of ``frame_windows_size`` slices (python loops)."""
    ids, gid = [], 0
    for t, h, w in grid_thw.tolist():
        for s in range(t):
            if s > 0 and s % frame_windows_size == 0:
                gid += 1
            ids += [gid] * (h * w)
        gid += 1
    return torch.tensor(ids)


def vision_forward(sd, cfg, pixels, positions, groups, windows=None, prefix=""):
    """Merged tokens [N/m^2, out] (and per-patch features) of the tower, float64.

    ``sd``: state dict of ``LlavaOnevision2VisionModel`` (keys without ``prefix``); ``cfg``: its config.
    """
    W = {k[len(prefix):]: v.double() for k, v in sd.items() if k.startswith(prefix)}
    D, H = cfg.hidden_size, cfg.num_attention_heads
    hd = D // H
    p = cfg.patch_size
    eps = cfg.layer_norm_eps
    rms = cfg.layer_norm_type == "rms_norm"

    def norm(x, name):
        return rms_norm(x, W[name + ".weight"], eps) if rms else layer_norm(x, W[name + ".weight"], W[name + ".bias"], eps)

    x = pixels.double().reshape(-1, 3 * p * p) @ W["embeddings.patch_embedding.weight"].reshape(D, -1).T
    n = x.shape[0]
    ang = rope_angles(positions, hd, cfg.rope_theta)
    visible = groups[:, None] == groups[None, :]
    if windows is not None:
        visible &= windows[:, None] == windows[None, :]
    x = norm(x, "layernorm_pre")
    for i in range(cfg.num_hidden_layers):
        L = f"encoder.layers.{i}."
        y = norm(x, L + "layer_norm1")
        qkv = y @ W[L + "self_attn.qkv.weight"].T + W[L + "self_attn.qkv.bias"]
        q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        q, k, v = (t.reshape(n, H, hd) for t in (q, k, v))
        q, k = rope(q, ang), rope(k, ang)
        heads = []
        for h in range(H):
            s = q[:, h] @ k[:, h].T / math.sqrt(hd)
            s = s.masked_fill(~visible, float("-inf"))
            heads.append(torch.softmax(s, dim=-1) @ v[:, h])
        o = torch.cat(heads, dim=1)
        x = x + o @ W[L + "self_attn.proj.weight"].T + W[L + "self_attn.proj.bias"]
        y = norm(x, L + "layer_norm2")
        y = gelu(y @ W[L + "mlp.fc1.weight"].T + W[L + "mlp.fc1.bias"]) @ W[L + "mlp.fc2.weight"].T + W[L + "mlp.fc2.bias"]
        x = x + y
    if cfg.use_head:
        x = norm(x, "layernorm_post")
    m = cfg.spatial_merge_size
    z = layer_norm(x, W["merger.ln_q.weight"], W["merger.ln_q.bias"], eps)
    z = torch.stack([torch.cat([z[j * m * m + r] for r in range(m * m)]) for j in range(n // (m * m))])
    z = gelu(z @ W["merger.mlp.0.weight"].T + W["merger.mlp.0.bias"]) @ W["merger.mlp.2.weight"].T + W["merger.mlp.2.bias"]
    return z, x


def pooling_head(sd, cfg, x, prefix=""):
    """Attention pooling of tokens x [L, D] with the head's weights (probe, MHA, RMSNorm, MLP), float64."""
    W = {k[len(prefix):]: v.double() for k, v in sd.items() if k.startswith(prefix)}
    D, H = cfg.hidden_size, cfg.num_attention_heads
    hd = D // H
    wq, wk, wv = W["head.attention.in_proj_weight"].split(D)
    bq, bk, bv = W["head.attention.in_proj_bias"].split(D)
    q = W["head.probe"].reshape(1, D) @ wq.T + bq
    k = x.double() @ wk.T + bk
    v = x.double() @ wv.T + bv
    heads = []
    for h in range(H):
        sl = slice(h * hd, (h + 1) * hd)
        a = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(hd), dim=-1)
        heads.append(a @ v[:, sl])
    a = torch.cat(heads, 1) @ W["head.attention.out_proj.weight"].T + W["head.attention.out_proj.bias"]
    y = rms_norm(a, W["head.norm.weight"], cfg.layer_norm_eps)
    y = gelu(y @ W["head.mlp.fc1.weight"].T + W["head.mlp.fc1.bias"]) @ W["head.mlp.fc2.weight"].T + W["head.mlp.fc2.bias"]
    return (a + y)[0]


def perturb_(model, std=0.02, seed=0):
    """Add N(0, std) noise to every parameter (as the parity fixture did), deterministic."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model

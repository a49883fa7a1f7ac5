"""Pure-numpy reference of ov2's codec-stream tokenization (DESIGN.md §5, paper §2.2 Eq. 1–6).

Written straight from the equations for readability, not speed. The C++ core (csrc/tokenize, exposed as
``ov2_tokenizer._core.tok``) must agree with it: bit-identical where the arithmetic is the same sequence of
IEEE double operations (every function here evaluates its sums in the order documented in the C++ headers),
and identical group boundaries / selected blocks / records everywhere. docs/tokenize.md lists the choices
made where DESIGN.md is silent.
"""
from __future__ import annotations

import math

import numpy as np

NEG_INF = float("-inf")


# --------------------------------------------------------------------------------------------- §5.1 geometry
def canvas_size(height, width, patch=14, merge=2, min_pixels=3136, max_pixels=313600):
    f = patch * merge
    if min_pixels > max_pixels or f * f > max_pixels:
        raise ValueError("bounds cannot be met")
    area = float(height) * float(width)
    s = 1.0
    if area > max_pixels:
        s = math.sqrt(max_pixels / area)
    elif area < min_pixels:
        s = math.sqrt(min_pixels / area)
    h = max(1, math.floor(height * s / f + 0.5)) * f
    w = max(1, math.floor(width * s / f + 0.5)) * f
    while h * w > max_pixels:
        if h * width >= w * height and h > f:
            h -= f
        elif w > f:
            w -= f
        elif h > f:
            h -= f
        else:
            break
    while h * w < min_pixels:
        if h * width <= w * height:
            h += f
        else:
            w += f
    if not (min_pixels <= h * w <= max_pixels):
        raise ValueError("no canvas size fits")
    return h, w


def resize_bilinear(img, out_h, out_w):
    """Half-pixel-centre bilinear resize of uint8 [H, W(, C)], rounded half up."""
    img = np.asarray(img)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    sh, sw = img.shape[:2]

    def axis(n_in, n_out):
        scale = n_in / n_out
        f = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
        f = np.minimum(np.maximum(f, 0.0), float(n_in - 1))
        i0 = np.floor(f).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, f - i0

    y0, y1, wy = axis(sh, out_h)
    x0, x1, wx = axis(sw, out_w)
    src = img.astype(np.float64)
    wy = wy[:, None, None]
    wx = wx[None, :, None]
    p00 = src[y0][:, x0]
    p01 = src[y0][:, x1]
    p10 = src[y1][:, x0]
    p11 = src[y1][:, x1]
    top = (1.0 - wx) * p00 + wx * p01
    bot = (1.0 - wx) * p10 + wx * p11
    v = (1.0 - wy) * top + wy * bot
    out = np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)
    return out[:, :, 0] if squeeze else out


def _area_taps(n_in, n_out):
    taps = []
    for y in range(n_out):
        lo = y * n_in / n_out
        hi = (y + 1) * n_in / n_out
        span = hi - lo
        row = []
        for s in range(max(0, math.floor(lo)), min(n_in, math.ceil(hi))):
            a, b = max(lo, float(s)), min(hi, float(s + 1))
            if b > a:
                row.append((s, (b - a) / span))
        taps.append(row)
    return taps


def resize_area(x, out_h, out_w):
    """Each output cell = overlap-weighted mean of the source cells its interval covers (rows, then columns)."""
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    sh, sw = x.shape
    tmp = np.zeros((out_h, sw))
    for y, row in enumerate(_area_taps(sh, out_h)):
        for s, wgt in row:
            tmp[y] += wgt * x[s]
    out = np.zeros((out_h, out_w))
    for xo, row in enumerate(_area_taps(sw, out_w)):
        for s, wgt in row:
            out[:, xo] += wgt * tmp[:, s]
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------- §5.2 candidates
def candidate_frames(pts_s, num_frames):
    pts = np.asarray(pts_s, dtype=np.float64)
    n = len(pts)
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    nc = min(num_frames, n)
    if nc == n:
        return np.arange(n, dtype=np.int64)
    ok = bool(np.all(np.isfinite(pts))) and bool(np.all(np.diff(pts) >= 0)) and pts[-1] > pts[0]
    t = pts if ok else np.arange(n, dtype=np.float64)
    t0, t1 = t[0], t[-1]
    idx = []
    for k in range(nc):
        tau = t0 + (t1 - t0) * (k + 0.5) / nc
        # nearest frame by |t − τ_k|; equal distance → smaller index (np.argmin returns the first)
        idx.append(int(np.argmin(np.where(t >= tau, t - tau, tau - t))))
    for k in range(1, nc):
        idx[k] = max(idx[k], idx[k - 1] + 1)
    idx[-1] = min(idx[-1], n - 1)
    for k in range(nc - 2, -1, -1):
        idx[k] = min(idx[k], idx[k + 1] - 1)
    return np.asarray(idx, dtype=np.int64)


# --------------------------------------------------------------------------------------------- §5.3 GOP partition
def packet_is_pb(pict_type, keyframe):
    if pict_type == ord("I"):
        return False
    if pict_type in (0, ord("?")):
        return not keyframe
    return True


def time_bin(t, t0, delta, num_bins):
    x = math.floor((t - t0) / delta) if math.isfinite(t) else -1
    return int(min(max(x, 0), num_bins - 1))


def gop_partition(pts_s, size, pict_type=None, keyframe=None, *, k_tar=8, duration_s=-1.0, t0=0.0, delta=0.5,
                  t_min=1.5, t_max=6.0, radius=3, energy="linear"):
    pts = np.asarray(pts_s, dtype=np.float64)
    size = np.asarray(size, dtype=np.int64)
    n = len(pts)
    pt = np.zeros(n, np.uint8) if pict_type is None else np.asarray(pict_type, np.uint8)
    kf = np.zeros(n, bool) if keyframe is None else np.asarray(keyframe, bool)
    l_min = max(1, math.ceil(t_min / delta))
    l_max = max(l_min, math.ceil(t_max / delta))
    if math.isfinite(duration_s) and duration_s > 0:
        B = max(1, math.ceil(duration_s / delta))
    else:
        last = 0.0
        for q in range(n):
            if math.isfinite(pts[q]):
                last = max(last, math.floor((pts[q] - t0) / delta))
        B = int(last) + 1
    # Eq. 2: e_b = Σ bytes of P/B packets with τ(q) in bin b (packets in the given order)
    e = [0.0] * B
    num_pb = 0
    for q in range(n):
        if not math.isfinite(pts[q]) or not packet_is_pb(int(pt[q]), bool(kf[q])):
            continue
        num_pb += 1
        b = time_bin(pts[q], t0, delta, B)
        bytes_ = float(size[q])
        e[b] += math.log1p(bytes_) if energy == "log1p" else bytes_
    total = 0.0
    for b in range(B):
        total += e[b]
    theta = total / max(1, k_tar)
    start, end, trigger = [], [], []
    fallback = tail_merged = False
    if num_pb == 0:
        fallback = True
        for k in range(k_tar):
            a, c = k * B // k_tar, (k + 1) * B // k_tar - 1
            if c >= a:
                start.append(a), end.append(c), trigger.append(-1)
    else:
        s = 0
        while s < B:
            # Eq. 3: first i with (span >= L_max) or (span >= L_min and Σ_{s..i} e >= θ)
            i_k, cum = None, 0.0
            for i in range(s, B):
                cum += e[i]
                span = i - s + 1
                if span >= l_max or (span >= l_min and cum >= theta):
                    i_k = i
                    break
            if i_k is None:  # tail
                if start and 2 * (B - s) < l_min:
                    end[-1] = B - 1
                    tail_merged = True
                else:
                    start.append(s), end.append(B - 1), trigger.append(-1)
                break
            # Eq. 4: valley refinement, lexicographic (e_b, |b − i_k|, b)
            window = range(max(s + l_min - 1, i_k - radius), min(s + l_max - 1, B - 1, i_k + radius) + 1)
            c_k = min(window, key=lambda b: (e[b], abs(b - i_k), b))
            start.append(s), end.append(c_k), trigger.append(i_k)
            s = c_k + 1
    cost = []
    for a, c in zip(start, end):
        acc = 0.0
        for b in range(a, c + 1):
            acc += e[b]
        cost.append(acc)
    return dict(energy=np.asarray(e, np.float64), theta=theta, l_min=l_min, l_max=l_max, num_bins=B, num_pb=num_pb,
                start=np.asarray(start, np.int64), end=np.asarray(end, np.int64),
                trigger=np.asarray(trigger, np.int64), cost=np.asarray(cost, np.float64), fallback=fallback,
                tail_merged=tail_merged)


def group_of_time(t_s, start, end, t0=0.0, delta=0.5):
    """κ = k iff the time lies in [s_kΔ, (c_k + 1)Δ) (times outside the covered bins clamp to the ends)."""
    start, end = list(start), list(end)
    out = []
    for t in np.asarray(t_s, np.float64):
        b = max(time_bin(t, t0, delta, end[-1] + 1), start[0])
        out.append(next(k for k in range(len(start)) if start[k] <= b <= end[k]))
    return np.asarray(out, np.int32)


# --------------------------------------------------------------------------------------------- §5.4 saliency
def percentile(values, q):
    """Linear interpolation between order statistics (numpy's default method), done explicitly."""
    x = np.sort(np.asarray(values, np.float64).ravel())
    n = len(x)
    pos = (q / 100.0) * (n - 1)
    lo = min(max(math.floor(pos), 0), n - 1)
    hi = min(lo + 1, n - 1)
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def median(values):
    x = np.sort(np.asarray(values, np.float64).ravel())
    n = len(x)
    return float(x[n // 2]) if n % 2 else float((x[n // 2 - 1] + x[n // 2]) / 2.0)


def saliency(height, width, mv_field=None, mv_flags=None, residual=None, is_intra=False):
    """S = (M̄ + R̄)/2 per pixel; I-frames → 0."""
    if is_intra:
        return np.zeros((height, width), np.float32)
    return saliency64(height, width, mv_field, mv_flags, residual).astype(np.float32)


def saliency64(height, width, mv_field=None, mv_flags=None, residual=None):
    """S = (M̄ + R̄)/2 per pixel in float64 (before the float32 rounding of ``saliency``)."""
    mbar = np.zeros((height, width))
    if mv_field is not None:
        mv = np.asarray(mv_field, np.float32).astype(np.float64)
        flags = np.ones(mv.shape[:2], np.uint8) if mv_flags is None else np.asarray(mv_flags, np.uint8)
        # densify the 4×4 cells to pixels
        mvp = np.repeat(np.repeat(mv, 4, 0), 4, 1)[:height, :width]
        flp = np.repeat(np.repeat(flags, 4, 0), 4, 1)[:height, :width]
        has_l0 = (flp & 1) != 0
        has_l1 = (flp & 2) != 0
        finite = np.isfinite(mvp).all(axis=-1)  # a non-finite vector counts as no vector
        has_l0 &= finite
        has_l1 &= finite
        valid = has_l0 | has_l1
        vx = np.where(has_l0, mvp[..., 0], mvp[..., 2])  # L0, else L1
        vy = np.where(has_l0, mvp[..., 1], mvp[..., 3])
        if valid.any():
            mx, my = median(vx[valid]), median(vy[valid])
            dx, dy = vx - mx, vy - my
            m = np.sqrt(dx * dx + dy * dy)
            den = max(percentile(m[valid], 95.0), 1e-6)
            mbar = np.where(valid, np.minimum(1.0, m / den), 0.0)
    rbar = np.zeros((height, width))
    if residual is not None:
        r = np.abs(np.asarray(residual, np.int16).astype(np.float64))
        den = max(percentile(r, 95.0), 1.0)
        rbar = np.minimum(1.0, r / den)
    return (mbar + rbar) / 2.0


# --------------------------------------------------------------------------------------------- §5.5 block score
def block_score(s, cost=None, patch=14, merge=2, beta=0.5, valid=None):
    """A = mean of the m×m patch means + β·mean cost over the block; padding blocks → −∞.

    Sums run pixel by pixel in row-major order inside each patch / block (vectorised across patches), the
    same order as the C++ loops, so results are bit-identical.
    """
    s = np.asarray(s, np.float32).astype(np.float64)
    hc, wc = s.shape
    f = patch * merge
    nbh, nbw = hc // f, wc // f
    psum = np.zeros((hc // patch, wc // patch))
    for y in range(patch):
        for x in range(patch):
            psum += s[y::patch, x::patch]
    acc = np.zeros((nbh, nbw))
    for a in range(merge):
        for b in range(merge):
            acc += psum[a::merge, b::merge] / float(patch * patch)
    score = acc / float(merge * merge)
    if cost is not None:
        c = np.asarray(cost, np.float32).astype(np.float64)
        csum = np.zeros((nbh, nbw))
        for y in range(f):
            for x in range(f):
                csum += c[y::f, x::f]
        score = score + beta * (csum / float(f * f))
    return _mask_padding(score.astype(np.float32), f, hc, wc, valid)


def _mask_padding(out, f, hc, wc, valid):
    """Blocks (f x f pixels) outside the valid rectangle (y0, x0, y1, x1; -1 = to the edge) score -inf."""
    y0, x0, y1, x1 = (0, 0, hc, wc) if valid is None else valid
    y1 = hc if y1 < 0 else y1
    x1 = wc if x1 < 0 else x1
    nbh, nbw = out.shape
    for i in range(nbh):
        for j in range(nbw):
            if not (i * f < y1 and i * f + f > y0 and j * f < x1 and j * f + f > x0):
                out[i, j] = NEG_INF
    return out


def _grouped_area_taps(n_in, n_out, group):
    """Per group of `group` consecutive outputs: (source index, Σ of the outputs' taps on it), ascending."""
    taps = _area_taps(n_in, n_out)
    out = []
    for g in range(n_out // group):
        rows = taps[g * group:(g + 1) * group]
        s0, s1 = rows[0][0][0], rows[-1][-1][0] + 1
        acc = [0.0] * (s1 - s0)
        for row in rows:
            for s, w in row:
                acc[s - s0] += w
        out.append([(s0 + i, w) for i, w in enumerate(acc)])
    return out


def _separable_group_sums(x64, row_taps, col_taps):
    """out[g, k] = Σ_cols w_k · (Σ_rows w_g · x[row, col]), rows then columns ascending (the C++ order)."""
    t = np.zeros((len(row_taps), x64.shape[1]))
    for g, taps in enumerate(row_taps):
        for sy, w in taps:
            t[g] = t[g] + w * x64[sy]
    out = np.zeros((len(row_taps), len(col_taps)))
    for k, taps in enumerate(col_taps):
        acc = np.zeros(len(row_taps))
        for sx, w in taps:
            acc = acc + w * t[:, sx]
        out[:, k] = acc
    return out


def score_frame(canvas_h, canvas_w, height, width, mv_field=None, mv_flags=None, residual=None, cost=None,
                is_intra=False, patch=14, merge=2, beta=0.5, valid=None):
    """Block scores of one frame: patch means of the area-resized saliency and block means of the area-resized
    coding cost, computed straight from the source grids with the grouped area weights (equal in exact
    arithmetic to resize_area → block_score, without canvas-sized maps); I-frames → 0."""
    f = patch * merge
    nbh, nbw = canvas_h // f, canvas_w // f
    if is_intra:
        psum = np.zeros((canvas_h // patch, canvas_w // patch))
    else:
        s64 = saliency64(height, width, mv_field, mv_flags, residual)
        psum = _separable_group_sums(s64, _grouped_area_taps(height, canvas_h, patch),
                                     _grouped_area_taps(width, canvas_w, patch))
    acc = np.zeros((nbh, nbw))
    for a in range(merge):
        for b in range(merge):
            acc += psum[a::merge, b::merge] / float(patch * patch)
    score = acc / float(merge * merge)
    if cost is not None and not is_intra:
        c = np.asarray(cost, np.float32).astype(np.float64)
        csum = _separable_group_sums(c, _grouped_area_taps(c.shape[0], canvas_h, f),
                                     _grouped_area_taps(c.shape[1], canvas_w, f))
        score = score + beta * (csum / float(f * f))
    return _mask_padding(score.astype(np.float32), f, canvas_h, canvas_w, valid)


# --------------------------------------------------------------------------------------------- §5.6 allocation
def k_target(max_canvases):
    return max(1, max_canvases // 4)


def _share_p_canvases(total_p, cost, cap):
    """m_k = min(1, cap_k); the rest by largest remainder ∝ cost among groups with spare capacity, repeated."""
    G = len(cost)
    m = [min(1, c) for c in cap]
    R = total_p - sum(m)
    while R > 0:
        E = [k for k in range(G) if cap[k] > m[k]]
        if not E:
            break
        C = 0.0
        for k in E:
            C += cost[k]
        q = {k: (float(R) * cost[k] / C if C > 0.0 else float(R) / len(E)) for k in E}
        given = 0
        for k in E:
            add = max(0, min(math.floor(q[k]), cap[k] - m[k], R - given))
            m[k] += add
            given += add
        R -= given
        if R <= 0:
            break
        for k in sorted(E, key=lambda k: (-(q[k] - math.floor(q[k])), k)):
            if R == 0:
                break
            if m[k] < cap[k]:
                m[k] += 1
                R -= 1
    return m


def allocate(group_start, group_end, group_cost, cand_t, scores, *, max_canvases=32, lam=0.35, alpha_peak=0.35,
             anchor="first", rank="rank", t0=0.0, delta=0.5):
    cand_t = np.asarray(cand_t, np.float64)
    scores = np.asarray(scores, np.float32)
    T, nbh, nbw = scores.shape
    nb = nbh * nbw
    groups = [[int(a), int(c), float(x), 0] for a, c, x in zip(group_start, group_end, group_cost)]
    for k in group_of_time(cand_t, group_start, group_end, t0, delta):
        groups[k][3] += 1

    def merge(a):
        groups[a] = [groups[a][0], groups[a + 1][1], groups[a][2] + groups[a + 1][2], groups[a][3] + groups[a + 1][3]]
        del groups[a + 1]

    merges_empty = merges_budget = 0
    while len(groups) > 1:  # a group holding no candidate joins its predecessor (the first: its successor)
        empty = [k for k, g in enumerate(groups) if g[3] == 0]
        if not empty:
            break
        merge(max(empty[0] - 1, 0))
        merges_empty += 1
    while 2 * len(groups) > max_canvases:  # budget: adjacent pair with the smallest summed cost, first on ties
        pair = min(range(len(groups) - 1), key=lambda a: (groups[a][2] + groups[a + 1][2], a))
        merge(pair)
        merges_budget += 1
    G = len(groups)
    gs = [g[0] for g in groups]
    ge = [g[1] for g in groups]
    gc = [g[2] for g in groups]
    kappa = group_of_time(cand_t, gs, ge, t0, delta)
    frames = [[t for t in range(T) if kappa[t] == k] for k in range(G)]
    valid = np.isfinite(scores.reshape(T, nb))
    anchors, caps = [], []
    for k in range(G):
        fr = frames[k]
        a = fr[0] if anchor == "first" else fr[(len(fr) - 1) // 2]
        anchors.append(a)
        v = sum(int(valid[t].sum()) for t in fr if t != a)
        caps.append((v + nb - 1) // nb)
    num_p = _share_p_canvases(max_canvases - G, gc, caps)

    cand_weight = np.zeros(T)
    cand_cum = np.full(T, -1.0)
    cand_stratum = np.full(T, -1, np.int32)
    canvases = []  # dicts
    for k in range(G):
        canvases.append(dict(kind=0, group=k, frame=anchors[k], rank=-1, lo=-1, hi=-1, widen=0, whole=False,
                             blocks=[]))
        m = num_p[k]
        if m == 0:
            continue
        z = [t for t in frames[k] if t != anchors[k]]
        at = {}  # (position in z, flat block) → Ã
        w = []
        for l, t in enumerate(z):
            a = scores[t].reshape(nb)
            idx = [i for i in range(nb) if np.isfinite(a[i])]
            idx.sort(key=lambda i: (-float(a[i]), i))  # A descending, ties: smaller (i, j)
            pos_sum, peak = 0.0, None
            for rho, i in enumerate(idx):
                r_ = float(rho) if rank == "rank" else rho / len(idx)
                v = float(a[i]) / math.sqrt(1.0 + lam * r_)  # Eq. 5
                at[(l, i)] = v
                pos_sum += max(0.0, v)
                peak = v if peak is None or v > peak else peak
            w.append(max(0.0, pos_sum + alpha_peak * peak) if idx else 0.0)
        total = 0.0
        for x in w:
            total += x
        if not total > 0.0:
            w = [1.0] * len(z)
            total = float(len(z))
        sigma, cum = [], 0.0
        for l, t in enumerate(z):
            cum += w[l]
            F = cum / total  # Eq. 6
            sigma.append(min(m - 1, max(0, math.floor(F * m))))
            cand_weight[t], cand_cum[t], cand_stratum[t] = w[l], F, sigma[-1]
        used = set()
        nz = len(z)
        for r in range(m):
            members = [l for l in range(nz) if sigma[l] == r]
            lo = members[0] if members else next((l for l in range(nz) if sigma[l] >= r), nz)
            hi = members[-1] if members else lo - 1
            widen = 0
            while True:
                L, H = max(0, lo - widen), min(nz - 1, hi + widen)
                avail = sum(1 for (l, i) in at if L <= l <= H and (l, i) not in used)
                if avail >= nb or (L == 0 and H == nz - 1):
                    break
                widen += 1
            pool = [(l, i) for (l, i) in at if L <= l <= H and (l, i) not in used]
            pool.sort(key=lambda li: (-at[li], li[0], li[1]))  # highest Ã, ties (t, i, j) ascending
            chosen = sorted(pool[:nb])
            used.update(chosen)
            canvases.append(dict(kind=1, group=k, frame=-1, rank=r, lo=z[L], hi=z[H], widen=widen,
                                 whole=widen > 0 and L == 0 and H == nz - 1,
                                 blocks=[(z[l], i // nbw, i % nbw) for (l, i) in chosen]))
    offs = [0]
    bt, bi, bj = [], [], []
    for c in canvases:
        for (t, i, j) in c["blocks"]:
            bt.append(t), bi.append(i), bj.append(j)
        offs.append(len(bt))
    i32 = lambda x: np.asarray(x, np.int32)  # noqa: E731
    return dict(
        group_start=np.asarray(gs, np.int64), group_end=np.asarray(ge, np.int64), group_cost=np.asarray(gc),
        group_anchor=i32(anchors), group_num_p=i32(num_p), group_capacity=i32(caps),
        group_num_frames=i32([len(f) for f in frames]), merges_empty=merges_empty, merges_budget=merges_budget,
        cand_group=i32(kappa), cand_weight=cand_weight, cand_cum=cand_cum, cand_stratum=cand_stratum,
        canvas_kind=np.asarray([c["kind"] for c in canvases], np.int8), canvas_group=i32([c["group"] for c in canvases]),
        canvas_frame=i32([c["frame"] for c in canvases]), canvas_rank=i32([c["rank"] for c in canvases]),
        canvas_lo=i32([c["lo"] for c in canvases]), canvas_hi=i32([c["hi"] for c in canvases]),
        canvas_widen=i32([c["widen"] for c in canvases]), canvas_whole=np.asarray([c["whole"] for c in canvases], bool),
        canvas_offset=np.asarray(offs, np.int64), block_t=i32(bt), block_i=i32(bi), block_j=i32(bj))


# --------------------------------------------------------------------------------------------- §5.7 packing
def pack_records(plan, cand_frame, cand_t, canvas_h, canvas_w, patch=14, merge=2, temporal_coord="frame"):
    f = patch * merge
    nbh, nbw = canvas_h // f, canvas_w // f
    cand_frame = np.asarray(cand_frame, np.int32)
    cand_t = np.asarray(cand_t, np.float64)
    tc = (lambda pos: int(cand_frame[pos])) if temporal_coord == "frame" else (lambda pos: int(pos))
    rec = {k: [] for k in ("canvas", "frame", "t_s", "can_hw", "src_hw", "group", "pos_thw")}
    offs = plan["canvas_offset"]
    for s in range(len(plan["canvas_kind"])):
        k = int(plan["canvas_group"][s])
        sel = list(zip(plan["block_t"][offs[s]:offs[s + 1]], plan["block_i"][offs[s]:offs[s + 1]],
                       plan["block_j"][offs[s]:offs[s + 1]]))
        for n in range(nbh * nbw):
            ci, cj = divmod(n, nbw)
            if plan["canvas_kind"][s] == 0:
                src = (int(plan["canvas_frame"][s]), ci, cj)
            else:
                src = tuple(int(x) for x in sel[n]) if n < len(sel) else None
            for a in range(merge):
                for b in range(merge):
                    can = (ci * merge + a, cj * merge + b)
                    rec["canvas"].append(s)
                    rec["group"].append(k)
                    rec["can_hw"].append(can)
                    if src is None:  # padding slot of a short P-canvas
                        rec["frame"].append(-1)
                        rec["t_s"].append(-1.0)
                        rec["src_hw"].append((-1, -1))
                        rec["pos_thw"].append((tc(int(plan["group_anchor"][k])), can[0], can[1]))
                    else:
                        pos, si, sj = src
                        sh, sw = si * merge + a, sj * merge + b
                        rec["frame"].append(int(cand_frame[pos]))
                        rec["t_s"].append(cand_t[pos])
                        rec["src_hw"].append((sh, sw))
                        rec["pos_thw"].append((tc(pos), sh, sw))
    return dict(canvas=np.asarray(rec["canvas"], np.int32), frame=np.asarray(rec["frame"], np.int32),
                t_s=np.asarray(rec["t_s"], np.float32), can_hw=np.asarray(rec["can_hw"], np.int16).reshape(-1, 2),
                src_hw=np.asarray(rec["src_hw"], np.int16).reshape(-1, 2), group=np.asarray(rec["group"], np.int32),
                pos_thw=np.asarray(rec["pos_thw"], np.int32).reshape(-1, 3))


def pack_canvases(plan, frames, patch=14, merge=2):
    frames = np.asarray(frames, np.uint8)
    _, hc, wc, _ = frames.shape
    f = patch * merge
    nbw = wc // f
    out = np.zeros((len(plan["canvas_kind"]), 3, hc, wc), np.uint8)
    offs = plan["canvas_offset"]
    for s in range(len(out)):
        if plan["canvas_kind"][s] == 0:
            out[s] = frames[plan["canvas_frame"][s]].transpose(2, 0, 1)
            continue
        for n, q in enumerate(range(offs[s], offs[s + 1])):
            t, i, j = plan["block_t"][q], plan["block_i"][q], plan["block_j"][q]
            di, dj = divmod(n, nbw)
            out[s, :, di * f:(di + 1) * f, dj * f:(dj + 1) * f] = \
                frames[t, i * f:(i + 1) * f, j * f:(j + 1) * f].transpose(2, 0, 1)
    return out


# --------------------------------------------------------------------------------------------- §5.8 cope warp
def cope_warp(ref, field):
    """uint8 [H, W, C]: ``ref`` sampled at (y + dy, x + dx) of each pixel's 4×4 cell, bilinear, clamped to the
    frame, rounded half up — numpy's promotions as written: coordinates in float32, weights and sums in float64
    (float32 − int64 promotes to float64). The C++ ``cope_warp`` (csrc/tokenize/cope_warp.h) must equal it."""
    h, w = ref.shape[:2]
    cy = np.minimum(np.arange(h) // 4, field.shape[0] - 1)
    cx = np.minimum(np.arange(w) // 4, field.shape[1] - 1)
    f = field.astype(np.float32)[cy][:, cx]  # [H, W, 2]
    sx = np.clip(np.arange(w, dtype=np.float32)[None, :] + f[..., 0], 0, w - 1)
    sy = np.clip(np.arange(h, dtype=np.float32)[:, None] + f[..., 1], 0, h - 1)
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    wx = (sx - x0)[..., None]
    wy = (sy - y0)[..., None]
    r = ref.astype(np.float32)
    top = r[y0, x0] * (1 - wx) + r[y0, x1] * wx
    bot = r[y1, x0] * (1 - wx) + r[y1, x1] * wx
    return np.floor(top * (1 - wy) + bot * wy + 0.5).clip(0, 255).astype(np.uint8)

// DESIGN §5.6 on the device: per-frame sort + attenuation (Eq. 5), the allocation curve and the stratified
// selection (Eq. 6) of csrc/tokenize/allocation.cpp, as functions both the kernels and the host run.
// The group planning (empty-group and budget merges, capacities, largest-remainder shares) is small host work:
// plan_groups() below mirrors tok::allocate's first half (tests/gpu compares the two).
#pragma once

#include "cuda/hd.cuh"

#if 1  // host-only helpers (nvcc parses them in every pass; they are never called from device code)
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tokenize/allocation.h"     // tok::share_p_canvases (host planning only)
#include "tokenize/gop_partition.h"  // tok::group_of_time (host planning only)
#endif

namespace ov2::cuda {

// Block order within a frame: A descending, ties by smaller flat index. a: the frame's scores.
OV2_HD bool frame_better(const float* a, int32_t x, int32_t y) {
  if (a[x] != a[y]) return a[x] > a[y];
  return x < y;
}

// Zero-based rank ρ of valid block i of a frame (number of valid blocks ordered before it).
OV2_HD int32_t frame_rank(const float* a, int64_t nb, int32_t i) {
  int32_t r = 0;
  for (int32_t j = 0; j < static_cast<int32_t>(nb); ++j)
    if (j != i && hd_isfinite_f(a[j]) && frame_better(a, j, i)) ++r;
  return r;
}

// Ã = A / sqrt(1 + λ·ρ') with ρ' = ρ (rank_mode 0) or ρ / n_valid (rank_mode 1).
OV2_HD double attenuate(float a, int64_t rho, int64_t nv, double lambda, int rank_mode) {
  const double rr = rank_mode == 0 ? static_cast<double>(rho) : static_cast<double>(rho) / static_cast<double>(nv);
  return static_cast<double>(a) / hd_sqrt(1.0 + lambda * rr);
}

// w_t from the frame's Ã listed in rank order (sum of positives in rank order + α_peak · max), clamped at 0.
OV2_HD double frame_weight(const double* at, const int32_t* order, int64_t nv, double alpha_peak) {
  double sum_pos = 0.0, mx = 0.0;
  for (int64_t rho = 0; rho < nv; ++rho) {
    const double v = at[order[rho]];
    sum_pos += hd_max(0.0, v);
    if (rho == 0 || v > mx) mx = v;
  }
  const double wl = nv > 0 ? sum_pos + alpha_peak * mx : 0.0;
  return hd_max(0.0, wl);
}

// Pool order of a group: Ã descending, then frame position, then flat block index (items are l·nb + i).
OV2_HD bool pool_better(const double* at, int64_t nb, int64_t x, int64_t y) {
  if (at[x] != at[y]) return at[x] > at[y];
  const int64_t lx = x / nb, ly = y / nb;
  if (lx != ly) return lx < ly;
  return (x % nb) < (y % nb);
}

// Outputs of one P-canvas.
struct CanvasOut {
  int32_t count, lo, hi, widen;
  uint8_t whole;
};

// The sequential part of one group (allocation curve, strata, widening, selection), given:
//   z[nz] candidate positions (time order, anchor excluded), w[nz] frame weights, left[nz] valid blocks per frame,
//   at[nz·nb] Ã, state[nz·nb] −2 invalid / −1 usable (becomes the P-canvas index r when selected),
//   sorted[n_sorted] the valid items in pool order.
// Writes cand_weight/cum/stratum at candidate positions, per canvas r: blocks[r·nb ...] (t, i, j in (t, i, j) order)
// and out[r]. left[] and w[] are modified.
OV2_HD void select_group(const int32_t* z, int64_t nz, int64_t nb, int64_t nbw, int64_t m, double* w, int64_t* left,
                         int32_t* state, const int64_t* sorted, int64_t n_sorted, int32_t* sigma, double* cand_weight,
                         double* cand_cum, int32_t* cand_stratum, int32_t* block_t, int32_t* block_i, int32_t* block_j,
                         CanvasOut* out) {
  double total = 0.0;
  for (int64_t l = 0; l < nz; ++l) total += w[l];
  if (!(total > 0.0)) {
    for (int64_t l = 0; l < nz; ++l) w[l] = 1.0;
    total = static_cast<double>(nz);
  }
  double cum = 0.0;
  for (int64_t l = 0; l < nz; ++l) {
    cum += w[l];
    const double F = cum / total;
    const int64_t s = static_cast<int64_t>(hd_floor(F * static_cast<double>(m)));
    sigma[l] = static_cast<int32_t>(hd_min<int64_t>(m - 1, hd_max<int64_t>(0, s)));
    cand_weight[z[l]] = w[l];
    cand_cum[z[l]] = F;
    cand_stratum[z[l]] = sigma[l];
  }
  for (int64_t rr = 0; rr < m; ++rr) {
    int64_t lo = nz, hi = -1;
    for (int64_t l = 0; l < nz; ++l) {
      if (sigma[l] >= rr && lo == nz) lo = l;
      if (sigma[l] <= rr) hi = l;
    }
    int64_t widen = 0, L = 0, H = -1;
    for (;;) {
      L = hd_max<int64_t>(0, lo - widen);
      H = hd_min<int64_t>(nz - 1, hi + widen);
      int64_t avail = 0;
      for (int64_t l = L; l <= H; ++l) avail += left[l];
      if (avail >= nb || (L == 0 && H == nz - 1)) break;
      ++widen;
    }
    int64_t taken = 0;
    for (int64_t q = 0; q < n_sorted && taken < nb; ++q) {
      const int64_t item = sorted[q];
      const int64_t l = item / nb;
      if (l < L || l > H || state[item] != -1) continue;
      state[item] = static_cast<int32_t>(rr);
      --left[l];
      ++taken;
    }
    int64_t n = 0;
    for (int64_t l = L; l <= H && n < taken; ++l)
      for (int64_t i = 0; i < nb; ++i)
        if (state[l * nb + i] == rr) {
          block_t[rr * nb + n] = z[l];
          block_i[rr * nb + n] = static_cast<int32_t>(i / nbw);
          block_j[rr * nb + n] = static_cast<int32_t>(i % nbw);
          ++n;
        }
    out[rr].count = static_cast<int32_t>(taken);
    out[rr].lo = L <= H ? z[L] : -1;
    out[rr].hi = L <= H ? z[H] : -1;
    out[rr].widen = static_cast<int32_t>(widen);
    out[rr].whole = (widen > 0 && L == 0 && H == nz - 1) ? 1 : 0;
  }
}

#if 1  // host-only helpers (nvcc parses them in every pass; they are never called from device code)
// Host planning of allocate(): groups after merging, anchors, capacities and P-canvas shares. Inputs: the
// partition (start/end/cost, G0 groups), κ of every candidate under it (kap0) and under a partition computed by
// the caller after merging (group_of_time, see allocation.cu), and per-candidate valid block counts.
struct GroupPlan {
  std::vector<int64_t> start, end;
  std::vector<double> cost;
  int64_t merges_empty = 0, merges_budget = 0;
};

inline GroupPlan merge_groups(const int64_t* start, const int64_t* end, const double* cost, int64_t g0,
                              const int32_t* kap0, int64_t n_cand, int64_t max_canvases) {
  struct G {
    int64_t s, e;
    double c;
    int64_t n;
  };
  std::vector<G> g;
  for (int64_t k = 0; k < g0; ++k) g.push_back({start[k], end[k], cost[k], 0});
  for (int64_t t = 0; t < n_cand; ++t) ++g[static_cast<size_t>(kap0[t])].n;
  GroupPlan p;
  auto merge = [&](size_t a) {
    g[a].e = g[a + 1].e;
    g[a].c = g[a].c + g[a + 1].c;
    g[a].n += g[a + 1].n;
    g.erase(g.begin() + static_cast<std::ptrdiff_t>(a) + 1);
  };
  while (g.size() > 1) {
    size_t k = 0;
    while (k < g.size() && g[k].n > 0) ++k;
    if (k == g.size()) break;
    merge(k > 0 ? k - 1 : 0);
    ++p.merges_empty;
  }
  while (static_cast<int64_t>(2 * g.size()) > max_canvases) {
    size_t best = 0;
    double best_c = g[0].c + g[1].c;
    for (size_t a = 1; a + 1 < g.size(); ++a) {
      const double c = g[a].c + g[a + 1].c;
      if (c < best_c) {
        best_c = c;
        best = a;
      }
    }
    merge(best);
    ++p.merges_budget;
  }
  for (const G& x : g) {
    p.start.push_back(x.s);
    p.end.push_back(x.e);
    p.cost.push_back(x.c);
  }
  return p;
}

struct AllocPlanParams {
  int64_t max_canvases = 32;
  int anchor = 0;  // 0 first candidate, 1 centre
  double t0 = 0.0, delta = 0.5;
};

// Everything of allocate() that precedes the per-group selection. Throws tok::Error on bad input (the same checks
// and messages as tok::allocate for these inputs).
struct AllocPlan {
  GroupPlan groups;
  std::vector<int32_t> cand_group, anchor, num_p, num_frames;
  std::vector<int64_t> capacity;
  std::vector<int32_t> z;         // per group, its non-anchor candidates in time order (concatenated)
  std::vector<int64_t> z_offset;  // G + 1
  std::vector<int64_t> canvas_base;  // G + 1: index of the group's I-canvas; the P-canvases follow it
};

inline AllocPlan plan_allocation(const int64_t* group_start, const int64_t* group_end, const double* group_cost,
                                 int64_t num_groups, const double* cand_t, int64_t n_cand, const int64_t* valid_count,
                                 int64_t nb, const AllocPlanParams& p) {
  using ov2::tok::require;
  require(num_groups >= 1, "allocate: no groups");
  require(n_cand >= 1, "allocate: no candidate frames");
  require(p.max_canvases >= 2, "allocate: max_canvases must be >= 2 (one I- and one P-canvas)");
  require(p.anchor == 0 || p.anchor == 1, "allocate: anchor must be 0 (first) or 1 (center)");
  for (int64_t t = 0; t < n_cand; ++t) {
    require(std::isfinite(cand_t[t]), "allocate: non-finite candidate time at " + std::to_string(t));
    if (t > 0) require(cand_t[t] >= cand_t[t - 1], "allocate: candidate times must be non-decreasing");
  }
  for (int64_t k = 0; k < num_groups; ++k)
    require(std::isfinite(group_cost[k]) && group_cost[k] >= 0, "allocate: group costs must be finite and >= 0");
  const std::vector<int32_t> kap0 =
      ov2::tok::group_of_time(cand_t, n_cand, group_start, group_end, num_groups, p.t0, p.delta);
  AllocPlan a;
  a.groups = merge_groups(group_start, group_end, group_cost, num_groups, kap0.data(), n_cand, p.max_canvases);
  const size_t G = a.groups.start.size();
  a.cand_group = ov2::tok::group_of_time(cand_t, n_cand, a.groups.start.data(), a.groups.end.data(),
                                         static_cast<int64_t>(G), p.t0, p.delta);
  std::vector<std::vector<int32_t>> frames(G);
  for (int64_t t = 0; t < n_cand; ++t) frames[static_cast<size_t>(a.cand_group[t])].push_back(static_cast<int32_t>(t));
  a.anchor.assign(G, -1);
  a.num_frames.assign(G, 0);
  a.capacity.assign(G, 0);
  a.z_offset.push_back(0);
  for (size_t k = 0; k < G; ++k) {
    const auto& fr = frames[k];
    require(!fr.empty(), "allocate: internal error, empty group after merging");
    a.num_frames[k] = static_cast<int32_t>(fr.size());
    const size_t ai = p.anchor == 0 ? 0 : (fr.size() - 1) / 2;
    a.anchor[k] = fr[ai];
    int64_t v = 0;
    for (size_t q = 0; q < fr.size(); ++q)
      if (q != ai) {
        v += valid_count[fr[q]];
        a.z.push_back(fr[q]);
      }
    a.capacity[k] = (v + nb - 1) / nb;
    a.z_offset.push_back(static_cast<int64_t>(a.z.size()));
  }
  a.num_p = ov2::tok::share_p_canvases(p.max_canvases - static_cast<int64_t>(G), a.groups.cost, a.capacity);
  a.canvas_base.push_back(0);
  for (size_t k = 0; k < G; ++k) a.canvas_base.push_back(a.canvas_base.back() + 1 + a.num_p[k]);
  return a;
}
#endif

}  // namespace ov2::cuda

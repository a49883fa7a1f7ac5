#include "tokenize/allocation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "tokenize/gop_partition.h"

namespace ov2::tok {

int64_t k_target(int64_t max_canvases) { return std::max<int64_t>(1, max_canvases / 4); }

// Capacity-aware largest remainder: m_k = min(1, cap_k), then the remaining P-canvases are shared in
// proportion to cost among groups with spare capacity (floor parts, then largest fractional parts, ties by
// smaller k), repeated while canvases and capacity remain.
std::vector<int32_t> share_p_canvases(int64_t total_p, const std::vector<double>& cost,
                                      const std::vector<int64_t>& cap) {
  const size_t G = cost.size();
  std::vector<int64_t> m(G, 0);
  int64_t used = 0;
  for (size_t k = 0; k < G; ++k) {
    m[k] = std::min<int64_t>(1, cap[k]);
    used += m[k];
  }
  int64_t R = total_p - used;
  while (R > 0) {
    std::vector<size_t> E;
    for (size_t k = 0; k < G; ++k)
      if (cap[k] > m[k]) E.push_back(k);
    if (E.empty()) break;
    double C = 0.0;
    for (size_t k : E) C += cost[k];
    std::vector<double> q(G, 0.0);
    for (size_t k : E) {
      q[k] = (C > 0.0) ? static_cast<double>(R) * cost[k] / C
                       : static_cast<double>(R) / static_cast<double>(E.size());
    }
    int64_t given = 0;
    for (size_t k : E) {
      int64_t add = static_cast<int64_t>(std::floor(q[k]));
      add = std::min(add, cap[k] - m[k]);
      add = std::min(add, R - given);
      add = std::max<int64_t>(add, 0);
      m[k] += add;
      given += add;
    }
    R -= given;
    if (R <= 0) break;
    std::vector<size_t> order(E);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const double fa = q[a] - std::floor(q[a]), fb = q[b] - std::floor(q[b]);
      if (fa != fb) return fa > fb;
      return a < b;
    });
    for (size_t k : order) {
      if (R == 0) break;
      if (m[k] < cap[k]) {
        ++m[k];
        --R;
      }
    }
  }
  std::vector<int32_t> out(G);
  for (size_t k = 0; k < G; ++k) out[k] = static_cast<int32_t>(m[k]);
  return out;
}

namespace {

struct Group {
  int64_t start, end;
  double cost;
  int64_t count;
};

void merge_pair(std::vector<Group>& g, size_t a) {
  g[a].end = g[a + 1].end;
  g[a].cost = g[a].cost + g[a + 1].cost;
  g[a].count += g[a + 1].count;
  g.erase(g.begin() + static_cast<std::ptrdiff_t>(a) + 1);
}

struct Cand {  // a candidate block in the pool
  double at;
  int32_t pos;
  int32_t idx;
};

inline bool better(const Cand& a, const Cand& b) {
  if (a.at != b.at) return a.at > b.at;
  if (a.pos != b.pos) return a.pos < b.pos;
  return a.idx < b.idx;
}

}  // namespace

AllocResult allocate(const int64_t* group_start, const int64_t* group_end, const double* group_cost,
                     int64_t num_groups, const double* cand_t, int64_t n_cand, const float* scores, int64_t nbh,
                     int64_t nbw, const AllocParams& p) {
  require(num_groups >= 1, "allocate: no groups");
  require(n_cand >= 1, "allocate: no candidate frames");
  require(n_cand < (int64_t{1} << 30), "allocate: too many candidates");
  require(nbh >= 1 && nbw >= 1 && nbh * nbw < (int64_t{1} << 30), "allocate: bad block grid");
  require(p.max_canvases >= 2, "allocate: max_canvases must be >= 2 (one I- and one P-canvas)");
  require(std::isfinite(p.lambda) && p.lambda >= 0, "allocate: lambda must be >= 0");
  require(std::isfinite(p.alpha_peak), "allocate: alpha_peak must be finite");
  require(p.anchor == 0 || p.anchor == 1, "allocate: anchor must be 0 (first) or 1 (center)");
  require(p.rank_mode == 0 || p.rank_mode == 1, "allocate: rank_mode must be 0 (rank) or 1 (fraction)");
  for (int64_t t = 0; t < n_cand; ++t) {
    require(std::isfinite(cand_t[t]), "allocate: non-finite candidate time at " + std::to_string(t));
    if (t > 0) require(cand_t[t] >= cand_t[t - 1], "allocate: candidate times must be non-decreasing");
  }
  std::vector<Group> g;
  for (int64_t k = 0; k < num_groups; ++k) {
    require(std::isfinite(group_cost[k]) && group_cost[k] >= 0, "allocate: group costs must be finite and >= 0");
    g.push_back({group_start[k], group_end[k], group_cost[k], 0});
  }
  AllocResult r;
  {
    const std::vector<int32_t> kap =
        group_of_time(cand_t, n_cand, group_start, group_end, num_groups, p.t0, p.delta);  // validates groups
    for (int64_t t = 0; t < n_cand; ++t) ++g[static_cast<size_t>(kap[t])].count;
  }
  // groups without candidates join their predecessor (the first joins its successor)
  while (g.size() > 1) {
    size_t k = 0;
    while (k < g.size() && g[k].count > 0) ++k;
    if (k == g.size()) break;
    merge_pair(g, k > 0 ? k - 1 : 0);
    ++r.merges_empty;
  }
  // budget: merge the adjacent pair with the smallest summed cost while 2G > max_canvases
  while (static_cast<int64_t>(2 * g.size()) > p.max_canvases) {
    size_t best = 0;
    double best_c = g[0].cost + g[1].cost;
    for (size_t a = 1; a + 1 < g.size(); ++a) {
      const double c = g[a].cost + g[a + 1].cost;
      if (c < best_c) {
        best_c = c;
        best = a;
      }
    }
    merge_pair(g, best);
    ++r.merges_budget;
  }
  const size_t G = g.size();
  for (const Group& x : g) {
    r.group_start.push_back(x.start);
    r.group_end.push_back(x.end);
    r.group_cost.push_back(x.cost);
  }
  r.cand_group = group_of_time(cand_t, n_cand, r.group_start.data(), r.group_end.data(), static_cast<int64_t>(G),
                               p.t0, p.delta);
  std::vector<std::vector<int32_t>> frames(G);
  for (int64_t t = 0; t < n_cand; ++t) frames[static_cast<size_t>(r.cand_group[t])].push_back(static_cast<int32_t>(t));

  const int64_t nb = nbh * nbw;
  std::vector<int64_t> valid_count(static_cast<size_t>(n_cand), 0);
  for (int64_t t = 0; t < n_cand; ++t) {
    const float* a = scores + t * nb;
    int64_t c = 0;
    for (int64_t i = 0; i < nb; ++i) c += std::isfinite(a[i]) ? 1 : 0;
    valid_count[t] = c;
  }
  std::vector<int64_t> cap(G, 0);
  r.group_anchor.assign(G, -1);
  r.group_num_frames.assign(G, 0);
  for (size_t k = 0; k < G; ++k) {
    const auto& fr = frames[k];
    r.group_num_frames[k] = static_cast<int32_t>(fr.size());
    require(!fr.empty(), "allocate: internal error, empty group after merging");
    const size_t ai = p.anchor == 0 ? 0 : (fr.size() - 1) / 2;
    r.group_anchor[k] = fr[ai];
    int64_t v = 0;
    for (size_t q = 0; q < fr.size(); ++q)
      if (q != ai) v += valid_count[fr[q]];
    cap[k] = (v + nb - 1) / nb;
  }
  r.group_capacity.assign(cap.begin(), cap.end());
  const int64_t total_p = p.max_canvases - static_cast<int64_t>(G);
  r.group_num_p = share_p_canvases(total_p, r.group_cost, cap);

  r.cand_weight.assign(static_cast<size_t>(n_cand), 0.0);
  r.cand_cum.assign(static_cast<size_t>(n_cand), -1.0);
  r.cand_stratum.assign(static_cast<size_t>(n_cand), -1);
  r.canvas_offset.push_back(0);
  std::vector<double> atil(static_cast<size_t>(nb));
  std::vector<int32_t> order(static_cast<size_t>(nb));

  for (size_t k = 0; k < G; ++k) {
    // I-canvas
    r.add_i_canvas(static_cast<int32_t>(k), r.group_anchor[k]);
    const int64_t m = r.group_num_p[k];
    if (m == 0) continue;
    std::vector<int32_t> z;  // non-anchor candidate positions in time order
    for (int32_t t : frames[k])
      if (t != r.group_anchor[k]) z.push_back(t);
    const int64_t nz = static_cast<int64_t>(z.size());
    // Ã per block of each frame; used flags
    std::vector<double> at(static_cast<size_t>(nz * nb), 0.0);
    std::vector<uint8_t> usable(static_cast<size_t>(nz * nb), 0);
    std::vector<int64_t> left(static_cast<size_t>(nz), 0);
    std::vector<double> w(static_cast<size_t>(nz), 0.0);
    for (int64_t l = 0; l < nz; ++l) {
      const float* a = scores + static_cast<int64_t>(z[l]) * nb;
      int64_t nv = 0;
      for (int64_t i = 0; i < nb; ++i)
        if (std::isfinite(a[i])) order[nv++] = static_cast<int32_t>(i);
      std::sort(order.begin(), order.begin() + nv, [&](int32_t x, int32_t y) {
        if (a[x] != a[y]) return a[x] > a[y];
        return x < y;
      });
      double sum_pos = 0.0, mx = 0.0;
      for (int64_t rho = 0; rho < nv; ++rho) {
        const int32_t i = order[rho];
        const double rr = p.rank_mode == 0 ? static_cast<double>(rho)
                                           : static_cast<double>(rho) / static_cast<double>(nv);
        const double v = static_cast<double>(a[i]) / std::sqrt(1.0 + p.lambda * rr);
        at[l * nb + i] = v;
        usable[l * nb + i] = 1;
        sum_pos += std::max(0.0, v);
        if (rho == 0 || v > mx) mx = v;
      }
      left[l] = nv;
      const double wl = nv > 0 ? sum_pos + p.alpha_peak * mx : 0.0;
      w[l] = std::max(0.0, wl);
    }
    double total = 0.0;
    for (int64_t l = 0; l < nz; ++l) total += w[l];
    if (!(total > 0.0)) {
      for (int64_t l = 0; l < nz; ++l) w[l] = 1.0;
      total = static_cast<double>(nz);
    }
    std::vector<int64_t> sigma(static_cast<size_t>(nz));
    double cum = 0.0;
    for (int64_t l = 0; l < nz; ++l) {
      cum += w[l];
      const double F = cum / total;
      const int64_t s = static_cast<int64_t>(std::floor(F * static_cast<double>(m)));
      sigma[l] = std::min<int64_t>(m - 1, std::max<int64_t>(0, s));
      r.cand_weight[z[l]] = w[l];
      r.cand_cum[z[l]] = F;
      r.cand_stratum[z[l]] = static_cast<int32_t>(sigma[l]);
    }
    for (int64_t rr = 0; rr < m; ++rr) {
      int64_t lo = nz, hi = -1;
      for (int64_t l = 0; l < nz; ++l) {
        if (sigma[l] >= rr && lo == nz) lo = l;
        if (sigma[l] <= rr) hi = l;
      }
      int64_t widen = 0, L = 0, H = -1;
      for (;;) {
        L = std::max<int64_t>(0, lo - widen);
        H = std::min<int64_t>(nz - 1, hi + widen);
        int64_t avail = 0;
        for (int64_t l = L; l <= H; ++l) avail += left[l];
        if (avail >= nb || (L == 0 && H == nz - 1)) break;
        ++widen;
      }
      std::vector<Cand> pool;
      for (int64_t l = L; l <= H; ++l) {
        for (int64_t i = 0; i < nb; ++i) {
          if (usable[l * nb + i]) pool.push_back({at[l * nb + i], static_cast<int32_t>(l), static_cast<int32_t>(i)});
        }
      }
      const size_t take = std::min<size_t>(pool.size(), static_cast<size_t>(nb));
      std::partial_sort(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(take), pool.end(), better);
      pool.resize(take);
      std::sort(pool.begin(), pool.end(), [](const Cand& a, const Cand& b) {
        if (a.pos != b.pos) return a.pos < b.pos;
        return a.idx < b.idx;
      });
      for (const Cand& c : pool) {
        usable[static_cast<int64_t>(c.pos) * nb + c.idx] = 0;
        --left[c.pos];
        r.block_t.push_back(z[c.pos]);
        r.block_i.push_back(static_cast<int32_t>(c.idx / nbw));
        r.block_j.push_back(static_cast<int32_t>(c.idx % nbw));
      }
      r.add_p_canvas(static_cast<int32_t>(k), static_cast<int32_t>(rr), L <= H ? z[L] : -1, L <= H ? z[H] : -1,
                     static_cast<int32_t>(widen), widen > 0 && L == 0 && H == nz - 1 ? 1 : 0);
    }
  }
  return r;
}

}  // namespace ov2::tok

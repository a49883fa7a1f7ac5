#include "tokenize/saliency.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

namespace ov2::tok {

double percentile_linear(double* v, int64_t n, double q) {
  require(n >= 1, "percentile: no values");
  const double pos = (q / 100.0) * static_cast<double>(n - 1);
  int64_t lo = static_cast<int64_t>(std::floor(pos));
  lo = std::min(std::max<int64_t>(lo, 0), n - 1);
  const int64_t hi = std::min(lo + 1, n - 1);
  std::nth_element(v, v + lo, v + n);
  const double a = v[lo];
  double b = a;
  if (hi != lo) b = *std::min_element(v + lo + 1, v + n);
  return a + (b - a) * (pos - static_cast<double>(lo));
}

int32_t abs_histogram(const int16_t* res, int64_t n, std::vector<int64_t>& hist) {
  // One pass: |r| < 512 (every 8-bit residual) counts in a small table; larger values only set rmax.
  // Four interleaved tables: most residuals repeat the same value, and one table would serialise on the
  // store-to-load latency of its counter.
  // Runs of eight zeros (static areas: most of a residual) are counted eight at a time.
  uint32_t part[4][512] = {{0}};
  int32_t m4[4] = {0, 0, 0, 0};
  int64_t zeros = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 4) {
    uint64_t q[2];
    std::memcpy(q, res + i, sizeof q);
    if ((q[0] | q[1]) == 0) {
      zeros += 8;
      i += 4;
      continue;
    }
    for (int k = 0; k < 4; ++k) {
      const int32_t r = res[i + k];
      const int32_t a = r < 0 ? -r : r;
      m4[k] = a > m4[k] ? a : m4[k];
      part[k][a < 512 ? a : 511] += a < 512 ? 1u : 0u;
    }
  }
  for (; i < n; ++i) {  // the last few values
    const int32_t r = res[i];
    const int32_t a = r < 0 ? -r : r;
    m4[0] = a > m4[0] ? a : m4[0];
    part[0][a < 512 ? a : 511] += a < 512 ? 1u : 0u;
  }
  const int32_t rmax = std::max(std::max(m4[0], m4[1]), std::max(m4[2], m4[3]));
  int64_t small[512];
  for (int v = 0; v < 512; ++v)
    small[v] = static_cast<int64_t>(part[0][v]) + part[1][v] + part[2][v] + part[3][v];
  small[0] += zeros;
  hist.assign(static_cast<size_t>(rmax) + 1, 0);
  std::copy(small, small + std::min<int32_t>(rmax + 1, 512), hist.begin());
  if (rmax >= 512)
    for (int64_t i = 0; i < n; ++i) {
      const int32_t r = res[i];
      const int32_t a = r < 0 ? -r : r;
      if (a >= 512) ++hist[static_cast<size_t>(a)];
    }
  return rmax;
}

namespace {

// A multiset given as (value, multiplicity) pairs; every pixel of a 4×4 cell carries the cell's value, so
// order statistics over pixels are order statistics over cells weighted by their pixel counts (exactly).
// Selection is a weighted quickselect (expected linear time); it returns an element's value, so the result
// does not depend on how the partitioning went.
struct Weighted {
  std::vector<std::pair<double, int64_t>> items;
  int64_t total = 0;
  void finish() {
    total = 0;
    for (const auto& it : items) total += it.second;
  }
  // k-th smallest (0-based) pixel value; reorders items
  double kth(int64_t k) {
    size_t lo = 0, hi = items.size();
    for (;;) {
      if (hi - lo <= 16) {
        std::sort(items.begin() + static_cast<std::ptrdiff_t>(lo), items.begin() + static_cast<std::ptrdiff_t>(hi),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        int64_t cum = 0;
        for (size_t i = lo; i < hi; ++i) {
          cum += items[i].second;
          if (k < cum) return items[i].first;
        }
        return items[hi - 1].first;
      }
      const double a = items[lo].first, b = items[lo + (hi - lo) / 2].first, c = items[hi - 1].first;
      const double pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));  // median of three
      auto first = items.begin() + static_cast<std::ptrdiff_t>(lo), last = items.begin() + static_cast<std::ptrdiff_t>(hi);
      auto m1 = std::partition(first, last, [&](const auto& x) { return x.first < pivot; });
      auto m2 = std::partition(m1, last, [&](const auto& x) { return x.first == pivot; });
      int64_t wl = 0, we = 0;
      for (auto it = first; it != m1; ++it) wl += it->second;
      for (auto it = m1; it != m2; ++it) we += it->second;
      if (k < wl) {
        hi = static_cast<size_t>(m1 - items.begin());
      } else if (k < wl + we) {
        return pivot;
      } else {
        k -= wl + we;
        lo = static_cast<size_t>(m2 - items.begin());
      }
    }
  }
  double median() {  // numpy's median
    const int64_t mid = total / 2;
    const double upper = kth(mid);
    if (total % 2 == 1) return upper;
    return (kth(mid - 1) + upper) / 2.0;
  }
  double percentile(double q) {  // == percentile_linear over the expanded pixels
    const double pos = (q / 100.0) * static_cast<double>(total - 1);
    int64_t lo = static_cast<int64_t>(std::floor(pos));
    lo = std::min(std::max<int64_t>(lo, 0), total - 1);
    const int64_t hi = std::min(lo + 1, total - 1);
    const double a = kth(lo);
    const double b = kth(hi);
    return a + (b - a) * (pos - static_cast<double>(lo));
  }
};

}  // namespace

void saliency_terms(const float* mv_field, const uint8_t* mv_flags, int64_t h4, int64_t w4, const int16_t* residual,
                    int64_t height, int64_t width, SaliencyTerms& t) {
  require(height >= 1 && width >= 1, "saliency: frame size must be positive");
  const int64_t npx = height * width;
  t.cells_w = (width + 3) / 4;
  // Motion term per cell of the (ceil(H/4), ceil(W/4)) grid actually covering the frame.
  const int64_t ch = (height + 3) / 4, cw = (width + 3) / 4;
  std::vector<double>& mbar = t.mbar;  // per cell, M̄; empty when no motion term
  mbar.clear();
  if (mv_field) {
    require(h4 >= ch && w4 >= cw, "saliency: mv_field grid smaller than ceil(frame/4)");
    const size_t ncell = static_cast<size_t>(ch * cw);
    // Runs: neighbouring cells of a row with the same flags and the same four values (the cells of one partition,
    // a static background) have the same vector, M and M̄. Every statistic below is a sum of pixel counts or an
    // order statistic of a multiset of values, so it is computed once per run with the run's pixel count as weight
    // (the same sums, the same selected values as per cell), and M̄ is written per run.
    struct Run {
      int64_t cell = 0, len = 0, wt = 0;  // first compact cell (a * cw + b), cells, pixels
      double x = 0.0, y = 0.0;            // the vector (valid runs only)
    };
    thread_local std::vector<Run> runs;  // valid runs only (cells without a vector contribute nothing)
    thread_local std::vector<int32_t> gxs, gys;  // the vector on the 1/8 grid (while `grid` holds)
    runs.clear();
    const int64_t last_px = width - 4 * (cw - 1);  // pixels per row of the last (possibly narrower) cell column
    for (int64_t a = 0; a < ch; ++a) {
      const int64_t py = std::min<int64_t>(4, height - 4 * a);
      const float* frow = mv_field + a * w4 * 4;
      const uint8_t* lrow = mv_flags ? mv_flags + a * w4 : nullptr;
      for (int64_t b = 0; b < cw;) {
        // the run of cells b..e-1 with the bytes of cell b
        int64_t e = b + 1;
        const uint8_t fl = lrow ? lrow[b] : uint8_t{1};
        while (e < cw && (!lrow || lrow[e] == fl) && std::memcmp(frow + e * 4, frow + b * 4, 4 * sizeof(float)) == 0)
          ++e;
        const int64_t len = e - b, first = b;
        b = e;
        const float* v = frow + first * 4;
        if (!std::isfinite(v[0]) || !std::isfinite(v[1]) || !std::isfinite(v[2]) || !std::isfinite(v[3]))
          continue;  // a non-finite vector is no vector (the codec core never makes one; direct callers might)
        Run r;
        if (fl & 1u) {
          r.x = v[0];
          r.y = v[1];
        } else if (fl & 2u) {
          r.x = v[2];
          r.y = v[3];
        } else {
          continue;
        }
        // pixels: 4·py per cell, last_px·py in the last cell column
        r.wt = py * (first + len == cw ? 4 * (len - 1) + last_px : 4 * len);
        r.cell = a * cw + first;
        r.len = len;
        runs.push_back(r);
      }
    }
    const size_t nrun = runs.size();
    // Exact integer fast path: codec vectors are multiples of 1/4 (H.264), 1/2 (MPEG-4) or 1 pixel (estimated),
    // so on a 1/8 grid every order statistic below is an integer selection. Off the grid: weighted quickselect.
    bool grid = true;
    {  // on the grid: |8v| < 65536 and 8v an integer (a truncation that changes nothing)
      gxs.resize(nrun);
      gys.resize(nrun);
      for (size_t k = 0; k < nrun && grid; ++k) {
        const double gx = runs[k].x * 8.0, gy = runs[k].y * 8.0;
        if (std::fabs(gx) < 65536.0 && std::fabs(gy) < 65536.0) {
          gxs[k] = static_cast<int32_t>(gx);
          gys[k] = static_cast<int32_t>(gy);
          grid = gxs[k] == gx && gys[k] == gy;
        } else {
          grid = false;
        }
      }
    }
    if (nrun > 0) {
      thread_local std::vector<double> mag;  // per run
      mag.resize(nrun);
      double* const pmag = mag.data();
      const Run* const pr = runs.data();
      double den = 1e-6;
      if (grid) {
        const int32_t* const pgx = gxs.data();
        const int32_t* const pgy = gys.data();
        // medians of x and y through weighted histograms on the 1/8 grid, sized to the range of values
        int64_t x0 = INT64_MAX, x1 = INT64_MIN, y0 = INT64_MAX, y1 = INT64_MIN;
        for (size_t k = 0; k < nrun; ++k) {
          x0 = std::min<int64_t>(x0, pgx[k]);
          x1 = std::max<int64_t>(x1, pgx[k]);
          y0 = std::min<int64_t>(y0, pgy[k]);
          y1 = std::max<int64_t>(y1, pgy[k]);
        }
        thread_local std::vector<int64_t> hx, hy;
        hx.assign(static_cast<size_t>(x1 - x0 + 1), 0);
        hy.assign(static_cast<size_t>(y1 - y0 + 1), 0);
        int64_t total = 0;
        for (size_t k = 0; k < nrun; ++k) {
          hx[static_cast<size_t>(pgx[k] - x0)] += pr[k].wt;
          hy[static_cast<size_t>(pgy[k] - y0)] += pr[k].wt;
          total += pr[k].wt;
        }
        auto kth_hist = [](const std::vector<int64_t>& h, int64_t base, int64_t k) {
          int64_t cum = 0;
          for (size_t i = 0; i < h.size(); ++i) {
            cum += h[i];
            if (k < cum) return static_cast<double>(static_cast<int64_t>(i) + base) / 8.0;
          }
          return static_cast<double>(static_cast<int64_t>(h.size()) - 1 + base) / 8.0;
        };
        auto median = [&](const std::vector<int64_t>& h, int64_t base) {  // numpy's median
          const int64_t mid = total / 2;
          const double upper = kth_hist(h, base, mid);
          if (total % 2 == 1) return upper;
          return (kth_hist(h, base, mid - 1) + upper) / 2.0;
        };
        const double mx = median(hx, x0), my = median(hy, y0);
        // |v − median|² is exact in double and a multiple of 1/256: select on the integer 256·|v − median|²
        thread_local std::vector<int64_t> key;
        key.resize(nrun);
        int64_t* const pkey = key.data();
        int64_t kmax = 0;
        for (size_t k = 0; k < nrun; ++k) {
          const double dx = pr[k].x - mx, dy = pr[k].y - my;
          const double m2 = dx * dx + dy * dy;
          pmag[k] = std::sqrt(m2);
          pkey[k] = static_cast<int64_t>(m2 * 256.0);
          kmax = std::max(kmax, pkey[k]);
        }
        int shift = 0;
        while ((kmax >> shift) >= (int64_t{1} << 16)) ++shift;
        thread_local std::vector<int64_t> hb;
        hb.assign((static_cast<size_t>(kmax) >> shift) + 1, 0);
        for (size_t k = 0; k < nrun; ++k) hb[static_cast<size_t>(pkey[k] >> shift)] += pr[k].wt;
        // k-th smallest (0-based) pixel value of 256·|v − median|²: the bucket by histogram, then exactly within it
        auto kth_key = [&](int64_t k) -> int64_t {
          int64_t cum = 0;
          size_t bkt = hb.size() - 1;
          for (size_t i = 0; i < hb.size(); ++i) {
            if (k < cum + hb[i]) {
              bkt = i;
              break;
            }
            cum += hb[i];
          }
          if (shift == 0) return static_cast<int64_t>(bkt);
          std::vector<std::pair<int64_t, int64_t>> in;
          for (size_t q = 0; q < nrun; ++q)
            if (static_cast<size_t>(pkey[q] >> shift) == bkt) in.emplace_back(pkey[q], pr[q].wt);
          std::sort(in.begin(), in.end());
          for (const auto& e : in) {
            cum += e.second;
            if (k < cum) return e.first;
          }
          return in.empty() ? 0 : in.back().first;
        };
        const double pos = (95.0 / 100.0) * static_cast<double>(total - 1);
        int64_t lo = static_cast<int64_t>(std::floor(pos));
        lo = std::min(std::max<int64_t>(lo, 0), total - 1);
        const int64_t hi = std::min(lo + 1, total - 1);
        const double a = std::sqrt(static_cast<double>(kth_key(lo)) / 256.0);
        const double b = std::sqrt(static_cast<double>(kth_key(hi)) / 256.0);
        den = std::max(a + (b - a) * (pos - static_cast<double>(lo)), 1e-6);
      } else {
        Weighted wx, wy;
        wx.items.reserve(nrun);
        wy.items.reserve(nrun);
        for (size_t k = 0; k < nrun; ++k) {
          wx.items.emplace_back(pr[k].x, pr[k].wt);
          wy.items.emplace_back(pr[k].y, pr[k].wt);
        }
        wx.finish();
        wy.finish();
        const double mx = wx.median(), my = wy.median();
        Weighted wm;
        wm.items.reserve(nrun);
        for (size_t k = 0; k < nrun; ++k) {
          const double dx = pr[k].x - mx, dy = pr[k].y - my;
          pmag[k] = std::sqrt(dx * dx + dy * dy);
          wm.items.emplace_back(pmag[k], pr[k].wt);
        }
        wm.finish();
        den = std::max(wm.percentile(95.0), 1e-6);
      }
      mbar.assign(ncell, 0.0);
      double* const pm = mbar.data();
      for (size_t k = 0; k < nrun; ++k) {
        const double m = std::min(1.0, pmag[k] / den);
        std::fill(pm + pr[k].cell, pm + pr[k].cell + pr[k].len, m);
      }
    }
  }
  // Residual term: exact order statistics of |r| through a histogram (|r| ≤ 32768), sized to the largest |r|.
  double den_r = 1.0;
  thread_local std::vector<int64_t> hist;
  std::vector<double>& rbar = t.rbar;
  rbar.clear();
  int32_t rmax = 0;
  if (residual) {
    rmax = abs_histogram(residual, npx, hist);
    auto kth = [&](int64_t k) {
      int64_t cum = 0;
      for (size_t v = 0; v < hist.size(); ++v) {
        cum += hist[v];
        if (k < cum) return static_cast<double>(v);
      }
      return static_cast<double>(rmax);
    };
    const double pos = (95.0 / 100.0) * static_cast<double>(npx - 1);
    int64_t lo = static_cast<int64_t>(std::floor(pos));
    lo = std::min(std::max<int64_t>(lo, 0), npx - 1);
    const int64_t hi = std::min(lo + 1, npx - 1);
    const double a = kth(lo), b = kth(hi);
    den_r = std::max(a + (b - a) * (pos - static_cast<double>(lo)), 1.0);
    // R̄ depends only on |r|: a table over 0..max |r| (same arithmetic as per pixel)
    rbar.resize(static_cast<size_t>(rmax) + 1);
    for (size_t v = 0; v < rbar.size(); ++v) rbar[v] = std::min(1.0, static_cast<double>(v) / den_r);
  }
}

void saliency(const float* mv_field, const uint8_t* mv_flags, int64_t h4, int64_t w4, const int16_t* residual,
              int64_t height, int64_t width, bool is_intra_frame, float* out_s) {
  require(height >= 1 && width >= 1, "saliency: frame size must be positive");
  const int64_t npx = height * width;
  if (is_intra_frame) {
    std::fill(out_s, out_s + npx, 0.0f);
    return;
  }
  thread_local SaliencyTerms t;
  saliency_terms(mv_field, mv_flags, h4, w4, residual, height, width, t);
  const int64_t cw = t.cells_w;
  const std::vector<double>& mbar = t.mbar;
  const std::vector<double>& rbar = t.rbar;
  for (int64_t y = 0; y < height; ++y) {
    const double* mrow = mbar.empty() ? nullptr : mbar.data() + (y / 4) * cw;
    const int16_t* rrow = residual ? residual + y * width : nullptr;
    float* orow = out_s + y * width;
    for (int64_t x0 = 0; x0 < width; x0 += 4) {
      const double m = mrow ? mrow[x0 / 4] : 0.0;
      const int64_t x1 = std::min<int64_t>(width, x0 + 4);
      for (int64_t x = x0; x < x1; ++x) {
        double r = 0.0;
        if (rrow) {
          const int32_t v = rrow[x];
          r = rbar[static_cast<size_t>(v < 0 ? -v : v)];
        }
        orow[x] = static_cast<float>((m + r) / 2.0);
      }
    }
  }
}

}  // namespace ov2::tok

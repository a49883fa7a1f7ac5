#include "tokenize/block_score.h"

#include <vector>

#include "tokenize/geometry.h"
#include "tokenize/saliency.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace ov2::tok {

void block_score(const float* s, const float* cost, int64_t hc, int64_t wc, int64_t patch, int64_t merge, double beta,
                 const ValidRect& valid, float* out_a) {
  require(patch >= 1 && merge >= 1, "block_score: patch and merge must be >= 1");
  const int64_t f = patch * merge;
  require(hc >= f && wc >= f && hc % f == 0 && wc % f == 0,
          "block_score: canvas sides must be positive multiples of patch*merge");
  require(std::isfinite(beta), "block_score: beta must be finite");
  const int64_t y1 = valid.y1 < 0 ? hc : valid.y1, x1 = valid.x1 < 0 ? wc : valid.x1;
  const int64_t nph = hc / patch, npw = wc / patch, nbh = hc / f, nbw = wc / f;
  // patch sums of s
  std::vector<double> psum(static_cast<size_t>(nph * npw), 0.0);
  for (int64_t ph = 0; ph < nph; ++ph) {
    for (int64_t pw = 0; pw < npw; ++pw) {
      double acc = 0.0;
      for (int64_t y = ph * patch; y < (ph + 1) * patch; ++y) {
        const float* row = s + y * wc + pw * patch;
        for (int64_t x = 0; x < patch; ++x) acc += static_cast<double>(row[x]);
      }
      psum[ph * npw + pw] = acc;
    }
  }
  const double p2 = static_cast<double>(patch * patch), m2 = static_cast<double>(merge * merge),
               f2 = static_cast<double>(f * f);
  for (int64_t bi = 0; bi < nbh; ++bi) {
    for (int64_t bj = 0; bj < nbw; ++bj) {
      const int64_t by0 = bi * f, bx0 = bj * f;
      const bool inside = by0 < y1 && by0 + f > valid.y0 && bx0 < x1 && bx0 + f > valid.x0;
      if (!inside) {
        out_a[bi * nbw + bj] = -std::numeric_limits<float>::infinity();
        continue;
      }
      double acc = 0.0;
      for (int64_t a = 0; a < merge; ++a)
        for (int64_t b = 0; b < merge; ++b) acc += psum[(bi * merge + a) * npw + bj * merge + b] / p2;
      double score = acc / m2;
      if (cost) {
        double c = 0.0;
        for (int64_t y = by0; y < by0 + f; ++y) {
          const float* row = cost + y * wc + bx0;
          for (int64_t x = 0; x < f; ++x) c += static_cast<double>(row[x]);
        }
        score = score + beta * (c / f2);
      }
      out_a[bi * nbw + bj] = static_cast<float>(score);
    }
  }
}

namespace {

// Σ over source rows sy of wy·Σ over source columns sx of wx·x[sy][sx] for every (row group, column group):
// out[g][k] in double, summing rows ascending within a row group, then columns ascending within a column group.
// `row(sy, buf)` returns source row sy (double, width sw), computed at most once per row.
template <class RowFn>
void separable_group_sums(const AreaTaps& rows, const AreaTaps& cols, int64_t sw, RowFn row, std::vector<double>& out) {
  const int64_t ng = static_cast<int64_t>(rows.begin.size()) - 1, nk = static_cast<int64_t>(cols.begin.size()) - 1;
  thread_local std::vector<double> t, buf;
  t.assign(static_cast<size_t>(sw), 0.0);
  out.assign(static_cast<size_t>(ng * nk), 0.0);
  int64_t cached = -1;
  const double* r = nullptr;
  for (int64_t g = 0; g < ng; ++g) {
    std::fill(t.begin(), t.end(), 0.0);
    for (int64_t j = rows.begin[g]; j < rows.begin[g + 1]; ++j) {
      const int64_t sy = rows.index[j];
      if (sy != cached) {
        r = row(sy, buf);
        cached = sy;
      }
      const double w = rows.weight[j];
      for (int64_t x = 0; x < sw; ++x) t[x] += w * r[x];
    }
    double* o = out.data() + g * nk;
    for (int64_t k = 0; k < nk; ++k) {
      double acc = 0.0;
      for (int64_t j = cols.begin[k]; j < cols.begin[k + 1]; ++j) acc += cols.weight[j] * t[cols.index[j]];
      o[k] = acc;
    }
  }
}

}  // namespace

void score_frame(int64_t hc, int64_t wc, int64_t height, int64_t width, const float* mv_field, const uint8_t* mv_flags,
                 int64_t h4, int64_t w4, const int16_t* residual, const float* cost, int64_t ch, int64_t cw,
                 bool is_intra, int64_t patch, int64_t merge, double beta, const ValidRect& rect, float* out) {
  require(patch >= 1 && merge >= 1 && hc >= patch * merge && wc >= patch * merge && hc % (patch * merge) == 0 &&
              wc % (patch * merge) == 0,
          "score_frame: canvas sides must be positive multiples of patch*merge");
  require(std::isfinite(beta), "score_frame: beta must be finite");
  const int64_t f = patch * merge, nph = hc / patch, npw = wc / patch, nbh = hc / f, nbw = wc / f;
  const int64_t y1 = rect.y1 < 0 ? hc : rect.y1, x1 = rect.x1 < 0 ? wc : rect.x1;
  const double p2 = static_cast<double>(patch * patch), m2 = static_cast<double>(merge * merge),
               f2 = static_cast<double>(f * f);
  // Patch sums of the area-resized saliency, straight from the source pixels (no canvas-sized maps).
  thread_local std::vector<double> psum, csum;
  psum.assign(static_cast<size_t>(nph * npw), 0.0);
  if (!is_intra) {
    thread_local SaliencyTerms terms;
    saliency_terms(mv_field, mv_flags, h4, w4, residual, height, width, terms);
    const AreaTaps rows = grouped_area_taps(height, hc, patch), cols = grouped_area_taps(width, wc, patch);
    const std::vector<double>& mbar = terms.mbar;
    const std::vector<double>& rbar = terms.rbar;
    const int64_t cwid = terms.cells_w;
    separable_group_sums(rows, cols, width, [&](int64_t sy, std::vector<double>& buf) -> const double* {
      buf.resize(static_cast<size_t>(width));
      const double* mrow = mbar.empty() ? nullptr : mbar.data() + (sy / 4) * cwid;
      const int16_t* rrow = residual ? residual + sy * width : nullptr;
      double* const b = buf.data();
      int64_t x = 0;
      if (rrow) {
        // Runs of eight zero residuals (most of a residual) skip the |r| lookups; same arithmetic, R̄ = rbar[0].
        const double r0 = rbar[0];
        for (; x + 8 <= width; x += 8) {
          uint64_t q[2];
          std::memcpy(q, rrow + x, sizeof q);
          if ((q[0] | q[1]) != 0) {
            for (int64_t k = x; k < x + 8; ++k) {
              const int32_t v = rrow[k];
              b[k] = ((mrow ? mrow[k / 4] : 0.0) + rbar[static_cast<size_t>(v < 0 ? -v : v)]) / 2.0;
            }
            continue;
          }
          const double s0 = ((mrow ? mrow[x / 4] : 0.0) + r0) / 2.0;      // cells x/4 and x/4 + 1 (x % 8 == 0)
          const double s1 = ((mrow ? mrow[x / 4 + 1] : 0.0) + r0) / 2.0;
          b[x] = b[x + 1] = b[x + 2] = b[x + 3] = s0;
          b[x + 4] = b[x + 5] = b[x + 6] = b[x + 7] = s1;
        }
      }
      for (; x < width; ++x) {
        const double m = mrow ? mrow[x / 4] : 0.0;
        double rv = 0.0;
        if (rrow) {
          const int32_t v = rrow[x];
          rv = rbar[static_cast<size_t>(v < 0 ? -v : v)];
        }
        buf[x] = (m + rv) / 2.0;
      }
      return buf.data();
    }, psum);
  }
  const bool with_cost = !is_intra && cost != nullptr;
  if (with_cost) {
    require(ch >= 1 && cw >= 1, "score_frame: empty cost map");
    const AreaTaps rows = grouped_area_taps(ch, hc, f), cols = grouped_area_taps(cw, wc, f);
    separable_group_sums(rows, cols, cw, [&](int64_t sy, std::vector<double>& buf) -> const double* {
      buf.resize(static_cast<size_t>(cw));
      for (int64_t x = 0; x < cw; ++x) buf[x] = static_cast<double>(cost[sy * cw + x]);
      return buf.data();
    }, csum);
  }
  for (int64_t bi = 0; bi < nbh; ++bi) {
    for (int64_t bj = 0; bj < nbw; ++bj) {
      const int64_t by0 = bi * f, bx0 = bj * f;
      if (!(by0 < y1 && by0 + f > rect.y0 && bx0 < x1 && bx0 + f > rect.x0)) {
        out[bi * nbw + bj] = -std::numeric_limits<float>::infinity();
        continue;
      }
      double acc = 0.0;
      for (int64_t a = 0; a < merge; ++a)
        for (int64_t b = 0; b < merge; ++b) acc += psum[(bi * merge + a) * npw + bj * merge + b] / p2;
      double score = acc / m2;
      if (with_cost) score = score + beta * (csum[bi * nbw + bj] / f2);
      out[bi * nbw + bj] = static_cast<float>(score);
    }
  }
}

}  // namespace ov2::tok

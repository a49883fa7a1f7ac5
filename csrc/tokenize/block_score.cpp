#include "tokenize/block_score.h"

#include <vector>

#include "tokenize/geometry.h"
#include "tokenize/saliency.h"

#include <algorithm>
#include <cmath>
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

void score_frame(int64_t hc, int64_t wc, int64_t height, int64_t width, const float* mv_field, const uint8_t* mv_flags,
                 int64_t h4, int64_t w4, const int16_t* residual, const float* cost, int64_t ch, int64_t cw,
                 bool is_intra, int64_t patch, int64_t merge, double beta, const ValidRect& rect, float* out) {
  require(patch >= 1 && merge >= 1 && hc >= patch * merge && wc >= patch * merge && hc % (patch * merge) == 0 &&
              wc % (patch * merge) == 0,
          "score_frame: canvas sides must be positive multiples of patch*merge");
  thread_local std::vector<float> s, sc, cc;
  sc.resize(static_cast<size_t>(hc * wc));
  if (is_intra) {
    std::fill(sc.begin(), sc.end(), 0.0f);
    block_score(sc.data(), nullptr, hc, wc, patch, merge, beta, rect, out);
    return;
  }
  s.resize(static_cast<size_t>(height * width));
  saliency(mv_field, mv_flags, h4, w4, residual, height, width, false, s.data());
  resize_area_f32(s.data(), height, width, sc.data(), hc, wc);
  if (cost) {
    require(ch >= 1 && cw >= 1, "score_frame: empty cost map");
    cc.resize(static_cast<size_t>(hc * wc));
    resize_area_f32(cost, ch, cw, cc.data(), hc, wc);
  }
  block_score(sc.data(), cost ? cc.data() : nullptr, hc, wc, patch, merge, beta, rect, out);
}

}  // namespace ov2::tok

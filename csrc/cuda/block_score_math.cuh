// DESIGN §5.5 on the device: per-patch and per-block math of csrc/tokenize/block_score.cpp (score_frame).
#pragma once

#include "cuda/geometry_math.cuh"
#include "cuda/saliency_math.cuh"

namespace ov2::cuda {

// Dense grouped taps of one axis (see geometry_math.cuh): group g covers [start[g], start[g] + count[g]),
// weights at weight[g * stride + k].
struct Taps {
  const int64_t* start;
  const int32_t* count;
  const double* weight;
  int64_t stride;
};

OV2_HD void fill_taps_group(int64_t sn, int64_t dn, int64_t group, int64_t g, int64_t stride, int64_t* start,
                            int32_t* count, double* weight) {
  int64_t s0, s1;
  grouped_tap_range(sn, dn, group, g, &s0, &s1);
  const int64_t n = hd_min(s1 - s0, stride);
  start[g] = s0;
  count[g] = static_cast<int32_t>(n);
  for (int64_t k = 0; k < n; ++k) weight[g * stride + k] = grouped_tap_weight(sn, dn, group, g, s0 + k);
}

// Σ of the area-resized saliency over patch (g, k), straight from the source pixels, in the CPU's order:
// per source column (ascending) the row-weighted column sum (rows ascending), then the column weights.
OV2_HD double patch_sum(const Taps& rows, const Taps& cols, int64_t g, int64_t k, const double* mbar, int64_t cells_w,
                        const int16_t* residual, double den_r, int64_t width) {
  const int64_t r0 = rows.start[g], rn = rows.count[g], c0 = cols.start[k], cn = cols.count[k];
  double acc = 0.0;
  for (int64_t j = 0; j < cn; ++j) {
    const int64_t x = c0 + j;
    double t = 0.0;
    for (int64_t i = 0; i < rn; ++i)
      t += rows.weight[g * rows.stride + i] * saliency_value(mbar, cells_w, residual, den_r, width, r0 + i, x);
    acc += cols.weight[k * cols.stride + j] * t;
  }
  return acc;
}

// Σ of the area-resized coding cost over block (g, k) (map [ch, cw]).
OV2_HD double cost_sum(const Taps& rows, const Taps& cols, int64_t g, int64_t k, const float* cost, int64_t cw) {
  const int64_t r0 = rows.start[g], rn = rows.count[g], c0 = cols.start[k], cn = cols.count[k];
  double acc = 0.0;
  for (int64_t j = 0; j < cn; ++j) {
    double t = 0.0;
    for (int64_t i = 0; i < rn; ++i)
      t += rows.weight[g * rows.stride + i] * static_cast<double>(cost[(r0 + i) * cw + c0 + j]);
    acc += cols.weight[k * cols.stride + j] * t;
  }
  return acc;
}

// Block (bi, bj) from its m×m patch sums (α-major) and its cost sum; padding outside `valid` → −∞.
OV2_HD float block_value(const double* psum, int64_t npw, int64_t bi, int64_t bj, int64_t patch, int64_t merge,
                         bool with_cost, double csum, double beta) {
  const double p2 = static_cast<double>(patch * patch), m2 = static_cast<double>(merge * merge);
  const int64_t f = patch * merge;
  const double f2 = static_cast<double>(f * f);
  double acc = 0.0;
  for (int64_t a = 0; a < merge; ++a)
    for (int64_t b = 0; b < merge; ++b) acc += psum[(bi * merge + a) * npw + bj * merge + b] / p2;
  double score = acc / m2;
  if (with_cost) score = score + beta * (csum / f2);
  return static_cast<float>(score);
}

OV2_HD bool block_inside(int64_t bi, int64_t bj, int64_t f, int64_t y0, int64_t x0, int64_t y1, int64_t x1) {
  const int64_t by0 = bi * f, bx0 = bj * f;
  return by0 < y1 && by0 + f > y0 && bx0 < x1 && bx0 + f > x0;
}

}  // namespace ov2::cuda

// DESIGN §5.1 on the device: per-output math of csrc/tokenize/geometry.cpp (bilinear RGB resize, area taps).
#pragma once

#include "cuda/hd.cuh"

namespace ov2::cuda {

// One output sample of tok::resize_bilinear_u8 (same double expressions, same order).
OV2_HD uint8_t bilinear_sample(const uint8_t* src, int64_t sh, int64_t sw, int64_t ch, int64_t dh, int64_t dw,
                               int64_t y, int64_t x, int64_t c) {
  const double scale_x = static_cast<double>(sw) / static_cast<double>(dw);
  double fx = (static_cast<double>(x) + 0.5) * scale_x - 0.5;
  fx = hd_min(hd_max(fx, 0.0), static_cast<double>(sw - 1));
  const int64_t x0 = static_cast<int64_t>(hd_floor(fx));
  const int64_t x1 = hd_min<int64_t>(x0 + 1, sw - 1);
  const double ax = fx - static_cast<double>(x0);
  const double scale_y = static_cast<double>(sh) / static_cast<double>(dh);
  double fy = (static_cast<double>(y) + 0.5) * scale_y - 0.5;
  fy = hd_min(hd_max(fy, 0.0), static_cast<double>(sh - 1));
  const int64_t y0 = static_cast<int64_t>(hd_floor(fy));
  const int64_t y1 = hd_min<int64_t>(y0 + 1, sh - 1);
  const double wy = fy - static_cast<double>(y0);
  const uint8_t* r0 = src + y0 * sw * ch;
  const uint8_t* r1 = src + y1 * sw * ch;
  const double p00 = r0[x0 * ch + c], p01 = r0[x1 * ch + c];
  const double p10 = r1[x0 * ch + c], p11 = r1[x1 * ch + c];
  const double top = (1.0 - ax) * p00 + ax * p01;
  const double bot = (1.0 - ax) * p10 + ax * p11;
  const double v = (1.0 - wy) * top + wy * bot;
  const double r = hd_floor(v + 0.5);
  return static_cast<uint8_t>(hd_min(255.0, hd_max(0.0, r)));
}

// Area tap of output y on source cell s (tok::area_taps): true and the weight when the cell overlaps.
OV2_HD bool area_tap(int64_t sn, int64_t dn, int64_t y, int64_t s, double* w) {
  const double lo = static_cast<double>(y) * static_cast<double>(sn) / static_cast<double>(dn);
  const double hi = static_cast<double>(y + 1) * static_cast<double>(sn) / static_cast<double>(dn);
  const double span = hi - lo;
  const int64_t s0 = hd_max<int64_t>(0, static_cast<int64_t>(hd_floor(lo)));
  const int64_t s1 = hd_min<int64_t>(sn, static_cast<int64_t>(hd_ceil(hi)));
  if (s < s0 || s >= s1) return false;
  const double a = hd_max(lo, static_cast<double>(s));
  const double b = hd_min(hi, static_cast<double>(s + 1));
  if (!(b > a)) return false;
  *w = (b - a) / span;
  return true;
}

// First source cell and one past the last source cell of output group g (outputs g·group .. (g+1)·group − 1),
// as tok::grouped_area_taps lays them out.
OV2_HD void grouped_tap_range(int64_t sn, int64_t dn, int64_t group, int64_t g, int64_t* s0, int64_t* s1) {
  const int64_t y0 = g * group, y1 = (g + 1) * group - 1;
  const double lo = static_cast<double>(y0) * static_cast<double>(sn) / static_cast<double>(dn);
  const double hi = static_cast<double>(y1 + 1) * static_cast<double>(sn) / static_cast<double>(dn);
  int64_t a = hd_max<int64_t>(0, static_cast<int64_t>(hd_floor(lo)));
  // the first cell of output y0 that overlaps it (the floor cell always does unless lo sits on its right edge)
  double w = 0.0;
  while (a < sn && !area_tap(sn, dn, y0, a, &w)) ++a;
  int64_t b = hd_min<int64_t>(sn, static_cast<int64_t>(hd_ceil(hi))) - 1;
  while (b > a && !area_tap(sn, dn, y1, b, &w)) --b;
  *s0 = a;
  *s1 = b + 1;
}

// Weight of source cell s in output group g: Σ over the group's outputs, ascending, of their taps on s.
OV2_HD double grouped_tap_weight(int64_t sn, int64_t dn, int64_t group, int64_t g, int64_t s) {
  double acc = 0.0;
  for (int64_t y = g * group; y < (g + 1) * group; ++y) {
    double w;
    if (area_tap(sn, dn, y, s, &w)) acc += w;
  }
  return acc;
}

// Grouped taps of one axis laid out densely: group g covers source cells [start[g], start[g] + count[g]) with
// weights weight[g·stride + k]. stride = max_group_span(sn, dn, group) (an upper bound).
OV2_HD int64_t max_group_span(int64_t sn, int64_t dn, int64_t group) {
  return (sn * group + dn - 1) / dn + 2;
}

}  // namespace ov2::cuda

namespace ov2::cuda {

// One output of tok::resize_area_f32: rows first (Σ over the output row's taps, ascending), then columns.
OV2_HD float area_resize_at(const float* src, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t y, int64_t x) {
  const double ylo = static_cast<double>(y) * static_cast<double>(sh) / static_cast<double>(dh);
  const double yhi = static_cast<double>(y + 1) * static_cast<double>(sh) / static_cast<double>(dh);
  const double xlo = static_cast<double>(x) * static_cast<double>(sw) / static_cast<double>(dw);
  const double xhi = static_cast<double>(x + 1) * static_cast<double>(sw) / static_cast<double>(dw);
  const int64_t ys0 = hd_max<int64_t>(0, static_cast<int64_t>(hd_floor(ylo)));
  const int64_t ys1 = hd_min<int64_t>(sh, static_cast<int64_t>(hd_ceil(yhi)));
  const int64_t xs0 = hd_max<int64_t>(0, static_cast<int64_t>(hd_floor(xlo)));
  const int64_t xs1 = hd_min<int64_t>(sw, static_cast<int64_t>(hd_ceil(xhi)));
  double acc = 0.0;
  for (int64_t sx = xs0; sx < xs1; ++sx) {
    double wx;
    if (!area_tap(sw, dw, x, sx, &wx)) continue;
    double t = 0.0;
    for (int64_t sy = ys0; sy < ys1; ++sy) {
      double wy;
      if (!area_tap(sh, dh, y, sy, &wy)) continue;
      t += wy * static_cast<double>(src[sy * sw + sx]);
    }
    acc += wx * t;
  }
  return static_cast<float>(acc);
}

}  // namespace ov2::cuda

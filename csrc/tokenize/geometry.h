// DESIGN §5.1 — canvas geometry and the two resizes (bilinear RGB, area-average float maps).
#pragma once

#include <cstdint>
#include <vector>

#include "tokenize/common.h"

namespace ov2::tok {

struct CanvasSize {
  int64_t height = 0;
  int64_t width = 0;
};

// Canvas size for a height×width frame: aspect ratio kept, each side a multiple of f = patch·merge,
// min_pixels ≤ H·W ≤ max_pixels. Steps (docs/tokenize.md):
//   s = sqrt(max/(H·W)) if H·W > max, sqrt(min/(H·W)) if H·W < min, else 1;
//   h = max(1, floor(H·s/f + 0.5))·f, w likewise;
//   while h·w > max: shrink by f the side that is relatively larger (h·W ≥ w·H → h, ties → h), never below f;
//   while h·w < min: grow by f the side that is relatively smaller (h·W ≤ w·H → h, ties → h).
// Throws Error when the bounds cannot be met (min > max, f² > max, bad sizes).
CanvasSize canvas_size(int64_t height, int64_t width, int64_t patch, int64_t merge, int64_t min_pixels,
                       int64_t max_pixels);

// Output sample o of an n_in -> n_out bilinear resize with half-pixel centres, clamped at the edges: source
// position p = clamp((o + 0.5)·(n_in / n_out) − 0.5, 0, n_in − 1), taps i0 = floor(p), i1 = min(i0 + 1, n_in − 1),
// weight of i1 = p − i0 (evaluated in this order in double, like the numpy references).
struct BilinearTap {
  int64_t i0, i1;
  double w1;
};
inline BilinearTap bilinear_tap(int64_t o, double ratio, int64_t n_in) {
  double p = (static_cast<double>(o) + 0.5) * ratio - 0.5;
  p = p < 0.0 ? 0.0 : (p > static_cast<double>(n_in - 1) ? static_cast<double>(n_in - 1) : p);
  const int64_t i0 = static_cast<int64_t>(p);  // p >= 0: truncation is floor
  return {i0, i0 + 1 < n_in ? i0 + 1 : n_in - 1, p - static_cast<double>(i0)};
}

// Bilinear resize of interleaved uint8 images [sh, sw, ch] → [dh, dw, ch], half-pixel centres
// (align_corners = false), source coordinate clamped to [0, size − 1], no antialiasing, evaluated in double:
//   v = (1 − wy)·((1 − wx)·p00 + wx·p01) + wy·((1 − wx)·p10 + wx·p11),  out = clamp(floor(v + 0.5), 0, 255).
void resize_bilinear_u8(const uint8_t* src, int64_t sh, int64_t sw, int64_t ch, uint8_t* dst, int64_t dh,
                        int64_t dw);

// Area-average resize of a float map [sh, sw] → [dh, dw]: output cell y covers the source interval
// [y·sh/dh, (y + 1)·sh/dh) (likewise x); value = overlap-weighted mean of the covered source cells, weights
// computed in double, rows first then columns. Works for up- and down-scaling. No value scaling (callers
// scale motion magnitudes themselves).
void resize_area_f32(const float* src, int64_t sh, int64_t sw, float* dst, int64_t dh, int64_t dw);

// Area-resize taps from sn source cells to dn outputs: output y takes Σ weight·src[index] over
// [begin[y], begin[y+1]) (weights = overlap / output span, source indices ascending).
struct AreaTaps {
  std::vector<int64_t> begin;  // size dn + 1
  std::vector<int64_t> index;
  std::vector<double> weight;
};
AreaTaps area_taps(int64_t sn, int64_t dn);

// The taps of `group` consecutive outputs summed per source cell: for output group g (outputs g·group ..
// (g+1)·group − 1), weight[k] = Σ over those outputs (ascending) of their tap on source index[k] (ascending,
// contiguous). Summing src with these weights equals summing the area-resized outputs of the group.
AreaTaps grouped_area_taps(int64_t sn, int64_t dn, int64_t group);

}  // namespace ov2::tok

#include "tokenize/geometry.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace ov2::tok {

CanvasSize canvas_size(int64_t height, int64_t width, int64_t patch, int64_t merge, int64_t min_pixels,
                       int64_t max_pixels) {
  require(height >= 1 && width >= 1, "canvas_size: frame size must be positive");
  require(height <= (int64_t{1} << 20) && width <= (int64_t{1} << 20), "canvas_size: frame size too large");
  require(patch >= 1 && merge >= 1 && patch * merge <= 4096, "canvas_size: patch and merge must be >= 1");
  require(min_pixels >= 0, "canvas_size: min_pixels must be >= 0");
  require(max_pixels <= (int64_t{1} << 40), "canvas_size: max_pixels too large");
  require(min_pixels <= max_pixels, "canvas_size: min_pixels > max_pixels");
  const int64_t f = patch * merge;
  require(f * f <= max_pixels, "canvas_size: max_pixels (" + std::to_string(max_pixels) +
                                   ") is below one merge block (" + std::to_string(f * f) + " pixels)");
  const double area = static_cast<double>(height) * static_cast<double>(width);
  double s = 1.0;
  if (area > static_cast<double>(max_pixels)) {
    s = std::sqrt(static_cast<double>(max_pixels) / area);
  } else if (area < static_cast<double>(min_pixels)) {
    s = std::sqrt(static_cast<double>(min_pixels) / area);
  }
  const double fd = static_cast<double>(f);
  int64_t h = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(height) * s / fd + 0.5))) * f;
  int64_t w = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(width) * s / fd + 0.5))) * f;
  while (h * w > max_pixels) {
    const bool h_larger = h * width >= w * height;
    if (h_larger && h > f) {
      h -= f;
    } else if (w > f) {
      w -= f;
    } else if (h > f) {
      h -= f;
    } else {
      break;
    }
  }
  while (h * w < min_pixels) {
    if (h * width <= w * height) {
      h += f;
    } else {
      w += f;
    }
  }
  require(h * w <= max_pixels && h * w >= min_pixels,
          "canvas_size: no canvas with sides multiple of " + std::to_string(f) + " fits [min_pixels, max_pixels]");
  require(h <= 32767 && w <= 32767, "canvas_size: canvas side exceeds 32767");
  return {h, w};
}

void resize_bilinear_u8(const uint8_t* src, int64_t sh, int64_t sw, int64_t ch, uint8_t* dst, int64_t dh,
                        int64_t dw) {
  require(sh >= 1 && sw >= 1 && ch >= 1 && dh >= 1 && dw >= 1, "resize_bilinear: sizes must be positive");
  std::vector<int64_t> x0(dw), x1(dw);
  std::vector<double> wx(dw);
  const double scale_x = static_cast<double>(sw) / static_cast<double>(dw);
  for (int64_t x = 0; x < dw; ++x) {
    const BilinearTap t = bilinear_tap(x, scale_x, sw);
    x0[x] = t.i0;
    x1[x] = t.i1;
    wx[x] = t.w1;
  }
  const double scale_y = static_cast<double>(sh) / static_cast<double>(dh);
  for (int64_t y = 0; y < dh; ++y) {
    const BilinearTap ty = bilinear_tap(y, scale_y, sh);
    const int64_t y0 = ty.i0, y1 = ty.i1;
    const double wy = ty.w1;
    const uint8_t* r0 = src + y0 * sw * ch;
    const uint8_t* r1 = src + y1 * sw * ch;
    uint8_t* out = dst + y * dw * ch;
    for (int64_t x = 0; x < dw; ++x) {
      const double ax = wx[x];
      for (int64_t c = 0; c < ch; ++c) {
        const double p00 = r0[x0[x] * ch + c], p01 = r0[x1[x] * ch + c];
        const double p10 = r1[x0[x] * ch + c], p11 = r1[x1[x] * ch + c];
        const double top = (1.0 - ax) * p00 + ax * p01;
        const double bot = (1.0 - ax) * p10 + ax * p11;
        const double v = (1.0 - wy) * top + wy * bot;
        const double r = std::floor(v + 0.5);
        out[x * ch + c] = static_cast<uint8_t>(std::min(255.0, std::max(0.0, r)));
      }
    }
  }
}

// Sparse area weights: for each output index, a list of (source index, weight), weights summing to 1.
AreaTaps area_taps(int64_t sn, int64_t dn) {
  AreaTaps t;
  t.begin.reserve(dn + 1);
  t.begin.push_back(0);
  for (int64_t y = 0; y < dn; ++y) {
    const double lo = static_cast<double>(y) * static_cast<double>(sn) / static_cast<double>(dn);
    const double hi = static_cast<double>(y + 1) * static_cast<double>(sn) / static_cast<double>(dn);
    const double span = hi - lo;
    int64_t s0 = static_cast<int64_t>(std::floor(lo));
    int64_t s1 = static_cast<int64_t>(std::ceil(hi));
    s0 = std::max<int64_t>(0, s0);
    s1 = std::min<int64_t>(sn, s1);
    for (int64_t s = s0; s < s1; ++s) {
      const double a = std::max(lo, static_cast<double>(s));
      const double b = std::min(hi, static_cast<double>(s + 1));
      if (b > a) {
        t.index.push_back(s);
        t.weight.push_back((b - a) / span);
      }
    }
    t.begin.push_back(static_cast<int64_t>(t.index.size()));
  }
  return t;
}

AreaTaps grouped_area_taps(int64_t sn, int64_t dn, int64_t group) {
  require(group >= 1 && dn % group == 0, "grouped_area_taps: outputs must be a multiple of the group");
  const AreaTaps t = area_taps(sn, dn);
  AreaTaps g;
  g.begin.push_back(0);
  std::vector<double> acc;
  for (int64_t k = 0; k < dn / group; ++k) {
    const int64_t y0 = k * group, y1 = (k + 1) * group;
    const int64_t s0 = t.index[static_cast<size_t>(t.begin[y0])];
    const int64_t s1 = t.index[static_cast<size_t>(t.begin[y1] - 1)] + 1;
    acc.assign(static_cast<size_t>(s1 - s0), 0.0);
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t j = t.begin[y]; j < t.begin[y + 1]; ++j) acc[static_cast<size_t>(t.index[j] - s0)] += t.weight[j];
    for (int64_t sidx = s0; sidx < s1; ++sidx) {
      g.index.push_back(sidx);
      g.weight.push_back(acc[static_cast<size_t>(sidx - s0)]);
    }
    g.begin.push_back(static_cast<int64_t>(g.index.size()));
  }
  return g;
}

void resize_area_f32(const float* src, int64_t sh, int64_t sw, float* dst, int64_t dh, int64_t dw) {
  require(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1, "resize_area: sizes must be positive");
  const AreaTaps ty = area_taps(sh, dh);
  const AreaTaps tx = area_taps(sw, dw);
  // rows first: tmp[dh, sw] (a per-thread buffer: this runs once per candidate frame)
  thread_local std::vector<double> tmp;
  tmp.resize(static_cast<size_t>(dh * sw));
  for (int64_t y = 0; y < dh; ++y) {
    double* row = tmp.data() + y * sw;
    std::fill(row, row + sw, 0.0);
    for (int64_t k = ty.begin[y]; k < ty.begin[y + 1]; ++k) {
      const float* s = src + ty.index[k] * sw;
      const double wgt = ty.weight[k];
      for (int64_t x = 0; x < sw; ++x) row[x] += wgt * static_cast<double>(s[x]);
    }
  }
  for (int64_t y = 0; y < dh; ++y) {
    const double* row = tmp.data() + y * sw;
    float* out = dst + y * dw;
    for (int64_t x = 0; x < dw; ++x) {
      double acc = 0.0;
      for (int64_t k = tx.begin[x]; k < tx.begin[x + 1]; ++k) acc += tx.weight[k] * row[tx.index[k]];
      out[x] = static_cast<float>(acc);
    }
  }
}

}  // namespace ov2::tok

#include "tokenize/cope_warp.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ov2::tok {
namespace {

// Row y of the warp, handed pixel by pixel to `emit(x, channel values)`. Coordinates are clamped to [0, w − 1]
// before the floor, and every interpolated value lies in [0, 255] + 0.5, so floor is a truncation towards zero
// (no floor calls in the loop; the same integers).
template <int C, class Emit>
void warp_row(const uint8_t* ref, int64_t h, int64_t w, int64_t c_rt, const float* frow, const int64_t* cell_x,
              int64_t y, Emit emit) {
  const int64_t c = C ? C : c_rt;
  const float xmax = static_cast<float>(w - 1), ymax = static_cast<float>(h - 1);
  uint8_t px[16];
  for (int64_t x = 0; x < w; ++x) {
    const float* v = frow + cell_x[x] * 2;
    const float dx = std::isnan(v[0]) ? 0.0f : v[0], dy = std::isnan(v[1]) ? 0.0f : v[1];  // ±inf clamp
    const float sx = std::min(std::max(static_cast<float>(x) + dx, 0.0f), xmax);
    const float sy = std::min(std::max(static_cast<float>(y) + dy, 0.0f), ymax);
    const int64_t x0 = static_cast<int64_t>(sx), y0 = static_cast<int64_t>(sy);  // sx, sy >= 0: floor
    const int64_t x1 = std::min(x0 + 1, w - 1), y1 = std::min(y0 + 1, h - 1);
    const double wx = static_cast<double>(sx) - static_cast<double>(x0);
    const double wy = static_cast<double>(sy) - static_cast<double>(y0);
    const uint8_t* a = ref + (y0 * w + x0) * c;
    const uint8_t* b = ref + (y0 * w + x1) * c;
    const uint8_t* d = ref + (y1 * w + x0) * c;
    const uint8_t* e = ref + (y1 * w + x1) * c;
    for (int64_t k = 0; k < c; ++k) {
      const double top = static_cast<double>(a[k]) * (1.0 - wx) + static_cast<double>(b[k]) * wx;
      const double bot = static_cast<double>(d[k]) * (1.0 - wx) + static_cast<double>(e[k]) * wx;
      const int64_t q = static_cast<int64_t>(top * (1.0 - wy) + bot * wy + 0.5);  // >= 0.5: floor
      px[k] = static_cast<uint8_t>(std::min<int64_t>(q, 255));
    }
    emit(x, px);
  }
}

template <class Emit>
void warp(const uint8_t* ref, int64_t h, int64_t w, int64_t c, const float* field, int64_t fh, int64_t fw,
          Emit emit_row) {
  require(h >= 1 && w >= 1 && c >= 1 && c <= 16, "cope_warp: the reference must be non-empty, 1..16 channels");
  require(fh >= 1 && fw >= 1, "cope_warp: the motion field must be non-empty");
  require(h <= (int64_t{1} << 24) && w <= (int64_t{1} << 24), "cope_warp: frame too large for float32 coordinates");
  std::vector<int64_t> cell_x(static_cast<size_t>(w));
  for (int64_t x = 0; x < w; ++x) cell_x[static_cast<size_t>(x)] = std::min(x / 4, fw - 1);
  for (int64_t y = 0; y < h; ++y) {
    const float* frow = field + std::min(y / 4, fh - 1) * fw * 2;
    auto emit = emit_row(y);
    if (c == 3) warp_row<3>(ref, h, w, c, frow, cell_x.data(), y, emit);
    else warp_row<0>(ref, h, w, c, frow, cell_x.data(), y, emit);
  }
}

}  // namespace

void cope_warp(const uint8_t* ref, int64_t h, int64_t w, int64_t c, const float* field, int64_t fh, int64_t fw,
               uint8_t* out) {
  warp(ref, h, w, c, field, fh, fw, [&](int64_t y) {
    uint8_t* o = out + y * w * c;
    return [o, c](int64_t x, const uint8_t* px) {
      for (int64_t k = 0; k < c; ++k) o[x * c + k] = px[k];
    };
  });
}

void cope_residual(const uint8_t* cur, const uint8_t* ref, int64_t h, int64_t w, int64_t c, const float* field,
                   int64_t fh, int64_t fw, int16_t* out) {
  warp(ref, h, w, c, field, fh, fw, [&](int64_t y) {
    const uint8_t* s = cur + y * w * c;
    int16_t* o = out + y * w * c;
    return [s, o, c](int64_t x, const uint8_t* px) {
      for (int64_t k = 0; k < c; ++k) o[x * c + k] = static_cast<int16_t>(s[x * c + k] - px[k]);
    };
  });
}

}  // namespace ov2::tok

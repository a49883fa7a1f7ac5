// DESIGN §5.4 on the device: the per-cell / per-pixel math of csrc/tokenize/saliency.cpp. The order statistics
// (medians, 95th percentiles) are exact k-th smallest values found with integer histograms over ordered keys
// (cuda/saliency.cu), so they equal the CPU's quickselect / histogram results bit for bit.
#pragma once

#include "cuda/hd.cuh"

namespace ov2::cuda {

// Vector of a 4×4 cell (tok::saliency_terms): L0 where bit 0, else L1 where bit 1; false when the cell has none
// or a non-finite component. `flags` null → every cell has L0.
OV2_HD bool cell_vector(const float* mv_field, const uint8_t* mv_flags, int64_t cell, double* vx, double* vy) {
  const uint8_t fl = mv_flags ? mv_flags[cell] : uint8_t{1};
  const float* v = mv_field + cell * 4;
  if (!hd_isfinite_f(v[0]) || !hd_isfinite_f(v[1]) || !hd_isfinite_f(v[2]) || !hd_isfinite_f(v[3])) return false;
  if (fl & 1u) {
    *vx = v[0];
    *vy = v[1];
  } else if (fl & 2u) {
    *vx = v[2];
    *vy = v[3];
  } else {
    return false;
  }
  return true;
}

// Pixels of cell (a, b) of a height×width frame (edge cells are partial).
OV2_HD int64_t cell_pixels(int64_t a, int64_t b, int64_t height, int64_t width) {
  return hd_min<int64_t>(4, height - 4 * a) * hd_min<int64_t>(4, width - 4 * b);
}

OV2_HD double motion_magnitude(double vx, double vy, double mx, double my) {
  const double dx = vx - mx, dy = vy - my;
  return hd_sqrt(dx * dx + dy * dy);
}

// numpy median from the two middle order statistics (total pixels n; kth(n/2) and, for even n, kth(n/2 − 1)).
OV2_HD double median_from(double upper, double lower, int64_t n) { return (n % 2 == 1) ? upper : (lower + upper) / 2.0; }

// Percentile q (linear interpolation) of n values: the two order statistics it needs and how to combine them.
OV2_HD void percentile_ranks(int64_t n, double q, int64_t* lo, int64_t* hi, double* frac) {
  const double pos = (q / 100.0) * static_cast<double>(n - 1);
  int64_t l = static_cast<int64_t>(hd_floor(pos));
  l = hd_min(hd_max<int64_t>(l, 0), n - 1);
  *lo = l;
  *hi = hd_min(l + 1, n - 1);
  *frac = pos - static_cast<double>(l);
}
OV2_HD double percentile_combine(double a, double b, double frac) { return a + (b - a) * frac; }

// M̄ of a valid cell and R̄ of a residual magnitude (den: the clamped percentiles).
OV2_HD double mbar_of(double mag, double den_m) { return hd_min(1.0, mag / den_m); }
OV2_HD double rbar_of(int32_t abs_r, double den_r) { return hd_min(1.0, static_cast<double>(abs_r) / den_r); }

// S at one pixel from its terms (a missing term counts 0): (M̄ + R̄)/2 in double, rounded once to float.
OV2_HD double saliency_value(const double* mbar, int64_t cells_w, const int16_t* residual, double den_r, int64_t width,
                             int64_t y, int64_t x) {
  const double m = mbar ? mbar[(y / 4) * cells_w + x / 4] : 0.0;
  double r = 0.0;
  if (residual) {
    const int32_t v = residual[y * width + x];
    r = rbar_of(v < 0 ? -v : v, den_r);
  }
  return (m + r) / 2.0;
}

// Radix select (cuda/saliency.cu block_select): the k-th smallest weighted key is found digit by digit from the
// top; per pass an integer histogram (256 bins) of the keys that match the prefix found so far.
OV2_HD bool radix_match(uint64_t key, uint64_t prefix, int shift) {
  const uint64_t high = (shift + 8 >= 64) ? 0 : (~uint64_t{0} << (shift + 8));
  return (key & high) == (prefix & high);
}
OV2_HD unsigned radix_digit(uint64_t key, int shift) { return static_cast<unsigned>((key >> shift) & 255u); }
// Picks the digit holding rank *k in hist, makes *k relative to it and appends the digit to *prefix.
OV2_HD void radix_choose(const unsigned long long* hist, uint64_t* k, uint64_t* prefix, int shift) {
  uint64_t cum = 0;
  unsigned digit = 255;
  for (unsigned d = 0; d < 256; ++d) {
    if (*k < cum + hist[d]) {
      digit = d;
      break;
    }
    cum += hist[d];
  }
  *k -= cum;
  *prefix |= static_cast<uint64_t>(digit) << shift;
}

}  // namespace ov2::cuda

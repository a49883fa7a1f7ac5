// DESIGN §5.7 on the device: where each canvas pixel comes from (csrc/tokenize/packing.cpp pack_canvases).
#pragma once

#include "cuda/hd.cuh"

namespace ov2::cuda {

// Source of canvas s's pixel (y, x): returns the candidate position and sets (sy, sx), or −1 for a zero pixel.
// kind 0 (I): the anchor frame, same place. kind 1 (P): selected block n = (y/f)·nbw + x/f of the canvas, if
// n < count, from its (t, i, j). blocks of canvas s start at `first` (block_* arrays).
OV2_HD int32_t canvas_source(int8_t kind, int32_t anchor, int64_t first, int64_t count, const int32_t* block_t,
                             const int32_t* block_i, const int32_t* block_j, int64_t f, int64_t nbw, int64_t y,
                             int64_t x, int64_t* sy, int64_t* sx) {
  if (kind == 0) {
    *sy = y;
    *sx = x;
    return anchor;
  }
  const int64_t n = (y / f) * nbw + x / f;
  if (n >= count) return -1;
  *sy = static_cast<int64_t>(block_i[first + n]) * f + y % f;
  *sx = static_cast<int64_t>(block_j[first + n]) * f + x % f;
  return block_t[first + n];
}

// BT.601 / BT.709 YUV → RGB, 8-bit, limited or full range, fixed point (Q16) with rounding: the same integer
// expressions as the CPU's `ov2::YuvToRgb` (csrc/codec/rgb.h), compared on every 8-bit triple by tests/gpu.
OV2_HD void yuv_to_rgb(int32_t Y, int32_t U, int32_t V, int matrix, bool full, uint8_t* rgb) {
  // Q16 coefficients (Cr→R, Cb→G, Cr→G, Cb→B); limited range folds the 255/224 chroma and 255/219 luma scales in
  const bool m709 = matrix == 709;
  const int32_t c0 = m709 ? (full ? 103206 : 117489) : (full ? 91881 : 104597);
  const int32_t c1 = m709 ? (full ? 12276 : 13975) : (full ? 22553 : 25675);
  const int32_t c2 = m709 ? (full ? 30679 : 34925) : (full ? 46802 : 53279);
  const int32_t c3 = m709 ? (full ? 121609 : 138438) : (full ? 116130 : 132201);
  const int32_t y = full ? Y * 65536 : (Y - 16) * 76309, u = U - 128, v = V - 128;
  const int32_t r = (y + c0 * v + 32768) >> 16;
  const int32_t g = (y - c1 * u - c2 * v + 32768) >> 16;
  const int32_t b = (y + c3 * u + 32768) >> 16;
  rgb[0] = static_cast<uint8_t>(hd_clamp(r, 0, 255));
  rgb[1] = static_cast<uint8_t>(hd_clamp(g, 0, 255));
  rgb[2] = static_cast<uint8_t>(hd_clamp(b, 0, 255));
}

}  // namespace ov2::cuda

// DESIGN §5.7 on the GPU (packing.cu, math in packing_math.cuh): canvas gather straight into the output tensor,
// and the YUV → RGB conversion of decoded pictures.
#pragma once

#include "cuda/common.h"

namespace ov2::cuda {

// The canvas list of an allocation, device arrays (tok::CanvasPlan layout): kind [S] int8 (0 I, 1 P),
// frame [S] int32 (I: anchor candidate position), offset [S + 1] int64 into block_t/i/j.
struct DevicePlan {
  int64_t num_canvases = 0;
  const int8_t* kind = nullptr;
  const int32_t* frame = nullptr;
  const int64_t* offset = nullptr;
  const int32_t* block_t = nullptr;
  const int32_t* block_i = nullptr;
  const int32_t* block_j = nullptr;
};

// tok::pack_canvases: frames_hwc [n_cand, hc, wc, 3] uint8 at canvas geometry → out [S, 3, hc, wc] (every byte
// written: short P-canvases are zero). Bit-identical. Indices are not re-validated here (the plan comes from
// allocate()); a bad index reads zero instead of out of bounds.
Status gather_canvases(const DevicePlan& plan, const uint8_t* frames_hwc, int64_t n_cand, int64_t hc, int64_t wc,
                       int64_t patch, int64_t merge, uint8_t* out, Stream stream);

// Planar YUV 4:2:0 (8-bit) → RGB24 [height, width, 3], BT.601 or BT.709 (matrix = 601 / 709), limited or full range,
// Q16 fixed point (packing_math.cuh). Chroma is taken at (y/2, x/2) (no chroma interpolation).
Status yuv420_to_rgb(const uint8_t* y, int64_t y_stride, const uint8_t* u, const uint8_t* v, int64_t uv_stride,
                     int64_t height, int64_t width, int matrix, bool full_range, uint8_t* rgb, Stream stream);

}  // namespace ov2::cuda

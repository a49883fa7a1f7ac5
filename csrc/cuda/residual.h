// DESIGN §4.3 on the GPU (residual.cu, math in residual_math.cuh; mirrors csrc/codec/residual and the
// densification of csrc/codec/motion): exported motion-vector rows → per-4×4-cell field and flags, and the
// motion-compensated prediction residual from the decoded luma. Integer arithmetic: bit-identical to the CPU.
#pragma once

#include "cuda/common.h"

namespace ov2::cuda {

// rows [n, 10] int32 (FFmpeg AVMotionVector order without flags) of a width×height frame →
// mv_field [ceil(H/4), ceil(W/4), 4] float32 (L0 dx, dy, L1 dx, dy; 0 where a list has no vector),
// mv_flags [cells] uint8 (bit 0 L0, bit 1 L1), intra_mask [cells] uint8 (nullable). Last row wins, as on the CPU.
Status densify_motion(const int32_t* rows, int64_t n, int width, int height, float* mv_field, uint8_t* mv_flags,
                      uint8_t* intra_mask, Stream stream);

// A device luma plane (data null = absent).
struct DeviceLuma {
  const uint8_t* data = nullptr;
  int width = 0, height = 0;
  int64_t stride = 0;
};

// residual [height, width] int16 of `cur` (visible size) against ref0 / ref1 (nullable: data null) from the rows
// and their densified flags (densify_motion). h264: the H.264 quarter-pel filter for rows with motion_scale 4,
// else bilinear at 1/scale.
Status compute_residual(const DeviceLuma& cur, const DeviceLuma& ref0, const DeviceLuma& ref1, const int32_t* rows,
                        int64_t n, const uint8_t* mv_flags, bool h264, int16_t* residual, Stream stream);

}  // namespace ov2::cuda

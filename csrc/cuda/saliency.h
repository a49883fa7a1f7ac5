// DESIGN §5.4 on the GPU (saliency.cu, math in saliency_math.cuh): median-compensated motion magnitude and
// |residual|, each normalised by its exact 95th percentile (integer-histogram radix select over order-preserving
// keys: deterministic, no float atomics), for n frames of one size per launch (one thread block per frame).
#pragma once

#include "cuda/common.h"

namespace ov2::cuda {

// Inputs for n frames of height×width (device pointers, C-contiguous, per-frame strides implied):
//   mv_field [n, h4, w4, 4] float32 or null, mv_flags [n, h4, w4] uint8 or null (every cell L0),
//   residual [n, height, width] int16 or null, is_intra [n] uint8 or null (none intra).
struct SaliencyInput {
  int64_t n = 0, height = 0, width = 0, h4 = 0, w4 = 0;
  const float* mv_field = nullptr;
  const uint8_t* mv_flags = nullptr;
  const int16_t* residual = nullptr;
  const uint8_t* is_intra = nullptr;
};

// The two terms (tok::saliency_terms): mbar [n, ceil(H/4)·ceil(W/4)] float64 (M̄ per cell), has_motion [n] uint8
// (0: no motion term, M̄ counts 0), den_r [n] float64 (R̄ = min(1, |r| / den_r)).
Status saliency_terms(const SaliencyInput& in, double* mbar, uint8_t* has_motion, double* den_r, Stream stream);

// S maps [n, height, width] float32 (tok::saliency per frame, bit-identical).
Status saliency(const SaliencyInput& in, float* out_s, Stream stream);

}  // namespace ov2::cuda

// DESIGN §5.6 on the GPU (allocation.cu, math in allocation_math.cuh): per-frame sort and attenuation, the
// allocation curve and the stratified block selection, one thread block per frame / per group.
#pragma once

#include <vector>

#include "cuda/common.h"
#include "tokenize/allocation.h"

namespace ov2::cuda {

struct AllocParams {
  int64_t max_canvases = 32;
  double lambda = 0.35;
  double alpha_peak = 0.35;
  int anchor = 0;     // 0 first candidate, 1 centre
  int rank_mode = 0;  // 0 rank, 1 rank / n_valid
  double t0 = 0.0;
  double delta = 0.5;
};

// The CPU's record of an allocation (csrc/tokenize/allocation.h); host vectors.
using AllocOutput = tok::AllocResult;

// Per-frame step (one block per frame): at [n, nb] float64 = Ã (valid blocks), order [n, nb] int32 = valid block
// indices by A descending (ties smaller index), valid [n] int64, weight [n] float64 = w_t. Device pointers.
Status frame_attenuation(const float* scores, int64_t n, int64_t nb, double lambda, double alpha_peak, int rank_mode,
                         double* at, int32_t* order, int64_t* valid, double* weight, Stream stream);

// tok::allocate with the block scores on the device (scores [n_cand, nbh, nbw] float32); the partition and the
// candidate times are host arrays. Synchronises `stream`; fills *out (host).
Status allocate(const int64_t* group_start, const int64_t* group_end, const double* group_cost, int64_t num_groups,
                const double* cand_t, int64_t n_cand, const float* scores, int64_t nbh, int64_t nbw,
                const AllocParams& params, AllocOutput* out, Stream stream);

}  // namespace ov2::cuda

// DESIGN §5.5 on the GPU (block_score.cu, math in block_score_math.cuh): patch and m×m block scores with the
// coding-cost prior, for n frames per launch.
#pragma once

#include "cuda/common.h"
#include "cuda/saliency.h"

namespace ov2::cuda {

struct Rect {  // content rectangle in canvas pixels; y1/x1 < 0 → canvas height/width (tok::ValidRect)
  int64_t y0 = 0, x0 = 0, y1 = -1, x1 = -1;
};

// tok::score_frame for n frames of one size: saliency terms from `in` (mv_field/mv_flags/residual/is_intra),
// area-resized to the hc×wc canvas and summed per patch straight from the source pixels; coding cost
// [n, ch, cw] float32 or null; beta_by_frame [n] float64 (device) or null (every frame `beta`).
// out [n, hc/(m·p), wc/(m·p)] float32; padding blocks −∞; intra frames 0.
Status score_frames(const SaliencyInput& in, const float* cost, int64_t ch, int64_t cw, int64_t hc, int64_t wc,
                    int64_t patch, int64_t merge, double beta, const double* beta_by_frame, const Rect& rect, float* out,
                    Stream stream);

// tok::block_score for n canvas-resolution maps: s [n, hc, wc] float32, cost [n, hc, wc] or null.
Status block_score(const float* s, const float* cost, int64_t n, int64_t hc, int64_t wc, int64_t patch, int64_t merge,
                   double beta, const Rect& rect, float* out, Stream stream);

}  // namespace ov2::cuda

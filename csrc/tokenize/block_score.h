// DESIGN §5.5 — m×m block scores with the coding-cost prior, at canvas geometry.
#pragma once

#include <cstdint>

#include "tokenize/common.h"

namespace ov2::tok {

struct ValidRect {  // content rectangle in canvas pixels, [y0, y1) × [x0, x1); the rest is padding
  int64_t y0 = 0, x0 = 0, y1 = -1, x1 = -1;  // y1/x1 < 0 → canvas height/width
};

// s: saliency at canvas resolution [hc, wc] float32 (zero on padding); cost: coding-cost proxy at canvas
// resolution [hc, wc] float32 or null (no prior). hc, wc multiples of patch·merge.
// Patch mean P(h, w) = (Σ_{p×p} s, in row-major order, in double) / p²;
// A(i, j) = (Σ_{α,β<m} P(m·i + α, m·j + β), α-major) / m² + beta · (Σ_{block pixels} cost, row-major) / (m·p)².
// A block with no pixel inside `valid` is padding: A = −∞. Output [hc/(m·p), wc/(m·p)] float32.
void block_score(const float* s, const float* cost, int64_t hc, int64_t wc, int64_t patch, int64_t merge, double beta,
                 const ValidRect& valid, float* out_a);

// One frame's block scores from its codec products (saliency → area resize to the canvas → block score, the
// coding cost [ch, cw] area-resized too). I-frames are anchors, not evidence: every block scores 0 (padding −inf).
// mv_field/mv_flags/residual/cost may be null. Writes [hc/(m·p), wc/(m·p)] into `out`.
void score_frame(int64_t hc, int64_t wc, int64_t height, int64_t width, const float* mv_field, const uint8_t* mv_flags,
                 int64_t h4, int64_t w4, const int16_t* residual, const float* cost, int64_t ch, int64_t cw,
                 bool is_intra, int64_t patch, int64_t merge, double beta, const ValidRect& rect, float* out);

}  // namespace ov2::tok

// DESIGN §5.8 — OneVision-Encoder codec patchification (`ovenc_topk`): the released fused saliency of one frame,
// letterboxed into the S×S square and summed per p×p patch. The numpy reference is `fused_saliency` +
// `PatchSummer` in src/ov2_tokenizer/ovenc_topk.py (float32 maps, as the released preprocessing); this file
// evaluates the same expressions in double, so the two agree to float32 rounding (tested: relative 1e-5), and
// runs on the reader's product threads as a post hook instead of in Python.
#pragma once

#include <cstdint>

#include "tokenize/common.h"

namespace ov2::tok {

// The released `_preprocess_bgr_to_square` placement of an H×W frame: scale = size / max(H, W),
// hn = max(1, round(H·scale)), wn = max(1, round(W·scale)) (round half to even, Python's `round`),
// top = (size − hn) / 2, left = (size − wn) / 2 (integer division).
struct Letterbox {
  int64_t size = 0, hn = 0, wn = 0, top = 0, left = 0;
};
Letterbox letterbox_geometry(int64_t height, int64_t width, int64_t size);

// Patch scores, double [g·g] raster (g = size / patch), of the fused map
//   fused = (upsample4(M̄)[:H, :W] + R̄) / 2, resized bilinearly (half-pixel centres, clamped taps) into the
//   letterbox, zero padding, summed per p×p patch;
// with, per 4×4 cell of the mv_field grid [h4, w4] (all cells of the grid):
//   v = L0 where flag bit 0, else L1 where bit 1, else (0, 0) (mv_flags null: L0 everywhere);
//   v −= (median v.x, median v.y) over the cells; M = |v|; M̄ = min(1, M / max(P95(M), 1e-6));
// and per pixel R̄ = min(1, |r| / max(P95(|r|), 1)) (P = `percentile`, numpy's linear method).
// mv_field null → no motion term; residual null → no residual term; is_intra_frame → all scores 0.
// Requires h4 ≥ ceil(H/4), w4 ≥ ceil(W/4) when mv_field is given; size ≥ patch ≥ 1.
void ovenc_patch_scores(int64_t height, int64_t width, const float* mv_field, const uint8_t* mv_flags, int64_t h4,
                        int64_t w4, const int16_t* residual, bool is_intra_frame, int64_t size, int64_t patch,
                        double percentile, double* out);

}  // namespace ov2::tok

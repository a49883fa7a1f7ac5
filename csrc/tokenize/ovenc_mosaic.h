// DESIGN §5.8 — OneVision-Encoder codec patchification (`ovenc_topk`): the mosaics. Row n = (t, h, w) of the
// selection is the p×p patch at cell (h, w) of slot t's letterboxed S×S square; it goes to mosaic n / g², cell
// n % g² in raster order (g = S / p). The squares are never built: patches are cut from each slot's content
// (the frame resized to hn × wn), the letterbox padding reads as zero. Reference: `build_mosaics` +
// `letterbox_rgb` in src/ov2_tokenizer/ovenc_topk.py (bit-identical; tested).
#pragma once

#include <cstdint>

#include "tokenize/common.h"
#include "tokenize/ovenc_saliency.h"

namespace ov2::tok {

// content[k]: uint8 [lb.hn, lb.wn, 3] RGB of frame k; slot_frame[t]: which content slot t shows (0 ≤ < n_content);
// rows: int32 [n_rows, 3] (t, h, w) with 0 ≤ t < n_slots, 0 ≤ h, w < g. out: uint8 [ceil(n_rows / g²), 3, S, S]
// (channel planes), written whole (unfilled cells zero). Up to `num_threads` threads write disjoint mosaics
// (the same bytes for any count).
void ovenc_mosaics(const uint8_t* const* content, int64_t n_content, const int64_t* slot_frame, int64_t n_slots,
                   const Letterbox& lb, int64_t patch, const int32_t* rows, int64_t n_rows, uint8_t* out,
                   int num_threads = 1);

}  // namespace ov2::tok

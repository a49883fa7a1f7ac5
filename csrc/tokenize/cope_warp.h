// DESIGN §5.8 — the `cope` mode's warp (CoPE-VideoLM's Δ-residual): the reference frame sampled at
// (y + dy, x + dx), (dx, dy) the accumulated motion of the 4×4 cell holding (y, x). Reference: `cope_warp` in
// tests/reference/tokenize_ref.py (bit-identical; tested), formerly the numpy body of
// `ov2_tokenizer.cope.warp_bilinear`.
//
// Arithmetic, per output pixel (exactly numpy's promotions of that expression):
//   sx = clip(float32(x) + dx, 0, w − 1) in float32 (sy likewise), x0 = floor(sx), x1 = min(x0 + 1, w − 1),
//   wx = double(sx) − x0 (exact), channel value
//   top = r[y0][x0]·(1 − wx) + r[y0][x1]·wx, bot = r[y1][x0]·(1 − wx) + r[y1][x1]·wx (double),
//   out = uint8(clip(floor(top·(1 − wy) + bot·wy + 0.5), 0, 255)).
// The cell of (y, x) is (min(y / 4, fh − 1), min(x / 4, fw − 1)); a NaN vector component counts as 0
// (±inf clamps to the border, as in numpy).
#pragma once

#include <cstdint>

#include "tokenize/common.h"

namespace ov2::tok {

// ref: uint8 [h, w, c] (1 ≤ c ≤ 16); field: float32 [fh, fw, 2] (dx, dy in pixels); out: uint8 [h, w, c].
void cope_warp(const uint8_t* ref, int64_t h, int64_t w, int64_t c, const float* field, int64_t fh, int64_t fw,
               uint8_t* out);

// The Δ-residual: out = int16(cur) − cope_warp(ref, field), cur and ref uint8 [h, w, c], out int16 [h, w, c].
void cope_residual(const uint8_t* cur, const uint8_t* ref, int64_t h, int64_t w, int64_t c, const float* field,
                   int64_t fh, int64_t fw, int16_t* out);

}  // namespace ov2::tok

// Motion-compensated prediction residual (DESIGN §4.3).
//
// Stock libavcodec does not export the coded residual. ov2 rebuilds the inter prediction from the decoded
// reference picture(s) and the exported vectors, with the codec's own luma interpolation, and reports
// residual = decoded luma - prediction. For H.264 streams with one reference, no weighted prediction and
// partitions of 8x8 or larger this equals the coded residual up to the loop filter. Cells without a vector in
// a P/B frame are intra-coded: their residual is taken against the co-located pixels of the previous
// reference picture. See docs/residual.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "codec/motion.h"

namespace ov2 {

enum class Interp {
  H264Qpel,  // H.264 six-tap half-pel filter, quarter-pel as the rounded average of the two nearest samples
  Bilinear,  // MPEG-1/2/4 part 2 style bilinear at 1/scale pixel (rounding control 0)
};

// A luma plane. width/height bound the samples that exist (the coded size for references); reads outside are
// clamped to the edge, as the codecs' edge emulation does.
struct Plane {
  const uint8_t* data = nullptr;
  int width = 0, height = 0;
  ptrdiff_t stride = 0;
};

// Predicts the w x h block at (x0, y0) of the current picture from `ref` displaced by (mx, my) / scale pixels.
void predict_block(const Plane& ref, Interp interp, int x0, int y0, int w, int h, int mx, int my, int scale,
                   uint8_t* out, ptrdiff_t out_stride);

// Reusable prediction planes (one per list).
struct ResidualScratch {
  std::vector<uint8_t> pred[2];
  std::vector<uint8_t> covered;  // per 4x4 cell: wholly predicted by a row (single-list frames)
  std::vector<uint8_t> rule;     // per 4x4 cell of a row of cells: which prediction (two-list frames)
  std::vector<std::pair<int, int>> runs;  // runs of cells with the same rule in that row
};

// Residual of one inter frame: `cur` is the visible decoded luma (W x H), ref0/ref1 the L0/L1 reference
// pictures (nullable), `rows` the n exported vectors (N x 10) and `field` their densification (cell masks).
// Writes every one of the W x H int16 of `residual` (uninitialised memory is fine).
void compute_residual(const Plane& cur, const Plane* ref0, const Plane* ref1, const int32_t* rows, int64_t n,
                      const MotionField& field, Interp interp, ResidualScratch& scratch, int16_t* residual);

}  // namespace ov2

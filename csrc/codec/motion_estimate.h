// Block-matching motion estimation on decoded luma, for codecs whose decoder exports no vectors
// (HEVC, VP9, AV1, ...; DESIGN §4.5). See docs/residual.md, "Estimated motion (HEVC, VP9, AV1)".
//
// One vector per 16x16 block of the current picture, pointing into the reference picture (the previous picture
// in presentation order), found in three stages:
//   1. Coarse, at half resolution (both pictures 2x2-averaged, so a block is 8x8): SAD + lambda * |v - median|
//      over the candidate predictors zero and the left / top / top-right neighbours' vectors of this picture
//      (raster order), then a large-diamond search (8 points at distance 2; only when the best candidate's mean
//      absolute difference is 4 or more) and a small-diamond search (4 points at distance 1) around the best, each
//      iterated while its centre moves. A block whose best candidate matches to a mean absolute difference below 1
//      skips the diamonds.
//   2. Full resolution, integer pel: SAD of the 16x16 block at twice the coarse vector and at the left / top
//      neighbours' final vectors, then an iterated small diamond (skipped, with step 3, when the best SAD is
//      already below 1 per sample).
//   3. Half pel: bilinear (the prediction of residual.h's Interp::Bilinear at motion_scale 4) at the horizontal,
//      vertical and diagonal half-pel positions on the side of the lower integer neighbours; kept when strictly
//      better.
// A block whose best inter SAD exceeds its deviation from its own mean (a crude intra cost) by more than a margin
// gets no vector, as an encoder would code it intra; it is then flagged intra by densify_motion.
//
// Vectors are bounded to +-64 pixels. Pictures are edge-extended (as the codecs' edge emulation does) so partial
// blocks at the right / bottom border and vectors pointing outside the picture are well defined. Everything is
// integer arithmetic: results depend only on the two pictures, never on threads, tags or call history.
#pragma once
#include <cstdint>
#include <vector>

#include "codec/residual.h"

namespace ov2 {

class MotionEstimator {
 public:
  static constexpr int kBlock = 16;      // block size of the rows (full resolution)
  static constexpr int kRange = 64;      // max |vector component| in full pixels
  static constexpr int kScale = 4;       // motion_scale of the rows (quarter-pel units; only half-pel is used)

  // Estimates the motion of `cur` relative to `ref` (both visible luma planes; the sizes must match, otherwise
  // no rows are produced) and writes N x 10 rows in the exported order (source -1, w = h = 16, dst = block centre,
  // motion in quarter pel, motion_scale 4, src = dst + motion / scale with C integer division) into `rows`, in
  // raster order of the blocks. Returns N. `cur_tag` / `ref_tag` (non-zero) identify pictures so that the
  // prepared planes of a picture are reused when it is passed again (e.g. as the next call's reference); 0 never
  // matches. Never throws except std::bad_alloc.
  int64_t estimate(const Plane& cur, uint64_t cur_tag, const Plane& ref, uint64_t ref_tag, std::vector<int32_t>& rows);

 private:
  // An edge-extended copy of a picture at full and half resolution.
  struct Prepared {
    uint64_t tag = 0;
    int width = 0, height = 0;      // visible size
    std::vector<uint8_t> full_buf, half_buf;
    ptrdiff_t full_stride = 0, half_stride = 0;
    const uint8_t* full = nullptr;  // sample (0, 0) at full resolution
    const uint8_t* half = nullptr;  // sample (0, 0) at half resolution
  };
  void prepare(Prepared& slot, const Plane& p, uint64_t tag);
  int find(const Plane& p, uint64_t tag) const;  // the slot holding picture `tag`, or -1

  Prepared slots_[2];
  std::vector<int16_t> half_mv_;  // per block: coarse vector (half-res pixels), x, y
  std::vector<int16_t> full_mv_;  // per block: integer full-res vector, x, y
  std::vector<uint8_t> inter_;    // per block: 1 when the block got a vector
};

}  // namespace ov2

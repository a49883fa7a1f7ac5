// Motion vectors: FFmpeg's exported AVMotionVector rows, and their densification to a per-4x4-cell field.
#pragma once
#include <cstdint>
#include <vector>

#include "codec/ffmpeg.h"

namespace ov2 {

constexpr int kMvCols = 10;  // source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale

// Per-cell motion bookkeeping of one frame at 4x4 granularity.
struct MotionField {
  int cells_w = 0, cells_h = 0;  // ceil(W/4), ceil(H/4) of the visible frame
  std::vector<uint8_t> has[2];   // 1 where list 0 (past) / list 1 (future) has a vector for the cell
  // Per 16x16 macroblock (mb_w x mb_h, row-major): max over the two lists of the number of exported blocks whose
  // top-left corner lies in it. A cell's partition density is that of its macroblock (partitions_of).
  int mb_w = 0, mb_h = 0;
  std::vector<uint8_t> mb_partitions;
  std::vector<uint8_t> mb_count[2];  // per list (scratch of densify_motion)

  bool intra(size_t cell) const { return !has[0][cell] && !has[1][cell]; }
  uint8_t partitions_of(int cy, int cx) const { return mb_partitions[static_cast<size_t>(cy / 4) * mb_w + cx / 4]; }
};

// Copies the frame's exported vectors into `rows` (N x 10 int32, FFmpeg's order without `flags`).
// Returns the number of rows.
int64_t export_motion_rows(const AVFrame* frame, std::vector<int32_t>& rows);

// Densifies rows (as returned by export_motion_rows) onto the 4x4-cell grid of a width x height frame.
// When `mv_field` is not null it receives cells_h x cells_w x 4 float32 (L0 dx, dy, L1 dx, dy in pixels,
// motion / motion_scale; 0 where a list has no vector), and `intra_mask` (nullable) 1 for cells without vectors.
// `mv_flags` (nullable) receives per cell bit 0 = has an L0 vector, bit 1 = has an L1 vector.
void densify_motion(const int32_t* rows, int64_t n, int width, int height, MotionField& field, float* mv_field,
                    uint8_t* intra_mask, uint8_t* mv_flags = nullptr);

}  // namespace ov2

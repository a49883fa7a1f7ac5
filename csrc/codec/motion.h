// Motion vectors: FFmpeg's exported AVMotionVector rows, and their densification to a per-4x4-cell field.
#pragma once
#include <cstdint>
#include <vector>

#include "codec/ffmpeg.h"

namespace ov2 {

constexpr int kMvCols = 10;  // source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale

// Per-cell motion of one frame at 4x4 granularity, in the codec's own units (exact integers).
struct MotionField {
  int cells_w = 0, cells_h = 0;     // ceil(W/4), ceil(H/4) of the visible frame
  std::vector<int32_t> mx[2], my[2];  // per list (0 = L0/past, 1 = L1/future), units of 1/scale pixel
  std::vector<int32_t> scale[2];      // motion_scale per cell (0 where absent)
  std::vector<uint8_t> has[2];        // 1 where the list has a vector for the cell
  // Number of distinct partitions covering the cell's 16x16 macroblock (for the coding-cost proxy).
  std::vector<uint8_t> partitions;

  void reset(int width, int height);
  bool intra(size_t cell) const { return !has[0][cell] && !has[1][cell]; }
};

// Copies the frame's exported vectors into `rows` (N x 10 int32, FFmpeg's order without `flags`).
// Returns the number of rows.
int64_t export_motion_rows(const AVFrame* frame, std::vector<int32_t>& rows);

// Densifies rows (as returned by export_motion_rows) onto the 4x4-cell grid of a width x height frame.
void densify_motion(const int32_t* rows, int64_t n, int width, int height, MotionField& field);

// Writes the public mv_field (cells_h x cells_w x 4 float32: L0 dx, dy, L1 dx, dy in pixels) and intra_mask.
void motion_field_to_float(const MotionField& field, float* mv_field, uint8_t* intra_mask);

}  // namespace ov2

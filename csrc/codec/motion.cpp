#include "codec/motion.h"

#include <algorithm>

namespace ov2 {

void MotionField::reset(int width, int height) {
  cells_w = (width + 3) / 4;
  cells_h = (height + 3) / 4;
  const size_t n = static_cast<size_t>(cells_w) * cells_h;
  for (int l = 0; l < 2; ++l) {
    mx[l].assign(n, 0);
    my[l].assign(n, 0);
    scale[l].assign(n, 0);
    has[l].assign(n, 0);
  }
  partitions.assign(n, 0);
}

int64_t export_motion_rows(const AVFrame* frame, std::vector<int32_t>& rows) {
  rows.clear();
  const AVFrameSideData* sd = av_frame_get_side_data(frame, AV_FRAME_DATA_MOTION_VECTORS);
  if (!sd || sd->size == 0) return 0;
  const auto* mvs = reinterpret_cast<const AVMotionVector*>(sd->data);
  const int64_t n = static_cast<int64_t>(sd->size / sizeof(AVMotionVector));
  rows.resize(static_cast<size_t>(n) * kMvCols);
  int32_t* r = rows.data();
  for (int64_t i = 0; i < n; ++i, r += kMvCols) {
    const AVMotionVector& m = mvs[i];
    r[0] = m.source;
    r[1] = m.w;
    r[2] = m.h;
    r[3] = m.src_x;
    r[4] = m.src_y;
    r[5] = m.dst_x;
    r[6] = m.dst_y;
    r[7] = m.motion_x;
    r[8] = m.motion_y;
    r[9] = static_cast<int32_t>(m.motion_scale);
  }
  return n;
}

void densify_motion(const int32_t* rows, int64_t n, int width, int height, MotionField& f) {
  f.reset(width, height);
  // Partitions per macroblock: count distinct (dst, w, h) blocks; L0 and L1 rows of one block count once.
  const int mbw = (width + 15) / 16, mbh = (height + 15) / 16;
  std::vector<uint8_t> mb_parts(static_cast<size_t>(mbw) * mbh, 0);
  std::vector<uint8_t> block_mark(static_cast<size_t>(f.cells_w) * f.cells_h, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* r = rows + i * kMvCols;
    const int list = r[0] > 0 ? 1 : 0;
    const int w = r[1], h = r[2];
    const int x0 = r[5] - w / 2, y0 = r[6] - h / 2;
    if (w <= 0 || h <= 0 || r[9] <= 0) continue;
    const int cx0 = std::max(0, x0 / 4), cy0 = std::max(0, y0 / 4);
    const int cx1 = std::min(f.cells_w, (x0 + w + 3) / 4), cy1 = std::min(f.cells_h, (y0 + h + 3) / 4);
    bool new_block = false;
    for (int cy = cy0; cy < cy1; ++cy) {
      for (int cx = cx0; cx < cx1; ++cx) {
        const size_t c = static_cast<size_t>(cy) * f.cells_w + cx;
        f.mx[list][c] = r[7];
        f.my[list][c] = r[8];
        f.scale[list][c] = r[9];
        f.has[list][c] = 1;
        if (!block_mark[c]) new_block = true;
        block_mark[c] = 1;
      }
    }
    if (new_block && x0 >= 0 && y0 >= 0) {
      const int mbx = x0 / 16, mby = y0 / 16;
      if (mbx < mbw && mby < mbh) {
        uint8_t& p = mb_parts[static_cast<size_t>(mby) * mbw + mbx];
        if (p < 255) ++p;
      }
    }
  }
  for (int cy = 0; cy < f.cells_h; ++cy)
    for (int cx = 0; cx < f.cells_w; ++cx)
      f.partitions[static_cast<size_t>(cy) * f.cells_w + cx] = mb_parts[static_cast<size_t>(cy / 4) * mbw + cx / 4];
}

void motion_field_to_float(const MotionField& f, float* out, uint8_t* intra_mask) {
  const size_t n = static_cast<size_t>(f.cells_w) * f.cells_h;
  for (size_t c = 0; c < n; ++c) {
    for (int l = 0; l < 2; ++l) {
      const float s = f.has[l][c] ? static_cast<float>(f.scale[l][c]) : 1.0f;
      out[c * 4 + 2 * l] = f.has[l][c] ? static_cast<float>(f.mx[l][c]) / s : 0.0f;
      out[c * 4 + 2 * l + 1] = f.has[l][c] ? static_cast<float>(f.my[l][c]) / s : 0.0f;
    }
    if (intra_mask) intra_mask[c] = f.intra(c) ? 1 : 0;
  }
}

}  // namespace ov2

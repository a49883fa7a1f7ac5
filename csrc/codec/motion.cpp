#include "codec/motion.h"

#include <algorithm>
#include <cstring>

namespace ov2 {

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

void densify_motion(const int32_t* rows, int64_t n, int width, int height, MotionField& f, float* mv_field,
                    uint8_t* intra_mask, uint8_t* mv_flags) {
  f.cells_w = (width + 3) / 4;
  f.cells_h = (height + 3) / 4;
  const size_t cells = static_cast<size_t>(f.cells_w) * f.cells_h;
  f.has[0].assign(cells, 0);
  f.has[1].assign(cells, 0);
  if (mv_field) std::memset(mv_field, 0, cells * 4 * sizeof(float));
  const int mbw = (width + 15) / 16, mbh = (height + 15) / 16;
  f.mb_w = mbw;
  f.mb_h = mbh;
  const size_t mbs = static_cast<size_t>(mbw) * mbh;
  f.mb_count[0].assign(mbs, 0);
  f.mb_count[1].assign(mbs, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* r = rows + i * kMvCols;
    const int list = r[0] > 0 ? 1 : 0;
    const int w = r[1], h = r[2];
    if (w <= 0 || h <= 0 || r[9] <= 0) continue;
    const int x0 = r[5] - w / 2, y0 = r[6] - h / 2;
    const int cx0 = std::max(0, x0 / 4), cy0 = std::max(0, y0 / 4);
    const int cx1 = std::min(f.cells_w, (x0 + w + 3) / 4), cy1 = std::min(f.cells_h, (y0 + h + 3) / 4);
    if (cx1 <= cx0 || cy1 <= cy0) continue;
    const float inv = 1.0f / static_cast<float>(r[9]);
    const float dx = static_cast<float>(r[7]) * inv, dy = static_cast<float>(r[8]) * inv;
    for (int cy = cy0; cy < cy1; ++cy) {
      const size_t row = static_cast<size_t>(cy) * f.cells_w;
      std::memset(f.has[list].data() + row + cx0, 1, static_cast<size_t>(cx1 - cx0));
      if (mv_field) {
        float* m = mv_field + (row + cx0) * 4 + 2 * list;
        for (int cx = cx0; cx < cx1; ++cx, m += 4) {
          m[0] = dx;
          m[1] = dy;
        }
      }
    }
    if (x0 >= 0 && y0 >= 0 && x0 / 16 < mbw && y0 / 16 < mbh) {
      uint8_t& c = f.mb_count[list][static_cast<size_t>(y0 / 16) * mbw + x0 / 16];
      if (c < 255) ++c;
    }
  }
  f.mb_partitions.resize(mbs);
  for (size_t m = 0; m < mbs; ++m) f.mb_partitions[m] = std::max(f.mb_count[0][m], f.mb_count[1][m]);
  if (intra_mask)
    for (size_t c = 0; c < cells; ++c) intra_mask[c] = (f.has[0][c] | f.has[1][c]) ? 0 : 1;
  if (mv_flags)
    for (size_t c = 0; c < cells; ++c) mv_flags[c] = static_cast<uint8_t>(f.has[0][c] | (f.has[1][c] << 1));
}

}  // namespace ov2

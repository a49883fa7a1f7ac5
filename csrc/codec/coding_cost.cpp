#include "codec/coding_cost.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ov2 {

float percentile_linear(float* v, size_t n, double q) {
  if (n == 0) return 0.0f;
  const double pos = q / 100.0 * static_cast<double>(n - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(n - 1, lo + 1);
  std::nth_element(v, v + lo, v + n);
  const float a = v[lo];
  float b = a;
  if (hi != lo) b = *std::min_element(v + lo + 1, v + n);
  return static_cast<float>(a + (b - a) * (pos - static_cast<double>(lo)));
}

void coding_cost(const MotionField& f, bool intra_frame, const AVFrame* frame, float* out) {
  const size_t n = static_cast<size_t>(f.cells_w) * f.cells_h;
  for (int cy = 0; cy < f.cells_h; ++cy) {
    const size_t row = static_cast<size_t>(cy) * f.cells_w;
    const uint8_t* h0 = f.has[0].data() + row;
    const uint8_t* h1 = f.has[1].data() + row;
    const uint8_t* mb = f.mb_partitions.data() + static_cast<size_t>(cy / 4) * f.mb_w;
    float* o = out + row;
    if (intra_frame) {
      std::fill(o, o + f.cells_w, kIntraCellCost);
      continue;
    }
    for (int cx = 0; cx < f.cells_w; ++cx)
      o[cx] = (h0[cx] | h1[cx]) ? static_cast<float>(mb[cx >> 2]) : kIntraCellCost;
  }
  const AVFrameSideData* sd = frame ? av_frame_get_side_data(frame, AV_FRAME_DATA_VIDEO_ENC_PARAMS) : nullptr;
  if (sd && sd->size >= sizeof(AVVideoEncParams)) {
    const auto* par = reinterpret_cast<const AVVideoEncParams*>(sd->data);
    // 2^(-delta_qp / 6), computed once per distinct delta (the same float as computing it per block)
    float table[256];
    bool known[256] = {false};
    for (unsigned i = 0; i < par->nb_blocks; ++i) {
      const AVVideoBlockParams* b = av_video_enc_params_block(const_cast<AVVideoEncParams*>(par), i);
      float scale;
      const int d = b->delta_qp;
      if (d >= -128 && d < 128) {
        if (!known[d + 128]) {
          table[d + 128] = std::exp2(-static_cast<float>(d) / 6.0f);
          known[d + 128] = true;
        }
        scale = table[d + 128];
      } else {
        scale = std::exp2(-static_cast<float>(d) / 6.0f);
      }
      if (scale == 1.0f) continue;  // x * 1 == x
      const int cx0 = std::max(0, b->src_x / 4), cy0 = std::max(0, b->src_y / 4);
      const int cx1 = std::min(f.cells_w, (b->src_x + b->w + 3) / 4);
      const int cy1 = std::min(f.cells_h, (b->src_y + b->h + 3) / 4);
      for (int cy = cy0; cy < cy1; ++cy)
        for (int cx = cx0; cx < cx1; ++cx) out[static_cast<size_t>(cy) * f.cells_w + cx] *= scale;
    }
  }
  thread_local std::vector<float> scratch;
  scratch.assign(out, out + n);
  float p95 = percentile_linear(scratch.data(), n, 95.0);
  if (!(p95 > 0.0f)) p95 = n ? *std::max_element(out, out + n) : 0.0f;
  if (!(p95 > 0.0f)) {
    std::fill(out, out + n, 0.0f);
    return;
  }
  for (size_t c = 0; c < n; ++c) out[c] = std::min(1.0f, out[c] / p95);
}

}  // namespace ov2

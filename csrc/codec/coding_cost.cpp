#include "codec/coding_cost.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace ov2 {

namespace {

// numpy's linear rule: the percentile q of n >= 1 values lies at rank pos between order statistics lo and hi.
struct Rank {
  double pos;
  size_t lo, hi;
};
Rank percentile_rank(size_t n, double q) {
  const double pos = q / 100.0 * static_cast<double>(n - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  return {pos, lo, std::min(n - 1, lo + 1)};
}
// The interpolation between the order statistics a = x(lo) and b = x(hi), in this one expression everywhere.
float percentile_lerp(float a, float b, const Rank& r) {
  return static_cast<float>(a + (b - a) * (r.pos - static_cast<double>(r.lo)));
}

}  // namespace

float percentile_linear(float* v, size_t n, double q) {
  if (n == 0) return 0.0f;
  const Rank r = percentile_rank(n, q);
  std::nth_element(v, v + r.lo, v + n);
  const float a = v[r.lo];
  const float b = r.hi != r.lo ? *std::min_element(v + r.lo + 1, v + n) : a;
  return percentile_lerp(a, b, r);
}

namespace {

// 2^(-delta_qp / 6) as the per-block pass computes it (float, once per distinct delta).
float qp_scale(int d) { return std::exp2(-static_cast<float>(d) / 6.0f); }

// The general path: base values, then every block's scale multiplied into its cells (in block order; a cell two
// blocks cover is multiplied twice), then the 95th percentile by selection.
float cost_general(const MotionField& f, bool intra_frame, const AVVideoEncParams* par, float* out) {
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
  if (par) {
    float table[256];
    bool known[256] = {false};
    for (unsigned i = 0; i < par->nb_blocks; ++i) {
      const AVVideoBlockParams* b = av_video_enc_params_block(const_cast<AVVideoEncParams*>(par), i);
      float scale;
      const int d = b->delta_qp;
      if (d >= -128 && d < 128) {
        if (!known[d + 128]) {
          table[d + 128] = qp_scale(d);
          known[d + 128] = true;
        }
        scale = table[d + 128];
      } else {
        scale = qp_scale(d);
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
  return percentile_linear(scratch.data(), n, 95.0);
}

// The common case, exactly the same values: every block is one whole 16x16 macroblock, each macroblock at most once
// (H.264 and the MPEG-1/2/4 decoders export per-macroblock QP so), so a cell's value is its macroblock's base value
// times that macroblock's one scale — the single multiply the general path makes. The values are written and
// counted in one pass, by (scale, partition count or intra), and the percentile comes from the counts: the same
// order statistics as the selection. False, with nothing written, when the blocks are laid out otherwise or carry
// more than kMaxScales distinct scales.
bool cost_by_macroblock(const MotionField& f, bool intra_frame, const AVVideoEncParams* par, float* out, float& p95) {
  constexpr int kMaxScales = 64;  // slot 0: scale 1 (macroblocks without a block, or a zero delta)
  thread_local std::vector<uint8_t> mb_slot;
  const size_t mbs = static_cast<size_t>(f.mb_w) * f.mb_h;
  mb_slot.assign(mbs, 0);
  float slot_scale[kMaxScales];
  slot_scale[0] = 1.0f;
  int nslots = 1;
  if (par) {
    int8_t slot_of[256];  // delta + 128 -> slot, -1 unseen
    std::fill(slot_of, slot_of + 256, int8_t{-1});
    thread_local std::vector<uint8_t> seen;
    seen.assign(mbs, 0);
    for (unsigned i = 0; i < par->nb_blocks; ++i) {
      const AVVideoBlockParams* b = av_video_enc_params_block(const_cast<AVVideoEncParams*>(par), i);
      if (b->w != 16 || b->h != 16 || b->src_x < 0 || b->src_y < 0 || b->src_x % 16 || b->src_y % 16) return false;
      const int d = b->delta_qp;
      if (d < -128 || d >= 128) return false;
      const int mx = b->src_x / 16, my = b->src_y / 16;
      if (mx >= f.mb_w || my >= f.mb_h) continue;  // covers no cell
      const size_t m = static_cast<size_t>(my) * f.mb_w + mx;
      if (seen[m]) return false;  // a cell scaled twice
      seen[m] = 1;
      if (slot_of[d + 128] < 0) {
        const float sc = qp_scale(d);
        if (sc == 1.0f) {
          slot_of[d + 128] = 0;
        } else {
          if (nslots == kMaxScales) return false;
          slot_scale[nslots] = sc;
          slot_of[d + 128] = static_cast<int8_t>(nslots++);
        }
      }
      mb_slot[m] = static_cast<uint8_t>(slot_of[d + 128]);
    }
  }
  thread_local std::vector<int64_t> counts;  // [slot][0..255: partition count, 256: intra]
  counts.assign(static_cast<size_t>(nslots) * 257, 0);
  int64_t* const cnt = counts.data();
  // Counts go to cnt[slot * 257 + (p or 256)], summed over runs of macroblocks with the same slot and partition
  // count (neighbours mostly share both) and added when the run ends.
  size_t run_key = 0;
  int64_t run_inter = 0, run_intra = 0;
  auto flush = [&] {
    cnt[run_key] += run_inter;
    cnt[run_key - run_key % 257 + 256] += run_intra;
    run_inter = run_intra = 0;
  };
  auto add = [&](size_t key, int64_t inter, int64_t intra) {
    if (key != run_key) {
      flush();
      run_key = key;
    }
    run_inter += inter;
    run_intra += intra;
  };
  const int full = f.cells_w / 4;  // macroblock columns with four cells
  for (int cy = 0; cy < f.cells_h; ++cy) {
    const size_t row = static_cast<size_t>(cy) * f.cells_w;
    const uint8_t* h0 = f.has[0].data() + row;
    const uint8_t* h1 = f.has[1].data() + row;
    const uint8_t* mb = f.mb_partitions.data() + static_cast<size_t>(cy / 4) * f.mb_w;
    const uint8_t* sl = mb_slot.data() + static_cast<size_t>(cy / 4) * f.mb_w;
    float* o = out + row;
    for (int m = 0; m < f.mb_w && 4 * m < f.cells_w; ++m) {
      const int cx = 4 * m, len = m < full ? 4 : f.cells_w - cx;
      const float sc = slot_scale[sl[m]];
      const uint8_t p = mb[m];
      const float v_inter = static_cast<float>(p) * sc, v_intra = kIntraCellCost * sc;
      const size_t key = static_cast<size_t>(sl[m]) * 257 + p;
      if (intra_frame) {
        for (int k = 0; k < len; ++k) o[cx + k] = v_intra;
        add(key, 0, len);
        continue;
      }
      int with = 0;
      uint32_t a = 0, b = 0;  // the four cells' flags at once (mostly all with a vector, or none)
      if (len == 4) {
        std::memcpy(&a, h0 + cx, 4);
        std::memcpy(&b, h1 + cx, 4);
      }
      const uint32_t x = a | b;
      const bool none = x == 0;
      const bool all = ((((x & 0x7f7f7f7fu) + 0x7f7f7f7fu) | x) & 0x80808080u) == 0x80808080u;  // no zero byte
      if (len == 4 && (none || all)) {
        const float v = all ? v_inter : v_intra;
        o[cx] = o[cx + 1] = o[cx + 2] = o[cx + 3] = v;
        with = all ? 4 : 0;
      } else {
        for (int k = 0; k < len; ++k) {
          const bool has = (h0[cx + k] | h1[cx + k]) != 0;
          o[cx + k] = has ? v_inter : v_intra;
          with += has;
        }
      }
      add(key, with, len - with);
    }
  }
  flush();
  // (value, count) pairs, sorted by value; the values are the very floats written above
  thread_local std::vector<std::pair<float, int64_t>> vals;
  vals.clear();
  for (int s = 0; s < nslots; ++s)
    for (int p = 0; p <= 256; ++p)
      if (cnt[s * 257 + p] > 0)
        vals.emplace_back((p == 256 ? kIntraCellCost : static_cast<float>(p)) * slot_scale[s], cnt[s * 257 + p]);
  const size_t n = static_cast<size_t>(f.cells_w) * f.cells_h;
  if (n == 0 || vals.empty()) {
    p95 = 0.0f;
    return true;
  }
  std::sort(vals.begin(), vals.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  auto kth = [&](size_t k) {  // k-th smallest, 0-based
    int64_t cum = 0;
    for (const auto& v : vals) {
      cum += v.second;
      if (static_cast<int64_t>(k) < cum) return v.first;
    }
    return vals.back().first;
  };
  const Rank r = percentile_rank(n, 95.0);
  const float a = kth(r.lo);
  p95 = percentile_lerp(a, r.hi != r.lo ? kth(r.hi) : a, r);
  return true;
}

}  // namespace

void coding_cost(const MotionField& f, bool intra_frame, const AVFrame* frame, float* out) {
  const size_t n = static_cast<size_t>(f.cells_w) * f.cells_h;
  const AVFrameSideData* sd = frame ? av_frame_get_side_data(frame, AV_FRAME_DATA_VIDEO_ENC_PARAMS) : nullptr;
  // (AVFrameSideData::size is an int before FFmpeg 5.0)
  const AVVideoEncParams* par = sd && static_cast<size_t>(sd->size) >= sizeof(AVVideoEncParams)
                                    ? reinterpret_cast<const AVVideoEncParams*>(sd->data)
                                    : nullptr;
  float p95;
  if (!cost_by_macroblock(f, intra_frame, par, out, p95)) p95 = cost_general(f, intra_frame, par, out);
  if (!(p95 > 0.0f)) p95 = n ? *std::max_element(out, out + n) : 0.0f;
  if (!(p95 > 0.0f)) {
    std::fill(out, out + n, 0.0f);
    return;
  }
  for (size_t c = 0; c < n; ++c) out[c] = std::min(1.0f, out[c] / p95);
}

}  // namespace ov2

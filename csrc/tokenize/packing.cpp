#include "tokenize/packing.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace ov2::tok {

namespace {
void check_plan(const CanvasPlan& plan, int64_t n_cand, int64_t nb) {
  require(plan.num_canvases >= 0 && plan.num_groups >= 1, "pack: empty plan");
  require(plan.offset[0] == 0, "pack: offsets must start at 0");
  for (int64_t s = 0; s < plan.num_canvases; ++s) {
    require(plan.kind[s] == 0 || plan.kind[s] == 1, "pack: canvas kind must be 0 (I) or 1 (P)");
    require(plan.group[s] >= 0 && plan.group[s] < plan.num_groups, "pack: canvas group out of range");
    const int64_t o0 = plan.offset[s], o1 = plan.offset[s + 1];
    require(o1 >= o0, "pack: offsets must be non-decreasing");
    if (plan.kind[s] == 0) {
      require(plan.frame[s] >= 0 && plan.frame[s] < n_cand, "pack: I-canvas anchor out of range");
      require(o1 == o0, "pack: an I-canvas holds no selected blocks");
    } else {
      require(o1 - o0 <= nb, "pack: P-canvas holds more blocks than fit");
    }
  }
  for (int64_t k = 0; k < plan.num_groups; ++k)
    require(plan.group_anchor[k] >= 0 && plan.group_anchor[k] < n_cand, "pack: group anchor out of range");
}
}  // namespace

Records pack_records(const CanvasPlan& plan, const int32_t* cand_frame, const double* cand_t, int64_t n_cand,
                     int64_t hc, int64_t wc, int64_t patch, int64_t merge, int temporal_coord) {
  require(patch >= 1 && merge >= 1, "pack_records: patch and merge must be >= 1");
  const int64_t f = patch * merge;
  require(hc >= f && wc >= f && hc % f == 0 && wc % f == 0, "pack_records: canvas not a multiple of patch*merge");
  require(hc / patch <= 32767 && wc / patch <= 32767, "pack_records: canvas grid exceeds int16");
  require(temporal_coord == 0 || temporal_coord == 1, "pack_records: temporal_coord must be 0 (frame) or 1 (slot)");
  const int64_t nbh = hc / f, nbw = wc / f, nb = nbh * nbw;
  check_plan(plan, n_cand, nb);
  const int64_t nblocks = plan.offset[plan.num_canvases];
  for (int64_t q = 0; q < nblocks; ++q) {
    require(plan.block_t[q] >= 0 && plan.block_t[q] < n_cand, "pack_records: block frame out of range");
    require(plan.block_i[q] >= 0 && plan.block_i[q] < nbh && plan.block_j[q] >= 0 && plan.block_j[q] < nbw,
            "pack_records: block coordinate out of range");
  }
  auto tcoord = [&](int32_t pos) { return temporal_coord == 0 ? cand_frame[pos] : pos; };
  Records R;
  const int64_t per_canvas = nb * merge * merge;
  const size_t N = static_cast<size_t>(plan.num_canvases * per_canvas);
  R.canvas.reserve(N);
  R.frame.reserve(N);
  R.group.reserve(N);
  R.t_s.reserve(N);
  R.can_hw.reserve(2 * N);
  R.src_hw.reserve(2 * N);
  R.pos_thw.reserve(3 * N);
  for (int64_t s = 0; s < plan.num_canvases; ++s) {
    const int32_t k = plan.group[s];
    const int64_t o0 = plan.offset[s], nsel = plan.offset[s + 1] - o0;
    for (int64_t n = 0; n < nb; ++n) {
      const int64_t ci = n / nbw, cj = n % nbw;
      int32_t pos = -1;
      int64_t si = 0, sj = 0;
      if (plan.kind[s] == 0) {
        pos = plan.frame[s];
        si = ci;
        sj = cj;
      } else if (n < nsel) {
        pos = plan.block_t[o0 + n];
        si = plan.block_i[o0 + n];
        sj = plan.block_j[o0 + n];
      }
      for (int64_t a = 0; a < merge; ++a) {
        for (int64_t b = 0; b < merge; ++b) {
          const int64_t can_h = ci * merge + a, can_w = cj * merge + b;
          R.canvas.push_back(static_cast<int32_t>(s));
          R.group.push_back(k);
          R.can_hw.push_back(static_cast<int16_t>(can_h));
          R.can_hw.push_back(static_cast<int16_t>(can_w));
          if (pos >= 0) {
            const int64_t src_h = si * merge + a, src_w = sj * merge + b;
            R.frame.push_back(cand_frame[pos]);
            R.t_s.push_back(static_cast<float>(cand_t[pos]));
            R.src_hw.push_back(static_cast<int16_t>(src_h));
            R.src_hw.push_back(static_cast<int16_t>(src_w));
            R.pos_thw.push_back(tcoord(pos));
            R.pos_thw.push_back(static_cast<int32_t>(src_h));
            R.pos_thw.push_back(static_cast<int32_t>(src_w));
          } else {
            R.frame.push_back(-1);
            R.t_s.push_back(-1.0f);
            R.src_hw.push_back(-1);
            R.src_hw.push_back(-1);
            R.pos_thw.push_back(tcoord(plan.group_anchor[k]));
            R.pos_thw.push_back(static_cast<int32_t>(can_h));
            R.pos_thw.push_back(static_cast<int32_t>(can_w));
          }
        }
      }
    }
  }
  return R;
}

void paste_blocks(const uint8_t* frame_hwc, int64_t hc, int64_t wc, int64_t block, const int64_t* src_block,
                  const int64_t* dst_block, int64_t n, uint8_t* canvas_chw) {
  require(block >= 1 && hc % block == 0 && wc % block == 0, "paste_blocks: canvas not a multiple of the block");
  const int64_t nbw = wc / block, nb = (hc / block) * nbw;
  const int64_t plane = hc * wc;
  for (int64_t q = 0; q < n; ++q) {
    if (src_block[q] < 0) {  // whole frame
      uint8_t* r = canvas_chw;
      split_rgb(frame_hwc, hc * wc, r, r + plane, r + 2 * plane);
      continue;
    }
    require(src_block[q] < nb && dst_block[q] >= 0 && dst_block[q] < nb, "paste_blocks: block index out of range");
    const int64_t sy = (src_block[q] / nbw) * block, sx = (src_block[q] % nbw) * block;
    const int64_t dy = (dst_block[q] / nbw) * block, dx = (dst_block[q] % nbw) * block;
    for (int64_t y = 0; y < block; ++y) {
      uint8_t* r = canvas_chw + (dy + y) * wc + dx;
      split_rgb(frame_hwc + ((sy + y) * wc + sx) * 3, block, r, r + plane, r + 2 * plane);
    }
  }
}

void pack_canvases(const CanvasPlan& plan, const uint8_t* frames_hwc, int64_t n_cand, int64_t hc, int64_t wc,
                   int64_t patch, int64_t merge, uint8_t* out) {
  require(patch >= 1 && merge >= 1, "pack_canvases: patch and merge must be >= 1");
  const int64_t f = patch * merge;
  require(hc >= f && wc >= f && hc % f == 0 && wc % f == 0, "pack_canvases: canvas not a multiple of patch*merge");
  const int64_t nbw = wc / f, nb = (hc / f) * nbw;
  check_plan(plan, n_cand, nb);
  const int64_t canvas_sz = 3 * hc * wc, frame_sz = hc * wc * 3;
  std::memset(out, 0, static_cast<size_t>(plan.num_canvases * canvas_sz));
  for (int64_t s = 0; s < plan.num_canvases; ++s) {
    uint8_t* dst = out + s * canvas_sz;
    if (plan.kind[s] == 0) {
      const int64_t whole = -1, zero = 0;
      paste_blocks(frames_hwc + static_cast<int64_t>(plan.frame[s]) * frame_sz, hc, wc, f, &whole, &zero, 1, dst);
      continue;
    }
    for (int64_t q = plan.offset[s]; q < plan.offset[s + 1]; ++q) {
      require(plan.block_t[q] >= 0 && plan.block_t[q] < n_cand, "pack_canvases: block frame out of range");
      const int64_t src = static_cast<int64_t>(plan.block_i[q]) * nbw + plan.block_j[q];
      const int64_t dstb = q - plan.offset[s];
      require(plan.block_i[q] >= 0 && plan.block_j[q] >= 0 && plan.block_j[q] < nbw,
              "pack_canvases: block coordinate out of range");
      paste_blocks(frames_hwc + static_cast<int64_t>(plan.block_t[q]) * frame_sz, hc, wc, f, &src, &dstb, 1, dst);
    }
  }
}

}  // namespace ov2::tok

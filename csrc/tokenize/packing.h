// DESIGN §5.7 — canvas packing and token records (DESIGN §3.2), in m×m-block order.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenize/common.h"

namespace ov2::tok {

// The canvas list produced by allocate() (see allocation.h), as plain arrays.
struct CanvasPlan {
  int64_t num_canvases = 0;
  const int8_t* kind = nullptr;     // [S] 0 = I, 1 = P
  const int32_t* group = nullptr;   // [S]
  const int32_t* frame = nullptr;   // [S] I: anchor candidate position
  const int64_t* offset = nullptr;  // [S + 1] into block_*
  const int32_t* block_t = nullptr; // candidate position of each selected block
  const int32_t* block_i = nullptr;
  const int32_t* block_j = nullptr;
  int64_t num_groups = 0;
  const int32_t* group_anchor = nullptr;  // [G] candidate position of each group's anchor
};

struct Records {
  std::vector<int32_t> canvas, frame, group;
  std::vector<float> t_s;
  std::vector<int16_t> can_hw, src_hw;  // [N, 2]
  std::vector<int32_t> pos_thw;         // [N, 3]
};

// Token records of every canvas, in canvas order; within a canvas, canvas blocks in raster order and the
// m×m patches of a block consecutive (row-major inside the block). I-canvas: every block of the anchor frame,
// src = can. P-canvas: selected block n (in (t, i, j) order) sits at canvas block (n / nbw, n % nbw);
// slots past the last selected block are padding: frame −1, t_s −1, src_hw (−1, −1),
// group = the canvas's group, pos_thw = (temporal coordinate of the group's anchor, can_h, can_w).
// cand_frame: source frame index per candidate; cand_t: timestamp per candidate (s).
// temporal_coord: 0 = source frame index, 1 = candidate slot (position).
Records pack_records(const CanvasPlan& plan, const int32_t* cand_frame, const double* cand_t, int64_t n_cand,
                     int64_t hc, int64_t wc, int64_t patch, int64_t merge, int temporal_coord);

// Pixels: canvases [S, 3, hc, wc] uint8 from candidate images frames_hwc [n_cand, hc, wc, 3] uint8 at canvas
// geometry (only anchors and frames with selected blocks are read). Short P-canvases are zero-filled.
void pack_canvases(const CanvasPlan& plan, const uint8_t* frames_hwc, int64_t n_cand, int64_t hc, int64_t wc,
                   int64_t patch, int64_t merge, uint8_t* out);

// Streaming building block: copy blocks of one frame [hc, wc, 3] into one canvas [3, hc, wc].
// src_block / dst_block: flat block indices (i·nbw + j) of the m·p × m·p blocks, n of them; a negative
// src_block copies the whole frame (I-canvas) and ignores dst_block.
void paste_blocks(const uint8_t* frame_hwc, int64_t hc, int64_t wc, int64_t block, const int64_t* src_block,
                  const int64_t* dst_block, int64_t n, uint8_t* canvas_chw);

}  // namespace ov2::tok

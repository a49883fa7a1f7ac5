// DESIGN §5.6 — budget, group merging and stratified allocation of blocks to P-canvases (paper Eq. 5–6).
#pragma once

#include <cstdint>
#include <vector>

#include "tokenize/common.h"

namespace ov2::tok {

// K_tar = max(1, max_canvases / 4) (integer division).
int64_t k_target(int64_t max_canvases);

// P-canvases per group (DESIGN §5.6): capacity-aware largest remainder — m_k = min(1, cap_k), then the remaining
// canvases in proportion to cost among groups with spare capacity (floor parts, then the largest fractional parts,
// ties by smaller k), repeated while canvases and capacity remain.
std::vector<int32_t> share_p_canvases(int64_t total_p, const std::vector<double>& cost, const std::vector<int64_t>& cap);

struct AllocParams {
  int64_t max_canvases = 32;
  double lambda = 0.35;      // same-frame attenuation λ
  double alpha_peak = 0.35;  // α_peak
  int anchor = 0;            // 0 = first candidate of the group, 1 = centre candidate (index (n − 1)/2)
  int rank_mode = 0;         // ρ: 0 = zero-based rank within the frame (paper Eq. 5), 1 = rank / n_valid(frame)
  double t0 = 0.0;           // time origin of bin 0 (as in gop_partition)
  double delta = 0.5;        // bin width
};

struct AllocResult {
  // final groups (after merging), in time order
  std::vector<int64_t> group_start, group_end;  // bins, inclusive
  std::vector<double> group_cost;
  std::vector<int32_t> group_anchor;     // candidate position of the anchor frame
  std::vector<int32_t> group_num_p;      // m_k
  std::vector<int32_t> group_capacity;   // cap_k = ceil(valid non-anchor blocks / blocks per canvas)
  std::vector<int32_t> group_num_frames; // candidates in the group
  int64_t merges_empty = 0;              // groups merged because they held no candidate
  int64_t merges_budget = 0;             // merges because 2G > max_canvases
  // per candidate
  std::vector<int32_t> cand_group;       // κ of the candidate
  std::vector<double> cand_weight;       // w_t (0 for anchors)
  std::vector<double> cand_cum;          // F (−1 for anchors)
  std::vector<int32_t> cand_stratum;     // σ = min(m_k − 1, floor(F·m_k)) (−1 for anchors or m_k = 0)
  // canvases, in output order: per group the I-canvas, then P-canvases r = 0..m_k−1
  std::vector<int8_t> canvas_kind;       // 0 = I, 1 = P
  std::vector<int32_t> canvas_group;
  std::vector<int32_t> canvas_frame;     // I: anchor candidate position; P: −1
  std::vector<int32_t> canvas_rank;      // P: r; I: −1
  std::vector<int32_t> canvas_lo, canvas_hi;  // P: candidate positions of the frame range drawn from (after widening)
  std::vector<int32_t> canvas_widen;     // P: widening steps (0 = the stratum itself)
  std::vector<uint8_t> canvas_whole;     // P: the range had to cover the whole group and widening ran
  std::vector<int64_t> canvas_offset;    // S + 1 offsets into block_*
  std::vector<int32_t> block_t, block_i, block_j;  // selected blocks (candidate position, block row, block col)

  // Close a canvas whose blocks were just appended to block_* (canvas_offset starts with its leading 0).
  void add_i_canvas(int32_t group, int32_t anchor) { add_canvas(0, group, anchor, -1, -1, -1, 0, 0); }
  void add_p_canvas(int32_t group, int32_t rank, int32_t lo, int32_t hi, int32_t widen, uint8_t whole) {
    add_canvas(1, group, -1, rank, lo, hi, widen, whole);
  }

 private:
  void add_canvas(int8_t kind, int32_t group, int32_t frame, int32_t rank, int32_t lo, int32_t hi, int32_t widen,
                  uint8_t whole) {
    canvas_kind.push_back(kind);
    canvas_group.push_back(group);
    canvas_frame.push_back(frame);
    canvas_rank.push_back(rank);
    canvas_lo.push_back(lo);
    canvas_hi.push_back(hi);
    canvas_widen.push_back(widen);
    canvas_whole.push_back(whole);
    canvas_offset.push_back(static_cast<int64_t>(block_t.size()));
  }
};

// group_start/end/cost: partition from gop_partition (contiguous bins). cand_t: candidate times (s),
// non-decreasing, n_cand of them. scores: [n_cand, nbh, nbw] float32 block scores A (non-finite = padding,
// never selected). Throws Error on bad input.
AllocResult allocate(const int64_t* group_start, const int64_t* group_end, const double* group_cost,
                     int64_t num_groups, const double* cand_t, int64_t n_cand, const float* scores, int64_t nbh,
                     int64_t nbw, const AllocParams& params);

}  // namespace ov2::tok

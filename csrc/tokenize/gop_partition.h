// DESIGN §5.3 — adaptive GOP partition from packet bit-cost (paper Eq. 2–4).
#pragma once

#include <cstdint>
#include <vector>

#include "tokenize/common.h"

namespace ov2::tok {

struct GopParams {
  double delta = 0.5;       // bin width Δ (s)
  double t_min = 1.5;       // T_min (s) → L_min = ceil(T_min/Δ)
  double t_max = 6.0;       // T_max (s) → L_max = ceil(T_max/Δ)
  int64_t radius = 3;       // valley search radius r
  int64_t k_tar = 8;        // target number of groups
  bool log1p = false;       // energy = Σ log1p(bytes) instead of Σ bytes
  double t0 = 0.0;          // time origin of bin 0 (s)
  double duration_s = -1;   // video duration; ≤ 0 or non-finite → last packet bin + 1
};

struct GopResult {
  std::vector<double> energy;   // e_b, B bins
  double theta = 0;             // quota θ
  int64_t l_min = 0, l_max = 0;
  int64_t num_pb = 0;           // P/B packets with a finite pts
  std::vector<int64_t> start;   // s_k (bins, inclusive)
  std::vector<int64_t> end;     // c_k (bins, inclusive)
  std::vector<int64_t> trigger; // i_k, −1 for the tail and for the no-P/B fallback
  std::vector<double> cost;     // Σ_{b∈G_k} e_b
  bool fallback = false;        // no P/B packet → K_tar equal-time groups
  bool tail_merged = false;     // a tail shorter than L_min/2 was merged into the previous group
};

// A packet is P/B unless pict_type is 'I' (73); pict_type 0 or '?' (unknown) → P/B iff not keyframe.
// pict_type and keyframe may be null (null pict_type = all unknown, null keyframe = none key).
bool packet_is_pb(uint8_t pict_type, bool keyframe);

// Bin of time t: floor((t − t0)/Δ) clamped to [0, num_bins − 1].
int64_t time_bin(double t, double t0, double delta, int64_t num_bins);

GopResult gop_partition(const double* pts_s, const int64_t* size, const uint8_t* pict_type, const uint8_t* keyframe,
                        int64_t n, const GopParams& params);

// κ of each time: the group whose bins [start_k, end_k] contain time_bin(t) (bins clamped to the covered range).
// Groups must be contiguous and ordered. Non-finite times throw.
std::vector<int32_t> group_of_time(const double* t_s, int64_t n, const int64_t* start, const int64_t* end,
                                   int64_t num_groups, double t0, double delta);

}  // namespace ov2::tok

// DESIGN §5.2 — candidate frames, uniform by presentation time.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenize/common.h"

namespace ov2::tok {

// pts_s: presentation times (seconds) of the decoded frames in presentation order, n of them.
// Returns min(num_frames, n) strictly increasing frame indices:
//   n_c = min(num_frames, n); if n_c == n → all frames.
//   Times: pts_s when every value is finite and non-decreasing and pts[n-1] > pts[0], else the frame index.
//   Target k (0 ≤ k < n_c): τ_k = t_first + (t_last − t_first)·(k + 0.5)/n_c (centre of chunk k);
//   frame nearest to τ_k (ties → smaller index); then made strictly increasing by a forward pass
//   idx_k = max(idx_k, idx_{k−1} + 1) and a backward pass idx_k = min(idx_k, idx_{k+1} − 1), idx_{n_c−1} ≤ n − 1.
// num_frames < 1 throws.
std::vector<int64_t> candidate_frames(const double* pts_s, int64_t n, int64_t num_frames);

}  // namespace ov2::tok

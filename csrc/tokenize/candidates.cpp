#include "tokenize/candidates.h"

#include <algorithm>
#include <cmath>

namespace ov2::tok {

std::vector<int64_t> candidate_frames(const double* pts_s, int64_t n, int64_t num_frames) {
  require(num_frames >= 1, "candidate_frames: num_frames must be >= 1");
  require(n >= 0, "candidate_frames: negative frame count");
  std::vector<int64_t> out;
  if (n == 0) return out;
  const int64_t nc = std::min(num_frames, n);
  out.resize(static_cast<size_t>(nc));
  if (nc == n) {
    for (int64_t k = 0; k < n; ++k) out[k] = k;
    return out;
  }
  bool use_pts = true;
  for (int64_t i = 0; i < n && use_pts; ++i) {
    if (!std::isfinite(pts_s[i])) use_pts = false;
    if (i > 0 && use_pts && pts_s[i] < pts_s[i - 1]) use_pts = false;
  }
  if (use_pts && !(pts_s[n - 1] > pts_s[0])) use_pts = false;
  std::vector<double> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = use_pts ? pts_s[i] : static_cast<double>(i);
  const double t0 = t[0], t1 = t[n - 1];
  for (int64_t k = 0; k < nc; ++k) {
    const double tau = t0 + (t1 - t0) * (static_cast<double>(k) + 0.5) / static_cast<double>(nc);
    // first index with t >= tau
    const int64_t lb = std::lower_bound(t.begin(), t.end(), tau) - t.begin();
    int64_t best;
    if (lb >= n) {
      best = n - 1;
    } else if (lb == 0) {
      best = 0;
    } else {
      const double dl = tau - t[lb - 1];
      const double dr = t[lb] - tau;
      best = (dl <= dr) ? lb - 1 : lb;
      // equal times before lb-1: the smallest index with the same time
      if (best == lb - 1) {
        while (best > 0 && t[best - 1] == t[best]) --best;
      }
    }
    out[k] = best;
  }
  for (int64_t k = 1; k < nc; ++k) out[k] = std::max(out[k], out[k - 1] + 1);
  out[nc - 1] = std::min(out[nc - 1], n - 1);
  for (int64_t k = nc - 2; k >= 0; --k) out[k] = std::min(out[k], out[k + 1] - 1);
  return out;
}

}  // namespace ov2::tok

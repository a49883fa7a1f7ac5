// DESIGN §5.4 — per-pixel saliency S of a candidate frame from motion vectors and the luma residual.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenize/common.h"

namespace ov2::tok {

// Percentile q ∈ [0, 100] of n values with linear interpolation between order statistics (numpy's default
// "linear" method): pos = (q/100)·(n − 1), lo = floor(pos), hi = min(lo + 1, n − 1),
// value = x_(lo) + (x_(hi) − x_(lo))·(pos − lo). Reorders `v`. n must be ≥ 1.
double percentile_linear(double* v, int64_t n, double q);

// Histogram of |r| over n residual values: hist[v] = count of |r| == v, sized to max |r| + 1 (|r| ≤ 32768);
// returns max |r|. Counts in four interleaved tables (repeated values would serialise one table's counter).
int32_t abs_histogram(const int16_t* res, int64_t n, std::vector<int64_t>& hist);

// mv_field: [h4, w4, 4] float32 (L0 dx, L0 dy, L1 dx, L1 dy, pixels) or null; mv_flags: [h4, w4] uint8,
// bit 0 = the cell has an L0 vector, bit 1 = it has an L1 vector, 0 = no vector (intra); null = every cell
// has L0. A cell whose four values are not all finite counts as having no vector. Pixel (y, x) reads cell (y/4, x/4); h4 ≥ ceil(height/4), w4 ≥ ceil(width/4).
// residual: [height, width] int16 or null (R̄ = 0).
// S = (M̄ + R̄)/2 with
//   v = L0 where bit 0, else L1 where bit 1, else none (pixel not valid for M, M̄ = 0);
//   med = (median of v.x, median of v.y) over valid pixels (numpy median: mean of the two middle values);
//   M = sqrt((v.x − med.x)² + (v.y − med.y)²); M̄ = min(1, M / max(P95(M over valid pixels), 1e-6));
//   R = |residual|; R̄ = min(1, R / max(P95(R over all pixels), 1)).
// is_intra_frame → S = 0. Output S: [height, width] float32 (computed in double, rounded once).
// The two terms of S before they are combined: M̄ per 4×4 cell (row-major over ceil(H/4) × ceil(W/4); empty when
// there is no motion term) and R̄ as a table over |residual| (empty without residual). S at pixel (y, x) is
// (M̄[cell(y, x)] + R̄[|r(y, x)|]) / 2 in double, a missing term counting 0.
struct SaliencyTerms {
  int64_t cells_w = 0;
  std::vector<double> mbar;
  std::vector<double> rbar;
};
void saliency_terms(const float* mv_field, const uint8_t* mv_flags, int64_t h4, int64_t w4, const int16_t* residual,
                    int64_t height, int64_t width, SaliencyTerms& terms);

void saliency(const float* mv_field, const uint8_t* mv_flags, int64_t h4, int64_t w4, const int16_t* residual,
              int64_t height, int64_t width, bool is_intra_frame, float* out_s);

}  // namespace ov2::tok

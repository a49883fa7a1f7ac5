#include "tokenize/ovenc_saliency.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "tokenize/geometry.h"
#include "tokenize/saliency.h"

namespace ov2::tok {

Letterbox letterbox_geometry(int64_t height, int64_t width, int64_t size) {
  require(height >= 1 && width >= 1 && size >= 1, "letterbox: sizes must be positive");
  const double scale = static_cast<double>(size) / static_cast<double>(std::max(height, width));
  Letterbox lb;
  lb.size = size;
  // std::nearbyint in the default rounding mode rounds half to even, like Python's round()
  lb.hn = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(static_cast<double>(height) * scale)));
  lb.wn = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(static_cast<double>(width) * scale)));
  lb.top = (size - lb.hn) / 2;
  lb.left = (size - lb.wn) / 2;
  return lb;
}

namespace {

// Sparse form of the banded matrix A [g, ceil(n_in / cell)] that maps a map's rows (or columns) to patch rows
// (columns): A[r, k] = Σ of the bilinear weights with which output samples of patch r read source sample k
// (cell k of `cell` samples). Built like the reference: weights accumulated in double per source, then
// rounded to float32 (the reference's banded weights are float32). For each source k: its (patch, weight)
// pairs, patch ascending.
struct Taps {
  std::vector<int64_t> begin;  // [n_src + 1] offsets into patch / weight
  std::vector<int32_t> patch;
  std::vector<double> weight;
};

void build_taps(int64_t n_in, int64_t n_out, int64_t offset, int64_t patch, int64_t cell, int64_t g, Taps& t) {
  const int64_t n_src = (n_in + cell - 1) / cell;
  std::vector<double> m(static_cast<size_t>(g * n_src), 0.0);
  const double ratio = static_cast<double>(n_in) / static_cast<double>(n_out);
  for (int64_t o = 0; o < n_out; ++o) {
    const BilinearTap tap = bilinear_tap(o, ratio, n_in);
    const double w1 = static_cast<double>(static_cast<float>(tap.w1));  // the reference's float32 weight
    const int64_t r = (offset + o) / patch;
    if (r < 0 || r >= g) continue;
    m[static_cast<size_t>(r * n_src + tap.i0 / cell)] += 1.0 - w1;
    m[static_cast<size_t>(r * n_src + tap.i1 / cell)] += w1;
  }
  t.begin.assign(static_cast<size_t>(n_src + 1), 0);
  t.patch.clear();
  t.weight.clear();
  for (int64_t k = 0; k < n_src; ++k) {
    for (int64_t r = 0; r < g; ++r) {
      const double w = m[static_cast<size_t>(r * n_src + k)];
      if (w != 0.0) {
        t.patch.push_back(static_cast<int32_t>(r));
        t.weight.push_back(static_cast<double>(static_cast<float>(w)));
      }
    }
    t.begin[static_cast<size_t>(k + 1)] = static_cast<int64_t>(t.patch.size());
  }
}

// out[g, g] += A · X · Bᵀ for a map X [rows, cols] given row by row: `row_cols(k, cs)` adds source row k folded
// into patch columns (Σ over x of B[c, x]·X[k, x], zeros skipped) to cs [g]; the row is then added into the ≤ 2–3
// patch rows it feeds. Columns first, so the per-pixel work is one lookup and one or two multiply-adds, and none
// for the zeros that make up most of a residual.
template <typename RowCols>
void apply_banded(const Taps& a, int64_t rows, int64_t g, RowCols row_cols, double* out) {
  thread_local std::vector<double> cs;
  for (int64_t k = 0; k < rows; ++k) {
    const int64_t t0 = a.begin[static_cast<size_t>(k)], t1 = a.begin[static_cast<size_t>(k + 1)];
    if (t0 == t1) continue;
    cs.assign(static_cast<size_t>(g), 0.0);
    row_cols(k, cs.data());
    for (int64_t t = t0; t < t1; ++t) {
      double* dst = out + static_cast<int64_t>(a.patch[static_cast<size_t>(t)]) * g;
      const double w = a.weight[static_cast<size_t>(t)];
      for (int64_t c = 0; c < g; ++c) dst[c] += w * cs[static_cast<size_t>(c)];
    }
  }
}

// Source column x → patch columns: cs[c] += B[c, x]·v. Downscaling (every ov2 input larger than a patch per
// output patch) feeds at most two patch columns per source column: flat arrays, no inner loop (an unused second
// tap has weight 0 on column c0). Otherwise the general tap lists.
struct Columns {
  const Taps* b = nullptr;
  bool two = true;
  std::vector<int32_t> c0, c1;
  std::vector<double> w0, w1;
  explicit Columns(const Taps& taps) : b(&taps) {
    const size_t n = taps.begin.size() - 1;
    for (size_t x = 0; x < n && two; ++x) {
      const int64_t t0 = taps.begin[x], t1 = taps.begin[x + 1];
      two = t1 - t0 <= 2 && (t1 - t0 < 2 || taps.patch[static_cast<size_t>(t0 + 1)] == taps.patch[static_cast<size_t>(t0)] + 1) &&
            (x == 0 || t1 == t0 || taps.begin[x] == taps.begin[x - 1] ||
             taps.patch[static_cast<size_t>(t0)] >= taps.patch[static_cast<size_t>(taps.begin[x - 1])]);
    }
    if (!two) return;
    c0.assign(n, 0);
    c1.assign(n, 0);
    w0.assign(n, 0.0);
    w1.assign(n, 0.0);
    for (size_t x = 0; x < n; ++x) {
      const int64_t t0 = taps.begin[x], t1 = taps.begin[x + 1];
      if (t0 == t1) continue;  // feeds nothing: weights 0
      c0[x] = c1[x] = taps.patch[static_cast<size_t>(t0)];
      w0[x] = taps.weight[static_cast<size_t>(t0)];
      if (t1 - t0 == 2) {
        c1[x] = taps.patch[static_cast<size_t>(t0 + 1)];
        w1[x] = taps.weight[static_cast<size_t>(t0 + 1)];
      }
    }
  }
};

// Folds one source row into cs, column by column in ascending x: with two-tap columns (patch column c0 and
// c0 + 1, c0 non-decreasing in x) the running sums of the current pair of patch columns stay in registers and
// are added to cs when c0 moves on (no store-to-load chain through cs per pixel).
class RowFolder {
 public:
  RowFolder(const Columns& cols, double* cs, int64_t g) : k_(cols), cs_(cs), g_(g) {}
  ~RowFolder() { flush(); }
  void put(int64_t x, double v) {
    const size_t i = static_cast<size_t>(x);
    if (!k_.two) {
      for (int64_t t = k_.b->begin[i]; t < k_.b->begin[i + 1]; ++t)
        cs_[k_.b->patch[static_cast<size_t>(t)]] += k_.b->weight[static_cast<size_t>(t)] * v;
      return;
    }
    const int64_t c = k_.c0[i];
    if (c != cur_) {
      flush();
      cur_ = c;
    }
    a_ += k_.w0[i] * v;
    b_ += k_.w1[i] * v;  // patch column cur + 1 (weight 0 where x feeds one column only)
  }

 private:
  void flush() {
    if (cur_ >= 0) {
      cs_[cur_] += a_;
      if (cur_ + 1 < g_) cs_[cur_ + 1] += b_;
    }
    a_ = b_ = 0.0;
  }
  const Columns& k_;
  double* cs_;
  int64_t g_, cur_ = -1;
  double a_ = 0.0, b_ = 0.0;
};

// out += the patch sums of a map [height/cell, width/cell] letterboxed into the square (cell 1: pixels, 4: the 4×4
// cells of the vectors): `row(y, fold)` puts source row y's values with fold.put(x, v).
// The row and column taps of one geometry, built once per thread and reused while the geometry stays (every frame
// of a video has the same one).
struct Geometry {
  int64_t key[9] = {-1, -1, -1, -1, -1, -1, -1, -1, -1};
  Taps ta, tb;
  std::unique_ptr<Columns> cols;
};

const Geometry& geometry_for(int64_t height, int64_t width, int64_t cell, const Letterbox& lb, int64_t patch,
                             int64_t g) {
  thread_local Geometry cache[2];  // pixels (cell 1) and 4×4 cells (cell 4)
  Geometry& c = cache[cell == 1 ? 0 : 1];
  const int64_t key[9] = {height, width, cell, lb.hn, lb.wn, lb.top, lb.left, patch, g};
  if (!std::equal(key, key + 9, c.key) || !c.cols) {
    build_taps(height, lb.hn, lb.top, patch, cell, g, c.ta);
    build_taps(width, lb.wn, lb.left, patch, cell, g, c.tb);
    c.cols = std::make_unique<Columns>(c.tb);
    std::copy(key, key + 9, c.key);
  }
  return c;
}

template <typename Row>
void letterboxed_patch_sums(int64_t height, int64_t width, int64_t cell, const Letterbox& lb, int64_t patch, int64_t g,
                            Row row, double* out) {
  const Geometry& geo = geometry_for(height, width, cell, lb, patch, g);
  const Taps& ta = geo.ta;
  const Columns& cols = *geo.cols;
  apply_banded(ta, (height + cell - 1) / cell, g,
               [&](int64_t y, double* cs) {
                 RowFolder fold(cols, cs, g);
                 row(y, fold);
               },
               out);
}

// numpy's linear-interpolation percentile of the integer sample whose histogram is `counts`
double percentile_of_counts(const std::vector<int64_t>& counts, double q) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  if (n == 0) return 0.0;
  const double k = (q / 100.0) * static_cast<double>(n - 1);
  const int64_t lo = static_cast<int64_t>(std::floor(k));
  const int64_t hi = std::min(lo + 1, n - 1);
  int64_t v_lo = -1, v_hi = -1, cum = 0;
  for (size_t v = 0; v < counts.size() && v_hi < 0; ++v) {
    cum += counts[v];
    if (v_lo < 0 && cum > lo) v_lo = static_cast<int64_t>(v);
    if (cum > hi) v_hi = static_cast<int64_t>(v);
  }
  return static_cast<double>(v_lo) + (k - static_cast<double>(lo)) * static_cast<double>(v_hi - v_lo);
}

}  // namespace

void ovenc_patch_scores(int64_t height, int64_t width, const float* mv_field, const uint8_t* mv_flags, int64_t h4,
                        int64_t w4, const int16_t* residual, bool is_intra_frame, int64_t size, int64_t patch,
                        double percentile, double* out) {
  require(height >= 1 && width >= 1, "ovenc_patch_scores: frame size must be positive");
  require(patch >= 1 && size >= patch, "ovenc_patch_scores: need size >= patch >= 1");
  require(percentile >= 0.0 && percentile <= 100.0, "ovenc_patch_scores: percentile must lie in [0, 100]");
  const int64_t g = size / patch;
  std::fill(out, out + g * g, 0.0);
  if (is_intra_frame || (!mv_field && !residual)) return;
  const Letterbox lb = letterbox_geometry(height, width, size);
  const int64_t ch = (height + 3) / 4, cw = (width + 3) / 4;

  if (residual) {
    // R̄ as a table over |r|: min(|r| / a, 1) rounded to float32 like the reference's lookup table
    thread_local std::vector<int64_t> counts;
    abs_histogram(residual, height * width, counts);
    const double a = std::max(percentile_of_counts(counts, percentile), 1.0);
    thread_local std::vector<double> lut;
    lut.resize(counts.size());
    for (size_t v = 0; v < lut.size(); ++v)
      lut[v] = static_cast<double>(static_cast<float>(std::min(static_cast<double>(v) / a, 1.0)));
    const double* pl = lut.data();
    letterboxed_patch_sums(height, width, 1, lb, patch, g,
                           [&](int64_t y, RowFolder& fold) {
                             const int16_t* src = residual + y * width;
                             int64_t x = 0;
                             for (; x + 8 <= width; x += 8) {
                               uint64_t q[2];
                               std::memcpy(q, src + x, sizeof q);
                               if ((q[0] | q[1]) == 0) continue;  // eight zeros: R̄ = 0
                               // no per-pixel test (zeros add R̄ = 0 exactly): scattered non-zeros would mispredict it
                               for (int64_t k = x; k < x + 8; ++k) fold.put(k, pl[std::abs(static_cast<int32_t>(src[k]))]);
                             }
                             for (; x < width; ++x) fold.put(x, pl[std::abs(static_cast<int32_t>(src[x]))]);
                           },
                           out);
  }

  if (mv_field) {
    require(h4 >= ch && w4 >= cw, "ovenc_patch_scores: mv_field grid smaller than ceil(frame/4)");
    const size_t n = static_cast<size_t>(h4 * w4);
    thread_local std::vector<double> vx, vy, tmp, mag;
    vx.resize(n);
    vy.resize(n);
    for (size_t c = 0; c < n; ++c) {
      const uint8_t fl = mv_flags ? mv_flags[c] : uint8_t{1};
      const float* v = mv_field + c * 4;
      if (fl & 1u) {
        vx[c] = v[0];
        vy[c] = v[1];
      } else if (fl & 2u) {
        vx[c] = v[2];
        vy[c] = v[3];
      } else {
        vx[c] = vy[c] = 0.0;
      }
    }
    auto median = [&](const std::vector<double>& v) {  // numpy's median: mean of the two middle values
      tmp.assign(v.begin(), v.end());
      const size_t mid = n / 2;
      std::nth_element(tmp.begin(), tmp.begin() + static_cast<std::ptrdiff_t>(mid), tmp.end());
      const double upper = tmp[mid];
      if (n % 2 == 1) return upper;
      const double lower = *std::max_element(tmp.begin(), tmp.begin() + static_cast<std::ptrdiff_t>(mid));
      return (lower + upper) / 2.0;
    };
    const double mx = median(vx), my = median(vy);
    mag.resize(n);
    for (size_t c = 0; c < n; ++c) {
      const double dx = vx[c] - mx, dy = vy[c] - my;
      mag[c] = std::sqrt(dx * dx + dy * dy);
    }
    tmp.assign(mag.begin(), mag.end());
    const double a = std::max(percentile_linear(tmp.data(), static_cast<int64_t>(n), percentile), 1e-6);
    const double* pm = mag.data();
    letterboxed_patch_sums(height, width, 4, lb, patch, g,
                           [&](int64_t y, RowFolder& fold) {
                             const double* src = pm + y * w4;
                             for (int64_t x = 0; x < cw; ++x) fold.put(x, std::min(src[x] / a, 1.0));
                           },
                           out);
  }
  for (int64_t i = 0; i < g * g; ++i) out[i] *= 0.5;
}

}  // namespace ov2::tok

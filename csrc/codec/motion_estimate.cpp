#include "codec/motion_estimate.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "codec/motion.h"

namespace ov2 {
namespace {

constexpr int kB = MotionEstimator::kBlock;          // 16
constexpr int kHB = kB / 2;                          // 8: the block at half resolution
constexpr int kR = MotionEstimator::kRange;          // 64 full pixels
constexpr int kRH = kR / 2;                          // 32 half-res pixels
constexpr int kPadFull = 80;                         // full-res reads stay within [-kR - 1, bw * 16 + kR + 1)
constexpr int kPadHalf = kPadFull / 2;               // 40 >= kRH + kHB; the half plane is made from the full one
constexpr int kLambdaHalf = 4;                       // SAD units per half-res pixel away from the median predictor
constexpr int kLambdaFull = 4;                       // SAD units per full pixel away from the median predictor
constexpr int kEarlyHalfSad = kHB * kHB;             // coarse SAD below this (mean |diff| < 1): no diamond search
constexpr int kLargeHalfSad = kHB * kHB * 4;         // coarse SAD below this (mean |diff| < 4): small diamond only
constexpr int kEarlyFullSad = kB * kB;               // full SAD below this (mean |diff| < 1): no refinement
constexpr int kIntraMargin = kB * kB * 4;            // inter SAD > deviation + this (mean 4 per pixel): intra
constexpr int kMaxLargeSteps = 8, kMaxSmallSteps = 8, kMaxFullSteps = 4;

struct V {
  int x = 0, y = 0;
};

inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
inline int median3(int a, int b, int c) { return std::max(std::min(a, b), std::min(std::max(a, b), c)); }

// ---- SAD kernels. `cur` is a contiguous block (row stride = block width), `ref` a strided picture. -------------
#if defined(__SSE2__)
inline int hsum_sad(__m128i acc) { return _mm_cvtsi128_si32(acc) + _mm_cvtsi128_si32(_mm_srli_si128(acc, 8)); }

inline int sad8x8(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs) {
  __m128i acc = _mm_setzero_si128();
  for (int r = 0; r < 8; r += 2) {
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + r * 8));
    const __m128i p = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ref + r * rs)),
                                         _mm_loadl_epi64(reinterpret_cast<const __m128i*>(ref + (r + 1) * rs)));
    acc = _mm_add_epi64(acc, _mm_sad_epu8(c, p));
  }
  return hsum_sad(acc);
}

inline int sad16x16(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs) {
  __m128i acc = _mm_setzero_si128();
  for (int r = 0; r < 16; ++r) {
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + r * 16));
    const __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ref + r * rs));
    acc = _mm_add_epi64(acc, _mm_sad_epu8(c, p));
  }
  return hsum_sad(acc);
}

// Half pel between ref[x] and ref[x + step]: (a + b + 1) >> 1, exactly Interp::Bilinear at scale 4.
inline int sad16x16_avg(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs, ptrdiff_t step) {
  __m128i acc = _mm_setzero_si128();
  for (int r = 0; r < 16; ++r) {
    const uint8_t* q = ref + r * rs;
    const __m128i p = _mm_avg_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)),
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + step)));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + r * 16));
    acc = _mm_add_epi64(acc, _mm_sad_epu8(c, p));
  }
  return hsum_sad(acc);
}

// Diagonal half pel: (a + b + c + d + 2) >> 2, exactly Interp::Bilinear at scale 4.
inline int sad16x16_diag(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs) {
  const __m128i z = _mm_setzero_si128(), two = _mm_set1_epi16(2);
  __m128i acc = _mm_setzero_si128();
  for (int r = 0; r < 16; ++r) {
    const uint8_t* q = ref + r * rs;
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 1));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + rs));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + rs + 1));
    __m128i lo = _mm_add_epi16(_mm_add_epi16(_mm_unpacklo_epi8(a, z), _mm_unpacklo_epi8(b, z)),
                               _mm_add_epi16(_mm_unpacklo_epi8(c, z), _mm_unpacklo_epi8(d, z)));
    __m128i hi = _mm_add_epi16(_mm_add_epi16(_mm_unpackhi_epi8(a, z), _mm_unpackhi_epi8(b, z)),
                               _mm_add_epi16(_mm_unpackhi_epi8(c, z), _mm_unpackhi_epi8(d, z)));
    lo = _mm_srli_epi16(_mm_add_epi16(lo, two), 2);
    hi = _mm_srli_epi16(_mm_add_epi16(hi, two), 2);
    const __m128i p = _mm_packus_epi16(lo, hi);
    acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + r * 16)), p));
  }
  return hsum_sad(acc);
}

// Sum of |x - mean| over a contiguous 16x16 block (the intra cost proxy).
inline int deviation16x16(const uint8_t* cur) {
  const __m128i z = _mm_setzero_si128();
  __m128i acc = z;
  for (int r = 0; r < 16; ++r) acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + r * 16)), z));
  const int mean = (hsum_sad(acc) + 128) >> 8;
  const __m128i m = _mm_set1_epi8(static_cast<char>(mean));
  acc = z;
  for (int r = 0; r < 16; ++r) acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + r * 16)), m));
  return hsum_sad(acc);
}

// 2x2 average with rounding of two full-resolution rows into `n` (a multiple of 8) half-resolution samples.
inline void downsample_row(const uint8_t* r0, const uint8_t* r1, uint8_t* out, int n) {
  const __m128i mask = _mm_set1_epi16(0x00ff), two = _mm_set1_epi16(2);
  for (int x = 0; x < n; x += 8) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + 2 * x));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + 2 * x));
    __m128i s = _mm_add_epi16(_mm_add_epi16(_mm_and_si128(a, mask), _mm_srli_epi16(a, 8)),
                              _mm_add_epi16(_mm_and_si128(b, mask), _mm_srli_epi16(b, 8)));
    s = _mm_srli_epi16(_mm_add_epi16(s, two), 2);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + x), _mm_packus_epi16(s, s));
  }
}
#else
inline int sad_generic(const uint8_t* cur, int n, const uint8_t* ref, ptrdiff_t rs) {
  int s = 0;
  for (int r = 0; r < n; ++r)
    for (int x = 0; x < n; ++x) s += std::abs(static_cast<int>(cur[r * n + x]) - static_cast<int>(ref[r * rs + x]));
  return s;
}
inline int sad8x8(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs) { return sad_generic(cur, 8, ref, rs); }
inline int sad16x16(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs) { return sad_generic(cur, 16, ref, rs); }
inline int sad16x16_avg(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs, ptrdiff_t step) {
  int s = 0;
  for (int r = 0; r < 16; ++r)
    for (int x = 0; x < 16; ++x) {
      const uint8_t* q = ref + r * rs + x;
      s += std::abs(static_cast<int>(cur[r * 16 + x]) - ((q[0] + q[step] + 1) >> 1));
    }
  return s;
}
inline int sad16x16_diag(const uint8_t* cur, const uint8_t* ref, ptrdiff_t rs) {
  int s = 0;
  for (int r = 0; r < 16; ++r)
    for (int x = 0; x < 16; ++x) {
      const uint8_t* q = ref + r * rs + x;
      s += std::abs(static_cast<int>(cur[r * 16 + x]) - ((q[0] + q[1] + q[rs] + q[rs + 1] + 2) >> 2));
    }
  return s;
}
inline int deviation16x16(const uint8_t* cur) {
  int sum = 0;
  for (int i = 0; i < 256; ++i) sum += cur[i];
  const int mean = (sum + 128) >> 8;
  int s = 0;
  for (int i = 0; i < 256; ++i) s += std::abs(static_cast<int>(cur[i]) - mean);
  return s;
}
inline void downsample_row(const uint8_t* r0, const uint8_t* r1, uint8_t* out, int n) {
  for (int x = 0; x < n; ++x) out[x] = static_cast<uint8_t>((r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1] + 2) >> 2);
}
#endif

// SAD memo over a square window of vectors, reset per block by a generation stamp (O(1) reset).
class Memo {
 public:
  explicit Memo(int range) : range_(range), side_(2 * range + 1) {
    stamp_.assign(static_cast<size_t>(side_) * side_, 0);
    sad_.assign(stamp_.size(), 0);
  }
  void next_block() {
    if (++gen_ == 0) {  // wrapped: clear the stamps once
      std::fill(stamp_.begin(), stamp_.end(), 0u);
      gen_ = 1;
    }
  }
  bool inside(V v) const { return v.x >= -range_ && v.x <= range_ && v.y >= -range_ && v.y <= range_; }
  // Returns the cached SAD of v, or computes it with f(v) and caches it. v must be inside().
  template <class F>
  int get(V v, F&& f) {
    const size_t k = static_cast<size_t>(v.y + range_) * side_ + (v.x + range_);
    if (stamp_[k] == gen_) return sad_[k];
    const int s = f(v);
    stamp_[k] = gen_;
    sad_[k] = s;
    return s;
  }

 private:
  int range_, side_;
  uint32_t gen_ = 0;
  std::vector<uint32_t> stamp_;
  std::vector<int> sad_;
};

// Minimises cost(v) = sad(v) + lambda * |v - pred|_1 by iterated diamonds starting at `best`.
template <class S>
void diamond(V& best, int& best_cost, V pred, int lambda, Memo& memo, S&& sad, const V* pattern, int npat,
             int max_steps) {
  for (int step = 0; step < max_steps; ++step) {
    const V c = best;
    for (int i = 0; i < npat; ++i) {
      const V v{c.x + pattern[i].x, c.y + pattern[i].y};
      if (!memo.inside(v)) continue;
      const int cost = memo.get(v, sad) + lambda * (std::abs(v.x - pred.x) + std::abs(v.y - pred.y));
      if (cost < best_cost) {
        best_cost = cost;
        best = v;
      }
    }
    if (best.x == c.x && best.y == c.y) return;
  }
}

// Half pel around the integer vector `best` on the side of its lower axis neighbours: horizontal, vertical and
// diagonal bilinear positions (exactly Interp::Bilinear at motion_scale 4). Returns the best SAD, integer
// position included (kept on ties); *hx, *hy receive -1, 0 or +1 half pixel.
template <class S>
int half_pel(V best, Memo& memo, S&& sad, const uint8_t* rf, ptrdiff_t fs, const uint8_t* cb, int* hx, int* hy) {
  const int s0 = memo.get(best, sad);
  const int sxm = memo.get(V{best.x - 1, best.y}, sad), sxp = memo.get(V{best.x + 1, best.y}, sad);
  const int sym = memo.get(V{best.x, best.y - 1}, sad), syp = memo.get(V{best.x, best.y + 1}, sad);
  const int sx = sxp < sxm ? 1 : -1, sy = syp < sym ? 1 : -1;
  const uint8_t* base = rf + best.y * fs + best.x;
  const ptrdiff_t ox = sx < 0 ? -1 : 0, oy = sy < 0 ? -fs : 0;
  int best_sad = s0;
  *hx = *hy = 0;
  const int sh = sad16x16_avg(cb, base + ox, fs, 1);
  if (sh < best_sad) {
    best_sad = sh;
    *hx = sx;
    *hy = 0;
  }
  const int sv = sad16x16_avg(cb, base + oy, fs, fs);
  if (sv < best_sad) {
    best_sad = sv;
    *hx = 0;
    *hy = sy;
  }
  const int sd = sad16x16_diag(cb, base + ox + oy, fs);
  if (sd < best_sad) {
    best_sad = sd;
    *hx = sx;
    *hy = sy;
  }
  return best_sad;
}

constexpr V kLarge[8] = {{0, -2}, {-1, -1}, {1, -1}, {-2, 0}, {2, 0}, {-1, 1}, {1, 1}, {0, 2}};
constexpr V kSmall[4] = {{0, -1}, {-1, 0}, {1, 0}, {0, 1}};

}  // namespace

void MotionEstimator::prepare(Prepared& s, const Plane& p, uint64_t tag) {
  const int W = p.width, H = p.height;
  const int bw = (W + kB - 1) / kB, bh = (H + kB - 1) / kB;
  // Full resolution: [-kPadFull, bw * 16 + kPadFull) in both directions, edge-extended.
  const int fw = bw * kB + 2 * kPadFull, fh = bh * kB + 2 * kPadFull;
  s.full_stride = fw;
  s.full_buf.resize(static_cast<size_t>(fw) * fh + 16);  // + 16: slack for unaligned 16-byte loads
  uint8_t* fb = s.full_buf.data();
  for (int yy = 0; yy < fh; ++yy) {
    const int sy = clampi(yy - kPadFull, 0, H - 1);
    uint8_t* d = fb + static_cast<size_t>(yy) * fw;
    if (yy > 0 && clampi(yy - 1 - kPadFull, 0, H - 1) == sy) {  // extension rows repeat the edge row
      std::memcpy(d, d - fw, static_cast<size_t>(fw));
      continue;
    }
    const uint8_t* src = p.data + static_cast<ptrdiff_t>(sy) * p.stride;
    std::memset(d, src[0], kPadFull);
    std::memcpy(d + kPadFull, src, static_cast<size_t>(W));
    std::memset(d + kPadFull + W, src[W - 1], static_cast<size_t>(fw - kPadFull - W));
  }
  std::memset(fb + static_cast<size_t>(fw) * fh, 0, 16);
  s.full = fb + static_cast<ptrdiff_t>(kPadFull) * fw + kPadFull;
  // Half resolution: [-kPadHalf, bw * 8 + kPadHalf), from the extended full picture.
  const int hw = fw / 2, hh = fh / 2;
  s.half_stride = hw;
  s.half_buf.resize(static_cast<size_t>(hw) * hh + 16);
  uint8_t* hb = s.half_buf.data();
  for (int y = 0; y < hh; ++y)
    downsample_row(fb + static_cast<size_t>(2 * y) * fw, fb + static_cast<size_t>(2 * y + 1) * fw,
                   hb + static_cast<size_t>(y) * hw, hw);
  std::memset(hb + static_cast<size_t>(hw) * hh, 0, 16);
  s.half = hb + static_cast<ptrdiff_t>(kPadHalf) * hw + kPadHalf;
  s.width = W;
  s.height = H;
  s.tag = tag;
}

int MotionEstimator::find(const Plane& p, uint64_t tag) const {
  for (int i = 0; i < 2; ++i)
    if (tag != 0 && slots_[i].tag == tag && slots_[i].width == p.width && slots_[i].height == p.height) return i;
  return -1;
}

int64_t MotionEstimator::estimate(const Plane& cur, uint64_t cur_tag, const Plane& ref, uint64_t ref_tag,
                                  std::vector<int32_t>& rows) {
  rows.clear();
  if (!cur.data || !ref.data || cur.width <= 0 || cur.height <= 0 || cur.width != ref.width ||
      cur.height != ref.height || cur.stride < cur.width || ref.stride < ref.width)
    return 0;
  // Reuse the prepared planes of a picture seen in the previous call (usually: the reference was the previous
  // call's current picture); the two pictures never share a slot.
  int ri = find(ref, ref_tag), ci = find(cur, cur_tag);
  if (ci == ri) ci = -1;
  if (ri < 0) {
    ri = ci == 0 ? 1 : 0;
    prepare(slots_[ri], ref, ref_tag);
  }
  if (ci < 0) {
    ci = 1 - ri;
    prepare(slots_[ci], cur, cur_tag);
  }
  const Prepared& R = slots_[ri];
  const Prepared& C = slots_[ci];

  const int W = cur.width, H = cur.height;
  const int bw = (W + kB - 1) / kB, bh = (H + kB - 1) / kB;
  const size_t nb = static_cast<size_t>(bw) * bh;
  half_mv_.assign(nb * 2, 0);
  full_mv_.assign(nb * 2, 0);
  inter_.assign(nb, 0);
  rows.resize(nb * kMvCols);
  int32_t* out = rows.data();
  Memo memo_half(kRH), memo_full(kR + 1);

  alignas(16) uint8_t cb_half[kHB * kHB];
  alignas(16) uint8_t cb_full[kB * kB];
  const ptrdiff_t hs = C.half_stride, fs = C.full_stride;

  for (int by = 0; by < bh; ++by) {
    for (int bx = 0; bx < bw; ++bx) {
      const size_t b = static_cast<size_t>(by) * bw + bx;
      const int hx0 = bx * kHB, hy0 = by * kHB, fx0 = bx * kB, fy0 = by * kB;
      for (int r = 0; r < kHB; ++r) std::memcpy(cb_half + r * kHB, C.half + (hy0 + r) * hs + hx0, kHB);
      for (int r = 0; r < kB; ++r) std::memcpy(cb_full + r * kB, C.full + (fy0 + r) * fs + fx0, kB);

      // Neighbours (left, top, top-right) that got a vector.
      const bool has_l = bx > 0 && inter_[b - 1];
      const bool has_t = by > 0 && inter_[b - bw];
      const bool has_tr = by > 0 && bx + 1 < bw && inter_[b - bw + 1];
      auto nb_half = [&](bool has, size_t k) { return has ? V{half_mv_[2 * k], half_mv_[2 * k + 1]} : V{}; };
      auto nb_full = [&](bool has, size_t k) { return has ? V{full_mv_[2 * k], full_mv_[2 * k + 1]} : V{}; };
      const V hl = nb_half(has_l, b - 1), ht = nb_half(has_t, b - bw), htr = nb_half(has_tr, b - bw + 1);
      const V fl = nb_full(has_l, b - 1), ft = nb_full(has_t, b - bw), ftr = nb_full(has_tr, b - bw + 1);

      // 1. Coarse search at half resolution.
      memo_half.next_block();
      const uint8_t* rh = R.half + hy0 * hs + hx0;
      auto sad_h = [&](V v) { return sad8x8(cb_half, rh + v.y * hs + v.x, hs); };
      const V hpred{median3(hl.x, ht.x, htr.x), median3(hl.y, ht.y, htr.y)};
      V hbest{};
      int hbest_cost = INT_MAX;
      const V hcand[4] = {V{}, hl, ht, htr};
      const bool hcand_ok[4] = {true, has_l, has_t, has_tr};
      for (int i = 0; i < 4; ++i) {
        if (!hcand_ok[i]) continue;
        const V v{clampi(hcand[i].x, -kRH, kRH), clampi(hcand[i].y, -kRH, kRH)};
        const int cost = memo_half.get(v, sad_h) + kLambdaHalf * (std::abs(v.x - hpred.x) + std::abs(v.y - hpred.y));
        if (cost < hbest_cost) {
          hbest_cost = cost;
          hbest = v;
        }
      }
      if (memo_half.get(hbest, sad_h) >= kEarlyHalfSad) {
        if (memo_half.get(hbest, sad_h) >= kLargeHalfSad)
          diamond(hbest, hbest_cost, hpred, kLambdaHalf, memo_half, sad_h, kLarge, 8, kMaxLargeSteps);
        diamond(hbest, hbest_cost, hpred, kLambdaHalf, memo_half, sad_h, kSmall, 4, kMaxSmallSteps);
      }
      half_mv_[2 * b] = static_cast<int16_t>(hbest.x);
      half_mv_[2 * b + 1] = static_cast<int16_t>(hbest.y);

      // 2. Integer-pel refinement at full resolution.
      memo_full.next_block();
      const uint8_t* rf = R.full + fy0 * fs + fx0;
      auto sad_f = [&](V v) { return sad16x16(cb_full, rf + v.y * fs + v.x, fs); };
      const V fpred{median3(fl.x, ft.x, ftr.x), median3(fl.y, ft.y, ftr.y)};
      V fbest{};
      int fbest_cost = INT_MAX;
      const V fcand[3] = {V{2 * hbest.x, 2 * hbest.y}, fl, ft};
      const bool fcand_ok[3] = {true, has_l, has_t};
      for (int i = 0; i < 3; ++i) {
        if (!fcand_ok[i]) continue;
        const V v{clampi(fcand[i].x, -kR, kR), clampi(fcand[i].y, -kR, kR)};
        const int cost = memo_full.get(v, sad_f) + kLambdaFull * (std::abs(v.x - fpred.x) + std::abs(v.y - fpred.y));
        if (cost < fbest_cost) {
          fbest_cost = cost;
          fbest = v;
        }
      }
      // The memo spans kR + 1 so that the axis neighbours of a vector at the range bound can be read, but the
      // search itself stays within +-kR.
      auto sad_fr = [&](V v) { return (std::abs(v.x) > kR || std::abs(v.y) > kR) ? INT_MAX / 4 : sad_f(v); };
      int best_sad = memo_full.get(fbest, sad_fr), hx = 0, hy = 0;
      if (best_sad >= kEarlyFullSad) {
        diamond(fbest, fbest_cost, fpred, kLambdaFull, memo_full, sad_fr, kSmall, 4, kMaxFullSteps);
        best_sad = half_pel(fbest, memo_full, sad_fr, rf, fs, cb_full, &hx, &hy);
      }
      full_mv_[2 * b] = static_cast<int16_t>(fbest.x);
      full_mv_[2 * b + 1] = static_cast<int16_t>(fbest.y);

      // Intra decision: an encoder would code the block intra when no prediction beats its own texture.
      if (best_sad > kIntraMargin && best_sad > deviation16x16(cb_full) + kIntraMargin) continue;
      inter_[b] = 1;
      const int mx = kScale * fbest.x + 2 * hx, my = kScale * fbest.y + 2 * hy;
      const int dst_x = fx0 + kB / 2, dst_y = fy0 + kB / 2;
      const int32_t row[kMvCols] = {-1, kB, kB, dst_x + mx / kScale, dst_y + my / kScale, dst_x, dst_y, mx, my, kScale};
      std::copy(row, row + kMvCols, out);
      out += kMvCols;
    }
  }
  rows.resize(static_cast<size_t>(out - rows.data()));
  return static_cast<int64_t>(rows.size() / kMvCols);
}

}  // namespace ov2

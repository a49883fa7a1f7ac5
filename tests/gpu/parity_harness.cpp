// CPU-side evidence that the GPU kernels compute what csrc/tokenize (and csrc/codec/residual) compute.
//
// The kernels in csrc/cuda are thin loops around __host__ __device__ functions (csrc/cuda/*_math.cuh). This
// program compiles those headers with g++ (-ffp-contract=off, as csrc/tokenize is built), replays every kernel's
// index space and reduction structure on the host — per-output functions over all outputs, the radix select of
// saliency.cu pass by pass, the merge-rank pool order of allocation.cu — and compares the results with the CPU
// reference functions on seeded random inputs, bit for bit. Built and run by tests/gpu/test_device_math.py.
// Prints one line per check ("ok <name> <cases>" or "FAIL <name> ..."); exit status 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/allocation_math.cuh"
#include "cuda/block_score.h"
#include "cuda/block_score_math.cuh"
#include "cuda/geometry_math.cuh"
#include "cuda/gop_math.cuh"
#include "cuda/packing_math.cuh"
#include "cuda/saliency_math.cuh"
#include "codec/rgb.h"
#include "tokenize/allocation.h"
#include "tokenize/block_score.h"
#include "tokenize/geometry.h"
#include "tokenize/gop_partition.h"
#include "tokenize/packing.h"
#include "tokenize/saliency.h"
#ifdef OV2_HARNESS_CODEC
#include "codec/motion.h"
#include "codec/residual.h"
#include "cuda/residual_math.cuh"
#endif

namespace oc = ov2::cuda;
namespace tk = ov2::tok;

static int failures = 0;
static std::mt19937_64 rng(20240613);

static int64_t rint_(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }
static double runif(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

template <class T>
static bool same_bits(const T* a, const T* b, size_t n) { return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0; }

static void report(const char* name, bool ok, int cases, const std::string& detail = "") {
  if (ok) {
    std::printf("ok %s %d\n", name, cases);
  } else {
    ++failures;
    std::printf("FAIL %s %s\n", name, detail.c_str());
  }
}

// ---------------------------------------------------------------- geometry
static void check_geometry() {
  bool ok = true;
  std::string why;
  int cases = 0;
  for (int it = 0; it < 40 && ok; ++it, ++cases) {
    const int64_t sh = rint_(1, 90), sw = rint_(1, 90), ch = rint_(1, 3), dh = rint_(1, 90), dw = rint_(1, 90);
    std::vector<uint8_t> src(static_cast<size_t>(sh * sw * ch));
    for (auto& v : src) v = static_cast<uint8_t>(rint_(0, 255));
    std::vector<uint8_t> ref(static_cast<size_t>(dh * dw * ch)), dev(ref.size());
    tk::resize_bilinear_u8(src.data(), sh, sw, ch, ref.data(), dh, dw);
    for (int64_t q = 0; q < dh * dw * ch; ++q)  // bilinear_kernel's index space
      dev[q] = oc::bilinear_sample(src.data(), sh, sw, ch, dh, dw, q / (dw * ch), (q / ch) % dw, q % ch);
    if (ref != dev) ok = false, why = "bilinear " + std::to_string(sh) + "x" + std::to_string(sw);
  }
  report("resize_bilinear_u8", ok, cases, why);
  ok = true;
  cases = 0;
  for (int it = 0; it < 40 && ok; ++it, ++cases) {
    const int64_t sh = rint_(1, 70), sw = rint_(1, 70), dh = rint_(1, 70), dw = rint_(1, 70);
    std::vector<float> src(static_cast<size_t>(sh * sw));
    for (auto& v : src) v = static_cast<float>(runif(-3, 3));
    std::vector<float> ref(static_cast<size_t>(dh * dw)), dev(ref.size());
    tk::resize_area_f32(src.data(), sh, sw, ref.data(), dh, dw);
    for (int64_t q = 0; q < dh * dw; ++q) dev[q] = oc::area_resize_at(src.data(), sh, sw, dh, dw, q / dw, q % dw);
    if (!same_bits(ref.data(), dev.data(), ref.size()))
      ok = false, why = "area " + std::to_string(sh) + "x" + std::to_string(sw) + "->" + std::to_string(dh) + "x" +
                        std::to_string(dw);
  }
  report("resize_area_f32", ok, cases, why);
  ok = true;
  cases = 0;
  for (int it = 0; it < 200 && ok; ++it, ++cases) {
    const int64_t group = rint_(1, 30), dn = group * rint_(1, 30), sn = rint_(1, 2000);
    const tk::AreaTaps t = tk::grouped_area_taps(sn, dn, group);
    const int64_t ng = dn / group, stride = oc::max_group_span(sn, dn, group);
    std::vector<int64_t> start(static_cast<size_t>(ng));
    std::vector<int32_t> count(static_cast<size_t>(ng));
    std::vector<double> weight(static_cast<size_t>(ng * stride));
    for (int64_t g = 0; g < ng; ++g) oc::fill_taps_group(sn, dn, group, g, stride, start.data(), count.data(), weight.data());
    for (int64_t g = 0; g < ng && ok; ++g) {
      const int64_t n = t.begin[g + 1] - t.begin[g];
      if (n != count[g] || (n > 0 && t.index[t.begin[g]] != start[g]) || n > stride) {
        ok = false, why = "taps range sn=" + std::to_string(sn) + " dn=" + std::to_string(dn);
        break;
      }
      for (int64_t k = 0; k < n; ++k)
        if (t.index[t.begin[g] + k] != start[g] + k || !same_bits(&t.weight[t.begin[g] + k], &weight[g * stride + k], 1)) {
          ok = false, why = "taps weight sn=" + std::to_string(sn) + " dn=" + std::to_string(dn);
          break;
        }
    }
  }
  report("grouped_area_taps", ok, cases, why);
}

// ---------------------------------------------------------------- saliency (terms_kernel replayed)
struct Frame {
  int64_t H, W, h4, w4;
  std::vector<float> field;
  std::vector<uint8_t> flags;
  std::vector<int16_t> res;
  std::vector<float> cost;
  bool intra;
};

static Frame random_frame(bool allow_extreme) {
  Frame f;
  f.H = rint_(1, 70);
  f.W = rint_(1, 70);
  f.h4 = (f.H + 3) / 4 + rint_(0, 1);
  f.w4 = (f.W + 3) / 4 + rint_(0, 1);
  f.field.resize(static_cast<size_t>(f.h4 * f.w4 * 4));
  f.flags.resize(static_cast<size_t>(f.h4 * f.w4));
  const int style = static_cast<int>(rint_(0, 3));  // 0 continuous, 1 quarter-pel ties, 2 all equal, 3 sparse
  for (size_t c = 0; c < f.flags.size(); ++c) {
    f.flags[c] = static_cast<uint8_t>(style == 3 ? (rint_(0, 5) == 0 ? 1 : 0) : rint_(0, 3));
    for (int k = 0; k < 4; ++k) {
      double v = style == 0 ? runif(-20, 20) : (style == 1 ? static_cast<double>(rint_(-12, 12)) / 4.0 : 1.25);
      f.field[c * 4 + k] = static_cast<float>(v);
    }
    if (allow_extreme && rint_(0, 40) == 0) f.field[c * 4 + rint_(0, 3)] = std::numeric_limits<float>::quiet_NaN();
    if (rint_(0, 30) == 0) f.field[c * 4] = -0.0f;
  }
  f.res.resize(static_cast<size_t>(f.H * f.W));
  const int rmax = static_cast<int>(rint_(0, 3)) == 0 ? 30000 : static_cast<int>(rint_(0, 255));
  for (auto& r : f.res) r = static_cast<int16_t>(rint_(-rmax, rmax));
  f.cost.resize(static_cast<size_t>(f.h4 * f.w4));
  for (auto& c : f.cost) c = static_cast<float>(runif(0, 1));
  f.intra = rint_(0, 9) == 0;
  return f;
}

// block_select of saliency.cu, pass by pass (the histogram is an integer sum: its order cannot matter).
template <class Item>
static uint64_t select_host(int64_t count, uint64_t k, int bits, Item item) {
  uint64_t prefix = 0;
  for (int shift = bits - 8; shift >= 0; shift -= 8) {
    unsigned long long hist[256] = {0};
    for (int64_t i = 0; i < count; ++i) {
      uint64_t key, w;
      if (!item(i, &key, &w)) continue;
      if (!oc::radix_match(key, prefix, shift)) continue;
      hist[oc::radix_digit(key, shift)] += w;
    }
    oc::radix_choose(hist, &k, &prefix, shift);
  }
  return prefix;
}

struct Terms {
  std::vector<double> mbar;
  bool has_m = false;
  double den_r = 1.0;
};

static Terms terms_host(const float* field, const uint8_t* flags, int64_t h4, int64_t w4, const int16_t* res, int64_t H,
                        int64_t W) {
  (void)h4;
  const int64_t ch = (H + 3) / 4, cw = (W + 3) / 4, ncell = ch * cw;
  Terms t;
  t.mbar.assign(static_cast<size_t>(ncell), 0.0);
  if (field) {
    auto vec = [&](int64_t c, double* vx, double* vy) { return oc::cell_vector(field, flags, (c / cw) * w4 + c % cw, vx, vy); };
    uint64_t total = 0;
    for (int64_t c = 0; c < ncell; ++c) {
      double vx, vy;
      if (vec(c, &vx, &vy)) total += static_cast<uint64_t>(oc::cell_pixels(c / cw, c % cw, H, W));
    }
    if (total > 0) {
      auto kth = [&](int which, uint64_t k) {
        return oc::key_value(select_host(ncell, k, 64, [&](int64_t c, uint64_t* key, uint64_t* w) {
          double vx, vy;
          if (!vec(c, &vx, &vy)) return false;
          *key = oc::ordered_key(which == 0 ? vx : (which == 1 ? vy : t.mbar[c]));
          *w = static_cast<uint64_t>(oc::cell_pixels(c / cw, c % cw, H, W));
          return true;
        }));
      };
      const int64_t n = static_cast<int64_t>(total), mid = n / 2;
      const double ux = kth(0, mid), lx = n % 2 ? ux : kth(0, mid - 1);
      const double uy = kth(1, mid), ly = n % 2 ? uy : kth(1, mid - 1);
      const double mx = oc::median_from(ux, lx, n), my = oc::median_from(uy, ly, n);
      for (int64_t c = 0; c < ncell; ++c) {
        double vx, vy;
        t.mbar[c] = vec(c, &vx, &vy) ? oc::motion_magnitude(vx, vy, mx, my) : 0.0;
      }
      int64_t lo, hi;
      double frac;
      oc::percentile_ranks(n, 95.0, &lo, &hi, &frac);
      const double pa = kth(2, lo), pb = kth(2, hi);
      const double den = oc::hd_max(oc::percentile_combine(pa, pb, frac), 1e-6);
      for (int64_t c = 0; c < ncell; ++c) {
        double vx, vy;
        t.mbar[c] = vec(c, &vx, &vy) ? oc::mbar_of(t.mbar[c], den) : 0.0;
      }
      t.has_m = true;
    }
  }
  if (res) {
    const int64_t npx = H * W;
    int64_t lo, hi;
    double frac;
    oc::percentile_ranks(npx, 95.0, &lo, &hi, &frac);
    auto kth = [&](uint64_t k) {
      return static_cast<double>(select_host(npx, k, 16, [&](int64_t i, uint64_t* key, uint64_t* w) {
        const int32_t v = res[i];
        *key = static_cast<uint64_t>(v < 0 ? -v : v);
        *w = 1;
        return true;
      }));
    };
    const double a = kth(lo), b = kth(hi);
    t.den_r = oc::hd_max(oc::percentile_combine(a, b, frac), 1.0);
  }
  return t;
}

static void check_saliency() {
  bool ok = true;
  std::string why;
  int cases = 0;
  for (int it = 0; it < 150 && ok; ++it, ++cases) {
    Frame f = random_frame(true);
    const bool use_field = rint_(0, 5) != 0, use_flags = rint_(0, 4) != 0, use_res = rint_(0, 5) != 0;
    const float* field = use_field ? f.field.data() : nullptr;
    const uint8_t* flags = use_flags ? f.flags.data() : nullptr;
    const int16_t* res = use_res ? f.res.data() : nullptr;
    std::vector<float> ref(static_cast<size_t>(f.H * f.W)), dev(ref.size());
    tk::saliency(field, flags, f.h4, f.w4, res, f.H, f.W, f.intra, ref.data());
    const int64_t cw = (f.W + 3) / 4;
    if (f.intra) {
      std::fill(dev.begin(), dev.end(), 0.0f);
    } else {
      const Terms t = terms_host(field, flags, f.h4, f.w4, res, f.H, f.W);
      for (int64_t q = 0; q < f.H * f.W; ++q)  // map_kernel
        dev[q] = static_cast<float>(oc::saliency_value(t.has_m ? t.mbar.data() : nullptr, cw, res, t.den_r, f.W, q / f.W, q % f.W));
    }
    if (!same_bits(ref.data(), dev.data(), ref.size()))
      ok = false, why = "frame " + std::to_string(f.H) + "x" + std::to_string(f.W) + " case " + std::to_string(it);
  }
  report("saliency", ok, cases, why);
}

// ---------------------------------------------------------------- block score (score_frames replayed)
static void taps_host(int64_t sn, int64_t dn, int64_t group, std::vector<int64_t>& s, std::vector<int32_t>& c,
                      std::vector<double>& w, oc::Taps& t) {
  const int64_t ng = dn / group, stride = oc::max_group_span(sn, dn, group);
  s.assign(static_cast<size_t>(ng), 0);
  c.assign(static_cast<size_t>(ng), 0);
  w.assign(static_cast<size_t>(ng * stride), 0.0);
  for (int64_t g = 0; g < ng; ++g) oc::fill_taps_group(sn, dn, group, g, stride, s.data(), c.data(), w.data());
  t = oc::Taps{s.data(), c.data(), w.data(), stride};
}

static void check_block_score() {
  bool ok = true;
  std::string why;
  int cases = 0;
  for (int it = 0; it < 120 && ok; ++it, ++cases) {
    Frame f = random_frame(false);
    const int64_t patch = rint_(1, 6), merge = rint_(1, 3), fpx = patch * merge;
    const int64_t hc = fpx * rint_(1, 5), wc = fpx * rint_(1, 5);
    const double beta = rint_(0, 3) == 0 ? 0.0 : runif(0, 1);
    const bool use_cost = rint_(0, 3) != 0, use_res = rint_(0, 5) != 0;
    tk::ValidRect rect;
    oc::Rect orect;
    if (rint_(0, 2) == 0) {
      rect.y0 = orect.y0 = rint_(0, hc - 1);
      rect.x0 = orect.x0 = rint_(0, wc - 1);
      rect.y1 = orect.y1 = rint_(rect.y0 + 1, hc);
      rect.x1 = orect.x1 = rint_(rect.x0 + 1, wc);
    }
    const int64_t nbh = hc / fpx, nbw = wc / fpx, nph = hc / patch, npw = wc / patch;
    const int64_t cch = f.h4, ccw = f.w4;
    const float* cost = use_cost ? f.cost.data() : nullptr;
    const int16_t* res = use_res ? f.res.data() : nullptr;
    std::vector<float> ref(static_cast<size_t>(nbh * nbw)), dev(ref.size());
    tk::score_frame(hc, wc, f.H, f.W, f.field.data(), f.flags.data(), f.h4, f.w4, res, cost, cch, ccw, f.intra, patch,
                    merge, beta, rect, ref.data());
    std::vector<double> psum(static_cast<size_t>(nph * npw), 0.0);
    if (!f.intra) {
      const Terms t = terms_host(f.field.data(), f.flags.data(), f.h4, f.w4, res, f.H, f.W);
      std::vector<int64_t> rs, cs;
      std::vector<int32_t> rc, cc;
      std::vector<double> rw, cwt;
      oc::Taps rows, cols;
      taps_host(f.H, hc, patch, rs, rc, rw, rows);
      taps_host(f.W, wc, patch, cs, cc, cwt, cols);
      for (int64_t q = 0; q < nph * npw; ++q)  // patch_kernel
        psum[q] = oc::patch_sum(rows, cols, q / npw, q % npw, t.has_m ? t.mbar.data() : nullptr, (f.W + 3) / 4, res,
                                t.den_r, f.W);
    }
    std::vector<int64_t> rs, cs;
    std::vector<int32_t> rc, cc;
    std::vector<double> rw, cwt;
    oc::Taps crows{}, ccols{};
    if (cost) {
      taps_host(cch, hc, fpx, rs, rc, rw, crows);
      taps_host(ccw, wc, fpx, cs, cc, cwt, ccols);
    }
    const int64_t y1 = orect.y1 < 0 ? hc : orect.y1, x1 = orect.x1 < 0 ? wc : orect.x1;
    for (int64_t q = 0; q < nbh * nbw; ++q) {  // frame_block_kernel
      const int64_t bi = q / nbw, bj = q % nbw;
      if (!oc::block_inside(bi, bj, fpx, orect.y0, orect.x0, y1, x1)) {
        dev[q] = -std::numeric_limits<float>::infinity();
        continue;
      }
      const bool with_cost = !f.intra && cost;
      const double c = with_cost ? oc::cost_sum(crows, ccols, bi, bj, cost, ccw) : 0.0;
      dev[q] = oc::block_value(psum.data(), npw, bi, bj, patch, merge, with_cost, c, beta);
    }
    if (!same_bits(ref.data(), dev.data(), ref.size())) ok = false, why = "score_frame case " + std::to_string(it);
    // canvas-level block_score
    std::vector<float> s(static_cast<size_t>(hc * wc)), cmap(s.size());
    for (auto& v : s) v = static_cast<float>(runif(0, 1));
    for (auto& v : cmap) v = static_cast<float>(runif(0, 1));
    std::vector<float> r2(ref.size()), d2(ref.size());
    tk::block_score(s.data(), use_cost ? cmap.data() : nullptr, hc, wc, patch, merge, beta, rect, r2.data());
    std::vector<double> ps(static_cast<size_t>(nph * npw));
    for (int64_t q = 0; q < nph * npw; ++q) {  // canvas_patch_kernel
      const int64_t ph = q / npw, pw = q % npw;
      double acc = 0.0;
      for (int64_t y = ph * patch; y < (ph + 1) * patch; ++y)
        for (int64_t x = 0; x < patch; ++x) acc += static_cast<double>(s[y * wc + pw * patch + x]);
      ps[q] = acc;
    }
    for (int64_t q = 0; q < nbh * nbw; ++q) {  // canvas_block_kernel
      const int64_t bi = q / nbw, bj = q % nbw;
      if (!oc::block_inside(bi, bj, fpx, orect.y0, orect.x0, y1, x1)) {
        d2[q] = -std::numeric_limits<float>::infinity();
        continue;
      }
      double c = 0.0;
      if (use_cost)
        for (int64_t y = bi * fpx; y < (bi + 1) * fpx; ++y)
          for (int64_t x = bj * fpx; x < (bj + 1) * fpx; ++x) c += static_cast<double>(cmap[y * wc + x]);
      d2[q] = oc::block_value(ps.data(), npw, bi, bj, patch, merge, use_cost, c, beta);
    }
    if (!same_bits(r2.data(), d2.data(), r2.size())) ok = false, why = "block_score case " + std::to_string(it);
  }
  report("block_score", ok, cases, why);
}

// ---------------------------------------------------------------- allocation (attenuation_kernel + select_kernel)
static bool alloc_host(const std::vector<int64_t>& gs, const std::vector<int64_t>& ge, const std::vector<double>& gc,
                       const std::vector<double>& ct, const std::vector<float>& scores, int64_t nbh, int64_t nbw,
                       const tk::AllocParams& p, tk::AllocResult& r) {
  const int64_t n = static_cast<int64_t>(ct.size()), nb = nbh * nbw;
  std::vector<double> at(static_cast<size_t>(n * nb), 0.0), weight(static_cast<size_t>(n));
  std::vector<int32_t> order(static_cast<size_t>(n * nb));
  std::vector<int64_t> valid(static_cast<size_t>(n));
  for (int64_t f = 0; f < n; ++f) {  // attenuation_kernel, block f
    const float* a = scores.data() + f * nb;
    int64_t nv = 0;
    for (int64_t i = 0; i < nb; ++i) nv += oc::hd_isfinite_f(a[i]) ? 1 : 0;
    for (int64_t i = 0; i < nb; ++i) {
      if (!oc::hd_isfinite_f(a[i])) continue;
      const int32_t rho = oc::frame_rank(a, nb, static_cast<int32_t>(i));
      order[f * nb + rho] = static_cast<int32_t>(i);
      at[f * nb + i] = oc::attenuate(a[i], rho, nv, p.lambda, p.rank_mode);
    }
    valid[f] = nv;
    weight[f] = oc::frame_weight(at.data() + f * nb, order.data() + f * nb, nv, p.alpha_peak);
  }
  const oc::AllocPlan plan = oc::plan_allocation(gs.data(), ge.data(), gc.data(), static_cast<int64_t>(gs.size()),
                                                 ct.data(), n, valid.data(), nb,
                                                 oc::AllocPlanParams{p.max_canvases, p.anchor, p.t0, p.delta});
  const int64_t G = static_cast<int64_t>(plan.groups.start.size()), S = plan.canvas_base.back();
  std::vector<double> cw(static_cast<size_t>(n), 0.0), cc(static_cast<size_t>(n), -1.0);
  std::vector<int32_t> cs(static_cast<size_t>(n), -1);
  std::vector<int32_t> bt(static_cast<size_t>(S * nb)), bi(bt.size()), bj(bt.size());
  std::vector<oc::CanvasOut> co(static_cast<size_t>(S), oc::CanvasOut{0, 0, 0, 0, 0});
  for (int64_t k = 0; k < G; ++k) {  // select_kernel, block k
    const int64_t z0 = plan.z_offset[k], nz = plan.z_offset[k + 1] - z0, m = plan.num_p[k];
    if (m == 0) continue;
    const int32_t* z = plan.z.data() + z0;
    const int64_t items = nz * nb;
    std::vector<double> atg(static_cast<size_t>(items));
    std::vector<int32_t> st(static_cast<size_t>(items)), sigma(static_cast<size_t>(nz));
    std::vector<int64_t> fs(static_cast<size_t>(items)), so(static_cast<size_t>(items)), left(static_cast<size_t>(nz));
    std::vector<double> wg(static_cast<size_t>(nz));
    for (int64_t x = 0; x < items; ++x) {
      const int64_t l = x / nb, i = x % nb, t = z[l];
      st[x] = oc::hd_isfinite_f(scores[t * nb + i]) ? -1 : -2;
      atg[x] = at[t * nb + i];
    }
    for (int64_t l = 0; l < nz; ++l) {
      left[l] = valid[z[l]];
      wg[l] = weight[z[l]];
    }
    for (int64_t x = 0; x < items; ++x) {
      if (st[x] != -1) continue;
      const int64_t l = x / nb;
      int64_t rr = 0;
      for (int64_t j = l * nb; j < (l + 1) * nb; ++j)
        if (j != x && st[j] == -1 && oc::pool_better(atg.data(), nb, j, x)) ++rr;
      fs[l * nb + rr] = x;
    }
    for (int64_t x = 0; x < items; ++x) {
      if (st[x] != -1) continue;
      int64_t rank = 0;
      for (int64_t l = 0; l < nz; ++l) {
        int64_t lo = 0, hi = left[l];
        while (lo < hi) {
          const int64_t mid = (lo + hi) / 2;
          const int64_t e = fs[l * nb + mid];
          if (e != x && oc::pool_better(atg.data(), nb, e, x)) lo = mid + 1; else hi = mid;
        }
        rank += lo;
      }
      so[rank] = x;
    }
    int64_t n_sorted = 0;
    for (int64_t l = 0; l < nz; ++l) n_sorted += left[l];
    const int64_t first_p = plan.canvas_base[k] + 1;
    oc::select_group(z, nz, nb, nbw, m, wg.data(), left.data(), st.data(), so.data(), n_sorted, sigma.data(), cw.data(),
                     cc.data(), cs.data(), bt.data() + first_p * nb, bi.data() + first_p * nb, bj.data() + first_p * nb,
                     co.data() + first_p);
  }
  // assembly, as allocation.cu does
  r = tk::AllocResult{};
  r.group_start = plan.groups.start;
  r.group_end = plan.groups.end;
  r.group_cost = plan.groups.cost;
  r.merges_empty = plan.groups.merges_empty;
  r.merges_budget = plan.groups.merges_budget;
  r.group_anchor = plan.anchor;
  r.group_num_p = plan.num_p;
  r.group_num_frames = plan.num_frames;
  r.group_capacity.assign(plan.capacity.begin(), plan.capacity.end());
  r.cand_group = plan.cand_group;
  r.cand_weight = cw;
  r.cand_cum = cc;
  r.cand_stratum = cs;
  r.canvas_offset.push_back(0);
  for (int64_t k = 0; k < G; ++k) {
    r.add_i_canvas(static_cast<int32_t>(k), plan.anchor[k]);
    for (int32_t rr = 0; rr < plan.num_p[k]; ++rr) {
      const int64_t c = plan.canvas_base[k] + 1 + rr;
      const oc::CanvasOut& o = co[static_cast<size_t>(c)];
      for (int32_t q = 0; q < o.count; ++q) {
        r.block_t.push_back(bt[c * nb + q]);
        r.block_i.push_back(bi[c * nb + q]);
        r.block_j.push_back(bj[c * nb + q]);
      }
      r.add_p_canvas(static_cast<int32_t>(k), rr, o.lo, o.hi, o.widen, o.whole);
    }
  }
  return true;
}

template <class T>
static bool veq(const std::vector<T>& a, const std::vector<T>& b) { return a.size() == b.size() && same_bits(a.data(), b.data(), a.size()); }

static std::string alloc_diff(const tk::AllocResult& a, const tk::AllocResult& b) {
#define OV2_CMP(f) if (!veq(a.f, b.f)) return #f;
  OV2_CMP(group_start) OV2_CMP(group_end) OV2_CMP(group_cost) OV2_CMP(group_anchor) OV2_CMP(group_num_p)
  OV2_CMP(group_capacity) OV2_CMP(group_num_frames) OV2_CMP(cand_group) OV2_CMP(cand_weight) OV2_CMP(cand_cum)
  OV2_CMP(cand_stratum) OV2_CMP(canvas_kind) OV2_CMP(canvas_group) OV2_CMP(canvas_frame) OV2_CMP(canvas_rank)
  OV2_CMP(canvas_lo) OV2_CMP(canvas_hi) OV2_CMP(canvas_widen) OV2_CMP(canvas_whole) OV2_CMP(canvas_offset)
  OV2_CMP(block_t) OV2_CMP(block_i) OV2_CMP(block_j)
#undef OV2_CMP
  if (a.merges_empty != b.merges_empty) return "merges_empty";
  if (a.merges_budget != b.merges_budget) return "merges_budget";
  return "";
}

static void check_allocation() {
  bool ok = true;
  std::string why;
  int cases = 0;
  for (int it = 0; it < 150 && ok; ++it) {
    const int64_t n = rint_(1, 40), nbh = rint_(1, 5), nbw = rint_(1, 5), nb = nbh * nbw;
    std::vector<double> ct(static_cast<size_t>(n));
    double t = runif(0, 1);
    for (auto& x : ct) {
      x = t;
      t += rint_(0, 4) == 0 ? 0.0 : runif(0, 0.8);
    }
    // a contiguous partition over the covered bins
    const double delta = 0.5;
    const int64_t B = static_cast<int64_t>(std::floor(t / delta)) + 2;
    std::vector<int64_t> gs, ge;
    std::vector<double> gc;
    int64_t s = 0;
    while (s < B) {
      const int64_t e = std::min(B - 1, s + rint_(0, 6));
      gs.push_back(s);
      ge.push_back(e);
      gc.push_back(rint_(0, 5) == 0 ? 0.0 : std::floor(runif(0, 5000)));
      s = e + 1;
    }
    std::vector<float> scores(static_cast<size_t>(n * nb));
    const int style = static_cast<int>(rint_(0, 2));
    for (auto& v : scores) {
      v = style == 0 ? static_cast<float>(runif(-0.2, 1.5)) : static_cast<float>(rint_(-2, 4)) / 4.0f;
      if (rint_(0, 12) == 0) v = -std::numeric_limits<float>::infinity();
    }
    tk::AllocParams p;
    p.max_canvases = rint_(2, 24);
    p.lambda = rint_(0, 3) == 0 ? 0.0 : runif(0, 1);
    p.alpha_peak = runif(-0.5, 1);
    p.anchor = static_cast<int>(rint_(0, 1));
    p.rank_mode = static_cast<int>(rint_(0, 1));
    p.delta = delta;
    tk::AllocResult ref, dev;
    try {
      ref = tk::allocate(gs.data(), ge.data(), gc.data(), static_cast<int64_t>(gs.size()), ct.data(), n, scores.data(),
                         nbh, nbw, p);
    } catch (const tk::Error&) {
      continue;
    }
    alloc_host(gs, ge, gc, ct, scores, nbh, nbw, p, dev);
    ++cases;
    const std::string d = alloc_diff(ref, dev);
    if (!d.empty()) ok = false, why = "field " + d + " case " + std::to_string(it);
  }
  report("allocate", ok, cases, why);
}

// ---------------------------------------------------------------- GOP partition (gop_kernel replayed)
static void check_gop() {
  bool ok = true;
  std::string why;
  int cases = 0;
  for (int it = 0; it < 300 && ok; ++it, ++cases) {
    const int64_t n = rint_(0, 400);
    std::vector<double> pts(static_cast<size_t>(n));
    std::vector<int64_t> size(static_cast<size_t>(n));
    std::vector<uint8_t> pict(static_cast<size_t>(n)), key(static_cast<size_t>(n));
    const double fps = runif(5, 60);
    const char types[5] = {'I', 'P', 'B', '?', 0};
    const bool no_pb = rint_(0, 10) == 0;
    const bool quantized = rint_(0, 2) == 0, sparse = rint_(0, 3) == 0;  // equal energies: valley ties
    for (int64_t q = 0; q < n; ++q) {
      pts[q] = static_cast<double>(q) / fps + (rint_(0, 3) == 0 ? runif(-0.05, 0.05) : 0.0);
      if (rint_(0, 50) == 0) pts[q] = std::numeric_limits<double>::quiet_NaN();
      size[q] = quantized ? 100 * rint_(0, 2) : (rint_(0, 3) == 0 ? rint_(0, 100) : rint_(100, 60000));
      if (sparse && rint_(0, 5) != 0) pts[q] = static_cast<double>(n) / fps;  // piles up in the last bin
      pict[q] = no_pb ? 'I' : static_cast<uint8_t>(types[rint_(0, 4)]);
      key[q] = rint_(0, 20) == 0 ? 1 : 0;
    }
    tk::GopParams p;
    p.k_tar = rint_(1, 12);
    p.log1p = rint_(0, 1) == 1;
    p.radius = rint_(0, 4);
    p.t_min = runif(0.3, 3);
    p.t_max = p.t_min + runif(0, 6);
    p.delta = rint_(0, 2) == 0 ? runif(0.1, 1.0) : 0.5;
    p.t0 = rint_(0, 1) ? 0.0 : runif(-0.2, 0.2);
    p.duration_s = rint_(0, 1) ? -1.0 : static_cast<double>(n) / fps + runif(-1, 2);
    const bool use_pict = rint_(0, 4) != 0, use_key = rint_(0, 4) != 0;
    const tk::GopResult ref = tk::gop_partition(pts.data(), size.data(), use_pict ? pict.data() : nullptr,
                                                use_key ? key.data() : nullptr, n, p);
    // host prep of gop_partition.cu: bins, L_min/L_max, energy values
    const int64_t B = static_cast<int64_t>(ref.energy.size());
    oc::GopArgs a{p.delta, p.t0, ref.l_min, ref.l_max, p.radius, p.k_tar, B};
    std::vector<double> value(static_cast<size_t>(n));
    for (int64_t q = 0; q < n; ++q) value[q] = p.log1p ? std::log1p(static_cast<double>(size[q])) : static_cast<double>(size[q]);
    std::vector<double> energy(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      energy[b] = oc::bin_energy(pts.data(), value.data(), use_pict ? pict.data() : nullptr, use_key ? key.data() : nullptr,
                                 n, p.t0, p.delta, B, b);
    int64_t npb = 0;
    for (int64_t q = 0; q < n; ++q)
      if (oc::hd_isfinite(pts[q]) && oc::packet_is_pb(use_pict ? pict[q] : 0, use_key ? key[q] != 0 : false)) ++npb;
    const int64_t cap = std::max<int64_t>(B, p.k_tar);
    std::vector<int64_t> s(cap), e(cap), tr(cap);
    std::vector<double> c(cap);
    double theta;
    int32_t flags;
    const int64_t ng = oc::gop_walk(energy.data(), a, npb, cap, s.data(), e.data(), tr.data(), c.data(), &theta, &flags);
    s.resize(ng < 0 ? 0 : ng);
    e.resize(s.size());
    tr.resize(s.size());
    c.resize(s.size());
    std::string d;
    if (ng < 0) d = "capacity";
    else if (!veq(energy, ref.energy)) d = "energy";
    else if (!same_bits(&theta, &ref.theta, 1)) d = "theta";
    else if (npb != ref.num_pb) d = "num_pb";
    else if (!veq(s, ref.start) || !veq(e, ref.end)) d = "boundaries";
    else if (!veq(tr, ref.trigger)) d = "trigger";
    else if (!veq(c, ref.cost)) d = "cost";
    else if (((flags & 1) != 0) != ref.fallback || ((flags & 2) != 0) != ref.tail_merged) d = "flags";
    if (d.empty() && ng > 0) {  // κ of random times
      std::vector<double> ts(50);
      for (auto& x : ts) x = runif(-1, static_cast<double>(B) * p.delta + 1);
      const std::vector<int32_t> kr = tk::group_of_time(ts.data(), 50, ref.start.data(), ref.end.data(), ng, p.t0, p.delta);
      for (int q = 0; q < 50; ++q)
        if (oc::group_of(ts[q], s.data(), e.data(), ng, p.t0, p.delta) != kr[q]) d = "group_of";
    }
    if (!d.empty()) ok = false, why = d + " case " + std::to_string(it);
  }
  report("gop_partition", ok, cases, why);
}

// ---------------------------------------------------------------- canvas gather
static void check_packing() {
  bool ok = true;
  std::string why;
  int cases = 0;
  for (int it = 0; it < 60 && ok; ++it, ++cases) {
    const int64_t patch = rint_(1, 4), merge = rint_(1, 2), f = patch * merge;
    const int64_t hc = f * rint_(1, 4), wc = f * rint_(1, 4), nbw = wc / f, nb = (hc / f) * nbw;
    const int64_t n_cand = rint_(1, 6), S = rint_(1, 6);
    std::vector<uint8_t> frames(static_cast<size_t>(n_cand * hc * wc * 3));
    for (auto& v : frames) v = static_cast<uint8_t>(rint_(0, 255));
    std::vector<int8_t> kind(static_cast<size_t>(S));
    std::vector<int32_t> group(static_cast<size_t>(S), 0), frame(static_cast<size_t>(S), -1), bt, bi, bj;
    std::vector<int64_t> offset{0};
    for (int64_t s = 0; s < S; ++s) {
      kind[s] = static_cast<int8_t>(s == 0 ? 0 : rint_(0, 1));
      if (kind[s] == 0) {
        frame[s] = static_cast<int32_t>(rint_(0, n_cand - 1));
      } else {
        const int64_t cnt = rint_(0, nb);
        for (int64_t q = 0; q < cnt; ++q) {
          bt.push_back(static_cast<int32_t>(rint_(0, n_cand - 1)));
          bi.push_back(static_cast<int32_t>(rint_(0, hc / f - 1)));
          bj.push_back(static_cast<int32_t>(rint_(0, nbw - 1)));
        }
      }
      offset.push_back(static_cast<int64_t>(bt.size()));
    }
    const int32_t anchor = 0;
    tk::CanvasPlan plan;
    plan.num_canvases = S;
    plan.kind = kind.data();
    plan.group = group.data();
    plan.frame = frame.data();
    plan.offset = offset.data();
    plan.block_t = bt.data();
    plan.block_i = bi.data();
    plan.block_j = bj.data();
    plan.num_groups = 1;
    plan.group_anchor = &anchor;
    std::vector<uint8_t> ref(static_cast<size_t>(S * 3 * hc * wc)), dev(ref.size());
    tk::pack_canvases(plan, frames.data(), n_cand, hc, wc, patch, merge, ref.data());
    const int64_t plane = hc * wc;
    for (int64_t q = 0; q < S * 3 * plane; ++q) {  // gather_kernel
      const int64_t s = q / (3 * plane), r = q % (3 * plane), c = r / plane, y = (r % plane) / wc, x = r % wc;
      int64_t sy = 0, sx = 0;
      const int32_t pos = oc::canvas_source(kind[s], frame[s], offset[s], offset[s + 1] - offset[s], bt.data(), bi.data(),
                                            bj.data(), f, nbw, y, x, &sy, &sx);
      dev[q] = pos >= 0 ? frames[((static_cast<int64_t>(pos) * hc + sy) * wc + sx) * 3 + c] : 0;
    }
    if (ref != dev) ok = false, why = "case " + std::to_string(it);
  }
  report("pack_canvases", ok, cases, why);
  // YUV → RGB: the CPU conversion (csrc/codec/rgb.h, used after swscale's 4:4:4 resize) and the device one agree
  // on every 8-bit triple, and both are within ±1 of a double evaluation of BT.601/709.
  ok = true;
  int64_t worst = 0, triples = 0;
  std::string rgb_why;
  for (int m = 0; m < 2; ++m)
    for (int full = 0; full < 2; ++full) {
      const ov2::YuvToRgb cpu(m ? 709 : 601, full != 0);
      const double kr = m ? 0.2126 : 0.299, kb = m ? 0.0722 : 0.114, kg = 1 - kr - kb;
      for (int Y = 0; Y < 256; ++Y)
        for (int U = 0; U < 256; ++U)
          for (int V = 0; V < 256; ++V) {
            uint8_t rgb[3], ref[3];
            oc::yuv_to_rgb(Y, U, V, m ? 709 : 601, full != 0, rgb);
            cpu.pixel(Y, U, V, ref);
            ++triples;
            if (std::memcmp(rgb, ref, 3) != 0 && ok)
              ok = false, rgb_why = "device != cpu at Y U V " + std::to_string(Y) + " " + std::to_string(U) + " " +
                                    std::to_string(V);
            if ((U | V) % 5 != 0) continue;  // the double evaluation on a sub-grid
            const double y = full ? Y : (Y - 16) * 255.0 / 219.0;
            const double u = full ? U - 128.0 : (U - 128.0) * 255.0 / 224.0, v = full ? V - 128.0 : (V - 128.0) * 255.0 / 224.0;
            const double exact[3] = {y + 2 * (1 - kr) * v, y - 2 * (1 - kb) * kb / kg * u - 2 * (1 - kr) * kr / kg * v,
                                     y + 2 * (1 - kb) * u};
            for (int c = 0; c < 3; ++c) {
              const double e = std::min(255.0, std::max(0.0, std::round(exact[c])));
              worst = std::max<int64_t>(worst, std::llabs(static_cast<int64_t>(rgb[c]) - static_cast<int64_t>(e)));
            }
          }
    }
  if (worst > 1) ok = false, rgb_why += " max error vs exact " + std::to_string(worst);
  report("yuv_to_rgb", ok, static_cast<int>(triples), rgb_why);
}

// ---------------------------------------------------------------- residual + densification (residual.cu replayed)
#ifdef OV2_HARNESS_CODEC
static void check_residual() {
  bool ok_d = true, ok_r = true;
  std::string why_d, why_r;
  int cases = 0;
  for (int it = 0; it < 80 && ok_d && ok_r; ++it, ++cases) {
    const int W = static_cast<int>(rint_(4, 70)), H = static_cast<int>(rint_(4, 70));
    const bool h264 = rint_(0, 3) != 0;
    const int scale = h264 ? 4 : static_cast<int>(rint_(0, 1) ? 2 : 4);
    auto plane = [&](int w, int h, std::vector<uint8_t>& buf, int64_t& stride) {
      stride = w + rint_(0, 9);
      buf.resize(static_cast<size_t>(stride * h));
      const int style = static_cast<int>(rint_(0, 1));
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < stride; ++x)
          buf[static_cast<size_t>(y * stride + x)] =
              static_cast<uint8_t>(style ? rint_(0, 255) : (x * 7 + y * 3 + rint_(0, 20)) & 255);
    };
    std::vector<uint8_t> bc, b0, b1;
    int64_t sc, s0, s1;
    const int RW = W + static_cast<int>(rint_(0, 12)), RH = H + static_cast<int>(rint_(0, 12));
    plane(W, H, bc, sc);
    plane(RW, RH, b0, s0);
    plane(RW, RH, b1, s1);
    const bool has_r0 = rint_(0, 8) != 0, has_r1 = rint_(0, 2) != 0;
    std::vector<int32_t> rows;
    auto push = [&](int list, int bx, int by, int bw, int bh) {
      const int mx = static_cast<int>(rint_(0, 6) == 0 ? rint_(-200, 200) : rint_(-24, 24));
      const int my = static_cast<int>(rint_(0, 6) == 0 ? rint_(-200, 200) : rint_(-24, 24));
      const int32_t r[10] = {list ? 1 : -1, bw, bh, bx, by, bx + bw / 2, by + bh / 2, mx, my, scale};
      rows.insert(rows.end(), r, r + 10);
    };
    for (int my0 = 0; my0 < H; my0 += 16)
      for (int mx0 = 0; mx0 < W; mx0 += 16) {
        const int mode = static_cast<int>(rint_(0, 4));  // 0 intra, 1 L0, 2 L1, 3/4 bi
        if (mode == 0) continue;
        const int part = static_cast<int>(rint_(0, 4));
        const int pw = part == 0 || part == 1 ? 16 : (part == 4 ? 4 : 8);
        const int ph = part == 0 || part == 2 ? 16 : (part == 4 ? 4 : 8);
        for (int y = 0; y < 16; y += ph)
          for (int x = 0; x < 16; x += pw) {
            if (mode == 1 || mode >= 3) push(0, mx0 + x, my0 + y, pw, ph);
            if (mode == 2 || mode >= 3) push(1, mx0 + x, my0 + y, pw, ph);
          }
      }
    // a few overlapping rows (the last exported row wins)
    for (int extra = static_cast<int>(rint_(0, 3)); extra > 0 && !rows.empty(); --extra) {
      const int64_t q = rint_(0, static_cast<int64_t>(rows.size() / 10) - 1);
      push(rows[q * 10] > 0 ? 1 : 0, rows[q * 10 + 3], rows[q * 10 + 4], rows[q * 10 + 1], rows[q * 10 + 2]);
    }
    const int64_t n = static_cast<int64_t>(rows.size() / 10);
    // CPU
    ov2::MotionField mf;
    const int cw = (W + 3) / 4, chh = (H + 3) / 4, cells = cw * chh;
    std::vector<float> field_ref(static_cast<size_t>(cells * 4));
    std::vector<uint8_t> intra_ref(static_cast<size_t>(cells)), flags_ref(static_cast<size_t>(cells));
    ov2::densify_motion(rows.data(), n, W, H, mf, field_ref.data(), intra_ref.data(), flags_ref.data());
    const ov2::Plane cur{bc.data(), W, H, static_cast<ptrdiff_t>(sc)};
    const ov2::Plane r0{b0.data(), RW, RH, static_cast<ptrdiff_t>(s0)}, r1{b1.data(), RW, RH, static_cast<ptrdiff_t>(s1)};
    ov2::ResidualScratch scratch;
    std::vector<int16_t> res_ref(static_cast<size_t>(W * H));
    ov2::compute_residual(cur, has_r0 ? &r0 : nullptr, has_r1 ? &r1 : nullptr, rows.data(), n, mf,
                          h264 ? ov2::Interp::H264Qpel : ov2::Interp::Bilinear, scratch, res_ref.data());
    // device replay: cell_owner_kernel + densify_kernel
    std::vector<int> cown(static_cast<size_t>(2 * cells), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t* r = rows.data() + i * 10;
      int cx0, cy0, cx1, cy1;
      if (!oc::row_cells(r, cw, chh, &cx0, &cy0, &cx1, &cy1)) continue;
      int* o = cown.data() + oc::row_list(r) * cells;
      for (int cy = cy0; cy < cy1; ++cy)
        for (int cx = cx0; cx < cx1; ++cx) o[cy * cw + cx] = std::max(o[cy * cw + cx], static_cast<int>(i + 1));
    }
    std::vector<float> field_dev(field_ref.size());
    std::vector<uint8_t> flags_dev(flags_ref.size()), intra_dev(intra_ref.size());
    for (int c = 0; c < cells; ++c) {
      uint8_t fl = 0;
      for (int list = 0; list < 2; ++list) {
        const int own = cown[list * cells + c];
        float dx = 0.0f, dy = 0.0f;
        if (own > 0) {
          oc::row_vector(rows.data() + (own - 1) * 10, &dx, &dy);
          fl |= static_cast<uint8_t>(1u << list);
        }
        field_dev[c * 4 + 2 * list] = dx;
        field_dev[c * 4 + 2 * list + 1] = dy;
      }
      flags_dev[c] = fl;
      intra_dev[c] = fl ? 0 : 1;
    }
    if (!veq(field_ref, field_dev) || flags_ref != flags_dev || intra_ref != intra_dev)
      ok_d = false, why_d = "case " + std::to_string(it);
    // pixel_owner_kernel + residual_kernel
    std::vector<int> pown(static_cast<size_t>(2 * W * H), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t* r = rows.data() + i * 10;
      const int list = oc::row_list(r);
      if (list == 0 ? !has_r0 : !has_r1) continue;
      int x0, y0, x1, y1;
      if (!oc::row_pixels(r, W, H, &x0, &y0, &x1, &y1)) continue;
      for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) {
          int& o = pown[static_cast<size_t>(list * W * H + y * W + x)];
          o = std::max(o, static_cast<int>(i + 1));
        }
    }
    const oc::LumaPlane lc{bc.data(), W, H, sc}, l0{b0.data(), RW, RH, s0}, l1{b1.data(), RW, RH, s1};
    std::vector<int16_t> res_dev(res_ref.size());
    for (int64_t q = 0; q < static_cast<int64_t>(W) * H; ++q) {
      const int y = static_cast<int>(q / W), x = static_cast<int>(q % W);
      const uint8_t fl = flags_dev[(y / 4) * cw + x / 4];
      res_dev[q] = oc::residual_at(lc, has_r0 ? &l0 : nullptr, has_r1 ? &l1 : nullptr, rows.data(), h264, pown[q],
                                   pown[W * H + q], (fl & 1u) != 0, (fl & 2u) != 0, x, y);
    }
    if (res_ref != res_dev) {
      int64_t bad = 0;
      for (size_t q = 0; q < res_ref.size(); ++q) bad += res_ref[q] != res_dev[q];
      ok_r = false, why_r = "case " + std::to_string(it) + " (" + std::to_string(bad) + " pixels differ, " +
                            (h264 ? "h264" : "bilinear") + ")";
    }
  }
  report("densify_motion", ok_d, cases, why_d);
  report("compute_residual", ok_r, cases, why_r);
}
#endif

int main() {
  check_geometry();
  check_saliency();
  check_block_score();
  check_allocation();
  check_gop();
  check_packing();
#ifdef OV2_HARNESS_CODEC
  check_residual();
#else
  std::printf("skip residual (built without the codec sources)\n");
#endif
  return failures == 0 ? 0 : 1;
}

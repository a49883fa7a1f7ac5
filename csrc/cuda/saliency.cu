#include "cuda/saliency.h"

#include "cuda/common.cuh"
#include "cuda/saliency_math.cuh"

namespace ov2::cuda {
namespace {

constexpr int kThreads = 256;

// k-th smallest (0-based, weighted) key among the items of a thread block, by radix select from the top digit:
// per 8-bit digit an integer histogram of the items matching the prefix found so far. `bits`: significant key bits
// (a multiple of 8). item(i, &key, &weight) returns false for items that do not take part. All threads call it.
template <class Item>
__device__ uint64_t block_select(int64_t count, uint64_t k, int bits, Item item) {
  __shared__ unsigned long long hist[256];
  __shared__ uint64_t s_prefix, s_k;
  if (threadIdx.x == 0) {
    s_prefix = 0;
    s_k = k;
  }
  __syncthreads();
  for (int shift = bits - 8; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
    __syncthreads();
    const uint64_t prefix = s_prefix;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      uint64_t key, w;
      if (!item(i, &key, &w)) continue;
      if (!radix_match(key, prefix, shift)) continue;
      atomicAdd(&hist[radix_digit(key, shift)], static_cast<unsigned long long>(w));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t kk = s_k, pp = s_prefix;
      radix_choose(hist, &kk, &pp, shift);
      s_k = kk;
      s_prefix = pp;
    }
    __syncthreads();
  }
  const uint64_t out = s_prefix;
  __syncthreads();
  return out;
}

__device__ uint64_t block_sum_u64(uint64_t v) {
  __shared__ unsigned long long acc;
  if (threadIdx.x == 0) acc = 0;
  __syncthreads();
  atomicAdd(&acc, static_cast<unsigned long long>(v));
  __syncthreads();
  const uint64_t out = acc;
  __syncthreads();
  return out;
}

__global__ void terms_kernel(SaliencyInput in, double* mbar_all, uint8_t* has_motion, double* den_r_all) {
  const int64_t f = blockIdx.x;
  const int64_t H = in.height, W = in.width, ch = (H + 3) / 4, cw = (W + 3) / 4, ncell = ch * cw;
  double* mbar = mbar_all + f * ncell;
  const bool intra = in.is_intra && in.is_intra[f];
  if (intra) {  // S = 0: no terms
    for (int64_t c = threadIdx.x; c < ncell; c += blockDim.x) mbar[c] = 0.0;
    if (threadIdx.x == 0) {
      has_motion[f] = 0;
      den_r_all[f] = 1.0;
    }
    return;
  }
  // ---- motion term ----
  uint8_t hm = 0;
  if (in.mv_field) {
    const float* field = in.mv_field + f * in.h4 * in.w4 * 4;
    const uint8_t* flags = in.mv_flags ? in.mv_flags + f * in.h4 * in.w4 : nullptr;
    const int64_t h4 = in.h4, w4 = in.w4;
    auto vec = [&](int64_t c, double* vx, double* vy) {
      const int64_t a = c / cw, b = c % cw;
      return cell_vector(field, flags, a * w4 + b, vx, vy);
    };
    (void)h4;
    uint64_t local = 0;
    for (int64_t c = threadIdx.x; c < ncell; c += blockDim.x) {
      double vx, vy;
      if (vec(c, &vx, &vy)) local += static_cast<uint64_t>(cell_pixels(c / cw, c % cw, H, W));
    }
    const uint64_t total = block_sum_u64(local);
    if (total > 0) {
      auto kth_x = [&](uint64_t k) {
        return key_value(block_select(ncell, k, 64, [&](int64_t c, uint64_t* key, uint64_t* w) {
          double vx, vy;
          if (!vec(c, &vx, &vy)) return false;
          *key = ordered_key(vx);
          *w = static_cast<uint64_t>(cell_pixels(c / cw, c % cw, H, W));
          return true;
        }));
      };
      auto kth_y = [&](uint64_t k) {
        return key_value(block_select(ncell, k, 64, [&](int64_t c, uint64_t* key, uint64_t* w) {
          double vx, vy;
          if (!vec(c, &vx, &vy)) return false;
          *key = ordered_key(vy);
          *w = static_cast<uint64_t>(cell_pixels(c / cw, c % cw, H, W));
          return true;
        }));
      };
      const int64_t n = static_cast<int64_t>(total), mid = n / 2;
      const double ux = kth_x(mid), lx = n % 2 ? ux : kth_x(mid - 1);
      const double uy = kth_y(mid), ly = n % 2 ? uy : kth_y(mid - 1);
      const double mx = median_from(ux, lx, n), my = median_from(uy, ly, n);
      for (int64_t c = threadIdx.x; c < ncell; c += blockDim.x) {
        double vx, vy;
        mbar[c] = vec(c, &vx, &vy) ? motion_magnitude(vx, vy, mx, my) : 0.0;
      }
      __syncthreads();
      int64_t lo, hi;
      double frac;
      percentile_ranks(n, 95.0, &lo, &hi, &frac);
      auto kth_m = [&](uint64_t k) {
        return key_value(block_select(ncell, k, 64, [&](int64_t c, uint64_t* key, uint64_t* w) {
          double vx, vy;
          if (!vec(c, &vx, &vy)) return false;
          *key = ordered_key(mbar[c]);
          *w = static_cast<uint64_t>(cell_pixels(c / cw, c % cw, H, W));
          return true;
        }));
      };
      const double pa = kth_m(static_cast<uint64_t>(lo)), pb = kth_m(static_cast<uint64_t>(hi));
      const double den = hd_max(percentile_combine(pa, pb, frac), 1e-6);
      for (int64_t c = threadIdx.x; c < ncell; c += blockDim.x) {
        double vx, vy;
        mbar[c] = vec(c, &vx, &vy) ? mbar_of(mbar[c], den) : 0.0;
      }
      hm = 1;
    }
  }
  if (!hm)
    for (int64_t c = threadIdx.x; c < ncell; c += blockDim.x) mbar[c] = 0.0;
  // ---- residual term ----
  double den_r = 1.0;
  if (in.residual) {
    const int16_t* res = in.residual + f * H * W;
    const int64_t npx = H * W;
    int64_t lo, hi;
    double frac;
    percentile_ranks(npx, 95.0, &lo, &hi, &frac);
    auto kth_r = [&](uint64_t k) {
      return static_cast<double>(block_select(npx, k, 16, [&](int64_t i, uint64_t* key, uint64_t* w) {
        const int32_t v = res[i];
        *key = static_cast<uint64_t>(v < 0 ? -v : v);
        *w = 1;
        return true;
      }));
    };
    const double a = kth_r(static_cast<uint64_t>(lo)), b = kth_r(static_cast<uint64_t>(hi));
    den_r = hd_max(percentile_combine(a, b, frac), 1.0);
  }
  if (threadIdx.x == 0) {
    has_motion[f] = hm;
    den_r_all[f] = den_r;
  }
}

__global__ void map_kernel(SaliencyInput in, const double* mbar_all, const uint8_t* has_motion, const double* den_r,
                           float* out) {
  const int64_t H = in.height, W = in.width, cw = (W + 3) / 4, ncell = ((H + 3) / 4) * cw, per = H * W;
  const int64_t total = in.n * per;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t f = q / per, p = q % per;
    if (in.is_intra && in.is_intra[f]) {
      out[q] = 0.0f;
      continue;
    }
    const double* mb = has_motion[f] ? mbar_all + f * ncell : nullptr;
    const int16_t* res = in.residual ? in.residual + f * per : nullptr;
    out[q] = static_cast<float>(saliency_value(mb, cw, res, den_r[f], W, p / W, p % W));
  }
}

Status check_input(const SaliencyInput& in) {
  if (in.n < 0 || in.height < 1 || in.width < 1) return Status::bad_argument("saliency: frame size must be positive");
  if (in.mv_field && (in.h4 < (in.height + 3) / 4 || in.w4 < (in.width + 3) / 4))
    return Status::bad_argument("saliency: mv_field grid smaller than ceil(frame/4)");
  if (in.n > 2147483647) return Status::bad_argument("saliency: too many frames");
  return {};
}

}  // namespace

Status saliency_terms(const SaliencyInput& in, double* mbar, uint8_t* has_motion, double* den_r, Stream stream) {
  OV2_TRY(check_input(in));
  if (in.n == 0) return {};
  terms_kernel<<<static_cast<unsigned>(in.n), kThreads, 0, as_stream(stream)>>>(in, mbar, has_motion, den_r);
  return launched("saliency_terms");
}

Status saliency(const SaliencyInput& in, float* out_s, Stream stream) {
  OV2_TRY(check_input(in));
  if (in.n == 0) return {};
  const cudaStream_t s = as_stream(stream);
  const int64_t ncell = ((in.height + 3) / 4) * ((in.width + 3) / 4);
  Scratch mbar, hm, den;
  OV2_TRY(mbar.allocate(static_cast<size_t>(in.n * ncell) * sizeof(double), s, "saliency scratch"));
  OV2_TRY(hm.allocate(static_cast<size_t>(in.n), s, "saliency scratch"));
  OV2_TRY(den.allocate(static_cast<size_t>(in.n) * sizeof(double), s, "saliency scratch"));
  OV2_TRY(saliency_terms(in, mbar.as<double>(), hm.as<uint8_t>(), den.as<double>(), stream));
  map_kernel<<<grid_for(in.n * in.height * in.width, 256), 256, 0, s>>>(in, mbar.as<double>(), hm.as<uint8_t>(),
                                                                         den.as<double>(), out_s);
  return launched("saliency map");
}

}  // namespace ov2::cuda

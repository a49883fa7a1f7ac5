// Shared by the CUDA kernels (nvcc) and by host code (g++): OV2_HD marks the per-element math that runs
// unchanged on both sides, so the CPU can check it against csrc/tokenize (tests/gpu/parity_harness.cpp).
// Floating point: the CUDA build uses -fmad=false and IEEE division/sqrt (no fast math); host users compile
// with -ffp-contract=off. Every expression is evaluated in the order written, as csrc/tokenize does.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define OV2_HD __host__ __device__ __forceinline__
#else
#define OV2_HD inline
#endif

#if defined(__clang__) && !defined(__CUDACC__)
#pragma clang fp contract(off)
#elif defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ov2::cuda {

template <class T>
OV2_HD T hd_min(T a, T b) { return b < a ? b : a; }
template <class T>
OV2_HD T hd_max(T a, T b) { return a < b ? b : a; }
template <class T>
OV2_HD T hd_clamp(T v, T lo, T hi) { return v < lo ? lo : (hi < v ? hi : v); }

OV2_HD double hd_floor(double x) { return ::floor(x); }
OV2_HD double hd_ceil(double x) { return ::ceil(x); }
OV2_HD double hd_sqrt(double x) { return ::sqrt(x); }  // correctly rounded on both sides (IEEE)
OV2_HD bool hd_isfinite(double x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}
OV2_HD bool hd_isfinite_f(float x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

// Bit patterns without <cstring> on the device.
OV2_HD uint64_t double_bits(double x) {
  union { double d; uint64_t u; } c;
  c.d = x;
  return c.u;
}
OV2_HD double bits_double(uint64_t u) {
  union { double d; uint64_t u; } c;
  c.u = u;
  return c.d;
}

// Maps a finite double to an unsigned key with the same order (negatives flipped). −0 sorts just below +0;
// both compare equal as doubles, so an order statistic taken by key equals one taken by value.
OV2_HD uint64_t ordered_key(double x) {
  const uint64_t u = double_bits(x);
  return (u >> 63) ? ~u : (u | (uint64_t{1} << 63));
}
OV2_HD double key_value(uint64_t k) {
  return bits_double((k >> 63) ? (k & ~(uint64_t{1} << 63)) : ~k);
}

}  // namespace ov2::cuda

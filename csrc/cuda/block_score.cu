#include "cuda/block_score.h"

#include <cmath>

#include "cuda/block_score_math.cuh"
#include "cuda/common.cuh"
#include "cuda/geometry.h"

namespace ov2::cuda {
namespace {

struct TapBuf {
  Scratch start, count, weight;
  Taps taps{};
  Status make(int64_t sn, int64_t dn, int64_t group, cudaStream_t s) {
    const int64_t ng = dn / group, stride = max_group_span(sn, dn, group);
    OV2_TRY(start.allocate(static_cast<size_t>(ng) * sizeof(int64_t), s, "taps"));
    OV2_TRY(count.allocate(static_cast<size_t>(ng) * sizeof(int32_t), s, "taps"));
    OV2_TRY(weight.allocate(static_cast<size_t>(ng * stride) * sizeof(double), s, "taps"));
    OV2_TRY(grouped_taps(sn, dn, group, start.as<int64_t>(), count.as<int32_t>(), weight.as<double>(), stride, s));
    taps = Taps{start.as<int64_t>(), count.as<int32_t>(), weight.as<double>(), stride};
    return {};
  }
};

__global__ void patch_kernel(SaliencyInput in, const double* mbar_all, const uint8_t* has_motion, const double* den_r,
                             Taps rows, Taps cols, int64_t nph, int64_t npw, double* psum) {
  const int64_t per = nph * npw, total = in.n * per;
  const int64_t cw = (in.width + 3) / 4, ncell = ((in.height + 3) / 4) * cw;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t f = q / per, g = (q % per) / npw, k = q % npw;
    if (in.is_intra && in.is_intra[f]) {
      psum[q] = 0.0;
      continue;
    }
    const double* mb = has_motion[f] ? mbar_all + f * ncell : nullptr;
    const int16_t* res = in.residual ? in.residual + f * in.height * in.width : nullptr;
    psum[q] = patch_sum(rows, cols, g, k, mb, cw, res, den_r[f], in.width);
  }
}

__global__ void frame_block_kernel(int64_t n, const uint8_t* is_intra, const double* psum, const float* cost,
                                   int64_t ch, int64_t cw, Taps crows, Taps ccols, int64_t nph, int64_t npw,
                                   int64_t nbh, int64_t nbw, int64_t patch, int64_t merge, double beta,
                                   const double* beta_by_frame, Rect rect, int64_t hc, int64_t wc, float* out) {
  const int64_t per = nbh * nbw, total = n * per, f_px = patch * merge;
  const int64_t y1 = rect.y1 < 0 ? hc : rect.y1, x1 = rect.x1 < 0 ? wc : rect.x1;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t f = q / per, bi = (q % per) / nbw, bj = q % nbw;
    if (!block_inside(bi, bj, f_px, rect.y0, rect.x0, y1, x1)) {
      out[q] = -INFINITY;
      continue;
    }
    const bool intra = is_intra && is_intra[f];
    const bool with_cost = !intra && cost != nullptr;
    const double c = with_cost ? cost_sum(crows, ccols, bi, bj, cost + f * ch * cw, cw) : 0.0;
    const double b = beta_by_frame ? beta_by_frame[f] : beta;
    out[q] = block_value(psum + f * nph * npw, npw, bi, bj, patch, merge, with_cost, c, b);
  }
}

__global__ void canvas_patch_kernel(const float* s, int64_t n, int64_t hc, int64_t wc, int64_t patch, double* psum) {
  const int64_t nph = hc / patch, npw = wc / patch, per = nph * npw, total = n * per;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t f = q / per, ph = (q % per) / npw, pw = q % npw;
    const float* m = s + f * hc * wc;
    double acc = 0.0;
    for (int64_t y = ph * patch; y < (ph + 1) * patch; ++y)
      for (int64_t x = 0; x < patch; ++x) acc += static_cast<double>(m[y * wc + pw * patch + x]);
    psum[q] = acc;
  }
}

__global__ void canvas_block_kernel(const double* psum, const float* cost, int64_t n, int64_t hc, int64_t wc,
                                    int64_t patch, int64_t merge, double beta, Rect rect, float* out) {
  const int64_t f_px = patch * merge, nbh = hc / f_px, nbw = wc / f_px, per = nbh * nbw, total = n * per;
  const int64_t npw = wc / patch, nph = hc / patch;
  const int64_t y1 = rect.y1 < 0 ? hc : rect.y1, x1 = rect.x1 < 0 ? wc : rect.x1;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t f = q / per, bi = (q % per) / nbw, bj = q % nbw;
    if (!block_inside(bi, bj, f_px, rect.y0, rect.x0, y1, x1)) {
      out[q] = -INFINITY;
      continue;
    }
    double c = 0.0;
    if (cost) {
      const float* m = cost + f * hc * wc;
      for (int64_t y = bi * f_px; y < (bi + 1) * f_px; ++y)
        for (int64_t x = bj * f_px; x < (bj + 1) * f_px; ++x) c += static_cast<double>(m[y * wc + x]);
    }
    out[q] = block_value(psum + f * nph * npw, npw, bi, bj, patch, merge, cost != nullptr, c, beta);
  }
}

Status check_canvas(int64_t hc, int64_t wc, int64_t patch, int64_t merge, double beta, const char* who) {
  if (patch < 1 || merge < 1 || hc < patch * merge || wc < patch * merge || hc % (patch * merge) != 0 ||
      wc % (patch * merge) != 0)
    return Status::bad_argument(std::string(who) + ": canvas sides must be positive multiples of patch*merge");
  if (!std::isfinite(beta)) return Status::bad_argument(std::string(who) + ": beta must be finite");
  return {};
}

}  // namespace

Status score_frames(const SaliencyInput& in, const float* cost, int64_t ch, int64_t cw, int64_t hc, int64_t wc,
                    int64_t patch, int64_t merge, double beta, const double* beta_by_frame, const Rect& rect, float* out,
                    Stream stream) {
  OV2_TRY(check_canvas(hc, wc, patch, merge, beta, "score_frames"));
  if (in.height < 1 || in.width < 1 || in.n < 0) return Status::bad_argument("score_frames: frame size must be positive");
  if (cost && (ch < 1 || cw < 1)) return Status::bad_argument("score_frames: empty cost map");
  if (in.n == 0) return {};
  const cudaStream_t s = as_stream(stream);
  const int64_t f = patch * merge, nph = hc / patch, npw = wc / patch, nbh = hc / f, nbw = wc / f;
  const int64_t ncell = ((in.height + 3) / 4) * ((in.width + 3) / 4);
  Scratch mbar, hm, den, psum;
  OV2_TRY(mbar.allocate(static_cast<size_t>(in.n * ncell) * sizeof(double), s, "score_frames scratch"));
  OV2_TRY(hm.allocate(static_cast<size_t>(in.n), s, "score_frames scratch"));
  OV2_TRY(den.allocate(static_cast<size_t>(in.n) * sizeof(double), s, "score_frames scratch"));
  OV2_TRY(psum.allocate(static_cast<size_t>(in.n * nph * npw) * sizeof(double), s, "score_frames scratch"));
  OV2_TRY(saliency_terms(in, mbar.as<double>(), hm.as<uint8_t>(), den.as<double>(), stream));
  TapBuf rows, cols, crows, ccols;
  OV2_TRY(rows.make(in.height, hc, patch, s));
  OV2_TRY(cols.make(in.width, wc, patch, s));
  if (cost) {
    OV2_TRY(crows.make(ch, hc, f, s));
    OV2_TRY(ccols.make(cw, wc, f, s));
  }
  patch_kernel<<<grid_for(in.n * nph * npw, 128), 128, 0, s>>>(in, mbar.as<double>(), hm.as<uint8_t>(), den.as<double>(),
                                                               rows.taps, cols.taps, nph, npw, psum.as<double>());
  OV2_TRY(launched("score_frames patches"));
  frame_block_kernel<<<grid_for(in.n * nbh * nbw, 128), 128, 0, s>>>(
      in.n, in.is_intra, psum.as<double>(), cost, ch, cw, crows.taps, ccols.taps, nph, npw, nbh, nbw, patch, merge, beta,
      beta_by_frame, rect, hc, wc, out);
  return launched("score_frames blocks");
}

Status block_score(const float* s, const float* cost, int64_t n, int64_t hc, int64_t wc, int64_t patch, int64_t merge,
                   double beta, const Rect& rect, float* out, Stream stream) {
  OV2_TRY(check_canvas(hc, wc, patch, merge, beta, "block_score"));
  if (n < 0) return Status::bad_argument("block_score: negative count");
  if (n == 0) return {};
  const cudaStream_t st = as_stream(stream);
  const int64_t nph = hc / patch, npw = wc / patch, nb = (hc / (patch * merge)) * (wc / (patch * merge));
  Scratch psum;
  OV2_TRY(psum.allocate(static_cast<size_t>(n * nph * npw) * sizeof(double), st, "block_score scratch"));
  canvas_patch_kernel<<<grid_for(n * nph * npw, 128), 128, 0, st>>>(s, n, hc, wc, patch, psum.as<double>());
  OV2_TRY(launched("block_score patches"));
  canvas_block_kernel<<<grid_for(n * nb, 128), 128, 0, st>>>(psum.as<double>(), cost, n, hc, wc, patch, merge, beta,
                                                             rect, out);
  return launched("block_score blocks");
}

}  // namespace ov2::cuda

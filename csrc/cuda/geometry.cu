#include "cuda/geometry.h"

#include "cuda/block_score_math.cuh"
#include "cuda/common.cuh"
#include "cuda/geometry_math.cuh"

namespace ov2::cuda {
namespace {

__global__ void bilinear_kernel(const uint8_t* src, int64_t n, int64_t sh, int64_t sw, int64_t ch, uint8_t* dst,
                                int64_t dh, int64_t dw) {
  const int64_t per = dh * dw * ch, total = n * per;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t img = q / per, r = q % per;
    const int64_t y = r / (dw * ch), x = (r / ch) % dw, c = r % ch;
    dst[q] = bilinear_sample(src + img * sh * sw * ch, sh, sw, ch, dh, dw, y, x, c);
  }
}

__global__ void area_kernel(const float* src, int64_t n, int64_t sh, int64_t sw, float* dst, int64_t dh, int64_t dw) {
  const int64_t per = dh * dw, total = n * per;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t img = q / per, r = q % per;
    dst[q] = area_resize_at(src + img * sh * sw, sh, sw, dh, dw, r / dw, r % dw);
  }
}

__global__ void taps_kernel(int64_t sn, int64_t dn, int64_t group, int64_t* start, int32_t* count, double* weight,
                            int64_t stride) {
  const int64_t g = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (g < dn / group) fill_taps_group(sn, dn, group, g, stride, start, count, weight);
}

}  // namespace

Status resize_bilinear_u8(const uint8_t* src, int64_t n, int64_t sh, int64_t sw, int64_t ch, uint8_t* dst, int64_t dh,
                          int64_t dw, Stream stream) {
  if (n < 0 || sh < 1 || sw < 1 || ch < 1 || dh < 1 || dw < 1)
    return Status::bad_argument("resize_bilinear_u8: sizes must be positive");
  if (n == 0) return {};
  bilinear_kernel<<<grid_for(n * dh * dw * ch, 256), 256, 0, as_stream(stream)>>>(src, n, sh, sw, ch, dst, dh, dw);
  return launched("resize_bilinear_u8");
}

Status resize_area_f32(const float* src, int64_t n, int64_t sh, int64_t sw, float* dst, int64_t dh, int64_t dw,
                       Stream stream) {
  if (n < 0 || sh < 1 || sw < 1 || dh < 1 || dw < 1) return Status::bad_argument("resize_area_f32: sizes must be positive");
  if (n == 0) return {};
  area_kernel<<<grid_for(n * dh * dw, 256), 256, 0, as_stream(stream)>>>(src, n, sh, sw, dst, dh, dw);
  return launched("resize_area_f32");
}

Status grouped_taps(int64_t sn, int64_t dn, int64_t group, int64_t* start, int32_t* count, double* weight,
                    int64_t stride, Stream stream) {
  if (sn < 1 || dn < 1 || group < 1 || dn % group != 0)
    return Status::bad_argument("grouped_taps: outputs must be a positive multiple of the group");
  if (stride < max_group_span(sn, dn, group)) return Status::bad_argument("grouped_taps: stride too small");
  taps_kernel<<<grid_for(dn / group, 128), 128, 0, as_stream(stream)>>>(sn, dn, group, start, count, weight, stride);
  return launched("grouped_taps");
}

}  // namespace ov2::cuda

#include "cuda/packing.h"

#include "cuda/common.cuh"
#include "cuda/packing_math.cuh"

namespace ov2::cuda {
namespace {

// One thread per 4 output bytes of a canvas row (the CHW planes are written coalesced).
__global__ void gather_kernel(DevicePlan plan, const uint8_t* frames, int64_t n_cand, int64_t hc, int64_t wc,
                              int64_t f, uint8_t* out) {
  const int64_t nbw = wc / f, plane = hc * wc, total = plan.num_canvases * 3 * plane;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = q / (3 * plane), r = q % (3 * plane), c = r / plane, y = (r % plane) / wc, x = r % wc;
    const int64_t first = plan.offset[s], count = plan.offset[s + 1] - first;
    int64_t sy = 0, sx = 0;
    const int32_t pos = canvas_source(plan.kind[s], plan.frame[s], first, count, plan.block_t, plan.block_i,
                                      plan.block_j, f, nbw, y, x, &sy, &sx);
    uint8_t v = 0;
    if (pos >= 0 && pos < n_cand && sy >= 0 && sy < hc && sx >= 0 && sx < wc)
      v = frames[((static_cast<int64_t>(pos) * hc + sy) * wc + sx) * 3 + c];
    out[q] = v;
  }
}

__global__ void yuv_kernel(const uint8_t* Y, int64_t ys, const uint8_t* U, const uint8_t* V, int64_t uvs, int64_t H,
                           int64_t W, int matrix, bool full, uint8_t* rgb) {
  const int64_t total = H * W;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t y = q / W, x = q % W;
    yuv_to_rgb(Y[y * ys + x], U[(y / 2) * uvs + x / 2], V[(y / 2) * uvs + x / 2], matrix, full, rgb + q * 3);
  }
}

}  // namespace

Status gather_canvases(const DevicePlan& plan, const uint8_t* frames_hwc, int64_t n_cand, int64_t hc, int64_t wc,
                       int64_t patch, int64_t merge, uint8_t* out, Stream stream) {
  const int64_t f = patch * merge;
  if (patch < 1 || merge < 1 || hc < f || wc < f || hc % f != 0 || wc % f != 0)
    return Status::bad_argument("gather_canvases: canvas not a multiple of patch*merge");
  if (plan.num_canvases < 0 || n_cand < 1) return Status::bad_argument("gather_canvases: empty plan");
  if (plan.num_canvases == 0) return {};
  gather_kernel<<<grid_for(plan.num_canvases * 3 * hc * wc, 256), 256, 0, as_stream(stream)>>>(plan, frames_hwc, n_cand,
                                                                                                hc, wc, f, out);
  return launched("gather_canvases");
}

Status yuv420_to_rgb(const uint8_t* y, int64_t y_stride, const uint8_t* u, const uint8_t* v, int64_t uv_stride,
                     int64_t height, int64_t width, int matrix, bool full_range, uint8_t* rgb, Stream stream) {
  if (height < 1 || width < 1 || y_stride < width || uv_stride < (width + 1) / 2)
    return Status::bad_argument("yuv420_to_rgb: bad sizes");
  if (matrix != 601 && matrix != 709) return Status::bad_argument("yuv420_to_rgb: matrix must be 601 or 709");
  yuv_kernel<<<grid_for(height * width, 256), 256, 0, as_stream(stream)>>>(y, y_stride, u, v, uv_stride, height, width,
                                                                           matrix, full_range, rgb);
  return launched("yuv420_to_rgb");
}

}  // namespace ov2::cuda

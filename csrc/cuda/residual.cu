#include "cuda/residual.h"

#include "cuda/common.cuh"
#include "cuda/residual_math.cuh"

namespace ov2::cuda {
namespace {

// Largest covering row index + 1 per cell and list (integer atomicMax: order-independent, deterministic).
__global__ void cell_owner_kernel(const int32_t* rows, int64_t n, int cells_w, int cells_h, int* owner) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const int32_t* r = rows + i * kMvCols;
  int cx0, cy0, cx1, cy1;
  if (!row_cells(r, cells_w, cells_h, &cx0, &cy0, &cx1, &cy1)) return;
  int* o = owner + static_cast<int64_t>(row_list(r)) * cells_w * cells_h;
  for (int cy = cy0; cy < cy1; ++cy)
    for (int cx = cx0; cx < cx1; ++cx) atomicMax(o + static_cast<int64_t>(cy) * cells_w + cx, static_cast<int>(i + 1));
}

__global__ void densify_kernel(const int32_t* rows, int cells, const int* owner, float* mv_field, uint8_t* mv_flags,
                               uint8_t* intra_mask) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= cells) return;
  uint8_t fl = 0;
  for (int list = 0; list < 2; ++list) {
    const int own = owner[static_cast<int64_t>(list) * cells + c];
    float dx = 0.0f, dy = 0.0f;
    if (own > 0) {
      row_vector(rows + static_cast<int64_t>(own - 1) * kMvCols, &dx, &dy);
      fl |= static_cast<uint8_t>(1u << list);
    }
    if (mv_field) {
      mv_field[c * 4 + 2 * list] = dx;
      mv_field[c * 4 + 2 * list + 1] = dy;
    }
  }
  if (mv_flags) mv_flags[c] = fl;
  if (intra_mask) intra_mask[c] = fl ? 0 : 1;
}

// Largest predicting row index + 1 per pixel and list (rows of a list without its reference are skipped).
__global__ void pixel_owner_kernel(const int32_t* rows, int64_t n, int W, int H, bool has0, bool has1, int* owner) {
  const int64_t i = blockIdx.x;
  if (i >= n) return;
  const int32_t* r = rows + i * kMvCols;
  const int list = row_list(r);
  if (list == 0 ? !has0 : !has1) return;
  int x0, y0, x1, y1;
  if (!row_pixels(r, W, H, &x0, &y0, &x1, &y1)) return;
  int* o = owner + static_cast<int64_t>(list) * W * H;
  const int w = x1 - x0, cnt = w * (y1 - y0);
  for (int q = threadIdx.x; q < cnt; q += blockDim.x)
    atomicMax(o + static_cast<int64_t>(y0 + q / w) * W + x0 + q % w, static_cast<int>(i + 1));
}

__global__ void residual_kernel(LumaPlane cur, LumaPlane r0, LumaPlane r1, bool has0, bool has1, const int32_t* rows,
                                const int* owner, const uint8_t* flags, bool h264, int16_t* out) {
  const int64_t W = cur.width, H = cur.height, q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (q >= W * H) return;
  const int y = static_cast<int>(q / W), x = static_cast<int>(q % W);
  const int64_t cell = static_cast<int64_t>(y / 4) * ((W + 3) / 4) + x / 4;
  const uint8_t fl = flags[cell];
  out[q] = residual_at(cur, has0 ? &r0 : nullptr, has1 ? &r1 : nullptr, rows, h264, owner[q], owner[W * H + q],
                       (fl & 1u) != 0, (fl & 2u) != 0, x, y);
}

}  // namespace

Status densify_motion(const int32_t* rows, int64_t n, int width, int height, float* mv_field, uint8_t* mv_flags,
                      uint8_t* intra_mask, Stream stream) {
  if (width < 1 || height < 1 || n < 0 || n >= 2147483647) return Status::bad_argument("densify_motion: bad sizes");
  const cudaStream_t s = as_stream(stream);
  const int cw = (width + 3) / 4, chh = (height + 3) / 4, cells = cw * chh;
  Scratch owner;
  OV2_TRY(owner.allocate(static_cast<size_t>(2) * cells * sizeof(int), s, "densify scratch"));
  OV2_TRY(check(cudaMemsetAsync(owner.ptr, 0, static_cast<size_t>(2) * cells * sizeof(int), s), "densify scratch"));
  if (n > 0) {
    cell_owner_kernel<<<grid_for(n, 128), 128, 0, s>>>(rows, n, cw, chh, owner.as<int>());
    OV2_TRY(launched("densify owners"));
  }
  densify_kernel<<<grid_for(cells, 256), 256, 0, s>>>(rows, cells, owner.as<int>(), mv_field, mv_flags, intra_mask);
  return launched("densify_motion");
}

Status compute_residual(const DeviceLuma& cur, const DeviceLuma& ref0, const DeviceLuma& ref1, const int32_t* rows,
                        int64_t n, const uint8_t* mv_flags, bool h264, int16_t* residual, Stream stream) {
  if (!cur.data || cur.width < 1 || cur.height < 1 || cur.stride < cur.width)
    return Status::bad_argument("compute_residual: bad current picture");
  for (const DeviceLuma* r : {&ref0, &ref1})
    if (r->data && (r->width < 1 || r->height < 1 || r->stride < r->width))
      return Status::bad_argument("compute_residual: bad reference picture");
  if (n < 0 || n >= 2147483647 || !mv_flags) return Status::bad_argument("compute_residual: bad rows or flags");
  const cudaStream_t s = as_stream(stream);
  const int64_t px = static_cast<int64_t>(cur.width) * cur.height;
  Scratch owner;
  OV2_TRY(owner.allocate(static_cast<size_t>(2 * px) * sizeof(int), s, "residual scratch"));
  OV2_TRY(check(cudaMemsetAsync(owner.ptr, 0, static_cast<size_t>(2 * px) * sizeof(int), s), "residual scratch"));
  const bool has0 = ref0.data != nullptr, has1 = ref1.data != nullptr;
  if (n > 0) {
    pixel_owner_kernel<<<static_cast<unsigned>(n), 128, 0, s>>>(rows, n, cur.width, cur.height, has0, has1,
                                                                owner.as<int>());
    OV2_TRY(launched("residual owners"));
  }
  const LumaPlane c{cur.data, cur.width, cur.height, cur.stride};
  const LumaPlane a{ref0.data, ref0.width, ref0.height, ref0.stride};
  const LumaPlane b{ref1.data, ref1.width, ref1.height, ref1.stride};
  residual_kernel<<<grid_for(px, 256), 256, 0, s>>>(c, a, b, has0, has1, rows, owner.as<int>(), mv_flags, h264,
                                                     residual);
  return launched("compute_residual");
}

}  // namespace ov2::cuda

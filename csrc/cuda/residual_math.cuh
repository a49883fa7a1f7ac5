// DESIGN §4.3 on the device: MV densification and the motion-compensated prediction residual of
// csrc/codec/motion.cpp (densify_motion) and csrc/codec/residual.cpp (compute_residual), per cell / per pixel.
// Integer arithmetic throughout (the H.264 six-tap filter, bilinear at 1/scale pixel), so the device equals the
// CPU exactly. Overlapping partitions: the last exported row wins on the CPU (later rows overwrite); here every
// cell / pixel takes the row with the largest index that covers it (an integer atomicMax), which is the same.
#pragma once

#include "cuda/hd.cuh"

namespace ov2::cuda {

constexpr int kMvCols = 10;  // source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale

struct LumaPlane {
  const uint8_t* data;
  int width, height;
  int64_t stride;
};

OV2_HD int ref_at(const LumaPlane& p, int x, int y) {
  x = hd_clamp(x, 0, p.width - 1);
  y = hd_clamp(y, 0, p.height - 1);
  return p.data[static_cast<int64_t>(y) * p.stride + x];
}

OV2_HD int clip8(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }
OV2_HD int tap6(int a, int b, int c, int d, int e, int f) { return a - 5 * (b + e) + 20 * (c + d) + f; }
OV2_HD int avg2(int a, int b) { return (a + b + 1) >> 1; }

// H.264 luma sample (ITU-T H.264 §8.4.2.2.1) at integer position (X, Y) of the current picture displaced by the
// quarter-pel vector (mx, my). Names as in the standard's Figure 8-4 (G integer, b/h/j half samples).
OV2_HD int h264_sample(const LumaPlane& ref, int X, int Y, int mx, int my) {
  const int ix = X + (mx >> 2), iy = Y + (my >> 2), fx = mx & 3, fy = my & 3;
  auto G = [&](int dx, int dy) { return ref_at(ref, ix + dx, iy + dy); };
  auto b = [&](int dx, int dy) {
    return clip8((tap6(G(dx - 2, dy), G(dx - 1, dy), G(dx, dy), G(dx + 1, dy), G(dx + 2, dy), G(dx + 3, dy)) + 16) >> 5);
  };
  auto h = [&](int dx, int dy) {
    return clip8((tap6(G(dx, dy - 2), G(dx, dy - 1), G(dx, dy), G(dx, dy + 1), G(dx, dy + 2), G(dx, dy + 3)) + 16) >> 5);
  };
  auto b1 = [&](int dy) { return tap6(G(-2, dy), G(-1, dy), G(0, dy), G(1, dy), G(2, dy), G(3, dy)); };
  auto j = [&]() { return clip8((tap6(b1(-2), b1(-1), b1(0), b1(1), b1(2), b1(3)) + 512) >> 10); };
  switch (fy * 4 + fx) {
    case 0: return G(0, 0);
    case 1: return avg2(G(0, 0), b(0, 0));
    case 2: return b(0, 0);
    case 3: return avg2(G(1, 0), b(0, 0));
    case 4: return avg2(G(0, 0), h(0, 0));
    case 5: return avg2(b(0, 0), h(0, 0));
    case 6: return avg2(b(0, 0), j());
    case 7: return avg2(b(0, 0), h(1, 0));
    case 8: return h(0, 0);
    case 9: return avg2(h(0, 0), j());
    case 10: return j();
    case 11: return avg2(j(), h(1, 0));
    case 12: return avg2(G(0, 1), h(0, 0));
    case 13: return avg2(h(0, 0), b(0, 1));
    case 14: return avg2(j(), b(0, 1));
    default: return avg2(h(1, 0), b(0, 1));  // 15
  }
}

OV2_HD int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Bilinear at 1/scale pixel, rounding control 0 (MPEG-1/2/4 part 2).
OV2_HD int bilinear_sample(const LumaPlane& ref, int X, int Y, int mx, int my, int scale) {
  const int qx = floor_div(mx, scale), qy = floor_div(my, scale);
  const int fx = mx - qx * scale, fy = my - qy * scale;
  const int ix = X + qx, iy = Y + qy;
  if (fx == 0 && fy == 0) return ref_at(ref, ix, iy);
  const int s2 = scale * scale;
  const int w00 = (scale - fx) * (scale - fy), w10 = fx * (scale - fy), w01 = (scale - fx) * fy, w11 = fx * fy;
  const int acc = w00 * ref_at(ref, ix, iy) + w10 * ref_at(ref, ix + 1, iy) + w01 * ref_at(ref, ix, iy + 1) +
                  w11 * ref_at(ref, ix + 1, iy + 1) + s2 / 2;
  const int shift = scale == 2 ? 2 : (scale == 4 ? 4 : -1);
  return static_cast<uint8_t>(shift > 0 ? (acc >> shift) : (acc / s2));
}

// Prediction of pixel (X, Y) from one exported row (the codec's interpolation; h264 = Interp::H264Qpel).
OV2_HD int predict_sample(const LumaPlane& ref, bool h264, const int32_t* row, int X, int Y) {
  const int scale = row[9];
  if (h264 && scale == 4) return h264_sample(ref, X, Y, row[7], row[8]);
  return bilinear_sample(ref, X, Y, row[7], row[8], scale > 0 ? scale : 1);
}

// Rectangle of cells a row covers (densify_motion), false when the row is skipped there.
OV2_HD bool row_cells(const int32_t* r, int cells_w, int cells_h, int* cx0, int* cy0, int* cx1, int* cy1) {
  const int w = r[1], h = r[2];
  if (w <= 0 || h <= 0 || r[9] <= 0) return false;
  const int x0 = r[5] - w / 2, y0 = r[6] - h / 2;
  *cx0 = hd_max(0, x0 / 4);
  *cy0 = hd_max(0, y0 / 4);
  *cx1 = hd_min(cells_w, (x0 + w + 3) / 4);
  *cy1 = hd_min(cells_h, (y0 + h + 3) / 4);
  return *cx1 > *cx0 && *cy1 > *cy0;
}

// Visible pixel rectangle a row predicts (compute_residual), false when the row is skipped there.
OV2_HD bool row_pixels(const int32_t* r, int W, int H, int* x0, int* y0, int* x1, int* y1) {
  const int w = r[1], h = r[2];
  const int bx = r[5] - r[1] / 2, by = r[6] - r[2] / 2;
  if (w <= 0 || h <= 0 || w > 64 || h > 64 || bx >= W || by >= H || bx + w <= 0 || by + h <= 0) return false;
  *x0 = hd_max(0, bx);
  *y0 = hd_max(0, by);
  *x1 = hd_min(W, bx + w);
  *y1 = hd_min(H, by + h);
  return true;
}

OV2_HD int row_list(const int32_t* r) { return r[0] > 0 ? 1 : 0; }

// Densified vector of one list from its owning row (owner = row index + 1, 0 = none).
OV2_HD void row_vector(const int32_t* r, float* dx, float* dy) {
  const float inv = 1.0f / static_cast<float>(r[9]);
  *dx = static_cast<float>(r[7]) * inv;
  *dy = static_cast<float>(r[8]) * inv;
}

// Residual of pixel (x, y): cur − prediction with the per-cell rules of compute_residual. owner0/owner1: the
// row (index + 1) predicting this pixel per list, 0 = none; has0/has1: the cell's densified flags; refs nullable.
OV2_HD int16_t residual_at(const LumaPlane& cur, const LumaPlane* ref0, const LumaPlane* ref1, const int32_t* rows,
                           bool h264, int64_t owner0, int64_t owner1, bool has0, bool has1, int x, int y) {
  const int c = cur.data[static_cast<int64_t>(y) * cur.stride + x];
  const bool u0 = has0 && ref0, u1 = has1 && ref1;
  int p;
  if (u0 || u1) {
    const int q0 = (u0 && owner0 > 0) ? predict_sample(*ref0, h264, rows + (owner0 - 1) * kMvCols, x, y) : c;
    const int q1 = (u1 && owner1 > 0) ? predict_sample(*ref1, h264, rows + (owner1 - 1) * kMvCols, x, y) : c;
    p = (u0 && u1) ? avg2(q0, q1) : (u0 ? q0 : q1);
  } else {
    const LumaPlane* intra = ref0 ? ref0 : ref1;
    if (intra && !has0 && !has1) {
      p = intra->data[static_cast<int64_t>(hd_min(y, intra->height - 1)) * intra->stride + hd_min(x, intra->width - 1)];
    } else {
      p = c;
    }
  }
  return static_cast<int16_t>(c - p);
}

}  // namespace ov2::cuda

#include "codec/residual.h"

#include <algorithm>
#include <cstring>

namespace ov2 {
namespace {

inline uint8_t clip8(int v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }
inline int tap6(int a, int b, int c, int d, int e, int f) { return a - 5 * (b + e) + 20 * (c + d) + f; }
inline uint8_t avg2(int a, int b) { return static_cast<uint8_t>((a + b + 1) >> 1); }

constexpr int WS = 32;  // window stride: a window holds (w + 5) x (h + 5) <= 21 x 21 samples

// Copies the (w + 5) x (h + 5) window of `ref` whose top-left is (x - 2, y - 2), clamping at the edges.
void fetch_window(const Plane& ref, int x, int y, int w, int h, uint8_t* win) {
  const int x0 = x - 2, y0 = y - 2, ww = w + 5, wh = h + 5;
  const bool inside = x0 >= 0 && y0 >= 0 && x0 + ww <= ref.width && y0 + wh <= ref.height;
  for (int r = 0; r < wh; ++r) {
    uint8_t* dst = win + r * WS;
    if (inside) {
      std::memcpy(dst, ref.data + (y0 + r) * ref.stride + x0, static_cast<size_t>(ww));
    } else {
      const int yy = std::clamp(y0 + r, 0, ref.height - 1);
      const uint8_t* src = ref.data + yy * ref.stride;
      for (int c = 0; c < ww; ++c) dst[c] = src[std::clamp(x0 + c, 0, ref.width - 1)];
    }
  }
}

// H.264 luma sample interpolation (ITU-T H.264 §8.4.2.2.1) for a block of at most 16x16.
// Sample names follow the standard's Figure 8-4: G integer, b/h/j half, the rest quarter positions.
void predict_h264(const Plane& ref, int x0, int y0, int w, int h, int mx, int my, uint8_t* out, ptrdiff_t os) {
  const int ix = x0 + (mx >> 2), iy = y0 + (my >> 2);
  const int fx = mx & 3, fy = my & 3;
  if (fx == 0 && fy == 0 && ix >= 0 && iy >= 0 && ix + w <= ref.width && iy + h <= ref.height) {
    for (int y = 0; y < h; ++y) std::memcpy(out + y * os, ref.data + (iy + y) * ref.stride + ix, static_cast<size_t>(w));
    return;
  }
  uint8_t win[WS * 22];
  fetch_window(ref, ix, iy, w, h, win);
  const uint8_t* G = win + 2 * WS + 2;  // G[y * WS + x] = integer sample (ix + x, iy + y)
  if (fx == 0 && fy == 0) {
    for (int y = 0; y < h; ++y) std::memcpy(out + y * os, G + y * WS, static_cast<size_t>(w));
    return;
  }
  const bool diag = (fx & 1) && (fy & 1);
  const bool need_b = (fy == 0) || (fx == 2 && fy != 2) || diag;
  const bool need_h = (fx == 0) || (fy == 2 && fx != 2) || diag;
  const bool need_j = (fx == 2 && fy != 0) || (fy == 2 && fx != 0);
  uint8_t B[17][16];  // b at (x + 1/2, y), rows 0..h
  uint8_t Hh[16][17]; // h at (x, y + 1/2), cols 0..w
  uint8_t J[16][16];  // j at (x + 1/2, y + 1/2)
  if (need_b) {
    for (int y = 0; y <= h; ++y) {
      const uint8_t* g = G + y * WS;
      for (int x = 0; x < w; ++x) B[y][x] = clip8((tap6(g[x - 2], g[x - 1], g[x], g[x + 1], g[x + 2], g[x + 3]) + 16) >> 5);
    }
  }
  if (need_h) {
    for (int y = 0; y < h; ++y) {
      const uint8_t* g = G + y * WS;
      for (int x = 0; x <= w; ++x)
        Hh[y][x] = clip8((tap6(g[x - 2 * WS], g[x - WS], g[x], g[x + WS], g[x + 2 * WS], g[x + 3 * WS]) + 16) >> 5);
    }
  }
  if (need_j) {
    int16_t b1[21][16];  // unrounded horizontal half samples, rows -2..h+2
    for (int y = -2; y < h + 3; ++y) {
      const uint8_t* g = G + y * WS;
      for (int x = 0; x < w; ++x)
        b1[y + 2][x] = static_cast<int16_t>(tap6(g[x - 2], g[x - 1], g[x], g[x + 1], g[x + 2], g[x + 3]));
    }
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        J[y][x] = clip8((tap6(b1[y][x], b1[y + 1][x], b1[y + 2][x], b1[y + 3][x], b1[y + 4][x], b1[y + 5][x]) + 512) >> 10);
  }
  for (int y = 0; y < h; ++y) {
    uint8_t* o = out + y * os;
    const uint8_t* g = G + y * WS;
    switch (fy * 4 + fx) {
      case 1: for (int x = 0; x < w; ++x) o[x] = avg2(g[x], B[y][x]); break;                // a
      case 2: for (int x = 0; x < w; ++x) o[x] = B[y][x]; break;                            // b
      case 3: for (int x = 0; x < w; ++x) o[x] = avg2(g[x + 1], B[y][x]); break;            // c
      case 4: for (int x = 0; x < w; ++x) o[x] = avg2(g[x], Hh[y][x]); break;               // d
      case 5: for (int x = 0; x < w; ++x) o[x] = avg2(B[y][x], Hh[y][x]); break;            // e
      case 6: for (int x = 0; x < w; ++x) o[x] = avg2(B[y][x], J[y][x]); break;             // f
      case 7: for (int x = 0; x < w; ++x) o[x] = avg2(B[y][x], Hh[y][x + 1]); break;        // g
      case 8: for (int x = 0; x < w; ++x) o[x] = Hh[y][x]; break;                           // h
      case 9: for (int x = 0; x < w; ++x) o[x] = avg2(Hh[y][x], J[y][x]); break;            // i
      case 10: for (int x = 0; x < w; ++x) o[x] = J[y][x]; break;                           // j
      case 11: for (int x = 0; x < w; ++x) o[x] = avg2(J[y][x], Hh[y][x + 1]); break;       // k
      case 12: for (int x = 0; x < w; ++x) o[x] = avg2(g[x + WS], Hh[y][x]); break;         // n
      case 13: for (int x = 0; x < w; ++x) o[x] = avg2(Hh[y][x], B[y + 1][x]); break;       // p
      case 14: for (int x = 0; x < w; ++x) o[x] = avg2(J[y][x], B[y + 1][x]); break;        // q
      case 15: for (int x = 0; x < w; ++x) o[x] = avg2(Hh[y][x + 1], B[y + 1][x]); break;   // r
      default: break;
    }
  }
}

// Bilinear interpolation at 1/scale pixel with rounding control 0 (MPEG-1/2, MPEG-4 part 2 half-pel exactly).
void predict_bilinear(const Plane& ref, int x0, int y0, int w, int h, int mx, int my, int scale, uint8_t* out,
                      ptrdiff_t os) {
  auto fdiv = [](int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  const int qx = fdiv(mx, scale), qy = fdiv(my, scale);
  const int fx = mx - qx * scale, fy = my - qy * scale;
  const int ix = x0 + qx, iy = y0 + qy;
  if (fx == 0 && fy == 0 && ix >= 0 && iy >= 0 && ix + w <= ref.width && iy + h <= ref.height) {
    for (int y = 0; y < h; ++y) std::memcpy(out + y * os, ref.data + (iy + y) * ref.stride + ix, static_cast<size_t>(w));
    return;
  }
  uint8_t win[WS * 22];
  fetch_window(ref, ix, iy, w, h, win);
  const uint8_t* S = win + 2 * WS + 2;
  const int shift = scale == 2 ? 2 : (scale == 4 ? 4 : -1);
  const int s2 = scale * scale;
  const int w00 = (scale - fx) * (scale - fy), w10 = fx * (scale - fy), w01 = (scale - fx) * fy, w11 = fx * fy;
  for (int y = 0; y < h; ++y) {
    const uint8_t* a = S + y * WS;
    uint8_t* o = out + y * os;
    if (fx == 0 && fy == 0) {
      std::memcpy(o, a, static_cast<size_t>(w));
    } else if (shift > 0) {
      for (int x = 0; x < w; ++x)
        o[x] = static_cast<uint8_t>((w00 * a[x] + w10 * a[x + 1] + w01 * a[x + WS] + w11 * a[x + WS + 1] + s2 / 2) >> shift);
    } else {
      for (int x = 0; x < w; ++x)
        o[x] = static_cast<uint8_t>((w00 * a[x] + w10 * a[x + 1] + w01 * a[x + WS] + w11 * a[x + WS + 1] + s2 / 2) / s2);
    }
  }
}

}  // namespace

void predict_block(const Plane& ref, Interp interp, int x0, int y0, int w, int h, int mx, int my, int scale,
                   uint8_t* out, ptrdiff_t os) {
  // Blocks larger than 16x16 are predicted in 16x16 tiles.
  if (w > 16 || h > 16) {
    for (int ty = 0; ty < h; ty += 16)
      for (int tx = 0; tx < w; tx += 16)
        predict_block(ref, interp, x0 + tx, y0 + ty, std::min(16, w - tx), std::min(16, h - ty), mx, my, scale,
                      out + ty * os + tx, os);
    return;
  }
  if (interp == Interp::H264Qpel && scale == 4)
    predict_h264(ref, x0, y0, w, h, mx, my, out, os);
  else
    predict_bilinear(ref, x0, y0, w, h, mx, my, scale > 0 ? scale : 1, out, os);
}

void compute_residual(const Plane& cur, const Plane* ref0, const Plane* ref1, const int32_t* rows, int64_t n,
                      const MotionField& f, Interp interp, ResidualScratch& scratch, int16_t* residual) {
  const int W = cur.width, H = cur.height;
  const size_t plane = static_cast<size_t>(W) * H;
  for (auto& p : scratch.pred) p.resize(plane);
  const Plane* refs[2] = {ref0, ref1};
  uint8_t tmp[16 * 16];
  // 1. Predict every exported partition from its reference into the list's prediction plane.
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* r = rows + i * kMvCols;
    const int list = r[0] > 0 ? 1 : 0;
    if (!refs[list]) continue;
    const int w = r[1], h = r[2], x0 = r[5] - r[1] / 2, y0 = r[6] - r[2] / 2;
    if (w <= 0 || h <= 0 || w > 64 || h > 64 || x0 >= W || y0 >= H || x0 + w <= 0 || y0 + h <= 0) continue;
    uint8_t* dst = scratch.pred[list].data();
    if (x0 >= 0 && y0 >= 0 && x0 + w <= W && y0 + h <= H) {
      predict_block(*refs[list], interp, x0, y0, w, h, r[7], r[8], r[9], dst + static_cast<size_t>(y0) * W + x0, W);
    } else {  // partly outside the visible picture: predict in 16x16 tiles, keep the visible part
      for (int ty = 0; ty < h; ty += 16)
        for (int tx = 0; tx < w; tx += 16) {
          const int bw = std::min(16, w - tx), bh = std::min(16, h - ty);
          predict_block(*refs[list], interp, x0 + tx, y0 + ty, bw, bh, r[7], r[8], r[9], tmp, 16);
          for (int y = 0; y < bh; ++y) {
            const int yy = y0 + ty + y;
            if (yy < 0 || yy >= H) continue;
            for (int x = 0; x < bw; ++x) {
              const int xx = x0 + tx + x;
              if (xx >= 0 && xx < W) dst[static_cast<size_t>(yy) * W + xx] = tmp[y * 16 + x];
            }
          }
        }
    }
  }
  // 2. Fold everything into pred[0] per 4x4 cell: L1-only cells copy pred[1], bi-predicted cells average,
  //    intra cells take the co-located pixels of the previous picture; then residual = cur - pred[0].
  const Plane* intra_ref = ref0 ? ref0 : ref1;
  uint8_t* p0 = scratch.pred[0].data();
  const uint8_t* p1 = scratch.pred[1].data();
  for (int cy = 0; cy < f.cells_h; ++cy) {
    const int ys = cy * 4, ye = std::min(H, ys + 4);
    const size_t crow = static_cast<size_t>(cy) * f.cells_w;
    for (int cx = 0; cx < f.cells_w; ++cx) {
      const size_t cell = crow + cx;
      const bool u0 = f.has[0][cell] && ref0, u1 = f.has[1][cell] && ref1;
      if (u0 && !u1) continue;  // the common case: pred[0] already holds the prediction
      const int xs = cx * 4, xe = std::min(W, xs + 4);
      for (int y = ys; y < ye; ++y) {
        uint8_t* q0 = p0 + static_cast<size_t>(y) * W;
        const uint8_t* q1 = p1 + static_cast<size_t>(y) * W;
        const uint8_t* c = cur.data + y * cur.stride;
        if (u0 && u1) {
          for (int x = xs; x < xe; ++x) q0[x] = static_cast<uint8_t>((q0[x] + q1[x] + 1) >> 1);
        } else if (u1) {
          for (int x = xs; x < xe; ++x) q0[x] = q1[x];
        } else if (intra_ref && !f.has[0][cell] && !f.has[1][cell]) {
          const uint8_t* ir = intra_ref->data + std::min(y, intra_ref->height - 1) * intra_ref->stride;
          const int wmax = intra_ref->width - 1;
          for (int x = xs; x < xe; ++x) q0[x] = ir[std::min(x, wmax)];
        } else {
          for (int x = xs; x < xe; ++x) q0[x] = c[x];  // no usable reference: residual 0
        }
      }
    }
  }
  for (int y = 0; y < H; ++y) {
    const uint8_t* c = cur.data + y * cur.stride;
    const uint8_t* q = p0 + static_cast<size_t>(y) * W;
    int16_t* o = residual + static_cast<size_t>(y) * W;
    for (int x = 0; x < W; ++x) o[x] = static_cast<int16_t>(static_cast<int16_t>(c[x]) - static_cast<int16_t>(q[x]));
  }
}

}  // namespace ov2

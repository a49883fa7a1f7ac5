#include "codec/residual.h"

#include <algorithm>
#include <cstring>

namespace ov2 {
namespace {

inline uint8_t clip8(int v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }
inline int tap6(int a, int b, int c, int d, int e, int f) { return a - 5 * b + 20 * c + 20 * d - 5 * e + f; }

// Copies the (w + 5) x (h + 5) window of `ref` whose top-left is (x - 2, y - 2), clamping at the edges.
void fetch_window(const Plane& ref, int x, int y, int w, int h, uint8_t* win, int ws) {
  const int x0 = x - 2, y0 = y - 2, ww = w + 5, wh = h + 5;
  const bool inside = x0 >= 0 && y0 >= 0 && x0 + ww <= ref.width && y0 + wh <= ref.height;
  for (int r = 0; r < wh; ++r) {
    uint8_t* dst = win + r * ws;
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
void predict_h264(const Plane& ref, int x0, int y0, int w, int h, int mx, int my, uint8_t* out, ptrdiff_t os) {
  const int ix = x0 + (mx >> 2), iy = y0 + (my >> 2);
  const int fx = mx & 3, fy = my & 3;
  if (fx == 0 && fy == 0 && ix >= 0 && iy >= 0 && ix + w <= ref.width && iy + h <= ref.height) {
    for (int r = 0; r < h; ++r) std::memcpy(out + r * os, ref.data + (iy + r) * ref.stride + ix, static_cast<size_t>(w));
    return;
  }
  constexpr int WS = 24;  // window stride; window holds (w+5) x (h+5) <= 21 x 21
  uint8_t win[WS * 22];
  fetch_window(ref, ix, iy, w, h, win, WS);
  auto G = [&](int x, int y) -> int { return win[(y + 2) * WS + (x + 2)]; };
  if (fx == 0 && fy == 0) {
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) out[y * os + x] = static_cast<uint8_t>(G(x, y));
    return;
  }
  // b1: unrounded horizontal half samples at (x + 1/2, y) for y in [-2, h + 3), x in [0, w).
  // h1: unrounded vertical half samples at (x, y + 1/2) for y in [0, h), x in [0, w].
  int b1[21][17];
  int h1[17][17];
  for (int y = -2; y < h + 3; ++y)
    for (int x = 0; x < w; ++x)
      b1[y + 2][x] = tap6(G(x - 2, y), G(x - 1, y), G(x, y), G(x + 1, y), G(x + 2, y), G(x + 3, y));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x <= w; ++x)
      h1[y][x] = tap6(G(x, y - 2), G(x, y - 1), G(x, y), G(x, y + 1), G(x, y + 2), G(x, y + 3));
  auto B = [&](int x, int y) { return clip8((b1[y + 2][x] + 16) >> 5); };  // half at (x+1/2, y)
  auto Hh = [&](int x, int y) { return clip8((h1[y][x] + 16) >> 5); };     // half at (x, y+1/2)
  auto J = [&](int x, int y) {                                             // centre at (x+1/2, y+1/2)
    const int j1 = tap6(b1[y][x], b1[y + 1][x], b1[y + 2][x], b1[y + 3][x], b1[y + 4][x], b1[y + 5][x]);
    return clip8((j1 + 512) >> 10);
  };
  auto avg = [](int a, int b) { return static_cast<uint8_t>((a + b + 1) >> 1); };
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t v;
      switch (fy * 4 + fx) {
        case 1: v = avg(G(x, y), B(x, y)); break;                  // a
        case 2: v = B(x, y); break;                                // b
        case 3: v = avg(G(x + 1, y), B(x, y)); break;              // c
        case 4: v = avg(G(x, y), Hh(x, y)); break;                 // d
        case 5: v = avg(B(x, y), Hh(x, y)); break;                 // e
        case 6: v = avg(B(x, y), J(x, y)); break;                  // f
        case 7: v = avg(B(x, y), Hh(x + 1, y)); break;             // g
        case 8: v = Hh(x, y); break;                               // h
        case 9: v = avg(Hh(x, y), J(x, y)); break;                 // i
        case 10: v = J(x, y); break;                               // j
        case 11: v = avg(J(x, y), Hh(x + 1, y)); break;            // k
        case 12: v = avg(G(x, y + 1), Hh(x, y)); break;            // n
        case 13: v = avg(Hh(x, y), B(x, y + 1)); break;            // p
        case 14: v = avg(J(x, y), B(x, y + 1)); break;             // q
        case 15: v = avg(Hh(x + 1, y), B(x, y + 1)); break;        // r
        default: v = static_cast<uint8_t>(G(x, y)); break;
      }
      out[y * os + x] = v;
    }
  }
}

// Bilinear interpolation at 1/scale pixel with rounding control 0 (MPEG-1/2, MPEG-4 part 2 half-pel exactly).
void predict_bilinear(const Plane& ref, int x0, int y0, int w, int h, int mx, int my, int scale, uint8_t* out,
                      ptrdiff_t os) {
  // floor division for negative vectors
  auto fdiv = [](int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  const int ix = x0 + fdiv(mx, scale), iy = y0 + fdiv(my, scale);
  const int fx = mx - fdiv(mx, scale) * scale, fy = my - fdiv(my, scale) * scale;
  auto S = [&](int x, int y) -> int {
    x = std::clamp(x, 0, ref.width - 1);
    y = std::clamp(y, 0, ref.height - 1);
    return ref.data[y * ref.stride + x];
  };
  const int s2 = scale * scale;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const int X = ix + x, Y = iy + y;
      int v;
      if (fx == 0 && fy == 0) {
        v = S(X, Y);
      } else {
        v = ((scale - fx) * (scale - fy) * S(X, Y) + fx * (scale - fy) * S(X + 1, Y) + (scale - fx) * fy * S(X, Y + 1) +
             fx * fy * S(X + 1, Y + 1) + s2 / 2) /
            s2;
      }
      out[y * os + x] = static_cast<uint8_t>(v);
    }
}

}  // namespace

void predict_block(const Plane& ref, Interp interp, int x0, int y0, int w, int h, int mx, int my, int scale,
                   uint8_t* out, ptrdiff_t os) {
  if (interp == Interp::H264Qpel && scale == 4 && w <= 16 && h <= 16)
    predict_h264(ref, x0, y0, w, h, mx, my, out, os);
  else
    predict_bilinear(ref, x0, y0, w, h, mx, my, scale > 0 ? scale : 1, out, os);
}

void compute_residual(const Plane& cur, const Plane* ref0, const Plane* ref1, const MotionField& f, Interp interp,
                      int16_t* residual) {
  const int W = cur.width, H = cur.height;
  uint8_t p0[16], p1[16];
  const Plane* intra_ref = ref0 ? ref0 : ref1;
  for (int cy = 0; cy < f.cells_h; ++cy) {
    for (int cx = 0; cx < f.cells_w; ++cx) {
      const size_t c = static_cast<size_t>(cy) * f.cells_w + cx;
      const int x0 = cx * 4, y0 = cy * 4;
      const int bw = std::min(4, W - x0), bh = std::min(4, H - y0);
      const bool u0 = f.has[0][c] && ref0, u1 = f.has[1][c] && ref1;
      if (u0) predict_block(*ref0, interp, x0, y0, 4, 4, f.mx[0][c], f.my[0][c], f.scale[0][c], p0, 4);
      if (u1) predict_block(*ref1, interp, x0, y0, 4, 4, f.mx[1][c], f.my[1][c], f.scale[1][c], p1, 4);
      for (int y = 0; y < bh; ++y) {
        const uint8_t* src = cur.data + (y0 + y) * cur.stride + x0;
        int16_t* dst = residual + static_cast<size_t>(y0 + y) * W + x0;
        for (int x = 0; x < bw; ++x) {
          int pred;
          if (u0 && u1) pred = (p0[y * 4 + x] + p1[y * 4 + x] + 1) >> 1;
          else if (u0) pred = p0[y * 4 + x];
          else if (u1) pred = p1[y * 4 + x];
          else if (intra_ref) {
            const int yy = std::min(y0 + y, intra_ref->height - 1), xx = std::min(x0 + x, intra_ref->width - 1);
            pred = intra_ref->data[yy * intra_ref->stride + xx];
          } else pred = src[x];
          dst[x] = static_cast<int16_t>(src[x] - pred);
        }
      }
    }
  }
}

}  // namespace ov2

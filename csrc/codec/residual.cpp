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
  // Columns [0, lo) repeat the left edge, [lo, hi) are copied, [hi, ww) repeat the right edge.
  const int lo = std::clamp(-x0, 0, ww), hi = std::clamp(ref.width - x0, lo, ww);
  for (int r = 0; r < wh; ++r) {
    uint8_t* dst = win + r * WS;
    const uint8_t* src = ref.data + std::clamp(y0 + r, 0, ref.height - 1) * ref.stride;
    if (lo > 0) std::memset(dst, src[0], static_cast<size_t>(lo));
    if (hi > lo) std::memcpy(dst + lo, src + x0 + lo, static_cast<size_t>(hi - lo));
    if (ww > hi) std::memset(dst + hi, src[ref.width - 1], static_cast<size_t>(ww - hi));
  }
}

// Blocks are predicted into `out` (stride `os`) from `G`, the integer sample (ix, iy) of the reference: either
// inside the reference plane (stride = the plane's) or inside a clamped window copy (stride WS). BW is the block
// width when it is 4, 8 or 16 (fixed-length loops the compiler vectorises), 0 for any other width (runtime w).

// H.264 luma sample interpolation (ITU-T H.264 §8.4.2.2.1) for a block of at most 16x16.
// Sample names follow the standard's Figure 8-4: G integer, b/h/j half, the rest quarter positions.
template <int BW>
void h264_block(const uint8_t* __restrict G, ptrdiff_t gs, int w_rt, int h, int fx, int fy, uint8_t* __restrict out,
                ptrdiff_t os) {
  const int w = BW ? BW : w_rt;
  if (fx == 0 && fy == 0) {
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) out[y * os + x] = G[y * gs + x];
    return;
  }
  const bool diag = (fx & 1) && (fy & 1);
  const bool need_b = (fy == 0) || (fx == 2 && fy != 2) || diag;
  const bool need_h = (fx == 0) || (fy == 2 && fx != 2) || diag;
  const bool need_j = (fx == 2 && fy != 0) || (fy == 2 && fx != 0);
  uint8_t B[17][16];   // b at (x + 1/2, y), rows 0..h
  uint8_t Hh[16][17];  // h at (x, y + 1/2), cols 0..w
  uint8_t J[16][16];   // j at (x + 1/2, y + 1/2)
  if (need_b) {
    for (int y = 0; y <= h; ++y) {
      const uint8_t* g = G + y * gs;
      for (int x = 0; x < w; ++x) B[y][x] = clip8((tap6(g[x - 2], g[x - 1], g[x], g[x + 1], g[x + 2], g[x + 3]) + 16) >> 5);
    }
  }
  if (need_h) {
    for (int y = 0; y < h; ++y) {
      const uint8_t* g = G + y * gs;
      for (int x = 0; x <= w; ++x)
        Hh[y][x] = clip8((tap6(g[x - 2 * gs], g[x - gs], g[x], g[x + gs], g[x + 2 * gs], g[x + 3 * gs]) + 16) >> 5);
    }
  }
  if (need_j) {
    int16_t b1[21][16];  // unrounded horizontal half samples, rows -2..h+2
    for (int y = -2; y < h + 3; ++y) {
      const uint8_t* g = G + y * gs;
      for (int x = 0; x < w; ++x)
        b1[y + 2][x] = static_cast<int16_t>(tap6(g[x - 2], g[x - 1], g[x], g[x + 1], g[x + 2], g[x + 3]));
    }
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        J[y][x] = clip8((tap6(b1[y][x], b1[y + 1][x], b1[y + 2][x], b1[y + 3][x], b1[y + 4][x], b1[y + 5][x]) + 512) >> 10);
  }
  // One loop nest per position (the switch outside the loops).
#define OV2_ROWS(EXPR)                                \
  for (int y = 0; y < h; ++y) {                       \
    uint8_t* o = out + y * os;                        \
    const uint8_t* g = G + y * gs;                    \
    (void)g;                                          \
    for (int x = 0; x < w; ++x) o[x] = (EXPR);        \
  }                                                   \
  break;
  switch (fy * 4 + fx) {
    case 1: OV2_ROWS(avg2(g[x], B[y][x]))                 // a
    case 2: OV2_ROWS(B[y][x])                             // b
    case 3: OV2_ROWS(avg2(g[x + 1], B[y][x]))             // c
    case 4: OV2_ROWS(avg2(g[x], Hh[y][x]))                // d
    case 5: OV2_ROWS(avg2(B[y][x], Hh[y][x]))             // e
    case 6: OV2_ROWS(avg2(B[y][x], J[y][x]))              // f
    case 7: OV2_ROWS(avg2(B[y][x], Hh[y][x + 1]))         // g
    case 8: OV2_ROWS(Hh[y][x])                            // h
    case 9: OV2_ROWS(avg2(Hh[y][x], J[y][x]))             // i
    case 10: OV2_ROWS(J[y][x])                            // j
    case 11: OV2_ROWS(avg2(J[y][x], Hh[y][x + 1]))        // k
    case 12: OV2_ROWS(avg2(g[x + gs], Hh[y][x]))          // n
    case 13: OV2_ROWS(avg2(Hh[y][x], B[y + 1][x]))        // p
    case 14: OV2_ROWS(avg2(J[y][x], B[y + 1][x]))         // q
    case 15: OV2_ROWS(avg2(Hh[y][x + 1], B[y + 1][x]))    // r
    default: break;
  }
#undef OV2_ROWS
}

void predict_h264(const Plane& ref, int x0, int y0, int w, int h, int mx, int my, uint8_t* out, ptrdiff_t os) {
  const int ix = x0 + (mx >> 2), iy = y0 + (my >> 2);
  const int fx = mx & 3, fy = my & 3;
  const uint8_t* G;
  ptrdiff_t gs;
  uint8_t win[WS * 22];
  if (ix - 2 >= 0 && iy - 2 >= 0 && ix + w + 3 <= ref.width && iy + h + 3 <= ref.height) {
    G = ref.data + iy * ref.stride + ix;  // the six-tap support lies inside the picture: read it in place
    gs = ref.stride;
  } else {
    fetch_window(ref, ix, iy, w, h, win);
    G = win + 2 * WS + 2;  // G[y * WS + x] = integer sample (ix + x, iy + y)
    gs = WS;
  }
  switch (w) {
    case 16: h264_block<16>(G, gs, w, h, fx, fy, out, os); break;
    case 8: h264_block<8>(G, gs, w, h, fx, fy, out, os); break;
    case 4: h264_block<4>(G, gs, w, h, fx, fy, out, os); break;
    default: h264_block<0>(G, gs, w, h, fx, fy, out, os); break;
  }
}

// Bilinear interpolation at 1/scale pixel with rounding control 0 (MPEG-1/2, MPEG-4 part 2 half-pel exactly).
template <int BW>
void bilinear_block(const uint8_t* __restrict S, ptrdiff_t ss, int w_rt, int h, int fx, int fy, int scale,
                    uint8_t* __restrict out, ptrdiff_t os) {
  const int w = BW ? BW : w_rt;
  if (fx == 0 && fy == 0) {
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) out[y * os + x] = S[y * ss + x];
    return;
  }
  const int s2 = scale * scale;
  const int w00 = (scale - fx) * (scale - fy), w10 = fx * (scale - fy), w01 = (scale - fx) * fy, w11 = fx * fy;
  if (scale == 2) {  // half pel (MPEG-4 part 2, MPEG-1/2): the weights are 0, 1, 2 or 4 of 4
    for (int y = 0; y < h; ++y) {
      const uint8_t* a = S + y * ss;
      uint8_t* o = out + y * os;
      for (int x = 0; x < w; ++x)
        o[x] = static_cast<uint8_t>((w00 * a[x] + w10 * a[x + 1] + w01 * a[x + ss] + w11 * a[x + ss + 1] + 2) >> 2);
    }
    return;
  }
  const int shift = scale == 4 ? 4 : -1;
  for (int y = 0; y < h; ++y) {
    const uint8_t* a = S + y * ss;
    uint8_t* o = out + y * os;
    if (shift > 0) {
      for (int x = 0; x < w; ++x)
        o[x] = static_cast<uint8_t>((w00 * a[x] + w10 * a[x + 1] + w01 * a[x + ss] + w11 * a[x + ss + 1] + s2 / 2) >> shift);
    } else {
      for (int x = 0; x < w; ++x)
        o[x] = static_cast<uint8_t>((w00 * a[x] + w10 * a[x + 1] + w01 * a[x + ss] + w11 * a[x + ss + 1] + s2 / 2) / s2);
    }
  }
}

void predict_bilinear(const Plane& ref, int x0, int y0, int w, int h, int mx, int my, int scale, uint8_t* out,
                      ptrdiff_t os) {
  auto fdiv = [](int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  const int qx = fdiv(mx, scale), qy = fdiv(my, scale);
  const int fx = mx - qx * scale, fy = my - qy * scale;
  const int ix = x0 + qx, iy = y0 + qy;
  const uint8_t* S;
  ptrdiff_t ss;
  uint8_t win[WS * 22];
  if (ix >= 0 && iy >= 0 && ix + w + 1 <= ref.width && iy + h + 1 <= ref.height) {
    S = ref.data + iy * ref.stride + ix;  // the 2x2 support lies inside the picture
    ss = ref.stride;
  } else {
    fetch_window(ref, ix, iy, w, h, win);
    S = win + 2 * WS + 2;
    ss = WS;
  }
  switch (w) {
    case 16: bilinear_block<16>(S, ss, w, h, fx, fy, scale, out, os); break;
    case 8: bilinear_block<8>(S, ss, w, h, fx, fy, scale, out, os); break;
    case 4: bilinear_block<4>(S, ss, w, h, fx, fy, scale, out, os); break;
    default: bilinear_block<0>(S, ss, w, h, fx, fy, scale, out, os); break;
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

namespace {

// o = c - q over n pixels (N: a compile-time length, 0 for the runtime n).
template <int N>
inline void diff_row(int16_t* __restrict o, const uint8_t* __restrict c, const uint8_t* __restrict q, int n) {
  const int len = N ? N : n;
  for (int x = 0; x < len; ++x) o[x] = static_cast<int16_t>(c[x] - q[x]);
}

// The same over a rows x n block (kept out of line: inlined next to the prediction's stack buffer, GCC assembles
// the loads byte by byte).
template <int N>
__attribute__((noinline)) void diff_block(int16_t* __restrict o, ptrdiff_t os, const uint8_t* __restrict c,
                                          ptrdiff_t cs, const uint8_t* __restrict q, ptrdiff_t qs, int rows, int n) {
  for (int y = 0; y < rows; ++y) diff_row<N>(o + y * os, c + y * cs, q + y * qs, n);
}

// Predicts row r's visible part and writes cur - prediction into `residual` (W x H), in tiles of at most 16x16.
// With `cell_has` (rows whose cells densify_motion did not mark: motion_scale <= 0) only pixels of cells that have
// a vector of the row's list are written, as everywhere else the cell rules decide.
void residual_of_row(const Plane& cur, const Plane& ref, Interp interp, const int32_t* r, const uint8_t* cell_has,
                     int cells_w, int16_t* residual) {
  const int W = cur.width, H = cur.height;
  const int w = r[1], h = r[2], bx = r[5] - r[1] / 2, by = r[6] - r[2] / 2;
  alignas(64) uint8_t tmp[16 * 16];
  for (int ty = 0; ty < h; ty += 16)
    for (int tx = 0; tx < w; tx += 16) {
      const int tw = std::min(16, w - tx), th = std::min(16, h - ty);
      const int x0 = bx + tx, y0 = by + ty;
      const int xs = std::max(0, x0), ys = std::max(0, y0), xe = std::min(W, x0 + tw), ye = std::min(H, y0 + th);
      if (xs >= xe || ys >= ye) continue;
      predict_block(ref, interp, x0, y0, tw, th, r[7], r[8], r[9], tmp, 16);
      if (cell_has) {
        for (int y = ys; y < ye; ++y) {
          const uint8_t* c = cur.data + y * cur.stride;
          const uint8_t* q = tmp + (y - y0) * 16 - x0;
          int16_t* o = residual + static_cast<size_t>(y) * W;
          const uint8_t* hrow = cell_has + static_cast<size_t>(y / 4) * cells_w;
          for (int x = xs; x < xe; ++x)
            if (hrow[x / 4]) o[x] = static_cast<int16_t>(c[x] - q[x]);
        }
        continue;
      }
      int16_t* o = residual + static_cast<size_t>(ys) * W + xs;
      const uint8_t* c = cur.data + ys * cur.stride + xs;
      const uint8_t* q = tmp + (ys - y0) * 16 + (xs - x0);
      const int n = xe - xs;
      if (n == 16) diff_block<16>(o, W, c, cur.stride, q, 16, ye - ys, n);
      else if (n == 8) diff_block<8>(o, W, c, cur.stride, q, 16, ye - ys, n);
      else diff_block<0>(o, W, c, cur.stride, q, 16, ye - ys, n);
    }
}

bool row_predicts(const int32_t* r, int W, int H) {
  const int w = r[1], h = r[2], x0 = r[5] - r[1] / 2, y0 = r[6] - r[2] / 2;
  return !(w <= 0 || h <= 0 || w > 64 || h > 64 || x0 >= W || y0 >= H || x0 + w <= 0 || y0 + h <= 0);
}

}  // namespace

// Frames with a single usable list (P-frames; B-frames whose future reference is missing) are computed in place:
// every pixel first gets its cell's rule without a vector (intra cells: against the co-located reference pixels;
// cells with a vector: 0, which stays where no row covers a pixel), then the rows overwrite the pixels they cover
// in export order (the last row wins). Frames with bi-predicted or L1 cells go through two prediction planes.
// Both give exactly the per-pixel rules of residual_at in csrc/cuda/residual_math.cuh.
void compute_residual(const Plane& cur, const Plane* ref0, const Plane* ref1, const int32_t* rows, int64_t n,
                      const MotionField& f, Interp interp, ResidualScratch& scratch, int16_t* residual) {
  const int W = cur.width, H = cur.height;
  const Plane* refs[2] = {ref0, ref1};
  const Plane* intra_ref = ref0 ? ref0 : ref1;
  bool any_l1 = false;
  if (ref1)
    for (int64_t i = 0; i < n && !any_l1; ++i) any_l1 = rows[i * kMvCols] > 0;
  if (!any_l1) {
    // 1. Cells wholly inside the visible part of a row's block: the rows write all their pixels (step 3).
    const size_t cells = static_cast<size_t>(f.cells_w) * f.cells_h;
    scratch.covered.assign(cells, 0);
    if (ref0)
      for (int64_t i = 0; i < n; ++i) {
        const int32_t* r = rows + i * kMvCols;
        if (r[0] > 0 || r[9] <= 0 || !row_predicts(r, W, H)) continue;
        const int bx = r[5] - r[1] / 2, by = r[6] - r[2] / 2;
        const int xs = std::max(0, bx), ys = std::max(0, by), xe = std::min(W, bx + r[1]), ye = std::min(H, by + r[2]);
        const int cx0 = (xs + 3) / 4, cy0 = (ys + 3) / 4;
        const int cx1 = xe == W ? f.cells_w : xe / 4, cy1 = ye == H ? f.cells_h : ye / 4;
        for (int cy = cy0; cy < cy1; ++cy)
          if (cx1 > cx0) std::memset(scratch.covered.data() + static_cast<size_t>(cy) * f.cells_w + cx0, 1, cx1 - cx0);
      }
    // 2. The other cells by their rule: intra cells (no vector in either list) against the co-located reference
    //    pixels, the rest 0 (pixels of a cell with a vector that no row predicts; step 3 overwrites the others).
    for (int cy = 0; cy < f.cells_h; ++cy) {
      const int ys = cy * 4, ye = std::min(H, ys + 4);
      const size_t crow = static_cast<size_t>(cy) * f.cells_w;
      const uint8_t* h0 = f.has[0].data() + crow;
      const uint8_t* h1 = f.has[1].data() + crow;
      const uint8_t* cov = scratch.covered.data() + crow;
      auto rule = [&](int cx) { return cov[cx] ? 0 : (intra_ref && !h0[cx] && !h1[cx]) ? 1 : 2; };
      for (int cx = 0; cx < f.cells_w;) {
        if (cov[cx]) {  // covered cells (most of an inter frame): skip to the next uncovered one
          const void* z = std::memchr(cov + cx, 0, static_cast<size_t>(f.cells_w - cx));
          cx = z ? static_cast<int>(static_cast<const uint8_t*>(z) - cov) : f.cells_w;
          continue;
        }
        const int state = rule(cx);  // 1 intra, 2 zero
        int run = cx + 1;            // a run of cells with the same rule
        while (run < f.cells_w && rule(run) == state) ++run;
        const int xs = cx * 4, xe = std::min(W, run * 4);
        cx = run;
        for (int y = ys; y < ye; ++y) {
          int16_t* o = residual + static_cast<size_t>(y) * W;
          if (state == 2) {
            std::memset(o + xs, 0, static_cast<size_t>(xe - xs) * sizeof(int16_t));
            continue;
          }
          const uint8_t* c = cur.data + y * cur.stride;
          const uint8_t* ir = intra_ref->data + std::min(y, intra_ref->height - 1) * intra_ref->stride;
          const int xin = std::min(xe, intra_ref->width);
          if (xin > xs) diff_row<0>(o + xs, c + xs, ir + xs, xin - xs);
          for (int x = std::max(xs, xin); x < xe; ++x) o[x] = static_cast<int16_t>(c[x] - ir[intra_ref->width - 1]);
        }
      }
    }
    // 3. Rows of list 0 overwrite the pixels they predict, in export order (the last row wins).
    if (ref0)
      for (int64_t i = 0; i < n; ++i) {
        const int32_t* r = rows + i * kMvCols;
        if (r[0] > 0 || !row_predicts(r, W, H)) continue;
        residual_of_row(cur, *ref0, interp, r, r[9] > 0 ? nullptr : f.has[0].data(), f.cells_w, residual);
      }
    return;
  }

  // Both planes start as the current picture, so that a pixel no row covers predicts itself (residual 0).
  const size_t plane = static_cast<size_t>(W) * H;
  for (auto& p : scratch.pred) {
    p.resize(plane);
    for (int y = 0; y < H; ++y) std::memcpy(p.data() + static_cast<size_t>(y) * W, cur.data + y * cur.stride, W);
  }
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
  // 2. Per 4x4 cell the prediction its rule picks -- pred[0] (L0 only), the average (both lists), pred[1] (L1
  //    only), the co-located pixels of the previous picture (intra: no vector in either list), the current pixels
  //    (a list without a reference: residual 0) -- and residual = cur - that prediction, row by row over runs of
  //    cells with the same rule.
  enum : uint8_t { kL0, kBoth, kL1, kIntra, kSelf };
  const uint8_t* p0 = scratch.pred[0].data();
  const uint8_t* p1 = scratch.pred[1].data();
  scratch.rule.resize(static_cast<size_t>(f.cells_w));
  uint8_t* rule = scratch.rule.data();
  std::vector<std::pair<int, int>>& runs = scratch.runs;
  for (int cy = 0; cy < f.cells_h; ++cy) {
    const int ys = cy * 4, ye = std::min(H, ys + 4);
    const size_t crow = static_cast<size_t>(cy) * f.cells_w;
    const uint8_t* h0 = f.has[0].data() + crow;
    const uint8_t* h1 = f.has[1].data() + crow;
    for (int cx = 0; cx < f.cells_w; ++cx) {
      const bool u0 = h0[cx] && ref0, u1 = h1[cx] && ref1;
      rule[cx] = u0 ? (u1 ? kBoth : kL0) : u1 ? kL1 : (intra_ref && !h0[cx] && !h1[cx]) ? kIntra : kSelf;
    }
    runs.clear();  // (first cell, end cell) of each run of cells with the same rule
    for (int cx = 0; cx < f.cells_w;) {
      int e = cx + 1;
      while (e < f.cells_w && rule[e] == rule[cx]) ++e;
      runs.emplace_back(cx, e);
      cx = e;
    }
    for (int y = ys; y < ye; ++y) {
      const size_t row = static_cast<size_t>(y) * W;
      const uint8_t* c = cur.data + y * cur.stride;
      const uint8_t* q0 = p0 + row;
      const uint8_t* q1 = p1 + row;
      int16_t* o = residual + row;
      for (const auto& [cx, e] : runs) {
        const int xs = cx * 4, xe = std::min(W, e * 4), len = xe - xs;
        switch (rule[cx]) {
          case kL0: diff_row<0>(o + xs, c + xs, q0 + xs, len); break;
          case kL1: diff_row<0>(o + xs, c + xs, q1 + xs, len); break;
          case kBoth:
            for (int x = xs; x < xe; ++x) o[x] = static_cast<int16_t>(c[x] - ((q0[x] + q1[x] + 1) >> 1));
            break;
          case kIntra: {
            const uint8_t* ir = intra_ref->data + std::min(y, intra_ref->height - 1) * intra_ref->stride;
            const int xin = std::min(xe, intra_ref->width);
            if (xin > xs) diff_row<0>(o + xs, c + xs, ir + xs, xin - xs);
            for (int x = std::max(xs, xin); x < xe; ++x) o[x] = static_cast<int16_t>(c[x] - ir[intra_ref->width - 1]);
            break;
          }
          default: std::memset(o + xs, 0, static_cast<size_t>(len) * sizeof(int16_t)); break;
        }
      }
    }
  }
}

}  // namespace ov2

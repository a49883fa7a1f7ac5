// A decoded picture as RGB24 at a requested size (frames' `rgb`, the canvases' pixels).
//
// YUV pictures (planar, three components, any bit depth and chroma subsampling): swscale resizes every plane to
// the output size (bilinear, bit-exact mode, 8-bit 4:4:4: chroma at full resolution) and ov2 converts each pixel
// with the frame's matrix (BT.709 when the frame says so, BT.601 otherwise) and range in Q16 fixed point —
// `YuvToRgb` below, the same integer expressions as the device twin `csrc/cuda/packing_math.cuh` (tests/gpu
// compares them bit for bit over every 8-bit triple). RGB, palette and grey pictures: swscale straight to RGB24
// (bilinear, bit-exact mode). See docs/decoding.md, "Frame RGB".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

struct AVFrame;

namespace ov2 {

// Full-range RGB of an 8-bit Y'CbCr sample. matrix: 709 or 601; full: the sample is full range (0–255), otherwise
// limited (Y' 16–235, C 16–240; values outside are converted and clamped). Q16 coefficients of 2(1−Kr),
// 2Kb(1−Kb)/Kg, 2Kr(1−Kr)/Kg and 2(1−Kb), with the 255/219 and 255/224 range scales folded in; each channel is
// (Q16 sum + 2^15) >> 16 clamped to [0, 255]: within 1 of the rounded exact value.
struct YuvToRgb {
  int32_t ys, yo, c0, c1, c2, c3;
  YuvToRgb(int matrix, bool full) {
    const bool m709 = matrix == 709;
    ys = full ? 65536 : 76309;
    yo = full ? 0 : 16;
    c0 = m709 ? (full ? 103206 : 117489) : (full ? 91881 : 104597);
    c1 = m709 ? (full ? 12276 : 13975) : (full ? 22553 : 25675);
    c2 = m709 ? (full ? 30679 : 34925) : (full ? 46802 : 53279);
    c3 = m709 ? (full ? 121609 : 138438) : (full ? 116130 : 132201);
  }
  static uint8_t clamp8(int32_t v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }
  int32_t luma(int32_t Y) const { return (Y - yo) * ys; }
  uint8_t red(int32_t y, int32_t v) const { return clamp8((y + c0 * v + 32768) >> 16); }
  uint8_t green(int32_t y, int32_t u, int32_t v) const { return clamp8((y - c1 * u - c2 * v + 32768) >> 16); }
  uint8_t blue(int32_t y, int32_t u) const { return clamp8((y + c3 * u + 32768) >> 16); }
  void pixel(int32_t Y, int32_t U, int32_t V, uint8_t* rgb) const {
    const int32_t y = luma(Y);
    rgb[0] = red(y, V - 128);
    rgb[1] = green(y, U - 128, V - 128);
    rgb[2] = blue(y, U - 128);
  }
};

// One row: planar Y, U, V in, interleaved RGB out; `tmp` holds 3 * n bytes. Two builds chosen at run time, both
// YuvToRgb's integer expressions, so they give the same bytes: an AVX2 one (16 pixels per step, channels kept in
// registers and interleaved by byte shuffles) and a baseline x86-64 one (channels computed apart into `tmp` so the
// arithmetic vectorises, then interleaved). `allow_simd = false` forces the baseline (tests compare the two).
void yuv_to_rgb_row(const YuvToRgb& c, const uint8_t* Y, const uint8_t* U, const uint8_t* V, int n, uint8_t* tmp,
                    uint8_t* rgb, bool allow_simd = true);
bool yuv_to_rgb_row_has_simd();  // whether yuv_to_rgb_row has its AVX2 build on this CPU

// The matrix ("bt709", "bt601"; "none" for formats converted straight to RGB) and range ("full", "limited") that
// to_rgb applies to a picture of this pixel format and these colour tags.
const char* rgb_matrix_name(int pix_fmt, int color_space);
const char* rgb_range_name(int pix_fmt, int color_range);

// `f` (cropped) resized to W x H as RGB24 into dst (W*3 bytes per row, plus kRgbPadding bytes of slack for
// swscale's vector stores). Throws Error naming `name` when the format cannot be converted.
constexpr size_t kRgbPadding = 256;
void to_rgb(const AVFrame* f, int W, int H, uint8_t* dst, const std::string& name);

}  // namespace ov2

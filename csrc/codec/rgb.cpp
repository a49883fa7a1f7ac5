#include "codec/rgb.h"

#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "codec/error.h"
#include "codec/ffmpeg.h"

namespace ov2 {

namespace {

// The deprecated full-range "yuvj" formats are their yuv twins plus the range: swscale rewrites them internally,
// so a cached context keyed on them would be rebuilt on every call and lose the colour details.
AVPixelFormat without_j(AVPixelFormat fmt) {
  switch (fmt) {
    case AV_PIX_FMT_YUVJ420P: return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: return AV_PIX_FMT_YUV440P;
    default: return fmt;
  }
}

bool is_full_range(int pix_fmt, int color_range) {
  return color_range == AVCOL_RANGE_JPEG || pix_fmt == AV_PIX_FMT_YUVJ420P || pix_fmt == AV_PIX_FMT_YUVJ422P ||
         pix_fmt == AV_PIX_FMT_YUVJ444P || pix_fmt == AV_PIX_FMT_YUVJ440P;
}

// Planar Y'CbCr with three components: resized as 4:4:4 by swscale, converted by ov2.
bool is_planar_yuv(AVPixelFormat fmt) {
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(fmt);
  return d && d->nb_components >= 3 &&
         !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_HWACCEL |
                       AV_PIX_FMT_FLAG_BITSTREAM)) &&
         (d->flags & AV_PIX_FMT_FLAG_PLANAR);
}

// One cached swscale context per thread and purpose, rebuilt only when what shapes its output changes: the same
// conversion for every frame whatever the process converted before.
struct Sws {
  SwsContext* ctx = nullptr;
  int src_w = 0, src_h = 0, src_fmt = -1, dst_w = 0, dst_h = 0, dst_fmt = -1, cs = -1, full = -1, cpu = 0;
  ~Sws() { sws_freeContext(ctx); }
  SwsContext* get(int sw, int sh, AVPixelFormat sf, int dw, int dh, AVPixelFormat df, int c, int fr) {
    const int cpu_flags = av_get_cpu_flags();  // the code swscale picks (forced in tests; same bytes either way)
    if (ctx && sw == src_w && sh == src_h && sf == src_fmt && dw == dst_w && dh == dst_h && df == dst_fmt &&
        c == cs && fr == full && cpu_flags == cpu)
      return ctx;
    sws_freeContext(ctx);
    // Bit-exact mode: swscale's SIMD paths then give its C code's bytes (without it they differ in a third of
    // the pixels of a 720p resize), so the pixels do not depend on the CPU that converted them.
    ctx = sws_getContext(sw, sh, sf, dw, dh, df, SWS_BILINEAR | SWS_ACCURATE_RND | SWS_BITEXACT, nullptr, nullptr,
                         nullptr);
    src_w = sw, src_h = sh, src_fmt = sf, dst_w = dw, dst_h = dh, dst_fmt = df, cs = c, full = fr, cpu = cpu_flags;
    if (ctx && c >= 0) {  // direct RGB: the frame's matrix and range in, full-range RGB out
      int *inv_table = nullptr, *table = nullptr;
      int src_range = 0, dst_range = 0, brightness = 0, contrast = 0, saturation = 0;
      if (sws_getColorspaceDetails(ctx, &inv_table, &src_range, &table, &dst_range, &brightness, &contrast,
                                   &saturation) >= 0)
        sws_setColorspaceDetails(ctx, sws_getCoefficients(c), fr, sws_getCoefficients(SWS_CS_DEFAULT), 1, brightness,
                                 contrast, saturation);
    }
    if (!ctx) src_fmt = -1;
    return ctx;
  }
};

// The row loop, inlined into a baseline and an AVX2 build of it (integer arithmetic: both give the same bytes).
inline __attribute__((always_inline)) void yuv_to_rgb_row_impl(const YuvToRgb& c, const uint8_t* __restrict Y,
                                                               const uint8_t* __restrict U, const uint8_t* __restrict V,
                                                               int n, uint8_t* __restrict tmp,
                                                               uint8_t* __restrict rgb) {
  uint8_t* __restrict r = tmp;
  uint8_t* __restrict g = tmp + n;
  uint8_t* __restrict b = tmp + 2 * n;
  for (int x = 0; x < n; ++x) {
    const int32_t y = c.luma(Y[x]), u = static_cast<int32_t>(U[x]) - 128, v = static_cast<int32_t>(V[x]) - 128;
    r[x] = c.red(y, v);
    g[x] = c.green(y, u, v);
    b[x] = c.blue(y, u);
  }
  for (int x = 0; x < n; ++x) {
    rgb[3 * x + 0] = r[x];
    rgb[3 * x + 1] = g[x];
    rgb[3 * x + 2] = b[x];
  }
}

void yuv_to_rgb_row_base(const YuvToRgb& c, const uint8_t* Y, const uint8_t* U, const uint8_t* V, int n, uint8_t* tmp,
                         uint8_t* rgb) {
  yuv_to_rgb_row_impl(c, Y, U, V, n, tmp, rgb);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define OV2_RGB_AVX2 1
// pshufb masks that interleave 16 R, 16 G and 16 B bytes into 48 RGB bytes: kInterleave[c][k] places channel k's
// bytes into output chunk c (bytes 16c .. 16c + 15); -128 (0x80) writes a zero that another channel's bytes fill.
struct InterleaveMasks {
  alignas(16) int8_t m[3][3][16];
  InterleaveMasks() {
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 3; ++k)
        for (int i = 0; i < 16; ++i) {
          const int byte = 16 * c + i;
          m[c][k][i] = static_cast<int8_t>(byte % 3 == k ? byte / 3 : -128);
        }
  }
};
const InterleaveMasks kInterleave;

// 16 int32 (two halves of 8) -> 16 uint8 in order, saturated to [0, 255].
__attribute__((target("avx2"), always_inline)) inline __m128i pack_channel(__m256i lo, __m256i hi) {
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
  return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

// 16 pixels per step: the Q16 expressions of YuvToRgb in 32-bit lanes (exact: every intermediate fits), the clamp
// to [0, 255] by the saturating packs (the shifted values lie within [-300, 600]), the interleave by pshufb.
// The tail goes through the scalar expressions, so every pixel equals YuvToRgb::pixel (tests/codec/test_rgb.py
// compares all 2^24 triples of each matrix and range).
__attribute__((target("avx2"))) void yuv_to_rgb_row_avx2(const YuvToRgb& c, const uint8_t* Y, const uint8_t* U,
                                                         const uint8_t* V, int n, uint8_t* tmp, uint8_t* rgb) {
  const __m256i ys = _mm256_set1_epi32(c.ys), yo = _mm256_set1_epi32(c.yo), c0 = _mm256_set1_epi32(c.c0),
                c1 = _mm256_set1_epi32(c.c1), c2 = _mm256_set1_epi32(c.c2), c3 = _mm256_set1_epi32(c.c3),
                half = _mm256_set1_epi32(32768), k128 = _mm256_set1_epi32(128);
  const __m128i* M = reinterpret_cast<const __m128i*>(kInterleave.m);
  (void)tmp;  // the baseline build's channel rows; here the channels stay in registers
  int x = 0;
  for (; x + 16 <= n; x += 16) {
    __m256i r2[2], g2[2], b2[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i yv = _mm256_mullo_epi32(
          _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(Y + x + 8 * h))), yo),
          ys);
      const __m256i u = _mm256_sub_epi32(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(U + x + 8 * h))), k128);
      const __m256i v = _mm256_sub_epi32(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(V + x + 8 * h))), k128);
      const __m256i yh = _mm256_add_epi32(yv, half);
      r2[h] = _mm256_srai_epi32(_mm256_add_epi32(yh, _mm256_mullo_epi32(c0, v)), 16);
      g2[h] = _mm256_srai_epi32(
          _mm256_sub_epi32(_mm256_sub_epi32(yh, _mm256_mullo_epi32(c1, u)), _mm256_mullo_epi32(c2, v)), 16);
      b2[h] = _mm256_srai_epi32(_mm256_add_epi32(yh, _mm256_mullo_epi32(c3, u)), 16);
    }
    const __m128i r = pack_channel(r2[0], r2[1]), g = pack_channel(g2[0], g2[1]), b = pack_channel(b2[0], b2[1]);
    for (int k = 0; k < 3; ++k) {
      const __m128i o = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(r, _mm_load_si128(M + 3 * k)),
                                                  _mm_shuffle_epi8(g, _mm_load_si128(M + 3 * k + 1))),
                                     _mm_shuffle_epi8(b, _mm_load_si128(M + 3 * k + 2)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(rgb + 3 * x + 16 * k), o);
    }
  }
  for (; x < n; ++x) c.pixel(Y[x], U[x], V[x], rgb + 3 * x);
}
#endif

}  // namespace

// An explicit dispatch, not target_clones: an ifunc resolver runs while the program is relocated, before a
// sanitizer's runtime exists (ThreadSanitizer crashed there), and needs a loader that supports ifuncs.
bool yuv_to_rgb_row_has_simd() {
#ifdef OV2_RGB_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2;
#else
  return false;
#endif
}

void yuv_to_rgb_row(const YuvToRgb& c, const uint8_t* Y, const uint8_t* U, const uint8_t* V, int n, uint8_t* tmp,
                    uint8_t* rgb, bool allow_simd) {
#ifdef OV2_RGB_AVX2
  if (allow_simd && yuv_to_rgb_row_has_simd()) return yuv_to_rgb_row_avx2(c, Y, U, V, n, tmp, rgb);
#endif
  yuv_to_rgb_row_base(c, Y, U, V, n, tmp, rgb);
}

const char* rgb_matrix_name(int pix_fmt, int color_space) {
  if (!is_planar_yuv(without_j(static_cast<AVPixelFormat>(pix_fmt)))) return "none";
  return color_space == AVCOL_SPC_BT709 ? "bt709" : "bt601";
}

const char* rgb_range_name(int pix_fmt, int color_range) {
  return is_full_range(pix_fmt, color_range) ? "full" : "limited";
}

void to_rgb(const AVFrame* f, int W, int H, uint8_t* dst, const std::string& name) {
  FramePtr view(av_frame_clone(f));
  if (!view || av_frame_apply_cropping(view.get(), AV_FRAME_CROP_UNALIGNED) < 0)
    throw Error(ErrorKind::Corrupt, name, "cannot crop a decoded frame");
  const int full = is_full_range(view->format, view->color_range);
  const bool m709 = view->colorspace == AVCOL_SPC_BT709;
  const AVPixelFormat fmt = without_j(static_cast<AVPixelFormat>(view->format));
  if (!is_planar_yuv(fmt)) {
    thread_local Sws direct;
    SwsContext* c = direct.get(view->width, view->height, fmt, W, H, AV_PIX_FMT_RGB24,
                               m709 ? SWS_CS_ITU709 : SWS_CS_DEFAULT, full);
    if (!c) throw Error(ErrorKind::UnsupportedCodec, name, "cannot convert the pixel format to RGB");
    uint8_t* d[4] = {dst, nullptr, nullptr, nullptr};
    int ls[4] = {W * 3, 0, 0, 0};
    if (sws_scale(c, view->data, view->linesize, 0, view->height, d, ls) < 0)
      throw Error(ErrorKind::Corrupt, name, "swscale could not convert a decoded frame to RGB");
    return;
  }
  // Resize as 8-bit 4:4:4 (no colour conversion: the range stays the source's), then convert per pixel.
  thread_local Sws planes;
  thread_local std::vector<uint8_t> yuv, tmp;
  SwsContext* c = planes.get(view->width, view->height, fmt, W, H, AV_PIX_FMT_YUV444P, -1, -1);
  if (!c) throw Error(ErrorKind::UnsupportedCodec, name, "cannot resize the pixel format");
  const int stride = (W + 63) & ~63;
  const size_t plane = static_cast<size_t>(stride) * H;
  if (yuv.size() < 3 * plane + kRgbPadding) yuv.resize(3 * plane + kRgbPadding);
  uint8_t* p[4] = {yuv.data(), yuv.data() + plane, yuv.data() + 2 * plane, nullptr};
  int ls[4] = {stride, stride, stride, 0};
  if (sws_scale(c, view->data, view->linesize, 0, view->height, p, ls) < 0)
    throw Error(ErrorKind::Corrupt, name, "swscale could not resize a decoded frame");
  const YuvToRgb conv(m709 ? 709 : 601, full != 0);
  if (tmp.size() < 3 * static_cast<size_t>(W)) tmp.resize(3 * static_cast<size_t>(W));
  for (int y = 0; y < H; ++y) {
    const size_t o = static_cast<size_t>(y) * stride;
    yuv_to_rgb_row(conv, p[0] + o, p[1] + o, p[2] + o, W, tmp.data(), dst + static_cast<size_t>(y) * W * 3);
  }
  // The planes stay allocated for the next frame of this thread, unless they are large (beyond 4K outputs).
  if (yuv.size() > (size_t{48} << 20)) std::vector<uint8_t>().swap(yuv);
}

}  // namespace ov2

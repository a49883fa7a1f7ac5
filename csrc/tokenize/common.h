// Shared conventions of csrc/tokenize: errors, floating-point contract, small helpers.
// Knows neither FFmpeg nor Python. Every function reports bad input by throwing ov2::tok::Error
// (a std::invalid_argument), which the bindings turn into a Python ValueError; nothing aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

// Results must be bit-identical to the numpy reference (tests/reference/tokenize_ref.py), which evaluates
// every expression as written in IEEE double. Forbid the compiler from fusing a*b+c into an FMA.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ov2::tok {

struct Error : std::invalid_argument {
  explicit Error(const std::string& what) : std::invalid_argument(what) {}
};

inline void require(bool cond, const std::string& what) {
  if (!cond) throw Error(what);
}

// n interleaved RGB pixels of `s` to the planes r, g, b (canvases are channel-planar). Four pixels at a time as
// three 32-bit words where the byte order allows: the same bytes land in the same places as the per-byte loop.
inline void split_rgb(const uint8_t* s, int64_t n, uint8_t* r, uint8_t* g, uint8_t* b) {
  int64_t x = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; x + 4 <= n; x += 4, s += 12) {
    uint32_t w0, w1, w2;  // R0 G0 B0 R1 | G1 B1 R2 G2 | B2 R3 G3 B3 (first byte lowest)
    std::memcpy(&w0, s, 4);
    std::memcpy(&w1, s + 4, 4);
    std::memcpy(&w2, s + 8, 4);
    const uint32_t rr = (w0 & 0xFFu) | ((w0 >> 24) << 8) | (((w1 >> 16) & 0xFFu) << 16) | (((w2 >> 8) & 0xFFu) << 24);
    const uint32_t gg = ((w0 >> 8) & 0xFFu) | ((w1 & 0xFFu) << 8) | ((w1 >> 24) << 16) | (((w2 >> 16) & 0xFFu) << 24);
    const uint32_t bb = ((w0 >> 16) & 0xFFu) | (((w1 >> 8) & 0xFFu) << 8) | ((w2 & 0xFFu) << 16) | ((w2 >> 24) << 24);
    std::memcpy(r + x, &rr, 4);
    std::memcpy(g + x, &gg, 4);
    std::memcpy(b + x, &bb, 4);
  }
#endif
  for (; x < n; ++x, s += 3) {
    r[x] = s[0];
    g[x] = s[1];
    b[x] = s[2];
  }
}

}  // namespace ov2::tok

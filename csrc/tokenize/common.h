// Shared conventions of csrc/tokenize: errors, floating-point contract, small helpers.
// Knows neither FFmpeg nor Python. Every function reports bad input by throwing ov2::tok::Error
// (a std::invalid_argument), which the bindings turn into a Python ValueError; nothing aborts.
#pragma once

#include <cstddef>
#include <cstdint>
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

}  // namespace ov2::tok

#include "tokenize/ovenc_mosaic.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace ov2::tok {

namespace {

// Mosaics [m0, m1) of the output: their rows are n in [m0·g², min(m1·g², n_rows)).
void mosaic_range(const uint8_t* const* content, const int64_t* slot_frame, const Letterbox& lb, int64_t patch,
                  const int32_t* rows, int64_t n_rows, int64_t m0, int64_t m1, uint8_t* out) {
  const int64_t S = lb.size, g = S / patch, per = g * g;
  const int64_t plane = S * S;
  std::memset(out + m0 * 3 * plane, 0, static_cast<size_t>((m1 - m0) * 3 * plane));
  for (int64_t n = m0 * per; n < std::min(m1 * per, n_rows); ++n) {
    const int64_t t = rows[3 * n], h = rows[3 * n + 1], w = rows[3 * n + 2];
    const uint8_t* src = content[slot_frame[t]];
    const int64_t cell = n % per;
    uint8_t* dst = out + (n / per) * 3 * plane + (cell / g) * patch * S + (cell % g) * patch;
    // the patch's square rows/columns [h·p, h·p + p) × [w·p, w·p + p) that lie inside the content
    const int64_t y0 = std::max(h * patch, lb.top), y1 = std::min(h * patch + patch, lb.top + lb.hn);
    const int64_t x0 = std::max(w * patch, lb.left), x1 = std::min(w * patch + patch, lb.left + lb.wn);
    for (int64_t y = y0; y < y1; ++y) {
      const uint8_t* s = src + ((y - lb.top) * lb.wn + (x0 - lb.left)) * 3;
      const int64_t oy = y - h * patch;
      uint8_t* r = dst + oy * S + (x0 - w * patch);
      split_rgb(s, x1 - x0, r, r + plane, r + 2 * plane);
    }
  }
}

}  // namespace

void ovenc_mosaics(const uint8_t* const* content, int64_t n_content, const int64_t* slot_frame, int64_t n_slots,
                   const Letterbox& lb, int64_t patch, const int32_t* rows, int64_t n_rows, uint8_t* out,
                   int num_threads) {
  require(patch >= 1 && lb.size >= patch, "ovenc_mosaics: need size >= patch >= 1");
  require(lb.hn >= 1 && lb.wn >= 1 && lb.top >= 0 && lb.left >= 0 && lb.top + lb.hn <= lb.size &&
              lb.left + lb.wn <= lb.size,
          "ovenc_mosaics: the content must lie inside the square");
  const int64_t g = lb.size / patch, per = g * g;
  const int64_t m = std::max<int64_t>(1, (n_rows + per - 1) / per);
  for (int64_t t = 0; t < n_slots; ++t)
    require(slot_frame[t] >= 0 && slot_frame[t] < n_content, "ovenc_mosaics: slot_frame out of range");
  for (int64_t n = 0; n < n_rows; ++n) {
    const int64_t t = rows[3 * n], h = rows[3 * n + 1], w = rows[3 * n + 2];
    require(t >= 0 && t < n_slots && h >= 0 && h < g && w >= 0 && w < g,
            "ovenc_mosaics: row " + std::to_string(n) + " out of range");
  }
  // Each thread writes whole mosaics (its zero fill and its patches): the output is the same for any split.
  const int64_t k = std::clamp<int64_t>(num_threads, 1, m);
  auto range = [&](int64_t i) {
    mosaic_range(content, slot_frame, lb, patch, rows, n_rows, m * i / k, m * (i + 1) / k, out);
  };
  std::vector<std::thread> helpers;
  int64_t on_helpers = 1;  // ranges [1, on_helpers) run on helper threads; the rest here (no thread: no abort)
  for (int64_t i = 1; i < k; ++i) {
    try {
      helpers.emplace_back(range, i);
    } catch (...) {
      break;
    }
    on_helpers = i + 1;
  }
  range(0);
  for (int64_t i = on_helpers; i < k; ++i) range(i);
  for (auto& th : helpers) th.join();
}

}  // namespace ov2::tok

// DESIGN §5.3 on the device: bins, energy, quota θ, trigger, valley refinement, tail merge and the no-P/B
// fallback of csrc/tokenize/gop_partition.cpp. The energy of a bin is summed in packet order (one thread per
// bin scans the packets), so it equals the CPU's sum bit for bit; the walk over bins is sequential.
#pragma once

#include "cuda/hd.cuh"

namespace ov2::cuda {

struct GopArgs {
  double delta, t0;
  int64_t l_min, l_max, radius, k_tar;
  int64_t num_bins;
};

OV2_HD bool packet_is_pb(uint8_t pict_type, bool keyframe) {
  if (pict_type == 'I') return false;
  if (pict_type == 0 || pict_type == '?') return !keyframe;
  return true;
}

OV2_HD int64_t time_bin(double t, double t0, double delta, int64_t num_bins) {
  const double x = hd_floor((t - t0) / delta);
  if (!(x >= 0.0)) return 0;
  if (x >= static_cast<double>(num_bins - 1)) return num_bins - 1;
  return static_cast<int64_t>(x);
}

// Energy of bin b: Σ, in packet order, of value[q] over the P/B packets with a finite pts in bin b.
// value[q] is the packet's energy contribution (bytes, or log1p(bytes) computed on the host with std::log1p).
OV2_HD double bin_energy(const double* pts, const double* value, const uint8_t* pict, const uint8_t* key, int64_t n,
                         double t0, double delta, int64_t num_bins, int64_t b) {
  double e = 0.0;
  for (int64_t q = 0; q < n; ++q) {
    if (!hd_isfinite(pts[q])) continue;
    if (!packet_is_pb(pict ? pict[q] : uint8_t{0}, key ? key[q] != 0 : false)) continue;
    if (time_bin(pts[q], t0, delta, num_bins) == b) e += value[q];
  }
  return e;
}

// The sequential walk. energy[B]; num_pb > 0 selects the trigger walk, else the fallback. Writes up to `cap`
// groups (start, end, trigger, cost); returns the number of groups, or −1 when `cap` is too small.
// flags: bit 0 fallback, bit 1 tail merged. theta: the quota.
OV2_HD int64_t gop_walk(const double* energy, const GopArgs& a, int64_t num_pb, int64_t cap, int64_t* start,
                        int64_t* end, int64_t* trigger, double* cost, double* theta, int32_t* flags) {
  const int64_t B = a.num_bins;
  double total = 0.0;
  for (int64_t b = 0; b < B; ++b) total += energy[b];
  *theta = total / static_cast<double>(hd_max<int64_t>(1, a.k_tar));
  *flags = 0;
  int64_t ng = 0;
  if (num_pb == 0) {
    *flags |= 1;
    for (int64_t k = 0; k < a.k_tar; ++k) {
      const int64_t s = k * B / a.k_tar, c = (k + 1) * B / a.k_tar - 1;
      if (c >= s) {
        if (ng >= cap) return -1;
        start[ng] = s;
        end[ng] = c;
        trigger[ng] = -1;
        ++ng;
      }
    }
  } else {
    int64_t s = 0;
    while (s < B) {
      double cum = 0.0;
      int64_t trig = -1;
      for (int64_t x = s; x < B; ++x) {
        cum += energy[x];
        const int64_t len = x - s + 1;
        if (len >= a.l_max || (len >= a.l_min && cum >= *theta)) {
          trig = x;
          break;
        }
      }
      if (trig < 0) {
        const int64_t len = B - s;
        if (ng > 0 && 2 * len < a.l_min) {
          end[ng - 1] = B - 1;
          *flags |= 2;
        } else {
          if (ng >= cap) return -1;
          start[ng] = s;
          end[ng] = B - 1;
          trigger[ng] = -1;
          ++ng;
        }
        break;
      }
      const int64_t lo = hd_max(s + a.l_min - 1, trig - a.radius);
      const int64_t hi = hd_min(hd_min(s + a.l_max - 1, B - 1), trig + a.radius);
      int64_t best = trig;
      for (int64_t b = lo; b <= hi; ++b) {
        const double eb = energy[b], ebest = energy[best];
        const int64_t db = b > trig ? b - trig : trig - b, dbest = best > trig ? best - trig : trig - best;
        if (eb < ebest || (eb == ebest && (db < dbest || (db == dbest && b < best)))) best = b;
      }
      if (ng >= cap) return -1;
      start[ng] = s;
      end[ng] = best;
      trigger[ng] = trig;
      ++ng;
      s = best + 1;
    }
  }
  for (int64_t k = 0; k < ng; ++k) {
    double c = 0.0;
    for (int64_t b = start[k]; b <= end[k]; ++b) c += energy[b];
    cost[k] = c;
  }
  return ng;
}

// κ of time t under contiguous groups (tok::group_of_time, times already checked finite).
OV2_HD int32_t group_of(double t, const int64_t* start, const int64_t* end, int64_t ng, double t0, double delta) {
  const int64_t first = start[0], last = end[ng - 1];
  int64_t b = time_bin(t, t0, delta, last + 1);
  b = hd_max(b, first);
  int64_t lo = 0, hi = ng;  // last group with start <= b
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (start[mid] <= b) lo = mid; else hi = mid;
  }
  return static_cast<int32_t>(lo);
}

}  // namespace ov2::cuda

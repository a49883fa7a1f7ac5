#include "tokenize/gop_partition.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

namespace ov2::tok {

bool packet_is_pb(uint8_t pict_type, bool keyframe) {
  if (pict_type == 'I') return false;
  if (pict_type == 0 || pict_type == '?') return !keyframe;
  return true;
}

int64_t time_bin(double t, double t0, double delta, int64_t num_bins) {
  const double x = std::floor((t - t0) / delta);
  if (!(x >= 0.0)) return 0;
  if (x >= static_cast<double>(num_bins - 1)) return num_bins - 1;
  return static_cast<int64_t>(x);
}

GopResult gop_partition(const double* pts_s, const int64_t* size, const uint8_t* pict_type, const uint8_t* keyframe,
                        int64_t n, const GopParams& p) {
  require(n >= 0, "gop_partition: negative packet count");
  require(std::isfinite(p.delta) && p.delta > 0, "gop_partition: delta must be > 0");
  require(std::isfinite(p.t_min) && p.t_min > 0, "gop_partition: t_min must be > 0");
  require(std::isfinite(p.t_max) && p.t_max >= p.t_min, "gop_partition: t_max must be >= t_min");
  require(p.radius >= 0, "gop_partition: radius must be >= 0");
  require(p.k_tar >= 1, "gop_partition: k_tar must be >= 1");
  require(std::isfinite(p.t0), "gop_partition: t0 must be finite");
  GopResult r;
  const double lmin_d = std::ceil(p.t_min / p.delta), lmax_d = std::ceil(p.t_max / p.delta);
  require(lmax_d <= 1e9, "gop_partition: t_max/delta too large");
  r.l_min = std::max<int64_t>(1, static_cast<int64_t>(lmin_d));
  r.l_max = std::max<int64_t>(r.l_min, static_cast<int64_t>(lmax_d));

  int64_t num_bins = 0;
  if (std::isfinite(p.duration_s) && p.duration_s > 0) {
    const double b = std::ceil(p.duration_s / p.delta);
    require(b <= 1e8, "gop_partition: duration/delta exceeds 1e8 bins");
    num_bins = std::max<int64_t>(1, static_cast<int64_t>(b));
  } else {
    double last = 0.0;
    for (int64_t q = 0; q < n; ++q) {
      if (!std::isfinite(pts_s[q])) continue;
      const double x = std::floor((pts_s[q] - p.t0) / p.delta);
      if (x > last) last = x;
    }
    require(last < 1e8, "gop_partition: packet times span more than 1e8 bins");
    num_bins = static_cast<int64_t>(last) + 1;
  }
  const int64_t B = num_bins;
  r.energy.assign(static_cast<size_t>(B), 0.0);
  for (int64_t q = 0; q < n; ++q) {
    if (!std::isfinite(pts_s[q])) continue;
    const uint8_t pt = pict_type ? pict_type[q] : 0;
    const bool key = keyframe ? keyframe[q] != 0 : false;
    if (!packet_is_pb(pt, key)) continue;
    require(size[q] >= 0, "gop_partition: negative packet size at packet " + std::to_string(q));
    ++r.num_pb;
    const int64_t b = time_bin(pts_s[q], p.t0, p.delta, B);
    const double bytes = static_cast<double>(size[q]);
    r.energy[b] += p.log1p ? std::log1p(bytes) : bytes;
  }
  double total = 0.0;
  for (int64_t b = 0; b < B; ++b) total += r.energy[b];
  r.theta = total / static_cast<double>(std::max<int64_t>(1, p.k_tar));

  auto push = [&](int64_t s, int64_t c, int64_t trig) {
    r.start.push_back(s);
    r.end.push_back(c);
    r.trigger.push_back(trig);
  };

  if (r.num_pb == 0) {
    r.fallback = true;
    const int64_t K = p.k_tar;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t a = k * B / K;
      const int64_t c = (k + 1) * B / K - 1;
      if (c >= a) push(a, c, -1);
    }
  } else {
    int64_t s = 0;
    while (s < B) {
      double cum = 0.0;
      int64_t trig = -1;
      for (int64_t x = s; x < B; ++x) {
        cum += r.energy[x];
        const int64_t len = x - s + 1;
        if (len >= r.l_max || (len >= r.l_min && cum >= r.theta)) {
          trig = x;
          break;
        }
      }
      if (trig < 0) {  // the tail: the video ends before a trigger
        const int64_t len = B - s;
        if (!r.start.empty() && 2 * len < r.l_min) {
          r.end.back() = B - 1;
          r.tail_merged = true;
        } else {
          push(s, B - 1, -1);
        }
        break;
      }
      const int64_t lo = std::max(s + r.l_min - 1, trig - p.radius);
      const int64_t hi = std::min(std::min(s + r.l_max - 1, B - 1), trig + p.radius);
      int64_t best = trig;
      for (int64_t b = lo; b <= hi; ++b) {
        const double eb = r.energy[b], ebest = r.energy[best];
        const int64_t db = std::llabs(b - trig), dbest = std::llabs(best - trig);
        if (eb < ebest || (eb == ebest && (db < dbest || (db == dbest && b < best)))) best = b;
      }
      push(s, best, trig);
      s = best + 1;
    }
  }
  r.cost.resize(r.start.size());
  for (size_t k = 0; k < r.start.size(); ++k) {
    double c = 0.0;
    for (int64_t b = r.start[k]; b <= r.end[k]; ++b) c += r.energy[b];
    r.cost[k] = c;
  }
  return r;
}

std::vector<int32_t> group_of_time(const double* t_s, int64_t n, const int64_t* start, const int64_t* end,
                                   int64_t num_groups, double t0, double delta) {
  require(num_groups >= 1, "group_of_time: no groups");
  require(std::isfinite(delta) && delta > 0, "group_of_time: delta must be > 0");
  require(std::isfinite(t0), "group_of_time: t0 must be finite");
  require(start[0] >= 0, "group_of_time: first group must start at bin >= 0");
  for (int64_t k = 0; k < num_groups; ++k) {
    require(end[k] >= start[k], "group_of_time: empty group");
    if (k > 0) require(start[k] == end[k - 1] + 1, "group_of_time: groups must be contiguous and ordered");
  }
  const int64_t first = start[0], last = end[num_groups - 1];
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) {
    require(std::isfinite(t_s[q]), "group_of_time: non-finite time at " + std::to_string(q));
    int64_t b = time_bin(t_s[q], t0, delta, last + 1);
    b = std::max(b, first);
    // binary search: last group with start <= b
    const int64_t k = std::upper_bound(start, start + num_groups, b) - start - 1;
    out[q] = static_cast<int32_t>(k);
  }
  return out;
}

}  // namespace ov2::tok

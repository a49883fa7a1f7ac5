#include "cuda/gop_partition.h"

#include <cmath>
#include <string>

#include "cuda/common.cuh"
#include "cuda/gop_math.cuh"

namespace ov2::cuda {
namespace {

__global__ void gop_kernel(const GopVideo* videos, const double* pts_all, const double* value_all,
                           const uint8_t* pict_all, const uint8_t* key_all, double* energy_all, int64_t cap,
                           int64_t* start, int64_t* end, int64_t* trigger, double* cost, int64_t* num_groups,
                           double* theta, int32_t* flags, int64_t* num_pb) {
  const int64_t v = blockIdx.x;
  const GopVideo gv = videos[v];
  const double* pts = pts_all + gv.packet_offset;
  const double* value = value_all + gv.packet_offset;
  const uint8_t* pict = pict_all ? pict_all + gv.packet_offset : nullptr;
  const uint8_t* key = key_all ? key_all + gv.packet_offset : nullptr;
  double* energy = energy_all + gv.bin_offset;
  for (int64_t b = threadIdx.x; b < gv.num_bins; b += blockDim.x)
    energy[b] = bin_energy(pts, value, pict, key, gv.num_packets, gv.t0, gv.delta, gv.num_bins, b);
  __shared__ unsigned long long pb;
  if (threadIdx.x == 0) pb = 0;
  __syncthreads();
  unsigned long long local = 0;
  for (int64_t q = threadIdx.x; q < gv.num_packets; q += blockDim.x)
    if (hd_isfinite(pts[q]) && packet_is_pb(pict ? pict[q] : uint8_t{0}, key ? key[q] != 0 : false)) ++local;
  atomicAdd(&pb, local);
  __syncthreads();
  if (threadIdx.x == 0) {
    GopArgs a{gv.delta, gv.t0, gv.l_min, gv.l_max, gv.radius, gv.k_tar, gv.num_bins};
    num_pb[v] = static_cast<int64_t>(pb);
    num_groups[v] = gop_walk(energy, a, static_cast<int64_t>(pb), cap, start + v * cap, end + v * cap,
                             trigger + v * cap, cost + v * cap, theta + v, flags + v);
  }
}

template <class T>
Status upload(Scratch& buf, const std::vector<T>& v, cudaStream_t s) {
  OV2_TRY(buf.allocate(v.size() * sizeof(T), s, "gop_partition upload"));
  if (v.empty()) return {};
  return check(cudaMemcpyAsync(buf.ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, s), "gop upload");
}

template <class T>
Status download(std::vector<T>& v, const Scratch& buf, size_t n, cudaStream_t s) {
  v.resize(n);
  if (n == 0) return {};
  return check(cudaMemcpyAsync(v.data(), buf.ptr, n * sizeof(T), cudaMemcpyDeviceToHost, s), "gop download");
}

}  // namespace

Status gop_partition_batch(int64_t num_videos, const GopVideo* videos, const double* pts, const double* value,
                           const uint8_t* pict, const uint8_t* key, double* energy, int64_t cap, int64_t* start,
                           int64_t* end, int64_t* trigger, double* cost, int64_t* num_groups, double* theta,
                           int32_t* flags, int64_t* num_pb, Stream stream) {
  if (num_videos < 0 || num_videos > 2147483647 || cap < 1) return Status::bad_argument("gop_partition_batch: bad sizes");
  if (num_videos == 0) return {};
  gop_kernel<<<static_cast<unsigned>(num_videos), 256, 0, as_stream(stream)>>>(
      videos, pts, value, pict, key, energy, cap, start, end, trigger, cost, num_groups, theta, flags, num_pb);
  return launched("gop_partition_batch");
}

Status gop_partition(const std::vector<GopHostVideo>& videos, std::vector<ov2::tok::GopResult>* out, Stream stream) {
  const cudaStream_t s = as_stream(stream);
  std::vector<GopVideo> gv;
  std::vector<double> pts, value;
  std::vector<uint8_t> pict, key;
  int64_t bins = 0, cap = 1;
  for (size_t v = 0; v < videos.size(); ++v) {
    const GopHostVideo& h = videos[v];
    const ov2::tok::GopParams& p = h.params;
    const std::string who = "gop_partition (video " + std::to_string(v) + "): ";
    if (h.n < 0) return Status::bad_argument(who + "negative packet count");
    if (!(std::isfinite(p.delta) && p.delta > 0)) return Status::bad_argument(who + "delta must be > 0");
    if (!(std::isfinite(p.t_min) && p.t_min > 0)) return Status::bad_argument(who + "t_min must be > 0");
    if (!(std::isfinite(p.t_max) && p.t_max >= p.t_min)) return Status::bad_argument(who + "t_max must be >= t_min");
    if (p.radius < 0) return Status::bad_argument(who + "radius must be >= 0");
    if (p.k_tar < 1) return Status::bad_argument(who + "k_tar must be >= 1");
    if (!std::isfinite(p.t0)) return Status::bad_argument(who + "t0 must be finite");
    const double lmin_d = std::ceil(p.t_min / p.delta), lmax_d = std::ceil(p.t_max / p.delta);
    if (lmax_d > 1e9) return Status::bad_argument(who + "t_max/delta too large");
    GopVideo g;
    g.l_min = std::max<int64_t>(1, static_cast<int64_t>(lmin_d));
    g.l_max = std::max<int64_t>(g.l_min, static_cast<int64_t>(lmax_d));
    g.t0 = p.t0;
    g.delta = p.delta;
    g.radius = p.radius;
    g.k_tar = p.k_tar;
    if (std::isfinite(p.duration_s) && p.duration_s > 0) {
      const double b = std::ceil(p.duration_s / p.delta);
      if (b > 1e8) return Status::bad_argument(who + "duration/delta exceeds 1e8 bins");
      g.num_bins = std::max<int64_t>(1, static_cast<int64_t>(b));
    } else {
      double last = 0.0;
      for (int64_t q = 0; q < h.n; ++q) {
        if (!std::isfinite(h.pts_s[q])) continue;
        const double x = std::floor((h.pts_s[q] - p.t0) / p.delta);
        if (x > last) last = x;
      }
      if (!(last < 1e8)) return Status::bad_argument(who + "packet times span more than 1e8 bins");
      g.num_bins = static_cast<int64_t>(last) + 1;
    }
    g.packet_offset = static_cast<int64_t>(pts.size());
    g.num_packets = h.n;
    g.bin_offset = bins;
    bins += g.num_bins;
    for (int64_t q = 0; q < h.n; ++q) {
      const uint8_t pt = h.pict_type ? h.pict_type[q] : 0;
      const uint8_t kf = h.keyframe ? (h.keyframe[q] != 0 ? 1 : 0) : 0;
      const bool pb = std::isfinite(h.pts_s[q]) && ov2::tok::packet_is_pb(pt, kf != 0);
      if (pb && h.size[q] < 0)
        return Status::bad_argument(who + "negative packet size at packet " + std::to_string(q));
      const double bytes = static_cast<double>(h.size[q]);
      pts.push_back(h.pts_s[q]);
      value.push_back(p.log1p ? std::log1p(bytes) : bytes);
      pict.push_back(pt);
      key.push_back(kf);
    }
    // groups: at most one per bin (each is ≥ 1 bin), and k_tar in the fallback
    cap = std::max<int64_t>(cap, std::max<int64_t>(g.num_bins, p.k_tar));
    gv.push_back(g);
  }
  out->assign(videos.size(), ov2::tok::GopResult{});
  if (videos.empty()) return {};
  const int64_t V = static_cast<int64_t>(videos.size());
  Scratch d_gv, d_pts, d_val, d_pict, d_key, d_energy, d_start, d_end, d_trig, d_cost, d_ng, d_theta, d_flags, d_pb;
  OV2_TRY(upload(d_gv, gv, s));
  OV2_TRY(upload(d_pts, pts, s));
  OV2_TRY(upload(d_val, value, s));
  OV2_TRY(upload(d_pict, pict, s));
  OV2_TRY(upload(d_key, key, s));
  const size_t slots = static_cast<size_t>(V * cap);
  OV2_TRY(d_energy.allocate(static_cast<size_t>(bins) * sizeof(double), s, "gop scratch"));
  OV2_TRY(d_start.allocate(slots * sizeof(int64_t), s, "gop scratch"));
  OV2_TRY(d_end.allocate(slots * sizeof(int64_t), s, "gop scratch"));
  OV2_TRY(d_trig.allocate(slots * sizeof(int64_t), s, "gop scratch"));
  OV2_TRY(d_cost.allocate(slots * sizeof(double), s, "gop scratch"));
  OV2_TRY(d_ng.allocate(static_cast<size_t>(V) * sizeof(int64_t), s, "gop scratch"));
  OV2_TRY(d_theta.allocate(static_cast<size_t>(V) * sizeof(double), s, "gop scratch"));
  OV2_TRY(d_flags.allocate(static_cast<size_t>(V) * sizeof(int32_t), s, "gop scratch"));
  OV2_TRY(d_pb.allocate(static_cast<size_t>(V) * sizeof(int64_t), s, "gop scratch"));
  OV2_TRY(gop_partition_batch(V, d_gv.as<GopVideo>(), d_pts.as<double>(), d_val.as<double>(), d_pict.as<uint8_t>(),
                              d_key.as<uint8_t>(), d_energy.as<double>(), cap, d_start.as<int64_t>(), d_end.as<int64_t>(),
                              d_trig.as<int64_t>(), d_cost.as<double>(), d_ng.as<int64_t>(), d_theta.as<double>(),
                              d_flags.as<int32_t>(), d_pb.as<int64_t>(), stream));
  std::vector<double> energy, theta, cost;
  std::vector<int64_t> start, end, trig, ng, npb;
  std::vector<int32_t> flags;
  OV2_TRY(download(energy, d_energy, static_cast<size_t>(bins), s));
  OV2_TRY(download(start, d_start, slots, s));
  OV2_TRY(download(end, d_end, slots, s));
  OV2_TRY(download(trig, d_trig, slots, s));
  OV2_TRY(download(cost, d_cost, slots, s));
  OV2_TRY(download(ng, d_ng, static_cast<size_t>(V), s));
  OV2_TRY(download(theta, d_theta, static_cast<size_t>(V), s));
  OV2_TRY(download(flags, d_flags, static_cast<size_t>(V), s));
  OV2_TRY(download(npb, d_pb, static_cast<size_t>(V), s));
  OV2_TRY(synchronize(stream));
  for (int64_t v = 0; v < V; ++v) {
    ov2::tok::GopResult& r = (*out)[static_cast<size_t>(v)];
    const GopVideo& g = gv[static_cast<size_t>(v)];
    if (ng[v] < 0) return Status::bad_argument("gop_partition: internal error, group capacity exceeded");
    r.energy.assign(energy.begin() + g.bin_offset, energy.begin() + g.bin_offset + g.num_bins);
    r.theta = theta[v];
    r.l_min = g.l_min;
    r.l_max = g.l_max;
    r.num_pb = npb[v];
    r.fallback = (flags[v] & 1) != 0;
    r.tail_merged = (flags[v] & 2) != 0;
    const size_t o = static_cast<size_t>(v * cap);
    r.start.assign(start.begin() + o, start.begin() + o + ng[v]);
    r.end.assign(end.begin() + o, end.begin() + o + ng[v]);
    r.trigger.assign(trig.begin() + o, trig.begin() + o + ng[v]);
    r.cost.assign(cost.begin() + o, cost.begin() + o + ng[v]);
  }
  return {};
}

}  // namespace ov2::cuda

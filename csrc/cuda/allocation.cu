#include "cuda/allocation.h"

#include <cmath>
#include <string>

#include "cuda/allocation_math.cuh"
#include "cuda/common.cuh"

namespace ov2::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void attenuation_kernel(const float* scores, int64_t nb, double lambda, double alpha_peak, int rank_mode,
                                   double* at_all, int32_t* order_all, int64_t* valid, double* weight) {
  const int64_t f = blockIdx.x;
  const float* a = scores + f * nb;
  double* at = at_all + f * nb;
  int32_t* order = order_all + f * nb;
  __shared__ unsigned long long nv_s;
  if (threadIdx.x == 0) nv_s = 0;
  __syncthreads();
  unsigned long long local = 0;
  for (int64_t i = threadIdx.x; i < nb; i += blockDim.x) local += hd_isfinite_f(a[i]) ? 1 : 0;
  atomicAdd(&nv_s, local);
  __syncthreads();
  const int64_t nv = static_cast<int64_t>(nv_s);
  for (int64_t i = threadIdx.x; i < nb; i += blockDim.x) {
    if (!hd_isfinite_f(a[i])) {
      at[i] = 0.0;
      continue;
    }
    const int32_t rho = frame_rank(a, nb, static_cast<int32_t>(i));
    order[rho] = static_cast<int32_t>(i);
    at[i] = attenuate(a[i], rho, nv, lambda, rank_mode);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    valid[f] = nv;
    weight[f] = frame_weight(at, order, nv, alpha_peak);
  }
}

struct GroupTables {
  const int32_t* z;          // concatenated non-anchor candidates
  const int64_t* z_offset;   // G + 1
  const int32_t* num_p;      // G
  const int64_t* canvas_base;  // G + 1
};

// One thread block per group: pool order by merge ranks, then the sequential strata (select_group).
__global__ void select_kernel(GroupTables gt, const float* scores, const double* at_all, const int64_t* valid,
                              const double* weight, int64_t nb, int64_t nbw, double* atg, int32_t* state,
                              int64_t* fsorted, int64_t* sorted, int64_t* left, double* wg, int32_t* sigma,
                              double* cand_weight, double* cand_cum, int32_t* cand_stratum, int32_t* block_t,
                              int32_t* block_i, int32_t* block_j, CanvasOut* cout) {
  const int64_t k = blockIdx.x;
  const int64_t z0 = gt.z_offset[k], nz = gt.z_offset[k + 1] - z0, m = gt.num_p[k];
  if (m == 0) return;
  const int32_t* z = gt.z + z0;
  const int64_t base = z0 * nb, n_items = nz * nb;
  double* at = atg + base;
  int32_t* st = state + base;
  int64_t* fs = fsorted + base;
  int64_t* so = sorted + base;
  for (int64_t x = threadIdx.x; x < n_items; x += blockDim.x) {
    const int64_t l = x / nb, i = x % nb, t = z[l];
    const bool ok = hd_isfinite_f(scores[t * nb + i]);
    st[x] = ok ? -1 : -2;
    at[x] = at_all[t * nb + i];
  }
  for (int64_t l = threadIdx.x; l < nz; l += blockDim.x) {
    left[z0 + l] = valid[z[l]];
    wg[z0 + l] = weight[z[l]];
  }
  __syncthreads();
  // rank within the frame under the pool order, then the merged rank over all frames of the group
  for (int64_t x = threadIdx.x; x < n_items; x += blockDim.x) {
    if (st[x] != -1) continue;
    const int64_t l = x / nb;
    int64_t r = 0;
    for (int64_t j = l * nb; j < (l + 1) * nb; ++j)
      if (j != x && st[j] == -1 && pool_better(at, nb, j, x)) ++r;
    fs[l * nb + r] = x;
  }
  __syncthreads();
  for (int64_t x = threadIdx.x; x < n_items; x += blockDim.x) {
    if (st[x] != -1) continue;
    int64_t rank = 0;
    for (int64_t l = 0; l < nz; ++l) {
      const int64_t cnt = left[z0 + l];
      int64_t lo = 0, hi = cnt;  // entries of frame l ordered before x form a prefix
      while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        const int64_t e = fs[l * nb + mid];
        if (e != x && pool_better(at, nb, e, x)) lo = mid + 1; else hi = mid;
      }
      rank += lo;
    }
    so[rank] = x;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t n_sorted = 0;
    for (int64_t l = 0; l < nz; ++l) n_sorted += left[z0 + l];
    const int64_t first_p = gt.canvas_base[k] + 1;
    select_group(z, nz, nb, nbw, m, wg + z0, left + z0, st, so, n_sorted, sigma + z0, cand_weight, cand_cum,
                 cand_stratum, block_t + first_p * nb, block_i + first_p * nb, block_j + first_p * nb, cout + first_p);
  }
}

template <class T>
Status to_device(Scratch& buf, const std::vector<T>& v, cudaStream_t s, const char* what) {
  OV2_TRY(buf.allocate(v.size() * sizeof(T), s, what));
  if (v.empty()) return {};
  return check(cudaMemcpyAsync(buf.ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, s), what);
}

template <class T>
Status to_host(std::vector<T>& v, const void* src, size_t n, cudaStream_t s, const char* what) {
  v.resize(n);
  if (n == 0) return {};
  return check(cudaMemcpyAsync(v.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost, s), what);
}

}  // namespace

Status frame_attenuation(const float* scores, int64_t n, int64_t nb, double lambda, double alpha_peak, int rank_mode,
                         double* at, int32_t* order, int64_t* valid, double* weight, Stream stream) {
  if (n < 0 || nb < 1 || nb >= (int64_t{1} << 30)) return Status::bad_argument("frame_attenuation: bad sizes");
  if (!std::isfinite(lambda) || lambda < 0) return Status::bad_argument("allocate: lambda must be >= 0");
  if (!std::isfinite(alpha_peak)) return Status::bad_argument("allocate: alpha_peak must be finite");
  if (rank_mode != 0 && rank_mode != 1) return Status::bad_argument("allocate: rank_mode must be 0 (rank) or 1 (fraction)");
  if (n == 0) return {};
  attenuation_kernel<<<static_cast<unsigned>(n), kThreads, 0, as_stream(stream)>>>(scores, nb, lambda, alpha_peak,
                                                                                  rank_mode, at, order, valid, weight);
  return launched("frame_attenuation");
}

Status allocate(const int64_t* group_start, const int64_t* group_end, const double* group_cost, int64_t num_groups,
                const double* cand_t, int64_t n_cand, const float* scores, int64_t nbh, int64_t nbw,
                const AllocParams& p, AllocOutput* out, Stream stream) {
  if (n_cand < 1) return Status::bad_argument("allocate: no candidate frames");
  if (n_cand >= (int64_t{1} << 30)) return Status::bad_argument("allocate: too many candidates");
  if (nbh < 1 || nbw < 1 || nbh * nbw >= (int64_t{1} << 30)) return Status::bad_argument("allocate: bad block grid");
  const cudaStream_t s = as_stream(stream);
  const int64_t nb = nbh * nbw;
  Scratch at, order, valid, weight;
  OV2_TRY(at.allocate(static_cast<size_t>(n_cand * nb) * sizeof(double), s, "allocate scratch"));
  OV2_TRY(order.allocate(static_cast<size_t>(n_cand * nb) * sizeof(int32_t), s, "allocate scratch"));
  OV2_TRY(valid.allocate(static_cast<size_t>(n_cand) * sizeof(int64_t), s, "allocate scratch"));
  OV2_TRY(weight.allocate(static_cast<size_t>(n_cand) * sizeof(double), s, "allocate scratch"));
  OV2_TRY(frame_attenuation(scores, n_cand, nb, p.lambda, p.alpha_peak, p.rank_mode, at.as<double>(), order.as<int32_t>(),
                            valid.as<int64_t>(), weight.as<double>(), stream));
  std::vector<int64_t> valid_h;
  OV2_TRY(to_host(valid_h, valid.ptr, static_cast<size_t>(n_cand), s, "allocate: valid counts"));
  OV2_TRY(synchronize(stream));
  AllocPlan plan;
  try {
    plan = plan_allocation(group_start, group_end, group_cost, num_groups, cand_t, n_cand, valid_h.data(), nb,
                           AllocPlanParams{p.max_canvases, p.anchor, p.t0, p.delta});
  } catch (const std::exception& e) {
    return Status::bad_argument(e.what());
  }
  const int64_t G = static_cast<int64_t>(plan.groups.start.size()), S = plan.canvas_base.back();
  // group tables and outputs
  Scratch z_d, zo_d, np_d, cb_d;
  OV2_TRY(to_device(z_d, plan.z, s, "allocate: tables"));
  OV2_TRY(to_device(zo_d, plan.z_offset, s, "allocate: tables"));
  OV2_TRY(to_device(np_d, plan.num_p, s, "allocate: tables"));
  OV2_TRY(to_device(cb_d, plan.canvas_base, s, "allocate: tables"));
  const size_t items = static_cast<size_t>(n_cand * nb);
  Scratch atg, state, fsorted, sorted, left, wg, sigma, cw, cc, cs, bt, bi, bj, co;
  OV2_TRY(atg.allocate(items * sizeof(double), s, "allocate scratch"));
  OV2_TRY(state.allocate(items * sizeof(int32_t), s, "allocate scratch"));
  OV2_TRY(fsorted.allocate(items * sizeof(int64_t), s, "allocate scratch"));
  OV2_TRY(sorted.allocate(items * sizeof(int64_t), s, "allocate scratch"));
  OV2_TRY(left.allocate(static_cast<size_t>(n_cand) * sizeof(int64_t), s, "allocate scratch"));
  OV2_TRY(wg.allocate(static_cast<size_t>(n_cand) * sizeof(double), s, "allocate scratch"));
  OV2_TRY(sigma.allocate(static_cast<size_t>(n_cand) * sizeof(int32_t), s, "allocate scratch"));
  const std::vector<double> zero_w(static_cast<size_t>(n_cand), 0.0), neg_cum(static_cast<size_t>(n_cand), -1.0);
  const std::vector<int32_t> neg_i(static_cast<size_t>(n_cand), -1);
  OV2_TRY(to_device(cw, zero_w, s, "allocate: outputs"));
  OV2_TRY(to_device(cc, neg_cum, s, "allocate: outputs"));
  OV2_TRY(to_device(cs, neg_i, s, "allocate: outputs"));
  const size_t slots = static_cast<size_t>(S * nb);
  OV2_TRY(bt.allocate(slots * sizeof(int32_t), s, "allocate outputs"));
  OV2_TRY(bi.allocate(slots * sizeof(int32_t), s, "allocate outputs"));
  OV2_TRY(bj.allocate(slots * sizeof(int32_t), s, "allocate outputs"));
  OV2_TRY(co.allocate(static_cast<size_t>(S) * sizeof(CanvasOut), s, "allocate outputs"));
  OV2_TRY(check(cudaMemsetAsync(co.ptr, 0, static_cast<size_t>(S) * sizeof(CanvasOut), s), "allocate outputs"));
  select_kernel<<<static_cast<unsigned>(G), kThreads, 0, s>>>(
      GroupTables{z_d.as<int32_t>(), zo_d.as<int64_t>(), np_d.as<int32_t>(), cb_d.as<int64_t>()}, scores,
      at.as<double>(), valid.as<int64_t>(), weight.as<double>(), nb, nbw, atg.as<double>(), state.as<int32_t>(),
      fsorted.as<int64_t>(), sorted.as<int64_t>(), left.as<int64_t>(), wg.as<double>(), sigma.as<int32_t>(),
      cw.as<double>(), cc.as<double>(), cs.as<int32_t>(), bt.as<int32_t>(), bi.as<int32_t>(), bj.as<int32_t>(),
      co.as<CanvasOut>());
  OV2_TRY(launched("allocate select"));
  std::vector<int32_t> bt_h, bi_h, bj_h;
  std::vector<CanvasOut> co_h;
  AllocOutput& r = *out;
  r = AllocOutput{};
  OV2_TRY(to_host(bt_h, bt.ptr, slots, s, "allocate: results"));
  OV2_TRY(to_host(bi_h, bi.ptr, slots, s, "allocate: results"));
  OV2_TRY(to_host(bj_h, bj.ptr, slots, s, "allocate: results"));
  OV2_TRY(to_host(co_h, co.ptr, static_cast<size_t>(S), s, "allocate: results"));
  OV2_TRY(to_host(r.cand_weight, cw.ptr, static_cast<size_t>(n_cand), s, "allocate: results"));
  OV2_TRY(to_host(r.cand_cum, cc.ptr, static_cast<size_t>(n_cand), s, "allocate: results"));
  OV2_TRY(to_host(r.cand_stratum, cs.ptr, static_cast<size_t>(n_cand), s, "allocate: results"));
  OV2_TRY(synchronize(stream));
  // assemble (tok::AllocResult layout)
  r.group_start = plan.groups.start;
  r.group_end = plan.groups.end;
  r.group_cost = plan.groups.cost;
  r.merges_empty = plan.groups.merges_empty;
  r.merges_budget = plan.groups.merges_budget;
  r.group_anchor = plan.anchor;
  r.group_num_p = plan.num_p;
  r.group_num_frames = plan.num_frames;
  r.group_capacity.assign(plan.capacity.begin(), plan.capacity.end());
  r.cand_group = plan.cand_group;
  r.canvas_offset.push_back(0);
  for (int64_t k = 0; k < G; ++k) {
    r.add_i_canvas(static_cast<int32_t>(k), plan.anchor[k]);
    for (int32_t rr = 0; rr < plan.num_p[k]; ++rr) {
      const int64_t c = plan.canvas_base[k] + 1 + rr;
      const CanvasOut& o = co_h[static_cast<size_t>(c)];
      for (int32_t q = 0; q < o.count; ++q) {
        r.block_t.push_back(bt_h[static_cast<size_t>(c * nb + q)]);
        r.block_i.push_back(bi_h[static_cast<size_t>(c * nb + q)]);
        r.block_j.push_back(bj_h[static_cast<size_t>(c * nb + q)]);
      }
      r.add_p_canvas(static_cast<int32_t>(k), rr, o.lo, o.hi, o.widen, o.whole);
    }
  }
  return {};
}

}  // namespace ov2::cuda

// Shared by the binding files: numpy copies of std::vector, and the Python dicts of an allocation plan and of a
// GOP partition (the same fields from csrc/tokenize and from csrc/cuda).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <vector>

namespace ov2::bind {

namespace py = pybind11;

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v, std::vector<py::ssize_t> shape = {}) {
  if (shape.empty()) shape.push_back(static_cast<py::ssize_t>(v.size()));
  py::array_t<T> out(shape);
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(T));
  return out;
}

// The plan of DESIGN §5.6 as returned by core.tok.allocate and core.cuda.allocate.
template <class Plan>
py::dict alloc_dict(const Plan& r) {
  py::dict d;
  d["group_start"] = to_numpy(r.group_start);
  d["group_end"] = to_numpy(r.group_end);
  d["group_cost"] = to_numpy(r.group_cost);
  d["group_anchor"] = to_numpy(r.group_anchor);
  d["group_num_p"] = to_numpy(r.group_num_p);
  d["group_capacity"] = to_numpy(r.group_capacity);
  d["group_num_frames"] = to_numpy(r.group_num_frames);
  d["merges_empty"] = r.merges_empty;
  d["merges_budget"] = r.merges_budget;
  d["cand_group"] = to_numpy(r.cand_group);
  d["cand_weight"] = to_numpy(r.cand_weight);
  d["cand_cum"] = to_numpy(r.cand_cum);
  d["cand_stratum"] = to_numpy(r.cand_stratum);
  d["canvas_kind"] = to_numpy(r.canvas_kind);
  d["canvas_group"] = to_numpy(r.canvas_group);
  d["canvas_frame"] = to_numpy(r.canvas_frame);
  d["canvas_rank"] = to_numpy(r.canvas_rank);
  d["canvas_lo"] = to_numpy(r.canvas_lo);
  d["canvas_hi"] = to_numpy(r.canvas_hi);
  d["canvas_widen"] = to_numpy(r.canvas_widen);
  py::array_t<bool> whole(static_cast<py::ssize_t>(r.canvas_whole.size()));
  for (size_t i = 0; i < r.canvas_whole.size(); ++i) whole.mutable_data()[i] = r.canvas_whole[i] != 0;
  d["canvas_whole"] = whole;
  d["canvas_offset"] = to_numpy(r.canvas_offset);
  d["block_t"] = to_numpy(r.block_t);
  d["block_i"] = to_numpy(r.block_i);
  d["block_j"] = to_numpy(r.block_j);
  return d;
}

// The GOP partition of DESIGN §5.3 as returned by core.tok.gop_partition and core.cuda.gop_partition_batch.
template <class Gop>
py::dict gop_dict(const Gop& r) {
  py::dict d;
  d["energy"] = to_numpy(r.energy);
  d["theta"] = r.theta;
  d["l_min"] = r.l_min;
  d["l_max"] = r.l_max;
  d["num_bins"] = static_cast<int64_t>(r.energy.size());
  d["num_pb"] = r.num_pb;
  d["start"] = to_numpy(r.start);
  d["end"] = to_numpy(r.end);
  d["trigger"] = to_numpy(r.trigger);
  d["cost"] = to_numpy(r.cost);
  d["fallback"] = r.fallback;
  d["tail_merged"] = r.tail_merged;
  return d;
}

}  // namespace ov2::bind

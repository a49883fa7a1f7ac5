// Bindings of csrc/cuda (the GPU kernels) as ov2_tokenizer._core.cuda. Compiled only with OV2_HAVE_CUDA.
// Device buffers are passed as integer addresses (torch: tensor.data_ptr()), 0 meaning "absent", plus sizes and a
// stream handle (torch: torch.cuda.current_stream().cuda_stream; 0 = the default stream). Nothing here checks
// that an address points at enough device memory: the Python layer (ov2_tokenizer.gpu) allocates the tensors.
// Errors: bad arguments raise ValueError, CUDA failures RuntimeError (with the CUDA message); a machine without a
// driver or device is reported by available() / device_count(), never by a crash.
#include <pybind11/numpy.h>

#include "bindings/arrays.h"
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/allocation.h"
#include "cuda/block_score.h"
#include "cuda/common.h"
#include "cuda/geometry.h"
#include "cuda/gop_partition.h"
#include "cuda/packing.h"
#include "cuda/residual.h"
#include "cuda/saliency.h"

namespace py = pybind11;
namespace oc = ov2::cuda;

namespace {

template <typename T>
using arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
T* ptr(uintptr_t a) { return reinterpret_cast<T*>(a); }

oc::Stream stream_of(uintptr_t s) { return reinterpret_cast<oc::Stream>(s); }

void raise_if(const oc::Status& st) {
  if (st.ok()) return;
  if (st.code == -1) throw py::value_error(st.message);
  throw std::runtime_error("CUDA: " + st.message);
}

using ov2::bind::to_numpy;

oc::Rect to_rect(const std::vector<int64_t>& v) {
  if (v.size() != 4) throw py::value_error("valid: expected (y0, x0, y1, x1)");
  return oc::Rect{v[0], v[1], v[2], v[3]};
}

oc::SaliencyInput sal_in(int64_t n, int64_t height, int64_t width, uintptr_t mv_field, uintptr_t mv_flags, int64_t h4,
                         int64_t w4, uintptr_t residual, uintptr_t is_intra) {
  oc::SaliencyInput in;
  in.n = n;
  in.height = height;
  in.width = width;
  in.h4 = h4;
  in.w4 = w4;
  in.mv_field = ptr<const float>(mv_field);
  in.mv_flags = ptr<const uint8_t>(mv_flags);
  in.residual = ptr<const int16_t>(residual);
  in.is_intra = ptr<const uint8_t>(is_intra);
  return in;
}

template <class F>
void run(F&& f) {
  oc::Status st;
  {
    py::gil_scoped_release nogil;
    st = f();
  }
  raise_if(st);
}

py::dict alloc_dict(const oc::AllocOutput& r) { return ov2::bind::alloc_dict(r); }

py::dict gop_dict(const ov2::tok::GopResult& r) { return ov2::bind::gop_dict(r); }

}  // namespace

void ov2_bind_cuda(py::module_& m) {
  py::module_ c = m.def_submodule(
      "cuda", "GPU kernels (csrc/cuda): integer device addresses (tensor.data_ptr()), sizes and a stream handle");
  c.def("device_count", []() {
    std::string why;
    const int n = oc::device_count(&why);
    return py::make_tuple(n, why);
  }, "(number of CUDA devices, reason when 0); never raises.");
  c.def("available", []() { return oc::device_count(nullptr) > 0; }, "True when a CUDA device can be used.");
  c.def("device_name", &oc::device_name);
  c.def("synchronize", [](uintptr_t stream) { run([&] { return oc::synchronize(stream_of(stream)); }); },
        py::arg("stream") = 0);

  c.def("resize_bilinear_u8", [](uintptr_t src, int64_t n, int64_t sh, int64_t sw, int64_t ch, uintptr_t dst, int64_t dh,
                                 int64_t dw, uintptr_t stream) {
    run([&] { return oc::resize_bilinear_u8(ptr<const uint8_t>(src), n, sh, sw, ch, ptr<uint8_t>(dst), dh, dw, stream_of(stream)); });
  }, py::arg("src"), py::arg("n"), py::arg("sh"), py::arg("sw"), py::arg("ch"), py::arg("dst"), py::arg("dh"),
     py::arg("dw"), py::arg("stream") = 0);
  c.def("resize_area_f32", [](uintptr_t src, int64_t n, int64_t sh, int64_t sw, uintptr_t dst, int64_t dh, int64_t dw,
                              uintptr_t stream) {
    run([&] { return oc::resize_area_f32(ptr<const float>(src), n, sh, sw, ptr<float>(dst), dh, dw, stream_of(stream)); });
  }, py::arg("src"), py::arg("n"), py::arg("sh"), py::arg("sw"), py::arg("dst"), py::arg("dh"), py::arg("dw"),
     py::arg("stream") = 0);

  c.def("saliency", [](int64_t n, int64_t height, int64_t width, uintptr_t mv_field, uintptr_t mv_flags, int64_t h4,
                       int64_t w4, uintptr_t residual, uintptr_t is_intra, uintptr_t out, uintptr_t stream) {
    const oc::SaliencyInput in = sal_in(n, height, width, mv_field, mv_flags, h4, w4, residual, is_intra);
    run([&] { return oc::saliency(in, ptr<float>(out), stream_of(stream)); });
  }, py::arg("n"), py::arg("height"), py::arg("width"), py::arg("mv_field"), py::arg("mv_flags"), py::arg("h4"),
     py::arg("w4"), py::arg("residual"), py::arg("is_intra"), py::arg("out"), py::arg("stream") = 0,
     "S maps [n, height, width] float32 (tok.saliency per frame).");

  c.def("score_frames", [](int64_t n, int64_t height, int64_t width, uintptr_t mv_field, uintptr_t mv_flags, int64_t h4,
                           int64_t w4, uintptr_t residual, uintptr_t is_intra, uintptr_t cost, int64_t ch, int64_t cw,
                           int64_t hc, int64_t wc, int64_t patch, int64_t merge, double beta, uintptr_t beta_by_frame,
                           std::vector<int64_t> valid, uintptr_t out, uintptr_t stream) {
    const oc::SaliencyInput in = sal_in(n, height, width, mv_field, mv_flags, h4, w4, residual, is_intra);
    const oc::Rect rect = to_rect(valid);
    run([&] {
      return oc::score_frames(in, ptr<const float>(cost), ch, cw, hc, wc, patch, merge, beta,
                              ptr<const double>(beta_by_frame), rect, ptr<float>(out), stream_of(stream));
    });
  }, py::arg("n"), py::arg("height"), py::arg("width"), py::arg("mv_field"), py::arg("mv_flags"), py::arg("h4"),
     py::arg("w4"), py::arg("residual"), py::arg("is_intra"), py::arg("cost"), py::arg("ch"), py::arg("cw"),
     py::arg("canvas_h"), py::arg("canvas_w"), py::arg("patch"), py::arg("merge"), py::arg("beta"),
     py::arg("beta_by_frame") = 0, py::arg("valid") = std::vector<int64_t>{0, 0, -1, -1}, py::arg("out") = 0,
     py::arg("stream") = 0, "Block scores [n, nbh, nbw] float32 of n frames (tok.score_frame per frame).");

  c.def("block_score", [](uintptr_t s, uintptr_t cost, int64_t n, int64_t hc, int64_t wc, int64_t patch, int64_t merge,
                          double beta, std::vector<int64_t> valid, uintptr_t out, uintptr_t stream) {
    const oc::Rect rect = to_rect(valid);
    run([&] {
      return oc::block_score(ptr<const float>(s), ptr<const float>(cost), n, hc, wc, patch, merge, beta, rect,
                             ptr<float>(out), stream_of(stream));
    });
  }, py::arg("s"), py::arg("cost"), py::arg("n"), py::arg("canvas_h"), py::arg("canvas_w"), py::arg("patch"),
     py::arg("merge"), py::arg("beta"), py::arg("valid") = std::vector<int64_t>{0, 0, -1, -1}, py::arg("out") = 0,
     py::arg("stream") = 0);

  c.def("allocate", [](arr<int64_t> gs, arr<int64_t> ge, arr<double> gc, arr<double> cand_t, uintptr_t scores,
                       int64_t nbh, int64_t nbw, int64_t max_canvases, double lam, double alpha_peak,
                       const std::string& anchor, const std::string& rank, double t0, double delta, uintptr_t stream) {
    if (ge.size() != gs.size() || gc.size() != gs.size()) throw py::value_error("group arrays differ in length");
    if (anchor != "first" && anchor != "center") throw py::value_error("anchor must be 'first' or 'center'");
    if (rank != "rank" && rank != "fraction") throw py::value_error("rank must be 'rank' or 'fraction'");
    oc::AllocParams p;
    p.max_canvases = max_canvases;
    p.lambda = lam;
    p.alpha_peak = alpha_peak;
    p.anchor = anchor == "first" ? 0 : 1;
    p.rank_mode = rank == "rank" ? 0 : 1;
    p.t0 = t0;
    p.delta = delta;
    oc::AllocOutput r;
    run([&] {
      return oc::allocate(gs.data(), ge.data(), gc.data(), gs.size(), cand_t.data(), cand_t.size(),
                          ptr<const float>(scores), nbh, nbw, p, &r, stream_of(stream));
    });
    return alloc_dict(r);
  }, py::arg("group_start"), py::arg("group_end"), py::arg("group_cost"), py::arg("cand_t"), py::arg("scores"),
     py::arg("nbh"), py::arg("nbw"), py::arg("max_canvases") = 32, py::arg("lam") = 0.35, py::arg("alpha_peak") = 0.35,
     py::arg("anchor") = "first", py::arg("rank") = "rank", py::arg("t0") = 0.0, py::arg("delta") = 0.5,
     py::arg("stream") = 0,
     "tok.allocate with the scores [n_cand, nbh, nbw] float32 on the device; returns the same dict (host arrays).");

  c.def("gop_partition_batch", [](py::list videos, int64_t k_tar, double delta, double t_min, double t_max,
                                  int64_t radius, const std::string& energy, uintptr_t stream) {
    if (energy != "linear" && energy != "log1p") throw py::value_error("energy must be 'linear' or 'log1p'");
    // keep the converted arrays alive during the call
    std::vector<arr<double>> pts;
    std::vector<arr<int64_t>> size;
    std::vector<py::object> pict, key;
    std::vector<oc::GopHostVideo> hv;
    for (py::handle h : videos) {
      py::dict d = py::reinterpret_borrow<py::dict>(h);
      pts.push_back(arr<double>::ensure(d["pts_s"]));
      size.push_back(arr<int64_t>::ensure(d["size"]));
      if (!pts.back() || !size.back() || pts.back().size() != size.back().size())
        throw py::value_error("gop_partition_batch: pts_s and size must be 1-D arrays of one length");
      pict.push_back(d.contains("pict_type") && !d["pict_type"].is_none()
                         ? py::object(arr<uint8_t>::ensure(d["pict_type"])) : py::object(py::none()));
      key.push_back(d.contains("keyframe") && !d["keyframe"].is_none()
                        ? py::object(arr<uint8_t>::ensure(d["keyframe"])) : py::object(py::none()));
      oc::GopHostVideo g;
      g.n = pts.back().size();
      g.pts_s = pts.back().data();
      g.size = size.back().data();
      if (!pict.back().is_none()) {
        auto a = py::reinterpret_borrow<arr<uint8_t>>(pict.back());
        if (a.size() != g.n) throw py::value_error("gop_partition_batch: pict_type length differs");
        g.pict_type = a.data();
      }
      if (!key.back().is_none()) {
        auto a = py::reinterpret_borrow<arr<uint8_t>>(key.back());
        if (a.size() != g.n) throw py::value_error("gop_partition_batch: keyframe length differs");
        g.keyframe = a.data();
      }
      g.params.k_tar = d.contains("k_tar") ? d["k_tar"].cast<int64_t>() : k_tar;
      g.params.duration_s = d.contains("duration_s") ? d["duration_s"].cast<double>() : -1.0;
      g.params.t0 = d.contains("t0") ? d["t0"].cast<double>() : 0.0;
      g.params.delta = delta;
      g.params.t_min = t_min;
      g.params.t_max = t_max;
      g.params.radius = radius;
      g.params.log1p = energy == "log1p";
      hv.push_back(g);
    }
    std::vector<ov2::tok::GopResult> res;
    run([&] { return oc::gop_partition(hv, &res, stream_of(stream)); });
    py::list out;
    for (const auto& r : res) out.append(gop_dict(r));
    return out;
  }, py::arg("videos"), py::arg("k_tar") = 8, py::arg("delta") = 0.5, py::arg("t_min") = 1.5, py::arg("t_max") = 6.0,
     py::arg("radius") = 3, py::arg("energy") = "linear", py::arg("stream") = 0,
     "GOP partition of many videos in one launch. videos: list of dicts with pts_s, size, and optionally pict_type, "
     "keyframe, k_tar, duration_s, t0. Returns a list of dicts as tok.gop_partition.");

  c.def("gather_canvases", [](int64_t num_canvases, uintptr_t kind, uintptr_t frame, uintptr_t offset, uintptr_t block_t,
                              uintptr_t block_i, uintptr_t block_j, uintptr_t frames_hwc, int64_t n_cand, int64_t hc,
                              int64_t wc, int64_t patch, int64_t merge, uintptr_t out, uintptr_t stream) {
    oc::DevicePlan p;
    p.num_canvases = num_canvases;
    p.kind = ptr<const int8_t>(kind);
    p.frame = ptr<const int32_t>(frame);
    p.offset = ptr<const int64_t>(offset);
    p.block_t = ptr<const int32_t>(block_t);
    p.block_i = ptr<const int32_t>(block_i);
    p.block_j = ptr<const int32_t>(block_j);
    run([&] { return oc::gather_canvases(p, ptr<const uint8_t>(frames_hwc), n_cand, hc, wc, patch, merge, ptr<uint8_t>(out), stream_of(stream)); });
  }, py::arg("num_canvases"), py::arg("kind"), py::arg("frame"), py::arg("offset"), py::arg("block_t"),
     py::arg("block_i"), py::arg("block_j"), py::arg("frames_hwc"), py::arg("n_cand"), py::arg("canvas_h"),
     py::arg("canvas_w"), py::arg("patch"), py::arg("merge"), py::arg("out"), py::arg("stream") = 0);

  c.def("yuv420_to_rgb", [](uintptr_t y, int64_t y_stride, uintptr_t u, uintptr_t v, int64_t uv_stride, int64_t height,
                            int64_t width, int matrix, bool full_range, uintptr_t rgb, uintptr_t stream) {
    run([&] {
      return oc::yuv420_to_rgb(ptr<const uint8_t>(y), y_stride, ptr<const uint8_t>(u), ptr<const uint8_t>(v), uv_stride,
                               height, width, matrix, full_range, ptr<uint8_t>(rgb), stream_of(stream));
    });
  }, py::arg("y"), py::arg("y_stride"), py::arg("u"), py::arg("v"), py::arg("uv_stride"), py::arg("height"),
     py::arg("width"), py::arg("matrix") = 601, py::arg("full_range") = false, py::arg("rgb") = 0, py::arg("stream") = 0);

  c.def("densify_motion", [](uintptr_t rows, int64_t n, int width, int height, uintptr_t mv_field, uintptr_t mv_flags,
                             uintptr_t intra_mask, uintptr_t stream) {
    run([&] {
      return oc::densify_motion(ptr<const int32_t>(rows), n, width, height, ptr<float>(mv_field), ptr<uint8_t>(mv_flags),
                                ptr<uint8_t>(intra_mask), stream_of(stream));
    });
  }, py::arg("rows"), py::arg("n"), py::arg("width"), py::arg("height"), py::arg("mv_field"), py::arg("mv_flags"),
     py::arg("intra_mask") = 0, py::arg("stream") = 0);

  c.def("compute_residual", [](std::tuple<uintptr_t, int, int, int64_t> cur, std::tuple<uintptr_t, int, int, int64_t> ref0,
                               std::tuple<uintptr_t, int, int, int64_t> ref1, uintptr_t rows, int64_t n,
                               uintptr_t mv_flags, bool h264, uintptr_t residual, uintptr_t stream) {
    auto luma = [](const std::tuple<uintptr_t, int, int, int64_t>& t) {
      return oc::DeviceLuma{ptr<const uint8_t>(std::get<0>(t)), std::get<1>(t), std::get<2>(t), std::get<3>(t)};
    };
    const oc::DeviceLuma c0 = luma(cur), a = luma(ref0), b = luma(ref1);
    run([&] {
      return oc::compute_residual(c0, a, b, ptr<const int32_t>(rows), n, ptr<const uint8_t>(mv_flags), h264,
                                  ptr<int16_t>(residual), stream_of(stream));
    });
  }, py::arg("cur"), py::arg("ref0"), py::arg("ref1"), py::arg("rows"), py::arg("n"), py::arg("mv_flags"),
     py::arg("h264") = true, py::arg("residual") = 0, py::arg("stream") = 0,
     "Luma planes as (address, width, height, stride); address 0 = absent reference.");
}

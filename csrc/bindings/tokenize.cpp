// Bindings of csrc/tokenize (the algorithms on plain arrays) as ov2_tokenizer._core.tok.
// Every function takes and returns numpy arrays; inputs are converted to C-contiguous arrays of the stated
// dtype (forcecast). Errors of the algorithms (ov2::tok::Error) surface as ValueError. The GIL is released
// around every loop over pixels, blocks or packets.
#include <pybind11/numpy.h>

#include "bindings/arrays.h"
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tokenize/allocation.h"
#include "tokenize/block_score.h"
#include "tokenize/candidates.h"
#include "tokenize/cope_warp.h"
#include "tokenize/geometry.h"
#include "tokenize/gop_partition.h"
#include "tokenize/ovenc_mosaic.h"
#include "tokenize/ovenc_saliency.h"
#include "tokenize/packing.h"
#include "tokenize/saliency.h"

namespace py = pybind11;
using namespace ov2::tok;

namespace {

template <typename T>
using arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

using ov2::bind::to_numpy;

void need_ndim(const py::array& a, py::ssize_t nd, const char* name) {
  if (a.ndim() != nd)
    throw Error(std::string(name) + ": expected " + std::to_string(nd) + " dimensions, got " + std::to_string(a.ndim()));
}

void need_len(const py::array& a, py::ssize_t n, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw Error(std::string(name) + ": expected a 1-D array of length " + std::to_string(n));
}

ValidRect to_rect(const std::optional<std::vector<int64_t>>& valid) {
  ValidRect r;
  if (valid) {
    if (valid->size() != 4) throw Error("valid: expected (y0, x0, y1, x1)");
    r.y0 = (*valid)[0];
    r.x0 = (*valid)[1];
    r.y1 = (*valid)[2];
    r.x1 = (*valid)[3];
  }
  return r;
}

// Keeps the converted arrays of an allocate() result alive while a CanvasPlan points into them.
struct PlanArrays {
  arr<int8_t> kind;
  arr<int32_t> group, frame, block_t, block_i, block_j, group_anchor;
  arr<int64_t> offset;
  CanvasPlan plan;
  explicit PlanArrays(const py::dict& d) {
    auto get = [&](const char* k) -> py::object {
      if (!d.contains(k)) throw Error(std::string("plan: missing key '") + k + "'");
      return d[k];
    };
    kind = arr<int8_t>::ensure(get("canvas_kind"));
    group = arr<int32_t>::ensure(get("canvas_group"));
    frame = arr<int32_t>::ensure(get("canvas_frame"));
    offset = arr<int64_t>::ensure(get("canvas_offset"));
    block_t = arr<int32_t>::ensure(get("block_t"));
    block_i = arr<int32_t>::ensure(get("block_i"));
    block_j = arr<int32_t>::ensure(get("block_j"));
    group_anchor = arr<int32_t>::ensure(get("group_anchor"));
    if (!kind || !group || !frame || !offset || !block_t || !block_i || !block_j || !group_anchor)
      throw Error("plan: arrays of the wrong type");
    const py::ssize_t S = kind.size();
    need_len(group, S, "plan.canvas_group");
    need_len(frame, S, "plan.canvas_frame");
    need_len(offset, S + 1, "plan.canvas_offset");
    const int64_t nbk = offset.data()[S];
    if (nbk < 0 || block_t.size() < nbk || block_i.size() < nbk || block_j.size() < nbk)
      throw Error("plan: block arrays shorter than canvas_offset[-1]");
    for (py::ssize_t s = 0; s < S; ++s)
      if (offset.data()[s] < 0 || offset.data()[s] > nbk) throw Error("plan: canvas_offset out of range");
    plan.num_canvases = S;
    plan.kind = kind.data();
    plan.group = group.data();
    plan.frame = frame.data();
    plan.offset = offset.data();
    plan.block_t = block_t.data();
    plan.block_i = block_i.data();
    plan.block_j = block_j.data();
    plan.num_groups = group_anchor.size();
    plan.group_anchor = group_anchor.data();
  }
};

py::dict gop_partition_py(arr<double> pts, arr<int64_t> size, std::optional<arr<uint8_t>> pict_type,
                          std::optional<arr<bool>> keyframe, int64_t k_tar, double duration_s, double t0,
                          double delta, double t_min, double t_max, int64_t radius, const std::string& energy) {
  const py::ssize_t n = pts.size();
  need_len(pts, n, "pts_s");
  need_len(size, n, "size");
  if (pict_type) need_len(*pict_type, n, "pict_type");
  if (keyframe) need_len(*keyframe, n, "keyframe");
  if (energy != "linear" && energy != "log1p") throw Error("energy must be 'linear' or 'log1p'");
  GopParams p;
  p.k_tar = k_tar;
  p.duration_s = duration_s;
  p.t0 = t0;
  p.delta = delta;
  p.t_min = t_min;
  p.t_max = t_max;
  p.radius = radius;
  p.log1p = energy == "log1p";
  const uint8_t* pt = pict_type ? pict_type->data() : nullptr;
  const uint8_t* kf = keyframe ? reinterpret_cast<const uint8_t*>(keyframe->data()) : nullptr;
  GopResult r;
  {
    py::gil_scoped_release nogil;
    r = gop_partition(pts.data(), size.data(), pt, kf, n, p);
  }
  return ov2::bind::gop_dict(r);
}

py::array_t<float> saliency_py(int64_t height, int64_t width, std::optional<arr<float>> mv_field,
                               std::optional<arr<uint8_t>> mv_flags, std::optional<arr<int16_t>> residual,
                               bool is_intra) {
  if (height < 1 || width < 1) throw Error("saliency: height and width must be >= 1");
  int64_t h4 = 0, w4 = 0;
  const float* mv = nullptr;
  const uint8_t* fl = nullptr;
  if (mv_field) {
    need_ndim(*mv_field, 3, "mv_field");
    if (mv_field->shape(2) != 4) throw Error("mv_field: expected shape [H/4, W/4, 4]");
    h4 = mv_field->shape(0);
    w4 = mv_field->shape(1);
    mv = mv_field->data();
    if (mv_flags) {
      need_ndim(*mv_flags, 2, "mv_flags");
      if (mv_flags->shape(0) != h4 || mv_flags->shape(1) != w4) throw Error("mv_flags: shape must match mv_field[..., 0]");
      fl = mv_flags->data();
    }
  } else if (mv_flags) {
    throw Error("saliency: mv_flags given without mv_field");
  }
  const int16_t* res = nullptr;
  if (residual) {
    need_ndim(*residual, 2, "residual");
    if (residual->shape(0) != height || residual->shape(1) != width) throw Error("residual: shape must be [height, width]");
    res = residual->data();
  }
  py::array_t<float> out({height, width});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    saliency(mv, fl, h4, w4, res, height, width, is_intra, o);
  }
  return out;
}

py::array_t<float> block_score_py(arr<float> s, std::optional<arr<float>> cost, int64_t patch, int64_t merge,
                                  double beta, std::optional<std::vector<int64_t>> valid) {
  need_ndim(s, 2, "s");
  const int64_t hc = s.shape(0), wc = s.shape(1);
  const float* c = nullptr;
  if (cost) {
    need_ndim(*cost, 2, "cost");
    if (cost->shape(0) != hc || cost->shape(1) != wc) throw Error("cost: shape must match s");
    c = cost->data();
  }
  if (patch < 1 || merge < 1 || hc % (patch * merge) != 0 || wc % (patch * merge) != 0)
    throw Error("block_score: canvas sides must be multiples of patch*merge");
  const ValidRect rect = to_rect(valid);
  py::array_t<float> out({hc / (patch * merge), wc / (patch * merge)});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    block_score(s.data(), c, hc, wc, patch, merge, beta, rect, o);
  }
  return out;
}

py::array_t<float> score_frame_py(int64_t canvas_h, int64_t canvas_w, int64_t height, int64_t width,
                                  std::optional<arr<float>> mv_field, std::optional<arr<uint8_t>> mv_flags,
                                  std::optional<arr<int16_t>> residual, std::optional<arr<float>> cost, bool is_intra,
                                  int64_t patch, int64_t merge, double beta, std::optional<std::vector<int64_t>> valid) {
  if (patch < 1 || merge < 1 || canvas_h < patch * merge || canvas_w < patch * merge ||
      canvas_h % (patch * merge) != 0 || canvas_w % (patch * merge) != 0)
    throw Error("score_frame: canvas sides must be positive multiples of patch*merge");
  const int64_t nbh = canvas_h / (patch * merge), nbw = canvas_w / (patch * merge);
  const ValidRect rect = to_rect(valid);
  int64_t h4 = 0, w4 = 0, ch = 0, cw = 0;
  if (mv_field) {
    need_ndim(*mv_field, 3, "mv_field");
    if (mv_field->shape(2) != 4) throw Error("mv_field: expected [h4, w4, 4]");
    h4 = mv_field->shape(0);
    w4 = mv_field->shape(1);
    if (h4 < (height + 3) / 4 || w4 < (width + 3) / 4) throw Error("saliency: mv_field grid smaller than ceil(frame/4)");
    if (mv_flags && (mv_flags->ndim() != 2 || mv_flags->shape(0) != h4 || mv_flags->shape(1) != w4))
      throw Error("mv_flags: expected the mv_field grid [h4, w4]");
  }
  if (residual && (residual->ndim() != 2 || residual->shape(0) != height || residual->shape(1) != width))
    throw Error("residual: expected [height, width]");
  if (cost) {
    need_ndim(*cost, 2, "cost");
    ch = cost->shape(0);
    cw = cost->shape(1);
    if (ch < 1 || cw < 1) throw Error("cost: empty map");
  }
  py::array_t<float> out({nbh, nbw});
  float* o = out.mutable_data();
  const float* mv = mv_field ? mv_field->data() : nullptr;
  const uint8_t* fl = mv_flags ? mv_flags->data() : nullptr;
  const int16_t* res = residual ? residual->data() : nullptr;
  const float* cp = cost ? cost->data() : nullptr;
  {
    py::gil_scoped_release nogil;
    score_frame(canvas_h, canvas_w, height, width, mv, fl, h4, w4, res, cp, ch, cw, is_intra, patch, merge, beta, rect, o);
  }
  return out;
}

py::array_t<double> ovenc_patch_scores_py(int64_t height, int64_t width, std::optional<arr<float>> mv_field,
                                          std::optional<arr<uint8_t>> mv_flags, std::optional<arr<int16_t>> residual,
                                          bool is_intra, int64_t size, int64_t patch, double percentile) {
  if (height < 1 || width < 1) throw Error("ovenc_patch_scores: height and width must be >= 1");
  if (patch < 1 || size < patch) throw Error("ovenc_patch_scores: need size >= patch >= 1");
  int64_t h4 = 0, w4 = 0;
  if (mv_field) {
    need_ndim(*mv_field, 3, "mv_field");
    if (mv_field->shape(2) != 4) throw Error("mv_field: expected [h4, w4, 4]");
    h4 = mv_field->shape(0);
    w4 = mv_field->shape(1);
    if (h4 < (height + 3) / 4 || w4 < (width + 3) / 4) throw Error("mv_field: grid smaller than ceil(frame/4)");
    if (mv_flags && (mv_flags->ndim() != 2 || mv_flags->shape(0) != h4 || mv_flags->shape(1) != w4))
      throw Error("mv_flags: expected the mv_field grid [h4, w4]");
  } else if (mv_flags) {
    throw Error("ovenc_patch_scores: mv_flags given without mv_field");
  }
  if (residual && (residual->ndim() != 2 || residual->shape(0) != height || residual->shape(1) != width))
    throw Error("residual: expected [height, width]");
  const int64_t g = size / patch;
  py::array_t<double> out(g * g);
  double* o = out.mutable_data();
  const float* mv = mv_field ? mv_field->data() : nullptr;
  const uint8_t* fl = mv_flags ? mv_flags->data() : nullptr;
  const int16_t* res = residual ? residual->data() : nullptr;
  {
    py::gil_scoped_release nogil;
    ovenc_patch_scores(height, width, mv, fl, h4, w4, res, is_intra, size, patch, percentile, o);
  }
  return out;
}

py::array_t<uint8_t> ovenc_mosaics_py(std::vector<arr<uint8_t>> content, arr<int64_t> slot_frame, arr<int32_t> rows,
                                      int64_t size, int64_t hn, int64_t wn, int64_t top, int64_t left, int64_t patch,
                                      int num_threads) {
  if (patch < 1 || size < patch) throw Error("ovenc_mosaics: need size >= patch >= 1");
  if (hn < 1 || wn < 1 || top < 0 || left < 0 || top + hn > size || left + wn > size)
    throw Error("ovenc_mosaics: the content must lie inside the square");
  std::vector<const uint8_t*> ptrs;
  for (const auto& c : content) {
    if (c.ndim() != 3 || c.shape(0) != hn || c.shape(1) != wn || c.shape(2) != 3)
      throw Error("ovenc_mosaics: every content array must be [hn, wn, 3]");
    ptrs.push_back(c.data());
  }
  need_ndim(slot_frame, 1, "slot_frame");
  if (rows.ndim() != 2 || rows.shape(1) != 3) throw Error("rows: expected [n, 3] (t, h, w)");
  const int64_t g = size / patch, per = g * g, n = rows.shape(0);
  const int64_t m = std::max<int64_t>(1, (n + per - 1) / per);
  py::array_t<uint8_t> out({m, int64_t{3}, size, size});
  uint8_t* o = out.mutable_data();
  Letterbox lb;
  lb.size = size;
  lb.hn = hn;
  lb.wn = wn;
  lb.top = top;
  lb.left = left;
  {
    py::gil_scoped_release nogil;
    ovenc_mosaics(ptrs.data(), static_cast<int64_t>(ptrs.size()), slot_frame.data(), slot_frame.shape(0), lb, patch,
                  rows.data(), n, o, num_threads);
  }
  return out;
}

py::dict allocate_py(arr<int64_t> gs, arr<int64_t> ge, arr<double> gc, arr<double> cand_t, arr<float> scores,
                     int64_t max_canvases, double lam, double alpha_peak, const std::string& anchor,
                     const std::string& rank, double t0, double delta) {
  const py::ssize_t G = gs.size();
  need_len(gs, G, "group_start");
  need_len(ge, G, "group_end");
  need_len(gc, G, "group_cost");
  const py::ssize_t T = cand_t.size();
  need_len(cand_t, T, "cand_t");
  need_ndim(scores, 3, "scores");
  if (scores.shape(0) != T) throw Error("scores: first dimension must equal len(cand_t)");
  if (anchor != "first" && anchor != "center") throw Error("anchor must be 'first' or 'center'");
  if (rank != "rank" && rank != "fraction") throw Error("rank must be 'rank' or 'fraction'");
  AllocParams p;
  p.max_canvases = max_canvases;
  p.lambda = lam;
  p.alpha_peak = alpha_peak;
  p.anchor = anchor == "first" ? 0 : 1;
  p.rank_mode = rank == "rank" ? 0 : 1;
  p.t0 = t0;
  p.delta = delta;
  AllocResult r;
  {
    py::gil_scoped_release nogil;
    r = allocate(gs.data(), ge.data(), gc.data(), G, cand_t.data(), T, scores.data(), scores.shape(1),
                 scores.shape(2), p);
  }
  return ov2::bind::alloc_dict(r);
}

py::dict pack_records_py(const py::dict& plan_d, arr<int32_t> cand_frame, arr<double> cand_t, int64_t canvas_h,
                         int64_t canvas_w, int64_t patch, int64_t merge, const std::string& temporal_coord) {
  PlanArrays pa(plan_d);
  const py::ssize_t T = cand_frame.size();
  need_len(cand_frame, T, "cand_frame");
  need_len(cand_t, T, "cand_t");
  if (temporal_coord != "frame" && temporal_coord != "slot") throw Error("temporal_coord must be 'frame' or 'slot'");
  Records R;
  {
    py::gil_scoped_release nogil;
    R = pack_records(pa.plan, cand_frame.data(), cand_t.data(), T, canvas_h, canvas_w, patch, merge,
                     temporal_coord == "frame" ? 0 : 1);
  }
  const py::ssize_t N = static_cast<py::ssize_t>(R.canvas.size());
  py::dict d;
  d["canvas"] = to_numpy(R.canvas);
  d["frame"] = to_numpy(R.frame);
  d["t_s"] = to_numpy(R.t_s);
  d["can_hw"] = to_numpy(R.can_hw, {N, 2});
  d["src_hw"] = to_numpy(R.src_hw, {N, 2});
  d["group"] = to_numpy(R.group);
  d["pos_thw"] = to_numpy(R.pos_thw, {N, 3});
  return d;
}

py::array_t<uint8_t> pack_canvases_py(const py::dict& plan_d, arr<uint8_t> frames, int64_t patch, int64_t merge) {
  PlanArrays pa(plan_d);
  need_ndim(frames, 4, "frames");
  if (frames.shape(3) != 3) throw Error("frames: expected [n, Hc, Wc, 3]");
  const int64_t T = frames.shape(0), hc = frames.shape(1), wc = frames.shape(2);
  py::array_t<uint8_t> out({static_cast<int64_t>(pa.plan.num_canvases), int64_t{3}, hc, wc});
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    pack_canvases(pa.plan, frames.data(), T, hc, wc, patch, merge, o);
  }
  return out;
}

void paste_blocks_py(py::array_t<uint8_t, py::array::c_style> canvas, arr<uint8_t> frame, arr<int64_t> src_block,
                     arr<int64_t> dst_block, int64_t block) {
  need_ndim(canvas, 3, "canvas");
  need_ndim(frame, 3, "frame");
  const int64_t hc = frame.shape(0), wc = frame.shape(1);
  if (frame.shape(2) != 3 || canvas.shape(0) != 3 || canvas.shape(1) != hc || canvas.shape(2) != wc)
    throw Error("paste_blocks: canvas [3, Hc, Wc] and frame [Hc, Wc, 3] must agree");
  const py::ssize_t n = src_block.size();
  need_len(src_block, n, "src_block");
  need_len(dst_block, n, "dst_block");
  if (!canvas.writeable()) throw Error("paste_blocks: canvas is read-only");
  uint8_t* c = canvas.mutable_data();
  py::gil_scoped_release nogil;
  paste_blocks(frame.data(), hc, wc, block, src_block.data(), dst_block.data(), n, c);
}

// The cope warp's inputs: ref uint8 [H, W, C], field float32 [H/4, W/4, 2].
void check_cope_inputs(const arr<uint8_t>& ref, const arr<float>& field, const std::string& fn) {
  if (ref.ndim() != 3) throw Error(fn + ": ref must be uint8 [H, W, C]");
  if (field.ndim() != 3 || field.shape(2) != 2) throw Error(fn + ": field must be float32 [H/4, W/4, 2]");
}

}  // namespace

void ov2_bind_tokenize(py::module_& m) {
  py::module_ t = m.def_submodule("tok", "tokenization algorithms on plain arrays (csrc/tokenize)");
  py::register_exception<Error>(t, "TokenizeError", PyExc_ValueError);

  t.def(
      "canvas_size",
      [](int64_t height, int64_t width, int64_t patch, int64_t merge, int64_t min_pixels, int64_t max_pixels) {
        const CanvasSize c = canvas_size(height, width, patch, merge, min_pixels, max_pixels);
        return py::make_tuple(c.height, c.width);
      },
      py::arg("height"), py::arg("width"), py::arg("patch") = 14, py::arg("merge") = 2, py::arg("min_pixels") = 3136,
      py::arg("max_pixels") = 313600, "Canvas (height, width) for a frame (DESIGN §5.1).");

  t.def(
      "resize_bilinear",
      [](arr<uint8_t> img, int64_t out_h, int64_t out_w) {
        if (img.ndim() != 2 && img.ndim() != 3) throw Error("resize_bilinear: expected [H, W] or [H, W, C]");
        const int64_t h = img.shape(0), w = img.shape(1), c = img.ndim() == 3 ? img.shape(2) : 1;
        if (out_h < 1 || out_w < 1) throw Error("resize_bilinear: output size must be positive");
        py::array_t<uint8_t> out = img.ndim() == 3 ? py::array_t<uint8_t>({out_h, out_w, c})
                                                   : py::array_t<uint8_t>({out_h, out_w});
        uint8_t* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          resize_bilinear_u8(img.data(), h, w, c, o, out_h, out_w);
        }
        return out;
      },
      py::arg("img"), py::arg("out_h"), py::arg("out_w"), "Bilinear resize of uint8 [H, W(, C)] (half-pixel centres).");

  t.def(
      "cope_warp",
      [](arr<uint8_t> ref, arr<float> field) {
        check_cope_inputs(ref, field, "cope_warp");
        const int64_t h = ref.shape(0), w = ref.shape(1), c = ref.shape(2);
        py::array_t<uint8_t> out({h, w, c});
        uint8_t* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          cope_warp(ref.data(), h, w, c, field.data(), field.shape(0), field.shape(1), o);
        }
        return out;
      },
      py::arg("ref"), py::arg("field"),
      "The cope mode's warp: ref sampled at (y + dy, x + dx) of each pixel's 4x4 cell, bilinear, clamped to the "
      "frame, rounded half up (csrc/tokenize/cope_warp.h).");

  t.def(
      "cope_residual",
      [](arr<uint8_t> cur, arr<uint8_t> ref, arr<float> field, py::array out) {
        check_cope_inputs(ref, field, "cope_residual");
        if (cur.ndim() != 3 || cur.shape(0) != ref.shape(0) || cur.shape(1) != ref.shape(1) ||
            cur.shape(2) != ref.shape(2))
          throw Error("cope_residual: cur must have ref's shape");
        // written in place: no conversion may stand in between
        if (!py::array_t<int16_t, py::array::c_style>::check_(out) || !out.writeable() || out.ndim() != 3 ||
            out.shape(0) != ref.shape(0) || out.shape(1) != ref.shape(1) || out.shape(2) != ref.shape(2))
          throw Error("cope_residual: out must be a writable C-contiguous int16 array of ref's shape");
        int16_t* o = static_cast<int16_t*>(out.mutable_data());
        {
          py::gil_scoped_release nogil;
          cope_residual(cur.data(), ref.data(), ref.shape(0), ref.shape(1), ref.shape(2), field.data(), field.shape(0),
                        field.shape(1), o);
        }
      },
      py::arg("cur"), py::arg("ref"), py::arg("field"), py::arg("out"),
      "out[...] = int16(cur) - cope_warp(ref, field), in place (the cope mode's delta residual).");

  t.def(
      "resize_area",
      [](arr<float> x, int64_t out_h, int64_t out_w) {
        need_ndim(x, 2, "x");
        if (out_h < 1 || out_w < 1) throw Error("resize_area: output size must be positive");
        py::array_t<float> out({out_h, out_w});
        float* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          resize_area_f32(x.data(), x.shape(0), x.shape(1), o, out_h, out_w);
        }
        return out;
      },
      py::arg("x"), py::arg("out_h"), py::arg("out_w"), "Area-average resize of a float32 [h, w] map.");

  t.def(
      "candidate_frames",
      [](arr<double> pts, int64_t num_frames) {
        std::vector<int64_t> r;
        {
          py::gil_scoped_release nogil;
          r = candidate_frames(pts.data(), pts.size(), num_frames);
        }
        return to_numpy(r);
      },
      py::arg("pts_s"), py::arg("num_frames"), "Candidate frame indices, uniform by presentation time (DESIGN §5.2).");

  t.def(
      "packet_is_pb",
      [](arr<uint8_t> pict_type, arr<bool> keyframe) {
        const py::ssize_t n = pict_type.size();
        need_len(keyframe, n, "keyframe");
        py::array_t<bool> out(n);
        for (py::ssize_t i = 0; i < n; ++i) out.mutable_data()[i] = packet_is_pb(pict_type.data()[i], keyframe.data()[i]);
        return out;
      },
      py::arg("pict_type"), py::arg("keyframe"), "Which packets count as P/B for the GOP partition.");

  t.def("gop_partition", &gop_partition_py, py::arg("pts_s"), py::arg("size"), py::arg("pict_type") = py::none(),
        py::arg("keyframe") = py::none(), py::kw_only(), py::arg("k_tar") = 8, py::arg("duration_s") = -1.0,
        py::arg("t0") = 0.0, py::arg("delta") = 0.5, py::arg("t_min") = 1.5, py::arg("t_max") = 6.0,
        py::arg("radius") = 3, py::arg("energy") = "linear", "Adaptive GOP partition (DESIGN §5.3, Eq. 2–4).");

  t.def(
      "group_of_time",
      [](arr<double> t_s, arr<int64_t> start, arr<int64_t> end, double t0, double delta) {
        need_len(end, start.size(), "end");
        std::vector<int32_t> r;
        {
          py::gil_scoped_release nogil;
          r = group_of_time(t_s.data(), t_s.size(), start.data(), end.data(), start.size(), t0, delta);
        }
        return to_numpy(r);
      },
      py::arg("t_s"), py::arg("start"), py::arg("end"), py::arg("t0") = 0.0, py::arg("delta") = 0.5,
      "κ of each time: k iff t ∈ [s_kΔ, (c_k + 1)Δ) (clamped to the covered bins).");

  t.def("k_target", &k_target, py::arg("max_canvases"), "K_tar = max(1, max_canvases // 4).");

  t.def(
      "percentile",
      [](arr<double> v, double q) {
        std::vector<double> c(v.data(), v.data() + v.size());
        return percentile_linear(c.data(), static_cast<int64_t>(c.size()), q);
      },
      py::arg("values"), py::arg("q"), "Percentile with linear interpolation (numpy's default method).");

  t.def("saliency", &saliency_py, py::arg("height"), py::arg("width"), py::arg("mv_field") = py::none(),
        py::arg("mv_flags") = py::none(), py::arg("residual") = py::none(), py::arg("is_intra") = false,
        "Saliency S [height, width] float32 of one frame (DESIGN §5.4).");

  t.def("block_score", &block_score_py, py::arg("s"), py::arg("cost") = py::none(), py::arg("patch") = 14,
        py::arg("merge") = 2, py::arg("beta") = 0.5, py::arg("valid") = py::none(),
        "Block scores A [Hc/(m·p), Wc/(m·p)] from canvas-resolution maps (DESIGN §5.5).");

  t.def("score_frame", &score_frame_py, py::arg("canvas_h"), py::arg("canvas_w"), py::arg("height"), py::arg("width"),
        py::arg("mv_field") = py::none(), py::arg("mv_flags") = py::none(), py::arg("residual") = py::none(),
        py::arg("cost") = py::none(), py::arg("is_intra") = false, py::arg("patch") = 14, py::arg("merge") = 2,
        py::arg("beta") = 0.5, py::arg("valid") = py::none(),
        "saliency → area resize to the canvas → block_score (cost [h4, w4] area-resized too); I-frames → 0.");

  t.def("ovenc_patch_scores", &ovenc_patch_scores_py, py::arg("height"), py::arg("width"),
        py::arg("mv_field") = py::none(), py::arg("mv_flags") = py::none(), py::arg("residual") = py::none(),
        py::arg("is_intra") = false, py::arg("size") = 576, py::arg("patch") = 16, py::arg("percentile") = 95.0,
        "ovenc_topk patch scores, float64 [g·g]: fused saliency letterboxed into the square, per-patch sums (DESIGN §5.8).");

  t.def("ovenc_mosaics", &ovenc_mosaics_py, py::arg("content"), py::arg("slot_frame"), py::arg("rows"),
        py::arg("size"), py::arg("hn"), py::arg("wn"), py::arg("top"), py::arg("left"), py::arg("patch") = 16,
        py::arg("num_threads") = 1,
        "ovenc_topk mosaics uint8 [M, 3, S, S]: row n's patch of slot t's letterboxed frame at mosaic n // g², cell n % g²"
        " (num_threads threads write disjoint mosaics; the same bytes for any count).");

  t.def("allocate", &allocate_py, py::arg("group_start"), py::arg("group_end"), py::arg("group_cost"),
        py::arg("cand_t"), py::arg("scores"), py::kw_only(), py::arg("max_canvases") = 32, py::arg("lam") = 0.35,
        py::arg("alpha_peak") = 0.35, py::arg("anchor") = "first", py::arg("rank") = "rank", py::arg("t0") = 0.0,
        py::arg("delta") = 0.5, "Group merging, P-canvas shares and stratified block allocation (DESIGN §5.6).");

  t.def("pack_records", &pack_records_py, py::arg("plan"), py::arg("cand_frame"), py::arg("cand_t"),
        py::arg("canvas_h"), py::arg("canvas_w"), py::arg("patch") = 14, py::arg("merge") = 2,
        py::arg("temporal_coord") = "frame", "Token records of an allocate() plan (DESIGN §3.2, §5.7).");

  t.def("pack_canvases", &pack_canvases_py, py::arg("plan"), py::arg("frames"), py::arg("patch") = 14,
        py::arg("merge") = 2, "Canvas pixels [S, 3, Hc, Wc] of an allocate() plan from candidate images [n, Hc, Wc, 3].");

  t.def("paste_blocks", &paste_blocks_py, py::arg("canvas"), py::arg("frame"), py::arg("src_block"),
        py::arg("dst_block"), py::arg("block"),
        "In place: copy m·p blocks of frame [Hc, Wc, 3] into canvas [3, Hc, Wc] (src_block < 0: whole frame).");
}

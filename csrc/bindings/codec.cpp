// Bindings of csrc/codec: the video reader. Arrays cross to Python without copies (numpy arrays own the
// C++ buffers through capsules); the GIL is released while demuxing and decoding.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "codec/error.h"
#include "codec/motion.h"
#include "codec/push_source.h"
#include "codec/reader.h"
#include "codec/rgb.h"
#include "tokenize/block_score.h"
#include "tokenize/geometry.h"
#include "tokenize/ovenc_saliency.h"

namespace py = pybind11;

namespace {

// After a post hook has reduced a frame's vectors, residual and coding cost to scores: free them (RGB stays).
void drop_scored_products(ov2::FrameOut& f) {
  f.mvs = {};
  f.mv_field = {};
  f.intra_mask = {};
  f.mv_flags = {};
  f.residual = {};
  f.coding_cost = {};
}

template <class T>
py::array_t<T> to_numpy(ov2::Buffer<T>&& b, std::vector<py::ssize_t> shape) {
  if (!b.ptr) b.allocate(0);
  T* raw = b.ptr.release();
  py::capsule owner(raw, [](void* p) { ov2::pool_free(p); });
  return py::array_t<T>(shape, raw, owner);
}

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* h = new std::vector<T>(std::move(v));
  py::capsule owner(h, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, h->data(), owner);
}

ov2::Source make_source(const py::object& src, const std::string& name) {
  ov2::Source s;
  s.name = name;
  if (py::isinstance<py::bytes>(src)) {
    s.data = std::make_shared<const std::string>(src.cast<std::string>());
  } else {
    s.path = src.cast<std::string>();
  }
  return s;
}

ov2::OnError parse_on_error(const std::string& s) {
  if (s == "skip") return ov2::OnError::Skip;
  if (s == "raise") return ov2::OnError::Raise;
  if (s == "repeat") return ov2::OnError::Repeat;
  throw ov2::Error(ov2::ErrorKind::Config, "on_error", "must be 'skip', 'raise' or 'repeat', got '" + s + "'");
}

ov2::Threading parse_threading(const std::string& s) {
  if (s == "auto") return ov2::Threading::Auto;
  if (s == "segments") return ov2::Threading::Segments;
  if (s == "frames") return ov2::Threading::Frames;
  throw ov2::Error(ov2::ErrorKind::Config, "threading", "must be 'auto', 'segments' or 'frames', got '" + s + "'");
}

struct FrameIter {
  std::unique_ptr<ov2::FrameStream> stream;
  ov2::FrameRequest req;

  py::object next() {
    ov2::FrameOut f;
    bool ok;
    {
      py::gil_scoped_release nogil;
      ok = stream->next(f);
    }
    if (!ok) throw py::stop_iteration();
    py::dict d;
    d["index"] = f.index;
    d["pts_s"] = f.pts_s;
    d["pict_type"] = std::string(1, f.pict_type);
    d["keyframe"] = f.keyframe;
    d["width"] = f.width;
    d["height"] = f.height;
    const py::ssize_t H = f.height, W = f.width, h4 = (f.height + 3) / 4, w4 = (f.width + 3) / 4;
    if (req.luma) d["luma"] = to_numpy(std::move(f.luma), {H, W});
    if (req.rgb) d["rgb"] = to_numpy(std::move(f.rgb), {f.rgb_h, f.rgb_w, 3});
    if (req.mvs && f.mvs.ptr) {
      const py::ssize_t n = static_cast<py::ssize_t>(f.mvs.size() / ov2::kMvCols);
      d["motion_vectors"] = to_numpy(std::move(f.mvs), {n, static_cast<py::ssize_t>(ov2::kMvCols)});
    }
    if (req.mvs && f.mv_field.ptr) {
      d["mv_field"] = to_numpy(std::move(f.mv_field), {h4, w4, 4});
      auto mask = to_numpy(std::move(f.intra_mask), {h4, w4});
      d["intra_mask"] = mask.attr("view")("bool");
      d["mv_flags"] = to_numpy(std::move(f.mv_flags), {h4, w4});
    }
    if (req.residual && f.residual.ptr) d["residual"] = to_numpy(std::move(f.residual), {H, W});
    if (req.coding_cost && f.coding_cost.ptr) d["coding_cost"] = to_numpy(std::move(f.coding_cost), {h4, w4});
    if (f.scores.ptr) d["scores"] = to_numpy(std::move(f.scores), {f.score_h, f.score_w});
    if (f.scores64.ptr) d["scores"] = to_numpy(std::move(f.scores64), {f.score_h, f.score_w});
    return d;
  }

  py::dict stats() const {
    const ov2::StreamStats s = stream->stats();
    py::dict d;
    d["frames_decoded"] = s.frames_decoded;
    d["corrupt_packets"] = s.corrupt_packets;
    d["corrupt_frames"] = s.corrupt_frames;
    d["repeated_frames"] = s.repeated_frames;
    d["truncated"] = s.truncated;
    d["parallel"] = s.parallel;
    d["segments"] = s.segments;
    d["pooled_products"] = s.pooled_products;
    d["skipped_frames"] = s.skipped_frames;
    d["skip_fallback"] = s.skip_fallback;
    d["frame_threads"] = s.frame_threads;
    d["thread_fallback"] = s.thread_fallback;
    d["loop_filter_skipped"] = s.loop_filter_skipped;
    d["loop_filter_fallback"] = s.loop_filter_fallback;
    d["packet_prepass"] = s.packet_prepass;
    return d;
  }
};

struct Reader {
  ov2::Source source;
  ov2::ReaderOptions opt;

  py::dict info() {
    ov2::VideoInfo i;
    {
      py::gil_scoped_release nogil;
      i = ov2::read_info(source, opt);
    }
    py::dict d;
    d["codec"] = i.codec;
    d["pix_fmt"] = i.pix_fmt;
    d["container"] = i.container;
    d["width"] = i.width;
    d["height"] = i.height;
    d["fps"] = i.fps;
    d["time_base"] = py::make_tuple(i.time_base_num, i.time_base_den);
    d["num_frames_header"] = i.num_frames_header;
    d["duration_s"] = i.duration_s;
    d["start_s"] = i.start_s;
    d["has_b_frames"] = i.has_b_frames;
    d["stream_index"] = i.stream_index;
    d["bit_depth"] = i.bit_depth;
    d["motion_source"] = i.motion_source;
    d["color_matrix"] = i.color_matrix;
    d["color_range"] = i.color_range;
    return d;
  }

  py::dict packets() {
    ov2::PacketTable t;
    {
      py::gil_scoped_release nogil;
      t = ov2::read_packets(source, opt);
    }
    const py::ssize_t n = static_cast<py::ssize_t>(t.count());
    py::dict d;
    d["pts_s"] = to_numpy(std::move(t.pts_s), {n});
    d["dts_s"] = to_numpy(std::move(t.dts_s), {n});
    d["size"] = to_numpy(std::move(t.size), {n});
    d["keyframe"] = to_numpy(std::move(t.keyframe), {n}).attr("view")("bool");
    d["pict_type"] = to_numpy(std::move(t.pict_type), {n}).attr("view")("S1");
    d["reference"] = to_numpy(std::move(t.reference), {n});
    d["truncated"] = t.truncated;
    d["read_errors"] = t.read_errors;
    return d;
  }

  FrameIter frames(std::optional<py::array_t<int64_t, py::array::c_style | py::array::forcecast>> indices, bool luma,
                   bool mvs, bool residual, bool coding_cost, bool rgb, int rgb_width, int rgb_height,
                   std::optional<py::dict> score, bool mvs_dense) {
    FrameIter it;
    it.req.mvs_dense = mvs_dense || score.has_value();
    if (score && score->contains("kind") && (*score)["kind"].cast<std::string>() == "ovenc") {
      // ovenc_topk patch scores (DESIGN §5.8) on the decoding threads: float64 [g, g]; vectors and residual dropped.
      const int64_t size = (*score)["size"].cast<int64_t>(), patch = (*score)["patch"].cast<int64_t>();
      const double q = (*score)["percentile"].cast<double>();
      if (patch < 1 || size < patch) throw ov2::Error(ov2::ErrorKind::Config, "score", "need size >= patch >= 1");
      if (!(q >= 0.0 && q <= 100.0)) throw ov2::Error(ov2::ErrorKind::Config, "score", "percentile must lie in [0, 100]");
      mvs = residual = true;
      it.req.post = [=](ov2::FrameOut& f) {
        const int64_t g = size / patch;
        f.score_h = f.score_w = static_cast<int>(g);
        const int64_t h4 = (f.height + 3) / 4, w4 = (f.width + 3) / 4;
        ov2::tok::ovenc_patch_scores(f.height, f.width, f.mv_field.data(), f.mv_flags.data(), h4, w4,
                                     f.residual.data(), f.pict_type == 'I', size, patch, q,
                                     f.scores64.allocate(static_cast<size_t>(g * g)));
        drop_scored_products(f);
      };
      it.req.post_drops_products = true;
    } else if (score) {
      // Block scores computed on the decoding threads (DESIGN §5.4–5.5); the products they need are dropped.
      const int64_t hc = (*score)["canvas_h"].cast<int64_t>(), wc = (*score)["canvas_w"].cast<int64_t>();
      const int64_t patch = (*score)["patch"].cast<int64_t>(), merge = (*score)["merge"].cast<int64_t>();
      const double beta = (*score)["beta"].cast<double>();
      const bool keep = score->contains("keep_products") && (*score)["keep_products"].cast<bool>();
      // Optional per-frame weight of the coding-cost prior (indexed by presentation-order frame index).
      std::vector<double> beta_tab;
      if (score->contains("beta_by_frame")) beta_tab = (*score)["beta_by_frame"].cast<std::vector<double>>();
      if (patch < 1 || merge < 1 || hc < patch * merge || wc < patch * merge || hc % (patch * merge) || wc % (patch * merge))
        throw ov2::Error(ov2::ErrorKind::Config, "score", "canvas sides must be positive multiples of patch*merge");
      mvs = residual = coding_cost = true;
      it.req.post = [=](ov2::FrameOut& f) {
        const double b = f.index >= 0 && static_cast<size_t>(f.index) < beta_tab.size() ? beta_tab[f.index] : beta;
        const int64_t nbh = hc / (patch * merge), nbw = wc / (patch * merge);
        f.score_h = static_cast<int>(nbh);
        f.score_w = static_cast<int>(nbw);
        const int64_t h4 = (f.height + 3) / 4, w4 = (f.width + 3) / 4;
        ov2::tok::score_frame(hc, wc, f.height, f.width, f.mv_field.data(), f.mv_flags.data(), h4, w4,
                              f.residual.data(), f.coding_cost.data(), h4, w4, f.pict_type == 'I', patch, merge, b,
                              ov2::tok::ValidRect{}, f.scores.allocate(static_cast<size_t>(nbh * nbw)));
        if (!keep) drop_scored_products(f);
      };
      it.req.post_drops_products = !keep;
    }
    it.req.rgb_width = rgb_width;
    it.req.rgb_height = rgb_height;
    it.req.luma = luma;
    it.req.rgb = rgb;
    it.req.mvs = mvs;
    it.req.residual = residual;
    it.req.coding_cost = coding_cost;
    if (indices) {
      it.req.all = false;
      auto a = indices->unchecked<1>();
      it.req.indices.reserve(static_cast<size_t>(a.shape(0)));
      for (py::ssize_t i = 0; i < a.shape(0); ++i)
        if (a(i) >= 0) it.req.indices.push_back(a(i));
      std::sort(it.req.indices.begin(), it.req.indices.end());
      it.req.indices.erase(std::unique(it.req.indices.begin(), it.req.indices.end()), it.req.indices.end());
    }
    {
      py::gil_scoped_release nogil;
      it.stream = ov2::open_frames(source, opt, it.req);
    }
    return it;
  }
};


// --- Streaming (docs/streaming.md): a background decoder over a push buffer (or a path / bytes) that selects
// candidate frames at a fixed rate, scores them on the decoding thread and hands packets and frames to Python. ---
struct StreamState {
  int64_t patch = 14, merge = 2, min_pixels = 3136, max_pixels = 313600;
  double beta = 0.5, candidate_fps = 2.0;
  int64_t hc = 0, wc = 0;  // canvas size, set when the stream opens
  // candidate selection: the first frame at or after each slot time t0 + k / candidate_fps
  bool has_t0 = false;
  double t0 = 0.0, last_t = 0.0;
  int64_t next_slot = 0, frames_seen = 0;
  // coding-cost prior: beta x (frame's packet bytes / largest P/B packet with pts <= the frame's), causal
  std::map<double, int64_t> size_by_pts;
  std::multimap<double, int64_t> pending_pb, pending_all;
  int64_t max_pb = 0, max_all = 0;
  bool any_pb = false;

  bool select(double t) {
    if (!has_t0) {
      has_t0 = true;
      t0 = last_t = t;
    }
    const double te = std::max(t, last_t);
    last_t = te;
    ++frames_seen;
    const double x = std::floor((te - t0) * candidate_fps + 1e-9);
    const int64_t slot = x > 0 ? static_cast<int64_t>(std::min(x, 9.0e15)) : 0;
    if (slot < next_slot) return false;
    next_slot = slot + 1;
    return true;
  }

  void observe(const ov2::PacketRecord& r) {
    const bool pb = !r.keyframe && r.pict_type != 'I';
    if (!std::isfinite(r.pts_s)) {  // no time: counts for the reference at once
      max_all = std::max(max_all, r.size);
      if (pb) {
        max_pb = std::max(max_pb, r.size);
        any_pb = true;
      }
      return;
    }
    size_by_pts[r.pts_s] = r.size;
    pending_all.emplace(r.pts_s, r.size);
    if (pb) pending_pb.emplace(r.pts_s, r.size);
  }

  double beta_of(double t) {
    for (auto it = pending_all.begin(); it != pending_all.end() && it->first <= t; it = pending_all.erase(it))
      max_all = std::max(max_all, it->second);
    for (auto it = pending_pb.begin(); it != pending_pb.end() && it->first <= t; it = pending_pb.erase(it)) {
      max_pb = std::max(max_pb, it->second);
      any_pb = true;
    }
    double b = beta;
    auto it = size_by_pts.find(t);
    if (it != size_by_pts.end()) {
      const double ref = static_cast<double>(any_pb ? max_pb : max_all);
      b = beta * std::min(1.0, static_cast<double>(it->second) / std::max(ref, 1.0));
    }
    size_by_pts.erase(size_by_pts.begin(), size_by_pts.upper_bound(t));  // frames up to t are done
    return b;
  }
};

struct StreamSession {
  std::shared_ptr<ov2::PushBuffer> push;
  std::shared_ptr<StreamState> state;
  std::unique_ptr<ov2::BackgroundDecoder> dec;
  bool finished = false;

  void feed(const py::buffer& data) {
    if (!push) throw ov2::Error(ov2::ErrorKind::Config, "feed", "this stream reads a path or bytes, not pushed bytes");
    py::buffer_info bi = data.request();
    py::ssize_t want = bi.itemsize;  // C-contiguous: strides are the products of the inner extents
    for (py::ssize_t i = bi.ndim - 1; i >= 0; --i) {
      if (bi.shape[static_cast<size_t>(i)] > 1 && bi.strides[static_cast<size_t>(i)] != want)
        throw ov2::Error(ov2::ErrorKind::Config, "feed", "data must be a C-contiguous bytes-like object");
      want *= bi.shape[static_cast<size_t>(i)];
    }
    const auto* p = static_cast<const uint8_t*>(bi.ptr);
    const size_t n = static_cast<size_t>(bi.size * bi.itemsize);
    py::gil_scoped_release nogil;
    push->feed(p, n);
  }

  void close_input() {
    if (push) push->close();
  }

  void stop() {
    if (dec) {
      py::gil_scoped_release nogil;
      dec->stop();
    }
  }

  py::dict pump(double wait_s, int64_t pending_limit) {
    ov2::StreamBatch b;
    {
      py::gil_scoped_release nogil;
      b = dec->take(wait_s, pending_limit);
    }
    py::dict d;
    if (b.has_info) {
      py::dict i;
      i["codec"] = b.info.codec;
      i["pix_fmt"] = b.info.pix_fmt;
      i["container"] = b.info.container;
      i["width"] = b.info.width;
      i["height"] = b.info.height;
      i["fps"] = b.info.fps;
      i["time_base"] = py::make_tuple(b.info.time_base_num, b.info.time_base_den);
      i["start_s"] = b.info.start_s;
      i["has_b_frames"] = b.info.has_b_frames;
      i["motion_source"] = b.info.motion_source;
      i["canvas_hw"] = py::make_tuple(state->hc, state->wc);
      d["info"] = i;
    } else {
      d["info"] = py::none();
    }
    const py::ssize_t n = static_cast<py::ssize_t>(b.packets.size());
    py::array_t<double> pts(n), dts(n);
    py::array_t<int64_t> size(n);
    py::array_t<uint8_t> pict(n), key(n);
    for (py::ssize_t k = 0; k < n; ++k) {
      const ov2::PacketRecord& r = b.packets[static_cast<size_t>(k)];
      pts.mutable_data()[k] = r.pts_s;
      dts.mutable_data()[k] = r.dts_s;
      size.mutable_data()[k] = r.size;
      pict.mutable_data()[k] = static_cast<uint8_t>(r.pict_type);
      key.mutable_data()[k] = r.keyframe;
    }
    py::dict pk;
    pk["pts_s"] = pts;
    pk["dts_s"] = dts;
    pk["size"] = size;
    pk["pict_type"] = pict;
    pk["keyframe"] = key.attr("view")("bool");
    d["packets"] = pk;
    d["packets_base"] = b.packets_base;
    py::list frames;
    for (size_t k = 0; k < b.frames.size(); ++k) {
      ov2::FrameOut& f = b.frames[k];
      py::dict fd;
      fd["index"] = f.index;
      fd["pts_s"] = f.pts_s;
      fd["pict_type"] = std::string(1, f.pict_type);
      fd["keyframe"] = f.keyframe;
      fd["packets_before"] = b.packets_before[k];
      fd["rgb"] = to_numpy(std::move(f.rgb), {f.rgb_h, f.rgb_w, 3});
      fd["scores"] = to_numpy(std::move(f.scores), {f.score_h, f.score_w});
      frames.append(fd);
    }
    d["frames"] = frames;
    d["finished"] = b.finished;
    if (b.finished) {
      finished = true;
      py::dict st;
      st["frames_decoded"] = b.stats.frames_decoded;
      st["corrupt_packets"] = b.stats.corrupt_packets;
      st["corrupt_frames"] = b.stats.corrupt_frames;
      st["repeated_frames"] = b.stats.repeated_frames;
      st["truncated"] = b.stats.truncated;
      d["stats"] = st;
      // Written by the decoding thread before it finished (take() synchronises on the decoder's mutex).
      d["frames_seen"] = state->frames_seen;
      d["first_frame_s"] = state->has_t0 ? py::object(py::float_(state->t0)) : py::object(py::none());
      d["last_frame_s"] = state->has_t0 ? py::object(py::float_(state->last_t)) : py::object(py::none());
    }
    return d;
  }
};

std::unique_ptr<StreamSession> make_stream_session(const py::object& src, const std::string& name, bool seekable,
                                                   const std::string& on_error, double timeout_s, int64_t patch,
                                                   int64_t merge, int64_t min_pixels, int64_t max_pixels, double beta,
                                                   double candidate_fps, size_t max_queue_bytes) {
  if (!(candidate_fps > 0) || !std::isfinite(candidate_fps))
    throw ov2::Error(ov2::ErrorKind::Config, "candidate_fps", "must be a positive number");
  if (patch < 1 || merge < 1) throw ov2::Error(ov2::ErrorKind::Config, "patch_size", "patch and merge must be >= 1");
  auto s = std::make_unique<StreamSession>();
  ov2::Source source;
  if (src.is_none()) {
    source.name = name;
    s->push = std::make_shared<ov2::PushBuffer>(name, seekable);
    source.push = s->push;
  } else {
    source = make_source(src, name);
  }
  ov2::ReaderOptions opt;
  opt.num_threads = 1;
  opt.on_error = parse_on_error(on_error);
  opt.timeout_s = s->push ? 0.0 : timeout_s;  // push: the caller's waits are bounded in Python instead
  auto st = std::make_shared<StreamState>();
  st->patch = patch;
  st->merge = merge;
  st->min_pixels = min_pixels;
  st->max_pixels = max_pixels;
  st->beta = beta;
  st->candidate_fps = candidate_fps;
  s->state = st;
  ov2::FrameRequest req;
  req.all = true;
  req.luma = false;
  req.rgb = true;
  req.mvs = req.residual = req.coding_cost = true;
  req.on_open = [st](const ov2::Demuxer& dm, ov2::FrameRequest& r) {
    const AVCodecParameters* par = dm.stream()->codecpar;
    ov2::tok::CanvasSize c;
    try {
      c = ov2::tok::canvas_size(par->height, par->width, st->patch, st->merge, st->min_pixels, st->max_pixels);
    } catch (const std::exception& e) {
      throw ov2::Error(ov2::ErrorKind::Config, "max_pixels",
                       std::string(e.what()) + " (frame " + std::to_string(par->height) + "x" +
                           std::to_string(par->width) + ")");
    }
    st->hc = c.height;
    st->wc = c.width;
    r.rgb_width = static_cast<int>(c.width);
    r.rgb_height = static_cast<int>(c.height);
  };
  req.select = [st](int64_t, double t) { return st->select(t); };
  req.post = [st](ov2::FrameOut& f) {
    const double b = st->beta_of(f.pts_s);
    const int64_t hc = st->hc, wc = st->wc, patch = st->patch, merge = st->merge;
    const int64_t nbh = hc / (patch * merge), nbw = wc / (patch * merge);
    f.score_h = static_cast<int>(nbh);
    f.score_w = static_cast<int>(nbw);
    const int64_t h4 = (f.height + 3) / 4, w4 = (f.width + 3) / 4;
    ov2::tok::score_frame(hc, wc, f.height, f.width, f.mv_field.data(), f.mv_flags.data(), h4, w4, f.residual.data(),
                          f.coding_cost.data(), h4, w4, f.pict_type == 'I', patch, merge, b, ov2::tok::ValidRect{},
                          f.scores.allocate(static_cast<size_t>(nbh * nbw)));
    drop_scored_products(f);
  };
  s->dec = std::make_unique<ov2::BackgroundDecoder>(source, opt, req, max_queue_bytes,
                                                    [st](const ov2::PacketRecord& r) { st->observe(r); });
  return s;
}
}  // namespace

void ov2_bind_codec(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ov2::Error& e) {
      py::object errors = py::module_::import("ov2_tokenizer.errors");
      const char* cls = "Ov2Error";
      switch (e.kind()) {
        case ov2::ErrorKind::Open: cls = "VideoOpenError"; break;
        case ov2::ErrorKind::NoVideoStream: cls = "NoVideoStreamError"; break;
        case ov2::ErrorKind::UnsupportedCodec: cls = "UnsupportedCodecError"; break;
        case ov2::ErrorKind::Corrupt: cls = "CorruptVideoError"; break;
        case ov2::ErrorKind::Config: cls = "ConfigError"; break;
        case ov2::ErrorKind::Timeout: cls = "DecodeTimeout"; break;
      }
      py::object exc = errors.attr(cls)(e.source(), e.cause());
      PyErr_SetObject(py::type::handle_of(exc).ptr(), exc.ptr());
    }
  });

  // Dense motion products from exported rows (what frames(mvs=True, mvs_dense=False) leaves to be made on access).
  m.def(
      "densify_motion",
      [](py::array_t<int32_t, py::array::c_style | py::array::forcecast> rows, int width, int height, bool intra) {
        if (rows.ndim() != 2 || rows.shape(1) != static_cast<py::ssize_t>(ov2::kMvCols))
          throw ov2::Error(ov2::ErrorKind::Config, "rows", "expected an N x 10 int32 array of motion-vector rows");
        // Any picture the reader delivers (at most 2^26 pixels, any aspect: a 92000 x 64 stream decodes).
        if (width < 1 || height < 1 || static_cast<int64_t>(width) * height > (int64_t(1) << 26))
          throw ov2::Error(ov2::ErrorKind::Config, "size", "width and height must be >= 1, width x height <= 2^26");
        const py::ssize_t h4 = (height + 3) / 4, w4 = (width + 3) / 4;
        py::array_t<float> field({h4, w4, py::ssize_t{4}});
        py::array_t<uint8_t> mask({h4, w4}), flags({h4, w4});
        const int32_t* r = rows.data();
        const int64_t n = rows.shape(0);
        float* fp = field.mutable_data();
        uint8_t* mp = mask.mutable_data();
        uint8_t* gp = flags.mutable_data();
        {
          py::gil_scoped_release nogil;
          ov2::MotionField f;
          ov2::densify_motion(r, n, width, height, f, fp, mp, gp);
          if (intra) std::fill(mp, mp + h4 * w4, uint8_t{1});
        }
        return py::make_tuple(field, mask.attr("view")("bool"), flags);
      },
      py::arg("rows"), py::arg("width"), py::arg("height"), py::arg("intra") = false,
      "(mv_field [H/4, W/4, 4] float32, intra_mask bool, mv_flags uint8) from N x 10 motion-vector rows.");

  py::class_<FrameIter>(m, "FrameIterator")
      .def("__iter__", [](FrameIter& self) -> FrameIter& { return self; }, py::return_value_policy::reference_internal)
      .def("__next__", &FrameIter::next)
      .def("stats", &FrameIter::stats)
      .def("close", [](FrameIter& self) { self.stream.reset(); });

  py::class_<Reader>(m, "Reader")
      .def(py::init([](const py::object& src, const std::string& name, int stream_index, int num_threads,
                       const std::string& on_error, double timeout_s, size_t max_buffer_bytes,
                       const std::string& threading) {
             Reader r;
             r.source = make_source(src, name);
             r.opt.stream_index = stream_index;
             r.opt.num_threads = num_threads;
             r.opt.on_error = parse_on_error(on_error);
             r.opt.timeout_s = timeout_s;
             r.opt.max_buffer_bytes = max_buffer_bytes;
             r.opt.threading = parse_threading(threading);
             return r;
           }),
           py::arg("source"), py::arg("name"), py::arg("stream_index") = -1, py::arg("num_threads") = 1,
           py::arg("on_error") = "skip", py::arg("timeout_s") = 0.0, py::arg("max_buffer_bytes") = size_t(16) << 20,
           py::arg("threading") = "auto")
      .def("info", &Reader::info)
      .def("packets", &Reader::packets)
      .def("frames", &Reader::frames, py::arg("indices") = py::none(), py::arg("luma") = true, py::arg("mvs") = false,
           py::arg("residual") = false, py::arg("coding_cost") = false, py::arg("rgb") = false,
           py::arg("rgb_width") = 0, py::arg("rgb_height") = 0, py::arg("score") = py::none(),
           py::arg("mvs_dense") = true);

  py::class_<StreamSession>(m, "StreamSession")
      .def(py::init(&make_stream_session), py::arg("source"), py::arg("name"), py::arg("seekable") = false,
           py::arg("on_error") = "skip", py::arg("timeout_s") = 0.0, py::arg("patch") = 14, py::arg("merge") = 2,
           py::arg("min_pixels") = 3136, py::arg("max_pixels") = 313600, py::arg("beta") = 0.5,
           py::arg("candidate_fps") = 2.0, py::arg("max_queue_bytes") = size_t(32) << 20,
           "Background decoding for the streaming schedule (docs/streaming.md); source None = pushed bytes.")
      .def("feed", &StreamSession::feed, py::arg("data"), "Appends bytes (push sources only).")
      .def("close_input", &StreamSession::close_input, "End of input (push sources).")
      .def("pump", &StreamSession::pump, py::arg("wait_s") = 0.0, py::arg("pending_limit") = -1,
           "Waits up to wait_s for a frame, the end, or unread pushed bytes <= pending_limit; returns what is queued.")
      .def("stop", &StreamSession::stop, "Stops and joins the decoding thread.")
      .def_property_readonly("is_push", [](const StreamSession& s) { return bool(s.push); })
      .def_property_readonly("pending", [](const StreamSession& s) { return s.push ? s.push->pending() : int64_t(0); })
      .def_property_readonly("starved", [](const StreamSession& s) { return s.push ? s.push->starved() : false; })
      .def_property_readonly("fed", [](const StreamSession& s) { return s.push ? s.push->fed() : int64_t(0); })
      .def_property_readonly("held", [](const StreamSession& s) { return s.push ? s.push->held() : int64_t(0); })
      .def_property_readonly("finished", [](const StreamSession& s) { return s.finished; });

  m.def("buffer_pool_cached_bytes", &ov2::pool_cached_bytes,
        "Bytes of freed output buffers the core keeps for reuse (bounded: csrc/codec/buffer_pool.h).");

  m.def(
      "force_cpu_flags", [](int flags) { av_force_cpu_flags(flags); },
      "FFmpeg's av_force_cpu_flags for the whole process: 0 = plain C code, -1 = detect again. For tests that "
      "check outputs do not depend on the CPU's SIMD level (not thread-safe against running reads).",
      py::arg("flags"));

  m.def(
      "yuv_to_rgb_rows",
      [](py::array_t<uint8_t, py::array::c_style | py::array::forcecast> y,
         py::array_t<uint8_t, py::array::c_style | py::array::forcecast> u,
         py::array_t<uint8_t, py::array::c_style | py::array::forcecast> v, const std::string& matrix, bool full,
         bool simd) {
        if (y.ndim() != 2 || u.ndim() != 2 || v.ndim() != 2 || u.shape(0) != y.shape(0) || v.shape(0) != y.shape(0) ||
            u.shape(1) != y.shape(1) || v.shape(1) != y.shape(1))
          throw ov2::Error(ov2::ErrorKind::Config, "yuv_to_rgb_rows", "y, u, v: three 2-D planes of one shape");
        if (matrix != "bt709" && matrix != "bt601")
          throw ov2::Error(ov2::ErrorKind::Config, "yuv_to_rgb_rows", "matrix: 'bt709' or 'bt601'");
        const py::ssize_t h = y.shape(0), w = y.shape(1);
        py::array_t<uint8_t> out({h, w, py::ssize_t{3}});
        const ov2::YuvToRgb conv(matrix == "bt709" ? 709 : 601, full);
        std::vector<uint8_t> tmp(static_cast<size_t>(3 * std::max<py::ssize_t>(w, 1)));
        {
          py::gil_scoped_release nogil;
          for (py::ssize_t r = 0; r < h; ++r)
            ov2::yuv_to_rgb_row(conv, y.data(r, 0), u.data(r, 0), v.data(r, 0), static_cast<int>(w), tmp.data(),
                                out.mutable_data(r, 0, 0), simd);
        }
        return out;
      },
      "The core's per-pixel colour conversion (csrc/codec/rgb.h) of 8-bit 4:4:4 planes: [H, W, 3] RGB. "
      "simd=False forces the baseline build. For tests.",
      py::arg("y"), py::arg("u"), py::arg("v"), py::arg("matrix"), py::arg("full"), py::arg("simd") = true);
  m.def("yuv_to_rgb_has_simd", &ov2::yuv_to_rgb_row_has_simd,
        "Whether the colour conversion runs its AVX2 build on this CPU.");

  m.def("ffmpeg_versions", []() {
    py::dict d;
    d["libavcodec"] = std::string(AV_STRINGIFY(LIBAVCODEC_VERSION));
    d["libavformat"] = std::string(AV_STRINGIFY(LIBAVFORMAT_VERSION));
    d["libavutil"] = std::string(AV_STRINGIFY(LIBAVUTIL_VERSION));
    d["runtime_libavcodec"] = avcodec_version();
    return d;
  });
  av_log_set_level(AV_LOG_QUIET);
}

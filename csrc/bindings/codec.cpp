// Bindings of csrc/codec: the video reader. Arrays cross to Python without copies (numpy arrays own the
// C++ buffers through capsules); the GIL is released while demuxing and decoding.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "codec/error.h"
#include "codec/motion.h"
#include "codec/reader.h"
#include "tokenize/block_score.h"

namespace py = pybind11;

namespace {

template <class T>
py::array_t<T> to_numpy(ov2::Buffer<T>&& b, std::vector<py::ssize_t> shape) {
  if (!b.ptr) b.allocate(0);
  T* raw = b.ptr.release();
  py::capsule owner(raw, [](void* p) { delete[] static_cast<T*>(p); });
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
    if (req.mvs && f.mv_field.ptr) {
      const py::ssize_t n = static_cast<py::ssize_t>(f.mvs.size() / ov2::kMvCols);
      d["motion_vectors"] = to_numpy(std::move(f.mvs), {n, static_cast<py::ssize_t>(ov2::kMvCols)});
      d["mv_field"] = to_numpy(std::move(f.mv_field), {h4, w4, 4});
      auto mask = to_numpy(std::move(f.intra_mask), {h4, w4});
      d["intra_mask"] = mask.attr("view")("bool");
      d["mv_flags"] = to_numpy(std::move(f.mv_flags), {h4, w4});
    }
    if (req.residual && f.residual.ptr) d["residual"] = to_numpy(std::move(f.residual), {H, W});
    if (req.coding_cost && f.coding_cost.ptr) d["coding_cost"] = to_numpy(std::move(f.coding_cost), {h4, w4});
    if (f.scores.ptr) d["scores"] = to_numpy(std::move(f.scores), {f.score_h, f.score_w});
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
                   std::optional<py::dict> score) {
    FrameIter it;
    if (score) {
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
        if (!keep) {
          f.mvs = {};
          f.mv_field = {};
          f.intra_mask = {};
          f.mv_flags = {};
          f.residual = {};
          f.coding_cost = {};
        }
      };
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

  py::class_<FrameIter>(m, "FrameIterator")
      .def("__iter__", [](FrameIter& self) -> FrameIter& { return self; }, py::return_value_policy::reference_internal)
      .def("__next__", &FrameIter::next)
      .def("stats", &FrameIter::stats)
      .def("close", [](FrameIter& self) { self.stream.reset(); });

  py::class_<Reader>(m, "Reader")
      .def(py::init([](const py::object& src, const std::string& name, int stream_index, int num_threads,
                       const std::string& on_error, double timeout_s, size_t max_buffer_bytes) {
             Reader r;
             r.source = make_source(src, name);
             r.opt.stream_index = stream_index;
             r.opt.num_threads = num_threads;
             r.opt.on_error = parse_on_error(on_error);
             r.opt.timeout_s = timeout_s;
             r.opt.max_buffer_bytes = max_buffer_bytes;
             return r;
           }),
           py::arg("source"), py::arg("name"), py::arg("stream_index") = -1, py::arg("num_threads") = 1,
           py::arg("on_error") = "skip", py::arg("timeout_s") = 0.0, py::arg("max_buffer_bytes") = size_t(16) << 20)
      .def("info", &Reader::info)
      .def("packets", &Reader::packets)
      .def("frames", &Reader::frames, py::arg("indices") = py::none(), py::arg("luma") = true, py::arg("mvs") = false,
           py::arg("residual") = false, py::arg("coding_cost") = false, py::arg("rgb") = false,
           py::arg("rgb_width") = 0, py::arg("rgb_height") = 0, py::arg("score") = py::none());

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

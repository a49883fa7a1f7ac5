// The one Python extension of ov2: ov2_tokenizer._core. Each part registers its own functions.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void ov2_bind_tokenize(py::module_& m);
void ov2_bind_build_info(py::module_& m);
#ifdef OV2_HAVE_FFMPEG
void ov2_bind_codec(py::module_& m);
#endif
#ifdef OV2_HAVE_CUDA
void ov2_bind_cuda(py::module_& m);
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "ov2 compiled core: codec reader (FFmpeg) and tokenization algorithms";
  ov2_bind_tokenize(m);
  ov2_bind_build_info(m);
#ifdef OV2_HAVE_FFMPEG
  ov2_bind_codec(m);
  m.attr("has_ffmpeg") = true;
#else
  m.attr("has_ffmpeg") = false;
#endif
#ifdef OV2_HAVE_CUDA
  ov2_bind_cuda(m);
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
}

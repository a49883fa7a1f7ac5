// `make tsan`: ThreadSanitizer driver for the threaded reader (parallel segments, FFmpeg's frame threads on H.264
// without re-ordering, the product pool, the post hook).
// Reads each video given on the command line with every product (luma, RGB, vectors, dense field, residual,
// coding cost, and a post hook computing block scores), for all frames and for a sparse selection, with 1 to 4
// threads, and checks that every thread count gives the digests of one thread. Exit status 1 on a difference;
// TSan's own status (66) on a race report.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include "codec/reader.h"
#include "tokenize/block_score.h"

static uint64_t fnv(uint64_t h, const void* p, size_t n) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) { h ^= c[i]; h *= 1099511628211ull; }
  return h;
}

static std::vector<uint64_t> run(const std::string& path, int threads, bool sparse, bool post,
                                 ov2::Threading threading = ov2::Threading::Auto, int* frame_threads = nullptr) {
  ov2::Source src;
  src.path = path;
  src.name = path;
  ov2::ReaderOptions opt;
  opt.num_threads = threads;
  opt.max_buffer_bytes = size_t(4) << 20;
  opt.threading = threading;
  ov2::FrameRequest req;
  req.luma = true; req.mvs = true; req.residual = true; req.coding_cost = true; req.rgb = true;
  req.rgb_width = 160; req.rgb_height = 96;
  req.mvs_dense = true;
  if (sparse) { req.all = false; for (int i = 0; i < 400; i += 3) req.indices.push_back(i); }
  if (post) req.post = [](ov2::FrameOut& f) {
    const int64_t h4 = (f.height + 3) / 4, w4 = (f.width + 3) / 4;
    ov2::tok::score_frame(112, 140, f.height, f.width, f.mv_field.data(), f.mv_flags.data(), h4, w4, f.residual.data(),
                          f.coding_cost.data(), h4, w4, f.pict_type == 'I', 14, 2, 0.5, ov2::tok::ValidRect{},
                          f.scores.allocate(4 * 5));
  };
  auto s = ov2::open_frames(src, opt, req);
  std::vector<uint64_t> out;
  ov2::FrameOut f;
  while (s->next(f)) {
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, &f.index, sizeof f.index);
    h = fnv(h, f.luma.data(), f.luma.size());
    h = fnv(h, f.rgb.data(), size_t(f.rgb_w) * f.rgb_h * 3);
    h = fnv(h, f.mvs.data(), f.mvs.size() * 4);
    h = fnv(h, f.mv_field.data(), f.mv_field.size() * 4);
    h = fnv(h, f.residual.data(), f.residual.size() * 2);
    h = fnv(h, f.coding_cost.data(), f.coding_cost.size() * 4);
    h = fnv(h, f.scores.data(), f.scores.size() * 4);
    out.push_back(h);
  }
  if (frame_threads) *frame_threads = s->stats().frame_threads;
  return out;
}

int main(int argc, char** argv) {
  int bad = 0;
  for (int a = 1; a < argc; ++a) {
    for (int sparse = 0; sparse < 2; ++sparse)
      for (int post = 0; post < 2; ++post) {
        auto ref = run(argv[a], 1, sparse, post);
        for (int t = 2; t <= 4; ++t) {
          auto got = run(argv[a], t, sparse, post);
          const bool ok = got == ref;
          bad += !ok;
          std::printf("%s sparse=%d post=%d threads=%d frames=%zu %s\n", argv[a], sparse, post, t, got.size(), ok ? "ok" : "DIFFER");
          if (post) continue;
          // frame threads where the stream allows them (H.264 without re-ordering), with the product pool
          int used = 0;
          auto ft = run(argv[a], t, sparse, post, ov2::Threading::Frames, &used);
          const bool ok_ft = ft == ref;
          bad += !ok_ft;
          std::printf("%s sparse=%d threads=%d threading=frames (frame threads used: %d) frames=%zu %s\n", argv[a],
                      sparse, t, used, ft.size(), ok_ft ? "ok" : "DIFFER");
        }
      }
  }
  return bad ? 1 : 0;
}

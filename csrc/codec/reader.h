// Reading a video: stream information, the packet table, and decoded frames with their per-frame products
// (luma, motion vectors, dense motion field, residual, coding cost), streamed in presentation order.
//
// Determinism: FFmpeg's frame threading makes exported motion vectors of B-frame streams vary between runs,
// so decoders run single-threaded, except on H.264 streams without re-ordering (see below). `num_threads > 1`
// decodes independent closed GOPs (segments that start at an IDR / intra-only key packet) in parallel decoders and
// re-orders their outputs, which gives the same frames, vectors and products as one decoder. An H.264 stream
// without re-ordering whose closed GOPs are too few to split (one long GOP, say) is decoded by one decoder with
// FFmpeg's frame threads instead, guarded: the first sign that the file leaves that model (a decoding error, a
// damaged frame, a re-ordering delay, a presentation time that does not increase) stops it before the frame is
// used, and the frames not yet delivered are read again with one thread per decoder (docs/decoding.md).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <memory>
#include <string>
#include <vector>

#include "codec/buffer_pool.h"
#include "codec/demux.h"
#include "codec/packets.h"

namespace ov2 {

// Skip: damaged packets are skipped (counted); Raise: the first damage raises ov2::Error(Corrupt);
// Repeat: a packet that fails to decode (or a frame flagged damaged) yields a copy of the last good frame, so the
// frame count follows the packets (DESIGN §5.10, docs/robustness.md).
enum class OnError { Skip = 0, Raise = 1, Repeat = 2 };

// How num_threads > 1 is used. Auto: closed-GOP segments, or FFmpeg frame threads for an H.264 stream without
// re-ordering whose segments would keep the threads less than 85 % busy; Segments: never frame threads; Frames:
// frame threads whenever the stream allows them (H.264 without re-ordering), else segments. Outputs never depend
// on it.
enum class Threading { Auto = 0, Segments = 1, Frames = 2 };

struct VideoInfo {
  std::string codec, pix_fmt, container;
  int width = 0, height = 0;
  double fps = 0.0;  // average frame rate (0 when unknown)
  int time_base_num = 0, time_base_den = 1;
  int64_t num_frames_header = -1;  // the container's claim (not trusted)
  double duration_s = 0.0, start_s = 0.0;
  bool has_b_frames = false;
  int stream_index = -1;
  int bit_depth = 8;
  std::string motion_source;  // "codec": exported vectors; "estimated": block matching (motion_estimate.h); "none"
  // How frames' RGB is made (rgb.h), from the stream's declaration: "bt709" or "bt601" (every other matrix is
  // converted as BT.601), "none" for RGB / palette / grey formats; range "full" or "limited".
  std::string color_matrix = "bt601", color_range = "limited";
};

struct ReaderOptions {
  int stream_index = -1;
  int num_threads = 1;
  OnError on_error = OnError::Skip;
  double timeout_s = 0.0;
  size_t max_buffer_bytes = size_t(16) << 20;  // decoded-ahead outputs held for re-ordering (parallel decoding)
  Threading threading = Threading::Auto;
  int frame_threads = 0;  // internal (set by open_frames): FFmpeg frame threads of the decoder, 0 / 1 for none
  bool skip_loop_filter = false;  // internal (set by open_frames): H.264 without deblocking (reads without pixels)
};

// Sparse requests (indices) on H.264: the packets of non-reference pictures whose frames are not requested are
// never sent to the decoder (nothing references them). Built by open_frames from the packet table; frame indices
// then come from pts ranks, checked against every decoded frame (docs/decoding.md, "Skipping").
struct SkipPlan {
  std::vector<uint8_t> skip_packet;  // by packet index (demux order, empty packets not counted)
  std::vector<int64_t> skipped;      // sorted frame indices (pts ranks) of those packets
  std::vector<int64_t> pts_by_rank;  // raw pts of frame index k
};

struct FrameRequest {
  bool all = true;
  std::vector<int64_t> indices;  // sorted, unique; used when !all
  int64_t first = 0;             // frames before this index are not requested (where a re-read resumes)
  bool luma = true, rgb = false, mvs = false, residual = false, coding_cost = false;
  bool mvs_dense = true;  // with mvs: the dense field, intra mask and flags too (false: rows only)
  int rgb_width = 0, rgb_height = 0;  // RGB output size (0: the visible size); resized with bilinear swscale
  // Runs on the decoding thread right after a requested frame's products are made; it may reduce them
  // (e.g. to block scores) so that per-frame work runs in parallel with decoding and little crosses to Python.
  std::function<void(struct FrameOut&)> post;
  // Whether `post` drops the vectors, residual and coding cost (keeping luma, RGB and what it computes): the
  // re-ordering buffer of parallel decoding then counts a queued frame by what it keeps, not by the products its
  // pending task still holds (those tasks are bounded by their own count).
  bool post_drops_products = false;
  // --- streaming hooks (optional; codec/push_source.h). They run on the decoding thread. ---
  // Called once the stream is open, before any packet is decoded; may adjust this request (e.g. the RGB size).
  std::function<void(const Demuxer&, FrameRequest&)> on_open;
  // Called for every packet of the stream as it is demuxed (decode order, empty packets skipped).
  std::function<void(const AVPacket*)> on_packet;
  // When set (with all = true), decides per decoded frame whether it is requested, instead of `indices`:
  // select(presentation-order index, presentation time in seconds as FrameOut::pts_s would hold it).
  std::function<bool(int64_t index, double pts_s)> select;
  std::shared_ptr<const SkipPlan> skip_plan;  // set by open_frames (internal)
  bool wants(int64_t index) const;
  int64_t last() const { return all ? INT64_MAX : (indices.empty() ? -1 : indices.back()); }
};

// An uninitialised array (std::vector would zero-fill buffers that are overwritten anyway), from the buffer pool.
template <class T>
struct Buffer {
  struct Free {
    void operator()(T* p) const { pool_free(p); }
  };
  std::unique_ptr<T, Free> ptr;  // from pool_alloc (release() it to pool_free)
  size_t n = 0;
  T* allocate(size_t count) { return reset(pool_alloc(std::max<size_t>(1, count) * sizeof(T)), count); }
  T* allocate_zeroed(size_t count) {
    T* p = allocate(count);
    std::memset(static_cast<void*>(p), 0, std::max<size_t>(1, count) * sizeof(T));
    return p;
  }
  T* data() const { return ptr.get(); }
  size_t size() const { return n; }
  T* begin() const { return ptr.get(); }
  T* end() const { return ptr.get() + n; }

 private:
  T* reset(void* p, size_t count) {
    if (!p) throw std::bad_alloc();
    ptr.reset(static_cast<T*>(p));
    n = count;
    return ptr.get();
  }
};

struct FrameOut {
  int64_t index = 0;
  double pts_s = 0.0;
  char pict_type = '?';
  bool keyframe = false;
  int width = 0, height = 0;
  Buffer<uint8_t> luma;          // H x W
  Buffer<uint8_t> rgb;           // rgb_h x rgb_w x 3 (RGB24)
  int rgb_w = 0, rgb_h = 0;
  Buffer<int32_t> mvs;           // N x 10
  Buffer<float> mv_field;        // ceil(H/4) x ceil(W/4) x 4
  Buffer<uint8_t> intra_mask;    // ceil(H/4) x ceil(W/4)
  Buffer<uint8_t> mv_flags;      // ceil(H/4) x ceil(W/4): bit 0 L0 vector, bit 1 L1 vector
  Buffer<int16_t> residual;      // H x W
  Buffer<float> coding_cost;     // ceil(H/4) x ceil(W/4)
  Buffer<float> scores;          // whatever FrameRequest::post computes (score_h x score_w)
  Buffer<double> scores64;       // or in double (ovenc_topk patch scores), same shape; at most one of the two
  int score_h = 0, score_w = 0;
  size_t bytes() const {
    return luma.size() + rgb.size() + mvs.size() * 4 + mv_field.size() * 4 + intra_mask.size() * 2 + residual.size() * 2 +
           coding_cost.size() * 4 + scores.size() * 4 + scores64.size() * 8;
  }
};

struct StreamStats {
  int64_t frames_decoded = 0;
  int64_t corrupt_packets = 0;  // packets the demuxer flagged or the decoder rejected
  int64_t corrupt_frames = 0;   // frames the decoder flagged as damaged
  int64_t repeated_frames = 0;  // on_error=repeat: outputs that are copies of the last good frame
  bool truncated = false;
  bool parallel = false;        // whether parallel segment decoding was used
  int segments = 1;
  bool pooled_products = false;  // whether products ran as tasks of a product pool (codec/product_pool.h)
  int64_t skipped_frames = 0;    // unrequested non-reference frames never decoded (SkipPlan)
  bool skip_fallback = false;    // the skip plan did not hold for this file: read again without skipping
  int frame_threads = 0;         // FFmpeg frame threads of the (first) decoder; 0: none
  bool thread_fallback = false;  // frame threads stopped (the file left their model): read again without them
  bool packet_prepass = false;   // the packets were demuxed once up front to plan threads or skipping
  bool loop_filter_skipped = false;   // a read without pixels decoded without deblocking (docs/decoding.md)
  bool loop_filter_fallback = false;  // ... until damage: read again from there with it (same outputs)
};

class FrameStream {
 public:
  virtual ~FrameStream() = default;
  // Blocks until the next requested frame is ready; false when the stream ended. Throws ov2::Error.
  virtual bool next(FrameOut& out) = 0;
  virtual StreamStats stats() const = 0;
};

VideoInfo read_info(const Source& source, const ReaderOptions& options);
// The information of an opened demuxer's stream (what read_info returns).
VideoInfo stream_info(const Demuxer& demuxer);
PacketTable read_packets(const Source& source, const ReaderOptions& options);
std::unique_ptr<FrameStream> open_frames(const Source& source, const ReaderOptions& options, const FrameRequest& request);

}  // namespace ov2

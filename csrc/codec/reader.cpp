#include "codec/reader.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "codec/coding_cost.h"
#include "codec/error.h"
#include "codec/motion.h"
#include "codec/motion_estimate.h"
#include "codec/product_pool.h"
#include "codec/residual.h"
#include "codec/rgb.h"

namespace ov2 {

bool FrameRequest::wants(int64_t index) const {
  return index >= first && (all || std::binary_search(indices.begin(), indices.end(), index));
}

namespace {

bool codec_exports_vectors(AVCodecID id) {
  return id == AV_CODEC_ID_H264 || id == AV_CODEC_ID_MPEG4 || id == AV_CODEC_ID_MPEG1VIDEO ||
         id == AV_CODEC_ID_MPEG2VIDEO || id == AV_CODEC_ID_H263 || id == AV_CODEC_ID_H263P ||
         id == AV_CODEC_ID_MSMPEG4V3 || id == AV_CODEC_ID_FLV1;
}

// Codecs whose frames ov2 gives estimated vectors (DESIGN §4.5): no exported vectors, not intra-only.
bool codec_needs_estimate(AVCodecID id) {
  const AVCodecDescriptor* d = avcodec_descriptor_get(id);
  return !codec_exports_vectors(id) && !(d && (d->props & AV_CODEC_PROP_INTRA_ONLY));
}

Interp interp_for(AVCodecID id) { return id == AV_CODEC_ID_H264 ? Interp::H264Qpel : Interp::Bilinear; }

char picture_letter(AVPictureType t) {
  switch (t) {
    case AV_PICTURE_TYPE_I:
    case AV_PICTURE_TYPE_SI: return 'I';
    case AV_PICTURE_TYPE_P:
    case AV_PICTURE_TYPE_SP:
    case AV_PICTURE_TYPE_S: return 'P';
    case AV_PICTURE_TYPE_B:
    case AV_PICTURE_TYPE_BI: return 'B';
    default: return '?';
  }
}

bool frame_is_key(const AVFrame* f) {
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(58, 7, 100)
  return (f->flags & AV_FRAME_FLAG_KEY) != 0;
#else
  return f->key_frame != 0;
#endif
}

bool frame_is_corrupt(const AVFrame* f) {
  return f->decode_error_flags != 0 || (f->flags & AV_FRAME_FLAG_CORRUPT) != 0;
}

// Bytes of slack after buffers that swscale writes (its SIMD paths store whole vectors).
constexpr size_t kSwsPadding = 256;

// An 8-bit luma view of a decoded frame at its coded size (the frame is kept alive by a reference).
struct Luma8 {
  FramePtr frame;
  std::vector<uint8_t> own;
  Plane coded;            // whole coded picture (for prediction)
  int crop_left = 0, crop_top = 0, width = 0, height = 0;  // visible region
  int64_t pts = 0;
  int64_t order = -1;     // decode order within the decoder (packets fed before it); -1 unknown
  Plane visible() const {
    Plane p;
    p.data = coded.data + crop_top * coded.stride + crop_left;
    p.width = width;
    p.height = height;
    p.stride = coded.stride;
    return p;
  }
};

struct SwsHolder {
  SwsContext* ctx = nullptr;
  ~SwsHolder() { sws_freeContext(ctx); }
};

void make_luma8(const AVFrame* src, Luma8& out, SwsHolder& sws, const std::string& name) {
  out.frame.reset(av_frame_clone(src));
  if (!out.frame) throw Error(ErrorKind::Corrupt, name, "out of memory while holding a frame");
  const AVFrame* f = out.frame.get();
  const int W = f->width, H = f->height;
  out.crop_left = static_cast<int>(f->crop_left);
  out.crop_top = static_cast<int>(f->crop_top);
  out.width = W - static_cast<int>(f->crop_left + f->crop_right);
  out.height = H - static_cast<int>(f->crop_top + f->crop_bottom);
  if (out.width <= 0 || out.height <= 0 || out.width > W || out.height > H) {
    out.crop_left = out.crop_top = 0;
    out.width = W;
    out.height = H;
  }
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(f->format));
  if (!d) throw Error(ErrorKind::Corrupt, name, "decoded frame has an unknown pixel format");
  const bool yuv_like = !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BE |
                                     AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_BITSTREAM)) &&
                        d->nb_components >= 1 && d->comp[0].plane == 0 && d->comp[0].shift == 0 &&
                        d->comp[0].offset == 0;
  out.coded.width = W;
  out.coded.height = H;
  if (yuv_like && d->comp[0].depth == 8 && d->comp[0].step == 1) {
    out.coded.data = f->data[0];
    out.coded.stride = f->linesize[0];
    return;
  }
  out.own.resize(static_cast<size_t>(W) * H + kSwsPadding);  // room for swscale's vector stores
  out.coded.data = out.own.data();
  out.coded.stride = W;
  if (yuv_like && d->comp[0].depth > 8 && d->comp[0].depth <= 16 && d->comp[0].step == 2) {
    const int shift = d->comp[0].depth - 8;
    for (int y = 0; y < H; ++y) {
      const auto* s = reinterpret_cast<const uint16_t*>(f->data[0] + static_cast<ptrdiff_t>(y) * f->linesize[0]);
      uint8_t* o = out.own.data() + static_cast<size_t>(y) * W;
      for (int x = 0; x < W; ++x) o[x] = static_cast<uint8_t>(std::min<int>(255, s[x] >> shift));
    }
    return;
  }
  sws.ctx = sws_getCachedContext(sws.ctx, W, H, static_cast<AVPixelFormat>(f->format), W, H, AV_PIX_FMT_GRAY8,
                                 SWS_BILINEAR, nullptr, nullptr, nullptr);
  if (!sws.ctx) throw Error(ErrorKind::UnsupportedCodec, name, "cannot convert the pixel format to luma");
  uint8_t* dst[4] = {out.own.data(), nullptr, nullptr, nullptr};
  int dst_ls[4] = {W, 0, 0, 0};
  sws_scale(sws.ctx, f->data, f->linesize, 0, H, dst, dst_ls);
}


// What a requested frame's products are computed from, all held by the job: the decoder may have moved on (or be
// gone) when a pool thread runs it. The output buffers are allocated by the decoding thread (their sizes count
// against the re-ordering buffer); run_products fills them.
struct ProductJob {
  std::shared_ptr<FrameOut> out;
  std::shared_ptr<const Luma8> cur;         // the picture (its frame reference holds the side data)
  std::shared_ptr<const Luma8> ref0, ref1;  // residual references (estimated motion: ref0 = the matched picture)
  std::vector<int32_t> rows;                // the vectors when out->mvs does not hold them
  char letter = '?';
  bool luma = false, rgb = false, need_field = false, coding_cost = false, residual = false, estimated = false;
  Interp interp = Interp::H264Qpel;
  std::shared_ptr<const std::function<void(FrameOut&)>> post;
  std::shared_ptr<const std::string> name;
};

// Pure function of the job (same result on any thread; scratch is per thread).
void run_products(const ProductJob& j) {
  thread_local MotionField field;
  thread_local ResidualScratch scratch;
  FrameOut& out = *j.out;
  const Luma8& cur = *j.cur;
  const int W = cur.width, H = cur.height;
  if (j.luma) {
    const Plane v = cur.visible();
    for (int y = 0; y < H; ++y) std::memcpy(out.luma.data() + static_cast<size_t>(y) * W, v.data + y * v.stride, W);
  }
  if (j.rgb) to_rgb(cur.frame.get(), out.rgb_w, out.rgb_h, out.rgb.data(), *j.name);
  const int32_t* rows = out.mvs.size() ? out.mvs.data() : j.rows.data();
  const int64_t n = static_cast<int64_t>((out.mvs.size() ? out.mvs.size() : j.rows.size()) / kMvCols);
  if (j.need_field) {
    const size_t cells = static_cast<size_t>((W + 3) / 4) * ((H + 3) / 4);
    uint8_t* mask = out.intra_mask.size() ? out.intra_mask.data() : nullptr;
    densify_motion(rows, n, W, H, field, out.mv_field.size() ? out.mv_field.data() : nullptr, mask,
                   out.mv_flags.size() ? out.mv_flags.data() : nullptr);
    if (mask && j.letter == 'I') std::memset(mask, 1, cells);
    if (j.coding_cost) coding_cost(field, j.letter == 'I', cur.frame.get(), out.coding_cost.data());
  }
  if (j.residual) {
    const size_t plane = static_cast<size_t>(W) * H;
    if (j.letter == 'I') {
      std::memset(out.residual.data(), 0, plane * sizeof(int16_t));
    } else if (j.estimated) {
      const Plane ref = j.ref0 ? j.ref0->visible() : Plane();
      compute_residual(cur.visible(), j.ref0 ? &ref : nullptr, nullptr, rows, n, field, Interp::Bilinear, scratch,
                       out.residual.data());
    } else {
      compute_residual(cur.visible(), j.ref0 ? &j.ref0->coded : nullptr, j.ref1 ? &j.ref1->coded : nullptr, rows, n,
                       field, j.interp, scratch, out.residual.data());
    }
  }
  if (j.post && *j.post) (*j.post)(out);
}

// A requested frame on its way out: `out` is complete once `task` is done (no task: already complete).
struct Pending {
  std::shared_ptr<FrameOut> out;
  ProductPool::TaskPtr task;
  size_t bytes = 0;  // out->bytes() when it was queued (what the re-ordering buffer counts)
};

// Whether products go to a pool: two threads or more, a request with per-frame work worth moving, and a plain
// source (push sources and streaming hooks decode on the consumer's schedule, one frame at a time).
bool pipelined(const Source& src, const ReaderOptions& opt, const FrameRequest& req) {
  const bool heavy = req.rgb || req.residual || req.coding_cost || static_cast<bool>(req.post) ||
                     (req.mvs && req.mvs_dense);
  return opt.num_threads >= 2 && heavy && !src.push && !req.on_open && !req.on_packet && !req.select;
}

// A read left the model a shortcut of it relies on: RereadGuard reads the frames not delivered yet again without
// that shortcut. Control flow, never seen by users.
struct RereadSignal : std::exception {};

// A decoded frame did not sit at its pts rank (a file the skip plan's model does not fit: frames dropped by the
// decoder, discarded leading pictures, fields in separate packets, ...). Caught by RereadGuard.
struct SkipPlanBroken : RereadSignal {
  const char* what() const noexcept override { return "skip plan does not fit this file"; }
};

// A decoder with FFmpeg frame threads met something outside the model that makes them exact (an error, a damaged
// frame, a re-ordering delay, a presentation time that does not increase): caught by RereadGuard, which reads
// the frames not yet delivered again without frame threads.
struct FrameThreadsUnsafe : RereadSignal {
  const char* what() const noexcept override { return "frame threads left their model on this file"; }
};

// A read without deblocking met damage (docs/decoding.md, "Reads without pixels"): error concealment guesses
// vectors from pixels, which deblocking changes. Caught by RereadGuard, like FrameThreadsUnsafe.
struct LoopFilterUnsafe : RereadSignal {
  const char* what() const noexcept override { return "a read without deblocking met damage"; }
};

// The counters of `s` added to `into` (a segment's, a fallback's or an earlier stream's statistics).
void add_counts(StreamStats& into, const StreamStats& s) {
  into.frames_decoded += s.frames_decoded;
  into.corrupt_packets += s.corrupt_packets;
  into.corrupt_frames += s.corrupt_frames;
  into.repeated_frames += s.repeated_frames;
  into.skipped_frames += s.skipped_frames;
  into.truncated = into.truncated || s.truncated;
  into.loop_filter_skipped = into.loop_filter_skipped || s.loop_filter_skipped;
}

// Decoder's bookkeeping of B-pictures that wait for their L1 reference (Decoder::next).
struct Slot {  // a requested frame in the decoder's output queue
  Pending p;
  bool ready = false;  // its products are launched
  int64_t order = -1;  // without deblocking: its decode order (held until every frame decoded before it is out)
};
struct Waiting {  // a frame's job that waits for the reference picture of pts `target`
  ProductJob job;
  int64_t index = 0, target = 0, waited = 0;
  std::shared_ptr<Slot> slot;
  ProductPool::TaskPtr early;  // its RGB, started without waiting (with a pool)
};
struct SentInfo {  // what was noted of a packet when it was fed
  int64_t order = -1;  // packets fed to this decoder before it; -1 unknown (no pts)
  int8_t reference = -1;
};

// ---------------------------------------------------------------------------------------------------------------
// One decoder that decodes a range of packets [begin, end) of the stream, pull-based: single-threaded, or with
// FFmpeg's frame threads where open_frames_impl allows them (then the whole stream, guarded).
class Decoder {
 public:
  Decoder(const Source& src, const ReaderOptions& opt, const FrameRequest& req)
      : opt_(opt), req_(req), dm_(src, opt.stream_index, opt.timeout_s), cls_(dm_.stream()),
        interp_(interp_for(dm_.stream()->codecpar->codec_id)), pkt_(make_packet()), frame_(make_frame()) {
    tb_ = av_q2d(dm_.stream()->time_base);
    // --- robustness: fallback timestamps (frames without any pts get start + index / fps) ---
    const AVStream* st = dm_.stream();
    const AVRational fr = st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0 ? st->avg_frame_rate
                                                                                    : st->r_frame_rate;
    const double fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0.0;
    frame_dur_s_ = fps > 0.1 && fps < 1000.0 ? 1.0 / fps : 1.0 / 25.0;
    start_s_ = st->start_time != AV_NOPTS_VALUE ? st->start_time * tb_ : 0.0;
    if (!std::isfinite(start_s_)) start_s_ = 0.0;
    // --- end robustness ---
    if (req_.on_open) req_.on_open(dm_, req_);  // streaming: the request may depend on the opened stream
    estimate_ = codec_needs_estimate(dm_.stream()->codecpar->codec_id) && (req.mvs || req.residual || req.coding_cost);
    if (req_.post) post_ = std::make_shared<const std::function<void(FrameOut&)>>(req_.post);
    plan_ = req_.skip_plan;  // only for requests that may skip (open_frames_impl)
    name_ = std::make_shared<const std::string>(dm_.source().name);
    ft_ = opt_.frame_threads > 1 ? opt_.frame_threads : 0;  // only where open_frames_impl allows them
    stats_.frame_threads = ft_;
    // Only where open_frames_impl allows it (a read of every frame without pixels), and only H.264 deblocks in loop
    // among the codecs whose decoders export vectors (MPEG-1/2/4 part 2 do not).
    nolf_ = opt_.skip_loop_filter && dm_.stream()->codecpar->codec_id == AV_CODEC_ID_H264;
    stats_.loop_filter_skipped = nolf_;
  }

  // Products of requested frames become tasks of `pool` (null: computed on the decoding thread).
  void set_pool(ProductPool* pool) { pool_ = pool; }

  const std::string& name() const { return dm_.source().name; }
  const AVCodecParameters& codecpar() const { return *dm_.stream()->codecpar; }
  StreamStats& stats() { return stats_; }
  bool demux_ended() const { return demux_eof_; }

  void start_segment(int64_t begin, int64_t end, int64_t first_index) {
    begin_ = begin;
    end_ = end;
    first_index_ = first_index;
    ordinal_ = 0;
    draining_ = false;
    segment_done_ = false;
    restart_pending_ = false;
    in_flight_.clear();  // a frame the previous segment lost cannot affect this one (a fresh decoder)
    in_flight_orders_.clear();
    reset_gop_state();
    last_is_good_ = false;
    last_good_.reset();  // on_error=repeat: each segment starts without a frame to repeat (same for any threads)
    owed_ = 0;
    packets_sent_ = 0;
    queue_.clear();
    waiting_.clear();
    made_waiting_ = nullptr;
    last_done_ = false;
    held_error_ = nullptr;
    // Skip packets before `begin` (demux only).
    if (held_ && held_index_ < begin) held_ = false;
    while (!held_ && next_pkt_index_ < begin) {
      if (!read_packet()) break;
      if (held_index_ < begin) held_ = false;
    }
    open_codec();
  }

  // Output frames of the segment so far, counting skipped ones; after the segment ended, its trailing skipped
  // frames too (one frame per packet, as segments assume).
  int64_t frames_out() const {
    if (!plan_ || !segment_done_) return ordinal_;
    const int64_t lo = first_index_ + ordinal_;
    const int64_t hi = end_ >= 0 ? first_index_ + (end_ - begin_) : INT64_MAX;
    const auto& sk = plan_->skipped;
    return ordinal_ + (std::lower_bound(sk.begin(), sk.end(), hi) - std::lower_bound(sk.begin(), sk.end(), lo));
  }

  // The next requested frame of the segment; false when the segment (or the request) is finished.
  //
  // Requested frames are queued in presentation order. A B-frame whose L1 reference (the nearest later reference
  // picture decoded before it) has not come out of the decoder yet waits in the queue, unlaunched, while decoding
  // goes on until that reference is output (at most the decoder's re-ordering delay): its residual is then computed
  // with both references. A typed error met while looking ahead is raised after the frames before it are out.
  bool next(Pending& out) {
    for (;;) {
      if (!queue_.empty() && queue_.front()->ready && (!nolf_ || released(queue_.front()->order))) {
        out = std::move(queue_.front()->p);
        queue_.pop_front();
        return true;
      }
      if (held_error_) {
        std::exception_ptr e = held_error_;
        held_error_ = nullptr;
        std::rethrow_exception(e);
      }
      Pending p;
      bool got = false;
      try {
        got = next_one(p);
      } catch (const RereadSignal&) {
        throw;  // control flow of RereadGuard: it reads every frame not delivered again
      } catch (...) {
        if (queue_.empty()) throw;
        if (nolf_) throw LoopFilterUnsafe();  // frames held back: read them again with deblocking, error included
        release_waiting();
        held_error_ = std::current_exception();
        continue;
      }
      if (!got) {
        if (queue_.empty()) return false;
        release_waiting();  // the segment ended before a reference came out
        if (nolf_) all_out();  // drained
        continue;
      }
      if (nolf_) {  // held until the frames decoded before it are out (and were checked)
        // More than any H.264 re-ordering delay (16 frames): a packet fed long ago has not come out (damage, or a
        // packet without a picture): read on with deblocking rather than hold every frame until the GOP ends.
        if (queue_.size() >= 48) throw LoopFilterUnsafe();
        auto slot = std::make_shared<Slot>();
        slot->p = std::move(p);
        slot->ready = true;
        slot->order = out_order_;
        queue_.push_back(std::move(slot));
        continue;
      }
      if (made_waiting_) {  // its job waits for a reference; the slot is the one the job will fill
        queue_.push_back(std::move(made_waiting_));
        made_waiting_ = nullptr;
      } else if (queue_.empty()) {  // nothing before it waits (every frame of a stream without B-pictures)
        out = std::move(p);
        return true;
      } else {
        auto slot = std::make_shared<Slot>();
        slot->p = std::move(p);
        slot->ready = true;
        queue_.push_back(std::move(slot));
      }
    }
  }

 private:
  // One requested frame of the segment (its products launched, or waiting: made_waiting_); false at the end.
  bool next_one(Pending& out) {
    for (;;) {
      if (segment_done_) return false;
      if (last_done_ && waiting_.empty()) {  // the request ended; the frames waiting for a reference are out
        segment_done_ = true;
        return false;
      }
      // --- on_error=repeat: a packet that failed to decode becomes a copy of the last good frame ---
      const bool repeat = opt_.on_error == OnError::Repeat;
      bool repeated = false;
      if (repeat && owed_ > 0 && last_good_) {
        --owed_;
        become_repeat(AV_NOPTS_VALUE);
        repeated = true;
      } else if (!pull_frame()) {
        // Frames the decoder dropped without an error (fewer frames than packets fed) are owed too.
        if (repeat && last_good_ && packets_sent_ > ordinal_) {
          owed_ = packets_sent_ - ordinal_;
          continue;
        }
        segment_done_ = true;
        return false;
      }
      if (ft_) check_frame_threads();
      if (nolf_) check_loop_filter_skip();
      if (plan_) {  // skipped frames keep their indices (pts ranks); every decoded frame must sit at its rank
        while (std::binary_search(plan_->skipped.begin(), plan_->skipped.end(), first_index_ + ordinal_)) ++ordinal_;
        const int64_t k = first_index_ + ordinal_;
        if (k >= static_cast<int64_t>(plan_->pts_by_rank.size()) || frame_pts() != plan_->pts_by_rank[static_cast<size_t>(k)])
          throw SkipPlanBroken();
      }
      const int64_t index = first_index_ + ordinal_++;
      if (repeated) ++stats_.repeated_frames;
      else ++stats_.frames_decoded;
      if (!repeated && frame_is_corrupt(frame_.get())) {
        ++stats_.corrupt_frames;
        if (opt_.on_error == OnError::Raise)
          throw Error(ErrorKind::Corrupt, name(), "frame " + std::to_string(index) + " is damaged");
        if (repeat && last_good_ && last_is_good_) {
          become_repeat(frame_pts());
          ++stats_.repeated_frames;
        } else if (repeat) {
          keep_for_repeat(false);  // no good frame yet: a damaged one is the best stand-in for lost packets
        }
      } else if (repeat && !repeated) {
        keep_for_repeat(true);
      }
      // --- end on_error=repeat ---

      bool wanted;
      if (req_.select) {  // streaming: a per-frame decision from the frame's time (as produce() computes it)
        const int64_t p = frame_pts();
        double t = p == AV_NOPTS_VALUE ? start_s_ + static_cast<double>(index) * frame_dur_s_ : p * tb_;
        if (!std::isfinite(t)) t = start_s_ + static_cast<double>(index) * frame_dur_s_;
        wanted = req_.select(index, t);
      } else {
        wanted = req_.wants(index);
      }
      const bool done_after = index >= req_.last();
      if (!waiting_.empty()) pass_waiting(frame_pts());
      if (wanted) produce(index, out);
      else if (estimate_) remember_previous();
      else if (req_.residual) remember_reference();
      av_frame_unref(frame_.get());
      if (done_after) {
        if (waiting_.empty()) segment_done_ = true;
        else last_done_ = true;  // decode on (frames no one asked for) until the waiting ones have their reference
      }
      if (wanted) return true;
    }
  }

  bool read_packet() {
    if (demux_eof_) return false;
    for (;;) {
      if (!dm_.read(pkt_.get())) {
        demux_eof_ = true;
        if (dm_.timed_out()) throw Error(ErrorKind::Timeout, name(), "decoding timed out");
        if (dm_.truncated()) stats_.truncated = true;
        return false;
      }
      if (pkt_->size <= 0) continue;
      if (pkt_->flags & AV_PKT_FLAG_CORRUPT) {
        leave_guarded_modes();
        ++stats_.corrupt_packets;
      }
      if (req_.on_packet) req_.on_packet(pkt_.get());
      held_ = true;
      held_index_ = next_pkt_index_++;
      return true;
    }
  }

  // A picture buffer that starts zeroed, not only when FFmpeg's pool allocates it fresh. A damaged stream can make
  // the decoder predict from pixels it never wrote (H.264 concealing a frame_num gap after recovery with no
  // picture to copy leaves the gap picture's buffer as it was; H.261 skipping into a picture it never had), and
  // what a reused buffer held depends on when the reader released its earlier frames: product tasks on other
  // threads, FFmpeg's frame threads, or simply which products a read asked for. Zeroed, the pixels (and the
  // vectors error concealment guesses from them, and estimated vectors) depend on the bitstream alone, in every
  // read (docs/decoding.md "Picture buffers").
  static int get_zeroed_buffer(AVCodecContext* c, AVFrame* f, int flags) {
    const int ret = avcodec_default_get_buffer2(c, f, flags);
    if (ret < 0) return ret;
    for (int i = 0; i < AV_NUM_DATA_POINTERS && f->buf[i]; ++i) std::memset(f->buf[i]->data, 0, f->buf[i]->size);
    return ret;
  }

  void open_codec() {
    const AVStream* st = dm_.stream();
    ctx_.reset(avcodec_alloc_context3(dm_.decoder()));
    if (!ctx_ || avcodec_parameters_to_context(ctx_.get(), st->codecpar) < 0)
      throw Error(ErrorKind::UnsupportedCodec, name(), "cannot configure the decoder");
    ctx_->pkt_timebase = st->time_base;
    // FFmpeg's frame threads only where open_frames_impl allows them (H.264 without re-ordering, guarded);
    // never slice threads (docs/decoding.md).
    ctx_->thread_count = ft_ ? ft_ : 1;
    ctx_->thread_type = ft_ ? FF_THREAD_FRAME : 0;
    ctx_->apply_cropping = 0;
    ctx_->max_pixels = int64_t(1) << 26;  // robustness: same cap as the Demuxer's, for sizes changed mid-stream
    if (req_.mvs || req_.residual || req_.coding_cost) ctx_->export_side_data |= AV_CODEC_EXPORT_DATA_MVS;
    if (req_.coding_cost) ctx_->export_side_data |= AV_CODEC_EXPORT_DATA_VIDEO_ENC_PARAMS;
    if (nolf_) ctx_->skip_loop_filter = AVDISCARD_ALL;  // pixels no one reads; vectors do not depend on them
    ctx_->get_buffer2 = get_zeroed_buffer;
#if defined(FF_API_THREAD_SAFE_CALLBACKS) && FF_API_THREAD_SAFE_CALLBACKS
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    ctx_->thread_safe_callbacks = 1;  // FFmpeg 4.x: frame threads may call it from their own threads
#pragma GCC diagnostic pop
#endif
    sent_in_codec_ = 0;
    int ret = avcodec_open2(ctx_.get(), dm_.decoder(), nullptr);
    if (ret < 0 && ft_) {
      // FFmpeg could not start its frame threads (the system refused a thread): one thread decodes the same frames.
      ft_ = 0;
      stats_.frame_threads = 0;
      open_codec();
      return;
    }
    if (ret < 0)
      throw Error(ErrorKind::UnsupportedCodec, name(),
                  std::string("cannot open the ") + dm_.decoder()->name + " decoder (" + av_error_string(ret) + ")");
    raw_min_packet_ = raw_min_packet(ctx_.get());
  }

  // FFmpeg's raw decoder unpacks 1/2/4/8-bit palette and mono pictures (AVI, MOV) into a buffer it allocates itself
  // (not through get_buffer2, so not zeroed) and writes only as many pixels as the packet holds: a short packet
  // leaves the rest of the picture uninitialised (a fuzzed 8-bit AVI read differently on every run). Packets of
  // such a stream shorter than whole rows (bits_per_coded_sample * width, rounded up to bytes, times height) are
  // padded with zeros to whole 4-byte-aligned rows, so pixels no packet carried read as zero, as in every other
  // decoder (get_zeroed_buffer). 0: the stream takes no padding.
  static int64_t raw_min_packet(const AVCodecContext* c) {
    const int bpp = c->bits_per_coded_sample;
    const bool unpacked = c->pix_fmt == AV_PIX_FMT_PAL8 || c->pix_fmt == AV_PIX_FMT_MONOWHITE ||
                          c->pix_fmt == AV_PIX_FMT_MONOBLACK;
    if (c->codec_id != AV_CODEC_ID_RAWVIDEO || !unpacked || !(bpp == 1 || bpp == 2 || bpp == 4 || bpp == 8) ||
        !(c->codec_tag == 0 || c->codec_tag == MKTAG('r', 'a', 'w', ' ')) || c->width <= 0 || c->height <= 0)
      return 0;
    return (static_cast<int64_t>(c->width) * bpp + 7) / 8 * c->height;
  }

  // Pads a packet of such a stream (raw_min_packet_) that is too short; false when it cannot (out of memory).
  bool pad_raw_packet(AVPacket* pkt) const {
    if (raw_min_packet_ <= 0 || pkt->size <= 0 || pkt->size >= raw_min_packet_) return true;
    const int64_t row = (static_cast<int64_t>(ctx_->width) * ctx_->bits_per_coded_sample + 31) / 32 * 4;
    const int64_t want = row * ctx_->height;
    if (want > INT32_MAX / 2) return false;
    const int old = pkt->size;
    if (av_packet_make_writable(pkt) < 0 || av_grow_packet(pkt, static_cast<int>(want) - old) < 0) return false;
    std::memset(pkt->data + old, 0, static_cast<size_t>(want - old));
    return true;
  }

  // Decodes until one frame is available in frame_; false at the end of the segment.
  bool pull_frame() {
    for (;;) {
      int ret = avcodec_receive_frame(ctx_.get(), frame_.get());
      if (ret >= 0) return true;
      if (ret == AVERROR_EOF) {
        if (restart_pending_) {  // the previous closed GOP is out: the next one starts from a fresh decoder
          restart_codec();
          continue;
        }
        return false;
      }
      if (ret != AVERROR(EAGAIN)) {
        leave_guarded_modes();
        ++stats_.corrupt_packets;
        if (opt_.on_error == OnError::Raise)
          throw Error(ErrorKind::Corrupt, name(), "decoding failed (" + av_error_string(ret) + ")");
        if (opt_.on_error == OnError::Repeat) ++owed_;
        if (draining_ && restart_pending_) {
          restart_codec();
          continue;
        }
        if (draining_) return false;
        continue;
      }
      if (draining_ && restart_pending_) {  // EAGAIN while draining should not happen
        restart_codec();
        continue;
      }
      if (draining_) return false;  // EAGAIN while draining should not happen; end the segment
      if (dm_.timed_out()) throw Error(ErrorKind::Timeout, name(), "decoding timed out");
      // Feed one packet of the segment, or start draining.
      if (!held_ && !read_packet()) {
        start_drain();
        continue;
      }
      if (end_ >= 0 && held_index_ >= end_) {  // belongs to a later segment: keep it
        start_drain();
        continue;
      }
      int8_t reference;
      uint8_t safe;
      cls_.classify(pkt_.get(), &reference, &safe);
      // Every closed GOP is decoded from a freshly opened decoder, whichever decoder and segment it falls in: the
      // previous GOP is drained first. Undamaged streams decode the same either way; a damaged GOP start is then
      // concealed from nothing rather than from the previous GOP, so outputs never depend on num_threads.
      if (plan_ && held_index_ >= 0 && static_cast<size_t>(held_index_) < plan_->skip_packet.size() &&
          plan_->skip_packet[static_cast<size_t>(held_index_)]) {  // a frame no one needs: never decoded
        held_ = false;
        ++stats_.skipped_frames;
        continue;
      }
      if (safe && sent_in_codec_ > 0) {
        restart_pending_ = true;
        start_drain();
        continue;  // the packet stays held
      }
      held_ = false;
      if (estimate_) note_epoch(safe);
      if (req_.residual && pkt_->pts != AV_NOPTS_VALUE) sent_by_pts_[pkt_->pts] = SentInfo{packets_sent_, reference};
      if (nolf_ && pkt_->pts != AV_NOPTS_VALUE) note_in_flight(pkt_->pts);
      ret = pad_raw_packet(pkt_.get()) ? avcodec_send_packet(ctx_.get(), pkt_.get()) : AVERROR(ENOMEM);
      ++packets_sent_;
      ++sent_in_codec_;
      if (ret < 0 && ret != AVERROR(EAGAIN)) {
        leave_guarded_modes();
        ++stats_.corrupt_packets;
        if (opt_.on_error == OnError::Repeat) ++owed_;
        if (opt_.on_error == OnError::Raise)
          throw Error(ErrorKind::Corrupt, name(),
                      "packet " + std::to_string(held_index_) + " is damaged (" + av_error_string(ret) + ")");
      }
    }
  }

  // With frame threads, a frame is used only while the stream stays inside the model that makes them exact: FFmpeg
  // outputs each picture from the thread that decoded it (no re-ordering delay, so its exported vectors are
  // complete) and nothing was concealed. Otherwise FrameThreadsUnsafe, before the frame is used.
  void check_frame_threads() {
    const int64_t p = frame_pts();
    if (frame_is_corrupt(frame_.get()) || ctx_->has_b_frames > 0 || p == AV_NOPTS_VALUE ||
        (ft_has_last_ && p <= ft_last_pts_))
      throw FrameThreadsUnsafe();
    ft_last_pts_ = p;
    ft_has_last_ = true;
  }

  // Damage (a flagged or rejected packet, a decoding error): frame threads and decoding without deblocking are exact
  // only on undamaged input, so the read stops for RereadGuard before the damage is counted or acted on.
  void leave_guarded_modes() const {
    if (ft_) throw FrameThreadsUnsafe();
    if (nolf_) throw LoopFilterUnsafe();
  }

  // Without deblocking (nolf_), exported vectors equal a normal read's as long as error concealment never ran: it
  // guesses vectors from pixels, and B-pictures take co-located vectors from their references. So any damage
  // stops the read (LoopFilterUnsafe: RereadGuard reads the frames not delivered yet again, with deblocking), and a
  // frame is delivered only once every frame decoded before it has come out of the decoder unflagged (next()).
  void check_loop_filter_skip() {
    auto it = in_flight_.find(frame_pts());
    if (frame_is_corrupt(frame_.get()) || it == in_flight_.end()) throw LoopFilterUnsafe();
    out_order_ = it->second;
    in_flight_orders_.erase(it->second);
    in_flight_.erase(it);
  }
  void note_in_flight(int64_t pts) {
    if (!in_flight_.emplace(pts, packets_sent_).second) throw LoopFilterUnsafe();  // two packets, one pts
    in_flight_orders_.insert(packets_sent_);
  }
  // The decoder was drained: every frame fed is out (else one was lost: damage), so the frames decoded before the
  // queued ones are too.
  void all_out() {
    if (!in_flight_.empty()) throw LoopFilterUnsafe();
    for (auto& slot : queue_) slot->order = -1;
  }
  bool released(int64_t order) const {
    return order < 0 || in_flight_orders_.empty() || *in_flight_orders_.begin() > order;
  }

  // on_error=repeat: frame_ becomes the last good picture (no motion side data, a P picture, no key flag) with
  // the given pts (AV_NOPTS_VALUE: the index-based fallback time).
  void become_repeat(int64_t pts) {
    av_frame_unref(frame_.get());
    if (av_frame_ref(frame_.get(), last_good_.get()) < 0)
      throw Error(ErrorKind::Corrupt, name(), "out of memory while repeating a frame");
    av_frame_remove_side_data(frame_.get(), AV_FRAME_DATA_MOTION_VECTORS);
    av_frame_remove_side_data(frame_.get(), AV_FRAME_DATA_VIDEO_ENC_PARAMS);
    frame_->pts = pts;
    frame_->best_effort_timestamp = pts;
    frame_->pict_type = AV_PICTURE_TYPE_P;
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(58, 7, 100)
    frame_->flags &= ~AV_FRAME_FLAG_KEY;
#else
    frame_->key_frame = 0;
#endif
  }

  void keep_for_repeat(bool good) {
    last_is_good_ = good;
    if (!last_good_) last_good_.reset(av_frame_alloc());
    if (!last_good_) return;
    av_frame_unref(last_good_.get());
    if (av_frame_ref(last_good_.get(), frame_.get()) < 0) last_good_.reset();
  }

  void start_drain() {
    draining_ = true;
    avcodec_send_packet(ctx_.get(), nullptr);
  }

  // State that belongs to one closed GOP (references for the residual, estimated-motion history).
  void reset_gop_state() {
    release_waiting();  // a closed GOP's references are all out by now
    if (nolf_) all_out();  // drained before a closed GOP starts
    refs_.clear();
    sent_by_pts_.clear();
    est_has_prev_ = false;
    est_prev_.reset();
    epoch_by_pts_.clear();
  }

  // After the drain at a closed-GOP start: a fresh decoder (as a parallel segment's) and fresh GOP state.
  void restart_codec() {
    restart_pending_ = false;
    draining_ = false;
    reset_gop_state();
    open_codec();
  }

  int64_t frame_pts() const {
    return frame_->pts != AV_NOPTS_VALUE ? frame_->pts : frame_->best_effort_timestamp;
  }

  // What was noted of the output frame's packet when it was fed (then forgotten). Whether the picture is a
  // reference: the NAL header where the classifier knows it, otherwise every picture but B.
  SentInfo take_sent_info(char letter) {
    SentInfo s;
    auto it = sent_by_pts_.find(frame_pts());
    if (it != sent_by_pts_.end()) {
      s = it->second;
      sent_by_pts_.erase(it);
    }
    if (s.reference < 0) s.reference = letter != 'B';
    return s;
  }

  void remember_reference() {
    const char letter = picture_letter(frame_->pict_type);
    const SentInfo info = take_sent_info(letter);
    if (!info.reference) return;
    auto l = std::make_shared<Luma8>();
    make_luma8(frame_.get(), *l, sws_, name());
    l->pts = frame_pts();
    l->order = info.order;
    push_reference(std::move(l));
  }

  void push_reference(std::shared_ptr<const Luma8> l) {
    resolve_waiting(l);
    refs_.push_back(std::move(l));
    if (refs_.size() > 4) refs_.pop_front();
  }

  // The sequential part of a requested frame (its picture, vectors and references, in decoding order) and the
  // job that computes the rest: run here, or queued to the pool.
  void produce(int64_t index, Pending& p) {
    const AVFrame* f = frame_.get();
    const char letter = picture_letter(f->pict_type);
    const int64_t pts = frame_pts();
    auto out = std::make_shared<FrameOut>();
    out->index = index;
    out->pts_s = pts == AV_NOPTS_VALUE ? start_s_ + static_cast<double>(index) * frame_dur_s_ : pts * tb_;
    if (!std::isfinite(out->pts_s)) out->pts_s = start_s_ + static_cast<double>(index) * frame_dur_s_;
    out->pict_type = letter;
    out->keyframe = frame_is_key(f);
    auto cur = std::make_shared<Luma8>();
    make_luma8(f, *cur, sws_, name());
    cur->pts = pts;
    out->width = cur->width;
    out->height = cur->height;
    const int W = cur->width, H = cur->height;
    ProductJob j;
    j.out = out;
    j.letter = letter;
    j.interp = interp_;
    j.post = post_;
    j.name = name_;
    j.estimated = estimate_;
    j.luma = req_.luma;
    if (req_.luma) out->luma.allocate(static_cast<size_t>(W) * H);
    j.rgb = req_.rgb;
    if (req_.rgb) {
      out->rgb_w = req_.rgb_width > 0 ? req_.rgb_width : W;
      out->rgb_h = req_.rgb_height > 0 ? req_.rgb_height : H;
      // swscale's SIMD writers may store up to a vector past the last row: pad the allocation.
      out->rgb.allocate(static_cast<size_t>(out->rgb_w) * out->rgb_h * 3 + kRgbPadding);
    }
    // The dense field is output only when asked for (mvs_dense); otherwise Python makes it from the rows on access.
    // The residual and coding cost need only the cell masks of the field.
    const bool dense_out = req_.mvs && req_.mvs_dense;
    j.need_field = dense_out || req_.residual || req_.coding_cost;
    j.coding_cost = req_.coding_cost;
    const int64_t est_epoch = estimate_ ? frame_epoch() : 0;
    std::shared_ptr<const Luma8> est_ref;
    if (j.need_field || req_.mvs) {
      if (estimate_) est_ref = estimate_rows(letter, out->keyframe, *cur, est_epoch);
      else export_motion_rows(f, rows_);
      if (req_.mvs) {
        int32_t* dst = out->mvs.allocate(rows_.size());
        if (!rows_.empty()) std::memcpy(dst, rows_.data(), rows_.size() * sizeof(int32_t));  // UBSan: no null src
      } else {
        j.rows = rows_;
      }
      const size_t cells = static_cast<size_t>((W + 3) / 4) * ((H + 3) / 4);
      if (dense_out) {
        out->mv_field.allocate(cells * 4);
        out->intra_mask.allocate(cells);
        out->mv_flags.allocate(cells);
      }
      if (req_.coding_cost) out->coding_cost.allocate(cells);
    }
    j.residual = req_.residual;
    int64_t wait_for = AV_NOPTS_VALUE;  // the pts of the L1 reference this frame waits for
    std::shared_ptr<const Luma8> self;  // this picture, when it is a reference itself (pushed after launching)
    if (req_.residual) {
      out->residual.allocate(static_cast<size_t>(W) * H);
      const SentInfo me = take_sent_info(letter);
      cur->order = me.order;
      if (letter != 'I') {
        if (estimate_) {
          j.ref0 = est_ref;
        } else {
          // L0: the nearest reference before it in presentation order, L1: the nearest after it -- among the
          // references decoded before it (a reference B-picture shown before a P-picture is decoded after it).
          for (const auto& r : refs_) {
            if (me.order >= 0 && r->order >= 0 && r->order > me.order) continue;
            if (r->pts < pts && (!j.ref0 || r->pts > j.ref0->pts)) j.ref0 = r;
            if (r->pts > pts && (!j.ref1 || r->pts < j.ref1->pts)) j.ref1 = r;
          }
          const std::vector<int32_t>& rr = req_.mvs ? rows_ : j.rows;
          bool any_l1 = false;
          for (size_t i = 0; i < rr.size() && !any_l1; i += kMvCols) any_l1 = rr[i] > 0;
          if (any_l1 && me.order >= 0) wait_for = future_reference(pts, me.order, j.ref1 ? j.ref1->pts : INT64_MAX);
        }
      }
      if (me.reference && !estimate_) self = cur;
    }
    if (estimate_) keep_previous(cur, est_epoch);
    j.cur = std::move(cur);
    p.out = out;
    p.bytes = req_.post && req_.post_drops_products ? out->luma.size() + out->rgb.size() : out->bytes();
    if (wait_for != AV_NOPTS_VALUE) {
      Waiting w;
      if (pool_ && j.rgb) {  // the RGB needs no reference: computed meanwhile, by its own task
        ProductJob rgb;
        rgb.out = j.out;
        rgb.cur = j.cur;
        rgb.name = j.name;
        rgb.rgb = true;
        w.early = pool_->submit(index, [job = std::move(rgb)] { run_products(job); });
        j.rgb = false;
      }
      w.job = std::move(j);
      w.index = index;
      w.target = wait_for;
      w.slot = std::make_shared<Slot>();
      w.slot->p = p;
      made_waiting_ = w.slot;  // next() queues it
      waiting_.push_back(std::move(w));
    } else {
      launch(index, std::move(j), p);
    }
    if (self) push_reference(std::move(self));
  }

  // Runs the job here (no pool) or queues it to the pool; p.task says which.
  void launch(int64_t index, ProductJob&& j, Pending& p) {
    if (pool_) {
      p.task = pool_->submit(index, [job = std::move(j)] { run_products(job); });
    } else {
      p.task = nullptr;
      run_products(j);
    }
  }

  // --- L1 references that come out of the decoder after the B-picture that uses them ---------------------------
  // The pts of the nearest reference after `pts` (and before `bound`) that was fed before the picture of decode
  // order `order` and has not come out yet; AV_NOPTS_VALUE when there is none. Where the packet header does not
  // say (MPEG-1/2/4 part 2, whose B-pictures are never references), a picture fed before a B-picture and shown
  // after it is its next I/P-picture.
  int64_t future_reference(int64_t pts, int64_t order, int64_t bound) const {
    int64_t best = AV_NOPTS_VALUE;
    for (auto it = sent_by_pts_.upper_bound(pts); it != sent_by_pts_.end() && it->first < bound; ++it)
      if (it->second.reference != 0 && it->second.order < order) {  // unknown (MPEG-1/2/4): I/P by their order
        best = it->first;
        break;  // ascending pts: the first match is the nearest
      }
    return best;
  }

  // Launches the waiting jobs whose reference is `ref`, with it.
  void resolve_waiting(const std::shared_ptr<const Luma8>& ref) {
    for (size_t i = 0; i < waiting_.size();) {
      if (waiting_[i].target != ref->pts) {
        ++i;
        continue;
      }
      waiting_[i].job.ref1 = ref;
      start_waiting(i);
    }
  }

  // Launches every waiting job with what it has (end of the segment or GOP, an error).
  void release_waiting() {
    while (!waiting_.empty()) start_waiting(0);
  }

  // A frame with pts `pts` came out: jobs whose reference should have come out before it (a lost or damaged
  // picture) or that waited longer than any decoder delays a picture go on without it.
  void pass_waiting(int64_t pts) {
    for (size_t i = 0; i < waiting_.size();) {
      if ((pts != AV_NOPTS_VALUE && pts > waiting_[i].target) || ++waiting_[i].waited > kMaxWait) start_waiting(i);
      else ++i;
    }
  }

  // Launches waiting_[i] (taken out first: a job whose products throw is not launched twice).
  void start_waiting(size_t i) {
    Waiting w = std::move(waiting_[i]);
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    if (w.early) {  // the frame is complete once its RGB task is done too (and fails if that failed)
      w.slot->p.task = pool_->submit(w.index, [job = std::move(w.job), early = w.early, pool = pool_] {
        pool->wait(early);
        run_products(job);
      });
    } else {
      launch(w.index, std::move(w.job), w.slot->p);
    }
    w.slot->ready = true;
  }
  static constexpr int64_t kMaxWait = 32;  // frames; H.264 delays a picture by at most 16

  std::deque<std::shared_ptr<Slot>> queue_;  // requested frames made, not yet returned, presentation order
  std::vector<Waiting> waiting_;             // their jobs that wait for an L1 reference (decode order)
  std::shared_ptr<Slot> made_waiting_;       // the slot of the waiting frame next_one just made
  bool last_done_ = false;                   // the request's last frame is made; decoding on for waiting ones
  std::exception_ptr held_error_;            // raised once the frames before it are out
  // --- end of L1 references ------------------------------------------------------------------------------------

  // --- Estimated motion (codecs without exported vectors; DESIGN §4.5, codec/motion_estimate.h) -------------
  // A P/B frame is matched against the previous output frame (presentation order) of the same epoch, an epoch
  // being the packets from one safe-start (closed-GOP) packet to the next in decode order, so that parallel
  // segment decoding gives the same vectors as one decoder. Frames without a pts take the current epoch.
  void note_epoch(uint8_t safe) {
    if (safe) ++epoch_;
    if (pkt_->pts != AV_NOPTS_VALUE) epoch_by_pts_[pkt_->pts] = epoch_;
  }

  int64_t frame_epoch() {
    auto it = epoch_by_pts_.find(frame_pts());
    if (it == epoch_by_pts_.end()) return epoch_;
    const int64_t e = it->second;
    epoch_by_pts_.erase(it);
    return e;
  }

  void remember_previous() {
    const int64_t e = frame_epoch();
    auto l = std::make_shared<Luma8>();
    make_luma8(frame_.get(), *l, sws_, name());
    l->pts = frame_pts();
    keep_previous(std::move(l), e);
  }

  void keep_previous(std::shared_ptr<const Luma8> l, int64_t epoch) {
    est_prev_ = std::move(l);
    est_prev_epoch_ = epoch;
    est_prev_tag_ = static_cast<uint64_t>(stats_.frames_decoded);  // unique per decoded frame, >= 1
    est_has_prev_ = true;
  }

  // Fills rows_ with the estimated vectors of `cur` (none for I / key frames); returns the reference picture
  // (the previous frame of the same epoch and size), or null when there is none.
  std::shared_ptr<const Luma8> estimate_rows(char letter, bool key, const Luma8& cur, int64_t epoch) {
    rows_.clear();
    if (!est_has_prev_ || !est_prev_ || est_prev_epoch_ != epoch || est_prev_->width != cur.width ||
        est_prev_->height != cur.height)
      return nullptr;
    if (letter != 'I' && !key)
      est_.estimate(cur.visible(), static_cast<uint64_t>(stats_.frames_decoded), est_prev_->visible(), est_prev_tag_,
                    rows_);
    return est_prev_;
  }

  bool estimate_ = false, est_has_prev_ = false;
  int64_t epoch_ = 0, est_prev_epoch_ = 0;
  uint64_t est_prev_tag_ = 0;
  std::shared_ptr<const Luma8> est_prev_;
  std::map<int64_t, int64_t> epoch_by_pts_;
  MotionEstimator est_;
  // --- end of estimated motion ---------------------------------------------------------------------------------

  ReaderOptions opt_;
  FrameRequest req_;
  Demuxer dm_;
  PacketClassifier cls_;
  Interp interp_;
  CodecContextPtr ctx_;
  PacketPtr pkt_;
  FramePtr frame_;
  SwsHolder sws_;
  ProductPool* pool_ = nullptr;
  std::shared_ptr<const std::function<void(FrameOut&)>> post_;
  std::shared_ptr<const std::string> name_;
  double tb_ = 0.0, frame_dur_s_ = 0.04, start_s_ = 0.0;
  FramePtr last_good_;                         // on_error=repeat: the last frame that decoded cleanly
  int64_t owed_ = 0, packets_sent_ = 0;        // on_error=repeat: frames owed for failed packets; packets fed
  bool last_is_good_ = false;                  // on_error=repeat: last_good_ decoded cleanly (else a stand-in)
  bool held_ = false, demux_eof_ = false, draining_ = false, segment_done_ = false;
  bool restart_pending_ = false;  // draining before a closed GOP that gets a fresh decoder
  int64_t sent_in_codec_ = 0;     // packets fed to the current decoder since it was opened
  int64_t held_index_ = -1, next_pkt_index_ = 0, begin_ = 0, end_ = -1, first_index_ = 0, ordinal_ = 0;
  std::shared_ptr<const SkipPlan> plan_;
  int ft_ = 0;  // FFmpeg frame threads (0: one thread), see check_frame_threads
  bool nolf_ = false;  // decoding without deblocking, see check_loop_filter_skip
  int64_t raw_min_packet_ = 0;  // raw 1/2/4/8-bit pictures: shorter packets are padded (pad_raw_packet)
  std::map<int64_t, int64_t> in_flight_;  // without deblocking: packets fed whose frame is not out, pts -> order
  std::set<int64_t> in_flight_orders_;    // their decode orders
  int64_t out_order_ = -1;                // the decode order of the frame just pulled
  int64_t ft_last_pts_ = 0;
  bool ft_has_last_ = false;
  std::deque<std::shared_ptr<const Luma8>> refs_;
  std::map<int64_t, SentInfo> sent_by_pts_;  // packets fed and not output yet, by pts (residual requests)
  std::vector<int32_t> rows_;
  StreamStats stats_;
};

size_t frame_out_bytes(const FrameRequest& req, int W, int H);  // below

// Frames a sequential stream's consumer decodes ahead beyond one per thread hold at most about this many bytes.
constexpr size_t kAheadBytes = size_t{6} << 20;

// ---------------------------------------------------------------------------------------------------------------
// One decoder on the consumer's thread. With a pool (pipelined()), the consumer decodes a few requested frames
// ahead while num_threads - 1 helpers compute their products; outputs, errors and their order are those of the
// decoder alone.
class SequentialStream : public FrameStream {
 public:
  SequentialStream(const Source& src, const ReaderOptions& opt, const FrameRequest& req, int64_t begin_packet = 0,
                   int64_t first_index = 0)
      : opt_(opt), dec_(src, opt, req) {
    if (pipelined(src, opt, req)) {
      pool_ = std::make_unique<ProductPool>(opt.num_threads - 1);
      dec_.set_pool(pool_.get());
      min_ahead_ = static_cast<size_t>(opt.num_threads);
      // While the oldest frame's products run, decode up to 1-3 frames further (so that a thread that finishes a
      // product finds the next one queued), as many as fit into kAheadBytes: a frame's outputs and its picture.
      const AVCodecParameters& par = dec_.codecpar();
      const size_t px = static_cast<size_t>(std::max(par.width, 1)) * static_cast<size_t>(std::max(par.height, 1));
      const size_t per_frame = frame_out_bytes(req, par.width, par.height) + px * 3 / 2;
      max_ahead_ = min_ahead_ + std::clamp<size_t>(kAheadBytes / per_frame, 1, 3);
    }
    dec_.start_segment(begin_packet, -1, first_index);
  }
  bool next(FrameOut& out) override {
    if (!pool_) {
      Pending p;
      if (dec_.next(p)) {
        out = std::move(*p.out);
        return true;
      }
      return finish();
    }
    // Keep min_ahead_ frames in flight, and decode further (up to max_ahead_) while the oldest one's products are
    // still being computed. A decoding error is held until the frames before it are out.
    while (!ended_ && !error_ &&
           (q_.size() < min_ahead_ || (q_.size() < max_ahead_ && !pool_->done(q_.front().task)))) {
      try {
        Pending p;
        if (dec_.next(p)) q_.push_back(std::move(p));
        else ended_ = true;
      } catch (...) {
        error_ = std::current_exception();
      }
    }
    if (q_.empty()) {
      if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;
        ended_ = true;
        std::rethrow_exception(e);
      }
      return finish();
    }
    Pending p = std::move(q_.front());
    q_.pop_front();
    pool_->wait(p.task, /*help_others=*/true);
    out = std::move(*p.out);
    return true;
  }
  StreamStats stats() const override {
    StreamStats s = const_cast<Decoder&>(dec_).stats();
    s.pooled_products = pool_ != nullptr;
    return s;
  }
  Decoder& decoder() { return dec_; }

 private:
  bool finish() {
    if (dec_.stats().truncated && opt_.on_error == OnError::Raise && !raised_) {
      raised_ = true;
      throw Error(ErrorKind::Corrupt, dec_.name(),
                  "the file is truncated after frame " + std::to_string(dec_.stats().frames_decoded));
    }
    return false;
  }

  ReaderOptions opt_;
  Decoder dec_;
  bool raised_ = false;
  std::unique_ptr<ProductPool> pool_;  // declared after dec_: destroyed (helpers joined) first
  std::deque<Pending> q_;
  size_t min_ahead_ = 0, max_ahead_ = 0;
  bool ended_ = false;
  std::exception_ptr error_;
};

// ---------------------------------------------------------------------------------------------------------------
// Parallel decoding of closed GOPs. Each worker owns a single-threaded Decoder and takes segments in increasing
// order; the consumer reads segment queues in order. Outputs of segments ahead of the consumer are buffered up to
// max_buffer_bytes in all (the consumer's segment may always queue one frame, so the consumer never waits forever).
// With a pool (pipelined()), products are tasks that any worker runs, smallest frame index first: a worker runs
// them before decoding on while more than one per worker is queued, and whenever it would wait for buffer space
// (or has no segment left); the consumer runs its next frame's task if no one has started it.
struct Segment {
  int64_t begin = 0, end = -1, first_index = 0, expected = 0;  // packets [begin, end), first frame index
  std::deque<Pending> queue;
  size_t bytes = 0;  // of the queued frames
  bool done = false;
  int64_t produced = 0;  // output frames (selected or not)
  std::exception_ptr error;
  StreamStats stats;
};

class ParallelStream : public FrameStream {
 public:
  ParallelStream(const Source& src, const ReaderOptions& opt, const FrameRequest& req, std::vector<Segment> segs,
                 int threads)
      : src_(src), opt_(opt), req_(req), segs_(std::move(segs)), threads_(threads) {
    stats_.parallel = true;
    stats_.segments = static_cast<int>(segs_.size());
    if (pipelined(src, opt, req)) {
      pool_ = std::make_unique<ProductPool>(0);
      pool_->set_on_submit([this] {
        std::lock_guard<std::mutex> lk(mu_);
        cv_.notify_all();
      });
    }
    // A worker the system refuses (resource limits) is a worker fewer (segments go to whichever worker is free, so
    // the output is the same); with none at all, one decoder reads on the calling thread. A std::thread left
    // joinable would abort the process.
    for (int t = 0; t < threads; ++t) {
      try {
        workers_.emplace_back([this] { work(); });
      } catch (const std::system_error&) {
        break;
      }
    }
    if (workers_.empty()) {
      cur_ = segs_.size();
      fallback_ = std::make_unique<SequentialStream>(src_, opt_, req_, segs_[0].begin, segs_[0].first_index);
      stats_.parallel = false;
    }
  }
  ~ParallelStream() override { shutdown(); }

  bool next(FrameOut& out) override {
    if (fallback_) return fallback_->next(out);
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (cur_ >= segs_.size()) return false;
      Segment& s = segs_[cur_];
      if (!s.queue.empty()) {
        Pending p = std::move(s.queue.front());
        s.queue.pop_front();
        s.bytes -= p.bytes;
        buffered_ -= p.bytes;
        cv_.notify_all();
        lk.unlock();
        if (pool_) pool_->wait(p.task);  // rethrows a product's error
        out = std::move(*p.out);
        return true;
      }
      if (s.done) {
        if (s.error) {
          auto e = s.error;
          s.error = nullptr;
          std::rethrow_exception(e);
        }
        merge(s.stats);
        const bool mismatch = s.produced != s.expected && cur_ + 1 < segs_.size() &&
                              segs_[cur_ + 1].first_index <= req_.last();
        if (mismatch) {
          // Frame count differs from the packet count: later indices are unknown; continue with one decoder.
          const int64_t begin = segs_[cur_ + 1].begin, first = s.first_index + s.produced;
          cur_ = segs_.size();
          lk.unlock();
          shutdown();
          fallback_ = std::make_unique<SequentialStream>(src_, opt_, req_, begin, first);
          stats_.parallel = false;
          return fallback_->next(out);
        }
        ++cur_;
        cv_.notify_all();
        continue;
      }
      cv_.wait(lk);
    }
  }

  StreamStats stats() const override {
    StreamStats s = stats_;
    s.pooled_products = pool_ != nullptr;
    if (fallback_) {
      const StreamStats f = fallback_->stats();
      s.pooled_products = s.pooled_products || f.pooled_products;
      add_counts(s, f);
    }
    return s;
  }

 private:
  void merge(const StreamStats& s) { add_counts(stats_, s); }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

  size_t current() {
    std::lock_guard<std::mutex> lk(mu_);
    return cur_;
  }

  // Under mu_: whether segment si may queue `bytes` more. The segments ahead of the consumer share
  // max_buffer_bytes; the consumer's segment has max_buffer_bytes of its own (so the frames ahead never stall the
  // decoder the consumer waits for), and a frame always fits into it when its queue is empty.
  bool fits(size_t si, size_t bytes) const {
    const Segment& s = segs_[si];
    if (si == cur_) return s.queue.empty() || s.bytes + bytes <= opt_.max_buffer_bytes;
    const size_t ahead = buffered_ - (cur_ < segs_.size() ? segs_[cur_].bytes : 0);
    return ahead + bytes <= opt_.max_buffer_bytes;
  }

  void work() {
    std::unique_ptr<Decoder> dec;
    for (;;) {
      size_t si;
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (stop_) return;
        if (next_seg_ >= segs_.size()) {
          // No segment left: run queued products until the last decoding worker is done.
          if (pool_ && pool_->queued() > 0) {
            lk.unlock();
            pool_->help();
            continue;
          }
          if (!pool_ || decoding_ == 0) return;
          cv_.wait(lk);
          continue;
        }
        si = next_seg_++;
        if (segs_[si].first_index > req_.last()) {  // nothing requested from here on
          for (size_t k = si; k < segs_.size(); ++k) segs_[k].done = true;
          next_seg_ = segs_.size();
          cv_.notify_all();
          continue;
        }
        ++decoding_;
      }
      Segment& s = segs_[si];
      try {
        if (!dec) {
          dec = std::make_unique<Decoder>(src_, opt_, req_);
          dec->set_pool(pool_.get());
        }
        const StreamStats before = dec->stats();
        dec->start_segment(s.begin, s.end, s.first_index);
        Pending out;
        while (dec->next(out)) {
          // Products before decoding on, while more than one task per worker waits. The worker of the segment the
          // consumer reads is the one everybody waits for: it leaves the products to the others (the consumer
          // runs the one it waits for) unless two per worker wait (four: more pictures and products in flight,
          // slower for codec_stream, whose every candidate has a task; docs/decoding.md).
          if (pool_) {
            const size_t limit = static_cast<size_t>(threads_) * (si == current() ? 2 : 1);
            while (pool_->queued() > limit) pool_->help();
          }
          std::unique_lock<std::mutex> lk(mu_);
          for (;;) {
            if (stop_) {
              --decoding_;
              return;
            }
            if (fits(si, out.bytes)) break;
            if (pool_ && pool_->queued() > 0) {  // waiting for room: run products meanwhile
              lk.unlock();
              pool_->help();
              lk.lock();
              continue;
            }
            cv_.wait(lk);
          }
          s.bytes += out.bytes;
          buffered_ += out.bytes;
          s.queue.push_back(std::move(out));
          out = Pending();
          cv_.notify_all();
        }
        const StreamStats after = dec->stats();
        std::lock_guard<std::mutex> lk(mu_);
        s.produced = dec->frames_out();
        s.stats.frames_decoded = after.frames_decoded - before.frames_decoded;
        s.stats.corrupt_packets = after.corrupt_packets - before.corrupt_packets;
        s.stats.corrupt_frames = after.corrupt_frames - before.corrupt_frames;
        s.stats.repeated_frames = after.repeated_frames - before.repeated_frames;
        s.stats.skipped_frames = after.skipped_frames - before.skipped_frames;
        s.stats.truncated = after.truncated;
        s.stats.loop_filter_skipped = after.loop_filter_skipped;
        s.done = true;
        --decoding_;
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        s.error = std::current_exception();
        s.done = true;
        --decoding_;
        dec.reset();
      }
      cv_.notify_all();
    }
  }

  Source src_;
  ReaderOptions opt_;
  FrameRequest req_;
  std::vector<Segment> segs_;
  int threads_ = 1;
  std::unique_ptr<ProductPool> pool_;  // before workers_: alive while they run
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t cur_ = 0, next_seg_ = 0, buffered_ = 0;  // buffered_: bytes of all queued frames
  int decoding_ = 0;  // workers inside a segment
  bool stop_ = false;
  StreamStats stats_;
  std::unique_ptr<SequentialStream> fallback_;
};

// --- robustness: presentation times never go backwards (swapped or damaged packets can reorder pts) ---------
class MonotonicTimes : public FrameStream {
 public:
  MonotonicTimes(std::unique_ptr<FrameStream> inner, bool packet_prepass)
      : inner_(std::move(inner)), packet_prepass_(packet_prepass) {}
  bool next(FrameOut& out) override {
    if (!inner_->next(out)) return false;
    if (has_last_ && !(out.pts_s >= last_)) out.pts_s = last_;
    last_ = out.pts_s;
    has_last_ = true;
    return true;
  }
  StreamStats stats() const override {
    StreamStats s = inner_->stats();
    s.packet_prepass = packet_prepass_;
    return s;
  }

 private:
  std::unique_ptr<FrameStream> inner_;
  bool packet_prepass_ = false;
  double last_ = 0.0;
  bool has_last_ = false;
};
// --- end robustness ---

}  // namespace

VideoInfo read_info(const Source& source, const ReaderOptions& options) {
  Demuxer dm(source, options.stream_index, options.timeout_s);
  return stream_info(dm);
}

VideoInfo stream_info(const Demuxer& dm) {
  const AVStream* st = dm.stream();
  const AVCodecParameters* par = st->codecpar;
  VideoInfo info;
  info.codec = avcodec_get_name(par->codec_id);
  const char* pf = av_get_pix_fmt_name(static_cast<AVPixelFormat>(par->format));
  info.pix_fmt = pf ? pf : "unknown";
  info.container = dm.format()->iformat->name;
  info.width = par->width;
  info.height = par->height;
  AVRational fr = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
  info.fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0.0;
  info.time_base_num = st->time_base.num;
  info.time_base_den = st->time_base.den;
  info.num_frames_header = st->nb_frames > 0 ? st->nb_frames : -1;
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0) info.duration_s = st->duration * av_q2d(st->time_base);
  else if (dm.format()->duration > 0) info.duration_s = dm.format()->duration / static_cast<double>(AV_TIME_BASE);
  info.start_s = st->start_time != AV_NOPTS_VALUE ? st->start_time * av_q2d(st->time_base) : 0.0;
  info.has_b_frames = par->video_delay > 0;
  info.stream_index = dm.stream_index();
  info.color_matrix = rgb_matrix_name(par->format, par->color_space);
  info.color_range = rgb_range_name(par->format, par->color_range);
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(par->format));
  info.bit_depth = d ? d->comp[0].depth : 8;
  info.motion_source = codec_exports_vectors(par->codec_id) ? "codec"
                       : codec_needs_estimate(par->codec_id) ? "estimated"
                                                             : "none";
  return info;
}

PacketTable read_packets(const Source& source, const ReaderOptions& options) {
  Demuxer dm(source, options.stream_index, options.timeout_s);
  PacketTable t = read_packet_table(dm, true);
  if (dm.timed_out()) throw Error(ErrorKind::Timeout, source.name, "reading packets timed out");
  return t;
}

namespace {

// The skip plan of a sparse request on H.264 (FrameRequest::skip_plan), or null when nothing would be skipped or
// the table does not support one: a damaged or truncated table, a packet without pts, repeated pts.
std::shared_ptr<const SkipPlan> make_skip_plan(const PacketTable& t, const FrameRequest& req) {
  const size_t n = t.count();
  if (n == 0 || t.truncated || t.read_errors != 0) return nullptr;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) {
    if (t.pts[i] == AV_NOPTS_VALUE) return nullptr;
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return t.pts[a] < t.pts[b]; });
  auto plan = std::make_shared<SkipPlan>();
  plan->pts_by_rank.resize(n);
  plan->skip_packet.assign(n, 0);
  for (size_t k = 0; k < n; ++k) {
    plan->pts_by_rank[k] = t.pts[order[k]];
    if (k > 0 && plan->pts_by_rank[k] == plan->pts_by_rank[k - 1]) return nullptr;
  }
  for (size_t k = 0; k < n; ++k) {
    const size_t i = order[k];
    const int64_t rank = static_cast<int64_t>(k);
    if (t.reference[i] == 0 && !std::binary_search(req.indices.begin(), req.indices.end(), rank)) {
      plan->skip_packet[i] = 1;
      plan->skipped.push_back(rank);  // ascending
    }
  }
  if (plan->skipped.empty()) return nullptr;
  return plan;
}

struct Allow {
  bool skip = true;           // a skip plan for sparse H.264 requests
  bool frame_threads = true;  // FFmpeg frame threads for H.264 without re-ordering
  bool loop_filter = true;    // H.264 without deblocking for reads without pixels
};

std::unique_ptr<FrameStream> open_frames_impl(const Source& source, const ReaderOptions& options,
                                              const FrameRequest& request, Allow allow);

// Runs a stream that may stop because the file does not fit a model it relies on: a skip plan (SkipPlanBroken) or
// FFmpeg frame threads (FrameThreadsUnsafe). It then reads the frames not delivered yet again, without either.
// The outputs are those of a read without them (the frames before the stop were checked to be the same),
// whatever num_threads is.
class RereadGuard : public FrameStream {
 public:
  RereadGuard(std::unique_ptr<FrameStream> inner, const Source& src, const ReaderOptions& opt, const FrameRequest& req)
      : inner_(std::move(inner)), src_(src), opt_(opt), req_(req) {
    req_.skip_plan = nullptr;
    opt_.frame_threads = 0;
    opt_.skip_loop_filter = false;
  }
  bool next(FrameOut& out) override {
    for (;;) {
      try {
        if (!inner_->next(out)) return false;
        last_ = out.index;
        return true;
      } catch (const SkipPlanBroken&) {
        skip_fallback_ = true;
      } catch (const FrameThreadsUnsafe&) {
        thread_fallback_ = true;
      } catch (const LoopFilterUnsafe&) {
        loop_filter_fallback_ = true;
      }
      const StreamStats s = inner_->stats();
      add_counts(done_, s);
      if (!frame_threads_) frame_threads_ = s.frame_threads;
      inner_.reset();
      FrameRequest r = req_;
      r.first = last_ + 1;
      r.indices.erase(r.indices.begin(), std::upper_bound(r.indices.begin(), r.indices.end(), last_));
      if (!r.all && r.indices.empty()) return false;
      inner_ = open_frames_impl(src_, opt_, r, Allow{false, false, false});
    }
  }
  StreamStats stats() const override {
    StreamStats s = inner_ ? inner_->stats() : StreamStats{};
    add_counts(s, done_);
    s.skip_fallback = skip_fallback_;
    s.thread_fallback = thread_fallback_;
    s.loop_filter_fallback = loop_filter_fallback_;
    if (frame_threads_) s.frame_threads = frame_threads_;
    return s;
  }

 private:
  std::unique_ptr<FrameStream> inner_;
  Source src_;
  ReaderOptions opt_;
  FrameRequest req_;
  int64_t last_ = -1;
  bool skip_fallback_ = false, thread_fallback_ = false, loop_filter_fallback_ = false;
  int frame_threads_ = 0;
  StreamStats done_;
};

// Whether an H.264 packet table allows FFmpeg frame threads: every packet has a pts and they increase in decoding
// order (no re-ordering), and the table is whole.
bool table_allows_frame_threads(const PacketTable& t) {
  if (t.count() == 0 || t.truncated || t.read_errors != 0) return false;
  for (size_t i = 0; i < t.count(); ++i) {
    if (t.pts[i] == AV_NOPTS_VALUE) return false;
    if (i > 0 && t.pts[i] <= t.pts[i - 1]) return false;
  }
  return true;
}

// Bytes of one requested frame's outputs (what ParallelStream's re-ordering buffer counts), roughly.
size_t frame_out_bytes(const FrameRequest& req, int W, int H) {
  const size_t px = static_cast<size_t>(std::max(W, 1)) * std::max(H, 1), cells = px / 16 + 1;
  size_t b = 64;
  if (req.luma) b += px;
  if (req.rgb)
    b += 3 * (req.rgb_width > 0 ? static_cast<size_t>(req.rgb_width) * std::max(req.rgb_height, 1) : px);
  if (req.mvs && req.mvs_dense) b += cells * 18;
  if (req.residual) b += 2 * px;
  if (req.coding_cost) b += 4 * cells;
  return b;
}

// The share of `threads` that ParallelStream keeps busy on the segments starting at `starts` (of n frames), in
// frame-sized steps: a worker takes the next segment when it is free; the consumer takes the frames of its segment
// as they come; a worker ahead of the consumer's segment decodes only while the frames buffered ahead of the
// consumer fit into `buffer_frames`.
double segment_utilisation(const std::vector<int64_t>& starts, int64_t n, int threads, int64_t buffer_frames) {
  const size_t S = starts.size(), T = static_cast<size_t>(std::max(1, threads));
  if (n <= 0 || S == 0) return 1.0;
  std::vector<int64_t> len(S), done(S, 0);
  for (size_t k = 0; k < S; ++k) len[k] = (k + 1 < S ? starts[k + 1] : n) - starts[k];
  std::vector<int64_t> seg_of(T, -1);
  size_t next = 0, cur = 0;
  int64_t consumed = 0, decoded = 0, steps = 0;
  while (cur < S) {
    ++steps;
    for (size_t w = 0; w < T; ++w) {
      if (seg_of[w] < 0 && next < S) seg_of[w] = static_cast<int64_t>(next++);
      if (seg_of[w] < 0) continue;
      const size_t k = static_cast<size_t>(seg_of[w]);
      if (k != cur && decoded - consumed >= buffer_frames) continue;  // no room ahead of the consumer
      ++decoded;
      if (++done[k] == len[k]) seg_of[w] = -1;
    }
    while (cur < S) {  // the consumer takes what its segment has
      const int64_t seg_start = starts[cur] - starts[0];
      consumed = std::max(consumed, seg_start + done[cur]);
      if (done[cur] < len[cur]) break;
      ++cur;
    }
  }
  return static_cast<double>(n) / (static_cast<double>(steps) * T);
}

std::unique_ptr<FrameStream> open_frames_impl(const Source& source, const ReaderOptions& options,
                                              const FrameRequest& request, Allow allow) {
  // on_error=repeat decodes with one decoder: a closed GOP whose packets all fail has nothing of its own to repeat,
  // and only the sequential decoder holds the previous GOP's last good frame (same output for any num_threads).
  // A push source cannot be read twice (the packet table up front): it always uses the sequential decoder.
  // Two threads and products for every frame (residual, coding cost, RGB, a post hook): one decoder whose
  // products run on the second thread beats two segment decoders — as fast or faster (the products are as costly
  // as decoding) and one decoder's memory instead of two (docs/decoding.md).
  const bool every_frame_products =
      request.all && (request.residual || request.coding_cost || request.rgb || static_cast<bool>(request.post));
  const bool pooled = pipelined(source, options, request);  // products as tasks of a product pool
  const bool pipeline_instead = options.num_threads == 2 && every_frame_products && pooled;
  const bool may_parallel = options.num_threads > 1 && options.on_error != OnError::Repeat && !source.push && !pipeline_instead;
  // Skipping: a sparse request on H.264 (the NAL header says which pictures no other picture references).
  const bool may_skip = allow.skip && !request.all && !request.select && !request.indices.empty() && !source.push &&
                        options.on_error != OnError::Repeat;
  // Frame threads: H.264 without re-ordering, a source that can be read again (RereadGuard), no streaming hooks.
  // Auto uses them only for reads whose products stay on the decoding thread (decode, luma, vector rows): reads
  // with a product pool (RGB, residual, coding cost, a post hook) keep segments or one decoder, as the products
  // need the cores (measured slower with frame threads: codec_stream, ovenc_topk, vectors + residual + cost).
  const bool may_frame_threads =
      allow.frame_threads && options.num_threads > 1 && options.on_error != OnError::Repeat && !source.push &&
      !request.select && !request.on_open && !request.on_packet &&
      (options.threading == Threading::Frames || (options.threading == Threading::Auto && !pooled));
  FrameRequest req = request;
  ReaderOptions opt = options;
  opt.frame_threads = 0;
  // Reads of every frame that deliver no pixels (vectors, coding cost, frame types, or nothing) decode H.264
  // without deblocking, guarded (Decoder::check_loop_filter_skip): ~20-25 % less decoding time at 720p.
  opt.skip_loop_filter = allow.loop_filter && request.all && request.first == 0 && !request.luma && !request.rgb &&
                         !request.residual && !request.post && !request.select && !request.on_open &&
                         !request.on_packet && !source.push && options.on_error != OnError::Repeat;
  std::shared_ptr<const SkipPlan> plan;
  std::unique_ptr<FrameStream> inner;
  bool prepass = false;
  if (may_parallel || may_skip || may_frame_threads) {
    Demuxer dm(source, options.stream_index, options.timeout_s);
    const AVStream* st = dm.stream();
    const bool h264 = st->codecpar->codec_id == AV_CODEC_ID_H264;
    // Segments start at key frames after the first packet: where the container's index lists every packet and
    // fewer than two key frames, no split exists, and the packet table is read only if skipping or frame threads
    // (H.264 without re-ordering) could use it. Short one-GOP MP4 clips then skip a pass over their packets.
    const int64_t indexed_keys = indexed_keyframes(st, 2);  // -1: the index does not tell
    const bool may_split = may_parallel && (indexed_keys < 0 || indexed_keys >= 2);
    const bool ft_possible = h264 && may_frame_threads && st->codecpar->video_delay == 0;
    if (may_split || (h264 && may_skip) || ft_possible) {
      prepass = true;
      const PacketTable t = read_packet_table(dm, false);
      if (dm.timed_out()) throw Error(ErrorKind::Timeout, source.name, "reading packets timed out");
      if (may_skip && h264) plan = make_skip_plan(t, request);
      req.skip_plan = plan;
      const int64_t n = static_cast<int64_t>(t.count());
      // Closed-GOP starts, merged so that segments hold at least n / (4 * threads) packets.
      std::vector<int64_t> starts{0};
      if (may_parallel && !t.truncated && t.read_errors == 0 && n > 0) {
        const int64_t min_len = std::max<int64_t>(8, n / (4 * options.num_threads));
        for (int64_t i = 1; i < n; ++i)
          if (t.safe_start[static_cast<size_t>(i)] && i - starts.back() >= min_len) starts.push_back(i);
        if (n - starts.back() < min_len / 2 && starts.size() > 1) starts.pop_back();
      }
      // Frame threads (Auto): where segments would keep the threads less than 85 % busy (two frame threads keep
      // them about 80 % busy on H.264; segments measure below their estimate: demuxers, decoder starts).
      const AVCodecParameters* par = st->codecpar;
      bool frame_threads = ft_possible && table_allows_frame_threads(t);
      if (frame_threads && options.threading == Threading::Auto) {
        // Only requested frames are buffered: a sparse request's buffer spans frames / density.
        const double density =
            request.all ? 1.0 : std::max(1e-6, static_cast<double>(request.indices.size()) / std::max<int64_t>(1, n));
        const double per_frame = static_cast<double>(frame_out_bytes(request, par->width, par->height)) * density;
        const int64_t buffer_frames = static_cast<int64_t>(
            std::min(static_cast<double>(n) + 1.0, static_cast<double>(options.max_buffer_bytes) / per_frame));
        frame_threads =
            starts.size() < 2 || segment_utilisation(starts, n, options.num_threads, buffer_frames) < 0.85;
      }
      if (frame_threads) {
        // With a product pool (num_threads - 1 helpers; threading="frames" only), half the threads decode.
        opt.frame_threads = pooled ? std::max(2, options.num_threads / 2) : options.num_threads;
      } else if (starts.size() >= 2) {
        std::vector<Segment> segs(starts.size());
        for (size_t k = 0; k < starts.size(); ++k) {
          segs[k].begin = starts[k];
          segs[k].end = k + 1 < starts.size() ? starts[k + 1] : -1;
          segs[k].first_index = starts[k];  // one frame per packet; verified while decoding
          segs[k].expected = (k + 1 < starts.size() ? starts[k + 1] : n) - starts[k];
        }
        const int threads = static_cast<int>(std::min<size_t>(static_cast<size_t>(options.num_threads), segs.size()));
        inner = std::make_unique<ParallelStream>(source, opt, req, std::move(segs), threads);
      }
    }
  }
  if (!inner) inner = std::make_unique<SequentialStream>(source, opt, req);
  if (plan || opt.frame_threads || opt.skip_loop_filter)
    inner = std::make_unique<RereadGuard>(std::move(inner), source, options, request);
  return std::make_unique<MonotonicTimes>(std::move(inner), prepass);
}

}  // namespace

std::unique_ptr<FrameStream> open_frames(const Source& source, const ReaderOptions& options,
                                         const FrameRequest& request) {
  return open_frames_impl(source, options, request, Allow{});
}

}  // namespace ov2

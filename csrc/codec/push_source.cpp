#include "codec/push_source.h"

#include <system_error>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

namespace ov2 {

namespace {

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

uint64_t be64(const uint8_t* p) { return (uint64_t(be32(p)) << 32) | be32(p + 4); }

// A non-seekable reader discards bytes it has read once this many have accumulated (amortised O(1) per byte).
constexpr int64_t kCompactBytes = int64_t(1) << 20;

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
PushBuffer::PushBuffer(std::string name, bool seekable) : name_(std::move(name)), seekable_(seekable) {}

void PushBuffer::fail_locked(ErrorKind kind, const std::string& cause) {
  if (failed_) return;
  failed_ = true;
  fail_kind_ = kind;
  fail_cause_ = cause;
}

bool PushBuffer::failed() const {
  std::lock_guard<std::mutex> lk(mu_);
  return failed_;
}

Error PushBuffer::failure() const {
  std::lock_guard<std::mutex> lk(mu_);
  return Error(fail_kind_, name_, fail_cause_);
}

void PushBuffer::feed(const uint8_t* data, size_t n) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (failed_) throw Error(fail_kind_, name_, fail_cause_);
    if (aborted_) throw Error(ErrorKind::Open, name_, "the stream was stopped; no more bytes can be fed");
    if (closed_) throw Error(ErrorKind::Open, name_, "bytes fed after close()");
    if (n == 0) return;
    if (!seekable_) scan_boxes(data, n);
    buf_.append(reinterpret_cast<const char*>(data), n);
    waiting_ = false;  // the reader re-marks itself when these bytes do not satisfy it
    if (failed_) {
      cv_.notify_all();
      throw Error(fail_kind_, name_, fail_cause_);
    }
  }
  cv_.notify_all();
}

void PushBuffer::close() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

void PushBuffer::abort() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    aborted_ = true;
  }
  cv_.notify_all();
}

int64_t PushBuffer::fed() const {
  std::lock_guard<std::mutex> lk(mu_);
  return base_ + static_cast<int64_t>(buf_.size());
}

int64_t PushBuffer::pending() const {
  std::lock_guard<std::mutex> lk(mu_);
  return std::max<int64_t>(0, base_ + static_cast<int64_t>(buf_.size()) - pos_);
}

int64_t PushBuffer::held() const {
  std::lock_guard<std::mutex> lk(mu_);
  return static_cast<int64_t>(buf_.size());
}

bool PushBuffer::closed() const {
  std::lock_guard<std::mutex> lk(mu_);
  return closed_;
}

bool PushBuffer::starved() const {
  std::lock_guard<std::mutex> lk(mu_);
  return waiting_;
}

// ISO-BMFF (MP4/MOV) read without seeking: the demuxer needs the moov box (the sample tables) before the media
// data. A top-level 'mdat' before any 'moov' can only be handled by keeping every byte (seekable = true), so it is
// reported at once instead of after the whole stream has been read and discarded.
void PushBuffer::scan_boxes(const uint8_t* p, size_t n) {
  while (n > 0 && scan_ == Scan::Scanning) {
    if (skip_ > 0) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(skip_, n));
      skip_ -= k;
      p += k;
      n -= k;
      continue;
    }
    const size_t need = (hdr_len_ >= 8 && be32(hdr_) == 1) ? 16 : 8;
    const size_t k = std::min(need - hdr_len_, n);
    std::memcpy(hdr_ + hdr_len_, p, k);
    hdr_len_ += k;
    p += k;
    n -= k;
    if (hdr_len_ < 8) break;
    const uint32_t size32 = be32(hdr_);
    const char* type = reinterpret_cast<const char*>(hdr_ + 4);
    if (first_box_ && std::memcmp(type, "ftyp", 4) != 0) {
      scan_ = Scan::Done;  // not ISO-BMFF: nothing to check
      break;
    }
    if (size32 == 1 && hdr_len_ < 16) continue;
    first_box_ = false;
    if (std::memcmp(type, "moov", 4) == 0 || std::memcmp(type, "moof", 4) == 0 || size32 == 0) {
      scan_ = Scan::Done;  // the sample tables come first (faststart or fragmented MP4), or a box to the end
      break;
    }
    if (std::memcmp(type, "mdat", 4) == 0) {
      scan_ = Scan::Done;
      fail_locked(ErrorKind::Open,
                  "MP4/MOV whose moov atom follows the media data (mdat) cannot be demuxed from a non-seekable "
                  "stream; feed it with seekable=True (keeps every byte in memory) or remux it with "
                  "'-movflags +faststart' or as fragmented MP4 / MPEG-TS");
      break;
    }
    const uint64_t size = size32 == 1 ? be64(hdr_ + 8) : size32;
    if (size < hdr_len_) {
      scan_ = Scan::Done;  // a malformed box: the demuxer reports it
      break;
    }
    skip_ = size - hdr_len_;
    hdr_len_ = 0;
  }
}

int PushBuffer::read_cb(void* opaque, uint8_t* buf, int size) { return static_cast<PushBuffer*>(opaque)->read(buf, size); }

int64_t PushBuffer::seek_cb(void* opaque, int64_t offset, int whence) {
  return static_cast<PushBuffer*>(opaque)->seek(offset, whence);
}

int PushBuffer::read(uint8_t* buf, int size) {
  if (size <= 0) return 0;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (aborted_ || failed_) return AVERROR_EXIT;
    const int64_t end = base_ + static_cast<int64_t>(buf_.size());
    if (pos_ < end) break;
    if (closed_) {
      if (end == 0) fail_locked(ErrorKind::Open, "empty stream (closed before any byte was fed)");
      return failed_ ? AVERROR_EXIT : AVERROR_EOF;
    }
    waiting_ = true;
    cv_.wait(lk);
    waiting_ = false;
  }
  const int64_t end = base_ + static_cast<int64_t>(buf_.size());
  const int n = static_cast<int>(std::min<int64_t>(end - pos_, size));
  std::memcpy(buf, buf_.data() + (pos_ - base_), static_cast<size_t>(n));
  pos_ += n;
  if (!seekable_ && pos_ - base_ >= kCompactBytes) {  // discard what has been read
    buf_.erase(0, static_cast<size_t>(pos_ - base_));
    base_ = pos_;
  }
  return n;
}

int64_t PushBuffer::seek(int64_t offset, int whence) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!seekable_) return AVERROR(ENOSYS);
  const int64_t end = base_ + static_cast<int64_t>(buf_.size());
  switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return closed_ ? end : AVERROR(ENOSYS);  // unknown until the end has been fed
    case SEEK_SET: break;
    case SEEK_CUR: offset += pos_; break;
    case SEEK_END:
      // The size is known only once the input is closed: wait for it (or a stop).
      while (!(closed_ || aborted_ || failed_)) {
        waiting_ = true;
        cv_.wait(lk);
      }
      waiting_ = false;
      if (aborted_ || failed_) return AVERROR_EXIT;
      offset += base_ + static_cast<int64_t>(buf_.size());
      break;
    default: return AVERROR(EINVAL);
  }
  if (offset < 0) return AVERROR(EINVAL);
  pos_ = offset;  // may lie beyond what has been fed: the next read waits for those bytes
  return pos_;
}

// ---------------------------------------------------------------------------------------------------------------
BackgroundDecoder::BackgroundDecoder(Source source, ReaderOptions options, FrameRequest request,
                                     size_t max_queue_bytes, std::function<void(const PacketRecord&)> observer)
    : source_(std::move(source)), options_(std::move(options)), request_(std::move(request)),
      max_queue_bytes_(std::max<size_t>(max_queue_bytes, 1)), observer_(std::move(observer)) {
  options_.num_threads = 1;  // the packet table is not known up front: one sequential decoder (same output)
  auto user_open = request_.on_open;
  request_.on_open = [this, user_open](const Demuxer& dm, FrameRequest& req) {
    if (user_open) user_open(dm, req);  // first: what it sets (the canvas size) is visible once the info is
    on_open(dm);
  };
  auto user_packet = request_.on_packet;
  request_.on_packet = [this, user_packet](const AVPacket* pkt) {
    on_packet(pkt);
    if (user_packet) user_packet(pkt);
  };
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) {  // the system refused the thread (resource limits): report, never abort
    throw Error(ErrorKind::Open, source_.name, std::string("cannot start the decoding thread: ") + e.what());
  }
}

BackgroundDecoder::~BackgroundDecoder() { stop(); }

void BackgroundDecoder::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (source_.push) source_.push->abort();
  if (thread_.joinable()) thread_.join();
  if (parser_) {
    av_parser_close(parser_);
    parser_ = nullptr;
  }
}

bool BackgroundDecoder::finished() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_;
}

void BackgroundDecoder::on_open(const Demuxer& dm) {
  const AVStream* st = dm.stream();
  tb_ = av_q2d(st->time_base);
  parser_ = av_parser_init(st->codecpar->codec_id);
  if (parser_) {
    parser_->flags |= PARSER_FLAG_COMPLETE_FRAMES;
    parser_ctx_.reset(avcodec_alloc_context3(nullptr));
    if (!parser_ctx_ || avcodec_parameters_to_context(parser_ctx_.get(), st->codecpar) < 0) {
      av_parser_close(parser_);
      parser_ = nullptr;
    }
  }
  VideoInfo info = stream_info(dm);
  std::lock_guard<std::mutex> lk(mu_);
  info_ = std::move(info);
  has_info_ = true;
}

void BackgroundDecoder::on_packet(const AVPacket* pkt) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  PacketRecord r;
  r.pts_s = pkt->pts == AV_NOPTS_VALUE ? nan : pkt->pts * tb_;
  r.dts_s = pkt->dts == AV_NOPTS_VALUE ? nan : pkt->dts * tb_;
  r.size = pkt->size;
  r.keyframe = (pkt->flags & AV_PKT_FLAG_KEY) ? 1 : 0;
  if (parser_) {  // the same parser pass as the packet table (read_packet_table)
    uint8_t* out = nullptr;
    int out_size = 0;
    av_parser_parse2(parser_, parser_ctx_.get(), &out, &out_size, pkt->data, pkt->size, pkt->pts, pkt->dts, pkt->pos);
    switch (parser_->pict_type) {
      case AV_PICTURE_TYPE_I:
      case AV_PICTURE_TYPE_SI: r.pict_type = 'I'; break;
      case AV_PICTURE_TYPE_P:
      case AV_PICTURE_TYPE_S:
      case AV_PICTURE_TYPE_SP: r.pict_type = 'P'; break;
      case AV_PICTURE_TYPE_B: r.pict_type = 'B'; break;
      default: r.pict_type = '?';
    }
  }
  if (observer_) observer_(r);
  std::lock_guard<std::mutex> lk(mu_);
  packets_.push_back(r);
  ++packets_total_;
}

void BackgroundDecoder::run() {
  std::exception_ptr err;
  StreamStats stats;
  try {
    std::unique_ptr<FrameStream> stream = open_frames(source_, options_, request_);
    FrameOut f;
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) break;
      }
      if (!stream->next(f)) break;
      const size_t bytes = f.bytes();
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || queued_bytes_ == 0 || queued_bytes_ + bytes <= max_queue_bytes_; });
      if (stop_) break;
      queued_bytes_ += bytes;
      frames_.push_back(std::move(f));
      packets_before_.push_back(packets_total_);
      lk.unlock();
      cv_.notify_all();
    }
    stats = stream->stats();
    if (source_.push && source_.push->failed()) throw source_.push->failure();
  } catch (const Error& e) {
    // A failure seen on the bytes (an unreadable MP4 layout, an empty stream) explains the demuxer's error better.
    if (source_.push && source_.push->failed()) err = std::make_exception_ptr(source_.push->failure());
    else err = std::current_exception();
  } catch (const std::bad_alloc&) {
    err = std::make_exception_ptr(Error(ErrorKind::Corrupt, source_.name, "out of memory while decoding"));
  } catch (const std::exception& e) {
    err = std::make_exception_ptr(Error(ErrorKind::Corrupt, source_.name, std::string("decoding failed: ") + e.what()));
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_ = stats;
    error_ = err;
    finished_ = true;
  }
  cv_.notify_all();
}

StreamBatch BackgroundDecoder::take(double wait_s, int64_t pending_limit) {
  StreamBatch b;
  std::unique_lock<std::mutex> lk(mu_);
  auto ready = [&] {
    return !frames_.empty() || finished_ ||
           (pending_limit >= 0 && source_.push &&
            (source_.push->pending() <= pending_limit || source_.push->starved()));
  };
  if (wait_s > 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                                  std::chrono::duration<double>(wait_s));
    // The push buffer does not signal this condition variable: poll its unread count every few milliseconds.
    while (!ready()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      cv_.wait_for(lk, std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(5)));
    }
  }
  if (has_info_) {
    b.has_info = true;
    b.info = info_;
    has_info_ = false;
  }
  b.packets_base = packets_base_;
  b.packets.swap(packets_);
  packets_base_ += static_cast<int64_t>(b.packets.size());
  b.frames.swap(frames_);
  b.packets_before.swap(packets_before_);
  queued_bytes_ = 0;
  b.finished = finished_;
  if (finished_) {
    b.stats = stats_;
    if (error_) {
      if (b.frames.empty() && b.packets.empty()) {
        const std::exception_ptr e = error_;  // sticky: every later take() raises it again
        lk.unlock();
        std::rethrow_exception(e);
      }
      b.finished = false;  // hand over what came before the error first; the next take() raises it
    }
  }
  lk.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace ov2

// Push sources: the bytes of a video arrive incrementally (a pipe, a growing file, a live stream), and decoding
// runs on a background thread that reads them as they come (docs/streaming.md).
//
// PushBuffer     the byte queue behind a custom AVIO context. The producer (any thread) feeds chunks and finally
//                closes; the demuxer's read callback blocks until bytes or the end arrive. Non-seekable by default:
//                consumed bytes are discarded, so memory stays bounded by what is fed ahead of the decoder.
//                `seekable = true` keeps every byte (needed for an MP4 whose moov atom follows the media data).
// BackgroundDecoder
//                runs open_frames() on its own thread over a Source (push, path or bytes) with a single
//                (sequential) decoder, and queues what it sees in decode order: the stream information once open,
//                one PacketRecord per demuxed packet (size, times, key flag, the parser's picture type) and the
//                requested frames, each tagged with the number of packets demuxed before it. The frame queue is
//                bounded in bytes (the decoder waits for the consumer), so memory does not grow with the stream.
// Nothing here knows Python; errors become ov2::Error (never abort), the thread is always joined.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "codec/error.h"
#include "codec/ffmpeg.h"
#include "codec/reader.h"

namespace ov2 {

class PushBuffer {
 public:
  PushBuffer(std::string name, bool seekable);
  PushBuffer(const PushBuffer&) = delete;
  PushBuffer& operator=(const PushBuffer&) = delete;

  const std::string& name() const { return name_; }
  bool seekable() const { return seekable_; }

  // --- producer side ---
  // Appends bytes. Throws ov2::Error when the buffer was closed, aborted or has failed (e.g. an MP4 that cannot
  // be read without seeking: its kind and cause are those of failure()).
  void feed(const uint8_t* data, size_t n);
  // End of input: the reader sees end-of-file once it has read everything fed.
  void close();
  // Makes every blocked or later read fail (used to stop the background decoder); idempotent.
  void abort();

  // --- state (thread-safe) ---
  int64_t fed() const;      // bytes fed in total
  int64_t pending() const;  // bytes fed but not read yet
  int64_t held() const;     // bytes held in memory
  bool closed() const;
  // The reader is blocked waiting for bytes not fed yet (or, seekable, for the end to learn the size): feeding
  // more is the only way forward, whatever pending() says.
  bool starved() const;
  // A failure detected on the bytes themselves (set at most once), reported instead of the demuxer's generic error.
  bool failed() const;
  Error failure() const;

  // --- consumer side: AVIO callbacks (opaque = this) ---
  static int read_cb(void* opaque, uint8_t* buf, int size);
  static int64_t seek_cb(void* opaque, int64_t offset, int whence);

 private:
  int read(uint8_t* buf, int size);
  int64_t seek(int64_t offset, int whence);
  void fail_locked(ErrorKind kind, const std::string& cause);
  void scan_boxes(const uint8_t* p, size_t n);  // non-seekable ISO-BMFF: moov must precede mdat

  const std::string name_;
  const bool seekable_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string buf_;     // bytes [base_, base_ + buf_.size())
  int64_t base_ = 0;    // absolute offset of buf_[0]
  int64_t pos_ = 0;     // absolute read position
  bool closed_ = false, aborted_ = false, failed_ = false, waiting_ = false;
  ErrorKind fail_kind_ = ErrorKind::Open;
  std::string fail_cause_;
  // ISO-BMFF top-level box scan (non-seekable only)
  enum class Scan { Scanning, Done } scan_ = Scan::Scanning;
  bool first_box_ = true;
  uint8_t hdr_[16] = {0};
  size_t hdr_len_ = 0;
  uint64_t skip_ = 0;
};

// One demuxed packet of the video stream, in decode order.
struct PacketRecord {
  double pts_s = 0.0, dts_s = 0.0;  // NaN where missing
  int64_t size = 0;                 // bytes (the bit-cost)
  uint8_t keyframe = 0;             // container key flag
  char pict_type = '?';             // the codec parser's picture type: 'I', 'P', 'B' or '?'
};

struct StreamBatch {
  bool has_info = false;  // the stream opened since the previous take(): `info` is valid
  VideoInfo info;
  int64_t packets_base = 0;                // decode-order index of packets[0]
  std::vector<PacketRecord> packets;
  std::vector<FrameOut> frames;            // requested frames, presentation order
  std::vector<int64_t> packets_before;     // per frame: packets demuxed (in total) before it was produced
  bool finished = false;                   // the decoder ended (stats valid); nothing follows
  StreamStats stats;
};

class BackgroundDecoder {
 public:
  // `source.push` may be set (push bytes) or not (path / in-memory bytes). The request's on_open and post hooks
  // run on the decoding thread; on_packet is used by this class (any hook already set is called after it).
  // `max_queue_bytes`: frames held for the consumer (FrameOut::bytes()) before the decoder waits.
  // `observer` (optional) sees each PacketRecord on the decoding thread, before the packet is decoded.
  BackgroundDecoder(Source source, ReaderOptions options, FrameRequest request, size_t max_queue_bytes,
                    std::function<void(const PacketRecord&)> observer = nullptr);
  ~BackgroundDecoder();
  BackgroundDecoder(const BackgroundDecoder&) = delete;
  BackgroundDecoder& operator=(const BackgroundDecoder&) = delete;

  // Waits up to wait_s seconds until a frame is queued, the decoder has finished, or (pending_limit >= 0) the
  // push buffer's unread bytes are <= pending_limit; then hands over everything queued. Rethrows the decoder's
  // error (ov2::Error) once everything queued before it has been handed over.
  StreamBatch take(double wait_s, int64_t pending_limit);
  // Stops the decoder (aborts the push buffer) and joins the thread; idempotent.
  void stop();
  bool finished() const;

 private:
  void run();
  void on_open(const Demuxer& dm);
  void on_packet(const AVPacket* pkt);

  Source source_;
  ReaderOptions options_;
  FrameRequest request_;
  size_t max_queue_bytes_;
  std::function<void(const PacketRecord&)> observer_;
  // parser (decoding thread only)
  AVCodecParserContext* parser_ = nullptr;
  CodecContextPtr parser_ctx_;
  double tb_ = 0.0;
  // shared with the consumer (mu_)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool has_info_ = false, finished_ = false, stop_ = false;
  VideoInfo info_;
  int64_t packets_total_ = 0, packets_base_ = 0;
  std::vector<PacketRecord> packets_;
  std::vector<FrameOut> frames_;
  std::vector<int64_t> packets_before_;
  size_t queued_bytes_ = 0;
  StreamStats stats_;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace ov2

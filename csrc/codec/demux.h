// Demuxing: opens a container from a path or an in-memory buffer and reads the packets of one video stream.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "codec/ffmpeg.h"

namespace ov2 {

class PushBuffer;  // codec/push_source.h
struct StreamProbe;  // what avformat_find_stream_info learnt about a source (demux.cpp)
std::shared_ptr<StreamProbe> new_stream_probe();

// Where the bytes come from. `name` is what error messages call the source.
struct Source {
  std::string path;                         // read from this file when `data` is null
  std::shared_ptr<const std::string> data;  // or from these bytes
  std::string name;                         // the path, "<bytes>" or "<file-like>"
  std::shared_ptr<PushBuffer> push;         // or from bytes pushed incrementally (codec/push_source.h)
  // Shared by the copies of a Source: the first Demuxer probes the streams, the later ones (the packet pre-pass,
  // each parallel decoder's) take the result instead of decoding the first frames again. Null: always probe.
  std::shared_ptr<StreamProbe> probe = new_stream_probe();
};

class Demuxer {
 public:
  // Opens the source and selects the video stream `stream_index` (-1: FFmpeg's best video stream).
  // Throws ov2::Error (Open, NoVideoStream, UnsupportedCodec) on failure.
  Demuxer(const Source& source, int stream_index = -1, double timeout_s = 0.0);
  ~Demuxer();
  Demuxer(const Demuxer&) = delete;
  Demuxer& operator=(const Demuxer&) = delete;

  AVFormatContext* format() const { return fmt_; }
  AVStream* stream() const { return fmt_->streams[stream_index_]; }
  int stream_index() const { return stream_index_; }
  const AVCodec* decoder() const { return decoder_; }
  const Source& source() const { return source_; }

  // Reads the next packet of the selected stream into `pkt` (unref'd first). Returns false at the end of the data.
  // A read error other than end-of-file ends the stream too and marks it truncated.
  bool read(AVPacket* pkt);
  bool truncated() const { return truncated_; }
  int read_errors() const { return read_errors_; }
  bool timed_out() const;
  // Restarts the deadline of the interrupt callback (timeout_s from now; 0 = none).
  void arm_deadline(double timeout_s);

 private:
  static int interrupt_cb(void* opaque);
  void open(int stream_index, double timeout_s);  // the constructor's work; on a throw the ctor calls release()
  void release();                                 // frees the format and IO contexts (idempotent)
  Source source_;
  AVFormatContext* fmt_ = nullptr;
  AVIOContext* avio_ = nullptr;
  struct MemoryCursor;
  std::unique_ptr<MemoryCursor> cursor_;
  int stream_index_ = -1;
  const AVCodec* decoder_ = nullptr;
  bool truncated_ = false;
  int read_errors_ = 0;
  int64_t packets_read_ = 0;
  int64_t source_bytes_ = -1;  // a regular file's or the bytes' size (-1: unknown, e.g. a pipe or a push source)
  std::chrono::steady_clock::time_point deadline_{};
  bool has_deadline_ = false;
};

// Key frames the container's index lists for `st`, counting up to `stop_at`; -1 when the index does not list every
// packet of the stream (a fragmented or streamed file, Matroska cues, MPEG-TS, ...) or the FFmpeg is older than
// 4.4's index accessors. MP4/MOV indexes list every sample with the sync-sample flag the demuxer gives packets.
int64_t indexed_keyframes(const AVStream* st, int64_t stop_at);

// Returns the time base of the stream as seconds per tick.
inline double seconds_per_tick(const AVStream* st) { return av_q2d(st->time_base); }

}  // namespace ov2

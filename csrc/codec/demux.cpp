#include "codec/demux.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "codec/error.h"
#include "codec/push_source.h"

namespace ov2 {

// What avformat_find_stream_info adds to a header-based container's streams, for sources opened more than once.
struct StreamProbe {
  struct Stream {
    AVCodecParameters* par = nullptr;
    AVRational avg_frame_rate{0, 1}, r_frame_rate{0, 1};
    int64_t start_time = 0, duration = 0;
  };
  std::mutex mu;
  bool ready = false;
  std::string format;
  int64_t bytes = -1;  // the source's size when probed: a file replaced in between is probed again
  std::vector<Stream> streams;
  int64_t start_time = 0, duration = 0;
  // The video stream an open that probed chose by itself (stream_index < 0), or -1. av_find_best_stream ranks
  // streams by how many frames probing decoded (then bit rate), which an open that reuses the probe never did, so
  // such an open takes this choice instead of ranking again (a Matroska file with an unknown-codec track before a
  // VP9 track: the probed open picked the VP9 track, a reused probe the first track -- with no decoder).
  int best_video = -1;
  // The container format the first open detected, for a source of `format_bytes` bytes: later opens name it to
  // avformat_open_input instead of running every demuxer's probe on the first kilobytes again (~0.15 ms per open
  // of a small file, docs/decoding.md). Kept apart from `ready`: formats without a header (MPEG-TS) use it too.
  const AVInputFormat* input_format = nullptr;
  int64_t format_bytes = -1;

  void remember_format(const AVInputFormat* f, int64_t source_bytes) {
    if (source_bytes < 0) return;
    std::lock_guard<std::mutex> lk(mu);
    if (input_format) return;
    input_format = f;
    format_bytes = source_bytes;
  }

  // The remembered format when the source still has the size it had then (a replaced file is probed again).
  const AVInputFormat* format_for(int64_t source_bytes) {
    std::lock_guard<std::mutex> lk(mu);
    return source_bytes >= 0 && source_bytes == format_bytes ? input_format : nullptr;
  }

  ~StreamProbe() {
    for (Stream& s : streams) avcodec_parameters_free(&s.par);
  }

  void store(const AVFormatContext* fmt) {
    std::lock_guard<std::mutex> lk(mu);
    if (ready) return;
    std::vector<Stream> got(fmt->nb_streams);
    for (unsigned i = 0; i < fmt->nb_streams; ++i) {
      const AVStream* st = fmt->streams[i];
      got[i].par = avcodec_parameters_alloc();
      if (!got[i].par || avcodec_parameters_copy(got[i].par, st->codecpar) < 0) {
        for (Stream& s : got) avcodec_parameters_free(&s.par);
        return;  // out of memory: later opens just probe again
      }
      got[i].avg_frame_rate = st->avg_frame_rate;
      got[i].r_frame_rate = st->r_frame_rate;
      got[i].start_time = st->start_time;
      got[i].duration = st->duration;
    }
    streams = std::move(got);
    format = fmt->iformat->name;
    bytes = fmt->pb ? avio_size(fmt->pb) : -1;
    start_time = fmt->start_time;
    duration = fmt->duration;
    ready = true;
  }

  void remember_best(int index) {
    std::lock_guard<std::mutex> lk(mu);
    if (best_video < 0) best_video = index;
  }

  int best() {
    std::lock_guard<std::mutex> lk(mu);
    return best_video;
  }

  // Copies the stored probe into a freshly opened context of the same source; false when it does not match, or
  // when the open must choose its stream (`need_best`) and no probed open has chosen one yet.
  bool apply(AVFormatContext* fmt, bool need_best) {
    std::lock_guard<std::mutex> lk(mu);
    if (!ready || format != fmt->iformat->name || streams.size() != fmt->nb_streams) return false;
    if (need_best && best_video < 0) return false;
    if (bytes < 0 || bytes != (fmt->pb ? avio_size(fmt->pb) : -1)) return false;
    for (unsigned i = 0; i < fmt->nb_streams; ++i)
      if (streams[i].par->codec_type != fmt->streams[i]->codecpar->codec_type ||
          streams[i].par->codec_id != fmt->streams[i]->codecpar->codec_id)
        return false;
    for (unsigned i = 0; i < fmt->nb_streams; ++i) {
      AVStream* st = fmt->streams[i];
      if (avcodec_parameters_copy(st->codecpar, streams[i].par) < 0) return false;
      st->avg_frame_rate = streams[i].avg_frame_rate;
      st->r_frame_rate = streams[i].r_frame_rate;
      st->start_time = streams[i].start_time;
      st->duration = streams[i].duration;
    }
    fmt->start_time = start_time;
    fmt->duration = duration;
    return true;
  }
};

std::shared_ptr<StreamProbe> new_stream_probe() { return std::make_shared<StreamProbe>(); }

struct Demuxer::MemoryCursor {
  std::shared_ptr<const std::string> data;
  int64_t pos = 0;
};

namespace {

int mem_read(void* opaque, uint8_t* buf, int size) {
  auto* c = static_cast<std::pair<const std::string*, int64_t*>*>(opaque);
  const std::string& d = *c->first;
  int64_t& pos = *c->second;
  int64_t left = static_cast<int64_t>(d.size()) - pos;
  if (left <= 0) return AVERROR_EOF;
  int n = static_cast<int>(std::min<int64_t>(left, size));
  std::memcpy(buf, d.data() + pos, static_cast<size_t>(n));
  pos += n;
  return n;
}

int64_t mem_seek(void* opaque, int64_t offset, int whence) {
  auto* c = static_cast<std::pair<const std::string*, int64_t*>*>(opaque);
  const int64_t size = static_cast<int64_t>(c->first->size());
  int64_t& pos = *c->second;
  switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return size;
    case SEEK_SET: break;
    case SEEK_CUR: offset += pos; break;
    case SEEK_END: offset += size; break;
    default: return AVERROR(EINVAL);
  }
  if (offset < 0) return AVERROR(EINVAL);
  pos = std::min(offset, size);
  return pos;
}

// Demuxers that accept arbitrary text as "video" (ANSI art and friends): never a video for ov2.
bool is_text_demuxer(const char* name) {
  static const char* kText[] = {"tty", "bin", "xbin", "adf", "idf", "sauce"};
  for (const char* t : kText)
    if (std::strcmp(name, t) == 0) return true;
  return false;
}

}  // namespace

int Demuxer::interrupt_cb(void* opaque) {
  auto* self = static_cast<Demuxer*>(opaque);
  return self->timed_out() ? 1 : 0;
}

bool Demuxer::timed_out() const { return has_deadline_ && std::chrono::steady_clock::now() > deadline_; }

void Demuxer::arm_deadline(double timeout_s) {
  has_deadline_ = timeout_s > 0;
  if (has_deadline_)
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout_s));
}

Demuxer::Demuxer(const Source& source, int stream_index, double timeout_s) : source_(source) {
  const std::string& name = source_.name;
  if (source_.push) {
    // bytes arrive later: emptiness shows when the push buffer is closed (PushBuffer::read)
  } else if (!source_.data) {
    struct stat st {};
    if (::stat(source_.path.c_str(), &st) != 0)
      throw Error(ErrorKind::Open, name, std::string("cannot open: ") + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw Error(ErrorKind::Open, name, "is a directory, not a video file");
    // A reader opens its source several times (the probe, the packet pass, each decoder) and FFmpeg's open(2) of a
    // named pipe without a writer blocks for ever, before any timeout can act: only regular files are opened by path.
    if (!S_ISREG(st.st_mode)) {
      const char* kind = S_ISFIFO(st.st_mode)  ? "a named pipe"
                         : S_ISCHR(st.st_mode) ? "a character device"
                         : S_ISBLK(st.st_mode) ? "a block device"
                         : S_ISSOCK(st.st_mode) ? "a socket"
                                                : "a special file";
      throw Error(ErrorKind::Open, name,
                  std::string("is ") + kind +
                      ", not a regular file: pass its bytes or a file object, or feed it to a StreamTokenizer");
    }
    if (st.st_size == 0) throw Error(ErrorKind::Open, name, "empty file (0 bytes)");
    source_bytes_ = static_cast<int64_t>(st.st_size);
  } else if (source_.data->empty()) {
    throw Error(ErrorKind::Open, name, "empty input (0 bytes)");
  } else {
    source_bytes_ = static_cast<int64_t>(source_.data->size());
  }

  // --- robustness: an error thrown below must not leak the format / IO contexts (the destructor does not run
  // for a constructor that throws; found by the fuzzer: ~20-75 KB per rejected input) ---
  try {
    open(stream_index, timeout_s);
  } catch (...) {
    release();
    throw;
  }
}

void Demuxer::open(int stream_index, double timeout_s) {
  const std::string& name = source_.name;
  fmt_ = avformat_alloc_context();
  if (!fmt_) throw Error(ErrorKind::Open, name, "out of memory");
  fmt_->interrupt_callback.callback = &Demuxer::interrupt_cb;
  fmt_->interrupt_callback.opaque = this;
  arm_deadline(timeout_s);

  if (source_.push) {
    // Push source: the read callback blocks until bytes are fed or the buffer is closed (codec/push_source.h).
    constexpr int kBuf = 1 << 15;
    auto* buf = static_cast<unsigned char*>(av_malloc(kBuf));
    PushBuffer* pb = source_.push.get();
    avio_ = buf ? avio_alloc_context(buf, kBuf, 0, pb, &PushBuffer::read_cb, nullptr,
                                     pb->seekable() ? &PushBuffer::seek_cb : nullptr)
                : nullptr;
    if (!avio_) {
      av_free(buf);
      avformat_free_context(fmt_);
      fmt_ = nullptr;
      throw Error(ErrorKind::Open, name, "out of memory");
    }
    if (!pb->seekable()) avio_->seekable = 0;
    fmt_->pb = avio_;
    fmt_->flags |= AVFMT_FLAG_CUSTOM_IO;
  } else if (source_.data) {
    cursor_ = std::make_unique<MemoryCursor>();
    cursor_->data = source_.data;
    // The opaque pair lives inside the cursor allocation's lifetime (freed in the destructor after avio).
    auto* pair = new std::pair<const std::string*, int64_t*>(cursor_->data.get(), &cursor_->pos);
    constexpr int kBuf = 1 << 16;
    auto* buf = static_cast<unsigned char*>(av_malloc(kBuf));
    avio_ = buf ? avio_alloc_context(buf, kBuf, 0, pair, &mem_read, nullptr, &mem_seek) : nullptr;
    if (!avio_) {
      av_free(buf);
      delete pair;
      avformat_free_context(fmt_);
      fmt_ = nullptr;
      throw Error(ErrorKind::Open, name, "out of memory");
    }
    fmt_->pb = avio_;
    fmt_->flags |= AVFMT_FLAG_CUSTOM_IO;
  }

  // (a push source's size is unknown, -1: it always probes)
  const AVInputFormat* known = source_.probe ? source_.probe->format_for(source_bytes_) : nullptr;
#if LIBAVFORMAT_VERSION_MAJOR < 59
  AVInputFormat* known_arg = const_cast<AVInputFormat*>(known);  // FFmpeg 4.x takes a non-const pointer
#else
  const AVInputFormat* known_arg = known;
#endif
  // A path is always a file: "file:" keeps FFmpeg from reading a protocol into a file name ("pipe:0" would read
  // stdin, "http:clip.mp4" the network); the file protocol strips exactly this prefix.
  const std::string url = (source_.data || source_.push) ? std::string() : "file:" + source_.path;
  int ret = avformat_open_input(&fmt_, url.empty() ? nullptr : url.c_str(), known_arg, nullptr);
  if (ret < 0) {  // avformat_open_input frees fmt_ on failure
    fmt_ = nullptr;
    if (timed_out()) throw Error(ErrorKind::Timeout, name, "timed out while opening");
    throw Error(ErrorKind::Open, name, "not a readable media file (" + av_error_string(ret) + ")");
  }
  if (is_text_demuxer(fmt_->iformat->name))
    throw Error(ErrorKind::Open, name, std::string("not a video container (detected as '") + fmt_->iformat->name + "')");
  if (source_.probe && !known) source_.probe->remember_format(fmt_->iformat, source_bytes_);

  // Probing decodes the first frames of every stream (about 14 ms on 720p H.264); a source opened again (the packet
  // pre-pass, every parallel decoder) reuses the first probe where the container has a header that lists all its
  // streams, so the result is the same. Formats that find streams while reading (MPEG-TS, raw) always probe.
  const bool cacheable = source_.probe && !source_.push && !(fmt_->ctx_flags & AVFMTCTX_NOHEADER);
  const bool applied = cacheable && source_.probe->apply(fmt_, stream_index < 0);
  if (!applied) {
    ret = avformat_find_stream_info(fmt_, nullptr);
    if (ret < 0) {
      if (timed_out()) throw Error(ErrorKind::Timeout, name, "timed out while probing");
      throw Error(ErrorKind::Open, name, "cannot read stream information (" + av_error_string(ret) + ")");
    }
    if (cacheable) source_.probe->store(fmt_);
  }

  if (stream_index >= 0) {
    if (stream_index >= static_cast<int>(fmt_->nb_streams) ||
        fmt_->streams[stream_index]->codecpar->codec_type != AVMEDIA_TYPE_VIDEO)
      throw Error(ErrorKind::NoVideoStream, name, "stream " + std::to_string(stream_index) + " is not a video stream");
    stream_index_ = stream_index;
  } else if (applied) {
    stream_index_ = source_.probe->best();  // what the open that probed chose (apply() checked that it did)
  } else {
    ret = av_find_best_stream(fmt_, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (ret < 0) {
      // av_find_best_stream skips streams without a decoder; report those as unsupported, not absent.
      for (unsigned i = 0; i < fmt_->nb_streams; ++i) {
        const AVStream* s = fmt_->streams[i];
        if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && !(s->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
          stream_index_ = static_cast<int>(i);
          break;
        }
      }
      if (stream_index_ < 0) throw Error(ErrorKind::NoVideoStream, name, "the file has no video stream");
    } else {
      stream_index_ = ret;
    }
    if (cacheable) source_.probe->remember_best(stream_index_);
  }
  AVStream* st = fmt_->streams[stream_index_];
  decoder_ = avcodec_find_decoder(st->codecpar->codec_id);
  if (!decoder_)
    throw Error(ErrorKind::UnsupportedCodec, name,
                std::string("no decoder for codec '") + avcodec_get_name(st->codecpar->codec_id) +
                    "' in this FFmpeg build");
  if (st->codecpar->width <= 0 || st->codecpar->height <= 0)
    throw Error(ErrorKind::Corrupt, name, "video stream has no valid dimensions");
  // At most 2^26 pixels (8192 x 8192; 8K UHD is 2^25): a header declaring more is hostile or broken, and one
  // such frame would cost gigabytes once converted to RGB and products (robustness, docs/robustness.md).
  if (static_cast<int64_t>(st->codecpar->width) * st->codecpar->height > (int64_t(1) << 26))
    throw Error(ErrorKind::Corrupt, name,
                "declared dimensions " + std::to_string(st->codecpar->width) + "x" +
                    std::to_string(st->codecpar->height) + " are implausibly large");
  for (unsigned i = 0; i < fmt_->nb_streams; ++i)
    if (static_cast<int>(i) != stream_index_) fmt_->streams[i]->discard = AVDISCARD_ALL;
}

Demuxer::~Demuxer() { release(); }

int64_t indexed_keyframes(const AVStream* st, int64_t stop_at) {
#if LIBAVFORMAT_VERSION_INT >= AV_VERSION_INT(58, 78, 100)
  auto* s = const_cast<AVStream*>(st);
  const int n = avformat_index_get_entries_count(s);
  if (n <= 0 || st->nb_frames <= 0 || static_cast<int64_t>(n) != st->nb_frames) return -1;
  int64_t keys = 0;
  for (int i = 0; i < n && keys < stop_at; ++i) {
    const AVIndexEntry* e = avformat_index_get_entry(s, i);
    if (!e) return -1;
    if (e->flags & AVINDEX_KEYFRAME) ++keys;
  }
  return keys;
#else
  (void)st;
  (void)stop_at;
  return -1;
#endif
}

void Demuxer::release() {
  void* opaque = avio_ ? avio_->opaque : nullptr;
  if (fmt_) avformat_close_input(&fmt_);
  fmt_ = nullptr;
  if (avio_) {
    av_freep(&avio_->buffer);
    avio_context_free(&avio_);
  }
  avio_ = nullptr;
  if (!source_.push) delete static_cast<std::pair<const std::string*, int64_t*>*>(opaque);  // push: owned by source_
}

bool Demuxer::read(AVPacket* pkt) {
  for (;;) {
    av_packet_unref(pkt);
    int ret = av_read_frame(fmt_, pkt);
    if (ret == AVERROR_EOF) {
      // The container's sample table promised more packets than the data holds: the file was cut.
      const int64_t promised = fmt_->streams[stream_index_]->nb_frames;
      if (promised > 0 && packets_read_ < promised) truncated_ = true;
      return false;
    }
    if (ret == AVERROR(EAGAIN)) continue;
    if (ret < 0) {
      ++read_errors_;
      truncated_ = true;
      return false;
    }
    if (pkt->stream_index != stream_index_) continue;
    ++packets_read_;
    if (pkt->flags & AV_PKT_FLAG_CORRUPT) ++read_errors_;
    return true;
  }
}

}  // namespace ov2

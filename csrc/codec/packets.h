// The packet table of a video stream: demux only, no decoding (DESIGN §3.1, §4.1).
#pragma once
#include <cstdint>
#include <vector>

#include "codec/demux.h"

namespace ov2 {

struct PacketTable {
  std::vector<double> pts_s, dts_s;  // seconds; NaN where missing
  std::vector<int64_t> pts;          // raw pts in stream time base (AV_NOPTS_VALUE where missing)
  std::vector<int64_t> size;         // bytes
  std::vector<uint8_t> keyframe;     // container key flag
  std::vector<char> pict_type;       // 'I', 'P', 'B' from the codec's parser; '?' where it does not know
  std::vector<int8_t> reference;     // 1 used for reference, 0 not, -1 unknown (H.264 / HEVC NAL headers)
  std::vector<uint8_t> safe_start;   // decoding may start here with identical output (IDR / intra-only GOP)
  bool truncated = false;
  int read_errors = 0;
  size_t count() const { return size.size(); }
};

// Reads every packet of the demuxer's stream from the current position.
// `with_parser`: also run FFmpeg's bitstream parser to learn each packet's picture type.
PacketTable read_packet_table(Demuxer& demuxer, bool with_parser = true);

// Per-packet classification shared by the packet table and the frame reader.
struct PacketClassifier {
  explicit PacketClassifier(const AVStream* st);
  // Fills reference / safe_start for one packet.
  void classify(const AVPacket* pkt, int8_t* reference, uint8_t* safe_start) const;
  AVCodecID codec;
  int length_size = 0;
  bool no_reordering = false;  // the stream has no B-frames: every key packet starts a closed GOP
};

}  // namespace ov2

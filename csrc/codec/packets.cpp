#include "codec/packets.h"

#include <cmath>
#include <limits>

#include "codec/nal.h"

namespace ov2 {

PacketClassifier::PacketClassifier(const AVStream* st) : codec(st->codecpar->codec_id) {
  length_size = nal_length_size(codec, st->codecpar->extradata, st->codecpar->extradata_size);
  no_reordering = st->codecpar->video_delay == 0;
}

void PacketClassifier::classify(const AVPacket* pkt, int8_t* reference, uint8_t* safe_start) const {
  const bool key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
  if (codec == AV_CODEC_ID_H264 || codec == AV_CODEC_ID_HEVC) {
    const NalInfo n = scan_nal_units(codec, pkt->data, static_cast<size_t>(pkt->size), length_size);
    *reference = static_cast<int8_t>(n.reference);
    *safe_start = key && n.idr ? 1 : 0;
    return;
  }
  *reference = -1;
  const bool intra_only_ok = codec == AV_CODEC_ID_MPEG4 || codec == AV_CODEC_ID_MPEG1VIDEO ||
                             codec == AV_CODEC_ID_MPEG2VIDEO || codec == AV_CODEC_ID_H263 ||
                             codec == AV_CODEC_ID_MJPEG || codec == AV_CODEC_ID_VP8 || codec == AV_CODEC_ID_VP9;
  *safe_start = key && no_reordering && intra_only_ok ? 1 : 0;
}

PacketTable read_packet_table(Demuxer& dm, bool with_parser) {
  PacketTable t;
  AVStream* st = dm.stream();
  const double tb = av_q2d(st->time_base);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  PacketClassifier cls(st);

  AVCodecParserContext* parser = with_parser ? av_parser_init(st->codecpar->codec_id) : nullptr;
  CodecContextPtr pctx;
  if (parser) {
    parser->flags |= PARSER_FLAG_COMPLETE_FRAMES;
    pctx.reset(avcodec_alloc_context3(nullptr));
    if (!pctx || avcodec_parameters_to_context(pctx.get(), st->codecpar) < 0) {
      av_parser_close(parser);
      parser = nullptr;
    }
  }
  PacketPtr pkt = make_packet();
  while (dm.read(pkt.get())) {
    if (pkt->size <= 0) continue;
    t.pts.push_back(pkt->pts);
    t.pts_s.push_back(pkt->pts == AV_NOPTS_VALUE ? nan : pkt->pts * tb);
    t.dts_s.push_back(pkt->dts == AV_NOPTS_VALUE ? nan : pkt->dts * tb);
    t.size.push_back(pkt->size);
    t.keyframe.push_back((pkt->flags & AV_PKT_FLAG_KEY) ? 1 : 0);
    int8_t ref;
    uint8_t safe;
    cls.classify(pkt.get(), &ref, &safe);
    t.reference.push_back(ref);
    t.safe_start.push_back(safe);
    char pt = '?';
    if (parser) {
      uint8_t* out = nullptr;
      int out_size = 0;
      av_parser_parse2(parser, pctx.get(), &out, &out_size, pkt->data, pkt->size, pkt->pts, pkt->dts, pkt->pos);
      switch (parser->pict_type) {
        case AV_PICTURE_TYPE_I: pt = 'I'; break;
        case AV_PICTURE_TYPE_P: pt = 'P'; break;
        case AV_PICTURE_TYPE_B: pt = 'B'; break;
        case AV_PICTURE_TYPE_S: pt = 'P'; break;  // MPEG-4 GMC P-VOP, as frames report it
        case AV_PICTURE_TYPE_SI: pt = 'I'; break;
        case AV_PICTURE_TYPE_SP: pt = 'P'; break;
        default: pt = '?';
      }
    }
    t.pict_type.push_back(pt);
  }
  if (parser) av_parser_close(parser);
  t.truncated = dm.truncated();
  t.read_errors = dm.read_errors();
  return t;
}

}  // namespace ov2

// Minimal H.264 / HEVC NAL unit scanning of a packet: is it an IDR access unit, is it used for reference.
// Handles both length-prefixed (MP4/MKV "avcC"/"hvcC") and Annex B (start code) packets.
#pragma once
#include <cstddef>
#include <cstdint>

#include "codec/ffmpeg.h"

namespace ov2 {

struct NalInfo {
  bool has_vcl = false;  // a coded slice was found
  bool idr = false;      // an IDR slice (H.264 type 5; HEVC IDR_W_RADL / IDR_N_LP)
  int reference = -1;    // 1: used for reference, 0: not, -1: unknown
};

// Bytes of the NAL length prefix from the codec's extradata (0: Annex B).
int nal_length_size(AVCodecID codec, const uint8_t* extradata, int extradata_size);

NalInfo scan_nal_units(AVCodecID codec, const uint8_t* data, size_t size, int length_size);

}  // namespace ov2

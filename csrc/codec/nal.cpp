#include "codec/nal.h"

namespace ov2 {
namespace {

void inspect(AVCodecID codec, const uint8_t* nal, size_t n, NalInfo& info) {
  if (n < 1) return;
  if (codec == AV_CODEC_ID_H264) {
    const int type = nal[0] & 0x1f, ref_idc = (nal[0] >> 5) & 3;
    if (type == 1 || type == 5) {
      if (!info.has_vcl) info.reference = ref_idc != 0 ? 1 : 0;
      info.has_vcl = true;
      if (type == 5) info.idr = true;
    }
  } else if (codec == AV_CODEC_ID_HEVC) {
    const int type = (nal[0] >> 1) & 0x3f;
    if (type <= 31) {
      if (!info.has_vcl) info.reference = (type <= 14 && (type % 2) == 0) ? 0 : 1;  // *_N types: sub-layer non-ref
      info.has_vcl = true;
      if (type == 19 || type == 20) info.idr = true;
    }
  }
}

}  // namespace

int nal_length_size(AVCodecID codec, const uint8_t* ed, int n) {
  if (!ed || n < 7) return 0;
  if (codec == AV_CODEC_ID_H264 && ed[0] == 1) return (ed[4] & 3) + 1;
  if (codec == AV_CODEC_ID_HEVC && n >= 23 && (ed[0] == 1 || ed[0] == 0) && !(ed[0] == 0 && ed[1] == 0 && ed[2] <= 1))
    return (ed[21] & 3) + 1;
  return 0;
}

NalInfo scan_nal_units(AVCodecID codec, const uint8_t* data, size_t size, int length_size) {
  NalInfo info;
  if (!data) return info;
  if (length_size > 0) {
    size_t pos = 0;
    while (pos + static_cast<size_t>(length_size) <= size) {
      size_t len = 0;
      for (int i = 0; i < length_size; ++i) len = (len << 8) | data[pos + i];
      pos += static_cast<size_t>(length_size);
      if (len == 0 || len > size - pos) break;
      inspect(codec, data + pos, len, info);
      pos += len;
    }
    return info;
  }
  // Annex B: find 00 00 01 start codes.
  size_t i = 0;
  while (i + 3 <= size) {
    if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1) {
      const size_t start = i + 3;
      size_t j = start;
      while (j + 3 <= size && !(data[j] == 0 && data[j + 1] == 0 && (data[j + 2] == 1 || data[j + 2] == 0))) ++j;
      if (j + 3 > size) j = size;
      inspect(codec, data + start, j - start, info);
      i = j;
    } else {
      ++i;
    }
  }
  return info;
}

}  // namespace ov2

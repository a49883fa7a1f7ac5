// DESIGN §5.3 on the GPU (gop_partition.cu, math in gop_math.cuh): one thread block per video, many videos per
// launch. Bin energies are summed by one thread per bin in packet order (bit-identical to the CPU); the trigger /
// valley walk is sequential per video.
#pragma once

#include <vector>

#include "cuda/common.h"
#include "tokenize/gop_partition.h"

namespace ov2::cuda {

struct GopVideo {              // one video of a batch (offsets into the concatenated arrays)
  int64_t packet_offset = 0, num_packets = 0;
  int64_t bin_offset = 0, num_bins = 0;
  double t0 = 0.0, delta = 0.5;
  int64_t l_min = 1, l_max = 1, radius = 3, k_tar = 8;
};

// Device pointers: videos [V]; pts/value/pict/key concatenated packets (value = bytes or log1p(bytes));
// energy [Σ num_bins]; start/end/trigger/cost [V · cap]; num_groups/theta/flags/num_pb [V].
// num_groups[v] = −1 when cap is too small for video v.
Status gop_partition_batch(int64_t num_videos, const GopVideo* videos, const double* pts, const double* value,
                           const uint8_t* pict, const uint8_t* key, double* energy, int64_t cap, int64_t* start,
                           int64_t* end, int64_t* trigger, double* cost, int64_t* num_groups, double* theta,
                           int32_t* flags, int64_t* num_pb, Stream stream);

// Host arrays of one video (as tok::gop_partition takes them).
struct GopHostVideo {
  const double* pts_s = nullptr;
  const int64_t* size = nullptr;
  const uint8_t* pict_type = nullptr;  // nullable
  const uint8_t* keyframe = nullptr;   // nullable
  int64_t n = 0;
  ov2::tok::GopParams params;
};

// Validates and prepares every video like tok::gop_partition, runs one batched launch, returns the results in
// tok::GopResult form (synchronises the stream).
Status gop_partition(const std::vector<GopHostVideo>& videos, std::vector<ov2::tok::GopResult>* out, Stream stream);

}  // namespace ov2::cuda

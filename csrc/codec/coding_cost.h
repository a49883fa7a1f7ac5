// Per-4x4-cell coding-cost proxy (DESIGN §4.4). Stock FFmpeg exports no per-block bit counts, so ov2 uses
// the partition density of the cell's macroblock (16x16 -> 1 ... 8x8 -> 4; finer partitions are not exported),
// plus a fixed cost for intra cells, scaled by 2^((QP_frame - QP_block) / 6) when the decoder exports per-block
// QP (venc_params), then normalised per frame by its 95th percentile and clipped to [0, 1].
#pragma once
#include <cstdint>

#include "codec/ffmpeg.h"
#include "codec/motion.h"

namespace ov2 {

constexpr float kIntraCellCost = 8.0f;

// `frame` supplies the optional AV_FRAME_DATA_VIDEO_ENC_PARAMS side data (nullable).
void coding_cost(const MotionField& field, bool intra_frame, const AVFrame* frame, float* out);

// numpy-compatible percentile (linear interpolation between closest ranks) of n values; `scratch` is reordered.
float percentile_linear(float* values, size_t n, double q);

}  // namespace ov2

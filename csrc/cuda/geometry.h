// DESIGN §5.1 on the GPU (kernels in geometry.cu, math in geometry_math.cuh): the two resizes of
// csrc/tokenize/geometry.h, batched over n images. Device pointers, C-contiguous. Canvas size stays host work
// (tok::canvas_size: a few integer steps per video).
#pragma once

#include "cuda/common.h"

namespace ov2::cuda {

// n images [sh, sw, ch] uint8 → [dh, dw, ch] (tok::resize_bilinear_u8 per image, bit-identical).
Status resize_bilinear_u8(const uint8_t* src, int64_t n, int64_t sh, int64_t sw, int64_t ch, uint8_t* dst, int64_t dh,
                          int64_t dw, Stream stream);

// n maps [sh, sw] float32 → [dh, dw] (tok::resize_area_f32 per map, bit-identical).
Status resize_area_f32(const float* src, int64_t n, int64_t sh, int64_t sw, float* dst, int64_t dh, int64_t dw,
                       Stream stream);

// Dense grouped area taps (geometry_math.cuh) of one axis into device buffers: start[ng], count[ng],
// weight[ng · stride], ng = dn / group, stride = max_group_span(sn, dn, group).
Status grouped_taps(int64_t sn, int64_t dn, int64_t group, int64_t* start, int32_t* count, double* weight,
                    int64_t stride, Stream stream);

}  // namespace ov2::cuda

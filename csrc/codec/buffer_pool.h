// A small cache of large output buffers.
//
// Every decoded frame hands its products (residual, luma, RGB, ...) to Python as fresh arrays. Allocating them
// with malloc costs page faults on every frame: blocks this large come from mmap or from a heap that glibc trims
// again when they are freed, so the kernel zero-fills the same megabytes frame after frame (about a sixth of the
// time of a 720p residual read). Freed blocks of at least kMinBytes are kept here instead, up to kMaxCached
// blocks and kMaxCachedBytes in all (4 blocks, 16 MiB), and handed out again for requests of the same rounded size. The memory held
// is bounded; the contents of a reused block are unspecified (callers overwrite it, like malloc's).
#pragma once
#include <cstddef>

namespace ov2 {

// At least `bytes` (rounded up to 4 KiB when large), aligned to 64 bytes; nullptr when out of memory.
void* pool_alloc(size_t bytes);
// Returns a block from pool_alloc (nullptr is ignored). Thread-safe; may be called from any thread.
void pool_free(void* p);
// Bytes currently cached (for tests).
size_t pool_cached_bytes();

}  // namespace ov2

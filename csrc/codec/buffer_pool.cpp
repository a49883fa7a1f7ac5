#include "codec/buffer_pool.h"

#include <pthread.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace ov2 {
namespace {

constexpr size_t kHeader = 64;                  // holds the block size; keeps the payload 64-byte aligned
constexpr size_t kMinBytes = size_t(64) << 10;  // smaller blocks are left to malloc
constexpr size_t kMaxCached = 4;
constexpr size_t kMaxCachedBytes = size_t(16) << 20;

struct Pool {
  std::mutex mu;
  std::vector<void*> free_blocks;  // raw blocks (header first)
  size_t cached = 0;
};

Pool& pool();
void pool_lock();
void pool_unlock();

Pool* make_pool() {
  Pool* p = new Pool();  // never destroyed: buffers may be freed by Python after static destruction
  // A fork while another thread holds the lock would leave the child's pool locked forever.
  pthread_atfork([] { pool_lock(); }, [] { pool_unlock(); }, [] { pool_unlock(); });
  return p;
}

Pool& pool() {
  static Pool* p = make_pool();
  return *p;
}

void pool_lock() { pool().mu.lock(); }
void pool_unlock() { pool().mu.unlock(); }

size_t block_size(const void* raw) { return *static_cast<const size_t*>(raw); }

}  // namespace

void* pool_alloc(size_t bytes) {
  size_t size = bytes + kHeader;
  if (size >= kMinBytes) {
    size = (size + 4095) & ~size_t(4095);
    Pool& p = pool();
    std::lock_guard<std::mutex> lk(p.mu);
    for (size_t i = 0; i < p.free_blocks.size(); ++i) {
      void* raw = p.free_blocks[i];
      if (block_size(raw) == size) {
        p.free_blocks[i] = p.free_blocks.back();
        p.free_blocks.pop_back();
        p.cached -= size;
        return static_cast<char*>(raw) + kHeader;
      }
    }
  }
  void* raw = std::aligned_alloc(64, (size + 63) & ~size_t(63));
  if (!raw) return nullptr;
  *static_cast<size_t*>(raw) = size;
  return static_cast<char*>(raw) + kHeader;
}

void pool_free(void* p) {
  if (!p) return;
  void* raw = static_cast<char*>(p) - kHeader;
  const size_t size = block_size(raw);
  if (size >= kMinBytes && size <= kMaxCachedBytes) {
    Pool& pl = pool();
    std::lock_guard<std::mutex> lk(pl.mu);
    // Room is made by dropping the oldest cached blocks (sizes change when the video does).
    while (!pl.free_blocks.empty() &&
           (pl.free_blocks.size() >= kMaxCached || pl.cached + size > kMaxCachedBytes)) {
      void* old = pl.free_blocks.front();
      pl.cached -= block_size(old);
      pl.free_blocks.erase(pl.free_blocks.begin());
      std::free(old);
    }
    pl.free_blocks.push_back(raw);
    pl.cached += size;
    return;
  }
  std::free(raw);
}

size_t pool_cached_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lk(p.mu);
  return p.cached;
}

}  // namespace ov2

// Helpers of the .cu files (nvcc only).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "cuda/common.h"

namespace ov2::cuda {

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

inline Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return Status::error(static_cast<int>(e), std::string(what) + ": " + cudaGetErrorString(e));
}

// The error of the last launch (clears it).
inline Status launched(const char* kernel) { return check(cudaGetLastError(), kernel); }

inline unsigned grid_for(int64_t n, int threads) {
  const int64_t g = (n + threads - 1) / threads;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 2147483647 ? 2147483647 : g));
}

// Stream-ordered scratch that frees itself (cudaFreeAsync) on scope exit.
struct Scratch {
  void* ptr = nullptr;
  cudaStream_t stream = nullptr;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (ptr) cudaFreeAsync(ptr, stream);
  }
  Status allocate(size_t bytes, cudaStream_t s, const char* what) {
    stream = s;
    if (bytes == 0) bytes = 1;
    return check(cudaMallocAsync(&ptr, bytes, s), what);
  }
  template <class T>
  T* as() const { return static_cast<T*>(ptr); }
};

#define OV2_TRY(expr)                   \
  do {                                  \
    ::ov2::cuda::Status st_ = (expr);   \
    if (!st_.ok()) return st_;          \
  } while (0)

}  // namespace ov2::cuda

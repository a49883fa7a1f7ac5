// Host API of the CUDA kernels (csrc/cuda): plain C++ types only, so g++-compiled code (the bindings) can include
// the launcher headers without the CUDA headers. Every launcher takes raw device pointers, sizes and a stream
// (a cudaStream_t passed as void*, null = the legacy default stream), enqueues its kernels and returns a
// Status; nothing aborts. Launchers that return host results (allocate, gop_partition) synchronise the stream.
#pragma once

#include <cstdint>
#include <string>

namespace ov2::cuda {

using Stream = void*;

struct Status {
  int code = 0;  // 0 = success, else the cudaError_t value (or −1 for bad arguments)
  std::string message;
  bool ok() const { return code == 0; }
  static Status error(int c, std::string m) { return Status{c, std::move(m)}; }
  static Status bad_argument(std::string m) { return Status{-1, std::move(m)}; }
};

// Number of usable CUDA devices; 0 (and the reason in *why) when there is no driver or no device.
int device_count(std::string* why);

// Name of the current device ("" when none).
std::string device_name();

// Waits for the stream; reports any asynchronous kernel error.
Status synchronize(Stream stream);

}  // namespace ov2::cuda

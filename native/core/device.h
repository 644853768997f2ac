// native/core/device.h — CUDA device memory and the stream, for the N-API layer and the layers.
// cuda/runtime.cu implements it in CUDA builds (nvcc, or g++ against cuda/emu for the emulated
// addon); native/core/no_cuda.cc in CPU-only builds, where cuda_status() says why and every other
// function fails with ERR_BACKEND.
//
// One device (the first visible one) and one non-blocking stream per process: every op, copy
// and memset is ordered on it, so memory freed to the cache after its last use was enqueued can be
// handed out again at once (the caching allocator's rule, as PyTorch's). Sticky CUDA errors (a
// kernel's illegal address, a trap) mark the backend lost: every later CUDA call fails with
// ERR_BACKEND saying so; CPU work goes on.
#pragma once
#include <cstdint>
#include <string>

namespace seqfuse {

struct CudaStatus {
  bool available = false;
  std::string reason;   // why not available (empty when available)
  std::string device;   // the device's name
  int cc_major = 0, cc_minor = 0;
  int64_t total_bytes = 0;
  bool emulated = false;  // the kernels run on the CPU through cuda/emu (a test build)
  std::string lost;       // non-empty once a sticky error lost the backend: what happened
};

// Initializes on first use; never throws.
CudaStatus cuda_status();

struct CudaMemoryStats {
  int64_t allocated = 0;  // bytes in live blocks
  int64_t reserved = 0;   // bytes held from the driver (live + cached)
};

// Device memory of at least `bytes` bytes from the caching allocator (256-byte aligned). ERR_OOM
// naming `op` when the device has no room even after the cache is emptied; ERR_BACKEND when CUDA
// is unavailable or lost.
void* device_alloc(int64_t bytes, const char* op);
// Gives a block back to the cache (null: nothing). Never throws.
void device_free(void* p) noexcept;
// `bytes` bytes from src to dst, either of them host or device memory (unified addressing),
// ordered on the stream; the host waits for it when `wait` (needed when host memory is involved).
void device_copy(void* dst, const void* src, int64_t bytes, bool wait, const char* op);
// Zeroes `bytes` bytes of device memory, on the stream.
void device_zero(void* p, int64_t bytes, const char* op);
// Waits for the stream; a kernel's failure surfaces here as ERR_BACKEND naming `op`.
void device_synchronize(const char* op);
CudaMemoryStats device_memory();
// Returns the cached blocks to the driver (waits for the stream first).
void device_empty_cache();
// ERR_BACKEND naming `op` unless CUDA is available and not lost.
void device_require(const char* op);

}  // namespace seqfuse

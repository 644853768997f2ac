// cuda/runtime.cu — native/core/device.h on the CUDA runtime: the device (the first visible one),
// the process's one non-blocking stream (core/dispatch.h current_stream), the caching allocator,
// copies, and the lost state after a sticky error. Under g++ it builds against cuda/emu, whose
// "device memory" is host memory and whose launches run at once: the emulated addon the tests use.
//
// Allocator: sizes round up to 512 bytes (to 2 MiB above 1 MiB); a freed block goes to a free list
// keyed by size and serves a later request whose rounded size it exceeds by at most a quarter. All work is ordered on the one stream, so a block freed after its last use was
// enqueued may be handed out at once. When cudaMalloc fails, the cache is returned to the driver
// (after a stream sync) and the allocation retried once; then ERR_OOM.
#include <atomic>
#include <map>
#include <mutex>
#include <unordered_map>
#include "common.cuh"
#include "core/device.h"
#include "core/dispatch.h"

namespace seqfuse {

namespace {

struct Runtime {
  std::mutex mu;
  bool initialized = false;
  CudaStatus status;
  // available and not lost: device_require's check without the lock (it runs for every CUDA
  // tensor argument)
  std::atomic<bool> usable{false};
  cudaStream_t stream = nullptr;
  std::multimap<size_t, void*> free_blocks;    // size -> block
  std::unordered_map<void*, size_t> live;      // block -> size
  int64_t allocated = 0, reserved = 0;
};

// Leaked on purpose: blocks may be freed by finalizers while the process exits.
Runtime& rt() {
  static Runtime* r = new Runtime();
  return *r;
}

// Errors after which the CUDA context is unusable (the CUDA runtime's sticky errors).
bool sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress: case cudaErrorLaunchFailure: case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction: case cudaErrorMisalignedAddress: case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc: case cudaErrorAssert: case cudaErrorLaunchTimeout: case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

const char* kLostHint = "the CUDA backend is lost until the process restarts (CPU tensors still work)";

// Called with r.mu held: turns a failed CUDA call into a SeqfuseError, marking the backend lost
// when the error is sticky.
[[noreturn]] void raise_locked(Runtime& r, cudaError_t e, const char* op, const char* what) {
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    fail(ErrorCode::OOM, op, ": ", what, ": out of CUDA memory");
  }
  if (sticky(e)) {
    r.usable = false;
    r.status.lost = std::string(op) + ": " + what + ": " + cudaGetErrorString(e);
    fail(ErrorCode::Backend, op, ": ", what, ": ", cudaGetErrorString(e), "; ", kLostHint);
  }
  (void)cudaGetLastError();  // not sticky: clear it
  fail(ErrorCode::Backend, op, ": ", what, ": ", cudaGetErrorString(e));
}

void init_locked(Runtime& r) {
  if (r.initialized) return;
  r.initialized = true;
  CudaStatus& s = r.status;
#if defined(__CUDACC__)
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    s.reason = e != cudaSuccess ? std::string("no usable CUDA device (") + cudaGetErrorString(e) +
                                      "; is the NVIDIA driver installed and a GPU visible?)"
                                : std::string("no CUDA device is visible (check CUDA_VISIBLE_DEVICES)");
    (void)cudaGetLastError();
    return;
  }
  cudaDeviceProp p;
  if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess ||
      (e = cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking)) != cudaSuccess) {
    s.reason = std::string("CUDA device 0 could not be initialized: ") + cudaGetErrorString(e);
    (void)cudaGetLastError();
    return;
  }
  s.device = p.name;
  s.cc_major = p.major;
  s.cc_minor = p.minor;
  s.total_bytes = int64_t(p.totalGlobalMem);
  if (p.major < 8) {
    s.reason = s.device + " has compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
               "; seqfuse's CUDA kernels need 8.0 (Ampere) or newer";
    return;
  }
#else
  s.device = "seqfuse CUDA emulator (cuda/emu: the kernels run on the CPU)";
  s.cc_major = 8;
  s.emulated = true;
#endif
  s.available = true;
  r.usable = true;
}

// Called with r.mu held.
void require_locked(Runtime& r, const char* op) {
  init_locked(r);
  if (!r.status.available) fail(ErrorCode::Backend, op, ": CUDA is not available: ", r.status.reason);
  if (!r.status.lost.empty()) fail(ErrorCode::Backend, op, ": ", kLostHint, " (after ", r.status.lost, ")");
}

size_t rounded(int64_t bytes) {
  const size_t b = size_t(bytes > 0 ? bytes : 1);
  const size_t q = b <= (size_t(1) << 20) ? 512 : size_t(2) << 20;
  return (b + q - 1) / q * q;
}

// Frees every cached block (waits for the stream first). With r.mu held.
void empty_cache_locked(Runtime& r) {
  if (r.free_blocks.empty()) return;
  if (r.status.lost.empty()) cudaStreamSynchronize(r.stream);
  for (auto& [size, p] : r.free_blocks) {
    if (r.status.lost.empty()) cudaFree(p);
    r.reserved -= int64_t(size);
  }
  r.free_blocks.clear();
}

}  // namespace

Stream current_stream() { return Stream{rt().stream}; }

CudaStatus cuda_status() {
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mu);
  init_locked(r);
  return r.status;
}

void device_require(const char* op) {
  Runtime& r = rt();
  if (r.usable.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(r.mu);
  require_locked(r, op);
}

void* device_alloc(int64_t bytes, const char* op) {
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mu);
  require_locked(r, op);
  const size_t n = rounded(bytes);
  auto it = r.free_blocks.lower_bound(n);
  void* p = nullptr;
  size_t size = n;
  if (it != r.free_blocks.end() && it->first <= n + n / 4) {
    size = it->first;
    p = it->second;
    r.free_blocks.erase(it);
  } else {
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      empty_cache_locked(r);
      e = cudaMalloc(&p, n);
    }
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      fail(ErrorCode::OOM, op, ": cannot allocate ", bytes, " bytes of CUDA memory (", r.allocated,
           " bytes are in use by live tensors; dispose tensors you no longer need)");
    }
    if (e != cudaSuccess) raise_locked(r, e, op, "cudaMalloc");
    r.reserved += int64_t(n);
  }
  r.live.emplace(p, size);
  r.allocated += int64_t(size);
  return p;
}

void device_free(void* p) noexcept {
  if (!p) return;
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.live.find(p);
  if (it == r.live.end()) return;
  r.allocated -= int64_t(it->second);
  r.free_blocks.emplace(it->second, p);
  r.live.erase(it);
}

// The stream after the usability check (the lock is not held while the host waits on it: a
// finalizer freeing a block on the JS thread must not wait for an async op's kernels).
static cudaStream_t usable_stream(Runtime& r, const char* op) {
  std::lock_guard<std::mutex> lock(r.mu);
  require_locked(r, op);
  return r.stream;
}

[[noreturn]] static void fail_cuda(Runtime& r, cudaError_t e, const char* op, const char* what) {
  std::lock_guard<std::mutex> lock(r.mu);
  raise_locked(r, e, op, what);
}

void device_copy(void* dst, const void* src, int64_t bytes, bool wait, const char* op) {
  Runtime& r = rt();
  cudaStream_t stream = usable_stream(r, op);
  if (bytes <= 0) return;
  cudaError_t e = cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDefault, stream);
  if (e == cudaSuccess && wait) e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) fail_cuda(r, e, op, "copying between host and device");
}

void device_zero(void* p, int64_t bytes, const char* op) {
  Runtime& r = rt();
  cudaStream_t stream = usable_stream(r, op);
  if (bytes <= 0) return;
  const cudaError_t e = cudaMemsetAsync(p, 0, size_t(bytes), stream);
  if (e != cudaSuccess) fail_cuda(r, e, op, "cudaMemsetAsync");
}

void device_synchronize(const char* op) {
  Runtime& r = rt();
  cudaStream_t stream = usable_stream(r, op);
  cudaError_t e = cudaStreamSynchronize(stream);
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e != cudaSuccess) fail_cuda(r, e, op, "a CUDA kernel failed");
}

CudaMemoryStats device_memory() {
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mu);
  return {r.allocated, r.reserved};
}

void device_empty_cache() {
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mu);
  empty_cache_locked(r);
}

}  // namespace seqfuse

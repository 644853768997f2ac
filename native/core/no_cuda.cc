// native/core/no_cuda.cc — native/core/device.h for builds without the CUDA backend: the status
// says why, everything else fails with ERR_BACKEND (Tensor creation on 'cuda' checks the status
// first, so users see the reason before any of these runs).
#include "core/device.h"
#include "core/error.h"

namespace seqfuse {

static const char kNoCuda[] =
    "this build of seqfuse has no CUDA backend (it was built without nvcc, or with SEQFUSE_CUDA=0); "
    "rebuild with the CUDA toolkit on PATH (npm rebuild seqfuse), or use device 'cpu'";

CudaStatus cuda_status() {
  CudaStatus s;
  s.reason = kNoCuda;
  return s;
}

[[noreturn]] static void no_cuda(const char* op) { fail(ErrorCode::Backend, op, ": ", kNoCuda); }

void device_require(const char* op) { no_cuda(op); }
void* device_alloc(int64_t, const char* op) { no_cuda(op); }
void device_free(void*) noexcept {}
void device_copy(void*, const void*, int64_t, bool, const char* op) { no_cuda(op); }
void device_zero(void*, int64_t, const char* op) { no_cuda(op); }
void device_synchronize(const char* op) { no_cuda(op); }
CudaMemoryStats device_memory() { return {}; }
void device_empty_cache() {}

}  // namespace seqfuse

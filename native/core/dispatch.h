// native/core/dispatch.h — the device switch every op header uses, and nothing else does.
// SF_DISPATCH(layernorm_fwd, a) calls layernorm_fwd_cpu(a) or layernorm_fwd_cuda(a, stream).
// Builds without CUDA compile the CUDA arm into a clear ERR_BACKEND instead of a link error.
#pragma once
#include "core/dtype.h"
#include "core/error.h"

namespace seqfuse {

struct Stream { void* handle = nullptr; };  // cudaStream_t on the CUDA backend
Stream current_stream();

[[noreturn]] inline void fail_no_cuda(const char* op) {
  fail(ErrorCode::Backend, op, ": this build of seqfuse has no CUDA backend "
       "(rebuild with nvcc available and SEQFUSE_CUDA unset, or use device 'cpu')");
}

}  // namespace seqfuse

#if defined(SEQFUSE_CUDA) && SEQFUSE_CUDA
#define SF_CUDA_ARM(fn, a) fn##_cuda(a, ::seqfuse::current_stream())
#else
#define SF_CUDA_ARM(fn, a) ::seqfuse::fail_no_cuda(#fn)
#endif

#define SF_DISPATCH(fn, a)                                   \
  do {                                                       \
    switch ((a).device) {                                    \
      case ::seqfuse::Device::CPU: fn##_cpu(a); return;      \
      case ::seqfuse::Device::CUDA: SF_CUDA_ARM(fn, a); return; \
    }                                                        \
    ::seqfuse::fail(::seqfuse::ErrorCode::Device, #fn ": unknown device"); \
  } while (0)

// cuda/common.cuh — what every op family's kernels share: f32 <-> element-type conversions
// (round to nearest even on store, as the CPU backend), the launch-error check that turns a
// failed launch into a SeqfuseError (ERR_BACKEND), stream-ordered scratch memory, and warp/block
// reductions.
#pragma once
#include <cstring>
#include "launch.h"
#include "core/dtype.h"
#include "core/error.h"

// Full unrolling of a loop with a constant trip count (per-thread arrays indexed by the loop
// variable then stay in registers); g++ (the emulator) does not know the pragma.
#if defined(__CUDACC__)
#define SF_UNROLL _Pragma("unroll")
#else
#define SF_UNROLL
#endif

namespace seqfuse {
namespace gpu {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// 16 bytes at p (16-byte aligned) as 16 / sizeof(T) values: one vector access under nvcc; memcpy
// on the host (the emulator), where reading a float through a uint4 would break g++'s aliasing rules.
template <class T>
__device__ __forceinline__ void load16(const T* p, T (&e)[16 / sizeof(T)]) {
#if defined(__CUDACC__)
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  memcpy(e, &u, 16);
#else
  memcpy(e, p, 16);
#endif
}
template <class T>
__device__ __forceinline__ void store16(T* p, const T (&e)[16 / sizeof(T)]) {
#if defined(__CUDACC__)
  uint4 u;
  memcpy(&u, e, 16);
  *reinterpret_cast<uint4*>(p) = u;
#else
  memcpy(p, e, 16);
#endif
}

// N consecutive elements at p as f32 / from f32. When N elements are 16 bytes (4 f32, 8 f16/bf16)
// it is one 16-byte access, and p must be 16-byte aligned; otherwise N scalar accesses.
template <int N, class T>
__device__ __forceinline__ void load_f32(const T* p, float* v) {
  if constexpr (N * sizeof(T) == 16) {
    T e[N];
    load16(p, e);
    for (int k = 0; k < N; ++k) v[k] = to_f32(e[k]);
  } else {
    for (int k = 0; k < N; ++k) v[k] = to_f32(p[k]);
  }
}
template <int N, class T>
__device__ __forceinline__ void store_f32(T* p, const float* v) {
  if constexpr (N * sizeof(T) == 16) {
    T e[N];
    for (int k = 0; k < N; ++k) e[k] = from_f32<T>(v[k]);
    store16(p, e);
  } else {
    for (int k = 0; k < N; ++k) p[k] = from_f32<T>(v[k]);
  }
}

// Whether p is aligned to `bytes` (a null pointer is: it is not accessed).
inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// f(T{}) with T the element type of dtype t (f32, f16, bf16); another dtype fails with ERR_DTYPE
// naming op. The families' *_cuda entries pick their kernels' T with it.
template <class F>
void with_float_type(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); return;
    case DType::F16: f(__half{}); return;
    case DType::BF16: f(__nv_bfloat16{}); return;
    default: fail(ErrorCode::DType, op, ": the CUDA kernels take f32, f16 or bf16");
  }
}

// After a launch: a launch error (bad configuration, no kernel image for this GPU) becomes
// ERR_BACKEND naming the op. Errors a kernel raises while running surface at the next sync.
inline void check_launch(const char* op) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(ErrorCode::Backend, op, ": CUDA launch failed: ", cudaGetErrorString(e));
}

// Stream-ordered device scratch of `bytes` bytes for one op call (cudaMallocAsync on `stream`),
// given back on the same stream when it goes out of scope, after the kernels queued before that
// (so also when the op throws). Failure to allocate is ERR_OOM naming the op.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t stream, const char* op) : stream_(stream) {
    if (cudaMallocAsync(&p_, bytes ? bytes : 1, stream) != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: clear it for the next launch check
      fail(ErrorCode::OOM, op, ": cannot allocate ", bytes, " bytes of CUDA scratch memory");
    }
  }
  ~Scratch() { cudaFreeAsync(p_, stream_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  // The scratch as T*, starting `byte_offset` bytes in.
  template <class T> T* as(size_t byte_offset = 0) const { return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset); }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_;
};

// Sum over the 32 lanes of a full warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `scratch` is 32 floats of shared memory; the block must reach this call together.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace gpu
}  // namespace seqfuse

// cuda/dropout.cu — bias + dropout + residual and plain dropout on CUDA (ops/dropout.h): the
// operation of native/cpu/dropout.cc with the same Philox stream (core/philox.h), so masks are the
// CPU's bit for bit and a backward on either backend recomputes the other's forward mask.
// Shapes: x, residual, y, dy, dx [rows, cols] row-major, n = rows * cols; bias, dbias [cols].
// Values are computed in f32 and rounded once to T on store (round to nearest even, as the CPU).
//
// Elementwise kernels: one thread per Philox call, which serves the 8 elements e = 8c .. 8c + 7 of
// the stream (e = offset + i); calls c cover [offset, offset + n), grid-stride over them;
// launch min(ceil(calls / 256), 4096) blocks x 256 threads, no shared memory. A thread's 8
// elements are consecutive, so a warp reads 256 consecutive elements per step.
// dbias: one thread per column adding its rows' f32 gradients in row order (deterministic; masks
// drawn again per element); a warp reads 32 consecutive columns of dy per row. Launch ceil(cols / 256) x 256. Simple
// rather than fast when cols is small (few threads, long loops): a split-rows two-pass reduction
// is the known improvement.
#include "common.cuh"
#include "core/philox.h"
#include "ops/dropout.h"

namespace seqfuse {
namespace {

using gpu::from_f32;
using gpu::to_f32;
using gpu::check_launch;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

// The stream's 8 16-bit values of Philox call c (all pass when t == 0: no draw at all).
struct Mask8 {
  Philox4 r;
  bool draw;
  __device__ __forceinline__ bool keep(int j, uint32_t t) const {
    return !draw || ((r.v[j >> 1] >> (16 * (j & 1))) & 0xFFFFu) >= t;
  }
};

__device__ __forceinline__ Mask8 mask8(uint64_t c, uint64_t seed, uint32_t t) {
  Mask8 m;
  m.draw = t > 0;
  if (m.draw) m.r = philox4x32_10(c, seed);
  return m;
}

// Grid-stride over the Philox calls c covering elements [offset, offset + n) of the stream, and
// f(m, j, i) for the call's elements e = 8c + j in the range (i = e - offset), m its mask bits.
template <class F>
__device__ __forceinline__ void for_each_element(int64_t n, uint64_t seed, uint64_t offset, uint32_t t, F f) {
  const uint64_t c0 = offset >> 3, c1 = (offset + uint64_t(n) + 7) >> 3;
  for (uint64_t c = c0 + uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < c1; c += uint64_t(gridDim.x) * blockDim.x) {
    const Mask8 m = mask8(c, seed, t);
    for (int j = 0; j < 8; ++j) {
      const uint64_t e = c * 8 + uint64_t(j);
      if (e >= offset && e - offset < uint64_t(n)) f(m, j, int64_t(e - offset));
    }
  }
}

// y = res + drop(x + bias)
template <class T>
__global__ void dropout_fwd_kernel(const T* x, const T* bias, const T* res, T* y, int64_t n, int64_t cols, uint32_t t,
                                   float scale, uint64_t seed, uint64_t offset) {
  for_each_element(n, seed, offset, t, [&](const Mask8& m, int j, int64_t i) {
    float v = to_f32(x[i]);
    if (bias) v = __fadd_rn(v, to_f32(bias[i % cols]));
    if (m.draw) v = m.keep(j, t) ? __fmul_rn(v, scale) : 0.0f;
    if (res) v = __fadd_rn(v, to_f32(res[i]));  // _rn: no contraction into an FMA, as the CPU
    y[i] = from_f32<T>(v);
  });
}

// dx = drop(dy)
template <class T>
__global__ void dropout_bwd_kernel(const T* dy, T* dx, int64_t n, uint32_t t, float scale, uint64_t seed, uint64_t offset) {
  for_each_element(n, seed, offset, t, [&](const Mask8& m, int j, int64_t i) {
    const float g = to_f32(dy[i]);
    dx[i] = from_f32<T>(m.draw ? (m.keep(j, t) ? __fmul_rn(g, scale) : 0.0f) : g);
  });
}

// dbias[j] (+)= sum over rows of dx[r, j] in f32 before dx's rounding to T (as the CPU), rows in
// order: each element's mask bits are drawn again (one Philox call per element, 8x the calls of
// the elementwise kernel; dbias is a small part of a backward).
template <class T>
__global__ void column_sum_kernel(const T* dy, T* dbias, int64_t rows, int64_t cols, bool accumulate, uint32_t t, float scale,
                                  uint64_t seed, uint64_t offset) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float s = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    float g = to_f32(dy[r * cols + j]);
    if (t > 0) {
      const uint64_t e = offset + uint64_t(r * cols + j);
      const Mask8 m = mask8(e >> 3, seed, t);
      g = m.keep(int(e & 7), t) ? __fmul_rn(g, scale) : 0.0f;
    }
    s = __fadd_rn(s, g);
  }
  dbias[j] = from_f32<T>(accumulate ? __fadd_rn(to_f32(dbias[j]), s) : s);
}

unsigned blocks_for(int64_t n, uint64_t offset) {
  const int64_t calls = int64_t(((offset + uint64_t(n) + 7) >> 3) - (offset >> 3));
  const int64_t b = (calls + kThreads - 1) / kThreads;
  return unsigned(b < kMaxBlocks ? b : kMaxBlocks);
}

template <class T>
void fwd(const DropoutArgs& a, cudaStream_t stream) {
  const int64_t n = a.rows * a.cols;
  const uint32_t t = dropout_threshold(a.p);
  SF_LAUNCH(dropout_fwd_kernel<T>, dim3(blocks_for(n, a.offset)), dim3(kThreads), 0, stream)(
      static_cast<const T*>(a.x), static_cast<const T*>(a.bias), static_cast<const T*>(a.residual), static_cast<T*>(a.y), n,
      a.cols, t, dropout_scale(t), a.seed, a.offset);
  check_launch("dropout");
}

template <class T>
void bwd(const DropoutArgs& a, cudaStream_t stream) {
  const int64_t n = a.rows * a.cols;
  const uint32_t t = dropout_threshold(a.p);
  // dbias first: it reads dy, which dx may be (in place)
  if (a.dbias && a.cols > 0) {  // rows == 0: dbias = 0 (or kept, accumulating), as the CPU
    SF_LAUNCH(column_sum_kernel<T>, dim3(unsigned((a.cols + kThreads - 1) / kThreads)), dim3(kThreads), 0, stream)(
        static_cast<const T*>(a.dy), static_cast<T*>(a.dbias), a.rows, a.cols, a.accumulate, t, dropout_scale(t), a.seed, a.offset);
    check_launch("dropoutBackward");
  }
  if (n == 0) return;
  SF_LAUNCH(dropout_bwd_kernel<T>, dim3(blocks_for(n, a.offset)), dim3(kThreads), 0, stream)(
      static_cast<const T*>(a.dy), static_cast<T*>(a.dx), n, t, dropout_scale(t), a.seed, a.offset);
  check_launch("dropoutBackward");
}

}  // namespace

void dropout_fwd_cuda(const DropoutArgs& a, Stream s) {
  if (a.rows * a.cols == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return fwd<float>(a, stream);
    case DType::F16: return fwd<__half>(a, stream);
    case DType::BF16: return fwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "dropout: the CUDA kernels take f32, f16 or bf16");
  }
}

void dropout_bwd_cuda(const DropoutArgs& a, Stream s) {
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return bwd<float>(a, stream);
    case DType::F16: return bwd<__half>(a, stream);
    case DType::BF16: return bwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "dropoutBackward: the CUDA kernels take f32, f16 or bf16");
  }
}

}  // namespace seqfuse

// cuda/rope.cu — rotary position embedding in place on CUDA (ops/rope.h), the operation of
// native/cpu/rope.cc: heads x [B, H, S, D] (f32 / f16 / bf16), the first `rot` dims of each head
// rotated in pairs (i, i + rot/2) ("rotate half"), by theta_i * (s + offset), theta_i =
// base^(-2i/rot); inverse rotates by the negative angle (the backward).
//
// Design: one thread per (s, i) pair of the [S, rot/2] angle table. The thread computes its angle
// and cos/sin as the CPU does (in f64: p * pow(base, -2i/rot), then cos and sin rounded to f32)
// once, then applies that rotation to the pair in every head it is given: the trig (f64, a few
// hundred instructions) is paid once per pair and grid row, not per element. The rotation is
// u cos - v sin, u sin + v cos in f32 with __f*_rn (no FMA contraction, as the CPU's portable
// pass), each value rounded once to T on store.
// Launch: grid (ceil(S * rot/2 / 256), gy), block 256, no shared memory; grid row y takes heads
// y, y + gy, ... of the B * H, with gy chosen so that about 1024 blocks fill the GPU (at most
// B * H). A warp covers 32 consecutive pairs: 32 consecutive elements of a row in each half.
// Known limits: CUDA's f64 pow / cos / sin are within 2 ulp of glibc's, not always the same bits,
// so after the rounding to f32 a table entry can differ from the CPU's by one f32 ulp (rarely:
// the f64 results must straddle an f32 rounding boundary); the test reports the largest difference.
#include "common.cuh"
#include "ops/rope.h"

namespace seqfuse {
namespace {

using gpu::check_launch;
using gpu::from_f32;
using gpu::to_f32;

constexpr int kThreads = 256;
constexpr int64_t kTargetBlocks = 1024;

// x [BH, S, D]; pairs [S, half]: thread j = (s, i) rotates (x[bh, s, i], x[bh, s, i + half]) for
// bh = blockIdx.y, blockIdx.y + gridDim.y, ... < BH.
template <class T>
__global__ void rope_kernel(T* x, int64_t BH, int64_t S, int64_t D, int64_t half, double rot, int64_t offset,
                            double base, float sign) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= S * half) return;
  const int64_t s = j / half, i = j % half;
  const double th = double(s + offset) * pow(base, -2.0 * double(i) / rot);
  const float co = float(cos(th)), si = __fmul_rn(sign, float(sin(th)));
  for (int64_t bh = blockIdx.y; bh < BH; bh += gridDim.y) {
    T* row = x + (bh * S + s) * D;
    const float u = to_f32(row[i]), v = to_f32(row[i + half]);
    row[i] = from_f32<T>(__fsub_rn(__fmul_rn(u, co), __fmul_rn(v, si)));
    row[i + half] = from_f32<T>(__fadd_rn(__fmul_rn(u, si), __fmul_rn(v, co)));
  }
}

template <class T>
void run(const RopeArgs& a, cudaStream_t stream) {
  const int64_t half = a.rot / 2, BH = a.B * a.H;
  const int64_t gx = (a.S * half + kThreads - 1) / kThreads;
  int64_t gy = (kTargetBlocks + gx - 1) / gx;
  gy = gy < BH ? gy : BH;
  gy = gy < 65535 ? gy : 65535;
  SF_LAUNCH(rope_kernel<T>, dim3(unsigned(gx), unsigned(gy)), dim3(kThreads), 0, stream)(
      static_cast<T*>(a.x), BH, a.S, a.D, half, double(a.rot), a.offset, a.base, a.inverse ? -1.0f : 1.0f);
  check_launch("rope");
}

}  // namespace

void rope_cuda(const RopeArgs& a, Stream s) {
  if (a.dtype != DType::F32 && a.dtype != DType::BF16 && a.dtype != DType::F16)
    fail(ErrorCode::DType, "rope: expected f32, bf16 or f16 heads but received ", dtype_name(a.dtype));
  if (a.rot / 2 == 0 || a.S == 0 || a.B * a.H == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return run<float>(a, stream);
    case DType::F16: return run<__half>(a, stream);
    default: return run<__nv_bfloat16>(a, stream);
  }
}

}  // namespace seqfuse

// cuda/optim.cu — fused multi-tensor AdamW and the global sum of squares on CUDA (ops/optim.h).
// Shapes: every tensor is flat [numel]; a call covers a list of them.
//
// adamw: the list goes to the kernel by value, kBatch tensors per launch (a parameter struct of
// pointers, dtypes and the flat index where each tensor starts: no host-to-device copy, no
// allocation), so a model of a few hundred tensors takes a few launches. A launch treats its
// tensors as one flat range of elements, tiles of kTile = 256 threads x 4 elements, grid-stride
// over the tiles with min(tiles, kMaxBlocks) blocks of 256; a thread walks its elements in
// increasing order and advances its tensor index as it passes tensor ends (dtype branches are
// uniform except at the few warps that straddle two tensors). Each element is read once (param,
// grad, m, v) and written once (param, m, v, copy), warps touching consecutive elements
// (coalesced). The update is the CPU's portable pass operation for operation (__fmul_rn,
// __fmaf_rn, __fsqrt_rn, __fdiv_rn: no contraction, IEEE sqrt and division), with the per-call
// scalars formed in double on the host exactly as the CPU does, so every output is bit-identical
// to the CPU backend's.
//
// norm_sumsq: two passes, deterministic. Pass 1: one block of 256 per chunk of kChunk elements of
// one tensor (a tensor is cut into chunks as on the CPU); each thread adds the exact double squares
// of its strided elements in order, the block reduces in a fixed tree; one double per chunk into
// stream-ordered scratch. Pass 2: one block of 1024 adds the chunk sums in a fixed order (strided
// per thread, then the same tree). The result does not depend on timing; it can differ from the
// CPU's (which adds each chunk left to right) in the last bits of the double. The total is copied
// to a.sumsq with cudaMemcpyAsync(cudaMemcpyDefault): a device pointer or host memory (the
// binding's Float64Array; a pageable destination makes the copy wait for the result).
// Known limits: the element loops use scalar (not 16-byte) accesses, so a tensor's base need not
// be aligned; AdamW on a list of many tiny tensors launches once per kBatch of them.
#include <cmath>
#include "common.cuh"
#include "ops/optim.h"

#ifndef SF_OPTIM_MAX_BLOCKS  // the kernel test lowers it to exercise the grid-stride loops
#define SF_OPTIM_MAX_BLOCKS 4096
#endif

namespace seqfuse {
namespace {

using gpu::check_launch;

constexpr int kBatch = 48;  // tensors per launch; the parameter struct stays under 4 KiB
constexpr int kThreads = 256;
constexpr int kItems = 4;
constexpr int64_t kTile = int64_t(kThreads) * kItems;
constexpr int64_t kMaxBlocks = SF_OPTIM_MAX_BLOCKS;
constexpr int64_t kChunk = int64_t(1) << 14;  // norm_sumsq: elements per chunk sum
constexpr int kTotalThreads = 1024;           // norm_sumsq's second pass

enum : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kNoCopy = 3 };

__device__ __forceinline__ float load_as(const void* p, uint8_t type, int64_t i) {
  if (type == kF32) return static_cast<const float*>(p)[i];
  if (type == kF16) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

struct AdamWSlot {
  float* param;
  const void* grad;
  float* m;
  float* v;
  void* copy;
  int64_t start;  // the flat index of the tensor's first element within the batch
  uint8_t grad_type, copy_type;
  bool decay;
};

struct AdamWBatch {
  AdamWSlot t[kBatch];
  int64_t total;  // elements of the batch
  int count;
  AdamWScalars s;  // the per-call scalars (ops/optim.h), the CPU's values
};

static_assert(sizeof(AdamWBatch) <= 4096, "kernel parameters are limited to 4 KiB");

// Element j of tensor t, in the CPU's order of operations.
__device__ __forceinline__ void adamw_element(const AdamWBatch& b, const AdamWSlot& t, int64_t j) {
  const float g = __fmul_rn(load_as(t.grad, t.grad_type, j), b.s.grad_scale);
  float p = __fmul_rn(t.param[j], t.decay ? b.s.decay_factor : 1.0f);
  const float m = __fmaf_rn(b.s.beta1, t.m[j], __fmul_rn(b.s.one_minus_beta1, g));
  const float v = __fmaf_rn(b.s.beta2, t.v[j], __fmul_rn(b.s.one_minus_beta2, __fmul_rn(g, g)));
  const float den = __fmaf_rn(__fsqrt_rn(v), b.s.rsqrt_bc2, b.s.eps);
  p = __fmaf_rn(-b.s.step_size, __fdiv_rn(m, den), p);
  t.param[j] = p;
  t.m[j] = m;
  t.v[j] = v;
  if (t.copy_type == kF16) static_cast<__half*>(t.copy)[j] = __float2half_rn(p);
  else if (t.copy_type == kBF16) static_cast<__nv_bfloat16*>(t.copy)[j] = __float2bfloat16_rn(p);
}

// AdamW over the flat elements [0, b.total) of up to kBatch tensors (b by value).
// Grid: min(ceil(total / kTile), kMaxBlocks) blocks x 256 threads, grid-stride over tiles of
// kTile elements; thread x of a tile takes elements tile + k * 256 + x, k = 0..3. No shared memory.
__global__ void adamw_kernel(const AdamWBatch b) {
  int i = 0;  // the tensor holding the thread's current element: only moves forward
  for (int64_t tile = int64_t(blockIdx.x) * kTile; tile < b.total; tile += int64_t(gridDim.x) * kTile) {
    for (int k = 0; k < kItems; ++k) {
      const int64_t e = tile + k * kThreads + threadIdx.x;
      if (e >= b.total) break;
      while (i + 1 < b.count && e >= b.t[i + 1].start) ++i;
      adamw_element(b, b.t[i], e - b.t[i].start);
    }
  }
}

struct SumSqSlot {
  const void* data;
  int64_t numel;
  int64_t chunk0;  // the index of the tensor's first chunk within the batch
  uint8_t type;
};

struct SumSqBatch {
  SumSqSlot t[kBatch];
  int count;
};

static_assert(sizeof(SumSqBatch) <= 4096, "kernel parameters are limited to 4 KiB");

// Sum over a whole block in a fixed tree (warp xor-butterfly, then warp 0 over the warp sums in
// order); thread 0 gets the total. scratch: 32 doubles of shared memory.
__device__ __forceinline__ double block_sum_f64(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = 0.0;
  if (warp == 0) {
    v = lane < warps ? scratch[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;
}

// Pass 1: sums[chunk_base + c] = the sum of squares of chunk c of the batch (kChunk elements of
// one tensor, fewer at its end) in double. Grid: one block per chunk, 256 threads; thread x adds
// elements x, x + 256, ... of its chunk in order. Shared memory: 32 doubles (static).
__global__ void sumsq_chunk_kernel(const SumSqBatch b, double* sums, int64_t chunk_base) {
  __shared__ double scratch[32];
  const int64_t c = blockIdx.x;
  int i = 0;
  while (i + 1 < b.count && c >= b.t[i + 1].chunk0) ++i;
  const SumSqSlot& t = b.t[i];
  const int64_t e0 = (c - t.chunk0) * kChunk;
  const int64_t n = t.numel - e0 < kChunk ? t.numel - e0 : kChunk;
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < n; k += kThreads) {
    const double x = load_as(t.data, t.type, e0 + k);
    s = __fma_rn(x, x, s);  // the square of an f32 is exact in double
  }
  s = block_sum_f64(s, scratch);
  if (threadIdx.x == 0) sums[chunk_base + c] = s;
}

// Pass 2: *out = the sum of the n chunk sums. Grid: 1 block x 1024 threads; thread x adds sums
// x, x + 1024, ... in order, then the fixed block tree. Shared memory: 32 doubles (static).
__global__ void sumsq_total_kernel(const double* sums, int64_t n, double* out) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < n; k += kTotalThreads) s += sums[k];
  s = block_sum_f64(s, scratch);
  if (threadIdx.x == 0) *out = s;
}

uint8_t float_type(DType t, const char* op, const char* what) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::BF16: return kBF16;
    default: fail(ErrorCode::DType, op, ": the CUDA kernels take an f32, f16 or bf16 ", what, ", got ", dtype_name(t));
  }
}

unsigned adamw_blocks(int64_t total) {
  const int64_t b = (total + kTile - 1) / kTile;
  return unsigned(b < kMaxBlocks ? b : kMaxBlocks);
}

}  // namespace

void adamw_cuda(const AdamWArgs& a, Stream s) {
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  AdamWBatch b{};
  b.s = adamw_scalars(a);
  for (int64_t i = 0; i < a.count; ++i)  // every dtype is checked before anything is written
    float_type(a.tensors[i].grad_dtype, "adamw", "gradient");
  auto flush = [&]() {
    if (b.total > 0) {
      SF_LAUNCH(adamw_kernel, dim3(adamw_blocks(b.total)), dim3(kThreads), 0, stream)(b);
      check_launch("adamw");
    }
    b.count = 0;
    b.total = 0;
  };
  for (int64_t i = 0; i < a.count; ++i) {
    const AdamWTensor& t = a.tensors[i];
    if (t.numel <= 0) continue;
    AdamWSlot& d = b.t[b.count++];
    d.param = t.param;
    d.grad = t.grad;
    d.m = t.m;
    d.v = t.v;
    d.copy = t.copy;
    d.start = b.total;
    d.grad_type = float_type(t.grad_dtype, "adamw", "gradient");
    d.copy_type = !t.copy ? kNoCopy : t.copy_dtype == DType::F16 ? kF16 : kBF16;  // as the CPU: any other is bf16
    d.decay = t.decay;
    b.total += t.numel;
    if (b.count == kBatch) flush();
  }
  flush();
}

void norm_sumsq_cuda(const SumSqArgs& a, Stream s) {
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  int64_t chunks = 0;
  for (int64_t i = 0; i < a.count; ++i) {
    float_type(a.tensors[i].dtype, "gradNorm", "tensor");
    chunks += (a.tensors[i].numel + kChunk - 1) / kChunk;
  }
  // the chunk sums, then the total (written to a.sumsq by a copy: host or device memory)
  gpu::Scratch scratch(size_t(chunks + 1) * sizeof(double), stream, "gradNorm");
  double* sums = scratch.as<double>();
  double* total = sums + chunks;
  SumSqBatch b{};
  int64_t base = 0, in_batch = 0;
  auto flush = [&]() {
    if (in_batch > 0) {
      SF_LAUNCH(sumsq_chunk_kernel, dim3(unsigned(in_batch)), dim3(kThreads), 0, stream)(b, sums, base);
      check_launch("gradNorm");
    }
    base += in_batch;
    in_batch = 0;
    b.count = 0;
  };
  for (int64_t i = 0; i < a.count; ++i) {
    const NormTensor& t = a.tensors[i];
    if (t.numel <= 0) continue;
    SumSqSlot& d = b.t[b.count++];
    d.data = t.data;
    d.numel = t.numel;
    d.chunk0 = in_batch;
    d.type = float_type(t.dtype, "gradNorm", "tensor");
    in_batch += (t.numel + kChunk - 1) / kChunk;
    if (b.count == kBatch) flush();
  }
  flush();
  SF_LAUNCH(sumsq_total_kernel, dim3(1), dim3(kTotalThreads), 0, stream)(sums, chunks, total);  // 0 chunks: +0.0
  check_launch("gradNorm");
  if (cudaMemcpyAsync(a.sumsq, total, sizeof(double), cudaMemcpyDefault, stream) != cudaSuccess)
    fail(ErrorCode::Backend, "gradNorm: copying the result failed: ", cudaGetErrorString(cudaGetLastError()));
}

}  // namespace seqfuse

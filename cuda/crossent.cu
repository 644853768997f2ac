// cuda/crossent.cu — cross-entropy (log-softmax + NLL, label smoothing, ignore index, MiLe
// weighting; Mean/Sum/None reductions) forward and backward on CUDA (ops/crossent.h), the
// operation of native/cpu/crossent.cc.
// Shapes: logits, dlogits [rows, cols] row-major in T (f32/f16/bf16); targets i32 [rows];
// lse, losses, weights f32 [rows]; stats f64 [2] (loss, count).
//
// Forward, three kernels:
//   row kernel: one block per row, online softmax in one read of the row from memory. Each
//     thread folds its elements into (max, min, Σx, s = Σ exp(x - max), t = Σ e (x - max)),
//     rescaling s and t when its max grows; the block merges the threads' states in a fixed tree
//     (warp butterfly, then warp 0 over the warps in order). lse = max + ln s, CE in double from
//     max - x_y, ln s and Σx as the CPU; MiLe's entropy H = ln s - t / s, or, where some
//     probability is below MiLe's 1e-8 clamp, a second pass over the row (from L2) with the
//     clamp, as the CPU's pass 3. Writes lse, CE (scratch) and the raw weight w = (sigma + H)^gamma.
//     Block: 32..1024 threads (about 16 elements each); 16-byte vector loads where the rows are
//     16-byte aligned, else scalar loads four at a time.
//   finish kernel: one block of 1024 in double, in a fixed order (strided per thread, then a
//     fixed tree): alpha = count / Σw, eff = alpha w (into weights), losses = eff CE, the loss;
//     so the result is deterministic (it may differ from the CPU's sequential row-order sums in
//     the last bits of the double, and eff by an f32 ulp through alpha).
//   stats: copied from scratch with cudaMemcpyAsync(cudaMemcpyDefault): a.stats may be device or
//     host memory (the binding's Float64Array; a pageable destination makes the copy wait).
// Backward: dx = c exp(x - lse) - c eps / V, less c (1 - eps) at the target, c = scale eff_t,
// one thread per element (8 per thread, all loaded before any is stored, so dlogits may be the
// logits); grid (rows, ceil(cols / 2048)) x 256. Ignored rows are zero-filled without a read.
// Exponentials use expf (the CPU its own polynomial): results match the CPU to ~1e-7 relative,
// not bit for bit. A row holding NaN or +Inf, or only -Inf, gives NaN lse, CE, w and gradient, as
// the CPU. Known limits: the finish kernel is one block (fine up to ~10^6 rows); the row kernel
// gives one block per row, so very small vocabularies leave most of a 32-thread block idle.
#include <cmath>
#include "common.cuh"
#include "ops/crossent.h"

namespace seqfuse {
namespace {

using gpu::check_launch;
using gpu::from_f32;
using gpu::to_f32;

constexpr float kLnClamp = -18.420680743952367f;  // ln 1e-8: MiLe's probability clamp
constexpr float kClampTerm = 1e-8f * kLnClamp;   // q ln q at the clamp
constexpr int kFinishThreads = 1024;
constexpr int kBwdThreads = 256;
constexpr int kBwdItems = 8;
constexpr int64_t kBwdChunk = int64_t(kBwdThreads) * kBwdItems;

// Calls f(x) for this thread's elements of row x[0, n): with Vec, 16-byte packs p = tid,
// tid + blockDim, ... (the row 16-byte aligned, n a multiple of the pack); else elements
// tid + k blockDim, loaded four at a time before use.
template <class T, bool Vec, class F>
__device__ __forceinline__ void for_row(const T* x, int64_t n, F f) {
  if constexpr (Vec) {
    constexpr int N = 16 / int(sizeof(T));
    for (int64_t p = threadIdx.x; p < n / N; p += blockDim.x) {
      T e[N];
      gpu::load16(x + p * N, e);
      for (int k = 0; k < N; ++k) f(to_f32(e[k]));
    }
  } else {
    const int64_t step = blockDim.x;
    for (int64_t j = threadIdx.x; j < n; j += 4 * step) {
      float v[4];
      for (int k = 0; k < 4; ++k) v[k] = j + k * step < n ? to_f32(x[j + k * step]) : NAN;
      for (int k = 0; k < 4; ++k)
        if (j + k * step < n) f(v[k]);
    }
  }
}

// A thread's (or a merged group's) running softmax statistics.
struct Online {
  float mx, lo, sx;  // max, min, Σx
  float s, t;        // Σ e and Σ e (x - mx), e = exp(x - mx)
};

__device__ __forceinline__ Online online_empty() { return Online{-INFINITY, INFINITY, 0.0f, 0.0f, 0.0f}; }

__device__ __forceinline__ void online_add(Online& o, float x) {
  o.lo = fminf(o.lo, x);
  o.sx += x;
  if (x > o.mx) {  // a new max: rescale what is there
    if (o.mx == -INFINITY) {
      o.s = 1.0f;
      o.t = 0.0f;
    } else {
      const float d = o.mx - x, c = expf(d);
      o.t = (o.t + d * o.s) * c;
      o.s = fmaf(o.s, c, 1.0f);
    }
    o.mx = x;
  } else if (o.mx > -INFINITY) {  // (x = max = -Inf adds nothing)
    const float d = x - o.mx, e = expf(d);
    o.s += e;
    o.t = fmaf(e, d, o.t);
  }
}

// a and b as one state (symmetric in a and b, so every lane of a butterfly agrees).
__device__ __forceinline__ Online online_merge(const Online& a, const Online& b) {
  Online r;
  r.mx = fmaxf(a.mx, b.mx);
  r.lo = fminf(a.lo, b.lo);
  r.sx = a.sx + b.sx;
  const float ca = a.mx == -INFINITY ? 0.0f : expf(a.mx - r.mx);
  const float cb = b.mx == -INFINITY ? 0.0f : expf(b.mx - r.mx);
  const float ta = ca == 0.0f ? 0.0f : (a.t + (a.mx - r.mx) * a.s) * ca;
  const float tb = cb == 0.0f ? 0.0f : (b.t + (b.mx - r.mx) * b.s) * cb;
  r.s = a.s * ca + b.s * cb;
  r.t = ta + tb;
  return r;
}

__device__ __forceinline__ Online online_shfl_xor(const Online& o, int lane_mask) {
  return Online{__shfl_xor_sync(0xffffffffu, o.mx, lane_mask), __shfl_xor_sync(0xffffffffu, o.lo, lane_mask),
                __shfl_xor_sync(0xffffffffu, o.sx, lane_mask), __shfl_xor_sync(0xffffffffu, o.s, lane_mask),
                __shfl_xor_sync(0xffffffffu, o.t, lane_mask)};
}

// Per row (one block): lse[r], ce[r] and, with MiLe, the raw weight w = (sigma + H)^gamma.
// logits [rows, cols]; grid (rows), block 32..1024 threads (a multiple of 32); static shared
// memory: 32 Online states and 32 floats.
template <class T, bool Vec>
__global__ void crossent_row_kernel(const T* logits, const int32_t* targets, int64_t cols, int32_t ignore_index,
                                    float smoothing, bool mile, double gamma, double sigma, float* lse, float* ce,
                                    float* weights) {
  __shared__ Online warp_state[32];
  __shared__ float scratch[32];
  __shared__ float row_lse;
  __shared__ int clamped;  // MiLe's entropy needs the clamped pass
  const int64_t r = blockIdx.x;
  const int32_t y = targets[r];
  if (y == ignore_index) {  // never read
    if (threadIdx.x == 0) {
      lse[r] = ce[r] = 0.0f;
      if (mile) weights[r] = 0.0f;
    }
    return;
  }
  const T* x = logits + r * cols;
  Online o = online_empty();
  for_row<T, Vec>(x, cols, [&](float v) { online_add(o, v); });
  for (int m = 16; m > 0; m >>= 1) o = online_merge(o, online_shfl_xor(o, m));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_state[warp] = o;
  __syncthreads();
  if (threadIdx.x == 0) {
    Online b = warp_state[0];
    for (int w = 1; w < int(blockDim.x >> 5); ++w) b = online_merge(b, warp_state[w]);
    int pass3 = 0;
    if (b.sx != b.sx || !(fabsf(b.mx) < INFINITY)) {  // NaN or +Inf somewhere, or only -Inf
      lse[r] = ce[r] = row_lse = NAN;
      if (mile) weights[r] = NAN;
    } else {
      const double ls = log(double(b.s)), eps = smoothing;
      const float l = float(double(b.mx) + ls);
      lse[r] = row_lse = l;
      const double nll = (double(b.mx) - double(to_f32(x[y]))) + ls;
      // eps = 0 must not touch the smoothing term: it is +Inf when some logit is -Inf
      ce[r] = float(eps > 0 ? (1 - eps) * nll + eps * ((double(b.mx) - double(b.sx) / double(cols)) + ls) : nll);
      if (mile) {
        if (b.lo - b.mx >= kLnClamp && b.lo - l >= kLnClamp) weights[r] = float(pow(sigma + (ls - double(b.t) / double(b.s)), gamma));
        else pass3 = 1;
      }
    }
    clamped = pass3;
  }
  __syncthreads();
  if (!clamped) return;  // uniform
  // H = -Σ q ln q with q = max(exp(x - lse), 1e-8), the row again (from L2)
  const float l = row_lse;
  float h = 0.0f;
  for_row<T, Vec>(x, cols, [&](float v) {
    const float a = v - l;
    h += a < kLnClamp ? kClampTerm : expf(a) * a;
  });
  h = gpu::block_sum(h, scratch);
  if (threadIdx.x == 0) weights[r] = float(pow(sigma - double(h), gamma));
}

// Sum over the block in a fixed tree; thread 0 gets the total. scratch: 32 doubles.
__device__ __forceinline__ double block_sum_f64(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = 0.0;
  if (warp == 0) {
    v = lane < int(blockDim.x >> 5) ? scratch[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;
}

// The batch-level part: alpha = count / Σw (MiLe), eff = alpha w into weights, losses = eff CE,
// stats = (loss reduced, count). Grid: 1 block x 1024 threads; thread x takes rows x, x + 1024,
// ... in order; fixed-tree block sums in double. Static shared memory: 33 doubles.
__global__ void crossent_finish_kernel(const float* ce, float* weights, float* losses, int64_t rows, int64_t count,
                                       bool mile, bool sum, double* stats) {
  __shared__ double scratch[32];
  __shared__ double alpha_sh;
  double alpha = 1.0;
  if (mile) {
    double w = 0.0;
    for (int64_t r = threadIdx.x; r < rows; r += kFinishThreads) w += weights[r];  // 0 at ignored rows
    w = block_sum_f64(w, scratch);
    if (threadIdx.x == 0) alpha_sh = count > 0 ? double(count) / w : 1.0;
    __syncthreads();
    alpha = alpha_sh;
  }
  double loss = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kFinishThreads) {
    float eff = 1.0f;
    if (mile) eff = weights[r] = float(alpha * weights[r]);  // stays 0 at ignored rows
    const double l = double(eff) * double(ce[r]);
    loss += l;
    if (losses) losses[r] = float(l);
  }
  loss = block_sum_f64(loss, scratch);
  if (threadIdx.x == 0) {
    stats[0] = sum ? loss : count > 0 ? loss / double(count) : 0.0;
    stats[1] = double(count);
  }
}

// dlogits [rows, cols] from logits and the forward's lse (and eff weights). Grid (rows,
// ceil(cols / 2048)) x 256 threads; thread x of block (r, c) takes columns c * 2048 + k * 256 + x,
// k = 0..7, loading all eight before storing any (in place safe). No shared memory.
template <class T>
__global__ void crossent_bwd_kernel(const T* logits, const int32_t* targets, const float* lse_in, const float* weights_in,
                                    T* dlogits, int64_t cols, int32_t ignore_index, float smoothing, float scale) {
  const int64_t r = blockIdx.x;
  const int64_t j0 = int64_t(blockIdx.y) * kBwdChunk + threadIdx.x;
  T* dx = dlogits + r * cols;
  const int64_t y = targets[r];
  if (y == ignore_index) {
    for (int k = 0; k < kBwdItems; ++k)
      if (j0 + k * kBwdThreads < cols) dx[j0 + k * kBwdThreads] = from_f32<T>(0.0f);
    return;
  }
  const T* x = logits + r * cols;
  const float l = lse_in[r];
  const float c = l == l ? scale * (weights_in ? weights_in[r] : 1.0f) : NAN;
  const float hit = c * (1.0f - smoothing);
  const float b = -c * smoothing / float(cols);
  float v[kBwdItems];
  for (int k = 0; k < kBwdItems; ++k) v[k] = j0 + k * kBwdThreads < cols ? to_f32(x[j0 + k * kBwdThreads]) : 0.0f;
  for (int k = 0; k < kBwdItems; ++k) {
    const int64_t j = j0 + k * kBwdThreads;
    if (j >= cols) break;
    float g = __fmaf_rn(expf(v[k] - l), c, b);
    if (j == y) g -= hit;
    dx[j] = from_f32<T>(g);
  }
}

int row_threads(int64_t cols) {
  int t = 32;
  while (t < 1024 && int64_t(t) * 16 < cols) t *= 2;
  return t;
}

template <class T>
void fwd(const CrossEntropyArgs& a, cudaStream_t stream) {
  gpu::Scratch scratch(size_t(2) * sizeof(double) + size_t(a.rows) * sizeof(float), stream, "crossEntropy");
  double* stats = scratch.as<double>();
  float* ce = scratch.as<float>(2 * sizeof(double));
  if (a.rows > 0) {
    const T* logits = static_cast<const T*>(a.logits);
    const bool vec = (a.cols * int64_t(sizeof(T))) % 16 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0;
    const dim3 grid(unsigned(a.rows)), block(unsigned(row_threads(a.cols)));
    auto kernel = vec ? crossent_row_kernel<T, true> : crossent_row_kernel<T, false>;
    SF_LAUNCH(kernel, grid, block, 0, stream)(logits, a.targets, a.cols, a.ignore_index, a.smoothing, a.mile, a.gamma,
                                              a.sigma, a.lse, ce, a.weights);
    check_launch("crossEntropy");
  }
  SF_LAUNCH(crossent_finish_kernel, dim3(1), dim3(kFinishThreads), 0, stream)(ce, a.weights, a.losses, a.rows, a.count, a.mile,
                                                                            a.reduction == Reduction::Sum, stats);
  check_launch("crossEntropy");
  if (cudaMemcpyAsync(a.stats, stats, 2 * sizeof(double), cudaMemcpyDefault, stream) != cudaSuccess)
    fail(ErrorCode::Backend, "crossEntropy: copying the stats failed: ", cudaGetErrorString(cudaGetLastError()));
}

template <class T>
void bwd(const CrossEntropyArgs& a, cudaStream_t stream) {
  const double factor = a.reduction != Reduction::Mean ? 1.0 : a.count > 0 ? 1.0 / double(a.count) : 0.0;
  const dim3 grid(unsigned(a.rows), unsigned((a.cols + kBwdChunk - 1) / kBwdChunk));
  SF_LAUNCH(crossent_bwd_kernel<T>, grid, dim3(kBwdThreads), 0, stream)(
      static_cast<const T*>(a.logits), a.targets, a.lse_in, a.weights_in, static_cast<T*>(a.dlogits), a.cols, a.ignore_index,
      a.smoothing, float(a.dloss * factor));
  check_launch("crossEntropyBackward");
}

}  // namespace

void crossent_fwd_cuda(const CrossEntropyArgs& a, Stream s) {
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return fwd<float>(a, stream);
    case DType::F16: return fwd<__half>(a, stream);
    case DType::BF16: return fwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "crossEntropy: the CUDA kernels take f32, f16 or bf16");
  }
}

void crossent_bwd_cuda(const CrossEntropyArgs& a, Stream s) {
  if (a.rows == 0 || a.cols == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return bwd<float>(a, stream);
    case DType::F16: return bwd<__half>(a, stream);
    case DType::BF16: return bwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "crossEntropyBackward: the CUDA kernels take f32, f16 or bf16");
  }
}

}  // namespace seqfuse

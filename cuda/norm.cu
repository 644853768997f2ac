// cuda/norm.cu — LayerNorm and RMSNorm forward and backward on CUDA (ops/norm.h): the operation of
// native/cpu/norm.cc. Shapes: x, y, dy, dx [rows, cols] row-major in T; gamma, beta, dgamma,
// dbeta [cols] in T; mean, rstd [rows] f32 (nullable outputs of the forward, nullable inputs of
// the backward). Math in f32, one rounding to T on store (round to nearest even).
//
// Design. A row is normalised by a row group of G threads: one warp (G = 32, several rows per
// block) when the row fits in the warp's registers, else one block (G = blockDim.x) per row.
// Thread t holds CH chunks of VEC consecutive columns, chunk c at column (c * G + t) * VEC, so a
// warp's loads of one chunk index are contiguous (16-byte vector accesses when the row is a
// multiple of 16 bytes and every pointer is 16-byte aligned; else VEC = 1). The row is read from
// memory once and kept in registers: the forward's two statistics passes (mean, then the sum of
// (x - mean)^2, as the CPU) and the output run from registers; the backward holds x and dy.
// Rows too wide for registers (beyond 512 threads x CH x VEC) take the "wide" kernels: one
// block per row, re-reading the row from global memory (L1/L2) for each pass.
// Backward: dx per row as the CPU (c1 = mean(dy g), c2 = mean(dy g xhat),
// dx = rstd (dy g - c1 - xhat c2)); dgamma = sum over rows of dy xhat and dbeta = sum of dy are a
// deterministic two-pass column reduction without atomics: each backward block adds its rows'
// contributions in a fixed order into one partial row per block (f32, a stream-ordered scratch
// buffer from cudaMallocAsync, [blocks, cols] per output), then colsum.cuh's kernel adds the
// partial rows in a fixed order. The grid depends only on rows and cols, so results are the same
// bits run to run. dx may alias dy: each row is read whole before its dx is written.
// Reductions over a row run in a different order from the CPU's sequential sums, so outputs
// agree with the CPU to rounding (tests/norm.cu: relative L2), not bit for bit.
// Known limits: a backward with dgamma/dbeta allocates its scratch per call (cudaMallocAsync; the
// stream's memory pool makes that cheap after the first call); gamma must not be null (as the CPU).
#include "colsum.cuh"
#include "rows.cuh"
#include "ops/norm.h"

namespace seqfuse {
namespace {

using gpu::check_launch;
using gpu::from_f32;
using gpu::group_sum;
using gpu::load_f32;
using gpu::store_f32;
using gpu::to_f32;

constexpr int kFwdElems = 32;          // floats of the row per thread, forward (x)
constexpr int kBwdElems = 16;          // backward (x, dy and two column accumulators: 4x that)
constexpr int kFwdWarps = 4;           // rows (warps) per forward block, warp mode
constexpr int kBwdWarps = 8;           // warps per backward block, warp mode
constexpr int kMaxThreads = gpu::kRowMaxThreads;  // every kernel's block at most (__launch_bounds__: <= 128 registers)
constexpr int kWideThreads = 512;      // wide kernels
#ifndef SF_NORM_BWD_MAX_BLOCKS  // (tests/norm.cu lowers it to stride with small inputs)
#define SF_NORM_BWD_MAX_BLOCKS 512
#endif
constexpr int64_t kBwdMaxBlocks = SF_NORM_BWD_MAX_BLOCKS;  // backward grid cap = partial rows per output (~4 blocks/SM on H100)

// 1 / sqrt(ss / n + eps), correctly rounded steps as the CPU's 1.0f / std::sqrt(...)
__device__ __forceinline__ float inv_std(float ss, float n, float eps) {
  return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, n), eps)));
}

// mean and rstd of the row held in v by a row group (chunks past cols hold 0): LayerNorm sums x,
// then (x - mean)^2 over the valid chunks; RMSNorm: mean = 0, rstd from mean(x^2).
template <bool WARP, int VEC, int CH>
__device__ __forceinline__ void row_stats(const float (&v)[CH][VEC], int G, int t, int64_t cols, bool rms, float eps,
                                          float* scratch, float& mean, float& rstd) {
  const float n = float(cols);
  float s = 0.0f;
  if (rms) {
    mean = 0.0f;
    for (int c = 0; c < CH; ++c)
      for (int k = 0; k < VEC; ++k) s = fmaf(v[c][k], v[c][k], s);
  } else {
    for (int c = 0; c < CH; ++c)
      for (int k = 0; k < VEC; ++k) s += v[c][k];
    mean = __fdiv_rn(group_sum<WARP>(s, scratch), n);
    s = 0.0f;
    for (int c = 0; c < CH; ++c)
      if ((int64_t(c) * G + t) * VEC < cols)
        for (int k = 0; k < VEC; ++k) {
          const float d = v[c][k] - mean;
          s = fmaf(d, d, s);
        }
  }
  rstd = inv_std(group_sum<WARP>(s, scratch), n, eps);
}

// Forward, the row in registers. x, y [rows, cols]; gamma, beta (nullable) [cols]; mean, rstd
// [rows] (nullable). WARP: one warp per row, grid ceil(rows / (blockDim.x / 32)), block
// kFwdWarps * 32; else one block per row, grid rows, block a multiple of 32 (<= 512) with
// G * CH * VEC >= cols. Each thread loads its CH chunks of x (layout above), reduces twice
// (warp shuffles, or block_sum through 32 floats of static shared memory), writes its chunks of y
// = (x - mean) rstd gamma (+ beta) with the CPU's operations in its order.
template <class T, int VEC, int CH, bool WARP>
__global__ void __launch_bounds__(kMaxThreads) norm_fwd_kernel(const NormArgs a) {
  __shared__ float scratch[32];
  const int G = WARP ? 32 : int(blockDim.x);
  const int t = WARP ? int(threadIdx.x & 31) : int(threadIdx.x);
  const int64_t row = WARP ? int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5) : int64_t(blockIdx.x);
  if (row >= a.rows) return;  // warp mode: whole warps of the last block (block mode: never)
  const int64_t cols = a.cols;
  const T* x = static_cast<const T*>(a.x) + row * cols;
  float v[CH][VEC];
  for (int c = 0; c < CH; ++c) {
    const int64_t j = (int64_t(c) * G + t) * VEC;
    if (j < cols) load_f32<VEC>(x + j, v[c]);
    else
      for (int k = 0; k < VEC; ++k) v[c][k] = 0.0f;
  }
  float mean, rstd;
  row_stats<WARP>(v, G, t, cols, a.rms, a.eps, scratch, mean, rstd);
  if (t == 0) {
    if (a.mean) a.mean[row] = mean;
    if (a.rstd) a.rstd[row] = rstd;
  }
  const T* g = static_cast<const T*>(a.gamma);
  const T* b = static_cast<const T*>(a.beta);
  T* y = static_cast<T*>(a.y) + row * cols;
  for (int c = 0; c < CH; ++c) {
    const int64_t j = (int64_t(c) * G + t) * VEC;
    if (j >= cols) break;
    float gv[VEC], bv[VEC], o[VEC];
    load_f32<VEC>(g + j, gv);
    if (b) load_f32<VEC>(b + j, bv);
    for (int k = 0; k < VEC; ++k) {
      const float u = __fmul_rn(__fmul_rn(__fsub_rn(v[c][k], mean), rstd), gv[k]);
      o[k] = b ? __fadd_rn(u, bv[k]) : u;
    }
    store_f32<VEC>(y + j, o);
  }
}

// Backward, the row in registers: dx [rows, cols], and this block's partial column sums of
// dy * xhat (part_g) and dy (part_b) over its rows, one row of cols floats each at
// part_x + blockIdx.x * cols (both nullable). WARP: block kBwdWarps * 32; warp w of block b takes
// rows (b * warps + w) + k * gridDim.x * warps; its lanes accumulate their columns in registers,
// and at the end the block's warps add theirs in warp order in dynamic shared memory
// (2 * cols floats) before the block writes its partial rows. Else: one row per block step
// (rows blockIdx.x + k * gridDim.x), block as the forward's, every thread owns its columns and
// writes its partials itself (dynamic shared memory: none). grid min(row groups, kBwdMaxBlocks).
// Statistics: the saved mean/rstd when given (as the CPU: rstd, and mean unless RMSNorm), else
// recomputed as the forward does.
template <class T, int VEC, int CH, bool WARP>
__global__ void __launch_bounds__(kMaxThreads) norm_bwd_kernel(const NormArgs a, float* part_g, float* part_b) {
  __shared__ float scratch[32];
  const int G = WARP ? 32 : int(blockDim.x);
  const int t = WARP ? int(threadIdx.x & 31) : int(threadIdx.x);
  const int64_t per_block = WARP ? int64_t(blockDim.x >> 5) : 1;
  const int64_t first = int64_t(blockIdx.x) * per_block + (WARP ? int64_t(threadIdx.x >> 5) : 0);
  const int64_t step = int64_t(gridDim.x) * per_block;
  const int64_t cols = a.cols;
  const float inv_n = __fdiv_rn(1.0f, float(cols));
  const bool saved = a.rstd && (a.rms || a.mean);
  const T* g = static_cast<const T*>(a.gamma);
  float ag[CH][VEC], ab[CH][VEC];
  for (int c = 0; c < CH; ++c)
    for (int k = 0; k < VEC; ++k) ag[c][k] = ab[c][k] = 0.0f;
  for (int64_t row = first; row < a.rows; row += step) {
    const T* x = static_cast<const T*>(a.x) + row * cols;
    const T* dy = static_cast<const T*>(a.dy) + row * cols;
    T* dx = static_cast<T*>(a.dx) + row * cols;
    float xv[CH][VEC], dv[CH][VEC];
    for (int c = 0; c < CH; ++c) {
      const int64_t j = (int64_t(c) * G + t) * VEC;
      if (j < cols) {
        load_f32<VEC>(x + j, xv[c]);
        load_f32<VEC>(dy + j, dv[c]);
      } else {
        for (int k = 0; k < VEC; ++k) xv[c][k] = dv[c][k] = 0.0f;
      }
    }
    float mean, rstd;
    if (saved) {
      mean = a.rms ? 0.0f : a.mean[row];
      rstd = a.rstd[row];
    } else {
      row_stats<WARP>(xv, G, t, cols, a.rms, a.eps, scratch, mean, rstd);
    }
    // xv becomes xhat; c1 = sum dy g, c2 = sum dy g xhat
    float c1 = 0.0f, c2 = 0.0f;
    for (int c = 0; c < CH; ++c) {
      const int64_t j = (int64_t(c) * G + t) * VEC;
      if (j >= cols) break;
      float gv[VEC];
      load_f32<VEC>(g + j, gv);
      for (int k = 0; k < VEC; ++k) {
        xv[c][k] = __fmul_rn(__fsub_rn(xv[c][k], mean), rstd);
        const float dg = __fmul_rn(dv[c][k], gv[k]);
        c1 += dg;
        c2 = fmaf(dg, xv[c][k], c2);
      }
    }
    c1 = group_sum<WARP>(c1, scratch);
    c2 = group_sum<WARP>(c2, scratch);
    const float k1 = a.rms ? 0.0f : __fmul_rn(c1, inv_n), k2 = __fmul_rn(c2, inv_n);
    for (int c = 0; c < CH; ++c) {
      const int64_t j = (int64_t(c) * G + t) * VEC;
      if (j >= cols) break;
      float gv[VEC], o[VEC];
      load_f32<VEC>(g + j, gv);
      for (int k = 0; k < VEC; ++k) {
        const float xh = xv[c][k], d = dv[c][k];
        o[k] = __fmul_rn(rstd, __fsub_rn(__fsub_rn(__fmul_rn(d, gv[k]), k1), __fmul_rn(xh, k2)));
        ag[c][k] = fmaf(d, xh, ag[c][k]);
        ab[c][k] += d;
      }
      store_f32<VEC>(dx + j, o);
    }
  }
  if (!part_g && !part_b) return;
  float* pg = part_g ? part_g + int64_t(blockIdx.x) * cols : nullptr;
  float* pb = part_b ? part_b + int64_t(blockIdx.x) * cols : nullptr;
  if constexpr (WARP) {
    SF_DYNAMIC_SHARED(float, sm);  // [2][cols]: the block's dy * xhat and dy sums
    const int warp = int(threadIdx.x >> 5), warps = int(blockDim.x >> 5);
    for (int w = 0; w < warps; ++w) {
      if (warp == w)
        for (int c = 0; c < CH; ++c) {
          const int64_t j = (int64_t(c) * G + t) * VEC;
          if (j >= cols) break;
          for (int k = 0; k < VEC; ++k) {
            sm[j + k] = w ? sm[j + k] + ag[c][k] : ag[c][k];
            sm[cols + j + k] = w ? sm[cols + j + k] + ab[c][k] : ab[c][k];
          }
        }
      __syncthreads();
    }
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      if (pg) pg[j] = sm[j];
      if (pb) pb[j] = sm[cols + j];
    }
  } else {
    for (int c = 0; c < CH; ++c) {
      const int64_t j = (int64_t(c) * G + t) * VEC;
      if (j >= cols) break;
      for (int k = 0; k < VEC; ++k) {
        if (pg) pg[j + k] = ag[c][k];
        if (pb) pb[j + k] = ab[c][k];
      }
    }
  }
}

// mean and rstd of a row read from global memory by the whole block (wide kernels).
template <class T>
__device__ __forceinline__ void wide_stats(const T* x, int64_t cols, bool rms, float eps, float* scratch, float& mean,
                                           float& rstd) {
  float s = 0.0f;
  if (rms) {
    mean = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float v = to_f32(x[j]);
      s = fmaf(v, v, s);
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += to_f32(x[j]);
    mean = __fdiv_rn(gpu::block_sum(s, scratch), float(cols));
    s = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float d = to_f32(x[j]) - mean;
      s = fmaf(d, d, s);
    }
  }
  rstd = inv_std(gpu::block_sum(s, scratch), float(cols), eps);
}

// Forward for rows too wide for registers: grid rows, block kWideThreads (one block per row),
// static shared memory 32 floats; x is read three times (twice for the statistics, once for y;
// the rereads hit L1/L2), element j by thread j mod blockDim.x (coalesced).
template <class T>
__global__ void __launch_bounds__(kMaxThreads) norm_fwd_wide_kernel(const NormArgs a) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, cols = a.cols;
  const T* x = static_cast<const T*>(a.x) + row * cols;
  float mean, rstd;
  wide_stats(x, cols, a.rms, a.eps, scratch, mean, rstd);
  if (threadIdx.x == 0) {
    if (a.mean) a.mean[row] = mean;
    if (a.rstd) a.rstd[row] = rstd;
  }
  const T* g = static_cast<const T*>(a.gamma);
  const T* b = static_cast<const T*>(a.beta);
  T* y = static_cast<T*>(a.y) + row * cols;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float u = __fmul_rn(__fmul_rn(__fsub_rn(to_f32(x[j]), mean), rstd), to_f32(g[j]));
    y[j] = from_f32<T>(b ? __fadd_rn(u, to_f32(b[j])) : u);
  }
}

// Backward for rows too wide for registers: grid min(rows, kBwdMaxBlocks), block kWideThreads;
// block b takes rows b + k * gridDim.x; thread t owns columns j = t mod blockDim.x and adds its
// rows' dy * xhat and dy straight into the block's partial rows (part_x + b * cols, zeroed
// first; nullable). Per row: statistics (saved or two passes), a pass for c1 and c2, a pass for
// dx (dy of a column is read before its dx is written: dx may be dy).
template <class T>
__global__ void __launch_bounds__(kMaxThreads) norm_bwd_wide_kernel(const NormArgs a, float* part_g, float* part_b) {
  __shared__ float scratch[32];
  const int64_t cols = a.cols;
  const float inv_n = __fdiv_rn(1.0f, float(cols));
  const bool saved = a.rstd && (a.rms || a.mean);
  const T* g = static_cast<const T*>(a.gamma);
  float* pg = part_g ? part_g + int64_t(blockIdx.x) * cols : nullptr;
  float* pb = part_b ? part_b + int64_t(blockIdx.x) * cols : nullptr;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    if (pg) pg[j] = 0.0f;
    if (pb) pb[j] = 0.0f;
  }
  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const T* x = static_cast<const T*>(a.x) + row * cols;
    const T* dy = static_cast<const T*>(a.dy) + row * cols;
    T* dx = static_cast<T*>(a.dx) + row * cols;
    float mean, rstd;
    if (saved) {
      mean = a.rms ? 0.0f : a.mean[row];
      rstd = a.rstd[row];
    } else {
      wide_stats(x, cols, a.rms, a.eps, scratch, mean, rstd);
    }
    float c1 = 0.0f, c2 = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float xh = __fmul_rn(__fsub_rn(to_f32(x[j]), mean), rstd);
      const float dg = __fmul_rn(to_f32(dy[j]), to_f32(g[j]));
      c1 += dg;
      c2 = fmaf(dg, xh, c2);
    }
    c1 = gpu::block_sum(c1, scratch);
    c2 = gpu::block_sum(c2, scratch);
    const float k1 = a.rms ? 0.0f : __fmul_rn(c1, inv_n), k2 = __fmul_rn(c2, inv_n);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float xh = __fmul_rn(__fsub_rn(to_f32(x[j]), mean), rstd);
      const float d = to_f32(dy[j]);
      dx[j] = from_f32<T>(__fmul_rn(rstd, __fsub_rn(__fsub_rn(__fmul_rn(d, to_f32(g[j])), k1), __fmul_rn(xh, k2))));
      if (pg) pg[j] = fmaf(d, xh, pg[j]);
      if (pb) pb[j] += d;
    }
  }
}

// --- launch ----------------------------------------------------------------------------------

template <class T>
void fwd(const NormArgs& a, cudaStream_t stream) {
  const char* op = a.rms ? "rmsNorm" : "layerNorm";
  const gpu::RowPlan pl = gpu::plan_rows<T>(a.cols, kFwdElems, {a.x, a.y, a.gamma, a.beta});
  if (pl.wide) {
    SF_LAUNCH(norm_fwd_wide_kernel<T>, dim3(unsigned(a.rows)), dim3(kWideThreads), 0, stream)(a);
  } else {
    gpu::with_tile<T, kFwdElems>(pl, [&](auto vec, auto ch) {
      constexpr int VEC = decltype(vec)::value, CH = decltype(ch)::value;
      if (pl.warp)
        SF_LAUNCH((norm_fwd_kernel<T, VEC, CH, true>), dim3(unsigned((a.rows + kFwdWarps - 1) / kFwdWarps)),
                  dim3(kFwdWarps * 32), 0, stream)(a);
      else
        SF_LAUNCH((norm_fwd_kernel<T, VEC, CH, false>), dim3(unsigned(a.rows)), dim3(unsigned(pl.threads)), 0, stream)(a);
    });
  }
  check_launch(op);
}

template <class T>
void bwd(const NormArgs& a, cudaStream_t stream) {
  const char* op = a.rms ? "rmsNormBackward" : "layerNormBackward";
  const bool want_g = a.dgamma != nullptr, want_b = a.dbeta != nullptr && !a.rms;
  const gpu::RowPlan pl = gpu::plan_rows<T>(a.cols, kBwdElems, {a.x, a.dy, a.dx, a.gamma});
  const int64_t groups = pl.warp && !pl.wide ? (a.rows + kBwdWarps - 1) / kBwdWarps : a.rows;
  const int64_t grid = groups < kBwdMaxBlocks ? groups : kBwdMaxBlocks;
  const int outputs = int(want_g) + int(want_b);
  const gpu::Scratch scratch(size_t(outputs) * size_t(grid) * size_t(a.cols) * sizeof(float), stream, op);
  float* part = outputs && grid > 0 ? scratch.as<float>() : nullptr;
  float* part_g = want_g ? part : nullptr;
  float* part_b = want_b ? part + (want_g ? grid * a.cols : 0) : nullptr;
  if (grid > 0) {
    if (pl.wide) {
      SF_LAUNCH(norm_bwd_wide_kernel<T>, dim3(unsigned(grid)), dim3(kWideThreads), 0, stream)(a, part_g, part_b);
    } else {
      gpu::with_tile<T, kBwdElems>(pl, [&](auto vec, auto ch) {
        constexpr int VEC = decltype(vec)::value, CH = decltype(ch)::value;
        if (pl.warp)
          SF_LAUNCH((norm_bwd_kernel<T, VEC, CH, true>), dim3(unsigned(grid)), dim3(kBwdWarps * 32),
                    outputs ? 2 * size_t(a.cols) * sizeof(float) : 0, stream)(a, part_g, part_b);
        else
          SF_LAUNCH((norm_bwd_kernel<T, VEC, CH, false>), dim3(unsigned(grid)), dim3(unsigned(pl.threads)), 0, stream)(
              a, part_g, part_b);
      });
    }
    check_launch(op);
  }
  if (want_g && want_b)
    gpu::colsum(part_g, static_cast<T*>(a.dgamma), part_b, static_cast<T*>(a.dbeta), grid, a.cols, a.accumulate, stream, op);
  else if (outputs)
    gpu::colsum(want_g ? part_g : part_b, static_cast<T*>(want_g ? a.dgamma : a.dbeta), nullptr, static_cast<T*>(nullptr), grid,
                a.cols, a.accumulate, stream, op);
}

}  // namespace

void norm_fwd_cuda(const NormArgs& a, Stream s) {
  if (a.rows == 0 || a.cols == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  gpu::with_float_type(a.dtype, a.rms ? "rmsNorm" : "layerNorm", [&](auto z) { fwd<decltype(z)>(a, stream); });
}

void norm_bwd_cuda(const NormArgs& a, Stream s) {
  if (a.cols == 0) return;  // rows == 0: dgamma, dbeta = 0 (or kept, accumulating), as the CPU
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  gpu::with_float_type(a.dtype, a.rms ? "rmsNormBackward" : "layerNormBackward", [&](auto z) { bwd<decltype(z)>(a, stream); });
}

}  // namespace seqfuse

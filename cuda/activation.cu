// cuda/activation.cu — bias + activation + dropout forward and backward on CUDA
// (ops/activation.h): the operation of native/cpu/activation.cc with its math (cpu/act_simd.h,
// cpu/simd.h's portable pass: the same polynomial exp, A&S erfc, sigmoid, the same f32 operations
// in the same order, each rounded as there: __f*_rn, no contraction) and dropout's Philox stream
// (core/philox.h), so y and dx are the CPU's bit for bit.
// Shapes: x, y, dy, dx [rows, cols] row-major in T, n = rows * cols; bias, dbias [cols] in T.
//
// Elementwise kernels (forward; backward without dbias): a thread takes 8 consecutive elements
// i = 8g .. 8g + 7 (the keep bits of stream elements offset + i come from one Philox call, or two
// when offset is not a multiple of 8), grid-stride over the groups g; 16-byte loads and stores
// when x, y (dy, dx) are 16-byte aligned. Launch min(ceil(groups / 256), 4096) x 256, no shared
// memory. The bias is read per element (a [cols] row that stays in L1/L2).
// Backward with dbias: one block per row stride (rows b, b + P, ...; P = min(rows, 512) blocks
// of min(256, ceil(cols / 8) rounded up to 32) threads); thread t takes the 8-column groups
// t, t + blockDim.x, ... of each row, writes dx and
// adds its elements' f32 gradients (before dx's rounding, as the CPU) into the block's column
// accumulators — shared memory (cols floats) when cols <= 12288, else the block's partial row in
// global memory, each column owned by one thread (no atomics) — rows in order; then colsum.cuh
// adds the P partial rows in a fixed order. dbias agrees with the CPU (whose partial sums follow
// its thread count) to rounding, and is the same bits run to run.
// dx may be dy and y may be x: each element is read before it is written, by the same thread.
#include "colsum.cuh"
#include "cpu_math.cuh"
#include "core/philox.h"
#include "ops/activation.h"

namespace seqfuse {
namespace {

using gpu::act_bwd;
using gpu::act_fwd;
using gpu::from_f32;
using gpu::load_f32;
using gpu::store_f32;
using gpu::to_f32;

constexpr int kThreads = 256;
#ifndef SF_ACT_MAX_BLOCKS  // (tests/activation.cu lowers both caps to stride with small inputs)
#define SF_ACT_MAX_BLOCKS 4096
#endif
constexpr int64_t kMaxBlocks = SF_ACT_MAX_BLOCKS;
#ifndef SF_ACT_BWD_MAX_BLOCKS
#define SF_ACT_BWD_MAX_BLOCKS 512
#endif
constexpr int64_t kBwdMaxBlocks = SF_ACT_BWD_MAX_BLOCKS;  // dbias partial rows at most
constexpr int64_t kSmemCols = 12288;                      // dbias accumulators in shared memory up to 48 KiB

// --- dropout's keep bits ------------------------------------------------------------------------
__device__ __forceinline__ uint32_t word(const Philox4& r, uint64_t i) {  // r.v[i & 3] without local memory
  const uint32_t k = uint32_t(i & 3);
  return k == 0 ? r.v[0] : k == 1 ? r.v[1] : k == 2 ? r.v[2] : r.v[3];
}

// Bit k (k < cnt <= 8): stream element e + k is kept (h >= t); all set when t == 0 (no draw).
// The 8 elements need one Philox call when e is a multiple of 8, else two.
__device__ __forceinline__ uint32_t keep_bits(uint64_t e, int cnt, uint64_t seed, uint32_t t) {
  if (t == 0) return 0xFFu;
  uint32_t bits = 0;
  uint64_t cur = e >> 3;
  Philox4 r = philox4x32_10(cur, seed);
  for (int k = 0; k < 8; ++k) {
    if (k >= cnt) break;
    const uint64_t ek = e + uint64_t(k);
    if ((ek >> 3) != cur) {
      cur = ek >> 3;
      r = philox4x32_10(cur, seed);
    }
    const uint32_t h = (word(r, ek >> 1) >> (16 * uint32_t(ek & 1))) & 0xFFFFu;
    bits |= uint32_t(h >= t) << k;
  }
  return bits;
}

// cnt (<= 8) elements at p as f32; vec: 8 whole elements with 16-byte accesses
template <class T>
__device__ __forceinline__ void load8(const T* p, int cnt, bool vec, float* v) {
  if (vec && cnt == 8) {
    if constexpr (sizeof(T) == 4) {
      load_f32<4>(p, v);
      load_f32<4>(p + 4, v + 4);
    } else {
      load_f32<8>(p, v);
    }
  } else {
    for (int k = 0; k < 8; ++k) v[k] = k < cnt ? to_f32(p[k]) : 0.0f;
  }
}
template <class T>
__device__ __forceinline__ void store8(T* p, int cnt, bool vec, const float* v) {
  if (vec && cnt == 8) {
    if constexpr (sizeof(T) == 4) {
      store_f32<4>(p, v);
      store_f32<4>(p + 4, v + 4);
    } else {
      store_f32<8>(p, v);
    }
  } else {
    for (int k = 0; k < 8; ++k)
      if (k < cnt) p[k] = from_f32<T>(v[k]);
  }
}

// The dropout of one launch: threshold t (0: off), scale of kept values.
struct Drop {
  uint32_t t;
  float scale;
  uint64_t seed, offset;
};

// Forward: y = drop(act(x + bias)) for elements [8g, 8g + 8) per thread, grid-stride over the
// groups; grid min(ceil(groups / 256), 4096), block 256, no shared memory. vec: x, y 16-byte aligned.
template <class T, Activation A>
__global__ void __launch_bounds__(kThreads) bias_act_fwd_kernel(const T* x, const T* bias, T* y, int64_t n, int64_t cols,
                                                                 Drop d, bool vec) {
  const float k = d.t > 0 ? d.scale : 1.0f;
  for (int64_t i0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8; i0 < n; i0 += int64_t(gridDim.x) * blockDim.x * 8) {
    const int cnt = n - i0 < 8 ? int(n - i0) : 8;
    float v[8];
    load8(x + i0, cnt, vec, v);
    const uint32_t keep = keep_bits(d.offset + uint64_t(i0), cnt, d.seed, d.t);
    int64_t j = i0 % cols;
    for (int e = 0; e < 8; ++e) {
      float z = v[e];
      if (bias) {
        z = __fadd_rn(z, to_f32(bias[j]));
        j = j + 1 == cols ? 0 : j + 1;
      }
      z = act_fwd<A>(z, k);
      v[e] = d.t > 0 && !((keep >> e) & 1u) ? 0.0f : z;
    }
    store8(y + i0, cnt, vec, v);
  }
}

// dx = drop(dy act'(x + bias)) for the elements [i0, i0 + cnt) of one thread, g: the f32 values
template <class T, Activation A>
__device__ __forceinline__ void grad8(const T* x, const T* dy, const T* bias, int64_t i0, int cnt, int64_t j, int64_t cols,
                                      const Drop& d, bool vec, float* g) {
  float xv[8];
  load8(x + i0, cnt, vec, xv);
  load8(dy + i0, cnt, vec, g);
  const uint32_t keep = keep_bits(d.offset + uint64_t(i0), cnt, d.seed, d.t);
  for (int e = 0; e < 8; ++e) {
    float z = xv[e];
    if (bias) {
      z = __fadd_rn(z, to_f32(bias[j]));
      j = j + 1 == cols ? 0 : j + 1;
    }
    const float v = act_bwd<A>(z, g[e]);
    g[e] = d.t > 0 ? (((keep >> e) & 1u) ? __fmul_rn(v, d.scale) : 0.0f) : v;
  }
}

// Backward without dbias: geometry as the forward's. vec: x, dy, dx 16-byte aligned.
template <class T, Activation A>
__global__ void __launch_bounds__(kThreads) bias_act_bwd_kernel(const T* x, const T* dy, const T* bias, T* dx, int64_t n,
                                                                 int64_t cols, Drop d, bool vec) {
  for (int64_t i0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8; i0 < n; i0 += int64_t(gridDim.x) * blockDim.x * 8) {
    const int cnt = n - i0 < 8 ? int(n - i0) : 8;
    float g[8];
    grad8<T, A>(x, dy, bias, i0, cnt, i0 % cols, cols, d, vec, g);
    store8(dx + i0, cnt, vec, g);
  }
}

// Backward with dbias: grid P = min(rows, kBwdMaxBlocks), block min(256, ceil(cols / 8) rounded
// up to 32); block b takes rows b, b + P, ...; thread t the 8-column groups t, t + blockDim.x, ...
// of each (a warp reads 256 consecutive elements). Column accumulators: dynamic shared memory of cols floats (SMEM), else the block's
// partial row part + b * cols; column j belongs to thread (j / 8) mod blockDim.x alone. At the end the
// block's accumulators go to its partial row. vec: 16-byte aligned pointers and cols % 8 == 0.
template <class T, Activation A, bool SMEM>
__global__ void __launch_bounds__(kThreads) bias_act_bwd_rows_kernel(const T* x, const T* dy, const T* bias, T* dx, int64_t rows,
                                                                      int64_t cols, Drop d, bool vec, float* part) {
  SF_DYNAMIC_SHARED(float, sm);
  float* prow = part + int64_t(blockIdx.x) * cols;
  float* acc = SMEM ? sm : prow;
  for (int64_t j0 = int64_t(threadIdx.x) * 8; j0 < cols; j0 += int64_t(blockDim.x) * 8)
    for (int e = 0; e < 8 && j0 + e < cols; ++e) acc[j0 + e] = 0.0f;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int64_t j0 = int64_t(threadIdx.x) * 8; j0 < cols; j0 += int64_t(blockDim.x) * 8) {
      const int cnt = cols - j0 < 8 ? int(cols - j0) : 8;
      const int64_t i0 = r * cols + j0;
      float g[8];
      grad8<T, A>(x, dy, bias, i0, cnt, j0, cols, d, vec, g);
      for (int e = 0; e < cnt; ++e) acc[j0 + e] = __fadd_rn(acc[j0 + e], g[e]);
      store8(dx + i0, cnt, vec, g);
    }
  if constexpr (SMEM)
    for (int64_t j0 = int64_t(threadIdx.x) * 8; j0 < cols; j0 += int64_t(blockDim.x) * 8)
      for (int e = 0; e < 8 && j0 + e < cols; ++e) prow[j0 + e] = acc[j0 + e];
}

unsigned flat_blocks(int64_t n) {
  const int64_t b = (n + 8 * kThreads - 1) / (8 * kThreads);
  return unsigned(b < kMaxBlocks ? b : kMaxBlocks);
}

Drop drop_of(const BiasActArgs& a) {
  const uint32_t t = dropout_threshold(a.dropout);
  return Drop{t, dropout_scale(t), a.seed, a.offset};
}

// f(integral_constant<Activation, A>) for a.act
template <class F>
void with_act(Activation act, F f) {
  switch (act) {
    case Activation::None: return f(std::integral_constant<Activation, Activation::None>{});
    case Activation::Relu: return f(std::integral_constant<Activation, Activation::Relu>{});
    case Activation::Gelu: return f(std::integral_constant<Activation, Activation::Gelu>{});
    case Activation::GeluTanh: return f(std::integral_constant<Activation, Activation::GeluTanh>{});
    case Activation::Silu: return f(std::integral_constant<Activation, Activation::Silu>{});
  }
  fail(ErrorCode::Arg, "biasAct: unknown activation ", int(act));
}

template <class T>
void fwd(const BiasActArgs& a, cudaStream_t stream) {
  const int64_t n = a.rows * a.cols;
  const bool vec = gpu::aligned_to(a.x, 16) && gpu::aligned_to(a.y, 16);
  with_act(a.act, [&](auto act) {
    SF_LAUNCH((bias_act_fwd_kernel<T, decltype(act)::value>), dim3(flat_blocks(n)), dim3(kThreads), 0, stream)(
        static_cast<const T*>(a.x), static_cast<const T*>(a.bias), static_cast<T*>(a.y), n, a.cols, drop_of(a), vec);
  });
  gpu::check_launch("biasAct");
}

template <class T>
void bwd(const BiasActArgs& a, cudaStream_t stream) {
  const char* op = "biasActBackward";
  const int64_t n = a.rows * a.cols;
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  const T* bias = static_cast<const T*>(a.bias);
  T* dx = static_cast<T*>(a.dx);
  const bool aligned = gpu::aligned_to(x, 16) && gpu::aligned_to(dy, 16) && gpu::aligned_to(dx, 16);
  if (!a.dbias) {
    if (n == 0) return;
    with_act(a.act, [&](auto act) {
      SF_LAUNCH((bias_act_bwd_kernel<T, decltype(act)::value>), dim3(flat_blocks(n)), dim3(kThreads), 0, stream)(
          x, dy, bias, dx, n, a.cols, drop_of(a), aligned);
    });
    gpu::check_launch(op);
    return;
  }
  const int64_t P = a.rows < kBwdMaxBlocks ? a.rows : kBwdMaxBlocks;
  const gpu::Scratch scratch(size_t(P) * size_t(a.cols) * sizeof(float), stream, op);
  float* part = P > 0 ? scratch.as<float>() : nullptr;
  if (P > 0) {
    const bool vec = aligned && a.cols % 8 == 0;
    // one thread per 8-column group up to 256: short rows leave no thread idle
    const int64_t groups = (a.cols + 7) / 8;
    const unsigned threads = unsigned(groups >= kThreads ? kThreads : (groups + 31) / 32 * 32);
    with_act(a.act, [&](auto act) {
      constexpr Activation A = decltype(act)::value;
      if (a.cols <= kSmemCols)
        SF_LAUNCH((bias_act_bwd_rows_kernel<T, A, true>), dim3(unsigned(P)), dim3(threads), size_t(a.cols) * sizeof(float),
                  stream)(x, dy, bias, dx, a.rows, a.cols, drop_of(a), vec, part);
      else
        SF_LAUNCH((bias_act_bwd_rows_kernel<T, A, false>), dim3(unsigned(P)), dim3(threads), 0, stream)(
            x, dy, bias, dx, a.rows, a.cols, drop_of(a), vec, part);
    });
    gpu::check_launch(op);
  }
  gpu::colsum(part, static_cast<T*>(a.dbias), static_cast<const float*>(nullptr), static_cast<T*>(nullptr), P, a.cols,
              a.accumulate, stream, op);
}

}  // namespace

void bias_act_fwd_cuda(const BiasActArgs& a, Stream s) {
  if (a.rows * a.cols == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  gpu::with_float_type(a.dtype, "biasAct", [&](auto z) { fwd<decltype(z)>(a, stream); });
}

void bias_act_bwd_cuda(const BiasActArgs& a, Stream s) {
  if (a.cols == 0) return;  // rows == 0: dbias = 0 (or kept, accumulating), as the CPU
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  gpu::with_float_type(a.dtype, "biasActBackward", [&](auto z) { bwd<decltype(z)>(a, stream); });
}

}  // namespace seqfuse

// cuda/quant.cu — symmetric int8 quantization on CUDA (ops/quant.h): quantize, dequantize,
// fake-quant, the PACT backward (dx, dclip), max-clip calibration (running max per channel) and
// the |x| histogram of percentile calibration, for f32 / f16 / bf16 floats, per tensor or per
// channel. The operation of native/cpu/quant.cc.
// Shapes: x, y, dy, dx [outer, C, inner] row-major; clip, dclip, max-clip y [C] f32; hist [bins] f64.
//
// Rounding is the CPU's bit for bit (cpu/quant_grid.h): inv = f32(127 / clipMax),
// s = f32(clipMax / 127), r = clamp(x * inv, -127, 127) (NaN -> 0), n = round-to-even(r), and
// r + sign(r) / 2 where |r - n| = 0.5 (half away from zero); every step is one IEEE f32 operation
// written with __f*_rn, so nvcc cannot contract it. Elementwise outputs (q, y, dx) are the CPU's
// bits, NaN included (the CPU's 16-bit NaN encodings, not the hardware's canonical NaN).
//
// Elementwise modes: grid-stride, one element per thread per step (coalesced); per channel, the
// channel of element i is (i / inner) mod C, with inv and s recomputed only when it changes (long
// runs for an axis-0 weight; every element along the last axis).
// Reductions (PACT backward, max clip) cut each channel into units of kUnit elements (in (outer,
// inner) order), one block per unit: the block writes dx and one f32 partial (the block's sum of
// dclip terms, or its max |x|) to a stream-ordered workspace (cudaMallocAsync), and a second
// kernel gives each channel one warp that combines its partials in a fixed order (f64 sums), so
// dclip is the same bits run to run; against the CPU (f32 sums within its 16384-element units)
// it agrees to f32 rounding, not bit for bit. Max is exact in any order, so max clip is the CPU's bits.
// Histogram: block-private u32 counts in shared memory, then one f64 atomicAdd per non-zero bin
// per block into hist; the counts are integers (exact in f64 below 2^53), so any order of the
// atomics gives the same, exact bits.
//
// Known limits: a clip *tensor* lives on the device, so unlike the CPU its values are not checked
// (that would need a device sync); a clipMax <= 0, Inf or NaN there gives Inf/NaN/0 outputs
// instead of ERR_ARG (a clip_value is checked on the host, as the CPU). Per channel along the
// last axis (inner = 1) a reduction unit reads its channel with stride C (uncoalesced, as the
// CPU's scalar walk there). Histograms over 12288 bins count with global f64 atomics.
#include "common.cuh"
#include "cpu_math.cuh"
#include "ops/quant.h"

namespace seqfuse {
namespace {

using gpu::check_launch;
using gpu::from_f32;
using gpu::quant_grid;
using gpu::to_f32;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
constexpr int64_t kUnit = kThreads * 16;          // elements of one channel per reduction block
constexpr int64_t kSharedBins = 48 * 1024 / 4;    // histogram bins counted in shared memory
constexpr float kFltMin = 1.17549435e-38f;

// [outer, C, inner]: element m (in (outer, inner) order) of channel c, and the channel of element i.
struct Layout {
  int64_t outer, C, inner;
  __device__ __forceinline__ int64_t at(int64_t c, int64_t m) const {
    if (outer == 1 || C == 1) return c * inner + m;  // per tensor, or an axis-0 channel: one contiguous run
    return ((m / inner) * C + c) * inner + m % inner;
  }
  __device__ __forceinline__ int64_t channel(int64_t i) const { return C == 1 ? 0 : (i / inner) % C; }
};

// T(float(x)) as the CPU stores it (core/dtype.h): x itself, a NaN in the CPU's encoding
// (f16: sign | 0x7e00; bf16: the quiet bit set), where a hardware round trip may give 0x7fff.
__device__ __forceinline__ float cpu_copy(float x) { return x; }
__device__ __forceinline__ __half cpu_copy(__half x) {
  const unsigned short b = __half_as_ushort(x);
  return (b & 0x7fffu) > 0x7c00u ? __ushort_as_half((unsigned short)((b & 0x8000u) | 0x7e00u)) : x;
}
__device__ __forceinline__ __nv_bfloat16 cpu_copy(__nv_bfloat16 x) {
  const unsigned short b = __bfloat16_as_ushort(x);
  return (b & 0x7fffu) > 0x7f80u ? __ushort_as_bfloat16((unsigned short)(b | 0x40u)) : x;
}

__device__ __forceinline__ float clip_of(const float* clip, float clip_value, int64_t c) {
  return clip ? __ldg(clip + c) : clip_value;
}

// Quantize (T -> int8), dequantize (int8 -> T) and fake-quant (T -> T) of x, y [outer, C, inner].
// One element per thread per grid-stride step; grid min(ceil(n / 256), 4096) x 256, no shared memory.
template <QuantMode M, class Tx, class Ty>
__global__ void quant_map_kernel(const Tx* x, Ty* y, const float* clip, float clip_value, Layout L, int64_t n) {
  int64_t c = -1;
  float inv = 0.0f, s = 0.0f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ci = L.channel(i);
    if (ci != c) {
      c = ci;
      const float cl = clip_of(clip, clip_value, c);
      inv = __fdiv_rn(127.0f, cl);
      s = __fdiv_rn(cl, 127.0f);
    }
    if constexpr (M == QuantMode::Quantize) {
      y[i] = static_cast<Ty>(quant_grid(to_f32(x[i]), inv));  // an integer in [-127, 127]
    } else if constexpr (M == QuantMode::Dequantize) {
      y[i] = from_f32<Ty>(__fmul_rn(float(x[i]), s));
    } else {  // NaN passes through, in the CPU's encoding
      const float v = to_f32(x[i]);
      y[i] = v == v ? from_f32<Ty>(__fmul_rn(quant_grid(v, inv), s)) : cpu_copy(x[i]);
    }
  }
}

// f(idx) for the elements of this block's unit: channel c = blockIdx.x / units_per_channel, its
// elements [u * kUnit, (u + 1) * kUnit) (u = blockIdx.x mod units_per_channel) in (outer, inner)
// order; thread t takes m = m0 + t, m0 + t + 256, ... (16 elements), so a warp reads 32
// consecutive elements per step where the channel's run allows.
template <class F>
__device__ __forceinline__ int64_t for_unit(const Layout& L, int64_t units_per_channel, F f) {
  const int64_t c = blockIdx.x / units_per_channel, m0 = (blockIdx.x % units_per_channel) * kUnit;
  const int64_t total = L.outer * L.inner, m1 = m0 + kUnit < total ? m0 + kUnit : total;
  for (int64_t m = m0 + threadIdx.x; m < m1; m += blockDim.x) f(L.at(c, m));
  return c;
}

// PACT backward, one block per unit (grid C * units_per_channel, block 256, 32 floats of static
// shared memory): dx = dy where |x| < clip, else 0; part[block] = the block's f32 sum of dy over
// x >= clip minus over x <= -clip (per-thread sums of 16 terms, then block_sum's fixed tree).
template <class T>
__global__ void fake_quant_bwd_kernel(const T* x, const T* dy, T* dx, const float* clip, float clip_value, Layout L,
                                      int64_t units_per_channel, float* part) {
  __shared__ float scratch[32];
  const float cl = clip_of(clip, clip_value, blockIdx.x / units_per_channel);
  float acc = 0.0f;
  for_unit(L, units_per_channel, [&](int64_t i) {
    const T g16 = dy[i];  // read before dx[i] is written: dx may be dy
    const float v = to_f32(x[i]), g = to_f32(g16);
    acc = __fadd_rn(acc, __fsub_rn(v >= cl ? g : 0.0f, -v >= cl ? g : 0.0f));
    dx[i] = fabsf(v) < cl ? cpu_copy(g16) : from_f32<T>(0.0f);
  });
  acc = gpu::block_sum(acc, scratch);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

// Max clip, one block per unit (grid C * units_per_channel, block 256, 32 floats of static shared
// memory): part[block] = max |x| over the unit (NaN ignored: fmaxf drops it).
template <class T>
__global__ void absmax_kernel(const T* x, Layout L, int64_t units_per_channel, float* part) {
  __shared__ float scratch[32];
  float m = 0.0f;
  for_unit(L, units_per_channel, [&](int64_t i) { m = fmaxf(m, fabsf(to_f32(x[i]))); });
  m = gpu::block_max(m, scratch);
  if (threadIdx.x == 0) part[blockIdx.x] = m;
}

// Second passes: one warp per channel (grid ceil(C / 8), block 256, no shared memory); lane l
// combines partials l, l + 32, ... of its channel, then a fixed xor-shuffle tree: the same order
// every run. dclip[c] (+)= the f64 sum rounded to f32 (as the CPU).
__global__ void dclip_kernel(const float* part, int64_t units_per_channel, int64_t C, float* dclip, bool accumulate) {
  const int64_t c = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (c >= C) return;  // whole warps leave together
  const int lane = threadIdx.x & 31;
  double s = 0.0;
  for (int64_t u = lane; u < units_per_channel; u += 32) s += double(part[c * units_per_channel + u]);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) dclip[c] = accumulate ? __fadd_rn(dclip[c], float(s)) : float(s);
}

// y[c] = max(max |x| of channel c, FLT_MIN) * clip_scale; with accumulate the larger of that and
// y[c] (a NaN y[c] is replaced, as the CPU's `y > m ? y : m`).
__global__ void max_clip_kernel(const float* part, int64_t units_per_channel, int64_t C, float clip_scale, float* y,
                                bool accumulate) {
  const int64_t c = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (c >= C) return;
  const int lane = threadIdx.x & 31;
  float m = kFltMin;
  for (int64_t u = lane; u < units_per_channel; u += 32) m = fmaxf(m, part[c * units_per_channel + u]);
  m = __fmul_rn(gpu::warp_max(m), clip_scale);
  if (lane == 0) y[c] = accumulate && y[c] > m ? y[c] : m;
}

// hist[b] += count of |x| * bins / range in [b, b + 1) (the last bin takes everything above; NaN
// skipped), x [n] flat. Grid-stride over x, grid min(ceil(n / 4096), 1024) x 256. With `shared`
// (bins <= kSharedBins), dynamic shared memory of bins u32 counts per block, flushed with one f64
// atomicAdd per non-zero bin; otherwise every element adds 1.0 to hist directly. Integer-valued
// f64 sums are exact in any order, so the result does not depend on the atomics' order.
template <class T>
__global__ void histogram_kernel(const T* x, int64_t n, float scale, int64_t bins, double* hist, bool shared) {
  SF_DYNAMIC_SHARED(unsigned, counts);
  const int64_t last = bins - 1;
  if (shared) {
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) counts[b] = 0u;
    __syncthreads();
  }
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = __fmul_rn(fabsf(to_f32(x[i])), scale);
    if (!(v == v)) continue;
    const int64_t b = v < float(last) ? int64_t(v) : last;
    if (shared) atomicAdd(&counts[b], 1u);
    else atomicAdd(&hist[b], 1.0);
  }
  if (shared) {
    __syncthreads();
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x)
      if (counts[b]) atomicAdd(&hist[b], double(counts[b]));
  }
}

unsigned grid_for(int64_t n, int64_t per_block, int64_t cap) {
  const int64_t b = (n + per_block - 1) / per_block;
  return unsigned(b < 1 ? 1 : b < cap ? b : cap);
}

bool finite_positive(float v) { return v > 0.0f && v <= 3.4028234663852886e38f; }

Layout layout_of(const QuantArgs& a) { return Layout{a.outer, a.channels, a.inner}; }

template <class T>
void fwd(const QuantArgs& a, cudaStream_t stream) {
  const int64_t n = a.outer * a.channels * a.inner, total = a.outer * a.inner;
  const Layout L = layout_of(a);
  const dim3 block(kThreads);
  switch (a.mode) {
    case QuantMode::Quantize:
      if (n == 0) return;
      SF_LAUNCH((quant_map_kernel<QuantMode::Quantize, T, int8_t>), dim3(grid_for(n, kThreads, kMaxBlocks)), block, 0, stream)(
          static_cast<const T*>(a.x), static_cast<int8_t*>(a.y), a.clip, a.clip_value, L, n);
      return check_launch("quantize");
    case QuantMode::Dequantize:
      if (n == 0) return;
      SF_LAUNCH((quant_map_kernel<QuantMode::Dequantize, int8_t, T>), dim3(grid_for(n, kThreads, kMaxBlocks)), block, 0, stream)(
          static_cast<const int8_t*>(a.x), static_cast<T*>(a.y), a.clip, a.clip_value, L, n);
      return check_launch("dequantize");
    case QuantMode::FakeQuant:
      if (n == 0) return;
      SF_LAUNCH((quant_map_kernel<QuantMode::FakeQuant, T, T>), dim3(grid_for(n, kThreads, kMaxBlocks)), block, 0, stream)(
          static_cast<const T*>(a.x), static_cast<T*>(a.y), a.clip, a.clip_value, L, n);
      return check_launch("fakeQuant");
    case QuantMode::MaxClip: {
      if (a.channels == 0) return;
      const int64_t upc = (total + kUnit - 1) / kUnit;
      const gpu::Scratch scratch(size_t(a.channels * upc) * sizeof(float), stream, "maxClip");
      float* part = scratch.as<float>();
      if (upc > 0) {
        SF_LAUNCH(absmax_kernel<T>, dim3(unsigned(a.channels * upc)), block, 0, stream)(static_cast<const T*>(a.x), L, upc, part);
        check_launch("maxClip");
      }
      SF_LAUNCH(max_clip_kernel, dim3(unsigned((a.channels + 7) / 8)), block, 0, stream)(part, upc, a.channels, a.clip_scale,
                                                                                          static_cast<float*>(a.y), a.accumulate);
      return check_launch("maxClip");
    }
    case QuantMode::Histogram: {
      if (n == 0 || a.bins <= 0) return;
      const bool shared = a.bins <= kSharedBins;
      const float scale = float(a.bins) / a.clip_value;  // the CPU's f32 scale
      SF_LAUNCH(histogram_kernel<T>, dim3(grid_for(n, kUnit, 1024)), block, shared ? size_t(a.bins) * 4 : 0, stream)(
          static_cast<const T*>(a.x), n, scale, a.bins, a.hist, shared);
      return check_launch("calibrate");
    }
  }
}

template <class T>
void bwd(const QuantArgs& a, cudaStream_t stream) {
  if (a.channels == 0) return;
  const int64_t upc = (a.outer * a.inner + kUnit - 1) / kUnit;
  const gpu::Scratch scratch(size_t(a.channels * upc) * sizeof(float), stream, "fakeQuantBackward");
  float* part = scratch.as<float>();
  if (upc > 0) {
    SF_LAUNCH(fake_quant_bwd_kernel<T>, dim3(unsigned(a.channels * upc)), dim3(kThreads), 0, stream)(
        static_cast<const T*>(a.x), static_cast<const T*>(a.dy), static_cast<T*>(a.dx), a.clip, a.clip_value, layout_of(a), upc,
        part);
    check_launch("fakeQuantBackward");
  }
  SF_LAUNCH(dclip_kernel, dim3(unsigned((a.channels + 7) / 8)), dim3(kThreads), 0, stream)(part, upc, a.channels, a.dclip,
                                                                                          a.accumulate);
  check_launch("fakeQuantBackward");
}

// The CPU's argument checks that need no device data: a per-tensor clip_value (a clip tensor's
// values are on the device and are not read here; see the header).
void check_clip_value(const QuantArgs& a, const char* op) {
  if (!a.clip && a.channels > 0 && !finite_positive(a.clip_value))
    fail(ErrorCode::Arg, op, ": expected clipMax to be finite and > 0 but received ", a.clip_value);
}

template <class F>
void with_float(const QuantArgs& a, const char* op, F f) {
  switch (a.dtype) {
    case DType::F32: return f(float());
    case DType::F16: return f(__half());
    case DType::BF16: return f(__nv_bfloat16());
    default: fail(ErrorCode::DType, op, ": the CUDA kernels take f32, f16 or bf16");
  }
}

}  // namespace

void quant_fwd_cuda(const QuantArgs& a, Stream s) {
  static const char* const names[] = {"quantize", "dequantize", "fakeQuant", "maxClip", "calibrate"};
  const char* op = names[int(a.mode)];
  if (a.mode == QuantMode::Histogram && !finite_positive(a.clip_value))
    fail(ErrorCode::Arg, "calibrate: expected a histogram range finite and > 0 but received ", a.clip_value);
  if (a.mode != QuantMode::MaxClip && a.mode != QuantMode::Histogram) check_clip_value(a, op);
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  with_float(a, op, [&](auto t) { fwd<decltype(t)>(a, stream); });
}

void quant_bwd_cuda(const QuantArgs& a, Stream s) {
  check_clip_value(a, "fakeQuantBackward");
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  with_float(a, "fakeQuantBackward", [&](auto t) { bwd<decltype(t)>(a, stream); });
}

}  // namespace seqfuse

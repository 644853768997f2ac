// cuda/tensor_ops.cu — dtype casts, Philox random fills and the attention heads copy on CUDA
// (ops/tensor_ops.h), the operations of native/cpu/tensor_ops.cc with the CPU's bits.
// cast: src [n] -> dst [n] among f32 / f16 / bf16 / i8 / i32 / u8. The 16-bit conversions are the
//   CPU's own bit-level ones (core/dtype.h) rather than the hardware's, so NaNs keep the CPU's
//   encodings (the hardware gives a canonical 0x7fff); float -> integer truncates toward zero and
//   saturates (NaN -> 0); integer -> float rounds to nearest even once to f32, then to the 16-bit type.
// random: out [n] from the Philox stream of core/philox.h, element i = word (i + offset) mod 4 of
//   philox((i + offset) div 4): uniform low + (high - low) * unit(u), bit for bit; normal: Box-Muller
//   on word pairs with logf / sqrt / cosf / sinf in f32 as the CPU (CUDA's logf, sinf and cosf are
//   within 1-2 ulp of glibc's, so normal values can differ from the CPU's in the last bits).
// heads_copy: B * S rows of `ld` elements, head h of row (b, s) at columns [col0 + h D, col0 + (h+1) D)
//   <-> heads [B, H, S, D]: B * H * S runs of D elements, copied as raw words, bit for bit.
//
// cast, random: grid-stride elementwise, grid min(ceil(work / 256), 4096) x 256, no shared memory.
// A cast thread converts one element per step (a warp reads and writes 32 consecutive elements).
// A random thread makes one Philox call per step (4 consecutive elements) and, when the offset is
// a multiple of 4 and out is aligned, writes them with one 16- (f32) or 8-byte (16-bit) store.
// heads_copy: the widest word (16, 8, 4, 2 or 1 bytes) that divides the run, ld, col0 and both
// pointers; groups of G lanes (G = the power of two >= words per run, at most 32) copy one run at
// a time, 256 / G runs per block per step, grid-stride over runs.
#include "common.cuh"
#include "core/philox.h"
#include "ops/tensor_ops.h"

namespace seqfuse {
namespace {

using gpu::check_launch;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

// --- the CPU's conversions (core/dtype.h), on bit patterns ------------------------------------
__device__ __forceinline__ float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float v = __fmul_rn(float(man), 5.9604644775390625e-8f);
    return sign ? -v : v;
  }
  return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}
__device__ __forceinline__ uint16_t f32_to_f16_bits(float f) {
  uint32_t a = __float_as_uint(f);
  const uint16_t sign = uint16_t((a >> 16) & 0x8000u);
  a &= 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (a < 0x38800000u) return uint16_t(sign | uint16_t(rintf(__fmul_rn(__uint_as_float(a), 16777216.0f))));  // subnormal
  a += 0xc8000fffu + ((a >> 13) & 1u);  // rebias the exponent and round to nearest even
  return uint16_t(sign | (a >> 13));
}
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Storage of each dtype (16-bit floats as their bits) and its conversions to and from f32 or int.
template <DType T> struct Elem;
template <> struct Elem<DType::F32> { using type = float; };
template <> struct Elem<DType::F16> { using type = uint16_t; };
template <> struct Elem<DType::BF16> { using type = uint16_t; };
template <> struct Elem<DType::I8> { using type = int8_t; };
template <> struct Elem<DType::I32> { using type = int32_t; };
template <> struct Elem<DType::U8> { using type = uint8_t; };
template <DType T> using elem_t = typename Elem<T>::type;

__host__ __device__ constexpr bool float_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

template <DType T>
__device__ __forceinline__ float load_f32(elem_t<T> v) {
  if constexpr (T == DType::F32) return v;
  else if constexpr (T == DType::F16) return f16_bits_to_f32(v);
  else return __uint_as_float(uint32_t(v) << 16);
}
template <DType T>
__device__ __forceinline__ elem_t<T> store_f32(float v) {
  if constexpr (T == DType::F32) return v;
  else if constexpr (T == DType::F16) return f32_to_f16_bits(v);
  else return f32_to_bf16_bits(v);
}

// Integer type T from an f32 value: truncated toward zero, saturated, NaN -> 0 (the CPU goes
// through f64, which holds every f32 exactly: the same results).
template <DType T>
__device__ __forceinline__ elem_t<T> saturate_f32(float v) {
  constexpr float lo = T == DType::I8 ? -128.0f : T == DType::U8 ? 0.0f : -2147483648.0f;
  constexpr float hi = T == DType::I8 ? 127.0f : T == DType::U8 ? 255.0f : 2147483648.0f;  // i32: 2^31 and above saturate
  if (!(v == v)) return 0;
  v = truncf(v);
  if (v <= lo) return elem_t<T>(T == DType::I32 ? -2147483647 - 1 : int(lo));
  if (v >= hi) return elem_t<T>(T == DType::I32 ? 2147483647 : int(hi));
  return elem_t<T>(int32_t(v));
}
template <DType T>
__device__ __forceinline__ elem_t<T> saturate_int(int32_t v) {
  if constexpr (T == DType::I32) return v;
  constexpr int32_t lo = T == DType::I8 ? -128 : 0, hi = T == DType::I8 ? 127 : 255;
  return elem_t<T>(v < lo ? lo : v > hi ? hi : v);
}

template <DType S, DType D>
__device__ __forceinline__ elem_t<D> convert(elem_t<S> v) {
  if constexpr (float_dtype(S)) {
    const float f = load_f32<S>(v);
    if constexpr (float_dtype(D)) return store_f32<D>(f);
    else return saturate_f32<D>(f);
  } else {
    if constexpr (float_dtype(D)) return store_f32<D>(__int2float_rn(int32_t(v)));
    else return saturate_int<D>(int32_t(v));
  }
}

// dst[i] = convert(src[i]), src, dst [n]; one element per thread per grid-stride step.
template <DType S, DType D>
__global__ void cast_kernel(const elem_t<S>* src, elem_t<D>* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = convert<S, D>(src[i]);
}

template <DType S>
void cast_from(const CastArgs& a, unsigned grid, cudaStream_t stream) {
  const auto* src = static_cast<const elem_t<S>*>(a.src);
  switch (a.dst_dtype) {
#define SF_CAST_TO(D) \
  case D: SF_LAUNCH((cast_kernel<S, D>), dim3(grid), dim3(kThreads), 0, stream)(src, static_cast<elem_t<D>*>(a.dst), a.n); break;
    SF_CAST_TO(DType::F32)
    SF_CAST_TO(DType::F16)
    SF_CAST_TO(DType::BF16)
    SF_CAST_TO(DType::I8)
    SF_CAST_TO(DType::I32)
    SF_CAST_TO(DType::U8)
#undef SF_CAST_TO
    default: fail(ErrorCode::DType, "cast: unknown destination dtype");
  }
  check_launch("cast");
}

// --- random --------------------------------------------------------------------------------------
// (u >> 8) * 2^-24: exact (core/philox.h philox_unit).
__device__ __forceinline__ float unit24(uint32_t u) { return __fmul_rn(float(u >> 8), 5.9604644775390625e-8f); }

template <class T>
struct alignas(4 * sizeof(T)) Pack4 { T v[4]; };

// out [n] = elements [offset, offset + n) of the stream; thread per Philox call g (elements 4g ..
// 4g + 3), grid-stride over the calls. `vec`: offset % 4 == 0 and out aligned to 4 elements, so
// every full call is one aligned vector store.
template <DType T>
__global__ void random_kernel(elem_t<T>* out, int64_t n, uint64_t seed, uint64_t offset, bool normal, float a, float b,
                              bool vec) {
  const uint64_t first = offset, last = offset + uint64_t(n);
  const uint64_t g1 = (last + 3) >> 2;
  for (uint64_t g = (first >> 2) + uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < g1; g += uint64_t(gridDim.x) * blockDim.x) {
    const Philox4 r = philox4x32_10(g, seed);
    float v[4];
    if (!normal) {
      const float span = __fsub_rn(b, a);
      for (int k = 0; k < 4; ++k) v[k] = __fadd_rn(a, __fmul_rn(span, unit24(r.v[k])));
    } else {  // Box-Muller on (u0, u1) and (u2, u3); u in (0, 1] for the log
      for (int k = 0; k < 4; k += 2) {
        const float u1 = __fmul_rn(float((r.v[k] >> 8) + 1), 5.9604644775390625e-8f), u2 = unit24(r.v[k + 1]);
        const float rad = __fsqrt_rn(__fmul_rn(-2.0f, logf(u1))), th = __fmul_rn(6.2831853071795864f, u2);
        const float br = __fmul_rn(b, rad);
        v[k] = __fadd_rn(a, __fmul_rn(br, cosf(th)));
        v[k + 1] = __fadd_rn(a, __fmul_rn(br, sinf(th)));
      }
    }
    const uint64_t e0 = g * 4;
    if (vec && e0 >= first && e0 + 4 <= last) {
      Pack4<elem_t<T>> p;
      for (int k = 0; k < 4; ++k) p.v[k] = store_f32<T>(v[k]);
      *reinterpret_cast<Pack4<elem_t<T>>*>(out + (e0 - first)) = p;
    } else {
      for (int k = 0; k < 4; ++k)
        if (e0 + k >= first && e0 + k < last) out[e0 + k - first] = store_f32<T>(v[k]);
    }
  }
}

template <DType T>
void random_fill(const RandomArgs& a, cudaStream_t stream) {
  const uint64_t calls = ((a.offset + uint64_t(a.n) + 3) >> 2) - (a.offset >> 2);
  const int64_t blocks = int64_t((calls + kThreads - 1) / kThreads);
  const bool vec = (a.offset & 3) == 0 && reinterpret_cast<uintptr_t>(a.out) % (4 * sizeof(elem_t<T>)) == 0;
  SF_LAUNCH(random_kernel<T>, dim3(unsigned(blocks < kMaxBlocks ? blocks : kMaxBlocks)), dim3(kThreads), 0, stream)(
      static_cast<elem_t<T>*>(a.out), a.n, a.seed, a.offset, a.kind == RandomKind::Normal, a.a, a.b, vec);
  check_launch(a.kind == RandomKind::Normal ? "randn" : "rand");
}

// --- heads copy ----------------------------------------------------------------------------------
// runs = B * H * S runs of `words` words W; run r = (b H + h) S + s is heads[r * words ..] and
// rows[(b S + s) ld_w + col0_w + h words ..]. Groups of G lanes (blockDim.x / G per block) take
// one run each per step; lane l copies words l, l + G, ...
template <class W>
__global__ void heads_copy_kernel(const W* src, W* dst, int64_t runs, int64_t S, int64_t H, int64_t words, int64_t ld_w,
                                  int64_t col0_w, bool to_heads, int G) {
  const int lane = int(threadIdx.x) % G, per_block = int(blockDim.x) / G;
  for (int64_t r = int64_t(blockIdx.x) * per_block + threadIdx.x / G; r < runs; r += int64_t(gridDim.x) * per_block) {
    const int64_t p = r / S, s = r % S, b = p / H, h = p % H;
    const int64_t row = (b * S + s) * ld_w + col0_w + h * words, head = r * words;
    const W* from = src + (to_heads ? row : head);
    W* to = dst + (to_heads ? head : row);
    for (int64_t k = lane; k < words; k += G) to[k] = from[k];
  }
}

template <class W>
void heads_copy_words(const HeadsArgs& a, int64_t es, cudaStream_t stream) {
  const int64_t w = int64_t(sizeof(W)), words = a.D * es / w, runs = a.B * a.H * a.S;
  int G = 1;
  while (G < 32 && G < words) G *= 2;
  const int64_t per_block = kThreads / G, blocks = (runs + per_block - 1) / per_block;
  SF_LAUNCH(heads_copy_kernel<W>, dim3(unsigned(blocks < kMaxBlocks ? blocks : kMaxBlocks)), dim3(kThreads), 0, stream)(
      static_cast<const W*>(a.src), static_cast<W*>(a.dst), runs, a.S, a.H, words, a.ld * es / w, a.col0 * es / w, a.to_heads, G);
  check_launch("headsCopy");
}

}  // namespace

void cast_cuda(const CastArgs& a, Stream s) {
  if (a.n <= 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  const int64_t b = (a.n + kThreads - 1) / kThreads;
  const unsigned grid = unsigned(b < kMaxBlocks ? b : kMaxBlocks);
  switch (a.src_dtype) {
    case DType::F32: return cast_from<DType::F32>(a, grid, stream);
    case DType::F16: return cast_from<DType::F16>(a, grid, stream);
    case DType::BF16: return cast_from<DType::BF16>(a, grid, stream);
    case DType::I8: return cast_from<DType::I8>(a, grid, stream);
    case DType::I32: return cast_from<DType::I32>(a, grid, stream);
    case DType::U8: return cast_from<DType::U8>(a, grid, stream);
  }
  fail(ErrorCode::DType, "cast: unknown source dtype");
}

void random_cuda(const RandomArgs& a, Stream s) {
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: if (a.n > 0) random_fill<DType::F32>(a, stream); return;
    case DType::F16: if (a.n > 0) random_fill<DType::F16>(a, stream); return;
    case DType::BF16: if (a.n > 0) random_fill<DType::BF16>(a, stream); return;
    default: fail(ErrorCode::DType, "random: the CUDA kernels fill f32, f16 or bf16 but received ", dtype_name(a.dtype));
  }
}

void heads_copy_cuda(const HeadsArgs& a, Stream s) {
  const int64_t es = dtype_size(a.dtype);
  if (es == 0) fail(ErrorCode::DType, "headsCopy: unknown dtype");
  if (a.B * a.H * a.S == 0 || a.D == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  uint64_t all = uint64_t(a.D * es) | uint64_t(a.ld * es) | uint64_t(a.col0 * es) | reinterpret_cast<uintptr_t>(a.src) |
                 reinterpret_cast<uintptr_t>(a.dst);
  if (all % 16 == 0) return heads_copy_words<uint4>(a, es, stream);
  if (all % 8 == 0) return heads_copy_words<uint2>(a, es, stream);
  if (all % 4 == 0) return heads_copy_words<uint32_t>(a, es, stream);
  if (all % 2 == 0) return heads_copy_words<uint16_t>(a, es, stream);
  heads_copy_words<uint8_t>(a, es, stream);
}

}  // namespace seqfuse

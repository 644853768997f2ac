// native/cpu/simd.h — the vector type `V` that CPU kernels are written against, one per ISA.
//
// Every kernel file in native/cpu is compiled three times (binding.gyp / CMakeLists.txt):
//   SF_ISA=2  AVX-512 F/BW/VL/DQ + VNNI + BF16 (+FMA, F16C)   namespace seqfuse::cpu::avx512
//   SF_ISA=1  AVX2 + FMA + F16C                                namespace seqfuse::cpu::avx2
//   SF_ISA=0  portable C++, scalar V (W = 1): the `_ref` twin  namespace seqfuse::cpu::generic
// The SF_ISA=0 pass also compiles the op entries (SF_ISA_MAIN), which pick a pass at run time
// with SF_PICK (isa.h). Code inside the ISA namespaces must not instantiate STL templates or
// non-static inline functions: the linker keeps one copy of a weak symbol, and an AVX-512 copy
// must never serve the portable path. Everything here is `static` or in the ISA namespace.
//
// V's interface (R = register of W floats):
//   zero set1 load(p) load(p,n) store(p,r) store(p,r,n)   p: float*, bf16_t*, f16_t*; n < W tail
//   load(const int8_t*[, n]) widens int8 to f32, load(const int32_t*[, n]) converts int32 (rounded
//   to nearest f32 above 2^24); store(int8_t*, r[, n]) writes lanes that hold
//   integer values in [-127, 127] (quantization's grid) as int8
//   add sub mul div fma(a,b,c)=a*b+c fnma(a,b,c)=c-a*b max min abs neg sqrt rsqrt_ge(precise 1/sqrt)
//   hsum hmax  lt(a,b) -> Mask  select(mask, a, b) = mask ? a : b  select0(mask, a) = mask ? a : 0
//   round pow2i(n) copysign
//   Thr thr(t), keep(const uint16_t* h, Thr[, n]) -> Mask: h >= t, dropout's keep test on 16-bit
//   random values with threshold t in [0, 65536] (core/philox.h), one integer compare per vector
//   iadd(a, b) ishl(a, k): integer add / left shift of the lanes' bit patterns
//   stream(float* p, r): non-temporal store (no read-for-ownership, bypasses the caches) for
//   outputs larger than the last-level cache; p aligned to W*4 bytes; fence() after the last one
// and the row helpers ld() / write_row() below, which elementwise kernels use.
#pragma once
#include <cmath>
#include <cstdint>
#include "core/dtype.h"

#ifndef SF_ISA
#define SF_ISA 0
#endif

// Vector helpers and per-element kernel bodies must inline: a call per vector serializes the
// long latency chains (exp, erf) that independent vectors would otherwise overlap. GCC's
// heuristics refuse for the larger ones, so this forces it (also on lambdas: `[&](...) SF_INLINE_LAMBDA`).
#define SF_INLINE static inline __attribute__((always_inline))
#define SF_INLINE_LAMBDA __attribute__((always_inline))

#if SF_ISA == 2
#define SF_ISA_NS avx512
#elif SF_ISA == 1
#define SF_ISA_NS avx2
#else
#define SF_ISA_NS generic
#define SF_ISA_MAIN 1
#endif

#if SF_ISA >= 1
#include <immintrin.h>
#endif

namespace seqfuse::cpu::SF_ISA_NS {

#if SF_ISA == 2
struct V {
  using R = __m512;
  using Mask = __mmask16;
  static constexpr int W = 16;
  static __mmask16 tail(int n) { return __mmask16((1u << n) - 1u); }
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float v) { return _mm512_set1_ps(v); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R load(const float* p, int n) { return _mm512_maskz_loadu_ps(tail(n), p); }
  static R from_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static R load(const bf16_t* p) { return from_bf16(_mm256_loadu_si256((const __m256i*)p)); }
  static R load(const bf16_t* p, int n) { return from_bf16(_mm256_maskz_loadu_epi16(tail(n), p)); }
  static R load(const f16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
  static R load(const f16_t* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail(n), p)); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, R v, int n) { _mm512_mask_storeu_ps(p, tail(n), v); }
  static void stream(float* p, R v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
  static void stream(float* p, R v, int n) {  // first n lanes, one 4-byte non-temporal store each
    alignas(64) float b[W];
    _mm512_store_ps(b, v);
    for (int i = 0; i < n; ++i) _mm_stream_si32(reinterpret_cast<int*>(p + i), *reinterpret_cast<const int*>(b + i));
  }
  static void fence() { _mm_sfence(); }
  static R load(const int8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p))); }
  static R load(const int8_t* p, int n) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(tail(n), p))); }
  static R load(const int32_t* p) { return _mm512_cvtepi32_ps(_mm512_loadu_si512(p)); }
  static R load(const int32_t* p, int n) { return _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(tail(n), p)); }
  static void store(int8_t* p, R v) { _mm_storeu_si128((__m128i*)p, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v))); }
  static void store(int8_t* p, R v, int n) { _mm512_mask_cvtsepi32_storeu_epi8(p, tail(n), _mm512_cvtps_epi32(v)); }
  static __m256i to_bf16(R v) { return (__m256i)_mm512_cvtneps_pbh(v); }  // RNE, NaN-safe
  static void store(bf16_t* p, R v) { _mm256_storeu_si256((__m256i*)p, to_bf16(v)); }
  static void store(bf16_t* p, R v, int n) { _mm256_mask_storeu_epi16(p, tail(n), to_bf16(v)); }
  static void store(f16_t* p, R v) { _mm256_storeu_si256((__m256i*)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
  static void store(f16_t* p, R v, int n) { _mm256_mask_storeu_epi16(p, tail(n), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R fnma(R a, R b, R c) { return _mm512_fnmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static R abs(R a) { return _mm512_abs_ps(a); }
  static R neg(R a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.0f)); }
  static R sqrt(R a) { return _mm512_sqrt_ps(a); }
  static R copysign(R mag, R sgn) {
    return _mm512_or_ps(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), mag), _mm512_and_ps(_mm512_set1_ps(-0.0f), sgn));
  }
  static float hsum(R a) { return _mm512_reduce_add_ps(a); }
  static float hmax(R a) { return _mm512_reduce_max_ps(a); }
  static Mask lt(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static Mask ge(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static R select(Mask m, R a, R b) { return _mm512_mask_blend_ps(m, b, a); }
  static R select0(Mask m, R a) { return _mm512_maskz_mov_ps(m, a); }
  static R round(R a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R pow2i(R n) {  // 2^n for integer-valued n in [-126, 127]
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static R iadd(R a, R b) { return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b))); }
  static R ishl(R a, int k) { return _mm512_castsi512_ps(_mm512_sll_epi32(_mm512_castps_si512(a), _mm_cvtsi32_si128(k))); }
  using Thr = __m512i;
  static Thr thr(uint32_t t) { return _mm512_set1_epi32(int32_t(t)); }
  static Mask keep(const uint16_t* h, Thr t) {
    return _mm512_cmpge_epu32_mask(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)h)), t);
  }
  static Mask keep(const uint16_t* h, Thr t, int n) {
    return _mm512_cmpge_epu32_mask(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(tail(n), h)), t);
  }
};
#elif SF_ISA == 1
struct V {
  using R = __m256;
  using Mask = __m256;
  static constexpr int W = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float v) { return _mm256_set1_ps(v); }
  template <class T> static R load(const T* p, int n) {
    T buf[W] = {};
    for (int i = 0; i < n; ++i) buf[i] = p[i];
    return load(buf);
  }
  template <class T> static void store(T* p, R v, int n) {
    T buf[W];
    store(buf, v);
    for (int i = 0; i < n; ++i) p[i] = buf[i];
  }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  // f32 tails: a masked load (lanes >= n read as 0, no fault past the end), not the byte copy
  // above, whose narrow stores the wide reload cannot forward from (a ~15-cycle stall).
  static R load(const float* p, int n) {
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static R load(const bf16_t* p) {
    __m128i h = _mm_loadu_si128((const __m128i*)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static R load(const f16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
  static R load(const int8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p))); }
  static R load(const int32_t* p) { return _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)p)); }
  static void store(int8_t* p, R v) {  // i32 -> i16 -> i8 with signed saturation
    __m256i i = _mm256_cvtps_epi32(v);
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64((__m128i*)p, _mm_packs_epi16(w, w));
  }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static void stream(float* p, R v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
  static void stream(float* p, R v, int n) {  // first n lanes, one 4-byte non-temporal store each
    alignas(32) float b[W];
    _mm256_store_ps(b, v);
    for (int i = 0; i < n; ++i) _mm_stream_si32(reinterpret_cast<int*>(p + i), *reinterpret_cast<const int*>(b + i));
  }
  static void fence() { _mm_sfence(); }
  static void store(bf16_t* p, R v) {  // round to nearest even; NaN -> quiet NaN
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), nan);
    __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
    _mm_storeu_si128((__m128i*)p, _mm_packus_epi32(lo, hi));
  }
  static void store(f16_t* p, R v) { _mm_storeu_si128((__m128i*)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R fnma(R a, R b, R c) { return _mm256_fnmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static R abs(R a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static R neg(R a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  static R sqrt(R a) { return _mm256_sqrt_ps(a); }
  static R copysign(R mag, R sgn) {
    return _mm256_or_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), mag), _mm256_and_ps(_mm256_set1_ps(-0.0f), sgn));
  }
  static float hsum(R a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(R a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static Mask lt(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static Mask ge(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  static R select(Mask m, R a, R b) { return _mm256_blendv_ps(b, a, m); }
  static R select0(Mask m, R a) { return _mm256_and_ps(m, a); }  // a logic op: any FP pipe, unlike blendv
  static R round(R a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R pow2i(R n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static R iadd(R a, R b) { return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b))); }
  static R ishl(R a, int k) { return _mm256_castsi256_ps(_mm256_sll_epi32(_mm256_castps_si256(a), _mm_cvtsi32_si128(k))); }
  // t - 1, so that h >= t is one signed compare h > t - 1 (both in [-1, 65535])
  using Thr = __m256i;
  static Thr thr(uint32_t t) { return _mm256_set1_epi32(int32_t(t) - 1); }
  static Mask keep(const uint16_t* h, Thr t) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)h)), t));
  }
  static Mask keep(const uint16_t* h, Thr t, int n) {
    uint16_t buf[W] = {};
    for (int i = 0; i < n; ++i) buf[i] = h[i];
    return keep(buf, t);
  }
};
#else
struct V {  // scalar reference twin: the same kernels with one lane
  using R = float;
  using Mask = bool;
  static constexpr int W = 1;
  static R zero() { return 0.0f; }
  static R set1(float v) { return v; }
  template <class T> static R load(const T* p) { return to_f32(*p); }
  template <class T> static R load(const T* p, int) { return to_f32(*p); }
  template <class T> static void store(T* p, R v) { *p = from_f32<T>(v); }
  template <class T> static void store(T* p, R v, int) { *p = from_f32<T>(v); }
  static R load(const int8_t* p) { return float(*p); }
  static R load(const int8_t* p, int) { return float(*p); }
  static R load(const int32_t* p) { return float(*p); }
  static R load(const int32_t* p, int) { return float(*p); }
  static void store(int8_t* p, R v) { *p = int8_t(v); }
  static void store(int8_t* p, R v, int) { *p = int8_t(v); }
  static void stream(float* p, R v) { *p = v; }
  static void stream(float* p, R v, int) { *p = v; }
  static void fence() {}
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R fma(R a, R b, R c) { return std::fma(a, b, c); }
  static R fnma(R a, R b, R c) { return std::fma(-a, b, c); }
  static R max(R a, R b) { return a > b ? a : b; }
  static R min(R a, R b) { return a < b ? a : b; }
  static R abs(R a) { return std::fabs(a); }
  static R neg(R a) { return -a; }
  static R sqrt(R a) { return std::sqrt(a); }
  static R copysign(R mag, R sgn) { return std::copysign(mag, sgn); }
  static float hsum(R a) { return a; }
  static float hmax(R a) { return a; }
  static Mask lt(R a, R b) { return a < b; }
  static Mask ge(R a, R b) { return a >= b; }
  static R select(Mask m, R a, R b) { return m ? a : b; }
  static R select0(Mask m, R a) { return m ? a : 0.0f; }
  static R round(R a) { return std::nearbyint(a); }
  static R pow2i(R n) { return std::ldexp(1.0f, int(n)); }
  static R iadd(R a, R b) { return bits_to_f32(f32_to_bits(a) + f32_to_bits(b)); }
  static R ishl(R a, int k) { return bits_to_f32(f32_to_bits(a) << k); }
  using Thr = uint32_t;
  static Thr thr(uint32_t t) { return t; }
  static Mask keep(const uint16_t* h, Thr t) { return *h >= t; }
  static Mask keep(const uint16_t* h, Thr t, int) { return *h >= t; }
};
#endif

using R = V::R;

// Loads W lanes at p (or the first w < W lanes, the rest zero).
template <class T>
SF_INLINE R ld(const T* p, int w) { return w == V::W ? V::load(p) : V::load(p, w); }

// Outputs at least this large bypass the cache (non-temporal stores): the data will not be
// read again before it is evicted, and skipping the read-for-ownership saves a third of the
// memory traffic of a streaming op.
constexpr int64_t kStreamBytes = int64_t(8) << 20;

// y[0, n) = f(j, w) for vector chunks starting at column j with w valid lanes, in order of j (f
// may have side effects, e.g. accumulate). The body runs 4 vectors per step, so the long latency
// chains of per-element math (erf, exp: 50+ cycles) of independent vectors sit next to each other
// in program order and overlap in the scheduler's window. With `nt` and f32 output, every element
// is written non-temporally: full vectors from the first aligned column on, and the unaligned
// head and tail one element at a time (a cache line written partly with normal stores and partly
// with streaming ones costs a read-for-ownership and a flush, which for 768-wide rows was a third
// of the op's time). The caller issues V::fence() once its rows are done.
template <class T, class F>
SF_INLINE void write_row(T* y, int64_t n, bool nt, F f) {
  constexpr int W = V::W;
  int64_t j = 0;
  if constexpr (sizeof(T) == 4 && W > 1) {
    constexpr uintptr_t A = sizeof(float) * W;
    uintptr_t addr = reinterpret_cast<uintptr_t>(y);
    if (nt && addr % sizeof(float) == 0) {
      int64_t head = int64_t(((A - addr % A) % A) / sizeof(float));
      if (head > n) head = n;
      if (head) V::stream(y, f(int64_t(0), int(head)), int(head));
      for (j = head; j + 4 * W <= n; j += 4 * W) {
        R a = f(j, W), b = f(j + W, W), c = f(j + 2 * W, W), d = f(j + 3 * W, W);
        V::stream(y + j, a); V::stream(y + j + W, b); V::stream(y + j + 2 * W, c); V::stream(y + j + 3 * W, d);
      }
      for (; j + W <= n; j += W) V::stream(y + j, f(j, W));
      if (j < n) V::stream(y + j, f(j, int(n - j)), int(n - j));
      return;
    }
  }
  for (; j + 4 * W <= n; j += 4 * W) {
    R a = f(j, W), b = f(j + W, W), c = f(j + 2 * W, W), d = f(j + 3 * W, W);
    V::store(y + j, a); V::store(y + j + W, b); V::store(y + j + 2 * W, c); V::store(y + j + 3 * W, d);
  }
  for (; j + W <= n; j += W) V::store(y + j, f(j, W));
  if (j < n) V::store(y + j, f(j, int(n - j)), int(n - j));
}

// --- vector math (shared by every ISA; accuracy noted per function) -----------------------
// exp: Cephes expf polynomial on r = x - n ln2, |rel err| < 2 ulp; exp(x < -87.3) = 0.
SF_INLINE R vexp(R x) {
  const R lo = V::set1(-87.33654f);
  R xc = V::min(V::max(x, lo), V::set1(88.72283f));
  R n = V::round(V::mul(xc, V::set1(1.44269504088896341f)));
  R r = V::fma(n, V::set1(-0.693359375f), xc);
  r = V::fma(n, V::set1(2.12194440e-4f), r);
  R p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  R y = V::fma(V::mul(p, r), r, V::add(r, V::set1(1.0f)));
  return V::select(V::lt(x, lo), V::zero(), V::mul(y, V::pow2i(n)));
}

// exp for x <= 0 (softmax after the max is subtracted): about a third fewer operations than
// vexp, |rel err| < 1.3 ulp on [-86, 0] (measured against double exp at 69M points). A NaN x
// gives an unspecified value: callers that care detect NaN themselves. Flush: exactly 0 below
// -86 (so exp(-Inf) = 0); without it the caller guarantees x >= -86, and saves two operations.
// n = round(x log2 e) comes from the low mantissa bits of t = x log2 e + 1.5 * 2^23, and
// 2^n is applied by adding n << 23 to the exponent field (no int conversion needed).
template <bool Flush = true>
SF_INLINE R vexp_nonpos(R x) {
  const R magic = V::set1(12582912.0f);
  R t = V::fma(x, V::set1(1.44269504088896341f), magic);
  R n = V::sub(t, magic);
  R r = V::fma(n, V::set1(-0.693359375f), x);  // Cody-Waite: ln 2 = 0.693359375 - 2.12194440e-4
  r = V::fma(n, V::set1(2.12194440e-4f), r);
  // 1 + r + r^2 (c2 + c3 r + c4 r^2 + c5 r^3 + c6 r^4), minimax for relative error on |r| <= ln2/2
  R p = V::set1(1.387109398e-3f);
  p = V::fma(p, r, V::set1(8.369504474e-3f));
  p = V::fma(p, r, V::set1(4.166741669e-2f));
  p = V::fma(p, r, V::set1(1.666651368e-1f));
  p = V::fma(p, r, V::set1(4.999999702e-1f));
  p = V::fma(p, r, V::set1(1.0f));
  p = V::fma(p, r, V::set1(1.0f));
  R y = V::iadd(p, V::ishl(t, 23));
  return Flush ? V::select(V::lt(x, V::set1(-86.0f)), V::zero(), y) : y;
}

// erfc(s a) for a >= 0 by Abramowitz & Stegun 7.1.28, erfc(x) = (1 + a1 x + ... + a6 x^6)^-16 for
// x >= 0: no exp and a short chain, |abs err| < 3e-7 in exact arithmetic (f32 adds ~1e-7). The
// argument scale s is folded into the coefficients (a_k s^k, rounded once to f32), which saves a
// multiply for callers like Phi(z) = erfc(-z / sqrt 2) / 2. The result is in [0, 1]; p^16
// overflows to Inf for s a > ~10, where 1/p = 0 is the right limit. NaN in, NaN out.
SF_INLINE R verfc_pos(R a, double s) {
  const double s2 = s * s, s3 = s2 * s;
  R p = V::fma(a, V::set1(float(4.30638e-5 * s3 * s3)), V::set1(float(2.765672e-4 * s3 * s2)));
  p = V::fma(a, p, V::set1(float(1.520143e-4 * s2 * s2)));
  p = V::fma(a, p, V::set1(float(9.2705272e-3 * s3)));
  p = V::fma(a, p, V::set1(float(4.22820123e-2 * s2)));
  p = V::fma(a, p, V::set1(float(7.05230784e-2 * s)));
  p = V::fma(a, p, V::set1(1.0f));
  p = V::mul(p, p);
  p = V::mul(p, p);
  p = V::mul(p, p);
  p = V::mul(p, p);
  return V::div(V::set1(1.0f), p);
}

// tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)); |abs err| ~1e-7 (relative error grows near 0).
SF_INLINE R vtanh(R x) {
  R e = vexp(V::min(V::mul(V::abs(x), V::set1(2.0f)), V::set1(88.0f)));
  R y = V::sub(V::set1(1.0f), V::div(V::set1(2.0f), V::add(e, V::set1(1.0f))));
  return V::copysign(y, x);
}

// sigmoid(x) = 1 / (1 + exp(-x))
SF_INLINE R vsigmoid(R x) { return V::div(V::set1(1.0f), V::add(V::set1(1.0f), vexp(V::neg(x)))); }

}  // namespace seqfuse::cpu::SF_ISA_NS

// native/cpu/linear_i8.cc — the int8 linear's own kernels (ops/matmul.h linear_i8): the exact
// small-M product (decode shapes; larger M run on oneDNN in matmul.cc) and the float epilogue: one
// output row from its exact int32 accumulators, y = act(f32(acc) * col_scale + bias) + residual,
// stored as f32 (fake-quantized with out_clip when it is set), or requantized to int8 with
// quantize's rounding (cpu/quant_grid.h). The product
// itself and the int32 combine run in matmul.cc (oneDNN); this pass runs on the row while it is in L1.
#include "cpu/act_simd.h"
#include "cpu/quant_grid.h"
#include "ops/matmul.h"

namespace seqfuse::cpu::SF_ISA_NS {

template <Activation A>
static void row_act(const LinearI8Args& a, const float* cs, const int32_t* acc, int64_t row) {
  const int64_t n = a.n;
  const float* res = a.residual ? a.residual + row * n : nullptr;
  const R one = V::set1(1.0f);
  auto value = [&](int64_t j, int w) SF_INLINE_LAMBDA {
    R z = V::mul(ld(acc + j, w), ld(cs + j, w));
    if (a.bias) z = V::add(z, ld(a.bias + j, w));
    z = act_fwd<A>(z, one);
    return res ? V::add(z, ld(res + j, w)) : z;
  };
  if (a.out == DType::I8) {
    const R inv = V::set1(127.0f / a.out_clip);
    write_row(static_cast<int8_t*>(a.y) + row * n, n, false,
              [&](int64_t j, int w) SF_INLINE_LAMBDA { return quant_grid(value(j, w), inv); });
  } else if (a.out_clip > 0.0f) {
    const R inv = V::set1(127.0f / a.out_clip), step = V::set1(a.out_clip / 127.0f);
    write_row(static_cast<float*>(a.y) + row * n, n, false,
              [&](int64_t j, int w) SF_INLINE_LAMBDA { return V::mul(quant_grid(value(j, w), inv), step); });
  } else {
    write_row(static_cast<float*>(a.y) + row * n, n, false, value);
  }
}

void linear_i8_row(const LinearI8Args& a, const float* cs, const int32_t* acc, int64_t row) {
  switch (a.act) {
    case Activation::Relu: return row_act<Activation::Relu>(a, cs, acc, row);
    case Activation::Gelu: return row_act<Activation::Gelu>(a, cs, acc, row);
    case Activation::GeluTanh: return row_act<Activation::GeluTanh>(a, cs, acc, row);
    case Activation::Silu: return row_act<Activation::Silu>(a, cs, acc, row);
    default: return row_act<Activation::None>(a, cs, acc, row);
  }
}

// Exact int32 products for few rows (decode shapes): acc[m, n] = sum_k x[m, k] w[n, k] for the
// columns [n0, n1), straight from w's own [N, K] rows (no packing). Both sides are widened to int16
// and multiplied pairwise into int32 (vpmaddwd: exact for every int8 value, unlike the u8 x s8
// product's int16 sums), so 8-bit weights need no split. x16: x widened to int16, [M, K].
// Register block: NB = 4 weight rows (widened once per k step, reused by the MB rows of x) times
// MB <= 2 rows of x: 4 MB accumulators; the 4 rows of one x row are reduced together at the end.
// For M > 2 the 4 weight rows (4 K bytes) are re-read from L1 per pair of x rows.
#if SF_ISA >= 1
#if SF_ISA == 2
using IV = __m512i;
constexpr int64_t kIStep = 32;
SF_INLINE IV iv_zero() { return _mm512_setzero_si512(); }
SF_INLINE IV iv_w16(const int8_t* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
SF_INLINE IV iv_x16(const int16_t* p) { return _mm512_loadu_si512(p); }
SF_INLINE IV iv_madd(IV acc, IV a, IV b) { return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b)); }
SF_INLINE void iv_sum4(const IV* s, int32_t* out) {
  for (int j = 0; j < 4; ++j) out[j] = _mm512_reduce_add_epi32(s[j]);
}
#else
using IV = __m256i;
constexpr int64_t kIStep = 16;
SF_INLINE IV iv_zero() { return _mm256_setzero_si256(); }
SF_INLINE IV iv_w16(const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
SF_INLINE IV iv_x16(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
SF_INLINE IV iv_madd(IV acc, IV a, IV b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
SF_INLINE void iv_sum4(const IV* s, int32_t* out) {  // out[j] = the 8 lanes of s[j] added
  const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
}
#endif
#endif

template <int MB, int NB>
static void small_block(const LinearI8Args& a, const int16_t* x16, int64_t m0, int64_t n, int32_t* acc) {
  const int64_t K = a.k, N = a.n;
  const int8_t* w = a.w + n * K;
  int32_t sum[MB][4] = {};
  int64_t k = 0;
#if SF_ISA >= 1
  IV s[MB][4];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < 4; ++j) s[i][j] = iv_zero();
  for (; k + kIStep <= K; k += kIStep) {
    IV wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = iv_w16(w + j * K + k);
    for (int i = 0; i < MB; ++i) {
      const IV xv = iv_x16(x16 + (m0 + i) * K + k);
      for (int j = 0; j < NB; ++j) s[i][j] = iv_madd(s[i][j], wv[j], xv);
    }
  }
  for (int i = 0; i < MB; ++i) iv_sum4(s[i], sum[i]);
#endif
  for (; k < K; ++k)
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < NB; ++j) sum[i][j] += int32_t(w[j * K + k]) * int32_t(x16[(m0 + i) * K + k]);
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[(m0 + i) * N + n + j] = sum[i][j];
}

template <int MB>
static void small_rows(const LinearI8Args& a, const int16_t* x16, int64_t m0, int64_t n0, int64_t n1, int32_t* acc) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) small_block<MB, 4>(a, x16, m0, n, acc);
  for (; n < n1; ++n) small_block<MB, 1>(a, x16, m0, n, acc);
}

void linear_i8_small(const LinearI8Args& a, const int16_t* x16, int64_t n0, int64_t n1, int32_t* acc) {
  int64_t m0 = 0;
  for (; m0 + 2 <= a.m; m0 += 2) small_rows<2>(a, x16, m0, n0, n1, acc);
  if (m0 < a.m) small_rows<1>(a, x16, m0, n0, n1, acc);
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include "cpu/isa.h"

namespace seqfuse::cpu {
SF_ISA_DECLARE(void linear_i8_row(const LinearI8Args&, const float*, const int32_t*, int64_t))
SF_ISA_DECLARE(void linear_i8_small(const LinearI8Args&, const int16_t*, int64_t, int64_t, int32_t*))

using LinearI8RowFn = void (*)(const LinearI8Args& a, const float* col_scale, const int32_t* acc, int64_t row);
LinearI8RowFn linear_i8_row_fn() { return SF_PICK(linear_i8_row); }
using LinearI8SmallFn = void (*)(const LinearI8Args& a, const int16_t* x16, int64_t n0, int64_t n1, int32_t* acc);
LinearI8SmallFn linear_i8_small_fn() { return SF_PICK(linear_i8_small); }
}  // namespace seqfuse::cpu
#endif

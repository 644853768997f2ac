// native/cpu/attention_block.h — the pieces the attention kernels (cpu/attention.cc forward,
// cpu/attention_bwd.cc backward) are built from; included after nothing else, in every ISA pass.
//   masks:     attn_key_end / attn_first_row (kvLengths + bottom-right causal), attn_bias_row,
//              attn_rng_index (dropout's element index of (b, h, i, j))
//   rows:      add_bias_row, softmax_block_rows (the forward's online softmax step, log2 units,
//              vexp2_nonpos), probs_row (the backward's P from lse), drop_row (dropout's keep
//              mask on a row segment)
//   products:  mm_panel / mm_panel_packed, C[M, N] (=, +=, or row-scaled +=) A[M, K] B[K, N]
//              through register tiles that broadcast A and load B rows (plain or packed panels).
//              A is read through two strides, so one kernel serves Q K^T (B = K^T packed), P V,
//              dS K, and the transposed products P^T dO and dS^T Q (A = P or dS read
//              column-wise: ars = 1, aks = row stride).
//   dots:      dot_rows, up to 8 dot products of one f32 row with rows read in place (decode)
//   packing:   rows_to_f32 (scaled f32 copy), pack_panels / pack_panels_t (B operands in the
//              panel layout, f32, from rows or transposed), pack_transposed, rows_from_f32 (output)
//
// Why own tiles rather than oneDNN matmuls: the products of one block are small (96 x 128 x 64),
// where a primitive call's fixed cost (~1.5 us cached, plus its own packing of both operands)
// is comparable to the product itself (~5 us), and the softmax between the two products must
// run on the tile while it is in L1/L2; own tiles read operands in the layout the block already
// has and let scale, mask, exp and the rescale of the output accumulator ride along.
#pragma once
#include <cfloat>
#include "cpu/philox_block.h"
#include "ops/attention.h"

namespace seqfuse::cpu {

// Row strides of f32 blocks are multiples of kAttnPad floats (64 bytes, >= W of every pass), so
// a pass's scratch can be sized in the main pass, which does not know that pass's W.
constexpr int64_t kAttnPad = 16;
static inline int64_t attn_pad(int64_t n) { return (n + kAttnPad - 1) / kAttnPad * kAttnPad; }

// x clamped to [lo, hi] (std::clamp would be a shared template instance: see cpu/simd.h)
static inline int64_t attn_clamp(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }

// Query row i of batch row b sees keys [0, attn_key_end): j < L_b and, if causal, j <= i + Sk - Sq.
static inline int64_t attn_key_end(const AttentionArgs& a, int64_t b, int64_t i) {
  int64_t e = a.kv_lengths ? int64_t(a.kv_lengths[b]) : a.Sk;
  if (a.causal && i + a.Sk - a.Sq + 1 < e) e = i + a.Sk - a.Sq + 1;
  return e < 0 ? 0 : e;
}

// The first query row that sees key j (j < L_b): rows [attn_first_row, Sq) see it. Sq when none does.
static inline int64_t attn_first_row(const AttentionArgs& a, int64_t b, int64_t j) {
  const int64_t len = a.kv_lengths ? int64_t(a.kv_lengths[b]) : a.Sk;
  if (j >= len) return a.Sq;
  if (!a.causal) return 0;
  const int64_t i = j - a.Sk + a.Sq;
  return i < 0 ? 0 : i > a.Sq ? a.Sq : i;
}

// Dropout's element index of (b, h, i, j): ((b * H + h) * Sq + i) * Sk + j (ops/attention.h).
static inline uint64_t attn_rng_index(const AttentionArgs& a, int64_t b, int64_t h, int64_t i, int64_t j) {
  return (uint64_t((b * a.H + h) * a.Sq + i) * uint64_t(a.Sk)) + uint64_t(j);
}

// Bias of row (b, h, i) at column 0 (element j at + j * a.bias_stride[3]); nullptr without bias.
static inline const float* attn_bias_row(const AttentionArgs& a, int64_t b, int64_t h, int64_t i) {
  if (!a.bias) return nullptr;
  return a.bias + b * a.bias_stride[0] + h * a.bias_stride[1] + i * a.bias_stride[2];
}

}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

// --- products ------------------------------------------------------------------------------
// Register tile kMR x kNV vectors: accumulators + kNV loads of B + one broadcast fill the file
// (AVX2: 12 + 2 + 1 of 16 ymm; AVX-512: 24 + 2 + 1 of 32 zmm). Per k step a tile issues
// kMR broadcasts and kNV loads for kMR * kNV FMAs, within the two loads per cycle of the cores
// it targets, and kMR * kNV >= 2 pipes x 4 cycles of FMA latency keeps both FMA pipes busy.
#if SF_ISA == 2
constexpr int kMR = 12, kNV = 2;
#elif SF_ISA == 1
constexpr int kMR = 6, kNV = 2;
#else
constexpr int kMR = 4, kNV = 4;
#endif
constexpr int kNR = kNV * V::W;  // columns of a full tile

enum class Acc { Set, Add, Scale };  // C = AB;  C += AB;  C = alpha[m] * C + AB

// One tile: rows [0, M) and NV vectors of columns; Tail: the last vector has w < W lanes (B is
// loaded and C stored masked, so neither needs padding). KC > 0: K known at compile time.
template <int M, int NV, Acc Mode, bool Tail, int KC>
SF_INLINE void mm_tile(int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb, float* C,
                       int64_t ldc, const float* alpha, int w) {
  constexpr int W = V::W;
  const int64_t kn = KC > 0 ? KC : K;
  // the accumulators must live in registers: the loops over m and v are unrolled explicitly
  // (GCC's own limits left 12-row tiles in a stack array, stored every step)
  R c[M][NV];
#pragma GCC unroll 32
  for (int m = 0; m < M; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[m][v] = V::zero();
  for (int64_t k = 0; k < kn; ++k) {
    const float* bk = B + k * ldb;
    const float* ak = A + k * aks;
    R b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = Tail && v == NV - 1 ? V::load(bk + v * W, w) : V::load(bk + v * W);
#pragma GCC unroll 32
    for (int m = 0; m < M; ++m) {
      const R x = V::set1(ak[m * ars]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[m][v] = V::fma(x, b[v], c[m][v]);
    }
  }
#pragma GCC unroll 32
  for (int m = 0; m < M; ++m) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = C + m * ldc + v * W;
      const bool t = Tail && v == NV - 1;
      R r = c[m][v];
      if constexpr (Mode == Acc::Add) r = V::add(t ? V::load(cp, w) : V::load(cp), r);
      if constexpr (Mode == Acc::Scale) r = V::fma(t ? V::load(cp, w) : V::load(cp), V::set1(alpha[m]), r);
      if (t) V::store(cp, r, w);
      else V::store(cp, r);
    }
  }
}

// A tile of m <= M rows (M down to 1 by compile-time recursion).
template <int M, int NV, Acc Mode, bool Tail, int KC>
SF_INLINE void mm_rows(int64_t m, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb, float* C,
                       int64_t ldc, const float* alpha, int w) {
  if constexpr (M > 1) {
    if (m < M) return mm_rows<M - 1, NV, Mode, Tail, KC>(m, K, A, ars, aks, B, ldb, C, ldc, alpha, w);
  }
  mm_tile<M, NV, Mode, Tail, KC>(K, A, ars, aks, B, ldb, C, ldc, alpha, w);
}

// C[M, N] op= A[M, K] B[K, N]: A[m, k] at A[m * ars + k * aks] (broadcast; any strides),
// C[m, n] at C[m * ldc + n], alpha[M] for Acc::Scale; B in column panels of kNR columns, panel
// p at B + p * bstep, B[k, n] at + k * ldb + n % kNR: packed panels (pack_panels) have ldb = kNR
// and bstep = K * kNR, so a tile's B (K x kNR) is one contiguous run that stays in L1 while the
// row tiles stream past it (column tiles are the outer loop); plain rows have bstep = kNR.
// Nothing needs padding: a partial last vector of B and C is masked. K = 0 gives C = 0 (Set),
// C (Add), alpha C (Scale).
template <Acc Mode, int KC = 0>
static void mm_panel_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B,
                            int64_t ldb, int64_t bstep, float* C, int64_t ldc, const float* alpha = nullptr) {
  constexpr int W = V::W;
  const auto al = [alpha](int64_t m) { return alpha ? alpha + m : nullptr; };
  int64_t n = 0;
  for (; n + kNR <= N; n += kNR) {
    const float* bp = B + n / kNR * bstep;
    for (int64_t m = 0; m < M; m += kMR)
      mm_rows<kMR, kNV, Mode, false, KC>(M - m < kMR ? M - m : kMR, K, A + m * ars, ars, aks, bp, ldb, C + m * ldc + n,
                                         ldc, al(m), W);
  }
  // fewer than kNV vectors left: one-vector tiles of 2 kMR rows (as many accumulators)
  for (int tail = int((N - n + W - 1) / W); tail > 0; --tail, n += W) {
    const int w = N - n < W ? int(N - n) : W;
    const float* bp = B + n / kNR * bstep + n % kNR;
    for (int64_t m = 0; m < M; m += 2 * kMR) {
      const int64_t mr = M - m < 2 * kMR ? M - m : 2 * kMR;
      if (w == W) mm_rows<2 * kMR, 1, Mode, false, KC>(mr, K, A + m * ars, ars, aks, bp, ldb, C + m * ldc + n, ldc, al(m), W);
      else mm_rows<2 * kMR, 1, Mode, true, KC>(mr, K, A + m * ars, ars, aks, bp, ldb, C + m * ldc + n, ldc, al(m), w);
    }
  }
}

// mm_panel_packed with B in plain rows: B[k, n] at B[k * ldb + n].
template <Acc Mode, int KC = 0>
static void mm_panel(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
                     float* C, int64_t ldc, const float* alpha = nullptr) {
  mm_panel_packed<Mode, KC>(M, N, K, A, ars, aks, B, ldb, kNR, C, ldc, alpha);
}

// out[i] = <x, y + i * ldy> over n elements for the rows i < Rows (<= 8): one row of f32 against
// rows of T (f32 or 16-bit, read in place), vectors along n, the sums reduced at the end (on
// AVX2 8 of them at once by a hadd tree). For few query rows against many keys (decode), where
// Q K^T as a tile product would leave most lanes of its vectors empty.
#if SF_ISA == 1
static inline __m256 hsum8(const __m256 a[8]) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  // u0: the sums of rows 0-3 over their low 128 bits | over their high 128 bits; u1: rows 4-7
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
#endif

template <int Rows, class T>
SF_INLINE void dot_rows(const float* x, const T* y, int64_t ldy, int64_t n, float* out) {
  constexpr int W = V::W;
  R acc[Rows];
#pragma GCC unroll 8
  for (int i = 0; i < Rows; ++i) acc[i] = V::zero();
  int64_t d = 0;
  for (; d + W <= n; d += W) {
    const R xv = V::load(x + d);
#pragma GCC unroll 8
    for (int i = 0; i < Rows; ++i) acc[i] = V::fma(xv, V::load(y + i * ldy + d), acc[i]);
  }
  if (d < n) {
    const int w = int(n - d);
    const R xv = V::load(x + d, w);
#pragma GCC unroll 8
    for (int i = 0; i < Rows; ++i) acc[i] = V::fma(xv, V::load(y + i * ldy + d, w), acc[i]);
  }
#if SF_ISA == 1
  if constexpr (Rows == 8) {
    _mm256_storeu_ps(out, hsum8(acc));
    return;
  }
#endif
  for (int i = 0; i < Rows; ++i) out[i] = V::hsum(acc[i]);
}

// --- score rows ----------------------------------------------------------------------------

// s[0, n) += mul * bias[j * stride]; stride 0 adds one value (a bias broadcast over keys). mul:
// log2 e for scores kept in log2 units (the forward).
static inline void add_bias_row(float* s, int64_t n, const float* bias, int64_t stride, float mul = 1.0f) {
  constexpr int W = V::W;
  const R mv = V::set1(mul);
  if (stride == 0) {
    const float c1 = mul * *bias;
    const R c = V::set1(c1);
    int64_t j = 0;
    for (; j + W <= n; j += W) V::store(s + j, V::add(V::load(s + j), c));
    for (; j < n; ++j) s[j] += c1;
    return;
  }
  if (stride == 1) {
    int64_t j = 0;
    for (; j + W <= n; j += W) V::store(s + j, V::fma(V::load(bias + j), mv, V::load(s + j)));
    for (; j < n; ++j) s[j] += mul * bias[j];
    return;
  }
  for (int64_t j = 0; j < n; ++j) s[j] += mul * bias[j * stride];
}

// max of s[0, n), NaNs ignored (V::max(x, m) keeps m when x is NaN); -inf when n = 0.
static inline float row_max(const float* s, int64_t n) {
  constexpr int W = V::W;
  R m0 = V::set1(-INFINITY), m1 = m0;
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    m0 = V::max(V::load(s + j), m0);
    m1 = V::max(V::load(s + j + W), m1);
  }
  for (; j + W <= n; j += W) m0 = V::max(V::load(s + j), m0);
  float mx = V::hmax(V::max(m0, m1));
  for (; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
  return mx;
}

// s[j] = exp(s[j] - mx) over [0, n) and 0 over [n, nz) (mx finite, >= every non-NaN s[j]);
// returns the sum of the exps over [0, n); nan is set when some s[j] - mx is NaN (a NaN score,
// or +inf with mx = +inf). The row must have room for whole vectors up to nz rounded up to W.
static inline float exp_row(float* s, int64_t n, int64_t nz, float mx, bool& nan) {
  constexpr int W = V::W;
  const R mv = V::set1(mx);
  R s0 = V::zero(), s1 = s0, d0 = s0;
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    const R a0 = V::sub(V::load(s + j), mv), a1 = V::sub(V::load(s + j + W), mv);
    d0 = V::add(d0, V::add(a0, a1));
    const R e0 = vexp_nonpos(a0), e1 = vexp_nonpos(a1);
    V::store(s + j, e0);
    V::store(s + j + W, e1);
    s0 = V::add(s0, e0);
    s1 = V::add(s1, e1);
  }
  for (; j + W <= n; j += W) {
    const R a0 = V::sub(V::load(s + j), mv), e0 = vexp_nonpos(a0);
    d0 = V::add(d0, a0);
    V::store(s + j, e0);
    s0 = V::add(s0, e0);
  }
  float sum = V::hsum(V::add(s0, s1)), d = V::hsum(d0);
  if (j < n) {  // the tail: one vector, summed lane by lane
    const int t = int(n - j);
    for (int64_t k = j; k < n; ++k) d += s[k] - mx;
    V::store(s + j, vexp_nonpos(V::sub(V::load(s + j, t), mv)), t);
    for (int64_t k = j; k < n; ++k) sum += s[k];
  }
  for (j = n; j < nz; ++j) s[j] = 0.0f;
  if (d != d) nan = true;
  return sum;
}

// 2^x for x <= 0 (scores in log2 units, the max subtracted): one add and two subtracts split x
// into n + r (n = round(x) from the low mantissa bits of x + 1.5 * 2^23, r in [-0.5, 0.5] exact),
// then 2^r by a degree-5 polynomial (our fit for relative error on [-0.5, 0.5], < 1.9e-7 evaluated
// in f32) and 2^n added to the exponent field. Five FMAs against vexp_nonpos's ten FMA-pipe
// operations; the products leave the FMA pipes no slack, so this is what the softmax costs.
// x is clamped at -125 (the exponent trick needs n >= -125): 2^x < 2^-125 comes out as 2^-125,
// far below any sum it joins (its row's max contributes 1). NaN stays NaN through the clamp (V::max
// returns its second operand for a NaN), but 2^NaN is unspecified: callers detect NaN themselves.
SF_INLINE R vexp2_nonpos(R x) {
  const R magic = V::set1(12582912.0f);
  x = V::max(V::set1(-125.0f), x);
  const R t = V::add(x, magic);
  const R r = V::sub(x, V::sub(t, magic));
  R p = V::fma(V::set1(1.3264719163998961e-3f), r, V::set1(9.671513922512531e-3f));
  p = V::fma(p, r, V::set1(5.550733953714371e-2f));
  p = V::fma(p, r, V::set1(2.4022242426872253e-1f));
  p = V::fma(p, r, V::set1(6.931470036506653e-1f));
  p = V::fma(p, r, V::set1(1.0f));
  return V::iadd(p, V::ishl(t, 23));
}

// s[j] = 2^(s[j] - shift) over [0, n) and 0 over [n, nz); returns the sum over [0, n). nan is
// set when some s[j] - shift is NaN (a NaN score, or +inf with shift = +inf).
static inline float exp2_row(float* s, int64_t n, int64_t nz, float shift, bool& nan) {
  constexpr int W = V::W;
  const R mv = V::set1(shift);
  R s0 = V::zero(), s1 = s0, d0 = s0, d1 = s0;
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    const R a0 = V::sub(V::load(s + j), mv), a1 = V::sub(V::load(s + j + W), mv);
    d0 = V::add(d0, a0);
    d1 = V::add(d1, a1);
    const R e0 = vexp2_nonpos(a0), e1 = vexp2_nonpos(a1);
    V::store(s + j, e0);
    V::store(s + j + W, e1);
    s0 = V::add(s0, e0);
    s1 = V::add(s1, e1);
  }
  float sum = V::hsum(V::add(s0, s1)), d = V::hsum(V::add(d0, d1));
  for (; j < n; j += W) {  // the last vectors, summed lane by lane
    const int t = n - j < W ? int(n - j) : W;
    for (int64_t k = j; k < j + t; ++k) d += s[k] - shift;
    V::store(s + j, vexp2_nonpos(V::sub(V::load(s + j, t), mv)), t);
    for (int64_t k = j; k < j + t; ++k) sum += s[k];
  }
  for (j = n; j < nz; ++j) s[j] = 0.0f;
  if (d != d) nan = true;
  return sum;
}

// The forward's online softmax step for rows [0, rows) of a block of scores in log2 units: row r
// at s + r * lds sees its first n[r] keys of the block (bias added); m and l are the rows' running
// max and sum over earlier blocks. Writes p = 2^(s - m') over [0, n[r]) and 0 over [n[r], nz),
// sets m = m' = max(m, max s) and l = l 2^(m - m') + sum p, and alpha[r] = 2^(m - m'), by which the
// row's output accumulator must be scaled. Scores of -inf count as absent (exactly while a row
// has seen nothing else; after that with a weight <= 2^-125 of its max's); a NaN score sets
// nan[r]. The rescale factors of all rows are computed together, W rows per vector.
static inline void softmax_block_rows(float* s, int64_t lds, int64_t rows, const int64_t* n, int64_t nz, float* m,
                                      float* l, float* alpha, bool* nan) {
  constexpr int W = V::W;
  for (int64_t r = 0; r < rows; ++r) alpha[r] = row_max(s + r * lds, n[r]);
  // where nothing is visible yet (max -inf) the shift is 0: alpha then scales a zero accumulator
  for (int64_t r = 0; r < rows; r += W) {
    const int w = rows - r < W ? int(rows - r) : W;
    const R mo = V::load(m + r, w), mx = V::max(V::load(alpha + r, w), mo);
    const R shift = V::select(V::lt(mx, V::set1(-FLT_MAX)), V::zero(), mx);
    V::store(m + r, mx, w);
    V::store(alpha + r, vexp2_nonpos(V::sub(mo, shift)), w);
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    if (m[r] == -INFINITY) {  // only -inf or NaN so far: exp2's clamp would turn -inf into 2^-125
      for (int64_t j = 0; j < n[r]; ++j) nan[r] = nan[r] || sr[j] != sr[j];
      for (int64_t j = 0; j < nz; ++j) sr[j] = 0.0f;
      continue;
    }
    l[r] = l[r] * alpha[r] + exp2_row(sr, n[r], nz, m[r], nan[r]);
  }
}

// The backward's probabilities: s[j] = exp(s[j] - lse) over [0, n), 0 over [n, nz); lse finite
// (a row with lse = -inf sees no key and is skipped by the caller).
static inline void probs_row(float* s, int64_t n, int64_t nz, float lse) {
  bool nan = false;
  exp_row(s, n, nz, lse, nan);
}

// p[0, n) = 0 where dropout drops element first + j; kept values are left unscaled (the caller
// applies scale_p once, to a sum). buf: kRngBuf 16-bit values (philox_block.h).
static inline void drop_row(const Dropout& d, uint16_t* buf, uint64_t first, float* p, int64_t n) {
  constexpr int W = V::W;
  for (int64_t j0 = 0; j0 < n; j0 += kRngBlock) {
    const int64_t len = n - j0 < kRngBlock ? n - j0 : kRngBlock;
    const uint16_t* h = d.block(buf, first + uint64_t(j0), len);
    float* q = p + j0;
    int64_t j = 0;
    for (; j + W <= len; j += W) V::store(q + j, d.mask(V::load(q + j), h + j, W));
    if (j < len) V::store(q + j, d.mask(V::load(q + j, int(len - j)), h + j, int(len - j)), int(len - j));
  }
}

// --- packing -------------------------------------------------------------------------------

// dst[r * ldd + c] = scale * src[r * lds + c] in f32, r < rows, c < cols.
template <class T>
static void rows_to_f32(const T* src, int64_t lds, int64_t rows, int64_t cols, float scale, float* dst, int64_t ldd) {
  constexpr int W = V::W;
  const R sc = V::set1(scale);
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = src + r * lds;
    float* y = dst + r * ldd;
    int64_t c = 0;
    for (; c + W <= cols; c += W) V::store(y + c, V::mul(V::load(x + c), sc));
    if (c < cols) V::store(y + c, V::mul(V::load(x + c, int(cols - c)), sc), int(cols - c));
  }
}

// out[r * ldo + c] = T(src[r * lds + c] * f[r]), r < rows, c < cols.
template <class T>
static void rows_from_f32(const float* src, int64_t lds, const float* f, int64_t rows, int64_t cols, T* out, int64_t ldo) {
  constexpr int W = V::W;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = src + r * lds;
    T* y = out + r * ldo;
    const R fr = V::set1(f[r]);
    int64_t c = 0;
    for (; c + W <= cols; c += W) V::store(y + c, V::mul(V::load(x + c), fr));
    if (c < cols) V::store(y + c, V::mul(V::load(x + c, int(cols - c)), fr), int(cols - c));
  }
}

// dst[c * ldd + r] = scale * f32(src[r * lds + c]) for r < rows, c < cols: the transposing copy
// of the packers, in 8 x 8 blocks through registers on the x86 passes (the AVX-512 pass uses the
// same 256-bit code: its transposes would need twice the shuffles for the same bytes).
#if SF_ISA >= 1
static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
static inline __m256 load8(const bf16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
static inline __m256 load8(const f16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
// r[i] becomes column i of the 8 x 8 block whose rows were r[0..7]
static inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  // u0 = columns 0 | 4 of rows 0-3, u1 = 1 | 5, u2 = 2 | 6, u3 = 3 | 7; u4..u7 the same for rows 4-7
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

template <class T>
static void transpose_to_f32(const T* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, float scale) {
  int64_t r0 = 0;
#if SF_ISA >= 1
  const __m256 sc = _mm256_set1_ps(scale);
  const int64_t c8 = cols - cols % 8;
  for (; r0 + 8 <= rows; r0 += 8) {
    for (int64_t c0 = 0; c0 < c8; c0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = load8(src + (r0 + i) * lds + c0);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (c0 + i) * ldd + r0, _mm256_mul_ps(r[i], sc));
    }
    for (int64_t c = c8; c < cols; ++c)
      for (int i = 0; i < 8; ++i) dst[c * ldd + r0 + i] = scale * to_f32(src[(r0 + i) * lds + c]);
  }
#endif
  for (int64_t r = r0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = scale * to_f32(src[r * lds + c]);
}

// dst[c * ldd + r] = f32(src[r * lds + c]) for r < rows, c < cols, and 0 for rows <= r < rpad:
// a block of K^T (keys as columns) from K rows, zero past the last key.
template <class T>
static void pack_transposed(const T* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, int64_t rpad) {
  transpose_to_f32(src, lds, rows, cols, dst, ldd, 1.0f);
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = rows; r < rpad; ++r) dst[c * ldd + r] = 0.0f;
}

// Floats of a packed B[K, N] (mm_panel_packed): ceil(N / kNR) panels of K x kNR.
SF_INLINE int64_t packed_floats(int64_t K, int64_t N) { return (N + kNR - 1) / kNR * kNR * K; }

// B[k, n] = f32(src[k * lds + n]) for k < rows, n < cols, packed in panels (ldb = kNR,
// bstep = kpad * kNR); zero for rows <= k < kpad and in the last panel's columns past cols.
// For V rows as the B of P V.
template <class T>
static void pack_panels(const T* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t kpad) {
  constexpr int W = V::W;
  for (int64_t n0 = 0; n0 < cols; n0 += kNR) {
    float* p = dst + n0 / kNR * kpad * kNR;
    const int64_t nc = cols - n0 < kNR ? cols - n0 : kNR;
    for (int64_t k = 0; k < rows; ++k) {
      const T* x = src + k * lds + n0;
      float* y = p + k * kNR;
      for (int64_t c = 0; c < kNR; c += W) {
        const int64_t w = nc - c;
        V::store(y + c, w >= W ? V::load(x + c) : w > 0 ? V::load(x + c, int(w)) : V::zero());
      }
    }
    for (int64_t k = rows; k < kpad; ++k)
      for (int64_t c = 0; c < kNR; ++c) p[k * kNR + c] = 0.0f;
  }
}

// B[k, n] = scale * f32(src[n * lds + k]) for n < rows, k < cols (B = src^T), packed in panels
// (ldb = kNR, bstep = cols * kNR); zero in columns rows <= n < npad. For K rows as the B of Q K^T.
template <class T>
static void pack_panels_t(const T* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t npad,
                          float scale = 1.0f) {
  for (int64_t n0 = 0; n0 < npad; n0 += kNR) {
    float* p = dst + n0 / kNR * cols * kNR;
    const int64_t nr = rows - n0 < kNR ? (rows - n0 > 0 ? rows - n0 : 0) : kNR;
    transpose_to_f32(src + n0 * lds, lds, nr, cols, p, kNR, scale);
    for (int64_t k = 0; k < cols; ++k)
      for (int64_t c = nr; c < kNR; ++c) p[k * kNR + c] = 0.0f;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

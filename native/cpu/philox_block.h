// native/cpu/philox_block.h — dropout's 16-bit Philox stream (core/philox.h) for a block of
// consecutive elements, one implementation per ISA pass; kernel files include it after cpu/simd.h.
//
// philox_block(buf, first, n, keys) fills buf with the words of counters first/8 ..
// (first + n - 1)/8 (counter k's four words at buf + 8k, as 16-bit halves) and returns
// h = buf + first % 8, so h[k] = h_{first + k} for k < n <= kRngBlock: on a little-endian CPU the
// halves of the words, in memory order, are the elements in stream order. Kernels turn them into
// keep masks with Dropout::apply (below). The bits are the same on every pass (tested).
//
// Vector passes keep one counter per 64-bit lane: the low half holds the Philox word, the high
// half is don't-care. _mm*_mul_epu32 reads only low halves and leaves the full 32x32->64 product
// in the lane (lo word low, hi word high), so a round is 2 multiplies, 2 shifts and 4 xors per
// lane and never repacks; the words are interleaved into stream order once, at the end.
// Rounds 0 and 1 are folded (c2 = c3 = 0 and the counter's high word is shared by a step), which
// saves 2 of the 20 multiplies. AVX2: 4 counters per register, AVX-512: 8; both run 16 counters
// (64 words, 128 elements) per step in independent chains to hide multiply latency. Measured on
// AVX2 (Zen 3, ~3 GHz): ~0.56 ns per word, ~0.28 ns per element; the vector ports are the limit
// (~5.4 uops per word, all four FP pipes busy; multiplies and shifts share two of them). Scalar
// counters interleaved on the integer pipes did not help (the front end is the next limit).
#pragma once
#include <cstring>
#include "core/philox.h"
#include "cpu/simd.h"

namespace seqfuse::cpu {
constexpr int64_t kRngBlock = 512;  // elements per block: 1 KiB of random bits, L1-resident
constexpr int64_t kStepCounters = 16;  // counters per vector step (128 elements)
// 16-bit values: a lead of first % 8 elements and the block, rounded up to whole steps
constexpr int64_t kRngBuf = (7 + kRngBlock + 8 * kStepCounters - 1) / (8 * kStepCounters) * (8 * kStepCounters);
// Element indices wrap at 2^64, so counters (index div 8) wrap at 2^61.
constexpr uint64_t kCounterMask = (uint64_t(1) << 61) - 1;
constexpr int64_t kColPad = 64;  // >= W of every pass (the flat walk, below)
}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

#if SF_ISA >= 1
#if SF_ISA == 2
using PI = __m512i;
constexpr int kLanes = 8;
static inline PI pl_set1(uint32_t v) { return _mm512_set1_epi64(int64_t(v)); }
static inline PI pl_mul(PI a, PI m) { return _mm512_mul_epu32(a, m); }
static inline PI pl_hi(PI p) { return _mm512_srli_epi64(p, 32); }
static inline PI pl_xor(PI a, PI b) { return _mm512_xor_si512(a, b); }
static inline PI pl_set1x(uint64_t v) { return _mm512_set1_epi64(int64_t(v)); }
static inline PI pl_add64(PI a, PI b) { return _mm512_add_epi64(a, b); }
// M0 * (i + lane) for the 8 lanes
static inline PI pl_m0_iota(uint64_t i) {
  const int64_t m = 0xD2511F53;
  return _mm512_setr_epi64(m * int64_t(i), m * int64_t(i + 1), m * int64_t(i + 2), m * int64_t(i + 3),
                           m * int64_t(i + 4), m * int64_t(i + 5), m * int64_t(i + 6), m * int64_t(i + 7));
}
// the four words of counter k = 0..7 to out + 8k (16-bit halves, stream order): 32 words
static inline void pl_store(uint16_t* out, PI c0, PI c1, PI c2, PI c3) {
  PI x = _mm512_mask_blend_epi32(0xAAAA, c0, _mm512_slli_epi64(c1, 32));  // (c0, c1) per counter
  PI z = _mm512_mask_blend_epi32(0xAAAA, c2, _mm512_slli_epi64(c3, 32));  // (c2, c3) per counter
  PI lo = _mm512_unpacklo_epi64(x, z);  // counters 0, 2, 4, 6 (one per 128-bit lane)
  PI hi = _mm512_unpackhi_epi64(x, z);  // counters 1, 3, 5, 7
  _mm512_storeu_si512(out, _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi));
  _mm512_storeu_si512(out + 32, _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), hi));
}
#else
using PI = __m256i;
constexpr int kLanes = 4;
static inline PI pl_set1(uint32_t v) { return _mm256_set1_epi64x(int64_t(v)); }
static inline PI pl_mul(PI a, PI m) { return _mm256_mul_epu32(a, m); }
static inline PI pl_hi(PI p) { return _mm256_srli_epi64(p, 32); }
static inline PI pl_xor(PI a, PI b) { return _mm256_xor_si256(a, b); }
static inline PI pl_set1x(uint64_t v) { return _mm256_set1_epi64x(int64_t(v)); }
static inline PI pl_add64(PI a, PI b) { return _mm256_add_epi64(a, b); }
// M0 * (i + lane) for the 4 lanes
static inline PI pl_m0_iota(uint64_t i) {
  const int64_t m = 0xD2511F53;
  return _mm256_setr_epi64x(m * int64_t(i), m * int64_t(i + 1), m * int64_t(i + 2), m * int64_t(i + 3));
}
// the four words of counter k = 0..3 to out + 8k (16-bit halves, stream order): 16 words
static inline void pl_store(uint16_t* out, PI c0, PI c1, PI c2, PI c3) {
  PI x = _mm256_blend_epi32(c0, _mm256_slli_epi64(c1, 32), 0xAA);  // (c0, c1) per counter
  PI z = _mm256_blend_epi32(c2, _mm256_slli_epi64(c3, 32), 0xAA);  // (c2, c3) per counter
  PI lo = _mm256_unpacklo_epi64(x, z);  // counters 0 | 2
  PI hi = _mm256_unpackhi_epi64(x, z);  // counters 1 | 3
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permute2x128_si256(lo, hi, 0x20));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
}
#endif

constexpr int kChains = kStepCounters / kLanes;  // registers per step

// The round keys k0[r], k1[r], also broadcast once per kernel run: a step reads them as memory
// operands instead of rebuilding them (36 broadcasts per step, ~10% of its uops).
struct PhiloxKeys {
  uint64_t seed;
  uint32_t k0[10], k1[10];
  PI v0[10], v1[10];
  explicit PhiloxKeys(uint64_t s) : seed(s) {
    k0[0] = uint32_t(seed);
    k1[0] = uint32_t(seed >> 32);
    for (int r = 1; r < 10; ++r) { k0[r] = k0[r - 1] + 0x9E3779B9u; k1[r] = k1[r - 1] + 0xBB67AE85u; }
    for (int r = 0; r < 10; ++r) { v0[r] = pl_set1(k0[r]); v1[r] = pl_set1(k1[r]); }
  }
};

// out[0, 128) = the words of counters c .. c+15 (16-bit halves), whose high words are all c >> 32.
// Rounds 0 and 1 are folded: with counter (lo, hi, 0, 0) and P = M0 * lo,
//   after round 0: (hi ^ k0[0], 0, hi(P) ^ k1[0], lo(P))
//   after round 1: (hi(Q) ^ k0[1], lo(Q), lo(P) ^ B, C), Q = M1 * (hi(P) ^ k1[0]),
// where M0 * (hi ^ k0[0]) = (B ^ k1[1], C) does not depend on lo. P steps by M0 per counter,
// so it is built by 64-bit adds; rounds 2-9 are the plain round.
static inline void philox_step(uint16_t* out, uint64_t c, const PhiloxKeys& k) {
  const PI m0 = pl_set1(0xD2511F53u), m1 = pl_set1(0xCD9E8D57u);
  const uint64_t pa = uint64_t(0xD2511F53u) * (uint32_t(c >> 32) ^ k.k0[0]);
  const PI b = pl_set1(uint32_t(pa >> 32) ^ k.k1[1]), cc = pl_set1(uint32_t(pa));
  PI s0[kChains], s1[kChains], s2[kChains], s3[kChains];
  for (int h = 0; h < kChains; ++h) {
    PI p = pl_add64(pl_set1x(uint64_t(0xD2511F53u) * uint32_t(c)), pl_m0_iota(uint64_t(h * kLanes)));
    PI q = pl_mul(pl_xor(pl_hi(p), k.v1[0]), m1);
    s0[h] = pl_xor(pl_hi(q), k.v0[1]);
    s1[h] = q;
    s2[h] = pl_xor(p, b);
    s3[h] = cc;
  }
  for (int r = 2; r < 10; ++r) {
    for (int h = 0; h < kChains; ++h) {
      PI p0 = pl_mul(s0[h], m0), p1 = pl_mul(s2[h], m1);
      s0[h] = pl_xor(pl_hi(p1), pl_xor(s1[h], k.v0[r]));  // the key xor is off the multiply's path
      s2[h] = pl_xor(pl_hi(p0), pl_xor(s3[h], k.v1[r]));
      s1[h] = p1;
      s3[h] = p0;
    }
  }
  for (int h = 0; h < kChains; ++h) pl_store(out + 8 * kLanes * h, s0[h], s1[h], s2[h], s3[h]);
}

static inline const uint16_t* philox_block(uint16_t* buf, uint64_t first, int64_t n, const PhiloxKeys& keys) {
  const uint64_t c = first >> 3;
  const int64_t counters = (int64_t(first & 7) + n + 7) >> 3;
  for (int64_t i = 0; i < counters; i += kStepCounters) {
    const uint64_t ci = (c + uint64_t(i)) & kCounterMask;
    if (uint32_t(ci) <= 0xFFFFFFFFu - uint32_t(kStepCounters - 1)) {
      philox_step(buf + 8 * i, ci, keys);
    } else {  // the low word wraps inside this step (once per 2^32 counters)
      for (int64_t k = 0; k < kStepCounters; ++k) {
        Philox4 r = philox4x32_10((ci + uint64_t(k)) & kCounterMask, keys.seed);
        std::memcpy(buf + 8 * (i + k), r.v, sizeof r.v);
      }
    }
  }
  return buf + (first & 7);
}
#else
struct PhiloxKeys {
  uint64_t seed;
  explicit PhiloxKeys(uint64_t s) : seed(s) {}
};

static inline const uint16_t* philox_block(uint16_t* buf, uint64_t first, int64_t n, const PhiloxKeys& keys) {
  const uint64_t c = first >> 3;
  const int64_t counters = (int64_t(first & 7) + n + 7) >> 3;
  for (int64_t i = 0; i < counters; ++i) {
    Philox4 r = philox4x32_10((c + uint64_t(i)) & kCounterMask, keys.seed);
    std::memcpy(buf + 8 * i, r.v, sizeof r.v);  // the words' halves, low first (little-endian)
  }
  return buf + (first & 7);
}
#endif

static_assert(kRngBuf >= ((7 + kRngBlock + 7) / 8 + kStepCounters - 1) / kStepCounters * kStepCounters * 8,
              "philox_block writes whole steps");

// Dropout with probability p from the stream of `seed` (core/philox.h): block() generates the
// 16-bit values of a block, apply() drops one vector: v * scale where the element's h >= t,
// else 0 (mask: the keep test alone, for callers that fold the scale into their own arithmetic).
// Ops skip Philox entirely when t = 0 (p < 2^-17 rounds to "keep everything").
struct Dropout {
  uint32_t t;
  V::Thr thr;
  R scale;
  PhiloxKeys keys;
  Dropout(float p, uint64_t seed)
      : t(dropout_threshold(p)), thr(V::thr(t)), scale(V::set1(dropout_scale(t))), keys(seed) {}
  bool on() const { return t > 0; }
  // h with h[k] = h_{first + k}, k < n <= kRngBlock, in buf (kRngBuf values)
  const uint16_t* block(uint16_t* buf, uint64_t first, int64_t n) const { return philox_block(buf, first, n, keys); }
  // v where kept, else 0 (v already scaled); w valid lanes at h
  __attribute__((always_inline)) R mask(R v, const uint16_t* h, int w) const {
    return V::select0(w == V::W ? V::keep(h, thr) : V::keep(h, thr, w), v);
  }
  __attribute__((always_inline)) R apply(R v, const uint16_t* h, int w) const { return mask(V::mul(v, scale), h, w); }
};

// --- the flat walk of the dropout kernels (cpu/activation.cc, cpu/dropout.cc) ----------------
// They walk [rows, cols] as one flat range, vectors running across row ends, so a block is one
// loop with no partial vectors at row ends (rows need not be a multiple of W, nor the rows'
// addresses aligned). Per-column operands are read at the vector's column from rows of
// cols + kColPad floats: the bias repeated (bias_row below), the dbias partials with lanes
// that wrap past the row end collected in the pad and folded back once per range.

// The column of the next vector.
struct ColumnCursor {
  int64_t j, cols;
  void advance(int w) {
    j += w;
    while (j >= cols) j -= cols;  // once per row end when cols >= W
  }
};

// dbias partials: acc[cols + i] holds lanes that wrapped past the row end, i.e. column
// (cols + i) mod cols; adds them there (in a fixed order) and clears the pad.
static inline void fold_wrapped(float* acc, int64_t cols) {
  for (int64_t s = cols; s < cols + kColPad; ++s) {
    acc[s % cols] += acc[s];
    acc[s] = 0.0f;
  }
}

// Requests the line one block (kRngBlock elements) ahead of p; the kernels call it for each
// input vector, so the next block's lines are asked for at the pace they are consumed and are on
// their way while that block's Philox arithmetic runs (which issues no loads the hardware
// prefetcher could follow). Measured on one thread from DRAM: 5-10% faster dropout and
// biasDropoutResidual; a burst of the whole next block's requests before the arithmetic was
// 5-10% slower than none (it overflows the miss buffers and stalls).
template <class T>
SF_INLINE void prefetch_next_block(const T* p) { __builtin_prefetch(p + kRngBlock); }

// Whether p is aligned to a vector (W elements of T).
template <class T>
static inline bool vector_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(T) * V::W) == 0;
}

// The end of the block that starts at element e of a run ending at e1: kRngBlock elements, but
// when y + e is not vector-aligned the block is shortened so the next one starts aligned, so a
// run has one partial vector at each end instead of two per block (Node's large buffers are 16
// bytes past a page; every vector of a misaligned run would also straddle cache lines).
template <class T>
static inline int64_t block_end(const T* y, int64_t e, int64_t e1) {
  constexpr uintptr_t A = sizeof(T) * V::W;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(y + e);
  const int64_t skew = addr % sizeof(T) ? 0 : int64_t(addr % A / sizeof(T));
  return e1 - e > kRngBlock - skew ? e + kRngBlock - skew : e1;
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <vector>
#include "core/dtype.h"
#include "core/threads.h"

namespace seqfuse::cpu {
// The bias of the flat walk: b[j mod cols] as f32 for j in [0, cols + kColPad); empty for no bias.
static inline std::vector<float> bias_row(const void* b, DType dt, int64_t cols) {
  std::vector<float> row;
  if (!b || cols == 0) return row;
  row.resize(size_t(cols + kColPad));
  for (int64_t j = 0; j < cols + kColPad; ++j) {
    const int64_t c = j % cols;
    switch (dt) {
      case DType::BF16: row[size_t(j)] = bf16_to_f32(static_cast<const bf16_t*>(b)[c]); break;
      case DType::F16: row[size_t(j)] = f16_to_f32(static_cast<const f16_t*>(b)[c]); break;
      default: row[size_t(j)] = static_cast<const float*>(b)[c]; break;
    }
  }
  return row;
}

// Splits n elements over the thread pool in contiguous runs of whole blocks, so every run
// starts at a multiple of kRngBlock; fn(e0, e1) per run. cost: elements touched per element.
template <class Fn>
static void for_rng_blocks(int64_t n, int64_t cost, const Fn& fn) {
  const int64_t blocks = (n + kRngBlock - 1) / kRngBlock;
  parallel_for(blocks, cost * kRngBlock, [&](int64_t b0, int64_t b1) {
    fn(b0 * kRngBlock, b1 * kRngBlock < n ? b1 * kRngBlock : n);
  });
}
}  // namespace seqfuse::cpu
#endif

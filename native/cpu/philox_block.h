// native/cpu/philox_block.h — the Philox stream (core/philox.h) for a block of consecutive
// elements, one implementation per ISA pass; kernel files include it after cpu/simd.h.
//
// philox_block(buf, first, n, seed) fills buf with the words of counters first/4 ..
// (first + n - 1)/4 and returns p = buf + first % 4, so p[k] = u_{first + k} for k < n <= kRngBlock;
// kernels read them with V::unit(p + k). The words are the same on every pass (tested).
//
// Vector passes keep one counter per 64-bit lane: the low half holds the Philox word, the high
// half is don't-care. _mm*_mul_epu32 reads only low halves and leaves the full 32x32->64 product
// in the lane (lo word low, hi word high), so a round is 2 multiplies, 2 shifts and 4 xors per
// lane and never repacks; the words are interleaved into stream order once, at the end.
// Rounds 0 and 1 are folded (c2 = c3 = 0 and the counter's high word is shared by a step), which
// saves 2 of the 20 multiplies. AVX2: 4 counters per register, AVX-512: 8; both run 16 counters
// (64 words) per step in independent chains to hide multiply latency. Measured on AVX2 (Zen 3):
// ~0.55 ns per word, close to the vector ports' limit of ~5 uops per word.
#pragma once
#include "core/philox.h"
#include "cpu/simd.h"

namespace seqfuse::cpu {
constexpr int64_t kRngBlock = 256;           // elements per block: 1 KiB of words, L1-resident
constexpr int64_t kRngBuf = kRngBlock + 64;  // words: a lead of first % 4, rounded up to whole steps
// Element indices wrap at 2^64, so counters (index div 4) wrap at 2^62.
constexpr uint64_t kCounterMask = (uint64_t(1) << 62) - 1;
}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

// Requests the lines of [p, p + bytes): kernels ask for the next block's inputs before this
// block's Philox arithmetic, which issues no loads the hardware prefetcher could follow, so the
// memory traffic overlaps it (measured: 5-10% faster streaming from DRAM on one thread).
static inline void prefetch_read(const void* p, int64_t bytes) {
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(static_cast<const char*>(p) + i, 0, 3);
}

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
// out[4k + w] = word w of counter k: 32 words
static inline void pl_store(uint32_t* out, PI c0, PI c1, PI c2, PI c3) {
  PI x = _mm512_mask_blend_epi32(0xAAAA, c0, _mm512_slli_epi64(c1, 32));  // (c0, c1) per counter
  PI z = _mm512_mask_blend_epi32(0xAAAA, c2, _mm512_slli_epi64(c3, 32));  // (c2, c3) per counter
  PI lo = _mm512_unpacklo_epi64(x, z);  // counters 0, 2, 4, 6 (one per 128-bit lane)
  PI hi = _mm512_unpackhi_epi64(x, z);  // counters 1, 3, 5, 7
  _mm512_storeu_si512(out, _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi));
  _mm512_storeu_si512(out + 16, _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), hi));
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
// out[4k + w] = word w of counter k: 16 words
static inline void pl_store(uint32_t* out, PI c0, PI c1, PI c2, PI c3) {
  PI x = _mm256_blend_epi32(c0, _mm256_slli_epi64(c1, 32), 0xAA);  // (c0, c1) per counter
  PI z = _mm256_blend_epi32(c2, _mm256_slli_epi64(c3, 32), 0xAA);  // (c2, c3) per counter
  PI lo = _mm256_unpacklo_epi64(x, z);  // counters 0 | 2
  PI hi = _mm256_unpackhi_epi64(x, z);  // counters 1 | 3
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permute2x128_si256(lo, hi, 0x20));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
}
#endif

constexpr int kChains = 16 / kLanes;  // registers per step: 16 counters
constexpr int64_t kStepCounters = 16;

// out[0, 64) = the words of counters c .. c+15, whose high words are all c >> 32;
// k0[r], k1[r] are the round keys.
// Rounds 0 and 1 are folded: with counter (lo, hi, 0, 0) and P = M0 * lo,
//   after round 0: (hi ^ k0[0], 0, hi(P) ^ k1[0], lo(P))
//   after round 1: (hi(Q) ^ k0[1], lo(Q), lo(P) ^ B, C), Q = M1 * (hi(P) ^ k1[0]),
// where M0 * (hi ^ k0[0]) = (B ^ k1[1], C) does not depend on lo. P steps by M0 per counter,
// so it is built by 64-bit adds; rounds 2-9 are the plain round.
static inline void philox_step(uint32_t* out, uint64_t c, const uint32_t* k0, const uint32_t* k1) {
  const PI m0 = pl_set1(0xD2511F53u), m1 = pl_set1(0xCD9E8D57u);
  const uint64_t pa = uint64_t(0xD2511F53u) * (uint32_t(c >> 32) ^ k0[0]);
  const PI b = pl_set1(uint32_t(pa >> 32) ^ k1[1]), cc = pl_set1(uint32_t(pa));
  PI s0[kChains], s1[kChains], s2[kChains], s3[kChains];
  for (int h = 0; h < kChains; ++h) {
    PI p = pl_add64(pl_set1x(uint64_t(0xD2511F53u) * uint32_t(c)), pl_m0_iota(uint64_t(h * kLanes)));
    PI q = pl_mul(pl_xor(pl_hi(p), pl_set1(k1[0])), m1);
    s0[h] = pl_xor(pl_hi(q), pl_set1(k0[1]));
    s1[h] = q;
    s2[h] = pl_xor(p, b);
    s3[h] = cc;
  }
  for (int r = 2; r < 10; ++r) {
    const PI ka = pl_set1(k0[r]), kb = pl_set1(k1[r]);
    for (int h = 0; h < kChains; ++h) {
      PI p0 = pl_mul(s0[h], m0), p1 = pl_mul(s2[h], m1);
      s0[h] = pl_xor(pl_xor(pl_hi(p1), s1[h]), ka);
      s2[h] = pl_xor(pl_xor(pl_hi(p0), s3[h]), kb);
      s1[h] = p1;
      s3[h] = p0;
    }
  }
  for (int h = 0; h < kChains; ++h) pl_store(out + 4 * kLanes * h, s0[h], s1[h], s2[h], s3[h]);
}

static_assert(kRngBuf >= ((3 + kRngBlock + 3) / 4 + kStepCounters - 1) / kStepCounters * kStepCounters * 4,
              "philox_block writes whole steps");

static inline const uint32_t* philox_block(uint32_t* buf, uint64_t first, int64_t n, uint64_t seed) {
  uint32_t k0[10], k1[10];
  k0[0] = uint32_t(seed);
  k1[0] = uint32_t(seed >> 32);
  for (int r = 1; r < 10; ++r) { k0[r] = k0[r - 1] + 0x9E3779B9u; k1[r] = k1[r - 1] + 0xBB67AE85u; }
  const uint64_t c = first >> 2;
  const int64_t counters = (int64_t(first & 3) + n + 3) >> 2;
  for (int64_t i = 0; i < counters; i += kStepCounters) {
    const uint64_t ci = (c + uint64_t(i)) & kCounterMask;
    if (uint32_t(ci) <= 0xFFFFFFFFu - uint32_t(kStepCounters - 1)) {
      philox_step(buf + 4 * i, ci, k0, k1);
    } else {  // the low word wraps inside this step (once per 2^32 counters)
      for (int64_t k = 0; k < kStepCounters; ++k) {
        Philox4 r = philox4x32_10((ci + uint64_t(k)) & kCounterMask, seed);
        for (int w = 0; w < 4; ++w) buf[4 * (i + k) + w] = r.v[w];
      }
    }
  }
  return buf + (first & 3);
}
#else
static inline const uint32_t* philox_block(uint32_t* buf, uint64_t first, int64_t n, uint64_t seed) {
  const uint64_t c = first >> 2;
  const int64_t counters = (int64_t(first & 3) + n + 3) >> 2;
  for (int64_t i = 0; i < counters; ++i) {
    Philox4 r = philox4x32_10((c + uint64_t(i)) & kCounterMask, seed);
    for (int w = 0; w < 4; ++w) buf[4 * i + w] = r.v[w];
  }
  return buf + (first & 3);
}
#endif

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include "core/threads.h"

namespace seqfuse::cpu {
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

// native/core/philox.h — Philox4x32-10 (Salmon et al., SC'11), the one random stream of seqfuse.
// Every random op derives element i's bits the same way on every backend:
//   key = (seed mod 2^32, seed div 2^32), c = (offset + i) div 4,
//   counter = (c mod 2^32, c div 2^32, 0, 0), u_i = word (offset + i) mod 4 of philox(counter, key).
// Dropout keeps element i iff (u_i >> 8) * 2^-24 >= p (compared in f32, p rounded to f32) and
// scales kept values by float(1 / (1 - p)), so CPU and CUDA masks are identical bit for bit.
#pragma once
#include <cstdint>

namespace seqfuse {

struct Philox4 { uint32_t v[4]; };

// The general generator: a 128-bit counter (c0 least significant) and a 64-bit key (k0, k1),
// ten rounds of Random123's philox4x32round with the key bumped between rounds.
static inline Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  uint32_t c0 = ctr.v[0], c1 = ctr.v[1], c2 = ctr.v[2], c3 = ctr.v[3];
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1); c3 = uint32_t(p0); c0 = n0; c2 = n2;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// seqfuse's stream: counter (ctr mod 2^32, ctr div 2^32, 0, 0), key (seed mod 2^32, seed div 2^32).
static inline Philox4 philox4x32_10(uint64_t ctr, uint64_t seed) {
  return philox4x32_10(Philox4{{uint32_t(ctr), uint32_t(ctr >> 32), 0u, 0u}}, uint32_t(seed), uint32_t(seed >> 32));
}

// u_i for one element (slow path; kernels fill blocks with cpu/philox_block.h).
static inline uint32_t philox_u32_at(uint64_t index, uint64_t seed) {
  return philox4x32_10(index >> 2, seed).v[index & 3];
}

// (u >> 8) * 2^-24: a uniform float in [0, 1) with 24 random bits, exact in f32.
static inline float philox_unit(uint32_t u) { return float(u >> 8) * 5.9604644775390625e-8f; }

// The factor kept elements are multiplied by: float(1 / (1 - p)); 0 for p = 1 (nothing is kept).
static inline float dropout_scale(float p) { return p >= 1.0f ? 0.0f : float(1.0 / (1.0 - double(p))); }

}  // namespace seqfuse

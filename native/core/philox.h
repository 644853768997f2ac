// native/core/philox.h — Philox4x32-10 (Salmon et al., SC'11), the one random stream of seqfuse.
// Every random op derives element i's bits the same way on every backend:
//   key = (seed mod 2^32, seed div 2^32), c = (offset + i) div 4,
//   counter = (c mod 2^32, c div 2^32, 0, 0), u_i = word (offset + i) mod 4 of philox(counter, key).
// Dropout keeps element i iff (u_i >> 8) * 2^-24 >= p (compared in f32), so CPU and CUDA masks
// are identical bit for bit.
#pragma once
#include <cstdint>

namespace seqfuse {

struct Philox4 { uint32_t v[4]; };

static inline Philox4 philox4x32_10(uint64_t ctr, uint64_t seed) {
  uint32_t c0 = uint32_t(ctr), c1 = uint32_t(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1); c3 = uint32_t(p0); c0 = n0; c2 = n2;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// u_i for one element (slow path; kernels generate 4 or 64 at a time).
static inline uint32_t philox_u32_at(uint64_t index, uint64_t seed) {
  return philox4x32_10(index >> 2, seed).v[index & 3];
}

// (u >> 8) * 2^-24: a uniform float in [0, 1) with 24 random bits, exact in f32.
static inline float philox_unit(uint32_t u) { return float(u >> 8) * 5.9604644775390625e-8f; }

}  // namespace seqfuse

// native/core/philox.h — Philox4x32-10 (Salmon et al., SC'11), the one random stream of seqfuse.
// This file is the stream's definition: every backend (the CPU kernels through cpu/philox_block.h,
// the CUDA kernels) reproduces it bit for bit, so a backward pass recomputes its forward's mask
// from (seed, offset) instead of storing it. With key = (seed mod 2^32, seed div 2^32) and
// philox(c) = philox4x32_10(counter = (c mod 2^32, c div 2^32, 0, 0), key), element i of a call
// with offset o, e = (o + i) mod 2^64, draws:
//   dropout (16 bits):   h_e = 16-bit half (e mod 2) (low half first) of word (e div 2) mod 4 of
//                        philox(e div 8): one Philox call serves 8 elements.
//   random fills (32):   u_e = word e mod 4 of philox(e div 4) (Tensor.rand / randn).
// Dropout with probability p keeps element e iff h_e >= t, t = round(float(p) * 65536) (half away
// from zero; t in [0, 65536]), and scales kept values by float(65536 / (65536 - t)). The effective
// drop probability is t / 65536, within 7.7e-6 of p, and E[y] = x up to the f32 rounding of the
// scale. p = 1 gives t = 65536: nothing is kept and the scale is 0 (no division by zero); p = 0
// draws no random numbers at all.
#pragma once
#include <cmath>
#include <cstdint>

// The generator also runs in CUDA kernels (cuda/dropout.cu): host and device under nvcc.
#if defined(__CUDACC__)
#define SF_HOST_DEVICE __host__ __device__
#else
#define SF_HOST_DEVICE
#endif

namespace seqfuse {

struct Philox4 { uint32_t v[4]; };

// The general generator: a 128-bit counter (c0 least significant) and a 64-bit key (k0, k1),
// ten rounds of Random123's philox4x32round with the key bumped between rounds.
SF_HOST_DEVICE static inline Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
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
SF_HOST_DEVICE static inline Philox4 philox4x32_10(uint64_t ctr, uint64_t seed) {
  return philox4x32_10(Philox4{{uint32_t(ctr), uint32_t(ctr >> 32), 0u, 0u}}, uint32_t(seed), uint32_t(seed >> 32));
}

// h_e, dropout's 16 random bits of element e (slow path; kernels fill blocks with cpu/philox_block.h).
static inline uint32_t philox_h16_at(uint64_t e, uint64_t seed) {
  return (philox4x32_10(e >> 3, seed).v[(e >> 1) & 3] >> (16 * (e & 1))) & 0xFFFFu;
}

// (u >> 8) * 2^-24: a uniform float in [0, 1) with 24 random bits, exact in f32 (random fills).
static inline float philox_unit(uint32_t u) { return float(u >> 8) * 5.9604644775390625e-8f; }

// Dropout's threshold t = round(p * 65536) in [0, 65536]: h_e >= t keeps element e. p * 65536 is
// exact in f32 (p in [0, 1]); roundf rounds half away from zero.
static inline uint32_t dropout_threshold(float p) {
  const float t = std::roundf(p * 65536.0f);
  return t <= 0.0f ? 0u : t >= 65536.0f ? 65536u : uint32_t(t);
}

// The factor kept elements are multiplied by: float(65536 / (65536 - t)), the inverse of the keep
// probability as quantized; 0 for t = 65536 (nothing is kept).
static inline float dropout_scale(uint32_t t) { return t >= 65536u ? 0.0f : float(65536.0 / double(65536u - t)); }

}  // namespace seqfuse

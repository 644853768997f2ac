// cuda/cpu_math.cuh — the CPU backend's own f32 math (cpu/simd.h with one lane, cpu/act_simd.h,
// cpu/quant_grid.h), operation for operation with correctly rounded intrinsics (__f*_rn: nvcc
// contracts nothing), so a kernel using it gives the CPU's bits: the activations and their
// derivatives (activation.cu, matmul.cu's epilogues) and the int8 rounding (quant.cu, matmul.cu).
// Valid only without --use_fast_math.
#pragma once
#include "common.cuh"
#include "ops/activation.h"

namespace seqfuse {
namespace gpu {

__device__ __forceinline__ float vmax(float a, float b) { return a > b ? a : b; }  // NaN a: b
__device__ __forceinline__ float vmin(float a, float b) { return a < b ? a : b; }
__device__ __forceinline__ float fnma(float a, float b, float c) { return __fmaf_rn(-a, b, c); }

// vexp: Cephes expf polynomial on r = x - n ln2; exp(x < -87.3) = 0
__device__ __forceinline__ float vexp(float x) {
  const float lo = -87.33654f;
  const float xc = vmin(vmax(x, lo), 88.72283f);
  const float n = rintf(__fmul_rn(xc, 1.44269504088896341f));
  float r = __fmaf_rn(n, -0.693359375f, xc);
  r = __fmaf_rn(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = __fmaf_rn(p, r, 1.3981999507e-3f);
  p = __fmaf_rn(p, r, 8.3334519073e-3f);
  p = __fmaf_rn(p, r, 4.1665795894e-2f);
  p = __fmaf_rn(p, r, 1.6666665459e-1f);
  p = __fmaf_rn(p, r, 5.0000001201e-1f);
  const float y = __fmaf_rn(__fmul_rn(p, r), r, __fadd_rn(r, 1.0f));
  const float two_n = __int_as_float((int(n) + 127) << 23);  // 2^n, n in [-126, 128] (2^128 = Inf, as ldexp)
  return x < lo ? 0.0f : __fmul_rn(y, two_n);
}

// erfc(|z| / sqrt 2) by A&S 7.1.28 with the scale folded into the coefficients (verfc_pos with
// s = 1/sqrt 2: each a_k s^k computed in double and rounded once to f32, as there)
constexpr double kS = 0.70710678118654752, kS2 = kS * kS, kS3 = kS2 * kS;
constexpr float kE6 = float(4.30638e-5 * kS3 * kS3), kE5 = float(2.765672e-4 * kS3 * kS2), kE4 = float(1.520143e-4 * kS2 * kS2),
                kE3 = float(9.2705272e-3 * kS3), kE2 = float(4.22820123e-2 * kS2), kE1 = float(7.05230784e-2 * kS);
__device__ __forceinline__ float erfc_abs(float z) {
  const float a = fabsf(z);
  float p = __fmaf_rn(a, kE6, kE5);
  p = __fmaf_rn(a, p, kE4);
  p = __fmaf_rn(a, p, kE3);
  p = __fmaf_rn(a, p, kE2);
  p = __fmaf_rn(a, p, kE1);
  p = __fmaf_rn(a, p, 1.0f);
  p = __fmul_rn(p, p);
  p = __fmul_rn(p, p);
  p = __fmul_rn(p, p);
  p = __fmul_rn(p, p);
  return __fdiv_rn(1.0f, p);
}

__device__ __forceinline__ float vsigmoid(float x) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, vexp(-x))); }

constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluC = 0.044715f;

// k act(z), k the dropout scale (1 without dropout): act_simd.h's act_fwd
template <Activation A>
__device__ __forceinline__ float act_fwd(float z, float k) {
  if constexpr (A == Activation::Relu) {
    return __fmul_rn(k, vmax(0.0f, z));
  } else if constexpr (A == Activation::Gelu) {
    const float w = __fmul_rn(z, __fmul_rn(k, 0.5f)), aw = fabsf(w);
    return fnma(aw, erfc_abs(z), __fadd_rn(w, aw));
  } else if constexpr (A == Activation::GeluTanh) {
    const float u = __fmaf_rn(__fmul_rn(kGeluC, z), __fmul_rn(z, z), z);
    return __fmul_rn(__fmul_rn(k, z), vsigmoid(__fmul_rn(2.0f * kSqrt2OverPi, u)));
  } else if constexpr (A == Activation::Silu) {
    return __fmul_rn(__fmul_rn(k, z), vsigmoid(z));
  } else {
    return __fmul_rn(k, z);
  }
}

// dy act'(z): act_simd.h's act_bwd (ReLU passes dy where z > 0 or z is NaN)
template <Activation A>
__device__ __forceinline__ float act_bwd(float z, float dy) {
  if constexpr (A == Activation::Relu) {
    return 0.0f >= z ? 0.0f : dy;
  } else if constexpr (A == Activation::Gelu) {
    const float pdf = __fmul_rn(kInvSqrt2Pi, vexp(__fmul_rn(-0.5f, __fmul_rn(z, z))));
    const float hr = __fmul_rn(0.5f, erfc_abs(z));
    const float phi = z < 0.0f ? hr : __fsub_rn(1.0f, hr);
    return __fmul_rn(dy, __fmaf_rn(z, pdf, phi));
  } else if constexpr (A == Activation::GeluTanh) {
    const float z2 = __fmul_rn(z, z);
    const float s = vsigmoid(__fmul_rn(2.0f * kSqrt2OverPi, __fmaf_rn(__fmul_rn(kGeluC, z), z2, z)));
    const float du = __fmul_rn(2.0f * kSqrt2OverPi, __fmaf_rn(3.0f * kGeluC, z2, 1.0f));
    return __fmul_rn(dy, __fmaf_rn(__fmul_rn(__fmul_rn(z, s), __fsub_rn(1.0f, s)), du, s));
  } else if constexpr (A == Activation::Silu) {
    const float s = vsigmoid(z);
    return __fmul_rn(dy, __fmul_rn(s, __fmaf_rn(z, __fsub_rn(1.0f, s), 1.0f)));
  } else {
    return dy;
  }
}

// act(z) for an activation known only at run time (k = 1): the epilogues of the products
__device__ __forceinline__ float act_fwd(Activation act, float z) {
  switch (act) {
    case Activation::Relu: return act_fwd<Activation::Relu>(z, 1.0f);
    case Activation::Gelu: return act_fwd<Activation::Gelu>(z, 1.0f);
    case Activation::GeluTanh: return act_fwd<Activation::GeluTanh>(z, 1.0f);
    case Activation::Silu: return act_fwd<Activation::Silu>(z, 1.0f);
    default: return z;
  }
}

// round(clamp(x * inv, -127, 127)) half away from zero, NaN -> 0, -0 -> +0 (cpu/quant_grid.h).
__device__ __forceinline__ float quant_grid(float x, float inv) {
  float r = __fmul_rn(x, inv);
  r = r >= r ? r : 0.0f;
  r = vmin(vmax(r, -127.0f), 127.0f);
  float n = rintf(r);
  if (fabsf(__fsub_rn(r, n)) >= 0.5f) n = __fadd_rn(r, copysignf(0.5f, r));
  return __fadd_rn(n, 0.0f);
}

}  // namespace gpu
}  // namespace seqfuse

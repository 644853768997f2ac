// native/cpu/act_simd.h — activation forward / backward on vectors (ops/activation.h's
// functions), shared by the kernels that fuse an activation into their epilogue: bias_act
// (activation.cc) and the int8 linear (linear_i8.cc). Include from a kernels file: everything is
// static inline in the ISA pass's namespace (simd.h).
#pragma once
#include "cpu/simd.h"
#include "ops/activation.h"

namespace seqfuse::cpu::SF_ISA_NS {

constexpr double kSqrtHalf = 0.70710678118654752;   // 1/sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;  // 1/sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f; // sqrt(2/pi)
constexpr float kGeluC = 0.044715f;

// r = erfc(|z| / sqrt 2) (verfc_pos: A&S 7.1.28), so that Phi(z) = 1 - r/2 for z >= 0 and r/2
// for z < 0, |abs err| < 2e-7. That is A&S's absolute accuracy: its relative error grows in the
// far negative tail (1e-4 of GELU's value at z = -3, 1% at z = -4.2), where GELU is below
// 0.004 |z|; a tail-exact erfc costs an exp and doubles the forward's compute.
SF_INLINE R erfc_abs(R z) { return verfc_pos(V::abs(z), kSqrtHalf); }

// k act(z) in f32, k >= 0 the dropout scale (1 without dropout). GELU folds k into w = k z / 2:
// k z Phi(z) = 2 w Phi(z) = (w + |w|) - |w| r for either sign of z (w + |w| is 0 or 2w, exact),
// one multiply and one fused multiply-add after r, so the dropout scale costs nothing and no
// sign select is needed (GELU is bound by the multiply/FMA ports: 12 of its 17 operations and
// the division run there). ReLU keeps NaN (max with the NaN operand second). GELU (tanh form)
// uses 1/2 (1 + tanh u) = sigmoid(2u), which keeps its negative tail accurate at no extra cost.
template <Activation A>
SF_INLINE R act_fwd(R z, R k) {
  if constexpr (A == Activation::Relu) {
    return V::mul(k, V::max(V::zero(), z));
  } else if constexpr (A == Activation::Gelu) {
    R w = V::mul(z, V::mul(k, V::set1(0.5f))), aw = V::abs(w);
    return V::fnma(aw, erfc_abs(z), V::add(w, aw));
  } else if constexpr (A == Activation::GeluTanh) {  // z sigmoid(2 sqrt(2/pi) (z + c z^3))
    return V::mul(V::mul(k, z), vsigmoid(V::mul(V::set1(2.0f * kSqrt2OverPi), V::fma(V::mul(V::set1(kGeluC), z), V::mul(z, z), z))));
  } else if constexpr (A == Activation::Silu) {
    return V::mul(V::mul(k, z), vsigmoid(z));
  } else {
    return V::mul(k, z);
  }
}

// dy * act'(z) in f32; ReLU passes dy where z > 0 or z is NaN (as PyTorch's threshold_backward).
template <Activation A>
SF_INLINE R act_bwd(R z, R dy) {
  const R one = V::set1(1.0f);
  if constexpr (A == Activation::Relu) {
    return V::select(V::ge(V::zero(), z), V::zero(), dy);
  } else if constexpr (A == Activation::Gelu) {  // Phi(z) + z phi(z)
    R pdf = V::mul(V::set1(kInvSqrt2Pi), vexp(V::mul(V::set1(-0.5f), V::mul(z, z))));
    R hr = V::mul(V::set1(0.5f), erfc_abs(z));
    R phi = V::select(V::lt(z, V::zero()), hr, V::sub(V::set1(1.0f), hr));
    return V::mul(dy, V::fma(z, pdf, phi));
  } else if constexpr (A == Activation::GeluTanh) {
    // s = sigmoid(2u), u = k (z + c z^3): d/dz z s = s + 2 z s (1 - s) k (1 + 3 c z^2)
    R z2 = V::mul(z, z);
    R s = vsigmoid(V::mul(V::set1(2.0f * kSqrt2OverPi), V::fma(V::mul(V::set1(kGeluC), z), z2, z)));
    R du = V::mul(V::set1(2.0f * kSqrt2OverPi), V::fma(V::set1(3.0f * kGeluC), z2, one));
    return V::mul(dy, V::fma(V::mul(V::mul(z, s), V::sub(one, s)), du, s));
  } else if constexpr (A == Activation::Silu) {  // s (1 + z (1 - s))
    R s = vsigmoid(z);
    return V::mul(dy, V::mul(s, V::fma(z, V::sub(one, s), one)));
  } else {
    return dy;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

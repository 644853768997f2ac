// native/cpu/activation.cc — bias + activation + dropout, forward and backward (ops/activation.h).
// Shapes: x, y, dy, dx [rows, cols] row-major; bias, dbias [cols].
// The flat element range e = r * cols + j in [0, rows * cols) is cut into blocks of kRngBlock
// elements, split over threads in contiguous runs. Per block, the Philox words of elements
// offset + e go to an L1 buffer (cpu/philox_block.h); then the block streams once: forward
// reads x and writes y (bias stays in L1/L2), backward reads dy and x and writes dx. A block is
// walked in row pieces so the bias (and the dbias partial sums) are indexed by column.
// dbias: per-thread f32 partial sums of dx (cpu/reduce.h) added in thread order, so results are
// deterministic for a given thread count.
#include "cpu/philox_block.h"
#include "ops/activation.h"

namespace seqfuse::cpu::SF_ISA_NS {

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

constexpr float kSqrtHalf = 0.70710678118654752f;   // 1/sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;  // 1/sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f; // sqrt(2/pi)
constexpr float kGeluC = 0.044715f;

// Phi(z) = (1 + erf(z / sqrt 2)) / 2, |abs err| < 2e-7 (verf). As in any f32 1 + erf form, the
// relative error grows in the far negative tail (1e-4 of GELU's value at z = -3), where GELU is
// below 0.004 |z|; a tail-exact erfc costs an exp and doubles the forward's compute.
SF_INLINE R vphi(R z) {
  return V::mul(V::set1(0.5f), V::add(V::set1(1.0f), verf(V::mul(z, V::set1(kSqrtHalf)))));
}

// act(z) in f32. ReLU keeps NaN (max with the NaN operand second). GELU (tanh form) uses
// 1/2 (1 + tanh u) = sigmoid(2u), which keeps its negative tail accurate at no extra cost.
template <Activation A>
SF_INLINE R act_fwd(R z) {
  if constexpr (A == Activation::Relu) {
    return V::max(V::zero(), z);
  } else if constexpr (A == Activation::Gelu) {  // z Phi(z)
    return V::mul(z, vphi(z));
  } else if constexpr (A == Activation::GeluTanh) {  // z sigmoid(2 sqrt(2/pi) (z + c z^3))
    return V::mul(z, vsigmoid(V::mul(V::set1(2.0f * kSqrt2OverPi), V::fma(V::mul(V::set1(kGeluC), z), V::mul(z, z), z))));
  } else if constexpr (A == Activation::Silu) {
    return V::mul(z, vsigmoid(z));
  } else {
    return z;
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
    return V::mul(dy, V::fma(z, pdf, vphi(z)));
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

// One row piece of the forward: y[0, n) = drop(act(x + b)); b is the bias at the piece's first
// column (null: none), u its Philox words (null: no dropout).
template <Activation A, class T>
static void fwd_piece(const T* x, const T* b, T* y, const uint32_t* u, int64_t n, R p, R scale) {
  constexpr int W = V::W;
  auto one = [&](int64_t k, int t) SF_INLINE_LAMBDA {
    R v = t == W ? V::load(x + k) : V::load(x + k, t);
    if (b) v = V::add(v, t == W ? V::load(b + k) : V::load(b + k, t));
    v = act_fwd<A>(v);
    if (u) v = V::select(V::ge(t == W ? V::unit(u + k) : V::unit(u + k, t), p), V::mul(v, scale), V::zero());
    if (t == W) V::store(y + k, v); else V::store(y + k, v, t);
  };
  int64_t k = 0;
  for (; k + 4 * W <= n; k += 4 * W) { one(k, W); one(k + W, W); one(k + 2 * W, W); one(k + 3 * W, W); }
  for (; k + W <= n; k += W) one(k, W);
  if (k < n) one(k, int(n - k));
}

// One row piece of the backward: dx = drop(dy * act'(x + b)); acc (dbias partials at the
// piece's first column, null: none) += dx in f32.
template <Activation A, class T>
static void bwd_piece(const T* dy, const T* x, const T* b, T* dx, float* acc, const uint32_t* u, int64_t n, R p, R scale) {
  constexpr int W = V::W;
  auto one = [&](int64_t k, int t) SF_INLINE_LAMBDA {
    R z = t == W ? V::load(x + k) : V::load(x + k, t);
    if (b) z = V::add(z, t == W ? V::load(b + k) : V::load(b + k, t));
    R d = act_bwd<A>(z, t == W ? V::load(dy + k) : V::load(dy + k, t));
    if (u) d = V::select(V::ge(t == W ? V::unit(u + k) : V::unit(u + k, t), p), V::mul(d, scale), V::zero());
    if (t == W) V::store(dx + k, d); else V::store(dx + k, d, t);
    if (acc) {
      if (t == W) V::store(acc + k, V::add(V::load(acc + k), d));
      else V::store(acc + k, V::add(V::load(acc + k, t), d), t);
    }
  };
  int64_t k = 0;
  for (; k + 4 * W <= n; k += 4 * W) { one(k, W); one(k + W, W); one(k + 2 * W, W); one(k + 3 * W, W); }
  for (; k + W <= n; k += W) one(k, W);
  if (k < n) one(k, int(n - k));
}

// Elements [e0, e1) of the flat range, one block of kRngBlock at a time.
template <Activation A, class T>
static void fwd_range(const BiasActArgs& a, int64_t e0, int64_t e1) {
  const T* x = static_cast<const T*>(a.x);
  const T* b = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y);
  const bool drop = a.dropout > 0.0f;
  const R p = V::set1(a.dropout), scale = V::set1(dropout_scale(a.dropout));
  alignas(64) uint32_t buf[kRngBuf];
  int64_t j = e0 % a.cols;
  for (int64_t e = e0; e < e1;) {
    const int64_t start = e, end = min64(e + kRngBlock, e1);
    prefetch_read(x + end, min64(kRngBlock, e1 - end) * int64_t(sizeof(T)));
    const uint32_t* u = drop ? philox_block(buf, a.offset + uint64_t(e), end - e, a.seed) : nullptr;
    while (e < end) {  // without a bias the whole block is one piece
      const int64_t n = b ? min64(a.cols - j, end - e) : end - e;
      fwd_piece<A>(x + e, b ? b + j : nullptr, y + e, u ? u + (e - start) : nullptr, n, p, scale);
      e += n;
      j = b ? (j + n == a.cols ? 0 : j + n) : 0;
    }
  }
}

template <Activation A, class T>
static void bwd_range(const BiasActArgs& a, int64_t e0, int64_t e1, float* acc) {
  const T* dy = static_cast<const T*>(a.dy);
  const T* x = static_cast<const T*>(a.x);
  const T* b = static_cast<const T*>(a.bias);
  T* dx = static_cast<T*>(a.dx);
  const bool drop = a.dropout > 0.0f, by_col = b || acc;
  const R p = V::set1(a.dropout), scale = V::set1(dropout_scale(a.dropout));
  alignas(64) uint32_t buf[kRngBuf];
  int64_t j = e0 % a.cols;
  for (int64_t e = e0; e < e1;) {
    const int64_t start = e, end = min64(e + kRngBlock, e1), next = min64(kRngBlock, e1 - end) * int64_t(sizeof(T));
    prefetch_read(dy + end, next);
    prefetch_read(x + end, next);
    const uint32_t* u = drop ? philox_block(buf, a.offset + uint64_t(e), end - e, a.seed) : nullptr;
    while (e < end) {
      const int64_t n = by_col ? min64(a.cols - j, end - e) : end - e;
      bwd_piece<A>(dy + e, x + e, b ? b + j : nullptr, dx + e, acc ? acc + j : nullptr, u ? u + (e - start) : nullptr,
                   n, p, scale);
      e += n;
      j = by_col ? (j + n == a.cols ? 0 : j + n) : 0;
    }
  }
}

template <class T>
static void fwd_dtype(const BiasActArgs& a, int64_t e0, int64_t e1) {
  switch (a.act) {
    case Activation::None: return fwd_range<Activation::None, T>(a, e0, e1);
    case Activation::Relu: return fwd_range<Activation::Relu, T>(a, e0, e1);
    case Activation::Gelu: return fwd_range<Activation::Gelu, T>(a, e0, e1);
    case Activation::GeluTanh: return fwd_range<Activation::GeluTanh, T>(a, e0, e1);
    case Activation::Silu: return fwd_range<Activation::Silu, T>(a, e0, e1);
  }
}

template <class T>
static void bwd_dtype(const BiasActArgs& a, int64_t e0, int64_t e1, float* acc) {
  switch (a.act) {
    case Activation::None: return bwd_range<Activation::None, T>(a, e0, e1, acc);
    case Activation::Relu: return bwd_range<Activation::Relu, T>(a, e0, e1, acc);
    case Activation::Gelu: return bwd_range<Activation::Gelu, T>(a, e0, e1, acc);
    case Activation::GeluTanh: return bwd_range<Activation::GeluTanh, T>(a, e0, e1, acc);
    case Activation::Silu: return bwd_range<Activation::Silu, T>(a, e0, e1, acc);
  }
}

void bias_act_fwd_range(const BiasActArgs& a, int64_t e0, int64_t e1) {
  switch (a.dtype) {
    case DType::F32: return fwd_dtype<float>(a, e0, e1);
    case DType::BF16: return fwd_dtype<bf16_t>(a, e0, e1);
    case DType::F16: return fwd_dtype<f16_t>(a, e0, e1);
    default: return;
  }
}

void bias_act_bwd_range(const BiasActArgs& a, int64_t e0, int64_t e1, float* acc) {
  switch (a.dtype) {
    case DType::F32: return bwd_dtype<float>(a, e0, e1, acc);
    case DType::BF16: return bwd_dtype<bf16_t>(a, e0, e1, acc);
    case DType::F16: return bwd_dtype<f16_t>(a, e0, e1, acc);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include "cpu/isa.h"
#include "cpu/reduce.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void bias_act_fwd_range(const BiasActArgs&, int64_t, int64_t))
SF_ISA_DECLARE(void bias_act_bwd_range(const BiasActArgs&, int64_t, int64_t, float*))
}  // namespace cpu

void bias_act_fwd_cpu(const BiasActArgs& a) {
  auto fn = SF_PICK(bias_act_fwd_range);
  cpu::for_rng_blocks(a.rows * a.cols, 4, [&](int64_t e0, int64_t e1) { fn(a, e0, e1); });
}

void bias_act_bwd_cpu(const BiasActArgs& a) {
  auto fn = SF_PICK(bias_act_bwd_range);
  if (!a.dbias) {
    cpu::for_rng_blocks(a.rows * a.cols, 6, [&](int64_t e0, int64_t e1) { fn(a, e0, e1, nullptr); });
    return;
  }
  cpu::PartialSums parts(a.cols, 1);
  cpu::for_rng_blocks(a.rows * a.cols, 6, [&](int64_t e0, int64_t e1) { fn(a, e0, e1, parts.slot()); });
  parts.reduce_to(a.dbias, a.dtype, 0);
}

}  // namespace seqfuse
#endif

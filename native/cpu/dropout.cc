// native/cpu/dropout.cc — bias + dropout + residual and plain dropout, forward and backward
// (ops/dropout.h).
// Shapes: x, residual, y, dy, dx [rows, cols] row-major; bias, dbias [cols].
// Same block walk as cpu/activation.cc: blocks of kRngBlock flat elements, their Philox words
// generated into an L1 buffer, then one streaming pass: forward reads x (and residual) and
// writes y; backward reads dy and writes dx. Row pieces index bias / dbias partials by column;
// without them a block is one piece. dbias: per-thread f32 partial sums (cpu/reduce.h).
#include "cpu/philox_block.h"
#include "ops/dropout.h"

namespace seqfuse::cpu::SF_ISA_NS {

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// One row piece of the forward: y[0, n) = res + drop(x + b); b, res, u nullable.
template <class T>
static void fwd_piece(const T* x, const T* b, const T* res, T* y, const uint32_t* u, int64_t n, R p, R scale) {
  constexpr int W = V::W;
  auto one = [&](int64_t k, int t) SF_INLINE_LAMBDA {
    R v = t == W ? V::load(x + k) : V::load(x + k, t);
    if (b) v = V::add(v, t == W ? V::load(b + k) : V::load(b + k, t));
    if (u) v = V::select(V::ge(t == W ? V::unit(u + k) : V::unit(u + k, t), p), V::mul(v, scale), V::zero());
    if (res) v = V::add(v, t == W ? V::load(res + k) : V::load(res + k, t));
    if (t == W) V::store(y + k, v); else V::store(y + k, v, t);
  };
  int64_t k = 0;
  for (; k + 4 * W <= n; k += 4 * W) { one(k, W); one(k + W, W); one(k + 2 * W, W); one(k + 3 * W, W); }
  for (; k + W <= n; k += W) one(k, W);
  if (k < n) one(k, int(n - k));
}

// One row piece of the backward: dx[0, n) = drop(dy); acc (dbias partials, nullable) += dx.
template <class T>
static void bwd_piece(const T* dy, T* dx, float* acc, const uint32_t* u, int64_t n, R p, R scale) {
  constexpr int W = V::W;
  auto one = [&](int64_t k, int t) SF_INLINE_LAMBDA {
    R d = t == W ? V::load(dy + k) : V::load(dy + k, t);
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
template <class T>
static void fwd_range(const DropoutArgs& a, int64_t e0, int64_t e1) {
  const T* x = static_cast<const T*>(a.x);
  const T* b = static_cast<const T*>(a.bias);
  const T* res = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  const bool drop = a.p > 0.0f;
  const R p = V::set1(a.p), scale = V::set1(dropout_scale(a.p));
  alignas(64) uint32_t buf[kRngBuf];
  int64_t j = e0 % a.cols;
  for (int64_t e = e0; e < e1;) {
    const int64_t start = e, end = min64(e + kRngBlock, e1), next = min64(kRngBlock, e1 - end) * int64_t(sizeof(T));
    prefetch_read(x + end, next);
    if (res) prefetch_read(res + end, next);
    const uint32_t* u = drop ? philox_block(buf, a.offset + uint64_t(e), end - e, a.seed) : nullptr;
    while (e < end) {
      const int64_t n = b ? min64(a.cols - j, end - e) : end - e;
      fwd_piece(x + e, b ? b + j : nullptr, res ? res + e : nullptr, y + e, u ? u + (e - start) : nullptr, n, p, scale);
      e += n;
      j = b ? (j + n == a.cols ? 0 : j + n) : 0;
    }
  }
}

template <class T>
static void bwd_range(const DropoutArgs& a, int64_t e0, int64_t e1, float* acc) {
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const bool drop = a.p > 0.0f;
  const R p = V::set1(a.p), scale = V::set1(dropout_scale(a.p));
  alignas(64) uint32_t buf[kRngBuf];
  int64_t j = e0 % a.cols;
  for (int64_t e = e0; e < e1;) {
    const int64_t start = e, end = min64(e + kRngBlock, e1);
    prefetch_read(dy + end, min64(kRngBlock, e1 - end) * int64_t(sizeof(T)));
    const uint32_t* u = drop ? philox_block(buf, a.offset + uint64_t(e), end - e, a.seed) : nullptr;
    while (e < end) {
      const int64_t n = acc ? min64(a.cols - j, end - e) : end - e;
      bwd_piece(dy + e, dx + e, acc ? acc + j : nullptr, u ? u + (e - start) : nullptr, n, p, scale);
      e += n;
      j = acc ? (j + n == a.cols ? 0 : j + n) : 0;
    }
  }
}

void dropout_fwd_range(const DropoutArgs& a, int64_t e0, int64_t e1) {
  switch (a.dtype) {
    case DType::F32: return fwd_range<float>(a, e0, e1);
    case DType::BF16: return fwd_range<bf16_t>(a, e0, e1);
    case DType::F16: return fwd_range<f16_t>(a, e0, e1);
    default: return;
  }
}

void dropout_bwd_range(const DropoutArgs& a, int64_t e0, int64_t e1, float* acc) {
  switch (a.dtype) {
    case DType::F32: return bwd_range<float>(a, e0, e1, acc);
    case DType::BF16: return bwd_range<bf16_t>(a, e0, e1, acc);
    case DType::F16: return bwd_range<f16_t>(a, e0, e1, acc);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include "cpu/isa.h"
#include "cpu/reduce.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void dropout_fwd_range(const DropoutArgs&, int64_t, int64_t))
SF_ISA_DECLARE(void dropout_bwd_range(const DropoutArgs&, int64_t, int64_t, float*))
}  // namespace cpu

void dropout_fwd_cpu(const DropoutArgs& a) {
  auto fn = SF_PICK(dropout_fwd_range);
  cpu::for_rng_blocks(a.rows * a.cols, 3, [&](int64_t e0, int64_t e1) { fn(a, e0, e1); });
}

void dropout_bwd_cpu(const DropoutArgs& a) {
  auto fn = SF_PICK(dropout_bwd_range);
  if (!a.dbias) {
    cpu::for_rng_blocks(a.rows * a.cols, 2, [&](int64_t e0, int64_t e1) { fn(a, e0, e1, nullptr); });
    return;
  }
  cpu::PartialSums parts(a.cols, 1);
  cpu::for_rng_blocks(a.rows * a.cols, 2, [&](int64_t e0, int64_t e1) { fn(a, e0, e1, parts.slot()); });
  parts.reduce_to(a.dbias, a.dtype, 0);
}

}  // namespace seqfuse
#endif

// native/cpu/activation.cc — bias + activation + dropout, forward and backward (ops/activation.h).
// Shapes: x, y, dy, dx [rows, cols] row-major; bias, dbias [cols].
// The flat element range e = r * cols + j in [0, rows * cols) is cut into blocks of up to
// kRngBlock elements, split over threads in contiguous runs. Per block, the 16-bit Philox values
// of elements offset + e go to an L1 buffer (cpu/philox_block.h); then the block streams once:
// forward reads x and writes y, backward reads dy and x and writes dx. f32 outputs of
// kStreamBytes or more are written with non-temporal stores (no read-for-ownership). Vectors run
// across row ends (the flat walk of cpu/philox_block.h): the bias is a repeated f32 row that
// stays in L1/L2, read at the vector's column, and so are the dbias partial sums.
// dbias: per-thread f32 partial sums of dx (cpu/reduce.h) added in thread order, so results are
// deterministic for a given thread count.
#include "cpu/act_simd.h"
#include "cpu/philox_block.h"

namespace seqfuse::cpu::SF_ISA_NS {

// Elements [e0, e1) of the flat range: y = drop(act(x + bias)); bias (f32, bias_row) nullable.
template <Activation A, class T>
static void fwd_range(const BiasActArgs& a, const float* bias, int64_t e0, int64_t e1) {
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const Dropout d(a.dropout, a.seed);
  const R kscale = d.on() ? d.scale : V::set1(1.0f);
  const bool nt = a.rows * a.cols * int64_t(sizeof(T)) >= kStreamBytes;
  alignas(64) uint16_t buf[kRngBuf];
  ColumnCursor col{e0 % a.cols, a.cols};
  for (int64_t e = e0; e < e1;) {
    const int64_t end = block_end(y, e, e1);
    const uint16_t* h = d.on() ? d.block(buf, a.offset + uint64_t(e), end - e) : nullptr;
    const T* xe = x + e;
    write_row(y + e, end - e, nt, [&](int64_t k, int w) SF_INLINE_LAMBDA {
      prefetch_next_block(xe + k);
      R v = ld(xe + k, w);
      if (bias) {
        v = V::add(v, V::load(bias + col.j));
        col.advance(w);
      }
      v = act_fwd<A>(v, kscale);
      if (h) v = d.mask(v, h + k, w);
      return v;
    });
    e = end;
  }
  if (nt) V::fence();
}

// dx = drop(dy * act'(x + bias)); acc (dbias partials, cols + kColPad floats, nullable) += dx.
template <Activation A, class T>
static void bwd_range(const BiasActArgs& a, const float* bias, int64_t e0, int64_t e1, float* acc) {
  const T* dy = static_cast<const T*>(a.dy);
  const T* x = static_cast<const T*>(a.x);
  T* dx = static_cast<T*>(a.dx);
  const Dropout d(a.dropout, a.seed);
  // The dbias partials group lanes by vector, so with acc the vectors must not depend on dx's
  // address: on a misaligned dx they stay on the grid of e = 0 mod W, with plain stores.
  const bool grid = acc && !vector_aligned(dx);
  const bool nt = !grid && a.rows * a.cols * int64_t(sizeof(T)) >= kStreamBytes;
  alignas(64) uint16_t buf[kRngBuf];
  ColumnCursor col{e0 % a.cols, a.cols};
  for (int64_t e = e0; e < e1;) {
    const int64_t end = grid ? (e1 - e > kRngBlock ? e + kRngBlock : e1) : block_end(dx, e, e1);
    const uint16_t* h = d.on() ? d.block(buf, a.offset + uint64_t(e), end - e) : nullptr;
    const T* xe = x + e;
    const T* ge = dy + e;
    write_row(dx + e, end - e, nt, [&](int64_t k, int w) SF_INLINE_LAMBDA {
      prefetch_next_block(xe + k);
      prefetch_next_block(ge + k);
      R z = ld(xe + k, w);
      if (bias) z = V::add(z, V::load(bias + col.j));
      R g = act_bwd<A>(z, ld(ge + k, w));
      if (h) g = d.apply(g, h + k, w);
      if (acc) {
        float* s = acc + col.j;
        if (w == V::W) V::store(s, V::add(V::load(s), g));
        else V::store(s, V::add(V::load(s, w), g), w);
      }
      if (bias || acc) col.advance(w);
      return g;
    });
    e = end;
  }
  if (acc) fold_wrapped(acc, a.cols);
  if (nt) V::fence();
}

template <class T>
static void fwd_dtype(const BiasActArgs& a, const float* bias, int64_t e0, int64_t e1) {
  switch (a.act) {
    case Activation::None: return fwd_range<Activation::None, T>(a, bias, e0, e1);
    case Activation::Relu: return fwd_range<Activation::Relu, T>(a, bias, e0, e1);
    case Activation::Gelu: return fwd_range<Activation::Gelu, T>(a, bias, e0, e1);
    case Activation::GeluTanh: return fwd_range<Activation::GeluTanh, T>(a, bias, e0, e1);
    case Activation::Silu: return fwd_range<Activation::Silu, T>(a, bias, e0, e1);
  }
}

template <class T>
static void bwd_dtype(const BiasActArgs& a, const float* bias, int64_t e0, int64_t e1, float* acc) {
  switch (a.act) {
    case Activation::None: return bwd_range<Activation::None, T>(a, bias, e0, e1, acc);
    case Activation::Relu: return bwd_range<Activation::Relu, T>(a, bias, e0, e1, acc);
    case Activation::Gelu: return bwd_range<Activation::Gelu, T>(a, bias, e0, e1, acc);
    case Activation::GeluTanh: return bwd_range<Activation::GeluTanh, T>(a, bias, e0, e1, acc);
    case Activation::Silu: return bwd_range<Activation::Silu, T>(a, bias, e0, e1, acc);
  }
}

void bias_act_fwd_range(const BiasActArgs& a, const float* bias, int64_t e0, int64_t e1) {
  switch (a.dtype) {
    case DType::F32: return fwd_dtype<float>(a, bias, e0, e1);
    case DType::BF16: return fwd_dtype<bf16_t>(a, bias, e0, e1);
    case DType::F16: return fwd_dtype<f16_t>(a, bias, e0, e1);
    default: return;
  }
}

void bias_act_bwd_range(const BiasActArgs& a, const float* bias, int64_t e0, int64_t e1, float* acc) {
  switch (a.dtype) {
    case DType::F32: return bwd_dtype<float>(a, bias, e0, e1, acc);
    case DType::BF16: return bwd_dtype<bf16_t>(a, bias, e0, e1, acc);
    case DType::F16: return bwd_dtype<f16_t>(a, bias, e0, e1, acc);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include "cpu/isa.h"
#include "cpu/reduce.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void bias_act_fwd_range(const BiasActArgs&, const float*, int64_t, int64_t))
SF_ISA_DECLARE(void bias_act_bwd_range(const BiasActArgs&, const float*, int64_t, int64_t, float*))
}  // namespace cpu

void bias_act_fwd_cpu(const BiasActArgs& a) {
  auto fn = SF_PICK(bias_act_fwd_range);
  const std::vector<float> bias = cpu::bias_row(a.bias, a.dtype, a.cols);
  const float* b = bias.empty() ? nullptr : bias.data();
  cpu::for_rng_blocks(a.rows * a.cols, 4, [&](int64_t e0, int64_t e1) { fn(a, b, e0, e1); });
}

void bias_act_bwd_cpu(const BiasActArgs& a) {
  auto fn = SF_PICK(bias_act_bwd_range);
  const std::vector<float> bias = cpu::bias_row(a.bias, a.dtype, a.cols);
  const float* b = bias.empty() ? nullptr : bias.data();
  if (!a.dbias) {
    cpu::for_rng_blocks(a.rows * a.cols, 6, [&](int64_t e0, int64_t e1) { fn(a, b, e0, e1, nullptr); });
    return;
  }
  cpu::PartialSums parts(a.cols, 1, cpu::kColPad);
  cpu::for_rng_blocks(a.rows * a.cols, 6, [&](int64_t e0, int64_t e1) { fn(a, b, e0, e1, parts.slot()); });
  parts.reduce_to(a.dbias, a.dtype, 0, a.accumulate);
}

}  // namespace seqfuse
#endif

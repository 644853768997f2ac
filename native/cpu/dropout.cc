// native/cpu/dropout.cc — bias + dropout + residual and plain dropout, forward and backward
// (ops/dropout.h).
// Shapes: x, residual, y, dy, dx [rows, cols] row-major; bias, dbias [cols].
// Same flat walk as cpu/activation.cc (cpu/philox_block.h): blocks of up to kRngBlock elements,
// their 16-bit Philox values generated into an L1 buffer, then one streaming pass: forward reads
// x (and residual) and writes y; backward reads dy and writes dx. f32 outputs of kStreamBytes or
// more are written with non-temporal stores (no read-for-ownership: 2 memory passes instead of 3
// for dropout, 3 instead of 4 with a residual). The bias is read as a repeated f32 row and dbias
// accumulates in per-thread f32 partial sums (cpu/reduce.h) at the vector's column.
#include "cpu/philox_block.h"
#include "ops/dropout.h"

namespace seqfuse::cpu::SF_ISA_NS {

// Plain: plain dropout (no bias, no residual, no dbias) with t > 0. Its loop is short, and the
// per-vector tests of the general form cost it 15-20% (measured from DRAM on one thread), so it
// is instantiated without them; the fused forms spend their time on the extra streams.

// Elements [e0, e1) of the flat range: y = res + drop(x + bias); bias (f32, bias_row) and res nullable.
template <class T, bool Plain>
static void fwd_range(const DropoutArgs& a, const float* bias, int64_t e0, int64_t e1) {
  const T* x = static_cast<const T*>(a.x);
  const T* res = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  const Dropout d(a.p, a.seed);
  const bool nt = a.rows * a.cols * int64_t(sizeof(T)) >= kStreamBytes;
  alignas(64) uint16_t buf[kRngBuf];
  ColumnCursor col{e0 % a.cols, a.cols};
  for (int64_t e = e0; e < e1;) {
    const int64_t end = block_end(y, e, e1);
    const uint16_t* h = Plain || d.on() ? d.block(buf, a.offset + uint64_t(e), end - e) : nullptr;
    const T* xe = x + e;
    const T* re = res ? res + e : nullptr;
    write_row(y + e, end - e, nt, [&](int64_t k, int w) SF_INLINE_LAMBDA {
      prefetch_next_block(xe + k);
      R v = ld(xe + k, w);
      if constexpr (Plain) return d.apply(v, h + k, w);
      if (bias) {
        v = V::add(v, V::load(bias + col.j));
        col.advance(w);
      }
      if (h) v = d.apply(v, h + k, w);
      if (re) {
        prefetch_next_block(re + k);
        v = V::add(v, ld(re + k, w));
      }
      return v;
    });
    e = end;
  }
  if (nt) V::fence();
}

// dx = drop(dy); acc (dbias partials, cols + kColPad floats, nullable) += dx.
template <class T, bool Plain>
static void bwd_range(const DropoutArgs& a, int64_t e0, int64_t e1, float* acc) {
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const Dropout d(a.p, a.seed);
  // The dbias partials group lanes by vector, so with acc the vectors must not depend on dx's
  // address: on a misaligned dx they stay on the grid of e = 0 mod W, with plain stores.
  const bool grid = acc && !vector_aligned(dx);
  const bool nt = !grid && a.rows * a.cols * int64_t(sizeof(T)) >= kStreamBytes;
  alignas(64) uint16_t buf[kRngBuf];
  ColumnCursor col{e0 % a.cols, a.cols};
  for (int64_t e = e0; e < e1;) {
    const int64_t end = grid ? (e1 - e > kRngBlock ? e + kRngBlock : e1) : block_end(dx, e, e1);
    const uint16_t* h = Plain || d.on() ? d.block(buf, a.offset + uint64_t(e), end - e) : nullptr;
    const T* g0 = dy + e;
    write_row(dx + e, end - e, nt, [&](int64_t k, int w) SF_INLINE_LAMBDA {
      prefetch_next_block(g0 + k);
      R g = ld(g0 + k, w);
      if constexpr (Plain) return d.apply(g, h + k, w);
      if (h) g = d.apply(g, h + k, w);
      if (acc) {
        float* s = acc + col.j;
        if (w == V::W) V::store(s, V::add(V::load(s), g));
        else V::store(s, V::add(V::load(s, w), g), w);
        col.advance(w);
      }
      return g;
    });
    e = end;
  }
  if (acc) fold_wrapped(acc, a.cols);
  if (nt) V::fence();
}

void dropout_fwd_range(const DropoutArgs& a, const float* bias, int64_t e0, int64_t e1) {
  const bool plain = !bias && !a.residual && dropout_threshold(a.p) > 0;
  switch (a.dtype) {
    case DType::F32: return plain ? fwd_range<float, true>(a, bias, e0, e1) : fwd_range<float, false>(a, bias, e0, e1);
    case DType::BF16: return plain ? fwd_range<bf16_t, true>(a, bias, e0, e1) : fwd_range<bf16_t, false>(a, bias, e0, e1);
    case DType::F16: return plain ? fwd_range<f16_t, true>(a, bias, e0, e1) : fwd_range<f16_t, false>(a, bias, e0, e1);
    default: return;
  }
}

void dropout_bwd_range(const DropoutArgs& a, int64_t e0, int64_t e1, float* acc) {
  const bool plain = !acc && dropout_threshold(a.p) > 0;
  switch (a.dtype) {
    case DType::F32: return plain ? bwd_range<float, true>(a, e0, e1, acc) : bwd_range<float, false>(a, e0, e1, acc);
    case DType::BF16: return plain ? bwd_range<bf16_t, true>(a, e0, e1, acc) : bwd_range<bf16_t, false>(a, e0, e1, acc);
    case DType::F16: return plain ? bwd_range<f16_t, true>(a, e0, e1, acc) : bwd_range<f16_t, false>(a, e0, e1, acc);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include "cpu/isa.h"
#include "cpu/reduce.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void dropout_fwd_range(const DropoutArgs&, const float*, int64_t, int64_t))
SF_ISA_DECLARE(void dropout_bwd_range(const DropoutArgs&, int64_t, int64_t, float*))
}  // namespace cpu

void dropout_fwd_cpu(const DropoutArgs& a) {
  auto fn = SF_PICK(dropout_fwd_range);
  const std::vector<float> bias = cpu::bias_row(a.bias, a.dtype, a.cols);
  const float* b = bias.empty() ? nullptr : bias.data();
  cpu::for_rng_blocks(a.rows * a.cols, 3, [&](int64_t e0, int64_t e1) { fn(a, b, e0, e1); });
}

void dropout_bwd_cpu(const DropoutArgs& a) {
  auto fn = SF_PICK(dropout_bwd_range);
  if (!a.dbias) {
    cpu::for_rng_blocks(a.rows * a.cols, 2, [&](int64_t e0, int64_t e1) { fn(a, e0, e1, nullptr); });
    return;
  }
  cpu::PartialSums parts(a.cols, 1, cpu::kColPad);
  cpu::for_rng_blocks(a.rows * a.cols, 2, [&](int64_t e0, int64_t e1) { fn(a, e0, e1, parts.slot()); });
  parts.reduce_to(a.dbias, a.dtype, 0, a.accumulate);
}

}  // namespace seqfuse
#endif

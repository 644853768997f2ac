// native/cpu/linear_i8.cc — the float epilogue of the int8 linear (ops/matmul.h linear_i8): one
// output row from its exact int32 accumulators, y = act(f32(acc) * col_scale + bias) + residual,
// stored as f32, or requantized to int8 with quantize's rounding (cpu/quant_grid.h). The product
// itself and the int32 combine run in matmul.cc (oneDNN); this pass runs on the row while it is in L1.
#include "cpu/act_simd.h"
#include "cpu/quant_grid.h"
#include "ops/matmul.h"

namespace seqfuse::cpu::SF_ISA_NS {

template <Activation A>
static void row_act(const LinearI8Args& a, const float* cs, const int32_t* acc, int64_t row) {
  const int64_t n = a.n;
  const float* res = a.residual ? a.residual + row * n : nullptr;
  const R one = V::set1(1.0f);
  auto value = [&](int64_t j, int w) SF_INLINE_LAMBDA {
    R z = V::mul(ld(acc + j, w), ld(cs + j, w));
    if (a.bias) z = V::add(z, ld(a.bias + j, w));
    z = act_fwd<A>(z, one);
    return res ? V::add(z, ld(res + j, w)) : z;
  };
  if (a.out == DType::I8) {
    const R inv = V::set1(127.0f / a.out_clip);
    write_row(static_cast<int8_t*>(a.y) + row * n, n, false,
              [&](int64_t j, int w) SF_INLINE_LAMBDA { return quant_grid(value(j, w), inv); });
  } else {
    write_row(static_cast<float*>(a.y) + row * n, n, false, value);
  }
}

void linear_i8_row(const LinearI8Args& a, const float* cs, const int32_t* acc, int64_t row) {
  switch (a.act) {
    case Activation::Relu: return row_act<Activation::Relu>(a, cs, acc, row);
    case Activation::Gelu: return row_act<Activation::Gelu>(a, cs, acc, row);
    case Activation::GeluTanh: return row_act<Activation::GeluTanh>(a, cs, acc, row);
    case Activation::Silu: return row_act<Activation::Silu>(a, cs, acc, row);
    default: return row_act<Activation::None>(a, cs, acc, row);
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include "cpu/isa.h"

namespace seqfuse::cpu {
SF_ISA_DECLARE(void linear_i8_row(const LinearI8Args&, const float*, const int32_t*, int64_t))

using LinearI8RowFn = void (*)(const LinearI8Args& a, const float* col_scale, const int32_t* acc, int64_t row);
LinearI8RowFn linear_i8_row_fn() { return SF_PICK(linear_i8_row); }
}  // namespace seqfuse::cpu
#endif

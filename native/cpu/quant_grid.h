// native/cpu/quant_grid.h — int8 rounding of the quantization scheme (ops/quant.h) on vectors,
// shared by quantize / fake-quant (quant.cc) and the int8 linear's requantizing epilogue
// (linear_i8.cc). Static inline in the ISA pass's namespace (simd.h).
#pragma once
#include "cpu/simd.h"

namespace seqfuse::cpu::SF_ISA_NS {

// round(clamp(x * inv, -127, 127)) half away from zero; NaN -> 0. The final + 0 turns -0 into
// +0 (an int8 has no -0), so fake-quant gives the same bits as dequantize(quantize(x)).
SF_INLINE R quant_grid(R x, R inv) {
  R r = V::mul(x, inv);
  r = V::select0(V::ge(r, r), r);
  r = V::min(V::max(r, V::set1(-127.0f)), V::set1(127.0f));
  R n = V::round(r);
  n = V::select(V::ge(V::abs(V::sub(r, n)), V::set1(0.5f)), V::add(r, V::copysign(V::set1(0.5f), r)), n);
  return V::add(n, V::zero());
}

}  // namespace seqfuse::cpu::SF_ISA_NS

// native/cpu/tensor_ops.cc — dtype casts and Philox random fills (ops/tensor_ops.h) on CPU.
// Casts between float types stream through V (one load, one store per element); integer
// casts go through double with truncation toward zero and saturation.
#include "cpu/simd.h"
#include "ops/tensor_ops.h"

namespace seqfuse::cpu::SF_ISA_NS {

template <class S, class D>
static void cast_float_t(const S* src, D* dst, int64_t i0, int64_t i1) {
  constexpr int W = V::W;
  int64_t i = i0;
  for (; i + W <= i1; i += W) V::store(dst + i, V::load(src + i));
  if (i < i1) V::store(dst + i, V::load(src + i, int(i1 - i)), int(i1 - i));
}

template <class S>
static void cast_from_t(const CastArgs& a, int64_t i0, int64_t i1) {
  const S* s = static_cast<const S*>(a.src);
  switch (a.dst_dtype) {
    case DType::F32: return cast_float_t(s, static_cast<float*>(a.dst), i0, i1);
    case DType::BF16: return cast_float_t(s, static_cast<bf16_t*>(a.dst), i0, i1);
    case DType::F16: return cast_float_t(s, static_cast<f16_t*>(a.dst), i0, i1);
    default: return;
  }
}

// Float to float only; the main pass handles integer types.
void cast_float_range(const CastArgs& a, int64_t i0, int64_t i1) {
  switch (a.src_dtype) {
    case DType::F32: return cast_from_t<float>(a, i0, i1);
    case DType::BF16: return cast_from_t<bf16_t>(a, i0, i1);
    case DType::F16: return cast_from_t<f16_t>(a, i0, i1);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <cmath>
#include <cstring>
#include "core/philox.h"
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void cast_float_range(const CastArgs&, int64_t, int64_t))
}  // namespace cpu

static double load_as_double(DType t, const void* p, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const bf16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const f16_t*>(p)[i]);
    case DType::I8: return static_cast<const int8_t*>(p)[i];
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::U8: return static_cast<const uint8_t*>(p)[i];
  }
  return 0;
}

static double saturate(double v, double lo, double hi) {
  if (std::isnan(v)) return 0;
  v = std::trunc(v);
  return v < lo ? lo : v > hi ? hi : v;
}

static void store_double(DType t, void* p, int64_t i, double v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::BF16: static_cast<bf16_t*>(p)[i] = f32_to_bf16(float(v)); break;
    case DType::F16: static_cast<f16_t*>(p)[i] = f32_to_f16(float(v)); break;
    case DType::I8: static_cast<int8_t*>(p)[i] = int8_t(saturate(v, -128, 127)); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = int32_t(saturate(v, -2147483648.0, 2147483647.0)); break;
    case DType::U8: static_cast<uint8_t*>(p)[i] = uint8_t(saturate(v, 0, 255)); break;
  }
}

void cast_cpu(const CastArgs& a) {
  if (is_float(a.src_dtype) && is_float(a.dst_dtype)) {
    auto fn = SF_PICK(cast_float_range);
    parallel_for(a.n, 1, [&](int64_t i0, int64_t i1) { fn(a, i0, i1); });
    return;
  }
  parallel_for(a.n, 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) store_double(a.dst_dtype, a.dst, i, load_as_double(a.src_dtype, a.src, i));
  });
}

void random_cpu(const RandomArgs& a) {
  // Work in groups of 4 elements (one Philox call); group g covers elements 4g .. 4g+3 of the
  // stream, i.e. out indices 4g - offset ...
  const uint64_t first = a.offset, last = a.offset + uint64_t(a.n);
  const int64_t g0 = int64_t(first >> 2), g1 = int64_t((last + 3) >> 2);
  parallel_for(g1 - g0, 16, [&](int64_t b, int64_t e) {
    for (int64_t g = g0 + b; g < g0 + e; ++g) {
      Philox4 r = philox4x32_10(uint64_t(g), a.seed);
      float v[4];
      if (a.kind == RandomKind::Uniform) {
        for (int k = 0; k < 4; ++k) v[k] = a.a + (a.b - a.a) * philox_unit(r.v[k]);
      } else {  // Box-Muller on (u0, u1) and (u2, u3); u in (0, 1] for the log
        for (int k = 0; k < 4; k += 2) {
          float u1 = float((r.v[k] >> 8) + 1) * 5.9604644775390625e-8f, u2 = philox_unit(r.v[k + 1]);
          float rad = std::sqrt(-2.0f * std::log(u1)), th = 6.2831853071795864f * u2;
          v[k] = a.a + a.b * rad * std::cos(th);
          v[k + 1] = a.a + a.b * rad * std::sin(th);
        }
      }
      for (int k = 0; k < 4; ++k) {
        uint64_t idx = uint64_t(g) * 4 + uint64_t(k);
        if (idx < first || idx >= last) continue;
        int64_t i = int64_t(idx - first);
        switch (a.dtype) {
          case DType::F32: static_cast<float*>(a.out)[i] = v[k]; break;
          case DType::BF16: static_cast<bf16_t*>(a.out)[i] = f32_to_bf16(v[k]); break;
          case DType::F16: static_cast<f16_t*>(a.out)[i] = f32_to_f16(v[k]); break;
          default: break;
        }
      }
    }
  });
}

// One task per (b, h) pair's S runs of D elements: plain copies, the memory system's speed.
void heads_copy_cpu(const HeadsArgs& a) {
  const int64_t es = dtype_size(a.dtype), run = a.D * es;
  const char* src = static_cast<const char*>(a.src);
  char* dst = static_cast<char*>(a.dst);
  parallel_for(a.B * a.H, a.S * a.D, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / a.H, h = p % a.H;
      for (int64_t s = 0; s < a.S; ++s) {
        const int64_t row = ((b * a.S + s) * a.ld + a.col0 + h * a.D) * es, head = (p * a.S + s) * run;
        if (a.to_heads) std::memcpy(dst + head, src + row, size_t(run));
        else std::memcpy(dst + row, src + head, size_t(run));
      }
    }
  });
}

}  // namespace seqfuse
#endif

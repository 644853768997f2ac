// cuda/tests/values.h — element access shared by the kernel tests: f32/f16/bf16 values by dtype
// (16-bit stores round to nearest even), poisoned and random managed buffers.
#pragma once
#include <cstring>
#include <random>
#include "../emu/tests/check.h"
#include "core/dtype.h"

inline size_t esize(seqfuse::DType t) { return t == seqfuse::DType::F32 ? 4 : 2; }

inline void set_value(void* p, seqfuse::DType t, int64_t i, float v) {
  if (t == seqfuse::DType::F32) static_cast<float*>(p)[i] = v;
  else if (t == seqfuse::DType::F16) static_cast<__half*>(p)[i] = __float2half_rn(v);
  else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

inline double get_value(const void* p, seqfuse::DType t, int64_t i) {
  if (t == seqfuse::DType::F32) return static_cast<const float*>(p)[i];
  if (t == seqfuse::DType::F16) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

// n elements of dtype t (at least one byte's worth), every byte 0x7f.
inline void* poisoned_buf(seqfuse::DType t, int64_t n) {
  const size_t bytes = size_t(n > 0 ? n : 1) * esize(t);
  void* p = managed<unsigned char>(bytes);
  std::memset(p, 0x7f, bytes);
  return p;
}

// n random values of dtype t, uniform in [lo, hi) (16-bit: the f32 draw rounded).
inline void* random_buf(seqfuse::DType t, int64_t n, std::mt19937& g, float lo, float hi) {
  void* p = poisoned_buf(t, n);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < n; ++i) set_value(p, t, i, u(g));
  return p;
}

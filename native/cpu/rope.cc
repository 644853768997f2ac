// native/cpu/rope.cc — rotary position embedding in place (ops/rope.h). Memory-bound: one read
// and one write of each rotated element; threads split the (b, h) heads.
#include <cmath>
#include <vector>
#include "core/threads.h"
#include "ops/rope.h"

namespace seqfuse {

namespace {

inline float load(const float* p) { return *p; }
inline float load(const bf16_t* p) { return bf16_to_f32(*p); }
inline float load(const f16_t* p) { return f16_to_f32(*p); }
inline void store(float* p, float v) { *p = v; }
inline void store(bf16_t* p, float v) { *p = f32_to_bf16(v); }
inline void store(f16_t* p, float v) { *p = f32_to_f16(v); }

template <class T>
void rope_heads(const RopeArgs& a, const float* cs, int64_t h0, int64_t h1) {
  const int64_t half = a.rot / 2;
  const float sign = a.inverse ? -1.0f : 1.0f;
  T* x = static_cast<T*>(a.x);
  for (int64_t bh = h0; bh < h1; ++bh) {
    for (int64_t s = 0; s < a.S; ++s) {
      T* row = x + (bh * a.S + s) * a.D;
      const float* c = cs + s * 2 * half;  // cos[half], then sin[half]
      for (int64_t i = 0; i < half; ++i) {
        const float u = load(row + i), v = load(row + i + half), co = c[i], si = sign * c[half + i];
        store(row + i, u * co - v * si);
        store(row + i + half, u * si + v * co);
      }
    }
  }
}

}  // namespace

void rope_cpu(const RopeArgs& a) {
  const int64_t half = a.rot / 2;
  if (a.dtype != DType::F32 && a.dtype != DType::BF16 && a.dtype != DType::F16)
    fail(ErrorCode::DType, "rope: expected f32, bf16 or f16 heads but received ", dtype_name(a.dtype));
  if (half == 0 || a.S == 0) return;
  std::vector<float> cs(size_t(a.S * 2 * half));
  for (int64_t s = 0; s < a.S; ++s) {
    const double p = double(s + a.offset);
    for (int64_t i = 0; i < half; ++i) {
      const double th = p * std::pow(a.base, -2.0 * double(i) / double(a.rot));
      cs[size_t(s * 2 * half + i)] = float(std::cos(th));
      cs[size_t(s * 2 * half + half + i)] = float(std::sin(th));
    }
  }
  parallel_for(a.B * a.H, a.S * a.rot, [&](int64_t h0, int64_t h1) {
    switch (a.dtype) {
      case DType::F32: return rope_heads<float>(a, cs.data(), h0, h1);
      case DType::BF16: return rope_heads<bf16_t>(a, cs.data(), h0, h1);
      case DType::F16: return rope_heads<f16_t>(a, cs.data(), h0, h1);
      default: return;  // checked above
    }
  });
}

}  // namespace seqfuse

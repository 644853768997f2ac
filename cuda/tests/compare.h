// cuda/tests/compare.h — helpers of the kernel tests that compare a family's CUDA kernels with the
// CPU backend and a float64 reference: typed element access, managed buffers (optionally
// misaligned by some elements), random fills, relative L2 with the DESIGN.md tolerances (f32
// 1e-5, f16/bf16 1e-2; NaN fails) and a record of the largest error seen. Include after
// ../emu/tests/check.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>
#include "core/dtype.h"

namespace cmp {

using seqfuse::DType;

inline size_t esize(DType t) { return t == DType::F32 ? 4 : 2; }

inline double get(const void* p, DType t, int64_t i) {
  if (t == DType::F32) return static_cast<const float*>(p)[i];
  if (t == DType::F16) return double(__half2float(static_cast<const __half*>(p)[i]));
  return double(__bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]));
}

inline void put(void* p, DType t, int64_t i, float v) {
  if (t == DType::F32) static_cast<float*>(p)[i] = v;
  else if (t == DType::F16) static_cast<__half*>(p)[i] = __float2half_rn(v);
  else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

// Managed buffers of one test case, poisoned (0x7f bytes), freed together.
struct Buffers {
  std::vector<void*> owned;
  // n elements of t after `shift` elements (shift > 0: misaligned for vector accesses)
  void* get(DType t, int64_t n, int shift = 0) {
    const size_t bytes = (size_t(n > 0 ? n : 0) + size_t(shift) + 1) * esize(t);
    unsigned char* p = managed<unsigned char>(bytes);
    owned.push_back(p);
    std::memset(p, 0x7f, bytes);
    return p + size_t(shift) * esize(t);
  }
  ~Buffers() {
    for (void* p : owned) cudaFree(p);
  }
};

inline void fill(void* p, DType t, int64_t n, std::mt19937& g, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < n; ++i) put(p, t, i, u(g));
}

inline std::vector<double> values(const void* p, DType t, int64_t n) {
  std::vector<double> v(size_t(n > 0 ? n : 0));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = get(p, t, i);
  return v;
}

inline bool same_bits(const void* a, const void* b, int64_t n, DType t) { return std::memcmp(a, b, size_t(n) * esize(t)) == 0; }

// The same bits, or both NaN (f32 -> f16 conversions may encode NaN differently: the CPU's
// f32_to_f16 and CUDA's __float2half_rn give different payloads).
inline bool same_values(const void* a, const void* b, int64_t n, DType t) {
  const size_t es = esize(t);
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(static_cast<const char*>(a) + size_t(i) * es, static_cast<const char*>(b) + size_t(i) * es, es) != 0 &&
        !(std::isnan(get(a, t, i)) && std::isnan(get(b, t, i))))
      return false;
  return true;
}

// ||a - ref|| / max(||ref||, scale) (0 when both are 0); a NaN where ref has none, or a number
// where ref has NaN, gives +Inf (NaN positions must agree; they are left out of the norms).
inline double rel_l2(const void* a, DType ta, const std::vector<double>& ref, double scale = 0) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double v = get(a, ta, int64_t(i));
    if (std::isnan(v) != std::isnan(ref[i])) return INFINITY;
    if (std::isnan(v)) continue;
    num += (v - ref[i]) * (v - ref[i]);
    den += ref[i] * ref[i];
  }
  den = std::max(den, scale * scale);
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline double g_worst[2] = {0, 0};  // the largest relative L2 that passed: [f32, f16/bf16]

// got (dtype t) against ref within the dtype's tolerance; scale: the size of the terms whose
// difference ref is, for outputs that cancel (0: none).
inline void expect_close(const char* what, const void* got, DType t, const std::vector<double>& ref, const char* against,
                         const char* ctx, double scale = 0) {
  const double e = rel_l2(got, t, ref, scale);
  const double tol = t == DType::F32 ? 1e-5 : 1e-2;
  double& w = g_worst[t == DType::F32 ? 0 : 1];
  if (e > w && e <= tol) w = e;
  CHECK(e <= tol, "%s vs %s: relative L2 %.3g > %.0e (%s)", what, against, e, tol, ctx);
}

}  // namespace cmp

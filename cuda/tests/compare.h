// cuda/tests/compare.h — the helpers every kernel test shares (each test compares a family's CUDA
// kernels with the CPU backend and a float64 reference): typed element access (stores into
// f16/bf16 round to nearest even), managed buffers poisoned with a chosen byte (one by one, or
// owned and freed together by a test case's Buffers, optionally misaligned by some elements),
// random fills, bit-for-bit comparisons, relative L2 (how NaN and Inf count chosen per call), the
// DESIGN.md tolerances (f32 1e-5, f16/bf16 1e-2; NaN fails) with a record of the largest error
// seen, and float64 activations. Includes ../emu/tests/check.h (CHECK, managed, device_sync).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>
#include "../emu/tests/check.h"
#include "core/dtype.h"
#include "ops/activation.h"

namespace cmp {

using seqfuse::DType;

// --- elements ------------------------------------------------------------------

inline size_t esize(DType t) { return size_t(seqfuse::dtype_size(t)); }

inline double get(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F16: return double(__half2float(static_cast<const __half*>(p)[i]));
    case DType::BF16: return double(__bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]));
    case DType::I8: return static_cast<const int8_t*>(p)[i];
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::U8: return static_cast<const uint8_t*>(p)[i];
  }
  return NAN;
}

// Element i of a float dtype (f32, f16, bf16).
inline void put(void* p, DType t, int64_t i, float v) {
  if (t == DType::F32) static_cast<float*>(p)[i] = v;
  else if (t == DType::F16) static_cast<__half*>(p)[i] = __float2half_rn(v);
  else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

inline std::vector<double> values(const void* p, DType t, int64_t n) {
  std::vector<double> v(size_t(n > 0 ? n : 0));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = get(p, t, i);
  return v;
}

// --- buffers -------------------------------------------------------------------

// n elements of t in managed memory (one element when n is 0), every byte `byte`: 0x7f is a large
// finite value in every float dtype, 0xff a NaN.
inline void* poisoned_buf(DType t, int64_t n, unsigned char byte = 0x7f) {
  const size_t bytes = size_t(n > 0 ? n : 1) * esize(t);
  void* p = managed<unsigned char>(bytes);
  std::memset(p, byte, bytes);
  return p;
}

// n draws of dist (a float dtype: each draw as a float, stored by put).
template <class Dist>
void fill(void* p, DType t, int64_t n, std::mt19937& g, Dist dist) {
  for (int64_t i = 0; i < n; ++i) put(p, t, i, float(dist(g)));
}
inline void fill(void* p, DType t, int64_t n, std::mt19937& g, float lo, float hi) {
  fill(p, t, n, g, std::uniform_real_distribution<float>(lo, hi));
}

// A poisoned_buf holding n draws of dist, or of a uniform distribution in [lo, hi).
template <class Dist>
void* random_buf(DType t, int64_t n, std::mt19937& g, Dist dist) {
  void* p = poisoned_buf(t, n);
  fill(p, t, n, g, dist);
  return p;
}
inline void* random_buf(DType t, int64_t n, std::mt19937& g, float lo, float hi) {
  return random_buf(t, n, g, std::uniform_real_distribution<float>(lo, hi));
}

// Managed buffers of one test case, freed together.
struct Buffers {
  std::vector<void*> owned;
  // n elements of t after `shift` elements (shift > 0: misaligned for vector accesses), poisoned
  // (0x7f); exactly that size, so AddressSanitizer sees a kernel that runs past the end
  void* get(DType t, int64_t n, int shift = 0) {
    const size_t bytes = (size_t(n > 0 ? n : 0) + size_t(shift)) * esize(t);
    unsigned char* p = managed<unsigned char>(bytes);
    owned.push_back(p);
    std::memset(p, 0x7f, bytes);
    return p + size_t(shift) * esize(t);
  }
  // p (from managed memory) freed with the others
  void* own(void* p) {
    owned.push_back(p);
    return p;
  }
  ~Buffers() {
    for (void* p : owned) cudaFree(p);
  }
};

// --- bit for bit -----------------------------------------------------------------

inline bool same_bytes(const void* a, const void* b, size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

inline bool same_bits(const void* a, const void* b, int64_t n, DType t) { return same_bytes(a, b, size_t(n) * esize(t)); }

// Element i of a and b: the same bits.
inline bool same_at(const void* a, const void* b, int64_t i, DType t) {
  const size_t es = esize(t);
  return same_bytes(static_cast<const char*>(a) + size_t(i) * es, static_cast<const char*>(b) + size_t(i) * es, es);
}

// The first of n elements whose bits differ, or -1.
inline int64_t first_diff(const void* a, const void* b, int64_t n, DType t) {
  for (int64_t i = 0; i < n; ++i)
    if (!same_at(a, b, i, t)) return i;
  return -1;
}

// The same bits, or both NaN (f32 -> f16 conversions may encode NaN differently: the CPU's
// f32_to_f16 and CUDA's __float2half_rn give different payloads).
inline bool same_values(const void* a, const void* b, int64_t n, DType t) {
  for (int64_t i = 0; i < n; ++i)
    if (!same_at(a, b, i, t) && !(std::isnan(get(a, t, i)) && std::isnan(get(b, t, i)))) return false;
  return true;
}

// --- relative L2 -------------------------------------------------------------------

// What a relative L2 makes of NaN and Inf.
enum class NonFinite {
  NaNsAgree,    // NaN positions must agree and are left out of the norms; a NaN on one side alone
                // gives +Inf; Inf is plain arithmetic
  Agree,        // NaN and Inf positions must agree (both NaN, or the same Inf) and are left out;
                // any other NaN or Inf gives +Inf
  GotNaNFails,  // a NaN in got gives +Inf; the rest is plain arithmetic (for NaN-free references)
};

// ||got - want|| / max(||want||, floor), summed pair by pair; ||got - want|| where both norms
// under the root are 0.
struct RelL2 {
  NonFinite nf;
  double num = 0, den = 0;
  int64_t n = 0;     // pairs added, the ones left out too
  bool inf = false;  // a pair that makes the distance +Inf

  explicit RelL2(NonFinite how = NonFinite::NaNsAgree) : nf(how) {}

  void add(double got, double want) {
    ++n;
    switch (nf) {
      case NonFinite::NaNsAgree:
        if (std::isnan(got) != std::isnan(want)) inf = true;
        if (std::isnan(got) || std::isnan(want)) return;
        break;
      case NonFinite::Agree:
        if (!std::isfinite(got) || !std::isfinite(want)) {
          if (!((std::isnan(got) && std::isnan(want)) || got == want)) inf = true;
          return;
        }
        break;
      case NonFinite::GotNaNFails:
        if (std::isnan(got)) {
          inf = true;
          return;
        }
        break;
    }
    num += (got - want) * (got - want);
    den += want * want;
  }
  // relative to max(||want||, scale): scale is the size of the terms whose difference want is,
  // for outputs that cancel (0: none)
  double value(double scale = 0) const { return finish(scale * scale); }
  // relative to max(||want||, rms sqrt(n)): a floor of `rms` per element
  double value_rms(double rms) const { return finish(rms * rms * double(n)); }

 private:
  double finish(double den_floor) const {
    if (inf) return INFINITY;
    const double d = std::max(den, den_floor);
    return d > 0 ? std::sqrt(num / d) : std::sqrt(num);
  }
};

// The sums of got (dtype t) against want.
inline RelL2 rel_l2_sums(const void* got, DType t, const std::vector<double>& want, NonFinite nf) {
  RelL2 e(nf);
  for (size_t i = 0; i < want.size(); ++i) e.add(get(got, t, int64_t(i)), want[i]);
  return e;
}

// ||got - want|| / max(||want||, scale) (0 when both are 0), NaN and Inf as `nf` says.
inline double rel_l2(const void* got, DType t, const std::vector<double>& want, double scale = 0,
                     NonFinite nf = NonFinite::NaNsAgree) {
  return rel_l2_sums(got, t, want, nf).value(scale);
}

inline double g_worst[2] = {0, 0};  // the largest relative L2 that passed: [f32, f16/bf16]

// got (dtype t) against ref within the dtype's tolerance (NaN positions must agree); scale: the
// size of the terms whose difference ref is, for outputs that cancel (0: none).
inline void expect_close(const char* what, const void* got, DType t, const std::vector<double>& ref, const char* against,
                         const char* ctx, double scale = 0) {
  const double e = rel_l2(got, t, ref, scale);
  const double tol = t == DType::F32 ? 1e-5 : 1e-2;
  double& w = g_worst[t == DType::F32 ? 0 : 1];
  if (e > w && e <= tol) w = e;
  CHECK(e <= tol, "%s vs %s: relative L2 %.3g > %.0e (%s)", what, against, e, tol, ctx);
}

// --- float64 references ------------------------------------------------------------

// An activation in float64 (exact erf, tanh, exp).
inline double act_ref(seqfuse::Activation act, double z) {
  switch (act) {
    case seqfuse::Activation::Relu: return z > 0 ? z : 0.0;
    case seqfuse::Activation::Gelu: return 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
    case seqfuse::Activation::GeluTanh: return 0.5 * z * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z)));
    case seqfuse::Activation::Silu: return z / (1.0 + std::exp(-z));
    default: return z;
  }
}

}  // namespace cmp

// native/cpu/optim.cc — fused multi-tensor AdamW and the global sum of squares (ops/optim.h).
// Shapes: every tensor is flat [numel]; a call covers a list of them.
// adamw: the list is one flat range of sum(numel) elements, split evenly over the threads (a task
// may span the end of one tensor and the start of the next). Each element is read once (param,
// grad, m, v: 14-16 bytes) and written once (param, m, v, copy: 12-14 bytes), in one pass;
// memory-bound, so there is nothing to gain from unrolling beyond one vector per step.
// norm_sumsq: f32 lanes widened to double and squared exactly (an f32 square fits in 48 bits),
// accumulated per chunk of kNormChunk elements in double lanes; chunk sums are added in order.
#include <type_traits>
#include "cpu/simd.h"
#include "ops/optim.h"

namespace seqfuse::cpu {

constexpr int64_t kNormChunk = int64_t(1) << 14;  // elements per chunk sum (64 KiB of f32)

}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

struct NoCopy {};  // the copy type of tensors without a low-precision copy

// Elements [e0, e1) of tensor t. G: grad type; C: copy type (or NoCopy).
template <class G, class C>
static void adamw_range_t(const AdamWScalars& s, const AdamWTensor& t, int64_t e0, int64_t e1) {
  constexpr int W = V::W;
  float* param = t.param;
  const G* grad = static_cast<const G*>(t.grad);
  float* m = t.m;
  float* v = t.v;
  const R gs = V::set1(s.grad_scale), b1 = V::set1(s.beta1), omb1 = V::set1(s.one_minus_beta1);
  const R b2 = V::set1(s.beta2), omb2 = V::set1(s.one_minus_beta2), eps = V::set1(s.eps);
  const R decay = V::set1(t.decay ? s.decay_factor : 1.0f);  // p * 1 is exact: no branch per element
  const R step_size = V::set1(s.step_size), rbc2 = V::set1(s.rsqrt_bc2);
  auto body = [&](int64_t i, int w) SF_INLINE_LAMBDA {
    R g = V::mul(ld(grad + i, w), gs);
    R p = V::mul(ld(param + i, w), decay);
    R mi = V::fma(b1, ld(m + i, w), V::mul(omb1, g));
    R vi = V::fma(b2, ld(v + i, w), V::mul(omb2, V::mul(g, g)));
    R den = V::fma(V::sqrt(vi), rbc2, eps);
    p = V::fnma(step_size, V::div(mi, den), p);
    if (w == W) {
      V::store(param + i, p); V::store(m + i, mi); V::store(v + i, vi);
    } else {
      V::store(param + i, p, w); V::store(m + i, mi, w); V::store(v + i, vi, w);
    }
    if constexpr (!std::is_same_v<C, NoCopy>) {
      C* copy = static_cast<C*>(t.copy);
      if (w == W) V::store(copy + i, p);
      else V::store(copy + i, p, w);
    }
  };
  int64_t i = e0;
  for (; i + W <= e1; i += W) body(i, W);
  if (i < e1) body(i, int(e1 - i));
}

template <class G>
static void adamw_range_g(const AdamWScalars& s, const AdamWTensor& t, int64_t e0, int64_t e1) {
  if (!t.copy) return adamw_range_t<G, NoCopy>(s, t, e0, e1);
  if (t.copy_dtype == DType::F16) return adamw_range_t<G, f16_t>(s, t, e0, e1);
  return adamw_range_t<G, bf16_t>(s, t, e0, e1);
}

void adamw_range(const AdamWScalars& s, const AdamWTensor& t, int64_t e0, int64_t e1) {
  switch (t.grad_dtype) {
    case DType::F32: return adamw_range_g<float>(s, t, e0, e1);
    case DType::BF16: return adamw_range_g<bf16_t>(s, t, e0, e1);
    case DType::F16: return adamw_range_g<f16_t>(s, t, e0, e1);
    default: return;
  }
}

// Exact squares of W f32 lanes added into double lanes; total() adds the lanes in a fixed order.
#if SF_ISA == 2
struct SumSq {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  void add(__m512 x) {
    __m512d a = _mm512_cvtps_pd(_mm512_castps512_ps256(x)), b = _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1));
    lo = _mm512_fmadd_pd(a, a, lo);
    hi = _mm512_fmadd_pd(b, b, hi);
  }
  double total() const { return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi)); }
};
#elif SF_ISA == 1
struct SumSq {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  void add(__m256 x) {
    __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), b = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    lo = _mm256_fmadd_pd(a, a, lo);
    hi = _mm256_fmadd_pd(b, b, hi);
  }
  double total() const {
    alignas(32) double l[4];
    _mm256_store_pd(l, _mm256_add_pd(lo, hi));
    return (l[0] + l[1]) + (l[2] + l[3]);
  }
};
#else
struct SumSq {
  double s = 0.0;
  void add(float x) { s += double(x) * double(x); }
  double total() const { return s; }
};
#endif

template <class T>
static double sumsq_t(const T* x, int64_t n) {
  constexpr int W = V::W;
  SumSq acc;
  int64_t i = 0;
  for (; i + W <= n; i += W) acc.add(V::load(x + i));
  if (i < n) acc.add(V::load(x + i, int(n - i)));  // lanes past the end load as 0
  return acc.total();
}

double norm_sumsq_chunk(const void* x, DType dt, int64_t n) {
  switch (dt) {
    case DType::F32: return sumsq_t(static_cast<const float*>(x), n);
    case DType::BF16: return sumsq_t(static_cast<const bf16_t*>(x), n);
    case DType::F16: return sumsq_t(static_cast<const f16_t*>(x), n);
    default: return 0.0;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <algorithm>
#include <cmath>
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void adamw_range(const AdamWScalars&, const AdamWTensor&, int64_t, int64_t))
SF_ISA_DECLARE(double norm_sumsq_chunk(const void*, DType, int64_t))
}  // namespace cpu

void adamw_cpu(const AdamWArgs& a) {
  auto fn = SF_PICK(adamw_range);
  const AdamWScalars s = adamw_scalars(a);
  // start[i]: the flat index of tensor i's first element; a task finds its first tensor by search
  std::vector<int64_t> start(size_t(a.count) + 1, 0);
  for (int64_t i = 0; i < a.count; ++i) start[size_t(i) + 1] = start[size_t(i)] + a.tensors[i].numel;
  parallel_for(start.back(), 8, [&](int64_t e0, int64_t e1) {
    size_t i = size_t(std::upper_bound(start.begin(), start.end(), e0) - start.begin()) - 1;
    for (; e0 < e1; ++i) {
      const int64_t end = std::min(e1, start[i + 1]);
      if (end > e0) fn(s, a.tensors[i], e0 - start[i], end - start[i]);
      e0 = end;
    }
  });
}

void norm_sumsq_cpu(const SumSqArgs& a) {
  auto fn = SF_PICK(norm_sumsq_chunk);
  struct Chunk { const void* x; DType dt; int64_t n; };
  std::vector<Chunk> chunks;
  for (int64_t i = 0; i < a.count; ++i) {
    const NormTensor& t = a.tensors[i];
    const int64_t es = dtype_size(t.dtype);
    for (int64_t e = 0; e < t.numel; e += cpu::kNormChunk)
      chunks.push_back({static_cast<const char*>(t.data) + e * es, t.dtype, std::min(cpu::kNormChunk, t.numel - e)});
  }
  std::vector<double> sums(chunks.size(), 0.0);
  parallel_for(int64_t(chunks.size()), cpu::kNormChunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) sums[size_t(c)] = fn(chunks[size_t(c)].x, chunks[size_t(c)].dt, chunks[size_t(c)].n);
  });
  double total = 0.0;
  for (double v : sums) total += v;
  *a.sumsq = total;
}

}  // namespace seqfuse
#endif

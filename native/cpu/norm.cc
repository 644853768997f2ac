// native/cpu/norm.cc — LayerNorm / RMSNorm forward and backward on CPU.
// Shapes: x, y, dy, dx [rows, cols]; gamma, beta, dgamma, dbeta [cols]; mean, rstd [rows] f32.
// One row per step: the row is read from memory once and re-read from L1/L2 for the
// statistics and the output, so the op streams x in and y out (memory-bound for cols >= 256).
// Backward keeps per-thread f32 partial sums of dgamma/dbeta and adds them in thread order,
// so results are deterministic for a given thread count.
#include "cpu/simd.h"
#include "ops/norm.h"

namespace seqfuse::cpu::SF_ISA_NS {

// sum of f(x_j) over the first n elements (n a multiple of W) with four accumulators.
template <class T, class F>
static float row_reduce(const T* x, int64_t n, F f) {
  constexpr int W = V::W;
  R a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  int64_t j = 0;
  for (; j + 4 * W <= n; j += 4 * W) {
    a0 = V::add(a0, f(V::load(x + j)));
    a1 = V::add(a1, f(V::load(x + j + W)));
    a2 = V::add(a2, f(V::load(x + j + 2 * W)));
    a3 = V::add(a3, f(V::load(x + j + 3 * W)));
  }
  for (; j + W <= n; j += W) a0 = V::add(a0, f(V::load(x + j)));
  return V::hsum(V::add(V::add(a0, a1), V::add(a2, a3)));
}

// Any n. Masked tail loads give zeros but f(0) need not be 0 (e.g. (x - mean)^2), so the tail
// goes through f one element at a time: f(set1(v)) has W equal lanes, hsum/W is exact.
template <class T, class F>
static float row_reduce_exact(const T* x, int64_t n, F f) {
  constexpr int W = V::W;
  int64_t body = n - n % W;
  float s = row_reduce(x, body, f);
  for (int64_t j = body; j < n; ++j) s += V::hsum(f(V::set1(to_f32(x[j])))) / float(W);
  return s;
}

template <class T>
static void norm_stats(const NormArgs& a, const T* x, float& mean, float& rstd) {
  const int64_t n = a.cols;
  if (a.rms) {
    float ss = row_reduce_exact(x, n, [](R v) { return V::mul(v, v); });
    mean = 0.0f;
    rstd = 1.0f / std::sqrt(ss / float(n) + a.eps);
  } else {
    float s = row_reduce_exact(x, n, [](R v) { return v; });
    mean = s / float(n);
    R m = V::set1(mean);
    float ss = row_reduce_exact(x, n, [m](R v) { R d = V::sub(v, m); return V::mul(d, d); });
    rstd = 1.0f / std::sqrt(ss / float(n) + a.eps);
  }
}

template <class T>
static void norm_fwd_t(const NormArgs& a, int64_t r0, int64_t r1) {
  const int64_t n = a.cols;
  const T* g = static_cast<const T*>(a.gamma);
  const T* b = static_cast<const T*>(a.beta);
  const bool nt = a.rows * n * int64_t(sizeof(T)) >= kStreamBytes;
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = static_cast<const T*>(a.x) + r * n;
    // Ask for the next row now: the statistics and output passes run from L1 and would leave
    // the memory bus idle; short rows (768) otherwise lose a third of the bandwidth.
    if (r + 1 < r1)
      for (int64_t k = 0; k < n * int64_t(sizeof(T)); k += 64) __builtin_prefetch(reinterpret_cast<const char*>(x + n) + k);
    float mean, rstd;
    norm_stats(a, x, mean, rstd);
    if (a.mean) a.mean[r] = mean;
    if (a.rstd) a.rstd[r] = rstd;
    R m = V::set1(mean), s = V::set1(rstd);
    write_row(static_cast<T*>(a.y) + r * n, n, nt, [&](int64_t j, int w) SF_INLINE_LAMBDA {
      R v = V::mul(V::mul(V::sub(ld(x + j, w), m), s), ld(g + j, w));
      return b ? V::add(v, ld(b + j, w)) : v;
    });
  }
  if (nt) V::fence();
}

// dgacc/dbacc: this thread's f32 partial sums [cols] (dbacc null when not wanted).
template <class T>
static void norm_bwd_t(const NormArgs& a, int64_t r0, int64_t r1, float* dgacc, float* dbacc) {
  constexpr int W = V::W;
  const int64_t n = a.cols;
  const T* g = static_cast<const T*>(a.gamma);
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = static_cast<const T*>(a.x) + r * n;
    const T* dy = static_cast<const T*>(a.dy) + r * n;
    T* dx = static_cast<T*>(a.dx) + r * n;
    float mean, rstd;
    if (a.rstd && (a.rms || a.mean)) { mean = a.rms ? 0.0f : a.mean[r]; rstd = a.rstd[r]; }
    else norm_stats(a, x, mean, rstd);
    R m = V::set1(mean), s = V::set1(rstd);
    // pass 1: c1 = mean(dy*g), c2 = mean(dy*g*xhat); accumulate dgamma, dbeta
    R c1 = V::zero(), c2 = V::zero();
    int64_t j = 0;
    for (; j < n; j += W) {
      int t = n - j < W ? int(n - j) : W;
      R xv = t == W ? V::load(x + j) : V::load(x + j, t);
      R dv = t == W ? V::load(dy + j) : V::load(dy + j, t);
      R gv = t == W ? V::load(g + j) : V::load(g + j, t);
      R xh = V::mul(V::sub(xv, m), s);
      R dg = V::mul(dv, gv);
      if (t == W) {
        c1 = V::add(c1, dg);
        c2 = V::fma(dg, xh, c2);
        V::store(dgacc + j, V::fma(dv, xh, V::load(dgacc + j)));
        if (dbacc) V::store(dbacc + j, V::add(dv, V::load(dbacc + j)));
      } else {  // masked loads are zero beyond t, so dg and dv*xh are too
        c1 = V::add(c1, dg);
        c2 = V::fma(dg, xh, c2);
        V::store(dgacc + j, V::fma(dv, xh, V::load(dgacc + j, t)), t);
        if (dbacc) V::store(dbacc + j, V::add(dv, V::load(dbacc + j, t)), t);
      }
    }
    float inv_n = 1.0f / float(n);
    R k1 = V::set1(a.rms ? 0.0f : V::hsum(c1) * inv_n), k2 = V::set1(V::hsum(c2) * inv_n);
    // pass 2: dx = rstd * (dy*g - c1 - xhat*c2)
    for (j = 0; j < n; j += W) {
      int t = n - j < W ? int(n - j) : W;
      R xv = t == W ? V::load(x + j) : V::load(x + j, t);
      R dv = t == W ? V::load(dy + j) : V::load(dy + j, t);
      R gv = t == W ? V::load(g + j) : V::load(g + j, t);
      R xh = V::mul(V::sub(xv, m), s);
      R v = V::mul(s, V::sub(V::sub(V::mul(dv, gv), k1), V::mul(xh, k2)));
      if (t == W) V::store(dx + j, v); else V::store(dx + j, v, t);
    }
  }
}

void norm_fwd_rows(const NormArgs& a, int64_t r0, int64_t r1) {
  switch (a.dtype) {
    case DType::F32: return norm_fwd_t<float>(a, r0, r1);
    case DType::BF16: return norm_fwd_t<bf16_t>(a, r0, r1);
    case DType::F16: return norm_fwd_t<f16_t>(a, r0, r1);
    default: return;
  }
}

void norm_bwd_rows(const NormArgs& a, int64_t r0, int64_t r1, float* dgacc, float* dbacc) {
  switch (a.dtype) {
    case DType::F32: return norm_bwd_t<float>(a, r0, r1, dgacc, dbacc);
    case DType::BF16: return norm_bwd_t<bf16_t>(a, r0, r1, dgacc, dbacc);
    case DType::F16: return norm_bwd_t<f16_t>(a, r0, r1, dgacc, dbacc);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"
#include "cpu/reduce.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void norm_fwd_rows(const NormArgs&, int64_t, int64_t))
SF_ISA_DECLARE(void norm_bwd_rows(const NormArgs&, int64_t, int64_t, float*, float*))
}  // namespace cpu

void norm_fwd_cpu(const NormArgs& a) {
  auto fn = SF_PICK(norm_fwd_rows);
  parallel_for(a.rows, 2 * a.cols, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

void norm_bwd_cpu(const NormArgs& a) {
  auto fn = SF_PICK(norm_bwd_rows);
  const bool want_db = a.dbeta && !a.rms;
  cpu::PartialSums parts(a.cols, want_db ? 2 : 1);
  parallel_for(a.rows, 4 * a.cols, [&](int64_t r0, int64_t r1) {
    float* acc = parts.slot();
    fn(a, r0, r1, acc, want_db ? acc + parts.stride : nullptr);
  });
  if (a.dgamma) parts.reduce_to(a.dgamma, a.dtype, 0, a.accumulate);
  if (want_db) parts.reduce_to(a.dbeta, a.dtype, 1, a.accumulate);
}

}  // namespace seqfuse
#endif

// native/cpu/crossent.cc — cross-entropy (log-softmax + NLL, label smoothing, MiLe) forward and
// backward (ops/crossent.h).
// Shapes: logits, dlogits [rows, cols] row-major; targets, lse, losses, weights [rows].
// Forward, one row per step, rows split over threads; ignored rows are never read:
//   pass 1 reads the row from memory: max, min and Σx (label smoothing's mean, and a NaN flag);
//   pass 2 re-reads it from cache: s = Σ exp(x - max), lse = max + ln s; CE from max - x_y,
//     ln s and Σx in f64.
// MiLe's entropy rides on pass 2: H = Σ p (lse - x) = ln s - Σ e (x - max) / s with
// e = exp(x - max), one more FMA per element. That is exact only while no probability is below
// the 1e-8 clamp (min x - lse >= ln 1e-8); a row where some is (their terms become
// -1e-8 ln 1e-8, and which ones is known only once lse is) takes pass 3, again from cache:
// H = -Σ (x - lse < ln 1e-8 ? 1e-8 ln 1e-8 : exp(x - lse)(x - lse)).
// So every row is read from memory once; a row of up to a few hundred KiB (V = 32000 f32 is
// 125 KiB) is still in L2 for the re-reads. Per-row CE and w go to [rows] buffers, and the entry
// reduces them in row order in f64 (count, alpha, loss): the result does not depend on the
// thread count.
// Backward, one read and one write per row: dx = c exp(x - lse) - c eps / V with c = scale eff_t,
// and c (1 - eps) less at the target, patched in the vector that holds it, so every element is
// read before it is written and dlogits may be the logits.
// A row holding NaN or +Inf, or only -Inf, gives NaN lse, CE, w and gradient (PyTorch: NaN too).
// A -Inf logit among finite ones is a class of probability 0 (with label smoothing, CE = +Inf).
#include "cpu/simd.h"
#include "ops/crossent.h"

namespace seqfuse::cpu::SF_ISA_NS {

constexpr float kLnClamp = -18.420680743952367f;  // ln 1e-8: MiLe's probability clamp
constexpr float kClampTerm = 1e-8f * kLnClamp;   // q ln q at the clamp

// Lanes [0, w) true: the valid lanes of a row's tail vector.
SF_INLINE V::Mask lanes_below(int w) {
  alignas(64) static const float iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return V::lt(V::load(iota), V::set1(float(w)));
}

struct RowMax {
  float mx, lo, sx;  // max, min, sum
};

// Pass 1 (from memory).
template <class T>
static RowMax row_max(const T* x, int64_t n) {
  constexpr int W = V::W;
  const int64_t body = n - n % W;
  R m0 = V::set1(-INFINITY), m1 = m0, l0 = V::set1(INFINITY), l1 = l0, s0 = V::zero(), s1 = s0;
  int64_t j = 0;
  for (; j + 2 * W <= body; j += 2 * W) {
    R a = V::load(x + j), b = V::load(x + j + W);
    m0 = V::max(m0, a);
    m1 = V::max(m1, b);
    l0 = V::min(l0, a);
    l1 = V::min(l1, b);
    s0 = V::add(s0, a);
    s1 = V::add(s1, b);
  }
  if (j < body) {
    R a = V::load(x + j);
    m0 = V::max(m0, a);
    l0 = V::min(l0, a);
    s0 = V::add(s0, a);
  }
  RowMax r{V::hmax(V::max(m0, m1)), -V::hmax(V::neg(V::min(l0, l1))), V::hsum(V::add(s0, s1))};
  for (j = body; j < n; ++j) {
    const float v = to_f32(x[j]);
    r.mx = v > r.mx ? v : r.mx;
    r.lo = v < r.lo ? v : r.lo;
    r.sx += v;
  }
  return r;
}

// Pass 2 (from cache): s = Σ e and, with Ent, t = Σ e (x - mx), e = exp(x - mx). Flush: some
// x - mx may be below -86 (their e must be exactly 0). s does not depend on Ent.
template <bool Flush, bool Ent, class T>
static void row_exp(const T* x, int64_t n, float mx, float& s, float& t) {
  constexpr int W = V::W;
  const int64_t body = n - n % W;
  const R mv = V::set1(mx);
  R s0 = V::zero(), s1 = s0, t0 = s0, t1 = s0;
  int64_t j = 0;
  for (; j + 2 * W <= body; j += 2 * W) {
    R a0 = V::sub(V::load(x + j), mv), a1 = V::sub(V::load(x + j + W), mv);
    R e0 = vexp_nonpos<Flush>(a0), e1 = vexp_nonpos<Flush>(a1);
    s0 = V::add(s0, e0);
    s1 = V::add(s1, e1);
    if constexpr (Ent) {
      t0 = V::fma(e0, a0, t0);
      t1 = V::fma(e1, a1, t1);
    }
  }
  for (; j < n; j += W) {  // one full vector and/or the tail, lanes past n masked to 0
    const int w = n - j < W ? int(n - j) : W;
    R a = V::sub(ld(x + j, w), mv);
    R e = V::select0(lanes_below(w), vexp_nonpos<Flush>(a));
    s0 = V::add(s0, e);
    if constexpr (Ent) t0 = V::fma(e, a, t0);
  }
  s = V::hsum(V::add(s0, s1));
  t = Ent ? V::hsum(V::add(t0, t1)) : 0.0f;
}

// Pass 3 (from cache): the entropy with MiLe's clamp, -Σ q ln q, q = max(exp(x - lse), 1e-8).
template <class T>
static double row_entropy_clamped(const T* x, int64_t n, float lse) {
  constexpr int W = V::W;
  const R lv = V::set1(lse), cut = V::set1(kLnClamp), floor = V::set1(kClampTerm);
  auto term = [&](R v) SF_INLINE_LAMBDA {
    R a = V::sub(v, lv);  // ln p; where it is below the cut, exp's value is not used
    return V::select(V::lt(a, cut), floor, V::mul(vexp_nonpos<false>(a), a));
  };
  R h0 = V::zero(), h1 = h0;
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    h0 = V::add(h0, term(V::load(x + j)));
    h1 = V::add(h1, term(V::load(x + j + W)));
  }
  for (; j < n; j += W) {
    const int w = n - j < W ? int(n - j) : W;
    h0 = V::add(h0, V::select0(lanes_below(w), term(ld(x + j, w))));
  }
  return -double(V::hsum(V::add(h0, h1)));
}

// Rows [r0, r1): lse, CE into ce, and with MiLe the raw weight w_t = (sigma + H_t)^gamma into
// a.weights (the entry scales it by alpha).
template <class T>
static void fwd_rows(const CrossEntropyArgs& a, int64_t r0, int64_t r1, float* ce) {
  const int64_t n = a.cols;
  const double eps = a.smoothing;
  for (int64_t r = r0; r < r1; ++r) {
    const int32_t y = a.targets[r];
    float* w = a.mile ? a.weights + r : nullptr;
    if (y == a.ignore_index) {
      a.lse[r] = ce[r] = 0.0f;
      if (w) *w = 0.0f;
      continue;
    }
    const T* x = static_cast<const T*>(a.logits) + r * n;
    const RowMax m = row_max(x, n);
    if (m.sx != m.sx || !(std::fabs(m.mx) < INFINITY)) {
      a.lse[r] = ce[r] = NAN;
      if (w) *w = NAN;
      continue;
    }
    float s, t;
    const bool ent = a.mile && m.lo - m.mx >= kLnClamp;
    if (ent) row_exp<false, true>(x, n, m.mx, s, t);
    else if (m.lo - m.mx >= -86.0f) row_exp<false, false>(x, n, m.mx, s, t);
    else row_exp<true, false>(x, n, m.mx, s, t);
    const double ls = std::log(double(s));
    const float lse = float(m.mx + ls);
    a.lse[r] = lse;
    const double nll = (double(m.mx) - double(to_f32(x[y]))) + ls;
    // eps = 0 must not touch the smoothing term: it is +Inf when some logit is -Inf
    ce[r] = float(eps > 0 ? (1 - eps) * nll + eps * ((double(m.mx) - double(m.sx) / double(n)) + ls) : nll);
    if (w) {
      const double h = ent && m.lo - lse >= kLnClamp ? ls - double(t) / double(s) : row_entropy_clamped(x, n, lse);
      *w = float(std::pow(a.sigma + h, a.gamma));
    }
  }
}

// dlogits of rows [r0, r1); scale = dLoss (/ count for the mean).
template <class T>
static void bwd_rows(const CrossEntropyArgs& a, int64_t r0, int64_t r1, float scale, bool nt) {
  const int64_t n = a.cols;
  const float eps = a.smoothing;
  for (int64_t r = r0; r < r1; ++r) {
    T* dx = static_cast<T*>(a.dlogits) + r * n;
    const int64_t y = a.targets[r];
    if (y == a.ignore_index) {
      write_row(dx, n, nt, [](int64_t, int) SF_INLINE_LAMBDA { return V::zero(); });
      continue;
    }
    const T* x = static_cast<const T*>(a.logits) + r * n;
    const float lse = a.lse_in[r];
    const float c = lse == lse ? scale * (a.weights_in ? a.weights_in[r] : 1.0f) : NAN;
    const float hit = c * (1.0f - eps);
    const R lv = V::set1(lse), cv = V::set1(c), bv = V::set1(-c * eps / float(n));
    write_row(dx, n, nt, [&](int64_t k, int w) SF_INLINE_LAMBDA {
      R g = V::fma(vexp_nonpos(V::sub(ld(x + k, w), lv)), cv, bv);
      if (uint64_t(y - k) < uint64_t(w)) {  // the vector holding the target
        alignas(64) float b[V::W];
        V::store(b, g);
        b[y - k] -= hit;
        g = V::load(b);
      }
      return g;
    });
  }
  if (nt) V::fence();
}

void crossent_fwd_rows(const CrossEntropyArgs& a, int64_t r0, int64_t r1, float* ce) {
  switch (a.dtype) {
    case DType::F32: return fwd_rows<float>(a, r0, r1, ce);
    case DType::BF16: return fwd_rows<bf16_t>(a, r0, r1, ce);
    case DType::F16: return fwd_rows<f16_t>(a, r0, r1, ce);
    default: return;
  }
}

void crossent_bwd_rows(const CrossEntropyArgs& a, int64_t r0, int64_t r1, float scale, bool nt) {
  switch (a.dtype) {
    case DType::F32: return bwd_rows<float>(a, r0, r1, scale, nt);
    case DType::BF16: return bwd_rows<bf16_t>(a, r0, r1, scale, nt);
    case DType::F16: return bwd_rows<f16_t>(a, r0, r1, scale, nt);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void crossent_fwd_rows(const CrossEntropyArgs&, int64_t, int64_t, float*))
SF_ISA_DECLARE(void crossent_bwd_rows(const CrossEntropyArgs&, int64_t, int64_t, float, bool))
}  // namespace cpu

void crossent_fwd_cpu(const CrossEntropyArgs& a) {
  auto fn = SF_PICK(crossent_fwd_rows);
  std::vector<float> ce(size_t(a.rows));
  parallel_for(a.rows, 2 * a.cols + 1, [&](int64_t r0, int64_t r1) { fn(a, r0, r1, ce.data()); });
  // the batch-level part, in row order: alpha = count / Σ w, loss = Σ eff CE
  double wsum = 0;
  if (a.mile)
    for (int64_t r = 0; r < a.rows; ++r) wsum += a.weights[r];  // 0 at ignored rows
  const double count = double(a.count);
  const double alpha = a.mile && a.count > 0 ? count / wsum : 1.0;
  double loss = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    float eff = 1.0f;
    if (a.mile) eff = a.weights[r] = float(alpha * a.weights[r]);  // stays 0 at ignored rows
    const double l = double(eff) * double(ce[size_t(r)]);
    loss += l;
    if (a.losses) a.losses[r] = float(l);
  }
  a.stats[0] = a.reduction == Reduction::Sum ? loss : a.count > 0 ? loss / count : 0.0;
  a.stats[1] = count;
}

void crossent_bwd_cpu(const CrossEntropyArgs& a) {
  if (a.rows == 0 || a.cols == 0) return;
  auto fn = SF_PICK(crossent_bwd_rows);
  const double factor = a.reduction != Reduction::Mean ? 1.0 : a.count > 0 ? 1.0 / double(a.count) : 0.0;
  const float scale = float(a.dloss * factor);
  const bool nt = a.rows * a.cols * dtype_size(a.dtype) >= cpu::generic::kStreamBytes;
  parallel_for(a.rows, 2 * a.cols, [&](int64_t r0, int64_t r1) { fn(a, r0, r1, scale, nt); });
}

}  // namespace seqfuse
#endif

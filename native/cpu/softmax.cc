// native/cpu/softmax.cc — softmax over the last dim (additive mask, causal) forward and backward.
// Shapes: x, y, dy, dx [rows, cols] row-major (rows = the flattened leading dims a.lead);
// mask f32, broadcast to x through a.mask_stride / a.mask_col_stride (ops/softmax.h).
// Forward, one row per step, split over threads by rows:
//   pass 1 reads x for the max (and the min, which says whether exp must flush underflows);
//   pass 2 re-reads x from L1/L2 and writes exp(x - max) to a per-thread f32 scratch row
//     (cache-resident, reused for every row) while prefetching the next row, so that row's
//     memory latency hides behind this row's exp (vexp_nonpos: the exp is most of the work);
//   pass 3 scales the scratch into y.
// So x is read from memory once and y written once. Above kStreamBytes the f32 stores of y are
// non-temporal: no read-for-ownership of y, so the traffic is 2 * 4 * N bytes, like a memcpy.
// Backward: pass 1 reads dy and y for s = sum(dy * y), pass 2 re-reads them from cache for
// dx = y * (dy - s) and prefetches the next row.
// A row that sees no column (n = 0 by causality, or every visible x + mask = -Inf) gives zeros
// and, since y = 0 there, a zero gradient. A row with a NaN (or a +Inf, as x - max = NaN)
// gives NaN in every column, as PyTorch does.
#include "cpu/simd.h"
#include "ops/softmax.h"

namespace seqfuse::cpu::SF_ISA_NS {

// x_j + mask_j: M says whether the mask has a column dim (a mask that is constant over the
// row never reaches here: see softmax_fwd_t).
template <bool M, class T>
static R xm(const T* x, const float* m, int64_t j) {
  if constexpr (M) return V::add(V::load(x + j), V::load(m + j));
  return V::load(x + j);
}
template <bool M, class T>
static R xm(const T* x, const float* m, int64_t j, int n) {
  if constexpr (M) return V::add(V::load(x + j, n), V::load(m + j, n));
  return V::load(x + j, n);
}
template <bool M, class T>
static float xm1(const T* x, const float* m, int64_t j) {
  if constexpr (M) return to_f32(x[j]) + m[j];
  return to_f32(x[j]);
}

// Prefetches the bytes of p[j, j + n) into L1 (one hint per 64-byte line).
template <class T>
static void prefetch(const T* p, int64_t j, int n) {
  for (int k = 0; k < n * int(sizeof(T)); k += 64) __builtin_prefetch(reinterpret_cast<const char*>(p + j) + k);
}

// y[j0, j1) = f(j) where f(j) gives the W values at j, through write_row (simd.h): with
// `stream`, f32 rows are written entirely with non-temporal stores (16-bit rows store normally).
template <class T, class F>
static void store_span(T* y, int64_t j0, int64_t j1, bool stream, F f) {
  write_row(y + j0, j1 - j0, stream, [&](int64_t j, int) SF_INLINE_LAMBDA { return f(j0 + j); });
}

// Pass 2 over the body (a multiple of W columns): e = exp(x + mask - mx) into the scratch row;
// returns s = sum(e) and d = sum(x + mask - mx), which is NaN iff some x + mask - mx is (a NaN or
// +Inf in the row). Flush: some x + mask - mx may be below -86 (their e must be exactly 0);
// without it the cheaper exp applies. Prefetches the next row (xn, mn; nullable).
template <bool M, bool Flush, class T>
static void exp_pass(const T* x, const float* m, float* e, int64_t body, float mx, const T* xn, const float* mn, float& s,
                     float& d) {
  constexpr int W = V::W;
  const R mv = V::set1(mx);
  // two sums of pairwise adds: the ILP of four accumulators with fewer registers (AVX2 has 16,
  // and four exps in flight already need most of them)
  R s0 = V::zero(), s1 = s0, d0 = s0;
  int64_t j = 0;
  for (; j + 4 * W <= body; j += 4 * W) {
    if (xn) prefetch(xn, j, 4 * W);
    if (M && mn) prefetch(mn, j, 4 * W);
    R a0 = V::sub(xm<M>(x, m, j), mv), a1 = V::sub(xm<M>(x, m, j + W), mv);
    R a2 = V::sub(xm<M>(x, m, j + 2 * W), mv), a3 = V::sub(xm<M>(x, m, j + 3 * W), mv);
    d0 = V::add(d0, V::add(V::add(a0, a1), V::add(a2, a3)));
    R e0 = vexp_nonpos<Flush>(a0), e1 = vexp_nonpos<Flush>(a1);
    V::store(e + j, e0);
    V::store(e + j + W, e1);
    s0 = V::add(s0, V::add(e0, e1));
    R e2 = vexp_nonpos<Flush>(a2), e3 = vexp_nonpos<Flush>(a3);
    V::store(e + j + 2 * W, e2);
    V::store(e + j + 3 * W, e3);
    s1 = V::add(s1, V::add(e2, e3));
  }
  for (; j < body; j += W) {
    R a0 = V::sub(xm<M>(x, m, j), mv), e0 = vexp_nonpos<Flush>(a0);
    V::store(e + j, e0);
    s0 = V::add(s0, e0);
    d0 = V::add(d0, a0);
  }
  s = V::hsum(V::add(s0, s1));
  d = V::hsum(d0);
}

// One row: y[0, n) = softmax(x + mask) over the n visible columns, y[n, cols) = 0.
// e: f32 scratch [cols + W] (the padding lets a tail vector load past n). xn, mn: the next
// row's x and mask (nullable), prefetched during pass 2.
template <bool M, class T>
static void softmax_row(const T* x, const float* m, T* y, int64_t n, int64_t cols, float* e, bool stream, const T* xn,
                        const float* mn) {
  constexpr int W = V::W;
  const int64_t body = n - n % W;
  const float ninf = -INFINITY;
  // pass 1 (x from memory): the row max, and the min that says whether pass 2 must flush
  R m0 = V::set1(ninf), m1 = m0, m2 = m0, m3 = m0, l0 = V::set1(INFINITY), l1 = l0;
  int64_t j = 0;
  for (; j + 4 * W <= body; j += 4 * W) {
    R v0 = xm<M>(x, m, j), v1 = xm<M>(x, m, j + W), v2 = xm<M>(x, m, j + 2 * W), v3 = xm<M>(x, m, j + 3 * W);
    m0 = V::max(m0, v0);
    m1 = V::max(m1, v1);
    m2 = V::max(m2, v2);
    m3 = V::max(m3, v3);
    l0 = V::min(l0, V::min(v0, v1));
    l1 = V::min(l1, V::min(v2, v3));
  }
  for (; j < body; j += W) {
    R v0 = xm<M>(x, m, j);
    m0 = V::max(m0, v0);
    l0 = V::min(l0, v0);
  }
  float mx = V::hmax(V::max(V::max(m0, m1), V::max(m2, m3)));
  float lo = -V::hmax(V::neg(V::min(l0, l1)));
  for (j = body; j < n; ++j) {
    float v = xm1<M>(x, m, j);
    mx = v > mx ? v : mx;
  }
  if (n == 0 || mx == ninf) {
    // every visible x + mask is -Inf, or NaN: a NaN can drop out of the max (max(a, b) keeps b
    // when a is NaN), and such a row is NaN, not hidden
    bool nan = false;
    for (j = 0; j < n && !nan; ++j) nan = xm1<M>(x, m, j) != xm1<M>(x, m, j);
    store_span(y, 0, cols, stream, [nan](int64_t) { return V::set1(nan ? NAN : 0.0f); });
    return;
  }
  // pass 2 (x from cache), then the tail: one vector of n - body lanes, summed lane by lane
  float s, d;
  if (lo - mx >= -86.0f) exp_pass<M, false>(x, m, e, body, mx, xn, mn, s, d);
  else exp_pass<M, true>(x, m, e, body, mx, xn, mn, s, d);
  if (body < n) {
    const int t = int(n - body);
    V::store(e + body, vexp_nonpos(V::sub(xm<M>(x, m, body, t), V::set1(mx))), t);
    for (j = body; j < n; ++j) {
      s += e[j];
      d += xm1<M>(x, m, j) - mx;
    }
  }
  if (d != d) {
    store_span(y, 0, cols, stream, [](int64_t) { return V::set1(NAN); });
    return;
  }
  // pass 3 (scratch from cache): y = e / s, then the causally hidden columns are zero
  const R inv = V::set1(1.0f / s);
  store_span(y, 0, n, stream, [e, inv](int64_t k) { return V::mul(V::load(e + k), inv); });
  store_span(y, n, cols, stream, [](int64_t) { return V::zero(); });
}

// Offset of row r's mask row: r split into the leading indices, times the mask's strides.
static int64_t mask_offset(const SoftmaxArgs& a, int64_t r) {
  int64_t off = 0;
  for (int d = a.nlead - 1; d >= 0; --d) {
    off += (r % a.lead[d]) * a.mask_stride[d];
    r /= a.lead[d];
  }
  return off;
}

// A mask with no column dim adds one constant c to the row: softmax(x + c) = softmax(x) for a
// finite c, so it is applied as "no mask" (more accurate than adding c), c = -Inf hides the
// row, and c = +Inf or NaN makes it NaN (x + c - max(x + c) = NaN).
template <class T>
static void softmax_fwd_t(const SoftmaxArgs& a, int64_t r0, int64_t r1, float* e, bool stream) {
  const int64_t cols = a.cols;
  const bool row_mask = a.mask && a.mask_col_stride != 0;
  const int64_t sq = a.causal ? a.lead[a.nlead - 1] : 0;
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = static_cast<const T*>(a.x) + r * cols;
    T* y = static_cast<T*>(a.y) + r * cols;
    const T* xn = r + 1 < r1 ? x + cols : nullptr;
    int64_t n = cols;
    if (a.causal) {  // query i sees keys j <= i + cols - sq
      int64_t vis = r % sq + cols - sq + 1;
      n = vis < 0 ? 0 : vis > cols ? cols : vis;
    }
    const float* m = a.mask ? a.mask + mask_offset(a, r) : nullptr;
    bool nan_row = false;
    if (m && !row_mask) {
      if (*m == -INFINITY) n = 0;
      else nan_row = !(*m < INFINITY);  // +Inf or NaN
    }
    if (nan_row) store_span(y, 0, cols, stream, [](int64_t) { return V::set1(NAN); });
    else if (row_mask) softmax_row<true>(x, m, y, n, cols, e, stream, xn, xn ? a.mask + mask_offset(a, r + 1) : nullptr);
    else softmax_row<false>(x, nullptr, y, n, cols, e, stream, xn, nullptr);
  }
  if (stream) V::fence();
}

// dx = y * (dy - sum(dy * y)) per row.
template <class T>
static void softmax_bwd_t(const SoftmaxArgs& a, int64_t r0, int64_t r1, bool stream) {
  constexpr int W = V::W;
  const int64_t n = a.cols, body = n - n % W;
  for (int64_t r = r0; r < r1; ++r) {
    const T* y = static_cast<const T*>(a.y) + r * n;
    const T* dy = static_cast<const T*>(a.dy) + r * n;
    T* dx = static_cast<T*>(a.dx) + r * n;
    // pass 1 (dy, y from memory): s = sum(dy * y); masked tail loads are zero past n
    R s0 = V::zero(), s1 = s0, s2 = s0, s3 = s0;
    int64_t j = 0;
    for (; j + 4 * W <= body; j += 4 * W) {
      s0 = V::fma(V::load(dy + j), V::load(y + j), s0);
      s1 = V::fma(V::load(dy + j + W), V::load(y + j + W), s1);
      s2 = V::fma(V::load(dy + j + 2 * W), V::load(y + j + 2 * W), s2);
      s3 = V::fma(V::load(dy + j + 3 * W), V::load(y + j + 3 * W), s3);
    }
    for (; j < body; j += W) s0 = V::fma(V::load(dy + j), V::load(y + j), s0);
    if (body < n) s1 = V::fma(V::load(dy + body, int(n - body)), V::load(y + body, int(n - body)), s1);
    const R s = V::set1(V::hsum(V::add(V::add(s0, s1), V::add(s2, s3))));
    // pass 2 (from cache)
    const bool next = r + 1 < r1;
    store_span(dx, 0, n, stream, [y, dy, n, s, next](int64_t k) {
      if (next) {
        prefetch(y + n, k, W);
        prefetch(dy + n, k, W);
      }
      if (k + W <= n) return V::mul(V::load(y + k), V::sub(V::load(dy + k), s));
      int t = int(n - k);
      return V::mul(V::load(y + k, t), V::sub(V::load(dy + k, t), s));
    });
  }
  if (stream) V::fence();
}

void softmax_fwd_rows(const SoftmaxArgs& a, int64_t r0, int64_t r1, float* e, bool stream) {
  switch (a.dtype) {
    case DType::F32: return softmax_fwd_t<float>(a, r0, r1, e, stream);
    case DType::BF16: return softmax_fwd_t<bf16_t>(a, r0, r1, e, stream);
    case DType::F16: return softmax_fwd_t<f16_t>(a, r0, r1, e, stream);
    default: return;
  }
}

void softmax_bwd_rows(const SoftmaxArgs& a, int64_t r0, int64_t r1, bool stream) {
  switch (a.dtype) {
    case DType::F32: return softmax_bwd_t<float>(a, r0, r1, stream);
    case DType::BF16: return softmax_bwd_t<bf16_t>(a, r0, r1, stream);
    case DType::F16: return softmax_bwd_t<f16_t>(a, r0, r1, stream);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <omp.h>
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void softmax_fwd_rows(const SoftmaxArgs&, int64_t, int64_t, float*, bool))
SF_ISA_DECLARE(void softmax_bwd_rows(const SoftmaxArgs&, int64_t, int64_t, bool))
}  // namespace cpu

void softmax_fwd_cpu(const SoftmaxArgs& a) {
  if (a.rows == 0 || a.cols == 0) return;
  auto fn = SF_PICK(softmax_fwd_rows);
  const bool stream = a.rows * a.cols * dtype_size(a.dtype) >= cpu::generic::kStreamBytes;
  const size_t stride = size_t(a.cols) + 64;  // scratch row + tail room, per thread
  std::vector<float> scratch(stride * size_t(get_num_threads()));
  parallel_for(a.rows, 3 * a.cols, [&](int64_t r0, int64_t r1) {
    fn(a, r0, r1, scratch.data() + stride * size_t(omp_get_thread_num()), stream);
  });
}

void softmax_bwd_cpu(const SoftmaxArgs& a) {
  if (a.rows == 0 || a.cols == 0) return;
  auto fn = SF_PICK(softmax_bwd_rows);
  const bool stream = a.rows * a.cols * dtype_size(a.dtype) >= cpu::generic::kStreamBytes;
  parallel_for(a.rows, 3 * a.cols, [&](int64_t r0, int64_t r1) { fn(a, r0, r1, stream); });
}

}  // namespace seqfuse
#endif

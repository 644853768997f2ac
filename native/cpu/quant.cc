// native/cpu/quant.cc — int8 quantize / dequantize / fake-quant and the PACT backward
// (ops/quant.h).
// Shapes: x, y, dy, dx [outer, C, inner] row-major; clip, dclip [C] f32.
// Work is cut into units that do not depend on the thread count: unit u covers channel
// c = u / blocks and kQuantBlock consecutive elements of that channel (in (outer, inner) order),
// so one unit walks runs of at most `inner` contiguous elements at one scale. The backward writes
// one f64 partial of dclip per unit and the entry adds a channel's partials in unit order: dclip
// is the same bits for any thread count. Each element is read once and written once. The runs
// are as long as `inner`: per tensor and per channel of a [out, in] weight (axis 0) they are long
// vectors; along the last axis (inner = 1) a unit steps through its channel one element at a time
// with stride C, correct but scalar-speed.
//
// Rounding: r = x * inv with inv = f32(127 / clipMax), clamped to [-127, 127], then rounded half
// away from zero: n = round_to_even(r), and where |r - n| = 0.5 (r - n is exact), n = r + sign(r)/2
// (also exact). Grid points x = f32(k * s), s = f32(clipMax / 127), |k| <= 127, land within
// ~4 * 127 ulp of k, so they round back to k and fake-quant returns x itself.
#include "ops/quant.h"
#include "cpu/quant_grid.h"

namespace seqfuse::cpu {
// Elements of one channel per unit: large enough to amortize a unit, small enough to spread a
// per-tensor quantization over the threads.
static constexpr int64_t kQuantBlock = 16384;

static int64_t quant_blocks(const QuantArgs& a) { return (a.outer * a.inner + kQuantBlock - 1) / kQuantBlock; }

static float quant_clip(const QuantArgs& a, int64_t c) { return a.clip ? a.clip[c] : a.clip_value; }

// Calls run(offset, len, c) for the contiguous runs of unit u, in element order.
template <class Run>
static void quant_walk(const QuantArgs& a, int64_t blocks, int64_t u, Run run) {
  const int64_t c = u / blocks, m1e = (u % blocks + 1) * kQuantBlock, total = a.outer * a.inner;
  const int64_t m1 = m1e < total ? m1e : total;
  for (int64_t m = (u % blocks) * kQuantBlock; m < m1;) {
    const int64_t o = m / a.inner, i = m % a.inner;
    const int64_t len = m1 - m < a.inner - i ? m1 - m : a.inner - i;
    run((o * a.channels + c) * a.inner + i, len, c);
    m += len;
  }
}
}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

// y = f(x, inv, s) elementwise, with inv = 127 / clipMax and s = clipMax / 127 of the element's channel.
template <class Tx, class Ty, class F>
static void map_units(const QuantArgs& a, int64_t u0, int64_t u1, F f) {
  const int64_t blocks = quant_blocks(a);
  const Tx* x = static_cast<const Tx*>(a.x);
  Ty* y = static_cast<Ty*>(a.y);
  for (int64_t u = u0; u < u1; ++u)
    quant_walk(a, blocks, u, [&](int64_t off, int64_t len, int64_t c) {
      const float clip = quant_clip(a, c);
      const R inv = V::set1(127.0f / clip), s = V::set1(clip / 127.0f);
      const Tx* xo = x + off;
      write_row(y + off, len, false, [&](int64_t k, int w) SF_INLINE_LAMBDA { return f(ld(xo + k, w), inv, s); });
    });
}

// dx = dy where |x| < clip, else 0; part[u] = sum of dy over x >= clip minus over x <= -clip.
template <class T>
static void fake_quant_bwd_units(const QuantArgs& a, int64_t u0, int64_t u1, double* part) {
  const int64_t blocks = quant_blocks(a);
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  for (int64_t u = u0; u < u1; ++u) {
    R acc = V::zero();
    quant_walk(a, blocks, u, [&](int64_t off, int64_t len, int64_t c) {
      const R clip = V::set1(quant_clip(a, c));
      const T* xo = x + off;
      const T* go = dy + off;
      write_row(dx + off, len, false, [&](int64_t k, int w) SF_INLINE_LAMBDA {
        R v = ld(xo + k, w), g = ld(go + k, w);
        acc = V::add(acc, V::sub(V::select0(V::ge(v, clip), g), V::select0(V::ge(V::neg(v), clip), g)));
        return V::select0(V::lt(V::abs(v), clip), g);
      });
    });
    part[u] = double(V::hsum(acc));
  }
}

// part[u] = max |x| over unit u, NaN ignored (abs(NaN) as max's first operand loses, in every pass).
template <class T>
static void absmax_units(const QuantArgs& a, int64_t u0, int64_t u1, float* part) {
  const int64_t blocks = quant_blocks(a);
  const T* x = static_cast<const T*>(a.x);
  for (int64_t u = u0; u < u1; ++u) {
    R m = V::zero();
    quant_walk(a, blocks, u, [&](int64_t off, int64_t len, int64_t) {
      const T* xo = x + off;
      int64_t j = 0;
      for (; j + V::W <= len; j += V::W) m = V::max(V::abs(V::load(xo + j)), m);
      if (j < len) m = V::max(V::abs(V::load(xo + j, int(len - j))), m);
    });
    part[u] = V::hmax(m);
  }
}

// counts[b] += elements of unit u with |x| in bin b (scalar: a histogram scatters)
template <class T>
static void histogram_units(const QuantArgs& a, int64_t u0, int64_t u1, int64_t* counts) {
  const int64_t blocks = quant_blocks(a);
  const T* x = static_cast<const T*>(a.x);
  const float scale = float(a.bins) / a.clip_value;
  const int64_t last = a.bins - 1;
  for (int64_t u = u0; u < u1; ++u)
    quant_walk(a, blocks, u, [&](int64_t off, int64_t len, int64_t) {
      for (int64_t j = 0; j < len; ++j) {
        const float v = std::fabs(to_f32(x[off + j])) * scale;
        if (!(v == v)) continue;
        const int64_t b = v < float(last) ? int64_t(v) : last;
        ++counts[b];
      }
    });
}

template <class T>
static void fwd_units(const QuantArgs& a, int64_t u0, int64_t u1) {
  switch (a.mode) {
    case QuantMode::Quantize:  // x: T -> q: int8
      return map_units<T, int8_t>(a, u0, u1, [](R v, R inv, R) SF_INLINE_LAMBDA { return quant_grid(v, inv); });
    case QuantMode::Dequantize:  // q: int8 -> y: T
      return map_units<int8_t, T>(a, u0, u1, [](R q, R, R s) SF_INLINE_LAMBDA { return V::mul(q, s); });
    case QuantMode::FakeQuant:  // NaN passes through, so non-finite checks downstream still see it
      return map_units<T, T>(a, u0, u1, [](R v, R inv, R s) SF_INLINE_LAMBDA {
        return V::select(V::ge(v, v), V::mul(quant_grid(v, inv), s), v);
      });
    case QuantMode::MaxClip:  // reductions: their own units (quant_absmax_units, quant_histogram_units)
    case QuantMode::Histogram:
      return;
  }
}

// f(T()) with T the storage type of the float dtype t (other dtypes: nothing).
template <class F>
SF_INLINE void with_float(DType t, F f) {
  switch (t) {
    case DType::F32: return f(float());
    case DType::BF16: return f(bf16_t());
    case DType::F16: return f(f16_t());
    default: return;
  }
}

void quant_fwd_units(const QuantArgs& a, int64_t u0, int64_t u1) {
  with_float(a.dtype, [&](auto t) { fwd_units<decltype(t)>(a, u0, u1); });
}

void quant_absmax_units(const QuantArgs& a, int64_t u0, int64_t u1, float* part) {
  with_float(a.dtype, [&](auto t) { absmax_units<decltype(t)>(a, u0, u1, part); });
}

void quant_histogram_units(const QuantArgs& a, int64_t u0, int64_t u1, int64_t* counts) {
  with_float(a.dtype, [&](auto t) { histogram_units<decltype(t)>(a, u0, u1, counts); });
}

void quant_bwd_units(const QuantArgs& a, int64_t u0, int64_t u1, double* part) {
  with_float(a.dtype, [&](auto t) { fake_quant_bwd_units<decltype(t)>(a, u0, u1, part); });
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void quant_fwd_units(const QuantArgs&, int64_t, int64_t))
SF_ISA_DECLARE(void quant_bwd_units(const QuantArgs&, int64_t, int64_t, double*))
SF_ISA_DECLARE(void quant_absmax_units(const QuantArgs&, int64_t, int64_t, float*))
SF_ISA_DECLARE(void quant_histogram_units(const QuantArgs&, int64_t, int64_t, int64_t*))

// hist[b] += the count of bin b, from one count array per thread (integers: any order is exact).
static void quant_histogram(const QuantArgs& a) {
  if (!(a.clip_value > 0.0f && a.clip_value <= 3.4028234663852886e38f))
    fail(ErrorCode::Arg, "calibrate: expected a histogram range finite and > 0 but received ", a.clip_value);
  auto fn = SF_PICK(quant_histogram_units);
  const int64_t blocks = quant_blocks(a);
  const int threads = get_num_threads();
  std::vector<int64_t> counts(size_t(threads * a.bins), 0);
  parallel_for(blocks, kQuantBlock, [&](int64_t u0, int64_t u1) {
    fn(a, u0, u1, counts.data() + size_t(omp_get_thread_num()) * size_t(a.bins));
  });
  for (int t = 0; t < threads; ++t)
    for (int64_t b = 0; b < a.bins; ++b) a.hist[b] += double(counts[size_t(t * a.bins + b)]);
}

// y[c] = max(max |x| of channel c, FLT_MIN) * clip_scale, from per-unit partial maxima.
static void quant_max_clip(const QuantArgs& a) {
  auto fn = SF_PICK(quant_absmax_units);
  const int64_t blocks = quant_blocks(a);
  std::vector<float> part(size_t(a.channels * blocks));
  parallel_for(a.channels * blocks, kQuantBlock, [&](int64_t u0, int64_t u1) { fn(a, u0, u1, part.data()); });
  float* y = static_cast<float*>(a.y);
  for (int64_t c = 0; c < a.channels; ++c) {
    float m = 1.17549435e-38f;  // FLT_MIN: an all-zero channel still gets a valid clip
    for (int64_t b = 0; b < blocks; ++b) m = part[size_t(c * blocks + b)] > m ? part[size_t(c * blocks + b)] : m;
    m *= a.clip_scale;
    y[c] = a.accumulate && y[c] > m ? y[c] : m;
  }
}

// ERR_ARG unless every clipMax is finite and > 0 (a tensor's values are only known here).
static void quant_check_clip(const QuantArgs& a, const char* op) {
  for (int64_t c = 0; c < a.channels; ++c) {
    const float v = quant_clip(a, c);
    if (!(v > 0.0f && v <= 3.4028234663852886e38f)) {
      if (a.clip) fail(ErrorCode::Arg, op, ": expected clipMax[", c, "] to be finite and > 0 but received ", v);
      fail(ErrorCode::Arg, op, ": expected clipMax to be finite and > 0 but received ", v);
    }
  }
}
}  // namespace cpu

void quant_fwd_cpu(const QuantArgs& a) {
  if (a.mode == QuantMode::MaxClip) return cpu::quant_max_clip(a);
  if (a.mode == QuantMode::Histogram) return cpu::quant_histogram(a);
  static const char* const names[] = {"quantize", "dequantize", "fakeQuant"};
  cpu::quant_check_clip(a, names[int(a.mode)]);
  auto fn = SF_PICK(quant_fwd_units);
  parallel_for(a.channels * cpu::quant_blocks(a), 2 * cpu::kQuantBlock, [&](int64_t u0, int64_t u1) { fn(a, u0, u1); });
}

void quant_bwd_cpu(const QuantArgs& a) {
  cpu::quant_check_clip(a, "fakeQuantBackward");
  auto fn = SF_PICK(quant_bwd_units);
  const int64_t blocks = cpu::quant_blocks(a);
  std::vector<double> part(size_t(a.channels * blocks));
  parallel_for(a.channels * blocks, 3 * cpu::kQuantBlock, [&](int64_t u0, int64_t u1) { fn(a, u0, u1, part.data()); });
  for (int64_t c = 0; c < a.channels; ++c) {
    double s = 0.0;
    for (int64_t b = 0; b < blocks; ++b) s += part[size_t(c * blocks + b)];
    a.dclip[c] = a.accumulate ? a.dclip[c] + float(s) : float(s);
  }
}

}  // namespace seqfuse
#endif

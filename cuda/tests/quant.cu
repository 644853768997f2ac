// cuda/quant.cu against the CPU backend (native/cpu/quant.cc, its portable pass, linked in).
// Bit for bit: quantize, dequantize, fake-quant, the backward's dx, max clip (a max is exact in
// any order) and the histogram (integer counts). dclip (a sum whose order differs: the CPU adds
// f32 runs of 16384 elements, the kernels f32 blocks of 4096 in a tree, then f64): within
// 1e-5 * (sum of |terms| + |initial dclip|) of the CPU and of a float64 reference.
// Quantize is also checked against an independent rounding (std::round: half away from zero).
// Inputs: random values around the clip plus grid points k * s, half-way points (k + 1/2) * s,
// +-clip, +-0, +-Inf and NaN; per tensor (clip as a number and as a tensor) and per channel
// (axis 0, a middle axis, the last axis); shapes with 1, 3, 17, 33, 130 and sizes past one
// reduction unit (4096 elements) and one grid; f32, f16, bf16.
// emu-link: native/cpu/quant.cc native/core/threads.cc
#include "../quant.cu"
#include "compare.h"
#include "core/threads.h"

namespace {

using namespace cmp;
using seqfuse::QuantArgs;
using seqfuse::QuantMode;

// x [outer, C, inner] around channel clips `clip`: random in +-1.5 clip, and 1 in 8 a special value.
void* make_x(DType t, const QuantArgs& a, const std::vector<float>& clip, std::mt19937& g) {
  const int64_t n = a.outer * a.channels * a.inner;
  void* p = poisoned_buf(t, n);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  std::uniform_int_distribution<int> k(-130, 130), pick(0, 15);
  for (int64_t i = 0; i < n; ++i) {
    const float cl = clip[size_t((i / a.inner) % a.channels)], s = cl / 127.0f;
    float v = u(g) * cl;
    switch (pick(g)) {
      case 0: v = float(k(g)) * s; break;           // a grid point
      case 1: v = (float(k(g)) + 0.5f) * s; break;  // a half-way point
      case 2: v = (pick(g) & 1) ? cl : -cl; break;
      case 3: v = (pick(g) & 1) ? 0.0f : -0.0f; break;
      case 4: v = (pick(g) & 1) ? INFINITY : -INFINITY; break;
      case 5: v = (pick(g) & 1) ? NAN : -NAN; break;
      default: break;
    }
    put(p, t, i, v);
  }
  return p;
}

// C-style rounding reference of quantize: round(clamp(f32(x * inv))) half away from zero, NaN -> 0.
int8_t quantize_ref(float x, float clip) {
  const float inv = 127.0f / clip;
  float r = x * inv;
  if (r != r) return 0;
  r = r < -127.0f ? -127.0f : r > 127.0f ? 127.0f : r;
  return int8_t(std::round(r));
}

double max_dclip_err = 0.0;

// A forward on the CPU into out_cpu and on CUDA into out_gpu, each poisoned (differently) first.
void fwd_both(QuantArgs& a, void* out_cpu, void* out_gpu, size_t bytes, const char* what) {
  std::memset(out_cpu, 0x7f, bytes);
  std::memset(out_gpu, 0x7e, bytes);
  a.device = seqfuse::Device::CPU; a.y = out_cpu;
  seqfuse::quant_fwd_cpu(a);
  a.device = seqfuse::Device::CUDA; a.y = out_gpu;
  seqfuse::quant_fwd_cuda(a, seqfuse::Stream{});
  device_sync(what);
}

void run_case(DType t, int64_t outer, int64_t C, int64_t inner, bool clip_tensor, std::mt19937& g, int& cases) {
  const int64_t n = outer * C * inner;
  const char* tn = seqfuse::dtype_name(t);
  QuantArgs a;
  a.dtype = t; a.outer = outer; a.channels = C; a.inner = inner;
  std::uniform_real_distribution<float> uc(0.5f, 2.0f);
  std::vector<float> clipv(static_cast<size_t>(C));
  for (auto& c : clipv) c = uc(g);
  float* clip = managed<float>(size_t(C));
  for (int64_t c = 0; c < C; ++c) clip[c] = clipv[size_t(c)];
  if (clip_tensor) a.clip = clip;
  else a.clip_value = clipv[0];
  void* x = make_x(t, a, clipv, g);
  const size_t fb = size_t(n) * esize(t);

  // quantize
  {
    int8_t* q_cpu = static_cast<int8_t*>(poisoned_buf(DType::I8, n));
    int8_t* q_gpu = static_cast<int8_t*>(poisoned_buf(DType::I8, n));
    a.mode = QuantMode::Quantize; a.x = x;
    fwd_both(a, q_cpu, q_gpu, size_t(n), "quantize");
    const int64_t d = first_diff(q_cpu, q_gpu, n, DType::I8);
    CHECK(d < 0, "quantize %s [%ld, %ld, %ld] clip tensor %d: element %ld cpu %d gpu %d (x %g)", tn, long(outer), long(C),
          long(inner), int(clip_tensor), long(d), d < 0 ? 0 : q_cpu[d], d < 0 ? 0 : q_gpu[d], d < 0 ? 0.0 : get(x, t, d));
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += q_gpu[i] != quantize_ref(float(get(x, t, i)), clipv[size_t((i / inner) % C)]);
    CHECK(bad == 0, "quantize %s [%ld, %ld, %ld]: %d elements differ from round-half-away", tn, long(outer), long(C), long(inner), bad);

    // dequantize of the codes (and of -128, which quantize never makes)
    for (int64_t i = 0; i < n; i += 7) q_cpu[i] = -128;
    void* y_cpu = poisoned_buf(t, n);
    void* y_gpu = poisoned_buf(t, n);
    a.mode = QuantMode::Dequantize; a.x = q_cpu;
    fwd_both(a, y_cpu, y_gpu, fb, "dequantize");
    CHECK(same_bits(y_cpu, y_gpu, n, t), "dequantize %s [%ld, %ld, %ld] clip tensor %d", tn, long(outer), long(C), long(inner), int(clip_tensor));
    for (void* p : {static_cast<void*>(q_cpu), static_cast<void*>(q_gpu), y_cpu, y_gpu}) cudaFree(p);
  }
  // fake-quant, out of place and in place
  {
    void* y_cpu = poisoned_buf(t, n);
    void* y_gpu = poisoned_buf(t, n);
    a.mode = QuantMode::FakeQuant; a.x = x;
    fwd_both(a, y_cpu, y_gpu, fb, "fakeQuant");
    const int64_t d = first_diff(y_cpu, y_gpu, n, t);
    CHECK(d < 0, "fakeQuant %s [%ld, %ld, %ld] clip tensor %d: element %ld cpu %g gpu %g", tn, long(outer), long(C), long(inner),
          int(clip_tensor), long(d), d < 0 ? 0.0 : get(y_cpu, t, d), d < 0 ? 0.0 : get(y_gpu, t, d));
    std::memcpy(y_gpu, x, fb);
    a.x = y_gpu;
    seqfuse::quant_fwd_cuda(a, seqfuse::Stream{});
    device_sync("fakeQuant in place");
    CHECK(same_bits(y_cpu, y_gpu, n, t), "fakeQuant in place %s [%ld, %ld, %ld]", tn, long(outer), long(C), long(inner));
    a.x = x;
    cudaFree(y_cpu);
    cudaFree(y_gpu);
  }
  // PACT backward: dx bits; dclip written and accumulated, out of place and in place (dx = dy)
  for (int acc = 0; acc < 2; ++acc) {
    void* dy = poisoned_buf(t, n);
    std::uniform_real_distribution<float> ug(-1.0f, 1.0f);
    for (int64_t i = 0; i < n; ++i) {  // a NaN gradient where it passes to dx (saturated, it would make dclip NaN)
      const float v = float(get(x, t, i));
      put(dy, t, i, i % 13 == 5 && std::fabs(v) < clipv[size_t((i / inner) % C)] ? NAN : ug(g));
    }
    void* dx_cpu = poisoned_buf(t, n);
    void* dx_gpu = poisoned_buf(t, n, 0x7e);
    float* dc_cpu = managed<float>(size_t(C));
    float* dc_gpu = managed<float>(size_t(C));
    std::vector<float> dc0(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) dc0[size_t(c)] = acc ? ug(g) : 0.0f, dc_cpu[c] = acc ? dc0[size_t(c)] : -7.0f, dc_gpu[c] = acc ? dc0[size_t(c)] : 9.0f;
    a.mode = QuantMode::FakeQuant; a.x = x; a.dy = dy; a.accumulate = acc;
    a.device = seqfuse::Device::CPU; a.dx = dx_cpu; a.dclip = dc_cpu;
    seqfuse::quant_bwd_cpu(a);
    a.device = seqfuse::Device::CUDA; a.dx = dx_gpu; a.dclip = dc_gpu;
    seqfuse::quant_bwd_cuda(a, seqfuse::Stream{});
    device_sync("fakeQuantBackward");
    CHECK(same_bits(dx_cpu, dx_gpu, n, t), "backward dx %s [%ld, %ld, %ld] clip tensor %d", tn, long(outer), long(C), long(inner), int(clip_tensor));
    // float64 reference of dclip, and the scale of its rounding error (sum of |terms|)
    std::vector<double> ref(static_cast<size_t>(C)), mag(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) ref[size_t(c)] = dc0[size_t(c)], mag[size_t(c)] = std::fabs(dc0[size_t(c)]);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = (i / inner) % C;
      const double v = get(x, t, i), gv = get(dy, t, i), cl = clipv[size_t(c)];
      if (v >= cl) ref[size_t(c)] += gv, mag[size_t(c)] += std::fabs(gv);
      else if (-v >= cl) ref[size_t(c)] -= gv, mag[size_t(c)] += std::fabs(gv);
    }
    for (int64_t c = 0; c < C; ++c) {
      const double tol = 1e-5 * mag[size_t(c)] + 1e-30;
      const double e_cpu = std::fabs(double(dc_gpu[c]) - double(dc_cpu[c])), e_ref = std::fabs(double(dc_gpu[c]) - ref[size_t(c)]);
      if (mag[size_t(c)] > 0) max_dclip_err = std::fmax(max_dclip_err, std::fmax(e_cpu, e_ref) / mag[size_t(c)]);
      CHECK(e_cpu <= tol && e_ref <= tol && dc_gpu[c] == dc_gpu[c], "dclip %s [%ld, %ld, %ld] accumulate %d channel %ld: gpu %.9g cpu %.9g f64 %.9g",
            tn, long(outer), long(C), long(inner), acc, long(c), double(dc_gpu[c]), double(dc_cpu[c]), ref[size_t(c)]);
    }
    // run again in place (dx = dy): the same dx bits, and dclip the same bits as the first run
    std::vector<float> dc_first(dc_gpu, dc_gpu + C);
    for (int64_t c = 0; c < C; ++c) dc_gpu[c] = acc ? dc0[size_t(c)] : 9.0f;
    std::memcpy(dx_gpu, dy, fb);
    a.dy = dx_gpu;
    seqfuse::quant_bwd_cuda(a, seqfuse::Stream{});
    device_sync("fakeQuantBackward in place");
    CHECK(same_bits(dx_cpu, dx_gpu, n, t), "backward in place dx %s [%ld, %ld, %ld]", tn, long(outer), long(C), long(inner));
    CHECK(same_bits(dc_first.data(), dc_gpu, C, DType::F32), "backward dclip run to run %s [%ld, %ld, %ld]", tn, long(outer), long(C), long(inner));
    a.accumulate = false;
    for (void* p : {dy, dx_cpu, dx_gpu, static_cast<void*>(dc_cpu), static_cast<void*>(dc_gpu)}) cudaFree(p);
  }
  // max clip: written, and a running max over a y that is sometimes larger, smaller or NaN
  for (int acc = 0; acc < 2; ++acc) {
    float* y_cpu = managed<float>(size_t(C));
    float* y_gpu = managed<float>(size_t(C));
    std::uniform_real_distribution<float> uy(0.0f, 3.0f);
    for (int64_t c = 0; c < C; ++c) y_cpu[c] = c % 5 == 3 ? NAN : uy(g), y_gpu[c] = acc ? y_cpu[c] : -5.0f;
    if (!acc) for (int64_t c = 0; c < C; ++c) y_cpu[c] = 5.0f;
    a.mode = QuantMode::MaxClip; a.x = x; a.accumulate = acc; a.clip_scale = acc ? 127.0f / 63.0f : 1.0f;
    a.device = seqfuse::Device::CPU; a.y = y_cpu;
    seqfuse::quant_fwd_cpu(a);
    a.device = seqfuse::Device::CUDA; a.y = y_gpu;
    seqfuse::quant_fwd_cuda(a, seqfuse::Stream{});
    device_sync("maxClip");
    CHECK(same_bits(y_cpu, y_gpu, C, DType::F32), "maxClip %s [%ld, %ld, %ld] accumulate %d: channel 0 cpu %g gpu %g", tn, long(outer),
          long(C), long(inner), acc, double(y_cpu[0]), double(y_gpu[0]));
    a.accumulate = false; a.clip_scale = 1.0f;
    cudaFree(y_cpu);
    cudaFree(y_gpu);
  }
  // histogram (per tensor, as the contract: the CPU walks channel 0 only when C > 1): shared-memory
  // bins and, for small tensors, the global-atomics path past 12288 bins
  for (int64_t bins : {int64_t(1), int64_t(7), int64_t(100), int64_t(13000)}) {
    if (C > 1 || (bins == 13000 && n > 5000)) continue;
    double* h_cpu = managed<double>(size_t(bins));
    double* h_gpu = managed<double>(size_t(bins));
    for (int64_t b = 0; b < bins; ++b) h_cpu[b] = h_gpu[b] = double(b % 3);
    QuantArgs h = a;
    h.mode = QuantMode::Histogram; h.clip = nullptr; h.clip_value = clipv[0]; h.bins = bins; h.x = x;
    h.device = seqfuse::Device::CPU; h.hist = h_cpu;
    seqfuse::quant_fwd_cpu(h);
    h.device = seqfuse::Device::CUDA; h.hist = h_gpu;
    seqfuse::quant_fwd_cuda(h, seqfuse::Stream{});
    device_sync("histogram");
    CHECK(same_bytes(h_cpu, h_gpu, size_t(bins) * sizeof(double)), "histogram %s [%ld, %ld, %ld] bins %ld", tn, long(outer), long(C), long(inner), long(bins));
    double counted = 0;
    for (int64_t b = 0; b < bins; ++b) counted += h_gpu[b] - double(b % 3);
    int64_t finite_or_inf = 0;
    for (int64_t i = 0; i < n; ++i) finite_or_inf += get(x, t, i) == get(x, t, i);
    CHECK(counted == double(finite_or_inf), "histogram %s bins %ld: counted %g of %ld non-NaN", tn, long(bins), counted, long(finite_or_inf));
    cudaFree(h_cpu);
    cudaFree(h_gpu);
  }
  cudaFree(x);
  cudaFree(clip);
  ++cases;
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  seqfuse::set_num_threads(1);
  // [outer, C, inner]: per tensor, axis 0 of a weight, a middle axis, the last axis, units past 4096
  const int64_t per_tensor[] = {1, 3, 17, 33, 130, 4097, 9000};
  const int64_t per_channel[][3] = {{1, 3, 33}, {1, 130, 17}, {3, 4, 17}, {7, 5, 1}, {130, 3, 1}, {2, 3, 4100}, {1, 2, 8193}};
  int cases = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t n : per_tensor)
      for (bool tensor : {false, true}) run_case(t, 1, 1, n, tensor, g, cases);
    for (auto& s : per_channel) run_case(t, s[0], s[1], s[2], true, g, cases);
  }
  // degenerate sizes: nothing written by quantize; max clip of an empty channel is FLT_MIN * scale;
  // dclip of no elements is 0 (or kept, accumulating)
  {
    QuantArgs a;
    a.device = seqfuse::Device::CUDA; a.outer = 0; a.channels = 2; a.inner = 5; a.clip_value = 1.0f;
    float* y = managed<float>(2);
    y[0] = y[1] = -1.0f;
    a.mode = QuantMode::MaxClip; a.y = y; a.clip_scale = 2.0f;
    seqfuse::quant_fwd_cuda(a, seqfuse::Stream{});
    device_sync("maxClip empty");
    CHECK(y[0] == 1.17549435e-38f * 2.0f && y[1] == y[0], "maxClip of empty channels: %g", double(y[0]));
    float* dclip = managed<float>(2);
    dclip[0] = 3.0f; dclip[1] = 4.0f;
    a.mode = QuantMode::FakeQuant; a.dclip = dclip; a.accumulate = true;
    seqfuse::quant_bwd_cuda(a, seqfuse::Stream{});
    device_sync("backward empty");
    CHECK(dclip[0] == 3.0f && dclip[1] == 4.0f, "dclip accumulated over nothing: %g %g", double(dclip[0]), double(dclip[1]));
    a.accumulate = false;
    seqfuse::quant_bwd_cuda(a, seqfuse::Stream{});
    device_sync("backward empty");
    CHECK(dclip[0] == 0.0f && dclip[1] == 0.0f, "dclip over nothing: %g %g", double(dclip[0]), double(dclip[1]));
    cudaFree(y);
    cudaFree(dclip);
  }
  // bad arguments: a clip_value that is not finite and > 0, an integer dtype
  {
    QuantArgs a;
    a.device = seqfuse::Device::CUDA; a.outer = 1; a.channels = 1; a.inner = 4; a.clip_value = 0.0f;
    int errors = 0;
    for (QuantMode m : {QuantMode::Quantize, QuantMode::FakeQuant, QuantMode::Histogram}) {
      a.mode = m;
      try { seqfuse::quant_fwd_cuda(a, seqfuse::Stream{}); } catch (const seqfuse::Error& e) { errors += e.code == seqfuse::ErrorCode::Arg; }
    }
    try { seqfuse::quant_bwd_cuda(a, seqfuse::Stream{}); } catch (const seqfuse::Error& e) { errors += e.code == seqfuse::ErrorCode::Arg; }
    a.clip_value = 1.0f; a.dtype = DType::I32; a.mode = QuantMode::FakeQuant;
    try { seqfuse::quant_fwd_cuda(a, seqfuse::Stream{}); } catch (const seqfuse::Error& e) { errors += e.code == seqfuse::ErrorCode::DType; }
    CHECK(errors == 5, "bad arguments: %d of 5 typed errors", errors);
  }
  std::printf("quant: %d cases (x 5 modes, dclip max error %.3g of sum |terms|) against the CPU backend\n", cases, max_dclip_err);
  return finish("quant");
}

// cuda/rope.cu against the CPU backend (native/cpu/rope.cc, linked in) and a float64 reference.
// The rotation is the CPU's f32 operations in the same order; the cos/sin table is computed in f64
// on both sides but by different libraries (glibc, CUDA's libdevice: within 2 ulp), so an entry
// may differ by one f32 ulp after rounding. Checked: f32 relative L2 to the CPU <= 1e-6 and every
// element within 4 f32 ulp of the CPU's (scaled by the pair's magnitude); f16/bf16 every element
// within one unit of T's last place of the CPU's; against float64 <= 1e-6 (f32) / 1e-2 (16-bit);
// dims past `rot` untouched (bit for bit); inverse(forward(x)) = x within rounding. The number of
// elements that are not the CPU's bits and the largest difference are printed; under the emulator
// (the host's libm on both sides) every element must be the CPU's bits.
// Shapes: heads of 1 pair, D = 6, 64, 80 (rot < D), 128; S = 1, 5, 17, 33, 130; offsets 0, 7,
// 10000, 2^20 (decode positions); base 10000 and 500000; forward and inverse; f32, f16, bf16.
// emu-link: native/cpu/rope.cc native/core/threads.cc
#include "../rope.cu"
#include "compare.h"
#include "core/threads.h"

namespace {

using namespace cmp;
using seqfuse::RopeArgs;
// Bits of element i as a monotone integer (sign-magnitude -> two's complement order).
int64_t ordered(DType t, const void* p, int64_t i) {
  if (t == DType::F32) {
    int32_t b;
    std::memcpy(&b, static_cast<const char*>(p) + 4 * i, 4);
    return b < 0 ? -int64_t(b & 0x7fffffff) : int64_t(b);
  }
  uint16_t b;
  std::memcpy(&b, static_cast<const char*>(p) + 2 * i, 2);
  return (b & 0x8000u) ? -int64_t(b & 0x7fffu) : int64_t(b);
}

int64_t differing = 0, total = 0;
double max_abs_f32 = 0.0;
int64_t max_ulp16 = 0;

}  // namespace

int main() {
  std::mt19937 g(20261124);
  seqfuse::set_num_threads(1);
  const int64_t shapes[][5] = {  // B, H, S, D, rot
      {1, 1, 1, 2, 2}, {2, 3, 17, 64, 64}, {1, 2, 33, 80, 32}, {3, 1, 130, 6, 4}, {1, 4, 5, 128, 128}, {2, 2, 1, 64, 64}};
  const int64_t offsets[] = {0, 7, 10000, int64_t(1) << 20};
  int cases = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (auto& sh : shapes)
      for (int64_t off : offsets)
        for (double base : {10000.0, 500000.0})
          for (bool inverse : {false, true}) {
            RopeArgs a;
            a.dtype = t; a.B = sh[0]; a.H = sh[1]; a.S = sh[2]; a.D = sh[3]; a.rot = sh[4]; a.offset = off; a.base = base;
            a.inverse = inverse;
            const int64_t n = a.B * a.H * a.S * a.D;
            const size_t bytes = size_t(n) * esize(t);
            void* x0 = random_buf(t, n, g, -2.0f, 2.0f);
            void* x_cpu = poisoned_buf(t, n);
            void* x_gpu = poisoned_buf(t, n);
            std::memcpy(x_cpu, x0, bytes);
            std::memcpy(x_gpu, x0, bytes);
            a.x = x_cpu;
            seqfuse::rope_cpu(a);
            a.device = seqfuse::Device::CUDA; a.x = x_gpu;
            seqfuse::rope_cuda(a, seqfuse::Stream{});
            device_sync("rope");
            // float64 reference, and the comparison with the CPU
            const int64_t half = a.rot / 2;
            RelL2 to_ref(NonFinite::GotNaNFails), to_cpu(NonFinite::GotNaNFails);
            int far = 0, untouched_bad = 0;
            for (int64_t row = 0; row < a.B * a.H * a.S; ++row) {
              const int64_t s = row % a.S;
              for (int64_t d = 0; d < a.D; ++d) {
                const int64_t i = row * a.D + d;
                const double got = get(x_gpu, t, i), cpu = get(x_cpu, t, i);
                if (d >= 2 * half) {
                  untouched_bad += !same_at(x_gpu, x0, i, t);
                  continue;
                }
                const int64_t k = d % half, lo = row * a.D + k;
                const double th = double(s + off) * std::pow(base, -2.0 * double(k) / double(a.rot)) * (inverse ? -1.0 : 1.0);
                const double uu = get(x0, t, lo), vv = get(x0, t, lo + half);
                const double want = d < half ? uu * std::cos(th) - vv * std::sin(th) : uu * std::sin(th) + vv * std::cos(th);
                to_ref.add(got, want);
                to_cpu.add(got, cpu);
                ++total;
                if (!same_at(x_gpu, x_cpu, i, t)) {
                  ++differing;
                  if (t == DType::F32) {
                    const double mag = std::fabs(uu) + std::fabs(vv);
                    max_abs_f32 = std::fmax(max_abs_f32, std::fabs(got - cpu) / mag);
                    far += std::fabs(got - cpu) > 4 * 1.1920929e-7 * mag;
                  } else {
                    const int64_t ulps = std::llabs(ordered(t, x_gpu, i) - ordered(t, x_cpu, i));
                    max_ulp16 = ulps > max_ulp16 ? ulps : max_ulp16;
                    far += ulps > 1;
                  }
                }
              }
            }
            const double tol_ref = t == DType::F32 ? 1e-6 : 1e-2;
            const double rel_ref = to_ref.value(), rel_cpu = to_cpu.value();
            CHECK(far == 0 && untouched_bad == 0 && rel_cpu <= (t == DType::F32 ? 1e-6 : 1e-2) && rel_ref <= tol_ref,
                  "rope %s [%ld, %ld, %ld, %ld] rot %ld offset %ld base %g inverse %d: %d far from the CPU, %d untouched dims "
                  "changed, rel L2 %.3g to the CPU, %.3g to f64",
                  seqfuse::dtype_name(t), long(a.B), long(a.H), long(a.S), long(a.D), long(a.rot), long(off), base, int(inverse), far,
                  untouched_bad, rel_cpu, rel_ref);
            // the inverse undoes the rotation (f32: to rounding)
            if (t == DType::F32) {
              a.inverse = !inverse;
              seqfuse::rope_cuda(a, seqfuse::Stream{});
              device_sync("rope inverse");
              double m = 0;
              for (int64_t i = 0; i < n; ++i) m = std::fmax(m, std::fabs(get(x_gpu, t, i) - get(x0, t, i)));
              CHECK(m < 1e-5, "rope inverse after forward: max error %g", m);
            }
            for (void* p : {x0, x_cpu, x_gpu}) cudaFree(p);
            ++cases;
          }
  // nothing to do: rot < 2, S = 0; a non-float dtype fails
  {
    RopeArgs a;
    a.device = seqfuse::Device::CUDA; a.B = 1; a.H = 1; a.S = 2; a.D = 4; a.rot = 1;
    float* x = managed<float>(8);
    for (int i = 0; i < 8; ++i) x[i] = float(i);
    a.x = x;
    seqfuse::rope_cuda(a, seqfuse::Stream{});
    a.rot = 4; a.S = 0;
    seqfuse::rope_cuda(a, seqfuse::Stream{});
    device_sync("rope degenerate");
    bool kept = true;
    for (int i = 0; i < 8; ++i) kept = kept && x[i] == float(i);
    CHECK(kept, "rope with rot 1 or S 0 changed x");
    int errors = 0;
    a.dtype = DType::I8;
    try { seqfuse::rope_cuda(a, seqfuse::Stream{}); } catch (const seqfuse::Error& e) { errors += e.code == seqfuse::ErrorCode::DType; }
    CHECK(errors == 1, "rope i8: no ERR_DTYPE");
    cudaFree(x);
  }
#if !defined(__CUDACC__)
  // emulated, the kernel's f64 trig is the host's libm, the CPU's: every element must be its bits
  CHECK(differing == 0, "emulated rope: %ld elements differ from the CPU's bits", long(differing));
#endif
  std::printf("rope: %d cases against the CPU backend; %ld of %ld rotated elements not the CPU's bits (f32 largest "
              "|diff| / (|u| + |v|) %.3g, 16-bit largest %ld ulp)\n",
              cases, long(differing), long(total), max_abs_f32, long(max_ulp16));
  return finish("rope");
}

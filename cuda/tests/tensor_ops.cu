// cuda/tensor_ops.cu against the CPU backend (native/cpu/tensor_ops.cc, its portable pass, linked in).
// cast: every (source, destination) pair of the six dtypes, bit for bit, on random values plus the
//   edge cases (+-0, +-Inf, NaN of both signs and other payloads, f16 subnormals and overflow,
//   ties of the 16-bit roundings, values past every integer range, integers past 2^24).
// random: uniform bit for bit (f32, f16, bf16; offsets that start mid-call; aligned and unaligned
//   outputs); normal: bit for bit under the emulator (the host's libm on both sides); on a GPU
//   (CUDA's logf / sinf / cosf within 2 ulp of glibc's) every value within
//   4e-6 * (|mean| + 6 |std|) of the CPU's (f32) or one unit in the last place (16-bit), and the
//   largest difference is printed; also mean ~ 0 and variance ~ 1 over 40000 draws.
// heads_copy: both directions, odd D / ld / col0 (every word width 1..16 bytes), bit for bit, with
//   the columns outside the heads kept.
// emu-link: native/cpu/tensor_ops.cc native/core/threads.cc
#include "../tensor_ops.cu"
#include "compare.h"
#include "core/threads.h"

namespace {

using namespace cmp;

const DType kAll[] = {DType::F32, DType::F16, DType::BF16, DType::I8, DType::I32, DType::U8};

// n values of dtype t: random bits and random magnitudes, with the edge cases first.
void fill_with_edges(DType t, void* p, int64_t n, std::mt19937& g) {
  std::uniform_real_distribution<float> mag(-40.0f, 40.0f);
  std::uniform_int_distribution<uint32_t> bits;
  const float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 127.5f, -128.5f,
                         255.5f, 256.0f, -129.0f, 65504.0f, 65519.0f, 65520.0f, 1e-7f, -3e-8f, 6.1e-5f, 2147483520.0f,
                         2147483648.0f, -2147483904.0f, 16777217.0f, 1.00390625f, 1.01171875f, 3e38f};
  for (int64_t i = 0; i < n; ++i) {
    const float f = i < int64_t(sizeof edges / sizeof *edges) ? edges[i] : std::ldexp(mag(g) / 40.0f, int(mag(g)));
    const uint32_t r = bits(g);
    switch (t) {
      case DType::F32: static_cast<float*>(p)[i] = i % 11 == 10 ? seqfuse::bits_to_f32(r) : f; break;
      case DType::F16: static_cast<uint16_t*>(p)[i] = i % 5 == 4 ? uint16_t(r) : seqfuse::f32_to_f16(f).bits; break;
      case DType::BF16: static_cast<uint16_t*>(p)[i] = i % 5 == 4 ? uint16_t(r) : seqfuse::f32_to_bf16(f).bits; break;
      case DType::I8: static_cast<int8_t*>(p)[i] = int8_t(r); break;
      case DType::I32: static_cast<int32_t*>(p)[i] = i % 3 ? int32_t(r) : int32_t(r) >> (r % 31); break;
      case DType::U8: static_cast<uint8_t*>(p)[i] = uint8_t(r); break;
    }
  }
}

int cases = 0;

void test_cast(std::mt19937& g) {
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(33), int64_t(130), int64_t(4099)})
    for (DType s : kAll)
      for (DType d : kAll) {
        seqfuse::CastArgs a;
        a.src_dtype = s; a.dst_dtype = d; a.n = n;
        void* src = poisoned_buf(s, n);
        fill_with_edges(s, src, n, g);
        void* out_cpu = poisoned_buf(d, n);
        void* out_gpu = poisoned_buf(d, n);
        const size_t bytes = size_t(n * seqfuse::dtype_size(d));
        std::memset(out_cpu, 0x5a, bytes);
        std::memset(out_gpu, 0xa5, bytes);
        a.src = src; a.dst = out_cpu;
        seqfuse::cast_cpu(a);
        a.device = seqfuse::Device::CUDA; a.dst = out_gpu;
        seqfuse::cast_cuda(a, seqfuse::Stream{});
        device_sync("cast");
        const int64_t bad = first_diff(out_cpu, out_gpu, n, d);
        CHECK(bad < 0, "cast %s -> %s n %ld: element %ld differs", seqfuse::dtype_name(s), seqfuse::dtype_name(d), long(n), long(bad));
        for (void* p : {src, out_cpu, out_gpu}) cudaFree(p);
        ++cases;
      }
}

int64_t normal_differing = 0, normal_total = 0;
double normal_max_f32 = 0.0;
int64_t normal_max_ulp16 = 0;

void test_random() {
  const uint64_t offsets[] = {0, 1, 4, 6, (uint64_t(1) << 34) + 3};
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int64_t n : {int64_t(1), int64_t(3), int64_t(17), int64_t(130), int64_t(5003)})
      for (uint64_t off : offsets)
        for (int normal = 0; normal < 2; ++normal)
          for (int shift = 0; shift < 2; ++shift) {  // shift: output one element past an aligned address
            seqfuse::RandomArgs a;
            a.dtype = t; a.n = n; a.seed = 0x9e3779b97f4a7c15ull ^ uint64_t(cases); a.offset = off;
            a.kind = normal ? seqfuse::RandomKind::Normal : seqfuse::RandomKind::Uniform;
            a.a = normal ? 0.5f : -1.5f; a.b = normal ? 2.0f : 3.25f;
            const int64_t es = seqfuse::dtype_size(t);
            unsigned char* cpu = static_cast<unsigned char*>(poisoned_buf(t, n + 1));
            unsigned char* gpu = static_cast<unsigned char*>(poisoned_buf(t, n + 1));
            std::memset(cpu, 0x7f, size_t((n + 1) * es));
            std::memset(gpu, 0x7e, size_t((n + 1) * es));
            a.out = cpu + shift * es;
            seqfuse::random_cpu(a);
            a.device = seqfuse::Device::CUDA; a.out = gpu + shift * es;
            seqfuse::random_cuda(a, seqfuse::Stream{});
            device_sync("random");
            const unsigned char *c = cpu + shift * es, *q = gpu + shift * es;
            if (!normal) {
              CHECK(same_bits(c, q, n, t), "uniform %s n %ld offset %llu shift %d", seqfuse::dtype_name(t), long(n),
                    (unsigned long long)off, shift);
            } else {
              int far = 0;
              for (int64_t i = 0; i < n; ++i) {
                ++normal_total;
                if (same_at(c, q, i, t)) continue;
                ++normal_differing;
                if (t == DType::F32) {
                  const double d = std::fabs(get(c, t, i) - get(q, t, i));
                  normal_max_f32 = std::fmax(normal_max_f32, d);
                  far += !(d <= 4e-6 * (std::fabs(a.a) + 6 * std::fabs(a.b)));
                } else {
                  uint16_t x, y;
                  std::memcpy(&x, c + i * es, 2);
                  std::memcpy(&y, q + i * es, 2);
                  const int64_t ulps = std::llabs(int64_t(x) - int64_t(y));  // same sign: adjacent bit patterns
                  normal_max_ulp16 = ulps > normal_max_ulp16 ? ulps : normal_max_ulp16;
                  far += ulps > 1 || ((x ^ y) & 0x8000u);
                }
              }
              CHECK(far == 0, "normal %s n %ld offset %llu: %d values far from the CPU's", seqfuse::dtype_name(t), long(n),
                    (unsigned long long)off, far);
            }
            // the one extra element (before out, or after its end) keeps its poison
            const unsigned char* extra = gpu + (shift ? 0 : n * es);
            bool kept = true;
            for (int64_t k = 0; k < es; ++k) kept = kept && extra[k] == 0x7e;
            CHECK(kept, "random %s n %ld shift %d wrote outside out", seqfuse::dtype_name(t), long(n), shift);
            cudaFree(cpu);
            cudaFree(gpu);
            ++cases;
          }
#if !defined(__CUDACC__)
  CHECK(normal_differing == 0, "emulated normal: %ld values differ from the CPU's bits", long(normal_differing));
#endif
  // the distributions: moments of 40000 draws
  const int64_t n = 40000;
  float* x = managed<float>(size_t(n));
  for (int normal = 0; normal < 2; ++normal) {
    seqfuse::RandomArgs a;
    a.device = seqfuse::Device::CUDA; a.n = n; a.seed = 42; a.out = x;
    a.kind = normal ? seqfuse::RandomKind::Normal : seqfuse::RandomKind::Uniform;
    a.a = 0.0f; a.b = 1.0f;  // uniform [0, 1) and standard normal
    seqfuse::random_cuda(a, seqfuse::Stream{});
    device_sync("random moments");
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; ++i) m += x[i];
    m /= double(n);
    for (int64_t i = 0; i < n; ++i) v += (x[i] - m) * (x[i] - m);
    v /= double(n);
    const double want_m = normal ? 0.0 : 0.5, want_v = normal ? 1.0 : 1.0 / 12.0;
    CHECK(std::fabs(m - want_m) < 0.02 && std::fabs(v - want_v) < 0.03 * want_v + 0.001, "%s moments: mean %g variance %g",
          normal ? "normal" : "uniform", m, v);
  }
  cudaFree(x);
}

void test_heads(std::mt19937& g) {
  struct Shape { int64_t B, S, H, D, ld, col0; };
  const Shape shapes[] = {{1, 1, 1, 1, 1, 0}, {2, 3, 4, 8, 96, 0}, {2, 17, 3, 64, 3 * 192, 192}, {1, 5, 2, 7, 33, 5},
                          {3, 2, 5, 3, 17, 2}, {1, 130, 2, 33, 70, 4}, {2, 3, 2, 6, 14, 2}, {2, 9, 12, 64, 768 * 3, 768}};
  for (DType t : {DType::F32, DType::F16, DType::I8})
    for (const Shape& sh : shapes)
      for (int to_heads = 0; to_heads < 2; ++to_heads) {
        seqfuse::HeadsArgs a;
        a.dtype = t; a.B = sh.B; a.S = sh.S; a.H = sh.H; a.D = sh.D; a.ld = sh.ld; a.col0 = sh.col0; a.to_heads = to_heads;
        const int64_t es = seqfuse::dtype_size(t), nrows = sh.B * sh.S * sh.ld, nheads = sh.B * sh.H * sh.S * sh.D;
        const int64_t nsrc = to_heads ? nrows : nheads, ndst = to_heads ? nheads : nrows;
        unsigned char* src = static_cast<unsigned char*>(poisoned_buf(t, nsrc));
        unsigned char* cpu = static_cast<unsigned char*>(poisoned_buf(t, ndst));
        unsigned char* gpu = static_cast<unsigned char*>(poisoned_buf(t, ndst));
        for (int64_t i = 0; i < nsrc * es; ++i) src[i] = uint8_t(g());
        for (int64_t i = 0; i < ndst * es; ++i) cpu[i] = gpu[i] = uint8_t(g());  // columns outside the heads must be kept
        if (to_heads) std::memset(gpu, 0xee, size_t(ndst * es)), std::memset(cpu, 0xdd, size_t(ndst * es));
        a.src = src; a.dst = cpu;
        seqfuse::heads_copy_cpu(a);
        a.device = seqfuse::Device::CUDA; a.dst = gpu;
        seqfuse::heads_copy_cuda(a, seqfuse::Stream{});
        device_sync("heads_copy");
        CHECK(same_bits(cpu, gpu, ndst, t), "heads_copy %s B %ld S %ld H %ld D %ld ld %ld col0 %ld to_heads %d",
              seqfuse::dtype_name(t), long(sh.B), long(sh.S), long(sh.H), long(sh.D), long(sh.ld), long(sh.col0), to_heads);
        for (void* p : {static_cast<void*>(src), static_cast<void*>(cpu), static_cast<void*>(gpu)}) cudaFree(p);
        ++cases;
      }
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  seqfuse::set_num_threads(1);
  test_cast(g);
  test_random();
  test_heads(g);
  int errors = 0;
  seqfuse::RandomArgs r;
  r.dtype = DType::I32; r.n = 4;
  try { seqfuse::random_cuda(r, seqfuse::Stream{}); } catch (const seqfuse::Error& e) { errors += e.code == seqfuse::ErrorCode::DType; }
  CHECK(errors == 1, "random into i32: no ERR_DTYPE");
  std::printf("tensor_ops: %d cases against the CPU backend; normal: %ld of %ld values not the CPU's bits (f32 largest "
              "|diff| %.3g, 16-bit largest %ld ulp)\n",
              cases, long(normal_differing), long(normal_total), normal_max_f32, long(normal_max_ulp16));
  return finish("tensor_ops");
}

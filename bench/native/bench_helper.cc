// bench/native/bench_helper.cc — native baselines the bench harness measures seqfuse against
// (the library never loads this). Each returns per-call times in ns, measured after warm-up in
// a native loop, so JS and marshalling costs are not in them.
//   onednnLinear(M, N, K, threads, iters): a direct oneDNN f32 matmul y[M,N] = x[M,K] w[N,K]^T + b,
//     weights reordered once into the layout the primitive picks (format_tag::any).
//   copy(bytes, threads, iters): a parallel memcpy between two preallocated, pre-touched buffers
//     (the achievable memory bandwidth: 2 * bytes moved per call).
//   fmaPeak(threads, iters): `threads` threads each run 12 independent chains of vector FMAs on
//     registers (AVX-512 where the CPU has it, else AVX2+FMA): the f32 peak of this machine, in
//     flop per call time (each call is 2 * lanes * 12 * kFmaSteps * threads flop).
//   int8Peak(threads, iters): the same for int8 dot products (u8 x s8 -> s32: VNNI vpdpbusd where
//     the CPU has it, else AVX2 vpmaddubsw + vpmaddwd + vpaddd), 2 ops per multiply-add.
//   bf16Peak(threads, iters): the same for bf16 dot products (vdpbf16ps), or null without avx512_bf16.
// The peaks return { ns, opsPerCall, isa }.
// All restore the OpenMP thread count they found: it is shared with seqfuse in one process.
#include <napi.h>
#include <omp.h>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>
#include <dnnl.hpp>
#include <immintrin.h>

namespace {

using Clock = std::chrono::steady_clock;

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  Napi::Value v = info[i];
  double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(x >= double(lo) && x <= double(hi)) || x != std::floor(x))
    throw Napi::RangeError::New(info.Env(), std::string("expected ") + name + " to be an integer in [" + std::to_string(lo) +
                                                ", " + std::to_string(hi) + "]");
  return int64_t(x);
}

// Sets the OpenMP thread count for the scope, then puts the caller's back.
struct ThreadScope {
  int saved = omp_get_max_threads();
  explicit ThreadScope(int n) { omp_set_num_threads(n); }
  ~ThreadScope() { omp_set_num_threads(saved); }
};

template <class F>
Napi::Value time_calls(Napi::Env env, int64_t iters, int64_t warmup, const F& call) {
  for (int64_t i = 0; i < warmup; ++i) call();
  Napi::Array out = Napi::Array::New(env, size_t(iters));
  for (int64_t i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    call();
    out.Set(uint32_t(i), double(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  }
  return out;
}

// Deterministic values in [-1, 1): no zeros, no denormals.
void fill(std::vector<float>& v, uint32_t seed) {
  for (float& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = float(seed >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}

Napi::Value onednn_linear(const Napi::CallbackInfo& info) {
  using dnnl::memory;
  using Tag = memory::format_tag;
  const int64_t m = int_arg(info, 0, "M", 1, 1 << 20), n = int_arg(info, 1, "N", 1, 1 << 20), k = int_arg(info, 2, "K", 1, 1 << 20);
  ThreadScope threads(int(int_arg(info, 3, "threads", 1, 1024)));
  const int64_t iters = int_arg(info, 4, "iters", 1, 1 << 24);
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream s(eng);
    memory::desc src({m, k}, memory::data_type::f32, Tag::ab), wei({k, n}, memory::data_type::f32, Tag::any),
        bias({1, n}, memory::data_type::f32, Tag::ab), dst({m, n}, memory::data_type::f32, Tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, bias, dst), eng);
    std::vector<float> x(static_cast<size_t>(m * k)), w(static_cast<size_t>(n * k)), b(static_cast<size_t>(n)),
        y(static_cast<size_t>(m * n));
    fill(x, 1);
    fill(w, 2);
    fill(b, 3);
    memory wm(pd.weights_desc(), eng);
    memory wu({{k, n}, memory::data_type::f32, Tag::ba}, eng, w.data());  // w [N,K], PyTorch layout
    dnnl::reorder(wu, wm).execute(s, wu, wm);
    s.wait();
    dnnl::matmul mm(pd);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(src, eng, x.data())}, {DNNL_ARG_WEIGHTS, wm},
                                         {DNNL_ARG_BIAS, memory(bias, eng, b.data())}, {DNNL_ARG_DST, memory(dst, eng, y.data())}};
    return time_calls(info.Env(), iters, 5, [&] {
      mm.execute(s, args);
      s.wait();
    });
  } catch (const dnnl::error& e) {
    throw Napi::Error::New(info.Env(), std::string("onednnLinear: oneDNN failed: ") + e.what());
  }
}

Napi::Value copy(const Napi::CallbackInfo& info) {
  const int64_t bytes = int_arg(info, 0, "bytes", 1, int64_t(1) << 34);
  const int nt = int(int_arg(info, 1, "threads", 1, 1024));
  ThreadScope threads(nt);
  const int64_t iters = int_arg(info, 2, "iters", 1, 1 << 24);
  std::unique_ptr<char, decltype(&std::free)> src(static_cast<char*>(std::aligned_alloc(64, size_t((bytes + 63) / 64 * 64))), &std::free);
  std::unique_ptr<char, decltype(&std::free)> dst(static_cast<char*>(std::aligned_alloc(64, size_t((bytes + 63) / 64 * 64))), &std::free);
  if (!src || !dst) throw Napi::Error::New(info.Env(), "copy: out of memory");
  std::memset(src.get(), 1, size_t(bytes));  // touch every page before timing
  std::memset(dst.get(), 2, size_t(bytes));
  char* d = dst.get();
  const char* sp = src.get();
  return time_calls(info.Env(), iters, 2, [&] {
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t b0 = bytes * t / T / 64 * 64, b1 = t + 1 == T ? bytes : bytes * (t + 1) / T / 64 * 64;
      std::memcpy(d + b0, sp + b0, size_t(b1 - b0));
    }
  });
}

constexpr int64_t kFmaSteps = 1 << 20;

// 12 chains of a multiply-add on registers, acc[i] = STEP(acc[i], a, b), each from INIT (an
// expression of i); returns a sum of lanes so the work is not dead. Compilers do not fold these
// chains, so the loop runs as written.
#define SF_CHAINS(NAME, TARGET, VEC, OPND, INIT, SETA, SETB, STEP, STORE, LANE_T, LANES)     \
  __attribute__((target(TARGET))) double NAME(int64_t steps) {                          \
    VEC acc[12];                                                                          \
    for (int i = 0; i < 12; ++i) acc[i] = INIT;                                           \
    const OPND a = SETA, b = SETB;                                                        \
    for (int64_t s = 0; s < steps; ++s)                                                   \
      _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) acc[i] = STEP(acc[i], a, b);  \
    alignas(64) LANE_T t[LANES];                                                          \
    double r = 0;                                                                         \
    for (int i = 0; i < 12; ++i) {                                                        \
      STORE(t, acc[i]);                                                                   \
      r += double(t[0]);                                                                  \
    }                                                                                     \
    return r;                                                                             \
  }

// f32 FMA: 12 accumulators cover an FMA latency of 4-6 cycles on 2 ports; acc * m + c with the
// multiplier m just below 1 and a small c keeps the values finite and away from denormals.
SF_CHAINS(fma_chains_avx2, "avx2,fma", __m256, __m256, _mm256_set1_ps(float(i + 1)), _mm256_set1_ps(0.9999999f), _mm256_set1_ps(1e-7f),
          _mm256_fmadd_ps, _mm256_store_ps, float, 8)
SF_CHAINS(fma_chains_avx512, "avx512f", __m512, __m512, _mm512_set1_ps(float(i + 1)), _mm512_set1_ps(0.9999999f), _mm512_set1_ps(1e-7f),
          _mm512_fmadd_ps, _mm512_store_ps, float, 16)

// int8 dot products (u8 x s8 -> s32, the unit int8 GEMMs use), 2 ops per multiply-add:
//   AVX-512 VNNI: vpdpbusd zmm, 64 multiply-adds per instruction; AVX-VNNI: vpdpbusd ymm, 32;
//   AVX2 (int8_chains_avx2 below): vpmaddubsw (32 products, adjacent pairs summed to i16) + vpmaddwd
//   by ones (pairs to i32) + vpaddd, 32 multiply-adds per three instructions, 6 chains of distinct
//   operands (the register file holds 16). The accumulate has latency 1 there, so the chains only
//   need to keep the multiply pipes busy; the empty asm makes `a` opaque each step, so the products
//   are not hoisted out of the loop. Saturation of the i16 pair sums does not matter: only the time is used.
#define SF_STORE512I(p, v) _mm512_store_si512(reinterpret_cast<void*>(p), v)
#define SF_STORE256I(p, v) _mm256_store_si256(reinterpret_cast<__m256i*>(p), v)
SF_CHAINS(int8_chains_vnni512, "avx512f,avx512vnni", __m512i, __m512i, _mm512_setzero_si512(), _mm512_set1_epi8(3), _mm512_set1_epi8(-2),
          _mm512_dpbusd_epi32, SF_STORE512I, int32_t, 16)
SF_CHAINS(int8_chains_avxvnni, "avx2,avxvnni", __m256i, __m256i, _mm256_setzero_si256(), _mm256_set1_epi8(3), _mm256_set1_epi8(-2),
          _mm256_dpbusd_avx_epi32, SF_STORE256I, int32_t, 8)
// bf16 pairs (vdpbf16ps): 32 multiply-adds into 16 f32 lanes per instruction; 1.0 x 2^-10 keeps the sums small
#define SF_BF16(v) (__m512bh) _mm512_set1_epi16(short(v))
SF_CHAINS(bf16_chains_avx512, "avx512f,avx512bf16", __m512, __m512bh, _mm512_setzero_ps(), SF_BF16(0x3f80), SF_BF16(0x3a80),
          _mm512_dpbf16_ps, _mm512_store_ps, float, 16)
#undef SF_BF16
#undef SF_STORE512I
#undef SF_STORE256I
#undef SF_CHAINS

__attribute__((target("avx2"))) double int8_chains_avx2(int64_t steps) {
  __m256i acc[6], b[6];
  for (int i = 0; i < 6; ++i) {
    acc[i] = _mm256_setzero_si256();
    b[i] = _mm256_set1_epi8(char(i + 1));
  }
  __m256i a = _mm256_set1_epi8(3);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t s = 0; s < steps; ++s) {
    asm volatile("" : "+x"(a));
    _Pragma("GCC unroll 6") for (int i = 0; i < 6; ++i)
        acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b[i]), ones));
  }
  double r = 0;
  for (int i = 0; i < 6; ++i) r += _mm256_extract_epi32(acc[i], 0);
  return r;
}

// One unit's peak: `threads` threads each run kernel(kFmaSteps); ops per call = opsPerStep * kFmaSteps * threads.
Napi::Value unit_peak(const Napi::CallbackInfo& info, double (*kernel)(int64_t), double opsPerStep, const char* isa) {
  const int nt = int(int_arg(info, 0, "threads", 1, 1024));
  ThreadScope threads(nt);
  const int64_t iters = int_arg(info, 1, "iters", 1, 1 << 24);
  volatile double sink = 0;
  Napi::Value times = time_calls(info.Env(), iters, 1, [&] {
#pragma omp parallel num_threads(nt)
    {
      double r = kernel(kFmaSteps);
#pragma omp atomic
      sink = sink + r;
    }
  });
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("ns", times);
  out.Set("opsPerCall", opsPerStep * double(kFmaSteps) * nt);
  out.Set("isa", isa);
  return out;
}

Napi::Value fma_peak(const Napi::CallbackInfo& info) {
  if (__builtin_cpu_supports("avx512f")) return unit_peak(info, fma_chains_avx512, 2 * 16 * 12, "avx512f");
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return unit_peak(info, fma_chains_avx2, 2 * 8 * 12, "avx2+fma");
  throw Napi::Error::New(info.Env(), "fmaPeak: this CPU has neither AVX-512 nor AVX2+FMA");
}

Napi::Value int8_peak(const Napi::CallbackInfo& info) {
  if (__builtin_cpu_supports("avx512vnni")) return unit_peak(info, int8_chains_vnni512, 2 * 64 * 12, "avx512vnni vpdpbusd zmm");
  if (__builtin_cpu_supports("avxvnni")) return unit_peak(info, int8_chains_avxvnni, 2 * 32 * 12, "avxvnni vpdpbusd ymm");
  if (__builtin_cpu_supports("avx2")) return unit_peak(info, int8_chains_avx2, 2 * 32 * 6, "avx2 vpmaddubsw+vpmaddwd+vpaddd");
  throw Napi::Error::New(info.Env(), "int8Peak: this CPU has none of AVX-512 VNNI, AVX-VNNI, AVX2");
}

// null where the CPU has no avx512_bf16 (bf16 products then run in f32: the f32 peak is theirs)
Napi::Value bf16_peak(const Napi::CallbackInfo& info) {
  if (!__builtin_cpu_supports("avx512bf16")) return info.Env().Null();
  return unit_peak(info, bf16_chains_avx512, 2 * 32 * 12, "avx512bf16 vdpbf16ps zmm");
}

}  // namespace

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("onednnLinear", Napi::Function::New(env, onednn_linear, "onednnLinear"));
  exports.Set("copy", Napi::Function::New(env, copy, "copy"));
  exports.Set("fmaPeak", Napi::Function::New(env, fma_peak, "fmaPeak"));
  exports.Set("int8Peak", Napi::Function::New(env, int8_peak, "int8Peak"));
  exports.Set("bf16Peak", Napi::Function::New(env, bf16_peak, "bf16Peak"));
  return exports;
}
NODE_API_MODULE(bench_helper, Init)

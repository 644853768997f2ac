// bench/gpu/kernels.cu — times seqfuse's CUDA kernels on the GPU (built and run by bench/gpu.mjs,
// `npm run bench -- gpu`): each case calls the op's *_cuda entry point (native/ops/*.h) on device
// memory filled with random values, and prints one JSON line:
//   {"op", "dtype", "shape", "params": {...}, "ms": median, "min_ms", "flop", "bytes"}
// ms: the median over 7 repeats of a timed loop (CUDA events) after a warm-up, per call.
// bench/gpu_torch.py times the same cases with PyTorch from these lines (the peer).
// Usage: kernels [--quick]   (--quick: smaller shapes, a smoke run)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "launch.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/crossent.h"
#include "ops/dropout.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/optim.h"
#include "ops/softmax.h"

using namespace seqfuse;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Uniform values in [lo, hi) from a hash of the index (element type T).
template <class T>
__global__ void fill_kernel(T* p, int64_t n, uint32_t seed, float lo, float hi) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16;
    const float u = lo + (hi - lo) * float(h >> 8) * (1.0f / 16777216.0f);
    if constexpr (std::is_same<T, int8_t>::value) p[i] = int8_t(int(u));
    else if constexpr (std::is_same<T, int32_t>::value) p[i] = int32_t(u);
    else if constexpr (std::is_same<T, float>::value) p[i] = u;
    else if constexpr (std::is_same<T, __half>::value) p[i] = __float2half_rn(u);
    else p[i] = __float2bfloat16_rn(u);
  }
}

size_t esize(DType t) { return size_t(dtype_size(t)); }

std::vector<void*> g_buffers;
uint32_t g_seed = 1;

// n random elements of t in [lo, hi) on the device.
void* rand_dev(DType t, int64_t n, float lo = -1.0f, float hi = 1.0f) {
  void* p = nullptr;
  check(cudaMalloc(&p, size_t(std::max<int64_t>(n, 1)) * esize(t)), "cudaMalloc");
  g_buffers.push_back(p);
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 65535));
  const uint32_t s = g_seed++ * 7919u;
  switch (t) {
    case DType::F32: fill_kernel<<<blocks, 256>>>(static_cast<float*>(p), n, s, lo, hi); break;
    case DType::F16: fill_kernel<<<blocks, 256>>>(static_cast<__half*>(p), n, s, lo, hi); break;
    case DType::BF16: fill_kernel<<<blocks, 256>>>(static_cast<__nv_bfloat16*>(p), n, s, lo, hi); break;
    case DType::I8: fill_kernel<<<blocks, 256>>>(static_cast<int8_t*>(p), n, s, lo, hi); break;
    default: fill_kernel<<<blocks, 256>>>(static_cast<int32_t*>(p), n, s, lo, hi); break;
  }
  check(cudaGetLastError(), "fill");
  return p;
}

void free_all() {
  check(cudaDeviceSynchronize(), "sync");
  for (void* p : g_buffers) cudaFree(p);
  g_buffers.clear();
}

// Median and minimum milliseconds per call of fn: warm-up, then 7 repeats of a loop sized to
// take about 20 ms.
std::pair<double, double> time_ms(const std::function<void()>& fn) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  fn();
  check(cudaDeviceSynchronize(), "warm-up");
  cudaEventRecord(a);
  fn();
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float one = 0;
  cudaEventElapsedTime(&one, a, b);
  const int iters = std::max(1, std::min(1000, int(20.0 / std::max(one, 0.001f))));
  std::vector<double> t;
  for (int r = 0; r < 7; ++r) {
    cudaEventRecord(a);
    for (int i = 0; i < iters; ++i) fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(double(ms) / iters);
  }
  check(cudaGetLastError(), "timed loop");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t[0]};
}

void report(const char* op, DType t, const std::string& shape, const std::string& params, double flop, double bytes,
            const std::function<void()>& fn) {
  const auto [ms, min_ms] = time_ms(fn);
  std::printf("{\"op\":\"%s\",\"dtype\":\"%s\",\"shape\":[%s],\"params\":{%s},\"ms\":%.6f,\"min_ms\":%.6f,\"flop\":%.6g,\"bytes\":%.6g}\n", op,
              dtype_name(t), shape.c_str(), params.c_str(), ms, min_ms, flop, bytes);
  std::fflush(stdout);
  free_all();
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t v : d) s += (s.empty() ? "" : ",") + std::to_string(v);
  return s;
}

void bench_gemm(DType t, int64_t m, int64_t n, int64_t k) {
  GemmArgs g;
  g.device = Device::CUDA; g.dtype = t; g.m = m; g.n = n; g.k = k;
  g.a = rand_dev(t, m * k); g.b = rand_dev(t, k * n); g.out = rand_dev(t, m * n);
  report("gemm", t, dims({m, n, k}), "", 2.0 * m * n * k, double(esize(t)) * (m * k + k * n + m * n),
         [&] { gemm_cuda(g, Stream{}); });
}

void bench_linear(DType t, int64_t m, int64_t n, int64_t k, Activation act) {
  LinearArgs l;
  l.device = Device::CUDA; l.dtype = t; l.m = m; l.n = n; l.k = k; l.act = act;
  l.x = rand_dev(t, m * k); l.w = rand_dev(t, n * k, -0.05f, 0.05f); l.bias = rand_dev(t, n); l.y = rand_dev(t, m * n);
  report("linear", t, dims({m, n, k}), act == Activation::Gelu ? "\"activation\":\"gelu\"" : "\"activation\":\"none\"",
         2.0 * m * n * k, double(esize(t)) * (m * k + n * k + m * n), [&] { linear_fwd_cuda(l, Stream{}); });
}

void bench_linear_i8(int64_t m, int64_t n, int64_t k) {
  LinearI8Args l;
  l.device = Device::CUDA; l.out = DType::I32; l.m = m; l.n = n; l.k = k;
  l.x = static_cast<const int8_t*>(rand_dev(DType::I8, m * k, -127, 128));
  l.w = static_cast<const int8_t*>(rand_dev(DType::I8, n * k, -127, 128));
  l.y = rand_dev(DType::I32, m * n);
  report("linear_i8", DType::I8, dims({m, n, k}), "\"out\":\"i32\"", 2.0 * m * n * k, double(m * k + n * k) + 4.0 * m * n,
         [&] { linear_i8_cuda(l, Stream{}); });
}

void bench_attention(DType t, int64_t B, int64_t H, int64_t S, int64_t D, bool causal, bool backward) {
  AttentionArgs a;
  a.device = Device::CUDA; a.dtype = t; a.B = B; a.H = H; a.Hkv = H; a.Sq = S; a.Sk = S; a.D = D;
  a.scale = float(1.0 / std::sqrt(double(D))); a.causal = causal;
  const int64_t n = B * H * S * D;
  a.q = rand_dev(t, n); a.k = rand_dev(t, n); a.v = rand_dev(t, n); a.out = rand_dev(t, n);
  a.lse = static_cast<float*>(rand_dev(DType::F32, B * H * S));
  const double pairs = double(B * H) * S * S * (causal ? 0.5 : 1.0);
  const std::string params = std::string("\"causal\":") + (causal ? "true" : "false");
  if (!backward) {
    report("attention_fwd", t, dims({B, H, S, D}), params, 4.0 * pairs * D, double(esize(t)) * 4 * n,
           [&] { attention_fwd_cuda(a, Stream{}); });
    return;
  }
  attention_fwd_cuda(a, Stream{});
  a.dout = rand_dev(t, n); a.dq = rand_dev(t, n); a.dk = rand_dev(t, n); a.dv = rand_dev(t, n);
  // the backward's products: QK^T again, dP = dO V^T, dV, dQ, dK (FlashAttention-2 count: 2.5x fwd)
  report("attention_bwd", t, dims({B, H, S, D}), params, 10.0 * pairs * D, double(esize(t)) * 8 * n,
         [&] { attention_bwd_cuda(a, Stream{}); });
}

void bench_layernorm(DType t, int64_t rows, int64_t cols, bool backward) {
  NormArgs a;
  a.device = Device::CUDA; a.dtype = t; a.rows = rows; a.cols = cols;
  a.x = rand_dev(t, rows * cols); a.gamma = rand_dev(t, cols); a.beta = rand_dev(t, cols); a.y = rand_dev(t, rows * cols);
  a.mean = static_cast<float*>(rand_dev(DType::F32, rows)); a.rstd = static_cast<float*>(rand_dev(DType::F32, rows));
  if (!backward) {
    report("layernorm_fwd", t, dims({rows, cols}), "", 0, double(esize(t)) * 2 * rows * cols, [&] { norm_fwd_cuda(a, Stream{}); });
    return;
  }
  norm_fwd_cuda(a, Stream{});
  a.dy = rand_dev(t, rows * cols); a.dx = rand_dev(t, rows * cols); a.dgamma = rand_dev(t, cols); a.dbeta = rand_dev(t, cols);
  report("layernorm_bwd", t, dims({rows, cols}), "", 0, double(esize(t)) * 3 * rows * cols, [&] { norm_bwd_cuda(a, Stream{}); });
}

void bench_softmax(DType t, int64_t rows, int64_t cols) {
  SoftmaxArgs a;
  a.device = Device::CUDA; a.dtype = t; a.rows = rows; a.cols = cols; a.nlead = 1; a.lead[0] = rows;
  a.x = rand_dev(t, rows * cols, -4, 4); a.y = rand_dev(t, rows * cols);
  report("softmax_fwd", t, dims({rows, cols}), "", 0, double(esize(t)) * 2 * rows * cols, [&] { softmax_fwd_cuda(a, Stream{}); });
}

void bench_bias_act(DType t, int64_t rows, int64_t cols) {
  BiasActArgs a;
  a.device = Device::CUDA; a.dtype = t; a.act = Activation::Gelu; a.rows = rows; a.cols = cols;
  a.x = rand_dev(t, rows * cols); a.bias = rand_dev(t, cols); a.y = rand_dev(t, rows * cols);
  report("bias_gelu_fwd", t, dims({rows, cols}), "", 0, double(esize(t)) * 2 * rows * cols, [&] { bias_act_fwd_cuda(a, Stream{}); });
}

void bench_dropout(DType t, int64_t rows, int64_t cols) {
  DropoutArgs a;
  a.device = Device::CUDA; a.dtype = t; a.rows = rows; a.cols = cols; a.p = 0.1f; a.seed = 42;
  a.x = rand_dev(t, rows * cols); a.bias = rand_dev(t, cols); a.residual = rand_dev(t, rows * cols); a.y = rand_dev(t, rows * cols);
  report("bias_dropout_residual_fwd", t, dims({rows, cols}), "\"p\":0.1", 0, double(esize(t)) * 3 * rows * cols,
         [&] { dropout_fwd_cuda(a, Stream{}); });
}

void bench_crossent(DType t, int64_t rows, int64_t vocab) {
  CrossEntropyArgs a;
  a.device = Device::CUDA; a.dtype = t; a.rows = rows; a.cols = vocab; a.count = rows;
  a.logits = rand_dev(t, rows * vocab, -4, 4);
  a.targets = static_cast<const int32_t*>(rand_dev(DType::I32, rows, 0, float(vocab)));
  a.lse = static_cast<float*>(rand_dev(DType::F32, rows));
  a.losses = static_cast<float*>(rand_dev(DType::F32, rows));
  void* stats = nullptr;
  check(cudaMalloc(&stats, 2 * sizeof(double)), "cudaMalloc");
  g_buffers.push_back(stats);
  a.stats = static_cast<double*>(stats);
  crossent_fwd_cuda(a, Stream{});
  a.lse_in = a.lse;
  a.dlogits = rand_dev(t, rows * vocab);
  report("crossent_fwd_bwd", t, dims({rows, vocab}), "", 0, double(esize(t)) * 3 * rows * vocab, [&] {
    crossent_fwd_cuda(a, Stream{});
    crossent_bwd_cuda(a, Stream{});
  });
}

void bench_adamw(int64_t tensors, int64_t numel) {
  std::vector<AdamWTensor> ts(static_cast<size_t>(tensors));
  for (auto& x : ts) {
    x.param = static_cast<float*>(rand_dev(DType::F32, numel));
    x.grad = rand_dev(DType::F32, numel);
    x.m = static_cast<float*>(rand_dev(DType::F32, numel, 0, 0));
    x.v = static_cast<float*>(rand_dev(DType::F32, numel, 0, 0));
    x.numel = numel;
    x.grad_dtype = DType::F32;
  }
  AdamWArgs a;
  a.device = Device::CUDA; a.tensors = ts.data(); a.count = tensors; a.lr = 1e-3; a.weight_decay = 0.01; a.step = 1;
  // bytes: param, m, v read and written, grad read (f32)
  report("adamw", DType::F32, dims({tensors, numel}), "", 0, 28.0 * tensors * numel, [&] { adamw_cuda(a, Stream{}); });
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int64_t q = quick ? 4 : 1;  // shrink factor
  for (DType t : {DType::F16, DType::BF16}) bench_gemm(t, 4096 / q, 4096 / q, 4096 / q);
  bench_gemm(DType::F32, 2048 / q, 2048 / q, 2048 / q);
  for (DType t : {DType::F16, DType::BF16}) bench_linear(t, 8192 / q, 3072, 768, Activation::Gelu);
  bench_linear_i8(8192 / q, 3072, 768);
  for (DType t : {DType::F16, DType::BF16, DType::F32})
    for (bool causal : {false, true})
      for (bool bwd : {false, true}) bench_attention(t, t == DType::F32 ? 2 : 8 / (quick ? 4 : 1), 16, 1024 / q, 64, causal, bwd);
  for (DType t : {DType::F16, DType::BF16, DType::F32})
    for (bool bwd : {false, true}) bench_layernorm(t, 16384 / q, 1024, bwd);
  for (DType t : {DType::F16, DType::F32}) bench_softmax(t, 16384 / q, 1024);
  bench_bias_act(DType::F16, 8192 / q, 3072);
  bench_dropout(DType::F16, 8192 / q, 1024);
  bench_crossent(DType::BF16, 8192 / q, 32000);
  bench_adamw(64, (1 << 20) / q);
  return 0;
}

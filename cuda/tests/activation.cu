// cuda/activation.cu against the CPU backend (native/cpu/activation.cc, its portable pass, linked
// in): the kernels use the CPU's own math (cpu/simd.h's polynomial exp, A&S erfc, sigmoid) with
// the same f32 operations in the same order, and dropout's Philox stream, so y and dx must be the
// CPU's bit for bit (NaN as NaN: f16 NaN encodings differ) — every activation, f32/f16/bf16, with and without bias, p in {0, 0.1, 1},
// offsets that start mid-Philox-call, aligned (vector) and misaligned (scalar) buffers, in place.
// dbias sums rows in another order than the CPU's per-thread partial sums: relative L2 against
// the CPU and against a float64 sum of the CPU's dx (f32 <= 1e-5, f16/bf16 <= 1e-2), overwritten
// and accumulated, in shared memory (cols <= 12288) and in global memory (cols > 12288); it must
// be the same bits run to run. With p = 0, y is also checked against float64 activations
// (erf, tanh, exp in double): the CPU's approximations are within 1e-5 relative L2 for f32.
// Grid caps are lowered (2 elementwise blocks, 40 dbias blocks) so the kernels stride.
// emu-link: native/cpu/activation.cc native/core/threads.cc
#define SF_ACT_MAX_BLOCKS 2
#define SF_ACT_BWD_MAX_BLOCKS 40
#include "../activation.cu"
#include "compare.h"
#include "core/threads.h"

namespace {

using namespace cmp;
using seqfuse::Activation;
using seqfuse::BiasActArgs;

}  // namespace

int main() {
  std::mt19937 g(20261124);
  seqfuse::set_num_threads(1);
  // 45 x 130, 2 x 12300: more than 2 x 256 x 8 elements (the elementwise kernels stride), 45 rows
  // on 40 dbias blocks; 12300 columns: dbias accumulators in global memory
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {5, 130}, {64, 9}, {4, 1000}, {45, 130}, {2, 12300}};
  const float ps[] = {0.0f, 0.1f, 1.0f};
  const Activation acts[] = {Activation::None, Activation::Relu, Activation::Gelu, Activation::GeluTanh, Activation::Silu};
  int cases = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (auto& sh : shapes)
      for (Activation act : acts)
        for (float p : ps) {
          const int k = cases;
          const int64_t rows = sh[0], cols = sh[1], n = rows * cols;
          const bool with_bias = k % 2 == 0, with_dbias = k % 3 != 2;
          const int shift = k % 7 == 3 ? 1 : 0;
          const uint64_t offset = k % 4 == 1 ? 5 : k % 4 == 3 ? (uint64_t(1) << 32) + 3 : 0;
          char ctx[200];
          std::snprintf(ctx, sizeof ctx, "dtype %d [%ld, %ld] act %d p %g bias %d dbias %d shift %d offset %llu", int(t),
                        long(rows), long(cols), int(act), double(p), int(with_bias), int(with_dbias), shift,
                        (unsigned long long)offset);
          Buffers B;
          BiasActArgs a;
          a.dtype = t; a.act = act; a.rows = rows; a.cols = cols; a.dropout = p; a.seed = 0x9e3779b97f4a7c15ull + uint64_t(k);
          a.offset = offset;
          void* x = B.get(t, n, shift);
          fill(x, t, n, g, -5.0f, 5.0f);
          if (n > 2) put(x, t, 1, NAN);  // NaN through each activation (ReLU keeps it; vexp clamps it)
          void* bias = with_bias ? B.get(t, cols, shift) : nullptr;
          if (bias) fill(bias, t, cols, g, -1.0f, 1.0f);
          a.x = x; a.bias = bias;
          // forward
          void* y_cpu = B.get(t, n, shift);
          void* y_gpu = B.get(t, n, shift);
          a.y = y_cpu;
          seqfuse::bias_act_fwd_cpu(a);
          a.device = seqfuse::Device::CUDA;
          a.y = y_gpu;
          seqfuse::bias_act_fwd_cuda(a, seqfuse::Stream{});
          device_sync("biasAct forward");
          CHECK(same_values(y_cpu, y_gpu, n, t), "y: not the CPU's bits (%s)", ctx);
          if (p == 0.0f) {
            // the CPU's GELU / sigmoid approximations err by ~2e-7 |z| (act_simd.h), so the
            // error is relative to max(||y||, ||z||): one element deep in GELU's tail is far
            // below its absolute error
            std::vector<double> ref(static_cast<size_t>(n));
            double zn = 0;
            for (int64_t i = 0; i < n; ++i) {
              const double z = get(x, t, i) + (bias ? get(bias, t, i % cols) : 0.0);
              if (!std::isnan(z)) zn += z * z;
              ref[size_t(i)] = std::isnan(z) && act != Activation::Relu && act != Activation::None ? get(y_cpu, t, i) : act_ref(act, z);
              if (std::isnan(z) && act == Activation::Relu) ref[size_t(i)] = NAN;
            }
            expect_close("y", y_gpu, t, ref, "float64", ctx, std::sqrt(zn));
          }
          void* inplace = B.get(t, n, shift);
          std::memcpy(inplace, x, size_t(n) * esize(t));
          a.x = inplace; a.y = inplace;
          seqfuse::bias_act_fwd_cuda(a, seqfuse::Stream{});
          device_sync("biasAct forward in place");
          CHECK(same_bits(inplace, y_gpu, n, t), "y in place differs (%s)", ctx);
          a.x = x;
          // backward
          void* dy = B.get(t, n, shift);
          fill(dy, t, n, g, -1.0f, 1.0f);
          void* dx_cpu = B.get(t, n, shift);
          void* dx_gpu = B.get(t, n, shift);
          void* db0 = B.get(t, cols, shift);
          fill(db0, t, cols, g, -1.0f, 1.0f);
          void* db_cpu = B.get(t, cols, shift);
          void* db_gpu = B.get(t, cols, shift);
          void* db_gpu2 = B.get(t, cols, shift);
          for (void* q : {db_cpu, db_gpu, db_gpu2}) std::memcpy(q, db0, size_t(cols) * esize(t));
          a.accumulate = k % 5 < 2;
          a.dy = dy;
          a.device = seqfuse::Device::CPU;
          a.dx = dx_cpu; a.dbias = with_dbias ? db_cpu : nullptr;
          seqfuse::bias_act_bwd_cpu(a);
          a.device = seqfuse::Device::CUDA;
          a.dx = dx_gpu; a.dbias = with_dbias ? db_gpu : nullptr;
          seqfuse::bias_act_bwd_cuda(a, seqfuse::Stream{});
          device_sync("biasAct backward");
          CHECK(same_values(dx_cpu, dx_gpu, n, t), "dx: not the CPU's bits (%s)", ctx);
          if (with_dbias) {
            expect_close("dbias", db_gpu, t, values(db_cpu, t, cols), "CPU", ctx);
            // float64 sums of the CPU's f32 gradients: for f32 they are dx itself; for 16-bit,
            // dx is rounded, so the reference sums dx (an error the 1e-2 bound covers)
            std::vector<double> ref(size_t(cols), 0.0);
            for (int64_t i = 0; i < n; ++i) ref[size_t(i % cols)] += get(dx_cpu, t, i);
            if (a.accumulate)
              for (int64_t j = 0; j < cols; ++j) ref[size_t(j)] += get(db0, t, j);
            expect_close("dbias", db_gpu, t, ref, "float64", ctx);
          }
          // in place (dx = dy): the same bits
          std::memcpy(inplace, dy, size_t(n) * esize(t));
          a.dy = inplace; a.dx = inplace; a.dbias = with_dbias ? db_gpu2 : nullptr;
          seqfuse::bias_act_bwd_cuda(a, seqfuse::Stream{});
          device_sync("biasAct backward in place");
          CHECK(same_bits(inplace, dx_gpu, n, t), "dx in place differs (%s)", ctx);
          CHECK(same_bits(db_gpu2, db_gpu, cols, t), "dbias: a second run differs (%s)", ctx);
          ++cases;
        }
  // rows = 0: dbias becomes 0 (or stays, accumulating)
  for (int acc = 0; acc < 2; ++acc) {
    BiasActArgs a;
    a.device = seqfuse::Device::CUDA; a.rows = 0; a.cols = 3; a.accumulate = acc;
    float* db = managed<float>(3);
    for (int j = 0; j < 3; ++j) db[j] = float(j + 1);
    a.dbias = db;
    seqfuse::bias_act_bwd_cuda(a, seqfuse::Stream{});
    device_sync("biasAct backward, no rows");
    for (int j = 0; j < 3; ++j) CHECK(db[j] == (acc ? float(j + 1) : 0.0f), "no rows, accumulate %d: %g", acc, double(db[j]));
    cudaFree(db);
    ++cases;
  }
  std::printf("activation: %d cases (y, dx bit for bit against the CPU backend); largest relative L2 (y vs float64, dbias) f32 %.2e, f16/bf16 %.2e\n",
              cases, g_worst[0], g_worst[1]);
  return finish("activation");
}

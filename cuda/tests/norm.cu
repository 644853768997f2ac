// cuda/norm.cu against the CPU backend (native/cpu/norm.cc, its portable pass, linked in) and a
// float64 reference: LayerNorm and RMSNorm forward (y, mean, rstd) and backward (dx, dgamma,
// dbeta), f32/f16/bf16, with and without beta, with saved or recomputed statistics, dgamma/dbeta
// wanted or not, overwritten or accumulated, 16-byte aligned rows (vector path) and misaligned
// ones (scalar path), shapes that take every kernel: a warp per row at each chunk count, a block
// per row, the wide (global-memory) kernels, and backward grids that stride over more rows than
// they have blocks. The row sums run in another order than the CPU's, so outputs are compared by
// relative L2 (f32 <= 1e-5, f16/bf16 <= 1e-2), not bits; each GPU call also runs a second time
// (and once in place, dx = dy) and must give the same bits: the reductions are deterministic.
// An RMSNorm backward must leave dbeta alone, as the CPU does.
// emu-link: native/cpu/norm.cc native/core/threads.cc
// 40 backward blocks at most (512 in the library): the grid strides over rows and the column
// sums add more partial rows than their 16 slices with test-sized inputs
#define SF_NORM_BWD_MAX_BLOCKS 40
#include "../norm.cu"
#include "compare.h"
#include "core/threads.h"

namespace {

using namespace cmp;
using seqfuse::NormArgs;

// float64 reference of the forward and backward from the stored inputs
// dx_scale = ||rstd dy gamma||: dx = rstd (dy gamma - c1 - xhat c2) cancels (RMSNorm with one
// column: dx = rstd dy gamma eps / (x^2 + eps)), and any f32 implementation's error is relative
// to the terms, so dx is compared relative to max(||dx||, dx_scale).
struct Ref {
  std::vector<double> y, mean, rstd, dx, dg, db;
  double dx_scale = 0;
};
Ref reference(const NormArgs& a, const void* dy, const void* dg0, const void* db0) {
  const int64_t R = a.rows, C = a.cols;
  Ref r;
  r.y.resize(size_t(R * C)); r.dx.resize(size_t(R * C)); r.mean.resize(size_t(R)); r.rstd.resize(size_t(R));
  r.dg.assign(size_t(C), 0.0); r.db.assign(size_t(C), 0.0);
  for (int64_t i = 0; i < R; ++i) {
    double s = 0, ss = 0, mean = 0;
    for (int64_t j = 0; j < C; ++j) s += get(a.x, a.dtype, i * C + j);
    if (!a.rms) mean = s / double(C);
    for (int64_t j = 0; j < C; ++j) {
      const double d = get(a.x, a.dtype, i * C + j) - mean;
      ss += d * d;
    }
    const double rstd = 1.0 / std::sqrt(ss / double(C) + double(a.eps));
    r.mean[size_t(i)] = mean;
    r.rstd[size_t(i)] = rstd;
    double c1 = 0, c2 = 0;
    for (int64_t j = 0; j < C; ++j) {
      const double xh = (get(a.x, a.dtype, i * C + j) - mean) * rstd, g = get(a.gamma, a.dtype, j);
      r.y[size_t(i * C + j)] = xh * g + (a.beta ? get(a.beta, a.dtype, j) : 0.0);
      const double d = get(dy, a.dtype, i * C + j);
      c1 += d * g;
      c2 += d * g * xh;
      r.dg[size_t(j)] += d * xh;
      r.db[size_t(j)] += d;
    }
    c1 = a.rms ? 0.0 : c1 / double(C);
    c2 /= double(C);
    for (int64_t j = 0; j < C; ++j) {
      const double xh = (get(a.x, a.dtype, i * C + j) - mean) * rstd;
      const double term = rstd * get(dy, a.dtype, i * C + j) * get(a.gamma, a.dtype, j);
      r.dx[size_t(i * C + j)] = term - rstd * (c1 + xh * c2);
      r.dx_scale += term * term;
    }
  }
  r.dx_scale = std::sqrt(r.dx_scale);
  if (a.accumulate)
    for (int64_t j = 0; j < C; ++j) {
      r.dg[size_t(j)] += get(dg0, a.dtype, j);
      r.db[size_t(j)] += get(db0, a.dtype, j);
    }
  return r;
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  seqfuse::set_num_threads(1);
  // (rows, cols): warp per row at 1..8 chunks, vector and scalar; a block per row; the wide
  // kernels (cols > 512 threads x 8 scalar chunks, and f32 > 512 x 4 x 4 vector columns backward); 330 rows: a warp-mode backward of 42 blocks'
  // worth of rows (8 warps each) on 40 blocks; 45 rows of a block-mode backward on 40 blocks
  const int64_t shapes[][2] = {{1, 1},    {3, 7},     {17, 33},  {5, 130},  {33, 256}, {6, 512},  {9, 1000},
                               {7, 1024}, {3, 2048},  {4, 1030}, {2, 4104}, {2, 4097}, {2, 8200}, {330, 3}, {45, 1032}};
  int cases = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (auto& sh : shapes)
      for (int rms = 0; rms < 2; ++rms)
        for (int opt = 0; opt < 2; ++opt) {
          // options from the case number: beta, saved statistics, which of dgamma/dbeta, accumulate,
          // misalignment
          const int k = cases;
          const int64_t rows = sh[0], cols = sh[1], n = rows * cols;
          const int shift = (k / 3) % 4 == 3 ? 1 : 0;
          const bool with_beta = !rms && (opt == 0 || k % 2);
          const bool saved = opt == 1;
          const int grads = k % 3;  // 0: both, 1: dgamma only, 2: none
          char ctx[160];
          std::snprintf(ctx, sizeof ctx, "dtype %d [%ld, %ld] rms %d beta %d saved %d grads %d shift %d", int(t), long(rows),
                        long(cols), rms, int(with_beta), int(saved), grads, shift);
          Buffers B;
          NormArgs a;
          a.dtype = t; a.rms = rms; a.rows = rows; a.cols = cols; a.eps = 1e-5f;
          void* x = B.get(t, n, shift);
          {  // rows with an offset, so the mean matters
            std::uniform_real_distribution<float> u(-2.0f, 2.0f), off(-4.0f, 4.0f);
            for (int64_t r = 0; r < rows; ++r) {
              const float o = off(g);
              for (int64_t j = 0; j < cols; ++j) put(x, t, r * cols + j, o + u(g));
            }
          }
          void* gm = B.get(t, cols, shift);
          fill(gm, t, cols, g, 0.5f, 1.5f);
          void* bt = with_beta ? B.get(t, cols, shift) : nullptr;
          if (bt) fill(bt, t, cols, g, -1.0f, 1.0f);
          a.x = x; a.gamma = gm; a.beta = bt;
          // forward: CPU, GPU, GPU again
          void* y_cpu = B.get(t, n, shift);
          void* y_gpu = B.get(t, n, shift);
          void* y_gpu2 = B.get(t, n, shift);
          float* m_cpu = static_cast<float*>(B.get(DType::F32, rows));
          float* s_cpu = static_cast<float*>(B.get(DType::F32, rows));
          float* m_gpu = static_cast<float*>(B.get(DType::F32, rows));
          float* s_gpu = static_cast<float*>(B.get(DType::F32, rows));
          a.y = y_cpu; a.mean = m_cpu; a.rstd = s_cpu;
          seqfuse::norm_fwd_cpu(a);
          a.device = seqfuse::Device::CUDA;
          a.y = y_gpu; a.mean = m_gpu; a.rstd = s_gpu;
          seqfuse::norm_fwd_cuda(a, seqfuse::Stream{});
          device_sync("norm forward");
          a.y = y_gpu2; a.mean = nullptr; a.rstd = nullptr;  // optional outputs left out
          seqfuse::norm_fwd_cuda(a, seqfuse::Stream{});
          device_sync("norm forward again");
          // backward inputs
          void* dy = B.get(t, n, shift);
          fill(dy, t, n, g, -1.0f, 1.0f);
          void* dg0 = B.get(t, cols, shift);
          void* db0 = B.get(t, cols, shift);
          fill(dg0, t, cols, g, -1.0f, 1.0f);
          fill(db0, t, cols, g, -1.0f, 1.0f);
          a.accumulate = (k / 2) % 2 == 1;
          const Ref ref = reference(a, dy, dg0, db0);
          const std::vector<double> y_ref_cpu = values(y_cpu, t, n);
          expect_close("y", y_gpu, t, y_ref_cpu, "CPU", ctx);
          expect_close("y", y_gpu, t, ref.y, "float64", ctx);
          CHECK(same_bits(y_gpu, y_gpu2, n, t), "y: a second run differs (%s)", ctx);
          expect_close("mean", m_gpu, DType::F32, values(m_cpu, DType::F32, rows), "CPU", ctx);
          expect_close("rstd", s_gpu, DType::F32, values(s_cpu, DType::F32, rows), "CPU", ctx);
          expect_close("rstd", s_gpu, DType::F32, ref.rstd, "float64", ctx);
          if (!rms) expect_close("mean", m_gpu, DType::F32, ref.mean, "float64", ctx);
          // backward: CPU, GPU, GPU again in place (dx = dy)
          void* dx_cpu = B.get(t, n, shift);
          void* dx_gpu = B.get(t, n, shift);
          void* dg_cpu = B.get(t, cols, shift);
          void* db_cpu = B.get(t, cols, shift);
          void* dg_gpu = B.get(t, cols, shift);
          void* db_gpu = B.get(t, cols, shift);
          void* dg_gpu2 = B.get(t, cols, shift);
          void* db_gpu2 = B.get(t, cols, shift);
          for (void* p : {dg_cpu, dg_gpu, dg_gpu2}) std::memcpy(p, dg0, size_t(cols) * esize(t));
          for (void* p : {db_cpu, db_gpu, db_gpu2}) std::memcpy(p, db0, size_t(cols) * esize(t));
          a.dy = dy;
          a.mean = saved ? m_cpu : nullptr;
          a.rstd = saved ? s_cpu : nullptr;
          a.device = seqfuse::Device::CPU;
          a.dx = dx_cpu;
          a.dgamma = grads < 2 ? dg_cpu : nullptr;
          a.dbeta = grads == 0 ? db_cpu : nullptr;
          seqfuse::norm_bwd_cpu(a);
          a.device = seqfuse::Device::CUDA;
          a.dx = dx_gpu;
          a.dgamma = grads < 2 ? dg_gpu : nullptr;
          a.dbeta = grads == 0 ? db_gpu : nullptr;
          seqfuse::norm_bwd_cuda(a, seqfuse::Stream{});
          device_sync("norm backward");
          expect_close("dx", dx_gpu, t, values(dx_cpu, t, n), "CPU", ctx, ref.dx_scale);
          expect_close("dx", dx_gpu, t, ref.dx, "float64", ctx, ref.dx_scale);
          if (grads < 2) {
            expect_close("dgamma", dg_gpu, t, values(dg_cpu, t, cols), "CPU", ctx);
            expect_close("dgamma", dg_gpu, t, ref.dg, "float64", ctx);
          } else {
            CHECK(same_bits(dg_gpu, dg0, cols, t), "dgamma written though not asked for (%s)", ctx);
          }
          if (grads == 0 && !rms) {
            expect_close("dbeta", db_gpu, t, values(db_cpu, t, cols), "CPU", ctx);
            expect_close("dbeta", db_gpu, t, ref.db, "float64", ctx);
          } else {
            CHECK(same_bits(db_gpu, db0, cols, t), "dbeta written though not asked for or RMSNorm (%s)", ctx);
          }
          // in place: dx over a copy of dy; the same bits as out of place
          void* inplace = B.get(t, n, shift);
          std::memcpy(inplace, dy, size_t(n) * esize(t));
          a.dy = inplace; a.dx = inplace;
          a.dgamma = grads < 2 ? dg_gpu2 : nullptr;
          a.dbeta = grads == 0 ? db_gpu2 : nullptr;
          seqfuse::norm_bwd_cuda(a, seqfuse::Stream{});
          device_sync("norm backward in place");
          CHECK(same_bits(inplace, dx_gpu, n, t), "dx in place differs (%s)", ctx);
          CHECK(same_bits(dg_gpu2, dg_gpu, cols, t), "dgamma: a second run differs (%s)", ctx);
          CHECK(same_bits(db_gpu2, db_gpu, cols, t), "dbeta: a second run differs (%s)", ctx);
          ++cases;
        }
  // rows = 0: no output rows, dgamma/dbeta become 0 (or stay, accumulating), as the CPU
  for (int acc = 0; acc < 2; ++acc) {
    NormArgs a;
    a.device = seqfuse::Device::CUDA; a.rows = 0; a.cols = 5; a.accumulate = acc;
    float* gm = managed<float>(5);
    float* dg = managed<float>(5);
    float* db = managed<float>(5);
    for (int j = 0; j < 5; ++j) gm[j] = 1.0f, dg[j] = float(j + 1), db[j] = -float(j + 1);
    a.gamma = gm; a.dgamma = dg; a.dbeta = db;
    seqfuse::norm_bwd_cuda(a, seqfuse::Stream{});
    device_sync("norm backward, no rows");
    for (int j = 0; j < 5; ++j)
      CHECK(dg[j] == (acc ? float(j + 1) : 0.0f) && db[j] == (acc ? -float(j + 1) : 0.0f), "no rows, accumulate %d: %g %g",
            acc, double(dg[j]), double(db[j]));
    for (float* p : {gm, dg, db}) cudaFree(p);
    ++cases;
  }
  std::printf("norm: %d cases against the CPU backend and float64; largest relative L2 f32 %.2e, f16/bf16 %.2e\n", cases,
              g_worst[0], g_worst[1]);
  return finish("norm");
}

// cuda/softmax.cu against the CPU backend (native/cpu/softmax.cc, its portable pass, linked in)
// and a float64 reference: forward and backward, f32/f16/bf16, no mask / a full additive mask /
// a mask broadcast over the leading dim / a row-constant mask (-Inf rows hidden, +Inf and NaN rows
// NaN), causal with sq = cols, sq < cols and sq > cols (rows that see nothing), rows holding a NaN
// or +Inf (NaN rows), aligned rows (vector path) and misaligned ones (scalar path), shapes that
// take every kernel (a warp per row at 1..8 chunks, a block per row, the wide kernels). The row
// sums run in another order than the CPU's (and exp is expf, not the CPU's polynomial), so values
// are compared by relative L2 (f32 <= 1e-5, f16/bf16 <= 1e-2) with NaN positions equal; each
// GPU call runs again in place (y = x, dx = dy) and must give the same bits.
// emu-link: native/cpu/softmax.cc native/core/threads.cc
#include "../softmax.cu"
#include "compare.h"
#include "core/threads.h"

namespace {

using namespace cmp;
using seqfuse::SoftmaxArgs;

int64_t mask_index(const SoftmaxArgs& a, int64_t r, int64_t j) {
  int64_t off = 0;
  for (int d = a.nlead - 1; d >= 0; --d) {
    off += (r % a.lead[d]) * a.mask_stride[d];
    r /= a.lead[d];
  }
  return off + j * a.mask_col_stride;
}

// float64 softmax as ops/softmax.h specifies it
std::vector<double> reference(const SoftmaxArgs& a) {
  const int64_t R = a.rows, C = a.cols;
  std::vector<double> y(size_t(R * C), 0.0);
  for (int64_t r = 0; r < R; ++r) {
    int64_t n = C;
    if (a.causal) {
      const int64_t sq = a.lead[a.nlead - 1], vis = r % sq + C - sq + 1;
      n = vis < 0 ? 0 : vis > C ? C : vis;
    }
    bool nan = false;
    if (a.mask && a.mask_col_stride == 0) {  // a row-constant mask: -Inf hides the row, +Inf or NaN makes it NaN
      const double m = a.mask[mask_index(a, r, 0)];
      if (m == -INFINITY) n = 0;
      nan = std::isnan(m) || m == INFINITY;
    }
    std::vector<double> v(static_cast<size_t>(n));
    double mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      double u = get(a.x, a.dtype, r * C + j);
      if (a.mask) {
        const double m = a.mask[mask_index(a, r, j)];
        u = a.mask_col_stride == 0 && std::isfinite(m) ? u : u + m;  // a finite row constant cancels
      }
      v[size_t(j)] = u;
      nan = nan || std::isnan(u) || u == INFINITY;
      if (u > mx) mx = u;
    }
    double* out = y.data() + r * C;
    if (nan) {
      for (int64_t j = 0; j < C; ++j) out[j] = NAN;
      continue;
    }
    if (mx == -INFINITY) continue;  // nothing visible: zeros
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::exp(v[size_t(j)] - mx);
    for (int64_t j = 0; j < n; ++j) out[j] = std::exp(v[size_t(j)] - mx) / s;
  }
  return y;
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  seqfuse::set_num_threads(1);
  struct Shape {
    int nlead;
    int64_t lead[3], cols;
  };
  // last lead dim = sq for causal. Warp per row at 1..8 chunks; a block per row (2048, 1030,
  // 8200 forward); wide (4097 scalar; 8200 f32/16-bit vector backward > 512 x 16)
  const Shape shapes[] = {{1, {1}, 1},         {1, {3}, 7},        {2, {2, 5}, 7},    {2, {2, 17}, 33},   {1, {5}, 130},
                          {3, {2, 2, 9}, 256}, {2, {2, 9}, 4},     {1, {3}, 1000},    {1, {2}, 1024},     {2, {2, 2}, 2048},
                          {1, {3}, 1030},      {1, {2}, 4097},     {1, {2}, 8200},    {2, {3, 11}, 512}};
  int cases = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const Shape& sh : shapes)
      for (int mk = 0; mk < 4; ++mk)  // mask: none, full, broadcast over lead[0], row-constant
        for (int causal = 0; causal < 2; ++causal) {
          const int k = cases;
          int64_t rows = 1;
          for (int d = 0; d < sh.nlead; ++d) rows *= sh.lead[d];
          const int64_t cols = sh.cols, n = rows * cols;
          if (n > 4000 && (mk == 2 || (t != DType::F32 && causal))) continue;  // the large shapes: fewer cases
          const int shift = k % 5 == 4 ? 1 : 0;
          const int special = k % 3;  // 1: a NaN in row 0, 2: a +Inf in the last row
          char ctx[200];
          std::snprintf(ctx, sizeof ctx, "dtype %d rows %ld cols %ld mask %d causal %d shift %d special %d", int(t),
                        long(rows), long(cols), mk, causal, shift, special);
          Buffers B;
          SoftmaxArgs a;
          a.dtype = t; a.rows = rows; a.cols = cols; a.nlead = sh.nlead; a.causal = causal;
          for (int d = 0; d < sh.nlead; ++d) a.lead[d] = sh.lead[d];
          void* x = B.get(t, n, shift);
          fill(x, t, n, g, -4.0f, 4.0f);
          if (special == 1) put(x, t, (cols - 1) / 2, NAN);
          if (special == 2) put(x, t, n - 1, INFINITY);
          a.x = x;
          if (mk > 0) {
            // strides of a [lead..., cols] mask (mk 1), [1, lead[1..], cols] (mk 2), [lead..., 1] (mk 3)
            int64_t stride = mk == 3 ? 1 : cols, size = 1;
            a.mask_col_stride = mk == 3 ? 0 : 1;
            for (int d = sh.nlead - 1; d >= 0; --d) {
              a.mask_stride[d] = mk == 2 && d == 0 && sh.nlead > 1 ? 0 : stride;
              stride *= a.mask_stride[d] ? sh.lead[d] : 1;
            }
            size = stride;
            float* m = static_cast<float*>(B.get(DType::F32, size));
            std::uniform_real_distribution<float> u(-3.0f, 0.0f), coin(0.0f, 1.0f);
            for (int64_t i = 0; i < size; ++i) m[i] = coin(g) < 0.1f ? -INFINITY : u(g);
            if (mk == 3 && size > 2) m[1] = INFINITY, m[2] = NAN;  // rows hidden (-Inf), NaN (+Inf, NaN)
            if (mk == 1 && rows > 1)
              for (int64_t j = 0; j < cols; ++j) m[cols + j] = -INFINITY;  // row 1 sees nothing
            a.mask = m;
          }
          // forward: CPU, GPU, GPU in place
          void* y_cpu = B.get(t, n, shift);
          void* y_gpu = B.get(t, n, shift);
          a.y = y_cpu;
          seqfuse::softmax_fwd_cpu(a);
          a.device = seqfuse::Device::CUDA;
          a.y = y_gpu;
          seqfuse::softmax_fwd_cuda(a, seqfuse::Stream{});
          device_sync("softmax forward");
          expect_close("y", y_gpu, t, values(y_cpu, t, n), "CPU", ctx);
          expect_close("y", y_gpu, t, reference(a), "float64", ctx);
          void* inplace = B.get(t, n, shift);
          std::memcpy(inplace, x, size_t(n) * esize(t));
          a.x = inplace; a.y = inplace;
          seqfuse::softmax_fwd_cuda(a, seqfuse::Stream{});
          device_sync("softmax forward in place");
          CHECK(same_bits(inplace, y_gpu, n, t), "y in place differs (%s)", ctx);
          // backward on the CPU's y: dx = y (dy - sum(dy y))
          void* dy = B.get(t, n, shift);
          fill(dy, t, n, g, -1.0f, 1.0f);
          void* dx_cpu = B.get(t, n, shift);
          void* dx_gpu = B.get(t, n, shift);
          a.y = y_cpu; a.dy = dy;
          a.device = seqfuse::Device::CPU;
          a.dx = dx_cpu;
          seqfuse::softmax_bwd_cpu(a);
          a.device = seqfuse::Device::CUDA;
          a.dx = dx_gpu;
          seqfuse::softmax_bwd_cuda(a, seqfuse::Stream{});
          device_sync("softmax backward");
          std::vector<double> ref(static_cast<size_t>(n));
          double scale = 0;
          for (int64_t r = 0; r < rows; ++r) {
            double s = 0;
            for (int64_t j = 0; j < cols; ++j) s += get(dy, t, r * cols + j) * get(y_cpu, t, r * cols + j);
            for (int64_t j = 0; j < cols; ++j) {
              const double yv = get(y_cpu, t, r * cols + j), d = get(dy, t, r * cols + j);
              ref[size_t(r * cols + j)] = yv * (d - s);
              if (!std::isnan(yv)) scale += yv * d * yv * d;
            }
          }
          // dx = y dy - y s cancels where y dy ~ y s: errors are relative to ||y dy||
          scale = std::sqrt(scale);
          expect_close("dx", dx_gpu, t, values(dx_cpu, t, n), "CPU", ctx, scale);
          expect_close("dx", dx_gpu, t, ref, "float64", ctx, scale);
          std::memcpy(inplace, dy, size_t(n) * esize(t));
          a.dy = inplace; a.dx = inplace;
          seqfuse::softmax_bwd_cuda(a, seqfuse::Stream{});
          device_sync("softmax backward in place");
          CHECK(same_bits(inplace, dx_gpu, n, t), "dx in place differs (%s)", ctx);
          ++cases;
        }
  std::printf("softmax: %d cases against the CPU backend and float64; largest relative L2 f32 %.2e, f16/bf16 %.2e\n", cases,
              g_worst[0], g_worst[1]);
  return finish("softmax");
}

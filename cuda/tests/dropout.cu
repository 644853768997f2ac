// cuda/dropout.cu against the CPU backend (native/cpu/dropout.cc, its portable pass, linked in):
// the same f32 operations in the same order, so every output is the CPU's bit for bit — the mask
// (Philox, every offset alignment), the scale, bias, residual, the 16-bit roundings, and dbias
// (the CPU's f32 partial sums with one thread add its rows in order, as the column kernel does).
// Random inputs, odd shapes, p in {0, 0.1, 0.5, 1}, offsets that start mid-Philox-call.
// emu-link: native/cpu/dropout.cc native/core/threads.cc
#include "../dropout.cu"
#include "compare.h"
#include "core/threads.h"

namespace {

using namespace cmp;
using seqfuse::DropoutArgs;

}  // namespace

int main() {
  std::mt19937 g(20261124);
  seqfuse::set_num_threads(1);  // the CPU's dbias partial sums then add rows in order, as the kernel
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {5, 130}, {64, 9}};
  const float ps[] = {0.0f, 0.1f, 0.5f, 1.0f};
  const uint64_t offsets[] = {0, 5, (uint64_t(1) << 32) + 3};
  int cases = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (auto& sh : shapes)
      for (float p : ps)
        for (uint64_t off : offsets)
          for (int form = 0; form < 4; ++form) {  // bit 0: bias, bit 1: residual
            const int64_t rows = sh[0], cols = sh[1], n = rows * cols;
            DropoutArgs a;
            a.dtype = t; a.rows = rows; a.cols = cols; a.p = p; a.seed = 0x1234567890abcdefull + uint64_t(cases); a.offset = off;
            a.x = random_buf(t, n, g, -2.0f, 2.0f);
            a.bias = form & 1 ? random_buf(t, cols, g, -2.0f, 2.0f) : nullptr;
            a.residual = form & 2 ? random_buf(t, n, g, -2.0f, 2.0f) : nullptr;
            void* y_cpu = poisoned_buf(t, n);
            void* y_gpu = poisoned_buf(t, n);
            a.y = y_cpu;
            seqfuse::dropout_fwd_cpu(a);
            a.device = seqfuse::Device::CUDA;
            a.y = y_gpu;
            seqfuse::dropout_fwd_cuda(a, seqfuse::Stream{});
            device_sync("dropout forward");
            CHECK(same_bits(y_cpu, y_gpu, n, t), "forward: dtype %d [%ld, %ld] p %g offset %llu form %d", int(t), long(rows),
                  long(cols), double(p), (unsigned long long)off, form);
            // backward: dx = drop(dy), dbias = column sums (overwritten, then accumulated)
            a.dy = random_buf(t, n, g, -2.0f, 2.0f);
            const void* dy_keep = a.dy;
            void* dx_cpu = poisoned_buf(t, n);
            void* dx_gpu = poisoned_buf(t, n);
            void* db_cpu = random_buf(t, cols, g, -2.0f, 2.0f);
            void* db_gpu = poisoned_buf(t, cols);
            std::memcpy(db_gpu, db_cpu, size_t(cols) * esize(t));
            std::vector<unsigned char> db_orig(static_cast<unsigned char*>(db_cpu), static_cast<unsigned char*>(db_cpu) + cols * esize(t));
            a.accumulate = form & 1;
            a.device = seqfuse::Device::CPU;
            a.dx = dx_cpu; a.dbias = db_cpu;
            seqfuse::dropout_bwd_cpu(a);
            a.device = seqfuse::Device::CUDA;
            a.dx = dx_gpu; a.dbias = db_gpu;
            seqfuse::dropout_bwd_cuda(a, seqfuse::Stream{});
            device_sync("dropout backward");
            CHECK(same_bits(dx_cpu, dx_gpu, n, t), "backward dx: dtype %d [%ld, %ld] p %g offset %llu", int(t), long(rows),
                  long(cols), double(p), (unsigned long long)off);
            CHECK(same_bits(db_cpu, db_gpu, cols, t), "backward dbias: dtype %d [%ld, %ld] p %g accumulate %d", int(t),
                  long(rows), long(cols), double(p), int(a.accumulate));
            // in place (dx = dy, as the layer's column sums): the same bits
            std::memcpy(dx_gpu, a.dy, size_t(n) * esize(t));
            std::memcpy(db_gpu, db_orig.data(), db_orig.size());
            a.dy = dx_gpu; a.dx = dx_gpu;
            seqfuse::dropout_bwd_cuda(a, seqfuse::Stream{});
            device_sync("dropout backward in place");
            CHECK(same_bits(dx_cpu, dx_gpu, n, t), "backward in place dx: dtype %d [%ld, %ld] p %g", int(t), long(rows), long(cols), double(p));
            CHECK(same_bits(db_cpu, db_gpu, cols, t), "backward in place dbias: dtype %d [%ld, %ld] p %g", int(t), long(rows), long(cols), double(p));
            a.dy = nullptr;
            // (a.dy pointed at a random buffer that is now dx_gpu's copy source: free it via dy_keep)
            for (const void* q : {a.x, a.bias, a.residual, dy_keep, static_cast<const void*>(y_cpu), static_cast<const void*>(y_gpu),
                                  static_cast<const void*>(dx_cpu), static_cast<const void*>(dx_gpu), static_cast<const void*>(db_cpu),
                                  static_cast<const void*>(db_gpu)})
              if (q) cudaFree(const_cast<void*>(q));
            ++cases;
          }
  // the mask really drops: at p = 0.5 about half of 4096 elements are zero
  {
    const int64_t n = 4096;
    DropoutArgs a;
    a.rows = 1; a.cols = n; a.p = 0.5f; a.seed = 7; a.device = seqfuse::Device::CUDA;
    float* x = managed<float>(n);
    float* y = managed<float>(n);
    for (int64_t i = 0; i < n; ++i) x[i] = 1.0f, y[i] = -1.0f;
    a.x = x; a.y = y;
    seqfuse::dropout_fwd_cuda(a, seqfuse::Stream{});
    device_sync("dropout p 0.5");
    int zeros = 0, twos = 0;
    for (int64_t i = 0; i < n; ++i) zeros += y[i] == 0.0f, twos += y[i] == 2.0f;
    CHECK(zeros + twos == n && zeros > 1800 && zeros < 2300, "p 0.5: %d zeros, %d kept of %ld", zeros, twos, long(n));
    cudaFree(x);
    cudaFree(y);
  }
  std::printf("dropout: %d cases against the CPU backend\n", cases);
  return finish("dropout");
}

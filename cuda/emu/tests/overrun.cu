// Memory errors that must not pass silently: an out-of-bounds global write (also into
// cudaMallocAsync memory, exact-sized like cudaMalloc's), a dynamic shared
// memory overrun, a static __shared__ overrun and a kernel-local array overrun each kill the
// program under AddressSanitizer.
// The parent runs this program again with a mode argument and expects the child to fail with
// ASan's report; a correct use of the same memory must pass in the parent. Built without ASan
// (test:emu's -O2 pass) only the correct uses run.

#include "check.h"

// out [n]: thread i writes out[i]; launched with more threads than n.
__global__ void write_all(float* out) {
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}

// Dynamic shared memory of `n` floats: thread t writes element t + shift, then the block sums.
__global__ void dynamic_smem(float* out, int shift) {
  SF_DYNAMIC_SHARED(float, s);
  s[threadIdx.x + shift] = float(threadIdx.x);
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0;
    for (unsigned i = 0; i < blockDim.x; ++i) sum += s[i + shift];
    *out = sum;
  }
}

// Static shared memory of 64 floats, indexed by thread + shift.
__global__ void static_smem(float* out, int shift) {
  __shared__ float s[64];
  s[threadIdx.x + shift] = float(threadIdx.x);
  __syncthreads();
  if (threadIdx.x == 0) *out = s[63];
}

// A per-thread local array indexed past its end after a barrier (the fiber was switched out and
// back in between, so the check needs the fiber's stack redzones intact).
__global__ void local_array(float* out, int n) {
  float local[8];
  for (int i = 0; i < 8; ++i) local[i] = float(i);
  __syncthreads();
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += local[i];
  out[threadIdx.x] = sum;
}

int run_child(const char* mode) {
  float* buf = managed<float>(100);
  if (!std::strcmp(mode, "global")) SF_LAUNCH(write_all, 4, 32, 0, 0)(buf);             // 128 writes into 100
  if (!std::strcmp(mode, "dynamic")) SF_LAUNCH(dynamic_smem, 1, 64, 64 * sizeof(float), 0)(buf, 1);
  if (!std::strcmp(mode, "static")) SF_LAUNCH(static_smem, 1, 64, 0, 0)(buf, 8);
  if (!std::strcmp(mode, "stack")) SF_LAUNCH(local_array, 1, 64, 0, 0)(buf, 9);
  if (!std::strcmp(mode, "async")) {
    void* p = nullptr;
    cudaMallocAsync(&p, 100 * sizeof(float), 0);
    SF_LAUNCH(write_all, 4, 32, 0, 0)(static_cast<float*>(p));
    cudaFreeAsync(p, 0);
  }
  cudaDeviceSynchronize();
  cudaFree(buf);
  std::printf("child %s finished without an error\n", mode);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1) return run_child(argv[1]);
  float* out = managed<float>(128);
  SF_LAUNCH(write_all, 4, 32, 0, 0)(out);
  SF_LAUNCH(dynamic_smem, 1, 64, 64 * sizeof(float), 0)(out, 0);
  cudaDeviceSynchronize();
  CHECK(*out == 2016.0f, "dynamic shared sum %g, want 2016", *out);
  SF_LAUNCH(static_smem, 1, 64, 0, 0)(out, 0);
  cudaDeviceSynchronize();
  CHECK(*out == 63.0f, "static shared %g, want 63", *out);
  SF_LAUNCH(local_array, 1, 64, 0, 0)(out, 8);
  cudaDeviceSynchronize();
  CHECK(out[63] == 28.0f, "local array sum %g, want 28", out[63]);
  cudaFree(out);
#if !defined(__CUDACC__) && defined(SF_EMU_ASAN)
  expect_child_failure(argv[0], "global", "heap-buffer-overflow");
  expect_child_failure(argv[0], "dynamic", "heap-buffer-overflow");
  expect_child_failure(argv[0], "static", "global-buffer-overflow");
  expect_child_failure(argv[0], "stack", "stack-buffer-overflow");
  expect_child_failure(argv[0], "async", "heap-buffer-overflow");
#endif
  return finish("overrun");
}

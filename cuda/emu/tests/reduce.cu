// Block reduction through static __shared__ memory and __syncthreads: right with every barrier,
// detectably wrong when the barrier between the shared-memory writes and the first read is
// missing. Also checks threadIdx/blockIdx/blockDim/gridDim over 3-D grids and blocks, and
// __syncthreads_count/_and/_or, and that stream-ordered allocation (cudaMallocAsync/cudaFreeAsync)
// gives usable device memory.
#include "check.h"

// x [blocks * 128], sums [blocks]; one block of 128 threads per 128 inputs.
__global__ void block_sum(const float* x, float* sums) {
  __shared__ float s[128];
  const int t = threadIdx.x;
  s[t] = x[blockIdx.x * 128 + t];
  __syncthreads();
  for (int stride = 64; stride > 0; stride >>= 1) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) sums[blockIdx.x] = s[0];
}

// The same without the barrier after the writes: thread t reads s[t + stride] before the
// thread that owns it has written it.
__global__ void block_sum_racy(const float* x, float* sums) {
  __shared__ float s[128];
  const int t = threadIdx.x;
  s[t] = x[blockIdx.x * 128 + t];
  for (int stride = 64; stride > 0; stride >>= 1) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) sums[blockIdx.x] = s[0];
}

// ids [grid threads * 8]: each thread writes its coordinates where its global linear id says.
__global__ void coordinates(unsigned* ids) {
  const unsigned bl = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tl = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  unsigned* o = ids + (bl * blockDim.x * blockDim.y * blockDim.z + tl) * 8;
  o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
  o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
  o[6] = blockDim.x * blockDim.y * blockDim.z;
  o[7] = gridDim.x * gridDim.y * gridDim.z;
}

// counts [3]: block of 96 threads, predicate "t is odd" / "t < 96" / "t == 95".
__global__ void barrier_votes(int* counts) {
  const int t = threadIdx.x;
  const int c = __syncthreads_count(t & 1);
  const int a = __syncthreads_and(t < 96);
  const int o = __syncthreads_or(t == 95);
  if (t == 0) { counts[0] = c; counts[1] = a; counts[2] = o; }
}

int main() {
  const int blocks = 5;
  float* x = managed<float>(blocks * 128);
  float* sums = nullptr;  // stream-ordered allocation (device memory: read back by a copy)
  CHECK(cudaMallocAsync(reinterpret_cast<void**>(&sums), blocks * sizeof(float), 0) == cudaSuccess, "cudaMallocAsync");
  float* sums_host = managed<float>(blocks);
  for (int i = 0; i < blocks * 128; ++i) x[i] = float(i % 7 + 1);  // integers: every order sums exactly
  SF_LAUNCH(block_sum, blocks, 128, 0, 0)(x, sums);
  cudaMemcpyAsync(sums_host, sums, blocks * sizeof(float), cudaMemcpyDeviceToHost, 0);
  cudaDeviceSynchronize();
  for (int b = 0; b < blocks; ++b) {
    float want = 0;
    for (int i = 0; i < 128; ++i) want += x[b * 128 + i];
    CHECK(sums_host[b] == want, "block %d: sum %g, want %g", b, sums_host[b], want);
  }

  SF_LAUNCH(block_sum_racy, blocks, 128, 0, 0)(x, sums);
  cudaMemcpyAsync(sums_host, sums, blocks * sizeof(float), cudaMemcpyDeviceToHost, 0);
  cudaDeviceSynchronize();
  int wrong = 0;
  for (int b = 0; b < blocks; ++b) {
    float want = 0;
    for (int i = 0; i < 128; ++i) want += x[b * 128 + i];
    wrong += sums_host[b] != want;
  }
#if !defined(__CUDACC__)
  CHECK(wrong == blocks, "the missing barrier must corrupt every block's sum, %d of %d wrong", wrong, blocks);
#endif

  const dim3 grid(3, 2, 2), block(5, 3, 2);
  const unsigned nthreads = 3 * 2 * 2 * 5 * 3 * 2;
  unsigned* ids = managed<unsigned>(nthreads * 8);
  for (unsigned i = 0; i < nthreads * 8; ++i) ids[i] = 0xdeadbeef;
  SF_LAUNCH(coordinates, grid, block, 0, 0)(ids);
  cudaDeviceSynchronize();
  for (unsigned g = 0; g < nthreads; ++g) {
    const unsigned tl = g % 30, bl = g / 30;
    const unsigned want[8] = {tl % 5, tl / 5 % 3, tl / 15, bl % 3, bl / 3 % 2, bl / 6, 30, 12};
    for (int k = 0; k < 8; ++k) CHECK(ids[g * 8 + k] == want[k], "thread %u field %d: %u, want %u", g, k, ids[g * 8 + k], want[k]);
  }

  int* counts = managed<int>(3);
  SF_LAUNCH(barrier_votes, 1, 96, 0, 0)(counts);
  cudaDeviceSynchronize();
  CHECK(counts[0] == 48 && counts[1] == 1 && counts[2] == 1, "votes %d %d %d, want 48 1 1", counts[0], counts[1], counts[2]);

  cudaFree(x);
  CHECK(cudaFreeAsync(sums, 0) == cudaSuccess, "cudaFreeAsync");
  cudaFree(sums_host);
  cudaFree(ids);
  cudaFree(counts);
  return finish("reduce");
}

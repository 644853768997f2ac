// cuda/colsum.cuh — the second pass of the deterministic column reductions (dgamma/dbeta in
// norm.cu, dbias in activation.cu): a first kernel leaves one f32 partial row of cols floats per
// block (each block adds its rows in a fixed order), in a stream-ordered scratch buffer; colsum
// adds the partial rows in a fixed order, so results are the same bits run to run, with no atomics.
#pragma once
#include "common.cuh"

namespace seqfuse {
namespace gpu {

constexpr int kColTile = 32, kColSlices = 16;  // colsum_kernel block: 32 columns x 16 slices

// out_y[j] (+)= sum over p < P of part_y[p * cols + j] for output y = blockIdx.y (0: part0 ->
// out0, 1: part1 -> out1). grid (ceil(cols / 32), outputs), block (32, 16): thread (tx, ty) adds
// partial rows ty, ty + 16, ... of column blockIdx.x * 32 + tx in order (a warp reads 32
// consecutive floats per partial row), then thread (tx, 0) adds the 16 slice sums in order
// (static shared memory 16 x 33 floats), adds the old value when accumulating, and rounds once
// to T. P = 0 (no rows) gives 0, or leaves the old value.
template <class T>
__global__ void __launch_bounds__(kColTile * kColSlices)
    colsum_kernel(const float* part0, T* out0, const float* part1, T* out1, int64_t P, int64_t cols, bool accumulate) {
  __shared__ float s[kColSlices][kColTile + 1];
  const float* part = blockIdx.y ? part1 : part0;
  T* out = blockIdx.y ? out1 : out0;
  const int64_t j = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  float acc = 0.0f;
  if (j < cols)
    for (int64_t p = threadIdx.y; p < P; p += kColSlices) acc += part[p * cols + j];
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float total = 0.0f;
    for (int i = 0; i < kColSlices; ++i) total += s[i][threadIdx.x];
    out[j] = from_f32<T>(accumulate ? __fadd_rn(to_f32(out[j]), total) : total);
  }
}

// Launches colsum_kernel for one or two outputs (part1/out1 null: one).
template <class T>
void colsum(const float* part0, T* out0, const float* part1, T* out1, int64_t P, int64_t cols, bool accumulate,
            cudaStream_t stream, const char* op) {
  SF_LAUNCH(colsum_kernel<T>, dim3(unsigned((cols + kColTile - 1) / kColTile), out1 ? 2u : 1u), dim3(kColTile, kColSlices), 0,
            stream)(part0, out0, part1, out1, P, cols, accumulate);
  check_launch(op);
}

}  // namespace gpu
}  // namespace seqfuse

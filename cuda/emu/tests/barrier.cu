// The emulator's errors: barrier divergence (threads exit while others wait, or wait at
// different __syncthreads), warp collectives that cannot complete or are misused, and invalid
// launch configurations. Each must throw sfemu::Error naming the problem; a good launch after
// an aborted one must still work.
#include "check.h"

// Block of 32: threads 16..31 skip the barrier and exit.
__global__ void exit_while_waiting(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1;
}

// Block of 64: the two halves wait at different barriers.
__global__ void two_barriers(int* out) {
  if (threadIdx.x < 32) {
    out[threadIdx.x] = 1;
    __syncthreads();
  } else {
    out[threadIdx.x] = 2;
    __syncthreads();
  }
}

// Block of 32: lane 31 exits before a full-mask shuffle.
__global__ void shuffle_after_exit(int* out) {
  if (threadIdx.x == 31) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);
}

// Block of 32: lane 5 calls a shuffle whose mask leaves it out.
__global__ void lane_not_in_mask(int* out) {
  out[threadIdx.x] = __shfl_sync(threadIdx.x == 5 ? 0x1u : 0xffffffffu, int(threadIdx.x), 0);
}

// Block of 32: half the warp in a ballot, half in a shuffle, both with the full mask.
__global__ void mixed_collectives(int* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = int(__ballot_sync(0xffffffffu, 1));
  else out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}

// Block of 64: warp 0 waits at a block barrier, warp 1 in a shuffle that lane 63 never joins.
__global__ void barrier_vs_warp(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else if (threadIdx.x != 63) {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  } else {
    __syncthreads();
  }
}

__global__ void fill(int* out, int v) {
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

int main() {
  int* out = managed<int>(64);
  expect_emu_error("exit while others wait", [&] { SF_LAUNCH(exit_while_waiting, 1, 32, 0, 0)(out); },
                   "exited while threads wait at __syncthreads");
  expect_emu_error("different barriers", [&] { SF_LAUNCH(two_barriers, 1, 64, 0, 0)(out); }, "barrier divergence");
  expect_emu_error("shuffle after exit", [&] { SF_LAUNCH(shuffle_after_exit, 1, 32, 0, 0)(out); },
                   "waits for lane 31, which has exited");
  expect_emu_error("lane not in mask", [&] { SF_LAUNCH(lane_not_in_mask, 1, 32, 0, 0)(out); },
                   "the calling lane 5 is not in mask");
  expect_emu_error("mixed collectives", [&] { SF_LAUNCH(mixed_collectives, 1, 32, 0, 0)(out); },
                   "are in different collectives");
  expect_emu_error("barrier against shuffle", [&] { SF_LAUNCH(barrier_vs_warp, 1, 64, 0, 0)(out); }, "deadlock");
  expect_emu_error("block of 1025 threads", [&] { SF_LAUNCH(fill, 1, 1025, 0, 0)(out, 0); }, "invalid block");
  expect_emu_error("empty grid", [&] { SF_LAUNCH(fill, 0, 32, 0, 0)(out, 0); }, "invalid grid");
  expect_emu_error("too much shared memory", [&] { SF_LAUNCH(fill, 1, 32, 300000, 0)(out, 0); }, "exceeds");

  // The executor recovers: a correct launch after the aborted ones.
  SF_LAUNCH(fill, 2, 32, 0, 0)(out, 7);
  cudaDeviceSynchronize();
  for (int i = 0; i < 64; ++i) CHECK(out[i] == 7, "out[%d] = %d after recovery", i, out[i]);
  cudaFree(out);
  return finish("barrier");
}

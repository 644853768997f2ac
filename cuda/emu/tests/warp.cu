// Warp collectives against hand-computed results: the four shuffles with every width, shuffles of
// 8-byte and half values, ballot/any/all, match_any, reduce_add, __activemask, __syncwarp with
// partial masks, and a warp-shuffle sum.
#include "check.h"

constexpr int kThreads = 64;  // two warps

// out [4 ops][6 widths][64 threads]; value of lane l in warp w is 100*w + l.
__global__ void shuffles(int* out) {
  const int t = threadIdx.x, v = 100 * (t / 32) + t % 32;
  for (int wi = 0; wi < 6; ++wi) {
    const int w = 1 << wi;  // widths 1..32
    out[(0 * 6 + wi) * kThreads + t] = __shfl_sync(0xffffffffu, v, (t * 7 + 3) % 32, w);
    out[(1 * 6 + wi) * kThreads + t] = __shfl_up_sync(0xffffffffu, v, 3, w);
    out[(2 * 6 + wi) * kThreads + t] = __shfl_down_sync(0xffffffffu, v, 5, w);
    out[(3 * 6 + wi) * kThreads + t] = __shfl_xor_sync(0xffffffffu, v, 9, w);
  }
}

// The CUDA programming guide's rules, written independently of the emulator.
int expect_shuffle(int op, int w, int t) {
  const int lane = t % 32, base = t - lane, seg = lane / w * w;
  int src = lane;
  if (op == 0) src = seg + (lane * 7 + 3) % 32 % w;
  if (op == 1 && lane - seg >= 3) src = lane - 3;
  if (op == 2 && lane - seg + 5 < w) src = lane + 5;
  if (op == 3 && (lane ^ 9) < seg + w) src = lane ^ 9;
  return 100 * (base / 32) + src;
}

// d [32], h [32]: shuffle a double and a __half down by one.
__global__ void wide_types(double* d, float* h) {
  const int t = threadIdx.x;
  d[t] = __shfl_down_sync(0xffffffffu, 1e10 + t, 1);
  h[t] = __half2float(__shfl_xor_sync(0xffffffffu, __float2half(float(t) * 0.5f), 1));
}

// out [64][6]: votes of predicate "lane % 3 == 0" and "lane < 40", match on lane / 8, the
// warp sum of the lane, the active mask, and a shuffle within the half-warp masks.
__global__ void votes(unsigned* out) {
  const int t = threadIdx.x, lane = t % 32;
  unsigned* o = out + t * 6;
  o[0] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  o[1] = unsigned(__any_sync(0xffffffffu, t == 40)) | unsigned(__all_sync(0xffffffffu, t < 40)) << 1;
  o[2] = __match_any_sync(0xffffffffu, lane / 8);
  o[3] = __reduce_add_sync(0xffffffffu, unsigned(lane));
  o[4] = __activemask();
  const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;  // two independent groups
  __syncwarp(half);
  o[5] = unsigned(__shfl_sync(half, lane, 0, 16));
}

// Block of 48: the second warp has 16 lanes; a full-mask xor-shuffle sum over it.
__global__ void partial_warp_sum(int* out) {
  int v = int(threadIdx.x);
  for (int m = 8; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m, 16);
  out[threadIdx.x] = v;
}

int main() {
  int* out = managed<int>(4 * 6 * kThreads);
  for (int i = 0; i < 4 * 6 * kThreads; ++i) out[i] = -1;
  SF_LAUNCH(shuffles, 1, kThreads, 0, 0)(out);
  cudaDeviceSynchronize();
  for (int op = 0; op < 4; ++op)
    for (int wi = 0; wi < 6; ++wi)
      for (int t = 0; t < kThreads; ++t) {
        const int got = out[(op * 6 + wi) * kThreads + t], want = expect_shuffle(op, 1 << wi, t);
        CHECK(got == want, "op %d width %d thread %d: %d, want %d", op, 1 << wi, t, got, want);
      }

  double* d = managed<double>(32);
  float* h = managed<float>(32);
  SF_LAUNCH(wide_types, 1, 32, 0, 0)(d, h);
  cudaDeviceSynchronize();
  for (int t = 0; t < 32; ++t) {
    CHECK(d[t] == 1e10 + (t < 31 ? t + 1 : t), "double lane %d: %.17g", t, d[t]);
    CHECK(h[t] == float(t ^ 1) * 0.5f, "half lane %d: %g", t, h[t]);
  }

  unsigned* v = managed<unsigned>(kThreads * 6);
  SF_LAUNCH(votes, 1, kThreads, 0, 0)(v);
  cudaDeviceSynchronize();
  for (int t = 0; t < kThreads; ++t) {
    const int lane = t % 32;
    const unsigned* o = v + t * 6;
    CHECK(o[0] == 0x49249249u, "ballot thread %d: %08x", t, o[0]);
    const unsigned any_all = t < 32 ? 2u : 1u;  // warp 0: none is 40, all < 40; warp 1: one is 40
    CHECK(o[1] == any_all, "any/all thread %d: %u, want %u", t, o[1], any_all);
    CHECK(o[2] == 0xffu << (lane / 8 * 8), "match thread %d: %08x", t, o[2]);
    CHECK(o[3] == 496u, "reduce thread %d: %u", t, o[3]);
    CHECK(o[4] == 0xffffffffu, "activemask thread %d: %08x", t, o[4]);
    CHECK(o[5] == (lane < 16 ? 0u : 16u), "half-warp shuffle thread %d: %u", t, o[5]);
  }

  SF_LAUNCH(partial_warp_sum, 1, 48, 0, 0)(out);
  cudaDeviceSynchronize();
  for (int t = 0; t < 48; ++t) {
    const int seg = t / 16 * 16, want = 16 * seg + 120;
    CHECK(out[t] == want, "partial warp thread %d: %d, want %d", t, out[t], want);
  }
  cudaFree(out);
  cudaFree(d);
  cudaFree(h);
  cudaFree(v);
  return finish("warp");
}

// cuda/rows.cuh — the row-in-registers layout of the row-wise families (norm.cu, softmax.cu).
// A row of `cols` elements is held by a row group of G threads: one warp (G = 32; a block holds
// several rows, one per warp) or one whole block (G = blockDim.x). Thread t of the group holds CH
// chunks of VEC consecutive columns, chunk c at column (c * G + t) * VEC, so the group's accesses
// to one chunk index are contiguous; VEC = 16 bytes of T (one vector access) when the row length
// and every pointer allow, else 1. plan_rows picks the layout for a row length, with_tile calls a
// generic lambda with VEC and CH as compile-time constants.
#pragma once
#include <initializer_list>
#include <type_traits>
#include "common.cuh"

namespace seqfuse {
namespace gpu {

constexpr int kRowMaxThreads = 512;  // the block of a block-per-row kernel at most (and its __launch_bounds__)
constexpr int kRowMaxChunks = 8;     // CH in {1, 2, 4, 8}

struct RowPlan {
  int vec = 1, ch = 1, threads = 32;  // threads: the block size in block mode
  bool warp = true;                   // one warp per row (else one block per row)
  bool wide = false;                  // too wide for registers: the family's global-memory kernels
};

// emax: floats of the row per thread (registers); ptrs: every row-wise pointer the kernel accesses
// with the layout (nullptr allowed). The fewest chunks that fit a warp, else a block of at most
// kRowMaxThreads, else wide.
template <class T>
RowPlan plan_rows(int64_t cols, int emax, std::initializer_list<const void*> ptrs) {
  constexpr int V16 = 16 / int(sizeof(T));
  bool vec = cols % V16 == 0;
  for (const void* p : ptrs) vec = vec && aligned_to(p, 16);
  RowPlan pl;
  pl.vec = vec ? V16 : 1;
  const int chmax = emax / pl.vec < kRowMaxChunks ? emax / pl.vec : kRowMaxChunks;
  const int64_t chunks = cols / pl.vec;
  if (chunks <= int64_t(32) * chmax) {
    while (int64_t(32) * pl.ch < chunks) pl.ch *= 2;
    return pl;
  }
  pl.warp = false;
  for (pl.ch = 1; pl.ch <= chmax; pl.ch *= 2) {
    pl.threads = int((chunks + pl.ch - 1) / pl.ch + 31) / 32 * 32;
    if (pl.threads <= kRowMaxThreads) return pl;
  }
  pl.wide = true;
  return pl;
}

template <int VEC, int E, class F>
void with_ch(int ch, F& f) {
  using V = std::integral_constant<int, VEC>;
  switch (ch) {
    case 1: f(V{}, std::integral_constant<int, 1>{}); return;
    case 2: if constexpr (VEC * 2 <= E) f(V{}, std::integral_constant<int, 2>{}); return;
    case 4: if constexpr (VEC * 4 <= E) f(V{}, std::integral_constant<int, 4>{}); return;
    default: if constexpr (VEC * 8 <= E) f(V{}, std::integral_constant<int, 8>{}); return;
  }
}
// f(VEC, CH) as std::integral_constant for a plan of plan_rows<T>(cols, E, ...), instantiating only
// VEC * CH <= E.
template <class T, int E, class F>
void with_tile(const RowPlan& pl, F f) {
  if (pl.vec == 1) with_ch<1, E>(pl.ch, f);
  else with_ch<16 / int(sizeof(T)), E>(pl.ch, f);
}

// The group's size, this thread's place in it, and the row it holds (blockDim.x / 32 rows per
// block in warp mode, the block's row otherwise).
template <bool WARP>
struct RowGroup {
  int G, t;
  int64_t row;
  __device__ __forceinline__ RowGroup()
      : G(WARP ? 32 : int(blockDim.x)), t(WARP ? int(threadIdx.x & 31) : int(threadIdx.x)),
        row(WARP ? int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5) : int64_t(blockIdx.x)) {}
  // the first column of chunk c
  template <int VEC>
  __device__ __forceinline__ int64_t col(int c) const { return (int64_t(c) * G + t) * VEC; }
};

// Sum / max over the row group; scratch: 32 floats of shared memory (block mode).
template <bool WARP>
__device__ __forceinline__ float group_sum(float v, float* scratch) {
  if constexpr (WARP) return warp_sum(v);
  else return block_sum(v, scratch);
}
template <bool WARP>
__device__ __forceinline__ float group_max(float v, float* scratch) {
  if constexpr (WARP) return warp_max(v);
  else return block_max(v, scratch);
}

}  // namespace gpu
}  // namespace seqfuse

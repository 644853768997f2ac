// cuda/attention.cu — fused scaled-dot-product attention on CUDA, forward and backward
// (ops/attention.h): GQA/MQA, bottom-right causal, kv_lengths, additive f32 bias with broadcast
// strides, dropout on the CPU's 16-bit Philox stream (core/philox.h) at element index
// e = ((b H + h) Sq + i) Sk + j, so masks are the CPU's bit for bit. f32/f16/bf16 storage, f32 math.
//
// Design (FlashAttention / FlashAttention-2). A block works on a tile of "group rows": the G = H /
// Hkv query heads of one kv head (b, hk) read the same K and V, and their rows are consecutive in
// q/out/lse ([G Sq, D] from row (b H + hk G) Sq), so a tile of BR of them shares every K/V tile
// it loads (a decode step, Sq = 1, puts the whole group's heads in one tile). Row r of the group is
// head hk G + r / Sq, query r % Sq. Products are 16 x 16 output tiles spread over the warps:
//   f16/bf16: nvcuda::wmma m16n16k16 (16-bit operands from shared memory, f32 accumulate);
//   f32:      SIMT, each lane 8 outputs of the tile (exact f32 products, f32 accumulate).
// Operands sit in shared memory with D zero-padded to Dp = D rounded up to 16 (any D in [1, 256]).
//   forward:  each warp owns 16 query rows end to end (the block only shares K/V tiles): per
//             K/V tile of BC keys S = Q K^T (Q's fragments in registers for D <= 128, 16-bit);
//             online softmax per row in log2 units (running max and sum in f32, two lanes per
//             row); P (dropout applied, unscaled) stored as T; O = alpha O + P V with O in
//             accumulator fragments in registers, the per-row alpha applied through each
//             element's row, read once from a fragment loaded from a tile whose (r, c) is r (so
//             no fragment layout is assumed); out = O scale_p / l, lse.
//   backward: dK/dV kernel per (b, kv head, tile of BC keys): over the group's row tiles that see
//             the keys, S and dP = dO V^T, then P = exp(S - lse), dS = P (keep scale_p dP -
//             delta), dV += (keep scale_p P)^T dO, dK += dS^T Q with the accumulators in registers
//             (wmma fragments / f32 arrays): the group's heads are summed in a fixed order, no
//             atomics. dQ kernel per (b, kv head, row tile): over its key tiles the same S, dP,
//             dS, and dQ += dS K in registers. P and dP are computed twice (once per kernel) in
//             exchange for no float atomics, no dQ workspace, deterministic bits.
//             delta_i = <dout_i, out_i> is computed in each kernel from its row tile (a warp per
//             row): no workspace at all, at the price of reading `out` once per tile.
// Known limits: no split over keys for decode with few (b, kv head) groups (B Hkv blocks, each
// walking all of Sk); D is padded to a multiple of 16 (D = 8 runs 16-wide products); the f32
// path is SIMT on 16 x 16 tiles out of shared memory (exactness first, not tuned); f16 P is
// rounded to T before P V (as FlashAttention); no cp.async pipelining (not emulated), and no
// register prefetch of the next K/V tile either (its loads are batched, and other resident blocks
// hide them: 4 forward blocks per SM for D <= 64, 2 for D <= 128, 1 for D > 128); the S tile
// goes through shared memory as f32 between the two products (the fragment layout is opaque).
#include <cfloat>
#include <cstdint>
#include <type_traits>
#include "common.cuh"
#include "core/philox.h"
#include "ops/attention.h"

// #pragma unroll under nvcc only (g++ -Wall warns on an unknown pragma)
#if defined(__CUDACC__)
#define SF_UNROLL _Pragma("unroll")
#define SF_UNROLL_4 _Pragma("unroll 4")
#else
#define SF_UNROLL
#define SF_UNROLL_4
#endif

namespace seqfuse {
namespace {

using gpu::check_launch;
using gpu::from_f32;
using gpu::load16;
using gpu::store16;
using gpu::to_f32;

constexpr float kLog2e = 1.44269504088896341f, kLn2 = 0.693147180559945309f;
constexpr int kMaxDp = 256;       // D up to 256 (the API's limit), padded to 16
constexpr int kMaxSmem = 227 * 1024;
constexpr int kMaxAcc = 8;        // accumulator tiles per warp kept in registers (backward), at most

// The call, as the kernels see it.
struct Params {
  int64_t B, H, Hkv, G, Sq, Sk, D;
  int Dp;
  float scale;
  bool causal;
  const int32_t* kvlen;
  const float* bias;
  int64_t bs0, bs1, bs2, bs3;
  uint32_t t;        // dropout threshold (0: off)
  float keep_scale;  // scale_p
  uint64_t seed;
  bool vec;          // rows may be loaded 16 bytes at a time (D a multiple of 16 bytes, aligned)
};

__device__ __forceinline__ int64_t kv_len(const Params& p, int64_t b) { return p.kvlen ? int64_t(p.kvlen[b]) : p.Sk; }

// Query row i of batch row b sees keys [0, key_end): j < L_b and, if causal, j <= i + Sk - Sq.
__device__ __forceinline__ int64_t key_end(const Params& p, int64_t b, int64_t i) {
  int64_t e = kv_len(p, b);
  if (p.causal && i + p.Sk - p.Sq + 1 < e) e = i + p.Sk - p.Sq + 1;
  return e < 0 ? 0 : e;
}

// The largest query index among group rows [r0, r0 + rows): Sq - 1 when they span two heads.
__device__ __forceinline__ int64_t tile_last_query(const Params& p, int64_t r0, int64_t rows) {
  const int64_t r1 = r0 + rows - 1;
  return r0 / p.Sq == r1 / p.Sq ? r1 % p.Sq : p.Sq - 1;
}

// Dropout's 16-bit values along a run of consecutive elements: one Philox call per 8 elements.
struct DropStream {
  uint64_t cur = ~uint64_t(0);
  Philox4 r;
  __device__ __forceinline__ bool keep(uint64_t e, const Params& p) {
    if ((e >> 3) != cur) {
      cur = e >> 3;
      r = philox4x32_10(cur, p.seed);
    }
    const uint32_t w = (e & 4) ? ((e & 2) ? r.v[3] : r.v[2]) : ((e & 2) ? r.v[1] : r.v[0]);  // no local-memory indexing
    return ((w >> (16 * (e & 1))) & 0xFFFFu) >= p.t;
  }
};

// --- warp tiles ------------------------------------------------------------------------------
// Frag<T>: one 16 x 16 f32 accumulator tile spread over a warp: a wmma fragment (16-bit inputs),
// or for f32 eight values per lane, lane l holding rows (l >> 4) + 2u (u < 8) of column l & 15.
struct SimtFrag {
  static constexpr int num_elements = 8;
  float x[8];
};
template <class T>
using Frag = std::conditional_t<std::is_same<T, float>::value, SimtFrag,
                                nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>>;

template <class T>
__device__ __forceinline__ void frag_zero(Frag<T>& c) {
  if constexpr (std::is_same<T, float>::value) {
SF_UNROLL
    for (int u = 0; u < 8; ++u) c.x[u] = 0.0f;
  } else {
    nvcuda::wmma::fill_fragment(c, 0.0f);
  }
}

// c from / to f32 rows at m (row stride ld, a multiple of 4), the whole warp together.
template <class T>
__device__ __forceinline__ void frag_load(Frag<T>& c, const float* m, int ld) {
  if constexpr (std::is_same<T, float>::value) {
    const int lane = threadIdx.x & 31;
SF_UNROLL
    for (int u = 0; u < 8; ++u) c.x[u] = m[((lane >> 4) + 2 * u) * ld + (lane & 15)];
  } else {
    nvcuda::wmma::load_matrix_sync(c, m, unsigned(ld), nvcuda::wmma::mem_row_major);
  }
}
template <class T>
__device__ __forceinline__ void frag_store(const Frag<T>& c, float* m, int ld) {
  if constexpr (std::is_same<T, float>::value) {
    const int lane = threadIdx.x & 31;
SF_UNROLL
    for (int u = 0; u < 8; ++u) m[((lane >> 4) + 2 * u) * ld + (lane & 15)] = c.x[u];
  } else {
    nvcuda::wmma::store_matrix_sync(m, c, unsigned(ld), nvcuda::wmma::mem_row_major);
  }
}

// c += A B over k in [0, K) (K a multiple of 16), A 16 x K, B K x 16, both in shared memory:
// A[m][k] at a[m * lda + k], or with AT at a[k * lda + m]; B[k][n] at b[k * ldb + n], or with BT
// at b[n * ldb + k]. The whole warp together.
template <bool AT, bool BT, class T>
__device__ __forceinline__ void frag_mma(Frag<T>& c, const T* a, int lda, const T* b, int ldb, int K) {
  if constexpr (std::is_same<T, float>::value) {
    const int lane = threadIdx.x & 31, n = lane & 15, m0 = lane >> 4;
SF_UNROLL_4
    for (int k = 0; k < K; ++k) {
      const float bv = BT ? b[n * ldb + k] : b[k * ldb + n];
SF_UNROLL
      for (int u = 0; u < 8; ++u) {
        const int m = m0 + 2 * u;
        c.x[u] = fmaf(AT ? a[k * lda + m] : a[m * lda + k], bv, c.x[u]);
      }
    }
  } else {
    using namespace nvcuda;
    using LA = std::conditional_t<AT, wmma::col_major, wmma::row_major>;
    using LB = std::conditional_t<BT, wmma::col_major, wmma::row_major>;
    for (int k = 0; k < K; k += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> fb;
      wmma::load_matrix_sync(fa, AT ? a + k * lda : a + k, unsigned(lda));
      wmma::load_matrix_sync(fb, BT ? b + k : b + k * ldb, unsigned(ldb));
      wmma::mma_sync(c, fa, fb, c);
    }
  }
}

// --- shared memory ----------------------------------------------------------------------------

// Row strides (elements): T rows of Dp (+16 bytes against bank conflicts), f32 rows of n + 4.
template <class T>
__host__ __device__ constexpr int ld_t(int n) { return n + 16 / int(sizeof(T)); }
__host__ __device__ constexpr int ld_f(int n) { return n + 4; }
__host__ __device__ constexpr int64_t round128(int64_t bytes) { return (bytes + 127) / 128 * 128; }

// Carves consecutive 128-byte aligned regions out of the dynamic shared memory (and, on the host,
// counts the bytes).
struct Carver {
  unsigned char* base;
  int64_t off = 0;
  template <class U>
  __host__ __device__ U* take(int64_t n) {
    U* r = reinterpret_cast<U*>(reinterpret_cast<uintptr_t>(base) + uintptr_t(off));
    off += round128(n * int64_t(sizeof(U)));
    return r;
  }
};

// Per row of a tile of group rows: global row index (q/out/lse), bias offset, key end, and two
// floats (forward: the output factor; backward: lse and delta).
struct RowInfo {
  int64_t* grow;
  int64_t* boff;
  int* kend;
  float* f0;
  float* f1;
  template <int BR>
  __host__ __device__ void carve(Carver& c) {
    grow = c.take<int64_t>(BR);
    boff = c.take<int64_t>(BR);
    kend = c.take<int>(BR);
    f0 = c.take<float>(BR);
    f1 = c.take<float>(BR);
  }
};

// Fills the row info of group rows [r0, r0 + rows) of group (b, hk) for tile rows [0, BR) (threads
// < BR; rows past `rows` see nothing).
template <int BR>
__device__ __forceinline__ void fill_rows(const Params& p, const RowInfo& ri, int64_t b, int64_t hk, int64_t r0, int rows) {
  for (int r = threadIdx.x; r < BR; r += blockDim.x) {
    if (r < rows) {
      const int64_t gr = r0 + r, h = hk * p.G + gr / p.Sq, i = gr % p.Sq;
      ri.grow[r] = (b * p.H + hk * p.G) * p.Sq + gr;
      ri.boff[r] = b * p.bs0 + h * p.bs1 + i * p.bs2;
      ri.kend[r] = int(key_end(p, b, i));
    } else {
      ri.grow[r] = 0;
      ri.boff[r] = 0;
      ri.kend[r] = 0;
    }
  }
}

// dst[r][c] = src[r * D + c] for r < rows, c < D, and 0 elsewhere in [0, nrows) x [0, Dp): a tile
// of rows into shared memory (row stride ld), 16 bytes per thread when p.vec. The whole block.
template <class T>
__device__ __forceinline__ void load_rows(const Params& p, T* dst, int ld, const T* src, int64_t rows, int nrows) {
  const int D = int(p.D), Dp = p.Dp;
  if (p.vec) {
    constexpr int kv = 16 / int(sizeof(T));
    const int cv = Dp / kv;  // Dp is a multiple of 16 elements, so of kv
    for (int idx = threadIdx.x; idx < nrows * cv; idx += blockDim.x) {
      const int r = idx / cv, c = idx % cv * kv;
      uint4 x = make_uint4(0u, 0u, 0u, 0u);
      if (r < rows && c < D) x = *reinterpret_cast<const uint4*>(src + int64_t(r) * D + c);
      *reinterpret_cast<uint4*>(dst + r * ld + c) = x;
    }
  } else {
    for (int idx = threadIdx.x; idx < nrows * Dp; idx += blockDim.x) {
      const int r = idx / Dp, c = idx % Dp;
      dst[r * ld + c] = r < rows && c < D ? src[int64_t(r) * D + c] : from_f32<T>(0.0f);
    }
  }
}

// Two tiles of rows with the same shape (K and V, or Q and dO) together, as two load_rows calls; with p.vec each thread first issues up to
// U of its 16-byte loads, then stores them, so their latencies overlap. The whole block.
template <int U, class T>
__device__ __forceinline__ void load_kv(const Params& p, T* dk, T* dv, int ld, const T* sk, const T* sv, int64_t rows, int nrows) {
  if (!p.vec) {
    load_rows(p, dk, ld, sk, rows, nrows);
    load_rows(p, dv, ld, sv, rows, nrows);
    return;
  }
  constexpr int kv = 16 / int(sizeof(T));
  const int D = int(p.D), cv = p.Dp / kv, n = nrows * cv;
  for (int i0 = threadIdx.x; i0 < 2 * n; i0 += U * int(blockDim.x)) {
    T x[U][kv];
SF_UNROLL
    for (int u = 0; u < U; ++u) {
      const int idx = i0 + u * int(blockDim.x), w = idx >= n, j = idx - w * n, r = j / cv, c = j % cv * kv;
      if (idx < 2 * n && r < rows && c < D) {
        load16((w ? sv : sk) + int64_t(r) * D + c, x[u]);
      } else {
SF_UNROLL
        for (int e = 0; e < kv; ++e) x[u][e] = from_f32<T>(0.0f);
      }
    }
SF_UNROLL
    for (int u = 0; u < U; ++u) {
      const int idx = i0 + u * int(blockDim.x), w = idx >= n, j = idx - w * n, r = j / cv, c = j % cv * kv;
      if (idx < 2 * n) store16((w ? dv : dk) + r * ld + c, x[u]);
    }
  }
}

// Writes a warp's 16 x 16 f32 tile stage[16][16] times mul to dst rows [0, rows) x cols [0, cols)
// (row stride D), as T.
template <class T>
__device__ __forceinline__ void store_tile(const float* stage, T* dst, int64_t D, int rows, int cols, float mul) {
  const int lane = threadIdx.x & 31;
  for (int e = lane; e < 256; e += 32) {
    const int r = e >> 4, c = e & 15;
    if (r < rows && c < cols) dst[int64_t(r) * D + c] = from_f32<T>(stage[e] * mul);
  }
}

// --- forward ----------------------------------------------------------------------------------

// Q's A-operand fragments of one warp's 16 rows, kept in registers for the whole key walk (N of
// them: Dp / 16 at most N); N = 0 (f32, or D > 128) leaves Q in shared memory.
template <class T, int N>
struct QRegs {
  nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::row_major> f[N];
};
template <class T>
struct QRegs<T, 0> {};

// Two consecutive elements, stored with one access.
template <class T>
struct alignas(2 * sizeof(T)) Pair {
  T v[2];
};

// o[f] (f < NF) *= a[row] elementwise, rowof[i] the row of fragment element i (any layout).
template <class T, int NF>
__device__ __forceinline__ void scale_rows(Frag<T> (&o)[NF], const int (&rowof)[Frag<T>::num_elements], const float* a) {
SF_UNROLL
  for (int i = 0; i < Frag<T>::num_elements; ++i) {
    const float x = a[rowof[i]];
SF_UNROLL
    for (int f = 0; f < NF; ++f) o[f].x[i] *= x;
  }
}

template <class T, int BR, int BC>
struct FwdSmem {
  T *q, *k, *v, *p;
  float* s;
  RowInfo ri;
  __host__ __device__ int64_t carve(unsigned char* base, int Dp) {
    Carver c{base};
    q = c.take<T>(BR * ld_t<T>(Dp));
    k = c.take<T>(BC * ld_t<T>(Dp));
    v = c.take<T>(BC * ld_t<T>(Dp));
    s = c.take<float>(BR * ld_f(BC));
    p = c.take<T>(BR * ld_t<T>(BC));
    ri.template carve<BR>(c);
    return c.off;
  }
};

// Forward. q, out [B, H, Sq, D]; k, v [B, Hkv, Sk, D]; lse [B, H, Sq] (nullable).
// Grid: B Hkv ceil(G Sq / BR) blocks, block x = (row tile t, group g) with g fastest and the row
// tiles last first (the largest causal tiles start first). Block: NT threads, NW = NT / 32 warps,
// BR = 16 NW rows: warp w owns tile rows [16 w, 16 w + 16) end to end, so the online softmax needs
// no block barrier; the block shares only the K/V tiles (two barriers per tile of BC keys).
// Per K/V tile each warp: S = Q K^T for its rows (Q fragments in registers when QN > 0) into its
// own strip of S, skipping 16-key column tiles none of its rows sees; the online softmax (two lanes
// per row, BC / 2 keys each in pairs, visited from a per-lane rotated start against bank
// conflicts; a max pass, then exp2(s scale log2 e - max) as one FMA and exp2; dropout draws one
// Philox call per 8 keys, plus one where the rotation splits a run); P (dropout applied, unscaled)
// as T into its strip of P (one 2-element store per pair); the
// per-row factor alpha through ri.f0 onto O; O += P V. O is NF accumulator fragments in registers
// (Dp / 16 <= NF of them used): the row of fragment element i is read, once, from a fragment
// loaded from a tile whose element (r, c) is r — valid for any fragment layout. A warp whose rows
// see none of the tile's keys skips it. At the end out = O scale_p / l is staged through the S
// strip, lse = m ln 2 + ln l.
// Dynamic shared memory (FwdSmem): Q [BR][Dp], K, V [BC][Dp], P [BR][BC] of T; S [BR][BC] f32;
// row info.
template <class T, int BC, int NT, int NF, int QN>
__global__ void __launch_bounds__(NT, QN == 4 ? 4 : 1) attention_fwd_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                           const T* __restrict__ v, T* __restrict__ out, float* __restrict__ lse,
                                                           Params p) {
  constexpr int NW = NT / 32, BR = 16 * NW, CPT = BC / 2, NE = Frag<T>::num_elements;
  constexpr int lds = ld_f(BC), ldp = ld_t<T>(BC);
  static_assert(BC % 16 == 0 && (CPT & (CPT - 1)) == 0 && (QN == 0 || QN == NF), "tile shapes");
  SF_DYNAMIC_SHARED(float4, smem4);
  FwdSmem<T, BR, BC> sm;
  sm.carve(reinterpret_cast<unsigned char*>(smem4), p.Dp);
  const int Dp = p.Dp, ldt = ld_t<T>(Dp), nf = Dp / 16;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  const int64_t groups = p.B * p.Hkv, gr_rows = p.G * p.Sq, ntiles = (gr_rows + BR - 1) / BR;
  const int64_t g = blockIdx.x % groups, tile = ntiles - 1 - blockIdx.x / groups;
  const int64_t b = g / p.Hkv, hk = g % p.Hkv, r0 = tile * BR;
  const int rows = int(gr_rows - r0 < BR ? gr_rows - r0 : BR);
  const int64_t row0 = (b * p.H + hk * p.G) * p.Sq + r0;
  const T* kh = k + g * p.Sk * p.D;
  const T* vh = v + g * p.Sk * p.D;
  const int64_t kend = key_end(p, b, tile_last_query(p, r0, rows));

  fill_rows<BR>(p, sm.ri, b, hk, r0, rows);
  load_rows(p, sm.q, ldt, q + row0 * p.D, rows, BR);
  // the row of each accumulator element: a tile with (r, c) = r through this warp's S strip
  float* strip = sm.s + warp * 16 * lds;
  for (int e = lane; e < 256; e += 32) strip[(e >> 4) * lds + (e & 15)] = float(e >> 4);
  __syncwarp();
  int rowof[NE];
  {
    Frag<T> rid;
    frag_load<T>(rid, strip, lds);
SF_UNROLL
    for (int i = 0; i < NE; ++i) rowof[i] = warp * 16 + int(rid.x[i]);
  }
  __syncthreads();  // Q and the row info are in place

  const T* qs = sm.q + warp * 16 * ldt;
  QRegs<T, QN> qr;
  if constexpr (QN > 0) {
SF_UNROLL
    for (int f = 0; f < QN; ++f)
      if (f < nf) nvcuda::wmma::load_matrix_sync(qr.f[f], qs + f * 16, unsigned(ldt));
  }
  Frag<T> o[NF];
SF_UNROLL
  for (int f = 0; f < NF; ++f) frag_zero<T>(o[f]);

  // this lane's softmax row (two lanes per row) and keys: pairs c0 + (u + rot) % CPT, u < CPT even;
  // the rotation spreads a half-warp's 8-byte S reads (and the P stores) over all banks
  const int r = warp * 16 + (lane >> 1), c0 = (lane & 1) * CPT, rot = 2 * (lane & 1) + 2 * ((lane >> 4) & 1);
  const int64_t rend = sm.ri.kend[r], grow = sm.ri.grow[r], boff = sm.ri.boff[r];
  const float sl2 = p.scale * kLog2e;
  float m = -INFINITY, l = 0.0f;
  T* pw = sm.p + warp * 16 * ldp;
  for (int64_t j0 = 0; j0 < kend; j0 += BC) {
    const int64_t nk = kend - j0 < BC ? kend - j0 : BC;
    if (j0 > 0) __syncthreads();  // every warp is done with the previous K/V tile
    load_kv<QN == 4 ? 4 : 8>(p, sm.k, sm.v, ldt, kh + j0 * p.D, vh + j0 * p.D, nk, BC);
    __syncthreads();
    const int nvis = int(rend - j0 < 0 ? 0 : rend - j0 < BC ? rend - j0 : BC);
    int wvis = nvis;  // keys of the tile any of the warp's rows sees
SF_UNROLL
    for (int s = 16; s > 0; s >>= 1) wvis = max(wvis, __shfl_xor_sync(0xffffffffu, wvis, s));
    if (wvis == 0) continue;  // (m, l, O) unchanged: alpha would be 1 (or 0 on a zero O)
    // S = Q K^T, the warp's 16 rows
SF_UNROLL
    for (int tn = 0; tn < BC / 16; ++tn) {
      if (tn * 16 >= wvis) break;
      Frag<T> acc;
      frag_zero<T>(acc);
      if constexpr (QN > 0) {
        using namespace nvcuda;
SF_UNROLL
        for (int f = 0; f < QN; ++f) {
          if (f < nf) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
            wmma::load_matrix_sync(fb, sm.k + tn * 16 * ldt + f * 16, unsigned(ldt));
            wmma::mma_sync(acc, qr.f[f], fb, acc);
          }
        }
      } else {
        frag_mma<false, true, T>(acc, qs, ldt, sm.k + tn * 16 * ldt, ldt, Dp);
      }
      frag_store<T>(acc, strip + tn * 16, lds);
    }
    __syncwarp();
    // online softmax (log2 units) of row r over keys [c0, c0 + CPT) of the tile, two at a time.
    // A NaN score, or +inf (whose s - max is NaN), makes the sum and so l NaN: the NaN row.
    {
      const float* sr = sm.s + r * lds;
      float mx = -INFINITY;
SF_UNROLL_4
      for (int u = 0; u < CPT; u += 2) {
        const int c = c0 + ((u + rot) & (CPT - 1));
        const float2 x = *reinterpret_cast<const float2*>(sr + c);
        float s0 = x.x * sl2, s1 = x.y * sl2;
        if (p.bias) {
          if (c < nvis) s0 = fmaf(p.bias[boff + (j0 + c) * p.bs3], kLog2e, s0);
          if (c + 1 < nvis) s1 = fmaf(p.bias[boff + (j0 + c + 1) * p.bs3], kLog2e, s1);
        }
        if (c < nvis) mx = fmaxf(mx, s0);  // NaN ignored
        if (c + 1 < nvis) mx = fmaxf(mx, s1);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float mn = fmaxf(m, mx), shift = mn == -INFINITY ? 0.0f : mn;
      const float alpha = exp2f(m - shift);
      m = mn;
      float sum = 0.0f;
      DropStream ds;
      T* pr = sm.p + r * ldp;
      const uint64_t e0 = uint64_t(grow) * uint64_t(p.Sk) + uint64_t(j0);
SF_UNROLL_4
      for (int u = 0; u < CPT; u += 2) {
        const int c = c0 + ((u + rot) & (CPT - 1));
        const float2 x = *reinterpret_cast<const float2*>(sr + c);
        float e[2] = {0.0f, 0.0f};
SF_UNROLL
        for (int h = 0; h < 2; ++h) {
          if (c + h < nvis) {
            const float sv = h ? x.y : x.x;
            const float s = p.bias ? fmaf(p.bias[boff + (j0 + c + h) * p.bs3], kLog2e, sv * sl2) - shift : fmaf(sv, sl2, -shift);
            e[h] = exp2f(s);
            sum += e[h];
            if (p.t && !ds.keep(e0 + uint64_t(c + h), p)) e[h] = 0.0f;
          }
        }
        *reinterpret_cast<Pair<T>*>(pr + c) = Pair<T>{{from_f32<T>(e[0]), from_f32<T>(e[1])}};
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      l = l * alpha + sum;
      if ((lane & 1) == 0) sm.ri.f0[r] = alpha;
    }
    __syncwarp();
    // O = alpha O + P V
    scale_rows<T, NF>(o, rowof, sm.ri.f0);
SF_UNROLL
    for (int kk = 0; kk < BC / 16; ++kk) {
      if (kk * 16 >= wvis) break;  // P is 0 there
      if constexpr (std::is_same<T, float>::value) {
SF_UNROLL
        for (int f = 0; f < NF; ++f)
          if (f < nf) frag_mma<false, false, T>(o[f], pw + kk * 16, ldp, sm.v + kk * 16 * ldt + f * 16, ldt, 16);
      } else {
        using namespace nvcuda;
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::load_matrix_sync(fa, pw + kk * 16, unsigned(ldp));
SF_UNROLL
        for (int f = 0; f < NF; ++f) {
          if (f < nf) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
            wmma::load_matrix_sync(fb, sm.v + kk * 16 * ldt + f * 16, unsigned(ldt));
            wmma::mma_sync(o[f], fa, fb, o[f]);
          }
        }
      }
    }
  }
  // the output factor of each row
  __syncwarp();
  if ((lane & 1) == 0) {
    const bool empty = l == 0.0f, nan = l != l;
    sm.ri.f0[r] = nan ? NAN : empty ? 0.0f : p.keep_scale / l;
    if (lse && r < rows) lse[row0 + r] = nan ? NAN : empty ? -INFINITY : m * kLn2 + logf(l);
  }
  __syncwarp();
  scale_rows<T, NF>(o, rowof, sm.ri.f0);
  // out, BC / 16 fragments at a time through the warp's S strip
  const int wrows = rows - warp * 16 < 0 ? 0 : rows - warp * 16 < 16 ? rows - warp * 16 : 16;
  T* ow = out + (row0 + warp * 16) * p.D;
SF_UNROLL
  for (int f0 = 0; f0 < NF; f0 += BC / 16) {
    if (f0 >= nf) break;
SF_UNROLL
    for (int f = f0; f < f0 + BC / 16 && f < NF; ++f)
      if (f < nf) frag_store<T>(o[f], strip + (f - f0) * 16, lds);
    __syncwarp();
    const int cols = int(p.D - f0 * 16 < BC ? p.D - f0 * 16 : BC);
    for (int e = lane; e < wrows * cols; e += 32) {
      const int rr = e / cols, c = e % cols;
      ow[int64_t(rr) * p.D + f0 * 16 + c] = from_f32<T>(strip[rr * lds + c]);
    }
    __syncwarp();
  }
}

// --- backward ---------------------------------------------------------------------------------

// lse and delta = <dout, out> of the tile's rows into ri.f0 / ri.f1 (8 lanes per row, 4 rows per
// warp at a time, 16-byte loads when p.vec); rows that see no key (lse -inf, or past the tile) get
// kend 0. The whole block; ri filled before.
template <class T, int BR>
__device__ __forceinline__ void bwd_row_stats(const Params& p, const RowInfo& ri, const T* out, const T* dout,
                                              const float* lse, int rows) {
  static_assert(BR % 4 == 0, "4 rows per warp pass");
  constexpr int kv = 16 / int(sizeof(T));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5, l8 = lane & 7;
  for (int rw = 4 * warp; rw < BR; rw += 4 * nw) {
    const int r = rw + (lane >> 3);
    float d = 0.0f, l = -INFINITY;
    if (r < rows) {
      const int64_t gr = ri.grow[r];
      const T* o = out + gr * p.D;
      const T* g = dout + gr * p.D;
      if (p.vec) {
        for (int64_t c = l8 * kv; c < p.D; c += 8 * kv) {
          T x[kv], y[kv];
          load16(o + c, x);
          load16(g + c, y);
SF_UNROLL
          for (int e = 0; e < kv; ++e) d = fmaf(to_f32(x[e]), to_f32(y[e]), d);
        }
      } else {
        for (int64_t c = l8; c < p.D; c += 8) d = fmaf(to_f32(o[c]), to_f32(g[c]), d);
      }
      l = lse[gr];
    }
SF_UNROLL
    for (int s = 4; s > 0; s >>= 1) d += __shfl_xor_sync(0xffffffffu, d, s);
    if (l8 == 0) {
      ri.f0[r] = l;
      ri.f1[r] = d;
      if (l == -INFINITY) ri.kend[r] = 0;
    }
  }
}

// The gradient step on a BR x BC tile of keys j0 + [0, BC): from S = Q K^T (unscaled) and dP = dO
// V^T in f32, ds = P (keep scale_p dP - delta) with P = exp(scale S + bias - lse) on visible keys
// (NaN where lse is NaN: the forward's NaN rows) and 0 elsewhere, and when pd is given
// pd = keep scale_p P. The thread's row r = tid / (NT / BR), keys [c0, c0 + BC / (NT / BR)).
template <class T, int BR, int BC, int NT>
__device__ __forceinline__ void bwd_grad(const Params& p, const RowInfo& ri, int64_t j0, const float* s, const float* dp,
                                         T* ds, T* pd) {
  constexpr int TPR = NT / BR, CPT = BC / TPR, lds = ld_f(BC), ldp = ld_t<T>(BC);
  static_assert(NT % BR == 0 && BC % TPR == 0, "threads per row");
  const int r = threadIdx.x / TPR, c0 = threadIdx.x % TPR * CPT;
  const int64_t rend = ri.kend[r];
  const int nvis = int(rend - j0 < 0 ? 0 : rend - j0 < BC ? rend - j0 : BC);
  const float lse = ri.f0[r], delta = ri.f1[r];
  const int64_t boff = ri.boff[r];
  const uint64_t e0 = uint64_t(ri.grow[r]) * uint64_t(p.Sk) + uint64_t(j0);
  DropStream dr;
SF_UNROLL_4
  for (int c = c0; c < c0 + CPT; ++c) {
    float g = 0.0f, w = 0.0f;
    if (c < nvis) {
      float sv = s[r * lds + c] * p.scale;
      if (p.bias) sv += p.bias[boff + (j0 + c) * p.bs3];
      const float pv = lse == lse ? expf(sv - lse) : NAN;
      float dpv = dp[r * lds + c];
      w = pv;
      if (p.t) {
        const bool kp = dr.keep(e0 + uint64_t(c), p);
        dpv = kp ? dpv * p.keep_scale : 0.0f;
        w = kp ? pv * p.keep_scale : 0.0f;
      }
      g = pv * (dpv - delta);
    }
    ds[r * ldp + c] = from_f32<T>(g);
    if (pd) pd[r * ldp + c] = from_f32<T>(w);
  }
}

// S = Q K^T and dP = dO V^T of a BR x BC tile, spread over the warps (2 (BR/16) (BC/16) tiles).
template <class T, int BR, int BC, int NW>
__device__ __forceinline__ void bwd_scores(const T* q, const T* dout, int ldq, const T* k, const T* v, int ldk, int Dp, float* s,
                                           float* dp) {
  constexpr int nt = (BR / 16) * (BC / 16), lds = ld_f(BC);
  const int warp = threadIdx.x >> 5;
  for (int t = warp; t < 2 * nt; t += NW) {
    const int which = t / nt, tm = t % nt / (BC / 16), tn = t % (BC / 16);
    Frag<T> acc;
    frag_zero<T>(acc);
    frag_mma<false, true, T>(acc, (which ? dout : q) + tm * 16 * ldq, ldq, (which ? v : k) + tn * 16 * ldk, ldk, Dp);
    frag_store<T>(acc, (which ? dp : s) + tm * 16 * lds + tn * 16, lds);
  }
}

template <class T, int BR, int BC, int NW>
struct BwdSmem {
  T *q, *dout, *k, *v, *ds, *pd;
  float *s, *dp, *stage;
  RowInfo ri;
  __host__ __device__ int64_t carve(unsigned char* base, int Dp, bool with_pd) {
    Carver c{base};
    q = c.take<T>(BR * ld_t<T>(Dp));
    dout = c.take<T>(BR * ld_t<T>(Dp));
    k = c.take<T>(BC * ld_t<T>(Dp));
    v = c.take<T>(BC * ld_t<T>(Dp));
    s = c.take<float>(BR * ld_f(BC));
    dp = c.take<float>(BR * ld_f(BC));
    ds = c.take<T>(BR * ld_t<T>(BC));
    pd = with_pd ? c.take<T>(BR * ld_t<T>(BC)) : nullptr;
    stage = c.take<float>(NW * 256);
    ri.template carve<BR>(c);
    return c.off;
  }
};

// dK, dV. q, out, dout [B, H, Sq, D]; k, v, dk, dv [B, Hkv, Sk, D]; lse [B, H, Sq].
// Grid: B Hkv ceil(Sk / BC) blocks, block x = (key tile kt, group g), g fastest, the first key
// tiles (which causal rows see most) first. Block: NT threads. It walks the group's row tiles of
// BR rows (heads hk G .. hk G + G - 1 in order) that see one of its keys: loads Q, dO, lse and
// delta, S and dP (2 (BR/16)(BC/16) warp tiles), the gradient step (NT / BR threads per row),
// then dV += Pd^T dO and dK += dS^T Q: 2 (BC/16)(Dp/16) accumulator tiles, warp w owning tiles
// w + NW u (u < NA) in registers for the whole walk. At the end each warp stages its tiles
// through 16 x 16 f32 of shared memory to dk (times scale) and dv.
// Dynamic shared memory (BwdSmem): Q, dO [BR][Dp], K, V [BC][Dp], dS, Pd [BR][BC] of T; S, dP
// [BR][BC] f32; stage [NW][256] f32; row info.
template <class T, int BR, int BC, int NT, int NA>
__global__ void __launch_bounds__(NT, NA <= 4 ? 2 : 1) attention_bwd_kv_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                              const T* __restrict__ v, const T* __restrict__ out,
                                                              const T* __restrict__ dout, const float* __restrict__ lse,
                                                              T* __restrict__ dk, T* __restrict__ dv, Params p) {
  constexpr int NW = NT / 32, ldp = ld_t<T>(BC);
  SF_DYNAMIC_SHARED(float4, smem4);
  BwdSmem<T, BR, BC, NW> sm;
  sm.carve(reinterpret_cast<unsigned char*>(smem4), p.Dp, true);
  const int Dp = p.Dp, ldt = ld_t<T>(Dp), warp = threadIdx.x >> 5;
  const int64_t groups = p.B * p.Hkv, g = blockIdx.x % groups, kt = blockIdx.x / groups;
  const int64_t b = g / p.Hkv, hk = g % p.Hkv, j0 = kt * BC;
  const int64_t L = kv_len(p, b), nk = p.Sk - j0 < BC ? p.Sk - j0 : BC;
  const int64_t nload = L - j0 < 0 ? 0 : L - j0 < nk ? L - j0 : nk;  // keys past L are never seen
  load_kv<4>(p, sm.k, sm.v, ldt, k + (g * p.Sk + j0) * p.D, v + (g * p.Sk + j0) * p.D, nload, BC);

  const int ntd = Dp / 16, nacc = (BC / 16) * ntd;  // tiles of dV; dK's follow
  Frag<T> acc[NA];
SF_UNROLL
  for (int u = 0; u < NA; ++u) frag_zero<T>(acc[u]);
  const int64_t gr_rows = p.G * p.Sq;
  for (int64_t r0 = 0; r0 < gr_rows; r0 += BR) {
    const int rows = int(gr_rows - r0 < BR ? gr_rows - r0 : BR);
    if (nload == 0 || key_end(p, b, tile_last_query(p, r0, rows)) <= j0) continue;  // no row sees the keys
    const int64_t row0 = (b * p.H + hk * p.G) * p.Sq + r0;
    __syncthreads();  // the previous tile's operands are consumed
    fill_rows<BR>(p, sm.ri, b, hk, r0, rows);
    load_kv<4>(p, sm.q, sm.dout, ldt, q + row0 * p.D, dout + row0 * p.D, rows, BR);
    __syncthreads();
    bwd_row_stats<T, BR>(p, sm.ri, out, dout, lse, rows);
    bwd_scores<T, BR, BC, NW>(sm.q, sm.dout, ldt, sm.k, sm.v, ldt, Dp, sm.s, sm.dp);
    __syncthreads();
    bwd_grad<T, BR, BC, NT>(p, sm.ri, j0, sm.s, sm.dp, sm.ds, sm.pd);
    __syncthreads();
SF_UNROLL
    for (int u = 0; u < NA; ++u) {
      const int t = warp + NW * u;
      if (t < 2 * nacc) {
        const int which = t / nacc, tm = t % nacc / ntd, tn = t % ntd;  // which 0: dV += Pd^T dO, 1: dK += dS^T Q
        frag_mma<true, false, T>(acc[u], (which ? sm.ds : sm.pd) + tm * 16, ldp, (which ? sm.q : sm.dout) + tn * 16, ldt, BR);
      }
    }
  }
  float* stage = sm.stage + warp * 256;
SF_UNROLL
  for (int u = 0; u < NA; ++u) {
    const int t = warp + NW * u;
    if (t < 2 * nacc) {
      const int which = t / nacc, tm = t % nacc / ntd, tn = t % ntd;
      frag_store<T>(acc[u], stage, 16);
      __syncwarp();
      const int64_t key = j0 + tm * 16;
      T* dst = (which ? dk : dv) + (g * p.Sk + key) * p.D + tn * 16;
      const int kr = int(nk - tm * 16 < 16 ? nk - tm * 16 : 16), cc = int(p.D - tn * 16 < 16 ? p.D - tn * 16 : 16);
      store_tile(stage, dst, p.D, kr, cc, which ? p.scale : 1.0f);
      __syncwarp();
    }
  }
}

// dQ. Shapes as attention_bwd_kv_kernel. Grid: B Hkv ceil(G Sq / BR) blocks, block x = (row tile,
// group g), g fastest, the last row tiles first. Block: NT threads. Loads its rows' Q, dO, lse and
// delta once, then walks the K/V tiles its rows see: S and dP, the gradient step, dQ += dS K with
// the (BR/16)(Dp/16) accumulator tiles in registers (warp w: tiles w + NW u). Ends as the dK/dV
// kernel (staged, times scale). Dynamic shared memory (BwdSmem without Pd).
template <class T, int BR, int BC, int NT, int NA>
__global__ void __launch_bounds__(NT, NA <= 2 ? 4 : 1) attention_bwd_q_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                             const T* __restrict__ v, const T* __restrict__ out,
                                                             const T* __restrict__ dout, const float* __restrict__ lse,
                                                             T* __restrict__ dq, Params p) {
  constexpr int NW = NT / 32, ldp = ld_t<T>(BC);
  SF_DYNAMIC_SHARED(float4, smem4);
  BwdSmem<T, BR, BC, NW> sm;
  sm.carve(reinterpret_cast<unsigned char*>(smem4), p.Dp, false);
  const int Dp = p.Dp, ldt = ld_t<T>(Dp), warp = threadIdx.x >> 5;
  const int64_t groups = p.B * p.Hkv, gr_rows = p.G * p.Sq, ntiles = (gr_rows + BR - 1) / BR;
  const int64_t g = blockIdx.x % groups, tile = ntiles - 1 - blockIdx.x / groups;
  const int64_t b = g / p.Hkv, hk = g % p.Hkv, r0 = tile * BR;
  const int rows = int(gr_rows - r0 < BR ? gr_rows - r0 : BR);
  const int64_t row0 = (b * p.H + hk * p.G) * p.Sq + r0;
  const int64_t kend = key_end(p, b, tile_last_query(p, r0, rows));
  fill_rows<BR>(p, sm.ri, b, hk, r0, rows);
  load_kv<4>(p, sm.q, sm.dout, ldt, q + row0 * p.D, dout + row0 * p.D, rows, BR);
  __syncthreads();
  bwd_row_stats<T, BR>(p, sm.ri, out, dout, lse, rows);

  const int ntd = Dp / 16, nacc = (BR / 16) * ntd;
  Frag<T> acc[NA];
SF_UNROLL
  for (int u = 0; u < NA; ++u) frag_zero<T>(acc[u]);
  for (int64_t j0 = 0; j0 < kend; j0 += BC) {
    const int64_t nk = kend - j0 < BC ? kend - j0 : BC;
    __syncthreads();  // the previous tile's operands are consumed (and the row stats written)
    load_kv<4>(p, sm.k, sm.v, ldt, k + (g * p.Sk + j0) * p.D, v + (g * p.Sk + j0) * p.D, nk, BC);
    __syncthreads();
    bwd_scores<T, BR, BC, NW>(sm.q, sm.dout, ldt, sm.k, sm.v, ldt, Dp, sm.s, sm.dp);
    __syncthreads();
    bwd_grad<T, BR, BC, NT>(p, sm.ri, j0, sm.s, sm.dp, sm.ds, static_cast<T*>(nullptr));
    __syncthreads();
SF_UNROLL
    for (int u = 0; u < NA; ++u) {
      const int t = warp + NW * u;
      if (t < nacc) {
        const int tm = t / ntd, tn = t % ntd;
        frag_mma<false, false, T>(acc[u], sm.ds + tm * 16 * ldp, ldp, sm.k + tn * 16, ldt, BC);
      }
    }
  }
  float* stage = sm.stage + warp * 256;
SF_UNROLL
  for (int u = 0; u < NA; ++u) {
    const int t = warp + NW * u;
    if (t < nacc) {
      const int tm = t / ntd, tn = t % ntd;
      frag_store<T>(acc[u], stage, 16);
      __syncwarp();
      const int rr = rows - tm * 16 < 16 ? rows - tm * 16 : 16, cc = int(p.D - tn * 16 < 16 ? p.D - tn * 16 : 16);
      if (rr > 0) store_tile(stage, dq + (row0 + tm * 16) * p.D + tn * 16, p.D, rr, cc, p.scale);
      __syncwarp();
    }
  }
}

// --- host -------------------------------------------------------------------------------------

template <class T>
bool aligned16(const void* x) {
  return reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

template <class T>
Params make_params(const AttentionArgs& a, std::initializer_list<const void*> rows) {
  Params p;
  p.B = a.B; p.H = a.H; p.Hkv = a.Hkv; p.G = a.H / a.Hkv; p.Sq = a.Sq; p.Sk = a.Sk; p.D = a.D;
  p.Dp = int((a.D + 15) / 16 * 16);
  p.scale = a.scale;
  p.causal = a.causal;
  p.kvlen = a.kv_lengths;
  p.bias = a.bias;
  p.bs0 = a.bias_stride[0]; p.bs1 = a.bias_stride[1]; p.bs2 = a.bias_stride[2]; p.bs3 = a.bias_stride[3];
  p.t = dropout_threshold(a.dropout);
  p.keep_scale = dropout_scale(p.t);
  p.seed = a.seed;
  p.vec = a.D * int64_t(sizeof(T)) % 16 == 0;
  for (const void* x : rows) p.vec = p.vec && aligned16<T>(x);
  return p;
}

// Allows `bytes` of dynamic shared memory for kernel (over 48 KiB needs the opt-in).
template <class K>
void allow_smem(K kernel, int64_t bytes, const char* op) {
  if (bytes > kMaxSmem) fail(ErrorCode::Unsupported, op, ": head dim needs ", bytes, " bytes of shared memory per block (max ", kMaxSmem, ")");
  if (bytes > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
    if (e != cudaSuccess) fail(ErrorCode::Backend, op, ": cudaFuncSetAttribute failed: ", cudaGetErrorString(e));
  }
}

// Launches kernel on `blocks` x nt threads with `bytes` of dynamic shared memory, then checks it.
template <class K, class... Args>
void launch(K kernel, int64_t blocks, int nt, int64_t bytes, cudaStream_t stream, const char* op, Args... args) {
  allow_smem(kernel, bytes, op);
  SF_LAUNCH(kernel, dim3(unsigned(blocks)), dim3(unsigned(nt)), size_t(bytes), stream)(args...);
  check_launch(op);
}

// Tile shapes: the forward and the dQ kernel with 4 warps, dK/dV with 8; f32 tiles are narrower
// (their operands take twice the shared memory). Each fits D = 256 in 227 KiB.
template <class T> struct Cfg {
  static constexpr int kFwdWarps = 4, kFwdBc = 64, kQBr = 32, kQBc = 64, kKvBr = 32, kKvBc = 64;
};
template <> struct Cfg<float> {
  static constexpr int kFwdWarps = 4, kFwdBc = 32, kQBr = 32, kQBc = 32, kKvBr = 32, kKvBc = 32;
};

void check_shape(const AttentionArgs& a, const char* op) {
  if (a.D < 1 || a.D > kMaxDp)
    fail(ErrorCode::Unsupported, op, ": the CUDA kernels take head dim D in [1, ", kMaxDp, "] but received ", a.D);
  if (a.Hkv <= 0 || a.H % a.Hkv != 0)
    fail(ErrorCode::Shape, op, ": expected the query heads H = ", a.H, " to be a multiple of the key/value heads Hkv = ", a.Hkv);
}

// The forward for head dims with Dp <= 16 NF: NF output fragments per warp in registers, and Q's
// fragments too while they fit (16-bit, NF <= 8).
template <class T, int NF>
void fwd_nf(const AttentionArgs& a, const Params& p, cudaStream_t stream) {
  constexpr int BC = Cfg<T>::kFwdBc, NT = 32 * Cfg<T>::kFwdWarps, BR = 16 * Cfg<T>::kFwdWarps;
  constexpr int QN = !std::is_same<T, float>::value && NF <= 8 ? NF : 0;
  const int64_t blocks = a.B * a.Hkv * ((p.G * a.Sq + BR - 1) / BR);
  FwdSmem<T, BR, BC> sm;
  const int64_t bytes = sm.carve(nullptr, p.Dp);
  launch(attention_fwd_kernel<T, BC, NT, NF, QN>, blocks, NT, bytes, stream, "fusedAttention", static_cast<const T*>(a.q),
         static_cast<const T*>(a.k), static_cast<const T*>(a.v), static_cast<T*>(a.out), a.lse, p);
}

template <class T>
void fwd(const AttentionArgs& a, cudaStream_t stream) {
  const Params p = make_params<T>(a, {a.q, a.k, a.v, a.out});
  if (p.Dp <= 64) fwd_nf<T, 4>(a, p, stream);
  else if (p.Dp <= 128) fwd_nf<T, 8>(a, p, stream);
  else fwd_nf<T, kMaxDp / 16>(a, p, stream);
}

// dK/dV tile: BC 64 while its accumulators fit kMaxAcc per warp, else 32 (D > 128); NA of them per
// warp (4 for Dp <= 64 with BC 64: two blocks per SM at 128 registers).
template <class T, int BC, int NA>
void bwd_kv(const AttentionArgs& a, const Params& p, cudaStream_t stream) {
  constexpr int BR = Cfg<T>::kKvBr, NT = 256;
  static_assert(2 * (BC / 16) * (64 / 16) <= (NT / 32) * 4, "dK/dV accumulators for Dp <= 64");
  const int64_t blocks = a.B * a.Hkv * ((a.Sk + BC - 1) / BC);
  BwdSmem<T, BR, BC, NT / 32> sm;
  const int64_t bytes = sm.carve(nullptr, p.Dp, true);
  launch(attention_bwd_kv_kernel<T, BR, BC, NT, NA>, blocks, NT, bytes, stream, "fusedAttentionBackward", static_cast<const T*>(a.q),
         static_cast<const T*>(a.k), static_cast<const T*>(a.v), static_cast<const T*>(a.out), static_cast<const T*>(a.dout), a.lse,
         static_cast<T*>(a.dk), static_cast<T*>(a.dv), p);
}

// dQ with NA accumulator tiles per warp: (BR / 16) (Dp / 16) <= 4 NA.
template <class T, int NA>
void bwd_q(const AttentionArgs& a, const Params& p, cudaStream_t stream) {
  constexpr int BR = Cfg<T>::kQBr, BC = Cfg<T>::kQBc, NT = 128;
  static_assert((BR / 16) * (kMaxDp / 16) <= (NT / 32) * kMaxAcc && (BR / 16) * (128 / 16) <= (NT / 32) * 4 &&
                    (BR / 16) * (64 / 16) <= (NT / 32) * 2,
                "dQ accumulators per warp (bwd's choice of NA)");
  const int64_t blocks = a.B * a.Hkv * ((p.G * a.Sq + BR - 1) / BR);
  BwdSmem<T, BR, BC, NT / 32> sm;
  const int64_t bytes = sm.carve(nullptr, p.Dp, false);
  launch(attention_bwd_q_kernel<T, BR, BC, NT, NA>, blocks, NT, bytes, stream, "fusedAttentionBackward", static_cast<const T*>(a.q),
         static_cast<const T*>(a.k), static_cast<const T*>(a.v), static_cast<const T*>(a.out), static_cast<const T*>(a.dout), a.lse,
         static_cast<T*>(a.dq), p);
}

template <class T>
void bwd(const AttentionArgs& a, cudaStream_t stream) {
  const Params p = make_params<T>(a, {a.q, a.k, a.v, a.out, a.dout, a.dq, a.dk, a.dv});
  if (a.Sk > 0) {
    constexpr int BC = Cfg<T>::kKvBc;
    constexpr bool narrow = BC == 64;  // Dp <= 64 fits 4 accumulators per warp (f32's BC 32 keeps 8)
    if (narrow && p.Dp <= 64) bwd_kv<T, BC, narrow ? 4 : kMaxAcc>(a, p, stream);
    else if (2 * (BC / 16) * (p.Dp / 16) <= 8 * kMaxAcc) bwd_kv<T, BC, kMaxAcc>(a, p, stream);
    else bwd_kv<T, 32, kMaxAcc>(a, p, stream);
  }
  if (a.Sq > 0) {
    if (p.Dp <= 64) bwd_q<T, 2>(a, p, stream);
    else if (p.Dp <= 128) bwd_q<T, 4>(a, p, stream);
    else bwd_q<T, kMaxAcc>(a, p, stream);
  }
}

}  // namespace

void attention_fwd_cuda(const AttentionArgs& a, Stream s) {
  if (a.B == 0 || a.H == 0 || a.Sq == 0) return;
  check_shape(a, "fusedAttention");
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return fwd<float>(a, stream);
    case DType::F16: return fwd<__half>(a, stream);
    case DType::BF16: return fwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "fusedAttention: the CUDA kernels take f32, f16 or bf16");
  }
}

void attention_bwd_cuda(const AttentionArgs& a, Stream s) {
  if (a.B == 0 || a.H == 0) return;
  check_shape(a, "fusedAttentionBackward");
  if (!a.lse) fail(ErrorCode::Arg, "fusedAttentionBackward: lse is required");
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return bwd<float>(a, stream);
    case DType::F16: return bwd<__half>(a, stream);
    case DType::BF16: return bwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "fusedAttentionBackward: the CUDA kernels take f32, f16 or bf16");
  }
}

}  // namespace seqfuse

// cuda/embedding.cu — token embedding * scale + positions, then dropout, forward and backward on
// CUDA (ops/embedding.h), the operation of native/cpu/embedding.cc with the same Philox stream
// (core/philox.h) and the same f32 operations in the same order: every output is the CPU's bit
// for bit.
// Shapes: ids [tokens] i32 (row-major [batch, seq], in [0, vocab): checked by the caller, not
// here); table, dtable [vocab, dim]; positions, dpositions [num_positions, dim]; out, dout
// [tokens, dim]; float tensors f32/f16/bf16 (f32 math, one rounding on store).
//
// Row kernels (forward, both backward sums): a warp owns 256 columns of one row, 8 consecutive
// columns per lane (16-byte vector accesses where dim % 8 == 0 and the buffers are 16-byte
// aligned, else scalar); grid (ceil(rows / 8), ceil(dim / 256)) x 256 threads (8 warps), no shared
// memory. A lane's 8 dropout elements e .. e + 7 (e = offset + t * dim + j) come from one or two
// Philox calls (two when e is not a multiple of 8), not one call per element.
// Backward, deterministic, no float atomics: the tokens are sorted by (id, t) with a stable LSD
// radix sort (8-bit digits, ceil(bits(vocab) / 8) passes, padding tokens keyed past the last id
// so they sort last and are skipped): per pass a tile histogram (1024 keys per block, shared
// integer counters), one exclusive scan of the [256 digits x tiles] counts (one block), and a
// stable scatter (per 256-key round: __match_any_sync ranks within a warp, per-warp digit counts
// in shared memory prefix-summed across warps in order). Then the warp at the first sorted
// position of each id sums its tokens' rows in token order (as the CPU: one f32 sum per row,
// one fma into dtable), loading four token rows ahead; dpositions likewise sums each position
// over the batch. Scratch (stream-ordered): 16 bytes per token + 1 KiB per 1024 tokens.
// Known limits: a very frequent id is summed by one warp per 256 columns, in order (the price of
// the CPU's summation order; splitting long runs would change the bits); the scan is one block.
#include "common.cuh"
#include "core/philox.h"
#include "ops/embedding.h"

namespace seqfuse {
namespace {

using gpu::check_launch;
using gpu::from_f32;
using gpu::to_f32;

constexpr int kWarps = 8;          // rows per block of the row kernels
constexpr int kCols = 256;         // columns per warp (8 per lane)
constexpr int kSortThreads = 256;  // radix sort: threads per block
constexpr int kSortRounds = 4;     // keys per thread per tile
constexpr int64_t kSortTile = int64_t(kSortThreads) * kSortRounds;
constexpr int kRadix = 256;
constexpr int kScanThreads = 1024;

// 8 consecutive values at p (n <= 8 valid) to f32; Vec: the 8 are 16-byte aligned and all valid.
template <class T, bool Vec>
__device__ __forceinline__ void load8(const T* p, int n, float (&v)[8]) {
  if (Vec && n == 8) {
    constexpr int N = 16 / int(sizeof(T));  // values per 16 bytes: 8 (16-bit) or 4 (f32)
    SF_UNROLL
    for (int i = 0; i < 8; i += N) {
      T e[N];
      gpu::load16(p + i, e);
      SF_UNROLL
      for (int k = 0; k < N; ++k) v[i + k] = to_f32(e[k]);
    }
  } else {
    SF_UNROLL
    for (int k = 0; k < 8; ++k) v[k] = k < n ? to_f32(p[k]) : 0.0f;
  }
}

template <class T, bool Vec>
__device__ __forceinline__ void store8(T* p, int n, const float (&v)[8]) {
  if (Vec && n == 8) {
    constexpr int N = 16 / int(sizeof(T));
    SF_UNROLL
    for (int i = 0; i < 8; i += N) {
      T e[N];
      SF_UNROLL
      for (int k = 0; k < N; ++k) e[k] = from_f32<T>(v[i + k]);
      gpu::store16(p + i, e);
    }
  } else {
    SF_UNROLL
    for (int k = 0; k < 8; ++k)
      if (k < n) p[k] = from_f32<T>(v[k]);
  }
}

// Dropout on the 8 values v of stream elements e0 .. e0 + 7: kept ones times scale, the others 0.
__device__ __forceinline__ void dropout8(float (&v)[8], uint64_t e0, uint64_t seed, uint32_t t, float scale) {
  const Philox4 r0 = philox4x32_10(e0 >> 3, seed);
  const Philox4 r1 = (e0 & 7) ? philox4x32_10((e0 + 8) >> 3, seed) : r0;
  SF_UNROLL
  for (int k = 0; k < 8; ++k) {
    const uint64_t e = e0 + uint64_t(k);
    const bool second = (e >> 3) != (e0 >> 3);
    const uint32_t w = uint32_t(e >> 1) & 3u;  // selects, not an indexed array: no local memory
    const uint32_t lo = w & 1u ? (second ? r1.v[1] : r0.v[1]) : (second ? r1.v[0] : r0.v[0]);
    const uint32_t hi = w & 1u ? (second ? r1.v[3] : r0.v[3]) : (second ? r1.v[2] : r0.v[2]);
    const uint32_t h = ((w & 2u ? hi : lo) >> (16 * (e & 1))) & 0xFFFFu;
    v[k] = h >= t ? __fmul_rn(v[k], scale) : 0.0f;
  }
}

struct RowGeom {
  int64_t dim;
  int64_t j0;  // the lane's first column
  int n;   // its columns (0..8)
};

__device__ __forceinline__ RowGeom row_geom(int64_t dim) {
  RowGeom g;
  g.dim = dim;
  const int64_t j0 = int64_t(blockIdx.y) * kCols + (threadIdx.x & 31) * 8;
  g.j0 = j0;
  g.n = j0 >= dim ? 0 : dim - j0 < 8 ? int(dim - j0) : 8;
  return g;
}

// out[t] = drop(table[id] * scale + positions[t mod seq + pos_offset]); padding tokens: 0.
// Grid (ceil(tokens / 8), ceil(dim / 256)) x 256: warp w of block (b, c) writes token b * 8 + w,
// columns c * 256 + 8 lane .. + 7.
template <class T, bool Vec>
__global__ void embedding_fwd_kernel(const int32_t* ids, const T* table, const T* positions, T* out, int64_t tokens,
                                     int64_t seq, int64_t dim, int64_t pos_offset, int64_t padding_idx, float scale,
                                     uint32_t thr, float dscale, uint64_t seed, uint64_t offset) {
  const int64_t t = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const RowGeom g = row_geom(dim);
  if (t >= tokens || g.n == 0) return;
  float v[8];
  const int64_t id = ids[t];
  if (id == padding_idx) {
    SF_UNROLL
    for (int k = 0; k < 8; ++k) v[k] = 0.0f;
  } else {
    load8<T, Vec>(table + id * dim + g.j0, g.n, v);
    SF_UNROLL
    for (int k = 0; k < 8; ++k) v[k] = __fmul_rn(v[k], scale);
    if (positions) {
      float p[8];
      load8<T, Vec>(positions + (t % seq + pos_offset) * dim + g.j0, g.n, p);
      SF_UNROLL
      for (int k = 0; k < 8; ++k) v[k] = __fadd_rn(v[k], p[k]);
    }
    if (thr > 0) dropout8(v, offset + uint64_t(t) * uint64_t(dim) + uint64_t(g.j0), seed, thr, dscale);
  }
  store8<T, Vec>(out + t * dim + g.j0, g.n, v);
}

// acc += drop(dout[t]) for the lane's 8 columns (the gradient reaching table * scale + pos).
template <class T, bool Vec>
__device__ __forceinline__ void add_token(float (&acc)[8], float (&v)[8], const RowGeom& g, int64_t t, uint32_t thr,
                                          float dscale, uint64_t seed, uint64_t offset) {
  if (thr > 0) dropout8(v, offset + uint64_t(t) * uint64_t(g.dim) + uint64_t(g.j0), seed, thr, dscale);
  SF_UNROLL
  for (int k = 0; k < 8; ++k) acc[k] = __fadd_rn(acc[k], v[k]);
}

// dst[0, n) = fma(acc, s, dst) in dst's dtype (the CPU's add_row).
template <class T, bool Vec>
__device__ __forceinline__ void add_row(T* dst, int n, const float (&acc)[8], float s) {
  float d[8];
  load8<T, Vec>(dst, n, d);
  SF_UNROLL
  for (int k = 0; k < 8; ++k) d[k] = __fmaf_rn(acc[k], s, d[k]);
  store8<T, Vec>(dst, n, d);
}

// dtable[id] += scale * Σ drop(dout[t]) over the id's tokens in token order. keys/order: the
// tokens sorted by (key, t), key = id (padding tokens: vocab). Grid (ceil(tokens / 8), ceil(dim /
// 256)) x 256: warp w of block (b, c) works only if sorted position i = b * 8 + w starts an id's
// run; it walks the run four tokens at a time (the four rows loaded before they are added).
template <class T, bool Vec>
__global__ void embedding_bwd_ids_kernel(const uint32_t* keys, const uint32_t* order, const T* dout, T* dtable, int64_t tokens,
                                         int64_t dim, uint32_t vocab, float scale, uint32_t thr, float dscale, uint64_t seed,
                                         uint64_t offset) {
  const int64_t i = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const RowGeom g = row_geom(dim);
  if (i >= tokens || g.n == 0) return;
  const uint32_t id = keys[i];
  if (id >= vocab || (i > 0 && keys[i - 1] == id)) return;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = i;
  for (; j + 4 <= tokens && keys[j + 3] == id; j += 4) {  // sorted: keys[j + 3] == id covers j .. j + 3
    float v[4][8];
    int64_t t[4];
    SF_UNROLL
    for (int q = 0; q < 4; ++q) {
      t[q] = order[j + q];
      load8<T, Vec>(dout + t[q] * dim + g.j0, g.n, v[q]);
    }
    SF_UNROLL
    for (int q = 0; q < 4; ++q) add_token<T, Vec>(acc, v[q], g, t[q], thr, dscale, seed, offset);
  }
  for (; j < tokens && keys[j] == id; ++j) {
    const int64_t t = order[j];
    float v[8];
    load8<T, Vec>(dout + t * dim + g.j0, g.n, v);
    add_token<T, Vec>(acc, v, g, t, thr, dscale, seed, offset);
  }
  add_row<T, Vec>(dtable + int64_t(id) * dim + g.j0, g.n, acc, scale);
}

// dpositions[s + pos_offset] += Σ over the batch of drop(dout[b * seq + s]) (padding tokens left
// out), b in order. Grid (ceil(seq / 8), ceil(dim / 256)) x 256: warp w of block (b, c) owns
// position b * 8 + w, columns c * 256 + 8 lane .. + 7.
template <class T, bool Vec>
__global__ void embedding_bwd_pos_kernel(const int32_t* ids, const T* dout, T* dpositions, int64_t tokens, int64_t seq,
                                         int64_t dim, int64_t pos_offset, int64_t padding_idx, uint32_t thr, float dscale,
                                         uint64_t seed, uint64_t offset) {
  const int64_t s = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const RowGeom g = row_geom(dim);
  if (s >= seq || g.n == 0) return;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t batch = tokens / seq;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = b * seq + s;
    if (ids[t] == padding_idx) continue;
    float v[8];
    load8<T, Vec>(dout + t * dim + g.j0, g.n, v);
    add_token<T, Vec>(acc, v, g, t, thr, dscale, seed, offset);
  }
  add_row<T, Vec>(dpositions + (s + pos_offset) * dim + g.j0, g.n, acc, 1.0f);
}

// --- stable LSD radix sort of the tokens by id ------------------------------------------------

// keys[t] = ids[t] (padding tokens: vocab), order[t] = t. Grid ceil(tokens / 256) x 256.
__global__ void sort_init_kernel(const int32_t* ids, uint32_t* keys, uint32_t* order, int64_t tokens, int64_t padding_idx,
                                 uint32_t vocab) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= tokens) return;
  keys[t] = ids[t] == padding_idx ? vocab : uint32_t(ids[t]);
  order[t] = uint32_t(t);
}

// hist[d * tiles + b] = how many keys of tile b (kSortTile keys) have digit d at `shift`.
// Grid (tiles) x 256; static shared memory: 256 counters.
__global__ void radix_hist_kernel(const uint32_t* keys, int64_t n, int shift, uint32_t* hist) {
  __shared__ uint32_t count[kRadix];
  count[threadIdx.x] = 0;
  __syncthreads();
  const int64_t base = int64_t(blockIdx.x) * kSortTile;
  for (int r = 0; r < kSortRounds; ++r) {
    const int64_t i = base + r * kSortThreads + threadIdx.x;
    if (i < n) atomicAdd(&count[(keys[i] >> shift) & (kRadix - 1)], 1u);  // integer: the same counts in any order
  }
  __syncthreads();
  hist[int64_t(threadIdx.x) * gridDim.x + blockIdx.x] = count[threadIdx.x];
}

// Exclusive prefix sum of x[0, n) in place (n < 2^32 keys in all). Grid 1 x 1024: thread k scans
// its contiguous segment of ceil(n / 1024); the segment totals are scanned across the block
// (warp shuffles, then the 32 warp totals). Static shared memory: 32 + 32 words.
__global__ void radix_scan_kernel(uint32_t* x, int64_t n) {
  __shared__ uint32_t warp_total[32];
  const int64_t per = (n + kScanThreads - 1) / kScanThreads;
  const int64_t lo = threadIdx.x * per, hi = lo + per < n ? lo + per : n;
  uint32_t sum = 0;
  for (int64_t i = lo; i < hi; ++i) sum += x[i];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint32_t incl = sum;  // inclusive scan within the warp
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    uint32_t w = warp_total[lane], wi = w;
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(0xffffffffu, wi, o);
      if (lane >= o) wi += y;
    }
    warp_total[lane] = wi - w;  // exclusive over the warps
  }
  __syncthreads();
  uint32_t run = warp_total[warp] + incl - sum;
  for (int64_t i = lo; i < hi; ++i) {
    const uint32_t c = x[i];
    x[i] = run;
    run += c;
  }
}

// Stable scatter of tile b's keys (and their tokens) to their sorted places for the digit at
// `shift`: place = offset[d * tiles + b] (scanned hist) + the number of equal digits before the
// key in the tile. Grid (tiles) x 256 (8 warps); the tile's 1024 keys go in 4 rounds of 256
// consecutive keys. Static shared memory: 256 running offsets + 8 x 256 per-warp counts.
__global__ void radix_scatter_kernel(const uint32_t* keys_in, const uint32_t* order_in, uint32_t* keys_out, uint32_t* order_out,
                                     int64_t n, int shift, const uint32_t* offset) {
  __shared__ uint32_t run[kRadix];
  __shared__ uint32_t warp_count[kSortThreads / 32][kRadix];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  run[threadIdx.x] = offset[int64_t(threadIdx.x) * gridDim.x + blockIdx.x];
  const int64_t base = int64_t(blockIdx.x) * kSortTile;
  for (int r = 0; r < kSortRounds; ++r) {
    for (int w = 0; w < kSortThreads / 32; ++w) warp_count[w][threadIdx.x] = 0;
    const int64_t i = base + r * kSortThreads + threadIdx.x;
    const bool valid = i < n;
    const uint32_t key = valid ? keys_in[i] : 0u;
    const uint32_t d = valid ? (key >> shift) & (kRadix - 1) : uint32_t(kRadix);  // past the tail: no digit
    __syncthreads();  // counts cleared (and the previous round's reads of them done)
    const uint32_t peers = __match_any_sync(0xffffffffu, d);
    const uint32_t before = __popc(peers & ((1u << lane) - 1u));
    if (valid && before == 0) warp_count[warp][d] = __popc(peers);
    __syncthreads();
    uint32_t at = run[threadIdx.x];  // thread x: digit x, warps in order
    for (int w = 0; w < kSortThreads / 32; ++w) {
      const uint32_t c = warp_count[w][threadIdx.x];
      warp_count[w][threadIdx.x] = at;
      at += c;
    }
    run[threadIdx.x] = at;
    __syncthreads();
    if (valid) {
      const uint32_t place = warp_count[warp][d] + before;
      keys_out[place] = key;
      order_out[place] = order_in[i];
    }
    __syncthreads();  // this round's warp_count reads before the next round clears them
  }
}

// --- entries ------------------------------------------------------------------------------------

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <class T>
void fwd(const EmbeddingArgs& a, cudaStream_t stream) {
  const uint32_t thr = dropout_threshold(a.dropout);
  const bool vec = a.dim % 8 == 0 && aligned16(a.table) && aligned16(a.positions) && aligned16(a.out);
  const dim3 grid(unsigned((a.tokens + kWarps - 1) / kWarps), unsigned((a.dim + kCols - 1) / kCols));
  auto kernel = vec ? embedding_fwd_kernel<T, true> : embedding_fwd_kernel<T, false>;
  SF_LAUNCH(kernel, grid, dim3(kWarps * 32), 0, stream)(a.ids, static_cast<const T*>(a.table), static_cast<const T*>(a.positions),
                                                       static_cast<T*>(a.out), a.tokens, a.seq, a.dim, a.pos_offset,
                                                       a.padding_idx, a.scale, thr, dropout_scale(thr), a.seed, a.offset);
  check_launch("embedding");
}

template <class T>
void bwd(const EmbeddingArgs& a, cudaStream_t stream) {
  const char* op = "embeddingBackward";
  const uint32_t thr = dropout_threshold(a.dropout);
  const float dscale = dropout_scale(thr);
  const int64_t n = a.tokens;
  const uint32_t vocab = uint32_t(a.vocab);
  // the sort: keys in [0, vocab], 8 bits per pass
  int bits = 0;
  while (bits < 32 && (uint64_t(vocab) >> bits) != 0) ++bits;
  const int passes = (bits + 7) / 8 > 0 ? (bits + 7) / 8 : 1;
  const int64_t tiles = (n + kSortTile - 1) / kSortTile;
  gpu::Scratch scratch(size_t(n) * 16 + size_t(tiles) * kRadix * 4, stream, op);
  uint32_t* keys[2] = {scratch.as<uint32_t>(), scratch.as<uint32_t>(size_t(n) * 4)};
  uint32_t* order[2] = {scratch.as<uint32_t>(size_t(n) * 8), scratch.as<uint32_t>(size_t(n) * 12)};
  uint32_t* hist = scratch.as<uint32_t>(size_t(n) * 16);
  SF_LAUNCH(sort_init_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0, stream)(a.ids, keys[0], order[0], n, a.padding_idx,
                                                                                     vocab);
  check_launch(op);
  for (int p = 0; p < passes; ++p) {
    const int in = p & 1;
    SF_LAUNCH(radix_hist_kernel, dim3(unsigned(tiles)), dim3(kSortThreads), 0, stream)(keys[in], n, 8 * p, hist);
    check_launch(op);
    SF_LAUNCH(radix_scan_kernel, dim3(1), dim3(kScanThreads), 0, stream)(hist, tiles * kRadix);
    check_launch(op);
    SF_LAUNCH(radix_scatter_kernel, dim3(unsigned(tiles)), dim3(kSortThreads), 0, stream)(keys[in], order[in], keys[in ^ 1],
                                                                                          order[in ^ 1], n, 8 * p, hist);
    check_launch(op);
  }
  const int out = passes & 1;
  const bool vec = a.dim % 8 == 0 && aligned16(a.dout) && aligned16(a.dtable) && aligned16(a.dpositions);
  const unsigned col_blocks = unsigned((a.dim + kCols - 1) / kCols);
  auto ids_kernel = vec ? embedding_bwd_ids_kernel<T, true> : embedding_bwd_ids_kernel<T, false>;
  SF_LAUNCH(ids_kernel, dim3(unsigned((n + kWarps - 1) / kWarps), col_blocks), dim3(kWarps * 32), 0, stream)(
      keys[out], order[out], static_cast<const T*>(a.dout), static_cast<T*>(a.dtable), n, a.dim, vocab, a.scale, thr, dscale,
      a.seed, a.offset);
  check_launch(op);
  if (!a.dpositions) return;
  auto pos_kernel = vec ? embedding_bwd_pos_kernel<T, true> : embedding_bwd_pos_kernel<T, false>;
  SF_LAUNCH(pos_kernel, dim3(unsigned((a.seq + kWarps - 1) / kWarps), col_blocks), dim3(kWarps * 32), 0, stream)(
      a.ids, static_cast<const T*>(a.dout), static_cast<T*>(a.dpositions), n, a.seq, a.dim, a.pos_offset, a.padding_idx, thr,
      dscale, a.seed, a.offset);
  check_launch(op);
}

}  // namespace

void embedding_fwd_cuda(const EmbeddingArgs& a, Stream s) {
  if (a.tokens == 0 || a.dim == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return fwd<float>(a, stream);
    case DType::F16: return fwd<__half>(a, stream);
    case DType::BF16: return fwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "embedding: the CUDA kernels take f32, f16 or bf16");
  }
}

void embedding_bwd_cuda(const EmbeddingArgs& a, Stream s) {
  if (a.tokens == 0 || a.dim == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  switch (a.dtype) {
    case DType::F32: return bwd<float>(a, stream);
    case DType::F16: return bwd<__half>(a, stream);
    case DType::BF16: return bwd<__nv_bfloat16>(a, stream);
    default: fail(ErrorCode::DType, "embeddingBackward: the CUDA kernels take f32, f16 or bf16");
  }
}

}  // namespace seqfuse

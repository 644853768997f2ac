// native/cpu/attention.cc — fused attention forward (ops/attention.h), FlashAttention-style.
// Shapes: q, out [B, H, Sq, D]; k, v [B, Hkv, Sk, D]; lse [B, H, Sq] f32 (nullable).
//
// Blocks (Sq > kDecSq): a task is (b, kv head, query head of its group, block of kBr query
// rows). Its rows are converted to f32 with the scale folded in, then it walks the key blocks
// of kBc keys that any of its rows sees (causal and kvLengths skip the rest, so causal does
// about half the work):
//   S = Q K^T        (mm_panel_packed: Q broadcast, K^T panels loaded)
//   per row: bias, mask (a row sees a prefix of the block), online softmax (softmax_block_rows),
//            dropout's keep mask on the row's probabilities
//   O = alpha O + P V (V panels loaded; the running-max rescale rides on the accumulator load)
// and writes out = O * scale_p / l and lse = m + log l. The scratch is one block's S, P, Q and
// O and one kv head's K^T and V in f32 panels: O(kBr kBc + Sk D) per thread, never Sq x Sk.
// Packing makes each tile's B operand one contiguous run (strided rows alias in L1: K^T rows
// 512 bytes apart used only 8 of its 64 sets) and converts 16-bit inputs once. The products run
// on our own register tiles (cpu/attention_block.h says why not oneDNN). Threads take tasks
// from a shared counter: whole kv heads when there are at least 4 per thread (each packed once,
// for its whole GQA group), else single tasks, a head's largest (causal) blocks first.
#include <cfloat>
#include <type_traits>
#include "cpu/attention_block.h"

namespace seqfuse::cpu {
constexpr int64_t kBr = 96;   // query rows per block: a multiple of every pass's kMR
constexpr int64_t kBc = 128; // keys per block: a multiple of every pass's kNR

// The f32 scratch of one thread (floats), the same in every pass: a kv head's K^T and V in
// panels (V's columns padded to a multiple of kNR <= 32), and one block's Q, O, S and row state.
static inline int64_t fwd_scratch_floats(const AttentionArgs& a) {
  const int64_t nkb = (a.Sk + kBc - 1) / kBc, dp = attn_pad(a.D), dv = (a.D + 31) / 32 * 32;
  return nkb * kBc * (dp + dv) + kBr * dp * 2 + kBr * kBc + 4 * kBr + attn_pad(kRngBuf / 2) + kAttnPad;
}

// Tasks are handed out to the threads in chunks from a shared counter (no STL atomics in the ISA
// passes: see cpu/simd.h), so a thread that the OS deschedules (a machine shared with other
// work) delays only its current chunk, not a fixed half of the call.
struct TaskQueue {
  int64_t next = 0, n = 0, chunk = 1;
};

// The next chunk [t0, t1), or false when none is left.
static inline bool take(TaskQueue* q, int64_t& t0, int64_t& t1) {
  t0 = __atomic_fetch_add(&q->next, q->chunk, __ATOMIC_RELAXED);
  t1 = t0 + q->chunk < q->n ? t0 + q->chunk : q->n;
  return t0 < q->n;
}

// Decode (Sq <= kDecSq): a task is (b, kv head, up to kDecR rows of its group's query heads x Sq,
// a split of the keys), so K and V are read once for the whole GQA group, in place (no packing:
// each is read once). Scores are dot products of the rows with 8 keys at a time (dot_rows: full
// vectors along D, where a tile product would fill only nr of a vector's lanes), then the same
// row steps as the blocks (softmax_block_rows) and O = alpha O + P V on the tiles, V rows as B.
// Splits cover the keys in runs of whole kDk-key blocks; their partial (max, sum, output) are
// merged by log-sum-exp (decode_merge), so one batch row with few kv heads still uses every thread.
constexpr int64_t kDecSq = 16;   // decode path for Sq <= this
constexpr int64_t kDecR = 128;   // query rows per decode task (K and V are read once per 128)
constexpr int64_t kDk = 64;      // keys per decode block
constexpr int64_t kDecMinKeys = 1024;  // keys per split at least, so a split's fixed work stays small

struct DecodePlan {
  int64_t nrc = 0;     // row chunks per (b, kv head)
  int64_t nsplit = 0;  // key splits per row chunk
  float* part = nullptr;  // per task: m[kDecR], l[kDecR], O[kDecR][dp]
};

static inline int64_t decode_part_floats(const AttentionArgs& a) { return kDecR * (attn_pad(a.D) + 2); }

static inline int64_t decode_scratch_floats(const AttentionArgs& a) {
  const int64_t dp = attn_pad(a.D);
  return 2 * kDecR * dp + kDk * dp + kDecR * kDk + 3 * kDecR + attn_pad(kRngBuf / 2) + kAttnPad;
}
}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

constexpr int64_t kBand = 2 * kMR;  // rows per P V call in a ragged block
// The block walk keeps scores in log2 units (scale and bias times log2 e), so the softmax's
// exponentials are vexp2_nonpos (half the FMA-pipe work of e^x); lse converts back.
constexpr float kLog2e = 1.44269504088896341f, kLn2 = 0.693147180559945309f;

// The block walk's tasks from the queue; DC > 0: D known at compile time. Task t is (kv head
// t / (G nqb), query head of its group, query block): within a head the blocks go last first, so
// the largest causal tasks are handed out before the small ones.
template <class T, int DC>
static void fwd_tasks(const AttentionArgs& a, TaskQueue* tq, float* scratch) {
  const int64_t D = DC > 0 ? DC : a.D, dp = attn_pad(D), G = a.H / a.Hkv;
  const int64_t nqb = (a.Sq + kBr - 1) / kBr, nkb = (a.Sk + kBc - 1) / kBc;
  const int64_t dv = (D + kNR - 1) / kNR * kNR;  // V's columns in panels
  float* kt = scratch;  // per key block: kBc / kNR panels [D][kNR] of K^T
  float* vp = kt + nkb * kBc * dp;  // per key block: dv / kNR panels [kBc][kNR] of V
  float* qs = vp + nkb * kBc * attn_pad(dv);  // [kBr][dp]
  float* o = qs + kBr * dp;  // [kBr][dp]
  float* s = o + kBr * dp;  // [kBr][kBc]
  float* m = s + kBr * kBc;
  float* l = m + kBr;
  float* alpha = l + kBr;
  float* f = alpha + kBr;
  uint16_t* rng = reinterpret_cast<uint16_t*>(f + kBr);
  bool nan[kBr];
  int64_t nr[kBr];  // keys of the current block each row sees
  const Dropout drop(a.dropout, a.seed);
  const float keep_scale = dropout_scale(drop.t);
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  T* out = static_cast<T*>(a.out);
  int64_t packed = -1, t0, t1;
  while (take(tq, t0, t1)) for (int64_t t = t0; t < t1; ++t) {
    const int64_t qb = nqb - 1 - t % nqb, g = t / nqb % G, bk = t / nqb / G, b = bk / a.Hkv, h = bk % a.Hkv * G + g;
    const int64_t i0 = qb * kBr, rows = a.Sq - i0 < kBr ? a.Sq - i0 : kBr;
    const int64_t kend = attn_key_end(a, b, i0 + rows - 1);  // the rows' ends grow with i
    const T* qh = q + ((b * a.H + h) * a.Sq + i0) * D;
    const int64_t kmax = attn_key_end(a, b, a.Sq - 1);  // every key any row of this (b, kv head) sees
    if (kend > 0 && packed != bk) {
      const T* kh = k + bk * a.Sk * D;
      const T* vh = v + bk * a.Sk * D;
      for (int64_t j0 = 0; j0 < kmax; j0 += kBc) {
        const int64_t nk = kmax - j0 < kBc ? kmax - j0 : kBc;
        pack_panels_t(kh + j0 * D, D, nk, D, kt + j0 * D, (nk + kNR - 1) / kNR * kNR);
        pack_panels(vh + j0 * D, D, nk, D, vp + j0 * dv, nk);  // panels of nk rows: bstep nk kNR
      }
      packed = bk;
    }
    rows_to_f32(qh, D, rows, D, a.scale * kLog2e, qs, dp);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < D; ++c) o[r * dp + c] = 0.0f;
      m[r] = -INFINITY;
      l[r] = 0.0f;
      nan[r] = false;
    }
    for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
      const int64_t nk = kend - j0 < kBc ? kend - j0 : kBc;
      // a block where the rows see different numbers of keys (causal's diagonal) computes each
      // column tile of S only for the rows that see it, and P V per band of rows only over the
      // keys the band sees: about half of such a block
      const bool ragged = attn_key_end(a, b, i0) - j0 < nk;
      const float* ktb = kt + j0 * D;
      if (!ragged) {
        mm_panel_packed<Acc::Set, DC>(rows, (nk + kNR - 1) / kNR * kNR, D, qs, dp, 1, ktb, kNR, D * kNR, s, kBc);
      } else {
        for (int64_t n0 = 0; n0 < nk; n0 += kNR) {
          // from the first row that sees the tile's first key, rounded down to whole row tiles
          // (the extra rows' scores are never read)
          const int64_t r0 = attn_clamp(attn_first_row(a, b, j0 + n0) - i0, 0, rows) / kMR * kMR;
          mm_panel_packed<Acc::Set, DC>(rows - r0, kNR, D, qs + r0 * dp, dp, 1, ktb + n0 * D, kNR, D * kNR, s + r0 * kBc + n0, kBc);
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        nr[r] = attn_clamp(attn_key_end(a, b, i0 + r) - j0, 0, nk);
        if (const float* br = attn_bias_row(a, b, h, i0 + r))
          add_bias_row(s + r * kBc, nr[r], br + j0 * a.bias_stride[3], a.bias_stride[3], kLog2e);
      }
      softmax_block_rows(s, kBc, rows, nr, nk, m, l, alpha, nan);
      if (drop.on())
        for (int64_t r = 0; r < rows; ++r) drop_row(drop, rng, attn_rng_index(a, b, h, i0 + r, j0), s + r * kBc, nr[r]);
      const float* vpb = vp + j0 * dv;  // its panels hold the packed keys of the block
      const int64_t vstep = (kmax - j0 < kBc ? kmax - j0 : kBc) * kNR;
      if (!ragged) {
        mm_panel_packed<Acc::Scale>(rows, D, nk, s, kBc, 1, vpb, kNR, vstep, o, dp, alpha);
      } else {
        for (int64_t r = 0; r < rows; r += kBand) {
          const int64_t rb = rows - r < kBand ? rows - r : kBand;
          const int64_t kk = attn_clamp(attn_key_end(a, b, i0 + r + rb - 1) - j0, 0, nk);
          mm_panel_packed<Acc::Scale>(rb, D, kk, s + r * kBc, kBc, 1, vpb, kNR, vstep, o + r * dp, dp, alpha + r);
        }
      }
    }
    float* lse = a.lse ? a.lse + (b * a.H + h) * a.Sq + i0 : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      const bool empty = l[r] == 0.0f;
      f[r] = nan[r] ? NAN : empty ? 0.0f : keep_scale / l[r];
      if (lse) lse[r] = nan[r] ? NAN : empty ? -INFINITY : m[r] * kLn2 + std::log(l[r]);
    }
    rows_from_f32(o, dp, f, rows, D, out + ((b * a.H + h) * a.Sq + i0) * D, D);
  }
}

// Requests the lines of rows [r0, r1) of K or V (rows of D elements): the decode's reads walk
// 8 rows side by side (dots) or 16 columns down 64 rows (P V's tiles), which the hardware
// prefetchers do not follow, so each 8-key step asks for the keys of the next step and the
// values of its own.
template <class T>
SF_INLINE void prefetch_rows(const T* p, int64_t r0, int64_t r1, int64_t D) {
  const char* b = reinterpret_cast<const char*>(p + r0 * D);
  const char* e = reinterpret_cast<const char*>(p + r1 * D);
  for (; b < e; b += 64) __builtin_prefetch(b);
}

// Decode tasks from the queue: each leaves its rows' partial max (log2 units), sum and output in p.part.
template <class T>
static void decode_tasks(const AttentionArgs& a, const DecodePlan& p, TaskQueue* tq, float* scratch) {
  const int64_t D = a.D, dp = attn_pad(D), G = a.H / a.Hkv, rows = G * a.Sq;
  float* qs = scratch;  // [kDecR][dp] the rows, scale and log2 e folded in
  float* o = qs + kDecR * dp;  // [kDecR][dp]
  float* vf = o + kDecR * dp;  // [kDk][dp] a block of V in f32 (16-bit inputs)
  float* s = vf + kDk * dp;  // [kDecR][kDk]
  float* m = s + kDecR * kDk;
  float* l = m + kDecR;
  float* alpha = l + kDecR;
  uint16_t* rng = reinterpret_cast<uint16_t*>(alpha + kDecR);
  bool nan[kDecR];
  int64_t nv[kDecR];
  const Dropout drop(a.dropout, a.seed);
  const T* q = static_cast<const T*>(a.q);
  int64_t t0, t1;
  while (take(tq, t0, t1)) for (int64_t t = t0; t < t1; ++t) {
    const int64_t ks = t % p.nsplit, rc = t / p.nsplit % p.nrc, bk = t / p.nsplit / p.nrc, b = bk / a.Hkv, hk = bk % a.Hkv;
    const int64_t r0 = rc * kDecR, nr = rows - r0 < kDecR ? rows - r0 : kDecR;
    // this split's keys: whole blocks of the keys any row sees
    const int64_t kend = attn_key_end(a, b, a.Sq - 1), nblk = (kend + kDk - 1) / kDk;
    const int64_t j0s = nblk * ks / p.nsplit * kDk, j1e = nblk * (ks + 1) / p.nsplit * kDk, j1s = j1e < kend ? j1e : kend;
    // the group's rows are consecutive in q: heads hk G .. hk G + G - 1, Sq rows each; row r is
    // (head hk G + (r0 + r) / Sq, query (r0 + r) % Sq)
    rows_to_f32(q + ((b * a.H + hk * G) * a.Sq + r0) * D, D, nr, D, a.scale * kLog2e, qs, dp);
    for (int64_t r = 0; r < nr; ++r) {
      for (int64_t c = 0; c < D; ++c) o[r * dp + c] = 0.0f;
      m[r] = -INFINITY;
      l[r] = 0.0f;
      nan[r] = false;
    }
    const T* kh = static_cast<const T*>(a.k) + bk * a.Sk * D;
    const T* vh = static_cast<const T*>(a.v) + bk * a.Sk * D;
    for (int64_t j0 = j0s; j0 < j1s; j0 += kDk) {
      const int64_t nk = j1s - j0 < kDk ? j1s - j0 : kDk;
      const T* kb = kh + j0 * D;
      for (int64_t jj = 0; jj < nk; jj += 8) {
        const int64_t n8 = nk - jj < 8 ? nk - jj : 8;
        prefetch_rows(kh, j0 + jj + 8, j0 + jj + 16 < j1s ? j0 + jj + 16 : j1s, D);
        prefetch_rows(vh, j0 + jj, j0 + jj + n8, D);
        for (int64_t r = 0; r < nr; ++r) {
          if (n8 == 8) dot_rows<8>(qs + r * dp, kb + jj * D, D, D, s + r * kDk + jj);
          else
            for (int64_t i = 0; i < n8; ++i) dot_rows<1>(qs + r * dp, kb + (jj + i) * D, D, D, s + r * kDk + jj + i);
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t g = (r0 + r) / a.Sq, i = (r0 + r) % a.Sq;
        nv[r] = attn_clamp(attn_key_end(a, b, i) - j0, 0, nk);
        if (const float* br = attn_bias_row(a, b, hk * G + g, i))
          add_bias_row(s + r * kDk, nv[r], br + j0 * a.bias_stride[3], a.bias_stride[3], kLog2e);
      }
      softmax_block_rows(s, kDk, nr, nv, nk, m, l, alpha, nan);
      if (drop.on())  // rows of the group are consecutive in the stream too
        for (int64_t r = 0; r < nr; ++r) drop_row(drop, rng, attn_rng_index(a, b, hk * G, r0 + r, j0), s + r * kDk, nv[r]);
      if constexpr (std::is_same_v<T, float>) {
        mm_panel<Acc::Scale>(nr, D, nk, s, kDk, 1, vh + j0 * D, D, o, dp, alpha);
      } else {
        rows_to_f32(vh + j0 * D, D, nk, D, 1.0f, vf, dp);
        mm_panel<Acc::Scale>(nr, D, nk, s, kDk, 1, vf, dp, o, dp, alpha);
      }
    }
    float* part = p.part + t * decode_part_floats(a);
    for (int64_t r = 0; r < nr; ++r) {
      part[r] = m[r];
      part[kDecR + r] = nan[r] ? NAN : l[r];
    }
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < D; ++c) part[2 * kDecR + r * dp + c] = o[r * dp + c];
  }
}

// Merges the splits of row chunks [c0, c1) (c = bk * nrc + rc) into out and lse.
template <class T>
static void decode_merge(const AttentionArgs& a, const DecodePlan& p, int64_t c0, int64_t c1) {
  constexpr int W = V::W;
  const int64_t D = a.D, dp = attn_pad(D), rows = a.H / a.Hkv * a.Sq, pf = decode_part_floats(a);
  const float keep_scale = dropout_scale(dropout_threshold(a.dropout));
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t rc = c % p.nrc, bk = c / p.nrc, b = bk / a.Hkv, hk = bk % a.Hkv;
    const int64_t r0 = rc * kDecR, nr = rows - r0 < kDecR ? rows - r0 : kDecR;
    const float* part = p.part + c * p.nsplit * pf;
    const int64_t row0 = (b * a.H + hk * (a.H / a.Hkv)) * a.Sq + r0;  // global row of the chunk's first
    T* out = static_cast<T*>(a.out) + row0 * D;
    for (int64_t r = 0; r < nr; ++r) {
      float mx = -INFINITY, l = 0.0f;
      bool nan = false;
      for (int64_t s = 0; s < p.nsplit; ++s) {
        const float ms = part[s * pf + r];
        mx = ms > mx ? ms : mx;
        nan |= part[s * pf + kDecR + r] != part[s * pf + kDecR + r];
      }
      R acc[256 / V::W + 1];  // D <= 256
      const int64_t nv = (D + W - 1) / W;
      for (int64_t v = 0; v < nv; ++v) acc[v] = V::zero();
      if (!nan && mx != -INFINITY) {
        for (int64_t s = 0; s < p.nsplit; ++s) {
          const float w = std::exp2(part[s * pf + r] - mx);  // 0 for a split that saw nothing
          l += w * part[s * pf + kDecR + r];
          const float* os = part + s * pf + 2 * kDecR + r * dp;
          for (int64_t v = 0; v < nv; ++v) acc[v] = V::fma(V::set1(w), V::load(os + v * W), acc[v]);
        }
      }
      const bool empty = !nan && l == 0.0f;
      const R f = V::set1(nan ? NAN : empty ? 0.0f : keep_scale / l);
      if (a.lse) a.lse[row0 + r] = nan ? NAN : empty ? -INFINITY : mx * kLn2 + std::log(l);
      T* y = out + r * D;
      for (int64_t v = 0; v < nv; ++v) {
        const R x = V::mul(acc[v], f);
        if ((v + 1) * W <= D) V::store(y + v * W, x);
        else V::store(y + v * W, x, int(D - v * W));
      }
    }
  }
}

void attention_decode_tasks(const AttentionArgs& a, const DecodePlan& p, TaskQueue* tq, float* scratch) {
  switch (a.dtype) {
    case DType::F32: return decode_tasks<float>(a, p, tq, scratch);
    case DType::BF16: return decode_tasks<bf16_t>(a, p, tq, scratch);
    case DType::F16: return decode_tasks<f16_t>(a, p, tq, scratch);
    default: return;
  }
}

void attention_decode_merge(const AttentionArgs& a, const DecodePlan& p, int64_t c0, int64_t c1) {
  switch (a.dtype) {
    case DType::F32: return decode_merge<float>(a, p, c0, c1);
    case DType::BF16: return decode_merge<bf16_t>(a, p, c0, c1);
    case DType::F16: return decode_merge<f16_t>(a, p, c0, c1);
    default: return;
  }
}

template <class T>
static void fwd_tasks_t(const AttentionArgs& a, TaskQueue* tq, float* scratch) {
  switch (a.D) {
    case 64: return fwd_tasks<T, 64>(a, tq, scratch);
    case 128: return fwd_tasks<T, 128>(a, tq, scratch);
    default: return fwd_tasks<T, 0>(a, tq, scratch);
  }
}

void attention_fwd_tasks(const AttentionArgs& a, TaskQueue* tq, float* scratch) {
  switch (a.dtype) {
    case DType::F32: return fwd_tasks_t<float>(a, tq, scratch);
    case DType::BF16: return fwd_tasks_t<bf16_t>(a, tq, scratch);
    case DType::F16: return fwd_tasks_t<f16_t>(a, tq, scratch);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <omp.h>
#include <algorithm>
#include <memory>
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void attention_fwd_tasks(const AttentionArgs&, TaskQueue*, float*))
SF_ISA_DECLARE(void attention_decode_tasks(const AttentionArgs&, const DecodePlan&, TaskQueue*, float*))
SF_ISA_DECLARE(void attention_decode_merge(const AttentionArgs&, const DecodePlan&, int64_t, int64_t))
}  // namespace cpu

// Aligned f32 scratch: `extra` floats, then `per` floats per thread. Allocated before the
// parallel region (an allocation failure must throw on the calling thread, not inside OpenMP),
// not initialized (the kernels write before they read). Up to kKeepFloats it is kept for the next
// call on the same calling thread (the JS thread or a libuv worker): a decode step is ~100 us,
// and a fresh mapping of its few hundred KiB cost that much again in page faults.
struct Scratch {
  static constexpr int64_t kKeepFloats = int64_t(1) << 20;  // 4 MiB per calling thread
  std::unique_ptr<float[]> own;
  float* base;
  int64_t extra, per;
  Scratch(int64_t extra_floats, int64_t per_thread, int threads) : extra(cpu::attn_pad(extra_floats)), per(per_thread) {
    thread_local std::unique_ptr<float[]> kept;
    thread_local int64_t kept_n = 0;
    const int64_t n = extra + per * threads + cpu::kAttnPad;
    float* p;
    if (n <= kKeepFloats) {
      if (kept_n < n) {
        kept.reset();
        kept.reset(new float[size_t(n)]);
        kept_n = n;
      }
      p = kept.get();
    } else {
      own.reset(new float[size_t(n)]);
      p = own.get();
    }
    base = p + (cpu::kAttnPad - reinterpret_cast<uintptr_t>(p) / sizeof(float) % cpu::kAttnPad) % cpu::kAttnPad;
  }
  float* shared() { return base; }  // the extra floats
  float* at(int t) { return base + extra + per * t; }  // a thread's scratch
};

// Runs fn(thread) on `threads` threads (the calling one alone for 1).
template <class Fn>
static void run_threads(int threads, const Fn& fn) {
  if (threads <= 1) return fn(0);
#pragma omp parallel num_threads(threads)
  fn(omp_get_thread_num());
}

// Threads worth using for `macs` multiply-adds: one per ~2.5 us of work at least, as a fork/join
// costs a few microseconds.
static int useful_threads(double macs, int64_t tasks) {
  const double useful = macs / (256.0 * 1024.0);
  int threads = get_num_threads();
  if (useful < threads) threads = useful < 1.0 ? 1 : int(useful);
  return int(std::min<int64_t>(threads, tasks));
}

static void attention_decode_cpu(const AttentionArgs& a) {
  using namespace cpu;
  const int64_t R = a.H / a.Hkv * a.Sq, groups = a.B * a.Hkv;
  DecodePlan p;
  p.nrc = (R + kDecR - 1) / kDecR;
  int64_t kmax = 0;
  for (int64_t b = 0; b < a.B; ++b) kmax = std::max(kmax, attn_key_end(a, b, a.Sq - 1));
  const int threads = get_num_threads();
  // splits: enough tasks for every thread, each split at least kDecMinKeys keys
  const int64_t chunks = groups * p.nrc, want = (2 * threads + chunks - 1) / chunks;
  p.nsplit = std::max<int64_t>(1, std::min(want, kmax / kDecMinKeys));
  const int64_t tasks = chunks * p.nsplit;
  const int nt = useful_threads(double(R) * double(kmax) * double(groups) * double(a.D), tasks);
  Scratch sc(tasks * decode_part_floats(a), decode_scratch_floats(a), nt);
  p.part = sc.shared();
  TaskQueue tq;
  tq.n = tasks;
  auto fn = SF_PICK(attention_decode_tasks);
  run_threads(nt, [&](int t) { fn(a, p, &tq, sc.at(t)); });
  auto merge = SF_PICK(attention_decode_merge);
  parallel_for(chunks, p.nsplit * kDecR * a.D, [&](int64_t c0, int64_t c1) { merge(a, p, c0, c1); });
}

void attention_fwd_cpu(const AttentionArgs& a) {
  using namespace cpu;
  if (a.B == 0 || a.H == 0 || a.Sq == 0) return;
  if (a.Sq <= kDecSq) return attention_decode_cpu(a);
  const int64_t nqb = (a.Sq + kBr - 1) / kBr, tasks = a.B * a.H * nqb, heads = a.B * a.Hkv;
  const int nt = useful_threads(double(a.B * a.H) * double(a.Sq) * double(a.Sk) * double(a.D), tasks);
  Scratch sc(0, fwd_scratch_floats(a), nt);
  TaskQueue tq;
  tq.n = tasks;
  // whole kv heads per chunk (each packed once) when there are enough of them to balance
  tq.chunk = heads >= 4 * nt ? a.H / a.Hkv * nqb : 1;
  auto fn = SF_PICK(attention_fwd_tasks);
  run_threads(nt, [&](int t) { fn(a, &tq, sc.at(t)); });
}

}  // namespace seqfuse
#endif

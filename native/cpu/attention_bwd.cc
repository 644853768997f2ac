// native/cpu/attention_bwd.cc — fused attention backward (ops/attention.h), FlashAttention-2 style.
// Shapes: q, out, dout, dq [B, H, Sq, D]; k, v, dk, dv [B, Hkv, Sk, D]; lse [B, H, Sq] f32.
//
// delta_i = <dout_i, out_i> first (one pass over out and dout). Then, per query head and per
// block of kBc keys, over the tiles of kBr query rows that see the block (causal and kvLengths
// skip the rest, so causal does about half the work):
//   S  = (scale Q) K^T          P = exp(S + bias - lse), 0 where hidden   (the forward's S bits)
//   dP = dO V^T                 dS = P (keep scale_p dP - delta),  P <- keep scale_p P
//   dV += P^T dO                dK += dS^T (scale Q)                dQ += dS (scale K)
// all on cpu/attention_block.h's register tiles (mm_panel), accumulated in f32. Scratch per
// thread: one block's K^T, V^T and scale K, one tile's Q, dO, P and dS (O(kBr kBc + kBc D));
// nothing of size Sq x Sk.
//
// Threads and determinism. The unit that owns its outputs is a group: (b, kv head) with its G
// query heads, which alone write that kv head's dk/dv rows and those heads' dq rows.
//   Whole groups (the usual case, B Hkv large enough to balance): a thread takes a group and
//     runs it alone, block after block, accumulating f32 straight into the outputs (or, for
//     16-bit outputs, into its own f32 rows converted at the end). A group's arithmetic never
//     depends on who runs it, so the bits do not depend on the thread count.
//   Split groups (few groups, e.g. B 1 and one kv head): the threads split the key blocks of
//     each group into contiguous ranges of equal cost; a thread owns its blocks' dk/dv rows and
//     adds its dQ into a private f32 partial, and after each head the partials are summed in
//     thread order. Same bits for the same thread count.
#include <type_traits>
#include "cpu/attention_block.h"

namespace seqfuse::cpu {
constexpr int64_t kBwdBr = 48;  // query rows per tile: a multiple of every pass's kMR
constexpr int64_t kBwdBc = 96;  // keys per block: a multiple of every pass's kMR and kNR

// Where one query head's gradients accumulate, in f32: dq rows [0, Sq), dk/dv rows [0, Sk) of
// its kv head.
struct BwdAcc {
  float* dq;
  int64_t ldq;
  float* dk;
  float* dv;
  int64_t ldk;
};

// The f32 tile scratch of one thread (floats), the same in every pass.
static inline int64_t bwd_tile_floats(const AttentionArgs& a) {
  const int64_t dp = attn_pad(a.D);
  return 2 * a.D * kBwdBc + kBwdBc * dp + 2 * kBwdBr * dp + 2 * kBwdBr * kBwdBc + attn_pad(kRngBuf / 2);
}
}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

// One row of the tile's gradient step over the n visible keys: ds = p (keep scale_p dp - delta)
// and p = keep scale_p p (the dV weights), in place of dp and p; ds = 0 over [n, nz). h: the
// row's 16-bit dropout values (Drop only).
template <bool Drop>
static inline void grad_row(float* p, float* ds, int64_t n, int64_t nz, float delta, const Dropout& d, const uint16_t* h) {
  constexpr int W = V::W;
  const R dl = V::set1(delta);
  for (int64_t j = 0; j < n; j += W) {
    const int w = n - j < W ? int(n - j) : W;
    R pv = ld(p + j, w), dpv = ld(ds + j, w);
    if constexpr (Drop) {
      dpv = d.apply(dpv, h + j, w);
      const R pd = d.apply(pv, h + j, w);
      if (w == W) V::store(p + j, pd);
      else V::store(p + j, pd, w);
    }
    const R r = V::mul(pv, V::sub(dpv, dl));
    if (w == W) V::store(ds + j, r);
    else V::store(ds + j, r, w);
  }
  for (int64_t j = n; j < nz; ++j) ds[j] = 0.0f;
}

// Query head h (batch row b) against key blocks [kb0, kb1), added into acc.
template <class T, int DC>
static void bwd_head(const AttentionArgs& a, int64_t b, int64_t h, int64_t kb0, int64_t kb1, const float* delta,
                     const BwdAcc& acc, float* scratch) {
  constexpr int64_t Br = kBwdBr, Bc = kBwdBc;
  const int64_t D = DC > 0 ? DC : a.D, dp = attn_pad(D), hk = h / (a.H / a.Hkv);
  float* kt = scratch;       // [D][Bc] K^T of the block, zero past its last key
  float* vt = kt + D * Bc;   // [D][Bc] V^T, the same
  float* ks = vt + D * Bc;   // [Bc][dp] scale K
  float* qs = ks + Bc * dp;  // [Br][dp] scale Q
  float* d16 = qs + Br * dp;  // [Br][dp] dO in f32 (16-bit inputs)
  float* p = d16 + Br * dp;  // [Br][Bc] P, then keep scale_p P
  float* ds = p + Br * Bc;   // [Br][Bc] dP, then dS
  uint16_t* rng = reinterpret_cast<uint16_t*>(ds + Br * Bc);
  const Dropout drop(a.dropout, a.seed);
  const int64_t hq = b * a.H + h, hkv = b * a.Hkv + hk;
  const T* q = static_cast<const T*>(a.q) + hq * a.Sq * D;
  const T* dout = static_cast<const T*>(a.dout) + hq * a.Sq * D;
  const T* k = static_cast<const T*>(a.k) + hkv * a.Sk * D;
  const T* v = static_cast<const T*>(a.v) + hkv * a.Sk * D;
  const float* lse = a.lse + hq * a.Sq;
  const float* dl = delta + hq * a.Sq;
  const int64_t kend = a.kv_lengths ? int64_t(a.kv_lengths[b]) : a.Sk;
  int64_t nvis[Br];
  for (int64_t kb = kb0; kb < kb1; ++kb) {
    const int64_t j0 = kb * Bc, i1 = j0 < kend ? attn_first_row(a, b, j0) : a.Sq;
    if (i1 >= a.Sq) continue;  // no query sees the block
    const int64_t nk = kend - j0 < Bc ? kend - j0 : Bc, nkp = (nk + kNR - 1) / kNR * kNR;
    pack_transposed(k + j0 * D, D, nk, D, kt, Bc, nkp);
    pack_transposed(v + j0 * D, D, nk, D, vt, Bc, nkp);
    rows_to_f32(k + j0 * D, D, nk, D, a.scale, ks, dp);
    float* dk = acc.dk + j0 * acc.ldk;
    float* dv = acc.dv + j0 * acc.ldk;
    for (int64_t i0 = i1; i0 < a.Sq; i0 += Br) {
      const int64_t m = a.Sq - i0 < Br ? a.Sq - i0 : Br;
      // keys of the block that some row of the tile sees (the rows' ends grow with i): on the
      // causal diagonal, the products skip the columns no row sees
      const int64_t ke = attn_key_end(a, b, i0 + m - 1) - j0, nt = ke < nk ? ke : nk, ntp = (nt + kNR - 1) / kNR * kNR;
      rows_to_f32(q + i0 * D, D, m, D, a.scale, qs, dp);
      const float* dor = d16;
      int64_t ldo = dp;
      if constexpr (std::is_same_v<T, float>) {
        dor = dout + i0 * D;
        ldo = D;
      } else {
        rows_to_f32(dout + i0 * D, D, m, D, 1.0f, d16, dp);
      }
      mm_panel<Acc::Set, DC>(m, ntp, D, qs, dp, 1, kt, Bc, p, Bc);
      bool any = false;
      for (int64_t r = 0; r < m; ++r) {
        const int64_t i = i0 + r;
        float* pr = p + r * Bc;
        int64_t n = attn_key_end(a, b, i) - j0;
        n = n < 0 ? 0 : n > nt ? nt : n;
        const float l = lse[i];
        if (l == -INFINITY) n = 0;  // the row sees no key at all (e.g. its bias hides them)
        nvis[r] = n;
        if (n == 0) {
          for (int64_t j = 0; j < ntp; ++j) pr[j] = 0.0f;
          continue;
        }
        any = true;
        if (const float* br = attn_bias_row(a, b, h, i)) add_bias_row(pr, n, br + j0 * a.bias_stride[3], a.bias_stride[3]);
        if (l == l) {
          probs_row(pr, n, ntp, l);
        } else {  // the forward's NaN row: NaN weights, so NaN gradients
          for (int64_t j = 0; j < ntp; ++j) pr[j] = j < n ? NAN : 0.0f;
        }
      }
      if (!any) continue;
      mm_panel<Acc::Set, DC>(m, ntp, D, dor, ldo, 1, vt, Bc, ds, Bc);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t n = nvis[r];
        float* dsr = ds + r * Bc;
        if (n == 0) {
          for (int64_t j = 0; j < ntp; ++j) dsr[j] = 0.0f;
        } else if (drop.on()) {
          const uint16_t* hr = drop.block(rng, attn_rng_index(a, b, h, i0 + r, j0), n);
          grad_row<true>(p + r * Bc, dsr, n, ntp, dl[i0 + r], drop, hr);
        } else {
          grad_row<false>(p + r * Bc, dsr, n, ntp, dl[i0 + r], drop, nullptr);
        }
      }
      if (m == Br) {
        mm_panel<Acc::Add, int(Br)>(nt, D, m, p, 1, Bc, dor, ldo, dv, acc.ldk);
        mm_panel<Acc::Add, int(Br)>(nt, D, m, ds, 1, Bc, qs, dp, dk, acc.ldk);
      } else {
        mm_panel<Acc::Add>(nt, D, m, p, 1, Bc, dor, ldo, dv, acc.ldk);
        mm_panel<Acc::Add>(nt, D, m, ds, 1, Bc, qs, dp, dk, acc.ldk);
      }
      if (nt == Bc) mm_panel<Acc::Add, int(Bc)>(m, D, nt, ds, Bc, 1, ks, dp, acc.dq + i0 * acc.ldq, acc.ldq);
      else mm_panel<Acc::Add>(m, D, nt, ds, Bc, 1, ks, dp, acc.dq + i0 * acc.ldq, acc.ldq);
    }
  }
}

template <class T>
static void bwd_head_t(const AttentionArgs& a, int64_t b, int64_t h, int64_t kb0, int64_t kb1, const float* delta,
                       const BwdAcc& acc, float* scratch) {
  switch (a.D) {
    case 64: return bwd_head<T, 64>(a, b, h, kb0, kb1, delta, acc, scratch);
    case 128: return bwd_head<T, 128>(a, b, h, kb0, kb1, delta, acc, scratch);
    default: return bwd_head<T, 0>(a, b, h, kb0, kb1, delta, acc, scratch);
  }
}

void attention_bwd_head(const AttentionArgs& a, int64_t b, int64_t h, int64_t kb0, int64_t kb1, const float* delta,
                        const BwdAcc& acc, float* scratch) {
  switch (a.dtype) {
    case DType::F32: return bwd_head_t<float>(a, b, h, kb0, kb1, delta, acc, scratch);
    case DType::BF16: return bwd_head_t<bf16_t>(a, b, h, kb0, kb1, delta, acc, scratch);
    case DType::F16: return bwd_head_t<f16_t>(a, b, h, kb0, kb1, delta, acc, scratch);
    default: return;
  }
}

// delta[r] = <dout_r, out_r> for rows [r0, r1) of [B * H * Sq, D].
template <class T>
static void bwd_delta_t(const AttentionArgs& a, int64_t r0, int64_t r1, float* delta) {
  constexpr int W = V::W;
  const int64_t D = a.D;
  for (int64_t r = r0; r < r1; ++r) {
    const T* o = static_cast<const T*>(a.out) + r * D;
    const T* g = static_cast<const T*>(a.dout) + r * D;
    R s0 = V::zero(), s1 = s0;
    int64_t c = 0;
    for (; c + 2 * W <= D; c += 2 * W) {
      s0 = V::fma(V::load(o + c), V::load(g + c), s0);
      s1 = V::fma(V::load(o + c + W), V::load(g + c + W), s1);
    }
    for (; c < D; c += W) {
      const int w = D - c < W ? int(D - c) : W;
      s0 = V::fma(ld(o + c, w), ld(g + c, w), s0);
    }
    delta[r] = V::hsum(V::add(s0, s1));
  }
}

void attention_bwd_delta(const AttentionArgs& a, int64_t r0, int64_t r1, float* delta) {
  switch (a.dtype) {
    case DType::F32: return bwd_delta_t<float>(a, r0, r1, delta);
    case DType::BF16: return bwd_delta_t<bf16_t>(a, r0, r1, delta);
    case DType::F16: return bwd_delta_t<f16_t>(a, r0, r1, delta);
    default: return;
  }
}

// out[r, c] = the sum, in order of t, of parts[t][r * ldp + c] over the parts with from[t] <= r,
// for rows [r0, r1) and c < D; out: rows of D values of the op's dtype.
template <class T>
static void bwd_sum_t(const float* const* parts, const int64_t* from, int np, int64_t ldp, int64_t r0, int64_t r1, int64_t D,
                      T* out) {
  constexpr int W = V::W;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = 0; c < D; c += W) {
      const int w = D - c < W ? int(D - c) : W;
      R s = V::zero();
      for (int t = 0; t < np; ++t)
        if (from[t] <= r) s = V::add(s, ld(parts[t] + r * ldp + c, w));
      if (w == W) V::store(out + r * D + c, s);
      else V::store(out + r * D + c, s, w);
    }
  }
}

void attention_bwd_sum(const AttentionArgs& a, const float* const* parts, const int64_t* from, int np, int64_t ldp, int64_t r0,
                       int64_t r1, void* out) {
  switch (a.dtype) {
    case DType::F32: return bwd_sum_t(parts, from, np, ldp, r0, r1, a.D, static_cast<float*>(out));
    case DType::BF16: return bwd_sum_t(parts, from, np, ldp, r0, r1, a.D, static_cast<bf16_t*>(out));
    case DType::F16: return bwd_sum_t(parts, from, np, ldp, r0, r1, a.D, static_cast<f16_t*>(out));
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <omp.h>
#include <algorithm>
#include <cstring>
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void attention_bwd_head(const AttentionArgs&, int64_t, int64_t, int64_t, int64_t, const float*, const BwdAcc&,
                                       float*))
SF_ISA_DECLARE(void attention_bwd_delta(const AttentionArgs&, int64_t, int64_t, float*))
SF_ISA_DECLARE(void attention_bwd_sum(const AttentionArgs&, const float* const*, const int64_t*, int, int64_t, int64_t, int64_t,
                                      void*))

// The work of key block kb of batch row b, in query rows (plus the block's packing, as rows).
static int64_t bwd_block_cost(const AttentionArgs& a, int64_t b, int64_t kb) {
  const int64_t j0 = kb * kBwdBc, kend = a.kv_lengths ? int64_t(a.kv_lengths[b]) : a.Sk;
  return j0 < kend ? a.Sq - attn_first_row(a, b, j0) + 8 : 0;
}

// A float buffer whose start is aligned to kAttnPad floats.
struct AlignedFloats {
  std::vector<float> v;
  float* p;
  explicit AlignedFloats(int64_t n) : v(size_t(n + kAttnPad)) {
    p = v.data() + (kAttnPad - reinterpret_cast<uintptr_t>(v.data()) / sizeof(float) % kAttnPad) % kAttnPad;
  }
};
}  // namespace cpu

void attention_bwd_cpu(const AttentionArgs& a) {
  using namespace cpu;
  if (a.B == 0 || a.H == 0) return;
  const int64_t D = a.D, G = a.H / a.Hkv, groups = a.B * a.Hkv, esz = int64_t(dtype_size(a.dtype));
  const int64_t qrows = a.B * a.H * a.Sq, krows = a.B * a.Hkv * a.Sk;
  if (a.Sq == 0 || a.Sk == 0) {  // nothing to see: zero gradients (all-zero bits are +0 in every dtype)
    std::memset(a.dq, 0, size_t(qrows * D * esz));
    std::memset(a.dk, 0, size_t(krows * D * esz));
    std::memset(a.dv, 0, size_t(krows * D * esz));
    return;
  }
  auto head = SF_PICK(attention_bwd_head);
  auto sum = SF_PICK(attention_bwd_sum);
  auto delta_rows = SF_PICK(attention_bwd_delta);
  std::vector<float> delta(static_cast<size_t>(qrows));
  parallel_for(qrows, 2 * D, [&](int64_t r0, int64_t r1) { delta_rows(a, r0, r1, delta.data()); });

  const bool f32 = a.dtype == DType::F32;
  const int64_t nkb = (a.Sk + kBwdBc - 1) / kBwdBc, dp = attn_pad(D), tile = bwd_tile_floats(a);
  std::vector<int64_t> bcost(static_cast<size_t>(a.B * nkb));  // per (b, key block)
  std::vector<int64_t> gcost(static_cast<size_t>(a.B), 0);     // per group of batch row b
  int64_t total = 0;
  for (int64_t b = 0; b < a.B; ++b) {
    for (int64_t kb = 0; kb < nkb; ++kb) gcost[size_t(b)] += bcost[size_t(b * nkb + kb)] = bwd_block_cost(a, b, kb);
    gcost[size_t(b)] *= G;
    total += gcost[size_t(b)] * a.Hkv;
  }
  int threads = get_num_threads();
  const int64_t useful = total * kBwdBc * D / (256 * 1024);  // ~10 flops per unit: ~2.5 MFLOP per thread at least
  if (useful < threads) threads = int(std::max<int64_t>(useful, 1));

  // Whole groups when they balance: list scheduling of the groups in order (what the dynamic
  // loop below does) ends within 15% of a perfect split.
  bool whole = threads == 1 || nkb == 1;
  if (!whole) {
    std::vector<int64_t> load(static_cast<size_t>(threads), 0);
    for (int64_t g = 0; g < groups; ++g) *std::min_element(load.begin(), load.end()) += gcost[size_t(g / a.Hkv)];
    whole = *std::max_element(load.begin(), load.end()) * threads * 100 <= total * 115;
  }
  if (whole) {
    threads = int(std::min<int64_t>(threads, groups));
    // per thread: the tile scratch, and for 16-bit outputs f32 dq rows of a head and dk, dv rows of a group
    const int64_t per = attn_pad(tile + (f32 ? 0 : (a.Sq + 2 * a.Sk) * dp));
    AlignedFloats scratch(per * threads);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t g = 0; g < groups; ++g) {
      float* s = scratch.p + per * omp_get_thread_num();
      const int64_t b = g / a.Hkv;
      char* dk = static_cast<char*>(a.dk) + g * a.Sk * D * esz;
      char* dv = static_cast<char*>(a.dv) + g * a.Sk * D * esz;
      BwdAcc acc{nullptr, D, reinterpret_cast<float*>(dk), reinterpret_cast<float*>(dv), D};
      if (!f32) acc = BwdAcc{s + tile, dp, s + tile + a.Sq * dp, s + tile + (a.Sq + a.Sk) * dp, dp};
      std::memset(acc.dk, 0, size_t(a.Sk * acc.ldk) * sizeof(float));
      std::memset(acc.dv, 0, size_t(a.Sk * acc.ldk) * sizeof(float));
      for (int64_t h = g % a.Hkv * G; h < (g % a.Hkv + 1) * G; ++h) {
        char* dq = static_cast<char*>(a.dq) + (b * a.H + h) * a.Sq * D * esz;
        if (f32) acc.dq = reinterpret_cast<float*>(dq);
        std::memset(acc.dq, 0, size_t(a.Sq * acc.ldq) * sizeof(float));
        head(a, b, h, 0, nkb, delta.data(), acc, s);
        const int64_t zero = 0;
        if (!f32) sum(a, &acc.dq, &zero, 1, dp, 0, a.Sq, dq);
      }
      if (!f32) {
        const int64_t zero = 0;
        sum(a, &acc.dk, &zero, 1, dp, 0, a.Sk, dk);
        sum(a, &acc.dv, &zero, 1, dp, 0, a.Sk, dv);
      }
    }
    return;
  }

  // Split groups: per group, thread t takes key blocks [split[t], split[t + 1]) of equal cost.
  // Per thread: the tile scratch and an f32 dq partial; shared, for 16-bit outputs: f32 dk, dv.
  const int64_t per = attn_pad(tile + a.Sq * dp);
  AlignedFloats scratch(per * threads), kv16(f32 ? 0 : 2 * a.Sk * dp);
  std::vector<int64_t> split(static_cast<size_t>(threads) + 1), from(static_cast<size_t>(threads));
  std::vector<const float*> parts(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) parts[size_t(t)] = scratch.p + per * t + tile;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float* s = scratch.p + per * t;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t b = g / a.Hkv;
#pragma omp single
      {
        const int64_t* c = bcost.data() + b * nkb;
        int64_t cum = 0, kb = 0;
        split[0] = 0;
        for (int u = 1; u <= nt; ++u) {
          while (kb < nkb && (cum + c[kb]) * nt <= gcost[size_t(b)] / G * u) cum += c[kb++];
          split[size_t(u)] = u == nt ? nkb : kb;
        }
        for (int u = 0; u < nt; ++u)
          from[size_t(u)] = split[size_t(u)] < split[size_t(u) + 1] && c[split[size_t(u)]] > 0
                                ? attn_first_row(a, b, split[size_t(u)] * kBwdBc) : a.Sq;
      }  // implied barrier
      const int64_t kb0 = split[size_t(t)], kb1 = split[size_t(t) + 1];
      const int64_t j0 = std::min(kb0 * kBwdBc, a.Sk), j1 = std::min(kb1 * kBwdBc, a.Sk);
      char* dk = static_cast<char*>(a.dk) + g * a.Sk * D * esz;
      char* dv = static_cast<char*>(a.dv) + g * a.Sk * D * esz;
      BwdAcc acc{s + tile, dp, reinterpret_cast<float*>(dk), reinterpret_cast<float*>(dv), D};
      if (!f32) acc.dk = kv16.p, acc.dv = kv16.p + a.Sk * dp, acc.ldk = dp;
      std::memset(acc.dk + j0 * acc.ldk, 0, size_t((j1 - j0) * acc.ldk) * sizeof(float));
      std::memset(acc.dv + j0 * acc.ldk, 0, size_t((j1 - j0) * acc.ldk) * sizeof(float));
      for (int64_t h = g % a.Hkv * G; h < (g % a.Hkv + 1) * G; ++h) {
        const int64_t i0 = from[size_t(t)];
        std::memset(acc.dq + i0 * dp, 0, size_t((a.Sq - i0) * dp) * sizeof(float));
        head(a, b, h, kb0, kb1, delta.data(), acc, s);
#pragma omp barrier
        char* dq = static_cast<char*>(a.dq) + (b * a.H + h) * a.Sq * D * esz;
        sum(a, parts.data(), from.data(), nt, dp, a.Sq * t / nt, a.Sq * (t + 1) / nt, dq);
#pragma omp barrier
      }
      if (!f32) {
        const int64_t zero = 0;
        sum(a, &acc.dk, &zero, 1, dp, j0, j1, dk);
        sum(a, &acc.dv, &zero, 1, dp, j0, j1, dv);
      }
    }
  }
}

}  // namespace seqfuse
#endif

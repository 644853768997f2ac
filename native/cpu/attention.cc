// native/cpu/attention.cc — fused attention forward (ops/attention.h), FlashAttention-style.
// Shapes: q, out [B, H, Sq, D]; k, v [B, Hkv, Sk, D]; lse [B, H, Sq] f32 (nullable).
//
// Blocks: a task is (b, kv head, query head of its group, block of kBr query rows). Its rows
// are converted to f32 with the scale folded in, then it walks the key blocks of kBc keys that
// any of its rows sees (causal and kvLengths skip the rest, so causal does about half the work):
//   S = Q K^T        (mm_panel: Q broadcast, K^T rows loaded; K^T packed once per kv head)
//   per row: bias, mask (a row sees a prefix of the block), online softmax (softmax_block_row),
//            dropout's keep mask on the row's probabilities
//   O = alpha O + P V (mm_panel, the running-max rescale folded into the accumulator load)
// and writes out = O * scale_p / l and lse = m + log l. One block's S, P, Q and O and one kv
// head's packed K^T (and f32 V for 16-bit inputs) are the only scratch: O(kBr kBc + Sk D) per
// thread, never Sq x Sk. The products run on our own register tiles (cpu/attention_block.h says
// why not oneDNN). Tasks of one kv head are consecutive, so a thread packs each head it touches
// once; threads get contiguous task ranges of equal cost (key blocks x rows), so causal's
// uneven tasks still balance.
#include <type_traits>
#include "cpu/attention_block.h"

namespace seqfuse::cpu {
constexpr int64_t kBr = 96;   // query rows per block: a multiple of every pass's kMR
constexpr int64_t kBc = 128;  // keys per block: a multiple of every pass's kNR

// The f32 scratch of one thread (floats), the same in every pass.
static inline int64_t fwd_scratch_floats(const AttentionArgs& a) {
  const int64_t nkb = (a.Sk + kBc - 1) / kBc, dp = attn_pad(a.D);
  const int64_t kt = nkb * kBc * dp, v16 = a.dtype == DType::F32 ? 0 : nkb * kBc * dp;
  return kt + v16 + kBr * dp * 2 + kBr * kBc + 4 * kBr + attn_pad(kRngBuf / 2) + kAttnPad;
}
// The task walk's cost model, for splitting tasks over threads: rows x key blocks visited, plus
// one block's fixed work.
static inline int64_t fwd_task_cost(const AttentionArgs& a, int64_t t) {
  const int64_t nqb = (a.Sq + kBr - 1) / kBr, qb = t % nqb, b = t / nqb / (a.H / a.Hkv) / a.Hkv;
  const int64_t i0 = qb * kBr, rows = a.Sq - i0 < kBr ? a.Sq - i0 : kBr;
  const int64_t kend = attn_key_end(a, b, i0 + rows - 1);
  return rows * ((kend + kBc - 1) / kBc + 1);
}
}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

// Tasks [t0, t1) of the block walk; DC > 0: D known at compile time.
template <class T, int DC>
static void fwd_tasks(const AttentionArgs& a, int64_t t0, int64_t t1, float* scratch) {
  const int64_t D = DC > 0 ? DC : a.D, dp = attn_pad(D), G = a.H / a.Hkv;
  const int64_t nqb = (a.Sq + kBr - 1) / kBr, nkb = (a.Sk + kBc - 1) / kBc;
  float* kt = scratch;  // [nkb][D][kBc]
  float* v16 = kt + nkb * kBc * dp;  // [nkb * kBc][dp], 16-bit inputs only
  float* qs = v16 + (a.dtype == DType::F32 ? 0 : nkb * kBc * dp);  // [kBr][dp]
  float* o = qs + kBr * dp;  // [kBr][dp]
  float* s = o + kBr * dp;  // [kBr][kBc]
  float* m = s + kBr * kBc;
  float* l = m + kBr;
  float* alpha = l + kBr;
  float* f = alpha + kBr;
  uint16_t* rng = reinterpret_cast<uint16_t*>(f + kBr);
  bool nan[kBr];
  const Dropout drop(a.dropout, a.seed);
  const float keep_scale = dropout_scale(drop.t);
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  T* out = static_cast<T*>(a.out);
  int64_t packed = -1;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t qb = t % nqb, g = t / nqb % G, bk = t / nqb / G, b = bk / a.Hkv, h = bk % a.Hkv * G + g;
    const int64_t i0 = qb * kBr, rows = a.Sq - i0 < kBr ? a.Sq - i0 : kBr;
    const int64_t kend = attn_key_end(a, b, i0 + rows - 1);  // the rows' ends grow with i
    const T* qh = q + ((b * a.H + h) * a.Sq + i0) * D;
    if (kend > 0 && packed != bk) {  // every key any row of this (b, kv head) sees
      const int64_t kmax = attn_key_end(a, b, a.Sq - 1);
      const T* kh = k + bk * a.Sk * D;
      for (int64_t j0 = 0; j0 < kmax; j0 += kBc)
        pack_transposed(kh + j0 * D, D, kmax - j0 < kBc ? kmax - j0 : kBc, D, kt + j0 * D, kBc, kBc);
      if constexpr (!std::is_same_v<T, float>) rows_to_f32(v + bk * a.Sk * D, D, kmax, D, 1.0f, v16, dp);
      packed = bk;
    }
    const float* vh = std::is_same_v<T, float> ? reinterpret_cast<const float*>(v) + bk * a.Sk * D : v16;
    const int64_t ldv = std::is_same_v<T, float> ? D : dp;
    rows_to_f32(qh, D, rows, D, a.scale, qs, dp);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < D; ++c) o[r * dp + c] = 0.0f;
      m[r] = -INFINITY;
      l[r] = 0.0f;
      nan[r] = false;
    }
    for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
      const int64_t nk = kend - j0 < kBc ? kend - j0 : kBc;
      mm_panel<Acc::Set, DC>(rows, (nk + kNR - 1) / kNR * kNR, D, qs, dp, 1, kt + j0 * D, kBc, s, kBc);
      for (int64_t r = 0; r < rows; ++r) {
        float* sr = s + r * kBc;
        int64_t n = attn_key_end(a, b, i0 + r) - j0;
        n = n < 0 ? 0 : n > nk ? nk : n;
        if (n == 0) {
          for (int64_t j = 0; j < nk; ++j) sr[j] = 0.0f;
          alpha[r] = 1.0f;
          continue;
        }
        if (const float* br = attn_bias_row(a, b, h, i0 + r)) add_bias_row(sr, n, br + j0 * a.bias_stride[3], a.bias_stride[3]);
        alpha[r] = softmax_block_row(sr, n, nk, m[r], l[r], nan[r]);
        if (drop.on()) drop_row(drop, rng, attn_rng_index(a, b, h, i0 + r, j0), sr, n);
      }
      mm_panel<Acc::Scale>(rows, D, nk, s, kBc, 1, vh + j0 * ldv, ldv, o, dp, alpha);
    }
    float* lse = a.lse ? a.lse + (b * a.H + h) * a.Sq + i0 : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      const bool empty = l[r] == 0.0f;
      f[r] = nan[r] ? NAN : empty ? 0.0f : keep_scale / l[r];
      if (lse) lse[r] = nan[r] ? NAN : empty ? -INFINITY : m[r] + std::log(l[r]);
    }
    rows_from_f32(o, dp, f, rows, D, out + ((b * a.H + h) * a.Sq + i0) * D, D);
  }
}

template <class T>
static void fwd_tasks_t(const AttentionArgs& a, int64_t t0, int64_t t1, float* scratch) {
  switch (a.D) {
    case 64: return fwd_tasks<T, 64>(a, t0, t1, scratch);
    case 128: return fwd_tasks<T, 128>(a, t0, t1, scratch);
    default: return fwd_tasks<T, 0>(a, t0, t1, scratch);
  }
}

void attention_fwd_tasks(const AttentionArgs& a, int64_t t0, int64_t t1, float* scratch) {
  switch (a.dtype) {
    case DType::F32: return fwd_tasks_t<float>(a, t0, t1, scratch);
    case DType::BF16: return fwd_tasks_t<bf16_t>(a, t0, t1, scratch);
    case DType::F16: return fwd_tasks_t<f16_t>(a, t0, t1, scratch);
    default: return;
  }
}

}  // namespace seqfuse::cpu::SF_ISA_NS

#if SF_ISA_MAIN
#include <omp.h>
#include <algorithm>
#include <vector>
#include "core/threads.h"
#include "cpu/isa.h"

namespace seqfuse {
namespace cpu {
SF_ISA_DECLARE(void attention_fwd_tasks(const AttentionArgs&, int64_t, int64_t, float*))
}  // namespace cpu

void attention_fwd_cpu(const AttentionArgs& a) {
  using namespace cpu;
  if (a.B == 0 || a.H == 0 || a.Sq == 0) return;
  auto fn = SF_PICK(attention_fwd_tasks);
  const int64_t tasks = a.B * a.H * ((a.Sq + kBr - 1) / kBr);
  // prefix sums of the task costs; threads take contiguous ranges of equal cost
  std::vector<int64_t> cum(size_t(tasks) + 1, 0);
  for (int64_t t = 0; t < tasks; ++t) cum[size_t(t) + 1] = cum[size_t(t)] + fwd_task_cost(a, t);
  const int64_t total = cum.back();
  int threads = get_num_threads();
  const int64_t useful = total * a.D / (32 * 1024);  // rows x blocks x D ~ work / kBc
  if (useful < threads) threads = int(std::max<int64_t>(useful, 1));
  if (threads > tasks) threads = int(tasks);
  const int64_t per = fwd_scratch_floats(a);
  std::vector<float> scratch(size_t(per) * size_t(threads) + kAttnPad);
  float* base = scratch.data() + (kAttnPad - reinterpret_cast<uintptr_t>(scratch.data()) / sizeof(float) % kAttnPad) % kAttnPad;
  const auto split = [&](int i, int n) {
    return int64_t(std::lower_bound(cum.begin(), cum.end(), total * i / n) - cum.begin());
  };
  if (threads <= 1) return fn(a, 0, tasks, base);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t t0 = t == 0 ? 0 : split(t, n), t1 = t + 1 == n ? tasks : split(t + 1, n);
    if (t0 < t1) fn(a, t0, t1, base + per * t);
  }
}

}  // namespace seqfuse
#endif

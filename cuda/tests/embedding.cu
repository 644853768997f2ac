// cuda/embedding.cu against the CPU backend (native/cpu/embedding.cc, its portable pass, linked
// in): the same f32 operations in the same order (the backward sums each id's and each position's
// tokens in token order, as the CPU), so out, dtable and dpositions must be the CPU's bit for bit,
// and are also checked against a float64 reference (relative L2 <= 1e-5 f32, 1e-2 f16/bf16).
// Every dtype; positions with an offset or none; a padding id or none; dropout 0 / 0.1 with
// offsets that start mid-Philox-call; scale 1 / 0.5; dims with a scalar tail, 16-byte vector rows
// and more than one 256-column chunk; vocabularies needing 1, 2 and 3 radix passes; more than one
// sort tile; ids from a small range (long runs of one id) and from a large one.
// emu-link: native/cpu/embedding.cc native/core/threads.cc
#include "../embedding.cu"
#include "compare.h"

namespace {

using namespace cmp;
using seqfuse::EmbeddingArgs;

void* copy_of(const void* src, int64_t n, DType t) {
  void* p = poisoned_buf(t, n);
  std::memcpy(p, src, size_t(n) * esize(t));
  return p;
}


// keep factor of output element (t, j): 0, or the dropout scale (1 without dropout)
double keep(const EmbeddingArgs& a, int64_t t, int64_t j) {
  const uint32_t thr = seqfuse::dropout_threshold(a.dropout);
  if (thr == 0) return 1.0;
  const uint64_t e = a.offset + uint64_t(t) * uint64_t(a.dim) + uint64_t(j);
  return seqfuse::philox_h16_at(e, a.seed) >= thr ? double(seqfuse::dropout_scale(thr)) : 0.0;
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  struct Shape { int64_t tokens, seq, dim, vocab, id_range; };
  const Shape shapes[] = {{1, 1, 1, 1, 1},       {3, 3, 7, 5, 5},          {17, 17, 33, 11, 11},
                          {40, 8, 130, 300, 300}, {48, 16, 264, 9, 9},      {1500, 50, 8, 70000, 70000},
                          {2100, 300, 16, 40, 6}};
  const uint64_t offsets[] = {0, 5, (uint64_t(1) << 32) + 3};
  int cases = 0;
  double worst[2] = {0, 0};  // max rel L2 against float64: f32, 16-bit
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const Shape& sh : shapes)
      for (int form = 0; form < 8; ++form) {  // bit 0: positions, bit 1: padding id, bit 2: dropout
        EmbeddingArgs a;
        a.dtype = t; a.tokens = sh.tokens; a.seq = sh.seq; a.dim = sh.dim; a.vocab = sh.vocab;
        a.scale = cases % 2 ? 0.5f : 1.0f;
        a.dropout = form & 4 ? 0.1f : 0.0f;
        a.seed = 0x9e3779b97f4a7c15ull + uint64_t(cases);
        a.offset = offsets[size_t(cases) % 3];
        a.pos_offset = form & 1 ? 2 : 0;
        a.num_positions = form & 1 ? sh.seq + 3 : 0;
        int32_t* ids = managed<int32_t>(size_t(sh.tokens));
        for (int64_t i = 0; i < sh.tokens; ++i) ids[i] = int32_t(g() % uint32_t(sh.id_range));
        if (sh.id_range > 100) ids[sh.tokens - 1] = int32_t(sh.vocab - 1);  // the last id: every radix digit set
        a.padding_idx = form & 2 ? ids[sh.tokens / 2] : -1;
        a.ids = ids;
        const int64_t n = sh.tokens * sh.dim, tn = sh.vocab * sh.dim, pn = a.num_positions * sh.dim;
        a.table = random_buf(t, tn, g, -1.0f, 1.0f);
        a.positions = form & 1 ? random_buf(t, pn, g, -1.0f, 1.0f) : nullptr;
        // forward
        void* out_cpu = poisoned_buf(t, n);
        void* out_gpu = poisoned_buf(t, n);
        a.out = out_cpu;
        seqfuse::embedding_fwd_cpu(a);
        a.out = out_gpu;
        a.device = seqfuse::Device::CUDA;
        seqfuse::embedding_fwd_cuda(a, seqfuse::Stream{});
        device_sync("embedding forward");
        CHECK(same_bits(out_cpu, out_gpu, n, t), "forward: dtype %d tokens %ld dim %ld vocab %ld form %d", int(t), long(sh.tokens),
              long(sh.dim), long(sh.vocab), form);
        std::vector<double> want(static_cast<size_t>(n));
        for (int64_t i = 0; i < sh.tokens; ++i)
          for (int64_t j = 0; j < sh.dim; ++j) {
            double v = 0;
            if (ids[i] != a.padding_idx) {
              v = get(a.table, t, ids[i] * sh.dim + j) * double(a.scale);
              if (a.positions) v += get(a.positions, t, (i % sh.seq + a.pos_offset) * sh.dim + j);
              v *= keep(a, i, j);
            }
            want[size_t(i * sh.dim + j)] = v;
          }
        const double tol = t == DType::F32 ? 1e-5 : 1e-2;
        const NonFinite nf = NonFinite::GotNaNFails;  // a NaN in the output gives +Inf (the reference has none)
        const double fe = rel_l2(out_gpu, t, want, 0, nf);
        CHECK(fe <= tol, "forward vs float64: dtype %d tokens %ld dim %ld form %d: %g", int(t), long(sh.tokens), long(sh.dim), form, fe);
        // backward: dtable and dpositions accumulate
        a.dout = random_buf(t, n, g, -1.0f, 1.0f);
        void* dt_cpu = random_buf(t, tn, g, -1.0f, 1.0f);
        void* dt_gpu = copy_of(dt_cpu, tn, t);
        void* dp_cpu = form & 1 ? random_buf(t, pn, g, -1.0f, 1.0f) : nullptr;
        void* dp_gpu = form & 1 ? copy_of(dp_cpu, pn, t) : nullptr;
        std::vector<double> want_dt(static_cast<size_t>(tn)), want_dp(static_cast<size_t>(pn));
        for (int64_t i = 0; i < tn; ++i) want_dt[size_t(i)] = get(dt_cpu, t, i);
        for (int64_t i = 0; i < pn; ++i) want_dp[size_t(i)] = get(dp_cpu, t, i);
        for (int64_t i = 0; i < sh.tokens; ++i) {
          if (ids[i] == a.padding_idx) continue;
          for (int64_t j = 0; j < sh.dim; ++j) {
            const double gr = get(a.dout, t, i * sh.dim + j) * keep(a, i, j);
            want_dt[size_t(ids[i] * sh.dim + j)] += gr * double(a.scale);
            if (dp_cpu) want_dp[size_t((i % sh.seq + a.pos_offset) * sh.dim + j)] += gr;
          }
        }
        a.device = seqfuse::Device::CPU;
        a.dtable = dt_cpu; a.dpositions = dp_cpu;
        seqfuse::embedding_bwd_cpu(a);
        a.device = seqfuse::Device::CUDA;
        a.dtable = dt_gpu; a.dpositions = dp_gpu;
        seqfuse::embedding_bwd_cuda(a, seqfuse::Stream{});
        device_sync("embedding backward");
        CHECK(same_bits(dt_cpu, dt_gpu, tn, t), "backward dtable: dtype %d tokens %ld dim %ld vocab %ld form %d", int(t),
              long(sh.tokens), long(sh.dim), long(sh.vocab), form);
        if (dp_cpu)
          CHECK(same_bits(dp_cpu, dp_gpu, pn, t), "backward dpositions: dtype %d tokens %ld dim %ld form %d", int(t), long(sh.tokens),
                long(sh.dim), form);
        const double be = std::max(rel_l2(dt_gpu, t, want_dt, 0, nf), dp_gpu ? rel_l2(dp_gpu, t, want_dp, 0, nf) : 0.0);
        CHECK(be <= tol, "backward vs float64: dtype %d tokens %ld dim %ld form %d: %g", int(t), long(sh.tokens), long(sh.dim), form, be);
        worst[t == DType::F32 ? 0 : 1] = std::max(worst[t == DType::F32 ? 0 : 1], std::max(fe, be));
        for (const void* p : {static_cast<const void*>(ids), a.table, a.positions, a.dout, static_cast<const void*>(out_cpu),
                              static_cast<const void*>(out_gpu), static_cast<const void*>(dt_cpu), static_cast<const void*>(dt_gpu),
                              static_cast<const void*>(dp_cpu), static_cast<const void*>(dp_gpu)})
          if (p) cudaFree(const_cast<void*>(p));
        ++cases;
      }
  std::printf("embedding: %d cases bit-identical to the CPU backend (max rel L2 vs float64: f32 %.2g, 16-bit %.2g)\n", cases,
              worst[0], worst[1]);
  return finish("embedding");
}

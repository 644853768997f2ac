// native/cpu/embedding.cc — token embedding * scale + positions, then dropout, forward and backward.
// Shapes: ids [tokens] i32 (row-major [batch, seq], already checked to lie in [0, vocab));
// table, dtable [vocab, dim]; positions, dpositions [num_positions, dim]; out, dout [tokens, dim].
// Forward: one output row per token, split over threads by tokens; each row reads one table
// row and one position row. Dropout draws Philox element (offset + t * dim + j) for out[t, j]
// (core/philox.h), one scalar Philox call per 4 elements, into a per-thread word buffer.
// Backward: the tokens are grouped by id (sorted by (id, t), padding tokens left out) and the
// threads split the ids: each dtable row is owned by one thread, which sums its tokens' dout
// rows in token order in f32 and adds the sum to the row once; then the threads split the
// positions the same way (each sums its position over the batch). No row is shared, so there
// are no atomics, the result does not depend on the thread count, and 16-bit rows are rounded
// once, not once per token. Work is balanced by number of ids, not tokens, so very skewed
// id distributions can leave one thread with more rows to sum.
#include "core/philox.h"
#include "cpu/simd.h"
#include "ops/embedding.h"

namespace seqfuse::cpu {

// The backward's token groups (built in embedding_bwd_cpu): order holds the non-padding token
// indices sorted by (id, t); group k, one id, spans order[start[k], start[k + 1]).
struct EmbeddingGroups {
  const int64_t* order;
  const int64_t* start;
  int64_t count;
};

}  // namespace seqfuse::cpu

namespace seqfuse::cpu::SF_ISA_NS {

// u[k] = u_{e0 + k} for k in [0, n): the Philox words of elements e0 .. e0 + n - 1.
static void philox_words(uint64_t e0, int64_t n, uint64_t seed, uint32_t* u) {
  const uint64_t end = e0 + uint64_t(n);
  for (uint64_t e = e0; e < end;) {
    Philox4 r = philox4x32_10(e >> 2, seed);
    for (int k = int(e & 3); k < 4 && e < end; ++k, ++e) u[e - e0] = r.v[k];
  }
}

// The dropout of one vector: v * keep / (1 - p), keep = unit(u) >= p.
struct Dropout {
  bool on;
  R p, inv_keep;
  explicit Dropout(float prob)
      : on(prob > 0.0f), p(V::set1(prob)), inv_keep(V::set1(prob < 1.0f ? 1.0f / (1.0f - prob) : 0.0f)) {}
  R apply(R v, R unit) const { return V::select(V::ge(unit, p), V::mul(v, inv_keep), V::zero()); }
};

// u: per-thread word buffer [dim + W].
template <class T>
static void embedding_fwd_t(const EmbeddingArgs& a, int64_t t0, int64_t t1, uint32_t* u) {
  constexpr int W = V::W;
  const int64_t dim = a.dim, body = dim - dim % W;
  const T* table = static_cast<const T*>(a.table);
  const T* pos = static_cast<const T*>(a.positions);
  const R sc = V::set1(a.scale);
  const Dropout drop(a.dropout);
  for (int64_t t = t0; t < t1; ++t) {
    T* o = static_cast<T*>(a.out) + t * dim;
    const int64_t id = a.ids[t];
    if (id == a.padding_idx) {
      int64_t j = 0;
      for (; j < body; j += W) V::store(o + j, V::zero());
      if (j < dim) V::store(o + j, V::zero(), int(dim - j));
      continue;
    }
    const T* w = table + id * dim;
    const T* p = pos ? pos + (t % a.seq + a.pos_offset) * dim : nullptr;
    if (drop.on) philox_words(a.offset + uint64_t(t) * uint64_t(dim), dim, a.seed, u);
    int64_t j = 0;
    for (; j < body; j += W) {
      R v = V::mul(V::load(w + j), sc);
      if (p) v = V::add(v, V::load(p + j));
      if (drop.on) v = drop.apply(v, V::unit(u + j));
      V::store(o + j, v);
    }
    if (j < dim) {
      const int n = int(dim - j);
      R v = V::mul(V::load(w + j, n), sc);
      if (p) v = V::add(v, V::load(p + j, n));
      if (drop.on) v = drop.apply(v, V::unit(u + j, n));
      V::store(o + j, v, n);
    }
  }
}

// acc[0, dim) += dropout(dout[t]) (the gradient reaching x = table * scale + pos).
template <class T>
static void add_token_grad(const EmbeddingArgs& a, const Dropout& drop, int64_t t, float* acc, uint32_t* u) {
  constexpr int W = V::W;
  const int64_t dim = a.dim;
  const T* g = static_cast<const T*>(a.dout) + t * dim;
  if (drop.on) philox_words(a.offset + uint64_t(t) * uint64_t(dim), dim, a.seed, u);
  int64_t j = 0;
  for (; j + W <= dim; j += W) {
    R v = V::load(g + j);
    if (drop.on) v = drop.apply(v, V::unit(u + j));
    V::store(acc + j, V::add(V::load(acc + j), v));
  }
  if (j < dim) {
    const int n = int(dim - j);
    R v = V::load(g + j, n);
    if (drop.on) v = drop.apply(v, V::unit(u + j, n));
    V::store(acc + j, V::add(V::load(acc + j, n), v), n);
  }
}

// dst[0, w) += acc * s, in dst's dtype.
template <class T>
static void add_row(T* dst, const float* acc, int64_t w, float s) {
  constexpr int W = V::W;
  const R sv = V::set1(s);
  int64_t j = 0;
  for (; j + W <= w; j += W) V::store(dst + j, V::fma(V::load(acc + j), sv, V::load(dst + j)));
  if (j < w) V::store(dst + j, V::fma(V::load(acc + j, int(w - j)), sv, V::load(dst + j, int(w - j))), int(w - j));
}

// dtable rows of id groups [k0, k1). acc: per-thread f32 [dim + W].
template <class T>
static void embedding_bwd_ids_t(const EmbeddingArgs& a, const EmbeddingGroups& gr, int64_t k0, int64_t k1, float* acc,
                                uint32_t* u) {
  const Dropout drop(a.dropout);
  for (int64_t k = k0; k < k1; ++k) {
    for (int64_t j = 0; j < a.dim; ++j) acc[j] = 0.0f;
    for (int64_t i = gr.start[k]; i < gr.start[k + 1]; ++i) add_token_grad<T>(a, drop, gr.order[i], acc, u);
    add_row(static_cast<T*>(a.dtable) + a.ids[gr.order[gr.start[k]]] * a.dim, acc, a.dim, a.scale);
  }
}

// dpositions rows s + pos_offset for sequence positions s in [s0, s1): the sum over the batch.
template <class T>
static void embedding_bwd_pos_t(const EmbeddingArgs& a, int64_t s0, int64_t s1, float* acc, uint32_t* u) {
  const Dropout drop(a.dropout);
  const int64_t batch = a.tokens / a.seq;
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t j = 0; j < a.dim; ++j) acc[j] = 0.0f;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t t = b * a.seq + s;
      if (a.ids[t] != a.padding_idx) add_token_grad<T>(a, drop, t, acc, u);
    }
    add_row(static_cast<T*>(a.dpositions) + (s + a.pos_offset) * a.dim, acc, a.dim, 1.0f);
  }
}

void embedding_fwd_rows(const EmbeddingArgs& a, int64_t t0, int64_t t1, uint32_t* u) {
  switch (a.dtype) {
    case DType::F32: return embedding_fwd_t<float>(a, t0, t1, u);
    case DType::BF16: return embedding_fwd_t<bf16_t>(a, t0, t1, u);
    case DType::F16: return embedding_fwd_t<f16_t>(a, t0, t1, u);
    default: return;
  }
}

void embedding_bwd_ids(const EmbeddingArgs& a, const EmbeddingGroups& gr, int64_t k0, int64_t k1, float* acc, uint32_t* u) {
  switch (a.dtype) {
    case DType::F32: return embedding_bwd_ids_t<float>(a, gr, k0, k1, acc, u);
    case DType::BF16: return embedding_bwd_ids_t<bf16_t>(a, gr, k0, k1, acc, u);
    case DType::F16: return embedding_bwd_ids_t<f16_t>(a, gr, k0, k1, acc, u);
    default: return;
  }
}

void embedding_bwd_pos(const EmbeddingArgs& a, int64_t s0, int64_t s1, float* acc, uint32_t* u) {
  switch (a.dtype) {
    case DType::F32: return embedding_bwd_pos_t<float>(a, s0, s1, acc, u);
    case DType::BF16: return embedding_bwd_pos_t<bf16_t>(a, s0, s1, acc, u);
    case DType::F16: return embedding_bwd_pos_t<f16_t>(a, s0, s1, acc, u);
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
SF_ISA_DECLARE(void embedding_fwd_rows(const EmbeddingArgs&, int64_t, int64_t, uint32_t*))
SF_ISA_DECLARE(void embedding_bwd_ids(const EmbeddingArgs&, const EmbeddingGroups&, int64_t, int64_t, float*, uint32_t*))
SF_ISA_DECLARE(void embedding_bwd_pos(const EmbeddingArgs&, int64_t, int64_t, float*, uint32_t*))
}  // namespace cpu

void embedding_fwd_cpu(const EmbeddingArgs& a) {
  if (a.tokens == 0 || a.dim == 0) return;
  auto fn = SF_PICK(embedding_fwd_rows);
  const size_t stride = a.dropout > 0.0f ? size_t(a.dim) + 64 : 0;  // Philox words per thread
  std::vector<uint32_t> words(stride * size_t(get_num_threads()));
  parallel_for(a.tokens, (a.dropout > 0.0f ? 8 : 2) * a.dim, [&](int64_t t0, int64_t t1) {
    fn(a, t0, t1, words.data() + stride * size_t(omp_get_thread_num()));
  });
}

void embedding_bwd_cpu(const EmbeddingArgs& a) {
  if (a.tokens == 0 || a.dim == 0) return;
  // group the non-padding tokens by id: keys (id << 32 | t) sorted (tokens < 2^32)
  std::vector<uint64_t> keys;
  keys.reserve(size_t(a.tokens));
  for (int64_t t = 0; t < a.tokens; ++t)
    if (a.ids[t] != a.padding_idx) keys.push_back(uint64_t(uint32_t(a.ids[t])) << 32 | uint64_t(t));
  std::sort(keys.begin(), keys.end());
  std::vector<int64_t> order(keys.size()), start;
  for (size_t i = 0; i < keys.size(); ++i) {
    order[i] = int64_t(keys[i] & 0xffffffffu);
    if (i == 0 || keys[i] >> 32 != keys[i - 1] >> 32) start.push_back(int64_t(i));
  }
  start.push_back(int64_t(keys.size()));
  const cpu::EmbeddingGroups gr{order.data(), start.data(), int64_t(start.size()) - 1};
  const size_t stride = size_t(a.dim) + 64;  // a thread's row accumulator + tail room
  std::vector<float> acc(stride * size_t(get_num_threads()));
  std::vector<uint32_t> words(a.dropout > 0.0f ? stride * size_t(get_num_threads()) : 0);
  const int64_t per_token = (a.dropout > 0.0f ? 8 : 2) * a.dim;
  auto ids_fn = SF_PICK(embedding_bwd_ids);
  parallel_for(gr.count, per_token * int64_t(keys.size()) / (gr.count ? gr.count : 1), [&](int64_t k0, int64_t k1) {
    const size_t slot = stride * size_t(omp_get_thread_num());
    ids_fn(a, gr, k0, k1, acc.data() + slot, words.empty() ? nullptr : words.data() + slot);
  });
  if (!a.dpositions) return;
  auto pos_fn = SF_PICK(embedding_bwd_pos);
  parallel_for(a.seq, per_token * (a.tokens / a.seq), [&](int64_t s0, int64_t s1) {
    const size_t slot = stride * size_t(omp_get_thread_num());
    pos_fn(a, s0, s1, acc.data() + slot, words.empty() ? nullptr : words.data() + slot);
  });
}

}  // namespace seqfuse
#endif

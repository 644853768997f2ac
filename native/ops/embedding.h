// native/ops/embedding.h — token embedding lookup * scale + positions, then dropout.
// ids [tokens] i32 (tokens = batch * seq, row-major [batch, seq]); table [vocab, dim];
// positions [num_positions, dim] (nullable), token t uses row (t mod seq) + pos_offset;
// out, dout [tokens, dim]; all float tensors share `dtype`.
// ids must lie in [0, vocab): the caller checks them (napi/embedding.cc) before any kernel runs.
// A token equal to padding_idx (>= 0) gives a zero row and no gradient.
// Dropout: out[t, j] is kept iff dropout's 16-bit Philox value of element offset + t * dim + j
// passes (core/philox.h), kept values times float(65536 / (65536 - t)).
// Backward accumulates dtable[id] += sum over its tokens of dout * keep * dscale * scale, and
// dpositions likewise (without scale); threads split the ids (and then the positions), each
// summing a row's tokens in token order in f32, so the result is deterministic for any thread
// count.
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

struct EmbeddingArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t tokens = 0, seq = 1, dim = 0, vocab = 0, num_positions = 0;
  int64_t pos_offset = 0;
  int64_t padding_idx = -1;
  float scale = 1.0f;
  float dropout = 0.0f;
  uint64_t seed = 0, offset = 0;
  const int32_t* ids = nullptr;
  const void* table = nullptr;
  const void* positions = nullptr;  // nullable
  void* out = nullptr;
  // backward (dtable and dpositions are accumulated into, not overwritten)
  const void* dout = nullptr;
  void* dtable = nullptr;
  void* dpositions = nullptr;       // nullable
};

void embedding_fwd_cpu(const EmbeddingArgs& a);
void embedding_bwd_cpu(const EmbeddingArgs& a);
void embedding_fwd_cuda(const EmbeddingArgs& a, Stream s);
void embedding_bwd_cuda(const EmbeddingArgs& a, Stream s);

inline void embedding_fwd(const EmbeddingArgs& a) { SF_DISPATCH(embedding_fwd, a); }
inline void embedding_bwd(const EmbeddingArgs& a) { SF_DISPATCH(embedding_bwd, a); }

}  // namespace seqfuse

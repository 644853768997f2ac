// native/ops/tensor_ops.h — dtype casts and random fills behind Tensor.to / randn / rand.
// cast: dst[n] = convert(src[n]); float -> 16-bit rounds to nearest even; float -> integer
//       rounds toward zero and saturates to the integer range (NaN -> 0).
// random: out[i] from philox element i (+ offset) as in core/philox.h:
//       uniform: low + (high - low) * unit(u_i); normal: Box-Muller on elements 2j, 2j+1.
// heads_copy: moves attention heads between a projection's token-major rows and the head-major
//       layout attention takes. rows: B * S rows of `ld` elements, head h of row (b, s) at
//       columns [col0 + h D, col0 + (h + 1) D); heads: [B, H, S, D] contiguous.
//       to_heads:   heads[b, h, s, :] = rows[(b S + s) ld + col0 + h D + :]
//       otherwise:  rows[(b S + s) ld + col0 + h D + :] = heads[b, h, s, :] (other columns kept)
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

struct CastArgs {
  Device device = Device::CPU;
  DType src_dtype = DType::F32, dst_dtype = DType::F32;
  int64_t n = 0;
  const void* src = nullptr;
  void* dst = nullptr;
};

enum class RandomKind : int32_t { Uniform = 0, Normal = 1 };

struct RandomArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  RandomKind kind = RandomKind::Uniform;
  int64_t n = 0;
  uint64_t seed = 0, offset = 0;
  float a = 0.0f, b = 1.0f;  // uniform: [low, high); normal: mean, std
  void* out = nullptr;
};

struct HeadsArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t B = 0, S = 0, H = 0, D = 0, ld = 0, col0 = 0;
  bool to_heads = true;
  const void* src = nullptr;
  void* dst = nullptr;
};

void cast_cpu(const CastArgs& a);
void random_cpu(const RandomArgs& a);
void heads_copy_cpu(const HeadsArgs& a);
void cast_cuda(const CastArgs& a, Stream s);
void random_cuda(const RandomArgs& a, Stream s);

inline void cast(const CastArgs& a) { SF_DISPATCH(cast, a); }
void heads_copy_cuda(const HeadsArgs& a, Stream s);
inline void random(const RandomArgs& a) { SF_DISPATCH(random, a); }
inline void heads_copy(const HeadsArgs& a) { SF_DISPATCH(heads_copy, a); }

}  // namespace seqfuse

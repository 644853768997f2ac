// native/ops/rope.h — rotary position embedding (Su et al., RoFormer), applied in place to
// attention heads x [B, H, S, D] in `dtype` (the layers call it on q and k after the head split).
// The first `rot` dims of each head (even, <= D) rotate in pairs (i, i + rot/2), the "rotate
// half" layout of GPT-NeoX and LLaMA: for token position p = s + offset and i < rot/2, with
// theta_i = base^(-2i/rot),  (x_i, x_{i+rot/2}) <- (x_i cos - x_{i+rot/2} sin, x_i sin + x_{i+rot/2} cos);
// the other dims are unchanged. inverse = true rotates by -theta (the backward: the rotation's
// transpose). Angles and their cos/sin are computed in double once per call ([S, rot/2] table),
// the rotation in f32.
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

struct RopeArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t B = 0, H = 0, S = 0, D = 0, rot = 0, offset = 0;
  double base = 10000.0;
  bool inverse = false;
  void* x = nullptr;
};

void rope_cpu(const RopeArgs& a);
void rope_cuda(const RopeArgs& a, Stream s);

inline void rope(const RopeArgs& a) { SF_DISPATCH(rope, a); }

}  // namespace seqfuse

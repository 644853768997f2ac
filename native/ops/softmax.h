// native/ops/softmax.h — softmax over the last dimension with an additive mask and causal masking.
// x, y, dy, dx [rows, cols] in `dtype`. The rows are the flattened leading dims `lead[0..nlead)`.
// mask (f32, additive) is broadcast to x: element (row r, col j) reads
//   mask[sum_d idx_d(r) * mask_stride[d] + j * mask_col_stride].
// causal: x is [..., sq, cols] with sq = lead[nlead-1]; query i sees cols j <= i + cols - sq.
// A row that sees no column (all masked) gives zeros; its gradient is zero.
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

constexpr int kMaxDims = 8;

struct SoftmaxArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  int nlead = 0;
  int64_t lead[kMaxDims] = {};
  const float* mask = nullptr;  // nullable
  int64_t mask_stride[kMaxDims] = {};
  int64_t mask_col_stride = 0;
  bool causal = false;
  const void* x = nullptr;
  void* y = nullptr;
  // backward: dx = y * (dy - sum(dy * y))
  const void* dy = nullptr;
  void* dx = nullptr;
};

void softmax_fwd_cpu(const SoftmaxArgs& a);
void softmax_bwd_cpu(const SoftmaxArgs& a);
void softmax_fwd_cuda(const SoftmaxArgs& a, Stream s);
void softmax_bwd_cuda(const SoftmaxArgs& a, Stream s);

inline void softmax_fwd(const SoftmaxArgs& a) { SF_DISPATCH(softmax_fwd, a); }
inline void softmax_bwd(const SoftmaxArgs& a) { SF_DISPATCH(softmax_bwd, a); }

}  // namespace seqfuse

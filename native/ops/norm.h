// native/ops/norm.h — LayerNorm and RMSNorm over the last dimension.
// x, y, dy, dx [rows, cols] in `dtype`; gamma, beta, dgamma, dbeta [cols] in `dtype`;
// mean, rstd [rows] f32 (optional outputs of the forward). RMSNorm ignores beta and mean.
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

struct NormArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  bool rms = false;          // RMSNorm: y = x * rstd * gamma, rstd = 1/sqrt(mean(x^2) + eps)
  int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
  const void* x = nullptr;
  const void* gamma = nullptr;
  const void* beta = nullptr;  // nullable
  void* y = nullptr;
  float* mean = nullptr;       // nullable
  float* rstd = nullptr;       // nullable
  // backward
  const void* dy = nullptr;
  void* dx = nullptr;
  void* dgamma = nullptr;      // nullable
  void* dbeta = nullptr;       // nullable
  bool accumulate = false;     // dgamma, dbeta: added into instead of overwritten
};

void norm_fwd_cpu(const NormArgs& a);
void norm_bwd_cpu(const NormArgs& a);
void norm_fwd_cuda(const NormArgs& a, Stream s);
void norm_bwd_cuda(const NormArgs& a, Stream s);

inline void norm_fwd(const NormArgs& a) { SF_DISPATCH(norm_fwd, a); }
inline void norm_bwd(const NormArgs& a) { SF_DISPATCH(norm_bwd, a); }

}  // namespace seqfuse

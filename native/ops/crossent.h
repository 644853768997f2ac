// native/ops/crossent.h — fused log-softmax + NLL (cross-entropy) with label smoothing, an
// ignored target index and MiLe weighting (REFERENCES.md §4), forward and backward.
// logits, dlogits [rows, cols] in `dtype` (rows = N positions, cols = V classes); targets i32
// [rows], each in [0, cols) or == ignore_index (checked by the caller before the op runs);
// lse, losses, weights f32 [rows].
// Per non-ignored row t, with p = softmax(logits_t), eps = smoothing:
//   lse_t = log Σ_v exp(x_tv);  CE_t = (1 - eps)(lse_t - x_ty) + eps (lse_t - mean_v x_tv)
//   MiLe:  H_t = -Σ_v q ln q, q = clamp(p_tv, 1e-8, 1);  w_t = (sigma + H_t)^gamma;
//          alpha = count / Σ_t w_t;  eff_t = alpha w_t (1 without MiLe; no gradient through it)
//   loss = Σ_t eff_t CE_t, divided by count unless reduction is Sum (None: the mean too).
// Ignored rows are not read: lse, losses and weights are 0 there and their gradient is 0.
// Backward: dlogits_t = scale eff_t (p_t - (1 - eps) onehot(y_t) - eps / V), ignored rows 0,
// scale = dLoss / count for Mean, dLoss otherwise. dlogits may be logits itself (in place).
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

enum class Reduction : int32_t { Mean = 0, Sum = 1, None = 2 };

struct CrossEntropyArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const void* logits = nullptr;
  const int32_t* targets = nullptr;  // checked copy
  int64_t count = 0;                 // rows whose target is not ignore_index
  int32_t ignore_index = -100;
  float smoothing = 0.0f;
  bool mile = false;
  double gamma = 1.0, sigma = 1.0;
  Reduction reduction = Reduction::Mean;
  // forward outputs
  float* lse = nullptr;      // [rows]
  float* losses = nullptr;   // [rows], nullable: eff_t CE_t
  float* weights = nullptr;  // [rows], required with mile: eff_t
  double* stats = nullptr;   // [2]: loss, count
  // backward (lse and weights as the forward wrote them; weights nullable)
  const float* lse_in = nullptr;
  const float* weights_in = nullptr;
  double dloss = 1.0;
  void* dlogits = nullptr;
};

void crossent_fwd_cpu(const CrossEntropyArgs& a);
void crossent_bwd_cpu(const CrossEntropyArgs& a);
void crossent_fwd_cuda(const CrossEntropyArgs& a, Stream s);
void crossent_bwd_cuda(const CrossEntropyArgs& a, Stream s);

inline void crossent_fwd(const CrossEntropyArgs& a) { SF_DISPATCH(crossent_fwd, a); }
inline void crossent_bwd(const CrossEntropyArgs& a) { SF_DISPATCH(crossent_bwd, a); }

}  // namespace seqfuse

// native/ops/optim.h — the optimizer family: multi-tensor fused AdamW and the global L2 norm
// of a list of tensors (gradient clipping, NaN/Inf detection).
//
// adamw: one call updates a whole list of parameters in place; threads split the total element
// count, not the tensors. Per tensor i (all of param_i's numel):
//   param f32 [n] (the master weights), grad f32|bf16|f16 [n], m f32 [n], v f32 [n],
//   copy f16|bf16 [n] (nullable: the low-precision model weights, written from the new param).
// Per element, in this order (torch.optim.AdamW, decoupled weight decay), all in f32:
//   g = grad * grad_scale                        (loss-scale unscaling and clipping folded in)
//   p = p * (1 - lr * weight_decay)              (only where decay[i]; else p unchanged)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//   copy = round_to_nearest_even(p)
// The per-call scalars (1 - lr*wd, lr / (1 - beta1^step), 1 / sqrt(1 - beta2^step)) are formed in
// double and rounded to f32 once, so every element sees the same values on every ISA pass.
//
// norm_sumsq: sum of x*x over every element of a list of f32|bf16|f16 tensors, in double. Each
// tensor is cut into chunks of kNormChunk elements; a chunk's sum is one task, and the chunk sums
// are added in list order, so the result does not depend on the thread count (it may differ in the
// last bits between ISA passes, which group the lanes differently). The square of an f32 is exact
// in double and the sum of 2^32 of them cannot overflow (at most 2^32 * 2^256), so the sum is
// finite iff every element is: NaN anywhere gives NaN, otherwise Inf anywhere gives Inf.
#pragma once
#include <cmath>
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

struct AdamWTensor {
  float* param = nullptr;
  const void* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  void* copy = nullptr;  // nullable
  int64_t numel = 0;
  DType grad_dtype = DType::F32;
  DType copy_dtype = DType::BF16;
  bool decay = true;
};

struct AdamWArgs {
  Device device = Device::CPU;
  const AdamWTensor* tensors = nullptr;
  int64_t count = 0;
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, grad_scale = 1;
  int64_t step = 1;  // >= 1: the number of this update, for the bias corrections
};

// The per-call f32 scalars of the update, formed once in double and rounded to f32 (every
// backend and ISA pass uses these same values).
struct AdamWScalars {
  float grad_scale, beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  float decay_factor;   // 1 - lr * weight_decay
  float step_size;      // lr / (1 - beta1^step)
  float rsqrt_bc2;      // 1 / sqrt(1 - beta2^step)
};

inline AdamWScalars adamw_scalars(const AdamWArgs& a) {
  AdamWScalars s;
  s.grad_scale = float(a.grad_scale);
  s.beta1 = float(a.beta1);
  s.one_minus_beta1 = float(1.0 - a.beta1);
  s.beta2 = float(a.beta2);
  s.one_minus_beta2 = float(1.0 - a.beta2);
  s.eps = float(a.eps);
  s.decay_factor = float(1.0 - a.lr * a.weight_decay);
  s.step_size = float(a.lr / (1.0 - std::pow(a.beta1, double(a.step))));
  s.rsqrt_bc2 = float(1.0 / std::sqrt(1.0 - std::pow(a.beta2, double(a.step))));
  return s;
}

struct NormTensor {
  const void* data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
};

struct SumSqArgs {
  Device device = Device::CPU;
  const NormTensor* tensors = nullptr;
  int64_t count = 0;
  double* sumsq = nullptr;  // out: one double
};

void adamw_cpu(const AdamWArgs& a);
void norm_sumsq_cpu(const SumSqArgs& a);
void adamw_cuda(const AdamWArgs& a, Stream s);
void norm_sumsq_cuda(const SumSqArgs& a, Stream s);

inline void adamw(const AdamWArgs& a) { SF_DISPATCH(adamw, a); }
inline void norm_sumsq(const SumSqArgs& a) { SF_DISPATCH(norm_sumsq, a); }

}  // namespace seqfuse

// native/ops/activation.h — bias + activation + dropout (the FFN1 epilogue), and plain activations.
// x, y, dy, dx [rows, cols] in `dtype`; bias, dbias [cols] in `dtype` (nullable).
// Forward:  y = dropout(act(x + bias)); dropout keeps element i by dropout's 16-bit Philox stream
//           (core/philox.h) at index i (+ offset), kept values are scaled by
//           float(65536 / (65536 - t)), t = round(p * 65536); p = 0 draws no random numbers,
//           p = 1 gives zeros. act: GELU (erf or tanh form), ReLU, SiLU, computed in f32.
//           y may be x (in place).
// Backward: recomputes the mask from seed; dx = dy * keep * scale * act'(x + bias);
//           dbias = sum over rows of dx (f32 partial sums, deterministic per thread count).
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

enum class Activation : int32_t { None = 0, Relu = 1, Gelu = 2, GeluTanh = 3, Silu = 4 };

struct BiasActArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  Activation act = Activation::None;
  int64_t rows = 0, cols = 0;
  const void* x = nullptr;
  const void* bias = nullptr;  // nullable
  void* y = nullptr;
  float dropout = 0.0f;        // p in [0, 1]
  uint64_t seed = 0, offset = 0;
  // backward
  const void* dy = nullptr;
  void* dx = nullptr;
  void* dbias = nullptr;       // nullable
  bool accumulate = false;     // dbias: added into instead of overwritten
};

void bias_act_fwd_cpu(const BiasActArgs& a);
void bias_act_bwd_cpu(const BiasActArgs& a);
void bias_act_fwd_cuda(const BiasActArgs& a, Stream s);
void bias_act_bwd_cuda(const BiasActArgs& a, Stream s);

inline void bias_act_fwd(const BiasActArgs& a) { SF_DISPATCH(bias_act_fwd, a); }
inline void bias_act_bwd(const BiasActArgs& a) { SF_DISPATCH(bias_act_bwd, a); }

}  // namespace seqfuse

// native/ops/dropout.h — bias + dropout + residual (attention/FFN2 epilogue) and plain dropout.
// x, residual, y, dy, dx [rows, cols] in `dtype`; bias, dbias [cols] (nullable).
// Forward:  y = residual + dropout(x + bias)   (residual and bias nullable; both null = dropout).
// Backward: dx = dy * keep * scale; dbias = sum over rows of dx; d(residual) = dy (no kernel).
// The mask is dropout's 16-bit Philox stream at element i (+ offset), core/philox.h: kept iff
// h >= t = round(p * 65536), scale = float(65536 / (65536 - t)); p = 0 draws no random numbers,
// p = 1 gives zeros. y may be x or residual.
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

struct DropoutArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const void* x = nullptr;
  const void* bias = nullptr;      // nullable
  const void* residual = nullptr;  // nullable
  void* y = nullptr;
  float p = 0.0f;
  uint64_t seed = 0, offset = 0;
  // backward
  const void* dy = nullptr;
  void* dx = nullptr;
  void* dbias = nullptr;           // nullable
  bool accumulate = false;         // dbias: added into instead of overwritten
};

void dropout_fwd_cpu(const DropoutArgs& a);
void dropout_bwd_cpu(const DropoutArgs& a);
void dropout_fwd_cuda(const DropoutArgs& a, Stream s);
void dropout_bwd_cuda(const DropoutArgs& a, Stream s);

inline void dropout_fwd(const DropoutArgs& a) { SF_DISPATCH(dropout_fwd, a); }
inline void dropout_bwd(const DropoutArgs& a) { SF_DISPATCH(dropout_bwd, a); }

}  // namespace seqfuse

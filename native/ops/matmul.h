// native/ops/matmul.h — GEMM and Linear (products through oneDNN on CPU, WMMA on CUDA).
// gemm:   out[M,N] = alpha * op(a) * op(b) + beta * c; op(a) [M,K] (a is [K,M] when trans_a),
//         op(b) [K,N] (b is [N,K] when trans_b); c nullable (without it, or with beta == 0, c is
//         not read). out may be c itself (in-place accumulate); no other overlap.
// linear: y[M,N] = act(x[M,K] * w[N,K]^T + bias[N]) + residual[M,N]  (PyTorch layout).
//         residual may be y itself (in place); no other overlap.
//         `weight_cache` is an opaque per-weight cache owned by the caller (the Tensor's
//         storage): the backend keeps weights reordered for its fast kernel there. It must be
//         dropped by the owner when w's data changes.
// dtype:  all tensors of one call share it (f32, bf16 or f16). K == 0 gives the epilogue alone.
// linear_i8: acc[M,N] = x[M,K] · w[N,K]^T over int8 values, exact in int32 (K <= kLinearI8MaxK),
//         then by `out`:
//           I32: y = acc                                   (the raw product, gemmInt8)
//           F32: y = act(f32(acc) * s[n] + bias[n]) + residual    (f32 bias, residual)
//           I8:  y = quantize(the F32 value, out_clip)     (ops/quant.h rounding)
//         s[n] = f32(f32(x_clip / 127) * f32(w_clip[n] / 127)): the dequantization scales of x
//         and of w's row n (per output channel, or w_clip_value for all). Clips finite and > 0
//         (checked on the thread that runs the op, ERR_ARG). residual may be y itself (F32).
//         Weights are kept in the WeightCache in the product's layout (see matmul.cc).
#pragma once
#include <cstdint>
#include "core/dispatch.h"
#include "ops/activation.h"

namespace seqfuse {

struct GemmArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;  // a, b, c, out
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  float alpha = 1.0f, beta = 0.0f;
  const void* a = nullptr;
  const void* b = nullptr;
  const void* c = nullptr;  // nullable
  void* out = nullptr;
};

struct WeightCache;  // backend-defined; created by weight_cache_new, freed by weight_cache_free

struct LinearArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;  // x, w, bias, residual, y
  int64_t m = 0, n = 0, k = 0;
  Activation act = Activation::None;
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;      // nullable
  const void* residual = nullptr;  // nullable
  void* y = nullptr;
  WeightCache* weight_cache = nullptr;  // nullable: no caching
};

// The largest K linear_i8 takes: |acc| and the u8-shifted sum it is computed from stay in int32.
constexpr int64_t kLinearI8MaxK = 65536;

struct LinearI8Args {
  Device device = Device::CPU;
  DType out = DType::F32;  // y: I32, F32 or I8
  int64_t m = 0, n = 0, k = 0;
  Activation act = Activation::None;
  const int8_t* x = nullptr;
  const int8_t* w = nullptr;
  float x_clip = 127.0f;
  const float* w_clip = nullptr;  // [N], nullable: w_clip_value for every column
  float w_clip_value = 127.0f;
  const float* bias = nullptr;      // [N] f32, nullable
  const float* residual = nullptr;  // [M,N] f32, nullable
  float out_clip = 0.0f;            // I8: clipMax of y (finite, > 0)
  void* y = nullptr;
  WeightCache* weight_cache = nullptr;  // nullable: no caching
};

void gemm_cpu(const GemmArgs& a);
void linear_fwd_cpu(const LinearArgs& a);
void gemm_cuda(const GemmArgs& a, Stream s);
void linear_fwd_cuda(const LinearArgs& a, Stream s);
void linear_i8_cpu(const LinearI8Args& a);
void linear_i8_cuda(const LinearI8Args& a, Stream s);

inline void gemm(const GemmArgs& a) { SF_DISPATCH(gemm, a); }
inline void linear_fwd(const LinearArgs& a) { SF_DISPATCH(linear_fwd, a); }
inline void linear_i8(const LinearI8Args& a) { SF_DISPATCH(linear_i8, a); }

// Thread-safe: one cache may serve concurrent calls on the same weight.
WeightCache* weight_cache_new();
void weight_cache_free(WeightCache* c);
int64_t weight_cache_bytes(const WeightCache* c);

}  // namespace seqfuse

// native/ops/quant.h — symmetric int8 quantization (REFERENCES.md §1, LightSeq 3 scheme):
// quantize, dequantize, fake-quant forward and its PACT backward, per tensor or per channel.
// x, q, y, dy, dx: [outer, C, inner] row-major (the tensor with its channel axis in the middle;
// per tensor: C = 1, outer = 1, inner = numel). clip: f32 [C], or clip_value when clip is null.
// With s = clipMax / 127 and inv = 127 / clipMax (both rounded to f32 once per channel):
//   quantize:   q = clamp(round_half_away(clamp(x * inv, -127, 127))) as int8, NaN x -> 0
//   dequantize: y = q * s (f32, then stored in y's dtype)
//   fake-quant: y = round_half_away(clamp(x * inv, -127, 127)) * s in x's dtype (NaN stays NaN)
//   max clip:   y f32 [C] = max(max |x| over the channel, FLT_MIN) * clip_scale (NaN ignored): the
//               smallest clipMax that saturates nothing (max calibration), widened by clip_scale =
//               f32(127 / levels) for codes within +-levels (7-bit weights: levels 63); with
//               `accumulate`, y[c] keeps the larger of itself and that (a running max)
//   histogram:  per tensor, hist[b] += count of |x| in [b, b + 1) * clip_value / bins (the last bin
//               also takes everything above; NaN ignored): percentile calibration
//   backward:   |x| < clipMax: dx = dy; x >= clipMax: dx = 0, dclip += dy; x <= -clipMax: dx = 0,
//               dclip -= dy (NaN x: dx = 0, no dclip). dclip f32 [C], written, or added into
//               with `accumulate`.
// clipMax must be finite and > 0: the CPU entries check the clip tensor on the thread that runs
// the op (ERR_ARG) before writing any output.
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

enum class QuantMode : int32_t { Quantize = 0, Dequantize = 1, FakeQuant = 2, MaxClip = 3, Histogram = 4 };

struct QuantArgs {
  Device device = Device::CPU;
  QuantMode mode = QuantMode::Quantize;
  DType dtype = DType::F32;          // the float side: x (quantize, fake-quant, backward) or y (dequantize)
  int64_t outer = 0, channels = 1, inner = 0;
  const void* x = nullptr;           // float x, or int8 q for dequantize
  void* y = nullptr;                 // int8 q for quantize, float y otherwise
  const float* clip = nullptr;       // f32 [channels], nullable
  float clip_value = 0.0f;           // per-tensor clipMax when clip is null
  float clip_scale = 1.0f;           // max clip: the widening factor
  // backward
  const void* dy = nullptr;
  void* dx = nullptr;
  float* dclip = nullptr;            // f32 [channels]
  bool accumulate = false;           // dclip += instead of =; max clip: running max
  double* hist = nullptr;            // histogram: [bins] counts, added into
  int64_t bins = 0;
};

void quant_fwd_cpu(const QuantArgs& a);
void quant_bwd_cpu(const QuantArgs& a);
void quant_fwd_cuda(const QuantArgs& a, Stream s);
void quant_bwd_cuda(const QuantArgs& a, Stream s);

inline void quant_fwd(const QuantArgs& a) { SF_DISPATCH(quant_fwd, a); }
inline void quant_bwd(const QuantArgs& a) { SF_DISPATCH(quant_bwd, a); }

}  // namespace seqfuse

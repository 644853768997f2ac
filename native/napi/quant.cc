// native/napi/quant.cc — bindings of quantize / dequantize / fakeQuant and fakeQuantBackward
// (ops/quant.h).
#include "napi/napi_util.h"
#include "ops/quant.h"

namespace seqfuse::napi {

// Fills a's [outer, C, inner] layout from the axis at argument i: null or undefined for per tensor
// (C = 1), else an integer in [-ndim, ndim).
static void axis_layout(const Napi::CallbackInfo& info, size_t i, const char* op, const TensorArg& x, QuantArgs& a) {
  a.outer = 1; a.channels = 1; a.inner = x.numel;
  if (info[i].IsUndefined() || info[i].IsNull()) return;
  if (x.ndim == 0) fail(ErrorCode::Shape, op, ": a per-channel axis needs x with at least 1 dim but received shape []");
  double ax = number_arg(info, i, op, "axis", -x.ndim, x.ndim - 1);
  if (ax != int(ax)) fail(ErrorCode::Arg, op, ": expected an integer axis but received ", ax);
  const int axis = ax < 0 ? int(ax) + x.ndim : int(ax);
  a.channels = x.shape[axis];
  a.inner = 1;
  for (int d = 0; d < axis; ++d) a.outer *= x.shape[d];
  for (int d = axis + 1; d < x.ndim; ++d) a.inner *= x.shape[d];
}

// Reads clipMax (argument i: a number, or an f32 tensor) and axis (argument i + 1: null for per
// tensor, or an integer in [-ndim, ndim)) and fills a's layout and clip. Per tensor, a clip
// tensor has one element; per channel it is [x.shape[axis]].
static TensorArg quant_layout(const Napi::CallbackInfo& info, size_t i, const char* op, const TensorArg& x, QuantArgs& a) {
  TensorArg clip;
  clip.name = "clipMax";
  const bool per_tensor = info[i + 1].IsUndefined() || info[i + 1].IsNull();
  if (info[i].IsNumber()) {
    if (!per_tensor) fail(ErrorCode::Arg, op, ": a per-channel axis needs clipMax as an f32 tensor [C], not a number");
    a.clip_value = float(number_arg(info, i, op, "clipMax", 1.401298464324817e-45, 3.4028234663852886e38));
  } else {
    clip = tensor_arg(info, i, op, "clipMax");
    check_dtype(op, clip, DType::F32);
  }
  axis_layout(info, i + 1, op, x, a);
  if (per_tensor) {
    if (clip.present && (clip.ndim > 1 || clip.numel != 1))
      fail(ErrorCode::Shape, op, ": expected a 1-element clipMax for a per-tensor quantization (or give axis) but received shape ",
           clip.shape_str());
  } else {
    check_vector(op, clip, a.channels);
  }
  a.clip = static_cast<const float*>(clip.data);
  return clip;
}

// quant_fwd(mode, x, clipMax, axis, out, async): mode 0 quantize (x float -> out i8),
// 1 dequantize (x i8 -> out float), 2 fakeQuant (out like x).
static Napi::Value quant_fwd_js(const Napi::CallbackInfo& info) {
  double m = number_arg(info, 0, "quant_fwd", "mode", 0, 2);
  if (m != int(m)) fail(ErrorCode::Arg, "quant_fwd: expected an integer mode but received ", m);
  const QuantMode mode = QuantMode(int(m));
  static const char* const names[] = {"quantize", "dequantize", "fakeQuant"};
  const char* op = names[int(mode)];
  TensorArg x = tensor_arg(info, 1, op, mode == QuantMode::Dequantize ? "q" : "x"), y = tensor_arg(info, 4, op, "out");
  bool async = bool_arg(info, 5, op, "async");
  QuantArgs a;
  TensorArg clip = quant_layout(info, 2, op, x, a);
  check_device(op, {&x, &clip, &y});
  check_device_clips(op, clip);
  if (mode == QuantMode::Dequantize) {
    check_dtype(op, x, DType::I8);
    check_float(op, y);
  } else {
    check_float(op, x);
    if (mode == QuantMode::Quantize) check_dtype(op, y, DType::I8);
    else check_same_dtype(op, y, x);
  }
  check_same_shape(op, y, x);
  a.device = x.device; a.mode = mode;
  a.dtype = mode == QuantMode::Dequantize ? y.dtype : x.dtype;
  a.x = x.data; a.y = y.data;
  return run_op(info, async, {&x, &clip, &y}, [a] { quant_fwd(a); });
}

// quant_bwd(dy, x, clipMax, axis, dx, dclip, async)
static Napi::Value quant_bwd_js(const Napi::CallbackInfo& info) {
  const char* op = "fakeQuantBackward";
  TensorArg dy = tensor_arg(info, 0, op, "dy"), x = tensor_arg(info, 1, op, "x"), dx = tensor_arg(info, 4, op, "dx"),
            dclip = tensor_arg(info, 5, op, "dclip");
  bool async = bool_arg(info, 6, op, "async");
  QuantArgs a;
  TensorArg clip = quant_layout(info, 2, op, x, a);
  check_device(op, {&dy, &x, &clip, &dx, &dclip});
  check_device_clips(op, clip);
  check_float(op, dy);
  check_same_dtype(op, x, dy);
  check_same_dtype(op, dx, dy);
  check_dtype(op, dclip, DType::F32);
  check_same_shape(op, x, dy);
  check_same_shape(op, dx, dy);
  if (clip.present) check_same_shape(op, dclip, clip);
  else check_vector(op, dclip, 1);
  a.device = dy.device; a.dtype = dy.dtype;
  a.x = x.data; a.dy = dy.data; a.dx = dx.data; a.dclip = static_cast<float*>(dclip.data);
  return run_op(info, async, {&dy, &x, &clip, &dx, &dclip}, [a] { quant_bwd(a); });
}

// quant_max_clip(x, axis, levels, out, async): out f32 [C] (or [1] per tensor).
static Napi::Value quant_max_clip_js(const Napi::CallbackInfo& info) {
  const char* op = "maxClip";
  TensorArg x = tensor_arg(info, 0, op, "x"), y = tensor_arg(info, 3, op, "out");
  double levels = number_arg(info, 2, op, "levels", 1, 127);
  if (levels != int(levels)) fail(ErrorCode::Arg, op, ": expected integer levels but received ", levels);
  bool async = bool_arg(info, 4, op, "async");
  QuantArgs a;
  axis_layout(info, 1, op, x, a);
  check_device(op, {&x, &y});
  check_float(op, x);
  check_dtype(op, y, DType::F32);
  check_vector(op, y, a.channels);
  a.device = x.device; a.mode = QuantMode::MaxClip; a.dtype = x.dtype;
  a.clip_scale = 127.0f / float(levels);
  a.x = x.data; a.y = y.data;
  return run_op(info, async, {&x, &y}, [a] { quant_fwd(a); });
}

void register_quant(Napi::Object exports) {
  SF_EXPORT(exports, "quant_max_clip", quant_max_clip_js);
  SF_EXPORT(exports, "quant_fwd", quant_fwd_js);
  SF_EXPORT(exports, "quant_bwd", quant_bwd_js);
}

}  // namespace seqfuse::napi

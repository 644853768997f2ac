// native/napi/softmax.cc — bindings of softmax / softmaxBackward (ops/softmax.h).
#include "napi/napi_util.h"
#include "ops/softmax.h"

namespace seqfuse::napi {

// Broadcast strides of an f32 mask over x (numpy rules, trailing-aligned): each mask dim is
// x's dim or 1, a missing or size-1 dim gets stride 0.
static void mask_strides(const char* op, const TensorArg& mask, const TensorArg& x, SoftmaxArgs& a) {
  const int shift = x.ndim - mask.ndim;
  bool ok = shift >= 0;
  for (int d = 0; ok && d < mask.ndim; ++d) ok = mask.shape[d] == 1 || mask.shape[d] == x.shape[d + shift];
  if (!ok)
    fail(ErrorCode::Shape, op, ": expected mask broadcastable to x ", x.shape_str(), " (each dim equal or 1, aligned at the end) but received ",
         mask.shape_str());
  int64_t stride = 1;
  for (int d = x.ndim - 1; d >= 0; --d) {
    const int md = d - shift;
    const int64_t len = md >= 0 ? mask.shape[md] : 1;
    const int64_t s = len == 1 ? 0 : stride;
    if (d == x.ndim - 1) a.mask_col_stride = s;
    else a.mask_stride[d] = s;
    stride *= len;
  }
}

// softmax_fwd(x, mask?, y, causal, async)
static Napi::Value softmax_fwd_js(const Napi::CallbackInfo& info) {
  const char* op = "softmax";
  TensorArg x = tensor_arg(info, 0, op, "x"), mask = tensor_arg(info, 1, op, "mask", true), y = tensor_arg(info, 2, op, "out");
  bool causal = bool_arg(info, 3, op, "causal");
  bool async = bool_arg(info, 4, op, "async");
  check_device(op, {&x, &mask, &y});
  check_float(op, x);
  check_min_dims(op, x, causal ? 2 : 1);
  check_dtype(op, mask, DType::F32);
  check_same_dtype(op, y, x);
  check_same_shape(op, y, x);
  SoftmaxArgs a;
  a.device = x.device; a.dtype = x.dtype; a.causal = causal;
  a.cols = x.cols(); a.rows = a.cols ? x.numel / a.cols : 0;
  a.nlead = x.ndim - 1;
  for (int d = 0; d < a.nlead; ++d) a.lead[d] = x.shape[d];
  if (mask.present) {
    mask_strides(op, mask, x, a);
    a.mask = static_cast<const float*>(mask.data);
  }
  a.x = x.data; a.y = y.data;
  return run_op(info, async, {&x, &mask, &y}, [a] { softmax_fwd(a); });
}

// softmax_bwd(dy, y, dx, async)
static Napi::Value softmax_bwd_js(const Napi::CallbackInfo& info) {
  const char* op = "softmaxBackward";
  TensorArg dy = tensor_arg(info, 0, op, "dy"), y = tensor_arg(info, 1, op, "y"), dx = tensor_arg(info, 2, op, "out");
  bool async = bool_arg(info, 3, op, "async");
  check_device(op, {&dy, &y, &dx});
  check_float(op, y);
  check_min_dims(op, y, 1);
  check_same_dtype(op, dy, y);
  check_same_dtype(op, dx, y);
  check_same_shape(op, dy, y);
  check_same_shape(op, dx, y);
  SoftmaxArgs a;
  a.device = y.device; a.dtype = y.dtype;
  a.cols = y.cols(); a.rows = a.cols ? y.numel / a.cols : 0;
  a.y = y.data; a.dy = dy.data; a.dx = dx.data;
  return run_op(info, async, {&dy, &y, &dx}, [a] { softmax_bwd(a); });
}

void register_softmax(Napi::Object exports) {
  SF_EXPORT(exports, "softmax_fwd", softmax_fwd_js);
  SF_EXPORT(exports, "softmax_bwd", softmax_bwd_js);
}

}  // namespace seqfuse::napi

// native/napi/activation.cc — bindings of gelu / relu / silu / biasAct and their backward
// passes (ops/activation.h).
#include "napi/napi_util.h"
#include "ops/activation.h"

namespace seqfuse::napi {

// The public op a call comes from, for messages: biasAct(Backward) when a bias is given, else
// the plain activation of code `act`.
static const char* act_op(bool fused, int act, bool backward) {
  static const char* const fwd[] = {"biasAct", "relu", "gelu", "gelu", "silu"};
  static const char* const bwd[] = {"biasActBackward", "reluBackward", "geluBackward", "geluBackward", "siluBackward"};
  if (fused || act < 0 || act > 4) return backward ? "biasActBackward" : "biasAct";
  return backward ? bwd[act] : fwd[act];
}

// The activation code, integer in [0, 4] (ops/activation.h Activation).
static Activation act_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  double v = number_arg(info, i, op, "activation", 0, 4);
  if (v != double(int(v))) fail(ErrorCode::Arg, op, ": expected an integer activation code but received ", v);
  return Activation(int(v));
}

// bias_act_fwd(x, bias?, y, act, p, seed, offset, async)
static Napi::Value bias_act_fwd_js(const Napi::CallbackInfo& info) {
  const bool fused = !info[1].IsUndefined() && !info[1].IsNull();
  const int act_code = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : -1;
  const char* op = act_op(fused, act_code, false);
  TensorArg x = tensor_arg(info, 0, op, "x"), b = tensor_arg(info, 1, op, "bias", true), y = tensor_arg(info, 2, op, "out");
  Activation act = act_arg(info, 3, op);
  double p = number_arg(info, 4, op, "dropout", 0, 1);
  uint64_t seed = seed_arg(info, 5, op, "seed"), offset = seed_arg(info, 6, op, "offset");
  bool async = bool_arg(info, 7, op, "async");
  check_device(op, {&x, &b, &y});
  check_float(op, x);
  if (b.present) check_min_dims(op, x, 1);
  check_same_dtype(op, b, x);
  check_same_dtype(op, y, x);
  check_vector(op, b, x.cols());
  check_same_shape(op, y, x);
  BiasActArgs a;
  a.device = x.device; a.dtype = x.dtype; a.act = act;
  a.cols = x.cols(); a.rows = a.cols ? x.numel / a.cols : 0;
  a.x = x.data; a.bias = b.data; a.y = y.data;
  a.dropout = float(p); a.seed = seed; a.offset = offset;
  return run_op(info, async, {&x, &b, &y}, [a] { bias_act_fwd(a); });
}

// bias_act_bwd(dy, x, bias?, dx, dbias?, act, p, seed, offset, async)
static Napi::Value bias_act_bwd_js(const Napi::CallbackInfo& info) {
  const bool fused = !info[2].IsUndefined() && !info[2].IsNull();
  const int act_code = info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : -1;
  const char* op = act_op(fused, act_code, true);
  TensorArg dy = tensor_arg(info, 0, op, "dy"), x = tensor_arg(info, 1, op, "x"), b = tensor_arg(info, 2, op, "bias", true),
            dx = tensor_arg(info, 3, op, "dx"), db = tensor_arg(info, 4, op, "dbias", true);
  Activation act = act_arg(info, 5, op);
  double p = number_arg(info, 6, op, "dropout", 0, 1);
  uint64_t seed = seed_arg(info, 7, op, "seed"), offset = seed_arg(info, 8, op, "offset");
  bool async = bool_arg(info, 9, op, "async");
  check_device(op, {&dy, &x, &b, &dx, &db});
  check_float(op, x);
  if (b.present || db.present) check_min_dims(op, x, 1);
  for (const TensorArg* t : {&dy, &b, &dx, &db}) check_same_dtype(op, *t, x);
  check_same_shape(op, dy, x);
  check_same_shape(op, dx, x);
  check_vector(op, b, x.cols());
  check_vector(op, db, x.cols());
  BiasActArgs a;
  a.device = x.device; a.dtype = x.dtype; a.act = act;
  a.cols = x.cols(); a.rows = a.cols ? x.numel / a.cols : 0;
  a.x = x.data; a.bias = b.data; a.dy = dy.data; a.dx = dx.data; a.dbias = db.data;
  a.dropout = float(p); a.seed = seed; a.offset = offset;
  return run_op(info, async, {&dy, &x, &b, &dx, &db}, [a] { bias_act_bwd(a); });
}

void register_activation(Napi::Object exports) {
  SF_EXPORT(exports, "bias_act_fwd", bias_act_fwd_js);
  SF_EXPORT(exports, "bias_act_bwd", bias_act_bwd_js);
}

}  // namespace seqfuse::napi

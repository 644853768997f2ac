// native/napi/dropout.cc — bindings of dropout / biasDropoutResidual and their backward passes
// (ops/dropout.h), and philox_test, the raw generator for the known-answer test.
#include "core/philox.h"
#include "napi/napi_util.h"
#include "ops/dropout.h"

namespace seqfuse::napi {

// dropout_fwd(x, bias?, residual?, y, p, seed, offset, async)
static Napi::Value dropout_fwd_js(const Napi::CallbackInfo& info) {
  const bool fused = !(info[1].IsUndefined() || info[1].IsNull()) || !(info[2].IsUndefined() || info[2].IsNull());
  const char* op = fused ? "biasDropoutResidual" : "dropout";
  TensorArg x = tensor_arg(info, 0, op, "x"), b = tensor_arg(info, 1, op, "bias", true),
            res = tensor_arg(info, 2, op, "residual", true), y = tensor_arg(info, 3, op, "out");
  double p = number_arg(info, 4, op, "p", 0, 1);
  uint64_t seed = seed_arg(info, 5, op, "seed"), offset = seed_arg(info, 6, op, "offset");
  bool async = bool_arg(info, 7, op, "async");
  check_device(op, {&x, &b, &res, &y});
  check_float(op, x);
  if (b.present) check_min_dims(op, x, 1);
  for (const TensorArg* t : {&b, &res, &y}) check_same_dtype(op, *t, x);
  check_vector(op, b, x.cols());
  check_same_shape(op, res, x);
  check_same_shape(op, y, x);
  DropoutArgs a;
  a.device = x.device; a.dtype = x.dtype;
  a.cols = x.cols(); a.rows = a.cols ? x.numel / a.cols : 0;
  a.x = x.data; a.bias = b.data; a.residual = res.data; a.y = y.data;
  a.p = float(p); a.seed = seed; a.offset = offset;
  return run_op(info, async, {&x, &b, &res, &y}, [a] { dropout_fwd(a); });
}

// dropout_bwd(dy, dx, dbias?, p, seed, offset, async)
static Napi::Value dropout_bwd_js(const Napi::CallbackInfo& info) {
  const char* op = info[2].IsUndefined() || info[2].IsNull() ? "dropoutBackward" : "biasDropoutResidualBackward";
  TensorArg dy = tensor_arg(info, 0, op, "dy"), dx = tensor_arg(info, 1, op, "dx"), db = tensor_arg(info, 2, op, "dbias", true);
  double p = number_arg(info, 3, op, "p", 0, 1);
  uint64_t seed = seed_arg(info, 4, op, "seed"), offset = seed_arg(info, 5, op, "offset");
  bool async = bool_arg(info, 6, op, "async");
  check_device(op, {&dy, &dx, &db});
  check_float(op, dy);
  if (db.present) check_min_dims(op, dy, 1);
  check_same_dtype(op, dx, dy);
  check_same_dtype(op, db, dy);
  check_same_shape(op, dx, dy);
  check_vector(op, db, dy.cols());
  DropoutArgs a;
  a.device = dy.device; a.dtype = dy.dtype;
  a.cols = dy.cols(); a.rows = a.cols ? dy.numel / a.cols : 0;
  a.dy = dy.data; a.dx = dx.data; a.dbias = db.data;
  a.p = float(p); a.seed = seed; a.offset = offset;
  return run_op(info, async, {&dy, &dx, &db}, [a] { dropout_bwd(a); });
}

// A Uint32Array argument of exactly n words.
static const uint32_t* words_arg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t n) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      v.As<Napi::TypedArray>().ElementLength() != n)
    fail(ErrorCode::Arg, "philox_test: expected a Uint32Array of ", n, " words for ", name);
  return v.As<Napi::Uint32Array>().Data();
}

// philox_test(counter: Uint32Array(4), key: Uint32Array(2)) -> Uint32Array(4): philox4x32_10.
static Napi::Value philox_test_js(const Napi::CallbackInfo& info) {
  const uint32_t* c = words_arg(info, 0, "counter", 4);
  const uint32_t* k = words_arg(info, 1, "key", 2);
  Philox4 r = philox4x32_10(Philox4{{c[0], c[1], c[2], c[3]}}, k[0], k[1]);
  Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), 4);
  for (int w = 0; w < 4; ++w) out[w] = r.v[w];
  return out;
}

void register_dropout(Napi::Object exports) {
  SF_EXPORT(exports, "dropout_fwd", dropout_fwd_js);
  SF_EXPORT(exports, "dropout_bwd", dropout_bwd_js);
  SF_EXPORT(exports, "philox_test", philox_test_js);
}

}  // namespace seqfuse::napi

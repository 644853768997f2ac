// native/napi/norm.cc — bindings of layerNorm / rmsNorm (ops/norm.h).
#include "napi/napi_util.h"
#include "ops/norm.h"

namespace seqfuse::napi {

// norm_fwd(x, gamma, beta?, y, mean?, rstd?, eps, rms, async)
static Napi::Value norm_fwd_js(const Napi::CallbackInfo& info) {
  bool rms = bool_arg(info, 7, "layerNorm", "rms");
  const char* op = rms ? "rmsNorm" : "layerNorm";
  TensorArg x = tensor_arg(info, 0, op, "x"), g = tensor_arg(info, 1, op, "gamma"),
            b = tensor_arg(info, 2, op, "beta", true), y = tensor_arg(info, 3, op, "out"),
            mean = tensor_arg(info, 4, op, "mean", true), rstd = tensor_arg(info, 5, op, "rstd", true);
  double eps = number_arg(info, 6, op, "eps", 0, 1e30);
  bool async = bool_arg(info, 8, op, "async");
  check_device(op, {&x, &g, &b, &y, &mean, &rstd});
  check_float(op, x);
  check_min_dims(op, x, 1);
  check_same_dtype(op, g, x);
  check_same_dtype(op, b, x);
  check_same_dtype(op, y, x);
  check_vector(op, g, x.cols());
  check_vector(op, b, x.cols());
  check_same_shape(op, y, x);
  check_dtype(op, mean, DType::F32);
  check_dtype(op, rstd, DType::F32);
  check_vector(op, mean, x.rows());
  check_vector(op, rstd, x.rows());
  if (x.cols() == 0 && x.numel == 0 && x.ndim > 0 && x.rows() > 0) fail(ErrorCode::Shape, op, ": x has an empty last dim");
  NormArgs a;
  a.device = x.device; a.dtype = x.dtype; a.rms = rms;
  a.rows = x.cols() ? x.numel / x.cols() : 0; a.cols = x.cols(); a.eps = float(eps);
  a.x = x.data; a.gamma = g.data; a.beta = b.data; a.y = y.data;
  a.mean = static_cast<float*>(mean.data); a.rstd = static_cast<float*>(rstd.data);
  return run_op(info, async, {&x, &g, &b, &y, &mean, &rstd}, [a] { norm_fwd(a); });
}

// norm_bwd(dy, x, gamma, mean?, rstd?, dx, dgamma?, dbeta?, eps, rms, async)
static Napi::Value norm_bwd_js(const Napi::CallbackInfo& info) {
  bool rms = bool_arg(info, 9, "layerNormBackward", "rms");
  const char* op = rms ? "rmsNormBackward" : "layerNormBackward";
  TensorArg dy = tensor_arg(info, 0, op, "dy"), x = tensor_arg(info, 1, op, "x"), g = tensor_arg(info, 2, op, "gamma"),
            mean = tensor_arg(info, 3, op, "mean", true), rstd = tensor_arg(info, 4, op, "rstd", true),
            dx = tensor_arg(info, 5, op, "dx"), dg = tensor_arg(info, 6, op, "dgamma", true),
            db = tensor_arg(info, 7, op, "dbeta", true);
  double eps = number_arg(info, 8, op, "eps", 0, 1e30);
  bool async = bool_arg(info, 10, op, "async");
  check_device(op, {&dy, &x, &g, &mean, &rstd, &dx, &dg, &db});
  check_float(op, x);
  check_min_dims(op, x, 1);
  for (const TensorArg* t : {&dy, &g, &dx, &dg, &db}) check_same_dtype(op, *t, x);
  check_same_shape(op, dy, x);
  check_same_shape(op, dx, x);
  check_vector(op, g, x.cols());
  check_vector(op, dg, x.cols());
  check_vector(op, db, x.cols());
  check_dtype(op, mean, DType::F32);
  check_dtype(op, rstd, DType::F32);
  check_vector(op, mean, x.rows());
  check_vector(op, rstd, x.rows());
  NormArgs a;
  a.device = x.device; a.dtype = x.dtype; a.rms = rms;
  a.rows = x.cols() ? x.numel / x.cols() : 0; a.cols = x.cols(); a.eps = float(eps);
  a.x = x.data; a.gamma = g.data; a.dy = dy.data; a.dx = dx.data; a.dgamma = dg.data; a.dbeta = db.data;
  a.mean = static_cast<float*>(mean.data); a.rstd = static_cast<float*>(rstd.data);
  return run_op(info, async, {&dy, &x, &g, &mean, &rstd, &dx, &dg, &db}, [a] { norm_bwd(a); });
}

void register_norm(Napi::Object exports) {
  SF_EXPORT(exports, "norm_fwd", norm_fwd_js);
  SF_EXPORT(exports, "norm_bwd", norm_bwd_js);
}

}  // namespace seqfuse::napi

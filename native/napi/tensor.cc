// native/napi/tensor.cc — bindings behind Tensor.to (cast) and Tensor.randn / rand (random).
#include "napi/napi_util.h"
#include "ops/tensor_ops.h"

namespace seqfuse::napi {

// cast(src, dst, async)
static Napi::Value cast_js(const Napi::CallbackInfo& info) {
  const char* op = "Tensor.to";
  TensorArg s = tensor_arg(info, 0, op, "source"), d = tensor_arg(info, 1, op, "destination");
  bool async = bool_arg(info, 2, op, "async");
  check_device(op, {&s, &d});
  if (s.numel != d.numel) fail(ErrorCode::Shape, op, ": destination has ", d.numel, " elements, source ", s.numel);
  CastArgs a;
  a.device = s.device; a.src_dtype = s.dtype; a.dst_dtype = d.dtype; a.n = s.numel; a.src = s.data; a.dst = d.data;
  return run_op(info, async, {&s, &d}, [a] { cast(a); });
}

// random(out, kind, seed, offset, a, b)
static Napi::Value random_js(const Napi::CallbackInfo& info) {
  const char* op = "Tensor.random";
  TensorArg o = tensor_arg(info, 0, op, "out");
  double kind = number_arg(info, 1, op, "kind", 0, 1);
  uint64_t seed = seed_arg(info, 2, op, "seed");
  uint64_t offset = seed_arg(info, 3, op, "offset");
  double a = number_arg(info, 4, op, kind == 0 ? "low" : "mean", -3.4e38, 3.4e38);
  double b = number_arg(info, 5, op, kind == 0 ? "high" : "std", -3.4e38, 3.4e38);
  check_float(op, o);
  RandomArgs r;
  r.device = o.device; r.dtype = o.dtype; r.kind = RandomKind(int(kind)); r.n = o.numel;
  r.seed = seed; r.offset = offset; r.a = float(a); r.b = float(b); r.out = o.data;
  return run_op(info, false, {&o}, [r] { random(r); });
}

void register_tensor(Napi::Object exports) {
  SF_EXPORT(exports, "cast", cast_js);
  SF_EXPORT(exports, "random", random_js);
}

}  // namespace seqfuse::napi

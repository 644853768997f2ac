// native/napi/crossent.cc — bindings of crossEntropy / crossEntropyBackward (ops/crossent.h).
// Targets are data, not shape: like embedding's ids and attention's kvLengths they are copied
// and range-checked on the thread that runs the op (async included), before any output is
// written, and the kernel reads only the checked copy (on CUDA: a device copy of it).
#include <vector>
#include "napi/napi_util.h"
#include "ops/crossent.h"

namespace seqfuse::napi {

namespace {

// Checks logits [..., V] (float) and targets (i32, logits' leading dims or flat [N]) and the
// f32 [N] per-row tensors; fills a's shape fields.
void check_common(const char* op, const TensorArg& logits, const TensorArg& targets, std::initializer_list<const TensorArg*> rows,
                  CrossEntropyArgs& a) {
  check_float(op, logits);
  check_min_dims(op, logits, 1);
  check_dtype(op, targets, DType::I32);
  a.device = logits.device; a.dtype = logits.dtype;
  a.cols = logits.cols();
  a.rows = 1;
  for (int d = 0; d + 1 < logits.ndim; ++d) a.rows *= logits.shape[d];
  bool lead = targets.ndim == logits.ndim - 1;
  for (int d = 0; lead && d < targets.ndim; ++d) lead = targets.shape[d] == logits.shape[d];
  if (!lead && !(targets.ndim == 1 && targets.numel == a.rows))
    fail(ErrorCode::Shape, op, ": expected targets of shape ", shape_str(logits.shape, logits.ndim - 1), " (the leading dims of logits ",
         logits.shape_str(), ") or [", a.rows, "] but received ", targets.shape_str());
  for (const TensorArg* t : rows) {
    check_dtype(op, *t, DType::F32);
    check_vector(op, *t, a.rows);
  }
  a.logits = logits.data;
}

int32_t ignore_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const double v = number_arg(info, i, op, "ignoreIndex", -2147483648.0, 2147483647.0);
  if (v != int32_t(v)) fail(ErrorCode::Arg, op, ": expected an integer ignoreIndex but received ", v);
  return int32_t(v);
}

// Runs fn(a) with a.targets pointing at a checked copy and a.count set (on the thread that runs
// the op): every target in [0, V) or equal to ignoreIndex.
template <class Fn>
Napi::Value run_crossent(const Napi::CallbackInfo& info, const char* op, bool async, std::initializer_list<const TensorArg*> pins,
                         const CrossEntropyArgs& args, const IndexSource& targets_js, Fn fn) {
  return run_op(info, async, pins, [args, targets_js, op, fn] {
    CrossEntropyArgs a = args;
    std::vector<int32_t> targets = targets_js.read(op);
    a.count = 0;
    for (int64_t i = 0; i < a.rows; ++i) {
      const int32_t y = targets[size_t(i)];
      if (y == a.ignore_index) continue;
      if (y < 0 || y >= a.cols)
        fail(ErrorCode::Arg, op, ": targets[", i, "] = ", y, " is out of range [0, ", a.cols, ") and is not ignoreIndex = ", a.ignore_index);
      ++a.count;
    }
    const IndexArg checked(a.device, std::move(targets), op);
    a.targets = checked.data();
    fn(a);
  });
}

}  // namespace

// crossent_fwd(logits, targets, lse, losses?, weights?, stats: Float64Array(2), ignoreIndex, labelSmoothing,
//              mile, gamma, sigma, reduction, async)
static Napi::Value crossent_fwd_js(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  TensorArg logits = tensor_arg(info, 0, op, "logits"), targets = tensor_arg(info, 1, op, "targets"),
            lse = tensor_arg(info, 2, op, "lse"), losses = tensor_arg(info, 3, op, "losses", true),
            weights = tensor_arg(info, 4, op, "weights", true);
  Napi::Value st = info[5];
  if (!st.IsTypedArray() || st.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      st.As<Napi::TypedArray>().ElementLength() != 2)
    fail(ErrorCode::Arg, op, ": expected a Float64Array of 2 elements for stats");
  TensorArg stats;  // pinned like a tensor by async calls
  stats.name = "stats"; stats.present = true; stats.holder = st; stats.data = st.As<Napi::Float64Array>().Data();
  CrossEntropyArgs a;
  a.ignore_index = ignore_arg(info, 6, op);
  a.smoothing = float(number_arg(info, 7, op, "labelSmoothing", 0, 0.99999994));
  a.mile = bool_arg(info, 8, op, "mile");
  a.gamma = number_arg(info, 9, op, "mile.gamma", 0, 3.4e38);
  a.sigma = number_arg(info, 10, op, "mile.sigma", 4.9e-324, 3.4e38);
  a.reduction = Reduction(int32_t(number_arg(info, 11, op, "reduction", 0, 2)));
  bool async = bool_arg(info, 12, op, "async");
  check_device(op, {&logits, &lse, &losses, &weights});  // targets: on either device (IndexSource)
  check_common(op, logits, targets, {&lse, &losses, &weights}, a);
  if (a.mile != weights.present) fail(ErrorCode::Arg, op, ": weights must be given exactly when mile is on");
  a.lse = static_cast<float*>(lse.data);
  a.losses = static_cast<float*>(losses.data);
  a.weights = static_cast<float*>(weights.data);
  a.stats = static_cast<double*>(stats.data);
  return run_crossent(info, op, async, {&logits, &targets, &lse, &losses, &weights, &stats}, a,
                      index_source(targets, a.rows), [](const CrossEntropyArgs& x) { crossent_fwd(x); });
}

// crossent_bwd(logits, targets, lse, weights?, dlogits, ignoreIndex, labelSmoothing, mean, dLoss, async)
static Napi::Value crossent_bwd_js(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropyBackward";
  TensorArg logits = tensor_arg(info, 0, op, "logits"), targets = tensor_arg(info, 1, op, "targets"),
            lse = tensor_arg(info, 2, op, "lse"), weights = tensor_arg(info, 3, op, "weights", true),
            dlogits = tensor_arg(info, 4, op, "out");
  CrossEntropyArgs a;
  a.ignore_index = ignore_arg(info, 5, op);
  a.smoothing = float(number_arg(info, 6, op, "labelSmoothing", 0, 0.99999994));
  a.reduction = bool_arg(info, 7, op, "mean") ? Reduction::Mean : Reduction::Sum;
  a.dloss = number_arg(info, 8, op, "dLoss", -3.4e38, 3.4e38);
  bool async = bool_arg(info, 9, op, "async");
  check_device(op, {&logits, &lse, &weights, &dlogits});  // targets: on either device
  check_common(op, logits, targets, {&lse, &weights}, a);
  check_same_dtype(op, dlogits, logits);
  check_same_shape(op, dlogits, logits);
  a.lse_in = static_cast<const float*>(lse.data);
  a.weights_in = static_cast<const float*>(weights.data);
  a.dlogits = dlogits.data;
  return run_crossent(info, op, async, {&logits, &targets, &lse, &weights, &dlogits}, a,
                      index_source(targets, a.rows), [](const CrossEntropyArgs& x) { crossent_bwd(x); });
}

void register_crossent(Napi::Object exports) {
  SF_EXPORT(exports, "crossent_fwd", crossent_fwd_js);
  SF_EXPORT(exports, "crossent_bwd", crossent_bwd_js);
}

}  // namespace seqfuse::napi

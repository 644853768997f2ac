// native/napi/optim.cc — bindings of the optimizer family (ops/optim.h): adamw over a list of
// parameters and the sum of squares of a list of tensors (gradNorm).
#include <algorithm>
#include <cmath>
#include <deque>
#include <string>
#include <vector>
#include "napi/napi_util.h"
#include "ops/optim.h"

namespace seqfuse::napi {

// A JS array of tensors; the element names ("params[3]") live as long as the list.
struct TensorList {
  std::deque<std::string> names;
  std::vector<TensorArg> ts;
};

// Reads argument i, an array of Tensors (elements may be null when `optional`).
static void tensor_list(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what, bool optional,
                        TensorList& out) {
  Napi::Value v = info[i];
  if (!v.IsArray()) fail(ErrorCode::Arg, op, ": expected an array of Tensors for ", what);
  Napi::Array arr = v.As<Napi::Array>();
  const uint32_t n = arr.Length();
  out.ts.reserve(n);
  for (uint32_t k = 0; k < n; ++k) {
    out.names.push_back(std::string(what) + "[" + std::to_string(k) + "]");
    out.ts.push_back(tensor_value(info.Env(), arr.Get(k), op, out.names.back().c_str(), optional));
  }
}

static void check_length(const char* op, const TensorList& l, const char* what, size_t n) {
  if (l.ts.size() != n)
    fail(ErrorCode::Arg, op, ": expected ", n, " tensors in ", what, " (one per parameter) but received ", l.ts.size());
}

static double finite_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name, double lo) {
  return number_arg(info, i, op, name, lo, 3.4028234663852886e38);  // finite and representable in f32
}

// A beta in [0, 1).
static double beta_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  double b = number_arg(info, i, op, name, 0, 1);
  if (b == 1) fail(ErrorCode::Arg, op, ": expected ", name, " in [0, 1) but received 1");
  return b;
}

// A memory range [lo, hi) of one tensor, and whether the op writes it.
struct Span {
  uintptr_t lo, hi;
  bool written;
  const char* name;
};

// No written tensor may share memory with any other tensor of the call: two writers would race,
// and a grad read while another element writes it would make the result depend on the threads.
static void check_disjoint(const char* op, std::vector<Span> spans) {
  std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) { return x.lo < y.lo; });
  const Span* far_any = nullptr;      // of the spans so far, the one reaching furthest
  const Span* far_written = nullptr;  // the same among written spans
  for (const Span& s : spans) {
    const Span* clash = s.written ? far_any : far_written;
    if (clash && clash->hi > s.lo)
      fail(ErrorCode::Arg, op, ": ", clash->name, " and ", s.name,
           " share memory (a tensor the op writes may appear only once in its arguments)");
    if (!far_any || s.hi > far_any->hi) far_any = &s;
    if (s.written && (!far_written || s.hi > far_written->hi)) far_written = &s;
  }
}

static void add_span(std::vector<Span>& spans, const TensorArg& t, bool written) {
  if (t.present && t.numel > 0) {
    uintptr_t lo = reinterpret_cast<uintptr_t>(t.data);
    spans.push_back({lo, lo + uintptr_t(t.numel * dtype_size(t.dtype)), written, t.name});
  }
}

// adamw(params[], grads[], m[], v[], copies[] (Tensor|null), decay[] (boolean), lr, beta1, beta2,
//       eps, weightDecay, step, gradScale, async)
static Napi::Value adamw_js(const Napi::CallbackInfo& info) {
  const char* op = "adamw";
  TensorList params, grads, ms, vs, copies;
  tensor_list(info, 0, op, "params", false, params);
  const size_t n = params.ts.size();
  tensor_list(info, 1, op, "grads", false, grads);
  check_length(op, grads, "grads", n);
  tensor_list(info, 2, op, "m", false, ms);
  check_length(op, ms, "m", n);
  tensor_list(info, 3, op, "v", false, vs);
  check_length(op, vs, "v", n);
  tensor_list(info, 4, op, "copies", true, copies);
  check_length(op, copies, "copies", n);
  if (!info[5].IsArray() || info[5].As<Napi::Array>().Length() != n)
    fail(ErrorCode::Arg, op, ": expected decay as an array of ", n, " booleans (one per parameter)");
  Napi::Array decay = info[5].As<Napi::Array>();
  AdamWArgs a;
  a.lr = finite_arg(info, 6, op, "lr", 0);
  a.beta1 = beta_arg(info, 7, op, "beta1");
  a.beta2 = beta_arg(info, 8, op, "beta2");
  a.eps = finite_arg(info, 9, op, "eps", 0);
  a.weight_decay = finite_arg(info, 10, op, "weightDecay", 0);
  double step = number_arg(info, 11, op, "step", 1, 9007199254740991.0);
  if (step != std::floor(step)) fail(ErrorCode::Arg, op, ": expected an integer step but received ", step);
  a.step = int64_t(step);
  a.grad_scale = finite_arg(info, 12, op, "gradScale", 0);
  bool async = bool_arg(info, 13, op, "async");

  std::vector<AdamWTensor> ts(n);
  std::vector<Span> spans;
  std::vector<napi_value> pins;
  for (size_t i = 0; i < n; ++i) {
    const TensorArg &p = params.ts[i], &g = grads.ts[i], &m = ms.ts[i], &v = vs.ts[i], &c = copies.ts[i];
    check_device(op, {&params.ts[0], &p, &g, &m, &v, &c});
    check_dtype(op, p, DType::F32);
    check_float(op, g);
    check_dtype(op, m, DType::F32);
    check_dtype(op, v, DType::F32);
    if (c.present && c.dtype != DType::F16 && c.dtype != DType::BF16)
      fail(ErrorCode::DType, op, ": expected a f16 or bf16 tensor for ", c.name, " but received ", dtype_name(c.dtype));
    for (const TensorArg* t : {&g, &m, &v, &c}) check_same_shape(op, *t, p);
    Napi::Value d = decay.Get(uint32_t(i));
    if (!d.IsBoolean()) fail(ErrorCode::Arg, op, ": expected decay[", i, "] to be a boolean");
    AdamWTensor& t = ts[i];
    t.param = static_cast<float*>(p.data);
    t.grad = g.data;
    t.m = static_cast<float*>(m.data);
    t.v = static_cast<float*>(v.data);
    t.copy = c.present ? c.data : nullptr;
    t.numel = p.numel;
    t.grad_dtype = g.dtype;
    t.copy_dtype = c.present ? c.dtype : DType::BF16;
    t.decay = d.As<Napi::Boolean>().Value();
    add_span(spans, p, true);
    add_span(spans, m, true);
    add_span(spans, v, true);
    add_span(spans, c, true);
    add_span(spans, g, false);
    if (async)
      for (const TensorArg* x : {&p, &g, &m, &v, &c})
        if (x->present) pins.push_back(x->holder);
  }
  check_disjoint(op, std::move(spans));
  a.device = n ? params.ts[0].device : Device::CPU;
  a.count = int64_t(n);
  return run_op(info, async, pins, [a, ts = std::move(ts)]() mutable {
    a.tensors = ts.data();
    adamw(a);
  });
}

// grad_norm(tensors[], out: Float64Array(1), async): out[0] = the sum of squares (ops/optim.h).
static Napi::Value grad_norm_js(const Napi::CallbackInfo& info) {
  const char* op = "gradNorm";
  TensorList list;
  tensor_list(info, 0, op, "tensors", false, list);
  Napi::Value o = info[1];
  if (!o.IsTypedArray() || o.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      o.As<Napi::TypedArray>().ElementLength() != 1)
    fail(ErrorCode::Arg, op, ": expected a Float64Array of 1 element for out");
  bool async = bool_arg(info, 2, op, "async");
  std::vector<NormTensor> ts(list.ts.size());
  std::vector<napi_value> pins{o};
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorArg& t = list.ts[i];
    check_device(op, {&list.ts[0], &t});
    check_float(op, t);
    ts[i] = {t.data, t.numel, t.dtype};
    pins.push_back(t.holder);
  }
  SumSqArgs a;
  a.device = ts.empty() ? Device::CPU : list.ts[0].device;
  a.count = int64_t(ts.size());
  a.sumsq = o.As<Napi::Float64Array>().Data();
  return run_op(info, async, pins, [a, ts = std::move(ts)]() mutable {
    a.tensors = ts.data();
    norm_sumsq(a);
  });
}

void register_optim(Napi::Object exports) {
  SF_EXPORT(exports, "adamw", adamw_js);
  SF_EXPORT(exports, "grad_norm", grad_norm_js);
}

}  // namespace seqfuse::napi

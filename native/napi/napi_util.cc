// native/napi/napi_util.cc — see napi_util.h.
#include "napi/napi_util.h"
#include <cmath>
#include <new>
#include <sstream>
#include "core/threads.h"

namespace seqfuse::napi {

// Per-env state: the SeqfuseError class handed over by lib/native.ts.
struct EnvData {
  Napi::FunctionReference error_class;
};

static EnvData& env_data(Napi::Env env) {
  EnvData* d = env.GetInstanceData<EnvData>();
  if (!d) {
    d = new EnvData();
    env.SetInstanceData(d);
  }
  return *d;
}

void set_error_class(Napi::Env env, Napi::Function cls) { env_data(env).error_class = Napi::Persistent(cls); }

Napi::Error make_error(Napi::Env env, ErrorCode code, const std::string& message) {
  EnvData& d = env_data(env);
  if (!d.error_class.IsEmpty()) {
    Napi::Object e = d.error_class.New({Napi::String::New(env, error_code_name(code)), Napi::String::New(env, message)});
    return Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, error_code_name(code)));
  return e;
}

Napi::Value guard(const Napi::CallbackInfo& info, Napi::Value (*impl)(const Napi::CallbackInfo&)) {
  Napi::Env env = info.Env();
  try {
    return impl(info);
  } catch (const Error& e) {
    make_error(env, e.code, e.message).ThrowAsJavaScriptException();
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::bad_alloc&) {
    make_error(env, ErrorCode::OOM, "out of memory").ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    make_error(env, ErrorCode::Backend, std::string("internal error: ") + e.what()).ThrowAsJavaScriptException();
  } catch (...) {
    make_error(env, ErrorCode::Backend, "internal error").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

std::string shape_str(const int64_t* s, int n) {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < n; ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

std::string TensorArg::shape_str() const { return napi::shape_str(shape, ndim); }

static const char* js_type(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_bigint: return "bigint";
    case napi_function: return "function";
    default: return v.IsTypedArray() ? "typed array" : v.IsArray() ? "array" : "object";
  }
}

// Raw N-API calls here (one typeof, two property reads, two typedarray infos per tensor):
// this runs for every tensor of every call, and node-addon-api's accessors repeat queries.
TensorArg tensor_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name, bool optional) {
  return tensor_value(info.Env(), info[i], op, name, optional);
}

TensorArg tensor_value(napi_env env, napi_value v, const char* op, const char* name, bool optional) {
  TensorArg t;
  t.name = name;
  const Napi::Value jv(env, v);
  napi_valuetype vt;
  napi_typeof(env, v, &vt);
  if (vt == napi_undefined || vt == napi_null) {
    if (optional) return t;
    fail(ErrorCode::Arg, op, ": expected a Tensor for ", name, " but received ", js_type(jv));
  }
  if (vt != napi_object) fail(ErrorCode::Arg, op, ": expected a Tensor for ", name, " but received ", js_type(jv));
  // `_meta` is a Float64Array [dtype, device, ndim, shape...] made once per Tensor.
  napi_value meta, data;
  bool is_ta = false;
  if (napi_get_named_property(env, v, "_meta", &meta) != napi_ok || napi_is_typedarray(env, meta, &is_ta) != napi_ok || !is_ta)
    fail(ErrorCode::Arg, op, ": expected a Tensor for ", name, " but received an ", js_type(jv), " that is not one");
  napi_typedarray_type mt;
  size_t mlen = 0;
  void* mp = nullptr;
  napi_get_typedarray_info(env, meta, &mt, &mlen, &mp, nullptr, nullptr);
  const double* md = static_cast<const double*>(mp);
  if (mt != napi_float64_array || mlen < 3 || mlen != 3 + size_t(md[2]))
    fail(ErrorCode::Arg, op, ": ", name, " has malformed tensor metadata");
  napi_get_named_property(env, v, "_data", &data);
  napi_valuetype dt;
  napi_typeof(env, data, &dt);
  if (dt == napi_null || dt == napi_undefined) fail(ErrorCode::Disposed, op, ": ", name, " was disposed");
  int code = int(md[0]);
  if (code < 0 || code >= kNumDTypes || md[0] != code) fail(ErrorCode::DType, op, ": ", name, " has an unknown dtype code ", md[0]);
  t.dtype = DType(code);
  int devc = int(md[1]);
  if (devc != int(Device::CPU) && devc != int(Device::CUDA)) fail(ErrorCode::Device, op, ": ", name, " has an unknown device");
  t.device = Device(devc);
  size_t nd = size_t(md[2]);
  if (nd > size_t(kMaxDims)) fail(ErrorCode::Shape, op, ": ", name, " has ", nd, " dims, at most ", kMaxDims, " are supported");
  t.ndim = int(nd);
  int64_t numel = 1;
  for (size_t k = 0; k < nd; ++k) {
    double s = md[3 + k];
    if (!(s >= 0) || s != std::floor(s) || s > 9007199254740991.0) fail(ErrorCode::Shape, op, ": ", name, " has an invalid shape");
    t.shape[k] = int64_t(s);
    numel *= t.shape[k];
  }
  t.numel = numel;
  if (t.device == Device::CUDA) {
    device_require(op);
    DeviceRef* ref = device_ref(env, data);
    if (!ref) fail(ErrorCode::Arg, op, ": ", name, " is a CUDA tensor without a device buffer");
    if (!*ref) fail(ErrorCode::Disposed, op, ": ", name, " was disposed");
    if ((*ref)->bytes < numel * dtype_size(t.dtype))
      fail(ErrorCode::Arg, op, ": ", name, " data does not match its dtype ", dtype_name(t.dtype), " and shape ", t.shape_str());
    t.data = (*ref)->ptr;
    t.holder = data;
    t.present = true;
    return t;
  }
  if (napi_is_typedarray(env, data, &is_ta) != napi_ok || !is_ta) fail(ErrorCode::Arg, op, ": ", name, " has no typed-array data");
  napi_typedarray_type tt;
  size_t len = 0;
  void* p = nullptr;
  napi_get_typedarray_info(env, data, &tt, &len, &p, nullptr, nullptr);
  int64_t esize = (tt == napi_float32_array || tt == napi_int32_array || tt == napi_uint32_array) ? 4
                  : (tt == napi_uint16_array || tt == napi_int16_array) ? 2
                  : (tt == napi_int8_array || tt == napi_uint8_array || tt == napi_uint8_clamped_array) ? 1 : 8;
  if (esize != dtype_size(t.dtype) || int64_t(len) != numel)
    fail(ErrorCode::Arg, op, ": ", name, " data does not match its dtype ", dtype_name(t.dtype), " and shape ", t.shape_str());
  t.data = p;
  t.holder = data;
  t.present = true;
  return t;
}

namespace {
constexpr napi_type_tag kDeviceBufferTag = {0x5eaf5e0dcafe1234ull, 0x9d2c5680a1b2c3d4ull};
}

Napi::Value device_buffer_new(Napi::Env env, int64_t bytes, const char* op) {
  auto* ref = new DeviceRef(std::make_shared<DeviceBlock>());
  try {
    (*ref)->ptr = device_alloc(bytes, op);
    (*ref)->bytes = bytes;
  } catch (...) {
    delete ref;
    throw;
  }
  auto ext = Napi::External<DeviceRef>::New(env, ref, [](Napi::Env, DeviceRef* r) { delete r; });
  ext.TypeTag(&kDeviceBufferTag);
  return ext;
}

DeviceRef* device_ref(napi_env env, napi_value v) {
  napi_valuetype vt;
  if (napi_typeof(env, v, &vt) != napi_ok || vt != napi_external) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, v, &kDeviceBufferTag, &tagged) != napi_ok || !tagged) return nullptr;
  void* p = nullptr;
  napi_get_value_external(env, v, &p);
  return static_cast<DeviceRef*>(p);
}

IndexArg::IndexArg(Device device, std::vector<int32_t> host, const char* op) : host_(std::move(host)) {
  if (device == Device::CPU || host_.empty()) return;
  const int64_t bytes = int64_t(host_.size()) * 4;
  dev_.ptr = device_alloc(bytes, op);
  dev_.bytes = bytes;
  device_copy(dev_.ptr, host_.data(), bytes, true, op);
}

void check_device_clips(const char* op, const TensorArg& clip) {
  if (!clip.present || clip.device == Device::CPU) return;
  const std::vector<float> v = host_copy(clip.device, static_cast<const float*>(clip.data), clip.numel, op);
  for (size_t c = 0; c < v.size(); ++c)
    if (!(v[c] > 0.0f && v[c] <= 3.4028234663852886e38f))
      fail(ErrorCode::Arg, op, ": expected ", clip.name, "[", c, "] to be finite and > 0 but received ", v[c]);
}

double number_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name, double lo, double hi) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) fail(ErrorCode::Arg, op, ": expected a number for ", name, " but received ", js_type(v));
  double x = v.As<Napi::Number>().DoubleValue();
  if (!(x >= lo && x <= hi)) fail(ErrorCode::Arg, op, ": expected ", name, " in [", lo, ", ", hi, "] but received ", x);
  return x;
}

bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) fail(ErrorCode::Arg, op, ": expected a boolean for ", name, " but received ", js_type(v));
  return v.As<Napi::Boolean>().Value();
}

uint64_t seed_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) fail(ErrorCode::Arg, op, ": expected ", name, " in [0, 2^64) but received a BigInt outside it");
    return s;
  }
  double x = number_arg(info, i, op, name, 0, 9007199254740991.0);
  if (x != std::floor(x)) fail(ErrorCode::Arg, op, ": expected an integer ", name, " but received ", x);
  return uint64_t(x);
}

void check_device(const char* op, std::initializer_list<const TensorArg*> ts) {
  const TensorArg* first = nullptr;
  for (const TensorArg* t : ts) {
    if (!t->present) continue;
    if (!first) { first = t; continue; }
    if (t->device != first->device)
      fail(ErrorCode::Device, op, ": expected ", t->name, " on device '", device_name(first->device), "' (like ",
           first->name, ") but received '", device_name(t->device), "'");
  }
}

void check_dtype(const char* op, const TensorArg& t, DType want) {
  if (t.present && t.dtype != want)
    fail(ErrorCode::DType, op, ": expected ", dtype_name(want), " tensor for ", t.name, " but received ", dtype_name(t.dtype));
}

void check_float(const char* op, const TensorArg& t) {
  if (t.present && !is_float(t.dtype))
    fail(ErrorCode::DType, op, ": expected a f32, f16 or bf16 tensor for ", t.name, " but received ", dtype_name(t.dtype));
}

void check_same_dtype(const char* op, const TensorArg& t, const TensorArg& ref) {
  if (t.present && t.dtype != ref.dtype)
    fail(ErrorCode::DType, op, ": expected ", dtype_name(ref.dtype), " tensor for ", t.name, " (the dtype of ", ref.name,
         ") but received ", dtype_name(t.dtype));
}

void check_shape(const char* op, const TensorArg& t, const int64_t* want, int n) {
  if (!t.present) return;
  bool ok = t.ndim == n;
  for (int i = 0; ok && i < n; ++i) ok = t.shape[i] == want[i];
  if (!ok) fail(ErrorCode::Shape, op, ": expected ", t.name, " of shape ", shape_str(want, n), " but received ", t.shape_str());
}

void check_same_shape(const char* op, const TensorArg& t, const TensorArg& ref) {
  if (!t.present) return;
  bool ok = t.ndim == ref.ndim;
  for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[i] == ref.shape[i];
  if (!ok)
    fail(ErrorCode::Shape, op, ": expected ", t.name, " of shape ", ref.shape_str(), " (the shape of ", ref.name,
         ") but received ", t.shape_str());
}

void check_vector(const char* op, const TensorArg& t, int64_t len) { check_shape(op, t, &len, 1); }

void check_min_dims(const char* op, const TensorArg& t, int n) {
  if (t.present && t.ndim < n)
    fail(ErrorCode::Shape, op, ": expected ", t.name, " with at least ", n, " dims but received shape ", t.shape_str());
}

namespace {

class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, std::function<void()> work)
      : Napi::AsyncWorker(env, "seqfuse"), work_(std::move(work)), deferred_(Napi::Promise::Deferred::New(env)) {}
  void pin(napi_value v) {
    pins_.push_back(Napi::Persistent(Napi::Value(Env(), v).As<Napi::Object>()));
    if (DeviceRef* ref = device_ref(Env(), v)) blocks_.push_back(*ref);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      apply_num_threads();
      work_();
      // the promise resolves when a CUDA op's kernels are done (and their errors seen)
      if (!blocks_.empty()) device_synchronize("async op");
    } catch (const Error& e) {
      code_ = e.code;
      SetError(e.message);
    } catch (const std::bad_alloc&) {
      code_ = ErrorCode::OOM;
      SetError("out of memory");
    } catch (const std::exception& e) {
      code_ = ErrorCode::Backend;
      SetError(std::string("internal error: ") + e.what());
    } catch (...) {
      code_ = ErrorCode::Backend;
      SetError("internal error");
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), code_, e.Message()).Value());
  }

 private:
  std::function<void()> work_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> pins_;
  std::vector<DeviceRef> blocks_;  // CUDA memory of the pinned tensors, kept even if JS disposes them
  ErrorCode code_ = ErrorCode::Backend;
};

}  // namespace

Napi::Value run_op(const Napi::CallbackInfo& info, bool async, std::initializer_list<const TensorArg*> pins,
                   std::function<void()> work) {
  std::vector<napi_value> holders;
  if (async)
    for (const TensorArg* t : pins)
      if (t->present && t->holder) holders.push_back(t->holder);
  return run_op(info, async, holders, std::move(work));
}

Napi::Value run_op(const Napi::CallbackInfo& info, bool async, const std::vector<napi_value>& pins, std::function<void()> work) {
  Napi::Env env = info.Env();
  if (!async) {
    apply_num_threads();
    work();
    return env.Undefined();
  }
  OpWorker* w = new OpWorker(env, std::move(work));
  for (napi_value v : pins) w->pin(v);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace seqfuse::napi

// native/napi/tensor.cc — bindings behind Tensor.to (cast, copy), Tensor.randn / rand (random),
// Tensor.zeros (zero), and the CUDA runtime: device buffers, status, memory, synchronize.
#include <cstring>
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

// copy(src, dst): the bytes of src into dst (same dtype and element count), any devices
static Napi::Value copy_js(const Napi::CallbackInfo& info) {
  const char* op = "Tensor.to";
  TensorArg s = tensor_arg(info, 0, op, "source"), d = tensor_arg(info, 1, op, "destination");
  check_same_dtype(op, d, s);
  if (s.numel != d.numel) fail(ErrorCode::Shape, op, ": destination has ", d.numel, " elements, source ", s.numel);
  const int64_t bytes = s.numel * dtype_size(s.dtype);
  if (s.device == Device::CPU && d.device == Device::CPU) {
    if (bytes) std::memmove(d.data, s.data, size_t(bytes));
  } else {
    device_copy(d.data, s.data, bytes, s.device == Device::CPU || d.device == Device::CPU, op);
  }
  return info.Env().Undefined();
}

// zero(t): every byte of t's data 0
static Napi::Value zero_js(const Napi::CallbackInfo& info) {
  const char* op = "Tensor.zeros";
  TensorArg t = tensor_arg(info, 0, op, "tensor");
  const int64_t bytes = t.numel * dtype_size(t.dtype);
  if (t.device == Device::CPU) {
    if (bytes) std::memset(t.data, 0, size_t(bytes));
  } else {
    device_zero(t.data, bytes, op);
  }
  return info.Env().Undefined();
}

// device_buffer(bytes, op) -> a device buffer of CUDA memory (see napi_util.h DeviceBlock)
static Napi::Value device_buffer_js(const Napi::CallbackInfo& info) {
  const std::string op = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string("Tensor");
  const double bytes = number_arg(info, 0, op.c_str(), "bytes", 0, 9007199254740991.0);
  return device_buffer_new(info.Env(), int64_t(bytes), op.c_str());
}

// device_buffer_release(buffer): gives its memory back now (ops in flight keep theirs until done)
static Napi::Value device_buffer_release_js(const Napi::CallbackInfo& info) {
  DeviceRef* ref = device_ref(info.Env(), info[0]);
  if (!ref) fail(ErrorCode::Arg, "device_buffer_release: expected a device buffer");
  ref->reset();
  return info.Env().Undefined();
}

static Napi::Value cuda_status_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaStatus s = cuda_status();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", s.available && s.lost.empty());
  o.Set("reason", s.available ? s.lost : s.reason);
  o.Set("device", s.device);
  o.Set("computeCapability", s.available ? std::to_string(s.cc_major) + "." + std::to_string(s.cc_minor) : std::string());
  o.Set("totalMemory", double(s.total_bytes));
  o.Set("emulated", s.emulated);
  return o;
}

static Napi::Value cuda_memory_js(const Napi::CallbackInfo& info) {
  const CudaMemoryStats m = device_memory();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("allocated", double(m.allocated));
  o.Set("reserved", double(m.reserved));
  return o;
}

static Napi::Value cuda_empty_cache_js(const Napi::CallbackInfo& info) {
  device_empty_cache();
  return info.Env().Undefined();
}

static Napi::Value cuda_synchronize_js(const Napi::CallbackInfo& info) {
  device_synchronize("cudaSynchronize");
  return info.Env().Undefined();
}

void register_tensor(Napi::Object exports) {
  SF_EXPORT(exports, "cast", cast_js);
  SF_EXPORT(exports, "random", random_js);
  SF_EXPORT(exports, "copy", copy_js);
  SF_EXPORT(exports, "zero", zero_js);
  SF_EXPORT(exports, "device_buffer", device_buffer_js);
  SF_EXPORT(exports, "device_buffer_release", device_buffer_release_js);
  SF_EXPORT(exports, "cuda_status", cuda_status_js);
  SF_EXPORT(exports, "cuda_memory", cuda_memory_js);
  SF_EXPORT(exports, "cuda_empty_cache", cuda_empty_cache_js);
  SF_EXPORT(exports, "cuda_synchronize", cuda_synchronize_js);
}

}  // namespace seqfuse::napi

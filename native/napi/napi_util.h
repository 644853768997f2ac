// native/napi/napi_util.h — the JS<->native boundary shared by every binding file:
// reading Tensor arguments (checked before any memory is touched), typed-error conversion,
// and running an op synchronously or on the libuv pool with its inputs pinned.
#pragma once
#include <napi.h>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace seqfuse {
struct WeightCache;
}

namespace seqfuse::napi {

constexpr int kMaxDims = 8;

// A borrowed view of a JS Tensor for the duration of one call.
struct TensorArg {
  const char* name = "";
  bool present = false;
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t numel = 0;
  napi_value holder = nullptr;  // the typed array (CPU) or device buffer (CUDA), pinned by async calls

  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t rows() const { return ndim == 0 ? 1 : numel / (shape[ndim - 1] ? shape[ndim - 1] : 1); }
  int64_t cols() const { return ndim == 0 ? 1 : shape[ndim - 1]; }
  std::string shape_str() const;
};

std::string shape_str(const int64_t* s, int n);

// Reads argument `i` as a Tensor. `optional` accepts undefined/null (present = false).
TensorArg tensor_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name,
                     bool optional = false);
// The same for any JS value (e.g. an element of an array argument).
TensorArg tensor_value(napi_env env, napi_value v, const char* op, const char* name, bool optional = false);

// A CUDA tensor's memory. JS holds it through a device buffer (an External made by
// device_buffer_new; released at once by device_buffer_release, the tensor's dispose); an async op
// holds it through its pins, so the block goes back to the allocator when the last holder lets go.
struct DeviceBlock {
  void* ptr = nullptr;
  int64_t bytes = 0;
  DeviceBlock() = default;
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  ~DeviceBlock() { device_free(ptr); }
};
using DeviceRef = std::shared_ptr<DeviceBlock>;
Napi::Value device_buffer_new(Napi::Env env, int64_t bytes, const char* op);
// The reference inside a device buffer (empty once released), or null when v is not one.
DeviceRef* device_ref(napi_env env, napi_value v);

// n values at p as a host vector: a copy, through the stream when `device` is CUDA.
template <class T>
std::vector<T> host_copy(Device device, const T* p, int64_t n, const char* op) {
  if (device == Device::CPU) return std::vector<T>(p, p + n);
  std::vector<T> v(size_t(n > 0 ? n : 0));
  device_copy(v.data(), p, n * int64_t(sizeof(T)), true, op);
  return v;
}
// Index data (ids, targets, kv lengths) an op reads on the host to range-check it, so it may be on
// the CPU or on the op's device (the kernels read the checked copy, IndexArg). Captured by the
// work of an async op and read when it runs.
struct IndexSource {
  const int32_t* data = nullptr;  // null: none given
  Device device = Device::CPU;
  int64_t n = 0;
  std::vector<int32_t> read(const char* op) const { return host_copy(device, data, n, op); }
};
inline IndexSource index_source(const TensorArg& t, int64_t n) {
  return t.present ? IndexSource{static_cast<const int32_t*>(t.data), t.device, n} : IndexSource{};
}
// A CUDA clip tensor's values checked on the host (finite and > 0), as the CPU kernels check
// theirs, so both devices reject the same input with ERR_ARG (CPU tensors: nothing to do here).
void check_device_clips(const char* op, const TensorArg& clip);
// Index values (ids, targets, lengths) checked on the host, where the op's kernels read them: the
// host vector on CPU, a device copy of it on CUDA (given back when this goes).
class IndexArg {
 public:
  IndexArg(Device device, std::vector<int32_t> host, const char* op);
  const int32_t* data() const {
    return host_.empty() ? nullptr : dev_.ptr ? static_cast<const int32_t*>(dev_.ptr) : host_.data();
  }

 private:
  std::vector<int32_t> host_;
  DeviceBlock dev_;
};

// A float tensor element at p (device memory when `device` is CUDA) read on the host.
inline float host_f32(Device device, const float* p, const char* op) { return host_copy(device, p, 1, op)[0]; }

// Numeric / boolean arguments with range checks (NaN is rejected).
double number_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name,
                  double lo, double hi);
bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name);
// A seed: a non-negative integer Number (< 2^53) or a BigInt (< 2^64).
uint64_t seed_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name);

// --- checks (all throw seqfuse::Error with the op and argument named) ---------------------
void check_device(const char* op, std::initializer_list<const TensorArg*> ts);
void check_dtype(const char* op, const TensorArg& t, DType want);
void check_float(const char* op, const TensorArg& t);
void check_same_dtype(const char* op, const TensorArg& t, const TensorArg& ref);
void check_shape(const char* op, const TensorArg& t, const int64_t* want, int n);
void check_same_shape(const char* op, const TensorArg& t, const TensorArg& ref);
void check_vector(const char* op, const TensorArg& t, int64_t len);  // shape [len]
void check_min_dims(const char* op, const TensorArg& t, int n);

// --- weight caches (napi/matmul.cc) -------------------------------------------------------
// A weight cache argument made by weight_cache_new (undefined/null: nullptr); the shared_ptr
// keeps it alive through an async call. weight_cache_report tells V8 its current bytes.
std::shared_ptr<WeightCache> weight_cache_value(const Napi::Value& v, const char* op);
void weight_cache_report(const Napi::Value& v);

// --- running -------------------------------------------------------------------------------
// Runs `work` now (sync) or on the libuv pool (async: returns a Promise); the tensors' typed
// arrays stay referenced until the work is done. `work` must not touch N-API.
Napi::Value run_op(const Napi::CallbackInfo& info, bool async, std::initializer_list<const TensorArg*> pins,
                   std::function<void()> work);
// The same with the objects to pin listed directly (typed arrays of tensor lists, output buffers).
Napi::Value run_op(const Napi::CallbackInfo& info, bool async, const std::vector<napi_value>& pins, std::function<void()> work);

// Converts any exception into a thrown JS SeqfuseError; the N-API entry points call their
// implementation through this, so no C++ exception ever reaches N-API.
Napi::Value guard(const Napi::CallbackInfo& info, Napi::Value (*impl)(const Napi::CallbackInfo&));
Napi::Error make_error(Napi::Env env, ErrorCode code, const std::string& message);

// Registers `fn` (a Napi::Value(const CallbackInfo&) function) under `name`, wrapped in guard.
#define SF_EXPORT(exports, name, fn)                                                            \
  (exports).Set(name, Napi::Function::New((exports).Env(), [](const Napi::CallbackInfo& info) {  \
    return ::seqfuse::napi::guard(info, fn);                                                    \
  }, name))

}  // namespace seqfuse::napi

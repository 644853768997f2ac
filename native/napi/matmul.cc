// native/napi/matmul.cc — bindings of gemm / linear (ops/matmul.h) and the weight cache handle.
// The cache lives in a Napi::External owned by the weight tensor's storage (lib/ops/matmul.ts).
// The External holds a shared_ptr, and each call holds another, so a cache the GC collects while
// an async call still runs is freed when that call ends. Its bytes are reported to V8 on the JS
// thread: after each sync call, and for async calls at the next call on that cache.
#include <limits>
#include <memory>
#include "napi/napi_util.h"
#include "ops/matmul.h"

namespace seqfuse::napi {

namespace {

struct CacheHandle {
  std::shared_ptr<WeightCache> cache{weight_cache_new(), weight_cache_free};
  int64_t reported = 0;  // bytes told to V8 so far
};

// Tags the Externals we create, so any other value passed as a cache is rejected, not cast.
constexpr napi_type_tag kCacheTag = {0x5f3c2a9e81d04b17ull, 0xa6e2d9c4b3f18e05ull};

constexpr double kMaxDim = double(std::numeric_limits<int32_t>::max());
constexpr double kMaxF32 = 3.4028234663852886e38;

void report_bytes(Napi::Env env, CacheHandle* h) {
  int64_t now = weight_cache_bytes(h->cache.get());
  if (now != h->reported) {
    Napi::MemoryManagement::AdjustExternalMemory(env, now - h->reported);
    h->reported = now;
  }
}

CacheHandle* cache_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Napi::Value v = info[i];
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsExternal() || !v.As<Napi::External<CacheHandle>>().CheckTypeTag(&kCacheTag))
    fail(ErrorCode::Arg, op, ": expected a weight cache made by weight_cache_new");
  return v.As<Napi::External<CacheHandle>>().Data();
}

void check_dims(const char* op, int64_t m, int64_t n, int64_t k) {
  if (double(m) > kMaxDim || double(n) > kMaxDim || double(k) > kMaxDim)
    fail(ErrorCode::Shape, op, ": M = ", m, ", N = ", n, ", K = ", k, " exceeds the largest supported size (2^31 - 1)");
}

bool overlaps(const TensorArg& a, const TensorArg& b) {
  if (!a.present || !b.present || a.numel == 0 || b.numel == 0) return false;
  auto lo = [](const TensorArg& t) { return static_cast<const char*>(t.data); };
  auto hi = [&](const TensorArg& t) { return lo(t) + t.numel * dtype_size(t.dtype); };
  return lo(a) < hi(b) && lo(b) < hi(a);
}

// out must not share memory with `in`, except being exactly `in` when `same_ok`.
void check_no_overlap(const char* op, const TensorArg& out, const TensorArg& in, bool same_ok) {
  if (!overlaps(out, in)) return;
  if (same_ok && out.data == in.data && out.numel == in.numel) return;
  fail(ErrorCode::Arg, op, ": ", out.name, " shares memory with ", in.name,
       same_ok ? " without being the same tensor; pass a separate tensor or exactly " : "; pass a separate tensor for ",
       same_ok ? in.name : out.name);
}

}  // namespace

// gemm(a, b, c?, out, transA, transB, alpha, beta, async)
static Napi::Value gemm_js(const Napi::CallbackInfo& info) {
  const char* op = "gemm";
  TensorArg a = tensor_arg(info, 0, op, "a"), b = tensor_arg(info, 1, op, "b"), c = tensor_arg(info, 2, op, "c", true),
            out = tensor_arg(info, 3, op, "out");
  bool ta = bool_arg(info, 4, op, "transA"), tb = bool_arg(info, 5, op, "transB");
  double alpha = number_arg(info, 6, op, "alpha", -kMaxF32, kMaxF32);
  double beta = number_arg(info, 7, op, "beta", -kMaxF32, kMaxF32);
  bool async = bool_arg(info, 8, op, "async");
  check_device(op, {&a, &b, &c, &out});
  check_float(op, a);
  check_same_dtype(op, b, a);
  check_same_dtype(op, c, a);
  check_same_dtype(op, out, a);
  if (a.ndim != 2) fail(ErrorCode::Shape, op, ": expected a 2-D tensor for a but received shape ", a.shape_str());
  if (b.ndim != 2) fail(ErrorCode::Shape, op, ": expected a 2-D tensor for b but received shape ", b.shape_str());
  const int64_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const int64_t bk = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  if (bk != k)
    fail(ErrorCode::Shape, op, ": expected b of shape ", tb ? "[N, " : "[", k, tb ? "]" : ", N]", " (K = ",
         ta ? "rows of a, transA" : "columns of a", tb ? "; transB" : "", ") but received ", b.shape_str());
  const int64_t mn[2] = {m, n};
  check_shape(op, c, mn, 2);
  check_shape(op, out, mn, 2);
  check_dims(op, m, n, k);
  check_no_overlap(op, out, a, false);
  check_no_overlap(op, out, b, false);
  check_no_overlap(op, out, c, true);
  GemmArgs g;
  g.device = a.device; g.dtype = a.dtype; g.m = m; g.n = n; g.k = k; g.trans_a = ta; g.trans_b = tb;
  g.alpha = float(alpha); g.beta = float(beta); g.a = a.data; g.b = b.data; g.c = c.data; g.out = out.data;
  return run_op(info, async, {&a, &b, &c, &out}, [g] { gemm(g); });
}

// linear_fwd(x, w, bias?, residual?, y, act, cache?, async)
static Napi::Value linear_fwd_js(const Napi::CallbackInfo& info) {
  const char* op = "linear";
  TensorArg x = tensor_arg(info, 0, op, "x"), w = tensor_arg(info, 1, op, "w"), bias = tensor_arg(info, 2, op, "bias", true),
            res = tensor_arg(info, 3, op, "residual", true), y = tensor_arg(info, 4, op, "out");
  double act = number_arg(info, 5, op, "activation", 0, 4);
  if (act != double(int(act))) fail(ErrorCode::Arg, op, ": expected an integer activation code but received ", act);
  CacheHandle* cache = cache_arg(info, 6, op);
  bool async = bool_arg(info, 7, op, "async");
  check_device(op, {&x, &w, &bias, &res, &y});
  check_float(op, x);
  for (const TensorArg* t : {&w, &bias, &res, &y}) check_same_dtype(op, *t, x);
  check_min_dims(op, x, 1);
  const int64_t k = x.cols();
  if (w.ndim != 2 || w.shape[1] != k)
    fail(ErrorCode::Shape, op, ": expected w of shape [N, ", k, "] (in-features of x) but received ", w.shape_str());
  const int64_t n = w.shape[0];
  int64_t m = 1, yshape[kMaxDims];
  for (int i = 0; i + 1 < x.ndim; ++i) m *= yshape[i] = x.shape[i];
  yshape[x.ndim - 1] = n;
  check_vector(op, bias, n);
  check_shape(op, res, yshape, x.ndim);
  check_shape(op, y, yshape, x.ndim);
  check_dims(op, m, n, k);
  for (const TensorArg* t : {&x, &w, &bias}) check_no_overlap(op, y, *t, false);
  check_no_overlap(op, y, res, true);
  LinearArgs l;
  l.device = x.device; l.dtype = x.dtype; l.m = m; l.n = n; l.k = k; l.act = Activation(int(act));
  l.x = x.data; l.w = w.data; l.bias = bias.data; l.residual = res.data; l.y = y.data;
  std::shared_ptr<WeightCache> keep = cache ? cache->cache : nullptr;
  l.weight_cache = keep.get();
  if (cache) report_bytes(info.Env(), cache);
  Napi::Value r = run_op(info, async, {&x, &w, &bias, &res, &y}, [l, keep] { linear_fwd(l); });
  if (cache && !async) report_bytes(info.Env(), cache);
  return r;
}

// linear_i8(x, w, xClip, wClip, bias?, residual?, y, act, outClip, cache?, async, gemm): y's dtype
// picks the output (i32: the raw product, f32, or i8 requantized with outClip). xClip, outClip:
// numbers (ignored for i32); wClip: a number, or an f32 tensor [N] (per output channel). `gemm`:
// called as gemmInt8(a, b) (names in messages).
static Napi::Value linear_i8_js(const Napi::CallbackInfo& info) {
  const bool as_gemm = bool_arg(info, 11, "linearInt8", "gemm");
  const char* op = as_gemm ? "gemmInt8" : "linearInt8";
  TensorArg x = tensor_arg(info, 0, op, as_gemm ? "a" : "x"), w = tensor_arg(info, 1, op, as_gemm ? "b" : "w");
  TensorArg wclip;
  wclip.name = "wClip";
  LinearI8Args l;
  constexpr double kTiny = 1.401298464324817e-45;
  if (info[3].IsNumber()) {
    l.w_clip_value = float(number_arg(info, 3, op, "wClip", kTiny, kMaxF32));
  } else {
    wclip = tensor_arg(info, 3, op, "wClip");
    check_dtype(op, wclip, DType::F32);
  }
  TensorArg bias = tensor_arg(info, 4, op, "bias", true), res = tensor_arg(info, 5, op, "residual", true),
            y = tensor_arg(info, 6, op, "out");
  double act = number_arg(info, 7, op, "activation", 0, 4);
  if (act != double(int(act))) fail(ErrorCode::Arg, op, ": expected an integer activation code but received ", act);
  CacheHandle* cache = cache_arg(info, 9, op);
  bool async = bool_arg(info, 10, op, "async");
  check_device(op, {&x, &w, &wclip, &bias, &res, &y});
  check_device_clips(op, wclip);
  check_dtype(op, x, DType::I8);
  check_dtype(op, w, DType::I8);
  if (y.dtype != DType::I32 && y.dtype != DType::F32 && y.dtype != DType::I8)
    fail(ErrorCode::DType, op, ": expected an i32, f32 or i8 tensor for out but received ", dtype_name(y.dtype));
  l.out = y.dtype;
  if (l.out != DType::I32) l.x_clip = float(number_arg(info, 2, op, "xClip", kTiny, kMaxF32));
  if (l.out == DType::I8) l.out_clip = float(number_arg(info, 8, op, "outClip", kTiny, kMaxF32));
  if (l.out == DType::I32 && (res.present || act != 0.0 || bias.present))
    fail(ErrorCode::Arg, op, ": bias, activation and residual need a float (f32 or i8) output, not the raw i32 product");
  check_dtype(op, bias, DType::F32);
  check_dtype(op, res, DType::F32);
  check_min_dims(op, x, 1);
  const int64_t k = x.cols();
  if (as_gemm && x.ndim != 2) fail(ErrorCode::Shape, op, ": expected a 2-D tensor for a but received shape ", x.shape_str());
  if (w.ndim != 2 || w.shape[1] != k)
    fail(ErrorCode::Shape, op, ": expected ", w.name, " of shape [N, ", k, "] (", as_gemm ? "columns of a" : "in-features of x",
         ") but received ", w.shape_str());
  if (k > kLinearI8MaxK)
    fail(ErrorCode::Shape, op, ": K = ", k, " exceeds the largest supported in-features of the int8 product (", kLinearI8MaxK, ")");
  const int64_t n = w.shape[0];
  int64_t m = 1, yshape[kMaxDims];
  for (int i = 0; i + 1 < x.ndim; ++i) m *= yshape[i] = x.shape[i];
  yshape[x.ndim - 1] = n;
  if (wclip.present) check_vector(op, wclip, n);
  check_vector(op, bias, n);
  check_shape(op, res, yshape, x.ndim);
  check_shape(op, y, yshape, x.ndim);
  check_dims(op, m, n, k);
  for (const TensorArg* t : {&x, &w, &wclip, &bias}) check_no_overlap(op, y, *t, false);
  check_no_overlap(op, y, res, l.out == DType::F32);
  l.device = x.device; l.m = m; l.n = n; l.k = k; l.act = Activation(int(act));
  l.x = static_cast<const int8_t*>(x.data); l.w = static_cast<const int8_t*>(w.data);
  l.w_clip = static_cast<const float*>(wclip.data);
  l.bias = static_cast<const float*>(bias.data); l.residual = static_cast<const float*>(res.data); l.y = y.data;
  std::shared_ptr<WeightCache> keep = cache ? cache->cache : nullptr;
  l.weight_cache = keep.get();
  if (cache) report_bytes(info.Env(), cache);
  Napi::Value r = run_op(info, async, {&x, &w, &wclip, &bias, &res, &y}, [l, keep] { linear_i8(l); });
  if (cache && !async) report_bytes(info.Env(), cache);
  return r;
}

std::shared_ptr<WeightCache> weight_cache_value(const Napi::Value& v, const char* op) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsExternal() || !v.As<Napi::External<CacheHandle>>().CheckTypeTag(&kCacheTag))
    fail(ErrorCode::Arg, op, ": expected a weight cache made by weight_cache_new");
  return v.As<Napi::External<CacheHandle>>().Data()->cache;
}

void weight_cache_report(const Napi::Value& v) {
  if (v.IsExternal() && v.As<Napi::External<CacheHandle>>().CheckTypeTag(&kCacheTag))
    report_bytes(v.Env(), v.As<Napi::External<CacheHandle>>().Data());
}

// weight_cache_new() -> an External owning a WeightCache, freed by the GC
static Napi::Value weight_cache_new_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto ext = Napi::External<CacheHandle>::New(env, new CacheHandle(), [](Napi::Env e, CacheHandle* h) {
    if (h->reported) Napi::MemoryManagement::AdjustExternalMemory(e, -h->reported);
    delete h;
  });
  ext.TypeTag(&kCacheTag);
  return ext;
}

// weight_cache_bytes(cache) -> bytes of reordered weights it holds (also reports them to V8)
static Napi::Value weight_cache_bytes_js(const Napi::CallbackInfo& info) {
  CacheHandle* h = cache_arg(info, 0, "weight_cache_bytes");
  if (!h) fail(ErrorCode::Arg, "weight_cache_bytes: expected a weight cache made by weight_cache_new");
  report_bytes(info.Env(), h);
  return Napi::Number::New(info.Env(), double(h->reported));
}

// weight_cache_clear(cache): drops the reordered weights now (their tensor was disposed or its
// data changed) instead of when the GC gets to the External; calls in flight keep their copy.
static Napi::Value weight_cache_clear_js(const Napi::CallbackInfo& info) {
  CacheHandle* h = cache_arg(info, 0, "weight_cache_clear");
  if (!h) fail(ErrorCode::Arg, "weight_cache_clear: expected a weight cache made by weight_cache_new");
  h->cache.reset(weight_cache_new(), weight_cache_free);
  report_bytes(info.Env(), h);
  return info.Env().Undefined();
}

void register_matmul(Napi::Object exports) {
  SF_EXPORT(exports, "weight_cache_clear", weight_cache_clear_js);
  SF_EXPORT(exports, "gemm", gemm_js);
  SF_EXPORT(exports, "linear_fwd", linear_fwd_js);
  SF_EXPORT(exports, "linear_i8", linear_i8_js);
  SF_EXPORT(exports, "weight_cache_new", weight_cache_new_js);
  SF_EXPORT(exports, "weight_cache_bytes", weight_cache_bytes_js);
}

}  // namespace seqfuse::napi

// native/napi/attention.cc — bindings of fusedAttention / fusedAttentionBackward (ops/attention.h).
// kvLengths are data, not shape: like embedding's ids they are copied and range-checked on the
// thread that runs the op, right before the kernel, which reads only the checked copy.
#include <vector>
#include "napi/napi_util.h"
#include "ops/attention.h"

namespace seqfuse::napi {

namespace {

// The tensors and options shared by forward and backward, checked; fills a's shape fields.
struct Common {
  TensorArg q, k, v, kvlen, bias;
};

void check_common(const char* op, Common& c, AttentionArgs& a) {
  check_float(op, c.q);
  check_same_dtype(op, c.k, c.q);
  check_same_dtype(op, c.v, c.q);
  for (const TensorArg* t : {&c.q, &c.k, &c.v})
    if (t->ndim != 4)
      fail(ErrorCode::Shape, op, ": expected ", t->name, " of shape [B, ", t == &c.q ? "H, Sq" : "Hkv, Sk", ", D] but received ",
           t->shape_str());
  a.B = c.q.shape[0]; a.H = c.q.shape[1]; a.Sq = c.q.shape[2]; a.D = c.q.shape[3];
  a.Hkv = c.k.shape[1]; a.Sk = c.k.shape[2];
  if (c.k.shape[0] != a.B || c.k.shape[3] != a.D)
    fail(ErrorCode::Shape, op, ": expected k of shape [", a.B, ", Hkv, Sk, ", a.D, "] (B and D of q ", c.q.shape_str(),
         ") but received ", c.k.shape_str());
  const int64_t kv[4] = {a.B, a.Hkv, a.Sk, a.D};
  check_shape(op, c.v, kv, 4);
  if (a.D < 1 || a.D > 256) fail(ErrorCode::Shape, op, ": expected head dim D in [1, 256] but received ", a.D);
  if (a.Hkv == 0 ? a.H != 0 : a.H % a.Hkv != 0)
    fail(ErrorCode::Shape, op, ": expected the query heads H = ", a.H, " to be a multiple of the key/value heads Hkv = ", a.Hkv);
  a.device = c.q.device; a.dtype = c.q.dtype;
  a.q = c.q.data; a.k = c.k.data; a.v = c.v.data;
  if (c.kvlen.present) {
    check_dtype(op, c.kvlen, DType::I32);
    check_vector(op, c.kvlen, a.B);
  }
  if (c.bias.present) {
    check_dtype(op, c.bias, DType::F32);
    const int64_t full[4] = {a.B, a.H, a.Sq, a.Sk};
    const int shift = 4 - c.bias.ndim;
    bool ok = shift >= 0;
    for (int d = 0; ok && d < c.bias.ndim; ++d) ok = c.bias.shape[d] == 1 || c.bias.shape[d] == full[d + shift];
    if (!ok)
      fail(ErrorCode::Shape, op, ": expected attnBias broadcastable to [B, H, Sq, Sk] = ", shape_str(full, 4),
           " (each dim equal or 1, aligned at the end) but received ", c.bias.shape_str());
    int64_t stride = 1;
    for (int d = 3; d >= 0; --d) {
      const int64_t len = d >= shift ? c.bias.shape[d - shift] : 1;
      a.bias_stride[d] = len == 1 ? 0 : stride;
      stride *= len;
    }
    a.bias = static_cast<const float*>(c.bias.data);
  }
}

// A checked copy of kvLengths (on a's device): every value in [0, Sk].
IndexArg checked_lengths(const char* op, const AttentionArgs& a, const IndexSource& len) {
  std::vector<int32_t> v = len.read(op);
  for (int64_t i = 0; i < a.B; ++i)
    if (v[size_t(i)] < 0 || v[size_t(i)] > a.Sk)
      fail(ErrorCode::Arg, op, ": kvLengths[", i, "] = ", v[size_t(i)], " is out of range [0, Sk = ", a.Sk, "]");
  return IndexArg(a.device, std::move(v), op);
}

// Runs fn(a) with a.kv_lengths pointing at a checked copy (on the thread that runs the op).
template <class Fn>
Napi::Value run_attention(const Napi::CallbackInfo& info, const char* op, bool async, std::initializer_list<const TensorArg*> pins,
                          const AttentionArgs& args, const IndexSource& lengths_js, Fn fn) {
  return run_op(info, async, pins, [args, lengths_js, op, fn] {
    AttentionArgs a = args;
    const IndexArg lengths = lengths_js.data ? checked_lengths(op, a, lengths_js) : IndexArg(a.device, {}, op);
    a.kv_lengths = lengths.data();
    fn(a);
  });
}

}  // namespace

// attention_fwd(q, k, v, kvLengths?, attnBias?, out, lse?, scale, causal, dropout, seed, async)
static Napi::Value attention_fwd_js(const Napi::CallbackInfo& info) {
  const char* op = "fusedAttention";
  Common c{tensor_arg(info, 0, op, "q"), tensor_arg(info, 1, op, "k"), tensor_arg(info, 2, op, "v"),
           tensor_arg(info, 3, op, "kvLengths", true), tensor_arg(info, 4, op, "attnBias", true)};
  TensorArg out = tensor_arg(info, 5, op, "out"), lse = tensor_arg(info, 6, op, "lse", true);
  AttentionArgs a;
  a.scale = float(number_arg(info, 7, op, "scale", -3.4e38, 3.4e38));
  a.causal = bool_arg(info, 8, op, "causal");
  a.dropout = float(number_arg(info, 9, op, "dropout", 0, 1));
  a.seed = seed_arg(info, 10, op, "seed");
  bool async = bool_arg(info, 11, op, "async");
  check_device(op, {&c.q, &c.k, &c.v, &c.bias, &out, &lse});  // kvLengths: on either device (IndexSource)
  check_common(op, c, a);
  check_same_dtype(op, out, c.q);
  check_same_shape(op, out, c.q);
  if (lse.present) {
    check_dtype(op, lse, DType::F32);
    const int64_t want[3] = {a.B, a.H, a.Sq};
    check_shape(op, lse, want, 3);
  }
  a.out = out.data;
  a.lse = static_cast<float*>(lse.data);
  const IndexSource len = index_source(c.kvlen, a.B);
  return run_attention(info, op, async, {&c.q, &c.k, &c.v, &c.kvlen, &c.bias, &out, &lse}, a, len,
                       [](const AttentionArgs& x) { attention_fwd(x); });
}

// attention_bwd(dout, q, k, v, out, lse, kvLengths?, attnBias?, dq, dk, dv, scale, causal, dropout, seed, async)
static Napi::Value attention_bwd_js(const Napi::CallbackInfo& info) {
  const char* op = "fusedAttentionBackward";
  TensorArg dout = tensor_arg(info, 0, op, "dOut");
  Common c{tensor_arg(info, 1, op, "q"), tensor_arg(info, 2, op, "k"), tensor_arg(info, 3, op, "v"),
           tensor_arg(info, 6, op, "kvLengths", true), tensor_arg(info, 7, op, "attnBias", true)};
  TensorArg out = tensor_arg(info, 4, op, "out"), lse = tensor_arg(info, 5, op, "lse");
  TensorArg dq = tensor_arg(info, 8, op, "dq"), dk = tensor_arg(info, 9, op, "dk"), dv = tensor_arg(info, 10, op, "dv");
  AttentionArgs a;
  a.scale = float(number_arg(info, 11, op, "scale", -3.4e38, 3.4e38));
  a.causal = bool_arg(info, 12, op, "causal");
  a.dropout = float(number_arg(info, 13, op, "dropout", 0, 1));
  a.seed = seed_arg(info, 14, op, "seed");
  bool async = bool_arg(info, 15, op, "async");
  check_device(op, {&dout, &c.q, &c.k, &c.v, &out, &lse, &c.bias, &dq, &dk, &dv});  // kvLengths: on either device
  check_common(op, c, a);
  for (const TensorArg* t : {&dout, &out, &dq}) {
    check_same_dtype(op, *t, c.q);
    check_same_shape(op, *t, c.q);
  }
  for (const TensorArg* t : {&dk, &dv}) {
    check_same_dtype(op, *t, c.q);
    check_same_shape(op, *t, c.k);
  }
  check_dtype(op, lse, DType::F32);
  const int64_t want[3] = {a.B, a.H, a.Sq};
  check_shape(op, lse, want, 3);
  a.dout = dout.data; a.out = out.data; a.lse = static_cast<float*>(lse.data);
  a.dq = dq.data; a.dk = dk.data; a.dv = dv.data;
  const IndexSource len = index_source(c.kvlen, a.B);
  return run_attention(info, op, async, {&dout, &c.q, &c.k, &c.v, &out, &lse, &c.kvlen, &c.bias, &dq, &dk, &dv}, a, len,
                       [](const AttentionArgs& x) { attention_bwd(x); });
}

void register_attention(Napi::Object exports) {
  SF_EXPORT(exports, "attention_fwd", attention_fwd_js);
  SF_EXPORT(exports, "attention_bwd", attention_bwd_js);
}

}  // namespace seqfuse::napi

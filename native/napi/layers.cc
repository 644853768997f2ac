// native/napi/layers.cc — bindings of the fused Transformer layer (layers/transformer_layer.h).
//   layer_param_shapes(config, className) -> the parameters' shapes (null where the config has none)
//   layer_state_new() -> an External owning a LayerState (its bytes reported to V8 after calls)
//   layer_state_release(state) frees its buffers now (dispose)
//   layer_fwd(state, config, params, caches, x, y, lengths?, enc?, encLengths?, train, seed, async, className, clips, calibrate,
//             qweights, wclips, hist?)   calibrate: 0 off, 1 max, 2 histogram (hist: Float64Array kLayerClips * bins)
//   layer_bwd(state, config, params, grads, dy, dx, denc?, async, className, clips, clipGrads)
// config: Float64Array [hidden, heads, kvHeads, ffn, activation, preLn, rms, causal, cross, eps,
//   attnDropout, actDropout, hiddenDropout, rotaryDim, rotaryBase, quantWeights (0 none, 1 per tensor,
//   2 per channel), weightLevels, int8]; params, grads: arrays of kLayerParams tensors in LayerParam order
//   (null where the config has no such parameter); caches: the weights' caches; clips, clipGrads:
//   arrays of kLayerClips f32 [1] tensors or nulls in LayerClip order (QAT). int8 layers (forward
//   only): params have no weights (null); layer_fwd's qweights, wclips: per LayerParam, the int8
//   weights [N, K] and their clips f32 [N] at the weight slots (null elsewhere).
// The TS layer runs one call at a time per state (lib/layers), so a state is never shared by two
// running calls; the lengths are checked and copied here, on the JS thread.
#include <array>
#include <cmath>
#include <string>
#include "layers/transformer_layer.h"
#include "napi/napi_util.h"

namespace seqfuse::napi {

namespace {

struct LayerHandle {
  std::shared_ptr<LayerState> st = std::make_shared<LayerState>();
  int64_t reported = 0;
  std::vector<double> config;  // the last forward's config and dtype: its backward must match
};

constexpr napi_type_tag kLayerTag = {0x2b7e151628aed2a6ull, 0xabf7158809cf4f3cull};
constexpr int kConfigLen = 18;
const char* const kParamNames[kLayerParams] = {
    "attn.qkv.weight", "attn.qkv.bias", "attn.out.weight", "attn.out.bias", "attn.norm.weight", "attn.norm.bias",
    "cross.q.weight", "cross.q.bias", "cross.kv.weight", "cross.kv.bias", "cross.out.weight", "cross.out.bias",
    "cross.norm.weight", "cross.norm.bias", "ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight", "ffn.fc2.bias",
    "ffn.norm.weight", "ffn.norm.bias"};

LayerHandle* state_arg(const Napi::CallbackInfo& info, const char* op) {
  Napi::Value v = info[0];
  if (!v.IsExternal() || !v.As<Napi::External<LayerHandle>>().CheckTypeTag(&kLayerTag))
    fail(ErrorCode::Arg, op, ": expected a layer state made by layer_state_new");
  return v.As<Napi::External<LayerHandle>>().Data();
}

void report(Napi::Env env, LayerHandle* h) {
  const int64_t now = h->st->bytes();
  if (now != h->reported) {
    Napi::MemoryManagement::AdjustExternalMemory(env, now - h->reported);
    h->reported = now;
  }
}

bool flag(double v) { return v != 0; }

// "<class>.<method>" for messages: the class name the TS layer passes (argument i), so errors
// name what the user called.
std::string op_name(const Napi::CallbackInfo& info, size_t i, const char* method) {
  std::string cls = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "TransformerLayer";
  return method ? cls + "." + method : cls;
}

TransformerLayerConfig config_arg(const Napi::CallbackInfo& info, size_t i, const char* op, std::vector<double>* raw) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      v.As<Napi::TypedArray>().ElementLength() != kConfigLen)
    fail(ErrorCode::Arg, op, ": expected the layer config as a Float64Array of ", kConfigLen, " numbers");
  const double* d = v.As<Napi::Float64Array>().Data();
  if (raw) raw->assign(d, d + kConfigLen);
  auto count = [&](int k, const char* name, double lo) {
    if (!(d[k] >= lo && d[k] <= 1 << 24) || d[k] != std::floor(d[k]))
      fail(ErrorCode::Arg, op, ": expected ", name, " to be an integer in [", lo, ", 2^24] but received ", d[k]);
    return int64_t(d[k]);
  };
  auto prob = [&](int k, const char* name) {
    if (!(d[k] >= 0 && d[k] <= 1)) fail(ErrorCode::Arg, op, ": expected ", name, " in [0, 1] but received ", d[k]);
    return float(d[k]);
  };
  TransformerLayerConfig c;
  c.hidden = count(0, "hiddenSize", 1);
  c.heads = count(1, "numHeads", 1);
  c.kv_heads = count(2, "numKvHeads", 1);
  c.ffn = count(3, "ffnSize", 1);
  if (c.hidden % c.heads)
    fail(ErrorCode::Arg, op, ": expected hiddenSize (", c.hidden, ") to be a multiple of numHeads (", c.heads, ")");
  if (c.heads % c.kv_heads)
    fail(ErrorCode::Arg, op, ": expected numHeads (", c.heads, ") to be a multiple of numKvHeads (", c.kv_heads, ")");
  if (c.hidden / c.heads > 256)
    fail(ErrorCode::Unsupported, op, ": head dim hiddenSize / numHeads = ", c.hidden / c.heads, " exceeds 256");
  const int64_t act = count(4, "activation", 0);
  if (act > 4) fail(ErrorCode::Arg, op, ": unknown activation code ", act);
  c.act = Activation(act);
  c.pre_ln = flag(d[5]); c.rms = flag(d[6]); c.causal = flag(d[7]); c.cross = flag(d[8]);
  if (!(d[9] > 0 && d[9] < 1)) fail(ErrorCode::Arg, op, ": expected layerNormEps in (0, 1) but received ", d[9]);
  c.eps = float(d[9]);
  c.attn_dropout = prob(10, "attnDropout");
  c.act_dropout = prob(11, "activationDropout");
  c.hidden_dropout = prob(12, "hiddenDropout");
  c.rotary_dim = count(13, "rotaryDim", 0);
  if (c.rotary_dim % 2 || c.rotary_dim > c.hidden / c.heads)
    fail(ErrorCode::Arg, op, ": expected rotaryDim to be even and at most the head dim (", c.hidden / c.heads, ") but received ", c.rotary_dim);
  if (!(d[14] > 1 && d[14] < 1e12)) fail(ErrorCode::Arg, op, ": expected rotaryBase in (1, 1e12) but received ", d[14]);
  c.rotary_base = d[14];
  c.quant_weights = int(count(15, "quantWeights", 0));
  if (c.quant_weights > 2) fail(ErrorCode::Arg, op, ": unknown quantWeights code ", c.quant_weights);
  c.weight_levels = int(count(16, "weightLevels", 1));
  if (c.weight_levels > 127) fail(ErrorCode::Arg, op, ": expected weightLevels in [1, 127] but received ", c.weight_levels);
  c.int8 = flag(d[17]);
  return c;
}

// Reads an array of kLayerParams tensors (what = "params" or "grads"), checking each one's shape
// against the config and its dtype/device against `ref`.
std::vector<TensorArg> param_list(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what,
                                  const TransformerLayerConfig& c, const TensorArg& ref) {
  Napi::Value v = info[i];
  if (!v.IsArray() || v.As<Napi::Array>().Length() != kLayerParams)
    fail(ErrorCode::Arg, op, ": expected ", what, " to be an array of ", int(kLayerParams), " tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<TensorArg> out(kLayerParams);
  for (int p = 0; p < kLayerParams; ++p) {
    int64_t rows, cols;
    layer_param_shape(c, LayerParam(p), &rows, &cols);
    TensorArg& t = out[size_t(p)] = tensor_value(info.Env(), a.Get(uint32_t(p)), op, kParamNames[p], true);
    if (!rows || (c.int8 && cols)) {  // an int8 layer's weights come as qweights
      if (t.present) fail(ErrorCode::Arg, op, ": ", what, " has ", kParamNames[p], " but this layer's config has none");
      continue;
    }
    if (!t.present) fail(ErrorCode::Arg, op, ": ", what, " lacks ", kParamNames[p]);
    check_same_dtype(op, t, ref);
    check_device(op, {&t, &ref});
    const int64_t shape[2] = {rows, cols};
    check_shape(op, t, shape, cols ? 2 : 1);
  }
  return out;
}

const char* const kClipNames[kLayerClips] = {
    "attn.qkv.input_clip", "attn.qkv.output_clip", "attn.out.input_clip", "cross.q.input_clip", "cross.q.output_clip",
    "cross.kv.input_clip", "cross.kv.output_clip", "cross.out.input_clip", "ffn.fc1.input_clip", "ffn.fc2.input_clip"};

// Reads an array of kLayerClips entries (what = "clips" or "clipGrads"): null, or an f32 [1] tensor
// on ref's device; cross-attention clips only with cross. With `like`, present exactly where it is.
std::vector<TensorArg> clip_list(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what,
                                 const TransformerLayerConfig& c, const TensorArg& ref, const std::vector<TensorArg>* like) {
  Napi::Value v = info[i];
  if (!v.IsArray() || v.As<Napi::Array>().Length() != kLayerClips)
    fail(ErrorCode::Arg, op, ": expected ", what, " to be an array of ", int(kLayerClips), " clip tensors or nulls");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<TensorArg> out(kLayerClips);
  for (int k = 0; k < kLayerClips; ++k) {
    TensorArg& t = out[size_t(k)] = tensor_value(info.Env(), a.Get(uint32_t(k)), op, kClipNames[k], true);
    if (like && t.present != (*like)[size_t(k)].present)
      fail(ErrorCode::Arg, op, ": ", what, t.present ? " has " : " lacks ", kClipNames[k], t.present ? " but clips do not" : "");
    if (!t.present) continue;
    if (!c.cross && k >= kClipCrossQIn && k <= kClipCrossOutIn)
      fail(ErrorCode::Arg, op, ": ", what, " has ", kClipNames[k], " but this layer has no cross-attention");
    check_dtype(op, t, DType::F32);
    check_vector(op, t, 1);
    check_device(op, {&t, &ref});
  }
  return out;
}

// The values of the present clips (0 where absent), read once (from the device on CUDA). On CUDA
// they are checked here (finite and > 0), as the CPU ops check them where they use them.
std::array<float, kLayerClips> clip_values(const char* op, const std::vector<TensorArg>& clips) {
  std::array<float, kLayerClips> v{};
  for (int k = 0; k < kLayerClips; ++k) {
    const TensorArg& t = clips[size_t(k)];
    if (!t.present) continue;
    v[size_t(k)] = host_f32(t.device, static_cast<const float*>(t.data), op);
    if (t.device != Device::CPU && !(v[size_t(k)] > 0.0f && v[size_t(k)] <= 3.4028234663852886e38f))
      fail(ErrorCode::Arg, op, ": expected ", kClipNames[k], " to be finite and > 0 but received ", v[size_t(k)]);
  }
  return v;
}

// A checked copy of an i32 [B] lengths tensor, each value in [0, n].
std::vector<int32_t> lengths_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name, int64_t B,
                                 int64_t n) {
  TensorArg t = tensor_arg(info, i, op, name, true);
  if (!t.present) return {};
  check_dtype(op, t, DType::I32);
  check_vector(op, t, B);
  std::vector<int32_t> v = index_source(t, B).read(op);
  for (int64_t b = 0; b < B; ++b)
    if (v[size_t(b)] < 0 || v[size_t(b)] > n)
      fail(ErrorCode::Arg, op, ": ", name, "[", b, "] = ", v[size_t(b)], " is out of range [0, ", n, "]");
  return v;
}

// The typed arrays an async call must keep alive.
std::vector<napi_value> holders(std::initializer_list<const TensorArg*> ts, std::initializer_list<const std::vector<TensorArg>*> lists) {
  std::vector<napi_value> out;
  auto add = [&](const TensorArg& t) {
    if (t.present && t.holder) out.push_back(t.holder);
  };
  for (const TensorArg* t : ts) add(*t);
  for (const std::vector<TensorArg>* l : lists)
    for (const TensorArg& t : *l) add(t);
  return out;
}

void check_tokens(const char* op, const TensorArg& t, int64_t hidden) {
  if (t.ndim != 3 || t.shape[2] != hidden)
    fail(ErrorCode::Shape, op, ": expected ", t.name, " of shape [batch, seq, ", hidden, "] but received ", t.shape_str());
}

// An int8 layer's weights (argument i: qweights, i + 1: wclips, arrays of kLayerParams): at each
// weight slot of the config an i8 [N, K] tensor and an f32 [N] clip tensor, null elsewhere; every
// product's input clip must be present and all clips (values: clip_values) finite and > 0.
void int8_weights(const Napi::CallbackInfo& info, size_t i, const char* op, const TransformerLayerConfig& c, const TensorArg& ref,
                  const std::vector<TensorArg>& clips, const std::array<float, kLayerClips>& values, std::vector<TensorArg>* qw,
                  std::vector<TensorArg>* wc) {
  for (size_t j = 0; j < 2; ++j)
    if (!info[i + j].IsArray() || info[i + j].As<Napi::Array>().Length() != kLayerParams)
      fail(ErrorCode::Arg, op, ": expected ", j ? "wclips" : "qweights", " to be an array of ", int(kLayerParams), " entries");
  Napi::Array qa = info[i].As<Napi::Array>(), ca = info[i + 1].As<Napi::Array>();
  qw->assign(kLayerParams, TensorArg());
  wc->assign(kLayerParams, TensorArg());
  for (int p = 0; p < kLayerParams; ++p) {
    int64_t rows, cols;
    layer_param_shape(c, LayerParam(p), &rows, &cols);
    TensorArg& q = (*qw)[size_t(p)] = tensor_value(info.Env(), qa.Get(uint32_t(p)), op, kParamNames[p], true);
    TensorArg& k = (*wc)[size_t(p)] = tensor_value(info.Env(), ca.Get(uint32_t(p)), op, "weight clip", true);
    if (!rows || !cols) {
      if (q.present || k.present) fail(ErrorCode::Arg, op, ": qweights/wclips have an entry at ", kParamNames[p], ", which is not a weight");
      continue;
    }
    if (!q.present || !k.present) fail(ErrorCode::Arg, op, ": an int8 layer lacks the int8 weight or clip of ", kParamNames[p]);
    check_dtype(op, q, DType::I8);
    check_dtype(op, k, DType::F32);
    const int64_t shape[2] = {rows, cols};
    check_shape(op, q, shape, 2);
    check_vector(op, k, rows);
    check_device(op, {&q, &k, &ref});
  }
  const LayerClip inputs[] = {kClipQkvIn, kClipOutIn, kClipFc1In, kClipFc2In, kClipCrossQIn, kClipCrossKvIn, kClipCrossOutIn};
  for (LayerClip in : inputs) {
    if ((in == kClipCrossQIn || in == kClipCrossKvIn || in == kClipCrossOutIn) && !c.cross) continue;
    if (!clips[size_t(in)].present) fail(ErrorCode::Arg, op, ": an int8 layer needs every product's input clip; ", kClipNames[in], " is missing");
  }
  for (int k = 0; k < kLayerClips; ++k) {
    if (!clips[size_t(k)].present) continue;
    const float v = values[size_t(k)];
    if (!(v > 0.0f && v <= 3.4028234663852886e38f))
      fail(ErrorCode::Arg, op, ": expected ", kClipNames[k], " to be finite and > 0 but received ", v);
  }
}

// layer_param_shapes(config) -> per LayerParam: null (absent) or its shape ([rows, cols] or [rows])
Napi::Value layer_param_shapes_js(const Napi::CallbackInfo& info) {
  const std::string name = op_name(info, 1, nullptr);
  const TransformerLayerConfig c = config_arg(info, 0, name.c_str(), nullptr);
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env, kLayerParams);
  for (int p = 0; p < kLayerParams; ++p) {
    int64_t rows, cols;
    layer_param_shape(c, LayerParam(p), &rows, &cols);
    if (!rows) {
      out.Set(uint32_t(p), env.Null());
      continue;
    }
    Napi::Array s = Napi::Array::New(env, cols ? 2 : 1);
    s.Set(0u, Napi::Number::New(env, double(rows)));
    if (cols) s.Set(1u, Napi::Number::New(env, double(cols)));
    out.Set(uint32_t(p), s);
  }
  return out;
}

Napi::Value layer_state_new_js(const Napi::CallbackInfo& info) {
  auto ext = Napi::External<LayerHandle>::New(info.Env(), new LayerHandle(), [](Napi::Env e, LayerHandle* h) {
    if (h->reported) Napi::MemoryManagement::AdjustExternalMemory(e, -h->reported);
    delete h;
  });
  ext.TypeTag(&kLayerTag);
  return ext;
}

// layer_state_release(state): frees the buffers now (a running call keeps its own until it ends)
Napi::Value layer_state_release_js(const Napi::CallbackInfo& info) {
  LayerHandle* h = state_arg(info, "layer_state_release");
  h->st = std::make_shared<LayerState>();
  h->config.clear();
  report(info.Env(), h);
  return info.Env().Undefined();
}

Napi::Value layer_fwd_js(const Napi::CallbackInfo& info) {
  const std::string name = op_name(info, 12, "forward");
  const char* op = name.c_str();
  LayerHandle* h = state_arg(info, op);
  std::vector<double> raw;
  const TransformerLayerConfig cfg = config_arg(info, 1, op, &raw);
  TensorArg x = tensor_arg(info, 4, op, "x"), y = tensor_arg(info, 5, op, "out");
  check_float(op, x);
  if (cfg.int8) check_dtype(op, x, DType::F32);
  check_tokens(op, x, cfg.hidden);
  check_same_dtype(op, y, x);
  check_same_shape(op, y, x);
  std::vector<TensorArg> params = param_list(info, 2, op, "params", cfg, x);
  Napi::Value caches_v = info[3];
  if (!caches_v.IsArray() || caches_v.As<Napi::Array>().Length() != kLayerParams)
    fail(ErrorCode::Arg, op, ": expected caches to be an array of ", int(kLayerParams), " weight caches");
  std::vector<std::shared_ptr<WeightCache>> caches(kLayerParams);
  for (int p = 0; p < kLayerParams; ++p) caches[size_t(p)] = weight_cache_value(caches_v.As<Napi::Array>().Get(uint32_t(p)), op);
  const int64_t B = x.shape[0], S = x.shape[1];
  std::vector<int32_t> lengths = lengths_arg(info, 6, op, "lengths", B, S);
  TensorArg enc = tensor_arg(info, 7, op, "encoderOut", true);
  if (cfg.cross != enc.present)
    fail(ErrorCode::Arg, op, cfg.cross ? ": a layer with cross-attention needs encoderOut"
                                       : ": encoderOut given to a layer without cross-attention");
  int64_t Senc = 0;
  if (enc.present) {
    check_tokens(op, enc, cfg.hidden);
    check_same_dtype(op, enc, x);
    if (enc.shape[0] != B)
      fail(ErrorCode::Shape, op, ": expected encoderOut with batch ", B, " (that of x) but received ", enc.shape_str());
    Senc = enc.shape[1];
  }
  std::vector<int32_t> enc_lengths = lengths_arg(info, 8, op, "encoderLengths", B, Senc);
  if (!enc.present && !enc_lengths.empty()) fail(ErrorCode::Arg, op, ": encoderLengths given without encoderOut");
  const bool train = bool_arg(info, 9, op, "train");
  const uint64_t seed = seed_arg(info, 10, op, "seed");
  const bool async = bool_arg(info, 11, op, "async");
  check_device(op, {&x, &y, &enc});
  std::vector<TensorArg> clips = clip_list(info, 13, op, "clips", cfg, x, nullptr);
  const std::array<float, kLayerClips> clip_value = clip_values(op, clips);
  std::vector<TensorArg> qweights, wclips;
  if (cfg.int8) int8_weights(info, 15, op, cfg, x, clips, clip_value, &qweights, &wclips);
  std::vector<napi_value> pins = holders({&x, &y, &enc}, {&params, &clips, &qweights, &wclips});

  TransformerLayerParams w;
  for (int p = 0; p < kLayerParams; ++p) {
    w.p[p] = params[size_t(p)].data;
    w.cache[p] = caches[size_t(p)].get();
  }
  for (int k = 0; k < kLayerClips; ++k) w.clip[k] = static_cast<float*>(clips[size_t(k)].data);
  const double calib = number_arg(info, 14, op, "calibrate", 0, 2);
  if (calib != double(int(calib))) fail(ErrorCode::Arg, op, ": expected calibrate to be 0, 1 or 2 but received ", calib);
  const int calibrate = int(calib);
  if (calibrate && train) fail(ErrorCode::Arg, op, ": calibration runs the float forward in eval mode; train must be false");
  if (cfg.int8 && (train || calibrate)) fail(ErrorCode::Unsupported, op, ": an int8 layer runs inference only (train and calibrate must be false)");
  if (calibrate == 2) {  // histograms: a Float64Array of kLayerClips * bins, over [0, clip)
    Napi::Value hv = info[17];
    if (!hv.IsTypedArray() || hv.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        hv.As<Napi::TypedArray>().ElementLength() == 0 || hv.As<Napi::TypedArray>().ElementLength() % kLayerClips)
      fail(ErrorCode::Arg, op, ": histogram calibration needs a Float64Array of ", int(kLayerClips), " * bins counts");
    Napi::Float64Array ha = hv.As<Napi::Float64Array>();
    w.hist_bins = int64_t(ha.ElementLength()) / kLayerClips;
    pins.push_back(ha);
    for (int k = 0; k < kLayerClips; ++k) {
      if (!clips[size_t(k)].present) continue;
      w.hist[k] = ha.Data() + k * w.hist_bins;
      w.clip_value[k] = clip_value[size_t(k)];
    }
  }
  if (cfg.int8) {
    for (int p = 0; p < kLayerParams; ++p) {
      if (!qweights[size_t(p)].present) continue;
      w.qw[p] = static_cast<const int8_t*>(qweights[size_t(p)].data);
      w.wclip[p] = static_cast<const float*>(wclips[size_t(p)].data);
    }
    for (int k = 0; k < kLayerClips; ++k) w.clip_value[k] = clip_value[size_t(k)];
  }
  TransformerLayerConfig c = cfg;
  c.device = x.device;
  c.dtype = x.dtype;
  TransformerLayerCall call;
  call.B = B; call.S = S; call.Senc = Senc; call.x = x.data; call.y = y.data; call.enc = enc.data;
  call.train = train; call.seed = seed; call.calibrate = calibrate;
  std::shared_ptr<LayerState> st = h->st;
  raw.push_back(double(x.dtype));
  h->config = std::move(raw);
  report(info.Env(), h);
  Napi::Value r = run_op(info, async, pins, [c, w, call, st, caches, lengths = std::move(lengths),
                                             enc_lengths = std::move(enc_lengths)]() mutable {
    st->lengths = std::move(lengths);
    st->enc_lengths = std::move(enc_lengths);
    transformer_layer_fwd(c, w, call, *st);
  });
  if (!async) {
    report(info.Env(), h);
    for (int p = 0; p < kLayerParams; ++p) weight_cache_report(caches_v.As<Napi::Array>().Get(uint32_t(p)));
  }
  return r;
}

Napi::Value layer_bwd_js(const Napi::CallbackInfo& info) {
  const std::string name = op_name(info, 8, "backward");
  const char* op = name.c_str();
  LayerHandle* h = state_arg(info, op);
  std::vector<double> raw;
  const TransformerLayerConfig cfg = config_arg(info, 1, op, &raw);
  TensorArg dy = tensor_arg(info, 4, op, "dy"), dx = tensor_arg(info, 5, op, "dx"), denc = tensor_arg(info, 6, op, "dEncoderOut", true);
  const bool async = bool_arg(info, 7, op, "async");
  check_float(op, dy);
  check_tokens(op, dy, cfg.hidden);
  check_same_dtype(op, dx, dy);
  check_same_shape(op, dx, dy);
  if (cfg.int8) fail(ErrorCode::Unsupported, op, ": an int8 layer runs inference only (no backward)");
  const LayerState& s = *h->st;
  if (!s.has_forward) fail(ErrorCode::Arg, op, ": no forward to differentiate; call forward first");
  raw.push_back(double(dy.dtype));
  if (raw != h->config)
    fail(ErrorCode::Arg, op, ": the config or dtype differs from the last forward's (", dtype_name(DType(int(h->config.back()))),
         "); the backward must use the layer that ran the forward");
  if (dy.shape[0] != s.call.B || dy.shape[1] != s.call.S)
    fail(ErrorCode::Shape, op, ": expected dy of shape [", s.call.B, ", ", s.call.S, ", ", cfg.hidden,
         "] (that of the last forward's x) but received ", dy.shape_str());
  if (cfg.cross != denc.present)
    fail(ErrorCode::Arg, op, cfg.cross ? ": a layer with cross-attention needs dEncoderOut"
                                       : ": dEncoderOut given to a layer without cross-attention");
  if (denc.present) {
    const int64_t want[3] = {s.call.B, s.call.Senc, cfg.hidden};
    check_same_dtype(op, denc, dy);
    check_shape(op, denc, want, 3);
  }
  std::vector<TensorArg> params = param_list(info, 2, op, "params", cfg, dy);
  std::vector<TensorArg> grads = param_list(info, 3, op, "grads", cfg, dy);
  std::vector<TensorArg> clips = clip_list(info, 9, op, "clips", cfg, dy, nullptr);
  clip_values(op, clips);  // checks them on CUDA
  std::vector<TensorArg> clip_grads = clip_list(info, 10, op, "clipGrads", cfg, dy, &clips);
  check_device(op, {&dy, &dx, &denc});
  const std::vector<napi_value> pins = holders({&dy, &dx, &denc}, {&params, &grads, &clips, &clip_grads});
  TransformerLayerParams w;
  std::vector<void*> g(kLayerParams);
  std::vector<float*> cg(kLayerClips);
  for (int p = 0; p < kLayerParams; ++p) {
    w.p[p] = params[size_t(p)].data;
    g[size_t(p)] = grads[size_t(p)].data;
  }
  for (int k = 0; k < kLayerClips; ++k) {
    w.clip[k] = static_cast<float*>(clips[size_t(k)].data);
    cg[size_t(k)] = static_cast<float*>(clip_grads[size_t(k)].data);
  }
  TransformerLayerConfig c = cfg;
  c.device = dy.device;
  c.dtype = dy.dtype;
  std::shared_ptr<LayerState> st = h->st;
  const void* dyp = dy.data;
  void *dxp = dx.data, *dencp = denc.data;
  Napi::Value r = run_op(info, async, pins, [c, w, g, cg, dyp, dxp, dencp, st] {
    transformer_layer_bwd(c, w, g.data(), cg.data(), dyp, dxp, dencp, *st);
  });
  if (!async) report(info.Env(), h);
  return r;
}

}  // namespace

void register_layers(Napi::Object exports) {
  SF_EXPORT(exports, "layer_param_shapes", layer_param_shapes_js);
  SF_EXPORT(exports, "layer_state_new", layer_state_new_js);
  SF_EXPORT(exports, "layer_state_release", layer_state_release_js);
  SF_EXPORT(exports, "layer_fwd", layer_fwd_js);
  SF_EXPORT(exports, "layer_bwd", layer_bwd_js);
}

}  // namespace seqfuse::napi

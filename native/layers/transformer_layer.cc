// native/layers/transformer_layer.cc — forward and backward of the Transformer layer
// (layers/transformer_layer.h): a sequence of op calls (ops/*.h) on buffers of LayerState.
// T = B * S tokens, Te = B * Senc, Hd = hidden, F = ffn, D = head dim, nh / nkv heads.
#include "layers/transformer_layer.h"
#include <cmath>
#include <cstdlib>
#include "core/device.h"
#include "core/error.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "ops/dropout.h"
#include "ops/norm.h"
#include "ops/quant.h"
#include "ops/rope.h"
#include "ops/tensor_ops.h"

namespace seqfuse {

// --- parameters ------------------------------------------------------------------------------

void layer_param_shape(const TransformerLayerConfig& c, LayerParam p, int64_t* rows, int64_t* cols) {
  const int64_t H = c.hidden, F = c.ffn, kv = 2 * c.kv_heads * c.head_dim();
  int64_t r = 0, k = 0;
  switch (p) {
    case kQkvW: r = c.qkv_rows(); k = H; break;
    case kQkvB: r = c.qkv_rows(); break;
    case kOutW: r = H; k = H; break;
    case kCrossQW: case kCrossOutW: if (c.cross) { r = H; k = H; } break;
    case kCrossKvW: if (c.cross) { r = kv; k = H; } break;
    case kCrossKvB: if (c.cross) r = kv; break;
    case kCrossQB: case kCrossOutB: case kCrossNormW: if (c.cross) r = H; break;
    case kCrossNormB: if (c.cross && !c.rms) r = H; break;
    case kOutB: case kNorm1W: case kNorm2W: case kFc2B: r = H; break;
    case kNorm1B: case kNorm2B: if (!c.rms) r = H; break;
    case kFc1W: r = F; k = H; break;
    case kFc1B: r = F; break;
    case kFc2W: r = H; k = F; break;
    case kLayerParams: break;
  }
  *rows = r;
  *cols = k;
}

int64_t layer_param_numel(const TransformerLayerConfig& c, LayerParam p) {
  int64_t r, k;
  layer_param_shape(c, p, &r, &k);
  return k ? r * k : r;
}

// --- state -----------------------------------------------------------------------------------

struct BufFree {
  Device device = Device::CPU;
  void operator()(void* p) const {
    if (device == Device::CPU) std::free(p);
    else device_free(p);
  }
};

struct LayerState::Buf {
  std::unique_ptr<void, BufFree> p;
  int64_t bytes = 0;
};

LayerState::LayerState() = default;
LayerState::~LayerState() = default;

void LayerState::set_device(Device d) {
  if (d == device_) return;
  bufs_.clear();
  device_ = d;
}

void* LayerState::get(int slot, int64_t bytes) {
  if (size_t(slot) >= bufs_.size()) bufs_.resize(size_t(slot) + 1);
  Buf& b = bufs_[size_t(slot)];
  if (b.bytes < bytes) {
    const int64_t n = (bytes + 63) / 64 * 64;
    b.p.reset();
    b.bytes = 0;
    if (device_ == Device::CPU) {
      b.p = std::unique_ptr<void, BufFree>(std::aligned_alloc(64, size_t(n)), BufFree{device_});
      if (!b.p) fail(ErrorCode::OOM, "TransformerLayer: out of memory allocating ", n, " bytes of activations");
    } else {
      b.p = std::unique_ptr<void, BufFree>(device_alloc(n, "TransformerLayer"), BufFree{device_});
    }
    b.bytes = n;
  }
  return b.p.get();
}

void* LayerState::at(int slot) const { return bufs_.at(size_t(slot)).p.get(); }

int64_t LayerState::bytes() const {
  int64_t n = 0;
  for (const Buf& b : bufs_) n += b.bytes;
  return n;
}

namespace {

// Saved by the forward for the backward (per block k = 0 self, 1 cross, 2 FFN), then work buffers.
// Slots named X0 have one per block (X0 + blk); Q/K/V/O/Lse one per attention block.
enum Slot : int {
  kIn0, kIn1, kIn2,                // block inputs [T, Hd]: x, then the previous block's output
  kNormed0, kNormed1, kNormed2,    // pre-LN: norm(x); post-LN: s = x + drop(...), the norm's input
  kMean0, kMean1, kMean2, kRstd0, kRstd1, kRstd2,  // norm statistics f32 [T]
  kQ0, kQ1, kK0, kK1, kV0, kV1,    // heads [B, nh | nkv, S | Senc, D]
  kO0, kO1, kLse0, kLse1,          // attention output [B, nh, S, D], lse f32 [B, nh, S]
  kEnc,                            // the encoder output [Te, Hd] (cross)
  kF1Pre, kF1,                     // FFN: h W1^T [T, F], drop(act(. + b1)) [T, F]
  kWork0, kWork1, kWork2, kWork3, kWork4, kWork5, kWork6,  // scratch within one call
  kQPre0, kQPre1, kQPre2,          // QAT: the q/k/v products' outputs before fake-quant (saved)
  kQx, kQw, kQClipW, kQdx,         // QAT scratch: a fake-quantized input, weight, its clips, an input gradient
  kDclip,                          // QAT: a clip gradient nobody asked for (f32 [1])
  kLen0, kLen1,                    // CUDA: the self / encoder kv lengths, i32 [B]
  kHist,                           // CUDA histogram calibration: the counts, f64 [kLayerClips * bins]
};

struct Ctx {
  const TransformerLayerConfig& c;
  const TransformerLayerParams& w;
  LayerState& st;
  int64_t es;  // element size
  float* const* clip_grads = nullptr;  // backward
  int64_t T() const { return st.call.B * st.call.S; }
  int64_t Te() const { return st.call.B * st.call.Senc; }
  void* buf(int slot, int64_t elems, int64_t size = 0) const { return st.get(slot, elems * (size ? size : es)); }
  void* at(int slot) const { return st.at(slot); }
};

// Each dropout site's seed: the call's seed mixed with the site number (an odd 64-bit multiplier
// and a xor-shift), so the sites draw unrelated Philox streams under one user-visible seed.
uint64_t site_seed(uint64_t seed, int site) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * uint64_t(site + 1);
  z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
  return z ^ (z >> 29);
}
enum Site : int { kSiteAttn0, kSiteHidden0, kSiteAttn1, kSiteHidden1, kSiteAct, kSiteHidden2 };

// dst[n] = src[n] (a same-dtype cast: a copy on any backend)
void copy(const Ctx& k, const void* src, void* dst, int64_t n) {
  CastArgs a;
  a.device = k.c.device; a.src_dtype = a.dst_dtype = k.c.dtype; a.n = n; a.src = src; a.dst = dst;
  cast(a);
}

// One product of the layer: its weight, bias (kLayerParams: none here, e.g. FFN1's goes with the
// activation), the clips of its input and output (kLayerClips: none), and where the output before
// its fake-quant is saved.
struct QLin {
  LayerParam w, b;
  LayerClip in, out;
  int pre_slot;
};
constexpr QLin kLinQkv{kQkvW, kQkvB, kClipQkvIn, kClipQkvOut, kQPre0};
constexpr QLin kLinOut{kOutW, kLayerParams, kClipOutIn, kLayerClips, -1};
constexpr QLin kLinCrossQ{kCrossQW, kCrossQB, kClipCrossQIn, kClipCrossQOut, kQPre1};
constexpr QLin kLinCrossKv{kCrossKvW, kCrossKvB, kClipCrossKvIn, kClipCrossKvOut, kQPre2};
constexpr QLin kLinCrossOut{kCrossOutW, kLayerParams, kClipCrossOutIn, kLayerClips, -1};
constexpr QLin kLinFc1{kFc1W, kLayerParams, kClipFc1In, kLayerClips, -1};
constexpr QLin kLinFc2{kFc2W, kLayerParams, kClipFc2In, kLayerClips, -1};

const float* clip_of(const Ctx& k, LayerClip c) { return c == kLayerClips ? nullptr : k.w.clip[c]; }

QuantArgs quant_args(const Ctx& k, QuantMode mode, int64_t channels, int64_t inner) {
  QuantArgs q;
  q.device = k.c.device; q.mode = mode; q.dtype = k.c.dtype; q.outer = 1; q.channels = channels; q.inner = inner;
  return q;
}

// y[n] = fakeQuant(x[n], clip) per tensor (y may be x).
void fake_quant(const Ctx& k, const float* clip, const void* x, void* y, int64_t n) {
  QuantArgs q = quant_args(k, QuantMode::FakeQuant, 1, n);
  q.x = x; q.y = y; q.clip = clip;
  quant_fwd(q);
}

// PACT backward of fake_quant: dx = dy where |x| < clip, else 0 (dx may be dy); the rest is added
// into the clip's gradient.
void fake_quant_grad(const Ctx& k, LayerClip c, const void* x, const void* dy, void* dx, int64_t n) {
  QuantArgs q = quant_args(k, QuantMode::FakeQuant, 1, n);
  q.x = x; q.dy = dy; q.dx = dx; q.clip = k.w.clip[c];
  q.dclip = k.clip_grads && k.clip_grads[c] ? k.clip_grads[c] : static_cast<float*>(k.buf(kDclip, 1, 4));
  q.accumulate = true;
  quant_bwd(q);
}

// The weight wp fake-quantized with its max-abs clips (per output channel or per tensor), in kQw.
const void* quant_weight(Ctx& k, LayerParam wp) {
  int64_t n, cols;
  layer_param_shape(k.c, wp, &n, &cols);
  const bool per_channel = k.c.quant_weights == 2;
  QuantArgs q = quant_args(k, QuantMode::MaxClip, per_channel ? n : 1, per_channel ? cols : n * cols);
  q.clip_scale = 127.0f / float(k.c.weight_levels);
  q.x = k.w.p[wp];
  q.y = k.buf(kQClipW, n, 4);
  quant_fwd(q);
  q.mode = QuantMode::FakeQuant;
  q.clip = static_cast<const float*>(k.at(kQClipW));
  q.y = k.buf(kQw, n * cols);
  quant_fwd(q);
  return k.at(kQw);
}

// Calibration: clip c (when present) = max(clip, max |x[n]|), or |x| counted into its histogram.
void observe(const Ctx& k, LayerClip c, const void* x, int64_t n) {
  if (c == kLayerClips || !k.w.clip[c]) return;
  const bool hist = k.st.call.calibrate == 2;
  QuantArgs q = quant_args(k, hist ? QuantMode::Histogram : QuantMode::MaxClip, 1, n);
  q.x = x;
  if (hist) {
    q.hist = k.w.hist[c]; q.bins = k.w.hist_bins; q.clip_value = k.w.clip_value[c];
  } else {
    q.y = k.w.clip[c]; q.accumulate = true;
  }
  quant_fwd(q);
}

// x fake-quantized with the linear's input clip (in kQx), or x itself without one (or when calibrating).
const void* quant_input(Ctx& k, const QLin& L, int64_t elems, const void* x) {
  const float* clip = clip_of(k, L.in);
  if (!clip || k.st.call.calibrate) return x;
  fake_quant(k, clip, x, k.buf(kQx, elems), elems);
  return k.at(kQx);
}

// int8 inference: y[M, N] = act(xq Wq^T + bias) from x quantized with the input clip (x already
// int8 when `x_is_int8`); y f32 (fake-quantized with the output clip when the linear has one), or
// int8 requantized with `requant` (> 0).
void linear_int8(Ctx& k, int64_t M, const QLin& L, const void* x, bool x_is_int8, void* y, const void* bias = nullptr,
                 Activation act = Activation::None, float requant = 0.0f, const void* residual = nullptr) {
  LinearI8Args a;
  a.device = k.c.device;
  layer_param_shape(k.c, L.w, &a.n, &a.k);
  a.m = M;
  const float xclip = k.w.clip_value[L.in];
  if (x_is_int8) {
    a.x = static_cast<const int8_t*>(x);
  } else {
    QuantArgs q = quant_args(k, QuantMode::Quantize, 1, M * a.k);
    q.clip_value = xclip; q.x = x; q.y = k.buf(kQx, M * a.k, 1);
    quant_fwd(q);
    a.x = static_cast<const int8_t*>(k.at(kQx));
  }
  a.w = k.w.qw[L.w];
  a.x_clip = xclip;
  a.w_clip = k.w.wclip[L.w];
  a.bias = static_cast<const float*>(bias ? bias : L.b == kLayerParams ? nullptr : k.w.p[L.b]);
  a.act = act;
  a.residual = static_cast<const float*>(residual);
  a.out = requant > 0.0f ? DType::I8 : DType::F32;
  a.out_clip = requant > 0.0f ? requant : L.out == kLayerClips || !k.w.clip[L.out] ? 0.0f : k.w.clip_value[L.out];
  a.y = y;
  a.weight_cache = k.w.cache[L.w];
  linear_i8(a);
}

// y[M, N] = x[M, K] W^T (+ bias), then the output's fake-quant (its input kept in pre_slot).
void linear(Ctx& k, int64_t M, const QLin& L, const void* x, void* y) {
  if (k.c.int8) return linear_int8(k, M, L, x, false, y);
  LinearArgs l;
  l.device = k.c.device; l.dtype = k.c.dtype;
  layer_param_shape(k.c, L.w, &l.n, &l.k);
  l.m = M;
  const bool calib = k.st.call.calibrate;
  if (calib) observe(k, L.in, x, M * l.k);
  l.x = quant_input(k, L, M * l.k, x);
  l.w = k.w.p[L.w];
  l.weight_cache = k.w.cache[L.w];
  if (k.c.quant_weights && !calib) {
    l.w = quant_weight(k, L.w);
    l.weight_cache = nullptr;  // kQw is rewritten by every product
  }
  l.bias = L.b == kLayerParams ? nullptr : k.w.p[L.b];
  // with an output clip the product goes to pre_slot (kept for PACT), its fake-quant to y
  const float* out_clip = calib ? nullptr : clip_of(k, L.out);
  l.y = out_clip ? k.buf(L.pre_slot, M * l.n) : y;
  linear_fwd(l);
  if (calib) observe(k, L.out, y, M * l.n);
  if (out_clip) fake_quant(k, out_clip, l.y, y, M * l.n);
}

// dW[N, K] += dy[M, N]^T xq[M, K] (the product's input, fake-quantized as in the forward; the
// weight's own fake-quant passes the gradient straight through)
void grad_weight(Ctx& k, int64_t M, const QLin& L, void* const* grads, const void* dy, const void* x) {
  GemmArgs g;
  g.device = k.c.device; g.dtype = k.c.dtype;
  layer_param_shape(k.c, L.w, &g.m, &g.n);
  g.k = M; g.trans_a = true; g.a = dy; g.b = quant_input(k, L, M * g.n, x); g.c = grads[L.w]; g.beta = 1.0f; g.out = grads[L.w];
  gemm(g);
}

// dx[M, K] (+)= PACT(dy[M, N] Wq[N, K]) for the input x[M, K] of the forward
void grad_input(Ctx& k, int64_t M, const QLin& L, const void* dy, const void* x, void* dx, bool accumulate) {
  GemmArgs g;
  g.device = k.c.device; g.dtype = k.c.dtype;
  layer_param_shape(k.c, L.w, &g.n, &g.k);
  std::swap(g.n, g.k);
  g.m = M; g.a = dy; g.b = k.c.quant_weights ? quant_weight(k, L.w) : k.w.p[L.w];
  const bool quant = clip_of(k, L.in) != nullptr;
  g.out = quant ? k.buf(kQdx, M * g.n) : dx;
  if (accumulate && !quant) { g.c = dx; g.beta = 1.0f; }
  gemm(g);
  if (!quant) return;
  fake_quant_grad(k, L.in, x, g.out, accumulate ? g.out : dx, M * g.n);
  if (accumulate) {  // dx += the masked gradient
    DropoutArgs d;
    d.device = k.c.device; d.dtype = k.c.dtype; d.rows = M; d.cols = g.n;
    d.x = g.out; d.residual = dx; d.y = dx;
    dropout_fwd(d);
  }
}

// y = residual + dropout(x + bias): the block epilogue; with p = 0, bias and residual it is a sum.
void bias_dropout_residual(const Ctx& k, int64_t rows, const void* x, const void* bias, const void* res, void* y, float p,
                           uint64_t seed) {
  DropoutArgs d;
  d.device = k.c.device; d.dtype = k.c.dtype; d.rows = rows; d.cols = k.c.hidden;
  d.x = x; d.bias = bias; d.residual = res; d.y = y; d.p = p; d.seed = seed;
  dropout_fwd(d);
}

// dx = dy * mask (in place allowed); dbias += column sums of dx.
void dropout_grad(const Ctx& k, int64_t rows, int64_t cols, const void* dy, void* dx, void* dbias, float p, uint64_t seed) {
  DropoutArgs d;
  d.device = k.c.device; d.dtype = k.c.dtype; d.rows = rows; d.cols = cols;
  d.dy = dy; d.dx = dx; d.dbias = dbias; d.accumulate = true; d.p = p; d.seed = seed;
  dropout_bwd(d);
}

void norm(Ctx& k, int blk, LayerParam g, LayerParam b, const void* x, void* y) {
  NormArgs n;
  n.device = k.c.device; n.dtype = k.c.dtype; n.rms = k.c.rms; n.rows = k.T(); n.cols = k.c.hidden; n.eps = k.c.eps;
  n.x = x; n.gamma = k.w.p[g]; n.beta = k.c.rms ? nullptr : k.w.p[b]; n.y = y;
  n.mean = static_cast<float*>(k.buf(kMean0 + blk, k.T(), 4));
  n.rstd = static_cast<float*>(k.buf(kRstd0 + blk, k.T(), 4));
  norm_fwd(n);
}

void norm_grad(const Ctx& k, int blk, LayerParam g, LayerParam b, void* const* grads, const void* x, const void* dy, void* dx) {
  NormArgs n;
  n.device = k.c.device; n.dtype = k.c.dtype; n.rms = k.c.rms; n.rows = k.T(); n.cols = k.c.hidden; n.eps = k.c.eps;
  n.x = x; n.gamma = k.w.p[g]; n.beta = k.c.rms ? nullptr : k.w.p[b];
  n.mean = static_cast<float*>(k.at(kMean0 + blk));
  n.rstd = static_cast<float*>(k.at(kRstd0 + blk));
  n.dy = dy; n.dx = dx; n.dgamma = grads[g]; n.dbeta = k.c.rms ? nullptr : grads[b]; n.accumulate = true;
  norm_bwd(n);
}

void heads(const Ctx& k, int64_t S, int64_t H, int64_t ld, int64_t col0, bool to_heads, const void* src, void* dst) {
  HeadsArgs h;
  h.device = k.c.device; h.dtype = k.c.dtype;
  h.B = k.st.call.B; h.S = S; h.H = H; h.D = k.c.head_dim(); h.ld = ld; h.col0 = col0; h.to_heads = to_heads;
  h.src = src; h.dst = dst;
  heads_copy(h);
}

// Rotary embedding of self-attention heads [B, H, S, D] in place (inverse: the backward's).
void rotary(const Ctx& k, int64_t H, void* x, bool inverse) {
  if (!k.c.rotary_dim) return;
  RopeArgs r;
  r.device = k.c.device; r.dtype = k.c.dtype;
  r.B = k.st.call.B; r.H = H; r.S = k.st.call.S; r.D = k.c.head_dim(); r.rot = k.c.rotary_dim; r.base = k.c.rotary_base;
  r.inverse = inverse; r.x = x;
  rope(r);
}

AttentionArgs attention_args(const Ctx& k, int blk) {
  const TransformerLayerCall& call = k.st.call;
  AttentionArgs a;
  a.device = k.c.device; a.dtype = k.c.dtype;
  a.B = call.B; a.H = k.c.heads; a.Hkv = k.c.kv_heads; a.D = k.c.head_dim();
  a.Sq = call.S; a.Sk = blk == 0 ? call.S : call.Senc;
  a.scale = 1.0f / std::sqrt(float(a.D));
  a.causal = blk == 0 && k.c.causal;
  const std::vector<int32_t>& len = blk == 0 ? k.st.lengths : k.st.enc_lengths;
  a.kv_lengths = len.empty() ? nullptr : k.c.device == Device::CPU ? len.data() : static_cast<const int32_t*>(k.at(kLen0 + blk));
  a.dropout = call.train ? k.c.attn_dropout : 0.0f;
  a.seed = site_seed(call.seed, blk == 0 ? kSiteAttn0 : kSiteAttn1);
  a.q = k.at(kQ0 + blk); a.k = k.at(kK0 + blk); a.v = k.at(kV0 + blk);
  a.out = k.at(kO0 + blk); a.lse = static_cast<float*>(k.at(kLse0 + blk));
  return a;
}

struct BlockParams {
  LayerParam norm_w, norm_b, out_b;
  int site;
};
constexpr BlockParams kBlocks[3] = {{kNorm1W, kNorm1B, kOutB, kSiteHidden0},
                                    {kCrossNormW, kCrossNormB, kCrossOutB, kSiteHidden1},
                                    {kNorm2W, kNorm2B, kFc2B, kSiteHidden2}};

// The sub-layer of block `blk` on h [T, Hd], writing its output before bias into `z` [T, Hd].
// int8 inference (`res` given): z = h's sub-layer output + bias + res, the block's residual sum, all
// in the last product's epilogue.
void attention_sub_fwd(Ctx& k, int blk, const void* h, void* z, const void* bias = nullptr, const void* res = nullptr) {
  const TransformerLayerConfig& c = k.c;
  const int64_t T = k.T(), Hd = c.hidden, D = c.head_dim(), nh = c.heads, nkv = c.kv_heads;
  const int64_t Sk = blk == 0 ? k.st.call.S : k.st.call.Senc, Tk = k.st.call.B * Sk;
  void* q = k.buf(kQ0 + blk, T * Hd);
  void* kk = k.buf(kK0 + blk, Tk * nkv * D);
  void* v = k.buf(kV0 + blk, Tk * nkv * D);
  k.buf(kO0 + blk, T * Hd);
  k.buf(kLse0 + blk, T * nh, 4);
  if (blk == 0) {  // one product for q, k and v
    void* qkv = k.buf(kWork0, T * c.qkv_rows());
    linear(k, T, kLinQkv, h, qkv);
    heads(k, k.st.call.S, nh, c.qkv_rows(), 0, true, qkv, q);
    heads(k, k.st.call.S, nkv, c.qkv_rows(), Hd, true, qkv, kk);
    heads(k, k.st.call.S, nkv, c.qkv_rows(), Hd + nkv * D, true, qkv, v);
    rotary(k, nh, q, false);
    rotary(k, nkv, kk, false);
  } else {
    void* qp = k.buf(kWork0, T * Hd);
    linear(k, T, kLinCrossQ, h, qp);
    heads(k, k.st.call.S, nh, Hd, 0, true, qp, q);
    void* kv = k.buf(kWork1, Tk * 2 * nkv * D);
    linear(k, Tk, kLinCrossKv, k.at(kEnc), kv);
    heads(k, Sk, nkv, 2 * nkv * D, 0, true, kv, kk);
    heads(k, Sk, nkv, 2 * nkv * D, nkv * D, true, kv, v);
  }
  attention_fwd(attention_args(k, blk));
  void* ctx = k.buf(kWork0, T * Hd);
  heads(k, k.st.call.S, nh, Hd, 0, false, k.at(kO0 + blk), ctx);
  const QLin& outl = blk == 0 ? kLinOut : kLinCrossOut;
  if (res) linear_int8(k, T, outl, ctx, false, z, bias, Activation::None, 0.0f, res);
  else linear(k, T, outl, ctx, z);
}

void ffn_sub_fwd(Ctx& k, const void* h, void* z, const void* bias = nullptr, const void* res = nullptr) {
  const TransformerLayerConfig& c = k.c;
  const int64_t T = k.T();
  if (c.int8) {  // FFN1's epilogue: bias, activation and FFN2's input quantization
    void* f1 = k.buf(kF1, T * c.ffn, 1);
    linear_int8(k, T, kLinFc1, h, false, f1, k.w.p[kFc1B], c.act, k.w.clip_value[kClipFc2In]);
    linear_int8(k, T, kLinFc2, f1, true, z, bias, Activation::None, 0.0f, res);
    return;
  }
  void* pre = k.buf(kF1Pre, T * c.ffn);
  void* f1 = k.buf(kF1, T * c.ffn);
  linear(k, T, kLinFc1, h, pre);
  BiasActArgs b;
  b.device = c.device; b.dtype = c.dtype; b.act = c.act; b.rows = T; b.cols = c.ffn;
  b.x = pre; b.bias = k.w.p[kFc1B]; b.y = f1;
  b.dropout = k.st.call.train ? c.act_dropout : 0.0f; b.seed = site_seed(k.st.call.seed, kSiteAct);
  bias_act_fwd(b);
  linear(k, T, kLinFc2, f1, z);
}

// Block `blk` from input x to `out` (both [T, Hd]).
void block_fwd(Ctx& k, int blk, const void* x, void* out) {
  const TransformerLayerConfig& c = k.c;
  const BlockParams& bp = kBlocks[blk];
  const int64_t T = k.T();
  const float p = k.st.call.train ? c.hidden_dropout : 0.0f;
  const uint64_t seed = site_seed(k.st.call.seed, bp.site);
  void* z = k.buf(kWork2, T * c.hidden);
  void* normed = k.buf(kNormed0 + blk, T * c.hidden);
  if (c.pre_ln) norm(k, blk, bp.norm_w, bp.norm_b, x, normed);
  const void* h = c.pre_ln ? normed : x;
  if (c.int8) {  // inference: no dropout; bias and residual go into the last product's epilogue
    void* sum = c.pre_ln ? out : normed;  // post-LN: normed holds s, the norm's input
    if (blk == 2) ffn_sub_fwd(k, h, sum, k.w.p[bp.out_b], x);
    else attention_sub_fwd(k, blk, h, sum, k.w.p[bp.out_b], x);
    if (!c.pre_ln) norm(k, blk, bp.norm_w, bp.norm_b, normed, out);
    return;
  }
  if (blk == 2) ffn_sub_fwd(k, h, z);
  else attention_sub_fwd(k, blk, h, z);
  if (c.pre_ln) {
    bias_dropout_residual(k, T, z, k.w.p[bp.out_b], x, out, p, seed);
  } else {  // normed holds s, the norm's input
    bias_dropout_residual(k, T, z, k.w.p[bp.out_b], x, normed, p, seed);
    norm(k, blk, bp.norm_w, bp.norm_b, normed, out);
  }
}

// Backward of the attention sub-layer: dz [T, Hd] (gradient of its output before bias) ->
// dh [T, Hd] written; parameter grads and (cross) denc accumulated.
void attention_sub_bwd(Ctx& k, int blk, void* const* grads, const void* h, const void* dz, void* dh, void* denc) {
  const TransformerLayerConfig& c = k.c;
  const int64_t T = k.T(), Hd = c.hidden, D = c.head_dim(), nh = c.heads, nkv = c.kv_heads, S = k.st.call.S;
  const int64_t Sk = blk == 0 ? S : k.st.call.Senc, Tk = k.st.call.B * Sk;
  const QLin& outl = blk == 0 ? kLinOut : kLinCrossOut;
  void* ctx = k.buf(kWork0, T * Hd);
  heads(k, S, nh, Hd, 0, false, k.at(kO0 + blk), ctx);
  grad_weight(k, T, outl, grads, dz, ctx);
  void* dctx = k.buf(kWork1, T * Hd);
  grad_input(k, T, outl, dz, ctx, dctx, false);
  void* dout = k.buf(kWork0, T * Hd);
  heads(k, S, nh, Hd, 0, true, dctx, dout);
  void* dq = k.buf(kWork1, T * Hd);
  void* dk = k.buf(kWork3, Tk * nkv * D);
  void* dv = k.buf(kWork4, Tk * nkv * D);
  AttentionArgs a = attention_args(k, blk);
  a.dout = dout; a.dq = dq; a.dk = dk; a.dv = dv;
  attention_bwd(a);
  if (blk == 0) {
    rotary(k, nh, dq, true);
    rotary(k, nkv, dk, true);
    const int64_t ld = c.qkv_rows();
    void* dqkv = k.buf(kWork0, T * ld);
    heads(k, S, nh, ld, 0, false, dq, dqkv);
    heads(k, S, nkv, ld, Hd, false, dk, dqkv);
    heads(k, S, nkv, ld, Hd + nkv * D, false, dv, dqkv);
    if (clip_of(k, kClipQkvOut)) fake_quant_grad(k, kClipQkvOut, k.at(kQPre0), dqkv, dqkv, T * ld);
    dropout_grad(k, T, ld, dqkv, dqkv, grads[kQkvB], 0.0f, 0);  // dbias: column sums
    grad_weight(k, T, kLinQkv, grads, dqkv, h);
    grad_input(k, T, kLinQkv, dqkv, h, dh, false);
  } else {
    void* dqp = k.buf(kWork0, T * Hd);
    heads(k, S, nh, Hd, 0, false, dq, dqp);
    if (clip_of(k, kClipCrossQOut)) fake_quant_grad(k, kClipCrossQOut, k.at(kQPre1), dqp, dqp, T * Hd);
    dropout_grad(k, T, Hd, dqp, dqp, grads[kCrossQB], 0.0f, 0);
    grad_weight(k, T, kLinCrossQ, grads, dqp, h);
    grad_input(k, T, kLinCrossQ, dqp, h, dh, false);
    const int64_t ld = 2 * nkv * D;
    void* dkv = k.buf(kWork1, Tk * ld);
    heads(k, Sk, nkv, ld, 0, false, dk, dkv);
    heads(k, Sk, nkv, ld, nkv * D, false, dv, dkv);
    if (clip_of(k, kClipCrossKvOut)) fake_quant_grad(k, kClipCrossKvOut, k.at(kQPre2), dkv, dkv, Tk * ld);
    dropout_grad(k, Tk, ld, dkv, dkv, grads[kCrossKvB], 0.0f, 0);
    grad_weight(k, Tk, kLinCrossKv, grads, dkv, k.at(kEnc));
    grad_input(k, Tk, kLinCrossKv, dkv, k.at(kEnc), denc, true);
  }
}

void ffn_sub_bwd(Ctx& k, void* const* grads, const void* h, const void* dz, void* dh) {
  const TransformerLayerConfig& c = k.c;
  const int64_t T = k.T();
  grad_weight(k, T, kLinFc2, grads, dz, k.at(kF1));
  void* df1 = k.buf(kWork0, T * c.ffn);
  grad_input(k, T, kLinFc2, dz, k.at(kF1), df1, false);
  BiasActArgs b;
  b.device = c.device; b.dtype = c.dtype; b.act = c.act; b.rows = T; b.cols = c.ffn;
  b.x = k.at(kF1Pre); b.bias = k.w.p[kFc1B];
  b.dropout = k.st.call.train ? c.act_dropout : 0.0f; b.seed = site_seed(k.st.call.seed, kSiteAct);
  b.dy = df1; b.dx = df1; b.dbias = grads[kFc1B]; b.accumulate = true;
  bias_act_bwd(b);
  grad_weight(k, T, kLinFc1, grads, df1, h);
  grad_input(k, T, kLinFc1, df1, h, dh, false);
}

// Backward of block `blk`: dout [T, Hd] -> dx [T, Hd]; dx may be dout (dout is read first).
// Scratch: ds kWork2, dz kWork5, dh kWork6; the sub-layers use kWork0, 1, 3, 4.
void block_bwd(Ctx& k, int blk, void* const* grads, const void* dout, void* dx, void* denc) {
  const TransformerLayerConfig& c = k.c;
  const BlockParams& bp = kBlocks[blk];
  const int64_t T = k.T(), Hd = c.hidden;
  const float p = k.st.call.train ? c.hidden_dropout : 0.0f;
  const uint64_t seed = site_seed(k.st.call.seed, bp.site);
  const void* x = k.at(kIn0 + blk);
  const void* normed = k.at(kNormed0 + blk);
  // ds: the gradient at the residual sum (post-LN: through the norm first)
  void* ds = k.buf(kWork2, T * Hd);
  if (c.pre_ln) copy(k, dout, ds, T * Hd);
  else norm_grad(k, blk, bp.norm_w, bp.norm_b, grads, normed, dout, ds);
  void* dz = k.buf(kWork5, T * Hd);
  dropout_grad(k, T, Hd, ds, dz, grads[bp.out_b], p, seed);
  const void* h = c.pre_ln ? normed : x;
  void* dh = k.buf(kWork6, T * Hd);
  if (blk == 2) ffn_sub_bwd(k, grads, h, dz, dh);
  else attention_sub_bwd(k, blk, grads, h, dz, dh, denc);
  if (c.pre_ln) {  // dx = ds + norm'(dh)
    void* dn = k.buf(kWork0, T * Hd);
    norm_grad(k, blk, bp.norm_w, bp.norm_b, grads, x, dh, dn);
    bias_dropout_residual(k, T, dn, nullptr, ds, dx, 0.0f, 0);
  } else {
    bias_dropout_residual(k, T, dh, nullptr, ds, dx, 0.0f, 0);
  }
}

}  // namespace

void transformer_layer_fwd(const TransformerLayerConfig& c, const TransformerLayerParams& w,
                           const TransformerLayerCall& call, LayerState& st) {
  st.call = call;
  st.has_forward = false;
  st.set_device(c.device);
  const bool host = c.device == Device::CPU;
  // CUDA: the host-side inputs go to device buffers (lengths), histograms count on the device
  TransformerLayerParams wd = w;
  Ctx k{c, host ? w : wd, st, dtype_size(c.dtype)};
  const char* op = "TransformerLayer.forward";
  if (!host) {
    for (int blk = 0; blk < 2; ++blk) {
      const std::vector<int32_t>& len = blk == 0 ? st.lengths : st.enc_lengths;
      if (!len.empty()) device_copy(k.buf(kLen0 + blk, call.B, 4), len.data(), call.B * 4, true, op);
    }
    if (call.calibrate == 2) {
      const int64_t n = kLayerClips * w.hist_bins;
      double* dev = static_cast<double*>(k.buf(kHist, n, 8));
      device_zero(dev, n * 8, op);
      for (int i = 0; i < kLayerClips; ++i)
        if (w.hist[i]) wd.hist[i] = dev + i * w.hist_bins;
    }
  }
  const int64_t T = k.T(), Hd = c.hidden;
  copy(k, call.x, k.buf(kIn0, T * Hd), T * Hd);
  if (c.cross) copy(k, call.enc, k.buf(kEnc, k.Te() * Hd), k.Te() * Hd);
  // without cross-attention the self-attention block feeds the FFN block directly
  block_fwd(k, 0, k.at(kIn0), k.buf(c.cross ? kIn1 : kIn2, T * Hd));
  if (c.cross) block_fwd(k, 1, k.at(kIn1), k.buf(kIn2, T * Hd));
  block_fwd(k, 2, k.at(kIn2), call.y);
  if (!host && call.calibrate == 2) {  // add the device counts into the caller's
    std::vector<double> counts(size_t(kLayerClips * w.hist_bins));
    device_copy(counts.data(), k.at(kHist), int64_t(counts.size()) * 8, true, op);
    for (int i = 0; i < kLayerClips; ++i)
      if (w.hist[i])
        for (int64_t b = 0; b < w.hist_bins; ++b) w.hist[i][b] += counts[size_t(i * w.hist_bins + b)];
  }
  st.has_forward = !call.calibrate;  // a calibration forward saved no quantization inputs
}

void transformer_layer_bwd(const TransformerLayerConfig& c, const TransformerLayerParams& w, void* const* grads,
                           float* const* clip_grads, const void* dy, void* dx, void* denc, LayerState& st) {
  if (!st.has_forward) fail(ErrorCode::Arg, "TransformerLayer.backward: no forward to differentiate; call forward first");
  Ctx k{c, w, st, dtype_size(c.dtype), clip_grads};
  // the gradient flows through dx's buffer from block to block
  block_bwd(k, 2, grads, dy, dx, denc);
  if (c.cross) block_bwd(k, 1, grads, dx, dx, denc);
  block_bwd(k, 0, grads, dx, dx, denc);
}

}  // namespace seqfuse

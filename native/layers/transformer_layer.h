// native/layers/transformer_layer.h — the fused Transformer layer (encoder or decoder), forward
// and hand-written backward, written once against native/ops (every product, norm, attention,
// activation and dropout goes through an op's dispatch, so the layer runs on any backend).
//
// Blocks, each with its residual: self-attention, then (decoder with `cross`) cross-attention over
// an encoder output, then the FFN. Per block with input x:
//   pre-LN:  h = norm(x);  out = x + drop(sub(h) + b)
//   post-LN: s = x + drop(sub(x) + b);  out = norm(s)
// sub: attention  q, k, v = heads(h Wq^T + bq, src Wk^T + bk, src Wv^T + bv) (self: src = h, one
//                 fused qkv product; cross: src = the encoder output), o = attention(q, k, v)
//                 (causal for a decoder's self-attention; kv lengths mask keys), then o Wout^T
//      FFN        f1 = drop(act(h W1^T + b1)), then f1 W2^T
// Shapes: x, y, dx, dy [B, S, hidden] in `dtype`; enc, denc [B, Senc, hidden]; lengths i32 [B].
// Parameters follow DESIGN §4 (PyTorch nn.Linear layout, weight [out, in]); see LayerParam.
// Gradients of parameters are accumulated (+=) into the grads given; dx is written, denc is
// accumulated (several decoder layers read one encoder output).
//
// Rotary (rotary_dim > 0): self-attention's q and k heads are rotated by their token position
// (ops/rope.h) after the head split; the saved q and k are the rotated ones, and the backward
// rotates dq and dk back. Cross-attention is not rotated.
// Dropout: each site draws its own Philox stream, seed = layer_site_seed(call seed, site); the
// backward recomputes every mask from those seeds, nothing stores a mask.
// Quantization-aware training (REFERENCES §1, DESIGN §6): with `quant_weights`, each product uses
// its weight fake-quantized per output channel (or per tensor) with the max-abs clip (widened for
// `weight_levels` < 127), recomputed from the current weights on every call; its gradient passes
// straight through to the weight. Each linear with a clip (LayerClip, f32 [1], nullable) fake-
// quantizes its input (and the q/k/v products their output, after the bias) with that clip, and the
// backward applies PACT: gradient through where |x| < clip, the rest summed into the clip's
// gradient (clips must be finite and > 0: ERR_ARG otherwise). FFN1's output quantization is FFN2's input one (after the activation); the two
// products that feed the residual stream (attention out, FFN2) keep a float output, as LightSeq.
// int8 inference (`int8`, exported from a QAT or calibrated layer): each product runs on the int8
// kernel (ops/matmul.h linear_i8) with its input quantized by its input clip (required), bias and
// activation in the product's epilogue, the q/k/v outputs fake-quantized there too, FFN1's
// output requantized straight to int8 with FFN2's input clip, and the out-projection's and FFN2's
// bias and residual sum in their epilogues. Norms, attention, softmax and the
// residual stream stay f32, as the QAT forward they reproduce.
// Memory: LayerState keeps what backward needs from the last forward (block inputs, normalized
// inputs and statistics, q/k/v/attention output/lse, FFN pre-activation and activation) plus work
// buffers, sized by the call and grown on demand: no sequence cap. They live on the config's
// device (CUDA: from the caching allocator, core/device.h); host-side inputs (lengths, histogram
// counts) are copied to and from the device by the layer.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>
#include "ops/activation.h"
#include "ops/matmul.h"

namespace seqfuse {

enum LayerParam : int {
  kQkvW, kQkvB, kOutW, kOutB, kNorm1W, kNorm1B,                                   // attn.*
  kCrossQW, kCrossQB, kCrossKvW, kCrossKvB, kCrossOutW, kCrossOutB, kCrossNormW, kCrossNormB,  // cross.*
  kFc1W, kFc1B, kFc2W, kFc2B, kNorm2W, kNorm2B,                                    // ffn.*
  kLayerParams
};

// Clip parameters of quantization-aware training, f32 [1] each (one per linear's input, and the
// outputs of the q/k/v products).
enum LayerClip : int {
  kClipQkvIn, kClipQkvOut, kClipOutIn,
  kClipCrossQIn, kClipCrossQOut, kClipCrossKvIn, kClipCrossKvOut, kClipCrossOutIn,
  kClipFc1In, kClipFc2In,
  kLayerClips
};

struct TransformerLayerConfig {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t hidden = 0, heads = 0, kv_heads = 0, ffn = 0;
  Activation act = Activation::Gelu;
  bool pre_ln = true, rms = false;  // RMSNorm: no norm biases
  bool causal = false;              // self-attention causal (decoder)
  bool cross = false;               // a cross-attention block (decoder of an encoder-decoder)
  float eps = 1e-5f;
  float attn_dropout = 0.0f, act_dropout = 0.0f, hidden_dropout = 0.0f;
  int64_t rotary_dim = 0;           // self-attention q and k: rotary embedding of this many dims (0: none)
  double rotary_base = 10000.0;
  int quant_weights = 0;            // fake-quantized weights: 0 none, 1 per tensor, 2 per output channel
  int weight_levels = 127;          // weight codes within +-levels (127: 8 bits, 63: 7 bits)
  bool int8 = false;                // int8 inference (see below): forward only, f32 activations
  int64_t head_dim() const { return hidden / heads; }
  int64_t qkv_rows() const { return hidden + 2 * kv_heads * head_dim(); }
};

// Element count of each parameter (0 = the config has no such parameter).
int64_t layer_param_numel(const TransformerLayerConfig& c, LayerParam p);
// Shape [rows, cols] of a parameter (cols = 0 for a vector).
void layer_param_shape(const TransformerLayerConfig& c, LayerParam p, int64_t* rows, int64_t* cols);

struct TransformerLayerParams {
  const void* p[kLayerParams] = {};
  WeightCache* cache[kLayerParams] = {};  // nullable: for the forward's products
  float* clip[kLayerClips] = {};          // nullable: no quantization at that point (written only by calibration)
  // int8 inference: the weights as int8 [N, K] with their dequantization clips f32 [N] (the float
  // weights p[...] of those slots are unused), and every clip's value on the host.
  const int8_t* qw[kLayerParams] = {};
  const float* wclip[kLayerParams] = {};
  float clip_value[kLayerClips] = {};
  // histogram calibration: [hist_bins] counts per clip (nullable), added into
  double* hist[kLayerClips] = {};
  int64_t hist_bins = 0;
};

struct TransformerLayerCall {
  int64_t B = 0, S = 0, Senc = 0;
  const void* x = nullptr;
  void* y = nullptr;
  const int32_t* lengths = nullptr;      // [B] keys of x seen by self-attention, nullable
  const void* enc = nullptr;             // cross only
  const int32_t* enc_lengths = nullptr;  // [B], nullable
  bool train = false;
  uint64_t seed = 0;
  // Calibration: no fake-quant (a float forward). 1 (max): each present clip becomes the larger of
  // itself and max |x| of what it quantizes; 2 (histogram): |x| is counted into that clip's
  // histogram (TransformerLayerParams::hist) over [0, clip_value) (the last bin takes the rest).
  int calibrate = 0;
};

class LayerState;

// Forward: fills `st` with what backward needs and writes call.y.
void transformer_layer_fwd(const TransformerLayerConfig& c, const TransformerLayerParams& w,
                           const TransformerLayerCall& call, LayerState& st);
// Backward of the last forward on `st`: dx written, grads, clip_grads (f32 [1], nullable each) and
// denc (cross) accumulated.
void transformer_layer_bwd(const TransformerLayerConfig& c, const TransformerLayerParams& w, void* const* grads,
                           float* const* clip_grads, const void* dy, void* dx, void* denc, LayerState& st);

// Buffers of one layer: the last forward's saved activations and the work buffers.
class LayerState {
 public:
  LayerState();
  ~LayerState();
  // The device the buffers live on; a change frees them.
  void set_device(Device d);
  // Buffer `slot` with at least `bytes`, kept (and grown) across calls.
  void* get(int slot, int64_t bytes);
  void* at(int slot) const;
  int64_t bytes() const;
  // What the last forward was called with, for its backward (lengths: on the host).
  TransformerLayerCall call;
  std::vector<int32_t> lengths, enc_lengths;
  bool has_forward = false;

 private:
  struct Buf;
  std::vector<Buf> bufs_;
  Device device_ = Device::CPU;
};

}  // namespace seqfuse

// native/ops/attention.h — fused scaled-dot-product attention, forward and backward.
// Layouts (contiguous, row-major): q, out, dout, dq [B, H, Sq, D]; k, v, dk, dv [B, Hkv, Sk, D];
// lse [B, H, Sq] (always f32). Query head h reads key/value head h / (H / Hkv) (GQA; Hkv = 1 is
// MQA). q/k/v/out and the gradients share `dtype` (f32, bf16, f16); arithmetic is f32.
//
// Scores, for batch row b, head h, query i, key j:
//   s_ij = scale * <q_i, k_j> + bias[b, h, i, j]          (bias nullable: 0)
//   visible(i, j) = j < L_b  and (not causal or j <= i + Sk - Sq)
//     L_b = kv_lengths[b] (0 <= L_b <= Sk) or Sk when kv_lengths is null. Causal is aligned
//     bottom-right to the tensor's Sk (PyTorch's causal_lower_right), not to L_b.
//   lse_i = log sum_{visible j} exp(s_ij)                  (-inf when no key is visible)
//   P_ij = exp(s_ij - lse_i) for visible j, else 0
//   out_i = sum_j keep_ij * scale_p * P_ij * v_j           (zeros when no key is visible)
// Dropout keeps (i, j) by dropout's 16-bit Philox stream (core/philox.h, cpu/philox_block.h)
// at element index e = ((b * H + h) * Sq + i) * Sk + j: keep_ij iff h_e >= t, t = round(p * 65536),
// scale_p = 65536 / (65536 - t); p = 0 draws nothing. lse is the undropped normalizer.
// Rows with a NaN score give NaN; bias entries of -inf hide a key like the other masks.
//
// Backward recomputes P block by block from q, k and lse (nothing of size Sq x Sk is stored):
//   dv_j  = sum_i keep_ij scale_p P_ij dout_i            (summed over the GQA group's heads)
//   dP_ij = keep_ij scale_p <dout_i, v_j>
//   dS_ij = P_ij (dP_ij - delta_i),  delta_i = <dout_i, out_i>
//   dq_i  = scale sum_j dS_ij k_j,   dk_j = scale sum_i dS_ij q_i   (dk summed over the group)
// Rows with no visible key (lse = -inf) contribute nothing. No gradient for bias.
//
// Kernels never allocate anything of size Sq x Sk per head beyond one block of scores per
// thread. They overwrite out/lse (forward) and dq/dk/dv (backward) completely.
#pragma once
#include <cstdint>
#include "core/dispatch.h"

namespace seqfuse {

struct AttentionArgs {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  int64_t B = 0, H = 0, Hkv = 0, Sq = 0, Sk = 0, D = 0;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  float scale = 1.0f;
  bool causal = false;
  const int32_t* kv_lengths = nullptr;  // [B], values in [0, Sk], nullable
  // Additive f32 bias, nullable: element (b, h, i, j) at
  // bias[b * bias_stride[0] + h * bias_stride[1] + i * bias_stride[2] + j * bias_stride[3]],
  // stride 0 on broadcast dims.
  const float* bias = nullptr;
  int64_t bias_stride[4] = {0, 0, 0, 0};
  float dropout = 0.0f;  // p in [0, 1]
  uint64_t seed = 0;
  // forward outputs; backward inputs
  void* out = nullptr;
  float* lse = nullptr;  // forward: nullable (not returned); backward: required
  // backward
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
};

void attention_fwd_cpu(const AttentionArgs& a);
void attention_bwd_cpu(const AttentionArgs& a);
void attention_fwd_cuda(const AttentionArgs& a, Stream s);
void attention_bwd_cuda(const AttentionArgs& a, Stream s);

inline void attention_fwd(const AttentionArgs& a) { SF_DISPATCH(attention_fwd, a); }
inline void attention_bwd(const AttentionArgs& a) { SF_DISPATCH(attention_bwd, a); }

}  // namespace seqfuse

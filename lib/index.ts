// seqfuse: fused Transformer kernels for Node.js. The public surface (docs/api.md).
export { SeqfuseError, type ErrorCode } from './errors.js';
export type { DType, Device, TypedArray } from './dtype.js';
export { Tensor, memory, type MemoryInfo, type RandomOptions, type TensorOptions } from './tensor.js';
export { buildInfo, getIsa, getNumThreads, type Isa, setIsa, setNumThreads } from './runtime.js';
export type { Op } from './ops/common.js';
export { layerNorm, layerNormBackward, type NormBackwardOptions, type NormGrads, type NormOptions, rmsNorm, rmsNormBackward } from './ops/norm.js';
export { softmax, softmaxBackward, type SoftmaxBackwardOptions, type SoftmaxOptions } from './ops/softmax.js';
export { embedding, embeddingBackward, type EmbeddingBackwardOptions, type EmbeddingGrads, type EmbeddingOptions } from './ops/embedding.js';
export { gemm, gemmBackward, type GemmBackwardOptions, type GemmGrads, type GemmOptions, linear, type LinearActivation, linearBackward, type LinearBackwardOptions, type LinearGrads, type LinearOptions } from './ops/matmul.js';
export { type ActivationName, type ActivationOptions, biasAct, biasActBackward, type BiasActBackwardOptions, type BiasActGrads, type BiasActOptions, gelu, geluBackward, type GeluBackwardOptions, type GeluOptions, relu, reluBackward, silu, siluBackward } from './ops/activation.js';
export { biasDropoutResidual, biasDropoutResidualBackward, type BiasDropoutResidualBackwardOptions, type BiasDropoutResidualGrads, type BiasDropoutResidualOptions, dropout, dropoutBackward, type DropoutBackwardOptions, type DropoutOptions } from './ops/dropout.js';
export { type FusedAttention, fusedAttention, fusedAttentionBackward, type FusedAttentionBackwardOptions, type FusedAttentionGrads, type FusedAttentionOptions, type FusedAttentionResult } from './ops/attention.js';
export { type DecoderBackwardOptions, type DecoderForwardOptions, type LayerActivation, type LayerForwardOptions, type LayerNormKind, TransformerDecoderLayer, type TransformerDecoderLayerConfig, TransformerEncoderLayer, type TransformerLayerConfig } from './layers/transformer.js';
export { decodeSafetensors, encodeSafetensors, loadSafetensors, type SafetensorsContents, saveSafetensors, type TensorMap } from './io/safetensors.js';

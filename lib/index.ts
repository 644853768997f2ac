// seqfuse: fused Transformer kernels for Node.js. The public surface (docs/api.md).
export { SeqfuseError, type ErrorCode } from './errors.js';
export type { DType, Device, TypedArray } from './dtype.js';
export { Tensor, memory, type MemoryInfo, type RandomOptions, type TensorOptions } from './tensor.js';
export {
  buildInfo, cudaEmptyCache, cudaMemory, type CudaStatus, cudaStatus, cudaSynchronize, getIsa, getNumThreads, type Isa, setIsa, setNumThreads,
} from './runtime.js';
export type { Op } from './ops/common.js';
export { layerNorm, layerNormBackward, type NormBackwardOptions, type NormGrads, type NormOptions, rmsNorm, rmsNormBackward } from './ops/norm.js';
export { softmax, softmaxBackward, type SoftmaxBackwardOptions, type SoftmaxOptions } from './ops/softmax.js';
export { embedding, embeddingBackward, type EmbeddingBackwardOptions, type EmbeddingGrads, type EmbeddingOptions } from './ops/embedding.js';
export { gemm, gemmBackward, type GemmBackwardOptions, type GemmGrads, gemmInt8, type GemmInt8Options, type GemmOptions, linear, type LinearActivation, linearBackward, type LinearBackwardOptions, type LinearGrads, linearInt8, type LinearInt8Options, type LinearOptions } from './ops/matmul.js';
export { type ActivationName, type ActivationOptions, biasAct, biasActBackward, type BiasActBackwardOptions, type BiasActGrads, type BiasActOptions, gelu, geluBackward, type GeluBackwardOptions, type GeluOptions, relu, reluBackward, silu, siluBackward } from './ops/activation.js';
export { biasDropoutResidual, biasDropoutResidualBackward, type BiasDropoutResidualBackwardOptions, type BiasDropoutResidualGrads, type BiasDropoutResidualOptions, dropout, dropoutBackward, type DropoutBackwardOptions, type DropoutOptions } from './ops/dropout.js';
export { dequantize, type DequantizeOptions, fakeQuant, fakeQuantBackward, type FakeQuantBackwardOptions, type FakeQuantGrads, maxClip, type MaxClipOptions, quantize, type QuantOptions } from './ops/quant.js';
export { type FusedAttention, fusedAttention, fusedAttentionBackward, type FusedAttentionBackwardOptions, type FusedAttentionGrads, type FusedAttentionOptions, type FusedAttentionResult } from './ops/attention.js';
export { type DecoderBackwardOptions, type DecoderForwardOptions, type LayerActivation, type LayerForwardOptions, type LayerNormKind, type QuantConfig, TransformerDecoderLayer, type TransformerDecoderLayerConfig, TransformerEncoderLayer, type TransformerLayerConfig } from './layers/transformer.js';
export { crossEntropy, crossEntropyBackward, type CrossEntropyBackwardOptions, type CrossEntropyOptions, type CrossEntropyReduction, type CrossEntropyResult, type MileOptions } from './ops/crossent.js';
export { adamw, type AdamWOpOptions, gradNorm, type GradNormResult } from './ops/optim.js';
export { AdamW, type AdamWOptions, type AdamWState, type AdamWStepOptions, type AdamWStepResult } from './train/adamw.js';
export { DynamicLossScaler, type DynamicLossScalerOptions, type DynamicLossScalerState } from './train/loss-scaler.js';
export { inverseSqrt, type InverseSqrtOptions, type Schedule, warmupCosine, type WarmupCosineOptions } from './train/schedules.js';
export { Embedding, type EmbeddingConfig, Norm, type NormConfig } from './layers/embedding.js';
export { type CalibrateOptions, type GenerateOptions, type LossOptions, type LossResult } from './models/base.js';
export { type LMForwardOptions, TransformerLM, type TransformerLMConfig } from './models/lm.js';
export { exportInt8 } from './models/export.js';
export { type Seq2SeqConfig, type Seq2SeqForwardOptions, Seq2SeqTransformer } from './models/seq2seq.js';
export { fromTorchTransformerLayer, type TorchLayerKind, toTorchTransformerLayer } from './layers/torchNames.js';
export { decodeSafetensors, encodeSafetensors, loadSafetensors, type SafetensorsContents, saveSafetensors, type TensorMap } from './io/safetensors.js';
export { type Batch, type DataSource, TokenBatcher, type TokenBatcherOptions } from './train/data.js';
export { type HistoryEntry, lossCurveSvg, type StepResult, type TrainableModel, Trainer, type TrainerOptions } from './train/trainer.js';
export { type EncoderForwardOptions, TransformerEncoder, type TransformerEncoderConfig } from './models/encoder.js';

// exportInt8: an int8 inference copy of a model or layer trained with quantization-aware training
// (or calibrated): the same config and parameters, its layers' products on the int8 kernel
// (native/layers/transformer_layer.h, "int8 inference"). The source is left as it was.
import { describe, fail } from '../errors.js';
import { TransformerDecoderLayer, TransformerEncoderLayer } from '../layers/transformer.js';
import { ModelBase } from './base.js';

type Exportable = ModelBase | TransformerEncoderLayer | TransformerDecoderLayer;

/**
 * An int8 inference copy of `source` (a model, or a Transformer layer) with quantization enabled:
 * each linear's weight becomes int8 codes with per-output-channel (or per-tensor) max-abs clips at
 * the QAT config's weight bits, its input is quantized with the learned (or calibrated) input clip
 * and the product runs int8 x int8 -> int32 with dequantization, bias and activation fused, FFN1's
 * output requantized straight into FFN2's input. Norms, attention, the residual stream, the
 * embedding and the tied output head stay f32. The copy runs forwards (and losses without backward,
 * and generation); save() writes its int8 weights with their clips, fromFile() reads them back.
 */
export function exportInt8<T extends Exportable>(source: T): T {
  const op = 'exportInt8';
  if (!(source instanceof ModelBase || source instanceof TransformerEncoderLayer || source instanceof TransformerDecoderLayer))
    fail('ERR_ARG', `${op}: expected a model or a Transformer layer but received ${describe(source)}`);
  const quant = source.quantConfig;
  if (!quant) fail('ERR_ARG', `${op}: quantization is off: enableQuant() first, then fine-tune (QAT) or calibrate`);
  if (source.int8) fail('ERR_ARG', `${op}: the source is already an int8 model`);
  const config = (source as unknown as { config: object }).config;
  const Ctor = source.constructor as new (config: object) => T;
  const copy = source instanceof TransformerDecoderLayer
    ? new Ctor({ ...config, crossAttention: source.crossAttention })
    : new Ctor(config);
  try {
    copy.enableQuant(quant);
    copy.loadParameters(source.parameters());
    copy._toInt8();
    return copy;
  } catch (e) {
    copy.dispose();
    throw e;
  }
}

// Symmetric int8 quantization (native/ops/quant.h, REFERENCES.md §1, docs/api.md "Quantization"):
// scale s = clipMax / 127, q = clamp(round(x / s), -127, 127) rounded half away from zero,
// dequantize q * s, fakeQuant(x) = dequantize(quantize(x)) in x's dtype, and the PACT backward.
// Per tensor (clipMax a number or a 1-element f32 tensor) or per channel (clipMax f32 [C] along
// `axis`, default 0: the output channels of a [out, in] weight). All arithmetic is f32:
// r = x * f32(127 / clipMax), then rounded; dequantize multiplies by f32(clipMax / 127).
import type { DType } from '../dtype.js';
import { describe, fail } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { defineOp, enumOpt, F32_MAX, intOpt, optionsArg, outArg, type Prepared, tensorArg } from './common.js';

export interface QuantOptions {
  /** Per-channel quantization along this dim of x (negative counts from the end; default 0 when
   * clipMax has more than one element). Leave it out for per-tensor quantization. */
  axis?: number;
  /** Write the result here instead of a new tensor (same shape as x; i8 for quantize, x's dtype for fakeQuant). */
  out?: Tensor;
}

export interface DequantizeOptions extends QuantOptions {
  /** The float dtype of the result (default 'f32'); ignored when `out` is given (its dtype is used). */
  dtype?: 'f32' | 'f16' | 'bf16';
}

export interface FakeQuantBackwardOptions {
  /** The forward's axis. */
  axis?: number;
}

export interface FakeQuantGrads {
  /** dy where |x| < clipMax, else 0; x's shape and dtype. */
  dx: Tensor;
  /** f32, clipMax's shape ([1] when clipMax is a number): the sum of dy over x >= clipMax minus the sum over x <= -clipMax, per channel. */
  dclip: Tensor;
}

export interface MaxClipOptions {
  /** Per channel along this dim (negative counts from the end); leave it out for one clip over the tensor. */
  axis?: number;
  /** Code width the clip is for (2..8, default 8): the clip is widened by 127 / (2^(bits-1) - 1), so
   * quantize / fakeQuant with it use codes within ±(2^(bits-1) - 1) (7 bits: ±63, the fast int8 product without VNNI). */
  bits?: number;
  /** Write the clips here ([C] or [1], f32). */
  out?: Tensor;
}

interface Clip {
  clip: Tensor | number;
  axis: number | null;
}

/** clipMax and axis: a finite number > 0 (per tensor, no axis) or a tensor (per tensor when it has
 * one element and no axis is given, else per channel along axis, default 0). */
function clipArg(clipMax: unknown, axis: unknown, op: string, x: Tensor): Clip {
  if (typeof clipMax === 'number') {
    if (!(clipMax > 0 && clipMax <= F32_MAX)) fail('ERR_ARG', `${op}: expected clipMax to be a finite number > 0 but received ${describe(clipMax)}`);
    if (axis !== undefined) fail('ERR_ARG', `${op}: a per-channel axis needs clipMax as an f32 tensor [C], not a number`);
    return { clip: clipMax, axis: null };
  }
  if (!(clipMax instanceof Tensor)) fail('ERR_ARG', `${op}: expected clipMax to be a number or an f32 Tensor but received ${describe(clipMax)}`);
  const clip = tensorArg(clipMax, op, 'clipMax');
  if (axis === undefined && clip.numel === 1) return { clip, axis: null };
  const n = x.shape.length;
  if (n === 0) fail('ERR_SHAPE', `${op}: per-channel quantization needs x with at least 1 dim but received shape []`);
  if (axis === undefined) return { clip, axis: 0 };
  if (typeof axis !== 'number' || !Number.isInteger(axis) || axis < -n || axis >= n)
    fail('ERR_ARG', `${op}: expected axis to be an integer in [${-n}, ${n - 1}] for x of shape [${x.shape.join(', ')}] but received ${describe(axis)}`);
  return { clip, axis };
}

const MODE = { quantize: 0, dequantize: 1, fakeQuant: 2 } as const;

function fwd(op: keyof typeof MODE, x: Tensor, clipMax: unknown, opts: DequantizeOptions | undefined): Prepared<Tensor> {
  tensorArg(x, op, op === 'dequantize' ? 'q' : 'x');
  const o = optionsArg<DequantizeOptions>(opts, op);
  const c = clipArg(clipMax, o.axis, op, x);
  const dtype: DType = op === 'quantize' ? 'i8' : op === 'dequantize' ? enumOpt(o.dtype, op, 'dtype', 'f32', ['f32', 'f16', 'bf16']) : x.dtype;
  const fresh: Tensor[] = [];
  const y = outArg(o.out, op, x.shape, dtype, x.device, fresh);
  return { run: (a) => native.quant_fwd(MODE[op], x, c.clip, c.axis, y, a), result: y, fresh };
}

function bwd(dy: Tensor, x: Tensor, clipMax: unknown, opts: FakeQuantBackwardOptions | undefined): Prepared<FakeQuantGrads> {
  const op = 'fakeQuantBackward';
  tensorArg(dy, op, 'dy');
  tensorArg(x, op, 'x');
  const o = optionsArg<FakeQuantBackwardOptions>(opts, op);
  const c = clipArg(clipMax, o.axis, op, x);
  const fresh: Tensor[] = [];
  const dx = outArg(undefined, op, dy.shape, dy.dtype, dy.device, fresh);
  const dclip = outArg(undefined, op, typeof c.clip === 'number' ? [1] : c.clip.shape, 'f32', x.device, fresh);
  return { run: (a) => native.quant_bwd(dy, x, c.clip, c.axis, dx, dclip, a), result: { dx, dclip }, fresh };
}

/** q = clamp(round(x * (127 / clipMax)), -127, 127) as i8, rounded half away from zero (NaN gives 0). x: f32/f16/bf16. */
export const quantize = defineOp((x: Tensor, clipMax: number | Tensor, opts?: QuantOptions) => fwd('quantize', x, clipMax, opts));
/** x = q * (clipMax / 127) from an i8 tensor, as f32 or `dtype`. */
export const dequantize = defineOp((q: Tensor, clipMax: number | Tensor, opts?: DequantizeOptions) => fwd('dequantize', q, clipMax, opts));
/** dequantize(quantize(x)) in x's dtype, computed in f32; exact on the grid k * clipMax / 127; NaN stays NaN. */
export const fakeQuant = defineOp((x: Tensor, clipMax: number | Tensor, opts?: QuantOptions) => fwd('fakeQuant', x, clipMax, opts));
/** PACT straight-through gradients of fakeQuant: dx = dy where |x| < clipMax; dclip gathers dy where x >= clipMax and -dy where x <= -clipMax. */
export const fakeQuantBackward = defineOp((dy: Tensor, x: Tensor, clipMax: number | Tensor, opts?: FakeQuantBackwardOptions) =>
  bwd(dy, x, clipMax, opts));

function prepareMaxClip(x: Tensor, opts: MaxClipOptions | undefined): Prepared<Tensor> {
  const op = 'maxClip';
  tensorArg(x, op, 'x');
  const o = optionsArg<MaxClipOptions>(opts, op);
  const bits = intOpt(o.bits, op, 'bits', 8, 2, 8);
  let axis: number | null = null;
  if (o.axis !== undefined) {
    if (x.ndim === 0) fail('ERR_SHAPE', `${op}: a per-channel axis needs x with at least 1 dim but received shape []`);
    axis = intOpt(o.axis, op, 'axis', 0, -x.ndim, x.ndim - 1);
  }
  const fresh: Tensor[] = [];
  const c = axis === null ? 1 : x.shape[axis < 0 ? axis + x.ndim : axis]!;
  const y = outArg(o.out, op, [c], 'f32', x.device, fresh);
  return { run: (a) => native.quant_max_clip(x, axis, 2 ** (bits - 1) - 1, y, a), result: y, fresh };
}

/**
 * Max calibration: the smallest clipMax that saturates nothing, max |x| per channel along `axis`
 * (or over the tensor), floored at the smallest normal f32 so an all-zero channel gets a valid
 * clip; NaN is ignored. With `bits` < 8 it is widened by 127 / (2^(bits-1) - 1). f32 [C] or [1].
 */
export const maxClip = defineOp((x: Tensor, opts?: MaxClipOptions) => prepareMaxClip(x, opts));

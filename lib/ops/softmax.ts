// softmax over the last dim with an additive mask and causal masking, forward and backward
// (native/ops/softmax.h).
import { fail } from '../errors.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { boolOpt, defineOp, optionsArg, optTensorArg, outArg, type Prepared, tensorArg } from './common.js';

export interface SoftmaxOptions {
  /**
   * Additive f32 mask, broadcastable to x by numpy rules (dims aligned at the end, each equal
   * to x's or 1), e.g. [Sk], [Sq, Sk], [B, 1, Sq, Sk], [B, H, 1, Sk]. -Infinity hides a column.
   */
  mask?: Tensor | null;
  /** x is [..., Sq, Sk]: query i sees keys j <= i + Sk - Sq (bottom-right aligned when Sq != Sk). */
  causal?: boolean;
  /** Write the result here instead of a new tensor (same shape and dtype as x; may be x itself). */
  out?: Tensor;
}

export interface SoftmaxBackwardOptions {
  /** Write dx here instead of a new tensor (same shape and dtype as y; may be dy itself). */
  out?: Tensor;
}

/**
 * y = exp(x + mask - max) / sum(exp(x + mask - max)) over the last dim, computed in f32 for
 * f16/bf16 storage. A row that sees no column (every visible x + mask is -Infinity, or the
 * causal rule leaves none, as for queries i < Sq - Sk) gives zeros, not NaN, and a zero
 * gradient; a row holding NaN or +Infinity gives NaN.
 */
export const softmax = defineOp((x: Tensor, opts?: SoftmaxOptions): Prepared<Tensor> => {
  const op = 'softmax';
  tensorArg(x, op, 'x');
  const o = optionsArg<SoftmaxOptions>(opts, op);
  const mask = optTensorArg(o.mask, op, 'mask');
  const causal = boolOpt(o.causal, op, 'causal', false);
  if (mask && mask.dtype !== 'f32') fail('ERR_DTYPE', `${op}: expected f32 tensor for mask but received ${mask.dtype}`);
  const fresh: Tensor[] = [];
  const y = outArg(o.out, op, x.shape, x.dtype, x.device, fresh);
  return { run: (a) => native.softmax_fwd(x, mask, y, causal, a), result: y, fresh };
});

/** dx = y * (dy - sum(dy * y)) over the last dim, from the forward's output y. */
export const softmaxBackward = defineOp((dy: Tensor, y: Tensor, opts?: SoftmaxBackwardOptions): Prepared<Tensor> => {
  const op = 'softmaxBackward';
  tensorArg(dy, op, 'dy');
  tensorArg(y, op, 'y');
  const o = optionsArg<SoftmaxBackwardOptions>(opts, op);
  const fresh: Tensor[] = [];
  const dx = outArg(o.out, op, y.shape, y.dtype, y.device, fresh);
  return { run: (a) => native.softmax_bwd(dy, y, dx, a), result: dx, fresh };
});

// dropout and bias + dropout + residual, forward and backward (native/ops/dropout.h).
// The mask is dropout's 16-bit Philox4x32-10 stream (native/core/philox.h, docs/api.md): element
// i is kept iff h_{offset + i} >= t = round(p * 65536) (p rounded to f32), and kept values are
// multiplied by float(65536 / (65536 - t)), so the drop probability is t / 65536 (within 7.7e-6
// of p). p = 0 is the identity (no random numbers), p = 1 gives zeros. The backward recomputes
// the mask from (seed, offset).
import { fail } from '../errors.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { boolOpt, defineOp, numberOpt, optionsArg, optTensorArg, outArg, type Prepared, rowsCols, offsetOpt, seedOpt, tensorArg } from './common.js';

/** Dropout settings shared by every op with a dropout: probability, seed and stream offset. */
export interface DropoutSettings {
  p: number;
  seed: number | bigint;
  offset: number | bigint;
}

/** Checks p (a number in [0, 1]), the seed (required when p > 0) and the offset. */
export function dropoutSettings(p: unknown, seed: unknown, offset: unknown, op: string, name = 'dropout'): DropoutSettings {
  const pv = numberOpt(p, op, name, 0, 0, 1);
  return { p: pv, seed: seedOpt(seed, op, pv > 0), offset: offsetOpt(offset, op) };
}

export interface DropoutOptions {
  /** Element offset into the Philox stream (default 0), e.g. to give each layer its own part. */
  offset?: number | bigint;
  /** Write the result here instead of a new tensor (same shape and dtype as x). */
  out?: Tensor;
}

export interface DropoutBackwardOptions {
  offset?: number | bigint;
}

export interface BiasDropoutResidualOptions {
  /** Drop probability in [0, 1] (default 0: no dropout). */
  dropout?: number;
  /** Philox seed, required when dropout > 0 (integer in [0, 2^53) or a bigint below 2^64). */
  seed?: number | bigint;
  offset?: number | bigint;
  out?: Tensor;
}

export interface BiasDropoutResidualBackwardOptions {
  /** The forward's dropout (default 0), seed and offset: the mask is recomputed from them. */
  dropout?: number;
  seed?: number | bigint;
  offset?: number | bigint;
  /** Also return dbias (default true). */
  hasBias?: boolean;
}

export interface BiasDropoutResidualGrads {
  dx: Tensor;
  /** Sum of dx over all but the last dim; only with `hasBias` (the default). */
  dbias?: Tensor;
  /** The gradient of the residual: dy itself, as a view that can be disposed on its own. */
  dresidual: Tensor;
}

function dropoutFwd(x: Tensor, p: unknown, seed: unknown, opts: DropoutOptions | undefined): Prepared<Tensor> {
  const op = 'dropout';
  tensorArg(x, op, 'x');
  if (p === undefined) fail('ERR_ARG', `${op}: expected p to be a number in [0, 1] but received undefined`);
  const o = optionsArg<DropoutOptions>(opts, op);
  const s = dropoutSettings(p, seed, o.offset, op, 'p');
  const fresh: Tensor[] = [];
  const y = outArg(o.out, op, x.shape, x.dtype, x.device, fresh);
  return { run: (a) => native.dropout_fwd(x, null, null, y, s.p, s.seed, s.offset, a), result: y, fresh };
}

function dropoutBwd(dy: Tensor, p: unknown, seed: unknown, opts: DropoutBackwardOptions | undefined): Prepared<Tensor> {
  const op = 'dropoutBackward';
  tensorArg(dy, op, 'dy');
  if (p === undefined) fail('ERR_ARG', `${op}: expected p to be a number in [0, 1] but received undefined`);
  const o = optionsArg<DropoutBackwardOptions>(opts, op);
  const s = dropoutSettings(p, seed, o.offset, op, 'p');
  const fresh: Tensor[] = [];
  const dx = outArg(undefined, op, dy.shape, dy.dtype, dy.device, fresh);
  return { run: (a) => native.dropout_bwd(dy, dx, null, s.p, s.seed, s.offset, a), result: dx, fresh };
}

function bdrFwd(x: Tensor, bias: Tensor | null | undefined, residual: Tensor | null | undefined,
  opts: BiasDropoutResidualOptions | undefined): Prepared<Tensor> {
  const op = 'biasDropoutResidual';
  tensorArg(x, op, 'x');
  const b = optTensorArg(bias, op, 'bias');
  const r = optTensorArg(residual, op, 'residual');
  const o = optionsArg<BiasDropoutResidualOptions>(opts, op);
  const s = dropoutSettings(o.dropout, o.seed, o.offset, op);
  const fresh: Tensor[] = [];
  const y = outArg(o.out, op, x.shape, x.dtype, x.device, fresh);
  return { run: (a) => native.dropout_fwd(x, b, r, y, s.p, s.seed, s.offset, a), result: y, fresh };
}

function bdrBwd(dy: Tensor, opts: BiasDropoutResidualBackwardOptions | undefined): Prepared<BiasDropoutResidualGrads> {
  const op = 'biasDropoutResidualBackward';
  tensorArg(dy, op, 'dy');
  const o = optionsArg<BiasDropoutResidualBackwardOptions>(opts, op);
  const s = dropoutSettings(o.dropout, o.seed, o.offset, op);
  const hasBias = boolOpt(o.hasBias, op, 'hasBias', true);
  if (hasBias && dy.shape.length === 0) fail('ERR_SHAPE', `${op}: expected dy with at least 1 dim for dbias but received shape []`);
  const fresh: Tensor[] = [];
  const [, cols] = rowsCols(dy);
  const dx = outArg(undefined, op, dy.shape, dy.dtype, dy.device, fresh);
  const dbias = hasBias ? outArg(undefined, op, [cols], dy.dtype, dy.device, fresh) : null;
  const dresidual = dy.reshape(dy.shape);
  fresh.push(dresidual);
  return {
    run: (a) => native.dropout_bwd(dy, dx, dbias, s.p, s.seed, s.offset, a),
    result: dbias ? { dx, dbias, dresidual } : { dx, dresidual },
    fresh,
  };
}

/** y = dropout(x): elements dropped with probability p (as t / 65536, t = round(p * 65536)), kept ones scaled by 65536 / (65536 - t). */
export const dropout = defineOp((x: Tensor, p: number, seed?: number | bigint, opts?: DropoutOptions) => dropoutFwd(x, p, seed, opts));
/** dx = dy * mask * 65536 / (65536 - t), the mask recomputed from (p, seed, offset). */
export const dropoutBackward = defineOp((dy: Tensor, p: number, seed?: number | bigint, opts?: DropoutBackwardOptions) =>
  dropoutBwd(dy, p, seed, opts));
/** y = residual + dropout(x + bias): the attention / FFN2 epilogue. x, residual: [..., C]; bias: [C]. */
export const biasDropoutResidual = defineOp((x: Tensor, bias: Tensor | null | undefined, residual: Tensor | null | undefined,
  opts?: BiasDropoutResidualOptions) => bdrFwd(x, bias, residual, opts));
/** Gradients of biasDropoutResidual: dx, dbias (sum of dx over rows) and dresidual (= dy). */
export const biasDropoutResidualBackward = defineOp((dy: Tensor, opts?: BiasDropoutResidualBackwardOptions) => bdrBwd(dy, opts));

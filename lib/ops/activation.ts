// gelu / relu / silu and bias + activation + dropout (the FFN1 epilogue), forward and backward
// (native/ops/activation.h). Computed in f32 for every storage dtype.
import { fail } from '../errors.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { dropoutSettings } from './dropout.js';
import { defineOp, enumOpt, optionsArg, outArg, type Prepared, rowsCols, tensorArg } from './common.js';

/** The activations of biasAct; 'gelu' is the erf form, 'gelu_tanh' the tanh approximation. */
export type ActivationName = 'gelu' | 'gelu_tanh' | 'relu' | 'silu';
const ACTIVATIONS: readonly ActivationName[] = ['gelu', 'gelu_tanh', 'relu', 'silu'];
/** Codes of native/ops/activation.h Activation. */
const ACT_CODE: Record<ActivationName, number> = { relu: 1, gelu: 2, gelu_tanh: 3, silu: 4 };

export interface ActivationOptions {
  /** Write the result here instead of a new tensor (same shape and dtype as x). */
  out?: Tensor;
}

export interface GeluOptions extends ActivationOptions {
  /** 'none' (default): x Phi(x) with the exact erf, as PyTorch; 'tanh': the tanh approximation. */
  approximate?: 'none' | 'tanh';
}

export interface GeluBackwardOptions {
  approximate?: 'none' | 'tanh';
}

export interface BiasActOptions {
  activation: ActivationName;
  /** Drop probability in [0, 1] applied after the activation (default 0). */
  dropout?: number;
  /** Philox seed, required when dropout > 0 (integer in [0, 2^53) or a bigint below 2^64). */
  seed?: number | bigint;
  /** Element offset into the Philox stream (default 0). */
  offset?: number | bigint;
  out?: Tensor;
}

export interface BiasActBackwardOptions {
  activation: ActivationName;
  /** The forward's dropout, seed and offset: the mask is recomputed from them. */
  dropout?: number;
  seed?: number | bigint;
  offset?: number | bigint;
}

export interface BiasActGrads {
  dx: Tensor;
  /** Sum of dx over all but the last dim. */
  dbias: Tensor;
}

function geluCode(v: unknown, op: string): number {
  return enumOpt(v, op, 'approximate', 'none', ['none', 'tanh'] as const) === 'tanh' ? ACT_CODE.gelu_tanh : ACT_CODE.gelu;
}

function activationCode(v: unknown, op: string): number {
  if (v === undefined) fail('ERR_ARG', `${op}: expected activation to be one of ${ACTIVATIONS.map((a) => `'${a}'`).join(', ')}`);
  return ACT_CODE[enumOpt(v, op, 'activation', 'gelu', ACTIVATIONS)];
}

function actFwd(op: string, x: Tensor, act: number, o: ActivationOptions): Prepared<Tensor> {
  tensorArg(x, op, 'x');
  const fresh: Tensor[] = [];
  const y = outArg(o.out, op, x.shape, x.dtype, x.device, fresh);
  return { run: (a) => native.bias_act_fwd(x, null, y, act, 0, 0, 0, a), result: y, fresh };
}

function actBwd(op: string, dy: Tensor, x: Tensor, act: number): Prepared<Tensor> {
  tensorArg(dy, op, 'dy');
  tensorArg(x, op, 'x');
  const fresh: Tensor[] = [];
  const dx = outArg(undefined, op, x.shape, x.dtype, x.device, fresh);
  return { run: (a) => native.bias_act_bwd(dy, x, null, dx, null, act, 0, 0, 0, a), result: dx, fresh };
}

function biasActFwd(x: Tensor, bias: Tensor, opts: BiasActOptions | undefined): Prepared<Tensor> {
  const op = 'biasAct';
  tensorArg(x, op, 'x');
  tensorArg(bias, op, 'bias');
  const o = optionsArg<BiasActOptions>(opts, op);
  const act = activationCode(o.activation, op);
  const s = dropoutSettings(o.dropout, o.seed, o.offset, op);
  const fresh: Tensor[] = [];
  const y = outArg(o.out, op, x.shape, x.dtype, x.device, fresh);
  return { run: (a) => native.bias_act_fwd(x, bias, y, act, s.p, s.seed, s.offset, a), result: y, fresh };
}

function biasActBwd(dy: Tensor, x: Tensor, bias: Tensor, opts: BiasActBackwardOptions | undefined): Prepared<BiasActGrads> {
  const op = 'biasActBackward';
  tensorArg(dy, op, 'dy');
  tensorArg(x, op, 'x');
  tensorArg(bias, op, 'bias');
  const o = optionsArg<BiasActBackwardOptions>(opts, op);
  const act = activationCode(o.activation, op);
  const s = dropoutSettings(o.dropout, o.seed, o.offset, op);
  const fresh: Tensor[] = [];
  const [, cols] = rowsCols(x);
  const dx = outArg(undefined, op, x.shape, x.dtype, x.device, fresh);
  const dbias = outArg(undefined, op, [cols], x.dtype, x.device, fresh);
  return { run: (a) => native.bias_act_bwd(dy, x, bias, dx, dbias, act, s.p, s.seed, s.offset, a), result: { dx, dbias }, fresh };
}

/** GELU, x Phi(x); `approximate: 'tanh'` gives the tanh form. Elementwise, any shape. */
export const gelu = defineOp((x: Tensor, opts?: GeluOptions) => {
  const o = optionsArg<GeluOptions>(opts, 'gelu');
  return actFwd('gelu', x, geluCode(o.approximate, 'gelu'), o);
});
/** dx = dy * gelu'(x). */
export const geluBackward = defineOp((dy: Tensor, x: Tensor, opts?: GeluBackwardOptions) =>
  actBwd('geluBackward', dy, x, geluCode(optionsArg<GeluBackwardOptions>(opts, 'geluBackward').approximate, 'geluBackward')));
/** max(x, 0); NaN stays NaN. */
export const relu = defineOp((x: Tensor, opts?: ActivationOptions) => actFwd('relu', x, ACT_CODE.relu, optionsArg<ActivationOptions>(opts, 'relu')));
/** dx = dy where x > 0, else 0. */
export const reluBackward = defineOp((dy: Tensor, x: Tensor) => actBwd('reluBackward', dy, x, ACT_CODE.relu));
/** SiLU (swish), x * sigmoid(x). */
export const silu = defineOp((x: Tensor, opts?: ActivationOptions) => actFwd('silu', x, ACT_CODE.silu, optionsArg<ActivationOptions>(opts, 'silu')));
/** dx = dy * s (1 + x (1 - s)), s = sigmoid(x). */
export const siluBackward = defineOp((dy: Tensor, x: Tensor) => actBwd('siluBackward', dy, x, ACT_CODE.silu));
/** y = dropout(act(x + bias)): the FFN1 epilogue. x: [..., C]; bias: [C]. */
export const biasAct = defineOp((x: Tensor, bias: Tensor, opts: BiasActOptions) => biasActFwd(x, bias, opts));
/** Gradients of biasAct: dx = dy * mask * scale * act'(x + bias) (mask and scale as in the forward) and dbias = sum of dx over rows. */
export const biasActBackward = defineOp((dy: Tensor, x: Tensor, bias: Tensor, opts: BiasActBackwardOptions) =>
  biasActBwd(dy, x, bias, opts));

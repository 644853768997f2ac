// Fused multi-tensor AdamW and the global L2 norm of a list of tensors (native/ops/optim.h).
// adamw updates every listed parameter in one native call (threads split the total element
// count); gradNorm accumulates in double in a fixed order, so it does not depend on the thread count.
import { describe, fail } from '../errors.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { defineOp, F32_MAX, intOpt, numberOpt, optionsArg, type Prepared, tensorArg } from './common.js';


export interface AdamWOpOptions {
  /** Learning rate, >= 0 (required). */
  lr: number;
  /** Decay rate of the first moment, in [0, 1) (default 0.9). */
  beta1?: number;
  /** Decay rate of the second moment, in [0, 1) (default 0.999). */
  beta2?: number;
  /** Added to the denominator, >= 0 (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay, >= 0 (default 0.01): p *= 1 - lr * weightDecay before the update. */
  weightDecay?: number;
  /** The number of this update, an integer >= 1 (required): bias corrections use beta^step. */
  step: number;
  /** Every gradient is multiplied by this first (default 1): loss-scale unscaling and clipping. */
  gradScale?: number;
  /** Whether weight decay applies, for all parameters or one flag per parameter (default true). */
  decay?: boolean | readonly boolean[];
  /** f16/bf16 tensors written with the updated parameters, rounded (one per parameter, or null). */
  copies?: Tensor | null | readonly (Tensor | null)[];
}

export interface GradNormResult {
  /** sqrt(sum of x² over every element of every tensor); NaN or Infinity if one is. */
  norm: number;
  /** Whether every element is finite (no NaN, no ±Infinity). */
  finite: boolean;
}

/** A Tensor or an array of Tensors, as a checked array. */
function tensorList(x: unknown, op: string, name: string): Tensor[] {
  if (Array.isArray(x)) return x.map((t, i) => tensorArg(t, op, `${name}[${i}]`));
  if (x !== null && typeof x === 'object' && !ArrayBuffer.isView(x)) return [tensorArg(x, op, name)];
  return fail('ERR_ARG', `${op}: expected a Tensor or an array of Tensors for ${name} but received ${describe(x)}`);
}

function checkLength(l: { length: number }, n: number, op: string, name: string): void {
  if (l.length !== n) fail('ERR_ARG', `${op}: expected ${n} entries in ${name} (one per parameter) but received ${l.length}`);
}

function betaOpt(v: unknown, op: string, name: string, dflt: number): number {
  const b = numberOpt(v, op, name, dflt, 0, 1);
  if (b === 1) fail('ERR_ARG', `${op}: expected ${name} to be a number in [0, 1) but received number 1`);
  return b;
}

function adamwPrepare(params: unknown, grads: unknown, m: unknown, v: unknown, opts: unknown): Prepared<void> {
  const op = 'adamw';
  const p = tensorList(params, op, 'params');
  const n = p.length;
  const g = tensorList(grads, op, 'grads');
  const mm = tensorList(m, op, 'm');
  const vv = tensorList(v, op, 'v');
  checkLength(g, n, op, 'grads');
  checkLength(mm, n, op, 'm');
  checkLength(vv, n, op, 'v');
  if (opts === undefined) fail('ERR_ARG', `${op}: expected options with lr and step but received undefined`);
  const o = optionsArg<AdamWOpOptions>(opts, op);
  if (o.lr === undefined) fail('ERR_ARG', `${op}: expected options.lr (the learning rate)`);
  if (o.step === undefined) fail('ERR_ARG', `${op}: expected options.step (the number of this update, from 1)`);
  const lr = numberOpt(o.lr, op, 'lr', 0, 0, F32_MAX);
  const beta1 = betaOpt(o.beta1, op, 'beta1', 0.9);
  const beta2 = betaOpt(o.beta2, op, 'beta2', 0.999);
  const eps = numberOpt(o.eps, op, 'eps', 1e-8, 0, F32_MAX);
  const weightDecay = numberOpt(o.weightDecay, op, 'weightDecay', 0.01, 0, F32_MAX);
  const step = intOpt(o.step, op, 'step', 1, 1, Number.MAX_SAFE_INTEGER);
  const gradScale = numberOpt(o.gradScale, op, 'gradScale', 1, 0, F32_MAX);
  let decay: boolean[];
  if (o.decay === undefined || typeof o.decay === 'boolean') {
    decay = new Array<boolean>(n).fill(o.decay ?? true);
  } else if (Array.isArray(o.decay)) {
    checkLength(o.decay, n, op, 'decay');
    decay = o.decay.map((d, i) => {
      if (typeof d !== 'boolean') fail('ERR_ARG', `${op}: expected decay[${i}] to be a boolean but received ${describe(d)}`);
      return d;
    });
  } else {
    return fail('ERR_ARG', `${op}: expected decay to be a boolean or an array of booleans but received ${describe(o.decay)}`);
  }
  let copies: (Tensor | null)[];
  if (o.copies === undefined || o.copies === null) {
    copies = new Array<Tensor | null>(n).fill(null);
  } else if (Array.isArray(o.copies)) {
    checkLength(o.copies, n, op, 'copies');
    copies = o.copies.map((c, i) => (c === null ? null : tensorArg(c, op, `copies[${i}]`)));
  } else {
    copies = [tensorArg(o.copies, op, 'copies')];
    checkLength(copies, n, op, 'copies');
  }
  return {
    run: (a) => {
      // written in place: caches derived from these tensors' data (e.g. linear's weights) go stale
      for (const t of [...p, ...mm, ...vv, ...copies]) if (t) t._storage.version++;
      return native.adamw(p, g, mm, vv, copies, decay, lr, beta1, beta2, eps, weightDecay, step, gradScale, a);
    },
    result: undefined,
    fresh: [],
  };
}

function gradNormPrepare(tensors: unknown): Prepared<GradNormResult> {
  const ts = tensorList(tensors, 'gradNorm', 'tensors');
  const out = new Float64Array(1);
  const result: GradNormResult = { norm: NaN, finite: false };
  // the sum of squares cannot overflow in double, so it is finite iff every element is
  const finish = (): void => {
    result.norm = Math.sqrt(out[0]!);
    result.finite = Number.isFinite(out[0]!);
  };
  return {
    run: (a) => {
      const r = native.grad_norm(ts, out, a);
      if (r) return r.then(finish);
      finish();
      return undefined;
    },
    result,
    fresh: [],
  };
}

/**
 * Fused AdamW (torch.optim.AdamW's update, decoupled weight decay), in place, over a list of
 * parameters in one call: params, m, v f32; grads f32, f16 or bf16; optional f16/bf16 `copies`
 * receive the updated parameters rounded. Single tensors are accepted in place of the arrays.
 */
export const adamw = defineOp((params: Tensor | readonly Tensor[], grads: Tensor | readonly Tensor[], m: Tensor | readonly Tensor[],
  v: Tensor | readonly Tensor[], opts: AdamWOpOptions) => adamwPrepare(params, grads, m, v, opts));

/** The L2 norm over every element of a list of f32/f16/bf16 tensors (accumulated in double), and whether all are finite. */
export const gradNorm = defineOp((tensors: Tensor | readonly Tensor[]) => gradNormPrepare(tensors));

// crossEntropy and its backward (native/ops/crossent.h): fused log-softmax + NLL over the last
// dim with label smoothing, an ignored target index and MiLe weighting (REFERENCES.md §4).
import { describe, fail } from '../errors.js';
import type { NativeTensor } from '../native.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { defineOp, enumOpt, intOpt, numberOpt, optionsArg, outArg, type Prepared, tensorArg } from './common.js';

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

export type CrossEntropyReduction = 'mean' | 'sum' | 'none';

/** MiLe (Su et al., NAACL 2024): rows weighted by (sigma + entropy)^gamma, normalized over the batch. */
export interface MileOptions {
  /** Exponent of the weight (default 1); 0 gives plain cross-entropy, bit for bit. */
  gamma?: number;
  /** Added to the entropy before the power (default 1); must be > 0. */
  sigma?: number;
}

export interface CrossEntropyOptions {
  /** eps in [0, 1) (default 0): CE = (1 - eps)·(-log p_y) + eps·mean_v(-log p_v), as PyTorch's label_smoothing. */
  labelSmoothing?: number;
  /** Rows whose target equals this integer (default -100) give loss 0 and gradient 0 and are not counted. */
  ignoreIndex?: number;
  /** Weight each row's CE by alpha·(sigma + H)^gamma (H its entropy, alpha = 1 / their mean over the counted rows). */
  mile?: MileOptions;
  /** 'mean' (default) over the counted rows, 'sum', or 'none' (also returns the per-row losses; `loss` is still the mean). */
  reduction?: CrossEntropyReduction;
}

export interface CrossEntropyResult {
  /** Mean of the row losses over the counted rows ('mean', 'none'; 0 when no row counts) or their sum ('sum'). */
  loss: number;
  /** Rows whose target is not ignoreIndex. */
  count: number;
  /** f32 [N]: log Σ_v exp(logits), what the backward needs; 0 at ignored rows (they are not read). */
  lse: Tensor;
  /** f32 [N], only with reduction 'none': each row's (MiLe-weighted) loss, 0 at ignored rows. */
  losses?: Tensor;
  /** f32 [N], only with MiLe: alpha·w_t, the weight each row's CE got; 0 at ignored rows. */
  weights?: Tensor;
  /** The forward's settings, which crossEntropyBackward reads. */
  readonly reduction: CrossEntropyReduction;
  readonly labelSmoothing: number;
  readonly ignoreIndex: number;
}

export interface CrossEntropyBackwardOptions {
  /** The gradient of the loss (default 1); with reduction 'none', of every row's loss (d Σ losses). */
  dLoss?: number;
  /** Write dlogits here (logits' shape and dtype); may be logits itself, overwriting them in place. */
  out?: Tensor;
}

type Targets = NativeTensor | Tensor;

// targets are read on the host (range-checked there), so an Int32Array serves every device
function targetsArg(v: unknown, op: string): Targets {
  if (v instanceof Int32Array) return Tensor._wrapTemp(v, [v.length], 'i32');
  if (v instanceof Tensor) return tensorArg(v, op, 'targets');
  return fail('ERR_ARG', `${op}: expected targets to be an Int32Array or an i32 Tensor but received ${describe(v)}`);
}

function smoothingOpt(v: unknown, op: string): number {
  const eps = numberOpt(v, op, 'labelSmoothing', 0, 0, 1);
  if (eps === 1) fail('ERR_ARG', `${op}: expected labelSmoothing in [0, 1) but received 1`);
  return eps;
}

/** Positions: the product of all dims of logits but the last. */
function positions(logits: Tensor): number {
  return logits.shape.slice(0, -1).reduce((a, b) => a * b, 1);
}

const REDUCTIONS: readonly CrossEntropyReduction[] = ['mean', 'sum', 'none'];

/**
 * Fused log-softmax + NLL: logits [..., V] (f32, bf16 or f16; leading dims flattened to N rows)
 * against targets (i32, logits' leading dims or [N]; an Int32Array is taken as [N]). Each
 * target must lie in [0, V) or equal ignoreIndex: another value gives ERR_ARG naming the row,
 * checked when the op runs, before anything is written. Computed in f32 (the loss reduced in
 * f64, in row order: independent of the thread count). When every row is ignored, loss is 0 and
 * the gradient all zeros (PyTorch gives NaN). With MiLe and label smoothing, the smoothed CE is weighted.
 */
export const crossEntropy = defineOp((logits: Tensor, targets: Tensor | Int32Array, opts?: CrossEntropyOptions): Prepared<CrossEntropyResult> => {
  const op = 'crossEntropy';
  tensorArg(logits, op, 'logits');
  const tg = targetsArg(targets, op);
  const o = optionsArg<CrossEntropyOptions>(opts, op);
  const labelSmoothing = smoothingOpt(o.labelSmoothing, op);
  const ignoreIndex = intOpt(o.ignoreIndex, op, 'ignoreIndex', -100, INT32_MIN, INT32_MAX);
  const reduction = enumOpt(o.reduction, op, 'reduction', 'mean', REDUCTIONS);
  const mile = o.mile === undefined || o.mile === null ? null : optionsArg<MileOptions>(o.mile, op);
  const gamma = numberOpt(mile?.gamma, op, 'mile.gamma', 1, 0, 3.4e38);
  const sigma = numberOpt(mile?.sigma, op, 'mile.sigma', 1, 0, 3.4e38);
  if (sigma === 0) fail('ERR_ARG', `${op}: expected mile.sigma > 0 but received 0`);
  const n = positions(logits);
  const fresh: Tensor[] = [];
  const lse = outArg(undefined, op, [n], 'f32', logits.device, fresh, 'lse');
  const losses = reduction === 'none' ? outArg(undefined, op, [n], 'f32', logits.device, fresh, 'losses') : null;
  const weights = mile ? outArg(undefined, op, [n], 'f32', logits.device, fresh, 'weights') : null;
  const stats = new Float64Array(2);
  const result: CrossEntropyResult = { loss: NaN, count: 0, lse, reduction, labelSmoothing, ignoreIndex };
  if (losses) result.losses = losses;
  if (weights) result.weights = weights;
  return {
    run: (a) => native.crossent_fwd(logits, tg, lse, losses, weights, stats, ignoreIndex, labelSmoothing, mile !== null, gamma, sigma,
      REDUCTIONS.indexOf(reduction), a),
    result,
    fresh,
    done: () => {
      result.loss = stats[0]!;
      result.count = stats[1]!;
    },
  };
});


function resultArg(r: unknown, op: string): CrossEntropyResult {
  if (r === null || typeof r !== 'object')
    fail('ERR_ARG', `${op}: expected the result of crossEntropy for result but received ${describe(r)}`);
  const res = r as Partial<CrossEntropyResult>;
  tensorArg(res.lse, op, 'result.lse');
  if (res.weights !== undefined) tensorArg(res.weights, op, 'result.weights');
  if (!REDUCTIONS.includes(res.reduction as CrossEntropyReduction))
    fail('ERR_ARG', `${op}: expected result.reduction to be 'mean', 'sum' or 'none' but received ${describe(res.reduction)}`);
  if (res.labelSmoothing === undefined || res.ignoreIndex === undefined)
    fail('ERR_ARG', `${op}: expected result.labelSmoothing and result.ignoreIndex (the forward's settings) but one is missing`);
  smoothingOpt(res.labelSmoothing, op);
  intOpt(res.ignoreIndex, op, 'result.ignoreIndex', -100, INT32_MIN, INT32_MAX);
  return res as CrossEntropyResult;
}

/**
 * dlogits = dLoss·factor·eff_t·(softmax(logits_t) - (1 - eps)·onehot(y_t) - eps/V), factor = 1/count
 * for 'mean', 1 otherwise; eff_t = alpha·w_t with MiLe (a constant: no gradient through the
 * weights), else 1; zero at ignored rows. Needs the forward's logits, targets and result
 * (lse, weights, and its reduction, labelSmoothing and ignoreIndex). Returns logits' dtype.
 */
export const crossEntropyBackward = defineOp(
  (logits: Tensor, targets: Tensor | Int32Array, result: CrossEntropyResult, opts?: CrossEntropyBackwardOptions): Prepared<Tensor> => {
    const op = 'crossEntropyBackward';
    tensorArg(logits, op, 'logits');
    const tg = targetsArg(targets, op);
    const r = resultArg(result, op);
    const o = optionsArg<CrossEntropyBackwardOptions>(opts, op);
    const dLoss = numberOpt(o.dLoss, op, 'dLoss', 1, -3.4e38, 3.4e38);
    const fresh: Tensor[] = [];
    const out = outArg(o.out, op, logits.shape, logits.dtype, logits.device, fresh);
    return {
      run: (a) => native.crossent_bwd(logits, tg, r.lse, r.weights ?? null, out, r.ignoreIndex, r.labelSmoothing, r.reduction === 'mean',
        dLoss, a),
      result: out,
      fresh,
    };
  },
);

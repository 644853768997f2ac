// Learning-rate schedules: pure functions of the update number s (s = 1 for the first update,
// the `step` that adamw's bias correction uses; s = 0 gives 0 during warm-up).
import { describe, fail } from '../errors.js';
import { F32_MAX, intOpt, numberOpt, optionsArg } from '../ops/common.js';

/** The learning rate of update `step` (a number >= 0). */
export type Schedule = (step: number) => number;

export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the end of warm-up. */
  lr: number;
  /** Linear warm-up length in updates (an integer >= 0). */
  warmupSteps: number;
  /** The update at which the cosine reaches minLr (an integer > warmupSteps); minLr after it. */
  totalSteps: number;
  /** The final learning rate, in [0, lr] (default 0). */
  minLr?: number;
}

export interface InverseSqrtOptions {
  /** Peak learning rate, reached at the end of warm-up. */
  lr: number;
  /** Linear warm-up length in updates (an integer >= 1). */
  warmupSteps: number;
}


function required(o: object, key: string, op: string): void {
  if ((o as Record<string, unknown>)[key] === undefined) fail('ERR_ARG', `${op}: expected options.${key}`);
}

function stepArg(s: unknown, op: string): number {
  if (typeof s !== 'number' || !(s >= 0) || s === Infinity)
    fail('ERR_ARG', `${op}: expected step to be a finite number >= 0 but received ${describe(s)}`);
  return s;
}

/**
 * Linear warm-up from 0, then a half cosine down to minLr (W = warmupSteps, T = totalSteps):
 * - s < W:       lr · s / W
 * - W ≤ s ≤ T:   minLr + (lr − minLr) · (1 + cos(π · (s − W) / (T − W))) / 2
 * - s > T:       minLr
 */
export function warmupCosine(opts: WarmupCosineOptions): Schedule {
  const op = 'warmupCosine';
  if (opts === undefined) fail('ERR_ARG', `${op}: expected options { lr, warmupSteps, totalSteps, minLr? }`);
  const o = optionsArg<WarmupCosineOptions>(opts, op);
  for (const k of ['lr', 'warmupSteps', 'totalSteps']) required(o, k, op);
  const lr = numberOpt(o.lr, op, 'lr', 0, 0, F32_MAX);
  const warm = intOpt(o.warmupSteps, op, 'warmupSteps', 0, 0, Number.MAX_SAFE_INTEGER);
  const total = intOpt(o.totalSteps, op, 'totalSteps', 0, warm + 1, Number.MAX_SAFE_INTEGER);
  const minLr = numberOpt(o.minLr, op, 'minLr', 0, 0, lr);
  return (step: number): number => {
    const s = stepArg(step, op);
    if (s < warm) return (lr * s) / warm;
    if (s > total) return minLr;
    return minLr + ((lr - minLr) * (1 + Math.cos((Math.PI * (s - warm)) / (total - warm)))) / 2;
  };
}

/**
 * Linear warm-up from 0, then decay with the inverse square root of the update (W = warmupSteps):
 * - s < W:  lr · s / W
 * - s ≥ W:  lr · sqrt(W / s)
 */
export function inverseSqrt(opts: InverseSqrtOptions): Schedule {
  const op = 'inverseSqrt';
  if (opts === undefined) fail('ERR_ARG', `${op}: expected options { lr, warmupSteps }`);
  const o = optionsArg<InverseSqrtOptions>(opts, op);
  for (const k of ['lr', 'warmupSteps']) required(o, k, op);
  const lr = numberOpt(o.lr, op, 'lr', 0, 0, F32_MAX);
  const warm = intOpt(o.warmupSteps, op, 'warmupSteps', 1, 1, Number.MAX_SAFE_INTEGER);
  return (step: number): number => {
    const s = stepArg(step, op);
    return s < warm ? (lr * s) / warm : lr * Math.sqrt(warm / s);
  };
}

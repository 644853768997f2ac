// Dynamic loss scaling for f16 training, with the update rule of torch.cuda.amp.GradScaler:
// a non-finite gradient multiplies the scale by backoffFactor and restarts the count; after
// growthInterval finite steps in a row the scale is multiplied by growthFactor (if the result is
// still a finite f32) and the count restarts. The scale is kept as an f32 value, like GradScaler's.
import { describe, fail } from '../errors.js';
import { F32_MAX, intOpt, numberOpt, optionsArg } from '../ops/common.js';


export interface DynamicLossScalerOptions {
  /** The first scale (default 2^16), finite and > 0. */
  initScale?: number;
  /** Growth multiplier, > 1 (default 2). */
  growthFactor?: number;
  /** Back-off multiplier, in (0, 1) (default 0.5). */
  backoffFactor?: number;
  /** Finite steps in a row before the scale grows, an integer >= 1 (default 2000). */
  growthInterval?: number;
}

export interface DynamicLossScalerState {
  scale: number;
  /** Finite steps in a row since the scale last changed (or a non-finite step). */
  growthTracker: number;
}

/**
 * Multiply the loss by `scale` before the backward pass, pass `gradScale: 1 / scale` to
 * `AdamW.step`, then call `update(!result.skipped)`.
 */
export class DynamicLossScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  private _scale: number;
  private _tracker = 0;

  constructor(opts: DynamicLossScalerOptions = {}) {
    const op = 'DynamicLossScaler';
    const o = optionsArg<DynamicLossScalerOptions>(opts, op);
    this._scale = Math.fround(numberOpt(o.initScale, op, 'initScale', 2 ** 16, Number.MIN_VALUE, F32_MAX));
    if (this._scale === 0) fail('ERR_ARG', `${op}: expected initScale to be > 0 as an f32 but received ${describe(o.initScale)}`);
    this.growthFactor = numberOpt(o.growthFactor, op, 'growthFactor', 2, 1, F32_MAX);
    if (this.growthFactor === 1) fail('ERR_ARG', `${op}: expected growthFactor to be > 1 but received number 1`);
    this.backoffFactor = numberOpt(o.backoffFactor, op, 'backoffFactor', 0.5, 0, 1);
    if (this.backoffFactor === 0 || this.backoffFactor === 1)
      fail('ERR_ARG', `${op}: expected backoffFactor in (0, 1) but received number ${this.backoffFactor}`);
    this.growthInterval = intOpt(o.growthInterval, op, 'growthInterval', 2000, 1, Number.MAX_SAFE_INTEGER);
  }

  /** The current loss scale. */
  get scale(): number {
    return this._scale;
  }

  /** Records one step: `finite` is whether its gradients were all finite (the step was taken). */
  update(finite: boolean): void {
    if (typeof finite !== 'boolean') fail('ERR_ARG', `DynamicLossScaler.update: expected finite to be a boolean but received ${describe(finite)}`);
    if (!finite) {
      this._scale = Math.fround(this._scale * this.backoffFactor);
      this._tracker = 0;
      return;
    }
    if (++this._tracker < this.growthInterval) return;
    const grown = Math.fround(this._scale * this.growthFactor);
    if (Number.isFinite(grown)) this._scale = grown;
    this._tracker = 0;
  }

  stateDict(): DynamicLossScalerState {
    return { scale: this._scale, growthTracker: this._tracker };
  }

  loadStateDict(state: DynamicLossScalerState): void {
    const op = 'DynamicLossScaler.loadStateDict';
    const s = optionsArg<DynamicLossScalerState>(state, op);
    if (s.scale === undefined || s.growthTracker === undefined) fail('ERR_ARG', `${op}: expected { scale, growthTracker }`);
    const scale = numberOpt(s.scale, op, 'scale', 0, Number.MIN_VALUE, F32_MAX);
    if (Math.fround(scale) !== scale) fail('ERR_ARG', `${op}: expected scale to be an f32 value but received ${describe(scale)}`);
    this._tracker = intOpt(s.growthTracker, op, 'growthTracker', 0, 0, this.growthInterval - 1);
    this._scale = scale;
  }
}

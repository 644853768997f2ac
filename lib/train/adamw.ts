// AdamW over a model's named parameters: one fused adamw call per step (lib/ops/optim.ts), with
// global-norm clipping and NaN/Inf step skipping folded in, f32 master weights for f16/bf16
// parameters, and a state dict that resumes bit-identically.
import { isFloat } from '../dtype.js';
import { describe, fail } from '../errors.js';
import { F32_MAX, intOpt, numberOpt, optionsArg, tensorArg } from '../ops/common.js';
import { adamw, gradNorm } from '../ops/optim.js';
import { Tensor } from '../tensor.js';
import { native } from '../native.js';

export interface AdamWOptions {
  /** The learning rate, >= 0 (a step may override it, e.g. from a schedule). */
  lr: number;
  /** [beta1, beta2], each in [0, 1) (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator, >= 0 (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay, >= 0 (default 0.01). */
  weightDecay?: number;
  /** Which parameters decay (default: tensors of 2 or more dims; biases and norm weights do not). */
  decay?: (name: string, param: Tensor) => boolean;
}

export interface AdamWStepOptions {
  /** The learning rate of this step (default: the constructor's lr). */
  lr?: number;
  /** Gradients are multiplied by this (default 1): 1 / lossScale with loss scaling. */
  gradScale?: number;
  /** Clip the global norm of the (unscaled) gradients to this, PyTorch's clip_grad_norm_ rule. */
  maxGradNorm?: number;
}

export interface AdamWStepResult {
  /** True when a gradient was NaN or infinite: nothing was changed, the step count stays. */
  skipped: boolean;
  /** The global L2 norm of the unscaled gradients (gradScale applied), before clipping. */
  gradNorm: number;
}

export interface AdamWState {
  /** Updates taken so far. */
  step: number;
  /** `exp_avg.<name>`, `exp_avg_sq.<name>` for every parameter, `master.<name>` for f16/bf16 ones; all f32. */
  tensors: Map<string, Tensor>;
}

interface Slot {
  name: string;
  /** the parameter as the model holds it */
  param: Tensor;
  /** what adamw updates: the f32 parameter itself, or an f32 master copy of an f16/bf16 one */
  master: Tensor;
  m: Tensor;
  v: Tensor;
  decay: boolean;
}

const defaultDecay = (_name: string, p: Tensor): boolean => p.ndim >= 2;

function sameShape(a: Tensor, b: Tensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

export class AdamW {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly slots: Slot[] = [];
  private steps = 0;
  private busy = false;
  private disposed = false;

  constructor(params: Map<string, Tensor>, opts: AdamWOptions) {
    const op = 'AdamW';
    if (!(params instanceof Map)) fail('ERR_ARG', `${op}: expected params to be a Map of name -> Tensor but received ${describe(params)}`);
    if (opts === undefined) fail('ERR_ARG', `${op}: expected options with lr`);
    const o = optionsArg<AdamWOptions>(opts, op);
    if (o.lr === undefined) fail('ERR_ARG', `${op}: expected options.lr (the learning rate)`);
    this.lr = numberOpt(o.lr, op, 'lr', 0, 0, F32_MAX);
    const betas = o.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1))
      fail('ERR_ARG', `${op}: expected betas to be [beta1, beta2], each in [0, 1), but received ${describe(betas)}`);
    [this.beta1, this.beta2] = betas;
    this.eps = numberOpt(o.eps, op, 'eps', 1e-8, 0, F32_MAX);
    this.weightDecay = numberOpt(o.weightDecay, op, 'weightDecay', 0.01, 0, F32_MAX);
    const decay = o.decay ?? defaultDecay;
    if (typeof decay !== 'function') fail('ERR_ARG', `${op}: expected decay to be a function (name, param) => boolean but received ${describe(decay)}`);
    const storages = new Map<unknown, string>();
    const checked: [string, Tensor, boolean][] = [];
    for (const [name, t] of params) {
      const p = tensorArg(t, op, `params '${String(name)}'`);
      if (typeof name !== 'string') fail('ERR_ARG', `${op}: expected parameter names to be strings but received ${describe(name)}`);
      if (!isFloat(p.dtype)) fail('ERR_DTYPE', `${op}: expected a f32, f16 or bf16 tensor for '${name}' but received ${p.dtype}`);
      const other = storages.get(p._storage);
      if (other !== undefined) fail('ERR_ARG', `${op}: '${other}' and '${name}' share memory (each parameter must be its own tensor)`);
      storages.set(p._storage, name);
      const d = decay(name, p);
      if (typeof d !== 'boolean') fail('ERR_ARG', `${op}: expected decay('${name}') to return a boolean but received ${describe(d)}`);
      checked.push([name, p, d]);
    }
    for (const [name, p, d] of checked) {
      const master = p.dtype === 'f32' ? p : p.to('f32');
      const on = { device: p.device };
      this.slots.push({ name, param: p, master, m: Tensor.zeros(p.shape, on), v: Tensor.zeros(p.shape, on), decay: d });
    }
  }

  /** Updates taken so far (skipped steps do not count). */
  get stepCount(): number {
    return this.steps;
  }

  /** The parameter names, in the order of the Map given to the constructor. */
  get names(): string[] {
    return this.slots.map((s) => s.name);
  }

  /**
   * One update from `grads` (one tensor per parameter, same names and shapes; f32, f16 or bf16).
   * Computes the global norm of the gradients times gradScale; if any gradient is NaN or infinite
   * the step is skipped and nothing changes. Otherwise clips to maxGradNorm by multiplying the
   * gradients by min(1, maxGradNorm / (norm + 1e-6)) (folded into the kernel's gradScale) and runs
   * one fused adamw call over every parameter.
   */
  async step(grads: Map<string, Tensor>, opts: AdamWStepOptions = {}): Promise<AdamWStepResult> {
    const op = 'AdamW.step';
    this.idle(op);
    const o = optionsArg<AdamWStepOptions>(opts, op);
    const lr = numberOpt(o.lr, op, 'lr', this.lr, 0, F32_MAX);
    const gradScale = numberOpt(o.gradScale, op, 'gradScale', 1, 0, F32_MAX);
    const maxGradNorm = o.maxGradNorm === undefined ? undefined : numberOpt(o.maxGradNorm, op, 'maxGradNorm', 0, 0, F32_MAX);
    const g = this.gradList(grads, op);
    this.busy = true;
    try {
      const { norm, finite } = await gradNorm.async(g);
      const total = norm * gradScale;
      if (!finite) return { skipped: true, gradNorm: total };
      const clip = maxGradNorm === undefined ? 1 : Math.min(1, maxGradNorm / (total + 1e-6));
      const s = this.slots;
      await adamw.async(s.map((x) => x.master), g, s.map((x) => x.m), s.map((x) => x.v), {
        lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, step: this.steps + 1,
        gradScale: gradScale * clip, decay: s.map((x) => x.decay), copies: s.map((x) => (x.master === x.param ? null : x.param)),
      });
      this.steps++;
      return { skipped: false, gradNorm: total };
    } finally {
      this.busy = false;
    }
  }

  /**
   * The optimizer state: views of the live tensors (no copy; they change with later steps, and
   * disposing a view does not free the optimizer's data). Save them before the next step.
   */
  stateDict(): AdamWState {
    this.idle('AdamW.stateDict');
    const tensors = new Map<string, Tensor>();
    for (const s of this.slots) {
      tensors.set(`exp_avg.${s.name}`, s.m.reshape(s.m.shape));
      tensors.set(`exp_avg_sq.${s.name}`, s.v.reshape(s.v.shape));
      if (s.master !== s.param) tensors.set(`master.${s.name}`, s.master.reshape(s.master.shape));
    }
    return { step: this.steps, tensors };
  }

  /**
   * Copies a state (as stateDict returns it) in: every name must be present with the parameter's
   * shape, f32, and nothing else. f16/bf16 parameters are rewritten from their loaded master
   * copies (rounded to nearest even), so model and optimizer agree. Checks everything before
   * changing anything.
   */
  loadStateDict(state: AdamWState): void {
    const op = 'AdamW.loadStateDict';
    this.idle(op);
    const st = optionsArg<AdamWState>(state, op);
    if (st.step === undefined) fail('ERR_ARG', `${op}: expected state.step`);
    const step = intOpt(st.step, op, 'step', 0, 0, Number.MAX_SAFE_INTEGER);
    if (!(st.tensors instanceof Map)) fail('ERR_ARG', `${op}: expected state.tensors to be a Map but received ${describe(st.tensors)}`);
    const pairs: [Tensor, Tensor][] = [];
    const take = (key: string, dst: Tensor): void => {
      if (!st.tensors!.has(key)) fail('ERR_ARG', `${op}: state.tensors has no '${key}'`);
      const src = tensorArg(st.tensors!.get(key), op, `'${key}'`);
      if (src.dtype !== 'f32') fail('ERR_DTYPE', `${op}: expected f32 tensor for '${key}' but received ${src.dtype}`);
      if (!sameShape(src, dst))
        fail('ERR_SHAPE', `${op}: expected '${key}' of shape [${dst.shape.join(', ')}] but received [${src.shape.join(', ')}]`);
      pairs.push([src, dst]);
    };
    for (const s of this.slots) {
      take(`exp_avg.${s.name}`, s.m);
      take(`exp_avg_sq.${s.name}`, s.v);
      if (s.master !== s.param) take(`master.${s.name}`, s.master);
    }
    if (st.tensors.size !== pairs.length) {
      const known = new Set(this.slots.flatMap((s) => [`exp_avg.${s.name}`, `exp_avg_sq.${s.name}`, `master.${s.name}`]));
      const extra = [...st.tensors.keys()].find((k) => !known.has(k)) ?? '';
      fail('ERR_ARG', `${op}: state.tensors has '${extra}', which is not a state of this optimizer's parameters`);
    }
    for (const [src, dst] of pairs) dst._copyFrom(src);
    for (const s of this.slots) {
      if (s.master === s.param) continue;
      native.cast(s.master, s.param, false);
      s.param._storage.version++;  // written in place: caches derived from its data go stale
    }
    this.steps = step;
  }

  /** Frees the optimizer's own tensors (moments and master copies); it cannot be used after. */
  dispose(): void {
    this.disposed = true;
    for (const s of this.slots) {
      s.m.dispose();
      s.v.dispose();
      if (s.master !== s.param) s.master.dispose();
    }
  }

  private idle(op: string): void {
    if (this.disposed) fail('ERR_DISPOSED', `${op}: the optimizer was disposed`);
    if (this.busy) fail('ERR_ARG', `${op}: a step is still running (await it first)`);
  }

  /** The gradients in parameter order, checked against the parameters. */
  private gradList(grads: Map<string, Tensor>, op: string): Tensor[] {
    if (!(grads instanceof Map)) fail('ERR_ARG', `${op}: expected grads to be a Map of name -> Tensor but received ${describe(grads)}`);
    const out = this.slots.map((s) => {
      if (!grads.has(s.name)) fail('ERR_ARG', `${op}: grads has no '${s.name}'`);
      const g = tensorArg(grads.get(s.name), op, `grads '${s.name}'`);
      if (!isFloat(g.dtype)) fail('ERR_DTYPE', `${op}: expected a f32, f16 or bf16 tensor for grads '${s.name}' but received ${g.dtype}`);
      if (!sameShape(g, s.param))
        fail('ERR_SHAPE', `${op}: expected grads '${s.name}' of shape [${s.param.shape.join(', ')}] but received [${g.shape.join(', ')}]`);
      return g;
    });
    if (grads.size !== out.length) {
      const extra = [...grads.keys()].find((k) => !this.slots.some((s) => s.name === k));
      fail('ERR_ARG', `${op}: grads has '${String(extra)}', which is not a parameter of this optimizer`);
    }
    return out;
  }
}

// Trainer: the training loop around a model and AdamW — gradient accumulation, LR schedule,
// clipping, NaN/Inf step skipping (and dynamic loss scaling), an eval hook, a progress bar with loss
// and tokens/s, a loss curve (SVG), and checkpoints written atomically and resumable bit for bit.
//
// A checkpoint is one safetensors file `step-<n>.safetensors`: the model's parameters under
// `model.<name>`, the optimizer's state under `optim.<name>`, and in its metadata (key
// `seqfuse.trainer`) the step, seeds, the data source's position, the loss scaler and the history.
// Dropout seeds are functions of (seed, step, micro-batch), so a resumed run repeats exactly.
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SingleBar } from 'cli-progress';
import { describe, fail } from '../errors.js';
import { ioError, writeFileAtomic } from '../io/atomic.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import { boolOpt, intOpt, numberOpt, optionsArg } from '../ops/common.js';
import type { MileOptions } from '../ops/crossent.js';
import type { Tensor } from '../tensor.js';
import type { AdamW } from './adamw.js';
import type { Batch, DataSource } from './data.js';
import type { DynamicLossScaler, DynamicLossScalerState } from './loss-scaler.js';
import type { Schedule } from './schedules.js';

/** What the Trainer needs of a model (TransformerLM has it). */
export interface TrainableModel {
  parameters(): Map<string, Tensor>;
  gradients(): Map<string, Tensor>;
  zeroGrad(): void;
  loadParameters(params: Map<string, Tensor>): void;
  loss(ids: Tensor, targets: Tensor, opts: {
    train: boolean; seed: bigint; backward: boolean; gradScale: number; labelSmoothing?: number; mile?: MileOptions;
  }): Promise<{ loss: number; count: number }>;
}

export interface TrainerOptions {
  model: TrainableModel;
  optimizer: AdamW;
  /** Where step() takes batches when given none; its position is checkpointed. */
  data?: DataSource;
  /** lr per update number (1-based); default: the optimizer's lr. */
  schedule?: Schedule;
  /** Clip the global gradient norm to this (default: no clipping). */
  maxGradNorm?: number;
  /** Micro-batches per optimizer step (default 1): their gradients are averaged. */
  accumulate?: number;
  /** Seed of the dropout streams (default 0). */
  seed?: number;
  labelSmoothing?: number;
  mile?: MileOptions;
  /** For f16 training: the loss is scaled, steps with overflowed gradients are skipped. */
  lossScaler?: DynamicLossScaler;
  /** Checkpoints every `every` steps into `dir`, keeping the newest `keep` (default 2). */
  checkpoint?: { dir: string; every: number; keep?: number };
  /** Calls `run()` every `every` steps (and at the end of train()); its result is recorded as valLoss. */
  eval?: { every: number; run: () => Promise<number> };
  /** Show a progress bar on stderr during train() (default: when stderr is a terminal). */
  progress?: boolean;
  /** Write the loss curve as SVG here after each eval and at the end of train(). */
  lossCurve?: string;
}

export interface StepResult {
  step: number;
  /** Mean of the micro-batches' mean losses. */
  loss: number;
  /** Targets counted in this step. */
  tokens: number;
  lr: number;
  gradNorm: number;
  skipped: boolean;
  ms: number;
}

export interface HistoryEntry {
  step: number;
  loss: number;
  lr: number;
  valLoss?: number;
}

const META_KEY = 'seqfuse.trainer';
const CKPT = /^step-(\d+)\.safetensors$/;

function mix(seed: number, step: number, micro: number): bigint {
  return BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(step) * 0xbf58476d1ce4e5b9n + BigInt(micro) * 0x94d049bb133111ebn + 1n);
}

export class Trainer {
  readonly model: TrainableModel;
  readonly optimizer: AdamW;
  readonly history: HistoryEntry[] = [];
  private readonly _o: Required<Pick<TrainerOptions, 'accumulate' | 'seed'>> & TrainerOptions;
  private _step = 0;
  private _busy = false;

  constructor(opts: TrainerOptions) {
    const op = 'Trainer';
    const o = optionsArg<TrainerOptions>(opts, op);
    if (!o.model || typeof o.model.loss !== 'function' || typeof o.model.gradients !== 'function')
      fail('ERR_ARG', `${op}: expected model to have loss(), gradients(), parameters() and zeroGrad() but received ${describe(o.model)}`);
    if (!o.optimizer || typeof o.optimizer.step !== 'function' || typeof o.optimizer.stateDict !== 'function')
      fail('ERR_ARG', `${op}: expected optimizer to be an AdamW but received ${describe(o.optimizer)}`);
    const accumulate = intOpt(o.accumulate, op, 'accumulate', 1, 1, 1 << 20);
    const seed = intOpt(o.seed, op, 'seed', 0, 0, Number.MAX_SAFE_INTEGER);
    if (o.maxGradNorm !== undefined) numberOpt(o.maxGradNorm, op, 'maxGradNorm', 1, 0, 3.4e38);
    if (o.schedule !== undefined && typeof o.schedule !== 'function') fail('ERR_ARG', `${op}: expected schedule to be a function (step) => lr`);
    if (o.checkpoint !== undefined) {
      const c = optionsArg<{ dir: string; every: number; keep?: number }>(o.checkpoint, op);
      if (typeof c.dir !== 'string' || !c.dir) fail('ERR_ARG', `${op}: expected checkpoint.dir to be a path`);
      intOpt(c.every, op, 'checkpoint.every', NaN, 1, 2 ** 40);
      intOpt(c.keep, op, 'checkpoint.keep', 2, 1, 2 ** 20);
    }
    if (o.eval !== undefined) {
      const e = optionsArg<{ every: number; run: () => Promise<number> }>(o.eval, op);
      intOpt(e.every, op, 'eval.every', NaN, 1, 2 ** 40);
      if (typeof e.run !== 'function') fail('ERR_ARG', `${op}: expected eval.run to be a function returning a promise of a loss`);
    }
    boolOpt(o.progress, op, 'progress', false);
    this.model = o.model;
    this.optimizer = o.optimizer;
    this._o = { ...(o as TrainerOptions), accumulate, seed };
  }

  /** Optimizer steps taken (also those skipped for non-finite gradients). */
  get stepCount(): number {
    return this._step;
  }

  /**
   * One optimizer step over `accumulate` micro-batches: the given ones (a Batch or an array of
   * them) or the next ones from `data`. Batches taken from `data` are disposed here.
   */
  async step(batches?: Batch | Batch[]): Promise<StepResult> {
    const op = 'Trainer.step';
    if (this._busy) fail('ERR_ARG', `${op}: the previous step has not finished; await it first`);
    const own = batches === undefined;
    let list: Batch[];
    if (own) {
      if (!this._o.data) fail('ERR_ARG', `${op}: no batches given and no data source configured`);
      list = Array.from({ length: this._o.accumulate }, () => this._o.data!.next());
    } else {
      list = Array.isArray(batches) ? batches : [batches];
      if (list.length === 0) fail('ERR_ARG', `${op}: expected at least one batch`);
    }
    this._busy = true;
    const t0 = performance.now();
    try {
      const step = this._step + 1;
      const scale = this._o.lossScaler?.scale ?? 1;
      this.model.zeroGrad();
      let loss = 0;
      let tokens = 0;
      for (let m = 0; m < list.length; m++) {
        const b = list[m]!;
        const r = await this.model.loss(b.ids, b.targets, {
          train: true, seed: mix(this._o.seed, step, m), backward: true, gradScale: scale / list.length,
          labelSmoothing: this._o.labelSmoothing, mile: this._o.mile,
        });
        loss += r.loss / list.length;
        tokens += r.count;
      }
      const lr = this._o.schedule ? this._o.schedule(this.optimizer.stepCount + 1) : this.optimizer.lr;
      const res = await this.optimizer.step(this.model.gradients(), { lr, gradScale: 1 / scale, maxGradNorm: this._o.maxGradNorm });
      this._o.lossScaler?.update(!res.skipped);
      this._step = step;
      this.history.push({ step, loss, lr });
      return { step, loss, tokens, lr, gradNorm: res.gradNorm, skipped: res.skipped, ms: performance.now() - t0 };
    } finally {
      this._busy = false;
      if (own) for (const b of list) { b.ids.dispose(); b.targets.dispose(); }
    }
  }

  /**
   * Runs steps until stepCount reaches `until`, with the progress bar, evals, checkpoints and the
   * loss curve as configured. `onStep` sees every step's result after that step's eval and checkpoint.
   */
  async train(until: number, onStep?: (r: StepResult) => void | Promise<void>): Promise<HistoryEntry[]> {
    const op = 'Trainer.train';
    const total = intOpt(until, op, 'until', NaN, 0, 2 ** 40);
    const show = this._o.progress ?? Boolean(process.stderr.isTTY);
    const bar = show
      ? new SingleBar({ format: 'train |{bar}| {value}/{total} steps | loss {loss} | {tps} tok/s | lr {lr}', stream: process.stderr, hideCursor: true })
      : null;
    bar?.start(total, this._step, { loss: '-', tps: '-', lr: '-' });
    let avg = NaN;
    try {
      while (this._step < total) {
        const r = await this.step();
        avg = Number.isNaN(avg) ? r.loss : 0.95 * avg + 0.05 * r.loss;
        bar?.update(this._step, { loss: avg.toFixed(4), tps: Math.round((r.tokens * 1000) / r.ms), lr: r.lr.toExponential(2) });
        const e = this._o.eval;
        if (e && (this._step % e.every === 0 || this._step === total)) await this.evaluate();
        const c = this._o.checkpoint;
        if (c && this._step % c.every === 0) await this.saveCheckpoint();
        if (onStep) await onStep(r);
      }
    } finally {
      bar?.stop();
    }
    if (this._o.lossCurve) await this.writeLossCurve(this._o.lossCurve);
    return this.history;
  }

  /** Runs the eval hook now and records its loss on the latest history entry. */
  async evaluate(): Promise<number> {
    const e = this._o.eval;
    if (!e) fail('ERR_ARG', 'Trainer.evaluate: no eval hook configured');
    const v = await e.run();
    if (typeof v !== 'number') fail('ERR_ARG', `Trainer.evaluate: expected eval.run to resolve to a number but received ${describe(v)}`);
    const last = this.history[this.history.length - 1];
    if (last) last.valLoss = v;
    else this.history.push({ step: this._step, loss: NaN, lr: NaN, valLoss: v });
    if (this._o.lossCurve) await this.writeLossCurve(this._o.lossCurve);
    return v;
  }

  /** Writes a checkpoint (default: `<checkpoint.dir>/step-<n>.safetensors`) atomically; returns its path. */
  async saveCheckpoint(path?: string): Promise<string> {
    const op = 'Trainer.saveCheckpoint';
    const c = this._o.checkpoint;
    if (path === undefined && !c) fail('ERR_ARG', `${op}: no path given and no checkpoint.dir configured`);
    const file = path ?? join(c!.dir, `step-${String(this._step).padStart(8, '0')}.safetensors`);
    const tensors = new Map<string, Tensor>();
    for (const [k, v] of this.model.parameters()) tensors.set(`model.${k}`, v);
    const opt = this.optimizer.stateDict();
    for (const [k, v] of opt.tensors) tensors.set(`optim.${k}`, v);
    const meta = {
      format: 1, step: this._step, optimStep: opt.step, seed: this._o.seed, history: this.history,
      data: this._o.data?.state() ?? null, scaler: this._o.lossScaler?.stateDict() ?? null,
    };
    try {
      await mkdir(dirname(file), { recursive: true });
    } catch (e) {
      throw ioError(op, `create the directory of '${file}'`, e);
    }
    await saveSafetensors(file, tensors, { [META_KEY]: JSON.stringify(meta) });
    if (c && path === undefined) await this._prune(c.dir, c.keep ?? 2);
    return file;
  }

  /**
   * Restores a checkpoint: a file, or a directory (its newest loadable `step-<n>.safetensors`;
   * files that fail to load, e.g. from a run killed mid-save on a filesystem without atomic
   * rename, are skipped). Returns the path loaded, or null when the directory has none.
   */
  async resume(pathOrDir: string): Promise<string | null> {
    const op = 'Trainer.resume';
    if (typeof pathOrDir !== 'string') fail('ERR_ARG', `${op}: expected a path but received ${describe(pathOrDir)}`);
    let candidates: string[];
    try {
      const names = await readdir(pathOrDir);
      candidates = names.filter((n) => CKPT.test(n)).sort().reverse().map((n) => join(pathOrDir, n));
      if (candidates.length === 0) return null;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOTDIR') {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
      candidates = [pathOrDir];
    }
    let lastErr: unknown;
    for (const file of candidates) {
      let loaded;
      try {
        loaded = await loadSafetensors(file);
      } catch (e) {
        lastErr = e;
        continue;
      }
      try {
        this._restore(op, file, loaded.tensors, loaded.metadata);
      } finally {
        for (const t of loaded.tensors.values()) t.dispose();
      }
      return file;
    }
    throw lastErr;
  }

  /** Writes the loss curve (train loss per step, validation loss where evaluated) as an SVG file. */
  async writeLossCurve(path: string): Promise<void> {
    await writeFileAtomic(path, [new TextEncoder().encode(lossCurveSvg(this.history))]);
  }

  private _restore(op: string, file: string, tensors: Map<string, Tensor>, metadata: Record<string, string>): void {
    const raw = metadata[META_KEY];
    if (raw === undefined) fail('ERR_ARG', `${op}: ${file} is not a Trainer checkpoint (no '${META_KEY}' metadata)`);
    let meta: { format: number; step: number; optimStep: number; seed: number; history: HistoryEntry[]; data: unknown; scaler: DynamicLossScalerState | null };
    try {
      meta = JSON.parse(raw);
    } catch {
      return fail('ERR_ARG', `${op}: ${file} has malformed '${META_KEY}' metadata`);
    }
    if (meta.format !== 1) fail('ERR_UNSUPPORTED', `${op}: ${file} has checkpoint format ${meta.format}; this version reads 1`);
    const model = new Map<string, Tensor>();
    const optim = new Map<string, Tensor>();
    for (const [k, v] of tensors) {
      if (k.startsWith('model.')) model.set(k.slice(6), v);
      else if (k.startsWith('optim.')) optim.set(k.slice(6), v);
      else fail('ERR_ARG', `${op}: ${file} has an unexpected tensor '${k}'`);
    }
    this.model.loadParameters(model);
    this.optimizer.loadStateDict({ step: meta.optimStep, tensors: optim });
    if (this._o.data && meta.data !== null) this._o.data.setState(meta.data);
    if (this._o.lossScaler && meta.scaler) this._o.lossScaler.loadStateDict(meta.scaler);
    this._step = meta.step;
    this.history.length = 0;
    this.history.push(...meta.history.map((h) => ({ ...h, loss: h.loss ?? NaN, lr: h.lr ?? NaN })));
  }

  private async _prune(dir: string, keep: number): Promise<void> {
    const names = (await readdir(dir)).filter((n) => CKPT.test(n)).sort();
    for (const n of names.slice(0, Math.max(0, names.length - keep))) await unlink(join(dir, n)).catch(() => undefined);
  }
}

/** An SVG line chart of the training loss (and validation loss points) over steps. */
export function lossCurveSvg(history: readonly HistoryEntry[]): string {
  if (!Array.isArray(history)) fail('ERR_ARG', `lossCurveSvg: expected an array of {step, loss, lr, valLoss?} but received ${describe(history)}`);
  const W = 640, H = 360, L = 56, R = 16, T = 24, B = 40;
  const pts = history.filter((h) => Number.isFinite(h.loss));
  const val = history.filter((h) => h.valLoss !== undefined && Number.isFinite(h.valLoss));
  const ys = [...pts.map((h) => h.loss), ...val.map((h) => h.valLoss!)];
  const x0 = history.length ? history[0]!.step : 0, x1 = history.length ? history[history.length - 1]!.step : 1;
  const y0 = ys.length ? Math.min(...ys) : 0, y1 = ys.length ? Math.max(...ys) : 1;
  const sx = (s: number) => L + ((s - x0) / Math.max(1, x1 - x0)) * (W - L - R);
  const sy = (v: number) => T + (1 - (v - y0) / Math.max(1e-12, y1 - y0)) * (H - T - B);
  const line = pts.map((h) => `${sx(h.step).toFixed(1)},${sy(h.loss).toFixed(1)}`).join(' ');
  const dots = val.map((h) => `<circle cx="${sx(h.step).toFixed(1)}" cy="${sy(h.valLoss!).toFixed(1)}" r="3" fill="#d62728"/>`).join('');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = y0 + f * (y1 - y0);
    return `<text x="${L - 6}" y="${sy(v).toFixed(1)}" text-anchor="end" dominant-baseline="middle" font-size="11">${v.toFixed(3)}</text>`;
  }).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">` +
    `<rect width="${W}" height="${H}" fill="white"/>` +
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#444"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#444"/>` +
    `${ticks}<text x="${L}" y="${H - B + 16}" font-size="11">${x0}</text>` +
    `<text x="${W - R}" y="${H - B + 16}" text-anchor="end" font-size="11">${x1}</text>` +
    `<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">step</text>` +
    `<text x="${L}" y="16" font-size="12">loss (line: train; dots: validation)</text>` +
    `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${line}"/>${dots}</svg>\n`;
}

// What every model shares: named modules (parameters `<prefix>.<name>`, gradients, zeroGrad,
// loadParameters, dispose), the LM head tied to the token embedding, the loss step and sampling.
import { describe, fail } from '../errors.js';
import type { Embedding } from '../layers/embedding.js';
import { LAYER_CLIP_NAMES, type QuantConfig, quantConfigArg } from '../layers/transformer.js';
import { loadNamed } from '../layers/parameters.js';
import { crossEntropy, crossEntropyBackward, type MileOptions } from '../ops/crossent.js';
import { gemm, linear } from '../ops/matmul.js';
import { boolOpt, enumOpt, intOpt, numberOpt, optionsArg, tensorArg } from '../ops/common.js';
import { Tensor } from '../tensor.js';
import type { Device } from '../dtype.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';

/** Anything with named parameters and accumulated gradients. */
export interface Module {
  parameters(): Map<string, Tensor>;
  gradients(): Map<string, Tensor>;
  zeroGrad(): void;
  dispose(): void;
}

export interface LossOptions {
  /** Training mode: dropout on (default false). */
  train?: boolean;
  /** Dropout seed of this call (default: the model's seed plus a call counter). */
  seed?: number | bigint;
  /** Also run the backward pass, adding into the gradients (default: the value of train). */
  backward?: boolean;
  /** Scales the loss's gradient (default 1), e.g. 1 / micro-batches or a loss scale. */
  gradScale?: number;
  labelSmoothing?: number;
  ignoreIndex?: number;
  mile?: MileOptions;
}

export interface LossResult {
  /** Mean cross-entropy over the counted targets. */
  loss: number;
  /** Targets counted (not ignoreIndex). */
  count: number;
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** Softmax temperature (default 1; 0 is greedy). */
  temperature?: number;
  /** Sample among the k most likely tokens (default: all). */
  topK?: number;
  /** Sampling seed (default 12345). */
  seed?: number;
  /** Stop after this token (it is included). */
  stopToken?: number;
}

/** A module with quantization-aware training (the Transformer layers). */
interface Quantizable extends Module {
  enableQuant(config?: QuantConfig): void;
  disableQuant(): void;
  readonly quantConfig: Readonly<Required<QuantConfig>> | null;
  readonly int8: boolean;
  _toInt8(): void;
  _calibHist: Float64Array | null;
}

export interface CalibrateOptions {
  /** 'max' (default): the largest |value|; 'percentile': the `percentile`-th percentile of |value|. */
  method?: 'max' | 'percentile';
  /** For 'percentile', in (0, 100] (default 99.99). */
  percentile?: number;
  /** For 'percentile': histogram bins over [0, max] of each clip's values (default 2048). */
  bins?: number;
}

function isQuantizable(m: Module): m is Quantizable {
  return typeof (m as Partial<Quantizable>).enableQuant === 'function';
}

/** The smallest normal f32: where calibration starts every clip. */
const CLIP_FLOOR = 1.1754943508222875e-38;

/** t (f32 [1], a clip) = v, on any device. */
function setScalar(t: Tensor, v: number): void {
  const one = Tensor.from([v], [1]);
  t._copyFrom(one);
  one.dispose();
}

/** The upper edge of the bin of `hist` (over [0, range)) where the running count reaches pct% of the total. */
function percentileEdge(hist: Float64Array, pct: number, range: number): number {
  let total = 0;
  for (const c of hist) total += c;
  const want = (pct / 100) * total;
  let run = 0;
  for (let b = 0; b < hist.length; b++) {
    run += hist[b]!;
    if (run >= want) return Math.max(Math.fround(((b + 1) / hist.length) * range), CLIP_FLOOR);
  }
  return range;
}

/** A fused layer as the model stacks see it. */
export interface StackLayer<O extends object = object, B extends object = object> {
  forward(x: Tensor, opts: O & { train: boolean; seed: bigint }): Promise<Tensor>;
  backward(dy: Tensor, opts: B): Promise<Tensor>;
}

export function mixSeed(seed: number | bigint, k: number): bigint {
  return BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(k) * 0xbf58476d1ce4e5b9n + 1n);
}

/** t viewed as `shape`, t itself disposed (the view keeps the data). */
export function reshaped(t: Tensor, shape: number[]): Tensor {
  const r = t.reshape(shape);
  t.dispose();
  return r;
}

export abstract class ModelBase {
  protected _disposed = false;
  private _calls = 0;
  private _calibrating = false;

  protected constructor(protected readonly _name: string, protected readonly _seed: number | bigint) {}

  /** [prefix, module] pairs; parameter `n` of a module is named `<prefix>.<n>`. */
  protected abstract _modules(): [string, Module][];

  parameters(): Map<string, Tensor> {
    this._check(`${this._name}.parameters`);
    return this._collect((m) => m.parameters());
  }

  gradients(): Map<string, Tensor> {
    this._check(`${this._name}.gradients`);
    return this._collect((m) => m.gradients());
  }

  zeroGrad(): void {
    this._check(`${this._name}.zeroGrad`);
    for (const [, m] of this._modules()) m.zeroGrad();
  }

  /** Copies parameters in by name (all of them; shapes checked first, dtypes converted). */
  loadParameters(params: Map<string, Tensor>): void {
    const op = `${this._name}.loadParameters`;
    this._check(op);
    loadNamed(op, this.parameters(), params);
  }

  /**
   * Quantization-aware training on every Transformer layer (see TransformerEncoderLayer.enableQuant):
   * fake-quant on each linear's input, weight and q/k/v output, with learned activation clips that
   * become parameters (`layers.<i>.attn.qkv.input_clip`, ...). The embedding, the tied output
   * head and the norms stay float. Fine-tune with a small learning rate, then exportInt8.
   */
  enableQuant(config?: QuantConfig): void {
    const op = `${this._name}.enableQuant`;
    this._check(op);
    const q = quantConfigArg(config, op);
    for (const [, m] of this._modules()) if (isQuantizable(m)) m.enableQuant(q);
  }

  /** Turns quantization-aware training off on every layer and drops the clips. */
  disableQuant(): void {
    this._check(`${this._name}.disableQuant`);
    for (const [, m] of this._modules()) if (isQuantizable(m)) m.disableQuant();
  }

  /** True for an int8 inference model (made by exportInt8): forwards, losses without backward and generation only. */
  get int8(): boolean {
    for (const [, m] of this._modules()) if (isQuantizable(m)) return m.int8;
    return false;
  }

  /** Converts every layer to int8 inference in place (exportInt8 works on a copy). */
  _toInt8(): void {
    for (const [, m] of this._modules()) if (isQuantizable(m)) m._toInt8();
  }

  /** The layers' quantization config (defaults filled in), or null when quantization is off. */
  get quantConfig(): Readonly<Required<QuantConfig>> | null {
    for (const [, m] of this._modules()) if (isQuantizable(m)) return m.quantConfig;
    return null;
  }

  /**
   * Calibration for post-training quantization: sets every activation clip from the values it
   * sees during `run`, which should run forwards over a few representative batches (forward(), or
   * loss() with backward: false; a backward inside fails). The forwards run in float (no
   * fake-quant) and eval mode. 'max': the largest |value|. 'percentile': `run` is called twice,
   * first for the max, then to count |values| into `bins` bins over [0, max]; the clip is the upper
   * edge of the bin where the count reaches `percentile`% (so outliers beyond it saturate).
   * Needs enableQuant first.
   */
  async calibrate(run: () => unknown, opts?: CalibrateOptions): Promise<void> {
    const op = `${this._name}.calibrate`;
    this._check(op);
    if (!this.quantConfig) fail('ERR_ARG', `${op}: quantization is off; call enableQuant first`);
    if (this.int8) fail('ERR_UNSUPPORTED', `${op}: this is an int8 inference model; calibrate the float model before exportInt8`);
    if (typeof run !== 'function') fail('ERR_ARG', `${op}: expected a function that runs forwards but received ${describe(run)}`);
    const o = optionsArg<CalibrateOptions>(opts, op);
    const method = enumOpt(o.method, op, 'method', 'max', ['max', 'percentile']);
    const pct = numberOpt(o.percentile, op, 'percentile', 99.99, Number.MIN_VALUE, 100);
    const bins = intOpt(o.bins, op, 'bins', 2048, 1, 1 << 20);
    if (this._calibrating) fail('ERR_ARG', `${op}: a calibration is already running`);
    const clips = [...this.parameters()].filter(([n]) => /\.(input|output)_clip$/.test(n));  // activation clips
    for (const [, t] of clips) setScalar(t, CLIP_FLOOR);
    const layers = this._modules().map(([, m]) => m).filter(isQuantizable);
    this._calibrating = true;
    try {
      await run();
      const unseen = clips.filter(([, t]) => t.toArray()[0] === CLIP_FLOOR).map(([n]) => n);
      if (unseen.length) fail('ERR_ARG', `${op}: the forwards run by the callback never reached ${unseen.join(', ')}`);
      if (method === 'percentile') {
        for (const l of layers) l._calibHist = new Float64Array(LAYER_CLIP_NAMES.length * bins);
        await run();
        for (const l of layers) {
          const named = l.parameters();
          LAYER_CLIP_NAMES.forEach((name, c) => {
            const clip = named.get(name);
            if (clip) setScalar(clip, percentileEdge(l._calibHist!.subarray(c * bins, (c + 1) * bins), pct, clip.toArray()[0]!));
          });
        }
      }
    } finally {
      this._calibrating = false;
      for (const l of layers) l._calibHist = null;
    }
  }

  /**
   * Writes the parameters as a safetensors file (atomically), with the model's class and config
   * in its metadata (`seqfuse.model`, `seqfuse.config`, and `seqfuse.quant` with QAT on) so
   * `fromFile` can rebuild it.
   */
  async save(path: string, metadata: Record<string, string> = {}): Promise<void> {
    this._check(`${this._name}.save`);
    const quant = this.quantConfig;
    await saveSafetensors(path, this.parameters(), {
      ...metadata, 'seqfuse.model': this._name, 'seqfuse.config': JSON.stringify(this._config()),
      ...(quant ? { 'seqfuse.quant': JSON.stringify(quant) } : {}),
      ...(this.int8 ? { 'seqfuse.int8': 'true' } : {}),
    });
  }

  /** Loads parameters from a safetensors file written by save() (or any file with the same names and shapes). */
  async load(path: string): Promise<void> {
    const op = `${this._name}.load`;
    this._check(op);
    const { tensors } = await loadSafetensors(path);
    try {
      this.loadParameters(tensors);
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  }

  dispose(): void {
    if (this._disposed) return;
    this._release();
    this._disposed = true;
    for (const [, m] of this._modules()) m.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Builds a model of this class from a file written by save(): its config, then its parameters,
   * on `device` (default 'cpu'; files do not record a device).
   */
  static async fromFile<M extends ModelBase>(this: new (config: never) => M, path: string, opts: { device?: Device } = {}): Promise<M> {
    const { config, quant, int8, tensors } = await readModelFile(this.name, path);
    try {
      const m = new this({ ...(config as object), ...(opts.device ? { device: opts.device } : {}) } as never);
      if (quant) m.enableQuant(quant);
      if (int8) m._toInt8();
      m.loadParameters(tensors);
      return m;
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  }

  /** The config the model was built from, saved with its parameters (less the seed, which may be a bigint, and the device). */
  protected _config(): object {
    const { seed: _, device: __, ...rest } = (this as unknown as { config: Record<string, unknown> }).config;
    return rest;
  }

  /** Where the model's parameters live (its config's `device`, default 'cpu'); its inputs go there too. */
  get device(): Device {
    return ((this as unknown as { config: { device?: Device } }).config.device) ?? 'cpu';
  }

  /** Frees what the last forward kept for its backward. */
  protected abstract _release(): void;

  protected _check(op: string): void {
    if (this._disposed) fail('ERR_DISPOSED', `${op}: this model was disposed`);
  }

  protected _callSeed(seed: unknown): bigint {
    return seed === undefined ? mixSeed(this._seed, 1e6 + ++this._calls) : BigInt(seed as number | bigint);
  }

  /**
   * Embeds ids and runs them through `layers` (each disposes its input): the embedding's dropout
   * uses mixSeed(seed, embedK), layer i mixSeed(seed, layerK + i); `opts` go to every layer.
   */
  protected async _embedAndRun<O extends object>(embed: Embedding, ids: Tensor, layers: readonly StackLayer<O>[], train: boolean,
    seed: bigint, embedK: number, layerK: number, opts: O): Promise<Tensor> {
    let x = await embed.forward(ids, { train, seed: mixSeed(seed, embedK) });
    const calibrate = this._calibrating;
    for (let i = 0; i < layers.length; i++) {
      const y = await layers[i]!.forward(x, { ...opts, train, seed: mixSeed(seed, layerK + i), ...(calibrate ? { calibrate } : {}) });
      x.dispose();
      x = y;
    }
    return x;
  }

  /** The backward of _embedAndRun from the last layer's output gradient `dx` (disposed here). */
  protected async _runAndEmbedBackward<B extends object>(embed: Embedding, ids: Tensor, layers: readonly StackLayer<object, B>[],
    dx: Tensor, train: boolean, seed: bigint, embedK: number, opts: B): Promise<void> {
    for (let i = layers.length - 1; i >= 0; i--) {
      const d = await layers[i]!.backward(dx, opts);
      dx.dispose();
      dx = d;
    }
    await embed.backward(dx, ids, { train, seed: mixSeed(seed, embedK) });
    dx.dispose();
  }

  /** logits [T, vocab] = h [T, hidden] · embedᵀ. */
  protected _head(h: Tensor, embed: Embedding): Promise<Tensor> {
    return linear.async(h, embed.weight);
  }

  /** Adds dlogitsᵀ h into the embedding's gradient; returns dh = dlogits · embed. */
  protected async _headBackward(dl: Tensor, h: Tensor, embed: Embedding): Promise<Tensor> {
    const g = embed.gradients().get('weight')!;
    await gemm.async(dl, h, { transA: true, c: g, beta: 1, out: g });
    return gemm.async(dl, embed.weight);
  }

  /** Cross-entropy of `logits` against targets and, when asked, the backward through `backward`. */
  protected async _loss(op: string, logits: Tensor, targets: Tensor, o: Partial<LossOptions>, backward: (dl: Tensor) => Promise<void>): Promise<LossResult> {
    const doBackward = boolOpt(o.backward, op, 'backward', o.train ?? false);
    const gradScale = numberOpt(o.gradScale, op, 'gradScale', 1, 0, 3.4e38);
    const res = await crossEntropy.async(logits, targets, { labelSmoothing: o.labelSmoothing, ignoreIndex: o.ignoreIndex, mile: o.mile });
    try {
      if (doBackward) {
        const dl = await crossEntropyBackward.async(logits, targets, res, { dLoss: gradScale, out: logits });
        await backward(dl);
      }
      return { loss: res.loss, count: res.count };
    } finally {
      logits.dispose();
      res.lse.dispose();
      res.weights?.dispose();
      res.losses?.dispose();
    }
  }

  /** Samples `maxNewTokens` tokens, calling `nextLogits(seq)` for the last position's logits. */
  protected async _sample(op: string, opts: unknown, vocab: number, start: number[],
    nextLogits: (seq: number[]) => Promise<Float32Array>): Promise<Int32Array> {
    const o = optionsArg<GenerateOptions>(opts, op);
    const n = intOpt(o.maxNewTokens, op, 'maxNewTokens', NaN, 0, 2 ** 24);
    const temperature = numberOpt(o.temperature, op, 'temperature', 1, 0, 1e6);
    const topK = intOpt(o.topK, op, 'topK', vocab, 1, vocab);
    const stop = o.stopToken === undefined ? -1 : intOpt(o.stopToken, op, 'stopToken', NaN, 0, vocab - 1);
    let state = (intOpt(o.seed, op, 'seed', 12345, 0, 2 ** 32 - 1) >>> 0) || 1;
    const uniform = () => {
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      return state / 4294967296;
    };
    const seq = [...start];
    const out: number[] = [];
    for (let t = 0; t < n; t++) {
      const last = await nextLogits(seq);
      let next = 0;
      if (temperature === 0) {
        for (let v = 1; v < vocab; v++) if (last[v]! > last[next]!) next = v;
      } else {
        const order = Array.from({ length: vocab }, (_, v) => v).sort((a, b) => last[b]! - last[a]!).slice(0, topK);
        const m = last[order[0]!]!;
        const w = order.map((v) => Math.exp((last[v]! - m) / temperature));
        let u = uniform() * w.reduce((a, b) => a + b, 0);
        next = order[order.length - 1]!;
        for (let i = 0; i < order.length; i++) {
          u -= w[i]!;
          if (u <= 0) {
            next = order[i]!;
            break;
          }
        }
      }
      seq.push(next);
      out.push(next);
      if (next === stop) break;
    }
    this._release();
    return Int32Array.from(out);
  }

  protected _ids(op: string, ids: unknown, name: string): Tensor {
    tensorArg(ids, op, name);
    const t = ids as Tensor;
    if (t.dtype !== 'i32' || t.shape.length !== 2)
      fail(t.dtype !== 'i32' ? 'ERR_DTYPE' : 'ERR_SHAPE', `${op}: expected ${name} as an i32 tensor [batch, seq] but received ${t.dtype} [${t.shape.join(', ')}]`);
    return t;
  }

  private _collect(get: (m: Module) => Map<string, Tensor>): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [prefix, m] of this._modules()) for (const [k, v] of get(m)) out.set(`${prefix}.${k}`, v);
    return out;
  }
}

/** Reads a file written by `save()` of the model class `name`: its config and parameters. */
export async function readModelFile(name: string, path: string): Promise<{ config: unknown; quant: QuantConfig | null; int8: boolean; tensors: Map<string, Tensor> }> {
  const op = `${name}.fromFile`;
  const { tensors, metadata } = await loadSafetensors(path);
  const cls = metadata['seqfuse.model'];
  if (cls !== name) {
    for (const t of tensors.values()) t.dispose();
    fail('ERR_ARG', `${op}: ${path} holds ${cls === undefined ? 'no seqfuse model metadata' : `a ${cls}`}, not a ${name}`);
  }
  try {
    const quant = metadata['seqfuse.quant'];
    return {
      config: JSON.parse(metadata['seqfuse.config'] ?? ''), quant: quant === undefined ? null : JSON.parse(quant),
      int8: metadata['seqfuse.int8'] === 'true', tensors,
    };
  } catch {
    for (const t of tensors.values()) t.dispose();
    return fail('ERR_ARG', `${op}: ${path} has malformed seqfuse.config or seqfuse.quant metadata`);
  }
}

/** Checks a prompt: a non-empty array of token ids below `vocab`. */
export function promptArg(op: string, prompt: unknown, vocab: number): number[] {
  if (!prompt || typeof (prompt as ArrayLike<number>).length !== 'number')
    fail('ERR_ARG', `${op}: expected the prompt as an array of token ids but received ${describe(prompt)}`);
  const p = Array.from(prompt as ArrayLike<number>);
  if (p.length === 0) fail('ERR_ARG', `${op}: expected a non-empty prompt`);
  p.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v >= vocab) fail('ERR_ARG', `${op}: prompt[${i}] = ${v} is not a token id in [0, ${vocab})`);
  });
  return p;
}

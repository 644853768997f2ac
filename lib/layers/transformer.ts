// Fused Transformer layers (native/layers/transformer_layer.h): TransformerEncoderLayer and
// TransformerDecoderLayer. Each forward and backward is one native call that runs the whole layer
// (products, norms, attention, activation, dropout) on the libuv pool; the layer keeps what its
// backward needs in native buffers sized by the call (no sequence cap). Parameters are Tensors
// named and shaped as DESIGN §4 (PyTorch nn.Linear layout), gradients accumulate until zeroGrad().
import type { Device, DType } from '../dtype.js';
import { fail } from '../errors.js';
import { native } from '../native.js';
import { weightCache, written } from '../ops/matmul.js';
import { maxClip, quantize } from '../ops/quant.js';
import { boolOpt, enumOpt, F32_MAX, intOpt, numberOpt, optionsArg, seedOpt, tensorArg } from '../ops/common.js';
import { Tensor } from '../tensor.js';
import { loadNamed, onDevice } from './parameters.js';

export type LayerActivation = 'gelu' | 'gelu_tanh' | 'relu' | 'silu';
export type LayerNormKind = 'layernorm' | 'rmsnorm';

export interface TransformerLayerConfig {
  hiddenSize: number;
  numHeads: number;
  /** Key/value heads (GQA/MQA; default numHeads). numHeads must be a multiple of it. */
  numKvHeads?: number;
  ffnSize: number;
  /** FFN activation (default 'gelu', the erf form as PyTorch). */
  activation?: LayerActivation;
  /** Pre-LN `x + sub(norm(x))` (default true) or post-LN `norm(x + sub(x))`. */
  preLayerNorm?: boolean;
  /** 'layernorm' (default) or 'rmsnorm' (no norm biases). */
  norm?: LayerNormKind;
  /** Dropout on the attention probabilities (default 0). */
  attnDropout?: number;
  /** Dropout after the FFN activation (default 0). */
  activationDropout?: number;
  /** Dropout on each block's output before the residual add (default 0). */
  hiddenDropout?: number;
  /** Norm epsilon (default 1e-5, as PyTorch). */
  layerNormEps?: number;
  /**
   * Rotary position embedding (RoFormer; the "rotate half" layout of GPT-NeoX and LLaMA) on
   * self-attention's q and k: `true` for all head dims, or `{dim, base = 10000}` (dim even, at
   * most the head dim). Default off. Positions count from 0 at each sequence's first token.
   */
  rotary?: boolean | { dim?: number; base?: number };
  /** Parameter and activation dtype (default 'f32'). */
  dtype?: 'f32' | 'bf16' | 'f16';
  /**
   * Where parameters, gradients and saved activations live and the layer runs (default 'cpu');
   * inputs must be on it. The initial weights are the same on every device for one seed.
   */
  device?: Device;
  /** Optional limits, checked on every forward with a clear error; nothing is preallocated from them. */
  maxBatchTokens?: number;
  maxSeqLen?: number;
  /** Weights start as N(0, initStd²) (default 0.02), biases at 0, norm weights at 1. */
  initStd?: number;
  /** Seed of the initial weights and of the dropout seeds of forwards given none (default: random). */
  seed?: number | bigint;
}

/**
 * Quantization-aware training (REFERENCES §1, docs/api.md "Quantization-aware training"): fake-quant
 * on the layer's linears, with learned activation clips.
 */
/** The clip names of a layer, in native order (LayerClip). */
export const LAYER_CLIP_NAMES: readonly string[] = [
  'attn.qkv.input_clip', 'attn.qkv.output_clip', 'attn.out.input_clip', 'cross.q.input_clip', 'cross.q.output_clip',
  'cross.kv.input_clip', 'cross.kv.output_clip', 'cross.out.input_clip', 'ffn.fc1.input_clip', 'ffn.fc2.input_clip',
];

export interface QuantConfig {
  /** Fake-quantize each linear's input with a learned clip (default true). */
  input?: boolean;
  /** Fake-quantize the q/k/v products' outputs with a learned clip (default true). */
  output?: boolean;
  /** Weights: fake-quantized with their max-abs clip per output 'channel' (default), per 'tensor', or 'none'. */
  weight?: 'channel' | 'tensor' | 'none';
  /** Weight code width, 8 (default, codes ±127) or 7 (±63: the int8 product without VNNI runs ~2x faster). */
  weightBits?: number;
  /** The activation clips' initial value (default 16, LightSeq's). */
  initClip?: number;
}

export interface LayerForwardOptions {
  /** Training mode: dropout on (default false: dropout off, deterministic). */
  train?: boolean;
  /**
   * Max calibration (post-training quantization; needs enableQuant, train false): runs the float
   * forward and raises each activation clip to the largest |value| it would quantize. Set the clips
   * low first (calibrationStart) so they end at the calibration data's max.
   */
  calibrate?: boolean;
  /** Keys per batch row seen by self-attention (i32 [B] tensor or Int32Array, values in [0, S]). */
  kvLengths?: Tensor | Int32Array;
  /** Dropout seed of this call (default: the layer's seed plus a call counter). */
  seed?: number | bigint;
}

export interface DecoderForwardOptions extends LayerForwardOptions {
  /** The encoder output [B, Senc, hidden], required with cross-attention. */
  encoderOut?: Tensor;
  /** Encoder keys per batch row (values in [0, Senc]). */
  encoderLengths?: Tensor | Int32Array;
}

export interface DecoderBackwardOptions {
  /** [B, Senc, hidden]: the encoder output's gradient is added into it (required with cross-attention). */
  dEncoderOut?: Tensor;
}

/** Parameter names in the order of native/layers/transformer_layer.h LayerParam. */
const PARAM_NAMES = [
  'attn.qkv.weight', 'attn.qkv.bias', 'attn.out.weight', 'attn.out.bias', 'attn.norm.weight', 'attn.norm.bias',
  'cross.q.weight', 'cross.q.bias', 'cross.kv.weight', 'cross.kv.bias', 'cross.out.weight', 'cross.out.bias',
  'cross.norm.weight', 'cross.norm.bias', 'ffn.fc1.weight', 'ffn.fc1.bias', 'ffn.fc2.weight', 'ffn.fc2.bias',
  'ffn.norm.weight', 'ffn.norm.bias',
] as const;
/** The checked QAT config with its defaults filled in (messages name `op`). */
export function quantConfigArg(config: unknown, op: string): Readonly<Required<QuantConfig>> {
  const c = optionsArg<QuantConfig>(config, op);
  return Object.freeze({
    input: boolOpt(c.input, op, 'input', true),
    output: boolOpt(c.output, op, 'output', true),
    weight: enumOpt<'channel' | 'tensor' | 'none'>(c.weight, op, 'weight', 'channel', ['channel', 'tensor', 'none']),
    weightBits: intOpt(c.weightBits, op, 'weightBits', 8, 7, 8),
    initClip: numberOpt(c.initClip, op, 'initClip', 16, Number.MIN_VALUE, F32_MAX),
  });
}

const CLIP_NAMES = LAYER_CLIP_NAMES;
const ACT_CODE: Record<LayerActivation, number> = { relu: 1, gelu: 2, gelu_tanh: 3, silu: 4 };
const WEIGHT_QUANT = { none: 0, tensor: 1, channel: 2 } as const;

/** A size: an integer in [lo, 2^24]; `dflt` NaN makes it required. */
function sizeOpt(v: unknown, op: string, name: string, dflt: number, lo: number): number {
  return intOpt(v, op, name, dflt, lo, 2 ** 24);
}

function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 52);
}

function lengthsTensor(v: unknown, op: string, name: string, temps: Tensor[]): Tensor | null {
  if (v === undefined || v === null) return null;
  if (v instanceof Int32Array) {
    const t = Tensor.from(v, [v.length], { dtype: 'i32' });
    temps.push(t);
    return t;
  }
  return tensorArg(v, op, name);
}

/** The shared machinery of the encoder and decoder layers. */
abstract class TransformerLayerBase {
  readonly config: Readonly<Required<Omit<TransformerLayerConfig, 'maxBatchTokens' | 'maxSeqLen' | 'seed'>>> &
    Pick<TransformerLayerConfig, 'maxBatchTokens' | 'maxSeqLen'>;
  readonly dtype: DType;
  readonly device: Device;
  private readonly _cfg: Float64Array;
  private _params: (Tensor | null)[];
  private _grads: (Tensor | null)[];
  private readonly _state: unknown;
  private _clips: (Tensor | null)[] = CLIP_NAMES.map(() => null);
  private _clipGrads: (Tensor | null)[] = CLIP_NAMES.map(() => null);
  private _quant: Readonly<Required<QuantConfig>> | null = null;
  // int8 inference: the weights as i8 and their clips f32 [N], at the weight slots
  private _qweights: (Tensor | null)[] = PARAM_NAMES.map(() => null);
  private _wclips: (Tensor | null)[] = PARAM_NAMES.map(() => null);
  /** Histogram calibration (set by ModelBase.calibrate): counts of |x| per clip, [CLIP_NAMES.length * bins]. */
  _calibHist: Float64Array | null = null;
  private _seed: number | bigint;
  private _calls = 0;
  private _tail: Promise<unknown> = Promise.resolve();
  private _disposed = false;

  protected constructor(protected readonly _name: string, cfg: TransformerLayerConfig, causal: boolean, cross: boolean) {
    const op = _name;
    const c = optionsArg<TransformerLayerConfig>(cfg, op);
    const hiddenSize = sizeOpt(c.hiddenSize, op, 'hiddenSize', NaN, 1);
    const numHeads = sizeOpt(c.numHeads, op, 'numHeads', NaN, 1);
    const numKvHeads = sizeOpt(c.numKvHeads, op, 'numKvHeads', numHeads, 1);
    const ffnSize = sizeOpt(c.ffnSize, op, 'ffnSize', NaN, 1);
    if (hiddenSize % numHeads) fail('ERR_ARG', `${op}: expected hiddenSize (${hiddenSize}) to be a multiple of numHeads (${numHeads})`);
    if (numHeads % numKvHeads) fail('ERR_ARG', `${op}: expected numHeads (${numHeads}) to be a multiple of numKvHeads (${numKvHeads})`);
    if (hiddenSize / numHeads > 256)
      fail('ERR_UNSUPPORTED', `${op}: head dim hiddenSize / numHeads = ${hiddenSize / numHeads} exceeds 256 (fusedAttention's limit)`);
    const activation = enumOpt<LayerActivation>(c.activation, op, 'activation', 'gelu', ['gelu', 'gelu_tanh', 'relu', 'silu']);
    const preLayerNorm = boolOpt(c.preLayerNorm, op, 'preLayerNorm', true);
    const norm = enumOpt<LayerNormKind>(c.norm, op, 'norm', 'layernorm', ['layernorm', 'rmsnorm']);
    const attnDropout = numberOpt(c.attnDropout, op, 'attnDropout', 0, 0, 1);
    const activationDropout = numberOpt(c.activationDropout, op, 'activationDropout', 0, 0, 1);
    const hiddenDropout = numberOpt(c.hiddenDropout, op, 'hiddenDropout', 0, 0, 1);
    const layerNormEps = numberOpt(c.layerNormEps, op, 'layerNormEps', 1e-5, Number.MIN_VALUE, 0.5);
    const dtype = enumOpt<'f32' | 'bf16' | 'f16'>(c.dtype, op, 'dtype', 'f32', ['f32', 'bf16', 'f16']);
    const device = enumOpt<Device>(c.device, op, 'device', 'cpu', ['cpu', 'cuda']);
    const initStd = numberOpt(c.initStd, op, 'initStd', 0.02, 0, 1e3);
    let rotaryDim = 0, rotaryBase = 10000;
    if (c.rotary !== undefined && c.rotary !== false) {
      const r = c.rotary === true ? {} : optionsArg<{ dim?: number; base?: number }>(c.rotary, op);
      const headDim = hiddenSize / numHeads;
      rotaryDim = sizeOpt(r.dim, op, 'rotary.dim', headDim, 2);
      if (rotaryDim % 2 || rotaryDim > headDim) fail('ERR_ARG', `${op}: expected rotary.dim to be even and at most the head dim ${headDim} but received ${rotaryDim}`);
      rotaryBase = numberOpt(r.base, op, 'rotary.base', 10000, 1.000001, 1e12);
    }
    const maxBatchTokens = c.maxBatchTokens === undefined ? undefined : sizeOpt(c.maxBatchTokens, op, 'maxBatchTokens', NaN, 1);
    const maxSeqLen = c.maxSeqLen === undefined ? undefined : sizeOpt(c.maxSeqLen, op, 'maxSeqLen', NaN, 1);
    this._seed = c.seed === undefined ? randomSeed() : seedOpt(c.seed, op, true);
    this.config = Object.freeze({ hiddenSize, numHeads, numKvHeads, ffnSize, activation, preLayerNorm, norm, attnDropout,
      activationDropout, hiddenDropout, layerNormEps, dtype, device, initStd, maxBatchTokens, maxSeqLen,
      rotary: rotaryDim ? { dim: rotaryDim, base: rotaryBase } : false });
    this.dtype = dtype;
    this.device = device;
    this._cfg = Float64Array.from([hiddenSize, numHeads, numKvHeads, ffnSize, ACT_CODE[activation], preLayerNorm ? 1 : 0,
      norm === 'rmsnorm' ? 1 : 0, causal ? 1 : 0, cross ? 1 : 0, layerNormEps, attnDropout, activationDropout, hiddenDropout,
      rotaryDim, rotaryBase, 0, 127, 0]);
    const shapes = native.layer_param_shapes(this._cfg, _name);
    const seed0 = BigInt(this._seed);
    const made: Tensor[] = [];
    const track = (t: Tensor): Tensor => (made.push(t), t);
    try {
      this._params = shapes.map((shape, i) => {
        if (!shape) return null;
        const name = PARAM_NAMES[i]!;
        if (name.endsWith('.bias')) return track(Tensor.zeros(shape, { dtype, device }));
        if (name.includes('norm')) return track(Tensor.from(new Float32Array(shape[0]!).fill(1), shape, { dtype, device }));
        const seed = BigInt.asUintN(64, seed0 * 0x100000001b3n + BigInt(i + 1));
        return track(onDevice(Tensor.randn(shape, { dtype, std: initStd, seed }), device));
      });
      this._grads = shapes.map((shape) => (shape ? track(Tensor.zeros(shape, { dtype, device })) : null));
    } catch (e) {
      for (const t of made) t.dispose();
      throw e;
    }
    this._state = native.layer_state_new();
  }

  /** The parameters under their DESIGN §4 names (the live tensors: writes through `.data` are seen); with QAT, also the clips (`*.input_clip`, `*.output_clip`, f32 [1]). */
  parameters(): Map<string, Tensor> {
    const m = this._named(this._params, this._clips);
    this._qweights.forEach((q, i) => {
      if (!q) return;
      m.set(PARAM_NAMES[i]!, q);
      m.set(PARAM_NAMES[i]!.replace(/weight$/, 'weight_clip'), this._wclips[i]!);
    });
    return m;
  }

  /** True for an int8 inference layer (made by exportInt8): forward only. */
  get int8(): boolean {
    return this._cfg[17] === 1;
  }

  /** The accumulated gradients, under the parameters' names. */
  gradients(): Map<string, Tensor> {
    return this._named(this._grads, this._clipGrads);
  }

  /** Sets every gradient to zero. */
  zeroGrad(): void {
    this._check(`${this._name}.zeroGrad`);
    for (const g of [...this._grads, ...this._clipGrads]) g?._zero();
  }

  /** The quantization-aware training config in effect (defaults filled in), or null. */
  get quantConfig(): Readonly<Required<QuantConfig>> | null {
    return this._quant;
  }

  /**
   * Turns on quantization-aware training: fake-quant on every linear's input and weight, and on
   * the q/k/v products' outputs (each configurable). The activation clips are new parameters
   * (f32 [1], starting at initClip), listed by parameters() so an optimizer trains them and
   * checkpoints keep them. Calling it again replaces the config (clips that stay keep their values).
   */
  enableQuant(config?: QuantConfig): void {
    const op = `${this._name}.enableQuant`;
    this._check(op);
    this._checkFloat(op);
    const q = quantConfigArg(config, op);
    const cross = this._params[6] !== null;  // cross.q.weight
    const wanted = CLIP_NAMES.map((n) => (n.startsWith('cross.') && !cross ? false : n.endsWith('.output_clip') ? q.output : q.input));
    this._clips = this._clips.map((t, i) => {
      if (!wanted[i]) {
        t?.dispose();
        return null;
      }
      return t ?? Tensor.from([q.initClip], [1], { device: this.device });
    });
    this._clipGrads = this._clipGrads.map((g, i) => {
      if (!wanted[i]) {
        g?.dispose();
        return null;
      }
      return g ?? Tensor.zeros([1], { device: this.device });
    });
    this._cfg[15] = WEIGHT_QUANT[q.weight];
    this._cfg[16] = 2 ** (q.weightBits - 1) - 1;
    this._quant = q;
  }

  /** Turns quantization-aware training off and drops the clips. */
  disableQuant(): void {
    this._check(`${this._name}.disableQuant`);
    this._checkFloat(`${this._name}.disableQuant`);
    for (const t of [...this._clips, ...this._clipGrads]) t?.dispose();
    this._clips = CLIP_NAMES.map(() => null);
    this._clipGrads = CLIP_NAMES.map(() => null);
    this._cfg[15] = 0;
    this._cfg[16] = 127;
    this._quant = null;
  }

  /** Copies parameters in by name; every name must exist and shapes must match (dtypes are converted). */
  loadParameters(params: Map<string, Tensor>): void {
    const op = `${this._name}.loadParameters`;
    this._check(op);
    loadNamed(op, this.parameters(), params);
  }

  /** Frees the parameters, gradients and saved activations. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    for (const t of [...this._params, ...this._grads, ...this._clips, ...this._clipGrads, ...this._qweights, ...this._wclips]) t?.dispose();
    native.layer_state_release(this._state);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  protected _forward(x: Tensor, o: Partial<DecoderForwardOptions>, op: string, enc: Tensor | null, encLengths: unknown): Promise<Tensor> {
    this._check(op);
    tensorArg(x, op, 'x');
    const { maxSeqLen, maxBatchTokens, hiddenSize } = this.config;
    if (x.shape.length !== 3 || x.shape[2] !== hiddenSize)
      fail('ERR_SHAPE', `${op}: expected x of shape [batch, seq, ${hiddenSize}] but received [${x.shape.join(', ')}]`);
    this._checkDtype(op, 'x', x);
    if (enc) this._checkDtype(op, 'encoderOut', enc);
    const [B, S] = x.shape as [number, number, number];
    if (maxSeqLen !== undefined && S > maxSeqLen)
      fail('ERR_SHAPE', `${op}: sequence length ${S} exceeds this layer's maxSeqLen ${maxSeqLen} (raise or drop the limit)`);
    if (maxBatchTokens !== undefined && B * S > maxBatchTokens)
      fail('ERR_SHAPE', `${op}: batch * seq = ${B * S} tokens exceeds this layer's maxBatchTokens ${maxBatchTokens}`);
    const train = boolOpt(o.train, op, 'train', false);
    const calibrate = boolOpt(o.calibrate, op, 'calibrate', false);
    if (calibrate && !this._quant) fail('ERR_ARG', `${op}: calibrate needs quantization enabled (enableQuant) for clips to calibrate`);
    if (calibrate && train) fail('ERR_ARG', `${op}: calibrate runs the float forward in eval mode; train must be false`);
    const seed = o.seed === undefined ? this._nextSeed() : seedOpt(o.seed, op, true);
    const temps: Tensor[] = [];
    try {
      const lengths = lengthsTensor(o.kvLengths, op, 'kvLengths', temps);
      const encLen = lengthsTensor(encLengths, op, 'encoderLengths', temps);
      const y = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
      return this._serial(async () => {
        try {
          const weights = this.int8 ? this._qweights : this._params;
          const caches = weights.map((p, i) => (p && PARAM_NAMES[i]!.endsWith('.weight') && p.shape.length === 2 ? weightCache(p) : null));
          await native.layer_fwd(this._state, this._cfg, this._params, caches, x, y, lengths, enc, encLen, train, seed, true, this._name,
            this._clips, calibrate ? (this._calibHist ? 2 : 1) : 0, this._qweights, this._wclips, this._calibHist);
          if (calibrate) for (const t of this._clips) if (t) written(t);
          return y;
        } catch (e) {
          y.dispose();
          throw e;
        } finally {
          for (const t of temps) t.dispose();
        }
      });
    } catch (e) {
      for (const t of temps) t.dispose();
      throw e;
    }
  }

  protected _backward(dy: Tensor, op: string, dEnc: Tensor | null): Promise<Tensor> {
    this._check(op);
    tensorArg(dy, op, 'dy');
    this._checkDtype(op, 'dy', dy);
    if (dEnc) this._checkDtype(op, 'dEncoderOut', dEnc);
    const dx = Tensor.empty(dy.shape, { dtype: dy.dtype, device: dy.device });
    return this._serial(async () => {
      try {
        await native.layer_bwd(this._state, this._cfg, this._params, this._grads, dy, dx, dEnc, true, this._name, this._clips,
          this._clipGrads);
        for (const g of [...this._grads, ...this._clipGrads]) if (g) written(g);
        if (dEnc) written(dEnc);
        return dx;
      } catch (e) {
        dx.dispose();
        throw e;
      }
    });
  }

  private _named(list: (Tensor | null)[], clips: (Tensor | null)[]): Map<string, Tensor> {
    this._check(`${this._name}.parameters`);
    const m = new Map<string, Tensor>();
    list.forEach((t, i) => t && m.set(PARAM_NAMES[i]!, t));
    clips.forEach((t, i) => t && m.set(CLIP_NAMES[i]!, t));
    return m;
  }

  /**
   * Makes this layer an int8 inference layer (exportInt8): each weight becomes i8 codes with its
   * max-abs clip per output channel (or one per tensor, as the QAT config says) for the config's
   * weight bits; the float weights and every gradient are freed. Needs the activation clips.
   */
  _toInt8(): void {
    const op = `${this._name}.exportInt8`;
    this._check(op);
    this._checkFloat(op);
    const q = this._quant;
    if (!q || !q.input)
      fail('ERR_ARG', `${op}: int8 export needs every product's input clip: enableQuant() with input clips, then fine-tune (QAT) or calibrate`);
    if (this.dtype !== 'f32') fail('ERR_UNSUPPORTED', `${op}: int8 export takes an f32 layer (this one is ${this.dtype})`);
    const bits = q.weightBits;
    this._params = this._params.map((w, i) => {
      if (!w || w.ndim !== 2) return w;
      const n = w.shape[0]!;
      // per tensor: the one clip repeated per row, the int8 layer's layout
      let clip = maxClip(w, q.weight === 'tensor' ? { bits } : { axis: 0, bits });
      if (clip.numel !== n) {
        const one = clip;
        clip = Tensor.from(new Float32Array(n).fill(one.toArray()[0]!), [n], { device: w.device });
        one.dispose();
      }
      this._qweights[i] = quantize(w, clip, { axis: 0 });
      this._wclips[i] = clip;
      w.dispose();
      return null;
    });
    for (const g of [...this._grads, ...this._clipGrads]) g?.dispose();
    this._grads = this._grads.map(() => null);
    this._clipGrads = this._clipGrads.map(() => null);
    this._cfg[17] = 1;
  }

  private _checkFloat(op: string): void {
    if (this.int8) fail('ERR_UNSUPPORTED', `${op}: this is an int8 inference layer (made by exportInt8)`);
  }

  private _checkDtype(op: string, name: string, t: Tensor): void {
    if (t.dtype !== this.dtype) fail('ERR_DTYPE', `${op}: expected ${name} of dtype ${this.dtype} (the layer's) but received ${t.dtype}`);
    if (t.device !== this.device)
      fail('ERR_DEVICE', `${op}: expected ${name} on device '${this.device}' (the layer's) but received '${t.device}'`);
  }

  private _check(op: string): void {
    if (this._disposed) fail('ERR_DISPOSED', `${op}: this layer was disposed`);
  }

  private _nextSeed(): bigint {
    return BigInt.asUintN(64, BigInt(this._seed) * 0x9e3779b97f4a7c15n + BigInt(++this._calls));
  }

  /** Runs calls on this layer one at a time, in call order (they share its saved activations). */
  private _serial<R>(fn: () => Promise<R>): Promise<R> {
    const p = this._tail.then(fn);
    this._tail = p.catch(() => undefined);
    return p;
  }
}

/** A Transformer encoder layer: self-attention (kvLengths mask padded keys) and FFN. */
export class TransformerEncoderLayer extends TransformerLayerBase {
  constructor(config: TransformerLayerConfig) {
    super('TransformerEncoderLayer', config, false, false);
  }

  /** x [B, S, hidden] -> y [B, S, hidden]. Keeps what backward needs (until the next forward). */
  forward(x: Tensor, opts?: LayerForwardOptions): Promise<Tensor> {
    const op = 'TransformerEncoderLayer.forward';
    return this._forward(x, optionsArg<LayerForwardOptions>(opts, op), op, null, undefined);
  }

  /** dy [B, S, hidden] -> dx; parameter gradients are added into gradients(). */
  backward(dy: Tensor): Promise<Tensor> {
    return this._backward(dy, 'TransformerEncoderLayer.backward', null);
  }
}

export interface TransformerDecoderLayerConfig extends TransformerLayerConfig {
  /** Add a cross-attention block over an encoder output (default false: a decoder-only layer). */
  crossAttention?: boolean;
}

/** A Transformer decoder layer: causal self-attention, optional cross-attention, FFN. */
export class TransformerDecoderLayer extends TransformerLayerBase {
  readonly crossAttention: boolean;

  constructor(config: TransformerDecoderLayerConfig) {
    const cross = boolOpt(optionsArg<TransformerDecoderLayerConfig>(config, 'TransformerDecoderLayer').crossAttention,
      'TransformerDecoderLayer', 'crossAttention', false);
    super('TransformerDecoderLayer', config, true, cross);
    this.crossAttention = cross;
  }

  /** x [B, S, hidden] (and encoderOut with cross-attention) -> y [B, S, hidden]. */
  forward(x: Tensor, opts?: DecoderForwardOptions): Promise<Tensor> {
    const op = 'TransformerDecoderLayer.forward';
    const o = optionsArg<DecoderForwardOptions>(opts, op);
    const enc = o.encoderOut === undefined ? null : tensorArg(o.encoderOut, op, 'encoderOut');
    return this._forward(x, o, op, enc, o.encoderLengths);
  }

  /** dy -> dx; with cross-attention the encoder output's gradient is added into opts.dEncoderOut. */
  backward(dy: Tensor, opts?: DecoderBackwardOptions): Promise<Tensor> {
    const op = 'TransformerDecoderLayer.backward';
    const o = optionsArg<DecoderBackwardOptions>(opts, op);
    const dEnc = o.dEncoderOut === undefined ? null : tensorArg(o.dEncoderOut, op, 'dEncoderOut');
    return this._backward(dy, op, dEnc);
  }
}

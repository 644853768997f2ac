// Embedding and Norm layers: the pieces of a model around its Transformer layers (token embedding
// with positions and dropout, the final norm), owning parameters and accumulated gradients like
// the fused layers. Their backward passes are stateless (the caller passes the forward's inputs),
// so one instance can serve several inputs per step (a seq2seq model's source and target).
import type { Device } from '../dtype.js';
import { fail } from '../errors.js';
import { biasDropoutResidual } from '../ops/dropout.js';
import { embedding, embeddingBackward } from '../ops/embedding.js';
import { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from '../ops/norm.js';
import { enumOpt, intOpt, numberOpt, optionsArg, seedOpt } from '../ops/common.js';
import { Tensor } from '../tensor.js';
import { loadNamed, onDevice } from './parameters.js';

type FloatDType = 'f32' | 'bf16' | 'f16';

export interface EmbeddingConfig {
  vocabSize: number;
  hiddenSize: number;
  /** Rows of the position table (the longest sequence). */
  maxSeqLen: number;
  /** 'learned' (default: a trained table), 'sinusoidal' (fixed) or 'none'. */
  positions?: 'learned' | 'sinusoidal' | 'none';
  /** Multiplies token rows (default 1, or sqrt(hiddenSize) with sinusoidal positions). */
  scale?: number;
  /** Dropout on the output (default 0). */
  dropout?: number;
  /** Tokens with this id give zero rows and no gradient. */
  paddingIdx?: number;
  dtype?: FloatDType;
  /** Where the parameters and gradients live (default 'cpu'); one seed gives the same weights on every device. */
  device?: Device;
  /** Initial weights N(0, initStd²) (default 0.02; learned positions half of it). */
  initStd?: number;
  seed?: number | bigint;
}

/** sin/cos position table [rows, dim] (Vaswani et al.). */
function sinusoid(rows: number, dim: number): Float32Array {
  const t = new Float32Array(rows * dim);
  for (let p = 0; p < rows; p++) {
    for (let i = 0; i < dim; i += 2) {
      const a = p / 10000 ** (i / dim);
      t[p * dim + i] = Math.sin(a);
      if (i + 1 < dim) t[p * dim + i + 1] = Math.cos(a);
    }
  }
  return t;
}

/** Adds `d` into the gradient `acc` and disposes `d`. */
async function accumulate(acc: Tensor, d: Tensor): Promise<void> {
  await biasDropoutResidual.async(d, null, acc, { out: acc });
  d.dispose();
}

/** Token embedding × scale + positions, then dropout. Parameters `weight` [vocab, hidden] and `positions` (learned). */
export class Embedding {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly maxSeqLen: number;
  readonly scale: number;
  readonly dropout: number;
  readonly paddingIdx: number | undefined;
  readonly weight: Tensor;
  private readonly _pos: Tensor | null;
  private readonly _learned: boolean;
  private readonly _grads = new Map<string, Tensor>();

  constructor(config: EmbeddingConfig) {
    const op = 'Embedding';
    const c = optionsArg<EmbeddingConfig>(config, op);
    this.vocabSize = intOpt(c.vocabSize, op, 'vocabSize', NaN, 1, 2 ** 31 - 1);
    this.hiddenSize = intOpt(c.hiddenSize, op, 'hiddenSize', NaN, 1, 2 ** 24);
    this.maxSeqLen = intOpt(c.maxSeqLen, op, 'maxSeqLen', NaN, 1, 2 ** 24);
    const positions = enumOpt<'learned' | 'sinusoidal' | 'none'>(c.positions, op, 'positions', 'learned', ['learned', 'sinusoidal', 'none']);
    this.scale = numberOpt(c.scale, op, 'scale', positions === 'sinusoidal' ? Math.sqrt(this.hiddenSize) : 1, 0, 1e6);
    this.dropout = numberOpt(c.dropout, op, 'dropout', 0, 0, 1);
    this.paddingIdx = c.paddingIdx === undefined ? undefined : intOpt(c.paddingIdx, op, 'paddingIdx', NaN, 0, this.vocabSize - 1);
    const dtype = enumOpt<FloatDType>(c.dtype, op, 'dtype', 'f32', ['f32', 'bf16', 'f16']);
    const std = numberOpt(c.initStd, op, 'initStd', 0.02, 0, 1e3);
    const device = enumOpt<Device>(c.device, op, 'device', 'cpu', ['cpu', 'cuda']);
    const seed = BigInt(c.seed === undefined ? Math.floor(Math.random() * 2 ** 52) : seedOpt(c.seed, op, true));
    const weight = Tensor.randn([this.vocabSize, this.hiddenSize], { dtype, std, seed });
    if (this.paddingIdx !== undefined) weight.data.fill(0, this.paddingIdx * this.hiddenSize, (this.paddingIdx + 1) * this.hiddenSize);
    this.weight = onDevice(weight, device);
    this._learned = positions === 'learned';
    const shape = [this.maxSeqLen, this.hiddenSize];
    const pos = positions === 'learned'
      ? Tensor.randn(shape, { dtype, std: std / 2, seed: BigInt.asUintN(64, seed + 1n) })
      : positions === 'sinusoidal' ? Tensor.from(sinusoid(this.maxSeqLen, this.hiddenSize), shape, { dtype }) : null;
    this._pos = pos && onDevice(pos, device);
    for (const [k, t] of this.parameters()) this._grads.set(k, Tensor.zeros(t.shape, { dtype: t.dtype, device }));
  }

  parameters(): Map<string, Tensor> {
    const m = new Map<string, Tensor>([['weight', this.weight]]);
    if (this._learned) m.set('positions', this._pos!);
    return m;
  }

  gradients(): Map<string, Tensor> {
    return new Map(this._grads);
  }

  zeroGrad(): void {
    for (const g of this._grads.values()) g._zero();
  }

  loadParameters(params: Map<string, Tensor>): void {
    loadNamed('Embedding.loadParameters', this.parameters(), params);
  }

  /** ids i32 [B, S] -> [B, S, hidden]; `seed` draws the dropout mask when training. */
  forward(ids: Tensor, opts: { train?: boolean; seed?: number | bigint } = {}): Promise<Tensor> {
    this._checkLen('Embedding.forward', ids);
    const p = opts.train ? this.dropout : 0;
    return embedding.async(ids, this.weight, {
      positions: this._pos, scale: this.scale, dropout: p, seed: p > 0 ? opts.seed ?? 0 : undefined, paddingIdx: this.paddingIdx,
    });
  }

  /** Adds the gradients of the forward with these ids, train flag and seed. */
  async backward(dOut: Tensor, ids: Tensor, opts: { train?: boolean; seed?: number | bigint } = {}): Promise<void> {
    this._checkLen('Embedding.backward', ids);
    const p = opts.train ? this.dropout : 0;
    await embeddingBackward.async(dOut, ids, {
      vocabSize: this.vocabSize, scale: this.scale, dropout: p, seed: p > 0 ? opts.seed ?? 0 : undefined, paddingIdx: this.paddingIdx,
      dtable: this._grads.get('weight')!,
      ...(this._learned ? { numPositions: this.maxSeqLen, dpositions: this._grads.get('positions')! } : {}),
    });
  }

  dispose(): void {
    this.weight.dispose();
    this._pos?.dispose();
    for (const g of this._grads.values()) g.dispose();
  }

  private _checkLen(op: string, ids: Tensor): void {
    const S = ids.shape[ids.shape.length - 1] ?? 0;
    if (this._pos && S > this.maxSeqLen)
      fail('ERR_SHAPE', `${op}: sequence length ${S} exceeds maxSeqLen ${this.maxSeqLen} (the position table's rows)`);
  }
}

export interface NormConfig {
  hiddenSize: number;
  norm?: 'layernorm' | 'rmsnorm';
  eps?: number;
  dtype?: FloatDType;
  /** Where the parameters and gradients live (default 'cpu'). */
  device?: Device;
}

/** LayerNorm or RMSNorm over the last dim with parameters `weight` (and `bias`). */
export class Norm {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly eps: number;
  private readonly _grads = new Map<string, Tensor>();

  constructor(config: NormConfig) {
    const op = 'Norm';
    const c = optionsArg<NormConfig>(config, op);
    const H = intOpt(c.hiddenSize, op, 'hiddenSize', NaN, 1, 2 ** 24);
    const kind = enumOpt<'layernorm' | 'rmsnorm'>(c.norm, op, 'norm', 'layernorm', ['layernorm', 'rmsnorm']);
    const dtype = enumOpt<FloatDType>(c.dtype, op, 'dtype', 'f32', ['f32', 'bf16', 'f16']);
    const device = enumOpt<Device>(c.device, op, 'device', 'cpu', ['cpu', 'cuda']);
    this.eps = numberOpt(c.eps, op, 'eps', 1e-5, Number.MIN_VALUE, 0.5);
    this.weight = Tensor.from(new Float32Array(H).fill(1), [H], { dtype, device });
    this.bias = kind === 'layernorm' ? Tensor.zeros([H], { dtype, device }) : null;
    for (const [k, t] of this.parameters()) this._grads.set(k, Tensor.zeros(t.shape, { dtype: t.dtype, device }));
  }

  parameters(): Map<string, Tensor> {
    const m = new Map<string, Tensor>([['weight', this.weight]]);
    if (this.bias) m.set('bias', this.bias);
    return m;
  }

  gradients(): Map<string, Tensor> {
    return new Map(this._grads);
  }

  zeroGrad(): void {
    for (const g of this._grads.values()) g._zero();
  }

  forward(x: Tensor): Promise<Tensor> {
    return this.bias ? layerNorm.async(x, this.weight, this.bias, { eps: this.eps }) : rmsNorm.async(x, this.weight, { eps: this.eps });
  }

  /** dx of the forward on x; the parameter gradients are added into gradients(). */
  async backward(dy: Tensor, x: Tensor): Promise<Tensor> {
    const g = this.bias
      ? await layerNormBackward.async(dy, x, this.weight, { eps: this.eps })
      : await rmsNormBackward.async(dy, x, this.weight, { eps: this.eps, hasBeta: false });
    await accumulate(this._grads.get('weight')!, g.dgamma);
    if (g.dbeta) {
      if (this.bias) await accumulate(this._grads.get('bias')!, g.dbeta);
      else g.dbeta.dispose();
    }
    return g.dx;
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
    for (const g of this._grads.values()) g.dispose();
  }
}

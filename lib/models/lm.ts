// TransformerLM: a decoder-only language model from the fused layers — token embedding (+ learned
// or sinusoidal positions, dropout), N TransformerDecoderLayers (causal), a final norm (pre-LN),
// and an LM head tied to the token embedding (logits = h · embedᵀ). forward/backward are
// promise-returning and run their native work on the libuv pool; gradients accumulate until
// zeroGrad(). Parameters are named `embed.weight`, `embed.positions` (learned positions),
// `layers.<i>.<layer parameter>` and `norm.weight` / `norm.bias`.
import { fail } from '../errors.js';
import { loadNamed } from '../layers/parameters.js';
import { TransformerDecoderLayer, type TransformerLayerConfig } from '../layers/transformer.js';
import { crossEntropy, crossEntropyBackward, type CrossEntropyOptions } from '../ops/crossent.js';
import { biasDropoutResidual } from '../ops/dropout.js';
import { embedding, embeddingBackward } from '../ops/embedding.js';
import { gemm, linear } from '../ops/matmul.js';
import { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from '../ops/norm.js';
import { boolOpt, enumOpt, intOpt, numberOpt, optionsArg, seedOpt, tensorArg } from '../ops/common.js';
import { Tensor } from '../tensor.js';

export interface TransformerLMConfig extends Omit<TransformerLayerConfig, 'maxBatchTokens'> {
  vocabSize: number;
  numLayers: number;
  /** Rows of the position table (the longest sequence the model takes). */
  maxSeqLen: number;
  /** 'learned' (default, a trained [maxSeqLen, hidden] table) or 'sinusoidal' (fixed, Vaswani et al.). */
  positions?: 'learned' | 'sinusoidal';
  /** Multiplies token embeddings (default 1 with learned positions, sqrt(hidden) with sinusoidal). */
  embedScale?: number;
  /** Dropout on the embedding output (default: hiddenDropout). */
  embedDropout?: number;
}

export interface LMForwardOptions {
  /** Training mode: dropout on (default false). */
  train?: boolean;
  /** Dropout seed of this call (default: the model's seed plus a call counter). */
  seed?: number | bigint;
}

export interface LMLossOptions extends LMForwardOptions, Omit<CrossEntropyOptions, 'reduction'> {
  /** Also run the backward pass, adding into the gradients (default: the value of train). */
  backward?: boolean;
  /** Scales the loss's gradient (default 1), e.g. 1 / micro-batches or a loss scale. */
  gradScale?: number;
}

export interface LMLoss {
  /** Mean cross-entropy over the counted targets. */
  loss: number;
  /** Targets counted (not ignoreIndex). */
  count: number;
}

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

/** t viewed as `shape`, t itself disposed (the view keeps the data). */
function reshaped(t: Tensor, shape: number[]): Tensor {
  const r = t.reshape(shape);
  t.dispose();
  return r;
}

function mixSeed(seed: number | bigint, k: number): bigint {
  return BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(k) * 0xbf58476d1ce4e5b9n + 1n);
}

/** What the last forward keeps for its backward. */
interface Saved {
  ids: Tensor;
  seed: bigint;
  train: boolean;
  last: Tensor;   // the last layer's output (the final norm's input)
  final: Tensor;  // the LM head's input [T, hidden]
}

export class TransformerLM {
  readonly config: Readonly<TransformerLMConfig>;
  readonly layers: readonly TransformerDecoderLayer[];
  private readonly _embed: Tensor;
  private readonly _pos: Tensor | null;
  private readonly _posLearned: boolean;
  private readonly _norm: { weight: Tensor; bias: Tensor | null } | null;
  private readonly _grads = new Map<string, Tensor>();
  private readonly _embedScale: number;
  private readonly _embedDropout: number;
  private readonly _seed: number | bigint;
  private _calls = 0;
  private _saved: Saved | null = null;
  private _disposed = false;

  constructor(config: TransformerLMConfig) {
    const op = 'TransformerLM';
    const c = optionsArg<TransformerLMConfig>(config, op) as TransformerLMConfig;  // the layers check the rest
    const vocabSize = intOpt(c.vocabSize, op, 'vocabSize', NaN, 1, 2 ** 31 - 1);
    const numLayers = intOpt(c.numLayers, op, 'numLayers', NaN, 0, 4096);
    const maxSeqLen = intOpt(c.maxSeqLen, op, 'maxSeqLen', NaN, 1, 2 ** 24);
    const positions = enumOpt<'learned' | 'sinusoidal'>(c.positions, op, 'positions', 'learned', ['learned', 'sinusoidal']);
    const hidden = intOpt(c.hiddenSize, op, 'hiddenSize', NaN, 1, 2 ** 24);
    const dtype = c.dtype ?? 'f32';
    this._seed = c.seed === undefined ? Math.floor(Math.random() * 2 ** 52) : seedOpt(c.seed, op, true);
    this._embedScale = numberOpt(c.embedScale, op, 'embedScale', positions === 'sinusoidal' ? Math.sqrt(hidden) : 1, 0, 1e6);
    this._embedDropout = numberOpt(c.embedDropout, op, 'embedDropout', c.hiddenDropout ?? 0, 0, 1);
    const layerCfg = { ...c, maxSeqLen, crossAttention: false };
    // GPT-2's init: residual-path projections scaled by 1/sqrt(2 * numLayers)
    this.layers = Array.from({ length: numLayers }, (_, i) => {
      const l = new TransformerDecoderLayer({ ...layerCfg, seed: mixSeed(this._seed, i + 1) });
      const std = (c.initStd ?? 0.02) / Math.sqrt(2 * numLayers);
      for (const name of ['attn.out.weight', 'ffn.fc2.weight']) {
        const w = l.parameters().get(name)!;
        const fresh = Tensor.randn(w.shape, { dtype: w.dtype, std, seed: mixSeed(this._seed, 1000 + 2 * i + (name[0] === 'f' ? 1 : 0)) });
        w.data.set(fresh.data);
        fresh.dispose();
      }
      return l;
    });
    this.config = Object.freeze({ ...c, vocabSize, numLayers, maxSeqLen, positions, hiddenSize: hidden });
    const std = c.initStd ?? 0.02;
    this._embed = Tensor.randn([vocabSize, hidden], { dtype, std, seed: mixSeed(this._seed, 0) });
    this._posLearned = positions === 'learned';
    this._pos = this._posLearned
      ? Tensor.randn([maxSeqLen, hidden], { dtype, std: std / 2, seed: mixSeed(this._seed, 999) })
      : Tensor.from(sinusoid(maxSeqLen, hidden), [maxSeqLen, hidden], { dtype });
    const preLN = boolOpt(c.preLayerNorm, op, 'preLayerNorm', true);
    const rms = c.norm === 'rmsnorm';
    this._norm = preLN
      ? { weight: Tensor.from(new Float32Array(hidden).fill(1), [hidden], { dtype }), bias: rms ? null : Tensor.zeros([hidden], { dtype }) }
      : null;
    for (const [name, t] of this._own()) this._grads.set(name, Tensor.zeros(t.shape, { dtype: t.dtype }));
  }

  /** Every parameter by name (live tensors). */
  parameters(): Map<string, Tensor> {
    this._check('TransformerLM.parameters');
    const m = new Map<string, Tensor>(this._own());
    this.layers.forEach((l, i) => {
      for (const [k, v] of l.parameters()) m.set(`layers.${i}.${k}`, v);
    });
    return m;
  }

  /** The accumulated gradients, under the parameters' names. */
  gradients(): Map<string, Tensor> {
    this._check('TransformerLM.gradients');
    const m = new Map<string, Tensor>(this._grads);
    this.layers.forEach((l, i) => {
      for (const [k, v] of l.gradients()) m.set(`layers.${i}.${k}`, v);
    });
    return m;
  }

  zeroGrad(): void {
    this._check('TransformerLM.zeroGrad');
    for (const g of this._grads.values()) g.data.fill(0);
    for (const l of this.layers) l.zeroGrad();
  }

  /** Copies parameters in by name (all of them; shapes must match, dtypes are converted). */
  loadParameters(params: Map<string, Tensor>): void {
    const op = 'TransformerLM.loadParameters';
    this._check(op);
    loadNamed(op, this.parameters(), params);
  }

  /** ids i32 [B, S] -> logits [B, S, vocab]. Keeps what backward needs until the next forward. */
  async forward(ids: Tensor, opts?: LMForwardOptions): Promise<Tensor> {
    const op = 'TransformerLM.forward';
    this._check(op);
    const o = optionsArg<LMForwardOptions>(opts, op);
    tensorArg(ids, op, 'ids');
    if (ids.dtype !== 'i32' || ids.shape.length !== 2)
      fail(ids.dtype !== 'i32' ? 'ERR_DTYPE' : 'ERR_SHAPE', `${op}: expected ids as an i32 tensor [batch, seq] but received ${ids.dtype} [${ids.shape.join(', ')}]`);
    const [B, S] = ids.shape as [number, number];
    if (S > this.config.maxSeqLen)
      fail('ERR_SHAPE', `${op}: sequence length ${S} exceeds maxSeqLen ${this.config.maxSeqLen} (the position table's rows)`);
    const train = boolOpt(o.train, op, 'train', false);
    const seed = o.seed === undefined ? mixSeed(this._seed, 1e6 + ++this._calls) : BigInt(seedOpt(o.seed, op, true));
    this._release();
    const H = this.config.hiddenSize;
    let x = await embedding.async(ids, this._embed, {
      positions: this._pos, scale: this._embedScale, dropout: train ? this._embedDropout : 0, seed: mixSeed(seed, 0),
    });
    for (let i = 0; i < this.layers.length; i++) {
      const y = await this.layers[i]!.forward(x, { train, seed: mixSeed(seed, i + 1) });
      x.dispose();
      x = y;
    }
    const flat = x.reshape([B * S, H]);
    const final = this._norm ? await this._normFwd(flat) : flat;
    const logits = await linear.async(final, this._embed);
    this._saved = { ids, seed, train, last: x, final };
    return reshaped(logits, [B, S, this.config.vocabSize]);
  }

  /** dLogits [B, S, vocab] (of the last forward) -> gradients added into gradients(). */
  async backward(dLogits: Tensor): Promise<void> {
    const op = 'TransformerLM.backward';
    this._check(op);
    tensorArg(dLogits, op, 'dLogits');
    const s = this._saved;
    if (!s) fail('ERR_ARG', `${op}: no forward to differentiate; call forward first`);
    const [B, S] = s.ids.shape as [number, number];
    const V = this.config.vocabSize, H = this.config.hiddenSize;
    if (dLogits.shape.length !== 3 || dLogits.shape[0] !== B || dLogits.shape[1] !== S || dLogits.shape[2] !== V)
      fail('ERR_SHAPE', `${op}: expected dLogits of shape [${B}, ${S}, ${V}] but received [${dLogits.shape.join(', ')}]`);
    const dl = dLogits.reshape([B * S, V]);
    const gEmbed = this._grads.get('embed.weight')!;
    await gemm.async(dl, s.final, { transA: true, c: gEmbed, beta: 1, out: gEmbed });
    let dx = await gemm.async(dl, this._embed);
    dl.dispose();
    if (this._norm) {
      const dn = await this._normBwd(dx, s.last.reshape([B * S, H]));
      dx.dispose();
      dx = dn;
    }
    dx = reshaped(dx, [B, S, H]);
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const d = await this.layers[i]!.backward(dx);
      dx.dispose();
      dx = d;
    }
    await embeddingBackward.async(dx, s.ids, {
      vocabSize: V, scale: this._embedScale, dropout: s.train ? this._embedDropout : 0, seed: mixSeed(s.seed, 0), dtable: gEmbed,
      ...(this._posLearned ? { numPositions: this.config.maxSeqLen, dpositions: this._grads.get('embed.positions')! } : {}),
    });
    dx.dispose();
  }

  /**
   * Cross-entropy of the next-token logits against `targets` (i32 [B, S], ignoreIndex allowed),
   * and with `backward` (default: train) the gradients of the mean loss (times gradScale).
   */
  async loss(ids: Tensor, targets: Tensor, opts?: LMLossOptions): Promise<LMLoss> {
    const op = 'TransformerLM.loss';
    const o = optionsArg<LMLossOptions>(opts, op);
    const backward = boolOpt(o.backward, op, 'backward', o.train ?? false);
    const gradScale = numberOpt(o.gradScale, op, 'gradScale', 1, 0, 3.4e38);
    tensorArg(targets, op, 'targets');
    if (targets.shape.length !== 2 || targets.shape[0] !== ids.shape[0] || targets.shape[1] !== ids.shape[1])
      fail('ERR_SHAPE', `${op}: expected targets of shape [${ids.shape.join(', ')}] (that of ids) but received [${targets.shape.join(', ')}]`);
    const logits = await this.forward(ids, o);
    const ce = { labelSmoothing: o.labelSmoothing, ignoreIndex: o.ignoreIndex, mile: o.mile };
    const res = await crossEntropy.async(logits, targets, ce);
    try {
      if (backward) {
        const dl = await crossEntropyBackward.async(logits, targets, res, { dLoss: gradScale, out: logits });
        await this.backward(dl);
      }
      return { loss: res.loss, count: res.count };
    } finally {
      logits.dispose();
      res.lse.dispose();
      res.weights?.dispose();
      res.losses?.dispose();
    }
  }

  /**
   * Continues `prompt` by `maxNewTokens` tokens, sampling from softmax(logits / temperature) over
   * the topK most likely tokens (temperature 0: greedy). Recomputes the whole (cropped) context
   * for every token: meant for samples during training, not for serving.
   */
  async generate(prompt: ArrayLike<number>, opts: { maxNewTokens: number; temperature?: number; topK?: number; seed?: number }): Promise<Int32Array> {
    const op = 'TransformerLM.generate';
    this._check(op);
    const o = optionsArg<{ maxNewTokens: number; temperature?: number; topK?: number; seed?: number }>(opts, op);
    const n = intOpt(o.maxNewTokens, op, 'maxNewTokens', NaN, 0, 2 ** 24);
    const temperature = numberOpt(o.temperature, op, 'temperature', 1, 0, 1e6);
    const topK = intOpt(o.topK, op, 'topK', this.config.vocabSize, 1, this.config.vocabSize);
    let state = (Number(o.seed ?? 12345) >>> 0) || 1;
    const uniform = () => {
      state ^= state << 13; state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5; state >>>= 0;
      return state / 4294967296;
    };
    const seq = Array.from(prompt, (v) => v | 0);
    if (seq.length === 0) fail('ERR_ARG', `${op}: expected a non-empty prompt`);
    const V = this.config.vocabSize;
    for (let t = 0; t < n; t++) {
      const ctx = seq.slice(-this.config.maxSeqLen);
      const ids = Tensor.from(Int32Array.from(ctx), [1, ctx.length], { dtype: 'i32' });
      const logits = await this.forward(ids, { train: false });
      const all = logits.toArray();
      logits.dispose();
      ids.dispose();
      const last = Array.from(all.subarray((ctx.length - 1) * V, ctx.length * V));
      let next = 0;
      if (temperature === 0) {
        for (let v = 1; v < V; v++) if (last[v]! > last[next]!) next = v;
      } else {
        const order = last.map((_, v) => v).sort((a, b) => last[b]! - last[a]!).slice(0, topK);
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
    }
    this._release();
    return Int32Array.from(seq.slice(seq.length - n));
  }

  dispose(): void {
    if (this._disposed) return;
    this._release();
    this._disposed = true;
    for (const l of this.layers) l.dispose();
    for (const [, t] of this._own()) t.dispose();
    if (!this._posLearned) this._pos?.dispose();
    for (const g of this._grads.values()) g.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private _own(): [string, Tensor][] {
    const own: [string, Tensor][] = [['embed.weight', this._embed]];
    if (this._posLearned) own.push(['embed.positions', this._pos!]);
    if (this._norm) {
      own.push(['norm.weight', this._norm.weight]);
      if (this._norm.bias) own.push(['norm.bias', this._norm.bias]);
    }
    return own;
  }

  private _normFwd(x: Tensor): Promise<Tensor> {
    const n = this._norm!;
    const eps = this.config.layerNormEps ?? 1e-5;
    return n.bias ? layerNorm.async(x, n.weight, n.bias, { eps }) : rmsNorm.async(x, n.weight, { eps });
  }

  private async _normBwd(dy: Tensor, x: Tensor): Promise<Tensor> {
    const n = this._norm!;
    const eps = this.config.layerNormEps ?? 1e-5;
    const g = n.bias
      ? await layerNormBackward.async(dy, x, n.weight, { eps })
      : await rmsNormBackward.async(dy, x, n.weight, { eps, hasBeta: false });
    const add = async (name: string, d: Tensor | undefined) => {
      if (!d) return;
      const acc = this._grads.get(name)!;
      await biasDropoutResidual.async(d, null, acc, { out: acc });
      d.dispose();
    };
    await add('norm.weight', g.dgamma);
    await add('norm.bias', n.bias ? g.dbeta : undefined);
    if (!n.bias) g.dbeta?.dispose();
    return g.dx;
  }

  private _release(): void {
    const s = this._saved;
    if (!s) return;
    this._saved = null;
    s.last.dispose();
    if (s.final !== s.last) s.final.dispose();
  }

  private _check(op: string): void {
    if (this._disposed) fail('ERR_DISPOSED', `${op}: this model was disposed`);
  }
}

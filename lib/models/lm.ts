// TransformerLM: a decoder-only language model from the fused layers — token embedding (+ learned
// or sinusoidal positions, dropout), N causal TransformerDecoderLayers, a final norm (pre-LN), and
// an LM head tied to the token embedding (logits = h · embedᵀ). Parameters: `embed.weight`,
// `embed.positions` (learned), `layers.<i>.<layer parameter>`, `norm.weight` / `norm.bias`.
import { fail } from '../errors.js';
import { Embedding, Norm } from '../layers/embedding.js';
import { TransformerDecoderLayer, type TransformerLayerConfig } from '../layers/transformer.js';
import { boolOpt, enumOpt, intOpt, numberOpt, optionsArg, seedOpt, tensorArg } from '../ops/common.js';
import { Tensor } from '../tensor.js';
import { type GenerateOptions, type LossOptions, type LossResult, mixSeed, ModelBase, type Module, promptArg, reshaped } from './base.js';

export interface TransformerLMConfig extends Omit<TransformerLayerConfig, 'maxBatchTokens'> {
  vocabSize: number;
  numLayers: number;
  /** Rows of the position table (the longest sequence the model takes). */
  maxSeqLen: number;
  /**
   * 'learned' (default, a trained [maxSeqLen, hidden] table), 'sinusoidal' (fixed, Vaswani et al.)
   * or 'rotary' (no table: every self-attention rotates q and k, `rotary` of the layer config).
   */
  positions?: 'learned' | 'sinusoidal' | 'rotary';
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

/** The token embedding of a model built by stackParts (no position table with rotary positions). */
export function stackEmbedding(op: string, c: TransformerLMConfig, p: { hidden: number; positions: string; std: number },
  vocabSize: number, maxSeqLen: number, seed: number | bigint): Embedding {
  return new Embedding({
    vocabSize, hiddenSize: p.hidden, maxSeqLen, positions: p.positions === 'rotary' ? 'none' : p.positions as 'learned' | 'sinusoidal',
    scale: c.embedScale, dropout: numberOpt(c.embedDropout, op, 'embedDropout', c.hiddenDropout ?? 0, 0, 1), dtype: c.dtype,
    device: c.device, initStd: p.std, seed: mixSeed(seed, 0),
  });
}

/** The shared part of the decoder-only and encoder-decoder configs: layers and final norm. */
export function stackParts(op: string, c: TransformerLMConfig, seed: number | bigint, numLayers: number, base: number,
  layer: (cfg: TransformerLayerConfig & { seed: bigint }, i: number) => TransformerDecoderLayer | Module) {
  const hidden = intOpt(c.hiddenSize, op, 'hiddenSize', NaN, 1, 2 ** 24);
  const positions = enumOpt<'learned' | 'sinusoidal' | 'rotary'>(c.positions, op, 'positions', 'learned', ['learned', 'sinusoidal', 'rotary']);
  const std = numberOpt(c.initStd, op, 'initStd', 0.02, 0, 1e3);
  const layers = Array.from({ length: numLayers }, (_, i) => {
    const l = layer({ ...c, rotary: positions === 'rotary' ? c.rotary ?? true : c.rotary, seed: mixSeed(seed, base + i + 1) }, i);
    // GPT-2's init: residual-path projections scaled by 1/sqrt(2 * layers)
    for (const name of ['attn.out.weight', 'cross.out.weight', 'ffn.fc2.weight']) {
      const w = l.parameters().get(name);
      if (!w) continue;
      const fresh = Tensor.randn(w.shape, { dtype: w.dtype, std: std / Math.sqrt(2 * numLayers), seed: mixSeed(seed, 10_000 + 4 * (base + i) + name.length) });
      w._copyFrom(fresh);  // drawn on the CPU: the same weights on every device
      fresh.dispose();
    }
    return l;
  });
  const preLN = boolOpt(c.preLayerNorm, op, 'preLayerNorm', true);
  const norm = preLN ? new Norm({ hiddenSize: hidden, norm: c.norm, eps: c.layerNormEps, dtype: c.dtype, device: c.device }) : null;
  return { hidden, positions, std, layers, norm, preLN };
}

export class TransformerLM extends ModelBase {
  readonly config: Readonly<TransformerLMConfig>;
  readonly layers: readonly TransformerDecoderLayer[];
  readonly embed: Embedding;
  private readonly _norm: Norm | null;
  private _saved: { ids: Tensor; seed: bigint; train: boolean; last: Tensor; final: Tensor } | null = null;

  constructor(config: TransformerLMConfig) {
    const op = 'TransformerLM';
    const c = optionsArg<TransformerLMConfig>(config, op) as TransformerLMConfig;  // the layers check the rest
    const seed = c.seed === undefined ? Math.floor(Math.random() * 2 ** 52) : seedOpt(c.seed, op, true);
    super(op, seed);
    const vocabSize = intOpt(c.vocabSize, op, 'vocabSize', NaN, 1, 2 ** 31 - 1);
    const numLayers = intOpt(c.numLayers, op, 'numLayers', NaN, 0, 4096);
    const maxSeqLen = intOpt(c.maxSeqLen, op, 'maxSeqLen', NaN, 1, 2 ** 24);
    const p = stackParts(op, c, seed, numLayers, 0, (cfg) => new TransformerDecoderLayer({ ...cfg, maxSeqLen, crossAttention: false }));
    this.layers = p.layers as TransformerDecoderLayer[];
    this._norm = p.norm;
    this.embed = stackEmbedding(op, c, p, vocabSize, maxSeqLen, seed);
    this.config = Object.freeze({ ...c, vocabSize, numLayers, maxSeqLen, positions: p.positions, hiddenSize: p.hidden });
  }

  /** ids i32 [B, S] -> logits [B, S, vocab]. Keeps what backward needs until the next forward. */
  async forward(ids: Tensor, opts?: LMForwardOptions): Promise<Tensor> {
    const op = 'TransformerLM.forward';
    this._check(op);
    const o = optionsArg<LMForwardOptions>(opts, op);
    this._ids(op, ids, 'ids');
    const [B, S] = ids.shape as [number, number];
    if (S > this.config.maxSeqLen) fail('ERR_SHAPE', `${op}: sequence length ${S} exceeds maxSeqLen ${this.config.maxSeqLen} (the position table's rows)`);
    const train = boolOpt(o.train, op, 'train', false);
    if (o.seed !== undefined) seedOpt(o.seed, op, true);
    const seed = this._callSeed(o.seed);
    this._release();
    const x = await this._embedAndRun(this.embed, ids, this.layers, train, seed, 0, 1, {});
    const flat = x.reshape([B * S, this.config.hiddenSize]);
    const final = this._norm ? await this._norm.forward(flat) : flat;
    if (this._norm) flat.dispose();
    const logits = await this._head(final, this.embed);
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
    let dx = await this._headBackward(dl, s.final, this.embed);
    dl.dispose();
    if (this._norm) {
      const x = s.last.reshape([B * S, H]);
      const dn = await this._norm.backward(dx, x);
      x.dispose();
      dx.dispose();
      dx = dn;
    }
    await this._runAndEmbedBackward(this.embed, s.ids, this.layers, reshaped(dx, [B, S, H]), s.train, s.seed, 0, {});
  }

  /**
   * Mean cross-entropy of the next-token logits against `targets` (i32 [B, S], ignoreIndex
   * allowed), and with `backward` (default: train) the gradients of gradScale · loss.
   */
  async loss(ids: Tensor, targets: Tensor, opts?: LossOptions): Promise<LossResult> {
    const op = 'TransformerLM.loss';
    const o = optionsArg<LossOptions>(opts, op);
    this._ids(op, targets, 'targets');
    if (targets.shape[0] !== ids.shape[0] || targets.shape[1] !== ids.shape[1])
      fail('ERR_SHAPE', `${op}: expected targets of shape [${ids.shape.join(', ')}] (that of ids) but received [${targets.shape.join(', ')}]`);
    const logits = await this.forward(ids, o);
    return this._loss(op, logits, targets, o, (dl) => this.backward(dl));
  }

  /**
   * Continues `prompt` by up to `maxNewTokens` tokens sampled from softmax(logits / temperature)
   * over the topK most likely (temperature 0: greedy). Recomputes the (cropped) context for every
   * token: for samples during training, not for serving.
   */
  generate(prompt: ArrayLike<number>, opts: GenerateOptions): Promise<Int32Array> {
    const op = 'TransformerLM.generate';
    this._check(op);
    const V = this.config.vocabSize;
    return this._sample(op, opts, V, promptArg(op, prompt, V), async (seq) => {
      const ctx = seq.slice(-this.config.maxSeqLen);
      const ids = Tensor.from(Int32Array.from(ctx), [1, ctx.length], { dtype: 'i32', device: this.device });
      const logits = await this.forward(ids, { train: false });
      const last = (logits.toArray() as Float32Array).slice((ctx.length - 1) * V);
      logits.dispose();
      ids.dispose();
      return last;
    });
  }

  protected _modules(): [string, Module][] {
    const m: [string, Module][] = [['embed', this.embed]];
    this.layers.forEach((l, i) => m.push([`layers.${i}`, l]));
    if (this._norm) m.push(['norm', this._norm]);
    return m;
  }

  protected _release(): void {
    const s = this._saved;
    if (!s) return;
    this._saved = null;
    s.last.dispose();
    s.final.dispose();
  }
}

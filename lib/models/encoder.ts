// TransformerEncoder: a BERT-like encoder from the fused layers — token embedding (+ positions,
// dropout), N TransformerEncoderLayers (kvLengths mask padding), a final norm (pre-LN), and a
// masked-LM head tied to the embedding for pre-training. Parameters: `embed.*`, `layers.<i>.*`,
// `norm.*`.
import { fail } from '../errors.js';
import type { Embedding, Norm } from '../layers/embedding.js';
import { TransformerEncoderLayer } from '../layers/transformer.js';
import { boolOpt, intOpt, optionsArg, seedOpt, tensorArg } from '../ops/common.js';
import type { Tensor } from '../tensor.js';
import { type LossOptions, type LossResult, ModelBase, type Module, reshaped } from './base.js';
import { stackEmbedding, stackParts, type TransformerLMConfig } from './lm.js';

export type TransformerEncoderConfig = TransformerLMConfig;

export interface EncoderForwardOptions {
  /** Tokens per batch row (Int32Array or i32 tensor [B]); the rest is padding, masked as keys. */
  lengths?: Int32Array | Tensor;
  train?: boolean;
  seed?: number | bigint;
}

export class TransformerEncoder extends ModelBase {
  readonly config: Readonly<TransformerEncoderConfig>;
  readonly embed: Embedding;
  readonly layers: readonly TransformerEncoderLayer[];
  private readonly _norm: Norm | null;
  private _saved: { ids: Tensor; seed: bigint; train: boolean; last: Tensor; out: Tensor } | null = null;

  constructor(config: TransformerEncoderConfig) {
    const op = 'TransformerEncoder';
    const c = optionsArg<TransformerEncoderConfig>(config, op) as TransformerEncoderConfig;
    const seed = c.seed === undefined ? Math.floor(Math.random() * 2 ** 52) : seedOpt(c.seed, op, true);
    super(op, seed);
    const vocabSize = intOpt(c.vocabSize, op, 'vocabSize', NaN, 1, 2 ** 31 - 1);
    const numLayers = intOpt(c.numLayers, op, 'numLayers', NaN, 0, 4096);
    const maxSeqLen = intOpt(c.maxSeqLen, op, 'maxSeqLen', NaN, 1, 2 ** 24);
    const p = stackParts(op, c, seed, numLayers, 0, (cfg) => new TransformerEncoderLayer({ ...cfg, maxSeqLen }));
    this.layers = p.layers as TransformerEncoderLayer[];
    this._norm = p.norm;
    this.embed = stackEmbedding(op, c, p, vocabSize, maxSeqLen, seed);
    this.config = Object.freeze({ ...c, vocabSize, numLayers, maxSeqLen, positions: p.positions, hiddenSize: p.hidden });
  }

  /** ids i32 [B, S] -> hidden states [B, S, hidden] (after the final norm with pre-LN). */
  async forward(ids: Tensor, opts?: EncoderForwardOptions): Promise<Tensor> {
    const op = 'TransformerEncoder.forward';
    this._check(op);
    const o = optionsArg<EncoderForwardOptions>(opts, op);
    this._ids(op, ids, 'ids');
    const [B, S] = ids.shape as [number, number];
    if (S > this.config.maxSeqLen) fail('ERR_SHAPE', `${op}: sequence length ${S} exceeds maxSeqLen ${this.config.maxSeqLen}`);
    const train = boolOpt(o.train, op, 'train', false);
    if (o.seed !== undefined) seedOpt(o.seed, op, true);
    const seed = this._callSeed(o.seed);
    this._release();
    const x = await this._embedAndRun(this.embed, ids, this.layers, train, seed, 0, 1, { kvLengths: o.lengths });
    const H = this.config.hiddenSize;
    let out: Tensor;
    if (this._norm) {
      const flat = x.reshape([B * S, H]);
      out = reshaped(await this._norm.forward(flat), [B, S, H]);
      flat.dispose();
    } else {
      out = x.reshape([B, S, H]);
    }
    this._saved = { ids, seed, train, last: x, out };
    return out.reshape([B, S, H]);
  }

  /** dHidden [B, S, hidden] of the last forward -> gradients added into gradients(). */
  async backward(dHidden: Tensor): Promise<void> {
    const op = 'TransformerEncoder.backward';
    this._check(op);
    tensorArg(dHidden, op, 'dHidden');
    const s = this._saved;
    if (!s) fail('ERR_ARG', `${op}: no forward to differentiate; call forward first`);
    const [B, S] = s.ids.shape as [number, number];
    const H = this.config.hiddenSize;
    if (dHidden.shape.length !== 3 || dHidden.shape[0] !== B || dHidden.shape[1] !== S || dHidden.shape[2] !== H)
      fail('ERR_SHAPE', `${op}: expected dHidden of shape [${B}, ${S}, ${H}] but received [${dHidden.shape.join(', ')}]`);
    let dx: Tensor;
    if (this._norm) {
      const dy = dHidden.reshape([B * S, H]);
      const x = s.last.reshape([B * S, H]);
      dx = reshaped(await this._norm.backward(dy, x), [B, S, H]);
      dy.dispose();
      x.dispose();
    } else {
      dx = dHidden.reshape([B, S, H]);
    }
    await this._runAndEmbedBackward(this.embed, s.ids, this.layers, dx, s.train, s.seed, 0, {});
  }

  /**
   * Masked-LM loss: the tied head on every position against `targets` (i32 [B, S]; ignoreIndex,
   * default -100, at the positions not to predict), with its backward when asked.
   */
  async mlmLoss(ids: Tensor, targets: Tensor, opts?: LossOptions & { lengths?: Int32Array | Tensor }): Promise<LossResult> {
    const op = 'TransformerEncoder.mlmLoss';
    const o = optionsArg<LossOptions & { lengths?: Int32Array | Tensor }>(opts, op);
    this._ids(op, targets, 'targets');
    if (targets.shape[0] !== ids.shape[0] || targets.shape[1] !== ids.shape[1])
      fail('ERR_SHAPE', `${op}: expected targets of shape [${ids.shape.join(', ')}] (that of ids) but received [${targets.shape.join(', ')}]`);
    const h = await this.forward(ids, o);
    const [B, S] = ids.shape as [number, number];
    const H = this.config.hiddenSize, V = this.config.vocabSize;
    const flat = reshaped(h, [B * S, H]);
    const logits = reshaped(await this._head(flat, this.embed), [B, S, V]);
    try {
      return await this._loss(op, logits, targets, o, async (dl) => {
        const d2 = dl.reshape([B * S, V]);
        const dh = reshaped(await this._headBackward(d2, flat, this.embed), [B, S, H]);
        d2.dispose();
        await this.backward(dh);
        dh.dispose();
      });
    } finally {
      flat.dispose();
    }
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
    s.out.dispose();
  }
}

// Seq2SeqTransformer: an encoder-decoder Transformer (Vaswani et al.) from the fused layers, with
// one token embedding shared by source, target and the output head. Parameters: `embed.*`,
// `encoder.<i>.*`, `encoderNorm.*` and `decoderNorm.*` (pre-LN), `decoder.<i>.*` (with `cross.*`).
import { fail } from '../errors.js';
import type { Embedding, Norm } from '../layers/embedding.js';
import { TransformerDecoderLayer, TransformerEncoderLayer } from '../layers/transformer.js';
import { boolOpt, intOpt, optionsArg, seedOpt, tensorArg } from '../ops/common.js';
import { Tensor } from '../tensor.js';
import { type GenerateOptions, type LossOptions, type LossResult, ModelBase, type Module, promptArg, reshaped } from './base.js';
import { stackEmbedding, stackParts, type TransformerLMConfig } from './lm.js';

export interface Seq2SeqConfig extends Omit<TransformerLMConfig, 'numLayers'> {
  numEncoderLayers: number;
  numDecoderLayers: number;
}

export interface Seq2SeqForwardOptions {
  /** Source tokens per batch row (Int32Array or i32 tensor [B]); the rest is padding. */
  srcLengths?: Int32Array | Tensor;
  train?: boolean;
  seed?: number | bigint;
}

interface Saved {
  src: Tensor;
  tgt: Tensor;
  srcLengths?: Int32Array | Tensor;
  seed: bigint;
  train: boolean;
  encLast: Tensor;  // last encoder layer's output (the encoder norm's input)
  memory: Tensor;   // what the decoder attends to
  decLast: Tensor;
  final: Tensor;
}

export class Seq2SeqTransformer extends ModelBase {
  readonly config: Readonly<Seq2SeqConfig>;
  readonly embed: Embedding;
  readonly encoder: readonly TransformerEncoderLayer[];
  readonly decoder: readonly TransformerDecoderLayer[];
  private readonly _encNorm: Norm | null;
  private readonly _decNorm: Norm | null;
  private _saved: Saved | null = null;

  constructor(config: Seq2SeqConfig) {
    const op = 'Seq2SeqTransformer';
    const c = optionsArg<Seq2SeqConfig>(config, op) as Seq2SeqConfig;
    const seed = c.seed === undefined ? Math.floor(Math.random() * 2 ** 52) : seedOpt(c.seed, op, true);
    super(op, seed);
    const vocabSize = intOpt(c.vocabSize, op, 'vocabSize', NaN, 1, 2 ** 31 - 1);
    const ne = intOpt(c.numEncoderLayers, op, 'numEncoderLayers', NaN, 0, 4096);
    const nd = intOpt(c.numDecoderLayers, op, 'numDecoderLayers', NaN, 0, 4096);
    const maxSeqLen = intOpt(c.maxSeqLen, op, 'maxSeqLen', NaN, 1, 2 ** 24);
    const lc = { ...c, vocabSize, numLayers: ne + nd, maxSeqLen } as TransformerLMConfig;
    const enc = stackParts(op, lc, seed, ne, 0, (cfg) => new TransformerEncoderLayer(cfg));
    const dec = stackParts(op, lc, seed, nd, ne, (cfg) => new TransformerDecoderLayer({ ...cfg, crossAttention: true }));
    this.encoder = enc.layers as TransformerEncoderLayer[];
    this.decoder = dec.layers as TransformerDecoderLayer[];
    this._encNorm = enc.norm;
    this._decNorm = dec.norm;
    this.embed = stackEmbedding(op, lc, enc, vocabSize, maxSeqLen, seed);
    this.config = Object.freeze({ ...c, vocabSize, numEncoderLayers: ne, numDecoderLayers: nd, maxSeqLen, positions: enc.positions, hiddenSize: enc.hidden });
  }

  /** The encoder's output [B, Ssrc, hidden] (what the decoder attends to), without keeping anything for backward. */
  async encode(src: Tensor, opts?: Seq2SeqForwardOptions): Promise<Tensor> {
    const op = 'Seq2SeqTransformer.encode';
    this._check(op);
    const o = optionsArg<Seq2SeqForwardOptions>(opts, op);
    this._ids(op, src, 'src');
    const r = await this._encode(src, o.srcLengths, false, this._callSeed(undefined));
    r.encLast.dispose();
    return r.memory;
  }

  /** src [B, Ssrc] and decoder input tgt [B, Stgt] (i32) -> logits [B, Stgt, vocab]. */
  async forward(src: Tensor, tgt: Tensor, opts?: Seq2SeqForwardOptions): Promise<Tensor> {
    const op = 'Seq2SeqTransformer.forward';
    this._check(op);
    const o = optionsArg<Seq2SeqForwardOptions>(opts, op);
    this._ids(op, src, 'src');
    this._ids(op, tgt, 'tgt');
    if (src.shape[0] !== tgt.shape[0]) fail('ERR_SHAPE', `${op}: expected src and tgt with the same batch but received ${src.shape[0]} and ${tgt.shape[0]}`);
    const train = boolOpt(o.train, op, 'train', false);
    if (o.seed !== undefined) seedOpt(o.seed, op, true);
    const seed = this._callSeed(o.seed);
    this._release();
    const { encLast, memory } = await this._encode(src, o.srcLengths, train, seed);
    const [B, St] = tgt.shape as [number, number];
    const H = this.config.hiddenSize;
    const x = await this._embedAndRun(this.embed, tgt, this.decoder, train, seed, 1, 1000, { encoderOut: memory, encoderLengths: o.srcLengths });
    const flat = x.reshape([B * St, H]);
    const final = this._decNorm ? await this._decNorm.forward(flat) : flat;
    if (this._decNorm) flat.dispose();
    const logits = await this._head(final, this.embed);
    this._saved = { src, tgt, srcLengths: o.srcLengths, seed, train, encLast, memory, decLast: x, final };
    return reshaped(logits, [B, St, this.config.vocabSize]);
  }

  /** dLogits [B, Stgt, vocab] of the last forward -> gradients added into gradients(). */
  async backward(dLogits: Tensor): Promise<void> {
    const op = 'Seq2SeqTransformer.backward';
    this._check(op);
    tensorArg(dLogits, op, 'dLogits');
    const s = this._saved;
    if (!s) fail('ERR_ARG', `${op}: no forward to differentiate; call forward first`);
    const [B, St] = s.tgt.shape as [number, number];
    const Ss = s.src.shape[1]!;
    const V = this.config.vocabSize, H = this.config.hiddenSize;
    if (dLogits.shape.length !== 3 || dLogits.shape[0] !== B || dLogits.shape[1] !== St || dLogits.shape[2] !== V)
      fail('ERR_SHAPE', `${op}: expected dLogits of shape [${B}, ${St}, ${V}] but received [${dLogits.shape.join(', ')}]`);
    const dl = dLogits.reshape([B * St, V]);
    let dx = await this._headBackward(dl, s.final, this.embed);
    dl.dispose();
    if (this._decNorm) dx = await this._normBack(this._decNorm, dx, s.decLast, B * St);
    dx = reshaped(dx, [B, St, H]);
    const dMem = Tensor.zeros([B, Ss, H], { dtype: dx.dtype, device: dx.device });
    await this._runAndEmbedBackward(this.embed, s.tgt, this.decoder, dx, s.train, s.seed, 1, { dEncoderOut: dMem });
    const de = this._encNorm ? await this._normBack(this._encNorm, reshaped(dMem, [B * Ss, H]), s.encLast, B * Ss) : dMem;
    await this._runAndEmbedBackward(this.embed, s.src, this.encoder, reshaped(de, [B, Ss, H]), s.train, s.seed, 0, {});
  }

  /** Mean cross-entropy of the decoder's logits against tgtOut (i32 [B, Stgt]), and its backward when asked. */
  async loss(src: Tensor, tgtIn: Tensor, tgtOut: Tensor, opts?: LossOptions & { srcLengths?: Int32Array | Tensor }): Promise<LossResult> {
    const op = 'Seq2SeqTransformer.loss';
    const o = optionsArg<LossOptions & { srcLengths?: Int32Array | Tensor }>(opts, op);
    this._ids(op, tgtOut, 'tgtOut');
    if (tgtOut.shape[0] !== tgtIn.shape[0] || tgtOut.shape[1] !== tgtIn.shape[1])
      fail('ERR_SHAPE', `${op}: expected tgtOut of shape [${tgtIn.shape.join(', ')}] (that of tgtIn) but received [${tgtOut.shape.join(', ')}]`);
    const logits = await this.forward(src, tgtIn, o);
    return this._loss(op, logits, tgtOut, o, (dl) => this.backward(dl));
  }

  /** Decodes one source sequence from `start` (e.g. a BOS token) until stopToken or maxNewTokens. */
  async generate(src: ArrayLike<number>, start: ArrayLike<number>, opts: GenerateOptions): Promise<Int32Array> {
    const op = 'Seq2SeqTransformer.generate';
    this._check(op);
    const V = this.config.vocabSize;
    const s = promptArg(op, src, V);
    const srcT = Tensor.from(Int32Array.from(s), [1, s.length], { dtype: 'i32', device: this.device });
    try {
      return await this._sample(op, opts, V, promptArg(op, start, V), async (seq) => {
        const ctx = seq.slice(-this.config.maxSeqLen);
        const tgt = Tensor.from(Int32Array.from(ctx), [1, ctx.length], { dtype: 'i32', device: this.device });
        const logits = await this.forward(srcT, tgt, { train: false });
        const last = (logits.toArray() as Float32Array).slice((ctx.length - 1) * V);
        logits.dispose();
        tgt.dispose();
        return last;
      });
    } finally {
      srcT.dispose();
    }
  }

  protected _modules(): [string, Module][] {
    const m: [string, Module][] = [['embed', this.embed]];
    this.encoder.forEach((l, i) => m.push([`encoder.${i}`, l]));
    if (this._encNorm) m.push(['encoderNorm', this._encNorm]);
    this.decoder.forEach((l, i) => m.push([`decoder.${i}`, l]));
    if (this._decNorm) m.push(['decoderNorm', this._decNorm]);
    return m;
  }

  protected _release(): void {
    const s = this._saved;
    if (!s) return;
    this._saved = null;
    for (const t of new Set([s.encLast, s.memory, s.decLast, s.final])) t.dispose();
  }

  private async _encode(src: Tensor, srcLengths: Int32Array | Tensor | undefined, train: boolean, seed: bigint) {
    const [B, Ss] = src.shape as [number, number];
    const x = await this._embedAndRun(this.embed, src, this.encoder, train, seed, 0, 2, { kvLengths: srcLengths });
    if (!this._encNorm) return { encLast: x, memory: x.reshape([B, Ss, this.config.hiddenSize]) };
    const flat = x.reshape([B * Ss, this.config.hiddenSize]);
    const n = await this._encNorm.forward(flat);
    flat.dispose();
    return { encLast: x, memory: reshaped(n, [B, Ss, this.config.hiddenSize]) };
  }

  /** The norm's backward on [rows, H] views; disposes dy. */
  private async _normBack(norm: Norm, dy: Tensor, x: Tensor, rows: number): Promise<Tensor> {
    const xv = x.reshape([rows, this.config.hiddenSize]);
    const d = await norm.backward(dy, xv);
    xv.dispose();
    dy.dispose();
    return d;
  }
}

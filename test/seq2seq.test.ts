// Seq2SeqTransformer: the loss gradient against float64 central differences of a float64
// reference (shared embedding, encoder layers, encoder norm, decoder layers with cross-attention,
// decoder norm, tied head), and a short run that learns to reverse sequences.
import { describe, expect, it } from 'vitest';
import { AdamW, Seq2SeqTransformer, type Seq2SeqConfig, Tensor } from '../lib/index.js';
import { expectGradsMatchFD, freshSeed, rng } from './helpers.js';
import { embeddingRef } from './reference/embedding.js';
import { layerNormRef } from './reference/norm.js';
import { type LayerRefConfig, layerRef } from './reference/transformer.js';

function sub(p: Map<string, Float64Array>, prefix: string): Map<string, Float64Array> {
  const m = new Map<string, Float64Array>();
  for (const [k, v] of p) if (k.startsWith(prefix)) m.set(k.slice(prefix.length), v);
  return m;
}

function refLoss(cfg: Seq2SeqConfig, p: Map<string, Float64Array>, src: Int32Array, tin: Int32Array, tout: Int32Array,
  B: number, Ss: number, St: number, srcLengths: number[]): number {
  const H = cfg.hiddenSize, V = cfg.vocabSize;
  const lc = (causal: boolean, cross: boolean): LayerRefConfig => ({
    hidden: H, heads: cfg.numHeads, kvHeads: cfg.numKvHeads ?? cfg.numHeads, ffn: cfg.ffnSize, act: 'gelu', preLN: true, rms: false,
    eps: 1e-5, causal, cross, attnDropout: 0, actDropout: 0, hiddenDropout: 0,
  });
  const E = p.get('embed.weight')!, P = p.get('embed.positions')!;
  let x = embeddingRef(src, E, H, Ss, { positions: P });
  for (let l = 0; l < cfg.numEncoderLayers; l++) x = layerRef(lc(false, false), sub(p, `encoder.${l}.`), { B, S: Ss, x, lengths: srcLengths });
  const mem = layerNormRef(x, p.get('encoderNorm.weight')!, p.get('encoderNorm.bias')!, B * Ss, H, 1e-5);
  let y = embeddingRef(tin, E, H, St, { positions: P });
  for (let l = 0; l < cfg.numDecoderLayers; l++)
    y = layerRef(lc(true, true), sub(p, `decoder.${l}.`), { B, S: St, x: y, Senc: Ss, enc: mem, encLengths: srcLengths });
  const h = layerNormRef(y, p.get('decoderNorm.weight')!, p.get('decoderNorm.bias')!, B * St, H, 1e-5);
  let total = 0;
  for (let t = 0; t < B * St; t++) {
    const z = new Float64Array(V);
    for (let v = 0; v < V; v++) for (let j = 0; j < H; j++) z[v] += h[t * H + j]! * E[v * H + j]!;
    const m = Math.max(...z);
    total += m + Math.log(z.reduce((a, q) => a + Math.exp(q - m), 0)) - z[tout[t]!]!;
  }
  return total / (B * St);
}

describe('Seq2SeqTransformer', () => {
  it('loss gradient matches float64 finite differences of a float64 reference model', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const cfg: Seq2SeqConfig = { vocabSize: 6, hiddenSize: 8, numEncoderLayers: 1, numDecoderLayers: 2, numHeads: 2, ffnSize: 10, maxSeqLen: 5, seed: 4, initStd: 0.3 };
    const model = new Seq2SeqTransformer(cfg);
    for (const [name, t] of model.parameters())
      if (name.includes('norm') || name.includes('Norm')) {
        const d = t.data as Float32Array;
        for (let i = 0; i < d.length; i++) d[i] = (name.endsWith('weight') ? 1 : 0) + (r() - 0.5) * 0.4;
      }
    const B = 2, Ss = 4, St = 3, srcLengths = [4, 2];
    const mk = (n: number) => Int32Array.from({ length: n }, () => Math.floor(r() * 6));
    const src = mk(B * Ss), tin = mk(B * St), tout = mk(B * St);
    const T = (a: Int32Array, s: number) => Tensor.from(a, [B, s], { dtype: 'i32' });
    const { loss } = await model.loss(T(src, Ss), T(tin, St), T(tout, St), { backward: true, srcLengths: Int32Array.from(srcLengths) });
    const p = new Map([...model.parameters()].map(([k, v]) => [k, Float64Array.from(v.toArray())]));
    const f = () => refLoss(cfg, p, src, tin, tout, B, Ss, St, srcLengths);
    expect(Math.abs(loss - f()), `seed ${seed}`).toBeLessThan(1e-5);
    const grads = model.gradients();
    expectGradsMatchFD(p, grads, () => f(), `seed ${seed}`);
    model.dispose();
  });

  it('learns to reverse short sequences', async () => {
    // tokens 2..9; 0 = BOS, 1 = EOS
    const model = new Seq2SeqTransformer({ vocabSize: 10, hiddenSize: 32, numEncoderLayers: 1, numDecoderLayers: 1, numHeads: 4, ffnSize: 64, maxSeqLen: 8, seed: 2 });
    const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0 });
    const r = rng(9);
    const B = 16, L = 5;
    let last = 0;
    for (let step = 0; step < 300; step++) {
      const src = new Int32Array(B * L), tin = new Int32Array(B * (L + 1)), tout = new Int32Array(B * (L + 1));
      for (let b = 0; b < B; b++) {
        for (let s = 0; s < L; s++) src[b * L + s] = 2 + Math.floor(r() * 8);
        tin[b * (L + 1)] = 0;
        for (let s = 0; s < L; s++) {
          tin[b * (L + 1) + s + 1] = src[b * L + L - 1 - s]!;
          tout[b * (L + 1) + s] = src[b * L + L - 1 - s]!;
        }
        tout[b * (L + 1) + L] = 1;
      }
      model.zeroGrad();
      const T = (a: Int32Array, s: number) => Tensor.from(a, [B, s], { dtype: 'i32' });
      last = (await model.loss(T(src, L), T(tin, L + 1), T(tout, L + 1), { train: true })).loss;
      await opt.step(model.gradients());
    }
    expect(last).toBeLessThan(0.05);
    const out = await model.generate([3, 5, 7, 9, 2], [0], { maxNewTokens: 8, temperature: 0, stopToken: 1 });
    expect(Array.from(out)).toEqual([2, 9, 7, 5, 3, 1]);
    opt.dispose();
    model.dispose();
  });
});

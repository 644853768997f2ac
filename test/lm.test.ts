// TransformerLM: the whole model's loss gradient against float64 central differences of a float64
// reference model (embedding + layers + final norm + tied head + cross-entropy), a short training
// run that must learn a pattern, and generation.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdamW, Seq2SeqTransformer, Tensor, TransformerLM, type TransformerLMConfig } from '../lib/index.js';
import { expectGradsMatchFD, freshSeed, rng } from './helpers.js';
import { embeddingRef } from './reference/embedding.js';
import { layerNormRef } from './reference/norm.js';
import { type LayerRefConfig, layerRef } from './reference/transformer.js';

function refLoss(cfg: TransformerLMConfig, p: Map<string, Float64Array>, ids: Int32Array, targets: Int32Array, B: number, S: number): number {
  const H = cfg.hiddenSize, V = cfg.vocabSize;
  const lc: LayerRefConfig = {
    hidden: H, heads: cfg.numHeads, kvHeads: cfg.numKvHeads ?? cfg.numHeads, ffn: cfg.ffnSize, act: cfg.activation ?? 'gelu',
    preLN: true, rms: false, eps: 1e-5, causal: true, cross: false, attnDropout: 0, actDropout: 0, hiddenDropout: 0,
    ...(cfg.positions === 'rotary' ? { rotaryDim: H / cfg.numHeads, rotaryBase: 10000 } : {}),
  };
  let x = embeddingRef(ids, p.get('embed.weight')!, H, S, { positions: p.get('embed.positions') });
  for (let l = 0; l < cfg.numLayers; l++) {
    const lp = new Map<string, Float64Array>();
    for (const [k, v] of p) if (k.startsWith(`layers.${l}.`)) lp.set(k.slice(`layers.${l}.`.length), v);
    x = layerRef(lc, lp, { B, S, x });
  }
  const h = layerNormRef(x, p.get('norm.weight')!, p.get('norm.bias')!, B * S, H, 1e-5);
  const E = p.get('embed.weight')!;
  let total = 0;
  let count = 0;
  for (let t = 0; t < B * S; t++) {
    if (targets[t] === -100) continue;
    const logits = new Float64Array(V);
    for (let v = 0; v < V; v++) for (let j = 0; j < H; j++) logits[v] += h[t * H + j]! * E[v * H + j]!;
    const m = Math.max(...logits);
    const lse = m + Math.log(logits.reduce((a, z) => a + Math.exp(z - m), 0));
    total += lse - logits[targets[t]!]!;
    count++;
  }
  return total / count;
}

describe('TransformerLM', () => {
  it.each(['learned', 'rotary'] as const)('loss gradient matches float64 finite differences of a float64 reference model (%s positions)', async (positions) => {
    const seed = freshSeed();
    const r = rng(seed);
    const cfg: TransformerLMConfig = { vocabSize: 7, hiddenSize: 8, numLayers: 2, numHeads: 2, numKvHeads: 1, ffnSize: 12, maxSeqLen: 6, seed: 3, initStd: 0.3, positions };
    const model = new TransformerLM(cfg);
    // non-trivial norm parameters
    for (const [name, t] of model.parameters())
      if (name.includes('norm')) {
        const d = t.data as Float32Array;
        for (let i = 0; i < d.length; i++) d[i] = (name.endsWith('weight') ? 1 : 0) + (r() - 0.5) * 0.4;
      }
    const B = 2, S = 5;
    const ids = Int32Array.from({ length: B * S }, () => Math.floor(r() * 7));
    const targets = Int32Array.from({ length: B * S }, (_, i) => (i === 3 ? -100 : Math.floor(r() * 7)));
    const idsT = Tensor.from(ids, [B, S], { dtype: 'i32' });
    const tgtT = Tensor.from(targets, [B, S], { dtype: 'i32' });
    const { loss } = await model.loss(idsT, tgtT, { backward: true });
    const p = new Map([...model.parameters()].map(([k, v]) => [k, Float64Array.from(v.toArray())]));
    expect(Math.abs(loss - refLoss(cfg, p, ids, targets, B, S)), `seed ${seed}`).toBeLessThan(1e-5);
    const grads = model.gradients();
    expectGradsMatchFD(p, grads, () => refLoss(cfg, p, ids, targets, B, S), `seed ${seed}`);
    model.dispose();
  });

  it('learns a repeating pattern in a few dozen AdamW steps; generation continues it', async () => {
    const model = new TransformerLM({ vocabSize: 8, hiddenSize: 32, numLayers: 2, numHeads: 4, ffnSize: 64, maxSeqLen: 16, seed: 11 });
    const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0 });
    const r = rng(5);
    const B = 8, S = 12;
    let first = 0;
    let last = 0;
    for (let step = 0; step < 80; step++) {
      const ids = new Int32Array(B * S);
      const tg = new Int32Array(B * S);
      for (let b = 0; b < B; b++) {
        const o = Math.floor(r() * 8);
        for (let s = 0; s < S; s++) {
          ids[b * S + s] = (o + s) % 8;
          tg[b * S + s] = (o + s + 1) % 8;
        }
      }
      model.zeroGrad();
      const { loss } = await model.loss(Tensor.from(ids, [B, S], { dtype: 'i32' }), Tensor.from(tg, [B, S], { dtype: 'i32' }), { train: true });
      await opt.step(model.gradients());
      if (step === 0) first = loss;
      last = loss;
    }
    expect(first).toBeGreaterThan(1.5);
    expect(last).toBeLessThan(0.1);
    const out = await model.generate([3, 4, 5], { maxNewTokens: 6, temperature: 0 });
    expect(Array.from(out)).toEqual([6, 7, 0, 1, 2, 3]);
    // save, rebuild from the file, same logits bit for bit
    const dir = mkdtempSync(join(tmpdir(), 'seqfuse-lm-'));
    try {
      await model.save(join(dir, 'lm.safetensors'));
      const again = await TransformerLM.fromFile(join(dir, 'lm.safetensors'));
      const ids = Tensor.from(Int32Array.of(1, 2, 3, 4), [1, 4], { dtype: 'i32' });
      expect((await again.forward(ids)).toArray()).toEqual((await model.forward(ids)).toArray());
      again.dispose();
      await expect(Seq2SeqTransformer.fromFile(join(dir, 'lm.safetensors'))).rejects.toMatchObject({ code: 'ERR_ARG' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    opt.dispose();
    model.dispose();
  });

  it('trains in bf16 (bf16 parameters and activations, f32 AdamW masters)', async () => {
    const model = new TransformerLM({ vocabSize: 8, hiddenSize: 32, numLayers: 2, numHeads: 4, ffnSize: 64, maxSeqLen: 16, seed: 11, dtype: 'bf16' });
    const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0 });
    const B = 8, S = 12;
    const ids = new Int32Array(B * S), tg = new Int32Array(B * S);
    for (let i = 0; i < B * S; i++) {
      ids[i] = (i % S + Math.floor(i / S)) % 8;
      tg[i] = (ids[i]! + 1) % 8;
    }
    const idsT = Tensor.from(ids, [B, S], { dtype: 'i32' }), tgT = Tensor.from(tg, [B, S], { dtype: 'i32' });
    let first = 0, last = 0;
    for (let step = 0; step < 60; step++) {
      model.zeroGrad();
      const { loss } = await model.loss(idsT, tgT, { train: true });
      const r = await opt.step(model.gradients());
      expect(r.skipped).toBe(false);
      if (step === 0) first = loss;
      last = loss;
    }
    expect([...model.parameters().values()].every((t) => t.dtype === 'bf16')).toBe(true);
    expect(first).toBeGreaterThan(1.5);
    expect(last).toBeLessThan(0.2);
    opt.dispose();
    model.dispose();
  });
});

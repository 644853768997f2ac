// TransformerEncoder: the masked-LM loss gradient against float64 central differences of a float64
// reference (embedding, encoder layers with key padding, final norm, tied head, ignored targets).
import { describe, expect, it } from 'vitest';
import { Tensor, TransformerEncoder, type TransformerEncoderConfig } from '../lib/index.js';
import { expectGradsMatchFD, freshSeed, rng } from './helpers.js';
import { embeddingRef } from './reference/embedding.js';
import { layerNormRef } from './reference/norm.js';
import { layerRef } from './reference/transformer.js';

function refLoss(cfg: TransformerEncoderConfig, p: Map<string, Float64Array>, ids: Int32Array, targets: Int32Array, B: number, S: number,
  lengths: number[]): number {
  const H = cfg.hiddenSize, V = cfg.vocabSize;
  let x = embeddingRef(ids, p.get('embed.weight')!, H, S, { positions: p.get('embed.positions') });
  for (let l = 0; l < cfg.numLayers; l++) {
    const lp = new Map<string, Float64Array>();
    for (const [k, v] of p) if (k.startsWith(`layers.${l}.`)) lp.set(k.slice(`layers.${l}.`.length), v);
    x = layerRef({ hidden: H, heads: cfg.numHeads, kvHeads: cfg.numHeads, ffn: cfg.ffnSize, act: 'gelu', preLN: true, rms: false, eps: 1e-5,
      causal: false, cross: false, attnDropout: 0, actDropout: 0, hiddenDropout: 0 }, lp, { B, S, x, lengths });
  }
  const h = layerNormRef(x, p.get('norm.weight')!, p.get('norm.bias')!, B * S, H, 1e-5);
  const E = p.get('embed.weight')!;
  let total = 0, count = 0;
  for (let t = 0; t < B * S; t++) {
    if (targets[t] === -100) continue;
    const z = new Float64Array(V);
    for (let v = 0; v < V; v++) for (let j = 0; j < H; j++) z[v] += h[t * H + j]! * E[v * H + j]!;
    const m = Math.max(...z);
    total += m + Math.log(z.reduce((a, q) => a + Math.exp(q - m), 0)) - z[targets[t]!]!;
    count++;
  }
  return total / count;
}

describe('TransformerEncoder', () => {
  it('masked-LM loss gradient matches float64 finite differences of a float64 reference model', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const cfg: TransformerEncoderConfig = { vocabSize: 7, hiddenSize: 8, numLayers: 2, numHeads: 2, ffnSize: 12, maxSeqLen: 6, seed: 5, initStd: 0.3 };
    const model = new TransformerEncoder(cfg);
    const B = 2, S = 5, lengths = [5, 3];
    const ids = Int32Array.from({ length: B * S }, () => Math.floor(r() * 7));
    const targets = Int32Array.from({ length: B * S }, () => (r() < 0.4 ? -100 : Math.floor(r() * 7)));
    targets[0] = 3;
    const { loss } = await model.mlmLoss(Tensor.from(ids, [B, S], { dtype: 'i32' }), Tensor.from(targets, [B, S], { dtype: 'i32' }),
      { backward: true, lengths: Int32Array.from(lengths) });
    const p = new Map([...model.parameters()].map(([k, v]) => [k, Float64Array.from(v.toArray())]));
    const f = () => refLoss(cfg, p, ids, targets, B, S, lengths);
    expect(Math.abs(loss - f()), `seed ${seed}`).toBeLessThan(1e-5);
    const grads = model.gradients();
    expectGradsMatchFD(p, grads, () => f(), `seed ${seed}`);
    model.dispose();
  });
});

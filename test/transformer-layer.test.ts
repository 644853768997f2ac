// TransformerEncoderLayer / TransformerDecoderLayer against the float64 reference of the whole
// layer (test/reference/transformer.ts): forward on random configs (pre/post-LN, LayerNorm/RMSNorm,
// GQA, lengths, cross-attention, dropout with the exact Philox masks), backward against float64
// central differences of that reference, gradient accumulation, determinism and bad input.
import { describe, expect, it } from 'vitest';
import { Tensor, TransformerDecoderLayer, TransformerEncoderLayer, type TransformerLayerConfig } from '../lib/index.js';
import { freshSeed, rng } from './helpers.js';
import type { ActName } from './reference/activation.js';
import { layerGradFD, type LayerRefConfig, layerRef } from './reference/transformer.js';
import { relL2, tol } from './tolerance.js';

interface Case {
  cfg: TransformerLayerConfig;
  causal: boolean;
  cross: boolean;
  B: number;
  S: number;
  Senc: number;
  lengths?: number[];
  encLengths?: number[];
}

function refConfig(c: Case): LayerRefConfig {
  const k = c.cfg;
  return {
    hidden: k.hiddenSize, heads: k.numHeads, kvHeads: k.numKvHeads ?? k.numHeads, ffn: k.ffnSize, act: (k.activation ?? 'gelu') as ActName,
    preLN: k.preLayerNorm ?? true, rms: k.norm === 'rmsnorm', eps: k.layerNormEps ?? 1e-5, causal: c.causal, cross: c.cross,
    attnDropout: k.attnDropout ?? 0, actDropout: k.activationDropout ?? 0, hiddenDropout: k.hiddenDropout ?? 0,
    ...(k.rotary ? { rotaryDim: (k.rotary as { dim: number }).dim, rotaryBase: (k.rotary as { base: number }).base } : {}),
  };
}

function makeLayer(c: Case) {
  return c.causal || c.cross ? new TransformerDecoderLayer({ ...c.cfg, crossAttention: c.cross }) : new TransformerEncoderLayer(c.cfg);
}

/** Fills every parameter with values in [-scale, scale) (norm weights around 1) and returns float64 copies. */
function randomize(layer: TransformerEncoderLayer | TransformerDecoderLayer, r: () => number, scale: number): Map<string, Float64Array> {
  const p64 = new Map<string, Float64Array>();
  const src = new Map<string, Tensor>();
  for (const [name, t] of layer.parameters()) {
    const f = new Float32Array(t.numel);
    for (let i = 0; i < f.length; i++) f[i] = (name.includes('norm.weight') ? 1 : 0) + (r() * 2 - 1) * scale;
    src.set(name, Tensor.from(f, t.shape));
  }
  layer.loadParameters(src);
  for (const [name, t] of layer.parameters()) p64.set(name, Float64Array.from(t.toArray()));
  for (const t of src.values()) t.dispose();
  return p64;
}

function input(shape: number[], r: () => number, dtype: 'f32' | 'bf16' = 'f32') {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = r() * 2 - 1;
  const t = Tensor.from(f, shape, { dtype });
  return { t, v: Float64Array.from(t.toArray()) };
}

async function runForward(layer: TransformerEncoderLayer | TransformerDecoderLayer, c: Case, x: Tensor, enc: Tensor | null,
  train: boolean, seed: bigint) {
  const common = { train, seed, kvLengths: c.lengths ? Int32Array.from(c.lengths) : undefined };
  if (layer instanceof TransformerDecoderLayer)
    return layer.forward(x, { ...common, encoderOut: enc ?? undefined, encoderLengths: c.encLengths ? Int32Array.from(c.encLengths) : undefined });
  return layer.forward(x, common);
}

function randomCase(r: () => number, small: boolean): Case {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const heads = pick([1, 2, 4]);
  const kvHeads = pick([1, 2, 4].filter((k) => heads % k === 0));
  // hidden >= 4: LayerNorm over 2 features maps every row to about (±1, ∓1), a degenerate case
  // whose gradients are f32 rounding noise
  const D = small ? (heads === 1 ? 4 : pick([2, 3, 4])) : pick([3, 8, 9, 16]);
  const kind = pick(['encoder', 'decoder', 'cross'] as const);
  const B = small ? 2 : pick([1, 2, 3]);
  const S = small ? pick([2, 3]) : pick([1, 5, 7, 17]);
  const Senc = small ? 2 : pick([1, 4, 9]);
  const c: Case = {
    cfg: {
      hiddenSize: heads * D, numHeads: heads, numKvHeads: kvHeads, ffnSize: small ? pick([5, 8]) : pick([7, 20, 33]),
      activation: pick(small ? ['gelu', 'gelu_tanh', 'silu'] as const : ['gelu', 'gelu_tanh', 'relu', 'silu'] as const),
      preLayerNorm: r() < 0.5, norm: r() < 0.3 ? 'rmsnorm' : 'layernorm', layerNormEps: 1e-5, seed: 1,
    },
    causal: kind !== 'encoder', cross: kind === 'cross', B, S, Senc,
  };
  // rotary on some cases: all head dims or a part (even), a custom base
  if (r() < 0.4) c.cfg.rotary = { dim: 2 * Math.max(1, Math.floor(r() * (D / 2 + 1)) ), base: pick([10000, 500]) };
  if (c.cfg.rotary && (c.cfg.rotary as { dim: number }).dim > D) c.cfg.rotary = false;
  if (r() < 0.5) c.lengths = Array.from({ length: B }, () => 1 + Math.floor(r() * S));
  if (c.cross && r() < 0.5) c.encLengths = Array.from({ length: B }, () => 1 + Math.floor(r() * Senc));
  return c;
}

/** A layer with random parameters, its inputs, and the reference's view of them; odd iterations train with dropout. */
function setup(r: () => number, small: boolean, iter: number) {
  const c = randomCase(r, small);
  const train = iter % 2 === 1;
  if (train) Object.assign(c.cfg, { attnDropout: 0.2, activationDropout: 0.1, hiddenDropout: 0.15 });
  const layer = makeLayer(c);
  const p = randomize(layer, r, small ? 0.4 : 0.5);
  const x = input([c.B, c.S, c.cfg.hiddenSize], r);
  const enc = c.cross ? input([c.B, c.Senc, c.cfg.hiddenSize], r) : null;
  const callSeed = BigInt(Math.floor(r() * 2 ** 40));
  const refIn = { B: c.B, S: c.S, x: x.v, lengths: c.lengths, Senc: c.Senc, enc: enc?.v, encLengths: c.encLengths, seed: train ? callSeed : undefined };
  const forward = () => runForward(layer, c, x.t, enc?.t ?? null, train, callSeed);
  return { c, layer, p, x, enc, refIn, forward };
}

function describeCase(c: Case): string {
  return JSON.stringify({ ...c, cfg: { ...c.cfg, seed: undefined } });
}

describe('Transformer layers', () => {
  it('forward matches the float64 reference (random configs, eval and train with dropout)', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    for (let iter = 0; iter < 12; iter++) {
      const { c, layer, p, refIn, forward } = setup(r, false, iter);
      const y = await forward();
      const ref = layerRef(refConfig(c), p, refIn);
      const err = relL2(y.toArray(), ref);
      expect(err, `seed ${seed} iter ${iter} ${describeCase(c)}`).toBeLessThan(tol('f32'));
      layer.dispose();
    }
  });

  it('backward matches float64 finite differences of the reference (every parameter, x and the encoder output)', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    for (let iter = 0; iter < 8; iter++) {
      const { c, layer, p, enc, refIn, forward } = setup(r, true, iter);
      const dy = input([c.B, c.S, c.cfg.hiddenSize], r);
      await forward();
      const dEnc = enc ? Tensor.zeros(enc.t.shape) : undefined;
      const dx = layer instanceof TransformerDecoderLayer ? await layer.backward(dy.t, { dEncoderOut: dEnc }) : await layer.backward(dy.t);
      const fd = layerGradFD(refConfig(c), p, refIn, dy.v);
      const got = new Map<string, ArrayLike<number>>([['x', dx.toArray()]]);
      if (dEnc) got.set('enc', dEnc.toArray());
      for (const [name, g] of layer.gradients()) got.set(name, g.toArray());
      const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((a, b) => a + b * b, 0));
      const typical = norm(fd.get('x')!);
      for (const [name, want] of fd) {
        // a gradient that is zero in exact arithmetic (q's when a row sees one key: softmax is 1)
        // comes out as f32 rounding noise of the terms it cancels: measured against the size of dx
        const scale = Math.max(norm(want), 0.05 * typical);
        expect(relL2(got.get(name)!, want, scale), `seed ${seed} iter ${iter} ${name} ${describeCase(c)}`).toBeLessThan(1e-5);
      }
      layer.dispose();
    }
  });

  it('accumulates gradients over backward calls until zeroGrad, and runs bit-identically twice', async () => {
    const r = rng(freshSeed());
    const c: Case = { cfg: { hiddenSize: 24, numHeads: 4, numKvHeads: 2, ffnSize: 40, hiddenDropout: 0.1, attnDropout: 0.1, activationDropout: 0.1, seed: 5 }, causal: true, cross: false, B: 2, S: 9, Senc: 0 };
    const layer = makeLayer(c) as TransformerDecoderLayer;
    randomize(layer, r, 0.3);
    const x = input([2, 9, 24], r);
    const dy = input([2, 9, 24], r);
    const y1 = await layer.forward(x.t, { train: true, seed: 7 });
    await layer.backward(dy.t);
    const g1 = new Map([...layer.gradients()].map(([k, v]) => [k, Float32Array.from(v.toArray())]));
    const y2 = await layer.forward(x.t, { train: true, seed: 7 });
    expect(Buffer.from((y2.data as Float32Array).buffer)).toEqual(Buffer.from((y1.data as Float32Array).buffer));
    await layer.backward(dy.t);
    for (const [k, v] of layer.gradients()) {
      const a = v.toArray();
      const b = g1.get(k)!;
      for (let i = 0; i < a.length; i++) expect(a[i]).toBe(Math.fround(b[i]! + b[i]!));
    }
    layer.zeroGrad();
    for (const v of layer.gradients().values()) expect(v.toArray().every((e) => e === 0)).toBe(true);
    // another seed gives another dropout mask
    const y3 = await layer.forward(x.t, { train: true, seed: 8 });
    expect(relL2(y3.toArray(), y1.toArray())).toBeGreaterThan(1e-3);
    // eval mode ignores dropout
    const e1 = await layer.forward(x.t, { train: false, seed: 1 });
    const e2 = await layer.forward(x.t, { train: false, seed: 2 });
    expect(e2.toArray()).toEqual(e1.toArray());
    layer.dispose();
  });

  it('bf16 layer forward and backward stay close to f32', async () => {
    const r = rng(freshSeed());
    const cfg: TransformerLayerConfig = { hiddenSize: 32, numHeads: 4, ffnSize: 64, seed: 3 };
    const l32 = new TransformerEncoderLayer(cfg);
    const l16 = new TransformerEncoderLayer({ ...cfg, dtype: 'bf16' });
    randomize(l32, r, 0.3);
    l16.loadParameters(l32.parameters());
    const x = input([2, 11, 32], r);
    const xb = x.t.to('bf16');
    const dy = input([2, 11, 32], r);
    const y32 = await l32.forward(x.t);
    const y16 = await l16.forward(xb);
    expect(relL2(y16.toArray(), y32.toArray())).toBeLessThan(tol('bf16'));
    const dx32 = await l32.backward(dy.t);
    const dx16 = await l16.backward(dy.t.to('bf16'));
    expect(relL2(dx16.toArray(), dx32.toArray())).toBeLessThan(3 * tol('bf16'));
    const g32 = l32.gradients();
    for (const [k, g] of l16.gradients()) expect(relL2(g.toArray(), g32.get(k)!.toArray()), k).toBeLessThan(3 * tol('bf16'));
    l32.dispose();
    l16.dispose();
  });
});

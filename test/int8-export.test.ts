// exportInt8 (lib/models/export.ts): the int8 inference layer reproduces the QAT forward it was
// exported from (same fake-quant points, now int8 products), for every QAT config and layer kind;
// int8 weights and clips are what save() writes and fromFile() reads; misuse is rejected.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  exportInt8, loadSafetensors, type QuantConfig, Seq2SeqTransformer, Tensor, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer, TransformerLM,
} from '../lib/index.js';
import { expectCode, expectSameBits, freshSeed, rng } from './helpers.js';
import { relL2 } from './tolerance.js';

type Layer = TransformerEncoderLayer | TransformerDecoderLayer;

function randomTensor(shape: number[], r: () => number, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale), shape);
}

function randomize(layer: Layer, r: () => number): void {
  const src = new Map<string, Tensor>();
  for (const [name, t] of layer.parameters())
    src.set(name, name.endsWith('_clip') ? Tensor.from([0.8 + r() * 2]) : Tensor.from(Float32Array.from({ length: t.numel }, () => (name.includes('norm.weight') ? 1 : 0) + (r() * 2 - 1) * 0.3), t.shape));
  layer.loadParameters(src);
  for (const t of src.values()) t.dispose();
}

const fwd = (l: Layer, x: Tensor, enc: Tensor | null) =>
  l instanceof TransformerDecoderLayer ? l.forward(x, { encoderOut: enc ?? undefined }) : l.forward(x);

describe(`int8 export (seed ${freshSeed()})`, () => {
  it('the int8 layer reproduces the QAT forward (every layer kind, weight mode and width, with and without output clips)', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const cases: [string, QuantConfig][] = [
      ['encoder', {}], ['decoder', { weight: 'tensor' }], ['cross', { weightBits: 7 }], ['encoder', { output: false, weightBits: 7 }],
      ['cross', { weight: 'none' }],
    ];
    for (const [kind, qc] of cases) {
      const cfg = { hiddenSize: 48, numHeads: 4, ffnSize: 80, preLayerNorm: r() < 0.5, activation: 'gelu' as const, seed: 5 };
      const layer: Layer = kind === 'encoder' ? new TransformerEncoderLayer(cfg) : new TransformerDecoderLayer({ ...cfg, crossAttention: kind === 'cross' });
      layer.enableQuant(qc);
      randomize(layer, r);
      const x = randomTensor([2, 7, 48], r);
      const enc = kind === 'cross' ? randomTensor([2, 5, 48], r) : null;
      const yq = await fwd(layer, x, enc);
      const q = exportInt8(layer);
      expect(q.int8).toBe(true);
      const y8 = await fwd(q, x, enc);
      expectSameBits(await fwd(q, x, enc), y8, `${kind} ${JSON.stringify(qc)}: int8 forward twice`);
      // Same math up to f32 rounding (the float path sums the fake-quantized product in f32, the
      // int8 one exactly in int32), typically 2e-7; a value within that rounding of a quantization
      // boundary lands one grid step away (seen once in ~100 cases: 1.5e-3). The float layer is
      // 0.3 away at these clips. With 'none' QAT never quantized the weights: the int8 model adds that.
      const bound = qc.weight === 'none' ? 3e-2 : 5e-3;
      expect(relL2(y8.toArray(), yq.toArray()), `seed ${seed} ${kind} ${JSON.stringify(qc)}`).toBeLessThan(bound);
      for (const [name, t] of q.parameters()) {
        if (name.endsWith('.weight') && !name.includes('norm')) {
          expect(t.dtype, name).toBe('i8');
          const lim = (qc.weightBits ?? 8) === 7 ? 63 : 127;
          const v = t.toArray();
          expect(Math.max(...Array.from(v, Math.abs)), name).toBe(lim);  // max-abs clip: the largest weight of a row lands on ±levels
          expect(q.parameters().get(name.replace(/weight$/, 'weight_clip'))!.shape).toEqual([t.shape[0]]);
        }
      }
      // the source layer is untouched
      expect(Array.from((await fwd(layer, x, enc)).toArray())).toEqual(Array.from(yq.toArray()));
      expect(q.gradients().size).toBe(0);
      const dy = Tensor.zeros(x.shape);
      await expect(q instanceof TransformerDecoderLayer ? q.backward(dy, { dEncoderOut: enc ? Tensor.zeros(enc.shape) : undefined }) : q.backward(dy)).rejects.toThrow(/inference only/);
      expectCode(() => q.enableQuant(), 'ERR_UNSUPPORTED');
      layer.dispose();
      q.dispose();
    }
  });

  it('an int8 TransformerLM keeps the QAT loss, saves int8 weights with their clips and loads back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-int8-'));
    try {
      const lm = new TransformerLM({ vocabSize: 13, numLayers: 2, hiddenSize: 32, numHeads: 4, ffnSize: 64, maxSeqLen: 16, seed: 4 });
      const ids = Tensor.from(Int32Array.from({ length: 24 }, (_, i) => (i * 5) % 13), [2, 12], { dtype: 'i32' });
      const tg = Tensor.from(Int32Array.from({ length: 24 }, (_, i) => (i * 5 + 1) % 13), [2, 12], { dtype: 'i32' });
      lm.enableQuant({ initClip: 4 });
      const qat = await lm.loss(ids, tg, { backward: false });
      const q = exportInt8(lm);
      const i8 = await q.loss(ids, tg, { backward: false });
      expect(Math.abs(i8.loss - qat.loss)).toBeLessThan(1e-5 * qat.loss);
      await expect(q.loss(ids, tg, { train: true })).rejects.toThrow(/inference only/);
      const clipBefore = q.parameters().get('layers.0.ffn.fc1.weight_clip')!.toArray();
      await expect(q.calibrate(() => q.forward(ids))).rejects.toThrow(/int8 inference model/);
      expect(q.parameters().get('layers.0.ffn.fc1.weight_clip')!.toArray()).toEqual(clipBefore);  // untouched
      const path = join(dir, 'lm-int8.safetensors');
      await q.save(path);
      const { tensors, metadata } = await loadSafetensors(path);
      expect(metadata['seqfuse.int8']).toBe('true');
      expect(tensors.get('layers.0.ffn.fc1.weight')!.dtype).toBe('i8');
      expect(tensors.get('layers.0.ffn.fc1.weight_clip')!.shape).toEqual([64]);
      for (const t of tensors.values()) t.dispose();
      const back = await TransformerLM.fromFile(path);
      expect(back.int8).toBe(true);
      expect((await back.loss(ids, tg, { backward: false })).loss).toBe(i8.loss);
      const gen = await back.generate([1, 2, 3], { maxNewTokens: 4, temperature: 0 });
      expect(gen.length).toBe(4);
      for (const m of [lm, q, back]) m.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a TransformerEncoder and a Seq2SeqTransformer export too, and their int8 forwards track the QAT ones', async () => {
    const r = rng(freshSeed());
    const enc = new TransformerEncoder({ vocabSize: 11, numLayers: 2, hiddenSize: 16, numHeads: 2, ffnSize: 32, maxSeqLen: 8, seed: 2 });
    const s2s = new Seq2SeqTransformer({ vocabSize: 11, numEncoderLayers: 1, numDecoderLayers: 1, hiddenSize: 16, numHeads: 2, ffnSize: 32, maxSeqLen: 8, seed: 3 });
    const ids = Tensor.from(Int32Array.from({ length: 16 }, () => Math.floor(r() * 11)), [2, 8], { dtype: 'i32' });
    for (const m of [enc, s2s]) m.enableQuant({ initClip: 3 });
    const qe = exportInt8(enc), qs = exportInt8(s2s);
    expect(qe.int8 && qs.int8).toBe(true);
    expect(relL2((await qe.forward(ids)).toArray(), (await enc.forward(ids)).toArray())).toBeLessThan(5e-3);
    expect(relL2((await qs.forward(ids, ids)).toArray(), (await s2s.forward(ids, ids)).toArray())).toBeLessThan(5e-3);
    for (const m of [enc, s2s, qe, qs]) m.dispose();
  });

  it('rejects what cannot be exported', () => {
    const layer = new TransformerEncoderLayer({ hiddenSize: 8, numHeads: 2, ffnSize: 8 });
    expectCode(() => exportInt8(layer), 'ERR_ARG', /enableQuant/);
    layer.enableQuant({ input: false });
    expectCode(() => exportInt8(layer), 'ERR_ARG', /input clip/);
    layer.enableQuant();
    const q = exportInt8(layer);
    expectCode(() => exportInt8(q), 'ERR_ARG', /already/);
    expectCode(() => exportInt8({} as never), 'ERR_ARG', /model or a Transformer layer/);
    const b = new TransformerEncoderLayer({ hiddenSize: 8, numHeads: 2, ffnSize: 8, dtype: 'bf16' });
    b.enableQuant();
    expectCode(() => exportInt8(b), 'ERR_UNSUPPORTED', /f32/);
    for (const l of [layer, q, b]) l.dispose();
  });
});

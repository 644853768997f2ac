// The Transformer layers on device 'cuda' against the same layers on 'cpu' (same seed, so the same
// weights and dropout masks): encoder and decoder (cross-attention, causal), forward + backward in
// training mode with every dropout on, kvLengths, rotary, GQA, QAT, AdamW steps, and the Embedding and
// Norm layers.
// Runs on an addon with the CUDA backend (npm run test:emu: the emulated one).
import { describe, expect, it } from 'vitest';
import { AdamW, Embedding, memory, Norm, Tensor, TransformerDecoderLayer, TransformerEncoderLayer } from '../../lib/index.js';
import { freshSeed, rng } from '../helpers.js';
import { expectCloseOnCuda, requireCuda } from './common.js';
import { relL2 } from '../tolerance.js';

const seed = freshSeed();
const r = rng(seed);

requireCuda();

function rand(shape: number[], dtype: 'f32' | 'f16' | 'bf16' = 'f32'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(Float32Array.from({ length: n }, () => r() * 2 - 1), shape, { dtype });
}

const expectClose = (label: string, gpu: Tensor, cpu: Tensor, limit: number) => expectCloseOnCuda(label, gpu, cpu, limit, seed);

// f32 layers compound the f32 rounding of ~20 products and norms: 10x the op tolerance
const LIMIT = { f32: 1e-4, f16: 2e-2, bf16: 3e-2 } as const;

describe('TransformerLayer on CUDA matches the CPU layer', () => {
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    it(`encoder forward + backward in training (${dtype}, dropout, kvLengths, rotary, GQA)`, async () => {
      const cfg = { hiddenSize: 48, numHeads: 4, numKvHeads: 2, ffnSize: 72, dtype, seed: 1234, attnDropout: 0.1, activationDropout: 0.1,
        hiddenDropout: 0.1, rotary: true };
      const cpu = new TransformerEncoderLayer(cfg);
      const gpu = new TransformerEncoderLayer({ ...cfg, device: 'cuda' });
      expect(gpu.device).toBe('cuda');
      for (const [name, p] of cpu.parameters()) expect(Array.from(gpu.parameters().get(name)!.toArray()), name).toEqual(Array.from(p.toArray()));
      const x = rand([3, 11, 48], dtype), dy = rand([3, 11, 48], dtype);
      const kvLengths = Int32Array.of(11, 6, 1);
      for (let step = 0; step < 2; step++) {  // the second pass reuses the saved buffers and accumulates grads
        const y = await cpu.forward(x, { train: true, seed: 77 + step, kvLengths });
        const yg = await gpu.forward(x.to('cuda'), { train: true, seed: 77 + step, kvLengths });
        expectClose(`y ${dtype} step ${step}`, yg, y, LIMIT[dtype]);
        const dx = await cpu.backward(dy);
        const dxg = await gpu.backward(dy.to('cuda'));
        expectClose(`dx ${dtype} step ${step}`, dxg, dx, LIMIT[dtype]);
      }
      for (const [name, g] of cpu.gradients()) expectClose(`grad ${name} ${dtype}`, gpu.gradients().get(name)!, g, LIMIT[dtype]);
      gpu.zeroGrad();
      for (const [name, g] of gpu.gradients()) expect(Array.from(g.toArray()).every((v) => v === 0), name).toBe(true);
      cpu.dispose();
      gpu.dispose();
    });
  }

  it('decoder with cross-attention, post-LN, RMSNorm: forward + backward incl. dEncoderOut', async () => {
    const cfg = { hiddenSize: 32, numHeads: 2, ffnSize: 40, seed: 9, preLayerNorm: false, norm: 'rmsnorm' as const, crossAttention: true,
      hiddenDropout: 0.2 };
    const cpu = new TransformerDecoderLayer(cfg);
    const gpu = new TransformerDecoderLayer({ ...cfg, device: 'cuda' });
    const x = rand([2, 7, 32]), enc = rand([2, 13, 32]), dy = rand([2, 7, 32]);
    const encLengths = Int32Array.of(13, 5);
    const y = await cpu.forward(x, { train: true, seed: 3, encoderOut: enc, encoderLengths: encLengths });
    const yg = await gpu.forward(x.to('cuda'), { train: true, seed: 3, encoderOut: enc.to('cuda'), encoderLengths: encLengths });
    expectClose('decoder y', yg, y, LIMIT.f32);
    const dEnc = Tensor.zeros([2, 13, 32]), dEncG = Tensor.zeros([2, 13, 32], { device: 'cuda' });
    expectClose('decoder dx', await gpu.backward(dy.to('cuda'), { dEncoderOut: dEncG }), await cpu.backward(dy, { dEncoderOut: dEnc }),
      LIMIT.f32);
    expectClose('decoder dEncoderOut', dEncG, dEnc, LIMIT.f32);
    for (const [name, g] of cpu.gradients()) expectClose(`decoder grad ${name}`, gpu.gradients().get(name)!, g, LIMIT.f32);
  });

  it('QAT (fake-quant with learned clips) forward + backward', async () => {
    const cfg = { hiddenSize: 32, numHeads: 4, ffnSize: 64, seed: 21 };
    const cpu = new TransformerEncoderLayer(cfg);
    const gpu = new TransformerEncoderLayer({ ...cfg, device: 'cuda' });
    for (const l of [cpu, gpu]) l.enableQuant({ initClip: 2 });
    const x = rand([2, 9, 32]), dy = rand([2, 9, 32]);
    // fake-quant rounds to a grid of step clip/127: a value within f32 noise of a half step rounds
    // either way, moving one code by one step, so the bound is looser than the float layer's
    const limit = 5e-3;
    expectClose('qat y', await gpu.forward(x.to('cuda'), { train: true }), await cpu.forward(x, { train: true }), limit);
    expectClose('qat dx', await gpu.backward(dy.to('cuda')), await cpu.backward(dy), limit);
    for (const [name, g] of cpu.gradients()) expectClose(`qat grad ${name}`, gpu.gradients().get(name)!, g, limit);
  });

  it('AdamW trains CUDA parameters exactly as CPU ones', async () => {
    const cfg = { hiddenSize: 16, numHeads: 2, ffnSize: 24, seed: 5 };
    const cpu = new TransformerEncoderLayer(cfg);
    const gpu = new TransformerEncoderLayer({ ...cfg, device: 'cuda' });
    const oc = new AdamW(cpu.parameters(), { lr: 1e-2, weightDecay: 0.01 });
    const og = new AdamW(gpu.parameters(), { lr: 1e-2, weightDecay: 0.01 });
    const x = rand([2, 5, 16]), dy = rand([2, 5, 16]);
    for (let s = 0; s < 3; s++) {
      for (const [l, o, xx, dd] of [[cpu, oc, x, dy], [gpu, og, x.to('cuda'), dy.to('cuda')]] as const) {
        l.zeroGrad();
        await l.forward(xx, { train: true });
        await l.backward(dd);
        await o.step(l.gradients());
      }
    }
    for (const [name, p] of cpu.parameters()) {
      const g = gpu.parameters().get(name)!;
      if (name !== 'attn.qkv.bias') {
        expectClose(`param ${name} after 3 steps`, g, p, LIMIT.f32);
        continue;
      }
      // the key bias has a zero gradient in exact arithmetic (softmax ignores a per-query shift), so
      // both devices step on rounding noise that Adam normalizes to +-lr: compare q's and v's part
      const [a, b] = [g.toArray(), p.toArray()];
      const qv = (t: ArrayLike<number>) => [...Array.from(t).slice(0, 16), ...Array.from(t).slice(32)];
      expect(relL2(qv(a), qv(b), 1e-3), `q/v bias after 3 steps (seed ${seed})`).toBeLessThanOrEqual(LIMIT.f32);
    }
  });

  it('frees its device memory on dispose', async () => {
    const before = memory().cuda;
    const l = new TransformerEncoderLayer({ hiddenSize: 16, numHeads: 2, ffnSize: 24, device: 'cuda' });
    const x = Tensor.zeros([1, 4, 16], { device: 'cuda' });
    const y = await l.forward(x);
    expect(memory().cuda.tensors).toBeGreaterThan(before.tensors);
    l.dispose();
    x.dispose();
    y.dispose();
    expect(memory().cuda).toEqual(before);
  });
});

describe('Embedding and Norm on CUDA match the CPU layers', () => {
  it('embedding with learned positions and dropout, then the final norm: forward and backward', async () => {
    const ecfg = { vocabSize: 41, hiddenSize: 24, maxSeqLen: 12, dropout: 0.2, paddingIdx: 0, seed: 8 };
    const ec = new Embedding(ecfg), eg = new Embedding({ ...ecfg, device: 'cuda' });
    const nc = new Norm({ hiddenSize: 24 }), ng = new Norm({ hiddenSize: 24, device: 'cuda' });
    const ids = Tensor.from(Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7) % 41), [2, 9], { dtype: 'i32' });
    const idsG = ids.to('cuda');
    const h = await ec.forward(ids, { train: true, seed: 4 }), hg = await eg.forward(idsG, { train: true, seed: 4 });
    expectClose('embedding out', hg, h, LIMIT.f32);
    const y = await nc.forward(h), yg = await ng.forward(hg);
    expectClose('norm out', yg, y, LIMIT.f32);
    const dy = rand([2, 9, 24]);
    const dh = await nc.backward(dy, h), dhg = await ng.backward(dy.to('cuda'), hg);
    expectClose('norm dx', dhg, dh, LIMIT.f32);
    await ec.backward(dh, ids, { train: true, seed: 4 });
    await eg.backward(dhg, idsG, { train: true, seed: 4 });
    for (const [a, b] of [[ec, eg], [nc, ng]] as const)
      for (const [name, g] of a.gradients()) expectClose(`grad ${name}`, b.gradients().get(name)!, g, LIMIT.f32);
    eg.zeroGrad();
    expect(Array.from(eg.gradients().get('weight')!.toArray()).every((v) => v === 0)).toBe(true);
  });
});

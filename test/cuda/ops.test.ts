// Every op on device 'cuda' against the same op on 'cpu', on fresh random inputs with odd shapes
// and tile tails. Runs on an addon with the CUDA backend: `npm run test:emu` loads the emulated one
// (build-emu/, the kernels on the CPU through cuda/emu), `npm run test:gpu` the real one on a GPU.
// Tolerances are DESIGN §10's (test/tolerance.ts); dropout masks and integer outputs are exact.
import { describe, expect, it } from 'vitest';
import {
  adamw, biasAct, biasActBackward, biasDropoutResidual, crossEntropy, crossEntropyBackward, cudaMemory, dequantize, type DType,
  dropout, dropoutBackward, embedding, embeddingBackward, fakeQuant, fakeQuantBackward, fusedAttention, fusedAttentionBackward, gemm,
  gemmInt8, gradNorm, layerNorm, layerNormBackward, linear, linearBackward, linearInt8, maxClip, memory, quantize, rmsNorm,
  rmsNormBackward, softmax, softmaxBackward, Tensor,
} from '../../lib/index.js';
import { freshSeed, rng } from '../helpers.js';
import { requireCuda } from './common.js';
import { relL2, tol } from '../tolerance.js';

const seed = freshSeed();
const r = rng(seed);
const FLOATS: ('f32' | 'f16' | 'bf16')[] = ['f32', 'f16', 'bf16'];

requireCuda();

function rand(shape: number[], dtype: DType = 'f32', scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (r() * 2 - 1) * scale;
  return Tensor.from(f, shape, { dtype });
}

function ints(n: number, lo: number, hi: number): Int32Array {
  return Int32Array.from({ length: n }, () => lo + Math.floor(r() * (hi - lo)));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
type Value = unknown;

/** The same structure with every Tensor moved to 'cuda'. */
function toCuda(v: Value): Any {
  if (v instanceof Tensor) return v.to('cuda');
  if (Array.isArray(v)) return v.map((e) => toCuda(e));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, toCuda(e)]));
  return v;
}

/** Compares a CUDA result with the CPU one: tensors by relative L2 (exact with limit 0), numbers relatively. */
function expectClose(label: string, gpu: Value, cpu: Value, limit: number): void {
  if (cpu instanceof Tensor) {
    expect(gpu, label).toBeInstanceOf(Tensor);
    const g = gpu as Tensor;
    expect(g.device, label).toBe('cuda');
    expect(g.dtype, label).toBe(cpu.dtype);
    expect(g.shape, label).toEqual(cpu.shape);
    const a = g.toArray(), b = cpu.toArray();
    if (limit === 0) expect(Array.from(a), label).toEqual(Array.from(b));
    else expect(relL2(a, b, 1e-3), `${label} (seed ${seed})`).toBeLessThanOrEqual(limit);
  } else if (Array.isArray(cpu)) {
    cpu.forEach((c, i) => expectClose(`${label}[${i}]`, (gpu as Value[])[i]!, c, limit));
  } else if (cpu && typeof cpu === 'object') {
    for (const [k, c] of Object.entries(cpu)) expectClose(`${label}.${k}`, (gpu as Record<string, Value>)[k]!, c as Value, limit);
  } else if (typeof cpu === 'number') {
    expect(Math.abs((gpu as number) - cpu), label).toBeLessThanOrEqual(Math.max(limit, 1e-6) * Math.max(1, Math.abs(cpu)));
  } else {
    expect(gpu, label).toEqual(cpu);
  }
}

/** Runs fn on CPU inputs and on their CUDA copies, sync and async, and compares. */
async function both(label: string, args: Value[], fn: (...a: Any[]) => Value, afn: ((...a: Any[]) => Promise<Value>) | null,
  limit: number): Promise<void> {
  const cpu = fn(...args);
  const dev = toCuda(args) as Value[];
  expectClose(label, fn(...dev), cpu, limit);
  if (afn) expectClose(`${label} (async)`, await afn(...dev), cpu, limit);
}

describe('CUDA tensors', () => {
  it('round-trip every dtype, create on the device, and account memory', () => {
    for (const dtype of ['f32', 'f16', 'bf16', 'i8', 'i32', 'u8'] as DType[]) {
      const v = Array.from({ length: 37 }, () => Math.round((r() * 2 - 1) * 100) / 4);
      const c = Tensor.from(v, [37], { dtype });
      const g = Tensor.from(v, [37], { dtype, device: 'cuda' });
      expect(g.device).toBe('cuda');
      expect(Array.from(g.toArray())).toEqual(Array.from(c.toArray()));
      expect(Array.from(c.to('cuda').to('cpu').toArray())).toEqual(Array.from(c.toArray()));
      for (const t of [c, g]) t.dispose();
    }
    const before = memory().cuda;
    const z = Tensor.zeros([5, 3], { device: 'cuda', dtype: 'bf16' });
    expect(Array.from(z.toArray())).toEqual(new Array(15).fill(0));
    expect(memory().cuda).toEqual({ bytes: before.bytes + 30, tensors: before.tensors + 1 });
    const view = z.reshape([15]);
    expect(view.device).toBe('cuda');
    z.dispose();
    expect(memory().cuda.bytes).toBe(before.bytes + 30);  // the view keeps the storage
    view.dispose();
    expect(memory().cuda).toEqual(before);
    const held = cudaMemory().allocated;
    const big = Tensor.empty([1000], { device: 'cuda' });
    expect(cudaMemory().allocated).toBeGreaterThanOrEqual(held + 4000);
    big.dispose();
    expect(cudaMemory().allocated).toBe(held);
  });

  it('draws the same random values as the CPU and converts dtypes on the device', () => {
    const u = Tensor.rand([1001], { seed: 5, device: 'cuda' }), uc = Tensor.rand([1001], { seed: 5 });
    expect(Array.from(u.toArray())).toEqual(Array.from(uc.toArray()));
    const n = Tensor.randn([999], { seed: 6, device: 'cuda', dtype: 'bf16' }), nc = Tensor.randn([999], { seed: 6, dtype: 'bf16' });
    expect(relL2(n.toArray(), nc.toArray())).toBeLessThanOrEqual(tol('bf16'));
    const h = u.to('f16'), hc = uc.to('f16');
    expect(h.device).toBe('cuda');
    expect(Array.from(h.toArray())).toEqual(Array.from(hc.toArray()));
  });

  it('rejects host access and mixed devices with typed errors', () => {
    const g = Tensor.zeros([4], { device: 'cuda' });
    expect(() => g.data).toThrow(expect.objectContaining({ code: 'ERR_DEVICE' }));
    const c = Tensor.zeros([4]);
    expect(() => layerNorm(g, c)).toThrow(expect.objectContaining({ code: 'ERR_DEVICE' }));
    g.dispose();
    expect(() => g.toArray()).toThrow(expect.objectContaining({ code: 'ERR_DISPOSED' }));
    const ids = Tensor.from([0, 9], [2], { dtype: 'i32', device: 'cuda' });
    const table = Tensor.zeros([4, 3], { device: 'cuda' });
    expect(() => embedding(ids, table)).toThrow(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringContaining('ids[1] = 9') }));
    // clips are data on the device too: checked on the host as the CPU checks them
    const x = Tensor.zeros([2, 3], { device: 'cuda' });
    const clips = Tensor.from([1, -2], [2], { device: 'cuda' });
    for (const f of [() => quantize(x, clips, { axis: 0 }), () => fakeQuant(x, clips, { axis: 0 }),
      () => fakeQuantBackward(x, x, clips, { axis: 0 })])
      expect(f).toThrow(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringContaining('clipMax[1] to be finite and > 0') }));
    const q = Tensor.zeros([2, 3], { dtype: 'i8', device: 'cuda' });
    expect(() => linearInt8(q, q, 1, clips)).toThrow(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringContaining('wClip[1]') }));
    expect(() => fusedAttention(x.reshape([1, 1, 2, 3]), x.reshape([1, 1, 2, 3]), x.reshape([1, 1, 2, 3]), { kvLengths: Int32Array.of(3) }))
      .toThrow(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringContaining('kvLengths[0] = 3') }));
    const logits = Tensor.zeros([2, 5], { device: 'cuda' });
    expect(() => crossEntropy(logits, Int32Array.of(1, 5))).toThrow(expect.objectContaining({ code: 'ERR_ARG',
      message: expect.stringContaining('targets[1] = 5') }));
  });

  it('takes index data (ids, kvLengths, targets) on the CPU or on the device: it is read on the host', async () => {
    const table = rand([9, 5]), idsCpu = Tensor.from([3, 0, 8], [3], { dtype: 'i32' });
    const want = embedding(idsCpu, table).toArray();
    const tg = table.to('cuda');
    for (const ids of [idsCpu, idsCpu.to('cuda')]) expect(Array.from(embedding(ids, tg).toArray())).toEqual(Array.from(want));
    const q = rand([2, 1, 3, 4]), lens = Tensor.from([3, 1], [2], { dtype: 'i32' });
    const a = fusedAttention(q, q, q, { kvLengths: lens }).toArray();
    const qg = q.to('cuda');
    for (const kvLengths of [lens, lens.to('cuda')])
      expect(relL2(await fusedAttention.async(qg, qg, qg, { kvLengths }).then((t) => t.toArray()), a)).toBeLessThanOrEqual(tol('f32'));
    const logits = rand([2, 7]), targets = Tensor.from([6, 2], [2], { dtype: 'i32' });
    const loss = crossEntropy(logits, targets).loss;
    for (const t of [targets, targets.to('cuda')]) expect(crossEntropy(logits.to('cuda'), t).loss).toBeCloseTo(loss, 6);
  });

  it('keeps an async op\'s inputs alive when they are disposed while it runs', async () => {
    const x = rand([7, 33]).to('cuda'), g = rand([33]).to('cuda');
    const want = layerNorm(x, g).toArray();
    const p = layerNorm.async(x, g);
    x.dispose();
    g.dispose();
    expect(Array.from((await p).toArray())).toEqual(Array.from(want));
  });
});

describe('ops on CUDA match the CPU', () => {
  it('layerNorm / rmsNorm forward and backward', async () => {
    for (const dtype of FLOATS) {
      for (const [rows, cols] of [[1, 7], [5, 33], [3, 1000]]) {
        const x = rand([rows, cols], dtype), g = rand([cols], dtype), b = rand([cols], dtype), dy = rand([rows, cols], dtype);
        await both(`layerNorm ${dtype} ${rows}x${cols}`, [x, g, b], layerNorm, layerNorm.async, tol(dtype));
        await both(`layerNormBackward ${dtype}`, [dy, x, g], layerNormBackward, layerNormBackward.async, tol(dtype));
        await both(`rmsNorm ${dtype}`, [x, g], rmsNorm, null, tol(dtype));
        await both(`rmsNormBackward ${dtype}`, [dy, x, g], rmsNormBackward, null, tol(dtype));
      }
    }
  });

  it('softmax forward and backward, causal', async () => {
    for (const dtype of FLOATS) {
      const x = rand([2, 3, 9, 130], dtype, 4), dy = rand([2, 3, 9, 130], dtype);
      await both(`softmax ${dtype}`, [x], (a) => softmax(a, { causal: true }), null, tol(dtype));
      const y = softmax(x);
      await both(`softmaxBackward ${dtype}`, [dy, y], softmaxBackward, softmaxBackward.async, tol(dtype));
    }
  });

  it('embedding forward and backward with positions and dropout (the same mask)', async () => {
    for (const dtype of FLOATS) {
      const V = 37, D = 24, ids = Tensor.from(ints(2 * 9, 0, V), [2, 9], { dtype: 'i32' });
      const table = rand([V, D], dtype), pos = rand([16, D], dtype), dOut = rand([2, 9, D], dtype);
      const o = { positions: undefined as Tensor | undefined, positionOffset: 3, scale: 2, dropout: 0.25, seed: 11 };
      await both(`embedding ${dtype}`, [ids, table, pos], (i, t, p) => embedding(i, t, { ...o, positions: p }), null, tol(dtype));
      await both(`embeddingBackward ${dtype}`, [dOut, ids], (d, i) => embeddingBackward(d, i, { vocabSize: V, numPositions: 16,
        positionOffset: 3, scale: 2, dropout: 0.25, seed: 11 }), null, tol(dtype));
    }
  });

  it('gemm and linear forward and backward (tile tails), int8 products exactly', async () => {
    for (const dtype of FLOATS) {
      const a = rand([67, 45], dtype), b = rand([45, 131], dtype), c = rand([67, 131], dtype);
      await both(`gemm ${dtype}`, [a, b, c], (x, y, z) => gemm(x, y, { c: z, alpha: 0.5, beta: 2 }),
        (x, y, z) => gemm.async(x, y, { c: z, alpha: 0.5, beta: 2 }), tol(dtype));
      const x = rand([3, 19, 40], dtype), w = rand([72, 40], dtype), bias = rand([72], dtype), res = rand([3, 19, 72], dtype);
      await both(`linear ${dtype}`, [x, w, bias, res], (p, q, s, t) => linear(p, q, s, { activation: 'gelu', residual: t }), null, tol(dtype));
      const dy = rand([3, 19, 72], dtype);
      await both(`linearBackward ${dtype}`, [dy, x, w], linearBackward, null, tol(dtype));
    }
    const qa = Tensor.from(ints(33 * 70, -127, 128), [33, 70], { dtype: 'i8' });
    const qb = Tensor.from(ints(70 * 41, -127, 128), [41, 70], { dtype: 'i8' });
    await both('gemmInt8', [qa, qb], gemmInt8, null, 0);
    const bias = rand([41]);
    const wclip = Tensor.from(Array.from({ length: 41 }, () => 0.25 + r()), [41]);
    await both('linearInt8', [qa, qb, wclip, bias], (x, w, wc, bb) => linearInt8(x, w, 2, wc, bb, { activation: 'relu' }), null, tol('f32'));
    await both('linearInt8 requantized', [qa, qb, bias], (x, w, bb) => linearInt8(x, w, 2, 0.5, bb, { outClip: 3 }), null, 0);
  });

  it('biasAct and dropout: the same Philox masks as the CPU', async () => {
    for (const dtype of FLOATS) {
      const x = rand([13, 77], dtype), bias = rand([77], dtype), dy = rand([13, 77], dtype), res = rand([13, 77], dtype);
      for (const activation of ['gelu', 'relu', 'silu'] as const) {
        const o = { activation, dropout: 0.3, seed: 99n };
        await both(`biasAct ${activation} ${dtype}`, [x, bias], (p, q) => biasAct(p, q, o), null, dtype === 'f32' ? 0 : tol(dtype));
        await both(`biasActBackward ${activation} ${dtype}`, [dy, x, bias], (d, p, q) => biasActBackward(d, p, q, o).dx, null,
          dtype === 'f32' ? 0 : tol(dtype));
        // dbias sums columns in another order than the CPU
        await both(`biasActBackward ${activation} ${dtype} dbias`, [dy, x, bias], (d, p, q) => biasActBackward(d, p, q, o).dbias, null,
          tol(dtype));
      }
      await both(`dropout ${dtype}`, [x], (p) => dropout(p, 0.4, 1234, { offset: 7 }), (p) => dropout.async(p, 0.4, 1234, { offset: 7 }), 0);
      await both(`dropoutBackward ${dtype}`, [dy], (d) => dropoutBackward(d, 0.4, 1234, { offset: 7 }), null, 0);
      await both(`biasDropoutResidual ${dtype}`, [x, bias, res], (p, q, s) => biasDropoutResidual(p, q, s, { dropout: 0.2, seed: 3 }), null,
        tol(dtype));
    }
  });

  it('fusedAttention forward and backward: GQA, causal, kvLengths, dropout', async () => {
    for (const dtype of FLOATS) {
      const [B, H, Hkv, Sq, Sk, D] = [2, 4, 2, 19, 37, 24];
      const q = rand([B, H, Sq, D], dtype), k = rand([B, Hkv, Sk, D], dtype), v = rand([B, Hkv, Sk, D], dtype);
      const dOut = rand([B, H, Sq, D], dtype);
      const kvLengths = Int32Array.of(37, 21);
      for (const causal of [false, true]) {
        const o = { causal, kvLengths, dropout: 0.1, seed: 5 };
        await both(`fusedAttention ${dtype} causal=${causal}`, [q, k, v], (a, b, c) => fusedAttention(a, b, c, { ...o, returnLse: true }),
          null, tol(dtype));
        const { out, lse } = fusedAttention(q, k, v, { ...o, returnLse: true });
        await both(`fusedAttentionBackward ${dtype} causal=${causal}`, [dOut, q, k, v, out, lse],
          (d, a, b, c, oo, l) => fusedAttentionBackward(d, a, b, c, oo, l, o),
          (d, a, b, c, oo, l) => fusedAttentionBackward.async(d, a, b, c, oo, l, o),
          dtype === 'f32' ? 1e-4 : tol(dtype));
      }
    }
  });

  it('crossEntropy forward and backward, with label smoothing, ignoreIndex and MiLe', async () => {
    for (const dtype of FLOATS) {
      const N = 23, V = 301, logits = rand([N, V], dtype, 5);
      const t = ints(N, 0, V);
      t[3] = -100;
      const targets = Tensor.from(t, [N], { dtype: 'i32' });
      for (const mile of [undefined, { gamma: 1.5, sigma: 0.5 }]) {
        const o = { labelSmoothing: 0.1, mile };
        await both(`crossEntropy ${dtype} mile=${!!mile}`, [logits, targets], (l, tg) => crossEntropy(l, tg, o), (l, tg) => crossEntropy.async(l, tg, o),
          tol(dtype));
        // targets as an Int32Array on a CUDA logits tensor: uploaded by the op
        const cpu = crossEntropy(logits, t, o);
        const gl = logits.to('cuda');
        const gpu = crossEntropy(gl, t, o);
        expectClose('crossEntropy Int32Array targets', gpu.loss, cpu.loss, tol(dtype));
        expectClose(`crossEntropyBackward ${dtype}`, crossEntropyBackward(gl, t, gpu), crossEntropyBackward(logits, t, cpu), tol(dtype));
      }
    }
  });

  it('AdamW and gradNorm: the same update as the CPU', async () => {
    for (const dtype of FLOATS) {
      // f32 master weights and moments, gradients in dtype
      const p = rand([77, 5]), g = rand([77, 5], dtype), m = rand([77, 5], 'f32', 0.1);
      const v = Tensor.from(rand([77, 5], 'f32', 0.1).toArray().map(Math.abs), [77, 5]);
      const o = { lr: 1e-2, weightDecay: 0.1, step: 3 };
      const cpu = [p, g, m, v];
      const gpu = cpu.map((t) => t.to('cuda'));
      adamw(cpu[0]!, cpu[1]!, cpu[2]!, cpu[3]!, o);
      await adamw.async(gpu[0]!, gpu[1]!, gpu[2]!, gpu[3]!, o);
      for (let i = 0; i < 4; i++) expectClose(`adamw ${dtype} [${i}]`, gpu[i]!, cpu[i]!, 0);
      await both(`gradNorm ${dtype}`, [[p, g]], (l) => gradNorm(l as Tensor[]), (l) => gradNorm.async(l as Tensor[]), 1e-12);
    }
  });

  it('quantize, dequantize, fakeQuant (per tensor and per channel) and maxClip', async () => {
    for (const dtype of FLOATS) {
      const x = rand([6, 41], dtype, 3), dy = rand([6, 41], dtype);
      const clips = Tensor.from(Array.from({ length: 6 }, () => 0.5 + r() * 2), [6]);
      await both(`quantize ${dtype}`, [x], (a) => quantize(a, 1.5), null, 0);
      await both(`quantize per channel ${dtype}`, [x, clips], (a, c) => quantize(a, c, { axis: 0 }), null, 0);
      await both(`fakeQuant ${dtype}`, [x, clips], (a, c) => fakeQuant(a, c, { axis: 0 }), (a, c) => fakeQuant.async(a, c, { axis: 0 }), 0);
      await both(`fakeQuantBackward ${dtype}`, [dy, x, clips], (d, a, c) => fakeQuantBackward(d, a, c, { axis: 0 }), null, tol(dtype));
      await both(`maxClip ${dtype}`, [x], (a) => maxClip(a, { axis: 0, bits: 7 }), null, 0);
      const q = quantize(x, 1.5);
      await both(`dequantize ${dtype}`, [q], (a) => dequantize(a, 1.5, { dtype }), null, 0);
    }
  });
});

import { describe, expect, it } from 'vitest';
import {
  type DType, gemm, gemmBackward, getNumThreads, linear, type LinearActivation, linearBackward, memory, SeqfuseError, setNumThreads,
  Tensor,
} from '../lib/index.js';
import { native } from '../lib/native.js';
import { expectClose, expectCode, expectSameBits, freshSeed, poisoned, randomTensor, rng } from './helpers.js';
import { erf, gemmBackwardRef, gemmRef, linearBackwardRef, linearRef } from './reference/matmul.js';

const seed = freshSeed();
const SIZES = [1, 3, 17, 33, 130];
const DTYPES: DType[] = ['f32', 'bf16', 'f16'];
const ACTS: LinearActivation[] = ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

/** Small integers in [-range, range] as f32: every product and sum below is exact in f32. */
function intTensor(shape: number[], r: () => number, range = 4): { t: Tensor; v: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.floor(r() * (2 * range + 1)) - range;
  return { t: Tensor.from(Float32Array.from(v), shape), v };
}

function expectExact(actual: Tensor, expected: ArrayLike<number>, what: string): void {
  const a = actual.toArray();
  expect(a.length, `${what}: length`).toBe(expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== expected[i]) expect.fail(`${what}: element ${i} is ${a[i]}, float64 reference ${expected[i]}`);
  }
}

/** Central difference of f after writing t.data[i] (through the getter, as users must). */
function finiteDiffAt(f: () => number, t: Tensor, i: number, h: number): number {
  const x0 = (t.data as Float32Array)[i]!;
  (t.data as Float32Array)[i] = x0 + h;
  const fp = f();
  (t.data as Float32Array)[i] = x0 - h;
  const fm = f();
  (t.data as Float32Array)[i] = x0;
  return (fp - fm) / (2 * h);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

describe(`gemm (seed ${seed})`, () => {
  it('erf reference is accurate', () => {
    expect(Math.abs(erf(1) - 0.8427007929497149)).toBeLessThan(1e-15);
    expect(Math.abs(erf(-0.3) + 0.3286267594591274)).toBeLessThan(1e-15);
    expect(Math.abs(erf(3) - 0.9999779095030014)).toBeLessThan(1e-15);
  });

  it('matches float64 for every transpose, alpha/beta, dtype and odd size', () => {
    const r = rng(seed);
    for (const dtype of DTYPES) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const withC of [false, true]) {
            for (let rep = 0; rep < 2; rep++) {
              const m = pick(r, SIZES), n = pick(r, SIZES), k = pick(r, SIZES);
              const alpha = rep === 0 ? 1 : -0.75 + r() * 2;
              const beta = withC ? (rep === 0 ? 1 : 0.5 - r()) : 0;
              const a = randomTensor(transA ? [k, m] : [m, k], r, dtype);
              const b = randomTensor(transB ? [n, k] : [k, n], r, dtype);
              const c = withC ? randomTensor([m, n], r, dtype) : null;
              const out = poisoned([m, n], dtype);
              const y = gemm(a.t, b.t, { transA, transB, alpha, beta, c: c?.t ?? null, out });
              expect(y).toBe(out);
              const ref = gemmRef(a.v, b.v, c?.v ?? null, m, n, k, transA, transB, alpha, beta);
              expectClose(y, ref, dtype, `gemm ${dtype} [${m},${n},${k}] tA=${transA} tB=${transB} alpha=${alpha} beta=${beta}`);
            }
          }
        }
      }
    }
  });

  it('is exact on integer-valued f32 inputs', () => {
    const r = rng(seed + 1);
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const [alpha, beta] of [[1, 0], [2, -1], [0.5, 3]] as const) {
          const m = pick(r, SIZES), n = pick(r, SIZES), k = pick(r, SIZES);
          const a = intTensor(transA ? [k, m] : [m, k], r);
          const b = intTensor(transB ? [n, k] : [k, n], r);
          const c = intTensor([m, n], r, 50);
          const y = gemm(a.t, b.t, { transA, transB, alpha, beta, c: c.t, out: poisoned([m, n]) });
          expectExact(y, gemmRef(a.v, b.v, c.v, m, n, k, transA, transB, alpha, beta), `gemm int [${m},${n},${k}] tA=${transA} tB=${transB}`);
        }
      }
    }
  });

  it('accumulates in place when out is c (beta defaults to 1), and ignores c (even NaN) when beta is 0', () => {
    const r = rng(seed + 2);
    const a = intTensor([5, 7], r);
    const b = intTensor([7, 3], r);
    const c = intTensor([5, 3], r);
    const acc = Tensor.from(Float32Array.from(c.v), [5, 3]);
    gemm(a.t, b.t, { c: acc, out: acc });
    expectExact(acc, gemmRef(a.v, b.v, c.v, 5, 3, 7, false, false, 1, 1), 'gemm in place');
    const y = gemm(a.t, b.t, { c: poisoned([5, 3]), beta: 0 });
    expectExact(y, gemmRef(a.v, b.v, null, 5, 3, 7, false, false, 1, 0), 'gemm beta 0 with NaN c');
  });

  it('handles zero sizes: M = 0 and K = 0 (out = beta · c)', () => {
    const r = rng(seed + 3);
    expect(gemm(Tensor.zeros([0, 4]), Tensor.zeros([4, 3])).shape).toEqual([0, 3]);
    for (const dtype of DTYPES) {
      const c = intTensor([2, 3], r);
      const y = gemm(Tensor.zeros([2, 0], { dtype }), Tensor.zeros([0, 3], { dtype }), { c: c.t.to(dtype), beta: 2, out: poisoned([2, 3], dtype) });
      expectExact(y, Array.from(c.v, (v) => 2 * v), `gemm K=0 ${dtype}`);
      const z = gemm(Tensor.zeros([2, 0], { dtype }), Tensor.zeros([0, 3], { dtype }), { out: poisoned([2, 3], dtype) });
      expectExact(z, new Float64Array(6), `gemm K=0 no c ${dtype}`);
    }
  });
});

describe(`linear (seed ${seed})`, () => {
  it('matches float64 for every activation, bias and residual combination, dtype and odd size', () => {
    const r = rng(seed + 10);
    for (const dtype of DTYPES) {
      for (const act of ACTS) {
        for (const withBias of [false, true]) {
          for (const withRes of [false, true]) {
            const lead = r() < 0.5 ? [pick(r, SIZES)] : [1 + Math.floor(r() * 3), pick(r, SIZES)];
            const n = pick(r, SIZES), k = pick(r, SIZES);
            const m = lead.reduce((p, s) => p * s, 1);
            const x = randomTensor([...lead, k], r, dtype, 2);
            const w = randomTensor([n, k], r, dtype);
            const b = withBias ? randomTensor([n], r, dtype) : null;
            const res = withRes ? randomTensor([...lead, n], r, dtype) : null;
            const out = poisoned([...lead, n], dtype);
            const y = linear(x.t, w.t, b?.t, { activation: act, residual: res?.t ?? null, out });
            expect(y).toBe(out);
            const ref = linearRef(x.v, w.v, b?.v ?? null, res?.v ?? null, m, n, k, act);
            // A few outputs (even one) can land deep in GELU/SiLU's negative tail, where any f32
            // activation is accurate only relative to the pre-activation: floor the norm by it.
            const pre = linearRef(x.v, w.v, b?.v ?? null, res?.v ?? null, m, n, k, 'none');
            const floor = 1e-2 * Math.sqrt(pre.reduce((s, v) => s + v * v, 0));
            expectClose(y, ref, dtype, `linear ${dtype} ${act} bias=${withBias} residual=${withRes} x [${lead},${k}] w [${n},${k}]`, 1, floor);
          }
        }
      }
    }
  });

  it('returns [..., N] for leading batch dims and is exact on integer-valued f32 inputs', () => {
    const r = rng(seed + 11);
    for (const act of ['none', 'relu'] as const) {
      for (const withBias of [false, true]) {
        for (const withRes of [false, true]) {
          const lead = [2, 3, pick(r, SIZES)];
          const n = pick(r, SIZES), k = pick(r, SIZES);
          const m = lead.reduce((p, s) => p * s, 1);
          const x = intTensor([...lead, k], r);
          const w = intTensor([n, k], r);
          const b = withBias ? intTensor([n], r, 20) : null;
          const res = withRes ? intTensor([...lead, n], r, 20) : null;
          const y = linear(x.t, w.t, b?.t, { activation: act, residual: res?.t ?? null });
          expect(y.shape).toEqual([...lead, n]);
          expectExact(y, linearRef(x.v, w.v, b?.v ?? null, res?.v ?? null, m, n, k, act), `linear int ${act} bias=${withBias} res=${withRes}`);
        }
      }
    }
  });

  it('adds a residual in place when out is the residual', () => {
    const r = rng(seed + 12);
    for (const dtype of DTYPES) {
      for (const act of ['none', 'gelu'] as const) {
        const x = randomTensor([4, 17], r, dtype);
        const w = randomTensor([9, 17], r, dtype);
        const b = randomTensor([9], r, dtype);
        const h = randomTensor([4, 9], r, dtype);
        const y = linear(x.t, w.t, b.t, { activation: act, residual: h.t, out: h.t });
        expect(y).toBe(h.t);
        expectClose(y, linearRef(x.v, w.v, b.v, h.v, 4, 9, 17, act), dtype, `linear in-place residual ${dtype} ${act}`);
      }
    }
  });

  it('handles zero sizes: no rows, and K = 0 (act(bias) + residual)', () => {
    const r = rng(seed + 13);
    expect(linear(Tensor.zeros([0, 5]), Tensor.zeros([3, 5])).shape).toEqual([0, 3]);
    expect(linear(Tensor.zeros([2, 0, 5]), Tensor.zeros([3, 5])).shape).toEqual([2, 0, 3]);
    for (const dtype of DTYPES) {
      const b = intTensor([3], r);
      const res = intTensor([2, 3], r);
      const y = linear(Tensor.zeros([2, 0], { dtype }), Tensor.zeros([3, 0], { dtype }), b.t.to(dtype),
        { activation: 'relu', residual: res.t.to(dtype), out: poisoned([2, 3], dtype) });
      expectExact(y, linearRef([], [], b.v, res.v, 2, 3, 0, 'relu'), `linear K=0 ${dtype}`);
    }
  });

  it('is deterministic, and async gives the same bits as sync', async () => {
    const r = rng(seed + 14);
    for (const dtype of ['f32', 'bf16'] as const) {
      const x = randomTensor([2, 37, 256], r, dtype);
      const w = randomTensor([515, 256], r, dtype);
      const b = randomTensor([515], r, dtype);
      const res = randomTensor([2, 37, 515], r, dtype);
      const opts = { activation: 'gelu' as const, residual: res.t };
      const y1 = linear(x.t, w.t, b.t, opts);
      const y2 = linear(x.t, w.t, b.t, opts);
      const y3 = await linear.async(x.t, w.t, b.t, opts);
      expectSameBits(y1, y2, `linear ${dtype} twice`);
      expectSameBits(y1, y3, `linear ${dtype} sync vs async`);
      const g1 = gemm(x.t.reshape([74, 256]), w.t, { transB: true, alpha: 0.5, c: res.t.reshape([74, 515]), beta: 2 });
      const g2 = await gemm.async(x.t.reshape([74, 256]), w.t, { transB: true, alpha: 0.5, c: res.t.reshape([74, 515]), beta: 2 });
      expectSameBits(g1, g2, `gemm ${dtype} sync vs async`);
    }
  });

  it('runs concurrent async calls on one fresh weight (shared caches) to the same bits', async () => {
    const r = rng(seed + 17);
    for (const dtype of ['f32', 'bf16'] as const) {
      const x = randomTensor([9, 130], r, dtype);
      const w = randomTensor([33, 130], r, dtype);
      const b = randomTensor([33], r, dtype);
      const ys = await Promise.all(Array.from({ length: 8 }, () => linear.async(x.t, w.t, b.t, { activation: 'silu' })));
      const ref = linear(x.t, w.t, b.t, { activation: 'silu' });
      expectClose(ref, linearRef(x.v, w.v, b.v, null, 9, 33, 130, 'silu'), dtype, `linear ${dtype} concurrent`);
      for (const y of ys) expectSameBits(y, ref, `linear ${dtype} concurrent`);
    }
  });

  it('gives the same results with 1 and 2 threads (primitives are per thread count)', () => {
    const r = rng(seed + 15);
    const before = getNumThreads();
    try {
      const x = randomTensor([64, 96], r);
      const w = randomTensor([80, 96], r);
      const ref = linearRef(x.v, w.v, null, null, 64, 80, 96, 'silu');
      for (const t of [1, 2, 1]) {
        setNumThreads(t);
        expectClose(linear(x.t, w.t, null, { activation: 'silu' }), ref, 'f32', `linear ${t} threads`);
      }
    } finally {
      setNumThreads(before);
    }
  });

  it('reuses the weight cache and rebuilds it after writes through w.data', () => {
    const r = rng(seed + 16);
    for (const dtype of DTYPES) {
      const x = randomTensor([5, 33], r, dtype);
      const w = randomTensor([17, 33], r, dtype);
      const b = randomTensor([17], r, dtype);
      expectClose(linear(x.t, w.t, b.t), linearRef(x.v, w.v, b.v, null, 5, 17, 33, 'none'), dtype, `linear ${dtype} first`);
      const cache = w.t._storage.cache;
      expect(cache).toBeDefined();
      const bytes = native.weight_cache_bytes(cache);
      // f32 weights are copied only when oneDNN wants another layout; 16-bit weights always are
      // (the f32 fallback here, a blocked layout on CPUs with native bf16/f16 matmul)
      if (dtype !== 'f32') expect(bytes).toBeGreaterThanOrEqual(17 * 33 * 2);
      linear(x.t, w.t, b.t);
      expect(w.t._storage.cache).toBe(cache);
      // a view shares the storage, and so the cache
      linear(x.t, w.t.reshape([17, 33]), b.t);
      expect(w.t._storage.cache).toBe(cache);

      const wd = w.t.data;  // bumps the version: the next call rebuilds the cache
      const v = dtype === 'f32' ? 3 : dtype === 'bf16' ? 0x4040 : 0x4200;  // 3.0 in each dtype
      wd[0] = v;
      wd[17 * 33 - 1] = v;
      w.v[0] = 3;
      w.v[17 * 33 - 1] = 3;
      expectClose(linear(x.t, w.t, b.t), linearRef(x.v, w.v, b.v, null, 5, 17, 33, 'none'), dtype, `linear ${dtype} after write`);
      expect(w.t._storage.cache).not.toBe(cache);

      // an op writing w (as its out) also invalidates
      const c2 = w.t._storage.cache;
      const src = randomTensor([17, 33], r, dtype);
      gemm(Tensor.from(Float32Array.from({ length: 17 * 17 }, (_, i) => (i % 18 === 0 ? 1 : 0)), [17, 17]).to(dtype), src.t, { out: w.t });
      expectClose(linear(x.t, w.t, b.t), linearRef(x.v, src.v, b.v, null, 5, 17, 33, 'none'), dtype, `linear ${dtype} after gemm into w`);
      expect(w.t._storage.cache).not.toBe(c2);
    }
  });
});

describe(`backward (seed ${seed})`, () => {
  it('linearBackward matches float64 (leading dims, every dtype, with and without bias)', async () => {
    const r = rng(seed + 20);
    for (const dtype of DTYPES) {
      for (const hasBias of [true, false]) {
        const lead = [2, pick(r, SIZES)];
        const n = pick(r, SIZES), k = pick(r, SIZES);
        const m = lead[0]! * lead[1]!;
        const x = randomTensor([...lead, k], r, dtype);
        const w = randomTensor([n, k], r, dtype);
        const dy = randomTensor([...lead, n], r, dtype);
        const g = linearBackward(dy.t, x.t, w.t, { hasBias });
        const ref = linearBackwardRef(dy.v, x.v, w.v, m, n, k);
        const what = `linearBackward ${dtype} x [${lead},${k}] w [${n},${k}]`;
        expect(g.dx.shape).toEqual(x.t.shape);
        expect(g.dw.shape).toEqual([n, k]);
        expectClose(g.dx, ref.dx, dtype, `${what} dx`);
        expectClose(g.dw, ref.dw, dtype, `${what} dw`);
        if (hasBias) expectClose(g.db!, ref.db, dtype, `${what} db`);
        else expect(g.db).toBeUndefined();
        const ga = await linearBackward.async(dy.t, x.t, w.t, { hasBias });
        expectSameBits(g.dx, ga.dx, `${what} dx async`);
        expectSameBits(g.dw, ga.dw, `${what} dw async`);
      }
    }
  });

  it('linearBackward agrees with finite differences of linear', () => {
    const r = rng(seed + 21);
    const x = randomTensor([2, 3, 5], r);
    const w = randomTensor([4, 5], r);
    const b = randomTensor([4], r);
    const dy = randomTensor([2, 3, 4], r);
    const loss = () => dot(linear(x.t, w.t, b.t).toArray(), dy.v);
    const g = linearBackward(dy.t, x.t, w.t);
    for (const [t, grad] of [[x.t, g.dx], [w.t, g.dw], [b.t, g.db!]] as const) {
      const an = grad.toArray();
      for (let i = 0; i < t.numel; i++) {
        const fd = finiteDiffAt(loss, t, i, 1e-2);
        expect(Math.abs(fd - an[i]!), `element ${i}: analytic ${an[i]} vs finite difference ${fd}`).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
      }
    }
  });

  it('gemmBackward matches float64 and finite differences for every transpose', () => {
    const r = rng(seed + 22);
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const m = pick(r, SIZES), n = pick(r, SIZES), k = pick(r, SIZES);
          const alpha = 0.5 + r();
          const a = randomTensor(transA ? [k, m] : [m, k], r, dtype);
          const b = randomTensor(transB ? [n, k] : [k, n], r, dtype);
          const dOut = randomTensor([m, n], r, dtype);
          const g = gemmBackward(dOut.t, a.t, b.t, { transA, transB, alpha });
          const ref = gemmBackwardRef(dOut.v, a.v, b.v, m, n, k, transA, transB, alpha);
          const what = `gemmBackward ${dtype} [${m},${n},${k}] tA=${transA} tB=${transB}`;
          expect(g.da.shape).toEqual(a.t.shape);
          expect(g.db.shape).toEqual(b.t.shape);
          expectClose(g.da, ref.da, dtype, `${what} da`);
          expectClose(g.db, ref.db, dtype, `${what} db`);
        }
      }
    }
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = randomTensor(transA ? [4, 3] : [3, 4], r);
        const b = randomTensor(transB ? [2, 4] : [4, 2], r);
        const dOut = randomTensor([3, 2], r);
        const loss = () => dot(gemm(a.t, b.t, { transA, transB, alpha: 1.5 }).toArray(), dOut.v);
        const g = gemmBackward(dOut.t, a.t, b.t, { transA, transB, alpha: 1.5 });
        for (const [t, grad] of [[a.t, g.da], [b.t, g.db]] as const) {
          const an = grad.toArray();
          for (let i = 0; i < t.numel; i++) {
            const fd = finiteDiffAt(loss, t, i, 1e-2);
            expect(Math.abs(fd - an[i]!), `tA=${transA} tB=${transB} element ${i}: ${an[i]} vs ${fd}`).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
          }
        }
      }
    }
  });
});

describe('bad input', () => {
  const x = Tensor.randn([2, 768], { seed: 1 });
  const w = Tensor.randn([3072, 768], { seed: 2 });

  it('linear rejects wrong shapes, dtypes, devices, disposed tensors and non-tensors', async () => {
    const wBad = Tensor.zeros([3072, 767]);
    const msg = 'linear: expected w of shape [N, 768] (in-features of x) but received [3072, 767]';
    expectCode(() => linear(x, wBad), 'ERR_SHAPE', msg);
    expectCode(() => native.linear_fwd(x, wBad, null, null, Tensor.zeros([2, 3072]), 0, null, false), 'ERR_SHAPE', msg);
    expectCode(() => linear(x, Tensor.zeros([768])), 'ERR_SHAPE');
    expectCode(() => linear(x, w, Tensor.zeros([3071])), 'ERR_SHAPE', 'linear: expected bias of shape [3072] but received [3071]');
    expectCode(() => linear(x, w, null, { residual: Tensor.zeros([2, 3071]) }), 'ERR_SHAPE', /residual of shape \[2, 3072\]/);
    expectCode(() => linear(x, w, null, { out: Tensor.zeros([3, 3072]) }), 'ERR_SHAPE', /out of shape \[2, 3072\]/);
    expectCode(() => linear(Tensor.zeros([], {}), w), 'ERR_SHAPE');
    expectCode(() => linear(x, w.to('bf16')), 'ERR_DTYPE', 'linear: expected f32 tensor for w (the dtype of x) but received bf16');
    expectCode(() => linear(x.to('i32'), Tensor.zeros([4, 768], { dtype: 'i32' })), 'ERR_DTYPE');
    expectCode(() => linear(x, w, null, { out: Tensor.zeros([2, 3072], { dtype: 'f16' }) }), 'ERR_DTYPE');
    const gone = Tensor.zeros([2, 768]);
    gone.dispose();
    expectCode(() => linear(gone, w), 'ERR_DISPOSED');
    expectCode(() => native.linear_fwd(gone, w, null, null, Tensor.zeros([2, 3072]), 0, null, false), 'ERR_DISPOSED');
    const goneW = Tensor.zeros([4, 768]);
    goneW.dispose();
    expectCode(() => linear(x, goneW), 'ERR_DISPOSED');
    expectCode(() => linear([1, 2] as unknown as Tensor, w), 'ERR_ARG');
    expectCode(() => linear(x, {} as unknown as Tensor), 'ERR_ARG');
    expectCode(() => linear(x, w, 5 as unknown as Tensor), 'ERR_ARG');
    expectCode(() => linear(x, w, null, { activation: 'tanh' as LinearActivation }), 'ERR_ARG');
    expectCode(() => linear(x, w, null, 7 as unknown as object), 'ERR_ARG');
    expectCode(() => native.linear_fwd(x, w, null, null, Tensor.zeros([2, 3072]), 7, null, false), 'ERR_ARG');
    expectCode(() => native.linear_fwd(x, w, null, null, Tensor.zeros([2, 3072]), 0, {}, false), 'ERR_ARG', /weight cache/);
    expectCode(() => native.linear_fwd(x, w, null, null, Tensor.zeros([2, 3072]), 0, 12, false), 'ERR_ARG', /weight cache/);
    expectCode(() => native.weight_cache_bytes({}), 'ERR_ARG');
    await expect(linear.async(x, wBad)).rejects.toMatchObject({ code: 'ERR_SHAPE', message: msg });
    await expect(linear.async(x, w, Tensor.zeros([5]))).rejects.toBeInstanceOf(SeqfuseError);
  });

  it('rejects outputs that overlap inputs, but allows out = residual / out = c exactly', () => {
    const sq = Tensor.randn([4, 4], { seed: 3 });
    const xs = Tensor.randn([4, 4], { seed: 4 });
    expectCode(() => linear(xs, sq, null, { out: xs }), 'ERR_ARG', /out shares memory with x/);
    expectCode(() => linear(xs, sq, null, { out: sq }), 'ERR_ARG', /out shares memory with w/);
    expectCode(() => gemm(xs, sq, { out: xs }), 'ERR_ARG', /out shares memory with a/);
    expectCode(() => gemm(xs, sq, { out: sq }), 'ERR_ARG', /out shares memory with b/);
    // out overlaps the residual without being it: two views into one buffer
    const buf = new Float32Array(20);
    const res = Tensor._wrapTemp(buf.subarray(0, 16), [4, 4], 'f32');
    const y = Tensor._wrapTemp(buf.subarray(4, 20), [4, 4], 'f32');
    expectCode(() => native.linear_fwd(xs, sq, null, res, y, 0, null, false), 'ERR_ARG', /out shares memory with residual/);
    expectCode(() => native.gemm(xs, sq, res, y, false, false, 1, 1, false), 'ERR_ARG', /out shares memory with c/);
  });

  it('gemm rejects wrong shapes, dtypes, NaN/Inf scalars and non-tensors', async () => {
    const a = Tensor.randn([5, 33], { seed: 6 });
    const b = Tensor.randn([32, 4], { seed: 7 });
    expectCode(() => gemm(a, b), 'ERR_SHAPE', 'gemm: expected b of shape [33, N] (K = columns of a) but received [32, 4]');
    expectCode(() => gemm(a, b, { transA: true }), 'ERR_SHAPE', /\[5, N\] \(K = rows of a, transA\)/);
    expectCode(() => gemm(a, b, { transB: true }), 'ERR_SHAPE', /expected b of shape \[N, 33\]/);
    expectCode(() => gemm(a, Tensor.zeros([33, 4]), { c: Tensor.zeros([5, 3]), beta: 1 }), 'ERR_SHAPE', /c of shape \[5, 4\]/);
    expectCode(() => gemm(a, Tensor.zeros([33, 4]), { out: Tensor.zeros([4, 5]) }), 'ERR_SHAPE', /out of shape \[5, 4\]/);
    expectCode(() => gemm(a.reshape([5, 33, 1]), b), 'ERR_SHAPE', /2-D tensor for a/);
    expectCode(() => gemm(a, Tensor.zeros([33, 4], { dtype: 'bf16' })), 'ERR_DTYPE');
    expectCode(() => gemm(Tensor.zeros([2, 2], { dtype: 'i8' }), Tensor.zeros([2, 2], { dtype: 'i8' })), 'ERR_DTYPE');
    expectCode(() => gemm(a, Tensor.zeros([33, 4]), { alpha: NaN }), 'ERR_ARG');
    expectCode(() => gemm(a, Tensor.zeros([33, 4]), { beta: Infinity }), 'ERR_ARG');
    expectCode(() => native.gemm(a, Tensor.zeros([33, 4]), null, Tensor.zeros([5, 4]), false, false, NaN, 0, false), 'ERR_ARG');
    expectCode(() => native.gemm(a, Tensor.zeros([33, 4]), null, Tensor.zeros([5, 4]), 1 as unknown as boolean, false, 1, 0, false), 'ERR_ARG');
    expectCode(() => gemm(a, Tensor.zeros([33, 4]), { transA: 'yes' as unknown as boolean }), 'ERR_ARG');
    expectCode(() => gemm(a, 'b' as unknown as Tensor), 'ERR_ARG');
    expectCode(() => gemm(a, Tensor.zeros([33, 4]), { c: {} as Tensor }), 'ERR_ARG');
    const gone = Tensor.zeros([33, 4]);
    gone.dispose();
    expectCode(() => gemm(a, gone), 'ERR_DISPOSED');
    await expect(gemm.async(a, b)).rejects.toMatchObject({ code: 'ERR_SHAPE' });
  });

  it('backward ops reject mismatched shapes and dtypes', () => {
    const xs = Tensor.randn([3, 5], { seed: 8 });
    const ws = Tensor.randn([4, 5], { seed: 9 });
    expectCode(() => linearBackward(Tensor.zeros([3, 5]), xs, ws), 'ERR_SHAPE', /expected dy of shape \[3, 4\]/);
    expectCode(() => linearBackward(Tensor.zeros([3, 4]), xs, Tensor.zeros([4, 6])), 'ERR_SHAPE', /\[N, 5\]/);
    expectCode(() => linearBackward(Tensor.zeros([3, 4], { dtype: 'bf16' }), xs, ws), 'ERR_DTYPE');
    expectCode(() => gemmBackward(Tensor.zeros([3, 4]), xs, Tensor.zeros([4, 4])), 'ERR_SHAPE');
    expectCode(() => gemmBackward(Tensor.zeros([3, 3]), xs, Tensor.zeros([5, 4])), 'ERR_SHAPE', /dOut of shape \[3, 4\]/);
    expectCode(() => gemmBackward(Tensor.zeros([3, 4]), xs, Tensor.zeros([5, 4]), { alpha: NaN }), 'ERR_ARG');
  });

  it('frees the outputs it allocated when a call fails', async () => {
    const badBias = Tensor.zeros([7]);
    const badB = Tensor.zeros([767, 2]);
    const before = memory().cpu.tensors;
    expectCode(() => linear(x, w, badBias), 'ERR_SHAPE');
    await expect(gemm.async(x, badB)).rejects.toBeInstanceOf(SeqfuseError);
    expect(memory().cpu.tensors).toBe(before);
  });
});

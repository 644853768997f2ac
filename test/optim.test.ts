import { describe, expect, it } from 'vitest';
import {
  adamw, AdamW, type DType, DynamicLossScaler, getNumThreads, gradNorm, inverseSqrt, memory, setNumThreads, Tensor, warmupCosine,
} from '../lib/index.js';
import { expectClose, expectCode, expectSameBits, forEachIsa, freshSeed, isas, poisoned, randomTensor, rng } from './helpers.js';
import { toBf16Bits, toF16Bits } from './reference/half.js';
import { type AdamWHyper, adamwRef, sumSquaresRef } from './reference/optim.js';

const seed = freshSeed();

type Half = 'bf16' | 'f16';

/** A copy with the same dtype and bits. */
const clone = (t: Tensor): Tensor => Tensor.from(t.data, t.shape, { dtype: t.dtype });
const f64 = (t: Tensor): Float64Array => Float64Array.from(t.toArray());
/** The 16-bit words of f32 values rounded to nearest even, as the kernels must write them. */
const roundedBits = (t: Tensor, dtype: Half): number[] => Array.from(t.toArray(), dtype === 'bf16' ? toBf16Bits : toF16Bits);
const bitsOf = (t: Tensor): number[] => Array.from(t.data as Uint16Array);

interface Param {
  p: Tensor;
  m: Tensor;
  v: Tensor;
  copy: Tensor | null;
  decay: boolean;
}

/** Parameters of the given sizes with random values and (already warm) random moments. */
function makeParams(r: () => number, shapes: number[][], copies: (Half | null)[]): Param[] {
  return shapes.map((shape, i) => {
    const v = randomTensor(shape, r).t;
    const vd = v.toArray();
    for (let k = 0; k < vd.length; k++) vd[k] = vd[k]! * vd[k]! * 0.01;  // v >= 0
    const copy = copies[i % copies.length]!;
    return {
      p: randomTensor(shape, r, 'f32', 0.5).t,
      m: randomTensor(shape, r, 'f32', 0.1).t,
      v: Tensor.from(vd, shape),
      copy: copy ? poisoned(shape, copy) : null,
      decay: i % 2 === 0,
    };
  });
}

function runAdamw(ps: Param[], grads: Tensor[], h: Omit<AdamWHyper, 'decay'>): void {
  adamw(ps.map((x) => x.p), grads, ps.map((x) => x.m), ps.map((x) => x.v), {
    ...h, decay: ps.map((x) => x.decay), copies: ps.map((x) => x.copy),
  });
}

const SHAPES = [[1], [3], [17], [130], [1000], [7, 9], [33], [2, 8]];

describe(`adamw (seed ${seed})`, () => {
  it('matches the float64 reference over several steps: odd sizes, per-tensor decay, gradScale, every grad and copy dtype', async () => {
    const r = rng(seed);
    for (const gradDtype of ['f32', 'bf16', 'f16'] as DType[]) {
      const ps = makeParams(r, SHAPES, [null, 'bf16', 'f16']);
      const ref = ps.map((x) => ({ p: f64(x.p), m: f64(x.m), v: f64(x.v) }));
      for (let step = 1; step <= 4; step++) {
        const h = { lr: 0.02 * step, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.5 };
        const gs = SHAPES.map((s) => randomTensor(s, r, gradDtype, 2));
        const before = ps.map((x) => ({ p: f64(x.p), m: f64(x.m), v: f64(x.v) }));
        for (const x of ps) if (x.copy) x.copy = poisoned(x.p.shape as number[], x.copy.dtype);
        const args = [ps.map((x) => x.p), gs.map((g) => g.t), ps.map((x) => x.m), ps.map((x) => x.v),
          { ...h, decay: ps.map((x) => x.decay), copies: ps.map((x) => x.copy) }] as const;
        if (step % 2) adamw(...args);
        else expect(await adamw.async(...args)).toBeUndefined();
        ps.forEach((x, i) => {
          const what = `${gradDtype} grads, tensor ${i} [${x.p.shape}], step ${step}`;
          // Floors: a tensor of 1 or 3 elements can land near 0 by cancellation, where f32 rounding
          // of its terms (p ~ 0.5, m ~ 0.1, v ~ 0.005, updates ~ lr) is large relative to it.
          const floor = (typical: number) => typical * Math.sqrt(x.p.numel);
          // an independent float64 trajectory
          adamwRef(ref[i]!.p, gs[i]!.v, ref[i]!.m, ref[i]!.v, { ...h, decay: x.decay });
          expectClose(x.p, ref[i]!.p, 'f32', `${what}: param`, 1, floor(0.25));
          expectClose(x.m, ref[i]!.m, 'f32', `${what}: m`, 1, floor(0.05));
          expectClose(x.v, ref[i]!.v, 'f32', `${what}: v`, 1, floor(0.002));
          // this step alone, from the kernel's own state: the change of the parameter
          const b = before[i]!;
          const p1 = Float64Array.from(b.p);
          adamwRef(p1, gs[i]!.v, Float64Array.from(b.m), Float64Array.from(b.v), { ...h, decay: x.decay });
          const pk = x.p.toArray();
          expectClose(pk.map((v, k) => v - b.p[k]!), p1.map((v, k) => v - b.p[k]!), 'f32', `${what}: update`, 1, floor(h.lr));
          if (x.copy) expect(bitsOf(x.copy), `${what}: ${x.copy.dtype} copy`).toEqual(roundedBits(x.p, x.copy.dtype as Half));
        });
      }
    }
  });

  it('weight decay is decoupled: with zero gradients and fresh moments the update is p·(1 − lr·wd) exactly where decay is on', () => {
    const p = Tensor.from([0.5, -1.25, 3, 1e-3]);
    const q = Tensor.from([0.5, -1.25, 3, 1e-3]);
    const z = () => Tensor.zeros([4]);
    adamw([p, q], [z(), z()], [z(), z()], [z(), z()], { lr: 0.5, weightDecay: 0.25, step: 1, eps: 1e-8, decay: [true, false] });
    expect(Array.from(p.toArray())).toEqual([0.5, -1.25, 3, 1e-3].map((v) => Math.fround(Math.fround(v) * 0.875)));
    expect(Array.from(q.toArray())).toEqual(Array.from(Float32Array.of(0.5, -1.25, 3, 1e-3)));
  });

  it('gives the same bits on every ISA pass, for 1 and 2 threads, and run twice (tasks spanning tensor ends)', () => {
    const r = rng(seed + 1);
    // 100k elements: enough for parallel_for to use 2 threads; odd sizes so tasks split inside tensors
    const shapes = [[301, 300], [40001], [17], [3], [59, 9]];
    const init = makeParams(r, shapes, ['bf16', null, 'f16']);
    const grads = shapes.map((s, i) => randomTensor(s, r, (['f32', 'bf16', 'f16'] as DType[])[i % 3]!).t);
    const h = { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.05, step: 3, gradScale: 1.5 };
    const runs = new Map<string, Param[]>();
    const run = (key: string) => {
      const ps = init.map((x) => ({ ...x, p: clone(x.p), m: clone(x.m), v: clone(x.v), copy: x.copy && clone(x.copy) }));
      runAdamw(ps, grads, h);
      runs.set(key, ps);
    };
    const threads = getNumThreads();
    try {
      forEachIsa((isa) => {
        for (const n of [1, 2]) {
          setNumThreads(n);
          run(`${isa} ${n}`);
        }
      });
      run('again');
    } finally {
      setNumThreads(threads);
    }
    const base = runs.get('generic 1')!;
    for (const [key, ps] of runs) {
      ps.forEach((x, i) => {
        for (const k of ['p', 'm', 'v', 'copy'] as const) if (x[k]) expectSameBits(x[k]!, base[i]![k]!, `${key} vs generic 1: ${k} ${i}`);
      });
    }
    expect(runs.size).toBe(2 * isas().length + 1);
    // and the shared result is right
    const ref = { p: f64(init[0]!.p), m: f64(init[0]!.m), v: f64(init[0]!.v) };
    adamwRef(ref.p, grads[0]!.toArray(), ref.m, ref.v, { ...h, decay: true });
    expectClose(base[0]!.p, ref.p, 'f32', 'param 0');
    expectClose(base[0]!.v, ref.v, 'f32', 'v 0');
  });

  it('takes single tensors, does nothing on empty lists, and bumps the version of what it writes', () => {
    const r = rng(seed + 2);
    const a = makeParams(r, [[5, 3]], ['bf16'])[0]!;
    const b = { ...a, p: clone(a.p), m: clone(a.m), v: clone(a.v), copy: clone(a.copy!) };
    const g = randomTensor([5, 3], r).t;
    const v0 = a.p._storage.version;
    adamw(a.p, g, a.m, a.v, { lr: 0.1, step: 2, copies: a.copy });
    expect(a.p._storage.version).toBeGreaterThan(v0);
    adamw([b.p], [g], [b.m], [b.v], { lr: 0.1, step: 2, copies: [b.copy] });
    for (const k of ['p', 'm', 'v', 'copy'] as const) expectSameBits(a[k]!, b[k]!, `single vs list: ${k}`);
    adamw([], [], [], [], { lr: 0.1, step: 1 });
  });

  it('rejects tensors that share memory with a written argument', () => {
    const t = () => Tensor.zeros([4]);
    const p = t();
    const g = t();
    const opts = { lr: 0.1, step: 1 };
    expectCode(() => adamw([p, p], [g, g], [t(), t()], [t(), t()], opts), 'ERR_ARG', /params\[0\] and params\[1\] share memory/);
    expectCode(() => adamw([p], [g], [p.reshape([2, 2]).reshape([4])], [t()], opts), 'ERR_ARG', /share memory/);
    expectCode(() => adamw([p, t()], [t(), p], [t(), t()], [t(), t()], opts), 'ERR_ARG', /share memory/);
    expectCode(() => adamw([p], [g], [t()], [t()], { ...opts, copies: [t()] }), 'ERR_DTYPE', /f16 or bf16 tensor for copies\[0\]/);
    // one gradient read for two parameters is fine
    adamw([p, t()], [g, g], [t(), t()], [t(), t()], opts);
  });
});

describe(`gradNorm (seed ${seed})`, () => {
  it('matches the float64 reference for every dtype, across chunk boundaries, for 1 and 2 threads, and run twice', async () => {
    const r = rng(seed + 3);
    const shapes = [[1], [3], [17], [130], [1000], [16384 + 5], [3, 20000], [0]];
    const dtypes: DType[] = ['f32', 'bf16', 'f16'];
    const ts = shapes.map((s, i) => randomTensor(s, r, dtypes[i % 3], 3));
    const want = Math.sqrt(sumSquaresRef(ts.map((x) => x.v)));
    const threads = getNumThreads();
    const got: number[] = [];
    try {
      for (const n of [1, 2, 1]) {
        setNumThreads(n);
        const res = gradNorm(ts.map((x) => x.t));
        expect(res.finite).toBe(true);
        got.push(res.norm);
      }
      got.push((await gradNorm.async(ts.map((x) => x.t))).norm);
    } finally {
      setNumThreads(threads);
    }
    expect(Math.abs(got[0]! - want) / want).toBeLessThan(1e-12);
    for (const g of got) expect(Object.is(g, got[0]), `${g} vs ${got[0]}`).toBe(true);
    for (const x of ts) {
      const one = gradNorm(x.t).norm;
      const w = Math.sqrt(sumSquaresRef([x.v]));
      expect(Math.abs(one - w), `[${x.t.shape}] ${x.t.dtype}`).toBeLessThanOrEqual(1e-12 * w);
    }
  });

  it('reports NaN and Inf anywhere: finite false, norm NaN (any NaN) or Infinity', () => {
    forEachIsa((isa) => {
      for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
        for (const at of [0, 16, 16383, 16385, 20000]) {
          const mk = (bad: number[]) => {
            const a = new Float32Array(20001).fill(0.5);
            bad.forEach((v, k) => (a[(at + k * 7) % 20001] = v));
            return [Tensor.from([1, 2], [2], { dtype }), Tensor.from(a, [20001], { dtype })];
          };
          const what = `${isa} ${dtype} at ${at}`;
          const ok = gradNorm(mk([]));
          expect(ok.finite, what).toBe(true);
          expect(ok.norm, what).toBeCloseTo(Math.sqrt(5 + 20001 * 0.25), 9);
          const nan = gradNorm(mk([NaN]));
          expect([nan.finite, Number.isNaN(nan.norm)], `${what}: NaN`).toEqual([false, true]);
          for (const inf of [Infinity, -Infinity]) expect(gradNorm(mk([inf])), `${what}: ${inf}`).toEqual({ norm: Infinity, finite: false });
          const both = gradNorm(mk([Infinity, NaN]));
          expect([both.finite, Number.isNaN(both.norm)], `${what}: Inf and NaN`).toEqual([false, true]);
        }
      }
    });
  });

  it('does not overflow on values near the largest f32 or f16, and an empty list has norm 0', () => {
    const big = 3.0e38;
    const res = gradNorm([Tensor.from(new Float32Array(1000).fill(big)), Tensor.from(new Float32Array(9).fill(65504), [9], { dtype: 'f16' })]);
    const want = Math.sqrt(1000 * Math.fround(big) ** 2 + 9 * 65504 ** 2);
    expect(res.finite).toBe(true);
    expect(Math.abs(res.norm - want) / want).toBeLessThan(1e-12);
    expect(gradNorm([])).toEqual({ norm: 0, finite: true });
  });
});

/** Named parameters like a small layer's: 2-D weights (decayed by default) and 1-D biases. */
function layerParams(r: () => number, dtype: DType = 'f32'): Map<string, Tensor> {
  return new Map([
    ['fc1.weight', randomTensor([17, 9], r, dtype).t],
    ['fc1.bias', randomTensor([17], r, dtype).t],
    ['fc2.weight', randomTensor([3, 17], r, dtype).t],
    ['norm.weight', randomTensor([130], r, dtype).t],
  ]);
}

function layerGrads(r: () => number, params: Map<string, Tensor>, dtype: DType = 'f32', scale = 1): Map<string, Tensor> {
  return new Map([...params].map(([n, p]) => [n, randomTensor(p.shape as number[], r, dtype, scale).t]));
}

/** Every tensor an optimizer and its model hold, as bits. */
function snapshot(params: Map<string, Tensor>, opt: AdamW): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const add = (k: string, t: Tensor) => out.set(k, Buffer.from(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)));
  for (const [n, t] of params) add(`param.${n}`, t);
  const st = opt.stateDict();
  for (const [n, t] of st.tensors) add(n, t);
  out.set('step', Buffer.from(String(st.step)));
  return out;
}

describe(`AdamW (seed ${seed})`, () => {
  it('follows the reference, decaying 2-D parameters only by default, with the lr of each step', async () => {
    const r = rng(seed + 4);
    const params = layerParams(r);
    const ref = new Map([...params].map(([n, p]) => [n, { p: f64(p), m: new Float64Array(p.numel), v: new Float64Array(p.numel) }]));
    const opt = new AdamW(params, { lr: 1, betas: [0.9, 0.98], eps: 1e-7, weightDecay: 0.2 });
    const sched = warmupCosine({ lr: 0.05, warmupSteps: 2, totalSteps: 6 });
    for (let s = 1; s <= 5; s++) {
      const grads = layerGrads(r, params);
      const res = await opt.step(grads, { lr: sched(s) });
      const norm = Math.sqrt(sumSquaresRef([...grads.values()].map((g) => g.toArray())));
      expect(res.skipped).toBe(false);
      expect(Math.abs(res.gradNorm - norm) / norm).toBeLessThan(1e-12);
      expect(opt.stepCount).toBe(s);
      for (const [n, p] of params) {
        const x = ref.get(n)!;
        const h = { lr: sched(s), beta1: 0.9, beta2: 0.98, eps: 1e-7, weightDecay: 0.2, step: s, gradScale: 1, decay: p.ndim >= 2 };
        adamwRef(x.p, grads.get(n)!.toArray(), x.m, x.v, h);
        expectClose(p, x.p, 'f32', `${n} step ${s}`);
      }
    }
    const st = opt.stateDict();
    expect([...st.tensors.keys()]).toEqual([...params.keys()].flatMap((n) => [`exp_avg.${n}`, `exp_avg_sq.${n}`]));
    for (const [n] of params) expectClose(st.tensors.get(`exp_avg_sq.${n}`)!, ref.get(n)!.v, 'f32', `${n} exp_avg_sq`);
    opt.dispose();
  });

  it('skips a non-finite step without changing anything, then continues from the same step count', async () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      const r = rng(seed + 5);
      const params = layerParams(r, dtype);
      const opt = new AdamW(params, { lr: 0.01 });
      await opt.step(layerGrads(r, params));
      const before = snapshot(params, opt);
      for (const bad of [NaN, Infinity, -Infinity]) {
        const grads = layerGrads(r, params, 'f16');
        const g = grads.get('fc1.bias')!;
        const a = g.toArray();
        a[Math.floor(r() * a.length)] = bad;
        grads.set('fc1.bias', Tensor.from(a, g.shape, { dtype: 'f16' }));
        const res = await opt.step(grads, { gradScale: 0.5, maxGradNorm: 1 });
        expect(res.skipped, `${dtype} ${bad}`).toBe(true);
        expect(Number.isFinite(res.gradNorm)).toBe(false);
        expect(snapshot(params, opt), `${dtype} ${bad}: state after a skipped step`).toEqual(before);
      }
      expect(opt.stepCount).toBe(1);
      expect((await opt.step(layerGrads(r, params))).skipped).toBe(false);
      expect(opt.stepCount).toBe(2);
    }
  });

  it('clips to maxGradNorm by min(1, max / (norm + 1e-6)) of the unscaled norm, folded into gradScale', async () => {
    const r = rng(seed + 6);
    for (const maxGradNorm of [0.5, 1e6]) {
      const params = layerParams(r);
      const init = new Map([...params].map(([n, p]) => [n, f64(p)]));
      const opt = new AdamW(params, { lr: 0.1, weightDecay: 0 });
      const grads = layerGrads(r, params, 'f32', 64);
      const gradScale = 1 / 32;
      const norm = Math.sqrt(sumSquaresRef([...grads.values()].map((g) => g.toArray()))) * gradScale;
      const res = await opt.step(grads, { gradScale, maxGradNorm });
      expect(Math.abs(res.gradNorm - norm) / norm).toBeLessThan(1e-12);
      const coef = Math.min(1, maxGradNorm / (norm + 1e-6));
      expect(coef < 1).toBe(maxGradNorm === 0.5);
      for (const [n, p] of params) {
        const m = new Float64Array(p.numel);
        const v = new Float64Array(p.numel);
        const x = init.get(n)!;
        adamwRef(x, grads.get(n)!.toArray(), m, v, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1, gradScale: gradScale * coef, decay: false });
        expectClose(opt.stateDict().tensors.get(`exp_avg.${n}`)!, m, 'f32', `max ${maxGradNorm}: ${n} exp_avg`);
        expectClose(p, x, 'f32', `max ${maxGradNorm}: ${n}`);
      }
    }
  });

  it('a power-of-two gradScale is exact: grads·2^10 with gradScale 2^-10 give the same bits as plain grads', async () => {
    const r = rng(seed + 7);
    const pa = layerParams(r);
    const pb = new Map([...pa].map(([n, p]) => [n, clone(p)]));
    const a = new AdamW(pa, { lr: 0.01 });
    const b = new AdamW(pb, { lr: 0.01 });
    for (let s = 0; s < 3; s++) {
      const g = layerGrads(r, pa, 'f16');
      const scaled = new Map([...g].map(([n, t]) => [n, Tensor.from(t.toArray().map((x) => x * 1024), t.shape, { dtype: 'f16' })]));
      const ra = await a.step(g);
      const rb = await b.step(scaled, { gradScale: 2 ** -10 });
      expect(rb.gradNorm).toBe(ra.gradNorm);
    }
    expect(snapshot(pb, b)).toEqual(snapshot(pa, a));
  });

  it('f16/bf16 parameters keep f32 masters; the parameters are the masters rounded to nearest even', async () => {
    for (const dtype of ['bf16', 'f16'] as Half[]) {
      const r = rng(seed + 8);
      const params = layerParams(r, dtype);
      const ref = new Map([...params].map(([n, p]) => [n, { p: f64(p), m: new Float64Array(p.numel), v: new Float64Array(p.numel) }]));
      const opt = new AdamW(params, { lr: 0.003, weightDecay: 0.1 });
      for (let s = 1; s <= 3; s++) {
        const grads = layerGrads(r, params, s === 2 ? 'f32' : dtype);
        await opt.step(grads);
        const st = opt.stateDict();
        for (const [n, p] of params) {
          const master = st.tensors.get(`master.${n}`)!;
          expect(master.dtype).toBe('f32');
          expect(bitsOf(p), `${dtype} ${n} step ${s}`).toEqual(roundedBits(master, dtype));
          const x = ref.get(n)!;
          adamwRef(x.p, grads.get(n)!.toArray(), x.m, x.v, { lr: 0.003, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: s, gradScale: 1, decay: p.ndim >= 2 });
          // the master moves by lr-sized steps that bf16 could not hold; it follows the f32 reference
          expectClose(master, x.p, 'f32', `${dtype} ${n} master step ${s}`);
        }
      }
    }
  });

  it('resumes from a stateDict bit-identically (f32, bf16 and f16 parameters)', async () => {
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      const r = rng(seed + 9);
      const params = layerParams(r, dtype);
      const gradSeq = Array.from({ length: 6 }, () => layerGrads(r, params, dtype));
      const a = new AdamW(params, { lr: 0.01, weightDecay: 0.05 });
      for (let s = 0; s < 3; s++) await a.step(gradSeq[s]!, { maxGradNorm: 2 });
      // a checkpoint: copies of the model's parameters and the optimizer state
      const saved = a.stateDict();
      const ckpt = { step: saved.step, tensors: new Map([...saved.tensors].map(([n, t]) => [n, clone(t)])) };
      const savedParams = new Map([...params].map(([n, p]) => [n, clone(p)]));
      // a fresh model and optimizer, loaded from it
      const params2 = layerParams(rng(seed + 99), dtype);
      for (const [n, p] of params2) (p.data as Uint16Array).set(savedParams.get(n)!.data as Uint16Array);
      const b = new AdamW(params2, { lr: 0.01, weightDecay: 0.05 });
      b.loadStateDict(ckpt);
      expect(b.stepCount).toBe(3);
      expect(snapshot(params2, b), `${dtype}: loaded`).toEqual(snapshot(params, a));
      for (let s = 3; s < 6; s++) {
        await a.step(gradSeq[s]!, { maxGradNorm: 2 });
        await b.step(gradSeq[s]!, { maxGradNorm: 2 });
      }
      expect(snapshot(params2, b), `${dtype}: 3 more steps`).toEqual(snapshot(params, a));
    }
  });

  it('loading a state rewrites low-precision parameters from the masters', () => {
    const r = rng(seed + 10);
    const params = layerParams(r, 'bf16');
    const opt = new AdamW(params, { lr: 0.01 });
    const st = opt.stateDict();
    const master = st.tensors.get('master.fc1.bias')!;
    const moved = Tensor.from(master.toArray().map((x) => x + 0.5), master.shape);
    st.tensors.set('master.fc1.bias', moved);
    opt.loadStateDict(st);
    expect(bitsOf(params.get('fc1.bias')!)).toEqual(roundedBits(moved, 'bf16'));
  });

  it('rejects bad states without changing anything, and a step while one runs', async () => {
    const r = rng(seed + 11);
    const params = layerParams(r);
    const opt = new AdamW(params, { lr: 0.01 });
    await opt.step(layerGrads(r, params));
    const before = snapshot(params, opt);
    const st = () => {
      const s = opt.stateDict();
      return { step: s.step, tensors: new Map([...s.tensors].map(([n, t]) => [n, clone(t)])) };
    };
    const missing = st();
    missing.tensors.delete('exp_avg_sq.fc2.weight');
    expectCode(() => opt.loadStateDict(missing), 'ERR_ARG', /exp_avg_sq\.fc2\.weight/);
    const extra = st();
    extra.tensors.set('exp_avg.nope', Tensor.zeros([1]));
    expectCode(() => opt.loadStateDict(extra), 'ERR_ARG', /exp_avg\.nope/);
    const shape = st();
    shape.tensors.set('exp_avg.fc2.weight', Tensor.zeros([17, 3]));
    expectCode(() => opt.loadStateDict(shape), 'ERR_SHAPE', /\[3, 17\]/);
    const dtype = st();
    dtype.tensors.set('exp_avg.fc1.bias', Tensor.zeros([17], { dtype: 'bf16' }));
    expectCode(() => opt.loadStateDict(dtype), 'ERR_DTYPE');
    expectCode(() => opt.loadStateDict({ ...st(), step: 1.5 }), 'ERR_ARG');
    expect(snapshot(params, opt)).toEqual(before);
    const running = opt.step(layerGrads(r, params));
    await expect(opt.step(layerGrads(r, params))).rejects.toMatchObject({ code: 'ERR_ARG' });
    expectCode(() => opt.stateDict(), 'ERR_ARG', /still running/);
    await running;
    expect(opt.stepCount).toBe(2);
    opt.dispose();
    await expect(opt.step(layerGrads(r, params))).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  it('owns only its moments and masters: dispose frees exactly those; stateDict views hold no memory of their own', async () => {
    const r = rng(seed + 12);
    const params = layerParams(r, 'bf16');
    const grads = layerGrads(r, params);
    const numel = [...params.values()].reduce((a, p) => a + p.numel, 0);
    const opt = new AdamW(params, { lr: 0.01 });
    for (let s = 0; s < 3; s++) await opt.step(grads, { maxGradNorm: 1 });
    // no await between the readings below, so no finalizer can run in between
    const mem0 = memory().cpu;
    const st = opt.stateDict();
    const mem1 = memory().cpu;
    expect(mem1).toEqual({ tensors: mem0.tensors + 3 * params.size, bytes: mem0.bytes });
    for (const t of st.tensors.values()) t.dispose();
    expect(memory().cpu).toEqual(mem0);
    opt.dispose();
    expect(memory().cpu).toEqual({ tensors: mem0.tensors - 3 * params.size, bytes: mem0.bytes - 3 * 4 * numel });
  });
});

describe('learning-rate schedules', () => {
  it('warmupCosine: linear from 0, half cosine to minLr at totalSteps, minLr after', () => {
    const f = warmupCosine({ lr: 1, warmupSteps: 10, totalSteps: 110, minLr: 0.1 });
    const cases: [number, number][] = [[0, 0], [1, 0.1], [5, 0.5], [10, 1], [35, 0.1 + 0.45 * (1 + Math.SQRT1_2)], [60, 0.55],
      [85, 0.1 + 0.45 * (1 - Math.SQRT1_2)], [110, 0.1], [111, 0.1], [1e9, 0.1]];
    for (const [s, want] of cases) expect(f(s), `step ${s}`).toBeCloseTo(want, 14);
    const g = warmupCosine({ lr: 3e-4, warmupSteps: 0, totalSteps: 4 });
    const want = [3e-4, 1.5e-4 * (1 + Math.SQRT1_2), 1.5e-4, 1.5e-4 * (1 - Math.SQRT1_2), 0, 0];
    want.forEach((w, s) => expect(g(s), `no warm-up, step ${s}`).toBeCloseTo(w, 16));
  });

  it('inverseSqrt: linear from 0, then lr·sqrt(warmupSteps / step)', () => {
    const f = inverseSqrt({ lr: 2, warmupSteps: 4 });
    const cases: [number, number][] = [[0, 0], [1, 0.5], [2, 1], [4, 2], [16, 1], [100, 0.4], [400, 0.2]];
    for (const [s, want] of cases) expect(f(s), `step ${s}`).toBeCloseTo(want, 14);
  });

  it('the returned functions reject a bad step', () => {
    for (const f of [warmupCosine({ lr: 1, warmupSteps: 1, totalSteps: 2 }), inverseSqrt({ lr: 1, warmupSteps: 1 })]) {
      for (const s of [-1, NaN, Infinity, '3']) expectCode(() => f(s as number), 'ERR_ARG', /step/);
    }
  });
});

describe('DynamicLossScaler', () => {
  it('halves on a non-finite step, doubles after growthInterval finite steps in a row', () => {
    const s = new DynamicLossScaler({ initScale: 8, growthInterval: 3 });
    const seq: [boolean, number, number][] = [
      [true, 8, 1], [true, 8, 2], [true, 16, 0], [false, 8, 0], [true, 8, 1], [true, 8, 2], [false, 4, 0],
      [true, 4, 1], [true, 4, 2], [true, 8, 0], [true, 8, 1],
    ];
    seq.forEach(([finite, scale, tracker], i) => {
      s.update(finite);
      expect(s.stateDict(), `after update ${i} (${finite})`).toEqual({ scale, growthTracker: tracker });
    });
  });

  it('defaults: 2^16, x2 after 2000 finite steps, x0.5 on overflow; it never grows past the largest f32', () => {
    const s = new DynamicLossScaler();
    for (let i = 0; i < 1999; i++) s.update(true);
    expect(s.scale).toBe(65536);
    s.update(true);
    expect(s.scale).toBe(131072);
    s.update(false);
    expect(s.scale).toBe(65536);
    const top = new DynamicLossScaler({ initScale: 2 ** 127, growthInterval: 1, growthFactor: 2 });
    top.update(true);
    expect(top.stateDict()).toEqual({ scale: 2 ** 127, growthTracker: 0 });
    const f32 = new DynamicLossScaler({ initScale: 1, backoffFactor: 0.3 });
    f32.update(false);
    expect(f32.scale).toBe(Math.fround(0.3));
  });

  it('stateDict / loadStateDict round trip, and a bad state changes nothing', () => {
    const a = new DynamicLossScaler({ initScale: 1024, growthInterval: 5 });
    for (const f of [true, true, false, true, true]) a.update(f);
    const b = new DynamicLossScaler({ growthInterval: 5 });
    b.loadStateDict(a.stateDict());
    for (let i = 0; i < 7; i++) {
      a.update(i !== 4);
      b.update(i !== 4);
      expect(b.stateDict()).toEqual(a.stateDict());
    }
    const before = b.stateDict();
    expectCode(() => b.loadStateDict({ scale: 2, growthTracker: 5 }), 'ERR_ARG', /growthTracker/);
    expectCode(() => b.loadStateDict({ scale: 0.1, growthTracker: 0 }), 'ERR_ARG', /f32/);
    expectCode(() => b.loadStateDict({ scale: -1, growthTracker: 0 }), 'ERR_ARG', /scale/);
    expect(b.stateDict()).toEqual(before);
  });
});

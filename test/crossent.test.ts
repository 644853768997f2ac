import { describe, expect, it } from 'vitest';
import { type CrossEntropyOptions, crossEntropy, crossEntropyBackward, type CrossEntropyResult, type DType, getNumThreads, setNumThreads,
  Tensor } from '../lib/index.js';
import { expectClose, expectCode, expectSameBits, finiteDiff, forEachIsa, freshSeed, poisoned, randomTensor, rng } from './helpers.js';
import { crossEntropyRef, type CrossEntropyRefOptions } from './reference/crossent.js';
import { tol } from './tolerance.js';

const seed = freshSeed();
const DTYPES = ['f32', 'bf16', 'f16'] as const;
const ROWS = [1, 3, 17, 130];
const VOCABS = [1, 2, 7, 16, 33, 1000];

/** The option sets the random sweep cycles through. */
const OPTION_SETS: CrossEntropyOptions[] = [
  {},
  { reduction: 'sum' },
  { reduction: 'none' },
  { labelSmoothing: 0.1 },
  { mile: {} },
  { mile: { gamma: 2, sigma: 0.5 }, labelSmoothing: 0.2, reduction: 'none' },
  { ignoreIndex: 0, labelSmoothing: 0.05, reduction: 'sum' },
  { mile: { gamma: 0.5 }, ignoreIndex: 3 },
];

function refOpts(o: CrossEntropyOptions): CrossEntropyRefOptions {
  return { ...o, mile: o.mile ? { gamma: o.mile.gamma ?? 1, sigma: o.mile.sigma ?? 1 } : undefined };
}

/** Targets in [0, V), about a fifth of them replaced by ignoreIndex. */
function randomTargets(n: number, V: number, r: () => number, ignore = -100, pIgnore = 0.2): Int32Array {
  const t = new Int32Array(n);
  for (let i = 0; i < n; i++) t[i] = r() < pIgnore ? ignore : Math.floor(r() * V);
  return t;
}

/** |actual - expected| relative to max(|expected|, floor). */
function expectScalar(actual: number, expected: number, dtype: DType, what: string, floor = 1e-30): void {
  const err = Math.abs(actual - expected) / Math.max(Math.abs(expected), floor);
  expect(err, `${what}: ${actual} vs ${expected} (relative error ${err})`).toBeLessThanOrEqual(tol(dtype));
}

/** Runs forward and backward (into a poisoned out) and checks every output against the reference. */
function checkCase(logits: Tensor, xv: ArrayLike<number>, targets: Int32Array, V: number, o: CrossEntropyOptions, dtype: DType,
  what: string, dLoss = 1): CrossEntropyResult {
  const ref = crossEntropyRef(xv, targets, V, refOpts(o), dLoss);
  const res = crossEntropy(logits, targets, o);
  expect(res.count, `${what}: count`).toBe(ref.count);
  // the loss and per-row values are computed in f32 from the (rounded) logits for every dtype. A
  // row's loss is lse - x_y: when the model is nearly sure it is a small difference of two large
  // numbers, so its error is measured against their size (the mean |lse| of the counted rows)
  let lseSize = 0;
  for (let t = 0; t < targets.length; t++) if (targets[t] !== (o.ignoreIndex ?? -100)) lseSize += Math.abs(ref.lse[t]!);
  lseSize /= Math.max(ref.count, 1);
  expectScalar(res.loss, ref.loss, 'f32', `${what}: loss`, Math.max(lseSize, 1e-30));
  expectClose(res.lse, ref.lse, 'f32', `${what}: lse`);
  if (o.mile) expectClose(res.weights!, ref.weights, 'f32', `${what}: weights`);
  else expect(res.weights).toBeUndefined();
  if (o.reduction === 'none') expectClose(res.losses!, ref.losses, 'f32', `${what}: losses`, 1, lseSize * Math.sqrt(ref.count));
  else expect(res.losses).toBeUndefined();
  const out = poisoned(logits.shape as number[], dtype);
  const g = crossEntropyBackward(logits, targets, res, { dLoss, out });
  expect(g).toBe(out);
  // dlogits = dLoss · (softmax − onehot): where the model is nearly sure, p_y − 1 cancels, so the
  // f32 rounding of p_y (≈ ulp(1)) is measured against the size of the probabilities, |dLoss| per row
  const rowScale = Math.abs(dLoss) * (o.reduction === 'none' || o.reduction === 'sum' ? 1 : 1 / Math.max(ref.count, 1));
  expectClose(g, ref.dlogits, dtype, `${what}: dlogits`, 1, rowScale * Math.sqrt(ref.count));
  return res;
}

function dispose(r: CrossEntropyResult): void {
  for (const t of [r.lse, r.losses, r.weights]) t?.dispose();
}

describe(`crossEntropy (seed ${seed})`, () => {
  it('matches float64 on every ISA, dtype, shape and option set (poisoned outputs)', () => {
    const r = rng(seed);
    let k = 0;
    forEachIsa((isa) => {
      for (const dtype of DTYPES) {
        for (const N of ROWS) {
          for (const V of VOCABS) {
            const o = OPTION_SETS[k++ % OPTION_SETS.length]!;
            // scale 12 spreads rows past MiLe's 1e-8 probability clamp (the entropy's third pass)
            const scale = k % 3 === 0 ? 12 : 3;
            const x = randomTensor([N, V], r, dtype, scale);
            const t = randomTargets(N, V, r, o.ignoreIndex ?? -100);
            const what = `${isa} ${dtype} [${N}, ${V}] ${JSON.stringify(o)} scale ${scale}`;
            dispose(checkCase(x.t, x.v, t, V, o, dtype, what, k % 2 ? 1 : -2.5));
          }
        }
      }
    });
  });

  it('matches float64 at V = 32000 (ignored rows, label smoothing, MiLe)', () => {
    const r = rng(seed + 1);
    const V = 32000;
    for (const dtype of ['f32', 'bf16'] as const) {
      const x = randomTensor([5, V], r, dtype, 8);
      const t = Int32Array.of(17, -100, 31999, 0, 12345);
      checkCase(x.t, x.v, t, V, { labelSmoothing: 0.1, mile: {} }, dtype, `${dtype} [5, 32000]`);
      checkCase(x.t, x.v, t, V, { reduction: 'sum' }, dtype, `${dtype} [5, 32000] sum`);
    }
  });

  it('takes leading dims, flat targets and i32 tensors', () => {
    const r = rng(seed + 2);
    const x = randomTensor([2, 3, 9], r, 'f32', 3);
    const t = randomTargets(6, 9, r);
    const ref = crossEntropyRef(x.v, t, 9);
    for (const targets of [t, Tensor.from(t, [2, 3]), Tensor.from(t, [6])]) {
      const res = crossEntropy(x.t, targets);
      expectScalar(res.loss, ref.loss, 'f32', 'loss');
      expect(res.lse.shape).toEqual([6]);
      const g = crossEntropyBackward(x.t, targets, res);
      expect(g.shape).toEqual([2, 3, 9]);
      expectClose(g, ref.dlogits, 'f32', 'dlogits');
    }
  });

  it('gradient matches finite differences (f32; MiLe weights held constant)', () => {
    const r = rng(seed + 3);
    const [N, V] = [3, 5];
    const xd = new Float32Array(N * V);
    for (let i = 0; i < xd.length; i++) xd[i] = r() * 4 - 2;
    const t = Int32Array.of(1, -100, 4);
    for (const o of [{ labelSmoothing: 0.15 }, { reduction: 'sum' }, { mile: { gamma: 1.5 }, labelSmoothing: 0.1 }] as CrossEntropyOptions[]) {
      const base = crossEntropy(Tensor.from(xd, [N, V]), t, o);
      const dx = crossEntropyBackward(Tensor.from(xd, [N, V]), t, base).toArray();
      // MiLe's weights alpha·w_t carry no gradient by definition: the loss differentiated is
      // Σ_t eff_t CE_t / count with eff_t frozen at the base point (the per-row CE from 'none')
      const eff = base.weights?.toArray();
      const loss = eff
        ? () => {
          const l = crossEntropy(Tensor.from(xd, [N, V]), t, { labelSmoothing: o.labelSmoothing, reduction: 'none' }).losses!.toArray();
          let s = 0;
          for (let i = 0; i < N; i++) s += eff[i]! * l[i]!;
          return s / base.count;
        }
        : () => crossEntropy(Tensor.from(xd, [N, V]), t, o).loss;
      for (let i = 0; i < N * V; i++) {
        const fd = finiteDiff(loss, xd, i, 1e-2);
        expect(Math.abs(fd - dx[i]!), `${JSON.stringify(o)} dx[${i}] analytic ${dx[i]} vs finite difference ${fd}`)
          .toBeLessThan(2e-3 * (1 + Math.abs(fd)));
      }
      for (let i = V; i < 2 * V; i++) expect(dx[i], 'ignored row').toBe(0);
    }
  });
});

describe('crossEntropy MiLe', () => {
  it('gamma = 0 is plain cross-entropy, bit for bit', () => {
    const r = rng(seed + 4);
    forEachIsa((isa) => {
      for (const dtype of DTYPES) {
        for (const V of [7, 33, 1000]) {
          const x = randomTensor([17, V], r, dtype, V === 33 ? 14 : 3);
          const t = randomTargets(17, V, r);
          for (const eps of [0, 0.1]) {
            const plain = crossEntropy(x.t, t, { labelSmoothing: eps });
            const mile = crossEntropy(x.t, t, { labelSmoothing: eps, mile: { gamma: 0 } });
            expect(mile.loss, `${isa} ${dtype} V ${V}: loss`).toBe(plain.loss);
            expectSameBits(mile.lse, plain.lse, 'lse');
            const w = mile.weights!.toArray();
            for (let i = 0; i < 17; i++) expect(w[i]).toBe(t[i] === -100 ? 0 : 1);
            expectSameBits(crossEntropyBackward(x.t, t, mile), crossEntropyBackward(x.t, t, plain), `${isa} ${dtype} V ${V}: dlogits`);
          }
        }
      }
    });
  });

  it('equal entropies everywhere give plain cross-entropy', () => {
    // every row a cyclic shift of one row: the same probabilities, so the same entropy
    const r = rng(seed + 5);
    const [N, V] = [9, 37];
    const row = Array.from({ length: V }, () => r() * 6 - 3);
    const x = new Float32Array(N * V);
    for (let i = 0; i < N; i++) for (let j = 0; j < V; j++) x[i * V + j] = row[(i + j) % V]!;
    const logits = Tensor.from(x, [N, V]);
    const t = randomTargets(N, V, r, -100, 0);
    const plain = crossEntropy(logits, t);
    const mile = crossEntropy(logits, t, { mile: { gamma: 2 } });
    expect(Math.abs(mile.loss - plain.loss) / plain.loss).toBeLessThan(1e-6);
    for (const w of mile.weights!.toArray()) expect(Math.abs(w - 1)).toBeLessThan(1e-6);
    expectClose(crossEntropyBackward(logits, t, mile), crossEntropyBackward(logits, t, plain).toArray(), 'f32', 'dlogits');
  });

  it('reproduces the worked example of REFERENCES §4 (V = 4: near-one-hot and uniform rows)', () => {
    forEachIsa((isa) => {
      const logits = Tensor.from([30, 0, 0, 0, 0, 0, 0, 0], [2, 4]);
      const res = crossEntropy(logits, Int32Array.of(0, 2), { mile: {} });
      const [w0, w1] = res.weights!.toArray();
      // w = 1 + H: 1 (+3 clamped terms of 1.8e-7) and 1 + ln 4 = 2.3863; alpha = 2 / 3.3863
      expect(w0, isa).toBeCloseTo(0.5906, 4);
      expect(w1, isa).toBeCloseTo(1.4094, 4);
      const h0 = -3 * 1e-8 * Math.log(1e-8);
      const alpha = 2 / (1 + h0 + 1 + Math.log(4));
      expect(Math.abs(w0! - alpha * (1 + h0))).toBeLessThan(1e-6);
      expect(Math.abs(w1! - alpha * (1 + Math.log(4)))).toBeLessThan(1e-6);
      // loss = mean(eff CE): the uniform row's CE is ln 4, the other's ~0
      expect(Math.abs(res.loss - (w1! * Math.log(4)) / 2)).toBeLessThan(1e-6);
    });
  });

  it('clamps probabilities at 1e-8 in the entropy (rows on both sides of the clamp, flushed exps)', () => {
    const r = rng(seed + 6);
    forEachIsa((isa) => {
      const V = 2000;
      const x = new Float32Array(4 * V);
      for (let i = 0; i < x.length; i++) x[i] = r() * 2 - 1;
      for (let j = 0; j < 20; j++) x[V + 3 * j] = j % 2 ? -25 : -120;  // row 1: probabilities below 1e-8, exps below e^-86
      x[2 * V + 5] = 40;  // row 2: near one-hot; its 1999 clamped terms add 3.7e-4 to H
      x[3 * V + 7] = -Infinity;  // row 3: a class of probability 0
      const t = Int32Array.of(3, 11, 5, 9);
      const ref = crossEntropyRef(x, t, V, { mile: { gamma: 1, sigma: 1 } });
      const res = crossEntropy(Tensor.from(x, [4, V]), t, { mile: {} });
      expectClose(res.weights!, ref.weights, 'f32', `${isa} weights`);
      // the clamp is visible: without it row 2 would weigh (1 + ~0) / (1 + 3.7e-4) of what it does
      const w = res.weights!.toArray();
      expect(Math.abs(w[2]! / w[0]! - ref.weights[2]! / ref.weights[0]!), `${isa} weight ratio`).toBeLessThan(2e-6);
      expectScalar(res.loss, ref.loss, 'f32', `${isa} loss`);
      const g = crossEntropyBackward(Tensor.from(x, [4, V]), t, res);
      expectClose(g, ref.dlogits, 'f32', `${isa} dlogits`);
      expect(g.toArray()[3 * V + 7], 'gradient of a -Inf logit').toBe(0);
    });
  });
});

describe('crossEntropy edge cases', () => {
  it('all rows ignored: loss 0, count 0, zero gradient (not NaN)', async () => {
    for (const dtype of DTYPES) {
      for (const o of [{}, { mile: {} }, { reduction: 'sum' }, { reduction: 'none', labelSmoothing: 0.3 }] as CrossEntropyOptions[]) {
        const x = Tensor.randn([3, 17], { seed: 5, dtype });
        const t = Int32Array.of(-100, -100, -100);
        const res = await crossEntropy.async(x, t, o);
        expect(res.loss).toBe(0);
        expect(res.count).toBe(0);
        expect(Array.from(res.lse.toArray())).toEqual([0, 0, 0]);
        if (res.weights) expect(Array.from(res.weights.toArray())).toEqual([0, 0, 0]);
        if (res.losses) expect(Array.from(res.losses.toArray())).toEqual([0, 0, 0]);
        const g = crossEntropyBackward(x, t, res, { out: poisoned([3, 17], dtype) });
        expect(Array.from(g.toArray()).every((v) => v === 0), `${dtype} ${JSON.stringify(o)}`).toBe(true);
      }
    }
    const empty = crossEntropy(Tensor.zeros([0, 5]), new Int32Array(0));
    expect([empty.loss, empty.count]).toEqual([0, 0]);
  });

  it('a target outside [0, V) that is not ignoreIndex is an error naming the row, before anything is written', async () => {
    const x = Tensor.randn([4, 6], { seed: 1 });
    const good = Int32Array.of(0, 5, -100, 2);
    const res = crossEntropy(x, good);
    for (const bad of [Int32Array.of(0, 5, -100, 6), Int32Array.of(0, -1, -100, 2), Int32Array.of(0, 5, -99, 2)]) {
      const i = bad.findIndex((v, k) => v !== good[k]);
      const msg = new RegExp(`^crossEntropy: targets\\[${i}\\] = ${bad[i]} is out of range \\[0, 6\\)`);
      expectCode(() => crossEntropy(x, bad), 'ERR_ARG', msg);
      await expect(crossEntropy.async(x, bad)).rejects.toMatchObject({ code: 'ERR_ARG' });
      const out = poisoned([4, 6]);
      expectCode(() => crossEntropyBackward(x, bad, res, { out }), 'ERR_ARG', /^crossEntropyBackward: targets\[/);
      await expect(crossEntropyBackward.async(x, bad, res, { out })).rejects.toMatchObject({ code: 'ERR_ARG' });
      expect(Array.from(out.toArray()).every(Number.isNaN), 'out untouched').toBe(true);
    }
    // a custom ignoreIndex inside [0, V) ignores that class
    const r6 = crossEntropy(x, Int32Array.of(0, 5, 3, 3), { ignoreIndex: 3 });
    expect(r6.count).toBe(2);
  });

  it('a row with NaN gives a NaN loss; V = 1 gives loss 0', () => {
    const x = Tensor.from([1, NaN, 2, 0, 1, 2], [2, 3]);
    expect(crossEntropy(x, Int32Array.of(0, 1)).loss).toBeNaN();
    expect(crossEntropy(x, Int32Array.of(-100, 1)).loss).toBeCloseTo(1.4076, 4);
    const one = Tensor.from([3, -7], [2, 1]);
    const res = crossEntropy(one, Int32Array.of(0, 0), { labelSmoothing: 0.2 });
    expect(res.loss).toBe(0);
    expect(Array.from(crossEntropyBackward(one, Int32Array.of(0, 0), res).toArray())).toEqual([0, 0]);
  });
});

describe('crossEntropy determinism', () => {
  it('backward in place (out = logits) gives the bits of a fresh output', () => {
    const r = rng(seed + 7);
    forEachIsa((isa) => {
      for (const dtype of DTYPES) {
        for (const V of [1, 7, 16, 33, 1000]) {
          const x = randomTensor([17, V], r, dtype, 4);
          const t = randomTargets(17, V, r);
          for (const o of [{ labelSmoothing: 0.1 }, { mile: {}, reduction: 'sum' }] as CrossEntropyOptions[]) {
            const res = crossEntropy(x.t, t, o);
            const fresh = crossEntropyBackward(x.t, t, res, { dLoss: 0.7 });
            const inPlace = Tensor.from(x.t.data.slice(), [17, V], { dtype });
            const ret = crossEntropyBackward(inPlace, t, res, { dLoss: 0.7, out: inPlace });
            expect(ret).toBe(inPlace);
            expectSameBits(inPlace, fresh, `${isa} ${dtype} V ${V} ${JSON.stringify(o)} in place`);
          }
        }
      }
    });
  });

  it('runs twice, async, and on 1 or 2 threads with the same bits', async () => {
    const r = rng(seed + 8);
    const [N, V] = [130, 1000];  // 130 rows of 1000: enough work for parallel_for to split
    const x = randomTensor([N, V], r, 'f32', 5);
    const t = randomTargets(N, V, r);
    const o: CrossEntropyOptions = { mile: {}, labelSmoothing: 0.1, reduction: 'none' };
    const threads = getNumThreads();
    try {
      setNumThreads(2);
      const a = crossEntropy(x.t, t, o);
      const b = crossEntropy(x.t, t, o);
      const c = await crossEntropy.async(x.t, t, o);
      setNumThreads(1);
      const d = crossEntropy(x.t, t, o);
      for (const [y, what] of [[b, 'twice'], [c, 'async'], [d, '1 thread']] as const) {
        expect(y.loss, what).toBe(a.loss);
        for (const k of ['lse', 'weights', 'losses'] as const) expectSameBits(y[k]!, a[k]!, `${k} ${what}`);
      }
      const g1 = crossEntropyBackward(x.t, t, a);
      setNumThreads(2);
      expectSameBits(crossEntropyBackward(x.t, t, a), g1, 'dlogits 2 threads vs 1');
      expectSameBits(crossEntropyBackward(x.t, t, a), g1, 'dlogits twice');
      expectSameBits(await crossEntropyBackward.async(x.t, t, a), g1, 'dlogits async');
    } finally {
      setNumThreads(threads);
    }
  });
});

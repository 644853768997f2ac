import { describe, expect, it } from 'vitest';
import { dequantize, fakeQuant, fakeQuantBackward, getNumThreads, quantize, setNumThreads, Tensor } from '../lib/index.js';
import { EDGE_SIZES, expectClose, expectCode, expectRejection, expectSameBits, forEachIsa, freshSeed, poisoned, randomTensor, rng } from './helpers.js';
import {
  dequantizeRef, fakeQuantBackwardRef, fakeQuantRef, type QuantLayout, quantizeRef, quantLayout, quantStep, storeAs,
} from './reference/quant.js';

const seed = freshSeed();
const FLOATS = ['f32', 'bf16', 'f16'] as const;

/** An i8 tensor filled with -128, a value quantize never writes (its range is [-127, 127]). */
function poisonedI8(shape: number[]): Tensor {
  return Tensor.from(new Int8Array(shape.reduce((a, b) => a * b, 1)).fill(-128), shape, { dtype: 'i8' });
}

/** Random clip values in [0.05, 20), rounded to f32. */
function randomClips(n: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => 0.05 + r() * 20);
}

/** x in [-2 max(clip), 2 max(clip)) so about half the elements saturate, plus exact half-way points of each channel's grid. */
function quantInput(shape: number[], clips: Float32Array, l: QuantLayout, r: () => number, dtype: (typeof FLOATS)[number]) {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = new Float32Array(n);
  for (let e = 0; e < n; e++) {
    const clip = clips[Math.floor(e / l.inner) % l.channels]!;
    f[e] = e % 5 === 0 ? (Math.floor(r() * 254) - 127 + 0.5) * quantStep(clip) : (r() * 4 - 2) * clip;
  }
  const t = Tensor.from(f, shape, { dtype });
  return { t, v: Float64Array.from(t.toArray()) };
}

const vals = (t: Tensor | ArrayLike<number>) => Array.from(t instanceof Tensor ? t.toArray() : t);

interface Case {
  shape: number[];
  axis: number | null;
  dtype: (typeof FLOATS)[number];
  l: QuantLayout;
  clips: Float32Array;
  x: { t: Tensor; v: Float64Array };
  what: string;
}

/** Runs fn for every ISA, float dtype and [shape, axis], with fresh clips and input. */
function forEachCase(cases: [number[], number | null][], r: () => number, fn: (c: Case) => void): void {
  forEachIsa((isa) => {
    for (const dtype of FLOATS) {
      for (const [shape, axis] of cases) {
        const l = quantLayout(shape, axis);
        const clips = randomClips(l.channels, r);
        const x = quantInput(shape, clips, l, r, dtype);
        fn({ shape, axis, dtype, l, clips, x, what: `${isa} ${dtype} [${shape}] axis ${axis}` });
      }
    }
  });
}

describe(`int8 quantization (seed ${seed})`, () => {
  it('rounds half away from zero, saturates at ±127 and maps NaN to 0 (hand-computed values)', () => {
    // clipMax = 127/8: the step is 0.125 and 127 / clipMax = 8, both exact, so x * 8 is exact
    const x = [0.0625, -0.0625, 0.1875, -0.1875, 0.3125, -0.3125, 0.0625 - 2 ** -28, 15.875, 15.9375, 16, 1e30,
      -1e30, Infinity, -Infinity, NaN, 0, -15.8125, 15.8125];
    const want = [1, -1, 2, -2, 3, -3, 0, 127, 127, 127, 127, -127, 127, -127, 0, 0, -127, 127];
    forEachIsa((isa) => {
      for (const dtype of ['f32'] as const) {
        const q = quantize(Tensor.from(x, [x.length], { dtype }), 127 / 8);
        expect(q.dtype).toBe('i8');
        expect(vals(q), `${isa} ${dtype}`).toEqual(want);
        expect(vals(dequantize(q, 127 / 8)), `${isa} dequantize`).toEqual(want.map((k) => k * 0.125));
        const y = vals(fakeQuant(Tensor.from(x, [x.length]), 127 / 8));
        expect(y.map((v, i) => (Number.isNaN(x[i]!) ? Number.isNaN(v) : v === want[i]! * 0.125)), `${isa} fakeQuant`).toEqual(x.map(() => true));
      }
    });
  });

  it('quantize, dequantize and fakeQuant per tensor match the reference bit for bit (every dtype, ISA, size)', () => {
    const r = rng(seed);
    forEachIsa((isa) => {
      for (const dtype of FLOATS) {
        for (const n of [...EDGE_SIZES, 1000, 3 * 16384 + 77]) {
          const clip = randomClips(1, r);
          const clipArg = n % 2 ? clip[0]! : Tensor.from(clip, [1]);
          const shape = n > 130 ? [n] : [2, n];
          const l = quantLayout(shape, null);
          const x = quantInput(shape, clip, l, r, dtype);
          const what = `${isa} ${dtype} [${shape}] clip ${clip[0]}`;
          const q = quantize(x.t, clipArg, { out: poisonedI8(shape) });
          const qRef = quantizeRef(x.v, clip, l);
          expect(vals(q), `quantize ${what}`).toEqual(vals(qRef));
          expect(vals(dequantize(q, clipArg, { dtype, out: poisoned(shape, dtype) })), `dequantize ${what}`).toEqual(vals(dequantizeRef(qRef, clip, l, dtype)));
          const y = fakeQuant(x.t, clipArg, { out: poisoned(shape, dtype) });
          expect(y.dtype).toBe(dtype);
          expect(vals(y), `fakeQuant ${what}`).toEqual(vals(fakeQuantRef(x.v, clip, l, dtype)));
          // fakeQuant = dequantize(quantize(x)) in x's dtype
          expectSameBits(y, dequantize(q, clipArg, { dtype }), `fakeQuant vs dequantize(quantize) ${what}`);
        }
      }
    });
  });

  it('fakeQuant is the identity on grid points k * clipMax / 127 (f32), per tensor and per channel', () => {
    const r = rng(seed + 1);
    forEachIsa((isa) => {
      for (let trial = 0; trial < 20; trial++) {
        const clip = Math.fround(10 ** (r() * 6 - 3));
        const s = quantStep(clip);
        const grid = Float32Array.from({ length: 255 }, (_, i) => (i - 127) * s);
        const x = Tensor.from(grid);
        const what = `${isa} clip ${clip}`;
        expectSameBits(fakeQuant(x, clip), x, `grid ${what}`);
        expect(vals(quantize(x, clip)), what).toEqual(Array.from({ length: 255 }, (_, i) => i - 127));
      }
      // per channel: row c is channel c's grid
      const clips = randomClips(5, r);
      const g = new Float32Array(5 * 255);
      for (let c = 0; c < 5; c++) for (let i = 0; i < 255; i++) g[c * 255 + i] = (i - 127) * quantStep(clips[c]!);
      const x = Tensor.from(g, [5, 255]);
      expectSameBits(fakeQuant(x, Tensor.from(clips)), x, `${isa} per-channel grid`);
    });
  });

  it('per channel along any axis matches the reference bit for bit', () => {
    const r = rng(seed + 2);
    const cases: [number[], number | null][] = [
      [[5, 17], 0], [[17, 5], 1], [[17, 5], -1], [[3, 7, 33], 1], [[2, 3, 130], 2], [[130, 3], 0], [[4, 1, 9], 1],
      [[9, 2, 8], 0], [[2, 40000], 0], [[3, 16, 1], -2],
    ];
    forEachCase(cases, r, ({ shape, axis, dtype, l, clips, x, what }) => {
      const c = Tensor.from(clips);
      const o = { axis: axis! };
      const q = quantize(x.t, c, { ...o, out: poisonedI8(shape) });
      const qRef = quantizeRef(x.v, clips, l);
      expect(vals(q), `quantize ${what}`).toEqual(vals(qRef));
      expect(vals(dequantize(q, c, { ...o, dtype, out: poisoned(shape, dtype) })), `dequantize ${what}`)
        .toEqual(vals(dequantizeRef(qRef, clips, l, dtype)));
      expect(vals(fakeQuant(x.t, c, { ...o, out: poisoned(shape, dtype) })), `fakeQuant ${what}`)
        .toEqual(vals(fakeQuantRef(x.v, clips, l, dtype)));
    });
  });

  it('axis defaults to 0 for a clip tensor of more than one element, per tensor for one element', () => {
    const r = rng(seed + 3);
    const clips = randomClips(6, r);
    const x = quantInput([6, 19], clips, quantLayout([6, 19], 0), r, 'f32').t;
    expectSameBits(quantize(x, Tensor.from(clips)), quantize(x, Tensor.from(clips), { axis: 0 }), 'default axis');
    expectSameBits(quantize(x, Tensor.from([2.5], [1])), quantize(x, 2.5), '1-element tensor');
    expectSameBits(quantize(x, Tensor.from([2.5], [])), quantize(x, 2.5), 'scalar tensor');
  });

  it('fakeQuantBackward: PACT straight-through, |x| == clipMax goes to the clip (hand-computed values)', () => {
    const clip = 1.5;
    const x = [1.5, -1.5, 0.75, 3, -4.5, Math.fround(1.5 - 2 ** -22), Math.fround(-1.5 + 2 ** -22), 0, NaN];
    const dy = [1, 2, 4, 8, 16, 32, 64, 128, 256];
    forEachIsa((isa) => {
      for (const dtype of FLOATS) {
        const g = fakeQuantBackward(Tensor.from(dy, [9], { dtype }), Tensor.from(x, [9], { dtype }), clip);
        const ulp = dtype === 'f32';  // 1.5 -/+ 2^-22 rounds to ±1.5 in bf16 / f16
        expect(vals(g.dx), `${isa} ${dtype} dx`).toEqual([0, 0, 4, 0, 0, ulp ? 32 : 0, ulp ? 64 : 0, 128, 0]);
        expect(g.dclip.shape).toEqual([1]);
        expect(vals(g.dclip), `${isa} ${dtype} dclip`).toEqual([1 - 2 + 8 - 16 + (ulp ? 0 : 32 - 64)]);
      }
    });
  });

  it('fakeQuantBackward matches the reference per tensor and per channel', () => {
    const r = rng(seed + 4);
    const cases: [number[], number | null][] = [
      ...EDGE_SIZES.map((n): [number[], null] => [[n, 3], null]), [[3 * 16384 + 77], null],
      [[17, 5], 1], [[5, 17], 0], [[3, 7, 33], 1], [[2, 3, 130], -1], [[2, 40000], 0],
    ];
    forEachCase(cases, r, ({ shape, axis, dtype, l, clips, x, what }) => {
      const dy = randomTensor(shape, r, dtype);
      const clipT = axis === null ? Tensor.from(clips, [1]) : Tensor.from(clips);
      const g = fakeQuantBackward(dy.t, x.t, clipT, axis === null ? undefined : { axis });
      const ref = fakeQuantBackwardRef(dy.v, x.v, clips, l);
      expect(vals(g.dx), `dx ${what}`).toEqual(vals(ref.dx));
      expect(g.dclip.dtype).toBe('f32');
      expect(g.dclip.shape).toEqual(clipT.shape);
      // dclip sums the (exactly represented) dy in f32 partials: f32 tolerance, relative to the
      // sum of |dy| over the clipped elements, since the signed sum can cancel
      const absSum = Math.hypot(...fakeQuantBackwardRef(dy.v.map(Math.abs), x.v.map(Math.abs), clips, l).dclip);
      expectClose(g.dclip, ref.dclip, 'f32', `dclip ${what}`, 1, absSum);
      if (x.v.length >= 32) expect(vals(ref.dclip).some((v) => v !== 0), `${what}: some elements are clipped`).toBe(true);
    });
  });

  it('1 and 2 threads, sync and async, and repeated runs give the same bits', async () => {
    const r = rng(seed + 5);
    const threads = getNumThreads();
    const cases: [number[], number | null][] = [[[5 * 16384 + 33], null], [[4, 40001], 0], [[40001, 3], 1]];
    try {
      for (const [shape, axis] of cases) {
        const l = quantLayout(shape, axis);
        const clips = randomClips(l.channels, r);
        const x = quantInput(shape, clips, l, r, 'f32').t;
        const dy = randomTensor(shape, r).t;
        const c = Tensor.from(clips, axis === null ? [1] : [l.channels]);
        const o = axis === null ? undefined : { axis };
        const run = () => ({ q: quantize(x, c, o), y: fakeQuant(x, c, o), ...fakeQuantBackward(dy, x, c, o) });
        setNumThreads(1);
        const a = run();
        setNumThreads(2);
        const b = run();
        const b2 = run();
        const as = { q: await quantize.async(x, c, o), y: await fakeQuant.async(x, c, o), ...(await fakeQuantBackward.async(dy, x, c, o)) };
        for (const k of ['q', 'y', 'dx', 'dclip'] as const) {
          expectSameBits(a[k], b[k], `[${shape}] ${k}: 1 vs 2 threads`);
          expectSameBits(b[k], b2[k], `[${shape}] ${k}: twice`);
          expectSameBits(b[k], as[k], `[${shape}] ${k}: sync vs async`);
        }
      }
    } finally {
      setNumThreads(threads);
    }
  });

  it('rejects a clipMax tensor that is not finite and > 0, on the thread that runs the op, without writing', async () => {
    const x = Tensor.from([0.5, -0.25, 1, 2], [2, 2]);
    for (const bad of [0, -1, NaN, Infinity]) {
      const out = poisonedI8([2, 2]);
      expectCode(() => quantize(x, Tensor.from([1, bad]), { out }), 'ERR_ARG', /clipMax\[1\]/);
      expect(vals(out)).toEqual([-128, -128, -128, -128]);
      expectCode(() => fakeQuant(x, Tensor.from([bad], [1])), 'ERR_ARG', /clipMax/);
      expectCode(() => fakeQuantBackward(x, x, Tensor.from([bad, 1]), { axis: 1 }), 'ERR_ARG', /clipMax\[0\]/);
      await expectRejection(dequantize.async(quantize(x, 1), Tensor.from([1, bad])), 'ERR_ARG', /clipMax\[1\]/);
      expectCode(() => quantize(x, bad), 'ERR_ARG', /clipMax/);
    }
  });

  it('empty tensors give empty outputs and a zero dclip', () => {
    const x = Tensor.zeros([0, 3]);
    expect(quantize(x, 1).shape).toEqual([0, 3]);
    const g = fakeQuantBackward(x, x, Tensor.from([1, 2, 3]), { axis: 1 });
    expect(vals(g.dclip)).toEqual([0, 0, 0]);
  });
});

describe('storeAs (reference helper)', () => {
  it('rounds to the dtype like the kernels store', () => {
    expect(storeAs('bf16', 1 + 2 ** -9)).toBe(1);
    expect(storeAs('f16', 1 + 2 ** -12)).toBe(1);
    expect(storeAs('f32', 0.1)).toBe(Math.fround(0.1));
  });
});

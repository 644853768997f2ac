import { describe, expect, it } from 'vitest';
import { gemmInt8, linearInt8, setNumThreads, getNumThreads, Tensor } from '../lib/index.js';
import { expectClose, expectCode, expectSameBits, forEachIsa, freshSeed, poisoned, rng } from './helpers.js';
import { actRef, type ActName } from './reference/activation.js';
import { quantizeRef } from './reference/quant.js';

const seed = freshSeed();

/** int8 values in [lo, hi] (inclusive), including the extremes. */
function randomI8(shape: number[], r: () => number, lo = -128, hi = 127): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Int8Array(n);
  for (let i = 0; i < n; i++) v[i] = i % 11 === 0 ? (i % 2 ? lo : hi) : lo + Math.floor(r() * (hi - lo + 1));
  return Tensor.from(v, shape, { dtype: 'i8' });
}

/** acc[i, j] = Σ_k a[i, k] b[j, k] in exact integer arithmetic (BigInt). */
function productRef(a: Tensor, b: Tensor): bigint[] {
  const k = a.shape[a.ndim - 1]!;
  const m = a.numel / Math.max(k, 1);
  const n = b.shape[0]!;
  const A = a.toArray(), B = b.toArray();
  const out: bigint[] = [];
  for (let i = 0; i < (k ? m : a.numel === 0 ? a.shape.slice(0, -1).reduce((p, s) => p * s, 1) : 0); i++)
    for (let j = 0; j < n; j++) {
      let s = 0n;
      for (let t = 0; t < k; t++) s += BigInt(A[i * k + t]!) * BigInt(B[j * k + t]!);
      out.push(s);
    }
  return out;
}

const f32 = Math.fround;

/** y = act(acc · s[n] + bias) + residual in float64, with s[n] rounded to f32 as the op does. */
function linearRef(acc: bigint[], n: number, xClip: number, wClip: number[], bias: number[] | null, act: ActName, res: number[] | null): Float64Array {
  const sx = f32(xClip / 127);
  const s = wClip.map((c) => f32(sx * f32(c / 127)));
  return Float64Array.from(acc, (v, e) => {
    const j = e % n;
    return actRef(Number(v) * s[j]! + (bias ? bias[j]! : 0), act) + (res ? res[e]! : 0);
  });
}

describe(`int8 products (seed ${seed})`, () => {
  it('gemmInt8 is bit-exact against an integer reference: odd shapes, the extremes -128/127, weights in and beyond 7 bits, every ISA', () => {
    const r = rng(seed);
    const threads = getNumThreads();
    try {
      for (const t of [1, 2]) forEachIsa((isa) => {
        setNumThreads(t);
        // M <= 4 runs on our kernel (each ISA pass), larger M on oneDNN
        for (const [m, n, k] of [[1, 1, 1], [3, 5, 7], [2, 9, 47], [4, 33, 100], [17, 33, 130], [1, 768, 769], [5, 9, 1031], [130, 17, 64], [4, 3, 0], [20, 5, 0], [0, 3, 5]] as const) {
          for (const [lo, hi] of [[-128, 127], [-63, 63]] as const) {
            const a = randomI8([m, k], r);
            const b = randomI8([n, k], r, lo, hi);
            const out = Tensor.from(new Int32Array(m * n).fill(-7), [m, n], { dtype: 'i32' });
            gemmInt8(a, b, { out });
            const ref = productRef(a, b);
            const got = Array.from(out.toArray(), (v) => BigInt(v));
            const bad = got.findIndex((v, i) => v !== ref[i]);
            expect(bad, `${isa} ${t} threads [${m},${k}]·[${n},${k}]ᵀ weights [${lo},${hi}]: first mismatch at ${bad}: ${got[bad]} vs ${ref[bad]}`).toBe(-1);
            expect(got.length).toBe(ref.length);
          }
        }
      });
    } finally {
      setNumThreads(threads);
    }
  });

  it('gemmInt8 reaches the int32 range exactly at K = 65536 (all -128 x all -128 = 2^30)', () => {
    const k = 65536;
    const a = Tensor.from(new Int8Array(2 * k).fill(-128), [2, k], { dtype: 'i8' });
    const b = Tensor.from(new Int8Array(3 * k).fill(-128), [3, k], { dtype: 'i8' });
    expect(Array.from(gemmInt8(a, b).toArray())).toEqual(new Array(6).fill(2 ** 30));
    const c = Tensor.from(new Int8Array(3 * k).fill(127), [3, k], { dtype: 'i8' });
    expect(Array.from(gemmInt8(a, c).toArray())).toEqual(new Array(6).fill(-128 * 127 * k));
  });

  it('linearInt8 matches a float64 reference: activations, bias, residual, per-tensor and per-channel clips, every ISA', () => {
    const r = rng(seed + 1);
    forEachIsa((isa) => {
      for (const [lead, n, k] of [[[3], 17, 33], [[2, 5], 130, 64], [[1], 9, 768]] as const) {
        for (const act of ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'] as const) {
          const m = (lead as readonly number[]).reduce((p, s) => p * s, 1);
          const x = randomI8([...lead, k], r, -127, 127);
          const w = randomI8([n, k], r, -127, 127);
          const xClip = 0.5 + r() * 4;
          const perChannel = act === 'gelu' || act === 'none';
          const wc = Array.from({ length: n }, () => f32(0.05 + r()));
          const bias = Array.from({ length: n }, () => f32(r() * 2 - 1));
          const res = Array.from({ length: m * n }, () => f32(r() * 2 - 1));
          const wClip = perChannel ? Tensor.from(Float32Array.from(wc), [n]) : wc[0]!;
          const clips = perChannel ? wc : new Array(n).fill(wc[0]);
          const acc = productRef(x, w);
          const what = `${isa} [${lead},${k}] N ${n} ${act}${perChannel ? ' per channel' : ''}`;
          const y = linearInt8(x, w, xClip, wClip, Tensor.from(Float32Array.from(bias), [n]), { activation: act, residual: Tensor.from(Float32Array.from(res), [...lead, n]) });
          expect(y.shape).toEqual([...lead, n]);
          expectClose(y, linearRef(acc, n, xClip, clips, bias, act, res), 'f32', what, 4);
          const plain = linearInt8(x, w, xClip, wClip);
          expectClose(plain, linearRef(acc, n, xClip, clips, null, 'none', null), 'f32', `${what} (no epilogue)`);
          // residual in place, into a poisoned-free output that holds the residual
          const inPlace = Tensor.from(Float32Array.from(res), [...lead, n]);
          linearInt8(x, w, xClip, wClip, null, { activation: act, residual: inPlace, out: inPlace });
          expectClose(inPlace, linearRef(acc, n, xClip, clips, null, act, res), 'f32', `${what} (residual in place)`, 4);
        }
      }
    });
  });

  it('linearInt8 requantizes to i8 with quantize rounding (outClip)', () => {
    const r = rng(seed + 2);
    forEachIsa((isa) => {
      const [m, n, k] = [7, 33, 100];
      const x = randomI8([m, k], r, -127, 127);
      const w = randomI8([n, k], r, -127, 127);
      const xClip = 2, wClip = 0.3, outClip = 6;
      const ref = linearRef(productRef(x, w), n, xClip, new Array(n).fill(wClip), null, 'relu', null);
      const q = linearInt8(x, w, xClip, wClip, null, { activation: 'relu', outClip, out: Tensor.from(new Int8Array(m * n).fill(-128), [m, n], { dtype: 'i8' }) });
      expect(q.dtype).toBe('i8');
      const want = quantizeRef(ref, [outClip], { outer: 1, channels: 1, inner: m * n });
      const got = q.toArray();
      let off = 0;
      for (let e = 0; e < m * n; e++) {
        // an f32 epilogue can land on the other side of a rounding boundary than float64 does
        expect(Math.abs(got[e]! - want[e]!), `${isa} element ${e}`).toBeLessThanOrEqual(1);
        if (got[e] !== want[e]) off++;
      }
      expect(off, `${isa}: elements one step off`).toBeLessThanOrEqual(2);
      expect(Math.max(...got)).toBe(127);  // saturates: the relu outputs reach ~20 > outClip
    });
  });

  it('sees new weight values after w is written (the packed-weight cache follows the storage version)', () => {
    const r = rng(seed + 3);
    const x = randomI8([4, 70], r);
    const w = randomI8([5, 70], r, -63, 63);
    const y1 = gemmInt8(x, w);
    expect(Array.from(y1.toArray(), BigInt)).toEqual(productRef(x, w));
    const d = w.data as Int8Array;
    d.fill(127);  // now beyond 7 bits: the cache must also redo its split decision
    expect(Array.from(gemmInt8(x, w).toArray(), BigInt)).toEqual(productRef(x, w));
  });

  it('async runs give the same bits as sync ones', async () => {
    const r = rng(seed + 4);
    const x = randomI8([9, 130], r);
    const w = randomI8([17, 130], r);
    const a = await linearInt8.async(x, w, 1.5, 0.7, null, { activation: 'gelu' });
    const b = linearInt8(x, w, 1.5, 0.7, null, { activation: 'gelu' });
    expectSameBits(a, b, 'linearInt8 async vs sync');
    expectSameBits(await gemmInt8.async(x, w), gemmInt8(x, w), 'gemmInt8 async vs sync');
  });

  it('rejects clip values and outputs it cannot honour', () => {
    const x = Tensor.zeros([2, 8], { dtype: 'i8' });
    const w = Tensor.zeros([3, 8], { dtype: 'i8' });
    expectCode(() => linearInt8(x, w, 1, Tensor.from([1, 0, 1])), 'ERR_ARG', /wClip\[1\]/);
    expectCode(() => linearInt8(x, w, 1, Tensor.from([1, NaN, 1])), 'ERR_ARG', /wClip\[1\]/);
    expectCode(() => gemmInt8(x, w, { out: poisoned([2, 3]) }), 'ERR_DTYPE', /out/);
    expectCode(() => gemmInt8(Tensor.zeros([1, 65537], { dtype: 'i8' }), Tensor.zeros([3, 65537], { dtype: 'i8' })), 'ERR_SHAPE', /K = 65537/);
    expectCode(() => linearInt8(x, w, 1, 1, null, { outClip: 2, out: poisoned([2, 3]) }), 'ERR_DTYPE', /outClip/);
    expectCode(() => linearInt8(x, w, 1, 1, null, { out: Tensor.zeros([2, 3], { dtype: 'i8' }) }), 'ERR_DTYPE', /f32/);
  });
});

import { describe, expect, it } from 'vitest';
import { type DType, setNumThreads, getNumThreads, softmax, softmaxBackward, Tensor } from '../lib/index.js';
import { native } from '../lib/native.js';
import { expectClose, expectCode, expectSameBits, finiteDiff, forEachIsa, freshSeed, poisoned, randomTensor, rng } from './helpers.js';
import { softmaxBackwardRef, softmaxRef } from './reference/softmax.js';

const seed = freshSeed();
const COLS = [1, 3, 7, 8, 9, 15, 16, 17, 33, 130, 1025];
const DTYPES = ['f32', 'bf16', 'f16'] as const;

/** An f32 mask of `shape` with values in [-2, 2) and about `pInf` of them -Infinity. */
function randomMask(shape: number[], r: () => number, pInf = 0.2): { t: Tensor; v: Float32Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = r() < pInf ? -Infinity : r() * 4 - 2;
  return { t: Tensor.from(v, shape), v };
}

describe(`softmax (seed ${seed})`, () => {
  it('matches float64 on every ISA, dtype and edge size (poisoned outputs)', () => {
    const r = rng(seed);
    forEachIsa((isa) => {
      for (const dtype of DTYPES) {
        for (const cols of COLS) {
          const rows = 1 + Math.floor(r() * 5);
          const x = randomTensor([rows, cols], r, dtype, 6);
          const out = poisoned([rows, cols], dtype);
          const y = softmax(x.t, { out });
          expect(y).toBe(out);
          expectClose(y, softmaxRef(x.v, [rows, cols]), dtype, `softmax ${isa} ${dtype} [${rows},${cols}]`);
        }
      }
    });
  });

  it('is stable for large offsets and rows spanning more than exp can represent', () => {
    forEachIsa((isa) => {
      for (const cols of [9, 130]) {
        const v = new Float32Array(3 * cols);
        for (let j = 0; j < cols; j++) {
          v[j] = 1000 + (j % 5);  // exp would overflow without the max
          v[cols + j] = -1000 - (j % 7);  // and underflow
          v[2 * cols + j] = j % 2 ? -200 : (j % 3) * 0.5;  // half the row below exp's range: flushed
        }
        const y = softmax(Tensor.from(v, [3, cols]));
        expectClose(y, softmaxRef(v, [3, cols]), 'f32', `softmax ${isa} extreme [3,${cols}]`);
        const a = y.toArray();
        for (let j = 1; j < cols; j += 2) expect(a[2 * cols + j], 'exp(-200 - max) flushes to exactly 0').toBe(0);
      }
    });
  });

  it('broadcasts masks of shape [Sk], [Sq,Sk], [B,1,Sq,Sk], [B,H,1,Sk], [B,H,Sq,1], [1]', () => {
    const r = rng(seed + 1);
    const [B, H, Sq] = [2, 3, 5];
    forEachIsa((isa) => {
      for (const dtype of ['f32', 'bf16'] as const) {
        for (const Sk of [1, 7, 8, 17, 33]) {
          const shape = [B, H, Sq, Sk];
          for (const ms of [[Sk], [Sq, Sk], [B, 1, Sq, Sk], [B, H, 1, Sk], [B, H, Sq, 1], [1], [H, Sq, Sk]]) {
            const x = randomTensor(shape, r, dtype, 4);
            const m = randomMask(ms, r, Sk === 1 ? 0.05 : 0.2);
            const y = softmax(x.t, { mask: m.t, out: poisoned(shape, dtype) });
            expectClose(y, softmaxRef(x.v, shape, { mask: { v: m.v, shape: ms } }), dtype, `softmax ${isa} ${dtype} x [${shape}] mask [${ms}]`);
          }
        }
      }
    });
  });

  it('masked columns are exactly 0 and a fully masked row gives zeros', () => {
    forEachIsa((isa) => {
      const x = Tensor.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [3, 4]);
      const mask = Tensor.from([0, -Infinity, 0, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, 0, 0, 0, 0], [3, 4]);
      const y = Array.from(softmax(x, { mask }).toArray());
      const e = Math.exp(2);
      expect(y.slice(0, 4).map((v) => +v.toFixed(6))).toEqual([1 / (1 + e), 0, e / (1 + e), 0].map((v) => +v.toFixed(6)));
      expect(y.slice(4, 8), `${isa}: fully masked row`).toEqual([0, 0, 0, 0]);
      // a mask constant over the row: -Infinity hides the row, a finite value changes nothing
      const rowMask = Tensor.from([0, -Infinity, 5], [3, 1]);
      const y2 = Array.from(softmax(x, { mask: rowMask }).toArray());
      expect(y2.slice(4, 8)).toEqual([0, 0, 0, 0]);
      expectClose(y2.slice(8), Array.from(softmax(x).toArray()).slice(8), 'f32', 'constant row mask');
    });
  });

  it('gives NaN rows for NaN or +Infinity inputs, like PyTorch', () => {
    forEachIsa(() => {
      const x = Tensor.from([1, NaN, 3, 4, 1, 2, Infinity, 0, 1, 2, 3, 4], [3, 4]);
      const y = Array.from(softmax(x).toArray());
      expect(y.slice(0, 4).every(Number.isNaN)).toBe(true);
      expect(y.slice(4, 8).every(Number.isNaN)).toBe(true);
      expect(y.slice(8).every((v) => v > 0 && v < 1)).toBe(true);
    });
  });

  it('causal: Sq = Sk, Sq < Sk (bottom-right aligned) and Sq > Sk (rows without keys are zero)', () => {
    const r = rng(seed + 2);
    forEachIsa((isa) => {
      for (const dtype of ['f32', 'f16'] as const) {
        for (const [Sq, Sk] of [[1, 1], [5, 5], [9, 9], [17, 17], [3, 8], [4, 33], [1, 130], [7, 3], [9, 1]] as const) {
          const shape = [2, Sq, Sk];
          const x = randomTensor(shape, r, dtype, 4);
          const y = softmax(x.t, { causal: true, out: poisoned(shape, dtype) });
          expectClose(y, softmaxRef(x.v, shape, { causal: true }), dtype, `causal ${isa} ${dtype} [${shape}]`);
          const a = y.toArray();
          for (let b = 0; b < 2; b++) {
            for (let i = 0; i < Sq; i++) {
              for (let j = 0; j < Sk; j++) {
                if (j > i + Sk - Sq) expect(a[(b * Sq + i) * Sk + j], `hidden key ${i},${j}`).toBe(0);
              }
            }
          }
          // causal combined with a broadcast mask
          const m = randomMask([Sq, Sk], r, 0.1);
          const ym = softmax(x.t, { causal: true, mask: m.t });
          expectClose(ym, softmaxRef(x.v, shape, { causal: true, mask: { v: m.v, shape: [Sq, Sk] } }), dtype, `causal+mask ${isa} ${dtype} [${shape}]`);
        }
      }
    });
  });

  it('large outputs (non-temporal stores, unaligned rows) match float64, forward and backward', () => {
    const r = rng(seed + 3);
    const shape = [4100, 1025];  // 16.8 MB of f32: above the streaming threshold; rows start unaligned
    const x = randomTensor(shape, r, 'f32', 5);
    const y = softmax(x.t, { out: poisoned(shape) });
    const yv = y.toArray();
    expectClose(yv, softmaxRef(x.v, shape), 'f32', 'softmax [4100,1025]');
    const dy = randomTensor(shape, r, 'f32');
    const dx = softmaxBackward(dy.t, y, { out: poisoned(shape) });
    expectClose(dx, softmaxBackwardRef(dy.v, yv, 1025), 'f32', 'softmaxBackward [4100,1025]');
    const causal = softmax(x.t, { causal: true });
    expectClose(causal, softmaxRef(x.v, shape, { causal: true }), 'f32', 'causal [4100,1025]');
  });

  it('backward matches float64 on every ISA and dtype', () => {
    const r = rng(seed + 4);
    forEachIsa((isa) => {
      for (const dtype of DTYPES) {
        for (const cols of COLS) {
          const rows = 1 + Math.floor(r() * 4);
          const x = randomTensor([rows, cols], r, dtype, 3);
          const y = softmax(x.t);
          const dy = randomTensor([rows, cols], r, dtype);
          const dx = softmaxBackward(dy.t, y, { out: poisoned([rows, cols], dtype) });
          const ref = softmaxBackwardRef(dy.v, y.toArray(), cols);
          // cols = 1: dx is exactly 0 (y = 1); relative error of a zero vector is its norm
          expectClose(dx, ref, dtype, `softmaxBackward ${isa} ${dtype} [${rows},${cols}]`);
        }
      }
    });
  });

  it('backward agrees with finite differences, and gives zero gradient on masked rows and keys', () => {
    const r = rng(seed + 5);
    const shape = [3, 7];
    const x = randomTensor(shape, r, 'f32', 2);
    const mask = Tensor.from([0, 0, -Infinity, 0, 0, 0, -Infinity, ...new Array<number>(7).fill(-Infinity), ...new Array<number>(7).fill(0)], shape);
    const dy = randomTensor(shape, r, 'f32');
    const xd = x.t.data as Float32Array;
    const loss = () => {
      const y = softmax(x.t, { mask }).toArray();
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i]! * dy.v[i]!;
      return s;
    };
    const dx = softmaxBackward(dy.t, softmax(x.t, { mask })).toArray();
    for (let i = 0; i < 21; i++) {
      const fd = finiteDiff(loss, xd, i, 1e-2);
      expect(Math.abs(fd - dx[i]!), `dx[${i}] analytic ${dx[i]} vs finite difference ${fd}`).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
    }
    for (const i of [2, 6, 7, 8, 9, 10, 11, 12, 13]) expect(Math.abs(dx[i]!), `dx[${i}] of a masked element`).toBe(0);
  });

  it('is deterministic, independent of the thread count, and async gives the same bits', async () => {
    const r = rng(seed + 6);
    const shape = [2, 4, 64, 257];
    const x = randomTensor(shape, r, 'f32', 4);
    const m = randomMask([2, 1, 64, 257], r);
    const dy = randomTensor(shape, r, 'f32');
    const threads = getNumThreads();
    try {
      const a1 = softmax(x.t, { mask: m.t, causal: true });
      const a2 = await softmax.async(x.t, { mask: m.t, causal: true });
      setNumThreads(1);
      const a3 = softmax(x.t, { mask: m.t, causal: true });
      expectSameBits(a1, a2, 'softmax sync vs async');
      expectSameBits(a1, a3, 'softmax threads vs 1 thread');
      const g1 = softmaxBackward(dy.t, a1);
      setNumThreads(threads);
      const g2 = await softmaxBackward.async(dy.t, a1);
      const g3 = softmaxBackward(dy.t, a1);
      expectSameBits(g1, g2, 'softmaxBackward 1 thread vs async');
      expectSameBits(g2, g3, 'softmaxBackward async vs sync');
    } finally {
      setNumThreads(threads);
    }
  });

  it('works in place and on empty tensors and 1-D x', () => {
    const r = rng(seed + 7);
    const x = randomTensor([4, 33], r, 'bf16', 3);
    const expected = softmax(x.t).toArray();
    const y = softmax(x.t, { out: x.t });
    expect(y).toBe(x.t);
    expect(Array.from(y.toArray())).toEqual(Array.from(expected));
    expect(softmax(Tensor.zeros([0, 5])).shape).toEqual([0, 5]);
    expect(softmax(Tensor.zeros([3, 0])).shape).toEqual([3, 0]);
    const v = randomTensor([10], r);
    expectClose(softmax(v.t), softmaxRef(v.v, [10]), 'f32', '1-D softmax');
  });

  it('rejects bad arguments with SeqfuseError codes', async () => {
    const x = Tensor.zeros([2, 3, 4]);
    expectCode(() => softmax(Tensor.zeros([2, 3], { dtype: 'i32' })), 'ERR_DTYPE', /expected a f32, f16 or bf16 tensor for x but received i32/);
    expectCode(() => softmax(x, { mask: Tensor.zeros([4], { dtype: 'bf16' }) }), 'ERR_DTYPE', /mask/);
    expectCode(() => softmax(x, { mask: Tensor.zeros([3, 3]) }), 'ERR_SHAPE', /mask broadcastable to x \[2, 3, 4\].*\[3, 3\]/);
    expectCode(() => softmax(x, { mask: Tensor.zeros([1, 2, 3, 4]) }), 'ERR_SHAPE');
    expectCode(() => softmax(Tensor.zeros([4]), { causal: true }), 'ERR_SHAPE', /at least 2 dims/);
    expectCode(() => softmax(x, { causal: 1 as unknown as boolean }), 'ERR_ARG');
    expectCode(() => softmax(x, { out: Tensor.zeros([2, 3, 5]) }), 'ERR_SHAPE');
    expectCode(() => softmax(x, { out: Tensor.zeros([2, 3, 4], { dtype: 'f16' }) }), 'ERR_DTYPE');
    expectCode(() => softmax([1, 2] as unknown as Tensor), 'ERR_ARG');
    expectCode(() => softmax(x, 5 as unknown as object), 'ERR_ARG');
    const gone = Tensor.zeros([2, 2]);
    gone.dispose();
    expectCode(() => softmax(gone), 'ERR_DISPOSED');
    expectCode(() => softmax(x, { mask: gone }), 'ERR_DISPOSED');
    expectCode(() => softmaxBackward(Tensor.zeros([2, 3]), Tensor.zeros([3, 2])), 'ERR_SHAPE');
    expectCode(() => softmaxBackward(Tensor.zeros([2, 3], { dtype: 'bf16' }), Tensor.zeros([2, 3])), 'ERR_DTYPE');
    expectCode(() => softmaxBackward(gone, Tensor.zeros([2, 2])), 'ERR_DISPOSED');
    await expect(softmax.async(x, { mask: Tensor.zeros([5]) })).rejects.toMatchObject({ code: 'ERR_SHAPE' });
    // the addon checks on its own, without the TS layer
    const dt = (dtype: DType, shape: number[]) => Tensor.zeros(shape, { dtype });
    expectCode(() => native.softmax_fwd(dt('i8', [2, 2]), null, dt('i8', [2, 2]), false, false), 'ERR_DTYPE');
    expectCode(() => native.softmax_fwd(x, dt('f16', [4]), x, false, false), 'ERR_DTYPE');
    expectCode(() => native.softmax_fwd(x, null, x, 'yes' as unknown as boolean, false), 'ERR_ARG');
    expectCode(() => native.softmax_bwd(x, x, dt('f32', [24]), false), 'ERR_SHAPE');
  });
});

import { describe, expect, it } from 'vitest';
import {
  biasAct, biasActBackward, dropout, gelu, geluBackward, getNumThreads, relu, reluBackward, setNumThreads, silu,
  siluBackward, Tensor,
} from '../lib/index.js';
import { native } from '../lib/native.js';
import { EDGE_SIZES, expectClose, expectCode, expectSameBits, finiteDiff, forEachIsa, freshSeed, poisoned, randomTensor, rng } from './helpers.js';
import { type ActName, actRef, biasActBackwardRef, biasActRef, columnSumError, erf } from './reference/activation.js';
import { keepMask } from './reference/philox.js';
import { tol } from './tolerance.js';

const seed = freshSeed();
const ACTS = ['gelu', 'gelu_tanh', 'relu', 'silu'] as const;

/**
 * Rows for a test tensor of `cols` columns: at least 8 elements in all. A relative L2 over one or
 * two elements is meaningless where the exact value is ~0: GELU's far negative tail (any f32
 * 1 + erf form keeps only its absolute error there) and the zeros of GELU' and SiLU'.
 */
function testRows(cols: number, r: () => number): number {
  return Math.ceil(8 / cols) + Math.floor(r() * 3);
}

/** The plain op of an activation: gelu(x, {approximate}), relu(x) or silu(x). */
function plain(act: (typeof ACTS)[number], x: Tensor, out?: Tensor): Tensor {
  switch (act) {
    case 'gelu': return gelu(x, { out });
    case 'gelu_tanh': return gelu(x, { approximate: 'tanh', out });
    case 'relu': return relu(x, { out });
    case 'silu': return silu(x, { out });
  }
}

function plainBackward(act: (typeof ACTS)[number], dy: Tensor, x: Tensor): Tensor {
  switch (act) {
    case 'gelu': return geluBackward(dy, x);
    case 'gelu_tanh': return geluBackward(dy, x, { approximate: 'tanh' });
    case 'relu': return reluBackward(dy, x);
    case 'silu': return siluBackward(dy, x);
  }
}

describe(`activations (seed ${seed})`, () => {
  it('the float64 references are accurate', () => {
    // erf(0.5), erf(1), erf(2), erf(3), erf(4) to 16 digits (DLMF tables)
    const known: [number, number][] = [[0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527],
      [3, 0.9999779095030014], [4, 0.9999999845827421], [-1, -0.8427007929497149]];
    for (const [x, v] of known) expect(Math.abs(erf(x) - v), `erf(${x})`).toBeLessThan(1e-14);
    const act = (a: ActName, z: number) => actRef(z, a);
    expect(act('gelu', 1)).toBeCloseTo(0.8413447460685429, 14);
    expect(act('gelu_tanh', 1)).toBeCloseTo(0.8411919906082768, 14);
    expect(act('silu', 1)).toBeCloseTo(0.7310585786300049, 14);
    expect(act('relu', -2)).toBe(0);
  });

  it('gelu / relu / silu forward match float64 on every ISA, dtype and edge size', () => {
    const r = rng(seed);
    forEachIsa((isa) => {
      for (const act of ACTS) {
        for (const dtype of ['f32', 'bf16', 'f16'] as const) {
          for (const cols of EDGE_SIZES) {
            const rows = testRows(cols, r);
            const x = randomTensor([rows, cols], r, dtype, 4);
            const out = poisoned([rows, cols], dtype);
            const y = plain(act, x.t, out);
            expect(y).toBe(out);
            expectClose(y, biasActRef(x.v, null, rows, cols, act, null, 0), dtype, `${act} ${isa} ${dtype} [${rows},${cols}]`);
          }
        }
      }
    });
  });

  it('biasAct forward (with and without dropout) matches float64 and the Philox mask', () => {
    const r = rng(seed + 1);
    forEachIsa((isa) => {
      for (const act of ACTS) {
        for (const dtype of ['f32', 'bf16', 'f16'] as const) {
          for (const cols of [1, 3, 7, 8, 9, 15, 16, 17, 33, 130]) {
            const rows = testRows(cols, r);
            const x = randomTensor([rows, cols], r, dtype, 3);
            const b = randomTensor([cols], r, dtype);
            for (const p of [0, 0.3]) {
              const s = Math.floor(r() * 2 ** 40);
              const offset = Math.floor(r() * 1000);
              const out = poisoned([rows, cols], dtype);
              biasAct(x.t, b.t, { activation: act, dropout: p, seed: s, offset, out });
              const keep = p > 0 ? keepMask(rows * cols, p, s, offset) : null;
              const what = `biasAct ${act} ${isa} ${dtype} [${rows},${cols}] p=${p}`;
              expectClose(out, biasActRef(x.v, b.v, rows, cols, act, keep, p), dtype, what);
              if (keep) {
                // dropped elements are exactly zero; kept ones are zero only where act is
                const y = out.toArray();
                for (let i = 0; i < y.length; i++) if (!keep[i]) expect(y[i], `${what} element ${i} dropped`).toBe(0);
              }
            }
          }
        }
      }
    });
  });

  it('backward passes match float64 on every ISA (dx, dbias, with dropout)', () => {
    const r = rng(seed + 2);
    forEachIsa((isa) => {
      for (const act of ACTS) {
        for (const dtype of ['f32', 'bf16'] as const) {
          for (const cols of [1, 5, 16, 17, 33, 130, 768]) {
            const rows = testRows(cols, r);
            const x = randomTensor([rows, cols], r, dtype, 3);
            const b = randomTensor([cols], r, dtype);
            const dy = randomTensor([rows, cols], r, dtype);
            const what = `${act} ${isa} ${dtype} [${rows},${cols}]`;
            expectClose(plainBackward(act, dy.t, x.t), biasActBackwardRef(dy.v, x.v, null, rows, cols, act, null, 0).dx, dtype,
              `${what} plain backward`);
            for (const p of [0, 0.25]) {
              const s = 1 + Math.floor(r() * 1e9);
              const g = biasActBackward(dy.t, x.t, b.t, { activation: act, dropout: p, seed: s, offset: 7 });
              const keep = p > 0 ? keepMask(rows * cols, p, s, 7) : null;
              const ref = biasActBackwardRef(dy.v, x.v, b.v, rows, cols, act, keep, p);
              expectClose(g.dx, ref.dx, dtype, `${what} p=${p} dx`);
              const dbErr = columnSumError(g.dbias.toArray(), ref.dbias, ref.dx, cols);
              expect(dbErr, `${what} p=${p} dbias: error ${dbErr} relative to the column sums of |dx|`).toBeLessThanOrEqual(tol(dtype));
            }
          }
        }
      }
    });
  });

  it('backward matches finite differences of the f32 forward (p = 0)', () => {
    const r = rng(seed + 3);
    const rows = 3;
    const cols = 5;
    for (const act of ACTS) {
      // inputs kept away from ReLU's kink so the central difference does not straddle it
      const xs = new Float32Array(rows * cols).map(() => (r() < 0.5 ? -1 : 1) * (0.2 + 2 * r()));
      const x = Tensor.from(xs, [rows, cols]);
      const b = Tensor.from(new Float32Array(cols).map(() => 0.05 * (r() - 0.5)), [cols]);
      const dy = randomTensor([rows, cols], r);
      const loss = () => {
        const y = biasAct(x, b, { activation: act }).toArray();
        let s = 0;
        for (let i = 0; i < y.length; i++) s += y[i]! * dy.v[i]!;
        return s;
      };
      const g = biasActBackward(dy.t, x, b, { activation: act });
      const dx = g.dx.toArray();
      const xd = x.data as Float32Array;
      for (let i = 0; i < rows * cols; i++) {
        const fd = finiteDiff(loss, xd, i, 1e-2);
        expect(Math.abs(fd - dx[i]!), `${act} dx[${i}] analytic ${dx[i]} vs finite difference ${fd}`).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
      }
      const db = g.dbias.toArray();
      const bd = b.data as Float32Array;
      for (let j = 0; j < cols; j++) {
        const fd = finiteDiff(loss, bd, j, 1e-2);
        expect(Math.abs(fd - db[j]!), `${act} dbias[${j}] analytic ${db[j]} vs finite difference ${fd}`).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
      }
    }
  });

  it('is deterministic, async gives the same bits, and the forward does not depend on the thread count', async () => {
    const r = rng(seed + 4);
    const x = randomTensor([64, 768], r, 'f32', 3);
    const b = randomTensor([768], r, 'f32');
    const dy = randomTensor([64, 768], r, 'f32');
    const threads = getNumThreads();
    try {
      for (const act of ACTS) {
        const opts = { activation: act, dropout: 0.1, seed: 99, offset: 5 } as const;
        setNumThreads(2);
        const y1 = biasAct(x.t, b.t, opts);
        const y2 = await biasAct.async(x.t, b.t, opts);
        expectSameBits(y1, y2, `biasAct ${act} sync vs async`);
        const g1 = biasActBackward(dy.t, x.t, b.t, opts);
        const g2 = await biasActBackward.async(dy.t, x.t, b.t, opts);
        const g3 = biasActBackward(dy.t, x.t, b.t, opts);
        expectSameBits(g1.dx, g2.dx, `biasActBackward ${act} dx sync vs async`);
        expectSameBits(g1.dbias, g2.dbias, `biasActBackward ${act} dbias sync vs async`);
        expectSameBits(g1.dbias, g3.dbias, `biasActBackward ${act} dbias run twice`);
        setNumThreads(1);
        expectSameBits(y1, biasAct(x.t, b.t, opts), `biasAct ${act} 2 threads vs 1`);
        expectSameBits(g1.dx, biasActBackward(dy.t, x.t, b.t, opts).dx, `biasActBackward ${act} dx 2 threads vs 1`);
        const p1 = plain(act, x.t);
        expectSameBits(p1, await (act === 'relu' ? relu.async(x.t) : act === 'silu' ? silu.async(x.t)
          : gelu.async(x.t, { approximate: act === 'gelu' ? 'none' : 'tanh' })), `${act} sync vs async`);
      }
    } finally {
      setNumThreads(threads);
    }
  });

  it('uses the same mask as dropout, works in place, on leading dims and on empty tensors', () => {
    const r = rng(seed + 5);
    const xs = new Float32Array(6 * 130).map(() => 0.1 + r());
    const x = Tensor.from(xs, [2, 3, 130]);
    const zeros = Tensor.zeros([130]);
    // relu(x + 0) = x for x > 0, so biasAct's mask and scaling are dropout's, bit for bit
    expectSameBits(biasAct(x, zeros, { activation: 'relu', dropout: 0.4, seed: 3n, offset: 11 }),
      dropout(x, 0.4, 3n, { offset: 11 }), 'biasAct(relu) vs dropout');
    const b = randomTensor([130], r);
    const want = biasAct(x, b.t, { activation: 'silu', dropout: 0.2, seed: 8 });
    const inPlace = Tensor.from(xs, [2, 3, 130]);
    expect(biasAct(inPlace, b.t, { activation: 'silu', dropout: 0.2, seed: 8, out: inPlace })).toBe(inPlace);
    expectSameBits(inPlace, want, 'biasAct in place');
    const empty = gelu(Tensor.zeros([0, 4]));
    expect(empty.shape).toEqual([0, 4]);
    const e = biasActBackward(Tensor.zeros([0, 4]), Tensor.zeros([0, 4]), Tensor.zeros([4]), { activation: 'gelu' });
    expect(Array.from(e.dbias.toArray())).toEqual([0, 0, 0, 0]);
    const scalar = gelu(Tensor.from([1], []));
    expect(scalar.toArray()[0]).toBeCloseTo(0.8413447460685429, 6);
  });

  it('rejects bad arguments with typed errors, in TS and in C++', async () => {
    const x = Tensor.zeros([4, 8]);
    const b = Tensor.zeros([8]);
    expectCode(() => gelu(null as unknown as Tensor), 'ERR_ARG');
    expectCode(() => gelu(x, { approximate: 'fast' as 'tanh' }), 'ERR_ARG');
    expectCode(() => gelu(x, 3 as unknown as object), 'ERR_ARG');
    expectCode(() => relu(Tensor.zeros([4], { dtype: 'i32' })), 'ERR_DTYPE');
    expectCode(() => silu(x, { out: Tensor.zeros([4, 7]) }), 'ERR_SHAPE');
    expectCode(() => silu(x, { out: Tensor.zeros([4, 8], { dtype: 'bf16' }) }), 'ERR_DTYPE');
    expectCode(() => reluBackward(Tensor.zeros([4, 7]), x), 'ERR_SHAPE');
    expectCode(() => geluBackward(Tensor.zeros([4, 8], { dtype: 'f16' }), x), 'ERR_DTYPE');
    expectCode(() => biasAct(x, Tensor.zeros([7]), { activation: 'gelu' }), 'ERR_SHAPE');
    expectCode(() => biasAct(x, Tensor.zeros([8], { dtype: 'f16' }), { activation: 'gelu' }), 'ERR_DTYPE');
    expectCode(() => biasAct(x, b, { activation: 'tanh' as 'gelu' }), 'ERR_ARG');
    expectCode(() => biasAct(x, b, {} as { activation: 'gelu' }), 'ERR_ARG');
    expectCode(() => biasAct(x, b, undefined as unknown as { activation: 'gelu' }), 'ERR_ARG');
    for (const p of [-0.1, 1.5, NaN, '0.1' as unknown as number]) expectCode(() => biasAct(x, b, { activation: 'relu', dropout: p, seed: 1 }), 'ERR_ARG');
    expectCode(() => biasAct(x, b, { activation: 'relu', dropout: 0.1 }), 'ERR_ARG');
    expectCode(() => biasAct(x, b, { activation: 'relu', dropout: 0.1, seed: -1 }), 'ERR_ARG');
    expectCode(() => biasAct(x, b, { activation: 'relu', dropout: 0.1, seed: 1.5 }), 'ERR_ARG');
    expectCode(() => biasAct(x, b, { activation: 'relu', dropout: 0.1, seed: 1, offset: -3 }), 'ERR_ARG');
    expectCode(() => biasActBackward(Tensor.zeros([4, 8]), x, Tensor.zeros([9]), { activation: 'silu' }), 'ERR_SHAPE');
    const gone = Tensor.zeros([4, 8]);
    gone.dispose();
    expectCode(() => gelu(gone), 'ERR_DISPOSED');
    expectCode(() => biasAct(x, gone, { activation: 'gelu' }), 'ERR_DISPOSED');
    await expect(biasAct.async(x, Tensor.zeros([3]), { activation: 'gelu' })).rejects.toMatchObject({ code: 'ERR_SHAPE' });
    // the C++ checks, without the TS layer in front
    const y = Tensor.zeros([4, 8]);
    expectCode(() => native.bias_act_fwd(x, Tensor.zeros([7]), y, 2, 0, 0, 0, false), 'ERR_SHAPE');
    expectCode(() => native.bias_act_fwd(x, b, Tensor.zeros([8, 4]), 2, 0, 0, 0, false), 'ERR_SHAPE');
    expectCode(() => native.bias_act_fwd(x, b, y, 9, 0, 0, 0, false), 'ERR_ARG');
    expectCode(() => native.bias_act_fwd(x, b, y, 1.5, 0, 0, 0, false), 'ERR_ARG');
    expectCode(() => native.bias_act_fwd(x, b, y, 2, NaN, 0, 0, false), 'ERR_ARG');
    expectCode(() => native.bias_act_fwd(x, b, y, 2, 0.5, -1, 0, false), 'ERR_ARG');
    expectCode(() => native.bias_act_fwd(Tensor.zeros([4, 8], { dtype: 'u8' }), null, y, 2, 0, 0, 0, false), 'ERR_DTYPE');
    expectCode(() => native.bias_act_fwd({} as Tensor, null, y, 2, 0, 0, 0, false), 'ERR_ARG');
    expectCode(() => native.bias_act_bwd(x, x, b, y, Tensor.zeros([8], { dtype: 'bf16' }), 2, 0, 0, 0, false), 'ERR_DTYPE');
    expectCode(() => native.bias_act_bwd(Tensor.zeros([4, 9]), x, b, y, null, 2, 0, 0, 0, false), 'ERR_SHAPE');
    expectCode(() => native.bias_act_bwd(x, x, null, y, Tensor.zeros([3]), 2, 0, 0, 0, false), 'ERR_SHAPE');
  });
});

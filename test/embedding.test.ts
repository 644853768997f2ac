import { describe, expect, it } from 'vitest';
import { embedding, embeddingBackward, getNumThreads, setNumThreads, Tensor } from '../lib/index.js';
import { native } from '../lib/native.js';
import { EDGE_SIZES, expectClose, expectCode, expectSameBits, finiteDiff, forEachIsa, freshSeed, poisoned, randomTensor, rng } from './helpers.js';
import { embeddingBackwardRef, embeddingRef } from './reference/embedding.js';
import { dropoutThreshold, keepMask, philox4x32_10, philoxHalves } from './reference/philox.js';

const seed = freshSeed();
const DTYPES = ['f32', 'bf16', 'f16'] as const;

function randomIds(n: number, vocab: number, r: () => number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = Math.floor(r() * vocab);
  return ids;
}

describe('Philox4x32-10 reference (test/reference/philox.ts)', () => {
  it('matches the Random123 known-answer vectors', () => {
    const hex = (w: number[]) => w.map((v) => v.toString(16).padStart(8, '0')).join(' ');
    expect(hex(Array.from(philox4x32_10([0, 0, 0, 0], [0, 0])))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(Array.from(philox4x32_10([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(Array.from(philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])))).toBe('d16cfe09 94fdcceb 5001e420 24126ea1');
  });
});

describe(`embedding (seed ${seed})`, () => {
  it('matches float64 on every ISA, dtype and edge dim (positions, offset, scale, padding, repeats)', () => {
    const r = rng(seed);
    forEachIsa((isa) => {
      for (const dtype of DTYPES) {
        for (const dim of EDGE_SIZES) {
          const [batch, seq, vocab] = [1 + Math.floor(r() * 3), 1 + Math.floor(r() * 6), 2 + Math.floor(r() * 6)];
          const idv = randomIds(batch * seq, vocab, r);  // few ids: repeats and padding are common
          const ids = Tensor.from(idv, [batch, seq]);
          const table = randomTensor([vocab, dim], r, dtype);
          const positionOffset = Math.floor(r() * 3);
          const pos = randomTensor([seq + positionOffset + 1, dim], r, dtype);
          const o = { positionOffset, scale: 1.5, paddingIdx: 1 };
          const out = embedding(ids, table.t, { ...o, positions: pos.t, out: poisoned([batch, seq, dim], dtype) });
          expect(out.shape).toEqual([batch, seq, dim]);
          const ref = embeddingRef(idv, table.v, dim, seq, { ...o, positions: pos.v });
          expectClose(out, ref, dtype, `embedding ${isa} ${dtype} [${batch},${seq}] dim ${dim}`);
          const a = out.toArray();
          for (let t = 0; t < idv.length; t++) {
            if (idv[t] === 1) for (let j = 0; j < dim; j++) expect(a[t * dim + j], 'padding row').toBe(0);
          }
          // no positions, [tokens] ids
          const flat = embedding(ids.reshape([-1]), table.t);
          expect(flat.shape).toEqual([batch * seq, dim]);
          expectClose(flat, embeddingRef(idv, table.v, dim, batch * seq), dtype, `embedding ${isa} ${dtype} no positions dim ${dim}`);
        }
      }
    });
  });

  it('dropout keeps element t*dim+j (+offset) exactly as Philox says, at rate 1 - p', () => {
    const r = rng(seed + 1);
    forEachIsa((isa) => {
      // dim 1100 spans three Philox blocks (cpu/philox_block.h: 512 elements) per row
      for (const [tokens, dim] of [[9, 37], [3, 1100]] as const) {
        const p = 0.3;
        const idv = randomIds(tokens, 5, r);
        const table = randomTensor([5, dim], r);
        const seedBig = 0x1234_5678_9abc_def0n;  // both key words matter
        const offset = 4n * 1_000_000_007n + 3n;  // 7 mod 8: Philox counters straddle rows
        const out = embedding(Tensor.from(idv), table.t, { dropout: p, seed: seedBig, offset, scale: 2 }).toArray();
        const ref = embeddingRef(idv, table.v, dim, tokens, { dropout: p, seed: seedBig, offset, scale: 2 });
        let kept = 0;
        for (let i = 0; i < tokens * dim; i++) {
          const k = keepMask(1, p, seedBig, offset + BigInt(i))[0] === 1;
          kept += k ? 1 : 0;
          if (!k) expect(out[i], `${isa} dim ${dim}: dropped element ${i}`).toBe(0);
          else expect(Math.abs(out[i]! - ref[i]!), `${isa} dim ${dim}: kept element ${i}`).toBeLessThanOrEqual(1e-6 * Math.abs(ref[i]!));
        }
        expect(kept).toBeGreaterThan(0);
      }
    });
    // the keep rate over many elements (binomial: 5 sigma)
    const [tokens, dim, p] = [256, 512, 0.1];
    const out = embedding(Tensor.from(new Int32Array(tokens)), Tensor.from(new Float32Array(dim).fill(1), [1, dim]), { dropout: p, seed: 7 }).toArray();
    const n = tokens * dim;
    const t = dropoutThreshold(p);  // 6554: the drop probability is t / 65536
    const inv = Math.fround(65536 / (65536 - t));
    let kept = 0;
    let other = 0;
    for (let i = 0; i < n; i++) {
      if (out[i] === inv) kept++;
      else if (out[i] !== 0) other++;
    }
    expect(other, 'values other than 0 and 65536 / (65536 - t)').toBe(0);
    const q = t / 65536;
    expect(Math.abs(kept - n * (1 - q))).toBeLessThan(5 * Math.sqrt(n * q * (1 - q)));
    // a few words straight from the stream: element i of seed 7
    for (const i of [0, 1, 2, 3, 4, 7, 8, 1023, 70001]) expect(out[i] !== 0).toBe(philoxHalves(1, 7n, BigInt(i))[0]! >= t);
  });

  it('dropout is deterministic per seed and offset, and consistent across offsets', () => {
    const r = rng(seed + 2);
    const [tokens, dim] = [6, 20];
    const idv = randomIds(tokens, 4, r);
    const ids = Tensor.from(idv);
    const table = randomTensor([4, dim], r);
    const o = { dropout: 0.5, seed: 42 };
    const a = embedding(ids, table.t, o);
    expectSameBits(a, embedding(ids, table.t, o), 'same seed');
    expect(Array.from(a.toArray())).not.toEqual(Array.from(embedding(ids, table.t, { ...o, seed: 43 }).toArray()));
    // offset = 2 * dim shifts the stream by two rows: row t of the shifted run equals row t + 2 of
    // a run over ids shifted the same way
    const shifted = Tensor.from(Int32Array.from([0, 0, ...idv.slice(0, tokens - 2)]));
    const b = embedding(ids, table.t, { ...o, offset: 2 * dim }).toArray();
    const c = embedding(shifted, table.t, o).toArray();
    expect(Array.from(b.slice(0, (tokens - 2) * dim))).toEqual(Array.from(c.slice(2 * dim)));
    // p = 1 drops everything, p = 0 equals no dropout
    expect(Array.from(embedding(ids, table.t, { dropout: 1, seed: 1 }).toArray()).every((v) => v === 0)).toBe(true);
    expectSameBits(embedding(ids, table.t, { dropout: 0, seed: 1 }), embedding(ids, table.t), 'p = 0');
  });

  it('backward accumulates repeated ids and positions, skips padding, on every ISA and dtype', () => {
    const r = rng(seed + 3);
    forEachIsa((isa) => {
      for (const dtype of DTYPES) {
        for (const dim of [1, 7, 8, 17, 33, 130]) {
          const [batch, seq, vocab] = [3, 5, 6];
          const idv = randomIds(batch * seq, vocab, r);
          idv[0] = 2;
          idv[3] = 2;
          idv[7] = 2;  // at least three repeats of id 2
          const ids = Tensor.from(idv, [batch, seq]);
          const dOut = randomTensor([batch, seq, dim], r, dtype);
          const positionOffset = 2;
          const numPositions = seq + positionOffset + 1;
          const o = { scale: 0.75, paddingIdx: 4, positionOffset };
          const g = embeddingBackward(dOut.t, ids, { vocabSize: vocab, numPositions, ...o });
          expect(g.dtable.shape).toEqual([vocab, dim]);
          expect(g.dpositions!.shape).toEqual([numPositions, dim]);
          const ref = embeddingBackwardRef(dOut.v, idv, vocab, dim, seq, numPositions, o);
          const what = `embeddingBackward ${isa} ${dtype} dim ${dim}`;
          expectClose(g.dtable, ref.dtable, dtype, `${what} dtable`);
          expectClose(g.dpositions!, ref.dpositions, dtype, `${what} dpositions`);
          const dt = g.dtable.toArray();
          for (let j = 0; j < dim; j++) expect(dt[4 * dim + j], 'padding row gets no gradient').toBe(0);
          expect(embeddingBackward(dOut.t, ids, { vocabSize: vocab }).dpositions).toBeUndefined();
        }
      }
    });
  });

  it('backward with dropout uses the forward mask; agrees with finite differences of the forward', () => {
    const r = rng(seed + 4);
    const [batch, seq, vocab, dim] = [2, 4, 5, 9];
    const idv = randomIds(batch * seq, vocab, r);
    const ids = Tensor.from(idv, [batch, seq]);
    const table = randomTensor([vocab, dim], r);
    const pos = randomTensor([seq, dim], r);
    const dOut = randomTensor([batch, seq, dim], r);
    const o = { dropout: 0.25, seed: 99n, offset: 5, scale: 1.25, paddingIdx: 0 };
    forEachIsa((isa) => {
      // [2, 4] x 9 runs on one thread; [4, 16] x 130 is enough work to split the ids over threads;
      // dim 1100 regenerates each row's mask in three Philox blocks
      for (const [b, s, d] of [[batch, seq, dim], [4, 16, 130], [2, 3, 1100]] as const) {
        const iv = d === dim ? idv : randomIds(b * s, vocab, r);
        const dO = d === dim ? dOut : randomTensor([b, s, d], r);
        const g = embeddingBackward(dO.t, Tensor.from(iv, [b, s]), { vocabSize: vocab, numPositions: s, ...o });
        const ref = embeddingBackwardRef(dO.v, iv, vocab, d, s, s, { ...o, seed: 99n, offset: 5n });
        expectClose(g.dtable, ref.dtable, 'f32', `${isa} dtable with dropout [${b},${s}] dim ${d}`);
        expectClose(g.dpositions!, ref.dpositions, 'f32', `${isa} dpositions with dropout [${b},${s}] dim ${d}`);
      }
    });
    const g = embeddingBackward(dOut.t, ids, { vocabSize: vocab, numPositions: seq, ...o });
    const loss = () => {
      const y = embedding(ids, table.t, { positions: pos.t, ...o }).toArray();
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i]! * dOut.v[i]!;
      return s;
    };
    const check = (grad: Float32Array, x: Float32Array, what: string) => {
      for (let i = 0; i < x.length; i++) {
        const fd = finiteDiff(loss, x, i, 1e-2);
        expect(Math.abs(fd - grad[i]!), `${what}[${i}] analytic ${grad[i]} vs finite difference ${fd}`).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
      }
    };
    check(g.dtable.toArray() as Float32Array, table.t.data as Float32Array, 'dtable');
    check(g.dpositions!.toArray() as Float32Array, pos.t.data as Float32Array, 'dpositions');
  });

  it('is deterministic across runs, thread counts and sync/async', async () => {
    const r = rng(seed + 5);
    const [tokens, vocab, dim] = [512, 50, 200];
    const ids = Tensor.from(randomIds(tokens, vocab, r), [4, 128]);
    const table = randomTensor([vocab, dim], r, 'bf16');
    const pos = randomTensor([128, dim], r, 'bf16');
    const dOut = randomTensor([4, 128, dim], r, 'bf16');
    const o = { dropout: 0.1, seed: 5, scale: Math.sqrt(dim), paddingIdx: 3 };
    const threads = getNumThreads();
    try {
      const f1 = embedding(ids, table.t, { positions: pos.t, ...o });
      const f2 = await embedding.async(ids, table.t, { positions: pos.t, ...o });
      const g1 = embeddingBackward(dOut.t, ids, { vocabSize: vocab, numPositions: 128, ...o });
      const g2 = await embeddingBackward.async(dOut.t, ids, { vocabSize: vocab, numPositions: 128, ...o });
      setNumThreads(1);
      const f3 = embedding(ids, table.t, { positions: pos.t, ...o });
      const g3 = embeddingBackward(dOut.t, ids, { vocabSize: vocab, numPositions: 128, ...o });
      expectSameBits(f1, f2, 'embedding sync vs async');
      expectSameBits(f1, f3, 'embedding threads vs 1 thread');
      expectSameBits(g1.dtable, g2.dtable, 'dtable sync vs async');
      expectSameBits(g1.dtable, g3.dtable, 'dtable threads vs 1 thread');
      expectSameBits(g1.dpositions!, g3.dpositions!, 'dpositions threads vs 1 thread');
    } finally {
      setNumThreads(threads);
    }
  });

  it('handles empty ids and an out tensor', () => {
    const table = Tensor.from([1, 2, 3, 4], [2, 2]);
    expect(embedding(Tensor.from(new Int32Array(0), [0, 3]), table).shape).toEqual([0, 3, 2]);
    const g = embeddingBackward(Tensor.zeros([0, 2]), Tensor.from(new Int32Array(0)), { vocabSize: 2 });
    expect(Array.from(g.dtable.toArray())).toEqual([0, 0, 0, 0]);
    const out = poisoned([2, 2]);
    expect(embedding(Tensor.from(new Int32Array([1, 0])), table, { out })).toBe(out);
    expect(Array.from(out.toArray())).toEqual([3, 4, 1, 2]);
  });

  it('rejects bad ids before touching memory, and bad arguments, with SeqfuseError codes', async () => {
    const table = Tensor.zeros([32000, 4]);
    const idv = new Int32Array(20).fill(7);
    idv[17] = 50000;
    const out = poisoned([20, 4]);
    expectCode(() => embedding(Tensor.from(idv), table, { out }), 'ERR_ARG', /^embedding: ids\[17\] = 50000 is out of range \[0, 32000\)$/);
    expect(Array.from(out.toArray()).every(Number.isNaN), 'out untouched').toBe(true);
    idv[17] = 7;
    idv[3] = -1;
    expectCode(() => embedding(Tensor.from(idv), table), 'ERR_ARG', /ids\[3\] = -1 is out of range/);
    await expect(embedding.async(Tensor.from(idv), table)).rejects.toMatchObject({ code: 'ERR_ARG', message: expect.stringMatching(/ids\[3\] = -1/) });
    expectCode(() => embeddingBackward(Tensor.zeros([20, 4]), Tensor.from(idv), { vocabSize: 32000 }), 'ERR_ARG', /embeddingBackward: ids\[3\] = -1/);
    expectCode(() => embeddingBackward(Tensor.zeros([2, 4]), Tensor.from(new Int32Array([0, 5])), { vocabSize: 5 }), 'ERR_ARG', /ids\[1\] = 5 is out of range \[0, 5\)/);

    const ids = Tensor.from(new Int32Array([0, 1, 2]));
    const small = Tensor.zeros([3, 4]);
    expectCode(() => embedding(Tensor.from([0, 1, 2]), small), 'ERR_DTYPE', /expected i32 tensor for ids but received f32/);
    expectCode(() => embedding(ids, Tensor.zeros([12])), 'ERR_SHAPE', /table of shape \[vocab, dim\]/);
    expectCode(() => embedding(ids, Tensor.zeros([3, 4], { dtype: 'i8' })), 'ERR_DTYPE');
    expectCode(() => embedding(ids, small, { positions: Tensor.zeros([2, 4]) }), 'ERR_SHAPE', /positions has 2 rows but a sequence of 3 tokens at positionOffset 0 needs 3/);
    expectCode(() => embedding(ids, small, { positions: Tensor.zeros([4, 4]), positionOffset: 2 }), 'ERR_SHAPE', /needs 5/);
    expectCode(() => embedding(ids, small, { positions: Tensor.zeros([3, 5]) }), 'ERR_SHAPE', /positions of shape \[numPositions, 4\]/);
    expectCode(() => embedding(ids, small, { positions: Tensor.zeros([3, 4], { dtype: 'bf16' }) }), 'ERR_DTYPE');
    expectCode(() => embedding(ids, small, { scale: NaN }), 'ERR_ARG', /scale/);
    expectCode(() => embedding(ids, small, { scale: Infinity }), 'ERR_ARG', /scale/);
    expectCode(() => embedding(ids, small, { dropout: 0.5 }), 'ERR_ARG', /needs a seed/);
    expectCode(() => embedding(ids, small, { dropout: 1.5, seed: 1 }), 'ERR_ARG', /dropout/);
    expectCode(() => embedding(ids, small, { paddingIdx: 3 }), 'ERR_ARG', /paddingIdx/);
    expectCode(() => embedding(ids, small, { paddingIdx: 0.5 }), 'ERR_ARG', /paddingIdx/);
    expectCode(() => embedding(ids, small, { offset: -1 }), 'ERR_ARG', /offset/);
    expectCode(() => embedding(ids, small, { positionOffset: -1 }), 'ERR_ARG', /positionOffset/);
    expectCode(() => embedding(ids, small, { out: Tensor.zeros([3, 5]) }), 'ERR_SHAPE');
    expectCode(() => embedding(ids, small, { out: Tensor.zeros([3, 4], { dtype: 'f16' }) }), 'ERR_DTYPE');
    const gone = Tensor.zeros([3, 4]);
    gone.dispose();
    expectCode(() => embedding(ids, gone), 'ERR_DISPOSED');
    expectCode(() => embedding(ids, small, { positions: gone }), 'ERR_DISPOSED');
    expectCode(() => embeddingBackward(gone, ids, { vocabSize: 3 }), 'ERR_DISPOSED');
    expectCode(() => embeddingBackward(Tensor.zeros([3, 4]), ids, undefined as unknown as { vocabSize: number }), 'ERR_ARG', /vocabSize/);
    expectCode(() => embeddingBackward(Tensor.zeros([3, 4]), ids, { vocabSize: 2.5 }), 'ERR_ARG', /vocabSize/);
    expectCode(() => embeddingBackward(Tensor.zeros([4, 4]), ids, { vocabSize: 3 }), 'ERR_SHAPE');
    expectCode(() => embeddingBackward(Tensor.zeros([3, 4]), ids, { vocabSize: 3, numPositions: 2 }), 'ERR_SHAPE', /dpositions has 2 rows/);
    expectCode(() => embeddingBackward(Tensor.zeros([3, 4], { dtype: 'i32' }), ids, { vocabSize: 3 }), 'ERR_DTYPE');
    // the addon checks on its own, without the TS layer
    expectCode(() => native.embedding_fwd(Tensor.from([0, 1]), small, null, Tensor.zeros([2, 4]), 0, 1, -1, 0, 0, 0, false), 'ERR_DTYPE');
    expectCode(() => native.embedding_fwd(ids, small, null, Tensor.zeros([3, 4]), 0, NaN, -1, 0, 0, 0, false), 'ERR_ARG');
    expectCode(() => native.embedding_fwd(ids, small, null, Tensor.zeros([3, 4]), 0, 1, 3, 0, 0, 0, false), 'ERR_ARG', /paddingIdx/);
    expectCode(() => native.embedding_fwd(ids, small, null, Tensor.zeros([3, 4]), 0, 1, -1, 0, -5, 0, false), 'ERR_ARG', /seed/);
    expectCode(() => native.embedding_bwd(Tensor.zeros([3, 4]), ids, Tensor.zeros([2, 4]), null, 0, 1, -1, 0, 0, 0, false), 'ERR_ARG', /ids\[2\] = 2/);
  });

  it('embeddingBackward accumulates into caller-provided gradients', () => {
    const r = rng(seed + 99);
    const ids = Tensor.from(randomIds(12, 9, r), [3, 4]);
    const dOut = randomTensor([3, 4, 5], r).t;
    const once = embeddingBackward(dOut, ids, { vocabSize: 9, numPositions: 6 });
    const dtable = Tensor.zeros([9, 5]);
    const dpositions = Tensor.zeros([6, 5]);
    for (let k = 0; k < 2; k++) {
      const g = embeddingBackward(dOut, ids, { vocabSize: 9, numPositions: 6, dtable, dpositions });
      expect(g.dtable).toBe(dtable);
      expect(g.dpositions).toBe(dpositions);
    }
    expectClose(dtable, Array.from(once.dtable.toArray(), (v) => 2 * v), 'f32', 'dtable accumulated twice');
    expectClose(dpositions, Array.from(once.dpositions!.toArray(), (v) => 2 * v), 'f32', 'dpositions accumulated twice');
    expectCode(() => embeddingBackward(dOut, ids, { vocabSize: 9, dtable: Tensor.zeros([8, 5]) }), 'ERR_SHAPE');
    expectCode(() => embeddingBackward(dOut, ids, { vocabSize: 9, dtable: Tensor.zeros([9, 5], { dtype: 'bf16' }) }), 'ERR_DTYPE');
    expectCode(() => embeddingBackward(dOut, ids, { vocabSize: 9, dpositions }), 'ERR_ARG');
  });
});

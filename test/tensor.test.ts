import { describe, expect, it } from 'vitest';
import { getIsa, memory, SeqfuseError, setIsa, Tensor } from '../lib/index.js';
import { forEachIsa, freshSeed, rng } from './helpers.js';
import { bf16BitsToNumber, f16BitsToNumber, toBf16Bits, toF16Bits } from './reference/half.js';

const seed = freshSeed();

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SeqfuseError);
    return (e as SeqfuseError).code;
  }
  return undefined;
}

describe(`Tensor (seed ${seed})`, () => {
  it('from / toArray round-trips every dtype and infers dtypes from typed arrays', () => {
    expect(Array.from(Tensor.from([1.5, -2, 3], [3]).toArray())).toEqual([1.5, -2, 3]);
    expect(Tensor.from(new Int32Array([1, 2])).dtype).toBe('i32');
    expect(Tensor.from(new Int8Array([1, 2])).dtype).toBe('i8');
    expect(Tensor.from(new Uint8Array([1, 2])).dtype).toBe('u8');
    const t = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.numel).toBe(6);
    expect(t.ndim).toBe(2);
    expect(Array.from(Tensor.from([300.7, -300.7, NaN, 1e10], [4], { dtype: 'i8' }).toArray())).toEqual([127, -128, 0, 127]);
    expect(Array.from(Tensor.from([300.7, -3.7, 2.9], [3], { dtype: 'u8' }).toArray())).toEqual([255, 0, 2]);
    expect(Array.from(Tensor.from([2.9, -2.9, 3e9], [3], { dtype: 'i32' }).toArray())).toEqual([2, -2, 2147483647]);
    // raw 16-bit words
    const raw = Tensor.from(new Uint16Array([0x3c00, 0xc000]), [2], { dtype: 'f16' });
    expect(Array.from(raw.toArray())).toEqual([1, -2]);
  });

  it('f32 -> bf16 / f16 rounds to nearest even on every ISA, including tails, subnormals, Inf and NaN', () => {
    const r = rng(seed);
    const vals: number[] = [0, -0, 1, -1, 65504, 65519, 65520, 1e-8, 6e-8, 2 ** -14, 2 ** -24, 3e38, -Infinity, Infinity, NaN];
    for (let i = 0; i < 1000; i++) vals.push((r() * 2 - 1) * 10 ** Math.floor(r() * 10 - 5));
    // halfway cases
    for (let i = 0; i < 50; i++) {
      const b = Math.floor(r() * 0x7f00);
      vals.push((bf16BitsToNumber(b) + bf16BitsToNumber(b + 1)) / 2);
      const h = Math.floor(r() * 0x7b00);
      vals.push((f16BitsToNumber(h) + f16BitsToNumber(h + 1)) / 2);
    }
    const src = Float32Array.from(vals);
    forEachIsa((isa) => {
      for (const len of [src.length, 1, 7, 17]) {
        const s = Tensor.from(src.subarray(0, len), [len]);
        const bf = s.to('bf16').data as Uint16Array;
        const hf = s.to('f16').data as Uint16Array;
        for (let i = 0; i < len; i++) {
          expect(bf[i], `${isa} bf16(${src[i]})`).toBe(toBf16Bits(src[i]!));
          if (!Number.isNaN(src[i])) expect(hf[i], `${isa} f16(${src[i]})`).toBe(toF16Bits(src[i]!));
          else expect((hf[i]! & 0x7c00) === 0x7c00 && (hf[i]! & 0x3ff) !== 0, `${isa} f16(NaN) is NaN`).toBe(true);
        }
        // and back: exact
        const back = Tensor.from(bf, [len], { dtype: 'bf16' }).toArray();
        for (let i = 0; i < len; i++) {
          const e = bf16BitsToNumber(bf[i]!);
          if (Number.isNaN(e)) expect(Number.isNaN(back[i]!)).toBe(true);
          else expect(back[i]).toBe(e);
        }
      }
    });
  });

  it('randn and rand: seeded, deterministic, with the right statistics', () => {
    const a = Tensor.randn([100_000], { seed: 42 });
    const b = Tensor.randn([100_000], { seed: 42 });
    const c = Tensor.randn([100_000], { seed: 43 });
    expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer))).toBe(true);
    expect(Buffer.from(a.data.buffer).equals(Buffer.from(c.data.buffer))).toBe(false);
    const v = a.toArray();
    let m = 0;
    for (const x of v) m += x;
    m /= v.length;
    let s = 0;
    for (const x of v) s += (x - m) ** 2;
    s = Math.sqrt(s / v.length);
    expect(Math.abs(m)).toBeLessThan(0.02); // 5 sigma of the mean of 1e5 samples is 0.016
    expect(Math.abs(s - 1)).toBeLessThan(0.02);
    const u = Tensor.rand([100_000], { seed: 7, low: -2, high: 3 }).toArray();
    let um = 0;
    let outside = 0;
    for (const x of u) {
      if (!(x >= -2 && x < 3)) outside++;
      um += x;
    }
    expect(outside).toBe(0);
    expect(Math.abs(um / u.length - 0.5)).toBeLessThan(0.03);
    const n2 = Tensor.randn([1000], { seed: 5, mean: 10, std: 0.001, dtype: 'bf16' }).toArray();
    for (const x of n2) expect(Math.abs(x - 10)).toBeLessThan(0.1);
    expect(Tensor.randn([3], { seed: 2n ** 63n }).numel).toBe(3);
  });

  it('reshape is a view; dispose releases; using works; memory() counts', () => {
    const before = memory().cpu;
    const t = Tensor.zeros([4, 6]);
    expect(memory().cpu.bytes - before.bytes).toBe(96);
    const v = t.reshape([2, -1, 3]);
    expect(v.shape).toEqual([2, 4, 3]);
    (v.data as Float32Array)[5] = 7;
    expect(t.toArray()[5]).toBe(7);
    expect(memory().cpu.tensors - before.tensors).toBe(2);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(code(() => t.toArray())).toBe('ERR_DISPOSED');
    expect(v.toArray()[5]).toBe(7); // the view keeps the data
    expect(memory().cpu.bytes - before.bytes).toBe(96);
    v.dispose();
    v.dispose(); // idempotent
    expect(memory().cpu).toEqual(before);
    {
      using u = Tensor.zeros([10]);
      expect(u.numel).toBe(10);
    }
    expect(memory().cpu).toEqual(before);
  });

  it('forgotten tensors are freed by the garbage collector', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'tests run with --expose-gc (vitest.config.ts)').toBeTypeOf('function');
    const settle = async () => {
      for (let i = 0; i < 5; i++) {
        gc!();
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await settle(); // garbage of earlier tests first
    const before = memory().cpu;
    (() => {
      for (let i = 0; i < 100; i++) Tensor.zeros([1000]);
    })();
    expect(memory().cpu.tensors).toBeGreaterThan(before.tensors);
    await settle();
    expect(memory().cpu).toEqual(before);
  });

  it('rejects bad arguments with typed errors', () => {
    expect(code(() => Tensor.zeros([2, -1]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros([2.5]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros([NaN]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros('3' as unknown as number[]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros([2], { dtype: 'f64' as 'f32' }))).toBe('ERR_DTYPE');
    expect(code(() => Tensor.zeros([2], { device: 'cuda' }))).toBe('ERR_BACKEND');
    expect(code(() => Tensor.zeros([2], { device: 'tpu' as 'cpu' }))).toBe('ERR_DEVICE');
    expect(code(() => Tensor.zeros([2 ** 40]))).toBe('ERR_OOM');
    expect(code(() => Tensor.zeros([2 ** 26, 2 ** 26]))).toBe('ERR_OOM');
    expect(code(() => Tensor.from([1, 2, 3], [2]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.from(null as unknown as number[]))).toBe('ERR_ARG');
    expect(code(() => Tensor.from(['a'] as unknown as number[]))).toBe('ERR_ARG');
    expect(code(() => Tensor.from(new Uint16Array(2)))).toBe('ERR_DTYPE');
    expect(code(() => Tensor.randn([2], { dtype: 'i32' }))).toBe('ERR_DTYPE');
    expect(code(() => Tensor.randn([2], { seed: -1 }))).toBe('ERR_ARG');
    expect(code(() => Tensor.randn([2], { seed: 1.5 }))).toBe('ERR_ARG');
    expect(code(() => Tensor.randn([2], { seed: 2n ** 64n }))).toBe('ERR_ARG');
    expect(code(() => Tensor.zeros([6]).reshape([4, -1]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros([6]).reshape([-1, -1]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros([6]).reshape([7]))).toBe('ERR_SHAPE');
    expect(code(() => Tensor.zeros([6]).to('f64' as 'f32'))).toBe('ERR_DTYPE');
    expect(code(() => Tensor.zeros([6]).to('cuda'))).toBe('ERR_BACKEND');
    expect(code(() => setIsa('avx1024' as 'avx2'))).toBe('ERR_ARG');
    if (getIsa().best !== 'avx512') expect(code(() => setIsa('avx512'))).toBe('ERR_UNSUPPORTED');
  });
});

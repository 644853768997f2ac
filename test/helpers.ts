// Test utilities: seeded randomness, shapes with SIMD tails, poisoned outputs, ISA sweeps.
import { expect } from 'vitest';
import { type DType, getIsa, type Isa, SeqfuseError, setIsa, Tensor } from '../lib/index.js';
import { relL2, tol } from './tolerance.js';

/** mulberry32: a small seeded PRNG for test inputs and shapes (printed on failure). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A fresh seed per run (so inputs differ between runs), overridable with SEQFUSE_TEST_SEED. */
export function freshSeed(): number {
  const s = process.env.SEQFUSE_TEST_SEED;
  return s ? Number(s) : Math.floor(Math.random() * 2 ** 31);
}

/** Sizes that hit 1, odd values, and the tails of 8- and 16-wide vectors. */
export const EDGE_SIZES = [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 130];

/** Random float64 values in [-scale, scale), returned as numbers and as a tensor of `dtype`. */
export function randomTensor(shape: number[], r: () => number, dtype: DType = 'f32', scale = 1): { t: Tensor; v: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (r() * 2 - 1) * scale;
  const t = Tensor.from(f, shape, { dtype });
  // the reference sees exactly the values the kernel sees (after rounding to dtype)
  return { t, v: Float64Array.from(t.toArray()) };
}

/** A tensor filled with NaN so unwritten outputs are caught. */
export function poisoned(shape: number[], dtype: DType = 'f32'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(new Float32Array(n).fill(NaN), shape, { dtype });
}

export function expectClose(actual: Tensor | ArrayLike<number>, expected: ArrayLike<number>, dtype: DType, what: string, factor = 1,
  floor = 0): void {
  const a = actual instanceof Tensor ? actual.toArray() : actual;
  const err = relL2(a as ArrayLike<number>, expected, floor);
  expect(err, `${what}: relative L2 error ${err} (tolerance ${tol(dtype) * factor})`).toBeLessThanOrEqual(tol(dtype) * factor);
}

export function expectSameBits(a: Tensor, b: Tensor, what: string): void {
  expect(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength)), `${what}: two runs differ`).toBe(true);
}

/** The ISA paths this CPU can run: every one is tested. */
export function isas(): Isa[] {
  const best = getIsa().best;
  return (['avx512', 'avx2', 'generic'] as Isa[]).filter((i) => ['generic', 'avx2', 'avx512'].indexOf(i) <= ['generic', 'avx2', 'avx512'].indexOf(best));
}

/** Runs fn under each ISA path, restoring the best one afterwards. */
export function forEachIsa(fn: (isa: Isa) => void): void {
  const best = getIsa().best;
  try {
    for (const isa of isas()) {
      setIsa(isa);
      fn(isa);
    }
  } finally {
    setIsa(best);
  }
}

/** Central finite difference of a scalar function of one input element, in float64 on a f32 op. */
export function finiteDiff(f: () => number, x: Float32Array, i: number, h: number): number {
  const x0 = x[i]!;
  x[i] = x0 + h;
  const fp = f();
  x[i] = x0 - h;
  const fm = f();
  x[i] = x0;
  return (fp - fm) / (2 * h);
}

/** fn must throw a SeqfuseError with this code (and a message matching `message`, if given). */
export function expectCode(fn: () => unknown, code: string, message?: string | RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a SeqfuseError').toBeInstanceOf(SeqfuseError);
  expect((err as SeqfuseError).code, (err as Error).message).toBe(code);
  if (message !== undefined) expect((err as Error).message).toMatch(message);
}

/** p must reject with a SeqfuseError with this code (and a message matching `message`, if given). */
export async function expectRejection(p: Promise<unknown>, code: string, message?: string | RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expectCode(() => {
    if (err !== undefined) throw err;
  }, code, message);
}

/**
 * Every gradient in `grads` against float64 central differences of `loss()` over the float64
 * parameter copies `p` (perturbed in place, step 1e-5): relative L2 below `limit`, measured
 * against at least `floor` (a gradient that is zero in exact arithmetic shows f32 noise).
 */
export function expectGradsMatchFD(p: Map<string, Float64Array>, grads: Map<string, Tensor>, loss: () => number, what: string,
  limit = 2e-5, floor = 1e-3): void {
  for (const [name, v] of p) {
    const fd = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const keep = v[i]!;
      v[i] = keep + 1e-5;
      const up = loss();
      v[i] = keep - 1e-5;
      const down = loss();
      v[i] = keep;
      fd[i] = (up - down) / 2e-5;
    }
    const scale = Math.max(Math.sqrt(fd.reduce((a, b) => a + b * b, 0)), floor);
    expect(relL2(grads.get(name)!.toArray(), fd, scale), `${what} ${name}`).toBeLessThan(limit);
  }
}

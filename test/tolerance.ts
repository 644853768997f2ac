// The one place test tolerances live (STYLE.md): relative L2 error against float64 references.
import type { DType } from '../lib/index.js';

export const TOL: Record<'f32' | 'f16' | 'bf16', number> = { f32: 1e-5, f16: 1e-2, bf16: 1e-2 };

export function tol(dtype: DType): number {
  return TOL[dtype as 'f32'] ?? 0;
}

/**
 * ||a - b|| / max(||b||, floor); NaN anywhere gives Infinity so it always fails. `floor` is for
 * outputs that can be tiny by cancellation or saturation (e.g. GELU of a very negative input),
 * where the error is bounded relative to the inputs' scale, not the output's.
 */
export function relL2(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 0): number {
  if (actual.length !== expected.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(a) || Number.isNaN(e)) return Infinity;
    num += (a - e) ** 2;
    den += e * e;
  }
  den = Math.max(den, floor * floor);
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

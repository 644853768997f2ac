// float64 references for activations, bias + activation + dropout, bias + dropout + residual
// (the dropout mask comes from ./philox.ts).
import { dropoutScale } from './philox.js';

/** erf in float64: Maclaurin series for |x| <= 2.5, the erfc continued fraction beyond (|err| < 1e-14). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax <= 2.5) {
    // 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 100; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * sum * (2 / Math.sqrt(Math.PI));
  }
  // erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
  let t = ax;
  for (let k = 80; k >= 1; k--) t = ax + k / 2 / t;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / t;
  return Math.sign(x) * (1 - erfc);
}

export type ActName = 'none' | 'relu' | 'gelu' | 'gelu_tanh' | 'silu';

const K = Math.sqrt(2 / Math.PI);
const C = 0.044715;

export function actRef(z: number, act: ActName): number {
  switch (act) {
    case 'none': return z;
    case 'relu': return Number.isNaN(z) ? NaN : Math.max(z, 0);
    case 'gelu': return 0.5 * z * (1 + erf(z / Math.SQRT2));
    case 'gelu_tanh': return 0.5 * z * (1 + Math.tanh(K * (z + C * z ** 3)));
    case 'silu': return z / (1 + Math.exp(-z));
  }
}

/** d act / dz. */
export function actGradRef(z: number, act: ActName): number {
  switch (act) {
    case 'none': return 1;
    case 'relu': return z > 0 ? 1 : 0;
    case 'gelu': return 0.5 * (1 + erf(z / Math.SQRT2)) + z * Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
    case 'gelu_tanh': {
      const t = Math.tanh(K * (z + C * z ** 3));
      return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * K * (1 + 3 * C * z * z);
    }
    case 'silu': {
      const s = 1 / (1 + Math.exp(-z));
      return s * (1 + z * (1 - s));
    }
  }
}

// --- Philox4x32-10 --------------------------------------------------------------------------

// --- fused ops --------------------------------------------------------------------------------

/** y = drop(act(x + bias)); keep null = no dropout. */
export function biasActRef(x: Float64Array, bias: Float64Array | null, rows: number, cols: number, act: ActName,
  keep: Uint8Array | null, p: number): Float64Array {
  const y = new Float64Array(rows * cols);
  const scale = keep ? dropoutScale(p) : 1;
  for (let i = 0; i < rows * cols; i++) {
    const v = actRef(x[i]! + (bias ? bias[i % cols]! : 0), act);
    y[i] = keep ? (keep[i] ? v * scale : 0) : v;
  }
  return y;
}

export function biasActBackwardRef(dy: Float64Array, x: Float64Array, bias: Float64Array | null, rows: number, cols: number,
  act: ActName, keep: Uint8Array | null, p: number): { dx: Float64Array; dbias: Float64Array } {
  const dx = new Float64Array(rows * cols);
  const dbias = new Float64Array(cols);
  const scale = keep ? dropoutScale(p) : 1;
  for (let i = 0; i < rows * cols; i++) {
    const g = dy[i]! * actGradRef(x[i]! + (bias ? bias[i % cols]! : 0), act);
    dx[i] = keep ? (keep[i] ? g * scale : 0) : g;
    dbias[i % cols] += dx[i]!;
  }
  return { dx, dbias };
}

/** y = residual + drop(x + bias). */
export function biasDropoutResidualRef(x: Float64Array, bias: Float64Array | null, residual: Float64Array | null, rows: number,
  cols: number, keep: Uint8Array | null, p: number): Float64Array {
  const y = biasActRef(x, bias, rows, cols, 'none', keep, p);
  if (residual) for (let i = 0; i < y.length; i++) y[i] += residual[i]!;
  return y;
}

/**
 * The error of column sums (dbias) relative to what summation in the kernel's precision can
 * promise: ||actual - ref|| / ||sum over rows of |terms|||. A plain relative L2 is meaningless when
 * the terms cancel (a sum near 0 carries the rounding error of its large terms). NaN gives Infinity.
 */
export function columnSumError(actual: ArrayLike<number>, ref: Float64Array, terms: Float64Array, cols: number): number {
  const mag = new Float64Array(cols);
  for (let i = 0; i < terms.length; i++) mag[i % cols] += Math.abs(terms[i]!);
  let num = 0;
  let den = 0;
  for (let j = 0; j < cols; j++) {
    const a = actual[j]!;
    if (Number.isNaN(a)) return Infinity;
    num += (a - ref[j]!) ** 2;
    den += mag[j]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

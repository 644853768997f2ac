// float64 references for gemm and linear, forward and backward.
import type { LinearActivation } from '../../lib/index.js';

/** erf to ~1e-15: Taylor series below 2.5, the erfc continued fraction (60 terms) above. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  let r: number;
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 100 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …)))))
    let f = ax;
    for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
    r = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -r : r;
}

export function activationRef(v: number, act: LinearActivation): number {
  switch (act) {
    case 'relu': return v > 0 ? v : 0;
    case 'gelu': return 0.5 * v * (1 + erf(v / Math.SQRT2));
    case 'gelu_tanh': return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
    case 'silu': return v / (1 + Math.exp(-v));
    default: return v;
  }
}

/** out [M,N] = alpha · op(a) · op(b) + beta · c; a is [K,M] with transA, b is [N,K] with transB. */
export function gemmRef(a: ArrayLike<number>, b: ArrayLike<number>, c: ArrayLike<number> | null, m: number, n: number, k: number,
  transA: boolean, transB: boolean, alpha: number, beta: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[transA ? p * m + i : i * k + p]! * b[transB ? j * k + p : p * n + j]!;
      out[i * n + j] = alpha * s + (c && beta !== 0 ? beta * c[i * n + j]! : 0);
    }
  }
  return out;
}

/** y [M,N] = act(x [M,K] · wᵀ [K,N] + bias) + residual. */
export function linearRef(x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null, residual: ArrayLike<number> | null,
  m: number, n: number, k: number, act: LinearActivation): Float64Array {
  const y = gemmRef(x, w, null, m, n, k, false, true, 1, 0);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const v = activationRef(y[i * n + j]! + (bias ? bias[j]! : 0), act);
      y[i * n + j] = v + (residual ? residual[i * n + j]! : 0);
    }
  }
  return y;
}

/** Gradients of sum(dy ⊙ (x · wᵀ + bias)): dx [M,K], dw [N,K], db [N]. */
export function linearBackwardRef(dy: ArrayLike<number>, x: ArrayLike<number>, w: ArrayLike<number>, m: number, n: number, k: number) {
  const dx = gemmRef(dy, w, null, m, k, n, false, false, 1, 0);
  const dw = gemmRef(dy, x, null, n, k, m, true, false, 1, 0);
  const db = new Float64Array(n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) db[j] += dy[i * n + j]!;
  return { dx, dw, db };
}

/** Gradients of sum(dOut ⊙ alpha · op(a) · op(b)), shaped like a and b, by explicit index loops. */
export function gemmBackwardRef(dOut: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, k: number,
  transA: boolean, transB: boolean, alpha: number) {
  const da = new Float64Array(m * k);
  const db = new Float64Array(k * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const g = alpha * dOut[i * n + j]!;
      for (let p = 0; p < k; p++) {
        const ai = transA ? p * m + i : i * k + p;
        const bi = transB ? j * k + p : p * n + j;
        da[ai] += g * b[bi]!;
        db[bi] += g * a[ai]!;
      }
    }
  }
  return { da, db };
}

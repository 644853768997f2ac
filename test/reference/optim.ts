// float64 references of the optimizer family: torch.optim.AdamW's update and the global L2 norm.

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** the number of this update, from 1 */
  step: number;
  gradScale: number;
  decay: boolean;
}

/**
 * One AdamW update in float64, in place on p, m, v (decoupled weight decay first):
 * g = grad·gradScale; p ← p·(1 − lr·wd) if decay; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
 * p ← p − lr·(m / (1 − β1^step)) / (√(v / (1 − β2^step)) + eps).
 */
export function adamwRef(p: Float64Array, grad: ArrayLike<number>, m: Float64Array, v: Float64Array, h: AdamWHyper): void {
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < p.length; i++) {
    const g = grad[i]! * h.gradScale;
    if (h.decay) p[i]! *= 1 - h.lr * h.weightDecay;
    m[i] = h.beta1 * m[i]! + (1 - h.beta1) * g;
    v[i] = h.beta2 * v[i]! + (1 - h.beta2) * g * g;
    p[i]! -= (h.lr * (m[i]! / bc1)) / (Math.sqrt(v[i]! / bc2) + h.eps);
  }
}

/** Σ x² over every element of every array, in order. */
export function sumSquaresRef(arrays: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const a of arrays) for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return s;
}

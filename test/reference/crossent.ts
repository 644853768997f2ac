// float64 reference for cross-entropy with label smoothing, ignoreIndex and MiLe (REFERENCES.md §4),
// written straight from the definitions: log-softmax per row, the NLL and smoothing terms, the
// clamped entropy, and the gradient (softmax - target distribution) times the row's factor.

export interface CrossEntropyRefOptions {
  labelSmoothing?: number;
  ignoreIndex?: number;
  mile?: { gamma: number; sigma: number };
  reduction?: 'mean' | 'sum' | 'none';
}

export interface CrossEntropyRef {
  loss: number;
  count: number;
  /** per row; 0 at ignored rows */
  lse: Float64Array;
  losses: Float64Array;
  /** alpha·w_t (1 without MiLe), 0 at ignored rows */
  weights: Float64Array;
  /** d loss / d logits for dLoss (the sum of the row losses for 'none') */
  dlogits: Float64Array;
}

export function crossEntropyRef(x: ArrayLike<number>, targets: ArrayLike<number>, V: number, opts: CrossEntropyRefOptions = {},
  dLoss = 1): CrossEntropyRef {
  const N = targets.length;
  const eps = opts.labelSmoothing ?? 0;
  const ignore = opts.ignoreIndex ?? -100;
  const lse = new Float64Array(N);
  const ce = new Float64Array(N);
  const w = new Float64Array(N);
  const logp = new Float64Array(N * V);
  let count = 0;
  for (let r = 0; r < N; r++) {
    if (targets[r] === ignore) continue;
    count++;
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, x[r * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(x[r * V + v]! - max);
    lse[r] = max + Math.log(s);
    let meanNeg = 0;
    let h = 0;
    for (let v = 0; v < V; v++) {
      const lp = x[r * V + v]! - lse[r]!;
      logp[r * V + v] = lp;
      meanNeg -= lp / V;
      const q = Math.min(1, Math.max(1e-8, Math.exp(lp)));
      h -= q * Math.log(q);
    }
    ce[r] = (1 - eps) * -logp[r * V + targets[r]!]! + (eps > 0 ? eps * meanNeg : 0);
    w[r] = opts.mile ? (opts.mile.sigma + h) ** opts.mile.gamma : 1;
  }
  let wsum = 0;
  for (let r = 0; r < N; r++) if (targets[r] !== ignore) wsum += w[r]!;
  const alpha = opts.mile && count > 0 ? count / wsum : 1;
  const weights = new Float64Array(N);
  const losses = new Float64Array(N);
  let total = 0;
  for (let r = 0; r < N; r++) {
    if (targets[r] === ignore) continue;
    weights[r] = alpha * w[r]!;
    losses[r] = weights[r]! * ce[r]!;
    total += losses[r]!;
  }
  const mean = count > 0 ? total / count : 0;
  const reduction = opts.reduction ?? 'mean';
  const factor = reduction === 'mean' ? (count > 0 ? 1 / count : 0) : 1;
  const dlogits = new Float64Array(N * V);
  for (let r = 0; r < N; r++) {
    if (targets[r] === ignore) continue;
    const c = dLoss * factor * weights[r]!;
    for (let v = 0; v < V; v++) {
      const target = (v === targets[r] ? 1 - eps : 0) + eps / V;
      dlogits[r * V + v] = c * (Math.exp(logp[r * V + v]!) - target);
    }
  }
  return { loss: reduction === 'sum' ? total : mean, count, lse, losses, weights, dlogits };
}

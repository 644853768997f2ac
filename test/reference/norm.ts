// float64 references for LayerNorm and RMSNorm, forward and backward.

export function layerNormRef(x: Float64Array, g: Float64Array, b: Float64Array | null, rows: number, cols: number, eps: number, rms = false): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let mean = 0;
    if (!rms) {
      for (let j = 0; j < cols; j++) mean += x[o + j]!;
      mean /= cols;
    }
    let v = 0;
    for (let j = 0; j < cols; j++) v += (x[o + j]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / cols + eps);
    for (let j = 0; j < cols; j++) y[o + j] = (x[o + j]! - mean) * rstd * g[j]! + (b ? b[j]! : 0);
  }
  return y;
}

/** Gradients of sum(dy * norm(x)) by the analytic formulas, in float64. */
export function layerNormBackwardRef(dy: Float64Array, x: Float64Array, g: Float64Array, rows: number, cols: number, eps: number, rms = false) {
  const dx = new Float64Array(rows * cols);
  const dg = new Float64Array(cols);
  const db = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let mean = 0;
    if (!rms) {
      for (let j = 0; j < cols; j++) mean += x[o + j]!;
      mean /= cols;
    }
    let v = 0;
    for (let j = 0; j < cols; j++) v += (x[o + j]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / cols + eps);
    let c1 = 0;
    let c2 = 0;
    for (let j = 0; j < cols; j++) {
      const xh = (x[o + j]! - mean) * rstd;
      const dgv = dy[o + j]! * g[j]!;
      c1 += dgv;
      c2 += dgv * xh;
      dg[j] += dy[o + j]! * xh;
      db[j] += dy[o + j]!;
    }
    c1 = rms ? 0 : c1 / cols;
    c2 /= cols;
    for (let j = 0; j < cols; j++) {
      const xh = (x[o + j]! - mean) * rstd;
      dx[o + j] = rstd * (dy[o + j]! * g[j]! - c1 - xh * c2);
    }
  }
  return { dx, dg, db };
}

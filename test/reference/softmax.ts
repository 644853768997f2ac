// float64 references for softmax (additive broadcast mask, causal) and its backward.

export interface SoftmaxRefOptions {
  /** Mask values and shape; broadcast to x with numpy rules (aligned at the end). */
  mask?: { v: ArrayLike<number>; shape: readonly number[] };
  causal?: boolean;
}

/** Flat index into a tensor of shape `bshape` broadcast against an element of x at `idx`. */
function broadcastIndex(idx: readonly number[], bshape: readonly number[]): number {
  const shift = idx.length - bshape.length;
  let off = 0;
  for (let d = 0; d < bshape.length; d++) off = off * bshape[d]! + (bshape[d] === 1 ? 0 : idx[d + shift]!);
  return off;
}

/** softmax over the last dim of x (shape `shape`); a row that sees no column gives zeros. */
export function softmaxRef(x: ArrayLike<number>, shape: readonly number[], opts: SoftmaxRefOptions = {}): Float64Array {
  const cols = shape[shape.length - 1]!;
  const rows = cols === 0 ? 0 : x.length / cols;
  const sq = opts.causal ? shape[shape.length - 2]! : 0;
  const y = new Float64Array(x.length);
  const idx = new Array<number>(shape.length).fill(0);
  for (let r = 0; r < rows; r++) {
    let rem = r;
    for (let d = shape.length - 2; d >= 0; d--) {
      idx[d] = rem % shape[d]!;
      rem = Math.floor(rem / shape[d]!);
    }
    const visible = opts.causal ? Math.max(0, Math.min(cols, (r % sq) + cols - sq + 1)) : cols;
    const v = new Float64Array(visible);
    let max = -Infinity;
    for (let j = 0; j < visible; j++) {
      idx[shape.length - 1] = j;
      v[j] = x[r * cols + j]! + (opts.mask ? opts.mask.v[broadcastIndex(idx, opts.mask.shape)]! : 0);
      if (v[j]! > max) max = v[j]!;
    }
    if (visible === 0 || max === -Infinity) continue;  // zeros (a NaN or +Infinity makes the row NaN below)
    let sum = 0;
    for (let j = 0; j < visible; j++) sum += Math.exp(v[j]! - max);
    for (let j = 0; j < visible; j++) y[r * cols + j] = Math.exp(v[j]! - max) / sum;
  }
  return y;
}

/** dx = y * (dy - sum(dy * y)) per row. */
export function softmaxBackwardRef(dy: ArrayLike<number>, y: ArrayLike<number>, cols: number): Float64Array {
  const dx = new Float64Array(y.length);
  for (let o = 0; o < y.length; o += cols) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += dy[o + j]! * y[o + j]!;
    for (let j = 0; j < cols; j++) dx[o + j] = y[o + j]! * (dy[o + j]! - s);
  }
  return dx;
}

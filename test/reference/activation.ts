// float64 references for activations, bias + activation + dropout, bias + dropout + residual,
// and an independent Philox4x32-10 (Math.imul-based 32x32->64 products) for the dropout mask.

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

/** [hi, lo] of the 64-bit product of two u32, exact with 16-bit halves in float64. */
function mulhilo(a: number, b: number): [number, number] {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const mid = ah * bl + al * bh; // < 2^33
  const low = al * bl + (mid % 65536) * 65536; // < 2^33
  const hi = (ah * bh + Math.floor(mid / 65536) + Math.floor(low / 4294967296)) >>> 0;
  return [hi, Math.imul(a, b) >>> 0];
}

/** Random123's philox4x32_10: counter c[4], key k[2] (u32 words, least significant first). */
export function philox4x32_10(c: ArrayLike<number>, k: ArrayLike<number>): Uint32Array {
  let [c0, c1, c2, c3] = [c[0]! >>> 0, c[1]! >>> 0, c[2]! >>> 0, c[3]! >>> 0];
  let [k0, k1] = [k[0]! >>> 0, k[1]! >>> 0];
  for (let r = 0; r < 10; r++) {
    const [hi0, lo0] = mulhilo(0xd2511f53, c0);
    const [hi1, lo1] = mulhilo(0xcd9e8d57, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

const M32 = 0xffffffffn;
const M64 = (1n << 64n) - 1n;

/** philox(c) of seqfuse's stream: counter (c mod 2^32, c div 2^32, 0, 0), key (seed mod 2^32, seed div 2^32). */
function philoxAt(c: bigint, seed: bigint | number): Uint32Array {
  const s = BigInt(seed);
  return philox4x32_10([Number(c & M32), Number(c >> 32n), 0, 0], [Number(s & M32), Number((s >> 32n) & M32)]);
}

/** u_e of the random fills (Tensor.rand / randn; native/core/philox.h): word e mod 4 of philox(e div 4), e = offset + i. */
export function philoxWords(n: number, seed: bigint | number, offset: bigint | number = 0n): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const e = (BigInt(offset) + BigInt(i)) & M64;
    out[i] = philoxAt(e >> 2n, seed)[Number(e & 3n)]!;
  }
  return out;
}

/**
 * h_e of dropout's stream (native/core/philox.h), e = (offset + i) mod 2^64: the 16-bit half
 * e mod 2 (low half first) of word (e div 2) mod 4 of philox(e div 8).
 */
export function philoxHalves(n: number, seed: bigint | number, offset: bigint | number = 0n): Uint16Array {
  const out = new Uint16Array(n);
  let cached = -1n;
  let block: Uint32Array = new Uint32Array(4);
  for (let i = 0; i < n; i++) {
    const e = (BigInt(offset) + BigInt(i)) & M64;
    if (e >> 3n !== cached) {
      cached = e >> 3n;
      block = philoxAt(cached, seed);
    }
    const word = block[Number((e >> 1n) & 3n)]!;
    out[i] = (e & 1n ? word >>> 16 : word) & 0xffff;
  }
  return out;
}

/** Dropout's threshold t = round(float(p) * 65536) in [0, 65536] (p >= 0, so Math.round rounds like C's roundf). */
export function dropoutThreshold(p: number): number {
  return Math.min(65536, Math.max(0, Math.round(Math.fround(p) * 65536)));
}

/** keep[i] = 1 iff h_i >= t, as the kernels decide; t = 0 keeps everything. */
export function keepMask(n: number, p: number, seed: bigint | number, offset: bigint | number = 0n): Uint8Array {
  const keep = new Uint8Array(n);
  const t = dropoutThreshold(p);
  if (t === 0) return keep.fill(1);
  const h = philoxHalves(n, seed, offset);
  for (let i = 0; i < n; i++) keep[i] = h[i]! >= t ? 1 : 0;
  return keep;
}

/** The factor kept values are multiplied by: float(65536 / (65536 - t)), 0 for t = 65536. */
export function dropoutScale(p: number): number {
  const t = dropoutThreshold(p);
  return t >= 65536 ? 0 : Math.fround(65536 / (65536 - t));
}

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

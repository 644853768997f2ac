// The random streams of native/core/philox.h, written independently of the kernels:
// Philox4x32-10 (Salmon et al., SC'11; Random123) with exact 32x32->64 products in float64.

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

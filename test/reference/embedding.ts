// float64 references for embedding (lookup * scale + positions, dropout) and its backward, and
// an independent Philox4x32-10 (Salmon et al., SC'11; Random123) written with BigInt products.

const M0 = 0xd2511f53n;
const M1 = 0xcd9e8d57n;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** Philox4x32-10 of a full 4-word counter and 2-word key (Random123's round, then key bump). */
export function philox4x32(ctr: readonly number[], key: readonly number[]): number[] {
  let [c0, c1, c2, c3] = ctr.map((v) => v >>> 0) as [number, number, number, number];
  let [k0, k1] = key.map((v) => v >>> 0) as [number, number];
  for (let round = 0; round < 10; round++) {
    const p0 = M0 * BigInt(c0);
    const p1 = M1 * BigInt(c2);
    const hi0 = Number(p0 >> 32n);
    const lo0 = Number(p0 & 0xffffffffn);
    const hi1 = Number(p1 >> 32n);
    const lo1 = Number(p1 & 0xffffffffn);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/**
 * h_i of seqfuse's dropout stream (native/core/philox.h): key = (seed mod 2^32, seed div 2^32),
 * e = (offset + i) mod 2^64, counter = e div 8 split into two words; the 16-bit half e mod 2
 * (low first) of word (e div 2) mod 4.
 */
export function philoxHalf(i: bigint, seed: bigint, offset: bigint): number {
  const e = (offset + i) & 0xffffffffffffffffn;
  const c = e >> 3n;
  const key = [Number(seed & 0xffffffffn), Number((seed >> 32n) & 0xffffffffn)];
  const word = BigInt(philox4x32([Number(c & 0xffffffffn), Number(c >> 32n), 0, 0], key)[Number((e >> 1n) & 3n)]!);
  return Number((word >> (16n * (e & 1n))) & 0xffffn);
}

/** Dropout's threshold: round(float(p) * 65536), half away from zero. */
export function threshold(p: number): number {
  return Math.min(65536, Math.max(0, Math.round(Math.fround(p) * 65536)));
}

/** Dropout keeps element i iff h_i >= t (t = 0: always). */
export function keeps(i: bigint, p: number, seed: bigint, offset: bigint): boolean {
  const t = threshold(p);
  return t === 0 || philoxHalf(i, seed, offset) >= t;
}

export interface EmbeddingRefOptions {
  positions?: ArrayLike<number>;
  positionOffset?: number;
  scale?: number;
  paddingIdx?: number;
  dropout?: number;
  seed?: bigint;
  offset?: bigint;
}

/** The factor dropout applies to element i: 0 or float(65536 / (65536 - t)), as the kernel computes it. */
function dropFactor(i: number, o: EmbeddingRefOptions): number {
  const t = threshold(o.dropout ?? 0);
  if (t === 0) return 1;
  return keeps(BigInt(i), o.dropout!, o.seed ?? 0n, o.offset ?? 0n) ? Math.fround(65536 / (65536 - t)) : 0;
}

/** out [tokens, dim] for ids [tokens] in sequences of `seq` tokens. */
export function embeddingRef(ids: ArrayLike<number>, table: ArrayLike<number>, dim: number, seq: number, o: EmbeddingRefOptions = {}): Float64Array {
  const out = new Float64Array(ids.length * dim);
  const scale = o.scale ?? 1;
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id === o.paddingIdx) continue;
    const p = (t % seq) + (o.positionOffset ?? 0);
    for (let j = 0; j < dim; j++) {
      const v = table[id * dim + j]! * scale + (o.positions ? o.positions[p * dim + j]! : 0);
      out[t * dim + j] = v * dropFactor(t * dim + j, o);
    }
  }
  return out;
}

/** dtable [vocab, dim] and dpositions [numPositions, dim] (when numPositions > 0). */
export function embeddingBackwardRef(dOut: ArrayLike<number>, ids: ArrayLike<number>, vocab: number, dim: number, seq: number,
  numPositions: number, o: EmbeddingRefOptions = {}) {
  const dtable = new Float64Array(vocab * dim);
  const dpositions = new Float64Array(numPositions * dim);
  const scale = o.scale ?? 1;
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id === o.paddingIdx) continue;
    const p = (t % seq) + (o.positionOffset ?? 0);
    for (let j = 0; j < dim; j++) {
      const g = dOut[t * dim + j]! * dropFactor(t * dim + j, o);
      dtable[id * dim + j] += g * scale;
      if (numPositions) dpositions[p * dim + j] += g;
    }
  }
  return { dtable, dpositions };
}

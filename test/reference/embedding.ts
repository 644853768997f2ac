// float64 references for embedding (lookup * scale + positions, dropout) and its backward.
import { dropoutScale, dropoutThreshold, keepMask } from './philox.js';

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
  const p = o.dropout ?? 0;
  if (dropoutThreshold(p) === 0) return 1;
  return keepMask(1, p, o.seed ?? 0n, (o.offset ?? 0n) + BigInt(i))[0] ? dropoutScale(p) : 0;
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

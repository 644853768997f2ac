// Token embedding lookup * scale + positions, then dropout, forward and backward
// (native/ops/embedding.h).
import { fail } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { defineOp, intOpt, numberOpt, optionsArg, optTensorArg, outArg, type Prepared, offsetOpt, seedOpt, tensorArg } from './common.js';

export interface EmbeddingOptions {
  /** Position table [numPositions, dim] (same dtype as table): token (b, s) adds row s + positionOffset. */
  positions?: Tensor | null;
  /** First position row used (default 0), e.g. the number of tokens already decoded. */
  positionOffset?: number;
  /** Multiplies the table row before the position is added (default 1; Transformers use sqrt(dim)). */
  scale?: number;
  /** Tokens with this id give a zero row (no position added) and no gradient. */
  paddingIdx?: number;
  /** Dropout probability in [0, 1] (default 0); kept values are scaled by 65536 / (65536 - t), t = round(p * 65536) (docs/api.md). */
  dropout?: number;
  /** Philox seed; required when dropout > 0. */
  seed?: number | bigint;
  /** Philox element offset (default 0): out[t, j] uses element offset + t * dim + j. */
  offset?: number | bigint;
  /** Write the result here instead of a new tensor ([...ids.shape, dim], the table's dtype). */
  out?: Tensor;
}

export interface EmbeddingBackwardOptions {
  /** Rows of the table (dtable is [vocabSize, dim]). */
  vocabSize: number;
  scale?: number;
  paddingIdx?: number;
  /** The forward's dropout, seed and offset: the mask is recomputed from them. */
  dropout?: number;
  seed?: number | bigint;
  offset?: number | bigint;
  /** Rows of the position table: when given, dpositions [numPositions, dim] is returned too. */
  numPositions?: number;
  positionOffset?: number;
  /**
   * Accumulate into these gradients ([vocabSize, dim] and [numPositions, dim], dOut's dtype)
   * instead of new zeroed ones: a training loop keeps one across steps and micro-batches and
   * skips allocating (and page-faulting) a vocabulary-sized table per call.
   */
  dtable?: Tensor;
  dpositions?: Tensor;
}

export interface EmbeddingGrads {
  /** [vocabSize, dim], dOut's dtype; rows of ids that did not occur (and of paddingIdx) are zero. */
  dtable: Tensor;
  /** [numPositions, dim], only when numPositions was given. */
  dpositions?: Tensor;
}

const MAX_INT = Number.MAX_SAFE_INTEGER;

function idsArg(ids: unknown, op: string): Tensor {
  const t = tensorArg(ids, op, 'ids');
  if (t.dtype !== 'i32') fail('ERR_DTYPE', `${op}: expected i32 tensor for ids but received ${t.dtype}`);
  if (t.ndim < 1) fail('ERR_SHAPE', `${op}: expected ids of shape [batch, seq] or [tokens] but received []`);
  return t;
}

/** Scalar options shared by forward and backward, in the order the addon takes them. */
function common(o: Partial<EmbeddingOptions>, op: string, vocab: number) {
  const scale = numberOpt(o.scale, op, 'scale', 1, -3.4e38, 3.4e38);
  const paddingIdx = o.paddingIdx === undefined ? -1 : intOpt(o.paddingIdx, op, 'paddingIdx', -1, 0, vocab - 1);
  const dropout = numberOpt(o.dropout, op, 'dropout', 0, 0, 1);
  const seed = seedOpt(o.seed, op, dropout > 0);
  const offset = offsetOpt(o.offset, op);
  const positionOffset = intOpt(o.positionOffset, op, 'positionOffset', 0, 0, MAX_INT);
  return { positionOffset, scale, paddingIdx, dropout, seed, offset };
}

/**
 * out[t] = dropout(table[ids[t]] * scale + positions[(t mod seq) + positionOffset]) for ids
 * [batch, seq] (or [tokens], one sequence); returns [...ids.shape, dim]. Every id must lie in
 * [0, vocab): an id outside gives ERR_ARG naming it, before any memory is read.
 */
export const embedding = defineOp((ids: Tensor, table: Tensor, opts?: EmbeddingOptions): Prepared<Tensor> => {
  const op = 'embedding';
  idsArg(ids, op);
  tensorArg(table, op, 'table');
  if (table.ndim !== 2) fail('ERR_SHAPE', `${op}: expected table of shape [vocab, dim] but received [${table.shape.join(', ')}]`);
  const o = optionsArg<EmbeddingOptions>(opts, op);
  const positions = optTensorArg(o.positions, op, 'positions');
  const c = common(o, op, table.shape[0]!);
  const fresh: Tensor[] = [];
  const out = outArg(o.out, op, [...ids.shape, table.shape[1]!], table.dtype, table.device, fresh);
  return {
    run: (a) => native.embedding_fwd(ids, table, positions, out, c.positionOffset, c.scale, c.paddingIdx, c.dropout, c.seed,
      c.offset, a),
    result: out,
    fresh,
  };
});

/**
 * Gradients of embedding: dtable[id] = sum over the tokens with that id of
 * dropout(dOut[t]) * scale, dpositions[s + positionOffset] = sum over the batch of
 * dropout(dOut[b, s]); padding tokens contribute nothing. Sums run in f32 in token order,
 * so the result is deterministic and independent of the thread count.
 */
export const embeddingBackward = defineOp((dOut: Tensor, ids: Tensor, opts: EmbeddingBackwardOptions): Prepared<EmbeddingGrads> => {
  const op = 'embeddingBackward';
  tensorArg(dOut, op, 'dOut');
  idsArg(ids, op);
  if (opts === undefined) fail('ERR_ARG', `${op}: expected options with vocabSize`);
  const o = optionsArg<EmbeddingBackwardOptions>(opts, op);
  if (o.vocabSize === undefined) fail('ERR_ARG', `${op}: expected options.vocabSize (the number of table rows)`);
  const vocab = intOpt(o.vocabSize, op, 'vocabSize', 0, 0, MAX_INT);
  const numPositions = o.numPositions === undefined ? null : intOpt(o.numPositions, op, 'numPositions', 0, 0, MAX_INT);
  const c = common(o, op, vocab);
  if (dOut.ndim !== ids.ndim + 1)
    fail('ERR_SHAPE', `${op}: expected dOut of shape [${[...ids.shape, 'dim'].join(', ')}] but received [${dOut.shape.join(', ')}]`);
  const dim = dOut.shape[dOut.ndim - 1]!;
  const fresh: Tensor[] = [];
  const accumulator = (given: unknown, name: string, rows: number): Tensor => {
    if (given !== undefined) {
      const t = tensorArg(given, op, name);  // dtype and device are checked in C++
      if (t.ndim !== 2 || t.shape[0] !== rows || t.shape[1] !== dim)
        fail('ERR_SHAPE', `${op}: expected ${name} of shape [${rows}, ${dim}] but received [${t.shape.join(', ')}]`);
      t._storage.version++;  // written in place: caches derived from its data go stale
      return t;
    }
    const t = Tensor.zeros([rows, dim], { dtype: dOut.dtype, device: dOut.device });
    fresh.push(t);
    return t;
  };
  const dtable = accumulator(o.dtable, 'dtable', vocab);
  if (o.dpositions !== undefined && numPositions === null)
    fail('ERR_ARG', `${op}: options.dpositions needs options.numPositions`);
  const dpositions = numPositions === null ? null : accumulator(o.dpositions, 'dpositions', numPositions);
  return {
    run: (a) => native.embedding_bwd(dOut, ids, dtable, dpositions, c.positionOffset, c.scale, c.paddingIdx, c.dropout, c.seed,
      c.offset, a),
    result: dpositions ? { dtable, dpositions } : { dtable },
    fresh,
  };
});

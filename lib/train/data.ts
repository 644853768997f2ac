// TokenBatcher: random windows of a token stream as next-token batches, from a seeded generator
// whose state (two numbers) is part of a checkpoint, so a resumed run sees the same batches.
import { describe, fail } from '../errors.js';
import { intOpt, optionsArg } from '../ops/common.js';
import { Tensor } from '../tensor.js';

export interface Batch {
  /** i32 [batch, seq] inputs. */
  ids: Tensor;
  /** i32 [batch, seq] next tokens (ignoreIndex where there is none). */
  targets: Tensor;
}

/** A source of batches whose position can be saved and restored (Trainer checkpoints it). */
export interface DataSource {
  next(): Batch;
  /** A JSON-serializable snapshot of the position. */
  state(): unknown;
  setState(state: unknown): void;
}

export interface TokenBatcherOptions {
  batchSize: number;
  seqLen: number;
  /** Seed of the window positions (default 0). */
  seed?: number;
}

/** Windows [o, o + seqLen] at uniformly random offsets o (with replacement). */
export class TokenBatcher implements DataSource {
  readonly batchSize: number;
  readonly seqLen: number;
  private readonly _tokens: Int32Array;
  private _rng: number;
  private _batches = 0;

  constructor(tokens: ArrayLike<number>, opts: TokenBatcherOptions) {
    const op = 'TokenBatcher';
    const o = optionsArg<TokenBatcherOptions>(opts, op);
    this.batchSize = intOpt(o.batchSize, op, 'batchSize', NaN, 1, 2 ** 24);
    this.seqLen = intOpt(o.seqLen, op, 'seqLen', NaN, 1, 2 ** 24);
    if (!tokens || typeof (tokens as ArrayLike<number>).length !== 'number')
      fail('ERR_ARG', `${op}: expected tokens as an array of integers but received ${describe(tokens)}`);
    if (tokens.length < this.seqLen + 1)
      fail('ERR_ARG', `${op}: expected at least seqLen + 1 = ${this.seqLen + 1} tokens but received ${tokens.length}`);
    this._tokens = Int32Array.from(tokens);
    this._rng = (intOpt(o.seed, op, 'seed', 0, 0, 2 ** 32 - 1) ^ 0x9e3779b9) >>> 0 || 1;
  }

  /** Batches produced so far. */
  get batches(): number {
    return this._batches;
  }

  next(): Batch {
    const B = this.batchSize, S = this.seqLen;
    const ids = new Int32Array(B * S);
    const targets = new Int32Array(B * S);
    const span = this._tokens.length - S;  // offsets [0, span)
    for (let b = 0; b < B; b++) {
      const o = Math.floor(this._uniform() * span);
      ids.set(this._tokens.subarray(o, o + S), b * S);
      targets.set(this._tokens.subarray(o + 1, o + S + 1), b * S);
    }
    this._batches++;
    return { ids: Tensor.from(ids, [B, S], { dtype: 'i32' }), targets: Tensor.from(targets, [B, S], { dtype: 'i32' }) };
  }

  state(): { rng: number; batches: number } {
    return { rng: this._rng, batches: this._batches };
  }

  setState(state: unknown): void {
    const s = state as { rng?: unknown; batches?: unknown } | null;
    if (!s || typeof s !== 'object' || !Number.isInteger(s.rng) || !Number.isInteger(s.batches))
      fail('ERR_ARG', `TokenBatcher.setState: expected {rng, batches} integers but received ${describe(state)}`);
    this._rng = (s.rng as number) >>> 0 || 1;
    this._batches = s.batches as number;
  }

  /** xorshift32, in [0, 1). */
  private _uniform(): number {
    let x = this._rng;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this._rng = x;
    return x / 4294967296;
  }
}

// Shared plumbing of the op wrappers: argument checks that need JS knowledge (instanceof,
// disposed, option types) and the sync/async pair every op exposes. Shape and dtype rules are
// checked once, in C++, with messages in the same style.
import type { Device, DType } from '../dtype.js';
import { describe, fail } from '../errors.js';
import { Tensor } from '../tensor.js';

/** The largest finite f32: the bound of scalar options that kernels take in f32. */
export const F32_MAX = 3.4028234663852886e38;

/** An op callable synchronously, with `.async` running the same work on the libuv pool. */
export type Op<A extends unknown[], R> = ((...args: A) => R) & { async: (...args: A) => Promise<R> };

/**
 * What a prepared call needs: the native call and the result; `fresh` are outputs we allocated;
 * `done` (optional) fills the result's plain fields from what the native call wrote.
 */
export interface Prepared<R> {
  run: (async: boolean) => undefined | Promise<void>;
  result: R;
  fresh: Tensor[];
  done?: () => void;
}

export function defineOp<A extends unknown[], R>(prepare: (...args: A) => Prepared<R>): Op<A, R> {
  const sync = (...args: A): R => {
    const p = prepare(...args);
    try {
      p.run(false);
    } catch (e) {
      for (const t of p.fresh) t.dispose();
      throw e;
    }
    p.done?.();
    return p.result;
  };
  const async = async (...args: A): Promise<R> => {
    const p = prepare(...args);
    try {
      await p.run(true);
    } catch (e) {
      for (const t of p.fresh) t.dispose();
      throw e;
    }
    p.done?.();
    return p.result;
  };
  return Object.assign(sync, { async });
}

export function tensorArg(t: unknown, op: string, name: string): Tensor {
  if (!(t instanceof Tensor)) fail('ERR_ARG', `${op}: expected a Tensor for ${name} but received ${describe(t)}`);
  if (t.disposed) fail('ERR_DISPOSED', `${op}: ${name} was disposed`);
  return t;
}

export function optTensorArg(t: unknown, op: string, name: string): Tensor | null {
  return t === undefined || t === null ? null : tensorArg(t, op, name);
}

export function optionsArg<O extends object>(o: unknown, op: string): Partial<O> {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object' || Array.isArray(o)) fail('ERR_ARG', `${op}: expected an options object but received ${describe(o)}`);
  return o as Partial<O>;
}

export function numberOpt(v: unknown, op: string, name: string, dflt: number, lo: number, hi: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v >= lo && v <= hi))
    fail('ERR_ARG', `${op}: expected ${name} to be a number in [${lo}, ${hi}] but received ${describe(v)}`);
  return v;
}

export function intOpt(v: unknown, op: string, name: string, dflt: number, lo: number, hi: number): number {
  const n = numberOpt(v, op, name, dflt, lo, hi);
  if (!Number.isInteger(n)) fail('ERR_ARG', `${op}: expected ${name} to be an integer but received ${describe(v)}`);
  return n;
}

export function boolOpt(v: unknown, op: string, name: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail('ERR_ARG', `${op}: expected ${name} to be a boolean but received ${describe(v)}`);
  return v;
}

export function enumOpt<E extends string>(v: unknown, op: string, name: string, dflt: E, allowed: readonly E[]): E {
  if (v === undefined) return dflt;
  if (!allowed.includes(v as E))
    fail('ERR_ARG', `${op}: expected ${name} to be one of ${allowed.map((a) => `'${a}'`).join(', ')} but received ${describe(v)}`);
  return v as E;
}

/** A Philox seed: integer Number in [0, 2^53) or BigInt in [0, 2^64). Required when p > 0. */
export function seedOpt(v: unknown, op: string, required: boolean): number | bigint {
  if (v === undefined) {
    if (required) fail('ERR_ARG', `${op}: dropout > 0 needs a seed (an integer), so the mask can be recomputed in backward`);
    return 0;
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 2n ** 64n) fail('ERR_ARG', `${op}: expected seed in [0, 2^64) but received ${v}`);
    return v;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    fail('ERR_ARG', `${op}: expected seed to be a non-negative integer but received ${describe(v)}`);
  return v;
}

/** A Philox element offset: integer Number in [0, 2^53) or BigInt in [0, 2^64); default 0. */
export function offsetOpt(v: unknown, op: string): number | bigint {
  if (v === undefined) return 0;
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 2n ** 64n) fail('ERR_ARG', `${op}: expected offset in [0, 2^64) but received ${v}`);
    return v;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    fail('ERR_ARG', `${op}: expected offset to be a non-negative integer but received ${describe(v)}`);
  return v;
}

/** The caller's `out` tensor, or a new one of the given shape/dtype on `device` (then listed in `fresh`). */
export function outArg(out: unknown, op: string, shape: readonly number[], dtype: DType, device: Device, fresh: Tensor[],
  name = 'out'): Tensor {
  if (out !== undefined) return tensorArg(out, op, name);
  const t = Tensor.empty(shape, { dtype, device });
  fresh.push(t);
  return t;
}

/** The last dim of a tensor, and the product of the others. */
export function rowsCols(t: Tensor): [number, number] {
  const cols = t.shape.length ? t.shape[t.shape.length - 1]! : 1;
  return [cols === 0 ? 0 : t.numel / cols, cols];
}

/** Stable error codes carried by every {@link SeqfuseError}. */
export type ErrorCode =
  | 'ERR_SHAPE'
  | 'ERR_DTYPE'
  | 'ERR_DEVICE'
  | 'ERR_DISPOSED'
  | 'ERR_ARG'
  | 'ERR_UNSUPPORTED'
  | 'ERR_OOM'
  | 'ERR_BACKEND'
  | 'ERR_IO';

/**
 * The one error type seqfuse throws (or rejects with). `code` is stable across versions;
 * `message` names the function, the argument, what was expected and what was received.
 */
export class SeqfuseError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'SeqfuseError';
    this.code = code;
  }
}

/** Throws a SeqfuseError; used by argument checks. */
export function fail(code: ErrorCode, message: string): never {
  throw new SeqfuseError(code, message);
}

/** A short description of a JS value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `array(${v.length})`;
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  if (typeof v === 'string') return `string '${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  return typeof v;
}

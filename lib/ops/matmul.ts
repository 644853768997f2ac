// gemm and linear (native/ops/matmul.h), and their backward passes built from gemm calls.
// linear keeps oneDNN's reordered copy of w in w's storage (`storage.cache`, a native weight
// cache); it is dropped when the storage's version moves, i.e. after `w.data` was read or an op
// wrote w, so the next call reorders the new values. Writes through a typed array taken from
// `w.data` before the last linear call are not seen: read `w.data` again to write.
import { type Device, type DType, DTYPE_SIZE } from '../dtype.js';
import { describe, fail } from '../errors.js';
import { native, type NativeTensor } from '../native.js';
import { type DeviceBuffer, dropCache, Tensor } from '../tensor.js';
import { boolOpt, defineOp, enumOpt, F32_MAX, numberOpt, optionsArg, optTensorArg, outArg, type Prepared, tensorArg } from './common.js';

export type LinearActivation = 'none' | 'relu' | 'gelu' | 'gelu_tanh' | 'silu';
const ACTIVATIONS: readonly LinearActivation[] = ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'];
// codes of native/ops/activation.h Activation
const ACT_CODE: Record<LinearActivation, number> = { none: 0, relu: 1, gelu: 2, gelu_tanh: 3, silu: 4 };

export interface GemmOptions {
  /** Read a as its transpose: a is [K, M] (default false). */
  transA?: boolean;
  /** Read b as its transpose: b is [N, K] (default false). */
  transB?: boolean;
  /** Scales op(a)·op(b) (default 1). */
  alpha?: number;
  /** Scales c (default 1 with c, as torch.addmm; with beta 0, c is not read, so NaNs in it do not spread). */
  beta?: number;
  /** [M, N], added as beta·c. May be `out` itself to accumulate in place. */
  c?: Tensor | null;
  /** Write the result here instead of a new tensor ([M, N], dtype of a). */
  out?: Tensor;
}

export interface LinearOptions {
  /** Fused after the bias: 'relu', 'gelu' (erf form, as PyTorch), 'gelu_tanh', 'silu' (default 'none'). */
  activation?: LinearActivation;
  /** [..., N], added after the activation. May be `out` itself (in-place residual). */
  residual?: Tensor | null;
  /** Write the result here instead of a new tensor ([..., N], dtype of x). */
  out?: Tensor;
}

export interface GemmInt8Options {
  /** Write the product here instead of a new tensor ([M, N], i32). */
  out?: Tensor;
}

export interface LinearInt8Options {
  /** Fused after the bias: as in `linear` (default 'none'). */
  activation?: LinearActivation;
  /** [..., N] f32, added after the activation. May be `out` itself when the output is f32. */
  residual?: Tensor | null;
  /** Requantize the output: y as i8 with this clipMax (the next layer's input clip). Default: f32 output. */
  outClip?: number;
  /** Write the result here instead of a new tensor ([..., N], f32, or i8 with `outClip`). */
  out?: Tensor;
}

export interface LinearBackwardOptions {
  /** Also return db, the bias gradient (default true). */
  hasBias?: boolean;
}

export interface LinearGrads {
  /** [..., K], like x. */
  dx: Tensor;
  /** [N, K], like w. */
  dw: Tensor;
  /** [N]; only with `hasBias` (the default). */
  db?: Tensor;
}

export interface GemmBackwardOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
}

export interface GemmGrads {
  /** Shaped like a (so [K, M] with transA). */
  da: Tensor;
  /** Shaped like b (so [N, K] with transB). */
  db: Tensor;
}

/** A 2-D view of t's data for the addon (no tracked Tensor is made). */
function view(t: Tensor, rows: number, cols: number): NativeTensor {
  return Tensor._wrapTemp(t._data!, [rows, cols], t.dtype, t.device);
}

/** The ones of ones() on CUDA, per dtype: one device buffer, grown when a call needs more rows. */
const deviceOnes = new Map<DType, { buf: DeviceBuffer; rows: number }>();

/**
 * [rows, 1] of ones in `dtype` on `device`: db = onesᵀ · dy is a gemm. On CUDA a view of a kept
 * buffer (no upload and wait per call; an op in flight holds the buffer it was given).
 */
function ones(rows: number, dtype: DType, device: Device): NativeTensor {
  const one = dtype === 'bf16' ? 0x3f80 : dtype === 'f16' ? 0x3c00 : 1;
  const fill = (n: number) => (dtype === 'f32' ? new Float32Array(n).fill(1) : new Uint16Array(n).fill(one));
  if (device === 'cpu') return Tensor._wrapTemp(fill(rows), [rows, 1], dtype);
  let kept = deviceOnes.get(dtype);
  if (!kept || kept.rows < rows) {
    const n = Math.max(rows, 2 * (kept?.rows ?? 0));
    const buf = native.device_buffer(n * DTYPE_SIZE[dtype], 'linearBackward');
    native.copy(Tensor._wrapTemp(fill(n), [n], dtype), Tensor._wrapTemp(buf, [n], dtype, device));
    if (kept) native.device_buffer_release(kept.buf);
    kept = { buf, rows: n };
    deviceOnes.set(dtype, kept);
  }
  return Tensor._wrapTemp(kept.buf, [rows, 1], dtype, device);
}

/** Our output writes to `t`: caches derived from its data (e.g. when it is a weight) go stale. */
export function written(t: Tensor): void {
  t._storage.version++;
}

/** The native weight cache of w's data, made anew when the data may have changed since. */
export function weightCache(w: Tensor): unknown {
  const s = w._storage;
  if (s.cache === undefined || s.cacheVersion !== s.version) {
    dropCache(s);
    s.cache = native.weight_cache_new();
    s.cacheVersion = s.version;
  }
  return s.cache;
}

/** Runs native calls one after another, synchronously or chained on the libuv pool. */
function sequence(calls: ((async: boolean) => undefined | Promise<void>)[], async: boolean): undefined | Promise<void> {
  if (!async) {
    for (const c of calls) c(false);
    return undefined;
  }
  return (async () => {
    for (const c of calls) await c(true);
  })();
}

function matrix(t: Tensor, op: string, name: string): [number, number] {
  if (t.ndim !== 2) fail('ERR_SHAPE', `${op}: expected a 2-D tensor for ${name} but received shape [${t.shape.join(', ')}]`);
  return [t.shape[0]!, t.shape[1]!];
}

function sameDType(t: Tensor, ref: Tensor, op: string, name: string, refName: string): void {
  if (t.dtype !== ref.dtype) fail('ERR_DTYPE', `${op}: expected ${ref.dtype} tensor for ${name} (the dtype of ${refName}) but received ${t.dtype}`);
}

function prepareGemm(a: Tensor, b: Tensor, opts: GemmOptions | undefined): Prepared<Tensor> {
  const op = 'gemm';
  tensorArg(a, op, 'a');
  tensorArg(b, op, 'b');
  const o = optionsArg<GemmOptions>(opts, op);
  const transA = boolOpt(o.transA, op, 'transA', false);
  const transB = boolOpt(o.transB, op, 'transB', false);
  const alpha = numberOpt(o.alpha, op, 'alpha', 1, -F32_MAX, F32_MAX);
  const c = optTensorArg(o.c, op, 'c');
  const beta = numberOpt(o.beta, op, 'beta', c ? 1 : 0, -F32_MAX, F32_MAX);
  const [ar, ac] = matrix(a, op, 'a');
  const [br, bc] = matrix(b, op, 'b');
  const fresh: Tensor[] = [];
  const out = outArg(o.out, op, [transA ? ac : ar, transB ? br : bc], a.dtype, a.device, fresh);
  if (o.out !== undefined) written(out);
  return { run: (as) => native.gemm(a, b, c, out, transA, transB, alpha, beta, as), result: out, fresh };
}

function prepareLinear(x: Tensor, w: Tensor, bias: Tensor | null | undefined, opts: LinearOptions | undefined): Prepared<Tensor> {
  const op = 'linear';
  tensorArg(x, op, 'x');
  tensorArg(w, op, 'w');
  const b = optTensorArg(bias, op, 'bias');
  const o = optionsArg<LinearOptions>(opts, op);
  const act = enumOpt(o.activation, op, 'activation', 'none', ACTIVATIONS);
  const residual = optTensorArg(o.residual, op, 'residual');
  if (x.ndim < 1) fail('ERR_SHAPE', `${op}: expected x with at least 1 dims but received shape []`);
  const k = x.shape[x.ndim - 1]!;
  if (w.ndim !== 2 || w.shape[1] !== k)
    fail('ERR_SHAPE', `${op}: expected w of shape [N, ${k}] (in-features of x) but received [${w.shape.join(', ')}]`);
  const fresh: Tensor[] = [];
  const out = outArg(o.out, op, [...x.shape.slice(0, -1), w.shape[0]!], x.dtype, x.device, fresh);
  if (o.out !== undefined) written(out);
  const cache = weightCache(w);
  return { run: (as) => native.linear_fwd(x, w, b, residual, out, ACT_CODE[act], cache, as), result: out, fresh };
}

function clipNumber(v: unknown, op: string, name: string): number {
  if (typeof v !== 'number' || !(v > 0 && v <= F32_MAX)) fail('ERR_ARG', `${op}: expected ${name} to be a finite number > 0 but received ${describe(v)}`);
  return v;
}

/** t must have `dtype` (the native int8 entry takes i32/f32/i8 outputs alike, so the op's intent is checked here). */
function tensorDType(t: Tensor, dtype: DType, op: string, name: string): void {
  if (t.dtype !== dtype) fail('ERR_DTYPE', `${op}: expected ${dtype} tensor for ${name} but received ${t.dtype}`);
}

function prepareGemmInt8(a: Tensor, b: Tensor, opts: GemmInt8Options | undefined): Prepared<Tensor> {
  const op = 'gemmInt8';
  tensorArg(a, op, 'a');
  tensorArg(b, op, 'b');
  const o = optionsArg<GemmInt8Options>(opts, op);
  const [m] = matrix(a, op, 'a');
  const [n] = matrix(b, op, 'b');
  tensorDType(a, 'i8', op, 'a');
  tensorDType(b, 'i8', op, 'b');
  const fresh: Tensor[] = [];
  const out = outArg(o.out, op, [m, n], 'i32', a.device, fresh);
  if (o.out !== undefined) {
    tensorDType(out, 'i32', op, 'out (the exact product)');
    written(out);
  }
  return { run: (as) => native.linear_i8(a, b, 1, 1, null, null, out, 0, null, weightCache(b), as, true), result: out, fresh };
}

function prepareLinearInt8(x: Tensor, w: Tensor, xClip: number, wClip: number | Tensor, bias: Tensor | null | undefined, opts: LinearInt8Options | undefined): Prepared<Tensor> {
  const op = 'linearInt8';
  tensorArg(x, op, 'x');
  tensorArg(w, op, 'w');
  clipNumber(xClip, op, 'xClip');
  const wc = typeof wClip === 'number' ? clipNumber(wClip, op, 'wClip') : tensorArg(wClip, op, 'wClip');
  const b = optTensorArg(bias, op, 'bias');
  const o = optionsArg<LinearInt8Options>(opts, op);
  const act = enumOpt(o.activation, op, 'activation', 'none', ACTIVATIONS);
  const residual = optTensorArg(o.residual, op, 'residual');
  const outClip = o.outClip === undefined ? null : clipNumber(o.outClip, op, 'outClip');
  if (x.ndim < 1) fail('ERR_SHAPE', `${op}: expected x with at least 1 dims but received shape []`);
  if (w.ndim !== 2) fail('ERR_SHAPE', `${op}: expected w of shape [N, ${x.shape[x.ndim - 1]}] (in-features of x) but received [${w.shape.join(', ')}]`);
  const fresh: Tensor[] = [];
  const dtype = outClip === null ? 'f32' : 'i8';
  const out = outArg(o.out, op, [...x.shape.slice(0, -1), w.shape[0]!], dtype, x.device, fresh);
  if (o.out !== undefined) {
    tensorDType(out, dtype, op, outClip === null ? 'out (no outClip: f32 output)' : 'out (outClip: requantized output)');
    written(out);
  }
  const cache = weightCache(w);
  return { run: (as) => native.linear_i8(x, w, xClip, wc, b, residual, out, ACT_CODE[act], outClip, cache, as, false), result: out, fresh };
}

function prepareLinearBackward(dy: Tensor, x: Tensor, w: Tensor, opts: LinearBackwardOptions | undefined): Prepared<LinearGrads> {
  const op = 'linearBackward';
  tensorArg(dy, op, 'dy');
  tensorArg(x, op, 'x');
  tensorArg(w, op, 'w');
  const o = optionsArg<LinearBackwardOptions>(opts, op);
  const hasBias = boolOpt(o.hasBias, op, 'hasBias', true);
  if (x.ndim < 1) fail('ERR_SHAPE', `${op}: expected x with at least 1 dims but received shape []`);
  const k = x.shape[x.ndim - 1]!;
  if (w.ndim !== 2 || w.shape[1] !== k)
    fail('ERR_SHAPE', `${op}: expected w of shape [N, ${k}] (in-features of x) but received [${w.shape.join(', ')}]`);
  const n = w.shape[0]!;
  const yShape = [...x.shape.slice(0, -1), n];
  if (dy.ndim !== yShape.length || dy.shape.some((s, i) => s !== yShape[i]))
    fail('ERR_SHAPE', `${op}: expected dy of shape [${yShape.join(', ')}] (the output of linear(x, w)) but received [${dy.shape.join(', ')}]`);
  sameDType(dy, x, op, 'dy', 'x');
  sameDType(w, x, op, 'w', 'x');
  const m = x.shape.slice(0, -1).reduce((p, s) => p * s, 1);
  const fresh: Tensor[] = [];
  const dx = outArg(undefined, op, x.shape, x.dtype, x.device, fresh);
  const dw = outArg(undefined, op, w.shape, w.dtype, w.device, fresh);
  const db = hasBias ? outArg(undefined, op, [n], w.dtype, w.device, fresh) : null;
  const dy2 = view(dy, m, n);
  const x2 = view(x, m, k);
  // dx [M,K] = dy [M,N] · w [N,K];  dw [N,K] = dyᵀ · x;  db [1,N] = onesᵀ [1,M] · dy
  const calls = [
    (as: boolean) => native.gemm(dy2, w, null, view(dx, m, k), false, false, 1, 0, as),
    (as: boolean) => native.gemm(dy2, x2, null, dw, true, false, 1, 0, as),
  ];
  if (db) {
    const ones1 = ones(m, x.dtype, x.device);
    calls.push((as: boolean) => native.gemm(ones1, dy2, null, view(db, 1, n), true, false, 1, 0, as));
  }
  return { run: (as) => sequence(calls, as), result: db ? { dx, dw, db } : { dx, dw }, fresh };
}

function prepareGemmBackward(dOut: Tensor, a: Tensor, b: Tensor, opts: GemmBackwardOptions | undefined): Prepared<GemmGrads> {
  const op = 'gemmBackward';
  tensorArg(dOut, op, 'dOut');
  tensorArg(a, op, 'a');
  tensorArg(b, op, 'b');
  const o = optionsArg<GemmBackwardOptions>(opts, op);
  const transA = boolOpt(o.transA, op, 'transA', false);
  const transB = boolOpt(o.transB, op, 'transB', false);
  const alpha = numberOpt(o.alpha, op, 'alpha', 1, -F32_MAX, F32_MAX);
  const [ar, ac] = matrix(a, op, 'a');
  const [br, bc] = matrix(b, op, 'b');
  const [m, k] = transA ? [ac, ar] : [ar, ac];
  const [bk, n] = transB ? [bc, br] : [br, bc];
  if (bk !== k) fail('ERR_SHAPE', `${op}: op(a) is [${m}, ${k}] but op(b) is [${bk}, ${n}]: their K differ`);
  if (dOut.ndim !== 2 || dOut.shape[0] !== m || dOut.shape[1] !== n)
    fail('ERR_SHAPE', `${op}: expected dOut of shape [${m}, ${n}] (the output of gemm(a, b)) but received [${dOut.shape.join(', ')}]`);
  sameDType(dOut, a, op, 'dOut', 'a');
  sameDType(b, a, op, 'b', 'a');
  const fresh: Tensor[] = [];
  const da = outArg(undefined, op, a.shape, a.dtype, a.device, fresh);
  const db = outArg(undefined, op, b.shape, b.dtype, b.device, fresh);
  // d op(a) = alpha · dOut · op(b)ᵀ  [M,K];  d op(b) = alpha · op(a)ᵀ · dOut  [K,N]; a transposed
  // operand gets the transpose of its gradient, written directly by swapping the product.
  const calls = [
    transA
      ? (as: boolean) => native.gemm(b, dOut, null, da, transB, true, alpha, 0, as)     // da [K,M] = op(b) · dOutᵀ
      : (as: boolean) => native.gemm(dOut, b, null, da, false, !transB, alpha, 0, as),  // da [M,K] = dOut · op(b)ᵀ
    transB
      ? (as: boolean) => native.gemm(dOut, a, null, db, true, transA, alpha, 0, as)     // db [N,K] = dOutᵀ · op(a)
      : (as: boolean) => native.gemm(a, dOut, null, db, !transA, false, alpha, 0, as),  // db [K,N] = op(a)ᵀ · dOut
  ];
  return { run: (as) => sequence(calls, as), result: { da, db }, fresh };
}

/** out [M, N] = alpha · op(a) · op(b) + beta · c, with op(a) [M, K] and op(b) [K, N] (2-D, f32/bf16/f16). */
export const gemm = defineOp((a: Tensor, b: Tensor, opts?: GemmOptions) => prepareGemm(a, b, opts));

/**
 * y = act(x · wᵀ + bias) + residual, fused in one product. x [..., K], w [N, K] (PyTorch layout),
 * bias [N], residual [..., N] → y [..., N].
 */
export const linear = defineOp((x: Tensor, w: Tensor, bias?: Tensor | null, opts?: LinearOptions) => prepareLinear(x, w, bias, opts));

/**
 * Gradients of the affine part y = x · wᵀ + bias: dx = dy · w, dw = dyᵀ · x (over all leading
 * dims), db = Σ dy. When the forward fused an activation or residual, pass the gradient with
 * respect to the pre-activation as dy (apply the activation's backward first, e.g. with the
 * activation backward ops); the residual's gradient is dy itself.
 */
export const linearBackward = defineOp((dy: Tensor, x: Tensor, w: Tensor, opts?: LinearBackwardOptions) => prepareLinearBackward(dy, x, w, opts));

/**
 * Gradients of out = alpha · op(a) · op(b): da, db shaped like a and b. (The gradient of
 * beta · c is beta · dOut.)
 */
export const gemmBackward = defineOp((dOut: Tensor, a: Tensor, b: Tensor, opts?: GemmBackwardOptions) => prepareGemmBackward(dOut, a, b, opts));

/**
 * out [M, N] = a · bᵀ over int8 values (a i8 [M, K], b i8 [N, K], K ≤ 65536), exact in i32 (as
 * `torch._int_mm` with b transposed). b is treated as a weight: its packed form is cached with its
 * storage, like `linear`'s.
 */
export const gemmInt8 = defineOp((a: Tensor, b: Tensor, opts?: GemmInt8Options) => prepareGemmInt8(a, b, opts));

/**
 * The int8 linear: acc = x · wᵀ exact over int8 values (x i8 [..., K], w i8 [N, K]), then
 * y = act(acc · s[n] + bias) + residual with s[n] = f32(xClip/127) · f32(wClip[n]/127) (the
 * dequantization scales of `quantize`), in f32, or requantized to i8 with `outClip`. wClip: a
 * number (per tensor) or an f32 tensor [N] (per output channel). bias, residual: f32.
 */
export const linearInt8 = defineOp(
  (x: Tensor, w: Tensor, xClip: number, wClip: number | Tensor, bias?: Tensor | null, opts?: LinearInt8Options) => prepareLinearInt8(x, w, xClip, wClip, bias, opts),
);

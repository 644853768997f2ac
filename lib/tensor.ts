// Tensor: one class for every device. A CPU tensor's data is a JS typed array that native code
// borrows for the duration of a call (async calls pin it), so CPU memory belongs to the GC. A CUDA
// tensor's data is a device buffer: native CUDA memory from the caching allocator, given back at
// dispose (or when the GC finalizes the last view); an async op in flight keeps its own hold.
import { inspect } from 'node:util';
import {
  DEVICE_CODE, DEVICES, DTYPE_CODE, DTYPE_SIZE, DTYPES, type Device, type DType, type TypedArray, isFloat,
  storageArray,
} from './dtype.js';
import { describe, fail, SeqfuseError } from './errors.js';
import { native } from './native.js';

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
}
export interface RandomOptions extends TensorOptions {
  /** Philox seed (integer in [0, 2^53) or a bigint below 2^64). Default: a fresh random seed. */
  seed?: number | bigint;
}

/** A CUDA tensor's memory as the addon hands it out (opaque to JS). */
export type DeviceBuffer = object & { readonly __seqfuseDeviceBuffer: never };
type Data = TypedArray | DeviceBuffer;

/** The memory a tensor's data lives in; views made by reshape share it. */
export class Storage {
  data: Data | null;
  owners = 0;
  /** Bumped on every write seqfuse cannot see (the `data` getter) and by in-place ops, so caches keyed on it go stale. */
  version = 0;
  /** Backend caches tied to this data (e.g. weights reordered for oneDNN), dropped on version change. */
  cache: unknown = undefined;
  cacheVersion = -1;
  constructor(data: Data, readonly device: Device, readonly bytes: number) {
    this.data = data;
  }
}

const live: Record<Device, { bytes: number; tensors: number }> = {
  cpu: { bytes: 0, tensors: 0 },
  cuda: { bytes: 0, tensors: 0 },
};

function acquire(s: Storage): void {
  if (s.owners === 0) live[s.device].bytes += s.bytes;
  s.owners++;
  live[s.device].tensors++;
}

function release(s: Storage): void {
  live[s.device].tensors--;
  if (--s.owners === 0) {
    live[s.device].bytes -= s.bytes;
    if (s.device === 'cuda' && s.data) native.device_buffer_release(s.data as DeviceBuffer);
    s.data = null;
    dropCache(s);
  }
}

/** Frees a backend cache derived from the storage's data now rather than at the next GC. */
export function dropCache(s: Storage): void {
  if (s.cache !== undefined) native.weight_cache_clear(s.cache);
  s.cache = undefined;
}

// Frees what users forget to dispose: the held value is the storage, never the tensor.
const registry = new FinalizationRegistry<Storage>(release);

export interface MemoryInfo {
  bytes: number;
  tensors: number;
}

/** Live bytes and tensor count per device (tensors not yet disposed or garbage-collected). */
export function memory(): Record<Device, MemoryInfo> {
  return { cpu: { ...live.cpu }, cuda: { ...live.cuda } };
}

function checkShape(shape: unknown, where: string): number[] {
  if (!Array.isArray(shape)) fail('ERR_SHAPE', `${where}: expected shape as an array of integers but received ${describe(shape)}`);
  if (shape.length > 8) fail('ERR_SHAPE', `${where}: expected at most 8 dims but received ${shape.length}`);
  for (const s of shape) {
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0)
      fail('ERR_SHAPE', `${where}: expected shape of non-negative integers but received [${shape.map(String).join(', ')}]`);
  }
  return shape.slice() as number[];
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

function checkDType(dtype: unknown, where: string): DType {
  if (!DTYPES.includes(dtype as DType))
    fail('ERR_DTYPE', `${where}: expected dtype one of ${DTYPES.join(', ')} but received ${describe(dtype)}`);
  return dtype as DType;
}

function checkDevice(device: unknown, where: string): Device {
  if (!DEVICES.includes(device as Device))
    fail('ERR_DEVICE', `${where}: expected device 'cpu' or 'cuda' but received ${describe(device)}`);
  if (device === 'cuda') {
    const s = native.cuda_status();
    if (!s.available) fail('ERR_BACKEND', `${where}: device 'cuda' is not available: ${s.reason}`);
  }
  return device as Device;
}

function allocate(dtype: DType, n: number, where: string): TypedArray {
  const max = 2 ** 32 / DTYPE_SIZE[dtype];
  if (n > max) fail('ERR_OOM', `${where}: ${n} elements of ${dtype} exceed the largest typed array (${max} elements)`);
  try {
    return storageArray(dtype, n);
  } catch (e) {
    throw new SeqfuseError('ERR_OOM', `${where}: could not allocate ${n} elements of ${dtype} (${(e as Error).message})`);
  }
}

/** New storage for n elements of dtype on device (CPU: zero-filled; CUDA: uninitialized). */
function allocateOn(device: Device, dtype: DType, n: number, where: string): Data {
  if (device === 'cpu') return allocate(dtype, n, where);
  return native.device_buffer(n * DTYPE_SIZE[dtype], where);
}

function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 53);
}

export class Tensor {
  /** @internal read by the addon */ _data: Data | null;
  /** @internal dtype code for the addon */ readonly _dt: number;
  /** @internal device code for the addon */ readonly _dev: number;
  /** @internal [dtype, device, ndim, ...shape] for the addon (native/napi/napi_util.cc) */ readonly _meta: Float64Array;
  /** @internal */ readonly _storage: Storage;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;

  private constructor(storage: Storage, shape: readonly number[], dtype: DType) {
    this._storage = storage;
    this._data = storage.data;
    this.shape = Object.freeze(shape.slice());
    this.dtype = dtype;
    this.device = storage.device;
    this._dt = DTYPE_CODE[dtype];
    this._dev = DEVICE_CODE[storage.device];
    this._meta = Float64Array.of(this._dt, this._dev, shape.length, ...shape);
    acquire(storage);
    registry.register(this, storage, this);
  }

  /** @internal wraps freshly allocated data (a typed array on CPU, a device buffer on CUDA) */
  static _wrap(data: Data, shape: readonly number[], dtype: DType, device: Device = 'cpu'): Tensor {
    const bytes = device === 'cpu' ? (data as TypedArray).byteLength : numelOf(shape) * DTYPE_SIZE[dtype];
    return new Tensor(new Storage(data, device, bytes), shape, dtype);
  }

  /** @internal a new tensor on device, released again if `init` throws */
  static _new(where: string, shape: readonly number[], dtype: DType, device: Device, init?: (t: Tensor) => void): Tensor {
    const t = Tensor._wrap(allocateOn(device, dtype, numelOf(shape), where), shape, dtype, device);
    try {
      init?.(t);
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }

  /** A new uninitialized tensor (on CPU it is zero-filled, as JS typed arrays are; on CUDA it holds whatever the memory held). */
  static empty(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const sh = checkShape(shape, 'Tensor.empty');
    const dtype = checkDType(opts.dtype ?? 'f32', 'Tensor.empty');
    const device = checkDevice(opts.device ?? 'cpu', 'Tensor.empty');
    return Tensor._new('Tensor.empty', sh, dtype, device);
  }

  static zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const sh = checkShape(shape, 'Tensor.zeros');
    const dtype = checkDType(opts.dtype ?? 'f32', 'Tensor.zeros');
    const device = checkDevice(opts.device ?? 'cpu', 'Tensor.zeros');
    return Tensor._new('Tensor.zeros', sh, dtype, device, device === 'cpu' ? undefined : (t) => native.zero(t));
  }

  /**
   * Copies `values` into a new tensor. The dtype defaults to the array's kind (Float32Array and
   * number[] -> f32, Int32Array -> i32, Int8Array -> i8, Uint8Array -> u8). A Uint16Array with
   * dtype f16 or bf16 is taken as raw 16-bit words; any other source is converted by value
   * (floats round to nearest even; integers truncate toward zero and saturate).
   */
  static from(values: ArrayLike<number>, shape?: readonly number[], opts: TensorOptions = {}): Tensor {
    const where = 'Tensor.from';
    if (values === null || typeof values !== 'object' || typeof (values as ArrayLike<number>).length !== 'number')
      fail('ERR_ARG', `${where}: expected an array or typed array of numbers but received ${describe(values)}`);
    const n = values.length;
    const sh = checkShape(shape ?? [n], where);
    if (numelOf(sh) !== n) fail('ERR_SHAPE', `${where}: shape [${sh.join(', ')}] has ${numelOf(sh)} elements but values has ${n}`);
    const inferred: DType = values instanceof Int32Array ? 'i32' : values instanceof Int8Array ? 'i8'
      : values instanceof Uint8Array ? 'u8' : 'f32';
    const dtype = checkDType(opts.dtype ?? inferred, where);
    const device = checkDevice(opts.device ?? 'cpu', where);
    if (values instanceof Uint16Array && opts.dtype === undefined)
      fail('ERR_DTYPE', `${where}: a Uint16Array needs dtype 'f16' or 'bf16' (its words are taken as raw bits)`);
    const out = allocate(dtype, n, where);
    if (values instanceof Uint16Array && (dtype === 'f16' || dtype === 'bf16')) {
      out.set(values);
    } else if (isFloat(dtype)) {
      const f32 = dtype === 'f32' ? (out as Float32Array) : allocate('f32', n, where) as Float32Array;
      if (Array.isArray(values)) {
        for (let i = 0; i < n; i++) {
          const v = values[i];
          if (typeof v !== 'number') fail('ERR_ARG', `${where}: values[${i}] is ${describe(v)}, not a number`);
          f32[i] = v;
        }
      } else {
        f32.set(values as ArrayLike<number>);
      }
      if (dtype !== 'f32') native.cast(Tensor._wrapTemp(f32, sh, 'f32'), Tensor._wrapTemp(out, sh, dtype), false);
    } else {
      const [lo, hi] = dtype === 'i8' ? [-128, 127] : dtype === 'u8' ? [0, 255] : [-2147483648, 2147483647];
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number') fail('ERR_ARG', `${where}: values[${i}] is ${describe(v)}, not a number`);
        out[i] = Number.isNaN(v) ? 0 : Math.min(hi, Math.max(lo, Math.trunc(v)));
      }
    }
    if (device === 'cpu') return Tensor._wrap(out, sh, dtype);
    return Tensor._new(where, sh, dtype, device, (t) => native.copy(Tensor._wrapTemp(out, sh, dtype), t));
  }

  /** @internal a descriptor the addon can read without creating a tracked Tensor */
  static _wrapTemp(data: Data, shape: readonly number[], dtype: DType, device: Device = 'cpu') {
    const dev = DEVICE_CODE[device];
    return { _data: data, _dt: DTYPE_CODE[dtype], _dev: dev, shape, _meta: Float64Array.of(DTYPE_CODE[dtype], dev, shape.length, ...shape) };
  }

  /** Standard normal samples (Box-Muller on the Philox stream), scaled: mean + std * z. */
  static randn(shape: readonly number[], opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
    return Tensor._random('Tensor.randn', shape, opts, 1, opts.mean ?? 0, opts.std ?? 1);
  }

  /** Uniform samples in [low, high) from the Philox stream. */
  static rand(shape: readonly number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
    return Tensor._random('Tensor.rand', shape, opts, 0, opts.low ?? 0, opts.high ?? 1);
  }

  private static _random(where: string, shape: readonly number[], opts: RandomOptions, kind: number, a: number, b: number): Tensor {
    const sh = checkShape(shape, where);
    const dtype = checkDType(opts.dtype ?? 'f32', where);
    if (!isFloat(dtype)) fail('ERR_DTYPE', `${where}: expected a float dtype (f32, f16, bf16) but received ${dtype}`);
    const device = checkDevice(opts.device ?? 'cpu', where);
    return Tensor._new(where, sh, dtype, device, (t) => native.random(t, kind, opts.seed ?? randomSeed(), 0, a, b));
  }

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  get disposed(): boolean {
    return this._data === null;
  }

  /**
   * The backing typed array of a CPU tensor (no copy; f16/bf16 as raw Uint16 words). Writing
   * through it is allowed: every access marks the data as possibly modified, so caches derived
   * from it (e.g. reordered weights) are rebuilt on next use. A CUDA tensor's data is in device
   * memory: ERR_DEVICE (use toArray() or to('cpu')).
   */
  get data(): TypedArray {
    const d = this._live('data');
    if (this.device !== 'cpu')
      fail('ERR_DEVICE', `Tensor.data: this tensor's data is in ${this.device} memory; read it with toArray() or move it with to('cpu')`);
    this._storage.version++;
    return d as TypedArray;
  }

  /** @internal throws ERR_DISPOSED */
  _live(what: string): Data {
    if (this._data === null) fail('ERR_DISPOSED', `Tensor.${what}: the tensor was disposed`);
    return this._data;
  }

  /** A copy of the values on the host; f16 and bf16 come back as Float32Array. */
  toArray(): Float32Array | Int8Array | Int32Array | Uint8Array {
    const d = this._live('toArray');
    if (this.device !== 'cpu') {
      const host = this.to('cpu');
      try {
        return host.dtype === 'f16' || host.dtype === 'bf16' ? host.toArray() : (host._data as Float32Array | Int8Array | Int32Array | Uint8Array);
      } finally {
        host.dispose();
      }
    }
    if (this.dtype === 'f16' || this.dtype === 'bf16') {
      const out = new Float32Array(this.numel);
      native.cast(this, Tensor._wrapTemp(out, this.shape, 'f32'), false);
      return out;
    }
    return (d as TypedArray).slice() as Float32Array | Int8Array | Int32Array | Uint8Array;
  }

  /** A new tensor converted to `dtype` (on this device), or moved to `device` (same dtype); always a copy. */
  to(target: DType | Device): Tensor {
    this._live('to');
    if (DEVICES.includes(target as Device)) {
      const device = checkDevice(target, 'Tensor.to');
      return Tensor._new('Tensor.to', this.shape, this.dtype, device, (t) => native.copy(this, t));
    }
    const dtype = checkDType(target, 'Tensor.to');
    return Tensor._new('Tensor.to', this.shape, dtype, this.device, (t) => native.cast(this, t, false));
  }

  /** @internal copies src's values in (same dtype and element count, any devices) */
  _copyFrom(src: Tensor): void {
    native.copy(src, this);
    this._storage.version++;
  }

  /** @internal sets every element to 0 */
  _zero(): void {
    native.zero(this);
    this._storage.version++;
  }

  /** A view with a new shape over the same data (one dim may be -1). */
  reshape(shape: readonly number[]): Tensor {
    this._live('reshape');
    if (!Array.isArray(shape)) fail('ERR_SHAPE', `Tensor.reshape: expected an array of integers but received ${describe(shape)}`);
    const infer = shape.indexOf(-1);
    if (infer !== shape.lastIndexOf(-1)) fail('ERR_SHAPE', 'Tensor.reshape: at most one dim may be -1');
    let sh = shape.slice();
    if (infer >= 0) {
      const rest = numelOf(shape.filter((_, i) => i !== infer));
      if (rest === 0 || this.numel % rest !== 0)
        fail('ERR_SHAPE', `Tensor.reshape: cannot reshape [${this.shape.join(', ')}] into [${shape.join(', ')}]`);
      sh[infer] = this.numel / rest;
    }
    sh = checkShape(sh, 'Tensor.reshape');
    if (numelOf(sh) !== this.numel)
      fail('ERR_SHAPE', `Tensor.reshape: cannot reshape [${this.shape.join(', ')}] (${this.numel} elements) into [${shape.join(', ')}]`);
    return new Tensor(this._storage, sh, this.dtype);
  }

  /** Releases this tensor now; its data goes when no view of it is left. Idempotent. */
  dispose(): void {
    if (this._data === null) return;
    this._data = null;
    registry.unregister(this);
    release(this._storage);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  [inspect.custom](): string {
    if (this._data === null) return `Tensor(disposed, ${this.dtype} [${this.shape.join(', ')}])`;
    const vals = this.numel <= 8 ? Array.from(this.toArray()).map((v) => +v.toPrecision(5)).join(', ') : '…';
    return `Tensor(${this.dtype} [${this.shape.join(', ')}] ${this.device}: ${vals})`;
  }
}

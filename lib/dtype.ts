/** Element types. f16/bf16 are stored as 16-bit words (Uint16Array) and computed in f32. */
export type DType = 'f32' | 'f16' | 'bf16' | 'i8' | 'i32' | 'u8';
/** Devices. 'cuda' needs an addon built with the CUDA backend and a GPU (cudaStatus() says why not: ERR_BACKEND). */
export type Device = 'cpu' | 'cuda';

export type TypedArray = Float32Array | Uint16Array | Int8Array | Int32Array | Uint8Array;

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i8', 'i32', 'u8'];
export const DEVICES: readonly Device[] = ['cpu', 'cuda'];

/** Codes shared with native/core/dtype.h (DType, Device). */
export const DTYPE_CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2, i8: 3, i32: 4, u8: 5 };
export const DEVICE_CODE: Record<Device, number> = { cpu: 0, cuda: 1 };

export const DTYPE_SIZE: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i8: 1, i32: 4, u8: 1 };

export function storageArray(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'f32': return new Float32Array(n);
    case 'f16': case 'bf16': return new Uint16Array(n);
    case 'i8': return new Int8Array(n);
    case 'i32': return new Int32Array(n);
    case 'u8': return new Uint8Array(n);
  }
}

export function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f16' || d === 'bf16';
}

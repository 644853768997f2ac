// Process-wide controls: threads, ISA path, build information.
import { fail, describe } from './errors.js';
import { type CudaStatus, native } from './native.js';

/** Sets the threads used by seqfuse's kernels and oneDNN (one OpenMP pool). Default: all cores. */
export function setNumThreads(n: number): void {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1024)
    fail('ERR_ARG', `setNumThreads: expected an integer in [1, 1024] but received ${describe(n)}`);
  native.set_num_threads(n);
}

export function getNumThreads(): number {
  return native.get_num_threads();
}

export type Isa = 'avx512' | 'avx2' | 'generic';

/**
 * Forces a lower SIMD path for the CPU kernels (like the SEQFUSE_ISA environment variable);
 * asking for more than the CPU has throws ERR_UNSUPPORTED.
 */
export function setIsa(isa: Isa): void {
  if (isa !== 'avx512' && isa !== 'avx2' && isa !== 'generic')
    fail('ERR_ARG', `setIsa: expected 'avx512', 'avx2' or 'generic' but received ${describe(isa)}`);
  native.set_isa(isa);
}

/** The SIMD path in use and the best this CPU supports. */
export function getIsa(): { active: Isa; best: Isa } {
  return native.get_isa() as { active: Isa; best: Isa };
}

/** Versions of what the addon was built with. */
export function buildInfo(): { onednn: string; cuda: boolean } {
  return native.build_info();
}

export type { CudaStatus } from './native.js';

/**
 * Whether device 'cuda' can be used, and why not: `available`, `reason` (empty when available; after
 * a sticky CUDA error, what lost the backend), the `device` name, `computeCapability` ("9.0"),
 * `totalMemory` in bytes, and `emulated` (the CUDA kernels run on the CPU emulator, a test build).
 */
export function cudaStatus(): CudaStatus {
  return native.cuda_status();
}

/** CUDA memory of the caching allocator: bytes in live tensors and buffers, and bytes held from the driver. */
export function cudaMemory(): { allocated: number; reserved: number } {
  return native.cuda_memory();
}

/** Returns the allocator's cached (free) CUDA memory to the driver. */
export function cudaEmptyCache(): void {
  native.cuda_empty_cache();
}

/** Waits until every CUDA op queued so far has finished; a kernel's failure surfaces here as ERR_BACKEND. */
export function cudaSynchronize(): void {
  native.cuda_synchronize();
}

// What the suites of test/cuda/ share: the check that the loaded addon has a CUDA backend, and the
// comparison of a CUDA result with the CPU one.
import { beforeAll, expect } from 'vitest';
import { cudaStatus, type Tensor } from '../../lib/index.js';
import { relL2 } from '../tolerance.js';

/** Fails the suite (never skips it) when device 'cuda' is unavailable. */
export function requireCuda(): void {
  beforeAll(() => {
    const s = cudaStatus();
    if (!s.available) throw new Error(`these tests need an addon with the CUDA backend (npm run test:emu): ${s.reason}`);
  });
}

/** gpu on 'cuda', of cpu's shape, within `limit` relative L2 of it (floor 1e-3, see relL2). */
export function expectCloseOnCuda(label: string, gpu: Tensor, cpu: Tensor, limit: number, seed: number): void {
  expect(gpu.device, label).toBe('cuda');
  expect(gpu.shape, label).toEqual(cpu.shape);
  expect(relL2(gpu.toArray(), cpu.toArray(), 1e-3), `${label} (seed ${seed})`).toBeLessThanOrEqual(limit);
}

// Shared by layers and models: copying named parameters in with every check done first.
import { describe, fail } from '../errors.js';
import { tensorArg } from '../ops/common.js';
import type { Device } from '../dtype.js';
import type { Tensor } from '../tensor.js';

/**
 * `t` (made on the CPU, e.g. drawn from a seed) on `device`: t itself on 'cpu', else a copy there
 * with t disposed, so one seed gives the same initial parameters on every device.
 */
export function onDevice(t: Tensor, device: Device): Tensor {
  if (device === 'cpu') return t;
  try {
    return t.to(device);
  } finally {
    t.dispose();
  }
}

/**
 * Copies `params` into `mine` by name. Every name must exist on both sides and shapes must match
 * (dtypes are converted, devices may differ); all of it is checked before anything is written, so a failed load
 * leaves the parameters as they were.
 */
export function loadNamed(op: string, mine: Map<string, Tensor>, params: unknown): void {
  if (!(params instanceof Map)) fail('ERR_ARG', `${op}: expected a Map<string, Tensor> but received ${describe(params)}`);
  const src = params as Map<string, Tensor>;
  for (const name of src.keys()) if (!mine.has(name)) fail('ERR_ARG', `${op}: unknown parameter '${String(name)}'`);
  for (const [name, dst] of mine) {
    const s = src.get(name);
    if (s === undefined) fail('ERR_ARG', `${op}: missing parameter '${name}'`);
    tensorArg(s, op, name);
    if (s.shape.length !== dst.shape.length || s.shape.some((d, i) => d !== dst.shape[i]))
      fail('ERR_SHAPE', `${op}: expected ${name} of shape [${dst.shape.join(', ')}] but received [${s.shape.join(', ')}]`);
  }
  for (const [name, dst] of mine) {
    const s = src.get(name)!;
    const conv = s.dtype === dst.dtype ? s : s.to(dst.dtype);
    dst._copyFrom(conv);  // across devices too
    if (conv !== s) conv.dispose();
  }
}

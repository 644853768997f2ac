// Loads the addon and declares its interface. Only lib/ talks to it; every function here validates
// its arguments again in C++. Which addon:
//   1. $SEQFUSE_ADDON, a path to a seqfuse.node (e.g. build-emu/Release/seqfuse.node, the CUDA
//      backend on the CPU emulator, which the tests use); failing to load it is an error;
//   2. build-cuda/Release/seqfuse.node (`npm run build:cuda`, the CUDA-enabled addon) when it
//      exists; when it does not load (e.g. no libcuda), a warning says why and 3. is used;
//   3. the CPU-only addon: a prebuild or build/Release/seqfuse.node (node-gyp-build).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { SeqfuseError } from './errors.js';
import type { DeviceBuffer } from './tensor.js';

/** What the addon says of CUDA (see runtime.ts cudaStatus). */
export interface CudaStatus {
  available: boolean;
  reason: string;
  device: string;
  computeCapability: string;
  totalMemory: number;
  emulated: boolean;
}

/** A Tensor as the addon reads it (see native/napi/napi_util.cc tensor_arg). */
export interface NativeTensor {
  readonly _data: unknown;
  readonly _dt: number;
  readonly _dev: number;
  readonly shape: readonly number[];
  readonly _meta: Float64Array;
}
type T = NativeTensor;
type OptT = NativeTensor | null;
type Ret = undefined | Promise<void>;

export interface NativeBinding {
  init(errorClass: typeof SeqfuseError): void;
  set_num_threads(n: number): void;
  get_num_threads(): number;
  set_isa(isa: string): void;
  get_isa(): { active: string; best: string };
  build_info(): { onednn: string; cuda: boolean };
  cast(src: T, dst: T, async: boolean): Ret;
  /** The bytes of src into dst (same dtype and element count), between any devices. */
  copy(src: T, dst: T): undefined;
  /** Every byte of t 0. */
  zero(t: T): undefined;
  /** CUDA memory of `bytes` bytes (ERR_OOM, ERR_BACKEND); `op` names the caller in errors. */
  device_buffer(bytes: number, op: string): DeviceBuffer;
  /** Gives a device buffer's memory back now (an async op in flight keeps its own hold). */
  device_buffer_release(buf: DeviceBuffer): undefined;
  cuda_status(): CudaStatus;
  cuda_memory(): { allocated: number; reserved: number };
  cuda_empty_cache(): undefined;
  cuda_synchronize(): undefined;
  random(out: T, kind: number, seed: number | bigint, offset: number | bigint, a: number, b: number): undefined;
  norm_fwd(x: T, gamma: T, beta: OptT, y: T, mean: OptT, rstd: OptT, eps: number, rms: boolean, async: boolean): Ret;
  norm_bwd(dy: T, x: T, gamma: T, mean: OptT, rstd: OptT, dx: T, dgamma: OptT, dbeta: OptT, eps: number, rms: boolean,
    async: boolean): Ret;
  softmax_fwd(x: T, mask: OptT, y: T, causal: boolean, async: boolean): Ret;
  softmax_bwd(dy: T, y: T, dx: T, async: boolean): Ret;
  embedding_fwd(ids: T, table: T, positions: OptT, out: T, positionOffset: number, scale: number, paddingIdx: number,
    dropout: number, seed: number | bigint, offset: number | bigint, async: boolean): Ret;
  embedding_bwd(dOut: T, ids: T, dtable: T, dpositions: OptT, positionOffset: number, scale: number, paddingIdx: number,
    dropout: number, seed: number | bigint, offset: number | bigint, async: boolean): Ret;
  gemm(a: T, b: T, c: OptT, out: T, transA: boolean, transB: boolean, alpha: number, beta: number, async: boolean): Ret;
  linear_fwd(x: T, w: T, bias: OptT, residual: OptT, y: T, act: number, cache: unknown, async: boolean): Ret;
  linear_i8(x: T, w: T, xClip: number, wClip: number | T, bias: OptT, residual: OptT, y: T, act: number, outClip: number | null, cache: unknown, async: boolean, gemm: boolean): Ret;
  weight_cache_new(): unknown;
  weight_cache_clear(cache: unknown): void;
  weight_cache_bytes(cache: unknown): number;
  bias_act_fwd(x: T, bias: OptT, y: T, act: number, p: number, seed: number | bigint, offset: number | bigint, async: boolean): Ret;
  bias_act_bwd(dy: T, x: T, bias: OptT, dx: T, dbias: OptT, act: number, p: number, seed: number | bigint, offset: number | bigint,
    async: boolean): Ret;
  dropout_fwd(x: T, bias: OptT, residual: OptT, y: T, p: number, seed: number | bigint, offset: number | bigint, async: boolean): Ret;
  dropout_bwd(dy: T, dx: T, dbias: OptT, p: number, seed: number | bigint, offset: number | bigint, async: boolean): Ret;
  quant_max_clip(x: T, axis: number | null, levels: number, out: T, async: boolean): Ret;
  quant_fwd(mode: number, x: T, clipMax: T | number, axis: number | null, out: T, async: boolean): Ret;
  quant_bwd(dy: T, x: T, clipMax: T | number, axis: number | null, dx: T, dclip: T, async: boolean): Ret;
  attention_fwd(q: T, k: T, v: T, kvLengths: OptT, attnBias: OptT, out: T, lse: OptT, scale: number, causal: boolean,
    dropout: number, seed: number | bigint, async: boolean): Ret;
  attention_bwd(dOut: T, q: T, k: T, v: T, out: T, lse: T, kvLengths: OptT, attnBias: OptT, dq: T, dk: T, dv: T, scale: number,
    causal: boolean, dropout: number, seed: number | bigint, async: boolean): Ret;
  layer_param_shapes(config: Float64Array, className: string): (number[] | null)[];
  layer_state_new(): unknown;
  layer_state_release(state: unknown): void;
  layer_fwd(state: unknown, config: Float64Array, params: OptT[], caches: unknown[], x: T, y: T, lengths: OptT, enc: OptT,
    encLengths: OptT, train: boolean, seed: number | bigint, async: boolean, className: string, clips: OptT[], calibrate: number, qweights: OptT[], wclips: OptT[], hist: Float64Array | null): Ret;
  layer_bwd(state: unknown, config: Float64Array, params: OptT[], grads: OptT[], dy: T, dx: T, dEnc: OptT, async: boolean,
    className: string, clips: OptT[], clipGrads: OptT[]): Ret;
  crossent_fwd(logits: T, targets: T, lse: T, losses: OptT, weights: OptT, stats: Float64Array, ignoreIndex: number,
    labelSmoothing: number, mile: boolean, gamma: number, sigma: number, reduction: number, async: boolean): Ret;
  crossent_bwd(logits: T, targets: T, lse: T, weights: OptT, dlogits: T, ignoreIndex: number, labelSmoothing: number, mean: boolean,
    dLoss: number, async: boolean): Ret;
  adamw(params: T[], grads: T[], m: T[], v: T[], copies: OptT[], decay: boolean[], lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, step: number, gradScale: number, async: boolean): Ret;
  /** out[0] = the sum of squares of every element, accumulated in double (native/ops/optim.h). */
  grad_norm(tensors: T[], out: Float64Array, async: boolean): Ret;
  /** Test only: Philox4x32-10 of a 128-bit counter and 64-bit key (native/core/philox.h). */
  philox_test(counter: Uint32Array, key: Uint32Array): Uint32Array;
}

function load(): NativeBinding {
  const root = path.join(__dirname, '..');
  const req = createRequire(__filename);
  const explicit = process.env.SEQFUSE_ADDON;
  if (explicit) {
    try {
      return req(path.resolve(explicit)) as NativeBinding;
    } catch (e) {
      throw new SeqfuseError('ERR_BACKEND', `seqfuse: could not load the addon SEQFUSE_ADDON=${explicit} (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  const cudaAddon = path.join(root, 'build-cuda', 'Release', 'seqfuse.node');
  if (existsSync(cudaAddon)) {
    try {
      return req(cudaAddon) as NativeBinding;
    } catch (e) {
      process.emitWarning(`seqfuse: the CUDA-enabled addon ${cudaAddon} did not load (${e instanceof Error ? e.message : String(e)}); ` +
        'using the CPU-only addon (device \'cuda\' is unavailable)', { code: 'SEQFUSE_CUDA_ADDON' });
    }
  }
  try {
    return req('node-gyp-build')(root) as NativeBinding;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new SeqfuseError(
      'ERR_BACKEND',
      `seqfuse: could not load the native addon (${why}).\nPossible solutions:\n` +
        '  - build it: `npm rebuild seqfuse` (needs a C++17 compiler, python3 and make)\n' +
        '  - install oneDNN first: `sudo apt-get install libdnnl-dev` (Debian/Ubuntu) or `brew install onednn`\n' +
        '  - check that libdnnl.so.2 and libgomp are on the loader path',
    );
  }
}

export const native: NativeBinding = load();
native.init(SeqfuseError);

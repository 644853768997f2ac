// Every exported function, called with wrong shapes, dtypes, disposed tensors, NaN, negative
// and huge sizes: each must throw (or reject with) a SeqfuseError with the expected code and
// never crash the process. A new export without an entry here fails the coverage check.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as sf from '../lib/index.js';
import { SeqfuseError, Tensor } from '../lib/index.js';

/** [what, the arguments (made fresh per call), the expected code] */
type Case = [what: string, args: () => unknown[], code: sf.ErrorCode];

const f32 = (shape: number[]) => Tensor.randn(shape, { seed: 1 });
const i32 = (shape: number[]) => Tensor.zeros(shape, { dtype: 'i32' });
const disposed = () => {
  const t = f32([2, 8]);
  t.dispose();
  return t;
};
const notTensor = { shape: [2, 8], dtype: 'f32' } as unknown as Tensor;

const x = f32([2, 8]);
const v8 = f32([8]);
// attention: q [B 2, H 4, Sq 3, D 8], k and v [2, Hkv 2, Sk 5, 8], lse [2, 4, 3]
const aq = f32([2, 4, 3, 8]);
const akv = f32([2, 2, 5, 8]);
const alse = f32([2, 4, 3]);
// files: a scratch directory for malformed files, with a subdirectory named like a file;
// st() builds a small safetensors file (header below 256 bytes) from its header text
const files = mkdtempSync(join(tmpdir(), 'seqfuse-bad-'));
afterAll(() => rmSync(files, { recursive: true, force: true }));
const stFile = (name: string, bytes: Uint8Array) => {
  writeFileSync(join(files, name), bytes);
  return join(files, name);
};
const st = (header: string, data: number[] = []) => {
  const n = Math.ceil((8 + header.length) / 8) * 8 - 8;
  return Uint8Array.from([n, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from(header.padEnd(n)), ...data]);
};
const stF64 = st('{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', [0, 0, 0, 0, 0, 0, 0, 0]);
const stHole = st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', [0, 0]);
mkdirSync(join(files, 'dir.safetensors'));

/** Bad calls per export; async forms are checked automatically for ops that have them. */
export const CASES: Record<string, Case[]> = {
  layerNorm: [
    ['gamma of the wrong length', () => [x, f32([7]), v8], 'ERR_SHAPE'],
    ['beta of the wrong length', () => [x, v8, f32([9])], 'ERR_SHAPE'],
    ['i32 x', () => [i32([2, 8]), v8, v8], 'ERR_DTYPE'],
    ['bf16 gamma with f32 x', () => [x, v8.to('bf16'), v8], 'ERR_DTYPE'],
    ['disposed x', () => [disposed(), v8, v8], 'ERR_DISPOSED'],
    ['not a tensor', () => [notTensor, v8, v8], 'ERR_ARG'],
    ['NaN eps', () => [x, v8, v8, { eps: NaN }], 'ERR_ARG'],
    ['negative eps', () => [x, v8, v8, { eps: -1 }], 'ERR_ARG'],
    ['out of the wrong shape', () => [x, v8, v8, { out: f32([8, 2]) }], 'ERR_SHAPE'],
    ['options not an object', () => [x, v8, v8, 3 as unknown as sf.NormOptions], 'ERR_ARG'],
  ],
  rmsNorm: [
    ['gamma of the wrong length', () => [x, f32([3])], 'ERR_SHAPE'],
    ['disposed gamma', () => [x, disposed()], 'ERR_DISPOSED'],
    ['u8 x', () => [Tensor.zeros([2, 8], { dtype: 'u8' }), v8], 'ERR_DTYPE'],
    ['huge eps', () => [x, v8, { eps: Infinity }], 'ERR_ARG'],
  ],
  layerNormBackward: [
    ['dy of another shape', () => [f32([3, 8]), x, v8], 'ERR_SHAPE'],
    ['gamma of the wrong length', () => [x, x, f32([2])], 'ERR_SHAPE'],
    ['f16 dy with f32 x', () => [x.to('f16'), x, v8], 'ERR_DTYPE'],
    ['disposed dy', () => [disposed(), x, v8], 'ERR_DISPOSED'],
  ],
  rmsNormBackward: [
    ['dy of another shape', () => [f32([2, 9]), x, v8], 'ERR_SHAPE'],
    ['NaN eps', () => [x, x, v8, { eps: NaN }], 'ERR_ARG'],
  ],
  softmax: [
    ['i32 x', () => [i32([2, 8])], 'ERR_DTYPE'],
    ['mask not broadcastable', () => [x, { mask: f32([3]) }], 'ERR_SHAPE'],
    ['bf16 mask', () => [x, { mask: f32([8]).to('bf16') }], 'ERR_DTYPE'],
    ['disposed mask', () => [x, { mask: disposed() }], 'ERR_DISPOSED'],
    ['causal not a boolean', () => [x, { causal: 1 }], 'ERR_ARG'],
    ['out of another dtype', () => [x, { out: Tensor.zeros([2, 8], { dtype: 'f16' }) }], 'ERR_DTYPE'],
    ['not a tensor', () => [[1, 2, 3]], 'ERR_ARG'],
  ],
  softmaxBackward: [
    ['dy of another shape', () => [f32([2, 7]), x], 'ERR_SHAPE'],
    ['disposed y', () => [x, disposed()], 'ERR_DISPOSED'],
  ],
  embedding: [
    ['id out of range', () => [Tensor.from(new Int32Array([0, 9])), f32([8, 4])], 'ERR_ARG'],
    ['negative id', () => [Tensor.from(new Int32Array([-1])), f32([8, 4])], 'ERR_ARG'],
    ['f32 ids', () => [f32([2]), f32([8, 4])], 'ERR_DTYPE'],
    ['1-D table', () => [i32([2]), f32([8])], 'ERR_SHAPE'],
    ['positions too short', () => [i32([1, 5]), f32([8, 4]), { positions: f32([3, 4]) }], 'ERR_SHAPE'],
    ['NaN scale', () => [i32([2]), f32([8, 4]), { scale: NaN }], 'ERR_ARG'],
    ['dropout without seed', () => [i32([2]), f32([8, 4]), { dropout: 0.5 }], 'ERR_ARG'],
    ['dropout above 1', () => [i32([2]), f32([8, 4]), { dropout: 1.5, seed: 1 }], 'ERR_ARG'],
    ['disposed table', () => [i32([2]), disposed()], 'ERR_DISPOSED'],
  ],
  embeddingBackward: [
    ['no vocabSize', () => [f32([2, 4]), i32([2])], 'ERR_ARG'],
    ['negative vocabSize', () => [f32([2, 4]), i32([2]), { vocabSize: -3 }], 'ERR_ARG'],
    ['huge vocabSize', () => [f32([2, 4]), i32([2]), { vocabSize: 2 ** 40 }], 'ERR_OOM'],
    ['dOut rows differ from ids', () => [f32([3, 4]), i32([2]), { vocabSize: 8 }], 'ERR_SHAPE'],
    ['id out of range', () => [f32([1, 4]), Tensor.from(new Int32Array([8])), { vocabSize: 8 }], 'ERR_ARG'],
  ],
  gemm: [
    ['inner dims differ', () => [f32([2, 8]), f32([7, 3])], 'ERR_SHAPE'],
    ['1-D a', () => [v8, f32([8, 3])], 'ERR_SHAPE'],
    ['i8 a', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), f32([8, 3])], 'ERR_DTYPE'],
    ['NaN alpha', () => [x, f32([8, 3]), { alpha: NaN }], 'ERR_ARG'],
    ['c of the wrong shape', () => [x, f32([8, 3]), { c: f32([3, 2]) }], 'ERR_SHAPE'],
    ['disposed b', () => [x, disposed()], 'ERR_DISPOSED'],
    ['transA not a boolean', () => [x, f32([8, 3]), { transA: 'yes' }], 'ERR_ARG'],
  ],
  gemmBackward: [
    ['dOut of the wrong shape', () => [f32([2, 2]), x, f32([8, 3])], 'ERR_SHAPE'],
    ['disposed a', () => [f32([2, 3]), disposed(), f32([8, 3])], 'ERR_DISPOSED'],
  ],
  linear: [
    ['w in-features differ', () => [x, f32([4, 7])], 'ERR_SHAPE'],
    ['bias of the wrong length', () => [x, f32([4, 8]), f32([5])], 'ERR_SHAPE'],
    ['residual of the wrong shape', () => [x, f32([4, 8]), null, { residual: f32([2, 5]) }], 'ERR_SHAPE'],
    ['unknown activation', () => [x, f32([4, 8]), null, { activation: 'tanh' }], 'ERR_ARG'],
    ['bf16 w with f32 x', () => [x, f32([4, 8]).to('bf16')], 'ERR_DTYPE'],
    ['i32 x', () => [i32([2, 8]), f32([4, 8])], 'ERR_DTYPE'],
    ['disposed w', () => [x, disposed()], 'ERR_DISPOSED'],
    ['out = x', () => [x, f32([8, 8]), null, { out: x }], 'ERR_ARG'],
  ],
  linearBackward: [
    ['dy of the wrong width', () => [f32([2, 3]), x, f32([4, 8])], 'ERR_SHAPE'],
    ['disposed x', () => [f32([2, 4]), disposed(), f32([4, 8])], 'ERR_DISPOSED'],
  ],
  gelu: [
    ['unknown approximate', () => [x, { approximate: 'fast' }], 'ERR_ARG'],
    ['i32 x', () => [i32([4])], 'ERR_DTYPE'],
    ['disposed x', () => [disposed()], 'ERR_DISPOSED'],
    ['out of another shape', () => [x, { out: f32([16]) }], 'ERR_SHAPE'],
  ],
  geluBackward: [
    ['dy of another shape', () => [f32([2, 9]), x], 'ERR_SHAPE'],
    ['bf16 dy with f32 x', () => [x.to('bf16'), x], 'ERR_DTYPE'],
  ],
  relu: [['not a tensor', () => [3], 'ERR_ARG'], ['u8 x', () => [Tensor.zeros([3], { dtype: 'u8' })], 'ERR_DTYPE']],
  reluBackward: [['dy of another shape', () => [f32([3]), x], 'ERR_SHAPE']],
  silu: [['disposed x', () => [disposed()], 'ERR_DISPOSED']],
  siluBackward: [['x not a tensor', () => [x, null], 'ERR_ARG']],
  biasAct: [
    ['bias of the wrong length', () => [x, f32([7]), { activation: 'gelu' }], 'ERR_SHAPE'],
    ['unknown activation', () => [x, v8, { activation: 'swish' }], 'ERR_ARG'],
    ['dropout without seed', () => [x, v8, { activation: 'relu', dropout: 0.1 }], 'ERR_ARG'],
    ['NaN dropout', () => [x, v8, { activation: 'relu', dropout: NaN, seed: 1 }], 'ERR_ARG'],
    ['negative dropout', () => [x, v8, { activation: 'relu', dropout: -0.1, seed: 1 }], 'ERR_ARG'],
    ['fractional seed', () => [x, v8, { activation: 'relu', dropout: 0.1, seed: 1.5 }], 'ERR_ARG'],
    ['negative offset', () => [x, v8, { activation: 'relu', dropout: 0.1, seed: 1, offset: -4 }], 'ERR_ARG'],
  ],
  biasActBackward: [
    ['dy of another shape', () => [f32([2, 7]), x, v8, { activation: 'gelu' }], 'ERR_SHAPE'],
    ['disposed bias', () => [x, x, disposed(), { activation: 'gelu' }], 'ERR_DISPOSED'],
  ],
  dropout: [
    ['p above 1', () => [x, 1.5, 3], 'ERR_ARG'],
    ['p NaN', () => [x, NaN, 3], 'ERR_ARG'],
    ['no seed', () => [x, 0.5], 'ERR_ARG'],
    ['seed too large', () => [x, 0.5, 2n ** 64n], 'ERR_ARG'],
    ['i8 x', () => [Tensor.zeros([4], { dtype: 'i8' }), 0.5, 3], 'ERR_DTYPE'],
  ],
  dropoutBackward: [['p negative', () => [x, -1, 3], 'ERR_ARG']],
  biasDropoutResidual: [
    ['residual of another shape', () => [x, v8, f32([2, 7]), { dropout: 0.1, seed: 2 }], 'ERR_SHAPE'],
    ['bias of the wrong length', () => [x, f32([9]), x], 'ERR_SHAPE'],
    ['f16 residual with f32 x', () => [x, v8, x.to('f16')], 'ERR_DTYPE'],
  ],
  biasDropoutResidualBackward: [
    ['options missing seed with dropout', () => [x, { dropout: 0.3 }], 'ERR_ARG'],
    ['disposed dy', () => [disposed(), {}], 'ERR_DISPOSED'],
  ],
  fusedAttention: [
    ['k with another batch size', () => [aq, f32([1, 2, 5, 8]), f32([1, 2, 5, 8])], 'ERR_SHAPE'],
    ['k with another head dim', () => [aq, f32([2, 2, 5, 7]), f32([2, 2, 5, 7])], 'ERR_SHAPE'],
    ['v of another shape than k', () => [aq, akv, f32([2, 2, 6, 8])], 'ERR_SHAPE'],
    ['H not a multiple of Hkv', () => [aq, f32([2, 3, 5, 8]), f32([2, 3, 5, 8])], 'ERR_SHAPE'],
    ['head dim D = 0', () => [f32([2, 4, 3, 0]), f32([2, 2, 5, 0]), f32([2, 2, 5, 0])], 'ERR_SHAPE'],
    ['head dim D = 257', () => [f32([1, 1, 2, 257]), f32([1, 1, 3, 257]), f32([1, 1, 3, 257])], 'ERR_SHAPE'],
    ['3-D q', () => [f32([4, 3, 8]), akv, akv], 'ERR_SHAPE'],
    ['kvLengths above Sk', () => [aq, akv, akv, { kvLengths: Int32Array.of(5, 6) }], 'ERR_ARG'],
    ['negative kvLengths', () => [aq, akv, akv, { kvLengths: Tensor.from(Int32Array.of(-1, 2)) }], 'ERR_ARG'],
    ['kvLengths of the wrong length', () => [aq, akv, akv, { kvLengths: Int32Array.of(1, 2, 3) }], 'ERR_SHAPE'],
    ['f32 kvLengths tensor', () => [aq, akv, akv, { kvLengths: f32([2]) }], 'ERR_DTYPE'],
    ['kvLengths as a number array', () => [aq, akv, akv, { kvLengths: [1, 2] }], 'ERR_ARG'],
    ['attnBias not broadcastable', () => [aq, akv, akv, { attnBias: f32([4, 5]) }], 'ERR_SHAPE'],
    ['5-D attnBias', () => [aq, akv, akv, { attnBias: f32([1, 2, 4, 3, 5]) }], 'ERR_SHAPE'],
    ['bf16 attnBias', () => [aq, akv, akv, { attnBias: f32([3, 5]).to('bf16') }], 'ERR_DTYPE'],
    ['bf16 k with f32 q', () => [aq, akv.to('bf16'), akv], 'ERR_DTYPE'],
    ['f16 q, k, v with bf16 v', () => [aq.to('f16'), akv.to('f16'), akv.to('bf16')], 'ERR_DTYPE'],
    ['i32 q, k, v', () => [i32([2, 4, 3, 8]), i32([2, 2, 5, 8]), i32([2, 2, 5, 8])], 'ERR_DTYPE'],
    ['disposed k', () => [aq, disposed(), akv], 'ERR_DISPOSED'],
    ['disposed attnBias', () => [aq, akv, akv, { attnBias: disposed() }], 'ERR_DISPOSED'],
    ['lse of the wrong shape', () => [aq, akv, akv, { lse: f32([2, 4, 5]) }], 'ERR_SHAPE'],
    ['bf16 lse', () => [aq, akv, akv, { lse: f32([2, 4, 3]).to('bf16') }], 'ERR_DTYPE'],
    ['out of another dtype', () => [aq, akv, akv, { out: f32([2, 4, 3, 8]).to('f16') }], 'ERR_DTYPE'],
    ['out of the shape of k', () => [aq, akv, akv, { out: f32([2, 2, 5, 8]) }], 'ERR_SHAPE'],
    ['NaN scale', () => [aq, akv, akv, { scale: NaN }], 'ERR_ARG'],
    ['infinite scale', () => [aq, akv, akv, { scale: -Infinity }], 'ERR_ARG'],
    ['dropout above 1', () => [aq, akv, akv, { dropout: 1.5, seed: 1 }], 'ERR_ARG'],
    ['NaN dropout', () => [aq, akv, akv, { dropout: NaN, seed: 1 }], 'ERR_ARG'],
    ['dropout without seed', () => [aq, akv, akv, { dropout: 0.1 }], 'ERR_ARG'],
    ['fractional seed', () => [aq, akv, akv, { dropout: 0.1, seed: 2.5 }], 'ERR_ARG'],
    ['seed of 2^64', () => [aq, akv, akv, { dropout: 0.1, seed: 2n ** 64n }], 'ERR_ARG'],
    ['causal not a boolean', () => [aq, akv, akv, { causal: 'yes' }], 'ERR_ARG'],
    ['options not an object', () => [aq, akv, akv, 7], 'ERR_ARG'],
  ],
  fusedAttentionBackward: [
    ['dOut of another shape', () => [f32([2, 4, 3, 7]), aq, akv, akv, aq, alse], 'ERR_SHAPE'],
    ['k with another head dim', () => [aq, aq, f32([2, 2, 5, 7]), f32([2, 2, 5, 7]), aq, alse], 'ERR_SHAPE'],
    ['H not a multiple of Hkv', () => [aq, aq, f32([2, 3, 5, 8]), f32([2, 3, 5, 8]), aq, alse], 'ERR_SHAPE'],
    ['lse of the wrong shape', () => [aq, aq, akv, akv, aq, f32([2, 4])], 'ERR_SHAPE'],
    ['f16 lse', () => [aq, aq, akv, akv, aq, alse.to('f16')], 'ERR_DTYPE'],
    ['no lse', () => [aq, aq, akv, akv, aq, null], 'ERR_ARG'],
    ['bf16 out with f32 q', () => [aq, aq, akv, akv, aq.to('bf16'), alse], 'ERR_DTYPE'],
    ['dk of the shape of q', () => [aq, aq, akv, akv, aq, alse, { dk: f32([2, 4, 3, 8]) }], 'ERR_SHAPE'],
    ['f16 dv', () => [aq, aq, akv, akv, aq, alse, { dv: akv.to('f16') }], 'ERR_DTYPE'],
    ['kvLengths above Sk', () => [aq, aq, akv, akv, aq, alse, { kvLengths: Int32Array.of(0, 9) }], 'ERR_ARG'],
    ['i32 attnBias', () => [aq, aq, akv, akv, aq, alse, { attnBias: i32([5]) }], 'ERR_DTYPE'],
    ['dropout without seed', () => [aq, aq, akv, akv, aq, alse, { dropout: 0.2 }], 'ERR_ARG'],
    ['negative dropout', () => [aq, aq, akv, akv, aq, alse, { dropout: -0.2, seed: 3 }], 'ERR_ARG'],
    ['disposed lse', () => [aq, aq, akv, akv, aq, disposed()], 'ERR_DISPOSED'],
  ],
  encodeSafetensors: [
    ['a tensor instead of a map', () => [x], 'ERR_ARG'],
    ['null', () => [null], 'ERR_ARG'],
    ['a value not a tensor', () => [{ w: [1, 2] }], 'ERR_ARG'],
    ['a Map with a number key', () => [new Map([[1, x]])], 'ERR_ARG'],
    ['a tensor named __metadata__', () => [{ __metadata__: x }], 'ERR_ARG'],
    ['a disposed tensor', () => [{ w: disposed() }], 'ERR_DISPOSED'],
    ['metadata value not a string', () => [{ x }, { epoch: 3 }], 'ERR_ARG'],
    ['metadata not an object', () => [{ x }, 'pt'], 'ERR_ARG'],
  ],
  decodeSafetensors: [
    ['not a Uint8Array', () => [[1, 2, 3]], 'ERR_ARG'],
    ['an ArrayBuffer', () => [new ArrayBuffer(16)], 'ERR_ARG'],
    ['7 bytes', () => [new Uint8Array(7)], 'ERR_ARG'],
    ['header length 2^63', () => [Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 128, 123, 125)], 'ERR_ARG'],
    ['a hole in the buffer', () => [stHole], 'ERR_ARG'],
    ['an F64 tensor', () => [stF64], 'ERR_UNSUPPORTED'],
  ],
  saveSafetensors: [
    ['path not a string', () => [42, { x }], 'ERR_ARG'],
    ['empty path', () => ['', { x }], 'ERR_ARG'],
    ['tensors not a map', () => [join(files, 'a.safetensors'), x], 'ERR_ARG'],
    ['a disposed tensor', () => [join(files, 'a.safetensors'), { w: disposed() }], 'ERR_DISPOSED'],
    ['metadata not strings', () => [join(files, 'a.safetensors'), { x }, { n: null }], 'ERR_ARG'],
    ['a missing directory', () => [join(files, 'missing', 'a.safetensors'), { x }], 'ERR_IO'],
    ['a directory in the way', () => [join(files, 'dir.safetensors'), { x }], 'ERR_IO'],
  ],
  loadSafetensors: [
    ['path not a string', () => [undefined], 'ERR_ARG'],
    ['a missing file', () => [join(files, 'missing.safetensors')], 'ERR_IO'],
    ['a directory', () => [join(files, 'dir.safetensors')], 'ERR_IO'],
    ['a file of 7 bytes', () => [stFile('short.safetensors', new Uint8Array(7))], 'ERR_ARG'],
    ['a hole in the buffer', () => [stFile('hole.safetensors', stHole)], 'ERR_ARG'],
    ['an F64 tensor', () => [stFile('f64.safetensors', stF64)], 'ERR_UNSUPPORTED'],
  ],
  setNumThreads: [
    ['zero', () => [0], 'ERR_ARG'],
    ['negative', () => [-2], 'ERR_ARG'],
    ['NaN', () => [NaN], 'ERR_ARG'],
    ['huge', () => [1e9], 'ERR_ARG'],
    ['fractional', () => [1.5], 'ERR_ARG'],
  ],
  setIsa: [['unknown name', () => ['sse' as sf.Isa], 'ERR_ARG']],
  memory: [],
  getNumThreads: [],
  getIsa: [],
  buildInfo: [],
};

// Functions that return a promise (file I/O): bad input rejects it, never throws synchronously.
const RETURN_PROMISES = new Set(['saveSafetensors', 'loadSafetensors']);

// Classes and their methods are covered where they are tested: Tensor in test/tensor.test.ts,
// the layers in test/transformer-layer.test.ts.
const NOT_FUNCTIONS = new Set(['Tensor', 'SeqfuseError', 'TransformerEncoderLayer', 'TransformerDecoderLayer']);

describe('bad input gives typed errors', () => {
  it('every exported function has bad-input cases listed (or is argument-free)', () => {
    const fns = Object.entries(sf).filter(([n, v]) => typeof v === 'function' && !NOT_FUNCTIONS.has(n)).map(([n]) => n);
    const missing = fns.filter((n) => !(n in CASES));
    expect(missing, 'exports without bad-input cases').toEqual([]);
  });

  for (const [name, cases] of Object.entries(CASES)) {
    const fn = (sf as unknown as Record<string, ((...a: unknown[]) => unknown) & { async?: (...a: unknown[]) => Promise<unknown> }>)[name]!;
    for (const [what, args, code] of cases) {
      it(`${name}: ${what} -> ${code}`, async () => {
        let err: unknown;
        if (RETURN_PROMISES.has(name)) {
          let p: unknown;
          expect(() => { p = fn(...args()); }, 'throws synchronously').not.toThrow();
          expect(p).toBeInstanceOf(Promise);
          err = await (p as Promise<unknown>).then(() => undefined, (e: unknown) => e);
        } else {
          try {
            fn(...args());
          } catch (e) {
            err = e;
          }
        }
        expect(err, 'threw').toBeInstanceOf(SeqfuseError);
        expect((err as SeqfuseError).code, (err as Error).message).toBe(code);
        expect((err as Error).message).toMatch(new RegExp(`^${name.replace(/Backward$/, '')}|^Tensor|^set`));
        if (typeof fn.async === 'function') {
          // the async form rejects with the same code and never throws synchronously
          let p: Promise<unknown> | undefined;
          expect(() => { p = fn.async!(...args()); }).not.toThrow();
          await expect(p).rejects.toMatchObject({ code });
        }
      });
    }
  }
});

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
// cross-entropy: logits x [2, 8], targets [2]
const ceT = Int32Array.of(1, 7);
const ceRes = sf.crossEntropy(x, ceT, { mile: {} });
// PyTorch state_dicts of hidden 8, FFN 12 (nn.TransformerEncoderLayer and nn.TransformerDecoderLayer names)
const linearSd = (prefix: string, out: number, inp: number): [string, Tensor][] => [[`${prefix}.weight`, f32([out, inp])], [`${prefix}.bias`, f32([out])]];
const normSd = (prefix: string): [string, Tensor][] => linearSd(prefix, 8, 8).map(([n]) => [n, f32([8])]);
const attnSd = (prefix: string): [string, Tensor][] => [[`${prefix}.in_proj_weight`, f32([24, 8])], [`${prefix}.in_proj_bias`, f32([24])], ...linearSd(`${prefix}.out_proj`, 8, 8)];
const torchEnc = (): Map<string, Tensor> => new Map([...attnSd('self_attn'), ...linearSd('linear1', 12, 8), ...linearSd('linear2', 8, 12), ...normSd('norm1'), ...normSd('norm2')]);
const torchDec = (): Map<string, Tensor> => new Map([...torchEnc(), ...attnSd('multihead_attn'), ...normSd('norm3')]);
const ours = (kind: sf.TorchLayerKind) => sf.fromTorchTransformerLayer(kind === 'encoder' ? torchEnc() : torchDec(), kind);
/** A copy of `m` with `name` set to `t` (or removed when t is undefined). */
const edited = <V>(m: Map<string, V>, name: string, t?: V): Map<string, V> => {
  const e = new Map(m);
  if (t === undefined) e.delete(name);
  else e.set(name, t);
  return e;
};
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
  exportInt8: [
    ['not a model', () => [{}], 'ERR_ARG'],
    ['quantization off', () => [new sf.TransformerEncoderLayer({ hiddenSize: 8, numHeads: 2, ffnSize: 4 })], 'ERR_ARG'],
  ],
  gemmInt8: [
    ['f32 a', () => [x, Tensor.zeros([3, 8], { dtype: 'i8' })], 'ERR_DTYPE'],
    ['u8 b', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'u8' })], 'ERR_DTYPE'],
    ['inner dims differ', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 7], { dtype: 'i8' })], 'ERR_SHAPE'],
    ['1-D a', () => [Tensor.zeros([8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' })], 'ERR_SHAPE'],
    ['out of another shape', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), { out: i32([3, 2]) }], 'ERR_SHAPE'],
    ['disposed b', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), disposed()], 'ERR_DISPOSED'],
  ],
  linearInt8: [
    ['f32 x', () => [x, Tensor.zeros([3, 8], { dtype: 'i8' }), 1, 1], 'ERR_DTYPE'],
    ['xClip 0', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 0, 1], 'ERR_ARG'],
    ['xClip missing', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' })], 'ERR_ARG'],
    ['wClip NaN', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 1, NaN], 'ERR_ARG'],
    ['wClip of the wrong length', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 1, Tensor.from([1, 1])], 'ERR_SHAPE'],
    ['f16 wClip', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 1, Tensor.from([1, 1, 1], [3], { dtype: 'f16' })], 'ERR_DTYPE'],
    ['bf16 bias', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 1, 1, f32([3]).to('bf16')], 'ERR_DTYPE'],
    ['residual of the wrong shape', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 1, 1, null, { residual: f32([2, 4]) }], 'ERR_SHAPE'],
    ['outClip Infinity', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 1, 1, null, { outClip: Infinity }], 'ERR_ARG'],
    ['unknown activation', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 8], { dtype: 'i8' }), 1, 1, null, { activation: 'tanh' }], 'ERR_ARG'],
    ['w in-features differ', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), Tensor.zeros([3, 7], { dtype: 'i8' }), 1, 1], 'ERR_SHAPE'],
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
  quantize: [
    ['clipMax 0', () => [x, 0], 'ERR_ARG'],
    ['NaN clipMax', () => [x, NaN], 'ERR_ARG'],
    ['infinite clipMax', () => [x, Infinity], 'ERR_ARG'],
    ['clipMax a string', () => [x, '1'], 'ERR_ARG'],
    ['negative clipMax in a tensor (checked on the op thread)', () => [x, Tensor.from([1, -1]), { axis: 0 }], 'ERR_ARG'],
    ['NaN clipMax in a tensor', () => [x, Tensor.from([NaN], [1])], 'ERR_ARG'],
    ['f16 clipMax tensor', () => [x, Tensor.from([1, 1], [2], { dtype: 'f16' })], 'ERR_DTYPE'],
    ['clipMax of the wrong length for the axis', () => [x, Tensor.from([1, 1, 1])], 'ERR_SHAPE'],
    ['per-tensor clipMax of 2 dims', () => [x, Tensor.from([1], [1, 1])], 'ERR_SHAPE'],
    ['axis out of range', () => [x, Tensor.from([1, 1]), { axis: 2 }], 'ERR_ARG'],
    ['fractional axis', () => [x, Tensor.from([1, 1]), { axis: 0.5 }], 'ERR_ARG'],
    ['axis with a number clipMax', () => [x, 1, { axis: 0 }], 'ERR_ARG'],
    ['axis of a 0-dim x', () => [Tensor.from([1], []), Tensor.from([1]), { axis: 0 }], 'ERR_SHAPE'],
    ['clip [2] for a 0-dim x', () => [Tensor.from([1], []), Tensor.from([1, 2])], 'ERR_SHAPE'],
    ['i32 x', () => [i32([4]), 1], 'ERR_DTYPE'],
    ['f32 out', () => [x, 1, { out: f32([2, 8]) }], 'ERR_DTYPE'],
    ['out of another shape', () => [x, 1, { out: Tensor.zeros([2, 7], { dtype: 'i8' }) }], 'ERR_SHAPE'],
    ['disposed x', () => [disposed(), 1], 'ERR_DISPOSED'],
    ['not a tensor', () => [notTensor, 1], 'ERR_ARG'],
    ['options not an object', () => [x, 1, 3], 'ERR_ARG'],
  ],
  maxClip: [
    ['bits 9', () => [x, { bits: 9 }], 'ERR_ARG'],
    ['fractional bits', () => [x, { bits: 7.5 }], 'ERR_ARG'],
    ['axis out of range', () => [x, { axis: 2 }], 'ERR_ARG'],
    ['axis of a 0-dim x', () => [Tensor.from([1], []), { axis: 0 }], 'ERR_SHAPE'],
    ['i8 x', () => [Tensor.zeros([4], { dtype: 'i8' }), {}], 'ERR_DTYPE'],
    ['out of the wrong length', () => [x, { axis: 0, out: f32([3]) }], 'ERR_SHAPE'],
    ['bf16 out', () => [x, { out: f32([1]).to('bf16') }], 'ERR_DTYPE'],
    ['disposed x', () => [disposed()], 'ERR_DISPOSED'],
  ],
  dequantize: [
    ['f32 q', () => [x, 1], 'ERR_DTYPE'],
    ['dtype i8', () => [Tensor.zeros([4], { dtype: 'i8' }), 1, { dtype: 'i8' }], 'ERR_ARG'],
    ['i8 out', () => [Tensor.zeros([4], { dtype: 'i8' }), 1, { out: Tensor.zeros([4], { dtype: 'i8' }) }], 'ERR_DTYPE'],
    ['zero clipMax in a tensor', () => [Tensor.zeros([2, 4], { dtype: 'i8' }), Tensor.from([1, 0])], 'ERR_ARG'],
    ['disposed clipMax', () => [Tensor.zeros([2, 8], { dtype: 'i8' }), disposed()], 'ERR_DISPOSED'],
  ],
  fakeQuant: [
    ['negative clipMax', () => [x, -2], 'ERR_ARG'],
    ['infinite clipMax in a tensor', () => [x, Tensor.from([Infinity], [1])], 'ERR_ARG'],
    ['out of another dtype', () => [x, 1, { out: f32([2, 8]).to('bf16') }], 'ERR_DTYPE'],
    ['u8 x', () => [Tensor.zeros([4], { dtype: 'u8' }), 1], 'ERR_DTYPE'],
  ],
  fakeQuantBackward: [
    ['x of another shape', () => [x, f32([2, 7]), 1], 'ERR_SHAPE'],
    ['x of another dtype', () => [x, x.to('f16'), 1], 'ERR_DTYPE'],
    ['i8 dy', () => [Tensor.zeros([4], { dtype: 'i8' }), Tensor.zeros([4], { dtype: 'i8' }), 1], 'ERR_DTYPE'],
    ['clipMax of the wrong length', () => [x, x, Tensor.from([1, 1, 1]), { axis: 1 }], 'ERR_SHAPE'],
    ['NaN clipMax in a tensor (checked on the op thread)', () => [x, x, Tensor.from([NaN, 1])], 'ERR_ARG'],
    ['clipMax 0', () => [x, x, 0], 'ERR_ARG'],
    ['disposed x', () => [x, disposed(), 1], 'ERR_DISPOSED'],
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
  crossEntropy: [
    ['i32 logits', () => [i32([2, 8]), ceT], 'ERR_DTYPE'],
    ['0-D logits', () => [f32([]), new Int32Array(1)], 'ERR_SHAPE'],
    ['f32 targets tensor', () => [x, f32([2])], 'ERR_DTYPE'],
    ['targets of the wrong length', () => [x, Int32Array.of(1, 2, 3)], 'ERR_SHAPE'],
    ['targets of the wrong shape', () => [f32([2, 3, 8]), i32([3, 2])], 'ERR_SHAPE'],
    ['targets as a number array', () => [x, [1, 2]], 'ERR_ARG'],
    ['target equal to V', () => [x, Int32Array.of(1, 8)], 'ERR_ARG'],
    ['negative target (not ignoreIndex)', () => [x, Int32Array.of(-1, 0)], 'ERR_ARG'],
    ['disposed logits', () => [disposed(), ceT], 'ERR_DISPOSED'],
    ['disposed targets', () => [x, (() => { const t = i32([2]); t.dispose(); return t; })()], 'ERR_DISPOSED'],
    ['labelSmoothing of 1', () => [x, ceT, { labelSmoothing: 1 }], 'ERR_ARG'],
    ['NaN labelSmoothing', () => [x, ceT, { labelSmoothing: NaN }], 'ERR_ARG'],
    ['negative labelSmoothing', () => [x, ceT, { labelSmoothing: -0.1 }], 'ERR_ARG'],
    ['fractional ignoreIndex', () => [x, ceT, { ignoreIndex: 1.5 }], 'ERR_ARG'],
    ['huge ignoreIndex', () => [x, ceT, { ignoreIndex: 2 ** 40 }], 'ERR_ARG'],
    ['unknown reduction', () => [x, ceT, { reduction: 'avg' }], 'ERR_ARG'],
    ['mile not an object', () => [x, ceT, { mile: 2 }], 'ERR_ARG'],
    ['mile sigma 0', () => [x, ceT, { mile: { sigma: 0 } }], 'ERR_ARG'],
    ['negative mile gamma', () => [x, ceT, { mile: { gamma: -1 } }], 'ERR_ARG'],
    ['infinite mile gamma', () => [x, ceT, { mile: { gamma: Infinity } }], 'ERR_ARG'],
    ['options not an object', () => [x, ceT, 'mean'], 'ERR_ARG'],
  ],
  crossEntropyBackward: [
    ['result not an object', () => [x, ceT, 1.5], 'ERR_ARG'],
    ['result without lse', () => [x, ceT, { ...ceRes, lse: undefined }], 'ERR_ARG'],
    ['result with a disposed lse', () => [x, ceT, { ...ceRes, lse: disposed() }], 'ERR_DISPOSED'],
    ['lse of the wrong length', () => [x, ceT, { ...ceRes, lse: f32([3]) }], 'ERR_SHAPE'],
    ['bf16 lse', () => [x, ceT, { ...ceRes, lse: f32([2]).to('bf16') }], 'ERR_DTYPE'],
    ['weights of the wrong length', () => [x, ceT, { ...ceRes, weights: f32([8]) }], 'ERR_SHAPE'],
    ['unknown result.reduction', () => [x, ceT, { ...ceRes, reduction: 'max' }], 'ERR_ARG'],
    ['result without ignoreIndex', () => [x, ceT, { ...ceRes, ignoreIndex: undefined }], 'ERR_ARG'],
    ['target out of range', () => [x, Int32Array.of(8, 0), ceRes], 'ERR_ARG'],
    ['targets of the wrong length', () => [x, Int32Array.of(1), ceRes], 'ERR_SHAPE'],
    ['f16 logits with f32 out', () => [x.to('f16'), ceT, ceRes, { out: f32([2, 8]) }], 'ERR_DTYPE'],
    ['out of another shape', () => [x, ceT, ceRes, { out: f32([8, 2]) }], 'ERR_SHAPE'],
    ['NaN dLoss', () => [x, ceT, ceRes, { dLoss: NaN }], 'ERR_ARG'],
    ['dLoss as a string', () => [x, ceT, ceRes, { dLoss: '1' }], 'ERR_ARG'],
  ],
  adamw: [
    ['grads shorter than params', () => [[v8, f32([3])], [v8], [f32([8]), f32([3])], [f32([8]), f32([3])], { lr: 1e-3, step: 1 }], 'ERR_ARG'],
    ['bf16 param', () => [v8.to('bf16'), f32([8]), f32([8]), f32([8]), { lr: 1e-3, step: 1 }], 'ERR_DTYPE'],
    ['f16 m', () => [f32([8]), v8, f32([8]).to('f16'), f32([8]), { lr: 1e-3, step: 1 }], 'ERR_DTYPE'],
    ['i32 grad', () => [f32([8]), i32([8]), f32([8]), f32([8]), { lr: 1e-3, step: 1 }], 'ERR_DTYPE'],
    ['grad of another shape', () => [f32([8]), f32([2, 4]), f32([8]), f32([8]), { lr: 1e-3, step: 1 }], 'ERR_SHAPE'],
    ['v of another length', () => [f32([8]), v8, f32([8]), f32([9]), { lr: 1e-3, step: 1 }], 'ERR_SHAPE'],
    ['f32 copy', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, copies: f32([8]) }], 'ERR_DTYPE'],
    ['copy of another shape', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, copies: f32([7]).to('bf16') }], 'ERR_SHAPE'],
    ['copies of another count', () => [[f32([8])], [v8], [f32([8])], [f32([8])], { lr: 1e-3, step: 1, copies: [null, null] }], 'ERR_ARG'],
    ['disposed grad', () => [f32([8]), disposed(), f32([8]), f32([8]), { lr: 1e-3, step: 1 }], 'ERR_DISPOSED'],
    ['not a tensor in the list', () => [[f32([8])], [notTensor], [f32([8])], [f32([8])], { lr: 1e-3, step: 1 }], 'ERR_ARG'],
    ['params a number', () => [3, v8, f32([8]), f32([8]), { lr: 1e-3, step: 1 }], 'ERR_ARG'],
    ['the same param twice', () => { const p = f32([8]); return [[p, p], [v8, v8], [f32([8]), f32([8])], [f32([8]), f32([8])], { lr: 1e-3, step: 1 }]; }, 'ERR_ARG'],
    ['m a view of the param', () => { const p = f32([8]); return [p, v8, p.reshape([8]), f32([8]), { lr: 1e-3, step: 1 }]; }, 'ERR_ARG'],
    ['no options', () => [f32([8]), v8, f32([8]), f32([8])], 'ERR_ARG'],
    ['no lr', () => [f32([8]), v8, f32([8]), f32([8]), { step: 1 }], 'ERR_ARG'],
    ['no step', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3 }], 'ERR_ARG'],
    ['NaN lr', () => [f32([8]), v8, f32([8]), f32([8]), { lr: NaN, step: 1 }], 'ERR_ARG'],
    ['negative lr', () => [f32([8]), v8, f32([8]), f32([8]), { lr: -1e-3, step: 1 }], 'ERR_ARG'],
    ['beta1 of 1', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, beta1: 1 }], 'ERR_ARG'],
    ['negative beta2', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, beta2: -0.5 }], 'ERR_ARG'],
    ['negative eps', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, eps: -1e-8 }], 'ERR_ARG'],
    ['infinite weightDecay', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, weightDecay: Infinity }], 'ERR_ARG'],
    ['step 0', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 0 }], 'ERR_ARG'],
    ['fractional step', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 2.5 }], 'ERR_ARG'],
    ['NaN gradScale', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, gradScale: NaN }], 'ERR_ARG'],
    ['decay of another count', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, decay: [true, false] }], 'ERR_ARG'],
    ['decay not a boolean', () => [f32([8]), v8, f32([8]), f32([8]), { lr: 1e-3, step: 1, decay: [1] }], 'ERR_ARG'],
  ],
  gradNorm: [
    ['i32 tensor', () => [[v8, i32([3])]], 'ERR_DTYPE'],
    ['disposed tensor', () => [[disposed()]], 'ERR_DISPOSED'],
    ['null in the list', () => [[v8, null]], 'ERR_ARG'],
    ['a number', () => [5], 'ERR_ARG'],
  ],
  warmupCosine: [
    ['no options', () => [], 'ERR_ARG'],
    ['no totalSteps', () => [{ lr: 1, warmupSteps: 10 }], 'ERR_ARG'],
    ['totalSteps not above warmupSteps', () => [{ lr: 1, warmupSteps: 10, totalSteps: 10 }], 'ERR_ARG'],
    ['fractional warmupSteps', () => [{ lr: 1, warmupSteps: 1.5, totalSteps: 10 }], 'ERR_ARG'],
    ['negative lr', () => [{ lr: -1, warmupSteps: 1, totalSteps: 10 }], 'ERR_ARG'],
    ['NaN lr', () => [{ lr: NaN, warmupSteps: 1, totalSteps: 10 }], 'ERR_ARG'],
    ['minLr above lr', () => [{ lr: 1, warmupSteps: 1, totalSteps: 10, minLr: 2 }], 'ERR_ARG'],
  ],
  inverseSqrt: [
    ['warmupSteps 0', () => [{ lr: 1, warmupSteps: 0 }], 'ERR_ARG'],
    ['no lr', () => [{ warmupSteps: 4 }], 'ERR_ARG'],
    ['infinite lr', () => [{ lr: Infinity, warmupSteps: 4 }], 'ERR_ARG'],
    ['options not an object', () => ['fast'], 'ERR_ARG'],
  ],
  fromTorchTransformerLayer: [
    ['not a Map', () => [Object.fromEntries(torchEnc()), 'encoder'], 'ERR_ARG'],
    ['unknown kind', () => [torchEnc(), 'seq2seq'], 'ERR_ARG'],
    ['missing norm2.bias', () => [edited(torchEnc(), 'norm2.bias'), 'encoder'], 'ERR_ARG'],
    ['a name with a module prefix', () => [edited(torchEnc(), 'layers.0.norm2.bias', f32([8])), 'encoder'], 'ERR_ARG'],
    ['a decoder state_dict as encoder', () => [torchDec(), 'encoder'], 'ERR_ARG'],
    ['an encoder state_dict as decoder', () => [torchEnc(), 'decoder'], 'ERR_ARG'],
    ['in_proj_weight of 2H rows', () => [edited(torchEnc(), 'self_attn.in_proj_weight', f32([16, 8])), 'encoder'], 'ERR_SHAPE'],
    ['linear2.weight transposed', () => [edited(torchEnc(), 'linear2.weight', f32([12, 8])), 'encoder'], 'ERR_SHAPE'],
    ['norm3.weight of the wrong length', () => [edited(torchDec(), 'norm3.weight', f32([7])), 'decoder'], 'ERR_SHAPE'],
    ['1-D in_proj_weight', () => [edited(torchEnc(), 'self_attn.in_proj_weight', f32([24])), 'encoder'], 'ERR_SHAPE'],
    ['hidden size 0', () => [edited(torchEnc(), 'self_attn.in_proj_weight', f32([0, 0])), 'encoder'], 'ERR_SHAPE'],
    ['i32 linear1.bias', () => [edited(torchEnc(), 'linear1.bias', i32([12])), 'encoder'], 'ERR_DTYPE'],
    ['one bf16 tensor among f32', () => [edited(torchEnc(), 'norm1.weight', f32([8]).to('bf16')), 'encoder'], 'ERR_DTYPE'],
    ['disposed tensor', () => [edited(torchEnc(), 'linear1.weight', disposed()), 'encoder'], 'ERR_DISPOSED'],
    ['a number for a tensor', () => [edited(torchEnc(), 'norm1.bias', 0 as unknown as Tensor), 'encoder'], 'ERR_ARG'],
  ],
  toTorchTransformerLayer: [
    ['not a Map', () => [[...ours('encoder')], 'encoder'], 'ERR_ARG'],
    ['kind missing', () => [ours('encoder')], 'ERR_ARG'],
    ['grouped key/value heads (qkv of H + 2·Hkv·D rows)', () => [edited(ours('encoder'), 'attn.qkv.weight', f32([16, 8])), 'encoder'], 'ERR_SHAPE'],
    ['RMSNorm layer (no norm biases)', () => [edited(ours('encoder'), 'attn.norm.bias'), 'encoder'], 'ERR_ARG'],
    ['decoder without cross-attention as decoder', () => [ours('encoder'), 'decoder'], 'ERR_ARG'],
    ['cross.kv.weight of H rows', () => [edited(ours('decoder'), 'cross.kv.weight', f32([8, 8])), 'decoder'], 'ERR_SHAPE'],
    ['ffn.fc2.bias of FFN length', () => [edited(ours('decoder'), 'ffn.fc2.bias', f32([12])), 'decoder'], 'ERR_SHAPE'],
    ['f16 tensor among f32', () => [edited(ours('decoder'), 'cross.q.bias', f32([8]).to('f16')), 'decoder'], 'ERR_DTYPE'],
    ['disposed tensor', () => [edited(ours('decoder'), 'cross.out.weight', disposed()), 'decoder'], 'ERR_DISPOSED'],
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
  lossCurveSvg: [['not an array', () => [{ step: 1 }], 'ERR_ARG']],
  buildInfo: [],
  cudaStatus: [],
  cudaMemory: [],
  cudaEmptyCache: [],
  // the default (CPU-only) addon: nothing to wait for, and no CUDA to wait on
  cudaSynchronize: [['without a CUDA backend', () => [], 'ERR_BACKEND']],
};

// Tensor's static and instance methods are covered in test/tensor.test.ts; the other classes
// (constructors and methods) in CLASS_CASES below.
const NOT_FUNCTIONS = new Set(['Tensor', 'SeqfuseError']);

/** [what, a call that must throw (or return a promise that rejects), the expected code] */
type ClassCase = [what: string, call: () => unknown, code: sf.ErrorCode];

const params = () => new Map([['w', f32([4, 8])], ['b', v8]]);
const optimizer = () => new sf.AdamW(params(), { lr: 1e-3 });
const layerCfg: sf.TransformerLayerConfig = { hiddenSize: 8, numHeads: 2, ffnSize: 4, seed: 1 };
const lmCfg: sf.TransformerLMConfig = { vocabSize: 5, hiddenSize: 8, numLayers: 1, numHeads: 2, ffnSize: 4, maxSeqLen: 8, seed: 1 };
const lm = () => new sf.TransformerLM(lmCfg);
const s2s = () => new sf.Seq2SeqTransformer({ ...lmCfg, numEncoderLayers: 1, numDecoderLayers: 1 });
const encoder = () => new sf.TransformerEncoderLayer(layerCfg);
const crossDecoder = () => new sf.TransformerDecoderLayer({ ...layerCfg, crossAttention: true });

export const CLASS_CASES: Record<string, ClassCase[]> = {
  TransformerEncoder: [
    ['no numLayers', () => new sf.TransformerEncoder({ ...lmCfg, numLayers: undefined as unknown as number }), 'ERR_ARG'],
    ['forward: f32 ids', () => new sf.TransformerEncoder(lmCfg).forward(f32([1, 3])), 'ERR_DTYPE'],
    ['forward: lengths above seq', () => new sf.TransformerEncoder(lmCfg).forward(i32([1, 3]), { lengths: Int32Array.of(4) }), 'ERR_ARG'],
    ['backward: before any forward', () => new sf.TransformerEncoder(lmCfg).backward(f32([1, 3, 8])), 'ERR_ARG'],
    ['mlmLoss: targets of another shape', () => new sf.TransformerEncoder(lmCfg).mlmLoss(i32([1, 3]), i32([1, 2])), 'ERR_SHAPE'],
  ],
  Trainer: [
    ['no model', () => new sf.Trainer({ optimizer: optimizer() } as unknown as sf.TrainerOptions), 'ERR_ARG'],
    ['no optimizer', () => new sf.Trainer({ model: lm() } as unknown as sf.TrainerOptions), 'ERR_ARG'],
    ['accumulate 0', () => new sf.Trainer({ model: lm(), optimizer: optimizer(), accumulate: 0 }), 'ERR_ARG'],
    ['checkpoint without dir', () => new sf.Trainer({ model: lm(), optimizer: optimizer(), checkpoint: { every: 5 } as { dir: string; every: number } }), 'ERR_ARG'],
    ['eval without run', () => new sf.Trainer({ model: lm(), optimizer: optimizer(), eval: { every: 5 } as { every: number; run: () => Promise<number> } }), 'ERR_ARG'],
    ['schedule not a function', () => new sf.Trainer({ model: lm(), optimizer: optimizer(), schedule: 3 as unknown as sf.Schedule }), 'ERR_ARG'],
    ['step: no batches and no data', () => new sf.Trainer({ model: lm(), optimizer: optimizer() }).step(), 'ERR_ARG'],
    ['train: until not an integer', () => new sf.Trainer({ model: lm(), optimizer: optimizer() }).train(1.5), 'ERR_ARG'],
    ['evaluate: no eval hook', () => new sf.Trainer({ model: lm(), optimizer: optimizer() }).evaluate(), 'ERR_ARG'],
    ['saveCheckpoint: no path and no dir', () => new sf.Trainer({ model: lm(), optimizer: optimizer() }).saveCheckpoint(), 'ERR_ARG'],
    ['resume: a path that is not a string', () => new sf.Trainer({ model: lm(), optimizer: optimizer() }).resume(3 as unknown as string), 'ERR_ARG'],
  ],
  TokenBatcher: [
    ['fewer tokens than seqLen + 1', () => new sf.TokenBatcher([1, 2, 3], { batchSize: 1, seqLen: 3 }), 'ERR_ARG'],
    ['batchSize 0', () => new sf.TokenBatcher([1, 2, 3], { batchSize: 0, seqLen: 1 }), 'ERR_ARG'],
    ['tokens not an array', () => new sf.TokenBatcher(5 as unknown as number[], { batchSize: 1, seqLen: 1 }), 'ERR_ARG'],
    ['setState: malformed', () => new sf.TokenBatcher([1, 2, 3], { batchSize: 1, seqLen: 1 }).setState({ rng: 'x' }), 'ERR_ARG'],
  ],
  Embedding: [
    ['no vocabSize', () => new sf.Embedding({ hiddenSize: 8, maxSeqLen: 4 } as sf.EmbeddingConfig), 'ERR_ARG'],
    ['unknown positions', () => new sf.Embedding({ vocabSize: 5, hiddenSize: 8, maxSeqLen: 4, positions: 'rope' as 'none' }), 'ERR_ARG'],
    ['paddingIdx out of range', () => new sf.Embedding({ vocabSize: 5, hiddenSize: 8, maxSeqLen: 4, paddingIdx: 5 }), 'ERR_ARG'],
    ['dropout 2', () => new sf.Embedding({ vocabSize: 5, hiddenSize: 8, maxSeqLen: 4, dropout: 2 }), 'ERR_ARG'],
    ['forward: seq above maxSeqLen', () => new sf.Embedding({ vocabSize: 5, hiddenSize: 8, maxSeqLen: 2 }).forward(i32([1, 3])), 'ERR_SHAPE'],
    ['loadParameters: wrong shape', () => new sf.Embedding({ vocabSize: 5, hiddenSize: 8, maxSeqLen: 4, positions: 'none' }).loadParameters(new Map([['weight', f32([4, 8])]])), 'ERR_SHAPE'],
  ],
  Norm: [
    ['hiddenSize 0', () => new sf.Norm({ hiddenSize: 0 }), 'ERR_ARG'],
    ['unknown norm', () => new sf.Norm({ hiddenSize: 8, norm: 'batchnorm' as 'rmsnorm' }), 'ERR_ARG'],
    ['negative eps', () => new sf.Norm({ hiddenSize: 8, eps: -1 }), 'ERR_ARG'],
  ],
  Seq2SeqTransformer: [
    ['no numEncoderLayers', () => new sf.Seq2SeqTransformer({ ...lmCfg, numDecoderLayers: 1 } as unknown as sf.Seq2SeqConfig), 'ERR_ARG'],
    ['forward: f32 src', () => s2s().forward(f32([1, 3]), i32([1, 2])), 'ERR_DTYPE'],
    ['forward: batch mismatch', () => s2s().forward(i32([1, 3]), i32([2, 2])), 'ERR_SHAPE'],
    ['backward: before any forward', () => s2s().backward(f32([1, 2, 5])), 'ERR_ARG'],
    ['loss: tgtOut of another shape', () => s2s().loss(i32([1, 3]), i32([1, 2]), i32([1, 3])), 'ERR_SHAPE'],
    ['generate: empty source', () => s2s().generate([], [0], { maxNewTokens: 2 }), 'ERR_ARG'],
    ['generate: token out of range', () => s2s().generate([1, 9], [0], { maxNewTokens: 2 }), 'ERR_ARG'],
  ],
  TransformerLM: [
    ['no vocabSize', () => new sf.TransformerLM({ ...lmCfg, vocabSize: undefined as unknown as number }), 'ERR_ARG'],
    ['negative numLayers', () => new sf.TransformerLM({ ...lmCfg, numLayers: -1 }), 'ERR_ARG'],
    ['unknown positions', () => new sf.TransformerLM({ ...lmCfg, positions: 'alibi' as 'learned' }), 'ERR_ARG'],
    ['maxSeqLen 0', () => new sf.TransformerLM({ ...lmCfg, maxSeqLen: 0 }), 'ERR_ARG'],
    ['forward: f32 ids', () => lm().forward(f32([1, 3])), 'ERR_DTYPE'],
    ['enableQuant: unknown weight mode', () => lm().enableQuant({ weight: 'row' as never }), 'ERR_ARG'],
    ['calibrate: quantization off', () => lm().calibrate(() => undefined), 'ERR_ARG'],
    ['calibrate: not a function', () => { const m = lm(); m.enableQuant(); return m.calibrate(3 as never); }, 'ERR_ARG'],
    ['calibrate: no forward reaches the clips', () => { const m = lm(); m.enableQuant(); return m.calibrate(() => undefined); }, 'ERR_ARG'],
    ['forward: 1-D ids', () => lm().forward(i32([3])), 'ERR_SHAPE'],
    ['forward: seq above maxSeqLen', () => lm().forward(i32([1, 9])), 'ERR_SHAPE'],
    ['forward: disposed ids', () => lm().forward((() => { const t = i32([1, 2]); t.dispose(); return t; })()), 'ERR_DISPOSED'],
    ['backward: before any forward', () => lm().backward(f32([1, 2, 5])), 'ERR_ARG'],
    ['backward: dLogits of another shape', async () => {
      const m = lm();
      await m.forward(i32([1, 2]));
      return m.backward(f32([1, 2, 4]));
    }, 'ERR_SHAPE'],
    ['loss: targets of another shape', () => lm().loss(i32([1, 2]), i32([1, 3])), 'ERR_SHAPE'],
    ['generate: empty prompt', () => lm().generate([], { maxNewTokens: 1 }), 'ERR_ARG'],
    ['generate: no maxNewTokens', () => lm().generate([1], {} as { maxNewTokens: number }), 'ERR_ARG'],
    ['loadParameters: a name missing', () => lm().loadParameters(new Map()), 'ERR_ARG'],
  ],
  TransformerEncoderLayer: [
    ['hiddenSize not a multiple of numHeads', () => new sf.TransformerEncoderLayer({ hiddenSize: 10, numHeads: 3, ffnSize: 4 }), 'ERR_ARG'],
    ['numHeads not a multiple of numKvHeads', () => new sf.TransformerEncoderLayer({ ...layerCfg, numKvHeads: 3 }), 'ERR_ARG'],
    ['ffnSize 0', () => new sf.TransformerEncoderLayer({ ...layerCfg, ffnSize: 0 }), 'ERR_ARG'],
    ['no hiddenSize', () => new sf.TransformerEncoderLayer({ numHeads: 2, ffnSize: 4 } as sf.TransformerLayerConfig), 'ERR_ARG'],
    ['attnDropout 2', () => new sf.TransformerEncoderLayer({ ...layerCfg, attnDropout: 2 }), 'ERR_ARG'],
    ['unknown activation', () => new sf.TransformerEncoderLayer({ ...layerCfg, activation: 'tanh' as 'gelu' }), 'ERR_ARG'],
    ['i8 dtype', () => new sf.TransformerEncoderLayer({ ...layerCfg, dtype: 'i8' as 'f32' }), 'ERR_ARG'],
    ['head dim 300', () => new sf.TransformerEncoderLayer({ hiddenSize: 300, numHeads: 1, ffnSize: 4 }), 'ERR_UNSUPPORTED'],
    ['odd rotary.dim', () => new sf.TransformerEncoderLayer({ ...layerCfg, rotary: { dim: 3 } }), 'ERR_ARG'],
    ['rotary.dim above the head dim', () => new sf.TransformerEncoderLayer({ ...layerCfg, rotary: { dim: 6 } }), 'ERR_ARG'],
    ['rotary.base 1', () => new sf.TransformerEncoderLayer({ ...layerCfg, rotary: { base: 1 } }), 'ERR_ARG'],
    ['enableQuant: weightBits 6', () => encoder().enableQuant({ weightBits: 6 }), 'ERR_ARG'],
    ['enableQuant: config not an object', () => encoder().enableQuant(7 as never), 'ERR_ARG'],
    ['forward: calibrate without enableQuant', () => encoder().forward(f32([1, 2, 8]), { calibrate: true }), 'ERR_ARG'],
    ['config not an object', () => new sf.TransformerEncoderLayer(3 as unknown as sf.TransformerLayerConfig), 'ERR_ARG'],
    ['forward: x of another hidden size', () => encoder().forward(f32([2, 3, 7])), 'ERR_SHAPE'],
    ['forward: 2-D x', () => encoder().forward(f32([3, 8])), 'ERR_SHAPE'],
    ['forward: bf16 x', () => encoder().forward(f32([2, 3, 8]).to('bf16')), 'ERR_DTYPE'],
    ['forward: disposed x', () => encoder().forward((() => { const t = f32([2, 3, 8]); t.dispose(); return t; })()), 'ERR_DISPOSED'],
    ['forward: kvLengths above seq', () => encoder().forward(f32([2, 3, 8]), { kvLengths: Int32Array.of(1, 4) }), 'ERR_ARG'],
    ['forward: kvLengths of another batch', () => encoder().forward(f32([2, 3, 8]), { kvLengths: Int32Array.of(1) }), 'ERR_SHAPE'],
    ['forward: seq above maxSeqLen', () => new sf.TransformerEncoderLayer({ ...layerCfg, maxSeqLen: 2 }).forward(f32([2, 3, 8])), 'ERR_SHAPE'],
    ['forward: train not a boolean', () => encoder().forward(f32([2, 3, 8]), { train: 1 as unknown as boolean }), 'ERR_ARG'],
    ['backward: before any forward', () => encoder().backward(f32([2, 3, 8])), 'ERR_ARG'],
    ['backward: dy of another shape than the forward', async () => {
      const l = encoder();
      await l.forward(f32([2, 3, 8]));
      return l.backward(f32([2, 2, 8]));
    }, 'ERR_SHAPE'],
    ['loadParameters: unknown name', () => encoder().loadParameters(new Map([['nope', v8]])), 'ERR_ARG'],
    ['loadParameters: wrong shape', () => encoder().loadParameters(new Map([['attn.qkv.weight', f32([3, 3])]])), 'ERR_SHAPE'],
    ['forward after dispose', () => { const l = encoder(); l.dispose(); return l.forward(f32([2, 3, 8])); }, 'ERR_DISPOSED'],
  ],
  TransformerDecoderLayer: [
    ['crossAttention not a boolean', () => new sf.TransformerDecoderLayer({ ...layerCfg, crossAttention: 1 as unknown as boolean }), 'ERR_ARG'],
    ['forward: cross-attention without encoderOut', () => crossDecoder().forward(f32([1, 3, 8])), 'ERR_ARG'],
    ['forward: encoderOut of another batch', () => crossDecoder().forward(f32([1, 3, 8]), { encoderOut: f32([2, 3, 8]) }), 'ERR_SHAPE'],
    ['forward: encoderOut without cross-attention', () => new sf.TransformerDecoderLayer(layerCfg).forward(f32([1, 3, 8]), { encoderOut: f32([1, 3, 8]) }), 'ERR_ARG'],
    ['forward: encoderLengths above Senc', () => crossDecoder().forward(f32([1, 3, 8]), { encoderOut: f32([1, 2, 8]), encoderLengths: Int32Array.of(3) }), 'ERR_ARG'],
    ['backward: no dEncoderOut with cross-attention', async () => {
      const l = crossDecoder();
      await l.forward(f32([1, 3, 8]), { encoderOut: f32([1, 2, 8]) });
      return l.backward(f32([1, 3, 8]));
    }, 'ERR_ARG'],
    ['backward: dEncoderOut of another length', async () => {
      const l = crossDecoder();
      await l.forward(f32([1, 3, 8]), { encoderOut: f32([1, 2, 8]) });
      return l.backward(f32([1, 3, 8]), { dEncoderOut: f32([1, 3, 8]) });
    }, 'ERR_SHAPE'],
  ],
  AdamW: [
    ['params not a Map', () => new sf.AdamW([] as unknown as Map<string, Tensor>, { lr: 1 }), 'ERR_ARG'],
    ['no options', () => new sf.AdamW(params(), undefined as unknown as sf.AdamWOptions), 'ERR_ARG'],
    ['NaN lr', () => new sf.AdamW(params(), { lr: NaN }), 'ERR_ARG'],
    ['three betas', () => new sf.AdamW(params(), { lr: 1, betas: [0.9, 0.9, 0.9] as unknown as [number, number] }), 'ERR_ARG'],
    ['beta2 of 1', () => new sf.AdamW(params(), { lr: 1, betas: [0.9, 1] }), 'ERR_ARG'],
    ['negative weightDecay', () => new sf.AdamW(params(), { lr: 1, weightDecay: -0.1 }), 'ERR_ARG'],
    ['i32 parameter', () => new sf.AdamW(new Map([['ids', i32([4])]]), { lr: 1 }), 'ERR_DTYPE'],
    ['disposed parameter', () => new sf.AdamW(new Map([['w', disposed()]]), { lr: 1 }), 'ERR_DISPOSED'],
    ['one tensor under two names', () => new sf.AdamW(new Map([['a', v8], ['b', v8]]), { lr: 1 }), 'ERR_ARG'],
    ['decay not returning a boolean', () => new sf.AdamW(params(), { lr: 1, decay: (() => 1) as unknown as () => boolean }), 'ERR_ARG'],
    ['step: a gradient missing', () => optimizer().step(new Map([['w', f32([4, 8])]])), 'ERR_ARG'],
    ['step: a gradient too many', () => optimizer().step(new Map([['w', f32([4, 8])], ['b', v8], ['c', v8]])), 'ERR_ARG'],
    ['step: a gradient of another shape', () => optimizer().step(new Map([['w', f32([8, 4])], ['b', v8]])), 'ERR_SHAPE'],
    ['step: an i32 gradient', () => optimizer().step(new Map([['w', f32([4, 8])], ['b', i32([8])]])), 'ERR_DTYPE'],
    ['step: a disposed gradient', () => optimizer().step(new Map([['w', f32([4, 8])], ['b', (() => { const t = f32([8]); t.dispose(); return t; })()]])), 'ERR_DISPOSED'],
    ['step: grads not a Map', () => optimizer().step({} as Map<string, Tensor>), 'ERR_ARG'],
    ['step: negative maxGradNorm', () => optimizer().step(new Map([['w', f32([4, 8])], ['b', v8]]), { maxGradNorm: -1 }), 'ERR_ARG'],
    ['step: NaN gradScale', () => optimizer().step(new Map([['w', f32([4, 8])], ['b', v8]]), { gradScale: NaN }), 'ERR_ARG'],
    ['loadStateDict: not an object', () => optimizer().loadStateDict(7 as unknown as sf.AdamWState), 'ERR_ARG'],
    ['loadStateDict: tensors not a Map', () => optimizer().loadStateDict({ step: 0, tensors: {} as Map<string, Tensor> }), 'ERR_ARG'],
  ],
  DynamicLossScaler: [
    ['initScale 0', () => new sf.DynamicLossScaler({ initScale: 0 }), 'ERR_ARG'],
    ['infinite initScale', () => new sf.DynamicLossScaler({ initScale: Infinity }), 'ERR_ARG'],
    ['growthFactor 1', () => new sf.DynamicLossScaler({ growthFactor: 1 }), 'ERR_ARG'],
    ['backoffFactor 1', () => new sf.DynamicLossScaler({ backoffFactor: 1 }), 'ERR_ARG'],
    ['fractional growthInterval', () => new sf.DynamicLossScaler({ growthInterval: 0.5 }), 'ERR_ARG'],
    ['options not an object', () => new sf.DynamicLossScaler(2 as unknown as sf.DynamicLossScalerOptions), 'ERR_ARG'],
    ['update: not a boolean', () => new sf.DynamicLossScaler().update(1 as unknown as boolean), 'ERR_ARG'],
    ['loadStateDict: missing fields', () => new sf.DynamicLossScaler().loadStateDict({} as sf.DynamicLossScalerState), 'ERR_ARG'],
  ],
};
// Functions that return a promise (file I/O): bad input rejects it, never throws synchronously.
const RETURN_PROMISES = new Set(['saveSafetensors', 'loadSafetensors']);

describe('bad input gives typed errors', () => {
  it('every exported function has bad-input cases listed (or is argument-free)', () => {
    const fns = Object.entries(sf).filter(([n, v]) => typeof v === 'function' && !NOT_FUNCTIONS.has(n)).map(([n]) => n);
    const missing = fns.filter((n) => !(n in CASES) && !(n in CLASS_CASES));
    expect(missing, 'exports without bad-input cases').toEqual([]);
  });

  for (const [name, cases] of Object.entries(CLASS_CASES)) {
    for (const [what, call, code] of cases) {
      it(`${name}: ${what} -> ${code}`, async () => {
        let err: unknown;
        try {
          const r = call();
          // methods that return promises reject instead of throwing
          if (r instanceof Promise) await r;
        } catch (e) {
          err = e;
        }
        expect(err, 'threw').toBeInstanceOf(SeqfuseError);
        expect((err as SeqfuseError).code, (err as Error).message).toBe(code);
        expect((err as Error).message).toMatch(new RegExp(`^${name}`));
      });
    }
  }

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

// PyTorch's parameter names for nn.TransformerEncoderLayer / nn.TransformerDecoderLayer and the
// DESIGN §4 names of TransformerEncoderLayer / TransformerDecoderLayer, both ways. The layouts are
// the same (nn.Linear [out, in]; in_proj rows Q, then K, then V), so the map renames tensors and
// splits (or joins) the cross-attention in_proj: rows [0, H) are cross.q, rows [H, 3H) cross.kv.
import { isFloat } from '../dtype.js';
import { describe, fail } from '../errors.js';
import { tensorArg } from '../ops/common.js';
import { Tensor } from '../tensor.js';

/** Which PyTorch module a state_dict comes from (or goes to). */
export type TorchLayerKind = 'encoder' | 'decoder';

/** One PyTorch tensor, the parameter(s) it holds and its shape for hidden h, FFN f. Two names: rows split at h. */
interface Entry {
  torch: string;
  ours: readonly [string] | readonly [string, string];
  shape: (h: number, f: number) => number[];
}

const linear = (torch: string, ours: string, out: (h: number, f: number) => number, inp: (h: number, f: number) => number): Entry[] => [
  { torch: `${torch}.weight`, ours: [`${ours}.weight`], shape: (h, f) => [out(h, f), inp(h, f)] },
  { torch: `${torch}.bias`, ours: [`${ours}.bias`], shape: (h, f) => [out(h, f)] },
];
const norm = (torch: string, ours: string): Entry[] => [
  { torch: `${torch}.weight`, ours: [`${ours}.weight`], shape: (h) => [h] },
  { torch: `${torch}.bias`, ours: [`${ours}.bias`], shape: (h) => [h] },
];
const H = (h: number) => h;
const F = (_h: number, f: number) => f;

const SELF_ATTN: Entry[] = [
  { torch: 'self_attn.in_proj_weight', ours: ['attn.qkv.weight'], shape: (h) => [3 * h, h] },
  { torch: 'self_attn.in_proj_bias', ours: ['attn.qkv.bias'], shape: (h) => [3 * h] },
  ...linear('self_attn.out_proj', 'attn.out', H, H),
  ...norm('norm1', 'attn.norm'),
];
const FFN: Entry[] = [...linear('linear1', 'ffn.fc1', F, H), ...linear('linear2', 'ffn.fc2', H, F)];

const ENTRIES: Record<TorchLayerKind, Entry[]> = {
  encoder: [...SELF_ATTN, ...FFN, ...norm('norm2', 'ffn.norm')],
  decoder: [
    ...SELF_ATTN,
    { torch: 'multihead_attn.in_proj_weight', ours: ['cross.q.weight', 'cross.kv.weight'], shape: (h) => [3 * h, h] },
    { torch: 'multihead_attn.in_proj_bias', ours: ['cross.q.bias', 'cross.kv.bias'], shape: (h) => [3 * h] },
    ...linear('multihead_attn.out_proj', 'cross.out', H, H),
    ...norm('norm2', 'cross.norm'),
    ...FFN,
    ...norm('norm3', 'ffn.norm'),
  ],
};

function kindArg(kind: unknown, op: string): TorchLayerKind {
  if (kind !== 'encoder' && kind !== 'decoder') fail('ERR_ARG', `${op}: expected kind to be 'encoder' or 'decoder' but received ${describe(kind)}`);
  return kind;
}

/** The map's tensors, checked: exactly `names`, live Tensors of one float dtype. */
function namedTensors(m: unknown, op: string, names: readonly string[]): Map<string, Tensor> {
  if (!(m instanceof Map)) fail('ERR_ARG', `${op}: expected a Map<string, Tensor> but received ${describe(m)}`);
  for (const name of m.keys())
    if (!names.includes(name)) fail('ERR_ARG', `${op}: unknown parameter '${String(name)}' (expected ${names.join(', ')})`);
  const out = new Map<string, Tensor>();
  for (const name of names) {
    if (!m.has(name)) fail('ERR_ARG', `${op}: missing parameter '${name}'`);
    const t = tensorArg(m.get(name), op, name);
    const first = out.values().next().value;
    if (!isFloat(t.dtype)) fail('ERR_DTYPE', `${op}: expected ${name} of dtype f32, f16 or bf16 but received ${t.dtype}`);
    if (first && t.dtype !== first.dtype) fail('ERR_DTYPE', `${op}: expected ${name} of dtype ${first.dtype} (as the others) but received ${t.dtype}`);
    out.set(name, t);
  }
  return out;
}

function checkShape(op: string, name: string, t: Tensor, want: number[], hint = ''): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
    fail('ERR_SHAPE', `${op}: expected ${name} of shape [${want.join(', ')}] but received [${t.shape.join(', ')}]${hint}`);
}

/** Hidden size (last dim of `hName`) and FFN size (rows of `fName`), at least 1. */
function sizes(op: string, m: Map<string, Tensor>, hName: string, fName: string): [number, number] {
  const h = m.get(hName)!.shape.at(-1) ?? 0;
  const f = m.get(fName)!.shape[0] ?? 0;
  if (h < 1 || f < 1) fail('ERR_SHAPE', `${op}: expected a hidden size (last dim of ${hName}) and an FFN size (rows of ${fName}) of at least 1 but received ${h} and ${f}`);
  return [h, f];
}

/** A new tensor of `shape` holding `parts` one after the other, in `dtype` (exact: the values came from it). */
function joined(parts: Float32Array[], shape: number[], dtype: Tensor['dtype']): Tensor {
  const v = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    v.set(p, at);
    at += p.length;
  }
  return Tensor.from(v, shape, { dtype });
}

/**
 * Renames the state_dict of PyTorch's `nn.TransformerEncoderLayer` (kind 'encoder') or
 * `nn.TransformerDecoderLayer` ('decoder') to the parameter names of TransformerEncoderLayer /
 * TransformerDecoderLayer (with crossAttention), ready for `layer.loadParameters`. Every name must be
 * present and none other (strip a module prefix first); shapes are checked against the hidden size
 * (from in_proj_weight) and the FFN size (from linear1.weight). Returns new tensors (the caller
 * disposes them) of the input's dtype, which must be f32, f16 or bf16 and shared by all.
 */
export function fromTorchTransformerLayer(stateDict: Map<string, Tensor>, kind: TorchLayerKind): Map<string, Tensor> {
  const op = 'fromTorchTransformerLayer';
  const entries = ENTRIES[kindArg(kind, op)];
  const src = namedTensors(stateDict, op, entries.map((e) => e.torch));
  const [h, f] = sizes(op, src, 'self_attn.in_proj_weight', 'linear1.weight');
  for (const e of entries) checkShape(op, e.torch, src.get(e.torch)!, e.shape(h, f));
  const out = new Map<string, Tensor>();
  for (const e of entries) {
    const t = src.get(e.torch)!;
    const v = t.toArray() as Float32Array;
    const [a, b] = e.ours;
    if (b === undefined) {
      out.set(a, joined([v], [...t.shape], t.dtype));
    } else {
      const [rows, ...rest] = t.shape as [number, ...number[]];
      const cut = h * (t.numel / rows);
      out.set(a, joined([v.subarray(0, cut)], [h, ...rest], t.dtype));
      out.set(b, joined([v.subarray(cut)], [rows - h, ...rest], t.dtype));
    }
  }
  return out;
}

/**
 * The inverse of {@link fromTorchTransformerLayer}: parameters (or gradients) of a
 * TransformerEncoderLayer / TransformerDecoderLayer under PyTorch's state_dict names, with
 * cross.q and cross.kv joined into multihead_attn.in_proj_*. PyTorch's layers have no grouped
 * key/value heads and no RMSNorm, so a layer with numKvHeads < numHeads or norm 'rmsnorm' gives
 * ERR_SHAPE / ERR_ARG. A decoder layer without cross-attention maps with kind 'encoder' (PyTorch's
 * encoder layer run with a causal mask). Returns new tensors (the caller disposes them).
 */
export function toTorchTransformerLayer(params: Map<string, Tensor>, kind: TorchLayerKind): Map<string, Tensor> {
  const op = 'toTorchTransformerLayer';
  const entries = ENTRIES[kindArg(kind, op)];
  const src = namedTensors(params, op, entries.flatMap((e) => e.ours));
  const [h, f] = sizes(op, src, 'attn.qkv.weight', 'ffn.fc1.weight');
  for (const e of entries) {
    const [a, b] = e.ours;
    const [rows, ...rest] = e.shape(h, f) as [number, ...number[]];
    if (b === undefined) {
      checkShape(op, a, src.get(a)!, [rows, ...rest], a === 'attn.qkv.weight' ? ' (PyTorch\'s layers have no grouped key/value heads)' : '');
    } else {
      checkShape(op, a, src.get(a)!, [h, ...rest]);
      checkShape(op, b, src.get(b)!, [rows - h, ...rest]);
    }
  }
  const out = new Map<string, Tensor>();
  for (const e of entries) {
    const parts = e.ours.map((n) => src.get(n)!);
    out.set(e.torch, joined(parts.map((t) => t.toArray() as Float32Array), e.shape(h, f), parts[0]!.dtype));
  }
  return out;
}

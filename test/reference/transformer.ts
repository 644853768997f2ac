// float64 reference of the Transformer layer (native/layers/transformer_layer.h), composed from
// the ops' references; its gradients are central finite differences of this forward (in float64,
// so they are exact to ~1e-9 for the small shapes the tests use).
import { type ActName, biasActRef, biasDropoutResidualRef } from './activation.js';
import { attentionRef } from './attention.js';
import { linearRef } from './matmul.js';
import { layerNormRef } from './norm.js';
import { keepMask } from './philox.js';
import { fakeQuantRef, quantLayout } from './quant.js';

export interface LayerRefConfig {
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  act: ActName;
  preLN: boolean;
  rms: boolean;
  eps: number;
  causal: boolean;
  cross: boolean;
  attnDropout: number;
  actDropout: number;
  hiddenDropout: number;
  /** Rotary embedding of self-attention's q and k (dims, base); 0 or undefined: none. */
  rotaryDim?: number;
  rotaryBase?: number;
}

export interface LayerRefInputs {
  B: number;
  S: number;
  x: Float64Array;
  lengths?: ArrayLike<number> | null;
  Senc?: number;
  enc?: Float64Array;
  encLengths?: ArrayLike<number> | null;
  /** The call's seed with dropout on (train); undefined: eval, no dropout. */
  seed?: bigint;
}

/**
 * Quantization-aware training in the reference (transformer_layer.h): a clip parameter present in
 * `p` (e.g. 'attn.qkv.input_clip', [1]) fake-quantizes that point; weights are fake-quantized with
 * their max-abs clip when `weight` is not 'none'. To give the straight-through / PACT gradients by
 * finite differences, each point is the surrogate clamp(v, -clip, clip) + r (weights: w + r) with
 * the quantization residual r recorded in `frozen` on the first evaluation and held after: its
 * value is the fake-quant, its derivatives are PACT's (1 inside the clip, 0 outside, ±1 to the clip).
 */
export interface RefQuant {
  weight: 'channel' | 'tensor' | 'none';
  /** Weight codes within ±levels (127: 8 bits, 63: 7 bits). */
  levels: number;
  frozen: Map<string, Float64Array>;
}

/** The max-abs clip of rows [n, k] (per row, or one), widened for `levels`, in the kernel's f32 steps. */
export function weightClipRef(w: ArrayLike<number>, n: number, k: number, perChannel: boolean, levels: number): number[] {
  const widen = Math.fround(127 / levels);
  const rows = perChannel ? n : 1, len = perChannel ? k : n * k;
  return Array.from({ length: rows }, (_, r) => {
    let m = 1.1754943508222875e-38;
    for (let i = 0; i < len; i++) m = Math.max(m, Math.abs(w[r * len + i]!));
    return Math.fround(m * widen);
  });
}

/** Each dropout site's seed, as the layer derives it from the call's seed (transformer_layer.cc site_seed). */
export function siteSeed(seed: bigint, site: number): bigint {
  const M = (1n << 64n) - 1n;
  let z = (seed + 0x9e3779b97f4a7c15n * BigInt(site + 1)) & M;
  z = ((z ^ (z >> 31n)) * 0xbf58476d1ce4e5b9n) & M;
  return z ^ (z >> 29n);
}
const SITE = { attn0: 0, hidden0: 1, attn1: 2, hidden1: 3, act: 4, hidden2: 5 };

/** Columns [c0, c0 + H*D) of rows [B*S, ld] as heads [B, H, S, D]. */
function toHeads(rows: Float64Array, B: number, S: number, H: number, D: number, ld: number, c0: number): Float64Array {
  const out = new Float64Array(B * H * S * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) out[((b * H + h) * S + s) * D + d] = rows[(b * S + s) * ld + c0 + h * D + d]!;
  return out;
}

function fromHeads(heads: Float64Array, B: number, S: number, H: number, D: number): Float64Array {
  const out = new Float64Array(B * S * H * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) out[(b * S + s) * H * D + h * D + d] = heads[((b * H + h) * S + s) * D + d]!;
  return out;
}

/** Rotates heads [B, H, S, D] in place by position (RoFormer, "rotate half" pairs (i, i + rot/2)). */
function rotary(x: Float64Array, B: number, H: number, S: number, D: number, rot: number, base: number): void {
  const half = rot / 2;
  for (let bh = 0; bh < B * H; bh++) {
    for (let s = 0; s < S; s++) {
      const o = (bh * S + s) * D;
      for (let i = 0; i < half; i++) {
        const th = s * base ** (-2 * i / rot);
        const u = x[o + i]!, v = x[o + i + half]!;
        x[o + i] = u * Math.cos(th) - v * Math.sin(th);
        x[o + i + half] = u * Math.sin(th) + v * Math.cos(th);
      }
    }
  }
}

/** y [B, S, hidden] of the layer for parameters `p` (DESIGN §4 names). */
export function layerRef(c: LayerRefConfig, p: Map<string, Float64Array>, inp: LayerRefInputs, quant?: RefQuant): Float64Array {
  const { B, S } = inp;
  const T = B * S, Hd = c.hidden, D = Hd / c.heads, nkv = c.kvHeads;
  const P = (name: string): Float64Array => {
    const v = p.get(name);
    if (!v) throw new Error(`layerRef: missing ${name}`);
    return v;
  };
  const norm = (x: Float64Array, prefix: string) => layerNormRef(x, P(`${prefix}.weight`), c.rms ? null : P(`${prefix}.bias`), T, Hd, c.eps, c.rms);
  const train = inp.seed !== undefined;
  const mask = (n: number, prob: number, site: number) => (train && prob > 0 ? keepMask(n, prob, siteSeed(inp.seed!, site)) : null);
  // the surrogate of fake-quant at a point: its residual frozen at the first evaluation
  const frozen = (key: string, base: Float64Array, fq: () => Float64Array): Float64Array => {
    let r = quant!.frozen.get(key);
    if (!r) {
      const q = fq();
      r = Float64Array.from(q, (e, i) => e - base[i]!);
      quant!.frozen.set(key, r);
    }
    return Float64Array.from(base, (e, i) => e + r[i]!);
  };
  const fqA = (name: string, v: Float64Array): Float64Array => {
    const clip = p.get(name);
    if (!quant || !clip) return v;
    const cl = clip[0]!;
    const clamped = Float64Array.from(v, (e) => Math.min(Math.max(e, -cl), cl));
    return frozen(name, clamped, () => fakeQuantRef(v, [cl], quantLayout([v.length], null)));
  };
  const W = (name: string): Float64Array => {
    const w = P(name);
    if (!quant || quant.weight === 'none') return w;
    const n = name.startsWith('attn.qkv') ? Hd + 2 * nkv * D : name.startsWith('cross.kv') ? 2 * nkv * D : name.startsWith('ffn.fc1') ? c.ffn : Hd;
    const k = w.length / n;
    const perChannel = quant.weight === 'channel';
    const clips = weightClipRef(w, n, k, perChannel, quant.levels);
    return frozen(`${name}#w`, w, () => fakeQuantRef(w, clips, perChannel ? quantLayout([n, k], 0) : quantLayout([n * k], null)));
  };

  const attention = (h: Float64Array, blk: 0 | 1): Float64Array => {
    let q: Float64Array, k: Float64Array, v: Float64Array;
    const Sk = blk === 0 ? S : inp.Senc!;
    if (blk === 0) {
      const ld = Hd + 2 * nkv * D;
      const qkv = fqA('attn.qkv.output_clip', linearRef(fqA('attn.qkv.input_clip', h), W('attn.qkv.weight'), P('attn.qkv.bias'), null, T, ld, Hd, 'none'));
      q = toHeads(qkv, B, S, c.heads, D, ld, 0);
      k = toHeads(qkv, B, S, nkv, D, ld, Hd);
      v = toHeads(qkv, B, S, nkv, D, ld, Hd + nkv * D);
      if (c.rotaryDim) {
        rotary(q, B, c.heads, S, D, c.rotaryDim, c.rotaryBase ?? 10000);
        rotary(k, B, nkv, S, D, c.rotaryDim, c.rotaryBase ?? 10000);
      }
    } else {
      const ld = 2 * nkv * D;
      q = toHeads(fqA('cross.q.output_clip', linearRef(fqA('cross.q.input_clip', h), W('cross.q.weight'), P('cross.q.bias'), null, T, Hd, Hd, 'none')),
        B, S, c.heads, D, Hd, 0);
      const kv = fqA('cross.kv.output_clip', linearRef(fqA('cross.kv.input_clip', inp.enc!), W('cross.kv.weight'), P('cross.kv.bias'), null, B * Sk, ld, Hd, 'none'));
      k = toHeads(kv, B, Sk, nkv, D, ld, 0);
      v = toHeads(kv, B, Sk, nkv, D, ld, nkv * D);
    }
    const { out } = attentionRef({ B, H: c.heads, Hkv: nkv, Sq: S, Sk, D }, q, k, v, {
      causal: blk === 0 && c.causal,
      kvLengths: blk === 0 ? inp.lengths ?? null : inp.encLengths ?? null,
      dropout: train ? c.attnDropout : 0,
      seed: train ? siteSeed(inp.seed!, blk === 0 ? SITE.attn0 : SITE.attn1) : 0,
    });
    const pre = blk === 0 ? 'attn.out' : 'cross.out';
    return linearRef(fqA(`${pre}.input_clip`, fromHeads(out, B, S, c.heads, D)), W(`${pre}.weight`), null, null, T, Hd, Hd, 'none');
  };

  const ffn = (h: Float64Array): Float64Array => {
    const pre = linearRef(fqA('ffn.fc1.input_clip', h), W('ffn.fc1.weight'), null, null, T, c.ffn, Hd, 'none');
    const f1 = biasActRef(pre, P('ffn.fc1.bias'), T, c.ffn, c.act, mask(T * c.ffn, c.actDropout, SITE.act), c.actDropout);
    return linearRef(fqA('ffn.fc2.input_clip', f1), W('ffn.fc2.weight'), null, null, T, Hd, c.ffn, 'none');
  };

  const block = (x: Float64Array, blk: 0 | 1 | 2): Float64Array => {
    const prefix = ['attn', 'cross', 'ffn'][blk]!;
    const h = c.preLN ? norm(x, `${prefix}.norm`) : x;
    const z = blk === 2 ? ffn(h) : attention(h, blk);
    const bias = P(blk === 2 ? 'ffn.fc2.bias' : `${prefix}.out.bias`);
    const site = [SITE.hidden0, SITE.hidden1, SITE.hidden2][blk]!;
    const r = biasDropoutResidualRef(z, bias, x, T, Hd, mask(T * Hd, c.hiddenDropout, site), c.hiddenDropout);
    return c.preLN ? r : norm(r, `${prefix}.norm`);
  };

  let x = block(inp.x, 0);
  if (c.cross) x = block(x, 1);
  return block(x, 2);
}

/**
 * Gradients of L = sum(dy * layerRef(...)) by central differences with step h, for x, enc (when
 * cross) and every parameter: Map of name -> gradient ('x', 'enc' and the parameter names).
 */
export function layerGradFD(c: LayerRefConfig, p: Map<string, Float64Array>, inp: LayerRefInputs, dy: Float64Array,
  h = 1e-5, quant?: RefQuant): Map<string, Float64Array> {
  const loss = (): number => {
    const y = layerRef(c, p, inp, quant);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += dy[i]! * y[i]!;
    return s;
  };
  const grad = (v: Float64Array): Float64Array => {
    const g = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const keep = v[i]!;
      v[i] = keep + h;
      const up = loss();
      v[i] = keep - h;
      const down = loss();
      v[i] = keep;
      g[i] = (up - down) / (2 * h);
    }
    return g;
  };
  const out = new Map<string, Float64Array>();
  out.set('x', grad(inp.x));
  if (c.cross) out.set('enc', grad(inp.enc!));
  for (const [name, v] of p) out.set(name, grad(v));
  return out;
}

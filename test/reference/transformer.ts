// float64 reference of the Transformer layer (native/layers/transformer_layer.h), composed from
// the ops' references; its gradients are central finite differences of this forward (in float64,
// so they are exact to ~1e-9 for the small shapes the tests use).
import { type ActName, biasActRef, biasDropoutResidualRef } from './activation.js';
import { attentionRef } from './attention.js';
import { linearRef } from './matmul.js';
import { layerNormRef } from './norm.js';
import { keepMask } from './philox.js';

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
export function layerRef(c: LayerRefConfig, p: Map<string, Float64Array>, inp: LayerRefInputs): Float64Array {
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

  const attention = (h: Float64Array, blk: 0 | 1): Float64Array => {
    let q: Float64Array, k: Float64Array, v: Float64Array;
    const Sk = blk === 0 ? S : inp.Senc!;
    if (blk === 0) {
      const ld = Hd + 2 * nkv * D;
      const qkv = linearRef(h, P('attn.qkv.weight'), P('attn.qkv.bias'), null, T, ld, Hd, 'none');
      q = toHeads(qkv, B, S, c.heads, D, ld, 0);
      k = toHeads(qkv, B, S, nkv, D, ld, Hd);
      v = toHeads(qkv, B, S, nkv, D, ld, Hd + nkv * D);
      if (c.rotaryDim) {
        rotary(q, B, c.heads, S, D, c.rotaryDim, c.rotaryBase ?? 10000);
        rotary(k, B, nkv, S, D, c.rotaryDim, c.rotaryBase ?? 10000);
      }
    } else {
      const ld = 2 * nkv * D;
      q = toHeads(linearRef(h, P('cross.q.weight'), P('cross.q.bias'), null, T, Hd, Hd, 'none'), B, S, c.heads, D, Hd, 0);
      const kv = linearRef(inp.enc!, P('cross.kv.weight'), P('cross.kv.bias'), null, B * Sk, ld, Hd, 'none');
      k = toHeads(kv, B, Sk, nkv, D, ld, 0);
      v = toHeads(kv, B, Sk, nkv, D, ld, nkv * D);
    }
    const { out } = attentionRef({ B, H: c.heads, Hkv: nkv, Sq: S, Sk, D }, q, k, v, {
      causal: blk === 0 && c.causal,
      kvLengths: blk === 0 ? inp.lengths ?? null : inp.encLengths ?? null,
      dropout: train ? c.attnDropout : 0,
      seed: train ? siteSeed(inp.seed!, blk === 0 ? SITE.attn0 : SITE.attn1) : 0,
    });
    return linearRef(fromHeads(out, B, S, c.heads, D), P(blk === 0 ? 'attn.out.weight' : 'cross.out.weight'), null, null, T, Hd, Hd, 'none');
  };

  const ffn = (h: Float64Array): Float64Array => {
    const pre = linearRef(h, P('ffn.fc1.weight'), null, null, T, c.ffn, Hd, 'none');
    const f1 = biasActRef(pre, P('ffn.fc1.bias'), T, c.ffn, c.act, mask(T * c.ffn, c.actDropout, SITE.act), c.actDropout);
    return linearRef(f1, P('ffn.fc2.weight'), null, null, T, Hd, c.ffn, 'none');
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
  h = 1e-5): Map<string, Float64Array> {
  const loss = (): number => {
    const y = layerRef(c, p, inp);
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

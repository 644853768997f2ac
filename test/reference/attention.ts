// float64 references of fusedAttention and its backward, from the formulas of
// native/ops/attention.h, and the unfused same-precision path that the bf16/f16 kernels are held
// to: the same loops with a rounding to the storage dtype after every step a plain
// implementation stores (scores, softmax, dropout, each product).
import type { DType } from '../../lib/index.js';
import { bf16BitsToNumber, f16BitsToNumber, toBf16Bits, toF16Bits } from './half.js';
import { dropoutScale, keepMask } from './philox.js';

export interface AttnShape {
  B: number;
  H: number;
  Hkv: number;
  Sq: number;
  Sk: number;
  D: number;
}

export interface AttnRefOptions {
  causal?: boolean;
  /** Valid keys per batch row ([B]); null: all Sk. */
  kvLengths?: ArrayLike<number> | null;
  /** Additive bias and its shape, broadcast to [B, H, Sq, Sk] aligned at the end. */
  bias?: { v: ArrayLike<number>; shape: readonly number[] } | null;
  /** Default 1/sqrt(D). */
  scale?: number;
  dropout?: number;
  seed?: number | bigint;
  /** The storage rounding of the unfused path (roundTo); default none: exact float64. */
  round?: (x: number) => number;
  /**
   * Backward only: take delta_i = <dout_i, out_i> from this out [B, H, Sq, D], as attention.h's
   * kernels do from the out they are given (e.g. rounded to the dtype), instead of the exact
   * sum_j P_ij dP_ij.
   */
  deltaOut?: ArrayLike<number>;
  /**
   * Backward only: instead of the gradients, the magnitudes of the terms they are sums of, each
   * product and difference taken in absolute value: dS_ij = P_ij (sum_d |dout_id v_jd| +
   * sum_d |dout_id out_id|) (out from deltaOut; without it the bound sum_j P_ij sum_d |dout_id v_jd|), dq_i = scale sum_j dS_ij |k_j|,
   * dk_j = scale sum_i dS_ij |q_i|, dv_j = sum_i P_ij |dout_i|. Rounding in f32 arithmetic errs by
   * a few units of f32 roundoff of these, however much the signed sums cancel (test floors).
   */
  magnitude?: boolean;
}

export interface AttnForward {
  /** [B, H, Sq, D] */
  out: Float64Array;
  /** [B, H, Sq]; -Infinity where a query sees no key */
  lse: Float64Array;
}

export interface AttnGrads {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  /** [B, Hkv, Sk]: 1 where no query of the group sees the key (its dk and dv are exactly 0) */
  hiddenKeys: Uint8Array;
}

/** Rounding of a float64 value to `dtype`'s storage (round to nearest even; f32 first). */
export function roundTo(dtype: DType): (x: number) => number {
  if (dtype === 'bf16') return (x) => bf16BitsToNumber(toBf16Bits(x));
  if (dtype === 'f16') return (x) => f16BitsToNumber(toF16Bits(x));
  return Math.fround;
}

const exact = (x: number) => x;

/** Strides of a bias of shape `bs` broadcast to [B, H, Sq, Sk] (aligned at the end; 0 on broadcast dims). */
function biasStrides(bs: readonly number[]): number[] {
  const st = [0, 0, 0, 0];
  let stride = 1;
  for (let d = bs.length - 1; d >= 0; d--) {
    st[d + 4 - bs.length] = bs[d] === 1 ? 0 : stride;
    stride *= bs[d]!;
  }
  return st;
}

/** The inputs as Float64Array, so the loops below see one array kind. */
function f64(a: ArrayLike<number>): Float64Array {
  return a instanceof Float64Array ? a : Float64Array.from(a);
}

/**
 * The probabilities of one (b, h) block: P [Sq, Sk] (undropped, 0 where hidden), the dropout
 * factors keep * scale_p per element (null without dropout), and lse [Sq].
 */
function probabilities(s: AttnShape, q: Float64Array, k: Float64Array, b: number, h: number, o: AttnRefOptions,
  round: (x: number) => number): { P: Float64Array; drop: Float64Array | null; lse: Float64Array } {
  const { H, Hkv, Sq, Sk, D } = s;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const len = o.kvLengths ? o.kvLengths[b]! : Sk;
  const kh = Math.floor(h / (H / Hkv));
  const P = new Float64Array(Sq * Sk);
  const lse = new Float64Array(Sq);
  const p = o.dropout ?? 0;
  const drop = p > 0 ? new Float64Array(Sq * Sk) : null;
  const sp = dropoutScale(p);
  const sc = new Float64Array(Sk);
  const bias = o.bias ? f64(o.bias.v) : null;
  const bst = o.bias ? biasStrides(o.bias.shape) : [0, 0, 0, 0];
  for (let i = 0; i < Sq; i++) {
    const qo = ((b * H + h) * Sq + i) * D;
    const bo = b * bst[0]! + h * bst[1]! + i * bst[2]!;
    const last = Math.min(len, o.causal ? i + Sk - Sq + 1 : Sk);  // visible keys are j < last
    let max = -Infinity;
    let nan = false;
    for (let j = 0; j < last; j++) {
      const ko = ((b * Hkv + kh) * Sk + j) * D;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[qo + d]! * k[ko + d]!;
      sc[j] = round(scale * dot + (bias ? bias[bo + j * bst[3]!]! : 0));
      if (sc[j]! > max) max = sc[j]!;
      if (Number.isNaN(sc[j])) nan = true;
    }
    if (max === -Infinity && !nan) {
      lse[i] = -Infinity;  // no visible key: P stays 0
    } else {
      let sum = 0;
      for (let j = 0; j < last; j++) sum += Math.exp(sc[j]! - max);
      lse[i] = max + Math.log(sum);
      for (let j = 0; j < last; j++) P[i * Sk + j] = round(Math.exp(sc[j]! - max) / sum);
    }
    if (drop) {
      const keep = keepMask(Sk, p, o.seed ?? 0, ((b * H + h) * Sq + i) * Sk);
      for (let j = 0; j < Sk; j++) drop[i * Sk + j] = keep[j]! * sp;
    }
  }
  return { P, drop, lse };
}

/** out and lse of fusedAttention for q [B, H, Sq, D] and k, v [B, Hkv, Sk, D]. */
export function attentionRef(s: AttnShape, q64: ArrayLike<number>, k64: ArrayLike<number>, v64: ArrayLike<number>,
  o: AttnRefOptions = {}): AttnForward {
  const { B, H, Hkv, Sq, Sk, D } = s;
  const [q, k, v] = [f64(q64), f64(k64), f64(v64)];
  const round = o.round ?? exact;
  const out = new Float64Array(B * H * Sq * D);
  const lse = new Float64Array(B * H * Sq);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / Hkv));
      const pr = probabilities(s, q, k, b, h, o, round);
      lse.set(pr.lse, (b * H + h) * Sq);
      for (let i = 0; i < Sq; i++) {
        acc.fill(0);
        for (let j = 0; j < Sk; j++) {
          const pij = pr.drop ? round(pr.drop[i * Sk + j]! * pr.P[i * Sk + j]!) : pr.P[i * Sk + j]!;
          if (pij === 0) continue;
          const vo = ((b * Hkv + kh) * Sk + j) * D;
          for (let d = 0; d < D; d++) acc[d] += pij * v[vo + d]!;
        }
        const oo = ((b * H + h) * Sq + i) * D;
        for (let d = 0; d < D; d++) out[oo + d] = round(acc[d]!);
      }
    }
  }
  return { out, lse };
}

/**
 * dq, dk, dv of fusedAttention for the upstream gradient dout (dk, dv summed over each GQA
 * group). delta_i = <dout_i, out_i> is taken from this function's own forward, as
 * sum_j P_ij dP_ij (the same value in exact arithmetic; the rounded path is softmax's backward),
 * unless o.deltaOut gives the out.
 */
export function attentionBackwardRef(s: AttnShape, q64: ArrayLike<number>, k64: ArrayLike<number>, v64: ArrayLike<number>,
  dout64: ArrayLike<number>, o: AttnRefOptions = {}): AttnGrads {
  const { B, H, Hkv, Sq, Sk, D } = s;
  const [q, k, v, dout] = [f64(q64), f64(k64), f64(v64), f64(dout64)];
  const deltaOut = o.deltaOut ? f64(o.deltaOut) : null;
  const mag = o.magnitude === true;
  const abs = mag ? Math.abs : exact;
  const round = o.round ?? exact;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const dq = new Float64Array(B * H * Sq * D);
  const dk = new Float64Array(B * Hkv * Sk * D);
  const dv = new Float64Array(B * Hkv * Sk * D);
  const hiddenKeys = new Uint8Array(B * Hkv * Sk).fill(1);
  // per-head dk, dv (rounded like the per-head products of an unfused GQA), summed per group
  const dkh = new Float64Array(Sk * D);
  const dvh = new Float64Array(Sk * D);
  const dS = new Float64Array(Sk);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / Hkv));
      const { P, drop } = probabilities(s, q, k, b, h, o, round);
      dkh.fill(0);
      dvh.fill(0);
      for (let i = 0; i < Sq; i++) {
        const qo = ((b * H + h) * Sq + i) * D;
        let delta = 0;
        for (let j = 0; j < Sk; j++) {
          const pij = P[i * Sk + j]!;
          if (pij === 0) {
            dS[j] = 0;
            continue;
          }
          hiddenKeys[(b * Hkv + kh) * Sk + j] = 0;
          const vo = ((b * Hkv + kh) * Sk + j) * D;
          let dp = 0;
          for (let d = 0; d < D; d++) dp += abs(dout[qo + d]! * v[vo + d]!);
          dp = round(dp);
          const f = drop ? drop[i * Sk + j]! : 1;
          if (drop) dp = round(f * dp);
          const pd = drop ? round(f * pij) : pij;
          for (let d = 0; d < D; d++) dvh[j * D + d] += pd * abs(dout[qo + d]!);
          dS[j] = dp;
          delta += pij * dp;  // magnitude: sum_j P_ij sum_d |dout_id v_jd| >= sum_d |dout_id out_id|
        }
        if (deltaOut) {
          delta = 0;
          for (let d = 0; d < D; d++) delta += abs(dout[qo + d]! * deltaOut[qo + d]!);
        }
        acc.fill(0);
        for (let j = 0; j < Sk; j++) {
          const pij = P[i * Sk + j]!;
          if (pij === 0) continue;
          const ds = round(pij * (mag ? dS[j]! + delta : dS[j]! - delta));
          const ko = ((b * Hkv + kh) * Sk + j) * D;
          for (let d = 0; d < D; d++) {
            acc[d] += ds * abs(k[ko + d]!);
            dkh[j * D + d] += ds * abs(q[qo + d]!);
          }
        }
        for (let d = 0; d < D; d++) dq[qo + d] = round(scale * acc[d]!);
      }
      const ko = (b * Hkv + kh) * Sk * D;
      for (let e = 0; e < Sk * D; e++) {
        dk[ko + e] += round(scale * dkh[e]!);
        dv[ko + e] += round(dvh[e]!);
      }
    }
  }
  if (round !== exact) {
    for (let e = 0; e < dk.length; e++) {
      dk[e] = round(dk[e]!);
      dv[e] = round(dv[e]!);
    }
  }
  return { dq, dk, dv, hiddenKeys };
}

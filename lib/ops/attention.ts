// fusedAttention and its backward (native/ops/attention.h): block-wise scaled-dot-product
// attention with online softmax; nothing of size Sq x Sk is ever allocated.
import { describe, fail } from '../errors.js';
import { native, type NativeTensor } from '../native.js';
import { Tensor } from '../tensor.js';
import { dropoutSettings } from './dropout.js';
import { boolOpt, defineOp, numberOpt, optionsArg, optTensorArg, outArg, type Prepared, tensorArg } from './common.js';

export interface FusedAttentionOptions {
  /**
   * Causal mask aligned bottom-right: query i sees keys j <= i + Sk - Sq (Sk of the k tensor,
   * not kvLengths; PyTorch's causal_lower_right). Queries i < Sq - Sk see no key.
   */
  causal?: boolean;
  /** Valid keys per batch row ([B], Int32Array or i32 tensor, values in [0, Sk]): keys j >= len are hidden. */
  kvLengths?: Int32Array | Tensor | null;
  /** Additive f32 bias on the scaled scores, broadcastable to [B, H, Sq, Sk] (dims aligned at the end). -Infinity hides a key. */
  attnBias?: Tensor | null;
  /** Multiplier of q·k (default 1/sqrt(D)). */
  scale?: number;
  /** Drop probability of the attention weights in [0, 1] (default 0), dropout's Philox stream. */
  dropout?: number;
  /** Philox seed, required when dropout > 0 (integer in [0, 2^53) or a bigint below 2^64). */
  seed?: number | bigint;
  /** Also return lse [B, H, Sq] (f32), the log-sum-exp of each query's scores, which the backward needs. */
  returnLse?: boolean;
  /** Write the output here instead of a new tensor ([B, H, Sq, D], q's dtype). */
  out?: Tensor;
  /** Write lse here instead of a new tensor ([B, H, Sq], f32); implies returnLse. */
  lse?: Tensor;
}

export interface FusedAttentionResult {
  out: Tensor;
  /** log sum_j exp(scale q·k_j + bias_j) over the visible keys; -Infinity for a query that sees none. */
  lse: Tensor;
}

/** The forward's masking, scale and dropout (the probabilities are recomputed from them), and outputs. */
export interface FusedAttentionBackwardOptions
  extends Pick<FusedAttentionOptions, 'causal' | 'kvLengths' | 'attnBias' | 'scale' | 'dropout' | 'seed'> {
  /** Write the gradients here instead of new tensors (dq like q; dk, dv like k). */
  dq?: Tensor;
  dk?: Tensor;
  dv?: Tensor;
}

export interface FusedAttentionGrads {
  dq: Tensor;
  /** Summed over the query heads that share each key/value head (GQA/MQA). */
  dk: Tensor;
  dv: Tensor;
}

type Lengths = NativeTensor | Tensor | null;

// kvLengths are read on the host (range-checked there), so an Int32Array serves every device
function lengthsArg(v: unknown, op: string): Lengths {
  if (v === undefined || v === null) return null;
  if (v instanceof Int32Array) return Tensor._wrapTemp(v, [v.length], 'i32');
  if (v instanceof Tensor) return tensorArg(v, op, 'kvLengths');
  return fail('ERR_ARG', `${op}: expected kvLengths to be an Int32Array or an i32 Tensor but received ${describe(v)}`);
}

interface Common {
  kvLengths: Lengths;
  attnBias: Tensor | null;
  causal: boolean;
  scale: number;
  p: number;
  seed: number | bigint;
}

function commonOpts(o: Partial<FusedAttentionOptions & FusedAttentionBackwardOptions>, q: Tensor, op: string): Common {
  const d = q.shape.length === 4 ? q.shape[3]! : 0;
  const { p, seed } = dropoutSettings(o.dropout, o.seed, undefined, op);
  return {
    kvLengths: lengthsArg(o.kvLengths, op),
    attnBias: optTensorArg(o.attnBias, op, 'attnBias'),
    causal: boolOpt(o.causal, op, 'causal', false),
    scale: numberOpt(o.scale, op, 'scale', d > 0 ? 1 / Math.sqrt(d) : 1, -3.4e38, 3.4e38),
    p,
    seed,
  };
}

const attentionOp = defineOp((q: Tensor, k: Tensor, v: Tensor, opts?: FusedAttentionOptions): Prepared<Tensor | FusedAttentionResult> => {
  const op = 'fusedAttention';
  tensorArg(q, op, 'q');
  tensorArg(k, op, 'k');
  tensorArg(v, op, 'v');
  const o = optionsArg<FusedAttentionOptions>(opts, op);
  const c = commonOpts(o, q, op);
  const wantLse = boolOpt(o.returnLse, op, 'returnLse', false) || o.lse !== undefined;
  const fresh: Tensor[] = [];
  const out = outArg(o.out, op, q.shape, q.dtype, q.device, fresh);
  const lse = wantLse ? outArg(o.lse, op, q.shape.slice(0, 3), 'f32', q.device, fresh, 'lse') : null;
  return {
    run: (a) => native.attention_fwd(q, k, v, c.kvLengths, c.attnBias, out, lse, c.scale, c.causal, c.p, c.seed, a),
    result: lse ? { out, lse } : out,
    fresh,
  };
});

/** fusedAttention's call forms: the output, or `{ out, lse }` with `returnLse` (or `lse`). */
export interface FusedAttention {
  (q: Tensor, k: Tensor, v: Tensor, opts: FusedAttentionOptions & ({ returnLse: true } | { lse: Tensor })): FusedAttentionResult;
  (q: Tensor, k: Tensor, v: Tensor, opts?: FusedAttentionOptions): Tensor;
  async(q: Tensor, k: Tensor, v: Tensor, opts: FusedAttentionOptions & ({ returnLse: true } | { lse: Tensor })): Promise<FusedAttentionResult>;
  async(q: Tensor, k: Tensor, v: Tensor, opts?: FusedAttentionOptions): Promise<Tensor>;
}

/**
 * softmax(scale q kᵀ + attnBias, masked) v for q [B, H, Sq, D] and k, v [B, Hkv, Sk, D]
 * (H a multiple of Hkv: query head h uses key/value head h / (H / Hkv)); 1 <= D <= 256;
 * f32, bf16 or f16 storage with f32 arithmetic. A query that sees no key (causal, kvLengths or
 * -Infinity bias) returns zeros and lse = -Infinity, and gets a zero gradient.
 */
export const fusedAttention = attentionOp as FusedAttention;

/**
 * Gradients of fusedAttention from dOut and the forward's q, k, v, out and lse (returnLse),
 * with the forward's options. Recomputes the probabilities block by block; no gradient for attnBias.
 */
export const fusedAttentionBackward = defineOp(
  (dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, opts?: FusedAttentionBackwardOptions): Prepared<FusedAttentionGrads> => {
    const op = 'fusedAttentionBackward';
    tensorArg(dOut, op, 'dOut');
    tensorArg(q, op, 'q');
    tensorArg(k, op, 'k');
    tensorArg(v, op, 'v');
    tensorArg(out, op, 'out');
    tensorArg(lse, op, 'lse');
    const o = optionsArg<FusedAttentionBackwardOptions>(opts, op);
    const c = commonOpts(o, q, op);
    const fresh: Tensor[] = [];
    const dq = outArg(o.dq, op, q.shape, q.dtype, q.device, fresh, 'dq');
    const dk = outArg(o.dk, op, k.shape, k.dtype, k.device, fresh, 'dk');
    const dv = outArg(o.dv, op, v.shape, v.dtype, v.device, fresh, 'dv');
    return {
      run: (a) =>
        native.attention_bwd(dOut, q, k, v, out, lse, c.kvLengths, c.attnBias, dq, dk, dv, c.scale, c.causal, c.p, c.seed, a),
      result: { dq, dk, dv },
      fresh,
    };
  },
);

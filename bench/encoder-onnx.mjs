// ONNX graphs of one post-LN Transformer encoder layer for the bench's onnxruntime-node peers
// (bench/layers.mjs, bench/dtypes.mjs), built from a PyTorch-named state_dict (toTorchTransformerLayer),
// f32 or dynamically quantized to int8, and onnxruntime-node sessions of them. No seqfuse import,
// so tests can build and run tiny ones.
import ort from 'onnxruntime-node';
import { timeAsync } from './harness.mjs';
import { FLOAT, INT8, INT64, initializer, model, node, valueInfo } from './onnx.mjs';

/** a [rows, cols] -> [cols, rows] (nn.Linear's [out, in] to MatMul's [in, out]). */
export function transposed(a, rows, cols) {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

const i64 = (dims) => BigInt64Array.from(dims, BigInt);

/**
 * Symmetric per-tensor int8 weights, as onnxruntime's dynamic quantizer makes them by default
 * (weight_type QInt8, per_channel off): scale = max|w| / 127, q = round(w / scale) in [-127, 127]
 * (nearest, ties to even as numpy's rint), zero point 0. Returns { q: Int8Array, scale }.
 */
export function quantizeWeights(w) {
  let amax = 0;
  for (const v of w) amax = Math.max(amax, Math.abs(v));
  const scale = amax > 0 ? amax / 127 : 1;
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const r = w[i] / scale;
    const n = Math.round(r);
    q[i] = Math.max(-127, Math.min(127, n - (n - r === 0.5 && n % 2 !== 0 ? 1 : 0)));
  }
  return { q, scale };
}

/** Names of the graph variants encoderLayerModel builds (option `variant`). */
export const VARIANTS = {
  // f32: attention as standard ops, or as the com.microsoft Attention op
  f32: { attention: 'ops', int8: null },
  f32Attention: { attention: 'Attention', int8: null },
  // int8 products as the ONNX ops onnxruntime's quantize_dynamic emits for a MatMul with constant
  // weights: DynamicQuantizeLinear (u8 activations, per-tensor scale and zero point) ->
  // MatMulInteger (s8 weights) -> Cast -> Mul by x_scale * w_scale; attention products stay f32
  // (quantize_dynamic's MatMulConstBOnly default)
  int8MatMulInteger: { attention: 'ops', int8: 'MatMulInteger' },
  // the same products as the com.microsoft DynamicQuantizeMatMul contrib op (what onnxruntime's
  // optimizer fuses the pattern above into), with the f32 Attention op (its QKV product in f32)
  int8DynamicQuantizeMatMul: { attention: 'Attention', int8: 'DynamicQuantizeMatMul' },
  // what quantize_dynamic makes of a graph with the Attention op: com.microsoft QAttention (its
  // QKV projection in int8 on a DynamicQuantizeLinear'd input) and DynamicQuantizeMatMul for the rest
  int8QAttention: { attention: 'QAttention', int8: 'DynamicQuantizeMatMul' },
};

/**
 * The post-LN layer y = LN2(h + FFN(h)), h = LN1(x + SelfAttn(x)) on x [B,S,H] from the state_dict
 * `w` (nn.TransformerEncoderLayer names: self_attn.in_proj_weight ..., norm2.bias), GELU in its erf
 * form; cfg { B, S, H, heads, F, eps }; variant a key of VARIANTS. onnxruntime's graph optimizer
 * fuses the bias adds, GELU and Add+LayerNorm at level 'all'. Returns the model's bytes.
 */
export function encoderLayerModel(w, cfg, variant = 'f32') {
  const { B, S, H, heads, F, eps } = cfg;
  const { attention, int8 } = VARIANTS[variant];
  const D = H / heads;
  const f = (name, dims, data) => initializer(name, FLOAT, dims, data);
  const inits = [
    f('bqkv', [3 * H], w['self_attn.in_proj_bias']), f('bo', [H], w['self_attn.out_proj.bias']), f('b1', [F], w['linear1.bias']),
    f('b2', [H], w['linear2.bias']),
    f('ln1w', [H], w['norm1.weight']), f('ln1b', [H], w['norm1.bias']), f('ln2w', [H], w['norm2.weight']), f('ln2b', [H], w['norm2.bias']),
    f('sqrt2', [], Float32Array.of(Math.SQRT2)), f('one', [], Float32Array.of(1)), f('half', [], Float32Array.of(0.5)),
  ];
  const nodes = [];
  // weight `name` [in, out] from the state_dict's [out, in]; int8 with a scale, or f32 (the f32
  // Attention op's QKV weight stays f32)
  const weight = (name, key, out, inn) => {
    const t = transposed(w[key], out, inn);
    if (!int8 || (name === 'wqkv' && attention === 'Attention')) return inits.push(f(name, [inn, out], t));
    const { q, scale } = quantizeWeights(t);
    inits.push(initializer(name, INT8, [inn, out], q), f(`${name}_scale`, [], Float32Array.of(scale)),
      initializer(`${name}_zp`, INT8, [], Int8Array.of(0)));
  };
  // out = x · w + b, in f32 or in int8 as `int8` says
  const product = (x, wname, b, out) => {
    if (int8 === 'DynamicQuantizeMatMul') {
      nodes.push(node('DynamicQuantizeMatMul', [x, wname, `${wname}_scale`, `${wname}_zp`, b], [out], {}, 'com.microsoft'));
    } else if (int8 === 'MatMulInteger') {
      nodes.push(node('DynamicQuantizeLinear', [x], [`${x}_q`, `${x}_s`, `${x}_zp`]),
        node('MatMulInteger', [`${x}_q`, wname, `${x}_zp`, `${wname}_zp`], [`${out}_i32`]),
        node('Cast', [`${out}_i32`], [`${out}_f`], { to: { int: FLOAT } }),
        node('Mul', [`${x}_s`, `${wname}_scale`], [`${out}_scale`]), node('Mul', [`${out}_f`, `${out}_scale`], [`${out}_0`]),
        node('Add', [`${out}_0`, b], [out]));
    } else {
      nodes.push(node('MatMul', [x, wname], [`${out}_0`]), node('Add', [`${out}_0`, b], [out]));
    }
  };
  weight('wqkv', 'self_attn.in_proj_weight', 3 * H, H);
  weight('wo', 'self_attn.out_proj.weight', H, H);
  weight('w1', 'linear1.weight', F, H);
  weight('w2', 'linear2.weight', H, F);
  if (attention === 'Attention') {
    nodes.push(node('Attention', ['x', 'wqkv', 'bqkv'], ['ctx'], { num_heads: { int: heads } }, 'com.microsoft'));
  } else if (attention === 'QAttention') {
    nodes.push(node('DynamicQuantizeLinear', ['x'], ['x_q', 'x_s', 'x_zp']),
      node('QAttention', ['x_q', 'wqkv', 'bqkv', 'x_s', 'wqkv_scale', '', 'x_zp', 'wqkv_zp'], ['ctx'], { num_heads: { int: heads } }, 'com.microsoft'));
  } else {
    inits.push(initializer('qkvShape', INT64, [5], i64([B, S, 3, heads, D])), initializer('ctxShape', INT64, [3], i64([B, S, H])),
      f('scale', [], Float32Array.of(1 / Math.sqrt(D))), ...[0, 1, 2].map((i) => initializer(`i${i}`, INT64, [], i64([i]))));
    product('x', 'wqkv', 'bqkv', 'qkv');
    nodes.push(
      node('Reshape', ['qkv', 'qkvShape'], ['qkv5']), node('Transpose', ['qkv5'], ['qkvT'], { perm: [2, 0, 3, 1, 4] }),  // [3,B,heads,S,D]
      ...['q', 'k', 'v'].map((n, i) => node('Gather', ['qkvT', `i${i}`], [n], { axis: { int: 0 } })),
      node('Transpose', ['k'], ['kt'], { perm: [0, 1, 3, 2] }), node('MatMul', ['q', 'kt'], ['s']), node('Mul', ['s', 'scale'], ['ss']),
      node('Softmax', ['ss'], ['p'], { axis: { int: -1 } }), node('MatMul', ['p', 'v'], ['ctx4']),
      node('Transpose', ['ctx4'], ['ctxT'], { perm: [0, 2, 1, 3] }), node('Reshape', ['ctxT', 'ctxShape'], ['ctx']),
    );
  }
  const ln = { axis: { int: -1 }, epsilon: { float: eps } };
  product('ctx', 'wo', 'bo', 'a');
  nodes.push(node('Add', ['x', 'a'], ['r1']), node('LayerNormalization', ['r1', 'ln1w', 'ln1b'], ['h'], ln));
  product('h', 'w1', 'b1', 'f1');
  // GELU: 0.5 * f1 * (1 + erf(f1 / sqrt 2))
  nodes.push(node('Div', ['f1', 'sqrt2'], ['e0']), node('Erf', ['e0'], ['e1']), node('Add', ['e1', 'one'], ['e2']),
    node('Mul', ['f1', 'e2'], ['e3']), node('Mul', ['e3', 'half'], ['gelu']));
  product('gelu', 'w2', 'b2', 'f3');
  nodes.push(node('Add', ['h', 'f3'], ['r2']), node('LayerNormalization', ['r2', 'ln2w', 'ln2b'], ['y'], ln));
  const contrib = attention !== 'ops' || int8 === 'DynamicQuantizeMatMul';
  return model({ nodes, initializers: inits, opsets: contrib ? { '': 17, 'com.microsoft': 1 } : { '': 17 },
    inputs: [valueInfo('x', FLOAT, [B, S, H])], outputs: [valueInfo('y', FLOAT, [B, S, H])] });
}

const ORT_OPTIONS = { interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 };

/**
 * onnxruntime sessions of `graphs` ({ name: model bytes }, input x and output y of shape `dims`)
 * at `threads` intra-op threads and all graph optimizations, each a bench peer { name, time(reps),
 * output() } running on the f32 input `xv` into a preallocated output.
 */
export async function ortPeers(graphs, xv, dims, threads) {
  const sessions = [];
  const peers = [];
  for (const [name, bytes] of Object.entries(graphs)) {
    const session = await ort.InferenceSession.create(bytes, { ...ORT_OPTIONS, intraOpNumThreads: threads });
    sessions.push(session);
    const feeds = { x: new ort.Tensor('float32', xv, dims) };
    const fetches = { y: new ort.Tensor('float32', new Float32Array(xv.length), dims) };
    peers.push({ name, time: (reps) => timeAsync(() => session.run(feeds, fetches), reps),
      output: async () => (await session.run(feeds, fetches), fetches.y.data.slice()) });
  }
  return { peers, release: () => Promise.all(sessions.map((s) => s.release())) };
}

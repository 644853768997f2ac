// fusedAttention from Node: causal GQA prefill checked against plain JavaScript, decoding one
// token against a padded KV cache, and the backward pass. Run: node examples/attention.mjs
import sf from '../dist/index.js';

const { Tensor } = sf;
const [B, H, Hkv, S, D] = [2, 8, 2, 256, 64]; // 8 query heads share 2 key/value heads (GQA)

const q = Tensor.randn([B, H, S, D], { seed: 1 });
const k = Tensor.randn([B, Hkv, S, D], { seed: 2 });
const v = Tensor.randn([B, Hkv, S, D], { seed: 3 });

// 1. Prefill: causal self-attention, keeping lse for the backward.
let t0 = performance.now();
const { out, lse } = sf.fusedAttention(q, k, v, { causal: true, returnLse: true });
const fusedMs = performance.now() - t0;

// The same thing in plain JavaScript (float64) for every query of batch row 0, head 5.
function attentionJs(b, h) {
  const [Q, K, V] = [q, k, v].map((t) => t.toArray());
  const kh = Math.floor(h / (H / Hkv));
  const res = new Float64Array(S * D);
  for (let i = 0; i < S; i++) {
    const qi = ((b * H + h) * S + i) * D;
    const s = new Float64Array(i + 1); // causal: query i sees keys 0..i
    let max = -Infinity;
    for (let j = 0; j <= i; j++) {
      const kj = ((b * Hkv + kh) * S + j) * D;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += Q[qi + d] * K[kj + d];
      s[j] = dot / Math.sqrt(D);
      max = Math.max(max, s[j]);
    }
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += (s[j] = Math.exp(s[j] - max));
    for (let j = 0; j <= i; j++)
      for (let d = 0; d < D; d++) res[i * D + d] += (s[j] / sum) * V[((b * Hkv + kh) * S + j) * D + d];
  }
  return res;
}
t0 = performance.now();
const ref = attentionJs(0, 5);
const jsMs = performance.now() - t0;
const got = out.toArray().subarray(5 * S * D, 6 * S * D);
let err = 0;
for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i] - ref[i]));
console.log(`prefill [${B}, ${H}, ${S}, ${D}] causal, GQA ${H}/${Hkv}: ${fusedMs.toFixed(1)} ms fused ` +
  `(all ${B * H} heads) vs ${jsMs.toFixed(1)} ms plain JS (one head); max |difference| ${err.toExponential(1)}`);

// 2. Decode: one new query per batch row against a KV cache of capacity 512 that holds
// 300 and 170 valid positions; kvLengths hides the unused tail of each row.
const cacheK = Tensor.randn([B, Hkv, 512, D], { seed: 4 });
const cacheV = Tensor.randn([B, Hkv, 512, D], { seed: 5 });
const q1 = Tensor.randn([B, H, 1, D], { seed: 6 });
const step = sf.fusedAttention(q1, cacheK, cacheV, { kvLengths: Int32Array.of(300, 170) });
console.log(`decode step: out [${step.shape}] from a padded cache, kvLengths [300, 170]`);

// 3. Backward: gradients of sum(out * dOut) for q, k and v (dk, dv summed over each GQA group).
const dOut = Tensor.randn(out.shape, { seed: 7 });
const { dq, dk, dv } = await sf.fusedAttentionBackward.async(dOut, q, k, v, out, lse, { causal: true });
const norm = (t) => Math.sqrt(t.toArray().reduce((s, x) => s + x * x, 0));
console.log(`backward: |dq| ${norm(dq).toFixed(2)}, |dk| ${norm(dk).toFixed(2)} [${dk.shape}], |dv| ${norm(dv).toFixed(2)}`);

for (const t of [q, k, v, out, lse, cacheK, cacheV, q1, step, dOut, dq, dk, dv]) t.dispose();
if (err > 1e-4) {
  console.error('fused and plain JS results differ');
  process.exit(1);
}

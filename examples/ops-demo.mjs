// An ops demo: one Transformer feed-forward block built from seqfuse's fused CPU ops,
// checked against plain JavaScript (exits 1 on a mismatch), then timed. Run: node examples/ops-demo.mjs
import sf from '../dist/index.js';

const { Tensor } = sf;
const [batch, seq, hidden, ffn] = [4, 64, 256, 1024];

console.log(`seqfuse demo — ISA ${sf.getIsa().active}, ${sf.getNumThreads()} threads, oneDNN ${sf.buildInfo().onednn}`);

const x = Tensor.randn([batch, seq, hidden], { seed: 1 });
const w1 = Tensor.randn([ffn, hidden], { seed: 2, std: 0.05 });
const b1 = Tensor.randn([ffn], { seed: 3, std: 0.1 });
const w2 = Tensor.randn([hidden, ffn], { seed: 4, std: 0.03 });
const b2 = Tensor.randn([hidden], { seed: 5, std: 0.1 });
const gamma = Tensor.rand([hidden], { seed: 6, low: 0.5, high: 1.5 });
const beta = Tensor.randn([hidden], { seed: 7, std: 0.1 });

// y = LayerNorm(x + W2·gelu(W1·x + b1) + b2): bias, GELU and the residual are fused into the products
function block(input) {
  const h = sf.linear(input, w1, b1, { activation: 'gelu' });
  const r = sf.linear(h, w2, b2, { residual: input });
  const y = sf.layerNorm(r, gamma, beta);
  h.dispose();
  r.dispose();
  return y;
}

// the same block in plain JS (float64), to show the numbers are right
function blockJs() {
  const [X, W1, B1, W2, B2, G, Bt] = [x, w1, b1, w2, b2, gamma, beta].map((t) => t.toArray());
  const rows = batch * seq;
  const out = new Float64Array(rows * hidden);
  const h = new Float64Array(ffn);
  const r = new Float64Array(hidden);
  const erf = (z) => { // Abramowitz & Stegun 7.1.26, plenty for a demo
    const t = 1 / (1 + 0.3275911 * Math.abs(z));
    const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-z * z);
    return z < 0 ? -y : y;
  };
  for (let i = 0; i < rows; i++) {
    for (let f = 0; f < ffn; f++) {
      let s = B1[f];
      for (let k = 0; k < hidden; k++) s += X[i * hidden + k] * W1[f * hidden + k];
      h[f] = 0.5 * s * (1 + erf(s / Math.SQRT2));
    }
    let mean = 0;
    for (let j = 0; j < hidden; j++) {
      let s = B2[j] + X[i * hidden + j];
      for (let f = 0; f < ffn; f++) s += h[f] * W2[j * ffn + f];
      r[j] = s;
      mean += s;
    }
    mean /= hidden;
    let v = 0;
    for (let j = 0; j < hidden; j++) v += (r[j] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / hidden + 1e-5);
    for (let j = 0; j < hidden; j++) out[i * hidden + j] = (r[j] - mean) * rstd * G[j] + Bt[j];
  }
  return out;
}

let t0 = performance.now();
const ref = blockJs();
const msJs = performance.now() - t0;
const y = block(x);
const ys = y.toArray();
let err = 0;
let den = 0;
for (let i = 0; i < ys.length; i++) {
  err += (ys[i] - ref[i]) ** 2;
  den += ref[i] ** 2;
}
console.log(`FFN block [${batch}, ${seq}, ${hidden}] -> ${ffn}: relative L2 error vs float64 JS ${Math.sqrt(err / den).toExponential(2)}`);
if (!(Math.sqrt(err / den) < 1e-4)) {
  console.error('mismatch against plain JavaScript');
  process.exitCode = 1;
}

const times = [];
for (let i = 0; i < 20; i++) {
  t0 = performance.now();
  block(x).dispose();
  times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
console.log(`seqfuse ${times[10].toFixed(2)} ms per block (median of 20), plain JS ${msJs.toFixed(0)} ms`);

const y2 = await sf.layerNorm.async(x, gamma, beta);
console.log(`async ops run on the libuv pool: layerNorm.async -> ${y2.shape.join('x')} ${y2.dtype}`);

const wrong = Tensor.zeros([ffn, hidden + 1]);
try {
  sf.linear(x, wrong);
} catch (e) {
  console.log(`bad input is a typed error: ${e.code}: ${e.message}`);
}
for (const t of [x, w1, b1, w2, b2, gamma, beta, y, y2, wrong]) t.dispose();
console.log('live CPU memory after dispose:', sf.memory().cpu);

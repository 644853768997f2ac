// The README's demo: a Transformer block's worth of fused CPU ops, checked against plain JS.
// Run: npm run demo
import sf from '../dist/index.js';

const { Tensor } = sf;
const [batch, seq, hidden] = [4, 128, 768];
const rows = batch * seq;

console.log(`seqfuse demo — ISA ${sf.getIsa().active}, ${sf.getNumThreads()} threads, oneDNN ${sf.buildInfo().onednn}`);

const x = Tensor.randn([batch, seq, hidden], { seed: 1 });
const gamma = Tensor.rand([hidden], { seed: 2, low: 0.5, high: 1.5 });
const beta = Tensor.randn([hidden], { seed: 3, std: 0.1 });

let t0 = performance.now();
const y = sf.layerNorm(x, gamma, beta);
const msNorm = performance.now() - t0;

// the same LayerNorm in plain JS, for comparison
t0 = performance.now();
const xs = x.toArray();
const g = gamma.toArray();
const b = beta.toArray();
const ref = new Float64Array(xs.length);
for (let r = 0; r < rows; r++) {
  let m = 0;
  for (let j = 0; j < hidden; j++) m += xs[r * hidden + j];
  m /= hidden;
  let v = 0;
  for (let j = 0; j < hidden; j++) v += (xs[r * hidden + j] - m) ** 2;
  const rstd = 1 / Math.sqrt(v / hidden + 1e-5);
  for (let j = 0; j < hidden; j++) ref[r * hidden + j] = (xs[r * hidden + j] - m) * rstd * g[j] + b[j];
}
const msJs = performance.now() - t0;
const ys = y.toArray();
let err = 0;
let den = 0;
for (let i = 0; i < ys.length; i++) {
  err += (ys[i] - ref[i]) ** 2;
  den += ref[i] ** 2;
}
console.log(`layerNorm [${batch}, ${seq}, ${hidden}]: ${msNorm.toFixed(2)} ms (plain JS ${msJs.toFixed(1)} ms), relative L2 error vs float64 ${Math.sqrt(err / den).toExponential(2)}`);

const y2 = await sf.layerNorm.async(x, gamma, beta);
console.log(`layerNorm.async gives the same result: ${Buffer.from(y2.data.buffer).equals(Buffer.from(y.data.buffer))}`);

try {
  sf.layerNorm(x, Tensor.zeros([hidden - 1]), beta);
} catch (e) {
  console.log(`bad input is a typed error: ${e.code}: ${e.message}`);
}
for (const t of [x, gamma, beta, y, y2]) t.dispose();
console.log('live tensors after dispose:', sf.memory().cpu);

// fusedAttention never materializes Sq x Sk (DESIGN §3): at B 1, H 8, S 16384, D 64 a score
// matrix per head would be 1 GiB, so forward and backward must stay within 64 MiB of peak RSS
// beyond their inputs and outputs. maxRSS is a lifetime peak, so the case runs in a fresh child
// process that allocates and touches every input and output first (no garbage left for the op
// to reuse), warms the thread pool up on a small call, and then measures:
// growth = maxRSS after the op - RSS before it, an upper bound of what the op added.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TS_CHILD_PRELUDE } from './ts-child.js';

const root = join(__dirname, '..');

const CHILD = String.raw`${TS_CHILD_PRELUDE}
const { Tensor, fusedAttention, fusedAttentionBackward } = require(path.resolve('lib/index.ts'));

const [B, H, S, D] = [1, 8, 16384, 64];
const MiB = 2 ** 20;
const rss = () => process.memoryUsage().rss;
const peak = () => process.resourceUsage().maxRSS * 1024;
// randn writes every element; Tensor.empty's zero pages are touched by fill (no garbage made)
const input = (shape, seed) => Tensor.randn(shape, { seed });
const output = (shape) => {
  const t = Tensor.empty(shape);
  t.data.fill(NaN);
  return t;
};
const tensors = (s, out, lse, dq, dk, dv) => {
  const [q, k, v, dout] = [1, 2, 3, 4].map((seed) => input([B, H, s, D], seed));
  return { q, k, v, dout, out, lse, dq, dk, dv };
};
// warm-up: threads, code pages, per-thread scratch at a small size
{
  const w = tensors(256, output([B, H, 256, D]), output([B, H, 256]), output([B, H, 256, D]), output([B, H, 256, D]), output([B, H, 256, D]));
  fusedAttention(w.q, w.k, w.v, { causal: true, out: w.out, lse: w.lse });
  fusedAttentionBackward(w.dout, w.q, w.k, w.v, w.out, w.lse, { causal: true, dq: w.dq, dk: w.dk, dv: w.dv });
}
const shape = [B, H, S, D];
const a = tensors(S, output(shape), output([B, H, S]), output(shape), output(shape), output(shape));
globalThis.gc();
const rss0 = rss();
const peak0 = peak();
let t = performance.now();
fusedAttention(a.q, a.k, a.v, { causal: true, out: a.out, lse: a.lse });
const fwdMs = performance.now() - t;
const peakFwd = peak();
t = performance.now();
fusedAttentionBackward(a.dout, a.q, a.k, a.v, a.out, a.lse, { causal: true, dq: a.dq, dk: a.dk, dv: a.dv });
const bwdMs = performance.now() - t;
const peakBwd = peak();

// the work was done: a few rows of out, lse and dq against float64 (head 5; queries near the
// start, middle and end, i.e. 1 to S keys), so a kernel that skipped the long rows fails here
const f = (tensor) => tensor.data;
const [q, k, v, dout, out, lse, dq] = [a.q, a.k, a.v, a.dout, a.out, a.lse, a.dq].map(f);
const scale = 1 / Math.sqrt(D);
const h = 5;
let worst = 0;
for (const i of [0, 1, 4097, 9000, S - 1]) {
  const row = (h * S + i) * D;
  const s = new Float64Array(i + 1);
  let max = -Infinity;
  for (let j = 0; j <= i; j++) {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[row + d] * k[(h * S + j) * D + d];
    s[j] = scale * dot;
    max = Math.max(max, s[j]);
  }
  let sum = 0;
  for (let j = 0; j <= i; j++) sum += Math.exp(s[j] - max);
  const o = new Float64Array(D);
  const dp = new Float64Array(i + 1);
  let delta = 0;
  for (let j = 0; j <= i; j++) {
    const p = Math.exp(s[j] - max) / sum;
    for (let d = 0; d < D; d++) {
      o[d] += p * v[(h * S + j) * D + d];
      dp[j] += dout[row + d] * v[(h * S + j) * D + d];
    }
    delta += p * dp[j];
  }
  const g = new Float64Array(D);
  for (let j = 0; j <= i; j++) {
    const ds = (Math.exp(s[j] - max) / sum) * (dp[j] - delta);
    for (let d = 0; d < D; d++) g[d] += scale * ds * k[(h * S + j) * D + d];
  }
  const err = (got, want) => {
    let num = 0, den = 0;
    for (let d = 0; d < D; d++) { num += (got[row + d] - want[d]) ** 2; den += want[d] ** 2; }
    return Number.isNaN(num) ? Infinity : Math.sqrt(num / den);
  };
  // query 0 sees one key, so its dq is exactly 0 (P = 1 makes dP - delta vanish): no relative error
  worst = Math.max(worst, err(out, o), i > 0 ? err(dq, g) : 0, Math.abs(lse[h * S + i] - (max + Math.log(sum))));
}
process.stdout.write(JSON.stringify({ rss0: rss0 / MiB, peak0: peak0 / MiB, fwd: (peakFwd - rss0) / MiB, bwd: (peakBwd - rss0) / MiB, fwdMs, bwdMs, worst }));
`;

describe('fusedAttention memory', () => {
  it('B1 H8 S16384 D64 causal forward and backward add < 64 MiB of peak RSS beyond inputs and outputs', () => {
    const child = spawnSync(process.execPath, ['--expose-gc', '-e', CHILD], { cwd: root, encoding: 'utf8', timeout: 590_000 });
    expect(child.status, `the child failed: ${child.stderr.slice(-2000)}`).toBe(0);
    const m = JSON.parse(child.stdout) as { rss0: number; peak0: number; fwd: number; bwd: number; fwdMs: number; bwdMs: number; worst: number | null };
    const what = `RSS before ${m.rss0.toFixed(0)} MiB (peak ${m.peak0.toFixed(0)}), forward ${m.fwdMs.toFixed(0)} ms, backward ${m.bwdMs.toFixed(0)} ms`;
    console.log(`attention memory: forward +${m.fwd.toFixed(1)} MiB, backward +${m.bwd.toFixed(1)} MiB; ${what}`);
    // JSON writes NaN as null
    expect(m.worst ?? Infinity, `${what}: sampled rows of out, dq and lse vs float64 (relative L2; lse absolute)`).toBeLessThan(1e-4);
    expect(m.fwd, `forward peak RSS growth (${what})`).toBeLessThan(64);
    expect(m.bwd, `backward peak RSS growth (${what})`).toBeLessThan(64);
  }, 600_000);
});

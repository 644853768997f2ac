// Bench suite `ops`: memory-bound ops in GB/s beside a plain copy of the same bytes, and
// linear in GFLOP/s beside a direct oneDNN call (bench/native) and the f32 peak. Same run,
// 1 and 2 threads, medians of repeated calls into preallocated outputs.
import sf from '../dist/index.js';
import { f32Peak, fmt, paired, printTable, writeResults } from './harness.mjs';
import helper from './native/index.cjs';

const { Tensor } = sf;
const SHAPES = [[8192, 768], [8192, 3072]];

function memoryBound(rows, cols) {
  const n = rows * cols;
  const x = Tensor.randn([rows, cols], { seed: 1 });
  const res = Tensor.randn([rows, cols], { seed: 2 });
  const out = Tensor.empty([rows, cols]);
  const g = Tensor.rand([cols], { seed: 3 });
  const b = Tensor.randn([cols], { seed: 4 });
  const f = 4; // bytes per f32
  // bytes read + written once by each op
  return [
    { op: 'layerNorm', bytes: 2 * f * n, fn: () => sf.layerNorm(x, g, b, { out }) },
    { op: 'softmax', bytes: 2 * f * n, fn: () => sf.softmax(x, { out }) },
    { op: 'biasAct gelu p=0.1', bytes: 2 * f * n, fn: () => sf.biasAct(x, b, { activation: 'gelu', dropout: 0.1, seed: 5, out }) },
    { op: 'biasDropoutResidual p=0.1', bytes: 3 * f * n, fn: () => sf.biasDropoutResidual(x, b, res, { dropout: 0.1, seed: 6, out }) },
    { op: 'dropout p=0.1', bytes: 2 * f * n, fn: () => sf.dropout(x, 0.1, 7, { out }) },
  ];
}

function linearCase(m, n, k, threads) {
  const x = Tensor.randn([m, k], { seed: 11 });
  const w = Tensor.randn([n, k], { seed: 12, std: 0.05 });
  const bias = Tensor.randn([n], { seed: 13 });
  const out = Tensor.empty([m, n]);
  const reps = m === 1 ? 200 : 3;
  const r = paired(() => sf.linear(x, w, bias, { out }), (k0) => helper.onednnLinear(m, n, k, threads, k0),
    { reps, rounds: m === 1 ? 15 : 7, warmup: m === 1 ? 200 : 3 });
  return { ...r, flops: 2 * m * n * k };
}

export async function run() {
  const rows = [];
  const results = { memoryBound: [], linear: [] };
  for (const threads of [1, 2]) {
    sf.setNumThreads(threads);
    for (const [r, c] of SHAPES) {
      for (const c0 of memoryBound(r, c)) {
        // the copy moves the same bytes as the op (half read, half written), in the same rounds
        const p = paired(c0.fn, (k0) => helper.copy(c0.bytes / 2, threads, k0), { reps: 3, rounds: 7 });
        const gbs = c0.bytes / p.ours.median;
        const copyGBs = c0.bytes / p.base.median;
        rows.push({ threads, shape: `[${r}, ${c}]`, op: c0.op, 'GB/s': fmt(gbs), 'copy GB/s': fmt(copyGBs), 'vs copy': fmt(p.ratio.median, 2), 'ratio min-max': `${fmt(p.ratio.min, 2)}-${fmt(p.ratio.max, 2)}`, 'median ms': fmt(p.ours.median / 1e6, 2), pass: p.ratio.median >= 0.7 ? 'yes' : 'NO' });
        results.memoryBound.push({ threads, shape: [r, c], op: c0.op, bytes: c0.bytes, ns: p.ours, copyNs: p.base, ratio: p.ratio, gbs, copyGBs });
      }
    }
  }
  printTable('memory-bound ops, f32 (target: >= 0.70 of copy)', ['threads', 'shape', 'op', 'GB/s', 'copy GB/s', 'vs copy', 'ratio min-max', 'median ms', 'pass'], rows);

  const lrows = [];
  for (const threads of [1, 2]) {
    sf.setNumThreads(threads);
    for (const [m, n, k] of [[1024, 3072, 768], [1, 768, 768]]) {
      const { ours, base, ratio, flops } = linearCase(m, n, k, threads);
      const peak = f32Peak(threads);
      const row = { threads, 'M,N,K': `${m},${n},${k}`, 'ours GFLOP/s': fmt(flops / ours.median), 'oneDNN GFLOP/s': fmt(flops / base.median), 'peak GFLOP/s': fmt(peak), 'ours/oneDNN': `${fmt(ratio.median, 3)} (${fmt(ratio.min, 2)}-${fmt(ratio.max, 2)})`, 'ours µs': fmt(ours.median / 1e3, 1), 'oneDNN µs': fmt(base.median / 1e3, 1), 'added µs': fmt((ours.median - base.median) / 1e3, 2) };
      lrows.push(row);
      results.linear.push({ threads, m, n, k, ours, direct: base, ratio, flops, peakGFlops: peak });
    }
  }
  printTable('linear f32 (targets: 1024x3072x768 within 5% of oneDNN; 1x768x768 adds <= 10 µs)', ['threads', 'M,N,K', 'ours GFLOP/s', 'oneDNN GFLOP/s', 'peak GFLOP/s', 'ours/oneDNN', 'ours µs', 'oneDNN µs', 'added µs'], lrows);
  const file = writeResults('ops', results);
  console.log(`\nresults: ${file}`);
}

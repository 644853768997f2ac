// Bench utilities: timing (warm-up, repeats, median with min-max), tables, JSON results.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import helper from './native/index.cjs';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * This machine's f32 FMA peak in GFLOP/s with `threads` threads: bench/native's fmaPeak
 * (register-only FMA chains on every thread), the fastest of `reps` calls. The fastest, because
 * the peak is what the hardware can do and a shared host only ever takes from it (the median
 * here has swung 2x with a neighbour's load). Measured, not quoted: the machines a bench lands on
 * differ (REFERENCES §7 describes a Zen 4 with AVX-512 at 229 GFLOP/s for 2 threads; the Zen 3
 * VMs seen here run AVX2 at ~100 GFLOP/s per core).
 */
export function f32Peak(threads, reps = 15) {
  const r = helper.fmaPeak(threads, reps);
  return r.flopPerCall / stats(r.ns).min;
}

export function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], n: s.length };
}

/** Times fn() (synchronous) `reps` times after `warmup` calls; returns ns samples. */
export function timeSync(fn, { warmup = 3, reps = 15 } = {}) {
  for (let i = 0; i < warmup; i++) fn();
  const out = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    out.push(Number(process.hrtime.bigint() - t0));
  }
  return out;
}

/**
 * Times `ours` against `base` in alternating rounds, so slow phases of a shared host hit both:
 * each round runs `reps` calls of each; `ours()` is timed here, `base(reps)` returns its own ns
 * samples (a native baseline). Returns medians over all samples and the median per-round ratio.
 */
export function paired(ours, base, { rounds = 7, reps = 5, warmup = 3 } = {}) {
  for (let i = 0; i < warmup; i++) ours();
  base(warmup);
  const a = [];
  const b = [];
  const ratios = [];
  for (let r = 0; r < rounds; r++) {
    const ra = timeSync(ours, { warmup: 0, reps });
    const rb = base(reps);
    a.push(...ra);
    b.push(...rb);
    ratios.push(stats(rb).median / stats(ra).median);
  }
  return { ours: stats(a), base: stats(b), ratio: stats(ratios) };
}

export function fmt(v, digits = 1) {
  if (v === undefined || v === null || Number.isNaN(v)) return '-';
  return v.toFixed(digits);
}

/** Prints rows (objects) as an aligned table with the given columns. */
export function printTable(title, columns, rows) {
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? '')));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (vals) => vals.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells) console.log(line(r));
}

export function machine() {
  const cpus = os.cpus();
  return { cpu: cpus[0]?.model, cores: cpus.length, node: process.version, platform: `${process.platform}-${process.arch}` };
}

/** Writes bench/results/<suite>-<timestamp>.json and returns the path. */
export function writeResults(suite, data) {
  const dir = join(here, 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(dir, `${suite}-${stamp}.json`);
  writeFileSync(file, JSON.stringify({ suite, date: new Date().toISOString(), machine: machine(), ...data }, null, 2));
  return file;
}

// Bench utilities: timing (warm-up, repeats, median with min-max), tables, JSON results.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
// bench/native, loaded (and built, the first time) when a peak is measured: the pure helpers here
// (tables, statistics, timing of JS calls) do not need it
const helper = () => createRequire(import.meta.url)('./native/index.cjs');

/** The fastest of `reps` calls of bench/native's peak `fn` with `threads` threads: { gops, isa }, null where the CPU lacks the unit. */
function unitPeak(fn, threads, reps) {
  const r = helper()[fn](threads, reps);
  return r && { gops: r.opsPerCall / stats(r.ns).min, isa: r.isa };
}

/**
 * This machine's f32 FMA peak in GFLOP/s with `threads` threads: bench/native's fmaPeak
 * (register-only FMA chains on every thread), the fastest of `reps` calls. The fastest, because
 * the peak is what the hardware can do and a shared host only ever takes from it (the median
 * here has swung 2x with a neighbour's load). Measured, not quoted: the machines a bench lands on
 * differ (REFERENCES §7 describes a Zen 4 with AVX-512 at 229 GFLOP/s for 2 threads; the Zen 3
 * VMs seen here run AVX2 at ~100 GFLOP/s per core).
 */
export function f32Peak(threads, reps = 15) {
  return unitPeak('fmaPeak', threads, reps).gops;
}

/**
 * The int8 dot-product peak in GOP/s (2 ops per multiply-add) with `threads` threads, measured as
 * f32Peak is: VNNI vpdpbusd where the CPU has it, else AVX2 vpmaddubsw + vpmaddwd + vpaddd
 * (bench/native int8Peak). Returns { gops, isa }.
 */
export function int8Peak(threads, reps = 15) {
  return unitPeak('int8Peak', threads, reps);
}

/** The bf16 dot-product (vdpbf16ps) peak in GFLOP/s, { gops, isa }, or null without avx512_bf16. */
export function bf16Peak(threads, reps = 15) {
  return unitPeak('bf16Peak', threads, reps);
}

/** Relative L2 error of `got` against `ref` (float64 sums). */
export function relL2(got, ref) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (got[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** CPU flags of /proc/cpuinfo (empty where there is none). */
export function cpuFlags() {
  if (!existsSync('/proc/cpuinfo')) return [];
  return (readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/);
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

/** Times `reps` sequential calls of the async `call`; returns ns samples. */
export async function timeAsync(call, reps) {
  const ns = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await call();
    ns.push(Number(process.hrtime.bigint() - t0));
  }
  return ns;
}

/**
 * Times peers { name, time(reps) -> Promise<ns[]> } in rounds: each peer is warmed up and given
 * the calls per round that take about `targetMs`; then every round runs each peer in turn, so slow
 * phases of the shared host hit all of them. Before each turn it waits `idleMs`, so the worker
 * threads the previous peer left spinning (onnxruntime's pool, OpenBLAS, OpenMP) have gone to
 * sleep and do not steal its cores. `rounds` defaults to 7 (3 with `quick`), or 3 (2) when a call
 * takes over 0.3 s. Returns per peer: ns (stats of all calls), rounds (the per-round medians) and
 * ratio (stats of the per-round ratios peer / first peer).
 */
export async function measure(peers, { quick = false, targetMs = quick ? 20 : 50, idleMs = 20, rounds } = {}) {
  const idle = () => new Promise((resolve) => setTimeout(resolve, idleMs));
  let slowest = 0;
  for (const p of peers) {
    await idle();
    let t = (await p.time(1))[0];
    if (t < 300e6) t = (await p.time(1))[0];  // first calls compile, allocate, fault pages in
    p.reps = Math.min(200, Math.max(1, Math.round((targetMs * 1e6) / t)));
    slowest = Math.max(slowest, t);
  }
  const n = rounds ?? (slowest > 300e6 ? (quick ? 2 : 3) : quick ? 3 : 7);
  const all = new Map(peers.map((p) => [p.name, []]));
  const perRound = new Map(peers.map((p) => [p.name, []]));
  for (let r = 0; r < n; r++) {
    for (const p of peers) {
      await idle();
      const ns = await p.time(p.reps);
      all.get(p.name).push(...ns);
      perRound.get(p.name).push(stats(ns).median);
    }
  }
  const res = {};
  const base = perRound.get(peers[0].name);
  for (const p of peers) {
    const rs = perRound.get(p.name);
    res[p.name] = { ns: stats(all.get(p.name)), rounds: rs, ratio: stats(rs.map((x, r) => x / base[r])) };
  }
  return res;
}

/** Stats of the per-round ratios a / b of two peers of one measure() result. */
export function roundRatio(a, b) {
  return stats(a.rounds.map((x, r) => x / b.rounds[r]));
}

/** Milliseconds as "median (min-max)" from ns stats; '-' when missing. */
export function fmtMs(s) {
  if (!s) return '-';
  const f = (v) => fmt(v / 1e6, v < 1e7 ? 2 : 1);
  return `${f(s.median)} (${f(s.min)}-${f(s.max)})`;
}

/** A ratio's stats as "median (min-max)"; '-' when missing. */
export function fmtRatio(r) {
  return r ? `${fmt(r.median, 2)} (${fmt(r.min, 2)}-${fmt(r.max, 2)})` : '-';
}

/** The checkout's short commit, or 'unknown'. */
export function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';  // not a git checkout
  }
}

/**
 * Starts a Python peer process `script` (the system python3 that has Debian's python3-torch, or
 * BENCH_PYTHON) with extra environment `env` (a null value removes a variable). It speaks one
 * JSON line per command; its first line is a hello object. Returns { info: hello, ask(cmd) -> Promise<reply>, stop() }, or { missing }
 * with the reason when it does not start.
 */
export async function startPython(script, env) {
  const python = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
  const full = { ...process.env, ...env };
  for (const k of Object.keys(full)) if (full[k] === null) delete full[k];
  const child = spawn(python, [script], { env: full, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const spawned = new Promise((resolve) => child.on('error', (e) => resolve(e)));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const ask = async (cmd) => {
    if (cmd) child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const { value, done } = await lines.next();
    if (done) throw new Error(`python peer exited: ${stderr.trim().split('\n').pop()}`);
    return JSON.parse(value);
  };
  const hello = await Promise.race([ask(null).catch((e) => e), spawned]);
  if (hello instanceof Error) return { missing: `${python}: ${hello.message}` };
  return { info: hello, ask, stop: () => child.stdin.end() };
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

// npm run bench -- gpu [--quick]   (npm run bench:gpu): seqfuse's CUDA kernels against PyTorch on
// this machine's NVIDIA GPU. Builds bench/gpu/kernels.cu with every cuda/*.cu family (nvcc,
// -arch=native or $SEQFUSE_CUDA_ARCHS), runs it (one JSON line per case: median ms of CUDA-event
// timed loops), then bench/gpu_torch.py times PyTorch on the same cases (python3 on PATH, or
// $BENCH_PYTHON; skipped when it has no CUDA torch). Prints a table (TFLOP/s for floating-point
// products, TOP/s for integer ones (int8 linear), GB/s of the minimum traffic for memory-bound ops,
// torch ms / ours: > 1 means seqfuse is faster) and writes bench/results/gpu-<time>.json.
// Kernel-level: it calls the *_cuda entry points directly (the addon does not load the CUDA
// backend yet, see cuda/README.md).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, gitCommit, printTable, writeResults } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

function jsonLines(text) {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

// A case's dtype (dtype_name in native/core/dtype.h) whose products are integer operations.
const integerDtypes = new Set(['i8', 'i32', 'u8']);

const key = (c) => `${c.op}|${c.dtype}|${c.shape.join('x')}|${JSON.stringify(c.params ?? {})}`;

export async function run(args) {
  const quick = args.includes('--quick');
  const nvcc = spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' });
  if (nvcc.status !== 0) {
    console.error('bench gpu: nvcc (the CUDA toolkit) is not on PATH');
    process.exit(1);
  }
  const archs = (process.env.SEQFUSE_CUDA_ARCHS || '').split(/[\s,;]+/).filter(Boolean);
  const archFlags = archs.length ? archs.map((a) => `-gencode=arch=compute_${a},code=sm_${a}`) : ['-arch=native'];
  const outDir = join(root, 'build', 'gpu');
  mkdirSync(outDir, { recursive: true });
  const exe = join(outDir, 'bench-kernels');
  const families = readdirSync(join(root, 'cuda')).filter((f) => f.endsWith('.cu')).map((f) => join(root, 'cuda', f));
  console.log(`bench gpu: building ${families.length} kernel families with nvcc ${archFlags.join(' ')}`);
  // every file compiled at once (a GPU machine has the cores), then linked
  const compile = (src) => new Promise((resolve) => {
    const obj = join(outDir, `bench-${src.split('/').pop().replace(/\.cu$/, '')}.o`);
    const c = spawn('nvcc', ['-c', '-std=c++17', '-O3', ...archFlags, `-I${join(root, 'cuda')}`, `-I${join(root, 'native')}`, src, '-o', obj]);
    let log = '';
    c.stdout.on('data', (d) => (log += d));
    c.stderr.on('data', (d) => (log += d));
    c.on('close', (status) => resolve({ ok: status === 0, obj, log }));
  });
  const objs = await Promise.all([join(here, 'gpu', 'kernels.cu'), ...families].map(compile));
  const bad = objs.filter((o) => !o.ok);
  const link = bad.length ? null : spawnSync('nvcc', [...archFlags, ...objs.map((o) => o.obj), '-o', exe], { encoding: 'utf8' });
  if (bad.length || link.status !== 0) {
    process.stderr.write(bad.map((o) => o.log).join('') + (link ? link.stdout + link.stderr : ''));
    process.exit(1);
  }
  const r = spawnSync(exe, quick ? ['--quick'] : [], { encoding: 'utf8', maxBuffer: 1 << 26 });
  process.stderr.write(r.stderr);
  if (r.status !== 0) {
    console.error(`bench gpu: the kernel bench failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
  const ours = jsonLines(r.stdout);
  const casesFile = join(outDir, 'cases.jsonl');
  writeFileSync(casesFile, r.stdout);

  const python = process.env.BENCH_PYTHON ?? 'python3';
  const p = spawnSync(python, [join(here, 'gpu_torch.py'), casesFile], { encoding: 'utf8', maxBuffer: 1 << 26 });
  let peer = { missing: `${python}: ${(p.stderr || p.error?.message || '').trim().split('\n').pop()}` };
  const theirs = new Map();
  if (p.status === 0) {
    const [hello, ...rows] = jsonLines(p.stdout);
    peer = hello;
    for (const t of rows) theirs.set(key(t), t);
  }
  const rows = ours.map((o) => {
    const t = theirs.get(key(o));
    const ops = integerDtypes.has(o.dtype) ? 'TOP/s' : 'TFLOP/s';
    const rate = o.flop ? `${fmt(o.flop / o.ms / 1e9, 1)} ${ops}` : `${fmt(o.bytes / o.ms / 1e6, 0)} GB/s`;
    return {
      case: `${o.op} ${o.dtype} [${o.shape.join(', ')}]${Object.keys(o.params).length ? ' ' + JSON.stringify(o.params) : ''}`,
      'ours ms': fmt(o.ms, 3),
      ours: rate,
      'torch ms': t ? fmt(t.ms, 3) : '-',
      'torch/ours': t ? fmt(t.ms / o.ms, 2) : '-',
    };
  });
  const device = peer.device ?? 'an NVIDIA GPU';
  printTable(`seqfuse CUDA kernels vs PyTorch ${peer.torch ?? '(not run: ' + peer.missing + ')'} on ${device} (median of 7; torch/ours > 1: seqfuse faster)`,
    ['case', 'ours ms', 'ours', 'torch ms', 'torch/ours'], rows);
  const file = writeResults('gpu', {
    commit: gitCommit(), device, peer, quick,
    cases: ours.map((o) => ({ ...o, torch: theirs.get(key(o)) ?? null })),
  });
  console.log(`\nresults: ${file}`);
}

#!/usr/bin/env node
// npm run build:cuda — builds the CUDA kernels (cuda/*.cu, CMake target seqfuse_cuda) with nvcc
// for $SEQFUSE_CUDA_ARCHS (default 80;86;89;90) into build-cuda/, keeps ptxas's resource report
// (build-cuda/ptxas.txt, raw) and prints one line per kernel and arch: registers, shared memory,
// stack, spill stores/loads. Exits 1 when nvcc or CMake is missing, the build fails, or any
// kernel spills registers.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'build-cuda');

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 });
  return { ok: r.status === 0, text: (r.stdout || '') + (r.stderr || '') };
}

/** Readable kernel names: demangled, namespaces and the anonymous-namespace tag dropped. */
function demangle(names) {
  if (!names.length || !onPath('c++filt')) return names;
  const r = spawnSync('c++filt', [], { input: names.join('\n'), encoding: 'utf8' });
  const lines = r.status === 0 ? r.stdout.trim().split('\n') : names;
  return lines.map((s) => s.replace(/\(anonymous namespace\)::|seqfuse::|gpu::/g, '').replace(/^void /, '').replace(/\(.*\)$/, ''));
}

/** ptxas -v output -> [{ name, arch, regs, smem, stack, spillStores, spillLoads }]. */
export function parsePtxas(text) {
  const kernels = [];
  let cur = null;
  for (const line of text.split('\n')) {
    let m = line.match(/Compiling entry function '([^']+)' for '(sm_\d+a?)'/);
    if (m) {
      cur = { name: m[1], arch: m[2], regs: 0, smem: 0, stack: 0, spillStores: 0, spillLoads: 0 };
      kernels.push(cur);
      continue;
    }
    if (!cur) continue;
    m = line.match(/(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/);
    if (m) [cur.stack, cur.spillStores, cur.spillLoads] = m.slice(1).map(Number);
    m = line.match(/Used (\d+) registers/);
    if (m) cur.regs = Number(m[1]);
    m = line.match(/(\d+) bytes smem/);
    if (m) cur.smem = Number(m[1]);
  }
  return kernels;
}

function main() {
  if (!onPath('cmake')) {
    console.error('build:cuda: cmake is not on PATH');
    return 1;
  }
  if (!onPath('nvcc') && !process.env.CUDACXX) {
    console.error('build:cuda: nvcc (the CUDA toolkit) is not on PATH; install it or set CUDACXX');
    return 1;
  }
  mkdirSync(out, { recursive: true });
  // Ninja buffers each command's output, so the ptxas lines of one file stay together.
  const generator = onPath('ninja') ? ['-G', 'Ninja'] : [];
  const archs = process.env.SEQFUSE_CUDA_ARCHS ? [`-DSEQFUSE_CUDA_ARCHS=${process.env.SEQFUSE_CUDA_ARCHS}`] : [];
  const conf = run('cmake', ['-S', '.', '-B', out, ...generator, '-DSEQFUSE_CUDA=ON', ...archs]);
  if (!conf.ok) {
    process.stderr.write(conf.text);
    return 1;
  }
  // a fresh report every time: rebuild the kernels
  const build = run('cmake', ['--build', out, '--target', 'seqfuse_cuda', '--clean-first', ...(generator.length ? [] : ['-j', '1'])]);
  writeFileSync(path.join(out, 'ptxas.txt'), build.text);
  if (!build.ok) {
    process.stderr.write(build.text);
    console.error('build:cuda: the CUDA build failed');
    return 1;
  }
  const kernels = parsePtxas(build.text);
  const names = demangle(kernels.map((k) => k.name));
  const rows = kernels.map((k, i) => ({ ...k, name: names[i] })).sort((a, b) => a.name.localeCompare(b.name) || a.arch.localeCompare(b.arch));
  console.log('ptxas resource report (registers, static shared memory, stack, spill stores/loads in bytes):');
  for (const k of rows)
    console.log(`  ${k.arch.padEnd(6)} regs ${String(k.regs).padStart(3)}  smem ${String(k.smem).padStart(6)}  stack ${String(k.stack).padStart(4)}` +
      `  spill ${k.spillStores}/${k.spillLoads}  ${k.name}`);
  const spills = rows.filter((k) => k.spillStores || k.spillLoads);
  const archSet = [...new Set(rows.map((k) => k.arch))].join(', ');
  console.log(`build:cuda: ${new Set(rows.map((k) => k.name)).size} kernels for ${archSet}; ${spills.length} spill` +
    ` (raw report: ${path.relative(root, path.join(out, 'ptxas.txt'))}); library ${path.relative(root, path.join(out, 'libseqfuse_cuda.a'))}`);
  if (spills.length) {
    console.error(`build:cuda: registers spill in: ${[...new Set(spills.map((k) => `${k.name} (${k.arch})`))].join('; ')}`);
    return 1;
  }
  return rows.length ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exit(main());

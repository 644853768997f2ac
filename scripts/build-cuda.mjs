#!/usr/bin/env node
// npm run build:cuda — builds the CUDA-enabled addon (build-cuda/Release/seqfuse.node, which lib/
// loads when it exists: see lib/native.ts) through cmake-js, with the kernels (cuda/*.cu, CMake
// target seqfuse_cuda) compiled by nvcc for $SEQFUSE_CUDA_ARCHS (default 80;86;89;90); keeps
// ptxas's resource report (build-cuda/ptxas.txt, raw) and prints one line per kernel and arch:
// registers, shared memory, stack, spill stores/loads. `-- --kernels-only` builds just the kernel
// library (what CI checks on a machine without a GPU; the addon's C++ is built by the other builds).
// Exits 1 when nvcc or CMake is missing, the build fails, or any kernel spills registers.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
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
  const kernelsOnly = process.argv.includes('--kernels-only');
  // the kernel library alone builds in its own tree (plain CMake, no Node headers)
  const dir = kernelsOnly ? path.join(out, 'kernels') : out;
  mkdirSync(dir, { recursive: true });
  // Ninja buffers each command's output, so the ptxas lines of one file stay together.
  const ninja = onPath('ninja');
  const archs = process.env.SEQFUSE_CUDA_ARCHS ? [`-DSEQFUSE_CUDA_ARCHS=${process.env.SEQFUSE_CUDA_ARCHS}`] : [];
  // a fresh report every time: the kernels are rebuilt
  rmSync(path.join(dir, 'CMakeFiles', 'seqfuse_cuda.dir'), { recursive: true, force: true });
  let build;
  if (kernelsOnly) {
    const conf = run('cmake', ['-S', '.', '-B', dir, ...(ninja ? ['-G', 'Ninja'] : []), '-DSEQFUSE_CUDA=ON', ...archs]);
    if (!conf.ok) {
      process.stderr.write(conf.text);
      return 1;
    }
    build = run('cmake', ['--build', dir, '--target', 'seqfuse_cuda', ...(ninja ? [] : ['-j', '1'])]);
  } else {
    const cmakeJs = path.join(root, 'node_modules', '.bin', 'cmake-js');
    // cmake-js takes Node's headers from npm's nodedir (set by `npm run`), else downloads them:
    // point it at this Node's own headers when they are installed
    const nodeDir = path.join(path.dirname(process.execPath), '..');
    if (!process.env.npm_config_nodedir && existsSync(path.join(nodeDir, 'include', 'node', 'node.h'))) process.env.npm_config_nodedir = nodeDir;
    build = run(cmakeJs, ['compile', '--out', out, ...(ninja ? ['--generator', 'Ninja'] : []), '--CDSEQFUSE_CUDA=ON',
      ...archs.map((a) => a.replace(/^-D/, '--CD'))]);
  }
  writeFileSync(path.join(dir, 'ptxas.txt'), build.text);
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
    ` (raw report: ${path.relative(root, path.join(dir, 'ptxas.txt'))}); ` +
    (kernelsOnly ? `library ${path.relative(root, path.join(dir, 'libseqfuse_cuda.a'))}` : `addon ${path.relative(root, path.join(out, 'Release', 'seqfuse.node'))}`));
  if (spills.length) {
    console.error(`build:cuda: registers spill in: ${[...new Set(spills.map((k) => `${k.name} (${k.arch})`))].join('; ')}`);
    return 1;
  }
  return rows.length ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exit(main());

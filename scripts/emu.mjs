#!/usr/bin/env node
// CUDA kernel sources on the CPU through cuda/emu (see cuda/emu/README.md).
//   node scripts/emu.mjs [-DNAME[=V] | -IDIR ...] file.cu [program args...]
//       builds file.cu with g++ against the emulator (AddressSanitizer, -g) and runs it;
//       exits with the program's status.
//   node scripts/emu.mjs --test
//       builds and runs every emulator self-test (cuda/emu/tests/) and kernel test (cuda/tests/: a
//       family's kernels against the CPU backend, whose sources the test's `// emu-link:` line names)
//       twice (ASan -O1 -g, and -O2 without ASan), checks that each self-test also compiles with
//       nvcc for sm_80 when nvcc is on PATH (the kernel families themselves are compiled with nvcc
//       by npm run build:cuda, which CI runs; the kernel tests by test:gpu), prints one summary
//       line; exit 1 on any failure.
//       Without the CUDA toolkit's headers it prints a notice and exits 0.
//       Then the op and layer suite on device 'cuda' (test/cuda/, vitest) with the emulated addon
//       (build-emu/Release/seqfuse.node, `npm run build:emu`; missing: a failure that says so).
//   node scripts/emu.mjs --gpu            (npm run test:gpu; needs an NVIDIA GPU)
//       builds the same tests with nvcc for this machine's GPU (-arch=native, or the archs of
//       $SEQFUSE_CUDA_ARCHS, e.g. "90") and runs them on it: the kernels against the CPU backend on
//       real hardware; then test/cuda/ with the CUDA-enabled addon (`npm run build:cuda`, which
//       lib/ loads by itself); exit 1 on any failure.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const cudaDir = path.join(root, 'cuda');
const testsDir = path.join(cudaDir, 'emu', 'tests');
// kernel tests: a family's kernels against the CPU backend, with the CPU sources named by the
// test's `// emu-link: path ...` line (from the repository root) built into the same program
const kernelTestsDir = path.join(cudaDir, 'tests');
const nativeDir = path.join(root, 'native');
const outDir = path.join(root, 'build', 'emu');

function onPath(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

// The toolkit's include folder (cuda_fp16.h, cuda_runtime.h): $CUDA_HOME, $CUDA_PATH, nvcc's
// own toolkit, /usr/local/cuda.
function cudaInclude() {
  const nvcc = onPath('nvcc');
  const roots = [process.env.CUDA_HOME, process.env.CUDA_PATH, nvcc && path.join(path.dirname(nvcc), '..'), '/usr/local/cuda'];
  for (const r of roots.filter(Boolean)) {
    const inc = path.join(r, 'include');
    if (existsSync(path.join(inc, 'cuda_fp16.h'))) return inc;
  }
  return null;
}

/** Every file under dir (recursively) whose name passes keep. */
function filesUnder(dir, keep) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? filesUnder(path.join(dir, d.name), keep) : keep(d.name) ? [path.join(dir, d.name)] : []);
}

/** The CPU sources a kernel test names on its `// emu-link:` line, as absolute paths. */
function linkedSources(source) {
  const m = readFileSync(source, 'utf8').match(/^\/\/ emu-link:(.*)$/m);
  return m ? m[1].trim().split(/\s+/).map((f) => path.join(root, f)) : [];
}

function newestInput(source) {
  const inputs = [source, ...linkedSources(source), ...filesUnder(cudaDir, (f) => /\.(h|cuh|cu)$/.test(f)),
    ...filesUnder(nativeDir, (f) => f.endsWith('.h'))];
  return Math.max(...inputs.filter((f) => statSync(f).isFile()).map((f) => statSync(f).mtimeMs));
}

/** Runs cmd args asynchronously: { status, out } (stdout and stderr together). */
function exec(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (e) => resolve({ status: null, out: out + e.message }));
    child.on('close', (status, signal) => resolve({ status: status ?? signal, out }));
  });
}

// Builds source into build/emu/<name>[-suffix] (skipped when the binary is newer than its
// inputs): with AddressSanitizer at -O1 -g, or (optimized) at -O2 without it, as a library build
// would compile the emulator. Resolves to { ok, exe, log }.
async function build(source, include, { extra = [], optimized = false } = {}) {
  mkdirSync(outDir, { recursive: true });
  const suffix = (optimized ? '-O2' : '') + (extra.length ? '-' + extra.join('').replace(/[^\w]/g, '_') : '');
  const name = path.relative(root, source).replace(/\.[^.]+$/, '').replace(/[\\/]/g, '_');
  const exe = path.join(outDir, name + suffix);
  if (existsSync(exe) && statSync(exe).mtimeMs > newestInput(source)) return { ok: true, exe, log: '' };
  const mode = optimized ? ['-O2'] : ['-g', '-O1', '-fsanitize=address', '-fno-omit-frame-pointer'];
  const args = ['-std=c++17', ...mode, '-fopenmp', '-Wall', '-Wextra', `-I${cudaDir}`, `-I${nativeDir}`, `-I${include}`, ...extra,
    '-x', 'c++', source, '-x', 'none', ...linkedSources(source), '-ldl', '-o', exe];
  const r = await exec('g++', args);
  return { ok: r.status === 0, exe, log: r.out };
}

async function runOne(argv) {
  const include = cudaInclude();
  if (!include) {
    console.error('emu: the CUDA toolkit headers (cuda_fp16.h) were not found; set CUDA_HOME');
    return 1;
  }
  const flags = [];
  while (argv.length && /^-[DI]/.test(argv[0])) flags.push(argv.shift());
  const [file, ...programArgs] = argv;
  if (!file || !existsSync(file)) {
    console.error(`emu: expected a .cu file to build and run, got ${file === undefined ? 'nothing' : `"${file}"`}`);
    return 1;
  }
  const b = await build(path.resolve(file), include, { extra: flags });
  if (!b.ok) {
    process.stderr.write(b.log);
    return 1;
  }
  process.stderr.write(b.log);
  const r = spawnSync(b.exe, programArgs, { stdio: 'inherit' });
  return r.status ?? 1;
}

// Every test's three jobs (ASan build + run, -O2 build + run, nvcc compile) on a pool of as many
// workers as the machine has cores.
async function runTests() {
  const include = cudaInclude();
  if (!include) {
    console.log('test:emu: skipped, the CUDA toolkit headers (cuda_fp16.h) were not found (set CUDA_HOME)');
    return 0;
  }
  const nvcc = onPath('nvcc');
  if (!nvcc) console.log('test:emu: nvcc is not on PATH, the self-tests are not compiled for sm_80');
  const tests = testSources();
  const failed = [];
  let nvccOk = 0;
  const jobs = [];
  for (const source of tests) {
    const t = path.relative(cudaDir, source);
    for (const optimized of [false, true])
      jobs.push(async () => {
        const label = optimized ? `${t} (-O2, no ASan)` : t;
        const b = await build(source, include, { optimized });
        if (!b.ok) {
          failed.push(`${label} (g++ build)`);
          process.stderr.write(`--- ${label}: build failed\n${b.log}`);
          return;
        }
        const r = await exec(b.exe, []);
        if (r.status !== 0) {
          failed.push(label);
          process.stderr.write(`--- ${label}: exit ${r.status}\n${r.out}`);
        }
      });
    if (nvcc && source.startsWith(testsDir))
      jobs.push(async () => {
        const obj = path.join(outDir, t.replace(/[\\/]/g, '_').replace(/\.cu$/, '.sm80.o'));
        const c = await exec(nvcc, ['-c', '-arch=sm_80', '-std=c++17', '-Werror', 'all-warnings', `-I${cudaDir}`, `-I${nativeDir}`, source, '-o', obj]);
        if (c.status === 0) nvccOk++;
        else {
          failed.push(`${t} (nvcc)`);
          process.stderr.write(`--- ${t}: nvcc -arch=sm_80 failed\n${c.out}`);
        }
      });
  }
  mkdirSync(outDir, { recursive: true });
  await pool(jobs);
  const passed = tests.length - new Set(failed.map((f) => f.split(' ')[0])).size;
  console.log(`test:emu: ${passed} of ${tests.length} tests passed (emulator self-tests, kernels against the CPU backend)` +
    (nvcc ? `, ${nvccOk} of ${tests.filter((f) => f.startsWith(testsDir)).length} self-tests compile with nvcc -arch=sm_80` : ', nvcc check skipped') +
    (failed.length ? `; FAILED: ${failed.join(', ')}` : ''));
  return failed.length ? 1 : 0;
}

// The test sources: emulator self-tests, then kernel tests.
function testSources() {
  const list = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.cu')).sort().map((f) => path.join(dir, f)) : []);
  return [...list(testsDir), ...list(kernelTestsDir)];
}

/** Runs the async jobs on a pool of one worker per core. */
async function pool(jobs) {
  const queue = [...jobs];
  const workers = Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, queue.length));
  await Promise.all(Array.from({ length: workers }, async () => {
    while (queue.length) await queue.shift()();
  }));
}

// Builds every test with nvcc for this machine's GPU (in parallel), then runs them one by one.
async function runGpuTests() {
  const nvcc = onPath('nvcc');
  if (!nvcc) {
    console.error('test:gpu: nvcc is not on PATH (install the CUDA toolkit or set PATH)');
    return 1;
  }
  const archs = (process.env.SEQFUSE_CUDA_ARCHS || '').split(/[\s,;]+/).filter(Boolean);
  const archFlags = archs.length ? archs.map((a) => `-gencode=arch=compute_${a},code=sm_${a}`) : ['-arch=native'];
  const dir = path.join(root, 'build', 'gpu');
  mkdirSync(dir, { recursive: true });
  const failed = [];
  const tests = testSources().map((source) => {
    const t = path.relative(cudaDir, source);
    return { source, t, exe: path.join(dir, t.replace(/[\\/]/g, '_').replace(/\.cu$/, '')), built: false };
  });
  await pool(tests.map((x) => async () => {
    const c = await exec(nvcc, ['-std=c++17', '-O2', ...archFlags, `-I${cudaDir}`, `-I${nativeDir}`, '-Xcompiler', '-fopenmp', x.source,
      ...linkedSources(x.source), '-lgomp', '-o', x.exe]);
    x.built = c.status === 0;
    if (!x.built) {
      failed.push(`${x.t} (nvcc)`);
      process.stderr.write(`--- ${x.t}: nvcc failed\n${c.out}`);
    }
  }));
  for (const x of tests.filter((y) => y.built)) {
    const r = spawnSync(x.exe, [], { encoding: 'utf8' });
    process.stdout.write(r.stdout);
    if (r.status !== 0) {
      failed.push(x.t);
      process.stderr.write(`--- ${x.t}: exit ${r.status ?? r.signal}\n${r.stderr}`);
    }
  }
  console.log(`test:gpu: ${tests.length - failed.length} of ${tests.length} tests passed on the GPU` +
    (failed.length ? `; FAILED: ${failed.join(', ')}` : ''));
  return failed.length ? 1 : 0;
}

// test/cuda/ (every op and layer on device 'cuda' against the CPU) through vitest, with `addon`
// (SEQFUSE_ADDON; null: the addon lib/ picks). Returns the exit status.
function runCudaSuite(label, addon) {
  if (addon && !existsSync(addon)) {
    console.error(`${label}: ${path.relative(root, addon)} is missing; build it first (npm run build:emu)`);
    return 1;
  }
  const env = { ...process.env, SEQFUSE_TEST_CUDA: '1', ...(addon ? { SEQFUSE_ADDON: addon } : {}) };
  const r = spawnSync(path.join(root, 'node_modules', '.bin', 'vitest'), ['run', '--reporter=default'], { cwd: root, env, stdio: 'inherit' });
  console.log(`${label}: the op and layer suite on device 'cuda' ${r.status === 0 ? 'passed' : 'FAILED'}`);
  return r.status === 0 ? 0 : 1;
}

const argv = process.argv.slice(2);
if (argv[0] === '--test') {
  const kernels = await runTests();
  // without the CUDA headers runTests skipped everything, and there is no emulated addon either
  const suite = cudaInclude() ? runCudaSuite('test:emu', path.join(root, 'build-emu', 'Release', 'seqfuse.node')) : 0;
  process.exit(kernels || suite);
}
if (argv[0] === '--gpu') {
  const kernels = await runGpuTests();
  process.exit(kernels || runCudaSuite('test:gpu', null));
}
process.exit(await runOne(argv));

// The two build files must build the same addon from the same source list (DESIGN §9).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..');

function lines(s: string): string[] {
  return s.split('\n').map((l) => l.trim()).filter(Boolean);
}

function walk(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((f) => {
    const p = `${dir}/${f}`;
    return statSync(join(root, p)).isDirectory() ? walk(p) : [p];
  });
}

describe('build files', () => {
  const gyp = lines(execFileSync('node', ['scripts/sources.js', 'common', 'kernels', 'nocuda'], { cwd: root, encoding: 'utf8' }));

  it('binding.gyp and CMakeLists.txt compile the same sources', () => {
    // `cmake -P` prints with message(), i.e. on stderr
    const out = execFileSync('cmake', ['-P', 'cmake/print-sources.cmake'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const err = execFileSync('sh', ['-c', 'cmake -P cmake/print-sources.cmake 2>&1 >/dev/null'], { cwd: root, encoding: 'utf8' });
    expect(lines(out + err)).toEqual(gyp);
    // and both files really read that list
    const bindingGyp = readFileSync(join(root, 'binding.gyp'), 'utf8');
    const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
    expect(bindingGyp).toContain('scripts/sources.js common kernels nocuda');
    expect(bindingGyp).toContain('scripts/sources.js kernels');
    expect(cmake).toContain('include(cmake/sources.cmake)');
    expect(cmake).toMatch(/\$\{SEQFUSE_COMMON_SOURCES\}\s+\$\{SEQFUSE_KERNEL_SOURCES\}/);
  });

  it('the source list matches the native tree', () => {
    const onDisk = walk('native').filter((f) => f.endsWith('.cc')).sort();
    expect([...gyp].sort()).toEqual(onDisk);
    for (const f of gyp) expect(existsSync(join(root, f)), f).toBe(true);
  });

  it('shipped builds never use -march=native', () => {
    for (const f of ['binding.gyp', 'CMakeLists.txt']) expect(readFileSync(join(root, f), 'utf8')).not.toContain('-march=native');
  });

  it('the CMake-built (emulated CUDA) addon loads and reports its build', () => {
    const cm = join(root, 'build-emu/Release/seqfuse.node');
    if (!existsSync(cm)) {
      // CI builds it (`npm run build:emu` in .ci/run, before the tests); a developer may not have.
      console.warn('build-emu/Release/seqfuse.node not built; run `npm run build:emu` to check the CMake build');
      return;
    }
    const script = `const a = require(${JSON.stringify(cm)}); console.log(JSON.stringify([a.build_info(), a.cuda_status()]))`;
    const [info, status] = JSON.parse(execFileSync('node', ['-e', script], { encoding: 'utf8' }));
    expect(info.onednn).toMatch(/^\d+\.\d+\.\d+$/);
    expect(info.cuda).toBe(true);
    expect(status).toMatchObject({ available: true, emulated: true });
  });
});

describe('build:cuda ptxas report', () => {
  it('reads registers, shared memory, stack and spills per kernel and arch', async () => {
    const script = '../scripts/build-cuda.mjs';  // plain JS: imported untyped
    const { parsePtxas } = await import(script);
    const report = [
      "ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_80'",
      'ptxas info    : Function properties for _Z6kernelPf',
      '    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads',
      'ptxas info    : Used 96 registers, used 1 barriers, 8 bytes cumulative stack size, 4096 bytes smem, 368 bytes cmem[0]',
      "ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90'",
      'ptxas info    : Function properties for _Z6kernelPf',
      '    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads',
      'ptxas info    : Used 40 registers, used 0 barriers',
    ].join('\n');
    expect(parsePtxas(report)).toEqual([
      { name: '_Z6kernelPf', arch: 'sm_80', regs: 96, smem: 4096, stack: 8, spillStores: 4, spillLoads: 12 },
      { name: '_Z6kernelPf', arch: 'sm_90', regs: 40, smem: 0, stack: 0, spillStores: 0, spillLoads: 0 },
    ]);
  });
});

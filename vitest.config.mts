import { configDefaults, defineConfig } from 'vitest/config';

// test/cuda/ runs the ops and layers on device 'cuda' and needs an addon with the CUDA backend:
// `npm run test:emu` (the emulated addon) and `npm run test:gpu` set SEQFUSE_TEST_CUDA=1 to run
// only those; the default run (`npm test`, the CPU addon) leaves them out.
const cuda = process.env.SEQFUSE_TEST_CUDA === '1';

// pool 'forks': a native crash kills one worker process, not the whole run.
export default defineConfig({
  test: {
    pool: 'forks',
    // leak tests call gc() to see what is really freed
    execArgv: ['--expose-gc'],
    include: cuda ? ['test/cuda/**/*.test.ts'] : ['test/**/*.test.ts'],
    exclude: cuda ? configDefaults.exclude : [...configDefaults.exclude, 'test/cuda/**'],
    // a machine-readable summary beside the console one (.ci/run prints its totals)
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});

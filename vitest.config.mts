import { defineConfig } from 'vitest/config';

// pool 'forks': a native crash kills one worker process, not the whole run.
export default defineConfig({
  test: {
    pool: 'forks',
    // leak tests call gc() to see what is really freed
    execArgv: ['--expose-gc'],
    include: ['test/**/*.test.ts'],
    // a machine-readable summary beside the console one (.ci/run prints its totals)
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});

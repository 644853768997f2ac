import { defineConfig } from 'vitest/config';

// pool 'forks': a native crash kills one worker process, not the whole run.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});

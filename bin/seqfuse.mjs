#!/usr/bin/env node
// The `seqfuse` command: `seqfuse bench [suite...] [options]` runs bench/run.mjs (the same as
// `npm run bench -- ...` in a checkout) with the package's own bench files.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const USAGE = `usage: seqfuse <command> [args]

commands:
  bench [suite...] [--quick] [--threads N[,N...]]
      run the benchmark suites (default: all): ops, attention, layers, dtypes. Tables on stdout;
      JSON (and for dtypes an SVG chart) under the package's bench/results/. The ORT peers and the
      chart need the devDependencies onnxruntime-node, vega and vega-lite installed.
  help, --help, -h
      print this text`;

const [command, ...rest] = process.argv.slice(2);
if (command === 'help' || command === '--help' || command === '-h') {
  console.log(USAGE);
} else if (command === 'bench') {
  const run = join(dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'run.mjs');
  const r = spawnSync(process.execPath, [run, ...rest], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
} else {
  console.error(command === undefined ? 'seqfuse: missing command' : `seqfuse: unknown command '${command}'`);
  console.error(USAGE);
  process.exitCode = 2;
}

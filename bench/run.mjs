#!/usr/bin/env node
// npm run bench -- <suite...> [--quick]   (default: every CPU suite). Suites: ops, attention, layers
// (`layers --check`: its correctness checks only, no timing), dtypes (`--threads N[,N...]`, default 2;
// `--device cuda`: on the GPU),
// gpu (the CUDA kernels against PyTorch on an NVIDIA GPU; needs nvcc; also npm run bench:gpu).
// Also `npx seqfuse bench <suite...>` (bin/seqfuse.mjs).
// Each suite prints a table and writes JSON under bench/results/.
const suites = {
  ops: () => import('./ops.mjs'),
  attention: () => import('./attention.mjs'),
  layers: () => import('./layers.mjs'),
  dtypes: () => import('./dtypes.mjs'),
  gpu: () => import('./gpu.mjs'),
};

// options that take the next argument as their value (else it would read as a suite name)
const VALUED = new Set(['--threads', '--device']);
const args = process.argv.slice(2);
const wanted = args.filter((a, i) => !a.startsWith('-') && !VALUED.has(args[i - 1]));
const names = wanted.length ? wanted : Object.keys(suites).filter((n) => n !== 'gpu');
for (const n of names) {
  if (!suites[n]) {
    console.error(`unknown bench suite '${n}'; available: ${Object.keys(suites).join(', ')}`);
    process.exit(2);
  }
}
for (const n of names) {
  let mod;
  try {
    mod = await suites[n]();
  } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
    // the peers and the chart are devDependencies: an installed seqfuse does not bring them
    console.error(`bench suite '${n}' cannot start: ${e.message.split('\n')[0]}
install the bench's devDependencies (onnxruntime-node, vega, vega-lite; in a checkout: npm ci), and build dist/ (npm run build:ts)`);
    process.exit(1);
  }
  await mod.run(args);
}

#!/usr/bin/env node
// npm run bench -- <suite...> [--quick]   (default: every suite). Suites: ops, attention, layers
// (`layers --check`: its correctness checks only, no timing).
// Each suite prints a table and writes JSON under bench/results/.
const suites = {
  ops: () => import('./ops.mjs'),
  attention: () => import('./attention.mjs'),
  layers: () => import('./layers.mjs'),
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length ? wanted : Object.keys(suites);
for (const n of names) {
  if (!suites[n]) {
    console.error(`unknown bench suite '${n}'; available: ${Object.keys(suites).join(', ')}`);
    process.exit(2);
  }
}
for (const n of names) {
  const mod = await suites[n]();
  await mod.run(process.argv.slice(2));
}

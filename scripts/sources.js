#!/usr/bin/env node
// Prints the sources of the given groups from native/sources.txt, one per line (binding.gyp
// runs this). Usage: node scripts/sources.js common kernels
'use strict';
const fs = require('fs');
const path = require('path');

const lines = fs.readFileSync(path.join(__dirname, '..', 'native', 'sources.txt'), 'utf8').split('\n');
const entries = lines.map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((l) => l.split(/\s+/));
for (const g of process.argv.slice(2)) {
  const files = entries.filter(([group]) => group === g).map(([, f]) => f);
  if (!files.length) {
    process.stderr.write(`scripts/sources.js: no sources in group '${g}'\n`);
    process.exit(1);
  }
  for (const f of files) process.stdout.write(f + '\n');
}

#!/usr/bin/env node
// Finds oneDNN for binding.gyp. `--cflags` prints include flags, `--libs` linker flags, `--check`
// only checks. When oneDNN is missing it prints one line saying how to install it and exits 1.
'use strict';
const fs = require('fs');
const path = require('path');

const roots = [process.env.DNNLROOT, process.env.DNNL_ROOT, '/usr', '/usr/local', '/opt/homebrew', '/opt/homebrew/opt/onednn']
  .filter(Boolean);
const found = roots.find((r) => fs.existsSync(path.join(r, 'include', 'dnnl.hpp')) || fs.existsSync(path.join(r, 'include', 'oneapi', 'dnnl', 'dnnl.hpp')));

if (!found) {
  process.stderr.write('seqfuse: oneDNN (dnnl.hpp) not found; install it: `sudo apt-get install libdnnl-dev` (Debian/Ubuntu) or `brew install onednn` (macOS), or set DNNLROOT\n');
  process.exit(1);
}
const system = found === '/usr';
const mode = process.argv[2] || '--check';
if (mode === '--cflags' && !system) process.stdout.write(`-I${path.join(found, 'include')}\n`);
if (mode === '--libs') {
  if (!system) process.stdout.write(`-L${path.join(found, 'lib')}\n-Wl,-rpath,${path.join(found, 'lib')}\n`);
  process.stdout.write('-ldnnl\n');
}

#!/usr/bin/env node
// npm `install` hook: load a prebuild or the existing build when one fits, else build from
// source with node-gyp; oneDNN is checked first so a missing library is one clear line.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');
const root = path.join(__dirname, '..');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

try {
  require('node-gyp-build')(root);  // a prebuild or build/Release/seqfuse.node that loads
  process.exit(0);
} catch {
  // fall through to a source build
}
if (!run(process.execPath, [path.join(__dirname, 'find-dnnl.js'), '--check'])) process.exit(1);
// npm runs install scripts with its bundled node-gyp on PATH and in npm_config_node_gyp.
const gyp = process.env.npm_config_node_gyp;
const ok = gyp ? run(process.execPath, [gyp, 'rebuild', '--jobs', 'max']) : run('node-gyp', ['rebuild', '--jobs', 'max']);
process.exit(ok ? 0 : 1);

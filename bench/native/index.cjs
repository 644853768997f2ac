'use strict';
// Loads the bench's native baselines (bench_helper.cc), building them with node-gyp when missing
// or older than their source.
// Only the bench harness requires this; the library never does.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const addon = path.join(__dirname, 'build', 'Release', 'bench_helper.node');

function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  }
}

const stale = () => fs.statSync(path.join(__dirname, 'bench_helper.cc')).mtimeMs > fs.statSync(addon).mtimeMs;
if (!fs.existsSync(addon) || stale()) {
  const args = [nodeGyp(), 'rebuild', '-j', '1'];
  const nodedir = path.resolve(path.dirname(process.execPath), '..');
  if (fs.existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
  execFileSync(process.execPath, args, { cwd: __dirname, stdio: ['ignore', 'ignore', 'inherit'] });
}

module.exports = require(addon);

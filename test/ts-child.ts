// Child processes that run lib/*.ts without a build: a prelude for `node -e` scripts that compiles
// TypeScript with transpileModule on require and maps lib's NodeNext './x.js' imports to './x.ts'.
// Run the child with cwd = the repository root; `require(path.resolve('lib/index.ts'))` then works.
export const TS_CHILD_PRELUDE = String.raw`
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');
const ts = require('typescript');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  if (parent && parent.filename.endsWith('.ts') && request.startsWith('.') && request.endsWith('.js')) {
    const file = path.resolve(path.dirname(parent.filename), request.slice(0, -3) + '.ts');
    if (fs.existsSync(file)) return file;
  }
  return resolve.call(this, request, parent, ...rest);
};
require.extensions['.ts'] = (m, file) => m._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'), {
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
}).outputText, file);
`;

// Bench suite `layers`: one BERT-base encoder layer (hidden 768, 12 heads, FFN 3072, GELU,
// post-LN; B8 S128) as seqfuse's TransformerEncoderLayer in f32 and bf16, forward and
// forward+backward, beside the peers a Node user would pick, measured in the same run with the
// same weights: onnxruntime-node on ONNX graphs of the layer built here (forward, f32) and PyTorch
// CPU (f32) through bench/layers_torch.py, both nn.TransformerEncoderLayer and the layer written
// out by hand. The pre-LN layer is timed too (2 threads). PyTorch's thread setting is searched
// (wait policy x torch threads) and the fastest is used for each of its rows. Every peer's output
// (and PyTorch's gradients) is checked against ours before timing. 2 and 1 threads; `--quick`:
// fewer rounds.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import sf from '../dist/index.js';
import { cpuFlags, f32Peak, fmt, fmtMs, fmtRatio, gitCommit, measure, printTable, relL2, roundRatio, startPython, timeAsync, writeResults } from './harness.mjs';
import { encoderLayerModel, ortPeers } from './encoder-onnx.mjs';

const { Tensor, TransformerEncoderLayer, toTorchTransformerLayer } = sf;
const here = dirname(fileURLToPath(import.meta.url));

const C = { B: 8, S: 128, H: 768, heads: 12, F: 3072, eps: 1e-5 };
const T = C.B * C.S;
// model FLOPs: the four products of the hidden size, the two of the FFN, and QK^T and PV
const FWD_FLOPS = 2 * T * (4 * C.H * C.H + 2 * C.H * C.F) + 4 * C.B * C.S * C.S * C.H;
const FLOPS = { fwd: FWD_FLOPS, fwdbwd: 3 * FWD_FLOPS };
const PASSES = { fwd: 'forward', fwdbwd: 'fwd+bwd' };
// f32 peers must match our f32 layer to this relative L2 error (outputs, input and weight gradients)
const F32_TOL = 1e-4;
// our bf16 layer against our f32 layer (16-bit storage, f32 compute): the bounds of
// test/transformer-layer.test.ts (output 1e-2, the input gradient 3e-2)
const BF16_TOL = { y: 1e-2, dx: 3e-2 };
// a pause before each turn: OpenBLAS's idle threads spin for up to ~0.1 s after a call
const IDLE_MS = 150;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- weights and layers --------------------------------------------------------------------------

/**
 * Parameters under our names, seeded normal samples: weights with std 0.02 (BERT's init), biases
 * and norm parameters away from their initial 0 and 1, so that a mapping mistake shows in the checks.
 */
export function benchParameters(shapes) {
  const m = new Map();
  let seed = 10;
  for (const [name, shape] of shapes) {
    const normWeight = name.includes('norm') && name.endsWith('.weight');
    const std = name.endsWith('.bias') || normWeight ? 0.1 : 0.02;
    m.set(name, Tensor.randn(shape, { seed: seed++, mean: normWeight ? 1 : 0, std }));
  }
  return m;
}

/** Our layers (post-LN and pre-LN, f32 and bf16) with the same parameters, and those as a PyTorch state_dict. */
function makeLayers() {
  const make = (preLayerNorm, dtype) => new TransformerEncoderLayer({ hiddenSize: C.H, numHeads: C.heads, ffnSize: C.F, activation: 'gelu',
    preLayerNorm, layerNormEps: C.eps, dtype, seed: 1 });
  const layers = { post: { f32: make(false, 'f32'), bf16: make(false, 'bf16') }, pre: { f32: make(true, 'f32'), bf16: make(true, 'bf16') } };
  const params = benchParameters([...layers.post.f32.parameters()].map(([n, t]) => [n, t.shape]));
  for (const ln of Object.values(layers)) for (const l of Object.values(ln)) l.loadParameters(params);
  const state = toTorchTransformerLayer(params, 'encoder');
  const w = Object.fromEntries([...state].map(([n, t]) => [n, t.toArray()]));
  const shapes = Object.fromEntries([...state].map(([n, t]) => [n, t.shape]));
  for (const t of [...params.values(), ...state.values()]) t.dispose();
  return { layers, w, shapes };
}

/** One forward+backward from zeroed gradients: y, dx and the gradients under PyTorch's names. */
async function reference(layer, x, dy) {
  layer.zeroGrad();
  const y = await layer.forward(x);
  const dx = await layer.backward(dy);
  const grads = toTorchTransformerLayer(layer.gradients(), 'encoder');
  const out = { y: y.toArray(), dx: dx.toArray(), grads: Object.fromEntries([...grads].map(([n, t]) => [n, t.toArray()])) };
  for (const t of [y, dx, ...grads.values()]) t.dispose();
  return out;
}

function seqfusePeer(name, layer, x, dy, pass) {
  const fwd = async () => (await layer.forward(x)).dispose();
  const fwdbwd = async () => {
    const y = await layer.forward(x);
    (await layer.backward(dy)).dispose();
    y.dispose();
  };
  return { name, time: (reps) => timeAsync(pass === 'fwd' ? fwd : fwdbwd, reps) };
}

// --- PyTorch -------------------------------------------------------------------------------------

const TORCH_IMPLS = { nn: 'torch nn', hand: 'torch hand', nn_pre: 'torch nn pre-LN' };

/**
 * PyTorch processes for `threads`, one per OpenMP wait policy (PASSIVE, or null: libgomp's
 * default, a short spin and then sleep); OpenMP and OpenBLAS threads both at `threads`. ACTIVE is
 * not tried: its idle threads spin on and would take the cores from the peers timed after it.
 */
async function torchProcs(threads, setup, policies) {
  const procs = [];
  for (const policy of policies) {
    const p = await startPython(join(here, 'layers_torch.py'),
      { OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), OMP_WAIT_POLICY: policy });
    if (p.missing) return { missing: p.missing };
    p.policy = policy ?? 'default';
    p.setup = await p.ask({ setup });
    procs.push(p);
  }
  return { procs, stop: () => procs.forEach((p) => p.stop()) };
}

/** PyTorch's f32 outputs and gradients against ours: the largest relative L2 error per implementation. */
async function checkTorch(proc, dir, refs) {
  const res = {};
  for (const impl of Object.keys(TORCH_IMPLS)) {
    const prefix = join(dir, `${impl}.`);
    await proc.ask({ check: { impl, prefix } });
    const ref = refs[impl === 'nn_pre' ? 'pre' : 'post'];
    const read = (n) => {
      const bytes = readFileSync(`${prefix}${n}.f32`);  // a small file's Buffer is a slice of a shared pool
      const a = new Float32Array(bytes.length / 4);
      new Uint8Array(a.buffer).set(bytes);
      return a;
    };
    const errs = { y: relL2(read('y'), ref.y), dx: relL2(read('dx'), ref.dx) };
    for (const n of Object.keys(ref.grads)) errs[n] = relL2(read(n), ref.grads[n]);
    res[TORCH_IMPLS[impl]] = errs;
  }
  return res;
}

/**
 * Finds PyTorch's fastest setting for each implementation and pass: every process (wait policy)
 * with torch.set_num_threads(threads) and, above 1 thread, set_num_threads(1) (OpenBLAS keeps its
 * threads: no OpenMP pool competes with it). The candidates take turns over a few passes (a
 * warm-up call first) and each scores its fastest call: a neighbour's load only ever adds time.
 */
async function pickTorch(procs, threads, impls, quick) {
  const cands = [];
  for (const proc of procs)
    for (const torchThreads of threads > 1 ? [threads, 1] : [1])
      for (const impl of impls) for (const pass of Object.keys(PASSES)) cands.push({ impl, pass, threads: torchThreads, proc, ns: [] });
  for (let round = 0; round < (quick ? 1 : 2); round++) {
    for (const c of cands) {
      await sleep(IDLE_MS);
      const cmd = { impl: c.impl, pass: c.pass, threads: c.threads };
      if (round === 0) await c.proc.ask({ time: { ...cmd, reps: 1 } });
      c.ns.push(...(await c.proc.ask({ time: { ...cmd, reps: 2 } })).ns);
    }
  }
  const tried = cands.map(({ proc, ns, ...c }) => ({ ...c, proc, policy: proc.policy, ms: Math.min(...ns) / 1e6 }));
  const best = {};
  for (const t of tried) {
    const key = `${t.impl} ${t.pass}`;
    if (!best[key] || t.ms < best[key].ms) best[key] = t;
  }
  return { best, tried: tried.map(({ proc, ...t }) => t) };
}

function torchPeer(pick) {
  const { proc, impl, pass, threads } = pick;
  return { name: TORCH_IMPLS[impl], time: async (reps) => (await proc.ask({ time: { impl, pass, reps, threads } })).ns };
}

// --- the run -------------------------------------------------------------------------------------

const TARGETS = [
  { what: 'f32 forward vs onnxruntime-node (best graph)', pass: 'fwd', peer: 'ort', base: 'seqfuse f32', min: 1.1, mfu: 85 },
  { what: 'f32 fwd+bwd vs PyTorch (best of nn, hand)', pass: 'fwdbwd', peer: 'torch', base: 'seqfuse f32', min: 1.2, mfu: 80 },
  { what: 'bf16 forward vs our f32', pass: 'fwd', peer: 'seqfuse f32', base: 'seqfuse bf16', min: 1.7 },
  { what: 'bf16 fwd+bwd vs PyTorch f32 (best of nn, hand)', pass: 'fwdbwd', peer: 'torch', base: 'seqfuse bf16', min: 1.8 },
];

/** The faster (lower median) of the named peers present in `m`. */
function fastest(m, names) {
  return names.filter((n) => m[n]).sort((a, b) => m[a].ns.median - m[b].ns.median)[0];
}

/** Our bf16 layers against our f32 ones, the onnxruntime graphs against our f32 layer, PyTorch against it (2 threads). */
async function checkAll(ctx, refs) {
  const { layers, x, dy, graphs, xv, setup, dir } = ctx;
  const checks = {};
  for (const ln of ['post', 'pre']) {
    const b = await reference(layers[ln].bf16, x.bf16, dy.bf16);
    checks[`seqfuse bf16${ln === 'pre' ? ' pre-LN' : ''}`] = { y: relL2(b.y, refs[ln].y), dx: relL2(b.dx, refs[ln].dx) };
  }
  const ortSet = await ortPeers(graphs, xv, [C.B, C.S, C.H], 2);
  for (const p of ortSet.peers) checks[p.name] = { y: relL2(await p.output(), refs.post.y) };
  await ortSet.release();
  const torch = await torchProcs(2, setup, ['PASSIVE']);
  if (!torch.missing) {
    Object.assign(checks, await checkTorch(torch.procs[0], dir, refs));
    torch.stop();
  }
  return { checks, torch };
}

export async function run(args) {
  const quick = args.includes('--quick');
  const checkOnly = args.includes('--check');
  const flags = cpuFlags();
  const bf16Hw = flags.filter((f) => /bf16/.test(f));
  const { layers, w, shapes } = makeLayers();
  const dims = [C.B, C.S, C.H];
  const x = { f32: Tensor.randn(dims, { seed: 1 }) };
  const dy = { f32: Tensor.randn(dims, { seed: 2 }) };
  x.bf16 = x.f32.to('bf16');
  dy.bf16 = dy.f32.to('bf16');
  const xv = x.f32.toArray();
  const dyv = dy.f32.toArray();
  const dir = mkdtempSync(join(tmpdir(), 'seqfuse-bench-layers-'));
  try {
    writeFileSync(join(dir, 'x.f32'), xv);
    writeFileSync(join(dir, 'dy.f32'), dyv);
    for (const [n, v] of Object.entries(w)) writeFileSync(join(dir, `${n}.f32`), v);
    const setup = { dir, ...C, shapes };
    const graphs = { 'ORT plain': encoderLayerModel(w, C, 'f32'), 'ORT Attention': encoderLayerModel(w, C, 'f32Attention') };
    const refs = { post: await reference(layers.post.f32, x.f32, dy.f32), pre: await reference(layers.pre.f32, x.f32, dy.f32) };
    const { checks, torch: torch0 } = await checkAll({ layers, x, dy, graphs, xv, setup, dir }, refs);

    const commit = gitCommit();
    const info = { seqfuse: commit, isa: sf.getIsa().active, onnxruntime: ort.env.versions.node, cpuBf16: bf16Hw, loadBefore: loadavg()[0],
      torch: torch0.missing ? null : { ...torch0.procs[0].info, fastPath: torch0.procs[0].setup.fastPath } };
    const torchLine = torch0.missing ? `PyTorch: skipped (${torch0.missing}; install python3-torch, or set BENCH_PYTHON)`
      : `PyTorch ${info.torch.torch} (BLAS: ${info.torch.blas})`;
    console.log(`layers: seqfuse ${commit} (${info.isa}), onnxruntime-node ${info.onnxruntime}, ${torchLine}${quick ? ', --quick' : ''}`);
    const worst = (e) => Math.max(...Object.values(e));
    console.log(`checks, relative L2 against our f32 layer (outputs; for PyTorch also dx and every weight gradient): ${
      Object.entries(checks).map(([n, e]) => `${n} ${worst(e).toExponential(1)}`).join(', ')}`);
    const ok = (n) => Object.entries(checks[n]).every(([k, e]) => e <= (n.includes('bf16') ? BF16_TOL[k] : F32_TOL));
    const bad = new Set(Object.keys(checks).filter((n) => !ok(n)));
    for (const n of bad) console.log(`  MISMATCH ${n}: ${JSON.stringify(checks[n])} (not timed)`);
    if (checkOnly) return;

    const results = [];
    const rows = [];
    const targetRows = [];
    for (const threads of [2, 1]) {
      sf.setNumThreads(threads);
      const ortSet = await ortPeers(graphs, xv, [C.B, C.S, C.H], threads);
      const torch = torch0.missing ? torch0 : await torchProcs(threads, setup, ['PASSIVE', null]);
      const impls = Object.keys(TORCH_IMPLS).filter((i) => threads > 1 || i !== 'nn_pre');
      const pick = torch.missing ? null : await pickTorch(torch.procs, threads, impls, quick);
      // the peak is what the cores can do, and a neighbour's load only takes from it: the best of
      // measurements before and after each pass (one taken while the host is busy reads low), each
      // after a pause, so that no peer's worker threads still spin
      const peakNow = async () => (await sleep(IDLE_MS), f32Peak(threads));
      const peaks = [await peakNow()];
      const measured = [];
      for (const pass of Object.keys(PASSES)) {
        const peers = [seqfusePeer('seqfuse f32', layers.post.f32, x.f32, dy.f32, pass), seqfusePeer('seqfuse bf16', layers.post.bf16, x.bf16, dy.bf16, pass)];
        if (pass === 'fwd') peers.push(...ortSet.peers);
        if (threads === 2) {
          peers.push(seqfusePeer('seqfuse f32 pre-LN', layers.pre.f32, x.f32, dy.f32, pass),
            seqfusePeer('seqfuse bf16 pre-LN', layers.pre.bf16, x.bf16, dy.bf16, pass));
        }
        if (pick) peers.push(...impls.map((impl) => torchPeer(pick.best[`${impl} ${pass}`])));
        const timed = peers.filter((p) => !bad.has(p.name));
        const m = await measure(timed, { quick, targetMs: quick ? 100 : 250, idleMs: IDLE_MS, rounds: quick ? 3 : threads === 2 ? 7 : 5 });
        peaks.push(await peakNow());
        measured.push([pass, timed, m]);
      }
      const peak = Math.max(...peaks);
      for (const [pass, timed, m] of measured) {
        for (const p of timed) {
          const pre = p.name.includes('pre-LN');
          const base = m[pre ? 'seqfuse f32 pre-LN' : 'seqfuse f32'];
          const gflops = FLOPS[pass] / m[p.name].ns.median;
          const t = pick && Object.values(pick.best).find((b) => b.pass === pass && TORCH_IMPLS[b.impl] === p.name);
          rows.push({ threads, pass: PASSES[pass], layer: pre ? 'pre-LN' : 'post-LN', peer: p.name.replace(' pre-LN', ''),
            'ms median (min-max)': fmtMs(m[p.name].ns), 'peer/seqfuse f32': fmtRatio(roundRatio(m[p.name], base)),
            'GFLOP/s': fmt(gflops), 'MFU %': fmt((100 * gflops) / peak), setting: t ? `${t.policy}, torch threads ${t.threads}` : '' });
        }
        for (const tg of TARGETS.filter((tg) => tg.pass === pass)) {
          const peer = tg.peer === 'ort' ? fastest(m, ['ORT plain', 'ORT Attention']) : tg.peer === 'torch' ? fastest(m, ['torch nn', 'torch hand']) : tg.peer;
          const r = peer && m[peer] && m[tg.base] ? roundRatio(m[peer], m[tg.base]) : null;
          const mfu = m[tg.base] ? (100 * FLOPS[pass]) / m[tg.base].ns.median / peak : NaN;
          targetRows.push({ threads, target: tg.what, peer: peer ?? '-', speedup: fmtRatio(r), want: `>= ${tg.min}x`,
            met: r ? (r.median >= tg.min ? 'yes' : 'no') : '-', MFU: tg.mfu ? `${fmt(mfu, 0)}% (want >= ${tg.mfu}%)` : '' });
        }
        results.push({ threads, pass, flops: FLOPS[pass], peakGFlops: peak, peakSamples: peaks, peers: m });
      }
      if (pick) results.push({ threads, torchSearch: pick.tried });
      await ortSet.release();
      torch.stop?.();
    }
    printTable(`BERT-base encoder layer (hidden 768, 12 heads, FFN 3072, GELU), B8 S128: ms median (min-max) of all calls;
peer/seqfuse f32 = peer ms / seqfuse f32 ms of the same layer (post- or pre-LN), median of the per-round ratios (min-max)`,
    ['threads', 'pass', 'layer', 'peer', 'ms median (min-max)', 'peer/seqfuse f32', 'GFLOP/s', 'MFU %', 'setting'], rows);
    printTable('targets (printed, not enforced): speedup = peer ms / base ms, median of the per-round ratios',
      ['threads', 'target', 'peer', 'speedup', 'want', 'met', 'MFU'], targetRows);
    const peaks = results.filter((r) => r.peakGFlops).map((r) => `${fmt(r.peakGFlops)} GFLOP/s at ${r.threads} thread${r.threads > 1 ? 's' : ''}`);
    const overPeak = rows.some((r) => Number(r['MFU %']) > 100);
    console.log(`
model FLOPs: forward 2*T*(4H^2 + 2HF) + 4*B*S^2*H = ${fmt(FWD_FLOPS / 1e9, 2)} GFLOP (T = B*S); fwd+bwd 3x forward.
MFU = model FLOPs / median time / this machine's f32 FMA peak (bench/native fmaPeak, fastest of 15 calls, best of
the measurements before and after each pass: ${[...new Set(peaks)].join(', ')})${overPeak
    ? ' -- an MFU above 100% means the host was busy during every peak measurement: read the MFU with care' : ''}. The bf16 rows use the same f32 peak: ${bf16Hw.length
    ? `this CPU has ${bf16Hw.join(', ')}, so their MFU understates the bf16 headroom.`
    : 'this CPU has no avx512_bf16 / amx_bf16 (checked in /proc/cpuinfo), so bf16 is stored in 16 bits and computed in f32.'}
seqfuse: TransformerEncoderLayer (eval, no dropout), forward = await layer.forward(x); fwd+bwd adds
await layer.backward(dy) (weight gradients accumulate, as PyTorch's .grad do).
ORT plain: MatMul/Add/Reshape/Transpose/Gather/Softmax/LayerNormalization graph with erf GELU; ORT Attention: the
same with com.microsoft Attention for the self-attention; intraOpNumThreads = threads, all graph optimizations.
torch nn: nn.TransformerEncoderLayer(768, 12, 3072, dropout=0, activation='gelu', batch_first=True), eval;
forward under no_grad (fused fast path used: ${info.torch ? JSON.stringify(info.torch.fastPath) : '-'}), fwd+bwd with autograd.
torch hand: the post-LN layer as addmm / matmul / softmax / layer_norm / gelu. PyTorch runs f32 only (${torchLine}).
PyTorch setting (column 'setting'): the fastest per row of OMP_WAIT_POLICY {PASSIVE, default} x torch.set_num_threads
{threads, 1}, with OMP_NUM_THREADS and OPENBLAS_NUM_THREADS at the thread count (every candidate's fastest call in the JSON).`);
    info.loadAfter = loadavg()[0];
    console.log(`1-minute load average before / after the run: ${fmt(info.loadBefore, 2)} / ${fmt(info.loadAfter, 2)} (this run's own
threads count; well above the thread count means other work shared the cores and the figures are low).`);
    const file = writeResults('layers', { info, quick, config: C, checks, results });
    console.log(`\nresults: ${file}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const t of [x.f32, x.bf16, dy.f32, dy.bf16]) t.dispose();
    for (const ln of Object.values(layers)) for (const l of Object.values(ln)) l.dispose();
  }
}

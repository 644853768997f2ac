// Bench suite `dtypes`: throughput of f32, f16, bf16 and int8 in one run, on three workloads:
//   gemm   y = x·wᵀ at M ∈ {1, 8, 128, 1024} × (N, K) ∈ {(768, 768), (3072, 768), (768, 3072)}:
//          f32/f16/bf16 through `linear` (no bias, weights cached), int8 through gemmInt8 (s8·s8 -> s32);
//   layer  a BERT-base encoder layer (hidden 768, 12 heads, FFN 3072, GELU, post-LN), B8 S128,
//          forward, as TransformerEncoderLayer per dtype, beside onnxruntime-node's f32 graphs and its
//          dynamically quantized int8 graphs of the same layer (bench/encoder-onnx.mjs);
//   lm     TransformerLM of examples/train-lm (vocab 256, hidden 192, 4 layers, 4 heads, FFN 768):
//          prefill B16 S128, and batch-1 next-token latency after a 128-token prefix.
// Each row: ms median (min-max), tokens/s, G(FL)OP/s (GOP/s for int8), speed-up over f32 (median of
// per-round ratios against f32 measured in the same rounds) and % of the measured peak of the unit
// the dtype computes on (bench/native: f32 FMA, int8 dot, bf16 dot where the CPU has one).
// A dtype is one entry of GEMM_DTYPES / MODEL_DTYPES. Writes JSON and an SVG chart under bench/results/.
// Flags: --quick (fewer shapes and rounds), --threads N[,N...] (default 2), --device cuda (the same
// workloads on device 'cuda': every timed call waits for the GPU; no onnxruntime peers and no CPU
// peaks there; needs the CUDA-enabled addon, npm run build:cuda).
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import ort from 'onnxruntime-node';
import sf from '../dist/index.js';
import { chartSpec, renderSvg } from './chart.mjs';
import { encoderLayerModel, ortPeers } from './encoder-onnx.mjs';
import { bf16Peak, cpuFlags, f32Peak, fmt, fmtMs, fmtRatio, gitCommit, int8Peak, measure, printTable, relL2, roundRatio, timeAsync, timeSync,
  writeResults } from './harness.mjs';
import { benchParameters } from './layers.mjs';

const { Tensor, TransformerEncoderLayer, TransformerLM, toTorchTransformerLayer } = sf;

const GEMM = { M: [1, 8, 128, 1024], NK: [[768, 768], [3072, 768], [768, 3072]] };
const GEMM_QUICK = { M: [1, 1024], NK: [[768, 768], [3072, 768]] };
const LAYER = { B: 8, S: 128, H: 768, heads: 12, F: 3072, eps: 1e-5 };
const LM = { vocabSize: 256, hiddenSize: 192, numLayers: 4, numHeads: 4, ffnSize: 768, maxSeqLen: 128 };
const LM_BATCH = { B: 16, S: 128 };
// a pause before each turn, so that peers' idle worker threads (onnxruntime's pool) have gone to sleep
const IDLE_MS = 150;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// outputs checked against our f32 ones before timing (relative L2): f32 peers, 16-bit storage (the
// layer tests' bound; the 4-layer LM's logits get 3x it) and int8 (onnxruntime's dynamic
// quantization lands near 1e-2 on this layer)
const TOL = { f32: 1e-4, f16: 1e-2, bf16: 1e-2, int8: 5e-2, lm16: 3e-2 };

/**
 * Our int8 inference version of an f32 layer or model: post-training quantization (enableQuant
 * with `weightBits`, max calibration by `calibrate(module)` on the bench's own input, exportInt8);
 * the f32 module is left float again (disableQuant).
 */
export async function int8Layer(f32, weightBits, calibrate) {
  f32.enableQuant({ weightBits });
  try {
    await calibrate(f32);
    return { module: sf.exportInt8(f32), input: 'f32' };
  } finally {
    f32.disableQuant();
  }
}

// --- the dtypes ----------------------------------------------------------------------------------

/** The device of this run (--device), and a call made synchronous on it (a CUDA op only queues work). */
let device = 'cpu';
const synced = (fn) => (device === 'cpu' ? fn : () => {
  fn();
  sf.cudaSynchronize();
});

/** A `linear` (no bias, weights cached) or gemmInt8 case: { run() } or { unavailable }. */
function floatGemm(dtype) {
  return (M, N, K) => {
    const x = Tensor.randn([M, K], { seed: 11, dtype, device });
    const w = Tensor.randn([N, K], { seed: 12, std: 0.05, dtype, device });
    const out = Tensor.empty([M, N], { dtype, device });
    return { run: synced(() => sf.linear(x, w, null, { out })), dispose: () => [x, w, out].forEach((t) => t.dispose()) };
  };
}

function int8Gemm(M, N, K) {
  if (typeof sf.gemmInt8 !== 'function') return { unavailable: 'n/a (gemmInt8 not in this build)' };
  const q = (shape, seed) => {
    const f = Tensor.randn(shape, { seed, device });
    const t = sf.quantize(f, 3);
    f.dispose();
    return t;
  };
  const a = q([M, K], 21);
  const b = q([N, K], 22);
  const out = Tensor.empty([M, N], { dtype: 'i32', device });
  return { run: synced(() => sf.gemmInt8(a, b, { out })), dispose: () => [a, b, out].forEach((t) => t.dispose()) };
}

// unit: the peak a dtype's products run on (f16 is converted to f32 before the product on CPUs
// without AVX512-FP16; bf16 runs on vdpbf16ps where the CPU has avx512_bf16, else in f32)
const GEMM_DTYPES = [
  { name: 'f32', unit: 'f32', make: floatGemm('f32') },
  { name: 'f16', unit: 'f32', make: floatGemm('f16') },
  { name: 'bf16', unit: 'bf16', make: floatGemm('bf16') },
  { name: 'int8', unit: 'int8', make: int8Gemm },
];

/**
 * The f32 module converted: a new layer or model of `dtype` with the f32 one's parameters, or
 * { unavailable } where seqfuse rejects the dtype for it (a SeqfuseError).
 */
function converted(make, dtype) {
  return (f32) => {
    let m;
    try {
      m = make(dtype);
    } catch (e) {
      if (e instanceof sf.SeqfuseError) return { unavailable: `unsupported (${e.code})` };
      throw e;
    }
    m.loadParameters(f32.parameters());
    return { module: m, input: dtype };
  };
}

/**
 * Layer and LM dtypes: make(f32 module) -> { module, input dtype } or { unavailable } (or a promise
 * of it). int8: 8-bit weights (the default), and 7-bit ones, which skip the split product on CPUs
 * without VNNI (docs/api.md, Products).
 */
function modelDtypes(make, calibrate) {
  return [
    { name: 'f32', unit: 'f32', make: (f32) => ({ module: f32, input: 'f32' }) },
    { name: 'f16', unit: 'f32', make: converted(make, 'f16') },
    { name: 'bf16', unit: 'bf16', make: converted(make, 'bf16') },
    { name: 'int8', unit: 'int8', make: (f32) => int8Layer(f32, 8, calibrate) },
    { name: 'int8 w7', unit: 'int8', make: (f32) => int8Layer(f32, 7, calibrate) },
  ];
}

// --- FLOPs ---------------------------------------------------------------------------------------

// the layer: the four products of the hidden size, the two of the FFN, and QK^T and PV
const LAYER_FLOPS = 2 * LAYER.B * LAYER.S * (4 * LAYER.H ** 2 + 2 * LAYER.H * LAYER.F) + 4 * LAYER.B * LAYER.S ** 2 * LAYER.H;

/** The LM forward on B sequences of S tokens: per token the layers' products and the tied head; causal attention half of QK^T and PV. */
function lmFlops(B, S) {
  const { hiddenSize: H, ffnSize: F, numLayers: L, vocabSize: V } = LM;
  return B * S * (L * 2 * (4 * H * H + 2 * H * F) + 2 * H * V) + L * 2 * B * S * S * H;
}

// --- measuring -----------------------------------------------------------------------------------

/** Peaks by unit (GFLOP/s or GOP/s), the best of `samples` (each the fastest of 15 calls). */
function peaks(threads, samples) {
  const int8 = int8Peak(threads);
  const bf16 = bf16Peak(threads);
  const p = { f32: f32Peak(threads), int8: int8.gops, bf16: bf16?.gops ?? null, isa: { int8: int8.isa, bf16: bf16?.isa ?? null } };
  if (samples) for (const k of ['f32', 'int8', 'bf16']) p[k] = p[k] === null ? null : Math.max(p[k], samples[k] ?? 0);
  return p;
}

/** The peak a row's unit is measured against: bf16 falls back to f32 where the CPU has no bf16 dot. */
const unitPeak = (pk, unit) => (unit === 'bf16' && pk.bf16 === null ? { unit: 'f32', peak: pk.f32 } : { unit, peak: pk[unit] });

/**
 * Rows of one measured case: every entry of `entries` ({ name, unit, unavailable?, flops, tokens? })
 * against the `base` peer's rounds; an entry not timed has its reason in the ms column. The % of
 * peak is filled in by withPeaks once the run's peaks are known.
 */
function rowsOf(m, entries, base, extra) {
  return entries.map((e) => {
    const r = m[e.name];
    if (!r) return { ...extra, 'dtype / peer': e.name, 'ms median (min-max)': e.unavailable ?? 'not timed (failed its check)', bar: null };
    const ns = r.ns.median;
    const speed = roundRatio(m[base], r);  // base ms / this ms
    const gops = e.flops / ns;
    return {
      ...extra, 'dtype / peer': e.name, 'ms median (min-max)': fmtMs(r.ns), 'tokens/s': e.tokens ? fmt((e.tokens * 1e9) / ns, 0) : '',
      'G(FL)OP/s': fmt(gops), 'speed-up vs f32': fmtRatio(speed), bar: { series: e.name, speedup: speed.median, gops, unit: e.unit },
    };
  });
}

/** Fills in each timed row's % of the peak of its unit (none on a GPU: its peaks are not measured here). */
function withPeaks(rows, pk) {
  for (const r of rows) {
    if (!r.bar || !pk) continue;
    const { unit, peak } = unitPeak(pk, r.bar.unit);
    r['% of peak'] = `${fmt((100 * r.bar.gops) / peak, 0)} (${unit})`;
  }
  return rows;
}

const peerOf = (name, fn) => ({ name, time: (reps) => timeAsync(fn, reps) });

async function gemmWorkload(shapes, quick) {
  const rows = [];
  for (const M of shapes.M) {
    for (const [N, K] of shapes.NK) {
      const cases = GEMM_DTYPES.map((d) => ({ ...d, ...d.make(M, N, K) }));
      const timed = cases.filter((c) => c.run);
      const m = await measure(timed.map((c) => ({ name: c.name, time: async (reps) => timeSync(c.run, { warmup: 0, reps }) })),
        { quick, idleMs: 0 });
      const flops = 2 * M * N * K;
      rows.push(...rowsOf(m, cases.map((c) => ({ ...c, flops })), 'f32', { workload: 'gemm', case: `${M}x${N}x${K}` }));
      for (const c of timed) c.dispose();
    }
  }
  return rows;
}

/** Our entries of a layer or LM workload: made, checked against f32 on `check`, and as bench peers. */
async function ourEntries(dtypes, f32, inputs, check, tol) {
  const ref = await check(f32, inputs.f32);
  const entries = [];
  const checks = {};
  for (const d of dtypes) {
    const made = await d.make(f32);
    if (made.unavailable) {
      entries.push({ ...d, unavailable: made.unavailable });
      continue;
    }
    const x = inputs[made.input];
    if (made.module !== f32) checks[d.name] = relL2(await check(made.module, x), ref);
    entries.push({ ...d, module: made.module, x, ok: !(checks[d.name] > tol(d.name)) });
  }
  return { ref, entries, checks };
}

async function layerWorkload(threads, quick, state) {
  const { entries, ortGraphs, xv } = state;
  const ortSet = ortGraphs ? await ortPeers(ortGraphs, xv, [LAYER.B, LAYER.S, LAYER.H], threads) : { peers: [], release: async () => {} };
  const ortEntries = ortSet.peers.map((p) => ({ name: p.name, unit: p.name.includes('int8') ? 'int8' : 'f32', peer: p, ok: state.ortOk[p.name] }));
  const all = [...entries, ...ortEntries];
  const peers = all.filter((e) => e.ok && (e.module || e.peer)).map((e) => e.peer ?? peerOf(e.name, async () => (await e.module.forward(e.x)).dispose()));
  const m = await measure(peers, { quick, targetMs: quick ? 100 : 250, idleMs: IDLE_MS, rounds: quick ? 3 : 7 });
  await ortSet.release();
  const T = LAYER.B * LAYER.S;
  return rowsOf(m, all.map((e) => ({ ...e, flops: LAYER_FLOPS, tokens: T, unavailable: e.unavailable ?? (e.ok ? undefined : 'not timed (failed its check)') })),
    'f32', { workload: 'layer', case: `B${LAYER.B} S${LAYER.S} forward` });
}

async function lmWorkload(quick, state) {
  const rows = [];
  for (const [label, ids, B, S] of [[`prefill B${LM_BATCH.B} S${LM_BATCH.S}`, state.ids, LM_BATCH.B, LM_BATCH.S], [`next token B1 (prefix ${LM_BATCH.S})`, state.ids1, 1, LM_BATCH.S]]) {
    const peers = state.entries.filter((e) => e.module && e.ok).map((e) => peerOf(e.name, async () => (await e.module.forward(ids)).dispose()));
    const m = await measure(peers, { quick, targetMs: quick ? 60 : 150, idleMs: 0, rounds: quick ? 3 : 7 });
    rows.push(...rowsOf(m, state.entries.map((e) => ({ ...e, flops: lmFlops(B, S), tokens: B === 1 ? 1 : B * S,
      unavailable: e.unavailable ?? (e.ok ? undefined : 'not timed (failed its check)') })), 'f32', { workload: 'lm', case: label }));
  }
  return rows;
}

// --- setup ---------------------------------------------------------------------------------------

/** module.forward(input) as f32 values. */
async function outputF32(module, input) {
  const y = await module.forward(input);
  const a = y.to('f32');
  const v = a.toArray();
  y.dispose();
  a.dispose();
  return v;
}

async function layerState() {
  const make = (dtype) => new TransformerEncoderLayer({ hiddenSize: LAYER.H, numHeads: LAYER.heads, ffnSize: LAYER.F, activation: 'gelu',
    preLayerNorm: false, layerNormEps: LAYER.eps, dtype, device, seed: 1 });
  const f32 = make('f32');
  const params = benchParameters([...f32.parameters()].map(([n, t]) => [n, t.shape]));
  f32.loadParameters(params);
  const state = toTorchTransformerLayer(params, 'encoder');
  const w = Object.fromEntries([...state].map(([n, t]) => [n, t.toArray()]));
  for (const t of [...params.values(), ...state.values()]) t.dispose();
  const x = Tensor.randn([LAYER.B, LAYER.S, LAYER.H], { seed: 1, device });
  const inputs = { f32: x, f16: x.to('f16'), bf16: x.to('bf16') };
  const calibrate = async (m) => (await m.forward(x, { calibrate: true })).dispose();
  const ours = await ourEntries(modelDtypes(make, calibrate), f32, inputs, outputF32, (n) => TOL[n.startsWith('int8') ? 'int8' : n]);
  const dispose = () => {
    for (const e of ours.entries) if (e.module && e.module !== f32) e.module.dispose();
    f32.dispose();
    for (const t of new Set(Object.values(inputs))) t.dispose();
  };
  // onnxruntime-node runs on the CPU: a peer of the CPU rows only
  if (device !== 'cpu') return { entries: ours.entries, checks: ours.checks, ortGraphs: null, ortOk: {}, xv: null, dispose };
  const xv = x.toArray();
  const names = { 'ORT f32': 'f32', 'ORT f32 Attention': 'f32Attention', 'ORT int8 MatMulInteger': 'int8MatMulInteger',
    'ORT int8 DynamicQuantizeMatMul': 'int8DynamicQuantizeMatMul', 'ORT int8 QAttention': 'int8QAttention' };
  const ortGraphs = Object.fromEntries(Object.entries(names).map(([n, v]) => [n, encoderLayerModel(w, LAYER, v)]));
  // onnxruntime's outputs against our f32 layer, before timing
  const checks = { ...ours.checks };
  const ortOk = {};
  const set = await ortPeers(ortGraphs, xv, [LAYER.B, LAYER.S, LAYER.H], 2);
  for (const p of set.peers) {
    checks[p.name] = relL2(await p.output(), ours.ref);
    ortOk[p.name] = checks[p.name] <= (p.name.includes('int8') ? TOL.int8 : TOL.f32);
  }
  await set.release();
  return { entries: ours.entries, checks, ortGraphs, ortOk, xv, dispose };
}

async function lmState() {
  const make = (dtype) => new TransformerLM({ ...LM, dtype, device, seed: 1 });
  const f32 = make('f32');
  const tokens = (n, seed) => {
    let s = seed;
    return Int32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) % LM.vocabSize);
  };
  const ids = Tensor.from(tokens(LM_BATCH.B * LM_BATCH.S, 5), [LM_BATCH.B, LM_BATCH.S], { dtype: 'i32', device });
  const ids1 = Tensor.from(tokens(LM_BATCH.S, 6), [1, LM_BATCH.S], { dtype: 'i32', device });
  const inputs = { f32: ids, f16: ids, bf16: ids };
  // checked on the batch-1 logits: the smaller forward
  const calibrate = (m) => m.calibrate(async () => (await m.forward(ids)).dispose());
  const ours = await ourEntries(modelDtypes(make, calibrate), f32, inputs, (m) => outputF32(m, ids1), (n) => (n.startsWith('int8') ? TOL.int8 : TOL.lm16));
  return { entries: ours.entries, checks: ours.checks, ids, ids1, dispose: () => {
    for (const e of ours.entries) if (e.module && e.module !== f32) e.module.dispose();
    f32.dispose();
    ids.dispose();
    ids1.dispose();
  } };
}

/** --threads N[,N...] (default [2]). */
function threadsArg(args) {
  const i = args.findIndex((a) => a === '--threads' || a.startsWith('--threads='));
  if (i < 0) return [2];
  const v = args[i].includes('=') ? args[i].split('=')[1] : args[i + 1];
  const list = String(v ?? '').split(',').map(Number);
  if (!list.length || list.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(`dtypes: expected --threads N[,N...] with integers >= 1 but received '${v}'`);
    process.exit(2);
  }
  return list;
}

/** The chart's bars from the table rows. */
function bars(rows) {
  const workload = { gemm: 'GEMM y = x·wᵀ (MxNxK)', layer: 'BERT-base encoder layer', lm: 'TransformerLM forward' };
  return rows.filter((r) => r.bar).map((r) => ({ workload: `${workload[r.workload]}${r.threads ? `, ${r.threads} thr` : ''}`, case: r.case, ...r.bar }));
}

/** --device cpu|cuda (default cpu); cuda must be available. */
function deviceArg(args) {
  const i = args.findIndex((a) => a === '--device' || a.startsWith('--device='));
  if (i < 0) return 'cpu';
  const v = args[i].includes('=') ? args[i].split('=')[1] : args[i + 1];
  if (v !== 'cpu' && v !== 'cuda') {
    console.error(`dtypes: expected --device cpu or cuda but received '${v}'`);
    process.exit(2);
  }
  const s = sf.cudaStatus();
  if (v === 'cuda' && !s.available) {
    console.error(`dtypes: device 'cuda' is not available: ${s.reason}`);
    process.exit(2);
  }
  return v;
}

export async function run(args) {
  const quick = args.includes('--quick');
  device = deviceArg(args);
  // on a GPU the CPU threads only launch work: one pass
  const threadList = device === 'cpu' ? threadsArg(args) : [threadsArg(args)[0]];
  const flags = cpuFlags();
  const commit = gitCommit();
  const info = { seqfuse: commit, device, gpu: device === 'cpu' ? null : sf.cudaStatus().device, isa: sf.getIsa().active,
    onnxruntime: ort.env.versions.node, loadBefore: loadavg()[0],
    cpuUnits: flags.filter((f) => /vnni|bf16|fp16|amx/.test(f)), gemmInt8: typeof sf.gemmInt8 === 'function' };
  console.log(`dtypes: seqfuse ${commit} (${info.isa}), onnxruntime-node ${info.onnxruntime}, threads ${threadList.join(', ')}${quick ? ', --quick' : ''}` +
    (info.gpu ? `, device cuda: ${info.gpu}` : ''));
  sf.setNumThreads(2);
  const layer = await layerState();
  const lm = await lmState();
  const checks = { layer: layer.checks, lm: lm.checks };
  const fmtChecks = (c) => Object.entries(c).map(([n, e]) => `${n} ${e.toExponential(1)}`).join(', ');
  console.log(`checks, relative L2 against our f32 output: layer: ${fmtChecks(layer.checks)}; LM logits: ${fmtChecks(lm.checks)}`);
  const rows = [];
  const results = [];
  try {
    for (const threads of threadList) {
      sf.setNumThreads(threads);
      const before = device === 'cpu' ? peaks(threads) : null;
      const part = [];
      part.push(...await gemmWorkload(quick ? GEMM_QUICK : GEMM, quick));
      await sleep(IDLE_MS);
      part.push(...await layerWorkload(threads, quick, layer));
      part.push(...await lmWorkload(quick, lm));
      await sleep(IDLE_MS);
      // the peak is what the cores can do, and a neighbour's load only takes from it: the best of the
      // measurements before and after the workloads
      const pk = device === 'cpu' ? peaks(threads, before) : null;
      withPeaks(part, pk);
      rows.push(...part.map((r) => ({ threads, ...r })));
      results.push({ threads, peaks: pk, rows: part });
    }
  } finally {
    layer.dispose();
    lm.dispose();
  }
  const columns = ['threads', 'case', 'dtype / peer', 'ms median (min-max)', 'tokens/s', 'G(FL)OP/s', 'speed-up vs f32', '% of peak'];
  printTable('GEMM y = x·wᵀ: f32/f16/bf16 through linear (no bias, weights cached), int8 through gemmInt8 (s8·s8 -> s32)',
    columns.filter((c) => c !== 'tokens/s'), rows.filter((r) => r.workload === 'gemm'));
  printTable(`encoder layer (hidden ${LAYER.H}, ${LAYER.heads} heads, FFN ${LAYER.F}, GELU, post-LN), B${LAYER.B} S${LAYER.S}, forward`, columns,
    rows.filter((r) => r.workload === 'layer'));
  printTable(`TransformerLM (vocab ${LM.vocabSize}, hidden ${LM.hiddenSize}, ${LM.numLayers} layers, ${LM.numHeads} heads, FFN ${LM.ffnSize}) forward`, columns,
    rows.filter((r) => r.workload === 'lm'));
  const speed = (threads, wl, name, base) => {
    const part = results.find((r) => r.threads === threads).rows.filter((r) => r.workload === wl);
    const a = part.find((r) => r['dtype / peer'] === name)?.bar;
    const b = part.find((r) => r['dtype / peer'] === base)?.bar;
    return a && b ? a.speedup / b.speedup : null;
  };
  const targets = [];
  for (const threads of threadList) {
    const ortInt8 = results.find((r) => r.threads === threads).rows
      .filter((r) => r.workload === 'layer' && r.bar && r['dtype / peer'].startsWith('ORT int8')).sort((a, b) => b.bar.speedup - a.bar.speedup)[0];
    for (const q of ['int8', 'int8 w7']) {
      for (const [what, v, min] of [
        [`${q} encoder layer forward vs our f32`, speed(threads, 'layer', q, 'f32'), 3],
        [`${q} encoder layer forward vs ${ortInt8?.['dtype / peer'] ?? 'ORT int8'} (fastest ORT int8)`, ortInt8 ? speed(threads, 'layer', q, ortInt8['dtype / peer']) : null, 1.3],
        [`${q} TransformerLM next-token latency vs our f32`, (() => {
          const part = results.find((r) => r.threads === threads).rows.filter((r) => r.workload === 'lm' && r.case.startsWith('next'));
          return part.find((r) => r['dtype / peer'] === q)?.bar?.speedup ?? null;
        })(), 3],
      ]) targets.push({ threads, target: what, speedup: v === null ? 'n/a (row not available)' : fmt(v, 2), want: `>= ${min}x`, met: v === null ? '-' : v >= min ? 'yes' : 'no' });
    }
  }
  printTable(`issue 5 speed targets (printed, not enforced): against our f32, the int8 row's speed-up; against onnxruntime, the
quotient of the two rows' speed-ups over f32`, ['threads', 'target', 'speedup', 'want', 'met'], targets);
  const pkLine = device !== 'cpu' ? `not measured on ${sf.cudaStatus().device} (--device ${device})`
    : results.map(({ threads, peaks: p }) => `${threads} thr: f32 ${fmt(p.f32)} GFLOP/s, int8 ${fmt(p.int8)} GOP/s (${p.isa.int8})${
      p.bf16 ? `, bf16 ${fmt(p.bf16)} GFLOP/s (${p.isa.bf16})` : ', no bf16 dot unit (bf16 rows use the f32 peak)'}`).join('; ');
  info.loadAfter = loadavg()[0];
  console.log(`
speed-up vs f32 = f32 ms / row ms of the same case, median of the per-round ratios (min-max); every figure is a median of
repeated calls after warm-up, all peers of a case timed in alternating rounds. % of peak: model FLOPs (ops for int8) / median
time / the measured peak of the unit the row computes on (bench/native, fastest of 15 calls, best of before and after):
${pkLine}. f16 rows use the f32 peak (f16 is converted to f32 before the product).
layer FLOPs ${fmt(LAYER_FLOPS / 1e9, 2)} G: 2T(4H^2 + 2HF) + 4BS^2H; LM FLOPs: per token 2L(4H^2 + 2HF) + 2HV, plus 2LBS^2H (causal).
ORT rows: onnxruntime-node graphs of the same layer and weights, intraOpNumThreads = threads, all graph optimizations; int8 graphs
as onnxruntime's dynamic quantizer makes them (per-tensor symmetric s8 weights, u8 activations quantized per call):
MatMulInteger = DynamicQuantizeLinear + MatMulInteger + Cast + Mul (attention products in f32), DynamicQuantizeMatMul = the
com.microsoft contrib op (+ f32 Attention op), QAttention = com.microsoft QAttention + DynamicQuantizeMatMul.
next token: TransformerLM has no KV cache (generate recomputes the context), so a batch-1 next token is a forward of the whole
${LM_BATCH.S}-token prefix; tokens/s there is 1 / latency.
1-minute load average before / after: ${fmt(info.loadBefore, 2)} / ${fmt(info.loadAfter, 2)} (above the thread count: other work shared the cores).`);
  const file = writeResults('dtypes', { info, quick, config: { gemm: quick ? GEMM_QUICK : GEMM, layer: LAYER, lm: { ...LM, ...LM_BATCH } }, checks,
    results: results.map((r) => ({ ...r, rows: r.rows.map(({ bar, ...row }) => ({ ...row, speedup: bar?.speedup ?? null, gops: bar?.gops ?? null })) })) });
  const svg = file.replace(/\.json$/, '.svg');
  writeFileSync(svg, await renderSvg(chartSpec(bars(rows.map((r) => (threadList.length > 1 ? r : { ...r, threads: undefined }))),
    `seqfuse ${commit}: dtypes, ${threadList.join(' and ')} thread(s)${quick ? ' (--quick)' : ''}`)));
  console.log(`\nresults: ${file}\nchart: ${svg}`);
}

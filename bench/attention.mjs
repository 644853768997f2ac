// Bench suite `attention`: seqfuse fusedAttention (f32) beside the peers a Node user would pick,
// measured in the same run: onnxruntime-node on ONNX graphs built here (bench/onnx.mjs), PyTorch
// CPU through bench/attention_torch.py (when the system python3 has torch), and a naive JS loop.
// Prefill B8 H12 D64 at S = 128, 512, 2048, causal and not; decode B1 H32 Hkv8 D128 Sq1 at
// Sk = 512, 4096, 32768; 1 and 2 threads. Peers take turns in rounds, so slow phases of the shared
// host hit all of them; every peer writes into preallocated outputs; a ratio is the median of the
// per-round ratios. `--quick`: fewer rounds.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import sf from '../dist/index.js';
import { f32Peak, fmt, fmtMs as ms, fmtRatio as ratio, gitCommit, measure, printTable, startPython, timeAsync, writeResults } from './harness.mjs';
import helper from './native/index.cjs';
import { FLOAT, INT32, INT64, initializer, model, node, valueInfo } from './onnx.mjs';

const { Tensor } = sf;
const here = dirname(fileURLToPath(import.meta.url));
const MiB = 1 << 20;

const CASES = [
  ...[128, 512, 2048].flatMap((S) => [false, true].map((causal) => ({ kind: 'prefill', B: 8, H: 12, Hkv: 12, Sq: S, Sk: S, D: 64, causal }))),
  ...[512, 4096, 32768].map((Sk) => ({ kind: 'decode', B: 1, H: 32, Hkv: 8, Sq: 1, Sk, D: 128, causal: false })),
];

/** Deterministic f32 values in [-0.5, 0.5): a Weyl sequence, which attention_torch.py reproduces bit for bit. */
function values(n, seed) {
  const a = new Float32Array(n);
  const off = Math.imul(seed, 40503);
  for (let i = 0; i < n; i++) a[i] = ((Math.imul(i, 2654435761) + off) >>> 0) / 4294967296 - 0.5;
  return a;
}

// --- ONNX graphs -------------------------------------------------------------------------------

const ORT_OPTIONS = { interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 };

/** Additive bottom-right causal mask for the rows of a query group: row r is query r % Sq. */
function causalMask(rows, Sq, Sk) {
  const m = new Float32Array(rows * Sk);
  for (let r = 0; r < rows; r++) m.fill(-Infinity, r * Sk + (r % Sq) + Sk - Sq + 1, (r + 1) * Sk);
  return m;
}

const i64 = (dims) => BigInt64Array.from(dims, BigInt);

/**
 * Transpose(k) -> MatMul -> Mul(scale) -> [Add(causal mask)] -> Softmax -> MatMul on q [B,H,Sq,D],
 * k, v [B,Hkv,Sk,D]; with GQA the query heads of one key/value head are reshaped into rows.
 */
function plainModel(c) {
  const g = c.H / c.Hkv;
  const rows = g * c.Sq;
  const inits = [initializer('scale', FLOAT, [], Float32Array.of(c.scale))];
  const nodes = [];
  let qName = 'q';
  if (g > 1) {
    inits.push(initializer('gshape', INT64, [4], i64([c.B, c.Hkv, rows, c.D])), initializer('oshape', INT64, [4], i64([c.B, c.H, c.Sq, c.D])));
    nodes.push(node('Reshape', ['q', 'gshape'], ['qg']));
    qName = 'qg';
  }
  nodes.push(node('Transpose', ['k'], ['kt'], { perm: [0, 1, 3, 2] }), node('MatMul', [qName, 'kt'], ['s']), node('Mul', ['s', 'scale'], ['ss']));
  let scores = 'ss';
  if (c.causal) {
    inits.push(initializer('mask', FLOAT, [rows, c.Sk], causalMask(rows, c.Sq, c.Sk)));
    nodes.push(node('Add', ['ss', 'mask'], ['sm']));
    scores = 'sm';
  }
  nodes.push(node('Softmax', [scores], ['p'], { axis: { int: -1 } }), node('MatMul', ['p', 'v'], [g > 1 ? 'og' : 'out']));
  if (g > 1) nodes.push(node('Reshape', ['og', 'oshape'], ['out']));
  const qd = [c.B, c.H, c.Sq, c.D];
  const kd = [c.B, c.Hkv, c.Sk, c.D];
  return model({ nodes, initializers: inits, opsets: { '': 17 },
    inputs: [valueInfo('q', FLOAT, qd), valueInfo('k', FLOAT, kd), valueInfo('v', FLOAT, kd)], outputs: [valueInfo('out', FLOAT, qd)] });
}

/** com.microsoft MultiHeadAttention: q and out [B,Sq,H*D] (its layout), k and v [B,H,Sk,D] (it takes BNSH). */
function mhaModel(c) {
  const q3 = [c.B, c.Sq, c.H * c.D];
  const kd = [c.B, c.H, c.Sk, c.D];
  const attrs = { num_heads: { int: c.H }, scale: { float: c.scale }, unidirectional: { int: c.causal ? 1 : 0 } };
  return model({ nodes: [node('MultiHeadAttention', ['q', 'k', 'v'], ['out'], attrs, 'com.microsoft')], opsets: { '': 17, 'com.microsoft': 1 },
    inputs: [valueInfo('q', FLOAT, q3), valueInfo('k', FLOAT, kd), valueInfo('v', FLOAT, kd)], outputs: [valueInfo('out', FLOAT, q3)] });
}

/**
 * com.microsoft GroupQueryAttention for one decode step: the new token's k/v [B,1,Hkv*D] plus a
 * past cache [B,Hkv,Sk-1,D] (BNSH); it writes present = past + new and attends over all Sk keys.
 */
function gqaModel(c) {
  const kvd = [c.B, 1, c.Hkv * c.D];
  const past = [c.B, c.Hkv, c.Sk - 1, c.D];
  const present = [c.B, c.Hkv, c.Sk, c.D];
  const attrs = { num_heads: { int: c.H }, kv_num_heads: { int: c.Hkv }, scale: { float: c.scale } };
  return model({
    nodes: [node('GroupQueryAttention', ['q', 'k', 'v', 'past_k', 'past_v', 'seqlens_k', 'total'], ['out', 'present_k', 'present_v'], attrs, 'com.microsoft')],
    opsets: { '': 17, 'com.microsoft': 1 },
    inputs: [valueInfo('q', FLOAT, [c.B, 1, c.H * c.D]), valueInfo('k', FLOAT, kvd), valueInfo('v', FLOAT, kvd), valueInfo('past_k', FLOAT, past),
      valueInfo('past_v', FLOAT, past), valueInfo('seqlens_k', INT32, [c.B]), valueInfo('total', INT32, [])],
    outputs: [valueInfo('out', FLOAT, [c.B, 1, c.H * c.D]), valueInfo('present_k', FLOAT, present), valueInfo('present_v', FLOAT, present)],
  });
}

// --- peers -------------------------------------------------------------------------------------
// A peer: { name, label, time(reps) -> Promise<ns[]>, output() -> Promise<output of K/V copy 0> }.
// output() is a Float32Array [B,H,Sq,D], a { heads, data } slice, or torch's { sum, sumsq }.

function seqfusePeer(c, data) {
  const q = Tensor.from(data.q, [c.B, c.H, c.Sq, c.D]);
  const kv = data.kv.map(([k, v]) => [Tensor.from(k, [c.B, c.Hkv, c.Sk, c.D]), Tensor.from(v, [c.B, c.Hkv, c.Sk, c.D])]);
  const out = Tensor.empty([c.B, c.H, c.Sq, c.D]);
  let calls = 0;
  const call = (i) => sf.fusedAttention(q, kv[i][0], kv[i][1], { causal: c.causal, scale: c.scale, out });
  return {
    name: 'seqfuse',
    time: async (reps) => timeAsync(() => call(calls++ % kv.length), reps),
    output: async () => (call(0), out.data.slice()),
  };
}

/** Runs `session` on rotating feeds into preallocated fetches; `read` maps the fetched output to [B,H,Sq,D]. */
function ortPeer(name, session, feeds, fetches, read) {
  let calls = 0;
  return {
    name,
    time: async (reps) => timeAsync(() => session.run(feeds[calls++ % feeds.length], fetches), reps),
    output: async () => (await session.run(feeds[0], fetches), read(fetches.out.data)),
  };
}

/** [B,S,N,D] <-> [B,N,S,D] (its own inverse with n and s swapped). */
function swap12(x, B, n, s, D) {
  const y = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < n; i++)
      for (let j = 0; j < s; j++) y.set(x.subarray(((b * n + i) * s + j) * D, ((b * n + i) * s + j + 1) * D), ((b * s + j) * n + i) * D);
  return y;
}

async function ortPeers(c, data, threads) {
  const opts = { ...ORT_OPTIONS, intraOpNumThreads: threads };
  const qd = [c.B, c.H, c.Sq, c.D];
  const kd = [c.B, c.Hkv, c.Sk, c.D];
  const t = (a, dims) => new ort.Tensor('float32', a, dims);
  const sessions = [];
  const open = async (bytes) => {
    const s = await ort.InferenceSession.create(bytes, opts);
    sessions.push(s);
    return s;
  };
  const peers = [ortPeer('ort plain', await open(data.plain), data.kv.map(([k, v]) => ({ q: t(data.q, qd), k: t(k, kd), v: t(v, kd) })),
    { out: t(new Float32Array(data.q.length), qd) }, (o) => o.slice())];
  if (c.kind === 'prefill') {
    const q3 = [c.B, c.Sq, c.H * c.D];
    const qs = swap12(data.q, c.B, c.H, c.Sq, c.D);
    peers.push(ortPeer('ort MHA', await open(data.mha), data.kv.map(([k, v]) => ({ q: t(qs, q3), k: t(k, kd), v: t(v, kd) })),
      { out: t(new Float32Array(qs.length), q3) }, (o) => swap12(o, c.B, c.Sq, c.H, c.D)));
  } else {
    // K/V copy i split into its past (first Sk-1 keys of each head) and the new token (the last key)
    const split = (x) => {
      const past = new Float32Array(c.B * c.Hkv * (c.Sk - 1) * c.D);
      const last = new Float32Array(c.B * c.Hkv * c.D);
      for (let h = 0; h < c.B * c.Hkv; h++) {
        past.set(x.subarray(h * c.Sk * c.D, (h * c.Sk + c.Sk - 1) * c.D), h * (c.Sk - 1) * c.D);
        last.set(x.subarray((h * c.Sk + c.Sk - 1) * c.D, (h + 1) * c.Sk * c.D), h * c.D);
      }
      return [past, last];
    };
    const kvd = [c.B, 1, c.Hkv * c.D];
    const past = [c.B, c.Hkv, c.Sk - 1, c.D];
    const feeds = data.kv.map(([k, v]) => {
      const [pk, nk] = split(k);
      const [pv, nv] = split(v);
      return { q: t(data.q, [c.B, 1, c.H * c.D]), k: t(nk, kvd), v: t(nv, kvd), past_k: t(pk, past), past_v: t(pv, past),
        seqlens_k: new ort.Tensor('int32', new Int32Array(c.B).fill(c.Sk - 1), [c.B]), total: new ort.Tensor('int32', Int32Array.of(c.Sk), []) };
    });
    // only `out` is fetched: copying the present cache back into JS would triple its time
    peers.push(ortPeer('ort GQA', await open(data.gqa), feeds, { out: t(new Float32Array(data.q.length), [c.B, 1, c.H * c.D]) }, (o) => o.slice()));
  }
  return { peers, release: () => Promise.all(sessions.map((s) => s.release())) };
}

/** The loop a user writes without a library, for query heads [h0, h1) of batch row 0 over key/value head kvh. */
function naiveHeads(c, q, k, v, out, h0, h1, kvh) {
  const { Sq, Sk, D, scale } = c;
  const s = new Float64Array(Sk);
  for (let h = h0; h < h1; h++) {
    for (let i = 0; i < Sq; i++) {
      const qo = (h * Sq + i) * D;
      const last = c.causal ? i + Sk - Sq + 1 : Sk;
      let m = -Infinity;
      for (let j = 0; j < last; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qo + d] * k[(kvh * Sk + j) * D + d];
        s[j] = dot * scale;
        if (s[j] > m) m = s[j];
      }
      let z = 0;
      for (let j = 0; j < last; j++) z += s[j] = Math.exp(s[j] - m);
      out.fill(0, qo, qo + D);
      for (let j = 0; j < last; j++) {
        const p = s[j] / z;
        for (let d = 0; d < D; d++) out[qo + d] += p * v[(kvh * Sk + j) * D + d];
      }
    }
  }
}

// Naive JS is timed where one call of it (one head group) is at most 0.1 GFLOP, about 0.1 s.
const NAIVE_MAX_FLOPS = 1e8;

/** Naive JS on one key/value head's query group (one head without GQA); its time is scaled to all heads. */
function naivePeer(c, data) {
  const g = c.H / c.Hkv;
  const out = new Float32Array(g * c.Sq * c.D);
  const [k, v] = data.kv[0];
  const call = () => naiveHeads(c, data.q, k, v, out, 0, g, 0);
  const scaleUp = c.B * c.Hkv;
  return {
    name: 'naive JS',
    flops: (4 * g * c.Sq * c.Sk * c.D) * (c.causal ? 0.5 : 1),
    time: async (reps) => timeAsync(call, reps).then((ns) => ns.map((x) => x * scaleUp)),
    output: async () => (call(), { data: out }),
  };
}

/** The PyTorch peer process, or a reason why there is none. */
function startTorch() {
  return startPython(join(here, 'attention_torch.py'), { OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '2', OMP_WAIT_POLICY: 'PASSIVE' });
}

function torchPeer(torch, threads) {
  return {
    name: 'torch',
    time: async (reps) => (await torch.ask({ time: reps, threads })).ns,
    output: async () => torch.checksum,
  };
}

// --- checks and measurement ---------------------------------------------------------------------

/** A peer's error against the reference [B,H,Sq,D]: max abs difference / max |ref|, or of torch's checksums. */
function mismatch(ref, got) {
  let scale = 0;
  for (const x of ref) scale = Math.max(scale, Math.abs(x));
  if (got.sum !== undefined) {
    let sum = 0;
    let sumsq = 0;
    for (const x of ref) {
      sum += x;
      sumsq += x * x;
    }
    return Math.max(Math.abs(got.sum - sum) / Math.sqrt(ref.length * sumsq), Math.abs(got.sumsq - sumsq) / sumsq);
  }
  const a = got.data ?? got;
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - ref[i]));
  return err / scale;
}

function caseData(c) {
  const kvBytes = 2 * 4 * c.B * c.Hkv * c.Sk * c.D;
  // decode rotates over copies of K/V so they come from DRAM, as in a real model's layers
  const copies = c.kind === 'decode' ? Math.max(1, Math.ceil((96 * MiB) / kvBytes)) : 1;
  const nkv = c.B * c.Hkv * c.Sk * c.D;
  const data = { q: values(c.B * c.H * c.Sq * c.D, 1), kv: [], copies, kvBytes, plain: plainModel(c) };
  for (let i = 0; i < copies; i++) data.kv.push([values(nkv, 2 + 2 * i), values(nkv, 3 + 2 * i)]);
  if (c.kind === 'prefill') data.mha = mhaModel(c);
  else data.gqa = gqaModel(c);
  return data;
}

export async function run(args) {
  const quick = args.includes('--quick');
  const torch = await startTorch();
  const torchLine = torch.missing ? `PyTorch: skipped (${torch.missing}; install python3-torch, or set BENCH_PYTHON)` : `PyTorch ${torch.info.torch} (BLAS: ${torch.info.blas})`;
  const commit = gitCommit();
  const info = { seqfuse: commit, isa: sf.getIsa().active, onnxruntime: ort.env.versions.node, torch: torch.info ?? null };
  console.log(`attention f32: seqfuse ${commit} (${info.isa}), onnxruntime-node ${info.onnxruntime}, ${torchLine}${quick ? ', --quick' : ''}`);

  const results = [];
  const prefillRows = [];
  const decodeRows = [];
  for (const c0 of CASES) {
    const c = { ...c0, scale: 1 / Math.sqrt(c0.D) };
    const data = caseData(c);
    const flops = 4 * c.B * c.H * c.Sq * c.Sk * c.D * (c.causal ? 0.5 : 1);
    const seqfuse = seqfusePeer(c, data);
    const naive = naivePeer(c, data);
    if (!torch.missing) torch.checksum = await torch.ask({ case: { ...c0, copies: data.copies } });
    const ref = await seqfuse.output();
    let naiveRes = null;
    for (const threads of [1, 2]) {
      sf.setNumThreads(threads);
      const ortSet = await ortPeers(c, data, threads);
      const peers = [seqfuse, ...ortSet.peers, ...(torch.missing ? [] : [torchPeer(torch, threads)])];
      // JS runs on one thread: timed in the 1-thread pass, quoted in both
      if (threads === 1 && naive.flops <= NAIVE_MAX_FLOPS) peers.push(naive);
      const checks = {};
      for (const p of peers.slice(1)) checks[p.name] = mismatch(ref, await p.output());
      const bad = Object.entries(checks).filter(([, e]) => !(e <= 1e-4));
      if (bad.length) console.log(`  MISMATCH ${c.kind} Sk=${c.Sk} causal=${c.causal}: ${bad.map(([n, e]) => `${n} ${e}`).join(', ')}`);
      // decode: a DRAM copy of at least 128 MiB moved per call (half read, half written), same rounds
      const copyBytes = Math.max(data.kvBytes, 128 * MiB);
      if (c.kind === 'decode') peers.push({ name: 'copy', time: async (reps) => helper.copy(copyBytes / 2, threads, reps) });
      const m = await measure(peers, { quick });
      await ortSet.release();
      if (threads === 1) naiveRes = m['naive JS'];
      m['naive JS'] = naiveRes;
      const ortBest = c.kind === 'prefill' ? (m['ort plain'].ns.median <= m['ort MHA'].ns.median ? 'ort plain' : 'ort MHA')
        : m['ort plain'].ns.median <= m['ort GQA'].ns.median ? 'ort plain' : 'ort GQA';
      const sfNs = m.seqfuse.ns;
      const gflops = flops / sfNs.median;
      const peak = f32Peak(threads);
      const row = {
        threads, 'seqfuse ms': ms(sfNs), 'GFLOP/s': fmt(gflops), 'peak': fmt(peak), '% peak': fmt(100 * gflops / peak, 0),
        'ORT plain ms': ms(m['ort plain'].ns), 'ORT best/sf': ratio(m[ortBest].ratio), 'torch ms': ms(m.torch?.ns), 'torch/sf': ratio(m.torch?.ratio),
        'naive JS ms*': ms(naiveRes?.ns), 'JS/sf': fmt(naiveRes?.ns.median / sfNs.median, 0),
      };
      const rec = { ...c0, threads, flops, peakGFlops: peak, ortBest, checks, naiveScaledFrom: `${c.H / c.Hkv} of ${c.B * c.H} heads`, peers: m };
      if (c.kind === 'prefill') {
        prefillRows.push({ S: c.Sq, causal: c.causal ? 'yes' : 'no', ...row, 'ORT MHA ms': ms(m['ort MHA'].ns) });
      } else {
        const kvGBs = data.kvBytes / sfNs.median;
        const copyGBs = copyBytes / m.copy.ns.median;
        rec.kvGBs = kvGBs;
        rec.copyGBs = copyGBs;
        decodeRows.push({ Sk: c.Sk, ...row, 'KV GB/s': fmt(kvGBs), 'copy GB/s': fmt(copyGBs), 'vs copy': fmt(kvGBs / copyGBs, 2), 'ORT GQA ms': ms(m['ort GQA'].ns) });
      }
      results.push(rec);
    }
  }
  if (!torch.missing) torch.stop();

  printTable('prefill B8 H12 D64, f32: ms median (min-max); ratios = peer ms / seqfuse ms, median of rounds (min-max)',
    ['threads', 'S', 'causal', 'seqfuse ms', 'GFLOP/s', 'peak', '% peak', 'ORT plain ms', 'ORT MHA ms', 'ORT best/sf', 'torch ms', 'torch/sf', 'naive JS ms*', 'JS/sf'], prefillRows);
  printTable('decode B1 H32 Hkv8 D128 Sq1, f32 (K/V rotated over copies >= 96 MiB, so read from DRAM)',
    ['threads', 'Sk', 'seqfuse ms', 'KV GB/s', 'copy GB/s', 'vs copy', 'GFLOP/s', 'ORT plain ms', 'ORT GQA ms', 'ORT best/sf', 'torch ms', 'torch/sf', 'naive JS ms*', 'JS/sf'], decodeRows);
  console.log(`
GFLOP/s: 4*B*H*Sq*Sk*D (halved when causal) / seqfuse median; peak: this machine's f32 FMA peak
(bench/native fmaPeak: the fastest of 15 calls, right after that case).
ORT plain: Transpose/MatMul/Mul/[Add mask]/Softmax/MatMul graph; ORT MHA: com.microsoft MultiHeadAttention
(q and out in its [B,S,H*D] layout, transposed once outside the timing); ORT GQA: com.microsoft
GroupQueryAttention with a past cache of Sk-1 keys plus the new token, fetching only the output.
onnxruntime-node: intraOpNumThreads = threads, sequential, all graph optimizations.
torch: matmul into preallocated scores, scale, mask and softmax in place, matmul into a preallocated output
(${torchLine}).
* naive JS: a plain Float32Array loop on one head (prefill) or one key/value head's 4 query heads
(decode), single-threaded, scaled up to all heads; the 2-thread rows quote the 1-thread time;
not run where one such call exceeds 0.1 GFLOP (S = 2048).
KV GB/s: K+V bytes / seqfuse median; copy: bench/native copy, >= 128 MiB moved per call, same rounds.`);
  const file = writeResults('attention', { info, quick, results });
  console.log(`\nresults: ${file}`);
}

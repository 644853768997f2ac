#!/usr/bin/env node
// Trains a Seq2SeqTransformer to reverse sequences (lengths 8-16 over a vocabulary of 32) with
// padded batches (srcLengths, ignored target positions), then measures exact-match accuracy of
// greedy decoding on held-out sequences, in f32 and as an int8 model (post-training quantization).
//
//   node examples/seq2seq-reverse/train.mjs [--steps 1200] [--eval 500]
import * as sf from '../../dist/index.js';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(args[i + 1]);
};
const steps = arg('steps', 1200);
const evalN = arg('eval', 500);

const BOS = 0, EOS = 1, PAD = 2, FIRST = 3, V = 32, MIN = 8, MAX = 16, IGNORE = -100;
let state = 12345;
const rand = () => {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state / 4294967296;
};
const sequence = () => Array.from({ length: MIN + Math.floor(rand() * (MAX - MIN + 1)) }, () => FIRST + Math.floor(rand() * (V - FIRST)));

function batch(B) {
  const src = new Int32Array(B * MAX).fill(PAD), tin = new Int32Array(B * (MAX + 1)).fill(PAD), tout = new Int32Array(B * (MAX + 1)).fill(IGNORE);
  const lengths = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const s = sequence(), r = [...s].reverse();
    lengths[b] = s.length;
    src.set(s, b * MAX);
    tin.set([BOS, ...r], b * (MAX + 1));
    tout.set([...r, EOS], b * (MAX + 1));
  }
  const T = (a, n) => sf.Tensor.from(a, [B, n], { dtype: 'i32' });
  return { src: T(src, MAX), tin: T(tin, MAX + 1), tout: T(tout, MAX + 1), lengths };
}

const model = new sf.Seq2SeqTransformer({
  vocabSize: V, hiddenSize: 128, numEncoderLayers: 2, numDecoderLayers: 2, numHeads: 4, ffnSize: 256, maxSeqLen: MAX + 1, seed: 1,
});
const optimizer = new sf.AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.01 });
const schedule = sf.warmupCosine({ lr: 1e-3, warmupSteps: 100, totalSteps: steps, minLr: 5e-5 });

const t0 = Date.now();
for (let step = 1; step <= steps; step++) {
  const b = batch(64);
  model.zeroGrad();
  const { loss } = await model.loss(b.src, b.tin, b.tout, { train: true, srcLengths: b.lengths, ignoreIndex: IGNORE });
  await optimizer.step(model.gradients(), { lr: schedule(step), maxGradNorm: 1 });
  for (const t of [b.src, b.tin, b.tout]) t.dispose();
  if (step % 100 === 0) console.log(`step ${step}: loss ${loss.toFixed(4)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}

// held-out sequences (the generator continues past the training batches)
const held = Array.from({ length: evalN }, sequence);
async function exactMatch(m) {
  let exact = 0;
  for (const s of held) {
    const want = [...s].reverse().concat(EOS);
    const got = Array.from(await m.generate(s, [BOS], { maxNewTokens: MAX + 1, temperature: 0, stopToken: EOS }));
    if (got.length === want.length && got.every((v, j) => v === want[j])) exact++;
  }
  return exact / evalN;
}
const acc = await exactMatch(model);
console.log(`exact match ${(100 * acc).toFixed(1)}% of ${evalN} held-out sequences (lengths ${MIN}-${MAX}, vocabulary ${V}) after ${steps} steps, ${((Date.now() - t0) / 1000).toFixed(0)} s`);

// int8: post-training (max calibration on 4 training batches), exported and decoded the same way
model.enableQuant();
await model.calibrate(async () => {
  for (let i = 0; i < 4; i++) {
    const b = batch(64);
    await model.loss(b.src, b.tin, b.tout, { backward: false, srcLengths: b.lengths, ignoreIndex: IGNORE });
    for (const t of [b.src, b.tin, b.tout]) t.dispose();
  }
});
const int8 = sf.exportInt8(model);
const acc8 = await exactMatch(int8);
console.log(`int8 (post-training, max calibration): exact match ${(100 * acc8).toFixed(1)}%`);
int8.dispose();
model.dispose();
optimizer.dispose();
if (acc < 0.99 || acc8 < 0.99) process.exitCode = 1;

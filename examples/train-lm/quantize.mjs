#!/usr/bin/env node
// int8 for the LM of train.mjs (run that first: it saves out/model.safetensors): the float model's
// validation loss, then post-training int8 (max calibration on training batches, no training) and
// quantization-aware training (calibrate, fine-tune with fake-quant at a small learning rate), each
// exported to int8 (exportInt8) and evaluated, and the int8 model's forward speed beside f32's.
// Exits 1 when the QAT int8 model's validation loss is more than 2% above the float model's after
// the same fine-tuning.
//
//   node examples/train-lm/quantize.mjs [--model out/model.safetensors] [--steps 150] [--bits 8] [--threads N]
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as sf from '../../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? dflt : args[i + 1];
};
const modelPath = arg('model', join(here, 'out', 'model.safetensors'));
const steps = Number(arg('steps', 150));
const weightBits = Number(arg('bits', 8));
if (arg('threads')) sf.setNumThreads(Number(arg('threads')));

const text = readFileSync(join(here, 'data', 'moby-dick.txt'));
const split = Math.floor(text.length * 0.95);
const seqLen = 128;
// the validation set of train.mjs (the same 48 windows of the held-out 5%), and another 48 for a steadier figure
const valBatches = (() => {
  const b = new sf.TokenBatcher(text.subarray(split), { batchSize: 16, seqLen, seed: 99 });
  return Array.from({ length: 6 }, () => b.next());
})();
const calib = new sf.TokenBatcher(text.subarray(0, split), { batchSize: 16, seqLen, seed: 11 });
const calibBatches = Array.from({ length: 8 }, () => calib.next());

async function validate(model) {
  let sum = 0;
  for (const b of valBatches) sum += (await model.loss(b.ids, b.targets, { backward: false })).loss;
  return sum / valBatches.length;
}

/** Median ms of a forward of one [16, 128] batch. */
async function forwardMs(model) {
  const ids = valBatches[0].ids;
  const t = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    (await model.forward(ids)).dispose();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[3];
}

const load = () => sf.TransformerLM.fromFile(modelPath);
const f32 = await load();
const f32Loss = await validate(f32);
console.log(`f32 model: validation loss ${f32Loss.toFixed(4)} nats/byte`);

// post-training: calibrate the clips on 8 training batches, export
const ptq = await load();
ptq.enableQuant({ weightBits });
await ptq.calibrate(async () => {
  for (const b of calibBatches) await ptq.loss(b.ids, b.targets, { backward: false });
});
const ptq8 = sf.exportInt8(ptq);
const ptqLoss = await validate(ptq8);
console.log(`post-training int8 (max calibration, ${weightBits}-bit weights): ${ptqLoss.toFixed(4)} (${((ptqLoss / f32Loss - 1) * 100).toFixed(2)}% vs f32)`);

// the same with percentile calibration (99.99th percentile of |x| per clip)
{
  const pct = await load();
  pct.enableQuant({ weightBits });
  await pct.calibrate(async () => {
    for (const b of calibBatches) await pct.loss(b.ids, b.targets, { backward: false });
  }, { method: 'percentile', percentile: 99.99 });
  const pct8 = sf.exportInt8(pct);
  const l = await validate(pct8);
  console.log(`post-training int8 (99.99th percentile calibration): ${l.toFixed(4)} (${((l / f32Loss - 1) * 100).toFixed(2)}% vs f32)`);
  pct.dispose();
  pct8.dispose();
}

// QAT: start from the (max-)calibrated clips, fine-tune with fake-quant. The control: the float model
// fine-tuned the same way (same data, steps and schedule), since fine-tuning alone moves the loss.
async function fineTune(model) {
  const optimizer = new sf.AdamW(model.parameters(), { lr: 2e-4, betas: [0.9, 0.98], weightDecay: 0.1 });
  const data = new sf.TokenBatcher(text.subarray(0, split), { batchSize: 16, seqLen, seed: 12 });
  const trainer = new sf.Trainer({
    model, optimizer, data, maxGradNorm: 1, seed: 5,
    schedule: sf.warmupCosine({ lr: 2e-4, warmupSteps: Math.min(10, Math.floor(steps / 2)), totalSteps: steps, minLr: 2e-5 }),
  });
  const t0 = Date.now();
  await trainer.train(steps);
  optimizer.dispose();
  return (Date.now() - t0) / 1000;
}
const secsF = await fineTune(f32);
const tunedLoss = await validate(f32);
console.log(`f32 fine-tuned ${steps} steps (${secsF.toFixed(0)} s, the control): ${tunedLoss.toFixed(4)}`);
const qat = ptq;
const secsQ = await fineTune(qat);
const qatFake = await validate(qat);
const qat8 = sf.exportInt8(qat);
const qatLoss = await validate(qat8);
const vs = (l) => `${((l / tunedLoss - 1) * 100).toFixed(2)}% vs the fine-tuned f32, ${((l / f32Loss - 1) * 100).toFixed(2)}% vs the original`;
console.log(`QAT ${steps} steps (${secsQ.toFixed(0)} s): fake-quant ${qatFake.toFixed(4)}, int8 ${qatLoss.toFixed(4)} (${vs(qatLoss)})`);
await qat8.save(join(dirname(modelPath), `model-int8-w${weightBits}.safetensors`));

const msF = await forwardMs(f32), ms8 = await forwardMs(qat8);
console.log(`forward of [16, 128] on ${sf.getNumThreads()} threads: f32 ${msF.toFixed(1)} ms, int8 ${ms8.toFixed(1)} ms (${(msF / ms8).toFixed(2)}x)`);
for (const m of [f32, ptq8, qat, qat8]) m.dispose();
if (qatLoss > 1.02 * tunedLoss) {
  console.error(`FAIL: the QAT int8 validation loss is ${((qatLoss / tunedLoss - 1) * 100).toFixed(2)}% above the fine-tuned f32 model's (allowed 2%)`);
  process.exit(1);
}

// Trainer: resuming from a checkpoint reproduces the uninterrupted run bit for bit (dropout on),
// a SIGKILL in the middle of a checkpoint save leaves the previous checkpoint loadable, gradient
// accumulation, evals, pruning and the loss curve.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AdamW, loadSafetensors, Tensor, TokenBatcher, Trainer, TransformerLM, type TransformerLMConfig, warmupCosine } from '../lib/index.js';
import { TS_CHILD_PRELUDE } from './ts-child.js';

const root = join(__dirname, '..');
const dirs: string[] = [];
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), 'seqfuse-trainer-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const TEXT = Int32Array.from(Buffer.from('It was the best of times, it was the worst of times, it was the age of wisdom. '.repeat(20)));
const CFG: TransformerLMConfig = { vocabSize: 128, hiddenSize: 32, numLayers: 2, numHeads: 4, ffnSize: 64, maxSeqLen: 16, hiddenDropout: 0.1, attnDropout: 0.1, seed: 9 };

function setup(dir: string, extra: Partial<ConstructorParameters<typeof Trainer>[0]> = {}) {
  const model = new TransformerLM(CFG);
  const optimizer = new AdamW(model.parameters(), { lr: 3e-3 });
  const data = new TokenBatcher(TEXT, { batchSize: 4, seqLen: 16, seed: 3 });
  const trainer = new Trainer({
    model, optimizer, data, seed: 5, maxGradNorm: 1, accumulate: 2,
    schedule: warmupCosine({ lr: 3e-3, warmupSteps: 3, totalSteps: 40 }),
    checkpoint: { dir, every: 5, keep: 3 }, progress: false, ...extra,
  });
  return { model, optimizer, trainer };
}

describe('Trainer', () => {
  it('resuming at step k repeats the uninterrupted run bit for bit (dropout, accumulation, schedule, data order)', async () => {
    const dir = scratch();
    const a = setup(dir);
    const losses: number[] = [];
    await a.trainer.train(20, (r) => void losses.push(r.loss));
    expect(losses[19]).toBeLessThan(losses[0]! * 0.8);
    const kept = readdirSync(dir).filter((n) => n.endsWith('.safetensors')).sort();
    expect(kept).toEqual(['step-00000010.safetensors', 'step-00000015.safetensors', 'step-00000020.safetensors']);
    const b = setup(scratch());
    expect(await b.trainer.resume(join(dir, 'step-00000010.safetensors'))).toBe(join(dir, 'step-00000010.safetensors'));
    expect(b.trainer.stepCount).toBe(10);
    const resumed: number[] = [];
    await b.trainer.train(20, (r) => void resumed.push(r.loss));
    expect(resumed).toEqual(losses.slice(10));  // exact equality of every loss
    for (const [name, p] of a.model.parameters()) expect(b.model.parameters().get(name)!.toArray(), name).toEqual(p.toArray());
    // resuming from the directory picks the newest checkpoint
    const c = setup(scratch());
    expect(await c.trainer.resume(dir)).toBe(join(dir, 'step-00000020.safetensors'));
    expect(c.trainer.history.map((h) => h.loss)).toEqual(losses);
    for (const s of [a, b, c]) {
      s.model.dispose();
      s.optimizer.dispose();
    }
  });

  it('a SIGKILL during a checkpoint save leaves the previous checkpoint loadable', async () => {
    const dir = scratch();
    // a model of ~40 MB of checkpoint (parameters + two moments), saved in a loop until killed
    const child = spawn(process.execPath, ['-e', String.raw`${TS_CHILD_PRELUDE}
const sf = require(path.resolve('lib/index.ts'));
(async () => {
  const model = new sf.TransformerLM({ vocabSize: 256, hiddenSize: 256, numLayers: 4, numHeads: 4, ffnSize: 1024, maxSeqLen: 8, seed: 1 });
  const optimizer = new sf.AdamW(model.parameters(), { lr: 1e-3 });
  const data = new sf.TokenBatcher(Int32Array.from({ length: 100 }, (_, i) => i % 256), { batchSize: 1, seqLen: 8 });
  const trainer = new sf.Trainer({ model, optimizer, data, checkpoint: { dir: ${JSON.stringify(dir)}, every: 1000, keep: 100 }, progress: false });
  await trainer.step();
  await trainer.saveCheckpoint();
  process.stdout.write('saved\n');
  for (;;) {
    await trainer.step();
    await trainer.saveCheckpoint();
  }
})();
`], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('saved') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited with ${code} before saving`)));
    });
    // kill as soon as a temp file of the next save exists (poll: it lives for tens of ms)
    const t0 = Date.now();
    while (!readdirSync(dir).some((n) => n.includes('.tmp-')) && Date.now() - t0 < 60_000) await new Promise((r) => setImmediate(r));
    const caught = readdirSync(dir).some((n) => n.includes('.tmp-'));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    expect(caught, 'a save was in progress when the child was killed').toBe(true);
    const ckpts = readdirSync(dir).filter((n) => /^step-\d+\.safetensors$/.test(n)).sort();
    expect(ckpts.length).toBeGreaterThanOrEqual(1);
    for (const n of ckpts) {
      const { tensors, metadata } = await loadSafetensors(join(dir, n));  // every listed checkpoint is whole
      expect(JSON.parse(metadata['seqfuse.trainer']!).step).toBe(Number(n.slice(5, 13)));
      for (const t of tensors.values()) t.dispose();
    }
    const model = new TransformerLM({ vocabSize: 256, hiddenSize: 256, numLayers: 4, numHeads: 4, ffnSize: 1024, maxSeqLen: 8, seed: 2 });
    const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
    const trainer = new Trainer({ model, optimizer, progress: false });
    expect(await trainer.resume(dir)).toBe(join(dir, ckpts[ckpts.length - 1]!));
    expect(trainer.stepCount).toBe(Number(ckpts[ckpts.length - 1]!.slice(5, 13)));
    model.dispose();
    optimizer.dispose();
  }, 120_000);

  it('runs evals, writes the loss curve, and averages accumulated micro-batches', async () => {
    const dir = scratch();
    let evals = 0;
    const s = setup(dir, { eval: { every: 3, run: async () => 1 + evals++ }, lossCurve: join(dir, 'loss.svg'), checkpoint: undefined });
    await s.trainer.train(7);
    expect(evals).toBe(3);  // steps 3, 6 and the last
    expect(s.trainer.history.filter((h) => h.valLoss !== undefined).map((h) => h.step)).toEqual([3, 6, 7]);
    const svg = readFileSync(join(dir, 'loss.svg'), 'utf8');
    expect(svg).toMatch(/^<svg[^>]*>.*<polyline[^>]*points="[\d., ]+".*<\/svg>\n$/s);
    expect(svg.match(/<circle/g)!.length).toBe(3);
    // two micro-batches of 2 rows give the gradients of one batch of 4 (equal token counts)
    const m = new TransformerLM({ ...CFG, hiddenDropout: 0, attnDropout: 0 });
    const ids = Tensor.from(TEXT.subarray(0, 64), [4, 16], { dtype: 'i32' });
    const tg = Tensor.from(TEXT.subarray(1, 65), [4, 16], { dtype: 'i32' });
    await m.loss(ids, tg, { backward: true });
    const full = new Map([...m.gradients()].map(([k, v]) => [k, Float64Array.from(v.toArray())]));
    m.zeroGrad();
    const half = (t: Tensor, i: number) => Tensor.from((t.toArray() as Int32Array).subarray(i * 32, i * 32 + 32), [2, 16], { dtype: 'i32' });
    for (const i of [0, 1]) await m.loss(half(ids, i), half(tg, i), { backward: true, gradScale: 0.5 });
    for (const [k, g] of m.gradients()) {
      const a = g.toArray();
      const f = full.get(k)!;
      let err = 0, ref = 0;
      for (let i = 0; i < a.length; i++) { err += (a[i]! - f[i]!) ** 2; ref += f[i]! ** 2; }
      expect(Math.sqrt(err / Math.max(ref, 1e-30)), k).toBeLessThan(1e-5);
    }
    m.dispose();
    s.model.dispose();
    s.optimizer.dispose();
  });
});

// The models on device 'cuda' against the same models on 'cpu' (same seed: the same weights and
// dropout masks): TransformerLM loss + backward in training, greedy generation, QAT calibration and
// int8 export, save on one device and load on the other; Seq2SeqTransformer loss + backward.
// Runs on an addon with the CUDA backend (npm run test:emu: the emulated one).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportInt8, Seq2SeqTransformer, Tensor, TransformerLM } from '../../lib/index.js';
import { freshSeed, rng } from '../helpers.js';
import { expectCloseOnCuda, requireCuda } from './common.js';

const seed = freshSeed();
const r = rng(seed);
const dir = mkdtempSync(join(tmpdir(), 'seqfuse-cuda-'));

requireCuda();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ids(B: number, S: number, V: number, device: 'cpu' | 'cuda' = 'cpu'): Tensor {
  return Tensor.from(Int32Array.from({ length: B * S }, () => Math.floor(r() * V)), [B, S], { dtype: 'i32', device });
}

const expectClose = (label: string, gpu: Tensor, cpu: Tensor, limit: number) => expectCloseOnCuda(label, gpu, cpu, limit, seed);

const LM = { vocabSize: 37, hiddenSize: 32, numLayers: 2, numHeads: 4, ffnSize: 48, maxSeqLen: 16, seed: 3, hiddenDropout: 0.1 };

describe('models on CUDA match the CPU models', () => {
  it('TransformerLM: loss and gradients in training, greedy generation', async () => {
    const cpu = new TransformerLM(LM);
    const gpu = new TransformerLM({ ...LM, device: 'cuda' });
    expect(gpu.device).toBe('cuda');
    const x = ids(3, 11, 37), y = ids(3, 11, 37);
    const lc = await cpu.loss(x, y, { train: true, seed: 5, labelSmoothing: 0.1 });
    const lg = await gpu.loss(x.to('cuda'), y.to('cuda'), { train: true, seed: 5, labelSmoothing: 0.1 });
    expect(Math.abs(lg.loss - lc.loss) / lc.loss, `loss (seed ${seed})`).toBeLessThanOrEqual(1e-5);
    for (const [name, g] of cpu.gradients()) expectClose(`grad ${name}`, gpu.gradients().get(name)!, g, 1e-4);
    const prompt = [1, 2, 3];
    expect(Array.from(await gpu.generate(prompt, { maxNewTokens: 6, temperature: 0 })))
      .toEqual(Array.from(await cpu.generate(prompt, { maxNewTokens: 6, temperature: 0 })));
    cpu.dispose();
    gpu.dispose();
  });

  it('TransformerLM: QAT calibration, int8 export, and save/load across devices', async () => {
    const gpu = new TransformerLM({ ...LM, device: 'cuda' });
    const cpu = new TransformerLM(LM);
    const x = ids(2, 9, 37);
    const xg = x.to('cuda');
    for (const m of [cpu, gpu]) m.enableQuant({ weightBits: 8 });
    await cpu.calibrate(() => cpu.forward(x));
    await gpu.calibrate(() => gpu.forward(xg));
    for (const [name, t] of cpu.parameters())
      if (name.endsWith('_clip')) expect(gpu.parameters().get(name)!.toArray()[0], name).toBeCloseTo(t.toArray()[0]!, 4);
    const qc = exportInt8(cpu), qg = exportInt8(gpu);
    expect(qg.device).toBe('cuda');
    // int8 codes can differ by one where a float lands on a rounding boundary
    expectClose('int8 logits', await qg.forward(xg), await qc.forward(x), 5e-3);
    const file = join(dir, 'lm.safetensors');
    await gpu.save(file);
    const back = await TransformerLM.fromFile(file);
    expect(back.device).toBe('cpu');
    const onGpu = await TransformerLM.fromFile(file, { device: 'cuda' });
    expect(onGpu.device).toBe('cuda');
    expectClose('reloaded logits', await onGpu.forward(xg), await back.forward(x), 1e-5);
    for (const m of [cpu, gpu, qc, qg, back, onGpu]) m.dispose();
  });

  it('Seq2SeqTransformer: loss and gradients', async () => {
    const cfg = { vocabSize: 29, hiddenSize: 24, numEncoderLayers: 1, numDecoderLayers: 2, numHeads: 2, ffnSize: 40, maxSeqLen: 12,
      seed: 8, hiddenDropout: 0.1 };
    const cpu = new Seq2SeqTransformer(cfg);
    const gpu = new Seq2SeqTransformer({ ...cfg, device: 'cuda' });
    const src = ids(2, 10, 29), tin = ids(2, 7, 29), tout = ids(2, 7, 29);
    const srcLengths = Int32Array.of(10, 6);
    const lc = await cpu.loss(src, tin, tout, { train: true, seed: 1, srcLengths });
    const lg = await gpu.loss(src.to('cuda'), tin.to('cuda'), tout.to('cuda'), { train: true, seed: 1, srcLengths });
    expect(Math.abs(lg.loss - lc.loss) / lc.loss, `loss (seed ${seed})`).toBeLessThanOrEqual(1e-5);
    for (const [name, g] of cpu.gradients()) expectClose(`grad ${name}`, gpu.gradients().get(name)!, g, 1e-4);
  });
});

// 10,000 calls (sync, async and failing) must leave memory() and RSS where they started.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as sf from '../lib/index.js';
import { Tensor } from '../lib/index.js';

const gc = (globalThis as { gc?: () => void }).gc!;

async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Results of one call, whatever shape they come in, as a flat list of tensors. */
function tensorsOf(r: unknown): Tensor[] {
  if (r instanceof Tensor) return [r];
  if (r instanceof Map) return [...r.values()].filter((v): v is Tensor => v instanceof Tensor);
  if (r && typeof r === 'object') return Object.values(r).flatMap((v) => (v instanceof Map ? tensorsOf(v) : v instanceof Tensor ? [v] : []));
  return [];
}

describe('no leaks', () => {
  it('memory() and RSS return to baseline after 10,000 calls', async () => {
    const x = Tensor.randn([4, 64], { seed: 1 });
    const g = Tensor.rand([64], { seed: 2 });
    const b = Tensor.randn([64], { seed: 3 });
    const bad = Tensor.zeros([63]);
    const ids = Tensor.from(new Int32Array([1, 2, 3, 9]), [4]);
    const badIds = Tensor.from(new Int32Array([1, 2, 3, 10]), [4]);
    const table = Tensor.randn([10, 64], { seed: 4 });
    const w = Tensor.randn([64, 64], { seed: 5 });
    const aq = Tensor.randn([1, 4, 16, 16], { seed: 6 });
    const akv = Tensor.randn([1, 2, 24, 16], { seed: 7 });
    const alse = Tensor.zeros([1, 4, 16]);
    const lengths = Int32Array.of(20);
    const lx = Tensor.randn([2, 5, 16], { seed: 8 });
    const ceT = Int32Array.of(3, -100, 63, 0);
    const ceRes = sf.crossEntropy(x, ceT, { mile: {}, labelSmoothing: 0.1 });
    // adamw state, updated in place by every call
    const op = [Tensor.randn([64, 64], { seed: 8 }), Tensor.randn([64], { seed: 9 })];
    const og = [Tensor.randn([64, 64], { seed: 10, dtype: 'bf16' }), Tensor.randn([64], { seed: 11 })];
    const om = [Tensor.zeros([64, 64]), Tensor.zeros([64])];
    const ov = [Tensor.zeros([64, 64]), Tensor.zeros([64])];
    const ocopies = [Tensor.zeros([64, 64], { dtype: 'f16' }), null];
    const torchLayer = new sf.TransformerDecoderLayer({ hiddenSize: 16, numHeads: 4, ffnSize: 24, crossAttention: true, seed: 2 });
    const file = sf.encodeSafetensors({ x, g, ids, w: w.to('bf16') }, { step: '1' });
    const dir = mkdtempSync(join(tmpdir(), 'seqfuse-leak-'));
    const calls: Array<[string, (...a: unknown[]) => unknown, unknown[]]> = [
      ['layerNorm', sf.layerNorm as never, [x, g, b]],
      ['rmsNorm', sf.rmsNorm as never, [x, g]],
      ['layerNormBackward', sf.layerNormBackward as never, [x, x, g]],
      ['rmsNormBackward', sf.rmsNormBackward as never, [x, x, g]],
      ['layerNorm (bad gamma)', sf.layerNorm as never, [x, bad, b]],
      ['Tensor.to', (t: unknown) => (t as Tensor).to('bf16'), [x]],
      ['softmax', sf.softmax as never, [x, { causal: true }]],
      ['softmaxBackward', sf.softmaxBackward as never, [x, x]],
      ['embedding', sf.embedding as never, [ids, table, { dropout: 0.1, seed: 3 }]],
      ['embeddingBackward', sf.embeddingBackward as never, [x, ids, { vocabSize: 10 }]],
      ['embedding (bad id)', sf.embedding as never, [badIds, table]],
      ['linear', sf.linear as never, [x, w, b, { activation: 'gelu', residual: x }]],
      ['linear (fresh weights)', (...a: unknown[]) => sf.linear(a[0] as Tensor, Tensor.randn([64, 64], { seed: 9 })), [x]],
      ['linearBackward', sf.linearBackward as never, [x, x, w]],
      ['gemm', sf.gemm as never, [x, w, { transB: true }]],
      ['gemmBackward', sf.gemmBackward as never, [x, x, w]],
      ['linear (bad w)', sf.linear as never, [x, bad]],
      ['gemmInt8', sf.gemmInt8 as never, [sf.quantize(x, 2), sf.quantize(w, 2)]],
      ['linearInt8', sf.linearInt8 as never, [sf.quantize(x, 2), sf.quantize(w, 2), 2, 2, b, { activation: 'gelu', residual: x }]],
      ['linearInt8 (bad wClip)', sf.linearInt8 as never, [sf.quantize(x, 2), sf.quantize(w, 2), 2, Tensor.from(new Float32Array(w.shape[0]!).fill(NaN))]],
      ['gelu', sf.gelu as never, [x]],
      ['geluBackward', sf.geluBackward as never, [x, x, { approximate: 'tanh' }]],
      ['biasAct', sf.biasAct as never, [x, b, { activation: 'silu', dropout: 0.2, seed: 4 }]],
      ['biasActBackward', sf.biasActBackward as never, [x, x, b, { activation: 'silu', dropout: 0.2, seed: 4 }]],
      ['dropout', sf.dropout as never, [x, 0.3, 5]],
      ['biasDropoutResidual', sf.biasDropoutResidual as never, [x, b, x, { dropout: 0.1, seed: 6 }]],
      ['biasDropoutResidualBackward', sf.biasDropoutResidualBackward as never, [x, { dropout: 0.1, seed: 6 }]],
      ['dropout (bad p)', sf.dropout as never, [x, 2, 5]],
      ['quantize', sf.quantize as never, [x, 3]],
      ['dequantize', sf.dequantize as never, [sf.quantize(x, 3), 3, { dtype: 'bf16' }]],
      ['fakeQuant (per channel)', sf.fakeQuant as never, [x, Tensor.from(new Float32Array(x.shape[0]!).fill(2))]],
      ['fakeQuantBackward', sf.fakeQuantBackward as never, [x, x, Tensor.from([1.5], [1])]],
      ['fakeQuant (bad clip tensor)', sf.fakeQuant as never, [x, Tensor.from([NaN], [1])]],
      ['fusedAttention', sf.fusedAttention as never, [aq, akv, akv, { causal: true, kvLengths: lengths, returnLse: true }]],
      ['fusedAttention (dropout)', sf.fusedAttention as never, [aq, akv, akv, { dropout: 0.1, seed: 7, attnBias: Tensor.zeros([16, 24]) }]],
      ['fusedAttentionBackward', sf.fusedAttentionBackward as never, [aq, aq, akv, akv, aq, alse, { causal: true, dropout: 0.1, seed: 7 }]],
      ['fusedAttention (bad kvLengths)', sf.fusedAttention as never, [aq, akv, akv, { kvLengths: Int32Array.of(25) }]],
      ['TransformerDecoderLayer', async () => {
        const l = new sf.TransformerDecoderLayer({ hiddenSize: 16, numHeads: 4, numKvHeads: 2, ffnSize: 24, attnDropout: 0.1, seed: 1 });
        try {
          const y = await l.forward(lx, { train: true, kvLengths: Int32Array.of(5, 3) });
          (await l.backward(y)).dispose();
          y.dispose();
        } finally {
          l.dispose();
        }
      }, []],
      ['TransformerEncoderLayer (bad kvLengths)', async () => {
        const l = new sf.TransformerEncoderLayer({ hiddenSize: 16, numHeads: 4, ffnSize: 24, seed: 1 });
        try {
          await l.forward(lx, { kvLengths: Int32Array.of(9, 3) });
        } finally {
          l.dispose();
        }
      }, []],
      ['crossEntropy', sf.crossEntropy as never, [x, ceT, { mile: {}, reduction: 'none' }]],
      ['crossEntropy (i32 targets)', sf.crossEntropy as never, [x, ids, { labelSmoothing: 0.2 }]],
      ['crossEntropyBackward', sf.crossEntropyBackward as never, [x, ceT, ceRes, { dLoss: 2 }]],
      ['crossEntropy (bad target)', sf.crossEntropy as never, [x, Int32Array.of(3, 64, 0, 0)]],
      ['crossEntropyBackward (bad lse)', sf.crossEntropyBackward as never, [x, ceT, { ...ceRes, lse: bad }]],
      ['toTorchTransformerLayer + fromTorchTransformerLayer', () => {
        const sd = sf.toTorchTransformerLayer(torchLayer.parameters(), 'decoder');
        const back = sf.fromTorchTransformerLayer(sd, 'decoder');
        for (const t of [...sd.values(), ...back.values()]) t.dispose();
      }, []],
      ['fromTorchTransformerLayer (missing names)', sf.fromTorchTransformerLayer as never, [new Map(), 'decoder']],
      ['encodeSafetensors', sf.encodeSafetensors as never, [{ x, ids }, { step: '2' }]],
      ['decodeSafetensors', sf.decodeSafetensors as never, [file]],
      ['decodeSafetensors (truncated)', sf.decodeSafetensors as never, [file.subarray(0, file.length - 1)]],
      ['saveSafetensors + loadSafetensors', async () => {
        await sf.saveSafetensors(join(dir, 'a.safetensors'), { x, g }, { step: '3' });
        return sf.loadSafetensors(join(dir, 'a.safetensors'));
      }, []],
      ['loadSafetensors (missing)', sf.loadSafetensors as never, [join(dir, 'missing.safetensors')]],
      ['fusedAttentionBackward (bad lse)', sf.fusedAttentionBackward as never, [aq, aq, akv, akv, aq, Tensor.zeros([1, 4])]],
      ['adamw', sf.adamw as never, [op, og, om, ov, { lr: 1e-4, step: 3, copies: ocopies, decay: [true, false] }]],
      ['adamw (bad grad shape)', sf.adamw as never, [op[0], x, om[0], ov[0], { lr: 1e-4, step: 1 }]],
      ['gradNorm', sf.gradNorm as never, [[x, ...og]]],
      ['gradNorm (i32 tensor)', sf.gradNorm as never, [[x, ids]]],
    ];
    const round = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const [, fn, args] = calls[i % calls.length]!;
        const op = fn as ((...a: unknown[]) => unknown) & { async?: (...a: unknown[]) => Promise<unknown> };
        const useAsync = i % 4 === 3 && typeof op.async === 'function';
        try {
          const r = useAsync ? await op.async!(...args) : await op(...args);
          for (const t of tensorsOf(r)) t.dispose();
        } catch (e) {
          expect(e).toBeInstanceOf(sf.SeqfuseError);
        }
      }
    };
    await round(2000); // warm-up: thread pools, primitive caches, JIT, allocator high-water marks
    await settle();
    const mem0 = sf.memory().cpu;
    const rss0 = process.memoryUsage().rss;
    await round(10_000);
    await settle();
    rmSync(dir, { recursive: true, force: true });
    expect(sf.memory().cpu).toEqual(mem0);
    const grew = (process.memoryUsage().rss - rss0) / 2 ** 20;
    expect(grew, `RSS grew by ${grew.toFixed(1)} MiB`).toBeLessThan(24);
  });
});

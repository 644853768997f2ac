// TransformerEncoderLayer / TransformerDecoderLayer against PyTorch's own nn.TransformerEncoderLayer
// and nn.TransformerDecoderLayer, evaluated in float64 by test/fixtures/gen_layers.py (committed
// outputs in test/fixtures/layers; CI has no PyTorch). Weights go in through
// fromTorchTransformerLayer, gradients come back through toTorchTransformerLayer, and the output
// and every gradient (x, memory, each PyTorch parameter) must be within f32 relative L2 of the fixture.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fromTorchTransformerLayer, getIsa, setIsa, Tensor, toTorchTransformerLayer, TransformerDecoderLayer, TransformerEncoderLayer } from '../lib/index.js';
import { expectSameBits, isas } from './helpers.js';
import { relL2, tol } from './tolerance.js';

interface Ref {
  file: string;
  offset: number;
  shape: number[];
}

interface FixtureCase {
  name: string;
  kind: 'encoder' | 'decoder';
  norm_first: boolean;
  key_lengths: number[] | null;
  memory_lengths: number[] | null;
  inputs: Record<'x' | 'dy', Ref> & { memory?: Ref };
  state_dict: Record<string, Ref>;
  output: Ref;
  grads: Record<string, Ref>;
}

interface Index {
  config: { hidden: number; heads: number; ffn: number; batch: number; seq: number; activation: 'gelu'; layer_norm_eps: number };
  cases: FixtureCase[];
}

const DIR = join(__dirname, 'fixtures', 'layers');
const index = JSON.parse(readFileSync(join(DIR, 'index.json'), 'utf8')) as Index;
const files = new Map<string, DataView>();

/** A fixture tensor's values (little-endian f32 in its .bin). */
function values(r: Ref): Float32Array {
  let view = files.get(r.file);
  if (!view) {
    const buf = readFileSync(join(DIR, r.file));
    view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    files.set(r.file, view);
  }
  const out = new Float32Array(r.shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * (r.offset + i), true);
  return out;
}

const tensor = (r: Ref) => Tensor.from(values(r), r.shape);

/** One forward and backward of our layer on the case; everything comes back under PyTorch's names. */
async function run(layer: TransformerEncoderLayer | TransformerDecoderLayer, c: FixtureCase, x: Tensor, dy: Tensor, memory: Tensor | null) {
  layer.zeroGrad();
  const kvLengths = c.key_lengths ? Int32Array.from(c.key_lengths) : undefined;
  const got = new Map<string, Tensor>();
  if (layer instanceof TransformerDecoderLayer) {
    const encoderLengths = c.memory_lengths ? Int32Array.from(c.memory_lengths) : undefined;
    got.set('y', await layer.forward(x, { train: false, kvLengths, encoderOut: memory!, encoderLengths }));
    const dMemory = Tensor.zeros(memory!.shape); // backward adds the encoder output's gradient into it
    got.set('x', await layer.backward(dy, { dEncoderOut: dMemory }));
    got.set('memory', dMemory);
  } else {
    got.set('y', await layer.forward(x, { train: false, kvLengths }));
    got.set('x', await layer.backward(dy));
  }
  for (const [name, g] of toTorchTransformerLayer(layer.gradients(), c.kind)) got.set(name, g);
  return got;
}

/** Loads the case's weights through the name map, runs it, and checks everything against the fixture. */
async function checkCase(c: FixtureCase, isa: string): Promise<void> {
  const { hidden, heads, ffn, activation, layer_norm_eps } = index.config;
  const cfg = { hiddenSize: hidden, numHeads: heads, ffnSize: ffn, activation, preLayerNorm: c.norm_first, layerNormEps: layer_norm_eps, seed: 1 };
  const layer = c.kind === 'encoder' ? new TransformerEncoderLayer(cfg) : new TransformerDecoderLayer({ ...cfg, crossAttention: true });
  const stateDict = new Map(Object.entries(c.state_dict).map(([name, r]) => [name, tensor(r)]));
  const params = fromTorchTransformerLayer(stateDict, c.kind);
  layer.loadParameters(params);
  // the inverse map gives back the state_dict bit for bit
  const back = toTorchTransformerLayer(layer.parameters(), c.kind);
  expect([...back.keys()].sort()).toEqual([...stateDict.keys()].sort());
  for (const [name, t] of stateDict) expectSameBits(back.get(name)!, t, name);

  const x = tensor(c.inputs.x);
  const dy = tensor(c.inputs.dy);
  const memory = c.inputs.memory ? tensor(c.inputs.memory) : null;
  const got = await run(layer, c, x, dy, memory);

  // compared under PyTorch's names: the K third of each in_proj_bias gradient is zero in exact arithmetic
  // (softmax ignores a per-query constant), so on its own (as cross.kv.bias's first half) it would be
  // f32 noise against ~1e-14; inside the whole in_proj_bias it is measured against the Q and V parts
  const want = new Map<string, Ref>([['y', c.output], ...Object.entries(c.grads)]);
  expect([...got.keys()].sort(), 'every fixture tensor is compared').toEqual([...want.keys()].sort());
  const errors = [...want].map(([name, r]) => [name, relL2(got.get(name)!.toArray(), values(r))] as const).sort((a, b) => b[1] - a[1]);
  const [worst, worstErr] = errors[0]!;
  console.info(`${c.name} [${isa}]: worst relative L2 ${worstErr.toExponential(2)} (${worst}); output ${errors.find(([n]) => n === 'y')![1].toExponential(2)}`);
  const report = errors.map(([n, e]) => `${n} ${e.toExponential(2)}`).join(', ');
  for (const [name, err] of errors) expect(err, `${c.name} [${isa}]: ${name} (all, worst first: ${report})`).toBeLessThanOrEqual(tol('f32'));

  const again = await run(layer, c, x, dy, memory);
  for (const [name, t] of got) expectSameBits(again.get(name)!, t, `${c.name} ${name}`);

  if (c.key_lengths || c.memory_lengths) {
    // the padding masks matter here: without them the output is far from the fixture
    const unmasked = await run(layer, { ...c, key_lengths: null, memory_lengths: null }, x, dy, memory);
    expect(relL2(unmasked.get('y')!.toArray(), values(c.output))).toBeGreaterThan(1e-3);
    for (const t of unmasked.values()) t.dispose();
  }
  for (const t of [...got.values(), ...again.values(), ...stateDict.values(), ...params.values(), ...back.values(), x, dy]) t.dispose();
  memory?.dispose();
  layer.dispose();
}

describe('Transformer layers against PyTorch fixtures (test/fixtures/gen_layers.py)', () => {
  it('the fixtures hold the cases of the acceptance test (hidden 64, heads 4, FFN 256, batch 2, seq 7)', () => {
    expect(index.cases.map((c) => `${c.kind} ${c.norm_first}`).sort()).toEqual(['decoder false', 'decoder true', 'encoder false', 'encoder true']);
    expect(index.config).toMatchObject({ hidden: 64, heads: 4, ffn: 256, batch: 2, seq: 7, activation: 'gelu', layer_norm_eps: 1e-5 });
    for (const c of index.cases) expect(c.inputs.x.shape).toEqual([2, 7, 64]);
  });

  for (const c of index.cases) for (const isa of isas()) {
    it(`${c.name} [${isa}]: output and every gradient within f32 relative L2 ${tol('f32')}, bit-identical twice`, async () => {
      const best = getIsa().best;
      setIsa(isa);
      try {
        await checkCase(c, isa);
      } finally {
        setIsa(best);
      }
    });
  }
});

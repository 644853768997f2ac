// The dtypes bench's pure parts (bench/dtypes.mjs times nothing here): the onnxruntime graphs of an
// encoder layer (f32, and int8 as onnxruntime's dynamic quantizer makes them) load in
// onnxruntime-node and match our f32 TransformerEncoderLayer on a tiny layer; the weight quantizer
// rounds and scales as documented; the chart spec renders to an SVG with one bar per number; the
// `seqfuse` command's usage and exit codes.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import ort from 'onnxruntime-node';
import { Tensor, toTorchTransformerLayer, TransformerEncoderLayer } from '../lib/index.js';
import { freshSeed } from './helpers.js';
import { relL2 } from './tolerance.js';

// the bench is plain JavaScript without type declarations: a computed specifier types the modules as any
const bench = (name: string) => import(`../bench/${name}.mjs`);

interface EncoderOnnx {
  VARIANTS: Record<string, { attention: string; int8: string | null }>;
  encoderLayerModel(w: Record<string, Float32Array>, cfg: object, variant: string): Uint8Array;
  quantizeWeights(w: Float32Array): { q: Int8Array; scale: number };
}

describe('bench dtypes: onnxruntime graphs of the encoder layer', () => {
  it('quantizeWeights: per-tensor symmetric scale max|w| / 127, nearest with ties to even, in [-127, 127]', async () => {
    const { quantizeWeights } = (await bench('encoder-onnx')) as EncoderOnnx;
    const { q, scale } = quantizeWeights(Float32Array.of(-127, 2.5, -2.5, 3.5, -0.4, 0.6, 126.5));
    expect(scale).toBe(1);
    expect([...q]).toEqual([-127, 2, -2, 4, 0, 1, 126]);
    const half = quantizeWeights(Float32Array.of(0.25, -0.5));
    expect(half.scale).toBe(0.5 / 127);
    expect([...half.q]).toEqual([64, -127]);  // 63.5 -> 64 (even)
  });

  it('every variant loads in onnxruntime-node and matches our f32 layer (f32 to 1e-4, int8 to 0.25 but not exactly)', async () => {
    const { VARIANTS, encoderLayerModel } = (await bench('encoder-onnx')) as EncoderOnnx;
    const seed = freshSeed();
    const cfg = { B: 2, S: 5, H: 16, heads: 2, F: 40, eps: 1e-5 };
    const layer = new TransformerEncoderLayer({ hiddenSize: cfg.H, numHeads: cfg.heads, ffnSize: cfg.F, activation: 'gelu', preLayerNorm: false,
      layerNormEps: cfg.eps, seed });
    const params = new Map([...layer.parameters()].map(([n, t], i) => [n, Tensor.randn(t.shape, { seed: seed + i + 1, std: 0.3,
      mean: n.includes('norm') && n.endsWith('.weight') ? 1 : 0 })]));
    layer.loadParameters(params);
    const state = toTorchTransformerLayer(params, 'encoder');
    const w = Object.fromEntries([...state].map(([n, t]) => [n, t.toArray() as Float32Array]));
    const x = Tensor.randn([cfg.B, cfg.S, cfg.H], { seed: seed + 100 });
    const y = await layer.forward(x);
    const ref = y.toArray() as Float32Array;
    const xv = x.toArray() as Float32Array;
    const errs: Record<string, number> = {};
    for (const variant of Object.keys(VARIANTS)) {
      const session = await ort.InferenceSession.create(encoderLayerModel(w, cfg, variant), { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
      const out = await session.run({ x: new ort.Tensor('float32', xv, [cfg.B, cfg.S, cfg.H]) });
      errs[variant] = relL2(out.y!.data as Float32Array, ref);
      await session.release();
    }
    for (const t of [...params.values(), ...state.values(), x, y]) t.dispose();
    layer.dispose();
    for (const [variant, e] of Object.entries(errs)) {
      if (VARIANTS[variant]!.int8) {
        // per-tensor int8 on a 16-wide random layer: 1e-2 to 0.12 over seeds (a wrong graph is ~1)
        expect(e, `${variant} (seed ${seed})`).toBeLessThan(0.25);
        expect(e, `${variant} is quantized (seed ${seed})`).toBeGreaterThan(1e-4);
      } else {
        expect(e, `${variant} (seed ${seed})`).toBeLessThan(1e-4);
      }
    }
  });
});

describe('bench dtypes: chart', () => {
  it('renders grouped bars to SVG: one bar per row with numbers, in both panels', async () => {
    const { chartSpec, renderSvg } = await bench('chart');
    const bars = [
      { workload: 'GEMM', case: '1x768x768', series: 'f32', speedup: 1, gops: 40 },
      { workload: 'GEMM', case: '1x768x768', series: 'bf16', speedup: 1.75, gops: 70 },
      { workload: 'GEMM', case: '1x768x768', series: 'int8', speedup: NaN, gops: NaN },
      { workload: 'layer', case: 'B8 S128', series: 'f32', speedup: 1, gops: 150 },
      { workload: 'layer', case: 'B8 S128', series: 'ORT int8', speedup: 2.5, gops: 375 },
    ];
    const svg: string = await renderSvg(chartSpec(bars, 'test chart'));
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/aria-roledescription="bar"/g)).toHaveLength(2 * 4);
    expect(svg).toContain('series: ORT int8');
    expect(svg).toContain('speedup: 2.50');
    expect(svg).toContain('gops: 375.00');
    expect(svg).not.toContain('series: int8');
    expect(svg).toContain('test chart');
  });
});

describe('seqfuse command (bin/seqfuse.mjs)', () => {
  const seqfuse = (...args: string[]) => spawnSync(process.execPath, ['bin/seqfuse.mjs', ...args], { encoding: 'utf8' });

  it('--help prints the usage and exits 0', () => {
    const r = seqfuse('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: seqfuse <command>/);
    expect(r.stdout).toContain('bench [suite...]');
  });

  it('an unknown or missing command, or an unknown suite, exits 2 with a message', () => {
    const unknown = seqfuse('frobnicate');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("seqfuse: unknown command 'frobnicate'");
    expect(seqfuse().status).toBe(2);
    const suite = seqfuse('bench', 'nosuch', '--quick');
    expect(suite.status).toBe(2);
    expect(suite.stderr).toContain("unknown bench suite 'nosuch'; available: ops, attention, layers, dtypes");
  });
});

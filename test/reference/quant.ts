// float64 references of int8 quantization (native/ops/quant.h): the f32 steps of the kernels are
// emulated exactly with Math.fround (a product or quotient of two f32 values computed in float64
// and rounded once to f32 is the correctly rounded f32 result), so quantize, dequantize and
// fakeQuant are compared bit for bit; the backward's dclip is summed in float64.
import { bf16BitsToNumber, f16BitsToNumber, toBf16Bits, toF16Bits } from './half.js';

const f32 = Math.fround;

/** [outer, C, inner] of a tensor quantized per channel along `axis`, or per tensor (axis null). */
export interface QuantLayout {
  outer: number;
  channels: number;
  inner: number;
}

export function quantLayout(shape: readonly number[], axis: number | null): QuantLayout {
  const n = shape.reduce((a, b) => a * b, 1);
  if (axis === null) return { outer: 1, channels: 1, inner: n };
  const ax = axis < 0 ? axis + shape.length : axis;
  const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  return { outer: prod(shape.slice(0, ax)), channels: shape[ax]!, inner: prod(shape.slice(ax + 1)) };
}

/** The channel of flat element e. */
export function channelOf(l: QuantLayout, e: number): number {
  return Math.floor(e / l.inner) % l.channels;
}

/** C's roundf: the nearest integer, halves away from zero (Math.round rounds -2.5 to -2). */
export function roundHalfAway(r: number): number {
  const a = Math.floor(Math.abs(r) + 0.5);
  return r < 0 || Object.is(r, -0) ? -a : a;
}

/** The int8 value of x: round(clamp(f32(x * f32(127 / clip)), -127, 127)); NaN -> 0. An integer
 * has no -0, so fakeQuant of a small negative x is +0, as dequantize(quantize(x)) gives. */
export function quantOne(x: number, clip: number): number {
  const r = f32(f32(x) * f32(127 / f32(clip)));
  if (Number.isNaN(r)) return 0;
  return roundHalfAway(Math.min(Math.max(r, -127), 127)) + 0;
}

/** The step of clip's grid as the kernels round it: f32(clip / 127). */
export function quantStep(clip: number): number {
  return f32(f32(clip) / 127);
}

export function quantizeRef(x: ArrayLike<number>, clips: ArrayLike<number>, l: QuantLayout): Int8Array {
  return Int8Array.from({ length: x.length }, (_, e) => quantOne(x[e]!, clips[channelOf(l, e)]!));
}

/** f32 value v as stored in dtype (round to nearest even), read back as a number. */
export function storeAs(dtype: 'f32' | 'f16' | 'bf16', v: number): number {
  if (dtype === 'bf16') return bf16BitsToNumber(toBf16Bits(v));
  if (dtype === 'f16') return f16BitsToNumber(toF16Bits(v));
  return f32(v);
}

export function dequantizeRef(q: ArrayLike<number>, clips: ArrayLike<number>, l: QuantLayout, dtype: 'f32' | 'f16' | 'bf16' = 'f32'): Float64Array {
  return Float64Array.from({ length: q.length }, (_, e) => storeAs(dtype, f32(q[e]! * quantStep(clips[channelOf(l, e)]!))));
}

/** dequantize(quantize(x)) in dtype; NaN stays NaN. */
export function fakeQuantRef(x: ArrayLike<number>, clips: ArrayLike<number>, l: QuantLayout, dtype: 'f32' | 'f16' | 'bf16' = 'f32'): Float64Array {
  return Float64Array.from({ length: x.length }, (_, e) => {
    const c = clips[channelOf(l, e)]!;
    return Number.isNaN(x[e]!) ? NaN : storeAs(dtype, f32(quantOne(x[e]!, c) * quantStep(c)));
  });
}

/** PACT: dx = dy where |x| < clip; dclip[c] = sum of dy over x >= clip minus the sum over x <= -clip. */
export function fakeQuantBackwardRef(dy: ArrayLike<number>, x: ArrayLike<number>, clips: ArrayLike<number>, l: QuantLayout):
  { dx: Float64Array; dclip: Float64Array } {
  const dx = new Float64Array(x.length);
  const dclip = new Float64Array(l.channels);
  for (let e = 0; e < x.length; e++) {
    const c = channelOf(l, e);
    const clip = f32(clips[c]!);
    if (Math.abs(x[e]!) < clip) dx[e] = dy[e]!;
    else if (x[e]! >= clip) dclip[c]! += dy[e]!;
    else if (x[e]! <= -clip) dclip[c]! -= dy[e]!;
  }
  return { dx, dclip };
}

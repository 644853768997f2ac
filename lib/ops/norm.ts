// layerNorm / rmsNorm over the last dim, forward and backward (native/ops/norm.h).
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { defineOp, numberOpt, optionsArg, optTensorArg, outArg, type Prepared, rowsCols, tensorArg } from './common.js';

export interface NormOptions {
  /** Added to the variance (default 1e-5, as PyTorch). */
  eps?: number;
  /** Write the result here instead of a new tensor (same shape and dtype as x). */
  out?: Tensor;
}

export interface NormGrads {
  dx: Tensor;
  dgamma: Tensor;
  /** Only for layerNorm with a beta (`hasBeta`, the default). */
  dbeta?: Tensor;
}

export interface NormBackwardOptions {
  eps?: number;
  /** layerNorm only: also return dbeta (default true). */
  hasBeta?: boolean;
}

function fwd(rms: boolean) {
  const op = rms ? 'rmsNorm' : 'layerNorm';
  return (x: Tensor, gamma: Tensor, beta: Tensor | null | undefined, opts: NormOptions | undefined): Prepared<Tensor> => {
    tensorArg(x, op, 'x');
    tensorArg(gamma, op, 'gamma');
    const b = rms ? null : optTensorArg(beta, op, 'beta');
    const o = optionsArg<NormOptions>(opts, op);
    const eps = numberOpt(o.eps, op, 'eps', 1e-5, 0, 1e30);
    const fresh: Tensor[] = [];
    const y = outArg(o.out, op, x.shape, x.dtype, x.device, fresh);
    return { run: (a) => native.norm_fwd(x, gamma, b, y, null, null, eps, rms, a), result: y, fresh };
  };
}

function bwd(rms: boolean) {
  const op = rms ? 'rmsNormBackward' : 'layerNormBackward';
  return (dy: Tensor, x: Tensor, gamma: Tensor, opts: NormBackwardOptions | undefined): Prepared<NormGrads> => {
    tensorArg(dy, op, 'dy');
    tensorArg(x, op, 'x');
    tensorArg(gamma, op, 'gamma');
    const o = optionsArg<NormBackwardOptions>(opts, op);
    const eps = numberOpt(o.eps, op, 'eps', 1e-5, 0, 1e30);
    const withBeta = !rms && o.hasBeta !== false;
    const fresh: Tensor[] = [];
    const [, cols] = rowsCols(x);
    const dx = outArg(undefined, op, x.shape, x.dtype, x.device, fresh);
    const dgamma = outArg(undefined, op, [cols], gamma.dtype, gamma.device, fresh);
    const dbeta = withBeta ? outArg(undefined, op, [cols], gamma.dtype, gamma.device, fresh) : null;
    return {
      run: (a) => native.norm_bwd(dy, x, gamma, null, null, dx, dgamma, dbeta, eps, rms, a),
      result: dbeta ? { dx, dgamma, dbeta } : { dx, dgamma },
      fresh,
    };
  };
}

/** y = (x - mean) / sqrt(var + eps) * gamma + beta over the last dim. x: [..., C]; gamma, beta: [C]. */
export const layerNorm = defineOp((x: Tensor, gamma: Tensor, beta?: Tensor | null, opts?: NormOptions) => fwd(false)(x, gamma, beta, opts));
/** y = x / sqrt(mean(x^2) + eps) * gamma over the last dim. */
export const rmsNorm = defineOp((x: Tensor, gamma: Tensor, opts?: NormOptions) => fwd(true)(x, gamma, null, opts));
/** Gradients of layerNorm: dx, dgamma, dbeta (statistics are recomputed from x). */
export const layerNormBackward = defineOp((dy: Tensor, x: Tensor, gamma: Tensor, opts?: NormBackwardOptions) => bwd(false)(dy, x, gamma, opts));
/** Gradients of rmsNorm: dx, dgamma. */
export const rmsNormBackward = defineOp((dy: Tensor, x: Tensor, gamma: Tensor, opts?: NormBackwardOptions) => bwd(true)(dy, x, gamma, opts));

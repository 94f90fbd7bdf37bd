// Training a tuned lens (`lens tune`): tuned-lens's objective and optimizer, written out by hand.
// Per layer l < L and position, the loss is KL(final ‖ lens_l) with lens_l = head(h + W h + b);
// its gradient reaches the translator through the head (logits = s · W_U y + c, softcapped or not)
// and the final norm y = gain ⊙ n(x) + bias. The optimizer is torch's SGD as tuned-lens sets it up:
// Nesterov momentum 0.9, weight decay 1e-3 (added to the gradient), learning rate 1 · (1 − 0.9)
// decaying linearly to 0, the gradient's norm over all translators clipped to 1.

import type { FinalHead } from './attribution.js';

/** The final norm and the head, whole: what the gradient flows back through (attribution's head with all of W_U). */
export interface TuneHead extends Omit<FinalHead, 'unembedRows' | 'headBias'> {
  /** W_U [V, d] flattened. */
  unembed: Float32Array;
}

/** log-softmax of logits [V] in float64. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  const logZ = logSumExp(logits);
  const out = new Float64Array(logits.length);
  for (let v = 0; v < logits.length; v++) out[v] = logits[v] - logZ;
  return out;
}

function logSumExp(logits: ArrayLike<number>): number {
  const n = logits.length;
  let max = -Infinity;
  for (let v = 0; v < n; v++) if (logits[v] > max) max = logits[v];
  let sum = 0;
  for (let v = 0; v < n; v++) sum += Math.exp(logits[v] - max);
  return max + Math.log(sum);
}

/** The final layer's distribution at one position, shared by every layer's loss there. */
export interface FinalDistribution { logProbs: Float64Array; probs: Float64Array }

/** FinalDistribution of the final logits [V]. */
export function finalDistribution(logits: ArrayLike<number>): FinalDistribution {
  const logProbs = logSoftmax(logits);
  return { logProbs, probs: logProbs.map(Math.exp) };
}

/**
 * KL(final ‖ lens) in nats of one position's lens logits [V] and the final layer's distribution,
 * and the gradient of `weight` · KL with respect to the logits z before any softcap [V] (written
 * into `gradZ`).
 */
export function klAndLogitGradient(lensLogits: ArrayLike<number>, final: FinalDistribution, weight: number, softcap: number | undefined, gradZ: Float32Array | Float64Array): number {
  const logZ = logSumExp(lensLogits);
  let kl = 0;
  for (let v = 0; v < lensLogits.length; v++) {
    const logLens = lensLogits[v] - logZ, pFinal = final.probs[v];
    if (pFinal > 0) kl += pFinal * (final.logProbs[v] - logLens);
    const g = weight * (Math.exp(logLens) - pFinal);
    // logit = c·tanh(z/c): dlogit/dz = 1 − tanh² = 1 − (logit/c)².
    gradZ[v] = softcap ? g * (1 - (lensLogits[v] / softcap) ** 2) : g;
  }
  return kl;
}

/**
 * g_y = s · W_Uᵀ g_z for `rows` gradients at once: gradZ [rows][V] → gradY [rows][d]. Rows share
 * each W_U row while it is in cache. (lens tune runs this product in onnxruntime; this float64 loop
 * is its reference.)
 */
export function projectThroughHead(head: TuneHead, gradZ: Float64Array[], d: number): Float64Array[] {
  const V = head.unembed.length / d;
  const gradY = gradZ.map(() => new Float64Array(d));
  for (let v = 0; v < V; v++) {
    const row = head.unembed.subarray(v * d, (v + 1) * d);
    for (let r = 0; r < gradZ.length; r++) {
      const g = gradZ[r][v] * head.headScale;
      if (g === 0) continue;
      const out = gradY[r];
      for (let j = 0; j < d; j++) out[j] += g * row[j];
    }
  }
  return gradY;
}

/**
 * Adds to one translator's gradient (gradW [d, d] out × in, gradB [d]) what a position contributes,
 * given the head's gradient at the norm's output gradY [d]: back through the norm (its Jacobian at
 * x = h + W h + b) and the affine map (outer product with h).
 */
export function accumulateTranslatorGradient(head: TuneHead, h: ArrayLike<number>, weight: ArrayLike<number>, bias: ArrayLike<number>, gradY: ArrayLike<number>, gradW: Float64Array, gradB: Float64Array): void {
  const d = h.length;
  const x = new Float64Array(d);
  for (let o = 0; o < d; o++) {
    let sum = h[o] + bias[o];
    for (let i = 0; i < d; i++) sum += weight[o * d + i] * h[i];
    x[o] = sum;
  }
  let mean = 0;
  if (head.centred) {
    for (let j = 0; j < d; j++) mean += x[j];
    mean /= d;
  }
  let variance = 0;
  for (let j = 0; j < d; j++) variance += (x[j] - mean) ** 2;
  const sigma = Math.sqrt(variance / d + head.epsilon);
  let meanGn = 0, meanGnN = 0;
  const gradN = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    gradN[j] = gradY[j] * head.gain[j];
    meanGn += gradN[j];
    meanGnN += gradN[j] * (x[j] - mean) / sigma;
  }
  meanGn = head.centred ? meanGn / d : 0;
  meanGnN /= d;
  for (let o = 0; o < d; o++) {
    const gx = (gradN[o] - meanGn - ((x[o] - mean) / sigma) * meanGnN) / sigma;
    gradB[o] += gx;
    const rowW = o * d;
    for (let i = 0; i < d; i++) gradW[rowW + i] += gx * h[i];
  }
}

/** tuned-lens's SGD settings (torch.optim.SGD with lr = lr_scale · (1 − momentum)). */
export const TUNE_OPTIMIZER = { momentum: 0.9, weightDecay: 1e-3, learningRate: 1 * (1 - 0.9), clipNorm: 1 } as const;

/** The learning rate at step `step` (0-based) of `steps`: linear decay to 0, no warm-up (as tuned-lens for SGD). */
export function learningRateAt(step: number, steps: number): number {
  return TUNE_OPTIMIZER.learningRate * Math.max(0, (steps - step) / steps);
}

/**
 * One optimizer step in place over parameter groups (params[k], grads[k], momentum[k] of equal length):
 * clips the gradients' joint norm to 1 (as clip_grad_norm_: × 1 / (norm + 1e-6) when above), adds
 * weight decay, updates the momentum buffers and takes the Nesterov step. Buffers start at zero, so
 * the first step's buffer is the gradient, as torch's. Returns the norm before clipping.
 */
export function sgdStep(params: Float32Array[], grads: Float64Array[], momentum: Float32Array[], learningRate: number): number {
  const { momentum: mu, weightDecay, clipNorm } = TUNE_OPTIMIZER;
  let squares = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) squares += g[i] * g[i];
  const norm = Math.sqrt(squares);
  const clip = Math.min(1, clipNorm / (norm + 1e-6));
  params.forEach((p, k) => {
    const g = grads[k], buf = momentum[k];
    for (let i = 0; i < p.length; i++) {
      const grad = g[i] * clip + weightDecay * p[i];
      const b = mu * buf[i] + grad;
      buf[i] = b;
      p[i] -= learningRate * (grad + mu * b);
    }
  });
  return norm;
}

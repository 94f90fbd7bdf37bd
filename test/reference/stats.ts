// Distribution statistics of logit vectors in float64, written from their definitions
// (softmax, Shannon entropy, Kullback–Leibler divergence, rank) for the tests' expected values;
// independent of src/lens/ on purpose.

/** log Σᵢ exp(xᵢ) of logits [V], shifted by the maximum so no exp overflows. Throws on an empty vector. */
export function logSumExp(x: ArrayLike<number>): number {
  if (x.length === 0) throw new RangeError('logSumExp of nothing');
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - m);
  return m + Math.log(sum);
}

/** log softmax(x)ᵢ = xᵢ − log Σ exp(x), [V]. */
export function logProbs(x: ArrayLike<number>): Float64Array {
  const z = logSumExp(x);
  return Float64Array.from(x, (v) => v - z);
}

/** H(P) = −Σ pᵢ log pᵢ in nats, P = softmax(x). */
export function entropy(x: ArrayLike<number>): number {
  const lp = logProbs(x);
  let h = 0;
  for (const l of lp) { const p = Math.exp(l); if (p > 0) h -= p * l; }
  return h;
}

/** KL(P ‖ Q) = Σ pᵢ (log pᵢ − log qᵢ) in nats, P = softmax(p), Q = softmax(q). Throws on a length mismatch. */
export function kl(p: ArrayLike<number>, q: ArrayLike<number>): number {
  if (p.length !== q.length) throw new RangeError('KL of vectors of different lengths');
  const lp = logProbs(p), lq = logProbs(q);
  let sum = 0;
  for (let i = 0; i < lp.length; i++) { const pi = Math.exp(lp[i]); if (pi > 0) sum += pi * (lp[i] - lq[i]); }
  return sum;
}

/**
 * The ranks token `id` may have when x [V] is known to within `eps` per element: 1 + the tokens
 * surely above it, up to 1 + those that may be; tokens exactly equal to it (twin head rows) are
 * ties, never above. `above(i)` settles a token within eps of it when it can (true: above).
 * eps = 0 gives the exact rank, 1 + #{i : xᵢ > x_id}.
 */
export function rankBounds(x: ArrayLike<number>, id: number, eps = 0, above: (i: number) => boolean | undefined = () => undefined): { min: number; max: number } {
  const v = x[id];
  let surely = 0, maybe = 0;
  for (let i = 0; i < x.length; i++) {
    if (x[i] > v + eps) surely++;
    else if (x[i] > v - eps && x[i] !== v) {
      const settled = above(i);
      if (settled === undefined) maybe++;
      else if (settled) surely++;
    }
  }
  return { min: 1 + surely, max: 1 + surely + maybe };
}

/** Tokens whose x [V] lies within eps of x_id without equalling it: those whose order against it a tolerance cannot settle. */
export function nearTies(x: ArrayLike<number>, id: number, eps: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) if (i !== id && Math.abs(x[i] - x[id]) <= eps && x[i] !== x[id]) out.push(i);
  return out;
}
